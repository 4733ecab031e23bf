//! The container image without Docker: the Dockerfile is checked against the rules that matter here (bases
//! pinned by digest, non-root numeric user, exec-form entrypoint, a locked release build, apt lists removed;
//! hadolint cannot be had on these machines), and its assembly step (`deploy/image/rootfs.sh`) is run on this
//! machine with the test's dagctl binary. The result is then run in a chroot as uid 65532, the way the image
//! runs: git and its HTTPS helper load from the libraries copied in (a clone over HTTP from this test's
//! server), ssh loads, and dagctl opens its data dir as that user.

mod common;
#[path = "common/git_http.rs"]
mod git_http;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use git_http::{Repo, Server};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

fn word(instruction: &str) -> &str {
    instruction.split_whitespace().next().unwrap_or_default()
}

#[test]
fn the_dockerfile_pins_its_bases_and_runs_as_non_root() {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let all = instructions(&text);
    let args: std::collections::HashMap<String, String> = all
        .iter()
        .filter(|i| word(i) == "ARG")
        .filter_map(|i| i[4..].split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let froms: Vec<&String> = all.iter().filter(|i| word(i) == "FROM").collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage: {froms:?}");
    for from in &froms {
        let image = from.split_whitespace().nth(1).unwrap();
        let image = match image.strip_prefix("${").and_then(|i| i.strip_suffix('}')) {
            Some(arg) => args
                .get(arg)
                .unwrap_or_else(|| panic!("{from}: ARG {arg} has no default"))
                .clone(),
            None => image.to_string(),
        };
        let (name, digest) = image
            .split_once("@sha256:")
            .unwrap_or_else(|| panic!("{from}: not pinned by digest"));
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{from}: bad digest"
        );
        assert!(!name.ends_with(":latest"), "{from}");
    }
    let runtime = &all[all.iter().rposition(|i| word(i) == "FROM").unwrap()..];
    assert!(
        args["RUNTIME_IMAGE"].starts_with("gcr.io/distroless/"),
        "a distroless runtime base"
    );
    let user = runtime
        .iter()
        .rfind(|i| word(i) == "USER")
        .expect("the runtime stage sets USER");
    let uid = user[5..].split(':').next().unwrap().trim();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "numeric non-root user: {user}"
    );
    let entry = runtime.iter().find(|i| word(i) == "ENTRYPOINT").expect("an ENTRYPOINT");
    let exec: Vec<String> = serde_json::from_str(&entry[11..]).unwrap_or_else(|_| panic!("exec form: {entry}"));
    assert_eq!(exec, ["/usr/local/bin/dagctl"]);
    assert!(runtime.iter().any(|i| i.starts_with("COPY --from=build /rootfs/ /")));
    assert!(
        !runtime.iter().any(|i| word(i) == "RUN"),
        "distroless has no shell to RUN with"
    );
    for run in all.iter().filter(|i| word(i) == "RUN") {
        if run.contains("apt-get install") {
            assert!(run.contains("--no-install-recommends") && run.contains("-y"), "{run}");
            assert!(
                run.contains("rm -rf /var/lib/apt/lists/*"),
                "apt lists removed in the same layer: {run}"
            );
        }
    }
    assert!(all
        .iter()
        .any(|i| i.contains("cargo build --release --locked -p dagctl")));
    assert!(all.iter().any(|i| i.contains("deploy/image/rootfs.sh /dagctl /rootfs")));
    assert!(!all.iter().any(|i| word(i) == "ADD"), "COPY, not ADD");
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        "the build context leaves target/ out"
    );
}

fn chroot(root: &Path, uid: Option<u32>, args: &[&str]) -> Output {
    chroot_env(root, uid, args, &[])
}

fn chroot_env(root: &Path, uid: Option<u32>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("/usr/sbin/chroot");
    if let Some(uid) = uid {
        command.arg(format!("--userspec={uid}:{uid}"));
    }
    command
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin")
        .env("HOME", "/var/lib/dagctl")
        .envs(env.iter().copied())
        .output()
        .expect("chroot runs (the image test runs as root, as CI does)")
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}; stdout: {}; stderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_image_files_run_as_nonroot_with_git_over_https_helpers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    let assembled = Command::new(repo_root().join("deploy/image/rootfs.sh"))
        .arg(common::BIN)
        .arg(&root)
        .output()
        .unwrap();
    assert!(assembled.status.success(), "{}", text(&assembled));
    // What a container runtime provides: /dev/null (git opens it).
    std::fs::create_dir_all(root.join("dev")).unwrap();
    let made = Command::new("mknod")
        .args(["-m", "666"])
        .arg(root.join("dev/null"))
        .args(["c", "1", "3"])
        .output()
        .unwrap();
    assert!(made.status.success(), "mknod (the test needs root): {}", text(&made));

    let version = chroot(&root, Some(65532), &["/usr/local/bin/dagctl", "--version"]);
    assert!(version.status.success(), "{}", text(&version));
    let listed = chroot(
        &root,
        Some(65532),
        &["/usr/local/bin/dagctl", "--home", "/var/lib/dagctl", "dags", "list"],
    );
    assert!(
        listed.status.success(),
        "dagctl writes its data dir as nonroot: {}",
        text(&listed)
    );
    assert!(root.join("var/lib/dagctl/dagctl.db").exists());

    let repo = Repo::new(dir.path());
    let commit = repo.publish("pinned:\n  tasks:\n    a: {operator: empty}\n");
    let server = Server::start(repo.served.clone());
    let url = format!("http://127.0.0.1:{}/dags.git", server.port);
    let header = format!("http.extraHeader=Authorization: {}", git_http::basic_auth());
    let remote = chroot(
        &root,
        Some(65532),
        &["/usr/bin/git", "-c", &header, "ls-remote", &url, "main"],
    );
    assert!(remote.status.success(), "git over HTTP in the image: {}", text(&remote));
    assert!(
        String::from_utf8_lossy(&remote.stdout).starts_with(&commit),
        "{}",
        text(&remote)
    );
    let cloned = chroot(
        &root,
        Some(65532),
        &["/usr/bin/git", "-c", &header, "clone", "--quiet", &url, "/tmp/clone"],
    );
    assert!(cloned.status.success(), "{}", text(&cloned));
    assert!(root.join("tmp/clone/dags/pinned.yaml").exists());

    let ssh = chroot(&root, Some(65532), &["/usr/bin/ssh", "-V"]);
    assert!(ssh.status.success(), "{}", text(&ssh));
    // git runs its ssh command (with options, as git sync sets it) through /bin/sh: it reaches ssh, which
    // finds nothing listening on port 1.
    let over_ssh = chroot_env(
        &root,
        Some(65532),
        &["/usr/bin/git", "ls-remote", "ssh://git@127.0.0.1:1/dags.git"],
        &[(
            "GIT_SSH_COMMAND",
            "ssh -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=accept-new",
        )],
    );
    let said = String::from_utf8_lossy(&over_ssh.stderr);
    assert!(
        !over_ssh.status.success() && said.contains("port 1") && said.contains("Connection refused"),
        "{}",
        text(&over_ssh)
    );
    let helper = chroot(&root, Some(65532), &["/usr/lib/git-core/git-remote-https"]);
    assert!(
        !String::from_utf8_lossy(&helper.stderr).contains("error while loading shared libraries"),
        "{}",
        text(&helper)
    );
    // Nothing is setuid, and the binary is not writable by the user it runs as.
    let meta = std::fs::metadata(root.join("usr/local/bin/dagctl")).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.uid(), 0);
    assert_eq!(
        meta.permissions().mode() & 0o7022,
        0,
        "not setuid, not group/world writable"
    );
}
