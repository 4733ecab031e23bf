//! Typed operator arguments: one struct per operator (`#[serde(deny_unknown_fields)]`), deserialized from the
//! task's YAML when the DAG file is loaded (errors name the key and its line) and again from the rendered
//! arguments when the task runs.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

use super::args::{is_template, ArgError, Args};

/// A problem a struct's own check finds (beyond what its types say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgIssue {
    pub key: String,
    pub message: String,
}

impl ArgIssue {
    pub fn new(key: &str, message: impl Into<String>) -> ArgIssue {
        ArgIssue {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// The arguments of one operator.
pub trait OperatorArgs: DeserializeOwned {
    /// Checks what the types cannot say (ranges, non-empty strings). Templated values are not known yet at
    /// load time: skip them.
    fn check(&self) -> Result<(), ArgIssue> {
        Ok(())
    }
}

/// A value that may be a template when the DAG file is loaded (`nodes: "{{ params.n }}"`). Once rendered it
/// is a value; a rendered template is text, so text that reads as the value's type (`"4"`, `"true"`,
/// `"[1, 2]"`) is taken as that value.
#[derive(Debug, Clone, PartialEq)]
pub enum Templated<T> {
    Value(T),
    Template(String),
}

impl<T> Templated<T> {
    /// The value, or an error naming `key` when the template was not rendered.
    pub fn value(&self, key: &str) -> Result<&T, String> {
        match self {
            Templated::Value(value) => Ok(value),
            Templated::Template(text) => Err(format!("`{key}` was not rendered: {text}")),
        }
    }
}

impl<T: Default> Default for Templated<T> {
    fn default() -> Self {
        Templated::Value(T::default())
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Templated<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Json::deserialize(deserializer)?;
        if let Json::String(text) = &value {
            if is_template(text) {
                return Ok(Templated::Template(text.clone()));
            }
        }
        match serde_json::from_value::<T>(value.clone()) {
            Ok(parsed) => Ok(Templated::Value(parsed)),
            Err(first) => {
                if let Json::String(text) = &value {
                    if let Ok(parsed) = serde_json::from_str::<Json>(text.trim()) {
                        if let Ok(parsed) = serde_json::from_value::<T>(parsed) {
                            return Ok(Templated::Value(parsed));
                        }
                    }
                }
                Err(D::Error::custom(first))
            }
        }
    }
}

/// Checks a task's arguments as `A` when its DAG file is loaded.
pub fn validate_typed<A: OperatorArgs>(operator: &str, args: &Args<'_>) -> Result<(), ArgError> {
    let object: serde_json::Map<String, Json> = args
        .entries
        .iter()
        .map(|(key, node)| (key.clone(), node.to_json()))
        .collect();
    let line_of = |key: &str| args.get(key).map(|node| node.line).unwrap_or(args.task_line);
    match serde_path_to_error::deserialize::<_, A>(Json::Object(object)) {
        Ok(parsed) => parsed.check().map_err(|issue| ArgError {
            line: line_of(&issue.key),
            key: issue.key,
            message: issue.message,
        }),
        Err(err) => {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            Err(describe(operator, &path, &message, &line_of))
        }
    }
}

/// Reads rendered arguments as `A` when the task runs; an error names the key.
pub fn from_rendered<A: OperatorArgs>(args: &serde_json::Map<String, Json>) -> Result<A, String> {
    serde_path_to_error::deserialize::<_, A>(Json::Object(args.clone())).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        let error = describe("", &path, &message, &|_| 0);
        error.message
    })
}

/// Turns a serde error into one in the words of DAG files: unknown and missing arguments by name, other
/// errors prefixed with the key they are about.
fn describe(operator: &str, path: &str, message: &str, line_of: &dyn Fn(&str) -> usize) -> ArgError {
    let quoted = |text: &str, prefix: &str| -> Option<String> {
        let rest = text.split_once(prefix)?.1;
        Some(rest.split('`').next()?.to_string())
    };
    if let Some(field) = quoted(message, "unknown field `") {
        let expected = match message.split_once(", expected ") {
            Some((_, list)) => format!("expected {}", list.replace('`', "")),
            None => "it takes no arguments".to_string(),
        };
        let owner = if operator.is_empty() {
            String::new()
        } else {
            format!(" for operator `{operator}`")
        };
        // Inside a nested mapping (`cloudwatch: {group: x}`) the path names the mapping: the key is
        // `cloudwatch.group`, on the mapping's line.
        let within = path.trim_start_matches('.');
        let within = within.strip_suffix(&format!(".{field}")).unwrap_or(within);
        let (key, top) = if within.is_empty() || within == field || within == "?" {
            (field.clone(), field.clone())
        } else {
            let top = within.split(['.', '[']).next().unwrap_or(within).to_string();
            (format!("{within}.{field}"), top)
        };
        let owner = if top != key { format!(" in `{within}`") } else { owner };
        return ArgError {
            line: line_of(&top),
            message: format!("unknown argument `{field}`{owner}; {expected}"),
            key,
        };
    }
    if let Some(field) = quoted(message, "missing field `") {
        return ArgError {
            line: line_of(""),
            message: format!("missing required argument `{field}`"),
            key: field,
        };
    }
    let key = path
        .split(['.', '['])
        .next()
        .filter(|k| !k.is_empty() && *k != "?")
        .unwrap_or("")
        .to_string();
    let shown = if path == "." || path.is_empty() {
        key.clone()
    } else {
        path.to_string()
    };
    ArgError {
        line: line_of(&key),
        message: if shown.is_empty() {
            message.to_string()
        } else {
            format!("`{shown}`: {message}")
        },
        key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        name: String,
        #[serde(default)]
        count: Option<Templated<u32>>,
        #[serde(default)]
        flags: Vec<Templated<bool>>,
    }

    impl OperatorArgs for Demo {
        fn check(&self) -> Result<(), ArgIssue> {
            if self.name.is_empty() {
                return Err(ArgIssue::new("name", "`name` must not be empty"));
            }
            Ok(())
        }
    }

    fn map(value: Json) -> serde_json::Map<String, Json> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn templates_pass_until_rendered_and_rendered_text_reads_as_its_type() {
        let demo: Demo = from_rendered(&map(serde_json::json!({"name": "a", "count": "{{ params.n }}"}))).unwrap();
        assert!(matches!(demo.count, Some(Templated::Template(_))));
        assert!(demo.count.unwrap().value("count").is_err());
        let demo: Demo = from_rendered(&map(
            serde_json::json!({"name": "a", "count": "4", "flags": ["true", false]}),
        ))
        .unwrap();
        assert_eq!(demo.count, Some(Templated::Value(4)));
        assert_eq!(demo.flags, vec![Templated::Value(true), Templated::Value(false)]);
    }

    #[test]
    fn errors_name_the_key() {
        let err = from_rendered::<Demo>(&map(serde_json::json!({"name": "a", "count": "many"}))).unwrap_err();
        assert!(err.starts_with("`count`:"), "{err}");
        let err = from_rendered::<Demo>(&map(serde_json::json!({"name": "a", "colour": 1}))).unwrap_err();
        assert!(
            err.contains("unknown argument `colour`") && err.contains("expected one of"),
            "{err}"
        );
        let err = from_rendered::<Demo>(&map(serde_json::json!({"count": 1}))).unwrap_err();
        assert_eq!(err, "missing required argument `name`");
        let err = from_rendered::<Demo>(&map(serde_json::json!({"name": "a", "flags": [true, "x"]}))).unwrap_err();
        assert!(err.starts_with("`flags[1]`:"), "{err}");
    }
}
