//! DAGs from a git repository (Airflow 3's `GitDagBundle`, git-sync's layout): the scheduler fetches one branch
//! every `interval`, checks each new commit out once into its own folder and switches `ROOT/current` to it in
//! one rename, so the DAG processor never reads half of a commit. The processor records the commit with every
//! DAG version it makes from that folder (see [`layout::folder_commit`]); a sync that fails leaves the last
//! checkout in place and shows as an import error until a sync works again.
//!
//! Credentials: an SSH key file (with a known_hosts file, or hosts trusted on first use and remembered in
//! ROOT/known_hosts) or an HTTPS token file read at every sync (so a rotated token is picked up), sent as a
//! Basic authorization header through git's environment. The `git` program must be installed.

mod command;
pub mod layout;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use command::Git;
pub use layout::{folder_commit, SyncError};

/// How many checkouts besides the current one are kept (a run's bash scripts may still be read from them).
const KEEP_PREVIOUS: usize = 2;

/// `[git]` settings, checked.
#[derive(Debug, Clone)]
pub struct GitSettings {
    pub url: String,
    pub branch: String,
    /// The DAGs folder inside the repository (None: its top).
    pub subdir: Option<PathBuf>,
    pub interval: Duration,
    /// The longest one git command may take.
    pub timeout: Duration,
    /// Where the repository and its checkouts live.
    pub root: PathBuf,
    pub ssh_key_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    /// The user name sent with the token (GitHub takes any; GitLab wants `oauth2`).
    pub username: String,
    pub program: PathBuf,
    /// PATH for git and its helpers.
    pub path: Option<String>,
}

impl GitSettings {
    /// The DAGs folder the processor reads: the current checkout (and the subdirectory in it).
    pub fn dags_folder(&self) -> PathBuf {
        let current = self.root.join(layout::CURRENT);
        match &self.subdir {
            Some(sub) => current.join(sub),
            None => current,
        }
    }

    /// The repository's URL as shown to users (credentials are refused in it, so it has none).
    pub fn source(&self) -> String {
        self.url.clone()
    }
}

/// A repository kept in sync.
pub struct GitSync {
    settings: GitSettings,
}

/// What a sync found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub commit: String,
    /// The current checkout moved to this commit.
    pub changed: bool,
}

impl GitSync {
    pub fn new(settings: GitSettings) -> GitSync {
        GitSync { settings }
    }

    pub fn settings(&self) -> &GitSettings {
        &self.settings
    }

    /// Fetches the branch and makes its head the current checkout; records the outcome for the DAG processor
    /// (while holding the sync lock, so two schedulers sharing a data dir never record out of order).
    pub async fn sync_once(&self) -> Result<Synced, SyncError> {
        self.sync_locked().await.map_err(|message| SyncError {
            source: self.settings.source(),
            message,
        })
    }

    /// Whether a checkout is in place (the processor has something to read while the first sync runs).
    pub fn has_checkout(&self) -> bool {
        folder_commit(&self.settings.root.join(layout::CURRENT)).is_some()
    }

    /// Syncs every `interval` until `stop`; the first at once when `now`, else after one interval (the
    /// caller synced at start).
    pub async fn run(self, stop: CancellationToken, now: bool) {
        let mut failing = layout::read_status(&self.settings.root).is_some();
        let mut first = now;
        loop {
            if !std::mem::take(&mut first) {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.interval) => {}
                    _ = stop.cancelled() => return,
                }
            }
            // A stop ends a sync in progress (its git is killed with its helpers).
            let outcome = tokio::select! {
                outcome = self.sync_once() => outcome,
                _ = stop.cancelled() => return,
            };
            match outcome {
                Ok(synced) => {
                    if synced.changed {
                        info!(commit = %synced.commit, url = %self.settings.source(), "git sync: new commit checked out");
                    }
                    if failing {
                        info!(url = %self.settings.source(), "git sync works again");
                    }
                    failing = false;
                }
                Err(err) => {
                    if !failing {
                        warn!(url = %err.source, "git sync failed (the last checkout stays): {}", err.message);
                    }
                    failing = true;
                }
            }
        }
    }

    async fn sync_locked(&self) -> Result<Synced, String> {
        let root = &self.settings.root;
        std::fs::create_dir_all(root.join(layout::WORKTREES))
            .map_err(|err| format!("cannot create {}: {err}", root.display()))?;
        let lock = std::fs::File::create(root.join(layout::LOCK))
            .map_err(|err| format!("cannot create the sync lock in {}: {err}", root.display()))?;
        // Schedulers sharing a data dir take turns; one sync is at most four git commands.
        let waited = tokio::time::Instant::now();
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if waited.elapsed() < self.settings.timeout * 5 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    // Not recorded: the holder records its own outcome.
                    return Err("another process has held the sync lock too long".into());
                }
                Err(std::fs::TryLockError::Error(err)) => return Err(format!("cannot take the sync lock: {err}")),
            }
        }
        let outcome = self.sync_under_lock().await;
        let error = outcome.as_ref().err().map(|message| SyncError {
            source: self.settings.source(),
            message: message.clone(),
        });
        if let Err(err) = layout::write_status(root, error.as_ref()) {
            warn!(error = %err, "git sync: cannot record the sync's outcome");
        }
        let _ = lock.unlock();
        outcome
    }

    async fn sync_under_lock(&self) -> Result<Synced, String> {
        let settings = &self.settings;
        let root = &settings.root;
        let git = Git {
            program: settings.program.clone(),
            env: self.environment()?,
            timeout: settings.timeout,
        };
        let repo = root.join(layout::REPOSITORY);
        if !repo.join("HEAD").exists() {
            let fresh = root.join(format!("{}.new", layout::REPOSITORY));
            let _ = std::fs::remove_dir_all(&fresh);
            git.run(&args(["init", "--bare", "--quiet"], [&fresh])).await?;
            std::fs::rename(&fresh, &repo).map_err(|err| format!("cannot move the new repository in place: {err}"))?;
        }
        let git_dir: OsString = format!("--git-dir={}", repo.display()).into();
        let tracking = format!("refs/remotes/origin/{}", settings.branch);
        let refspec = format!("+refs/heads/{}:{tracking}", settings.branch);
        let mut fetch = vec![
            git_dir.clone(),
            "fetch".into(),
            "--no-tags".into(),
            "--quiet".into(),
            "--".into(),
        ];
        fetch.push(settings.url.clone().into());
        fetch.push(refspec.into());
        git.run(&fetch).await?;
        let commit = git
            .run(&[
                git_dir.clone(),
                "rev-parse".into(),
                "--verify".into(),
                "--quiet".into(),
                format!("{tracking}^{{commit}}").into(),
            ])
            .await
            .map_err(|_| format!("branch `{}` has no commit", settings.branch))?;
        if !layout::is_commit(&commit) {
            return Err(format!("git rev-parse printed `{commit}`, not a commit"));
        }
        let worktrees = root.join(layout::WORKTREES);
        let checkout = worktrees.join(&commit);
        if !checkout.is_dir() {
            let fresh = worktrees.join(format!("{commit}.new"));
            let _ = std::fs::remove_dir_all(&fresh);
            std::fs::create_dir_all(&fresh).map_err(|err| format!("cannot create {}: {err}", fresh.display()))?;
            // A private index: the bare repository's own stays untouched, and a half checkout is only `.new`.
            let index = root.join(format!("index-{commit}"));
            let mut checkout_git = git.clone();
            checkout_git
                .env
                .push(("GIT_INDEX_FILE".into(), index.display().to_string()));
            let done = checkout_git
                .run(&[
                    git_dir.clone(),
                    format!("--work-tree={}", fresh.display()).into(),
                    "checkout".into(),
                    "--force".into(),
                    "--quiet".into(),
                    commit.clone().into(),
                    "--".into(),
                    ".".into(),
                ])
                .await;
            let _ = std::fs::remove_file(&index);
            done?;
            std::fs::rename(&fresh, &checkout).map_err(|err| format!("cannot move the checkout in place: {err}"))?;
        }
        let target = PathBuf::from(layout::WORKTREES).join(&commit);
        let current = root.join(layout::CURRENT);
        // A real folder where the link belongs (made by hand, or by an older setup): moved aside, not deleted.
        if std::fs::symlink_metadata(&current).is_ok_and(|m| m.is_dir()) {
            let aside = root.join(format!("{}.moved-{}", layout::CURRENT, std::process::id()));
            std::fs::rename(&current, &aside).map_err(|err| {
                format!(
                    "{} is a folder, not the checkout link, and cannot be moved aside: {err}",
                    current.display()
                )
            })?;
            warn!(moved = %aside.display(), "git sync: a folder stood where the checkout link goes; moved aside");
        }
        let changed = std::fs::read_link(&current).ok().as_deref() != Some(target.as_path());
        if changed {
            let link = root.join(format!("{}.new", layout::CURRENT));
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link)
                .and_then(|()| std::fs::rename(&link, &current))
                .map_err(|err| format!("cannot switch {} to {commit}: {err}", current.display()))?;
        }
        prune(&worktrees, &commit);
        Ok(Synced { commit, changed })
    }

    /// git's environment: nothing of the engine's, credentials as GIT_* settings.
    fn environment(&self) -> Result<Vec<(String, String)>, String> {
        let settings = &self.settings;
        let mut env = vec![
            ("HOME".to_string(), settings.root.display().to_string()),
            ("LANG".into(), "C".into()),
            ("LC_ALL".into(), "C".into()),
            ("GIT_TERMINAL_PROMPT".into(), "0".into()),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
            ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()),
        ];
        if let Some(path) = &settings.path {
            env.push(("PATH".into(), path.clone()));
        }
        let mut config: Vec<(String, String)> = vec![
            // A link in the repository is checked out as a file holding its target: a DAG file or folder
            // linked to /etc or / would otherwise be read by the DAG parser.
            ("core.symlinks".into(), "false".into()),
            // Housekeeping in the foreground, so a stopped git leaves no detached child behind.
            ("gc.autoDetach".into(), "false".into()),
        ];
        if let Some(file) = &settings.token_file {
            let token = std::fs::read_to_string(file)
                .map_err(|err| format!("cannot read token_file {}: {err}", file.display()))?;
            let token = token.trim();
            if token.is_empty() || token.contains(['\n', '\r']) {
                return Err(format!("token_file {} must hold one token on one line", file.display()));
            }
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{token}", settings.username));
            config.push(("http.extraHeader".into(), format!("Authorization: Basic {basic}")));
        }
        if let Some(key) = &settings.ssh_key_file {
            let known_hosts = match &settings.known_hosts_file {
                Some(file) => format!(
                    "-o UserKnownHostsFile='{}' -o StrictHostKeyChecking=yes",
                    file.display()
                ),
                None => format!(
                    "-o UserKnownHostsFile='{}' -o StrictHostKeyChecking=accept-new",
                    settings.root.join("known_hosts").display()
                ),
            };
            env.push((
                "GIT_SSH_COMMAND".into(),
                format!(
                    "ssh -i '{}' -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=20 {known_hosts}",
                    key.display()
                ),
            ));
        }
        env.push(("GIT_CONFIG_COUNT".into(), config.len().to_string()));
        for (i, (key, value)) in config.into_iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{i}"), key));
            env.push((format!("GIT_CONFIG_VALUE_{i}"), value));
        }
        Ok(env)
    }
}

fn args<const N: usize, const M: usize>(words: [&str; N], paths: [&Path; M]) -> Vec<OsString> {
    words
        .iter()
        .map(OsString::from)
        .chain(paths.iter().map(|p| p.as_os_str().to_os_string()))
        .collect()
}

/// Deletes all checkouts but `current` and the newest [`KEEP_PREVIOUS`] others, and any half-made one.
fn prune(worktrees: &Path, current: &str) {
    let Ok(entries) = std::fs::read_dir(worktrees) else {
        return;
    };
    let mut others: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name == current {
            continue;
        }
        if !layout::is_commit(&name) {
            let _ = std::fs::remove_dir_all(entry.path());
            continue;
        }
        let made = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        others.push((made, entry.path()));
    }
    others.sort_by_key(|(made, _)| std::cmp::Reverse(*made));
    for (_, old) in others.into_iter().skip(KEEP_PREVIOUS) {
        // Renamed first: a deletion cut short leaves a `.old` folder (removed next time), never a partial
        // checkout under its commit's name that a later sync would take as whole.
        let doomed = old.with_extension("old");
        if std::fs::rename(&old, &doomed).is_ok() {
            let _ = std::fs::remove_dir_all(doomed);
        }
    }
}

#[cfg(test)]
mod tests;
