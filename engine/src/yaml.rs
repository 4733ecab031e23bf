//! A YAML tree that remembers the line of every node, so errors in DAG files can name the line.
//!
//! Built on yaml-rust2's event parser. Plain scalars resolve like YAML 1.2's core schema (null, booleans,
//! integers, floats); quoted scalars are strings; dates stay strings. Anchors, aliases and `<<` merge keys work.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML node with its 1-based line and column.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; keys are nodes too so their lines are known.
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// Looks up a key in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.key_text().as_deref() == Some(key))
            .map(|(_, v)| v)
    }

    /// The text of a scalar used as a mapping key (numbers and booleans become their text).
    pub fn key_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(text) => Some(text.clone()),
            Value::Int(n) => Some(n.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => Some("null".into()),
            _ => None,
        }
    }

    /// A short name of the node's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Converts to JSON (mapping keys become strings).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(n) => serde_json::Value::from(*n),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(text) => serde_json::Value::String(text.clone()),
            Value::Seq(items) => serde_json::Value::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A YAML syntax error with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Parses every document of a YAML text.
pub fn parse_str(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|err| SyntaxError {
        line: err.marker().line(),
        message: err.info().to_string(),
    })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder.docs)
}

enum Frame {
    Seq {
        node: Node,
        anchor: usize,
    },
    Map {
        node: Node,
        anchor: usize,
        pending_key: Option<Node>,
        merged: Vec<(Node, Node)>,
    },
}

#[derive(Default)]
struct Builder {
    docs: Vec<Node>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { node: seq, .. }) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Frame::Map {
                node: map,
                pending_key,
                merged,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    if let Value::Map(entries) = &mut map.value {
                        if key.as_str() == Some("<<") {
                            merge_into(merged, &node);
                        } else if let Some(existing) = entries.iter_mut().find(|(k, _)| k.value == key.value) {
                            if self.error.is_none() {
                                self.error = Some(SyntaxError {
                                    line: key.line,
                                    message: format!(
                                        "duplicate key `{}` (first at line {})",
                                        key.key_text().unwrap_or_default(),
                                        existing.0.line
                                    ),
                                });
                            }
                        } else {
                            entries.push((key, node));
                        }
                    }
                }
            },
        }
    }
}

/// `<<: *anchor` or `<<: [*a, *b]`: collects the keys to merge; explicit keys of the mapping win.
fn merge_into(entries: &mut Vec<(Node, Node)>, source: &Node) {
    let sources: Vec<&Node> = match &source.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![source],
    };
    for src in sources {
        if let Value::Map(src_entries) = &src.value {
            for (k, v) in src_entries {
                if !entries.iter().any(|(existing, _)| existing.value == k.value) {
                    entries.push((k.clone(), v.clone()));
                }
            }
        }
    }
}

fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | "+.inf" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.parse::<i64>() {
            return Value::Int(n);
        }
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(n) = i64::from_str_radix(hex, 16) {
            return Value::Int(n);
        }
    }
    let looks_numeric = digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || b == b'-' || b == b'+')
        && digits.bytes().any(|b| b.is_ascii_digit());
    if looks_numeric && !digits.contains("--") {
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(text.to_string())
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        let col = mark.col() + 1;
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let value = if style == TScalarStyle::Plain {
                    resolve_plain(&text)
                } else {
                    Value::Str(text)
                };
                let node = Node { value, line, col };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq {
                    node: Node {
                        value: Value::Seq(Vec::new()),
                        line,
                        col,
                    },
                    anchor,
                });
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map {
                    node: Node {
                        value: Value::Map(Vec::new()),
                        line,
                        col,
                    },
                    anchor,
                    pending_key: None,
                    merged: Vec::new(),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = self.stack.pop() {
                    let (node, anchor) = match frame {
                        Frame::Seq { node, anchor } => (node, anchor),
                        Frame::Map {
                            mut node,
                            anchor,
                            merged,
                            ..
                        } => {
                            if let Value::Map(entries) = &mut node.value {
                                for (k, v) in merged {
                                    if !entries.iter().any(|(existing, _)| existing.value == k.value) {
                                        entries.push((k, v));
                                    }
                                }
                            }
                            (node, anchor)
                        }
                    };
                    if anchor > 0 {
                        self.anchors.insert(anchor, node.clone());
                    }
                    self.push_value(node);
                }
            }
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some(found) => Node {
                        value: found.value.clone(),
                        line,
                        col,
                    },
                    None => Node {
                        value: Value::Null,
                        line,
                        col,
                    },
                };
                self.push_value(node);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_lines_and_types() {
        let docs = parse_str("a: 1\nb:\n  - x\n  - 'true'\n  - true\nc: 2024-11-11\nd: 1.5\ne: ~\n").unwrap();
        let root = &docs[0];
        assert_eq!(root.get("a").unwrap().value, Value::Int(1));
        let b = root.get("b").unwrap();
        assert_eq!(b.line, 3);
        let Value::Seq(items) = &b.value else {
            panic!("not a seq")
        };
        assert_eq!(items[1].value, Value::Str("true".into()));
        assert_eq!(items[2].value, Value::Bool(true));
        assert_eq!(items[2].line, 5);
        assert_eq!(root.get("c").unwrap().as_str(), Some("2024-11-11"));
        assert_eq!(root.get("d").unwrap().value, Value::Float(1.5));
        assert_eq!(root.get("e").unwrap().value, Value::Null);
    }

    #[test]
    fn anchors_and_merge_keys() {
        let docs = parse_str("base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n").unwrap();
        let derived = docs[0].get("derived").unwrap();
        assert_eq!(derived.get("x").unwrap().value, Value::Int(1));
        assert_eq!(derived.get("y").unwrap().value, Value::Int(3));
    }

    #[test]
    fn syntax_errors_and_duplicates_have_lines() {
        let err = parse_str("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
        let err = parse_str("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("duplicate key `a`"));
    }
}
