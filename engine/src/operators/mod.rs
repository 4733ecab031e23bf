//! Which operators exist and how their arguments are checked when a DAG file is loaded.
//!
//! An operator's arguments are one typed struct ([`typed::OperatorArgs`], `deny_unknown_fields`): checked here
//! when the DAG file is loaded (a wrong or unknown argument is an error naming its line and key) and read again,
//! rendered, when the task runs. String arguments are templates, rendered when the task runs; a field that is
//! [`typed::Templated`] takes a template wherever its type could come out of one once rendered.
//!
//! The engine knows the built-in `bash` and `empty` ([`builtin`]); other crates (e.g. `chain`) register theirs.

mod args;
pub mod builtin;
pub mod typed;

pub use args::{is_template, ArgError, Args};
pub use typed::{from_rendered, validate_typed, ArgIssue, OperatorArgs, Templated};

pub type ValidateFn = fn(&Args<'_>) -> Result<(), ArgError>;

/// One operator: canonical name, the dotted Airflow paths that map to it, and its argument check.
#[derive(Clone)]
pub struct OperatorDef {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub validate: ValidateFn,
    /// Runs inside the scheduler without an executor slot (Airflow does this for EmptyOperator).
    pub completes_in_scheduler: bool,
    /// Its tasks are teardown tasks unless the DAG says `is_teardown: false` (e.g. `chain.teardown`).
    pub is_teardown: bool,
}

/// The operators known to this process.
#[derive(Clone)]
pub struct OperatorRegistry {
    operators: Vec<OperatorDef>,
}

impl Default for OperatorRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl OperatorRegistry {
    /// `bash` and `empty`.
    pub fn builtin() -> Self {
        OperatorRegistry {
            operators: vec![builtin::bash(), builtin::empty()],
        }
    }

    /// No operators at all.
    pub fn empty() -> Self {
        OperatorRegistry { operators: Vec::new() }
    }

    pub fn register(&mut self, def: OperatorDef) {
        self.operators.retain(|existing| existing.name != def.name);
        self.operators.push(def);
    }

    /// Finds an operator by canonical name or Airflow path.
    pub fn resolve(&self, name: &str) -> Option<&OperatorDef> {
        self.operators
            .iter()
            .find(|def| def.name == name || def.aliases.contains(&name))
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.operators.iter().map(|def| def.name).collect()
    }
}
