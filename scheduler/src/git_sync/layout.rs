//! Where a synced repository lives under its root, which commit a DAGs folder is at, and the last sync error.
//!
//! The layout is git-sync v4's (the sidecar Airflow's chart runs): every commit checked out once into
//! `ROOT/.worktrees/<sha>`, and `ROOT/current` a symbolic link switched atomically to the newest. A DAGs
//! folder at or under such a checkout is at that commit, whoever made it (dagctl's own sync or a sidecar).

use std::path::{Path, PathBuf};

/// The link to the newest checkout.
pub const CURRENT: &str = "current";
/// Checkouts by commit.
pub const WORKTREES: &str = ".worktrees";
/// The repository's objects (bare).
pub const REPOSITORY: &str = "repo.git";
/// The last sync's error, while it lasts.
const STATUS: &str = "sync-error.json";
/// Held while syncing: schedulers sharing a data dir take turns.
pub const LOCK: &str = "sync.lock";

/// The commit a DAGs folder is at: the `<sha>` of the `.worktrees/<sha>` (or git-sync v3's `worktrees/<sha>`)
/// checkout its real path lies in. None for a plain folder.
pub fn folder_commit(folder: &Path) -> Option<String> {
    let real = std::fs::canonicalize(folder).ok()?;
    real.ancestors().find_map(|dir| {
        let name = dir.file_name()?.to_str()?;
        let parent = dir.parent()?.file_name()?.to_str()?;
        (is_commit(name) && (parent == WORKTREES || parent == "worktrees")).then(|| name.to_string())
    })
}

/// A full object name: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn is_commit(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What the DAG processor shows as an import error while the repository cannot be synced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncError {
    /// The repository's URL, without credentials.
    pub source: String,
    pub message: String,
}

/// The status file (read by the DAG processor for change detection).
pub fn status_file(root: &Path) -> PathBuf {
    root.join(STATUS)
}

/// Records the sync's outcome: the error, or (None) that the last sync worked. Written whole (a rename).
pub fn write_status(root: &Path, error: Option<&SyncError>) -> std::io::Result<()> {
    let path = status_file(root);
    match error {
        None => match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        },
        // Unchanged: not written again, so the DAG processor does not read the folder again for nothing.
        Some(error) if read_status(root).as_ref() == Some(error) => Ok(()),
        Some(error) => {
            let temp = root.join(format!("{STATUS}.{}.tmp", std::process::id()));
            std::fs::write(&temp, serde_json::to_vec(error).unwrap_or_default())?;
            std::fs::rename(temp, path)
        }
    }
}

/// The error of the last sync, if it failed.
pub fn read_status(root: &Path) -> Option<SyncError> {
    serde_json::from_slice(&std::fs::read(status_file(root)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_in_a_checkout_is_at_its_commit_and_a_plain_one_is_at_none() {
        let dir = tempfile::tempdir().unwrap();
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let checkout = dir.path().join(WORKTREES).join(sha);
        std::fs::create_dir_all(checkout.join("dags/team")).unwrap();
        std::os::unix::fs::symlink(format!("{WORKTREES}/{sha}"), dir.path().join(CURRENT)).unwrap();
        assert_eq!(folder_commit(&dir.path().join(CURRENT)).as_deref(), Some(sha));
        assert_eq!(
            folder_commit(&dir.path().join("current/dags/team")).as_deref(),
            Some(sha)
        );
        assert_eq!(folder_commit(dir.path()), None);
        assert_eq!(folder_commit(&dir.path().join("missing")), None);
        // Not a commit: wrong length, upper case, not under a worktrees folder.
        let odd = dir
            .path()
            .join("worktrees")
            .join("0123456789ABCDEF0123456789ABCDEF01234567");
        std::fs::create_dir_all(&odd).unwrap();
        assert_eq!(folder_commit(&odd), None);
        let loose = dir.path().join("x").join(sha);
        std::fs::create_dir_all(&loose).unwrap();
        assert_eq!(folder_commit(&loose), None);
        assert!(is_commit(&"a".repeat(64)) && !is_commit(&"a".repeat(41)) && !is_commit(&"g".repeat(40)));
    }

    #[test]
    fn the_status_is_written_whole_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_status(dir.path()), None);
        let error = SyncError {
            source: "https://example.invalid/dags.git".into(),
            message: "fetch failed".into(),
        };
        write_status(dir.path(), Some(&error)).unwrap();
        assert_eq!(read_status(dir.path()), Some(error));
        write_status(dir.path(), None).unwrap();
        write_status(dir.path(), None).unwrap();
        assert_eq!(read_status(dir.path()), None);
    }
}
