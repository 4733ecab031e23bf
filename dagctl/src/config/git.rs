//! `[git]` in `dagctl.toml`: the DAGs folder as a git repository the scheduler keeps in sync (see
//! `scheduler::git_sync`).

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};
use scheduler::git_sync::GitSettings;
use serde::Deserialize;

/// `[git]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileGit {
    url: Option<String>,
    branch: Option<String>,
    subdir: Option<PathBuf>,
    interval: Option<String>,
    timeout: Option<String>,
    ssh_key_file: Option<PathBuf>,
    known_hosts_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    username: Option<String>,
    git: Option<PathBuf>,
}

/// Checks `[git]`; the checkouts live in `<home>/dags-git`.
pub(super) fn load_git(file: FileGit, home: &Path, path: Option<String>) -> Result<GitSettings> {
    let Some(url) = file.url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()) else {
        bail!("git.url: the repository to read DAGs from is missing");
    };
    if url.starts_with('-') || url.chars().any(char::is_whitespace) {
        bail!("git.url: `{url}` is not a repository URL");
    }
    if url.contains(['?', '#']) {
        bail!("git.url: a query or fragment does not belong in a repository URL (a token there would show in logs and the UI): put the token in token_file");
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.contains('@')
            && (scheme.starts_with("http") || authority.split('@').next().unwrap_or_default().contains(':'))
        {
            bail!("git.url: credentials do not belong in the URL (they would show in logs and the UI): put the token in token_file");
        }
    }
    let branch = file.branch.unwrap_or_else(|| "main".into());
    let branch_ok = !branch.is_empty()
        && !branch.starts_with(['-', '/', '.'])
        && !branch.ends_with(['/', '.'])
        && !branch.contains("..")
        && !branch.ends_with(".lock")
        && branch
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\'));
    if !branch_ok {
        bail!("git.branch: `{branch}` is not a branch name");
    }
    if let Some(sub) = &file.subdir {
        if sub.as_os_str().is_empty() || !sub.components().all(|c| matches!(c, Component::Normal(_))) {
            bail!(
                "git.subdir: `{}` must be a folder inside the repository (relative, no `..`)",
                sub.display()
            );
        }
    }
    let duration =
        |key: &str, text: Option<String>, default: u64| super::positive_duration(&format!("git.{key}"), text, default);
    for (key, file) in [
        ("ssh_key_file", &file.ssh_key_file),
        ("known_hosts_file", &file.known_hosts_file),
    ] {
        if file.as_ref().is_some_and(|f| f.to_string_lossy().contains('\'')) {
            bail!("git.{key}: a path with a quote (') cannot be handed to ssh");
        }
    }
    if file.ssh_key_file.is_some() && file.token_file.is_some() {
        bail!("git: give ssh_key_file (for ssh URLs) or token_file (for https URLs), not both");
    }
    if file.known_hosts_file.is_some() && file.ssh_key_file.is_none() {
        bail!("git.known_hosts_file is for ssh: give ssh_key_file too");
    }
    if file.token_file.is_some() {
        let host = url
            .strip_prefix("http://")
            .map(|rest| rest.split(['/', ':']).next().unwrap_or_default());
        if host.is_some_and(|h| !matches!(h, "127.0.0.1" | "localhost" | "[")) {
            bail!("git.url: a token would cross the network in clear over http://: use https:// (http:// is for loopback only)");
        }
    }
    if file.ssh_key_file.is_some() && file.known_hosts_file.is_none() && home.to_string_lossy().contains('\'') {
        bail!("git: the data dir's path has a quote (') and cannot be handed to ssh: give known_hosts_file");
    }
    Ok(GitSettings {
        url,
        branch,
        subdir: file.subdir,
        interval: duration("interval", file.interval, 60)?,
        timeout: duration("timeout", file.timeout, 120)?,
        root: home.join("dags-git"),
        ssh_key_file: file.ssh_key_file,
        known_hosts_file: file.known_hosts_file,
        token_file: file.token_file,
        username: file.username.unwrap_or_else(|| "git".into()),
        program: file.git.unwrap_or_else(|| "git".into()),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<GitSettings> {
        let file: FileGit = toml::from_str(text)?;
        load_git(file, Path::new("/data"), None)
    }

    #[test]
    fn a_repository_reads_with_defaults_and_its_folder_is_the_current_checkout() {
        let git = load("url = \"https://git.example/team/dags.git\"\nsubdir = \"dags/prod\"").unwrap();
        assert_eq!(git.branch, "main");
        assert_eq!(git.interval, std::time::Duration::from_secs(60));
        assert_eq!(git.dags_folder(), PathBuf::from("/data/dags-git/current/dags/prod"));
        let ssh =
            load("url = \"git@git.example:team/dags.git\"\nssh_key_file = \"/keys/id\"\nbranch = \"release/1.2\"")
                .unwrap();
        assert_eq!(ssh.branch, "release/1.2");
    }

    #[test]
    fn bad_settings_are_one_line_naming_the_key() {
        for (text, expected) in [
            ("branch = \"main\"", "git.url"),
            ("url = \"https://user:tok@git.example/dags.git\"", "credentials"),
            ("url = \"https://tok@git.example/dags.git\"", "credentials"),
            ("url = \"--upload-pack=touch /tmp/x\"", "git.url"),
            ("url = \"https://git.example/d.git\"\nbranch = \"a..b\"", "git.branch"),
            ("url = \"https://git.example/d.git\"\nbranch = \"-x\"", "git.branch"),
            ("url = \"https://git.example/d.git\"\nsubdir = \"../etc\"", "git.subdir"),
            ("url = \"https://git.example/d.git\"\nsubdir = \"/etc\"", "git.subdir"),
            (
                "url = \"https://git.example/d.git\"\ninterval = \"soon\"",
                "git.interval",
            ),
            (
                "url = \"https://git.example/d.git\"\ntoken_file = \"/t\"\nssh_key_file = \"/k\"",
                "not both",
            ),
            (
                "url = \"https://git.example/d.git\"\nknown_hosts_file = \"/k\"",
                "known_hosts_file",
            ),
            (
                "url = \"https://git.example/d.git\"\nbrnach = \"main\"",
                "unknown field",
            ),
            (
                "url = \"https://git.example/d.git?private_token=x\"",
                "query or fragment",
            ),
            ("url = \"http://git.example/d.git\"\ntoken_file = \"/t\"", "in clear"),
        ] {
            let err = load(text).err().unwrap_or_else(|| panic!("{text} was taken"));
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
    }
}
