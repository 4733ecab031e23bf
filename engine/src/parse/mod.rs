//! DAG files in dag-factory's shape, read into [`DagSpec`]s with errors that name file, line, DAG, task and key.
//!
//! Layers, lowest first: every `defaults.yml` from the DAGs folder down to the file's folder, the file's
//! `default:` block, the DAG's own keys. `default_args` merge key by key across layers.

mod context;
mod dag;
mod groups;
mod layers;
mod task;
mod task_list;
mod values;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{DagFileError, Location};
use crate::operators::OperatorRegistry;
use crate::spec::DagSpec;
use crate::yaml::{self, Node, Value};

use context::{file_error, DagCtx};
use layers::{defaults_files, layer_entries, Layer};

/// The outcome of reading one DAG file.
#[derive(Debug, Clone, Default)]
pub struct ParsedFile {
    pub path: String,
    pub dags: Vec<DagSpec>,
    pub errors: Vec<DagFileError>,
    pub warnings: Vec<DagFileError>,
}

/// Reads every `*.yaml` / `*.yml` DAG file under `folder` (recursively; `defaults.yml` files are layers, not
/// DAGs). One broken file never hides the others. DAG ids defined twice are errors in the later file.
pub fn load_folder(folder: &Path, registry: &OperatorRegistry) -> Vec<ParsedFile> {
    let mut files = Vec::new();
    collect_files(folder, &mut files);
    files.sort();
    let mut out: Vec<ParsedFile> = files.iter().map(|path| parse_path(folder, path, registry)).collect();
    let mut seen: HashMap<String, String> = HashMap::new();
    for parsed in &mut out {
        let mut duplicates = Vec::new();
        for dag in &parsed.dags {
            if let Some(first) = seen.get(&dag.dag_id) {
                duplicates.push(DagFileError {
                    location: Location {
                        file: parsed.path.clone(),
                        dag_id: Some(dag.dag_id.clone()),
                        ..Default::default()
                    },
                    message: format!("dag `{}` is already defined in {first}", dag.dag_id),
                });
            } else {
                seen.insert(dag.dag_id.clone(), parsed.path.clone());
            }
        }
        if !duplicates.is_empty() {
            parsed.errors.extend(duplicates);
            parsed.dags.clear();
        }
    }
    out
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, out);
        } else if (name.ends_with(".yaml") || name.ends_with(".yml")) && !is_defaults_file(&path) {
            out.push(path);
        }
    }
}

/// Reads one file, with the `defaults.yml` layers between `root` and it.
pub fn parse_path(root: &Path, path: &Path, registry: &OperatorRegistry) -> ParsedFile {
    let display = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            return ParsedFile {
                path: display.clone(),
                errors: vec![file_error(&display, None, format!("cannot read file: {err}"))],
                ..Default::default()
            }
        }
    };
    let (layers, errors) = read_layers(root, path);
    let mut parsed = parse_text(&display, &text, &layers, registry);
    parsed.errors.splice(0..0, errors);
    if !parsed.errors.is_empty() {
        parsed.dags.clear();
    }
    parsed
}

/// Whether `path` is a `defaults.yml` layer rather than a DAG file.
pub fn is_defaults_file(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name == "defaults.yml" || name == "defaults.yaml")
}

/// Checks a `defaults.yml` named on its own (`dags validate dags/dev/defaults.yml`) as the layer it is: with
/// the layers above it from `root`, applied to a DAG of one `empty` task, so every key it sets is read and
/// checked as it would be for the DAG files in its folder and below. Its result holds no DAGs.
pub fn check_defaults(root: &Path, path: &Path, registry: &OperatorRegistry) -> ParsedFile {
    const PROBE: &str = "defaults_check";
    let display = path.display().to_string();
    let (layers, errors) = read_layers(root, path);
    let probe = format!("{PROBE}:\n  tasks:\n    {PROBE}: {{operator: empty}}\n");
    let mut parsed = parse_text(&display, &probe, &layers, registry);
    parsed.dags.clear();
    for problem in parsed.errors.iter_mut().chain(parsed.warnings.iter_mut()) {
        if problem.location.dag_id.as_deref() == Some(PROBE) {
            problem.location.dag_id = None;
        }
        if problem.location.task_id.as_deref() == Some(PROBE) {
            problem.location.task_id = None;
        }
    }
    parsed.errors.splice(0..0, errors);
    parsed
}

/// The `defaults.yml` documents between `root` and `path`, lowest first, and the files that could not be read.
fn read_layers(root: &Path, path: &Path) -> (Vec<(String, Node)>, Vec<DagFileError>) {
    let mut layers = Vec::new();
    let mut errors = Vec::new();
    for defaults in defaults_files(root, path) {
        match std::fs::read_to_string(&defaults)
            .map_err(|err| err.to_string())
            .and_then(|t| yaml::parse_str(&t).map_err(|err| format!("line {}: {}", err.line, err.message)))
        {
            Ok(docs) => layers.extend(docs.into_iter().map(|node| (defaults.display().to_string(), node))),
            Err(message) => errors.push(file_error(&defaults.display().to_string(), None, message)),
        }
    }
    (layers, errors)
}

/// Reads DAGs from the text of one file. `layers` are `defaults.yml` documents (lowest first) with their paths.
pub fn parse_text(file: &str, text: &str, layers: &[(String, Node)], registry: &OperatorRegistry) -> ParsedFile {
    let mut parsed = ParsedFile {
        path: file.to_string(),
        ..Default::default()
    };
    let docs = match yaml::parse(text) {
        Ok(read) => {
            for (line, message) in read.warnings {
                parsed.warnings.push(file_error(file, Some(line), message));
            }
            read.docs
        }
        Err(err) => {
            parsed.errors.push(file_error(
                file,
                Some(err.line),
                format!("invalid YAML: {}", err.message),
            ));
            return parsed;
        }
    };
    let mut base: Vec<Layer> = Vec::new();
    for (layer_file, node) in layers {
        match layer_entries(layer_file, node) {
            Ok(entries) => base.push(entries),
            Err(err) => parsed.errors.push(*err),
        }
    }
    for doc in &docs {
        if doc.value == Value::Null {
            continue;
        }
        let Some(entries) = doc.as_map() else {
            parsed.errors.push(file_error(
                file,
                Some(doc.line),
                format!("expected a mapping of dag ids to DAGs, got {}", doc.kind()),
            ));
            continue;
        };
        let mut file_default: Option<Layer> = None;
        if let Some(default) = doc.get("default") {
            match layer_entries(file, default) {
                Ok(entries) => file_default = Some(entries),
                Err(err) => parsed.errors.push(*err),
            }
        }
        for (key, value) in entries {
            let Some(dag_id) = key.key_text() else {
                parsed
                    .errors
                    .push(file_error(file, Some(key.line), "a dag id must be a string"));
                continue;
            };
            if dag_id == "default" {
                continue;
            }
            let mut stack: Vec<&Layer> = base.iter().collect();
            if let Some(layer) = &file_default {
                stack.push(layer);
            }
            let own = match layer_entries(file, value) {
                Ok(entries) => entries,
                Err(mut err) => {
                    err.location.dag_id = Some(dag_id.clone());
                    parsed.errors.push(*err);
                    continue;
                }
            };
            stack.push(&own);
            let mut ctx = DagCtx {
                file,
                dag_id: dag_id.clone(),
                errors: Vec::new(),
                warnings: Vec::new(),
                registry,
            };
            if let Some(dag) = ctx.build(&stack, key.line) {
                if ctx.errors.is_empty() {
                    parsed.dags.push(dag);
                }
            }
            parsed.errors.extend(ctx.errors);
            parsed.warnings.extend(ctx.warnings);
        }
    }
    parsed
}

/// Ids of the DAGs in a set of parsed files, to tell which stored DAGs lost their file.
pub fn dag_ids(files: &[ParsedFile]) -> HashSet<String> {
    files
        .iter()
        .flat_map(|f| f.dags.iter().map(|d| d.dag_id.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
