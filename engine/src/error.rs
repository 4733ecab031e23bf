//! The engine's one error type.

use std::fmt;

/// An error and its sources, `outer: inner: ...`, without repeating a message its outer one already shows.
pub fn chain_of(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let message = inner.to_string();
        if !text.contains(&message) {
            text = format!("{text}: {message}");
        }
        source = inner.source();
    }
    text
}

/// Where in a DAG file something went wrong: file, line, DAG, task and key, as far as known.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    pub file: String,
    pub line: Option<usize>,
    pub dag_id: Option<String>,
    pub task_id: Option<String>,
    pub key: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(dag_id) = &self.dag_id {
            write!(f, ": dag `{dag_id}`")?;
        }
        if let Some(task_id) = &self.task_id {
            write!(f, ", task `{task_id}`")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key `{key}`")?;
        }
        Ok(())
    }
}

/// An error in a DAG file with its location.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DagFileError {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for DagFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    DagFile(Box<DagFileError>),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("illegal transition of {what} from `{from}` on {event}")]
    IllegalTransition {
        what: &'static str,
        from: String,
        event: String,
    },
    #[error("template error in `{field}`: {message}")]
    Template { field: String, message: String },
    #[error("database error: {0}")]
    Database(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                return Error::Conflict(db.message().to_string());
            }
        }
        Error::Database(err.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
