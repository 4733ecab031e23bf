//! A YAML tree that remembers the line of every node, so errors in DAG files can name the line.
//!
//! Built on yaml-rust2's event parser, and reading what PyYAML (dag-factory's reader) reads: plain scalars
//! resolve by YAML 1.1's rules as PyYAML's resolver does (`yes`/`no`/`on`/`off` are booleans, `0o17` and `1e3`
//! are strings, `0777` is octal, `1_000` and `1:30` are integers); quoted scalars are strings; dates stay
//! strings. Anchors, aliases and `<<` merge keys work; a key given twice keeps its last value (with a warning);
//! a flow collection may close at its key's indentation. Alias expansion is bounded (no "billion laughs").
//! `dagctl/tests/yaml_parity.rs` compares the trees with PyYAML's.

mod flow;
mod scalar;

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use flow::indent_flow_lines;
use scalar::{resolve_plain, tagged};

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

/// The most nodes that aliases may copy in one text (PyYAML users bound the same against "billion laughs";
/// a DAG file needs a tiny fraction of it).
pub const MAX_ALIAS_NODES: usize = 1_000_000;

/// Every document of a YAML text, and what it says that may not be meant (a key given twice: line, message).
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub docs: Vec<Node>,
    pub warnings: Vec<(usize, String)>,
}

/// How deep lists and mappings may nest by default (PyYAML has no bound of its own, but Python's recursion
/// limit stops its constructor a few hundred levels down).
pub const MAX_DEPTH: usize = 100;

/// What one read may cost: nesting depth, and a time by which it must be done.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub max_depth: usize,
    pub deadline: Option<std::time::Instant>,
    /// The time the deadline allowed, for the error.
    pub timeout: std::time::Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_depth: MAX_DEPTH,
            deadline: None,
            timeout: std::time::Duration::ZERO,
        }
    }
}

/// Parses every document of a YAML text.
pub fn parse_str(text: &str) -> Result<Vec<Node>, SyntaxError> {
    parse(text).map(|parsed| parsed.docs)
}

/// Parses every document of a YAML text, with its warnings.
pub fn parse(text: &str) -> Result<Parsed, SyntaxError> {
    parse_within(text, Budget::default())
}

/// Parses every document of a YAML text within `budget`.
pub fn parse_within(text: &str, budget: Budget) -> Result<Parsed, SyntaxError> {
    match parse_once(text, budget) {
        // PyYAML ignores indentation inside `[...]` and `{...}`, so `]` may stand under its key; yaml-rust2 does
        // not. Such a text is read again with its flow lines indented (a change of columns only).
        Err(err) if err.message.contains("indentation") => match indent_flow_lines(text) {
            Some(indented) => parse_once(&indented, budget).map_err(|_| err),
            None => Err(err),
        },
        other => other,
    }
}

fn parse_once(text: &str, budget: Budget) -> Result<Parsed, SyntaxError> {
    let mut builder = Builder {
        budget,
        ..Default::default()
    };
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|err| SyntaxError {
        line: err.marker().line(),
        message: err.info().to_string(),
    })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(Parsed {
        docs: builder.docs,
        warnings: builder.warnings,
    })
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
        /// Where each key is in the mapping's entries (keys that are lists or mappings are not indexed).
        index: HashMap<KeyId, usize>,
    },
}

/// A scalar key as PyYAML compares keys: by type and value (`1` and `"1"` are two keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyId {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(String),
}

impl KeyId {
    fn of(node: &Node) -> Option<KeyId> {
        Some(match &node.value {
            Value::Null => KeyId::Null,
            Value::Bool(b) => KeyId::Bool(*b),
            Value::Int(n) => KeyId::Int(*n),
            Value::Float(f) => KeyId::Float(if *f == 0.0 { 0 } else { f.to_bits() }),
            Value::Str(text) => KeyId::Str(text.clone()),
            Value::Seq(_) | Value::Map(_) => return None,
        })
    }
}

/// The position of `key` among `entries`: by `index` for scalar keys, else by comparing.
fn find_key(entries: &[(Node, Node)], index: &HashMap<KeyId, usize>, key: &Node) -> Option<usize> {
    match KeyId::of(key) {
        Some(id) => index.get(&id).copied(),
        None => entries.iter().position(|(k, _)| k.value == key.value),
    }
}

#[derive(Default)]
struct Builder {
    docs: Vec<Node>,
    stack: Vec<Frame>,
    /// Anchored nodes with their sizes in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes copied by aliases so far.
    aliased: usize,
    error: Option<SyntaxError>,
    warnings: Vec<(usize, String)>,
    budget: Budget,
    /// Events seen, to look at the clock every few thousand.
    events: usize,
}

/// How many nodes a tree holds.
fn size(node: &Node) -> usize {
    1 + match &node.value {
        Value::Seq(items) => items.iter().map(size).sum(),
        Value::Map(entries) => entries.iter().map(|(k, v)| size(k) + size(v)).sum(),
        _ => 0,
    }
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
                index,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    if let Value::Map(entries) = &mut map.value {
                        if key.as_str() == Some("<<") {
                            merge_into(merged, &node);
                        } else if let Some(existing) = find_key(entries, index, &key).map(|i| &mut entries[i]) {
                            self.warnings.push((
                                key.line,
                                format!(
                                    "duplicate key `{}` (first at line {}): the last one counts, as PyYAML reads it",
                                    key.key_text().unwrap_or_default(),
                                    existing.0.line
                                ),
                            ));
                            existing.1 = node;
                        } else {
                            if let Some(id) = KeyId::of(&key) {
                                index.insert(id, entries.len());
                            }
                            entries.push((key, node));
                        }
                    }
                }
            },
        }
    }
}

/// `<<: *anchor` or `<<: [*a, *b]`: collects the keys to merge (the first source with a key gives its
/// value); explicit keys of the mapping win.
fn merge_into(entries: &mut Vec<(Node, Node)>, source: &Node) {
    let sources: Vec<&Node> = match &source.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![source],
    };
    let mut index: HashMap<KeyId, usize> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, (k, _))| KeyId::of(k).map(|id| (id, i)))
        .collect();
    for src in sources {
        if let Value::Map(src_entries) = &src.value {
            for (k, v) in src_entries {
                if find_key(entries, &index, k).is_none() {
                    if let Some(id) = KeyId::of(k) {
                        index.insert(id, entries.len());
                    }
                    entries.push((k.clone(), v.clone()));
                }
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        let col = mark.col() + 1;
        if self.error.is_some() {
            return;
        }
        self.events += 1;
        if self.events.is_multiple_of(4096) && self.budget.deadline.is_some_and(|at| std::time::Instant::now() > at) {
            self.error = Some(SyntaxError {
                line,
                message: format!(
                    "reading the file took longer than {:?} (dagbag_import_timeout); the file is not read",
                    self.budget.timeout
                ),
            });
            return;
        }
        if matches!(event, Event::SequenceStart(..) | Event::MappingStart(..))
            && self.stack.len() >= self.budget.max_depth
        {
            self.error = Some(SyntaxError {
                line,
                message: format!(
                    "lists and mappings nest deeper than {} levels here; the file is not read",
                    self.budget.max_depth
                ),
            });
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = match tag {
                    Some(tag) => match tagged(&tag.handle, &tag.suffix, text) {
                        Ok(value) => value,
                        Err(message) => {
                            if self.error.is_none() {
                                self.error = Some(SyntaxError { line, message });
                            }
                            Value::Null
                        }
                    },
                    None if style == TScalarStyle::Plain => resolve_plain(&text),
                    None => Value::Str(text),
                };
                let node = Node { value, line, col };
                if anchor > 0 {
                    self.anchors.insert(anchor, (node.clone(), 1));
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
                    index: HashMap::new(),
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
                            index,
                            ..
                        } => {
                            if let Value::Map(entries) = &mut node.value {
                                for (k, v) in merged {
                                    if find_key(entries, &index, &k).is_none() {
                                        entries.push((k, v));
                                    }
                                }
                            }
                            (node, anchor)
                        }
                    };
                    if anchor > 0 {
                        let nodes = size(&node);
                        self.anchors.insert(anchor, (node.clone(), nodes));
                    }
                    self.push_value(node);
                }
            }
            Event::Alias(id) => {
                let found = self.anchors.get(&id).filter(|(_, nodes)| {
                    self.aliased = self.aliased.saturating_add(*nodes);
                    self.aliased <= MAX_ALIAS_NODES
                });
                if found.is_none() && self.aliased > MAX_ALIAS_NODES && self.error.is_none() {
                    self.error = Some(SyntaxError {
                        line,
                        message: format!(
                            "aliases here would copy more than {MAX_ALIAS_NODES} nodes (a YAML alias bomb?); the file is not read"
                        ),
                    });
                }
                let node = match found {
                    Some((found, _)) => Node {
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
    fn syntax_errors_have_lines_and_duplicates_warn_with_pyyaml_s_last_value() {
        let err = parse_str("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
        let parsed = parse("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(parsed.docs[0].get("a").unwrap().value, Value::Int(3));
        assert_eq!(parsed.warnings.len(), 1);
        assert_eq!(parsed.warnings[0].0, 3);
        assert!(parsed.warnings[0].1.contains("duplicate key `a` (first at line 1)"));
    }

    #[test]
    fn plain_scalars_resolve_as_pyyaml_s() {
        let cases: &[(&str, Value)] = &[
            ("yes", Value::Bool(true)),
            ("No", Value::Bool(false)),
            ("on", Value::Bool(true)),
            ("OFF", Value::Bool(false)),
            ("y", Value::Str("y".into())),
            ("0777", Value::Int(511)),
            ("0o17", Value::Str("0o17".into())),
            ("0b101", Value::Int(5)),
            ("0x_1F", Value::Int(31)),
            ("1_000", Value::Int(1000)),
            ("-1:30", Value::Int(-90)),
            ("190:20:30", Value::Int(685_230)),
            ("1e3", Value::Str("1e3".into())),
            ("1.0e3", Value::Str("1.0e3".into())),
            ("1.0e+3", Value::Float(1000.0)),
            ("1.", Value::Float(1.0)),
            (".5", Value::Float(0.5)),
            ("-.inf", Value::Float(f64::NEG_INFINITY)),
            ("1:30.5", Value::Float(90.5)),
            ("2024-11-11", Value::Str("2024-11-11".into())),
            ("99999999999999999999", Value::Str("99999999999999999999".into())),
            ("+12", Value::Int(12)),
            ("1.2.3", Value::Str("1.2.3".into())),
            ("08", Value::Str("08".into())),
            ("~", Value::Null),
        ];
        for (text, want) in cases {
            assert_eq!(resolve_plain(text), *want, "{text}");
        }
    }

    #[test]
    fn a_flow_sequence_may_close_at_its_key_s_indentation() {
        let text = "d:\n  tasks:\n    t:\n      dependencies: [\n      a,\n      b\n      ]\n      x: 1\n    u: {\n    k: v\n    }\n";
        assert!(
            parse_once(text, Budget::default()).is_err(),
            "yaml-rust2 alone refuses it"
        );
        let docs = parse_str(text).unwrap();
        let t = docs[0].get("d").unwrap().get("tasks").unwrap().get("t").unwrap();
        assert_eq!(t.get("dependencies").unwrap().to_json(), serde_json::json!(["a", "b"]));
        assert_eq!(t.get("x").unwrap().line, 8);
        let u = docs[0].get("d").unwrap().get("tasks").unwrap().get("u").unwrap();
        assert_eq!(u.get("k").unwrap().as_str(), Some("v"));
        // Brackets in quotes, comments and block scalars are not flow collections.
        let text = "a: '[x'\nb: |\n  echo [\nc: [1, # ]\n  2\n]\n";
        let docs = parse_str(text).unwrap();
        assert_eq!(docs[0].get("c").unwrap().to_json(), serde_json::json!([1, 2]));
        assert_eq!(docs[0].get("b").unwrap().as_str(), Some("echo [\n"));
    }

    #[test]
    fn an_alias_bomb_is_refused_quickly() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let err = parse_str(&text).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{err:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // Modest reuse is fine.
        assert!(parse_str("base: &b {x: 1}\nc: [*b, *b, *b]\n").is_ok());
    }
}
