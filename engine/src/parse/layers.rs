//! `defaults.yml` layers: which files lie between the DAGs folder and a file, and one layer's keys.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::DagFileError;
use crate::yaml::{Node, Value};

use super::context::file_error;

pub(super) fn defaults_files(root: &Path, path: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut current = path.parent();
    while let Some(dir) = current {
        dirs.push(dir.to_path_buf());
        if dir == root || !dir.starts_with(root) {
            break;
        }
        current = dir.parent();
    }
    dirs.reverse();
    dirs.into_iter()
        .flat_map(|dir| [dir.join("defaults.yml"), dir.join("defaults.yaml")])
        .filter(|candidate| candidate.is_file())
        .collect()
}

/// One layer of DAG-level keys, and the file each key came from.
pub(super) type Layer = Vec<(String, Node, String)>;

pub(super) fn layer_entries(file: &str, node: &Node) -> Result<Layer, Box<DagFileError>> {
    let Some(entries) = node.as_map() else {
        return Err(Box::new(file_error(
            file,
            Some(node.line),
            format!("expected a mapping, got {}", node.kind()),
        )));
    };
    Ok(entries
        .iter()
        .map(|(k, v)| (k.key_text().unwrap_or_default(), v.clone(), file.to_string()))
        .collect())
}

/// dag-factory's merge of a file's `default:` block into one DAG (its `merge_configs`): the DAG's entries win;
/// a key only in `default` is added; where both hold a mapping, the two merge the same way, all the way down.
/// A typed value (`__type__`) is one value, never merged field by field.
pub(super) fn merge_default(dag: &Node, default: &Node) -> Node {
    let (Some(own), Some(defaults)) = (mergeable(dag), mergeable(default)) else {
        return dag.clone();
    };
    let mut entries: Vec<(Node, Node)> = own.to_vec();
    let mut index: HashMap<Option<String>, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.key_text(), i))
        .collect();
    for (key, value) in defaults {
        match index.get(&key.key_text()) {
            Some(&i) => entries[i].1 = merge_default(&entries[i].1, value),
            None => {
                index.insert(key.key_text(), entries.len());
                entries.push((key.clone(), value.clone()));
            }
        }
    }
    Node {
        value: Value::Map(entries),
        line: dag.line,
        col: dag.col,
    }
}

fn mergeable(node: &Node) -> Option<&[(Node, Node)]> {
    node.as_map().filter(|_| node.get("__type__").is_none())
}
