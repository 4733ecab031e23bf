//! The arguments of the built-in operators, `bash` and `empty` (their runtime is in the worker).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::typed::{validate_typed, ArgIssue, OperatorArgs, Templated};
use super::OperatorDef;

/// `bash`: Airflow's BashOperator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BashArgs {
    pub bash_command: String,
    /// Replaces the environment (plus Airflow's context variables) unless `append_env`.
    #[serde(default)]
    pub env: Option<Templated<BTreeMap<String, Scalar>>>,
    #[serde(default)]
    pub append_env: Option<Templated<bool>>,
    #[serde(default)]
    pub cwd: Option<String>,
    /// Exit codes that skip the task: a code, a list, or null for none; 99 when absent.
    #[serde(default = "default_skip_codes")]
    pub skip_on_exit_code: Templated<SkipCodes>,
    #[serde(default)]
    pub output_encoding: Option<String>,
}

impl OperatorArgs for BashArgs {
    fn check(&self) -> Result<(), ArgIssue> {
        if self.bash_command.trim().is_empty() {
            return Err(ArgIssue::new(
                "bash_command",
                "`bash_command` must be a non-empty string",
            ));
        }
        Ok(())
    }
}

impl BashArgs {
    /// The environment `env` gives, when rendered.
    pub fn env(&self) -> Result<Option<BTreeMap<String, String>>, String> {
        match &self.env {
            None => Ok(None),
            Some(env) => Ok(Some(
                env.value("env")?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect(),
            )),
        }
    }

    pub fn append_env(&self) -> Result<bool, String> {
        match &self.append_env {
            None => Ok(false),
            Some(flag) => flag.value("append_env").copied(),
        }
    }

    pub fn skip_codes(&self) -> Result<&[u8], String> {
        Ok(&self.skip_on_exit_code.value("skip_on_exit_code")?.0)
    }
}

fn default_skip_codes() -> Templated<SkipCodes> {
    Templated::Value(SkipCodes(vec![99]))
}

/// Exit codes 0-255: one code, a list of them, a comma-separated string of them, or null for none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SkipCodes(pub Vec<u8>);

impl<'de> Deserialize<'de> for SkipCodes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let fail = || D::Error::custom("must be an exit code 0-255, a list of them, or null");
        let code = |value: &serde_json::Value| -> Option<u8> { value.as_u64().and_then(|c| u8::try_from(c).ok()) };
        let value = serde_json::Value::deserialize(deserializer)?;
        let codes = match &value {
            serde_json::Value::Null => vec![],
            serde_json::Value::Number(_) => vec![code(&value).ok_or_else(fail)?],
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| code(i).ok_or_else(fail))
                .collect::<Result<_, _>>()?,
            serde_json::Value::String(text) => text
                .split(',')
                .map(|c| c.trim().parse::<u8>().map_err(|_| fail()))
                .collect::<Result<_, _>>()?,
            _ => return Err(fail()),
        };
        Ok(SkipCodes(codes))
    }
}

/// A scalar as text (environment values): strings, numbers and booleans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(text) => Ok(Scalar(text)),
            serde_json::Value::Number(n) => Ok(Scalar(n.to_string())),
            serde_json::Value::Bool(b) => Ok(Scalar(b.to_string())),
            other => Err(D::Error::custom(format!("must be a string, got {other}"))),
        }
    }
}

/// `empty`: does nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyArgs {}

impl OperatorArgs for EmptyArgs {}

pub fn bash() -> OperatorDef {
    OperatorDef {
        name: "bash",
        aliases: &[
            "airflow.operators.bash.BashOperator",
            "airflow.operators.bash_operator.BashOperator",
            "airflow.providers.standard.operators.bash.BashOperator",
            "BashOperator",
        ],
        validate: |args| validate_typed::<BashArgs>("bash", args),
        completes_in_scheduler: false,
        is_teardown: false,
    }
}

pub fn empty() -> OperatorDef {
    OperatorDef {
        name: "empty",
        aliases: &[
            "airflow.operators.empty.EmptyOperator",
            "airflow.providers.standard.operators.empty.EmptyOperator",
            "airflow.operators.dummy.DummyOperator",
            "airflow.operators.dummy_operator.DummyOperator",
            "EmptyOperator",
            "DummyOperator",
        ],
        validate: |args| validate_typed::<EmptyArgs>("empty", args),
        completes_in_scheduler: true,
        is_teardown: false,
    }
}
