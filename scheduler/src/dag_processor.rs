//! Reads the DAGs folder into the store: new and changed files become new DAG versions, deleted ones make
//! their DAGs stale, broken ones become import errors. Cheap to call every few seconds: files are only
//! re-read when their modification times or sizes change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use chrono::Utc;
use engine::error::{DagFileError, Location};
use engine::operators::OperatorRegistry;
use engine::parse::{load_folder, FolderOptions, ParsedFile, IGNORE_FILE};
use engine::store::{Store, SyncReport};
use tracing::{info, warn};

use crate::{git_sync, Result};

/// Remembers the folder's last seen state.
pub struct DagProcessor {
    folder: PathBuf,
    options: FolderOptions,
    registry: OperatorRegistry,
    paused_at_creation: bool,
    /// The root of a git sync whose errors show as import errors.
    git_root: Option<PathBuf>,
    fingerprint: Option<Fingerprint>,
}

/// The folder's files by modification time and size, and the commit it is at.
type Fingerprint = (BTreeMap<PathBuf, (SystemTime, u64)>, Option<String>);

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
            git_root: None,
            fingerprint: None,
        }
    }

    /// Shows the errors of the git sync rooted at `root` as import errors (see [`crate::git_sync`]).
    pub fn with_git_root(mut self, root: &Path) -> DagProcessor {
        self.git_root = Some(root.to_path_buf());
        self
    }

    /// Re-reads the folder if anything in it changed and records the result in the store.
    pub async fn process(&mut self, store: &Store) -> Result<ProcessReport> {
        let mut fingerprint = self.fingerprint();
        if self.fingerprint.as_ref() == Some(&fingerprint) {
            return Ok(ProcessReport::default());
        }
        let started = Instant::now();
        let Some((mut files, commit)) = self.read_at_one_commit(&mut fingerprint).await else {
            // The checkout kept switching under the read: read again next pass.
            return Ok(ProcessReport::default());
        };
        // A git-synced folder with no checkout yet (first start, no network): the files read are not the
        // DAGs folder, so no DAG is made stale for being absent; only the sync's error is recorded.
        let complete = self.git_root.is_none() || commit.is_some();
        if let Some(error) = self.git_root.as_deref().and_then(git_sync::layout::read_status) {
            files.push(ParsedFile {
                path: format!("git {}", error.source),
                errors: vec![DagFileError {
                    location: Location {
                        file: format!("git {}", error.source),
                        ..Default::default()
                    },
                    message: format!(
                        "the repository cannot be synced, DAGs stay as last read: {}",
                        error.message
                    ),
                }],
                ..Default::default()
            });
        }
        let parse_time = started.elapsed();
        for file in &files {
            for warning in &file.warnings {
                warn!(file = %file.path, "{warning}");
            }
            for error in &file.errors {
                warn!(file = %file.path, "dag file error: {error}");
            }
        }
        let sync = store
            .sync_dags(&files, self.paused_at_creation, commit.as_deref(), complete, Utc::now())
            .await?;
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

impl DagProcessor {
    fn fingerprint(&self) -> Fingerprint {
        let mut files = fingerprint(&self.folder);
        if let Some(root) = &self.git_root {
            let status = git_sync::layout::status_file(root);
            if let Ok(meta) = std::fs::metadata(&status) {
                files.insert(status, (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len()));
            }
        }
        (files, git_sync::folder_commit(&self.folder))
    }

    /// Reads the folder, and the commit its files came from: a sync that switched commits during the read is
    /// read again (at most three times, then None), so no DAG version is recorded with a commit it did not
    /// come from.
    async fn read_at_one_commit(&self, fingerprint: &mut Fingerprint) -> Option<(Vec<ParsedFile>, Option<String>)> {
        let mut tries = 0;
        loop {
            let before = fingerprint.1.clone();
            let folder = self.folder.clone();
            let registry = self.registry.clone();
            let options = self.options;
            let files = tokio::task::spawn_blocking(move || load_folder(&folder, &options, &registry))
                .await
                .unwrap_or_default();
            let after = git_sync::folder_commit(&self.folder);
            tries += 1;
            if after == before {
                return Some((files, after));
            }
            if tries == 3 {
                return None;
            }
            *fingerprint = self.fingerprint();
        }
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
