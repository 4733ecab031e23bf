//! `defaults.yml` layers: which files lie between the DAGs folder and a file, and one layer's keys.

use std::path::{Path, PathBuf};

use crate::error::DagFileError;
use crate::yaml::Node;

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
