//! Reads the DAGs folder into the store: new and changed files become new DAG versions, deleted ones make
//! their DAGs stale, broken ones become import errors. Cheap to call every few seconds: files are only
//! re-read when their modification times or sizes change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use chrono::Utc;
use engine::operators::OperatorRegistry;
use engine::parse::{load_folder, FolderOptions, ParsedFile, IGNORE_FILE};
use engine::store::{Store, SyncReport};
use tracing::{info, warn};

use crate::Result;

/// Remembers the folder's last seen state.
pub struct DagProcessor {
    folder: PathBuf,
    options: FolderOptions,
    registry: OperatorRegistry,
    paused_at_creation: bool,
    fingerprint: Option<BTreeMap<PathBuf, (SystemTime, u64)>>,
}

/// What one pass found.
#[derive(Debug, Default)]
pub struct ProcessReport {
    pub changed: bool,
    pub files: Vec<ParsedFile>,
    pub sync: SyncReport,
    pub parse_time: std::time::Duration,
}

impl DagProcessor {
    pub fn new(
        folder: &Path,
        options: FolderOptions,
        registry: OperatorRegistry,
        paused_at_creation: bool,
    ) -> DagProcessor {
        DagProcessor {
            folder: folder.to_path_buf(),
            options,
            registry,
            paused_at_creation,
            fingerprint: None,
        }
    }

    /// Re-reads the folder if anything in it changed and records the result in the store.
    pub async fn process(&mut self, store: &Store) -> Result<ProcessReport> {
        let fingerprint = fingerprint(&self.folder);
        if self.fingerprint.as_ref() == Some(&fingerprint) {
            return Ok(ProcessReport::default());
        }
        let started = Instant::now();
        let folder = self.folder.clone();
        let registry = self.registry.clone();
        let options = self.options;
        let files = tokio::task::spawn_blocking(move || load_folder(&folder, &options, &registry))
            .await
            .unwrap_or_default();
        let parse_time = started.elapsed();
        for file in &files {
            for warning in &file.warnings {
                warn!(file = %file.path, "{warning}");
            }
            for error in &file.errors {
                warn!(file = %file.path, "dag file error: {error}");
            }
        }
        let sync = store.sync_dags(&files, self.paused_at_creation, Utc::now()).await?;
        if !sync.new_versions.is_empty() {
            info!(dags = ?sync.new_versions, "new dag versions");
        }
        if !sync.stale.is_empty() {
            info!(dags = ?sync.stale, "dags no longer defined by any file");
        }
        self.fingerprint = Some(fingerprint);
        Ok(ProcessReport {
            changed: true,
            files,
            sync,
            parse_time,
        })
    }
}

fn fingerprint(folder: &Path) -> BTreeMap<PathBuf, (SystemTime, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml")
                || path.file_name().is_some_and(|name| name == IGNORE_FILE)
            {
                out.insert(path, (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len()));
            }
        }
    }
    out
}
