//! GoQuorum's install route. Its official release archive, checked against the SHA-256 that the release
//! published, where it can be downloaded; otherwise a local copy given with `--from`: that archive itself,
//! or a `geth` binary (plain or `.xz`) whose SHA-256 is one of the pinned builds. Nothing else is installed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::install::{file_sha256, install_archive_member, install_release_archive, tempfile_in};
use super::{is_executable, quorum_version, ArchiveError, InstallSource};
use crate::error::{Error, Result};
use crate::spec::Client;

/// The GoQuorum version `dagctl clients install quorum` installs (also the networks' default pin).
pub const QUORUM_INSTALL_VERSION: &str = "24.4.1";
/// Where ConsenSys publishes GoQuorum's release archives (Cloudsmith, behind artifacts.consensys.net);
/// `quorum_release_url` in `dagctl.toml` (or `DAGCTL_QUORUM_RELEASE_URL`) points at a mirror instead.
pub const QUORUM_RELEASE_STORE: &str = "https://artifacts.consensys.net/public/go-quorum/raw/versions/v24.4.1";
/// The release archives of [`QUORUM_INSTALL_VERSION`] per platform, with the SHA-256 the v24.4.1 release
/// notes list (written by the release workflow from Cloudsmith's checksums). The archive holds one file,
/// `geth`, at its top. v24.4.1 was released for linux/amd64 and darwin/arm64 only.
pub const QUORUM_RELEASES: &[(&str, &str, &str)] = &[(
    "x86_64",
    "geth_v24.4.1_linux_amd64.tar.gz",
    "2a200c8c51f406b176450fb8f48f6840cf66708e59d8b639011438e9e2593be9",
)];
/// Builds of the GoQuorum 24.4.1 `geth` binary that `--from` accepts, by SHA-256. The release does not
/// publish its binary's checksum, so the official binary is installed from its archive (above).
pub const QUORUM_BINARY_SHA256: &[(&str, &str)] = &[(
    "linux/amd64, built from tag v24.4.1 (commit 8585ac91) with Go 1.26.8 and -checklinkname=0 (the copy kept for these machines' tests)",
    "5beadd44e391cc4726c3fdf567d1028eb8bd3227a30bf0c449e60d8d02f68d90",
)];

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// Installs GoQuorum as `<bin>/quorum` (its own name is `geth`, which would shadow geth).
pub(super) async fn install(
    bin: &Path,
    source: &InstallSource<'_>,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<PathBuf> {
    install_with(bin, source, QUORUM_RELEASES, progress).await
}

/// [`install`] with the release archives to trust given (the tests serve their own).
async fn install_with(
    bin: &Path,
    source: &InstallSource<'_>,
    releases: &[(&str, &str, &str)],
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<PathBuf> {
    let target = bin.join("quorum");
    if let Some(from) = source.from {
        install_from(from, &target, releases, progress).await?;
        return verified(target, progress);
    }
    if quorum_version(&target).as_deref() == Some(QUORUM_INSTALL_VERSION) {
        progress(&format!(
            "GoQuorum {QUORUM_INSTALL_VERSION} already installed at {}",
            target.display()
        ));
        return Ok(target);
    }
    let Some((_, file, sha256)) = releases.iter().find(|(arch, _, _)| *arch == std::env::consts::ARCH) else {
        return Err(refused(format!(
            "GoQuorum {QUORUM_INSTALL_VERSION} has no release archive for {} (only linux/amd64); {}",
            std::env::consts::ARCH,
            both_ways()
        )));
    };
    let store = source.release_store.unwrap_or(QUORUM_RELEASE_STORE);
    let url = format!("{}/{file}", store.trim_end_matches('/'));
    progress(&format!("downloading {url}"));
    match install_release_archive(&url, "geth", sha256, &target).await {
        Ok(()) => {
            progress(&format!(
                "GoQuorum {QUORUM_INSTALL_VERSION} installed from its release archive (SHA-256 checked)"
            ));
            verified(target, progress)
        }
        Err(ArchiveError::Unreachable(reason)) => {
            Err(refused(format!("cannot download {url} ({reason}); {}", both_ways())))
        }
        Err(ArchiveError::Rejected(reason)) => Err(refused(reason)),
    }
}

/// The two ways that remain when the archive cannot be downloaded here.
fn both_ways() -> String {
    let archives: Vec<String> = QUORUM_RELEASES
        .iter()
        .map(|(_, file, sha)| {
            format!("download {file} (SHA-256 {sha}) elsewhere and run `dagctl clients install quorum --from {file}`")
        })
        .collect();
    let binaries: Vec<&str> = QUORUM_BINARY_SHA256.iter().map(|(_, sha)| *sha).collect();
    format!(
        "either {}, or pass a GoQuorum {QUORUM_INSTALL_VERSION} `geth` binary (plain or .xz) with `--from PATH`, which must have a pinned SHA-256 ({})",
        archives.join(" or "),
        binaries.join(", ")
    )
}

fn refused(reason: String) -> Error {
    Error::Install {
        client: Client::Quorum,
        reason,
    }
}

/// Installs a local copy: the release archive, an `.xz` of the binary, or the binary. Checked against
/// the pins before anything is installed; a temp dir next to `target` is removed either way.
async fn install_from(
    from: &Path,
    target: &Path,
    releases: &[(&str, &str, &str)],
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<()> {
    let head = read_head(from).map_err(|e| refused(format!("cannot read {}: {e}", from.display())))?;
    let bin = target.parent().unwrap_or(Path::new("."));
    let work = tempfile_in(bin).map_err(|e| refused(format!("cannot make a temp dir in {}: {e}", bin.display())))?;
    let result = install_from_in(from, &head, &work, target, releases, progress).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn install_from_in(
    from: &Path,
    head: &[u8],
    work: &Path,
    target: &Path,
    releases: &[(&str, &str, &str)],
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<()> {
    let shown = from.display().to_string();
    if head.starts_with(GZIP_MAGIC) {
        let actual = file_sha256(from).map_err(|e| refused(format!("{shown}: {e}")))?;
        let Some((_, file, sha256)) = releases.iter().find(|(_, _, sha)| actual == *sha) else {
            let pinned: Vec<String> = releases.iter().map(|(_, file, sha)| format!("{file} {sha}")).collect();
            return Err(refused(format!(
                "{shown} has SHA-256 {actual}, which is not a pinned GoQuorum {QUORUM_INSTALL_VERSION} release archive ({}): refusing to install it",
                pinned.join(", ")
            )));
        };
        progress(&format!("{shown} is {file} (SHA-256 checked)"));
        return install_archive_member(from, &shown, "geth", sha256, work, target)
            .await
            .map_err(|e| match e {
                ArchiveError::Unreachable(reason) | ArchiveError::Rejected(reason) => refused(reason),
            });
    }
    let binary = work.join("quorum");
    if head.starts_with(XZ_MAGIC) {
        progress(&format!("decompressing {shown}"));
        decompress_xz(from, &binary).await?;
    } else {
        std::fs::copy(from, &binary).map_err(|e| refused(format!("cannot copy {shown}: {e}")))?;
    }
    let actual = file_sha256(&binary).map_err(|e| refused(format!("{shown}: {e}")))?;
    let Some((what, _)) = QUORUM_BINARY_SHA256.iter().find(|(_, sha)| actual == *sha) else {
        return Err(refused(format!(
            "the GoQuorum binary in {shown} has SHA-256 {actual}, which is not a pinned GoQuorum {QUORUM_INSTALL_VERSION} build: refusing to install it; {}",
            both_ways()
        )));
    };
    progress(&format!(
        "{shown}: GoQuorum {QUORUM_INSTALL_VERSION} {what} (SHA-256 checked)"
    ));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| refused(format!("cannot make {} executable: {e}", binary.display())))?;
    std::fs::rename(&binary, target).map_err(|e| refused(format!("cannot install {}: {e}", target.display())))
}

fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = vec![0u8; 8];
    let mut file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a file"));
    }
    let n = file.read(&mut head)?;
    head.truncate(n);
    Ok(head)
}

async fn decompress_xz(from: &Path, to: &Path) -> Result<()> {
    let out = std::fs::File::create(to).map_err(|e| refused(format!("cannot create {}: {e}", to.display())))?;
    let mut command = tokio::process::Command::new("xz");
    command
        .arg("-dc")
        .arg(from)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .map_err(|e| refused(format!("cannot run xz to decompress {}: {e}", from.display())))?;
    let output = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .map_err(|_| refused(format!("xz did not decompress {} within 5 minutes", from.display())))?
        .map_err(|e| refused(format!("xz: {e}")))?;
    if !output.status.success() {
        return Err(refused(format!(
            "xz cannot decompress {}: {}",
            from.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// The installed binary must say it is GoQuorum [`QUORUM_INSTALL_VERSION`]; otherwise it is removed.
fn verified(target: PathBuf, progress: &(dyn Fn(&str) + Send + Sync)) -> Result<PathBuf> {
    let found = is_executable(&target).then(|| quorum_version(&target)).flatten();
    if found.as_deref() == Some(QUORUM_INSTALL_VERSION) {
        progress(&format!("GoQuorum {QUORUM_INSTALL_VERSION} at {}", target.display()));
        return Ok(target);
    }
    let _ = std::fs::remove_file(&target);
    Err(refused(format!(
        "the installed binary reports {} instead of GoQuorum {QUORUM_INSTALL_VERSION}; removed it",
        found.map_or("no `Quorum Version`".to_string(), |v| format!("GoQuorum {v}"))
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pins_are_hex(sha: &str) {
        assert_eq!(sha.len(), 64, "{sha}");
        assert!(
            sha.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{sha}"
        );
    }

    #[test]
    fn pins_are_lowercase_sha256_hex() {
        for (_, file, sha) in QUORUM_RELEASES {
            assert!(file.contains(QUORUM_INSTALL_VERSION), "{file}");
            pins_are_hex(sha);
        }
        for (_, sha) in QUORUM_BINARY_SHA256 {
            pins_are_hex(sha);
        }
    }

    fn no_progress(_: &str) {}

    #[tokio::test]
    async fn a_copy_that_is_not_pinned_installs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        // A script pretending to be GoQuorum 24.4.1: right version, wrong checksum.
        let fake = dir.path().join("geth");
        std::fs::write(&fake, "#!/bin/sh\necho 'Quorum Version: 24.4.1'\n").unwrap();
        // The same as an archive and as .xz.
        let archive = dir.path().join("geth.tar.gz");
        assert!(std::process::Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(dir.path())
            .arg("geth")
            .status()
            .unwrap()
            .success());
        let xz = dir.path().join("geth.xz");
        assert!(std::process::Command::new("xz")
            .arg("-k")
            .arg(&fake)
            .status()
            .unwrap()
            .success());
        for (from, needle) in [
            (&fake, "not a pinned GoQuorum 24.4.1 build"),
            (&archive, "not a pinned GoQuorum 24.4.1 release archive"),
            (&xz, "not a pinned GoQuorum 24.4.1 build"),
        ] {
            let source = InstallSource {
                release_store: None,
                from: Some(from),
            };
            let err = install(&bin, &source, &no_progress).await.unwrap_err().to_string();
            assert!(err.contains(needle), "{}: {err}", from.display());
            assert!(err.contains("refusing to install it"), "{err}");
            assert_eq!(
                std::fs::read_dir(&bin).unwrap().count(),
                0,
                "nothing installed, no temp dir left"
            );
        }
        let missing = dir.path().join("nope");
        let source = InstallSource {
            release_store: None,
            from: Some(&missing),
        };
        let err = install(&bin, &source, &no_progress).await.unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_archive_names_both_other_ways() {
        let dir = tempfile::tempdir().unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let store = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
        drop(closed);
        let source = InstallSource {
            release_store: Some(&store),
            from: None,
        };
        let err = install(dir.path(), &source, &no_progress)
            .await
            .unwrap_err()
            .to_string();
        if std::env::consts::ARCH == "x86_64" {
            assert!(err.contains("cannot download"), "{err}");
        }
        assert!(err.contains("--from geth_v24.4.1_linux_amd64.tar.gz"), "{err}");
        assert!(
            err.contains("5beadd44e391cc4726c3fdf567d1028eb8bd3227a30bf0c449e60d8d02f68d90"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A release-shaped archive (one file, `geth`, at the top) served over loopback: downloaded, checked,
    /// installed and version-checked; the same file given with `--from` is accepted; the same bytes under
    /// another pin are refused.
    #[tokio::test]
    async fn a_release_shaped_archive_installs_by_download_and_from_a_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let geth = src.join("geth");
        std::fs::write(&geth, "#!/bin/sh\necho Geth\necho 'Quorum Version: 24.4.1'\n").unwrap();
        std::fs::set_permissions(&geth, std::fs::Permissions::from_mode(0o755)).unwrap();
        let archive = dir.path().join("geth_v24.4.1_linux_amd64.tar.gz");
        assert!(std::process::Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg("geth")
            .status()
            .unwrap()
            .success());
        let bytes = std::fs::read(&archive).unwrap();
        let sha = file_sha256(&archive).unwrap();
        let store = super::super::install::tests::serve_file(bytes);
        let releases = [(std::env::consts::ARCH, "geth_v24.4.1_linux_amd64.tar.gz", sha.as_str())];
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let downloaded = InstallSource {
            release_store: Some(&store),
            from: None,
        };
        let installed = install_with(&bin, &downloaded, &releases, &no_progress).await.unwrap();
        assert_eq!(installed, bin.join("quorum"));
        assert_eq!(std::fs::read(&installed).unwrap(), std::fs::read(&geth).unwrap());
        assert_eq!(std::fs::read_dir(&bin).unwrap().count(), 1, "only quorum, no temp dir");

        std::fs::remove_file(&installed).unwrap();
        let from_file = InstallSource {
            release_store: None,
            from: Some(&archive),
        };
        install_with(&bin, &from_file, &releases, &no_progress).await.unwrap();
        assert!(bin.join("quorum").exists());

        std::fs::remove_file(bin.join("quorum")).unwrap();
        let other = "ab".repeat(32);
        let pinned_elsewhere = [(
            std::env::consts::ARCH,
            "geth_v24.4.1_linux_amd64.tar.gz",
            other.as_str(),
        )];
        let err = install_with(&bin, &downloaded, &pinned_elsewhere, &no_progress)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("refusing to install it"), "{err}");
        assert_eq!(std::fs::read_dir(&bin).unwrap().count(), 0);
    }
}
