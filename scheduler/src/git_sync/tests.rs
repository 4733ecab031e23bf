use std::process::Command;

use super::*;

/// A repository with a `main` branch, committed to by `git` in a child process.
struct Origin {
    dir: tempfile::TempDir,
}

impl Origin {
    fn new() -> Origin {
        let dir = tempfile::tempdir().unwrap();
        let origin = Origin { dir };
        origin.git(&["init", "--quiet", "--initial-branch=main"]);
        origin
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(self.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git is installed");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes the files and commits them; returns the commit.
    fn commit(&self, files: &[(&str, &str)]) -> String {
        for (name, text) in files {
            let path = self.dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "--quiet", "-m", "change"]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }
}

fn settings(url: String, root: &Path) -> GitSettings {
    GitSettings {
        url,
        branch: "main".into(),
        subdir: Some("dags".into()),
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(30),
        root: root.to_path_buf(),
        ssh_key_file: None,
        known_hosts_file: None,
        token_file: None,
        username: "git".into(),
        program: "git".into(),
        path: std::env::var("PATH").ok(),
    }
}

#[tokio::test]
async fn each_commit_is_checked_out_once_and_current_follows_the_branch() {
    let origin = Origin::new();
    let first = origin.commit(&[("dags/a.yaml", "one"), ("README", "x")]);
    let root = tempfile::tempdir().unwrap();
    let sync = GitSync::new(settings(origin.url(), root.path()));
    let folder = sync.settings().dags_folder();

    let synced = sync.sync_once().await.unwrap();
    assert_eq!(
        synced,
        Synced {
            commit: first.clone(),
            changed: true
        }
    );
    assert_eq!(std::fs::read_to_string(folder.join("a.yaml")).unwrap(), "one");
    assert_eq!(folder_commit(&folder).as_deref(), Some(first.as_str()));
    assert!(!folder.join(".git").exists(), "a checkout is plain files");
    // Nothing new: nothing changes.
    let again = sync.sync_once().await.unwrap();
    assert!(!again.changed && again.commit == first);

    let mut commits = vec![first];
    for n in 2..=5 {
        commits.push(origin.commit(&[("dags/a.yaml", &format!("v{n}"))]));
        // Distinct modification times, so the newest checkouts are the ones kept.
        std::thread::sleep(Duration::from_millis(20));
        let synced = sync.sync_once().await.unwrap();
        assert_eq!(
            synced,
            Synced {
                commit: commits.last().unwrap().clone(),
                changed: true
            }
        );
        assert_eq!(std::fs::read_to_string(folder.join("a.yaml")).unwrap(), format!("v{n}"));
        assert_eq!(folder_commit(&folder).as_ref(), commits.last());
    }
    let mut kept: Vec<String> = std::fs::read_dir(root.path().join(layout::WORKTREES))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    kept.sort();
    let mut expected = commits[2..].to_vec();
    expected.sort();
    assert_eq!(kept, expected, "the current checkout and two before it are kept");
    assert_eq!(layout::read_status(root.path()), None);
}

#[tokio::test]
async fn a_failed_sync_keeps_the_last_checkout_and_records_why_until_it_works_again() {
    let origin = Origin::new();
    let first = origin.commit(&[("dags/a.yaml", "one")]);
    let root = tempfile::tempdir().unwrap();
    let mut good = settings(origin.url(), root.path());
    GitSync::new(good.clone()).sync_once().await.unwrap();

    let mut wrong_branch = good.clone();
    wrong_branch.branch = "nope".into();
    let err = GitSync::new(wrong_branch).sync_once().await.unwrap_err();
    assert_eq!(err.source, origin.url());
    assert!(err.message.contains("nope"), "{err:?}");
    assert_eq!(layout::read_status(root.path()), Some(err));
    assert_eq!(folder_commit(&good.dags_folder()).as_deref(), Some(first.as_str()));

    let mut missing = good.clone();
    missing.url = format!("file://{}/missing", root.path().display());
    let err = GitSync::new(missing).sync_once().await.unwrap_err();
    assert!(err.message.starts_with("git fetch failed:"), "{err:?}");

    let mut no_git = good.clone();
    no_git.program = root.path().join("no-such-git");
    let err = GitSync::new(no_git).sync_once().await.unwrap_err();
    assert!(err.message.contains("cannot run"), "{err:?}");

    good.interval = Duration::from_millis(10);
    GitSync::new(good.clone()).sync_once().await.unwrap();
    assert_eq!(
        layout::read_status(root.path()),
        None,
        "a sync that works clears the error"
    );
}

#[tokio::test]
async fn credentials_reach_git_through_its_environment_only() {
    let root = tempfile::tempdir().unwrap();
    let token = root.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let mut with_token = settings("https://example.invalid/dags.git".into(), root.path());
    with_token.token_file = Some(token.clone());
    with_token.username = "oauth2".into();
    let env = GitSync::new(with_token.clone()).environment().unwrap();
    let find = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(find("GIT_CONFIG_COUNT").as_deref(), Some("3"));
    let slot = (0..3)
        .find(|i| find(&format!("GIT_CONFIG_KEY_{i}")).as_deref() == Some("http.extraHeader"))
        .expect("the token's header is one of git's settings");
    let header = find(&format!("GIT_CONFIG_VALUE_{slot}")).unwrap();
    let basic = header.strip_prefix("Authorization: Basic ").unwrap();
    let decoded = base64::engine::general_purpose::STANDARD.decode(basic).unwrap();
    assert_eq!(decoded, b"oauth2:s3cret");
    assert!(find("DAGCTL_DATABASE_URL").is_none() && find("GIT_SSH_COMMAND").is_none());

    std::fs::write(&token, "").unwrap();
    let err = GitSync::new(with_token).environment().unwrap_err();
    assert!(err.contains("one token"), "{err}");

    let mut with_key = settings("git@example.invalid:dags.git".into(), root.path());
    with_key.ssh_key_file = Some("/keys/id_ed25519".into());
    let env = GitSync::new(with_key.clone()).environment().unwrap();
    let ssh = env.iter().find(|(k, _)| k == "GIT_SSH_COMMAND").unwrap().1.clone();
    assert!(
        ssh.contains("-i '/keys/id_ed25519'") && ssh.contains("StrictHostKeyChecking=accept-new"),
        "{ssh}"
    );
    with_key.known_hosts_file = Some("/keys/known_hosts".into());
    let env = GitSync::new(with_key).environment().unwrap();
    let ssh = env.iter().find(|(k, _)| k == "GIT_SSH_COMMAND").unwrap().1.clone();
    assert!(
        ssh.contains("UserKnownHostsFile='/keys/known_hosts' -o StrictHostKeyChecking=yes"),
        "{ssh}"
    );
}

#[tokio::test]
async fn links_in_the_repository_are_checked_out_as_plain_files() {
    let origin = Origin::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.yaml"), "secret: value").unwrap();
    std::fs::create_dir_all(origin.dir.path().join("dags")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.yaml"),
        origin.dir.path().join("dags/leak.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink("/", origin.dir.path().join("dags/everything")).unwrap();
    origin.commit(&[("dags/a.yaml", "one")]);
    let root = tempfile::tempdir().unwrap();
    let sync = GitSync::new(settings(origin.url(), root.path()));
    sync.sync_once().await.unwrap();
    let folder = sync.settings().dags_folder();
    for name in ["leak.yaml", "everything"] {
        let meta = std::fs::symlink_metadata(folder.join(name)).unwrap();
        assert!(meta.is_file(), "{name} is a plain file, not a link");
    }
    let leaked = std::fs::read_to_string(folder.join("leak.yaml")).unwrap();
    assert!(!leaked.contains("secret: value"), "{leaked}");
}

#[tokio::test]
async fn git_runs_with_none_of_the_engines_environment() {
    // A stand-in for git that records its environment and fails.
    let root = tempfile::tempdir().unwrap();
    let fake = root.path().join("fake-git");
    let dump = root.path().join("env.txt");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\n/usr/bin/env > '{}'\nexit 1\n", dump.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut with_fake = settings("https://example.invalid/dags.git".into(), root.path());
    with_fake.program = fake;
    std::env::set_var("DAGCTL_DATABASE_URL", "postgres://engine:hunter2@db/dagctl");
    let err = GitSync::new(with_fake).sync_once().await.unwrap_err();
    assert!(err.message.contains("failed"), "{err:?}");
    let seen = std::fs::read_to_string(&dump).unwrap();
    assert!(!seen.contains("DAGCTL_") && !seen.contains("hunter2"), "{seen}");
    assert!(
        seen.contains("GIT_TERMINAL_PROMPT=0") && seen.contains("GIT_CONFIG_KEY_0=core.symlinks"),
        "{seen}"
    );
}

#[tokio::test]
async fn a_command_past_its_time_limit_is_stopped_with_its_children() {
    let root = tempfile::tempdir().unwrap();
    let fake = root.path().join("slow-git");
    let pids = root.path().join("pids");
    // git and a helper it started, both sleeping.
    std::fs::write(
        &fake,
        format!("#!/bin/sh\nsleep 60 &\necho $$ $! > '{}'\nsleep 60\n", pids.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let git = command::Git {
        program: fake,
        env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
        timeout: Duration::from_millis(500),
    };
    let started = std::time::Instant::now();
    let err = git.run(&["fetch".into()]).await.unwrap_err();
    assert!(err.contains("took longer than"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = std::fs::read_to_string(&pids).unwrap();
    let gone = |pid: &str| {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    };
    for pid in text.split_whitespace() {
        for _ in 0..50 {
            if gone(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(gone(pid), "process {pid} outlived the time limit");
    }
}
