//! DAG files in dag-factory's shape, read into [`DagSpec`]s with errors that name file, line, DAG, task and key.
//!
//! Layers, lowest first: every `defaults.yml` from the DAGs folder down to the file's folder, the file's
//! `default:` block, the DAG's own keys. `default_args` merge key by key across layers.

mod context;
mod dag;
mod groups;
mod ignore;
mod layers;
mod limits;
mod task;
mod task_list;
mod task_mapping;
mod task_values;
mod typed;
mod values;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

pub use ignore::{IgnoreSyntax, IGNORE_FILE};
pub use limits::{FolderOptions, Limits, DEFAULT_IMPORT_TIMEOUT, DEFAULT_MAX_FILE_BYTES};

use crate::error::{DagFileError, Location};
use crate::operators::OperatorRegistry;
use crate::spec::DagSpec;
use crate::yaml::{self, Node, Value};

use context::{file_error, DagCtx};
use layers::{defaults_files, layer_entries, merge_default, Layer};

/// The outcome of reading one DAG file.
#[derive(Debug, Clone, Default)]
pub struct ParsedFile {
    pub path: String,
    pub dags: Vec<DagSpec>,
    pub errors: Vec<DagFileError>,
    pub warnings: Vec<DagFileError>,
}

/// Reads every `*.yaml` / `*.yml` DAG file under `folder` (recursively; `defaults.yml` files are layers, not
/// DAGs; what `.airflowignore` files match is skipped), each within `options.limits`. One broken file never
/// hides the others. DAG ids defined twice are errors in the later file.
pub fn load_folder(folder: &Path, options: &FolderOptions, registry: &OperatorRegistry) -> Vec<ParsedFile> {
    let mut files = Vec::new();
    let mut notes = Vec::new();
    let mut walk = Walk {
        root: folder,
        files: &mut files,
        notes: &mut notes,
        seen: HashSet::new(),
    };
    walk.folder(folder, &ignore::IgnoreRules::new(options.ignore_syntax));
    files.sort();
    let mut out: Vec<ParsedFile> = files
        .iter()
        .map(|path| parse_path(folder, path, options, registry))
        .collect();
    out.extend(notes);
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

/// A walk of the DAGs folder: the DAG files found, one note per `.airflowignore` with patterns that were
/// skipped, and the folders entered (by their real paths: a symbolic link back up is not followed twice).
struct Walk<'a> {
    root: &'a Path,
    files: &'a mut Vec<PathBuf>,
    notes: &'a mut Vec<ParsedFile>,
    seen: HashSet<PathBuf>,
}

impl Walk<'_> {
    fn folder(&mut self, dir: &Path, inherited: &ignore::IgnoreRules) {
        if !self
            .seen
            .insert(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()))
        {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let (rules, skipped) = inherited.enter(dir);
        if !skipped.is_empty() {
            let display = dir.join(IGNORE_FILE).display().to_string();
            self.notes.push(ParsedFile {
                path: display.clone(),
                warnings: skipped
                    .into_iter()
                    .map(|(line, message)| file_error(&display, Some(line), message))
                    .collect(),
                ..Default::default()
            });
        }
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                if !rules.ignores(self.root, &path, true) {
                    self.folder(&path, &rules);
                }
            } else if (name.ends_with(".yaml") || name.ends_with(".yml"))
                && !is_defaults_file(&path)
                && !rules.ignores(self.root, &path, false)
            {
                self.files.push(path);
            }
        }
    }
}

/// Reads one file within `limits`, with the `defaults.yml` layers between `root` and it.
pub fn parse_path(root: &Path, path: &Path, options: &FolderOptions, registry: &OperatorRegistry) -> ParsedFile {
    let limits = &options.limits;
    let display = path.display().to_string();
    let budget = budget(limits);
    let text = match read_limited(path, limits) {
        Ok(text) => text,
        Err(message) => {
            return ParsedFile {
                path: display.clone(),
                errors: vec![file_error(&display, None, message)],
                ..Default::default()
            }
        }
    };
    let (layers, errors) = read_layers(root, path, limits, budget);
    let mut parsed = parse_text_within(&display, &text, &layers, budget, options.cron_data_intervals, registry);
    parsed.errors.splice(0..0, errors);
    if !parsed.errors.is_empty() {
        parsed.dags.clear();
    }
    limit_problems(&mut parsed, limits.max_errors);
    parsed
}

/// The YAML budget of one file read from now.
fn budget(limits: &Limits) -> yaml::Budget {
    yaml::Budget {
        max_depth: limits.max_depth,
        deadline: Some(std::time::Instant::now() + limits.import_timeout),
        timeout: limits.import_timeout,
    }
}

/// The text of a file no larger than `limits.max_file_bytes`.
fn read_limited(path: &Path, limits: &Limits) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|err| format!("cannot read file: {err}"))?;
    let mut bytes = Vec::new();
    file.take(limits.max_file_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read file: {err}"))?;
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(format!(
            "the file is larger than {} bytes (dag_file_max_bytes); it is not read",
            limits.max_file_bytes
        ));
    }
    String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text; it is not read".to_string())
}

/// Keeps the first `max` errors and warnings of a file, and says how many more there were.
fn limit_problems(parsed: &mut ParsedFile, max: usize) {
    let path = parsed.path.clone();
    limits::keep_first(&mut parsed.errors, max, |more| {
        file_error(
            &path,
            None,
            format!("{more} more errors in this file (only the first {max} are kept)"),
        )
    });
    limits::keep_first(&mut parsed.warnings, max, |more| {
        file_error(
            &path,
            None,
            format!("{more} more warnings in this file (only the first {max} are kept)"),
        )
    });
}

/// Whether `path` is a `defaults.yml` layer rather than a DAG file.
pub fn is_defaults_file(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name == "defaults.yml" || name == "defaults.yaml")
}

/// Checks a `defaults.yml` named on its own (`dags validate dags/dev/defaults.yml`) as the layer it is: with
/// the layers above it from `root`, applied to a DAG of one `empty` task, so every key it sets is read and
/// checked as it would be for the DAG files in its folder and below. Its result holds no DAGs.
pub fn check_defaults(root: &Path, path: &Path, limits: &Limits, registry: &OperatorRegistry) -> ParsedFile {
    const PROBE: &str = "defaults_check";
    let display = path.display().to_string();
    let budget = budget(limits);
    let (layers, errors) = read_layers(root, path, limits, budget);
    let probe = format!("{PROBE}:\n  tasks:\n    {PROBE}: {{operator: empty}}\n");
    let mut parsed = parse_text_within(&display, &probe, &layers, budget, false, registry);
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
    limit_problems(&mut parsed, limits.max_errors);
    parsed
}

/// The `defaults.yml` documents between `root` and `path`, lowest first, and the files that could not be read.
fn read_layers(
    root: &Path,
    path: &Path,
    limits: &Limits,
    budget: yaml::Budget,
) -> (Vec<(String, Node)>, Vec<DagFileError>) {
    let mut layers = Vec::new();
    let mut errors = Vec::new();
    for defaults in defaults_files(root, path) {
        let display = defaults.display().to_string();
        match read_limited(&defaults, limits)
            .map_err(|message| (None, message))
            .and_then(|text| {
                yaml::parse_within(&text, budget)
                    .map_err(|err| (Some(err.line), format!("invalid YAML: {}", err.message)))
            }) {
            Ok(read) => {
                let docs = read.docs;
                for mut node in docs {
                    let problems = typed::resolve(&mut node);
                    if problems.is_empty() {
                        layers.push((display.clone(), node));
                    }
                    errors.extend(
                        problems
                            .into_iter()
                            .map(|(line, message)| file_error(&display, Some(line), message)),
                    );
                }
            }
            Err((line, message)) => errors.push(file_error(&display, line, message)),
        }
    }
    (layers, errors)
}

/// Reads DAGs from the text of one file. `layers` are `defaults.yml` documents (lowest first) with their paths.
pub fn parse_text(file: &str, text: &str, layers: &[(String, Node)], registry: &OperatorRegistry) -> ParsedFile {
    parse_text_within(file, text, layers, yaml::Budget::default(), false, registry)
}

fn parse_text_within(
    file: &str,
    text: &str,
    layers: &[(String, Node)],
    budget: yaml::Budget,
    cron_data_intervals: bool,
    registry: &OperatorRegistry,
) -> ParsedFile {
    let mut parsed = ParsedFile {
        path: file.to_string(),
        ..Default::default()
    };
    let mut docs = match yaml::parse_within(text, budget) {
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
    // Each cause once per file: a bad key in a `defaults.yml` or in `default:` is one error, for no DAG in
    // particular, however many DAGs inherit it.
    let mut causes: HashMap<Cause, usize> = HashMap::new();
    let mut warning_causes: HashMap<Cause, usize> = HashMap::new();
    let mut base: Vec<Layer> = Vec::new();
    for (layer_file, node) in layers {
        match layer_entries(layer_file, node) {
            Ok(entries) => base.push(entries),
            Err(err) => parsed.errors.push(*err),
        }
    }
    for doc in &mut docs {
        if doc.value == Value::Null {
            continue;
        }
        // dag-factory builds typed values file by file; a problem belongs to the DAG (or `default:`) it is in.
        let mut broken: HashSet<usize> = HashSet::new();
        if let Value::Map(entries) = &mut doc.value {
            for (index, (key, value)) in entries.iter_mut().enumerate() {
                let problems = typed::resolve(value);
                if problems.is_empty() {
                    continue;
                }
                broken.insert(index);
                let dag_id = key.key_text().filter(|id| id != "default");
                parsed.errors.extend(problems.into_iter().map(|(line, message)| {
                    let mut error = file_error(file, Some(line), message);
                    error.location.dag_id = dag_id.clone();
                    error
                }));
            }
        }
        let doc = &*doc;
        let Some(entries) = doc.as_map() else {
            parsed.errors.push(file_error(
                file,
                Some(doc.line),
                format!("expected a mapping of dag ids to DAGs, got {}", doc.kind()),
            ));
            continue;
        };
        let file_default = doc.get("default");
        if let Some(default) = file_default {
            if let Err(err) = layer_entries(file, default) {
                parsed.errors.push(*err);
            }
        }
        if entries
            .iter()
            .position(|(k, _)| k.as_str() == Some("default"))
            .is_some_and(|i| broken.contains(&i))
        {
            // The `default:` block's own errors stand for every DAG of the file.
            continue;
        }
        for (index, (key, value)) in entries.iter().enumerate() {
            if broken.contains(&index) {
                continue;
            }
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
            // dag-factory merges the file's `default:` into each DAG all the way down (mappings key by key,
            // the DAG's values winning), so dict-form `tasks` or `params` in `default:` add to the DAG's.
            let merged = match file_default {
                Some(default) if default.as_map().is_some() && value.as_map().is_some() => {
                    merge_default(value, default)
                }
                _ => value.clone(),
            };
            let own = match layer_entries(file, &merged) {
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
                causes: HashMap::new(),
                cron_data_intervals,
            };
            if let Some(dag) = ctx.build(&stack, key.line) {
                if ctx.errors.is_empty() {
                    parsed.dags.push(dag);
                }
            }
            merge_causes(&mut parsed.errors, &mut causes, ctx.errors);
            merge_causes(&mut parsed.warnings, &mut warning_causes, ctx.warnings);
            if budget.deadline.is_some_and(|at| std::time::Instant::now() > at) {
                parsed.errors.push(file_error(
                    file,
                    Some(key.line),
                    format!(
                        "reading the file took longer than {:?} (dagbag_import_timeout); it is not read further",
                        budget.timeout
                    ),
                ));
                parsed.dags.clear();
                return parsed;
            }
        }
    }
    parsed
}

/// Where an error is and what it says, without the DAG it was found in.
type Cause = (String, Option<usize>, Option<String>, Option<String>, String);

/// Adds one DAG's errors (or warnings) to a file's: one already there for another DAG loses its DAG id instead
/// of being added again.
fn merge_causes(all: &mut Vec<DagFileError>, causes: &mut HashMap<Cause, usize>, new: Vec<DagFileError>) {
    for error in new {
        let cause = (
            error.location.file.clone(),
            error.location.line,
            error.location.task_id.clone(),
            error.location.key.clone(),
            error.message.clone(),
        );
        match causes.get(&cause) {
            Some(&index) => {
                if all[index].location.dag_id != error.location.dag_id {
                    all[index].location.dag_id = None;
                }
            }
            None => {
                causes.insert(cause, all.len());
                all.push(error);
            }
        }
    }
}

/// Ids of the DAGs in a set of parsed files, to tell which stored DAGs lost their file.
pub fn dag_ids(files: &[ParsedFile]) -> HashSet<String> {
    files
        .iter()
        .flat_map(|f| f.dags.iter().map(|d| d.dag_id.clone()))
        .collect()
}

#[cfg(test)]
mod dag_factory_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
