//! Installing pinned clients into `<home>/clients/bin`: geth (release archive, else `go install`), anvil
//! (npm) and GoQuorum (release archive, else a copy given with `--from`; see [`super::quorum`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    is_executable, version_text, ClientBinaries, ANVIL_INSTALL_VERSION, GETH_INSTALL_VERSION, GETH_RELEASES,
    GETH_RELEASE_STORE,
};
use crate::error::{Error, Result};
use crate::spec::Client;

/// Where `dagctl clients install` takes a client from, beyond its default route.
#[derive(Debug, Clone, Default)]
pub struct InstallSource<'a> {
    /// Where release archives are downloaded from instead of the official store (a mirror): geth's
    /// `geth_release_url`, GoQuorum's `quorum_release_url`.
    pub release_store: Option<&'a str>,
    /// A local copy to install instead of downloading (GoQuorum's `--from`): checked against its pins.
    pub from: Option<&'a Path>,
}

/// Installs `client` into `<dir>/bin` and returns the binary path. Progress goes to `progress`, one line
/// at a time.
pub async fn install(
    client: Client,
    dir: &Path,
    source: &InstallSource<'_>,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<PathBuf> {
    let release_store = source.release_store;
    if source.from.is_some() && client != Client::Quorum {
        return Err(Error::Install {
            client,
            reason: "`--from` is for GoQuorum; geth and anvil are installed from their own sources".into(),
        });
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| Error::io(format!("cannot create {}", bin.display()), e))?;
    let install_err = |reason: String| Error::Install { client, reason };
    match client {
        Client::Geth => {
            let target = bin.join("geth");
            if version_text(&target).is_some_and(|v| v.contains(&format!("Version: {GETH_INSTALL_VERSION}-"))) {
                progress(&format!(
                    "geth {GETH_INSTALL_VERSION} already installed at {}",
                    target.display()
                ));
                return Ok(target);
            }
            // The official release archive first, checked against its pinned SHA-256.
            if let Some((_, name, sha256)) = GETH_RELEASES
                .iter()
                .find(|(arch, _, _)| *arch == std::env::consts::ARCH)
            {
                let store = release_store.unwrap_or(GETH_RELEASE_STORE);
                let url = format!("{}/{name}.tar.gz", store.trim_end_matches('/'));
                progress(&format!("downloading {url}"));
                match install_release_archive(&url, &format!("{name}/geth"), sha256, &target).await {
                    Ok(()) => {
                        progress(&format!(
                            "geth {GETH_INSTALL_VERSION} installed from its release archive (SHA-256 checked)"
                        ));
                        return Ok(target);
                    }
                    Err(ArchiveError::Unreachable(reason)) => {
                        progress(&format!(
                            "the release archive cannot be downloaded ({reason}); building from source instead"
                        ));
                    }
                    Err(ArchiveError::Rejected(reason)) => return Err(install_err(reason)),
                }
            }
            progress(&format!(
                "building geth {GETH_INSTALL_VERSION} with `go install` (minutes on a cold Go cache)"
            ));
            let mut command = tokio::process::Command::new("go");
            command
                .args([
                    "install",
                    // Newer Go refuses an old dependency's go:linkname without this.
                    "-ldflags=-checklinkname=0",
                    &format!("github.com/ethereum/go-ethereum/cmd/geth@v{GETH_INSTALL_VERSION}"),
                ])
                .env("GOBIN", &bin)
                .env("GOFLAGS", "-mod=mod");
            run_installer(command, Duration::from_secs(1800), progress)
                .await
                .map_err(install_err)?;
            if !is_executable(&target) {
                return Err(install_err(format!(
                    "go install finished but {} is missing",
                    target.display()
                )));
            }
            Ok(target)
        }
        Client::Anvil => {
            let target = bin.join("anvil");
            let prefix = dir.join("anvil");
            progress(&format!(
                "installing @foundry-rs/anvil {ANVIL_INSTALL_VERSION} with npm"
            ));
            let mut command = tokio::process::Command::new("npm");
            command
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&prefix)
                .arg(format!("@foundry-rs/anvil@{ANVIL_INSTALL_VERSION}"));
            run_installer(command, Duration::from_secs(600), progress)
                .await
                .map_err(install_err)?;
            let platform = match std::env::consts::ARCH {
                "aarch64" => "anvil-linux-arm64",
                _ => "anvil-linux-amd64",
            };
            let real = prefix.join("node_modules/@foundry-rs").join(platform).join("bin/anvil");
            if !is_executable(&real) {
                return Err(install_err(format!(
                    "npm finished but the platform binary {} is missing",
                    real.display()
                )));
            }
            let _ = std::fs::remove_file(&target);
            std::os::unix::fs::symlink(&real, &target)
                .map_err(|e| Error::io(format!("cannot link {}", target.display()), e))?;
            Ok(target)
        }
        Client::Quorum => super::quorum::install(&bin, source, progress).await,
        other => {
            let binaries = ClientBinaries {
                dir: Some(dir.to_path_buf()),
                ..Default::default()
            };
            Err(install_err(format!(
                "only geth, anvil and GoQuorum can be installed by dagctl; {}",
                binaries.install_hint(other)
            )))
        }
    }
}

/// Why a release archive was not installed.
#[derive(Debug)]
pub enum ArchiveError {
    /// It could not be downloaded: another route may still work.
    Unreachable(String),
    /// It was downloaded but is not what was pinned (or not usable): installing anything else would be wrong.
    Rejected(String),
}

/// Downloads `url` (with curl), checks its SHA-256 against `sha256`, and installs the archive's `member`
/// (e.g. `geth-linux-amd64-1.13.15-c5ba367e/geth`, or `geth` at the top) as `target`. Nothing is installed
/// unless the checksum matches; the download is removed either way.
pub async fn install_release_archive(
    url: &str,
    member: &str,
    sha256: &str,
    target: &Path,
) -> std::result::Result<(), ArchiveError> {
    let bin = target.parent().unwrap_or(Path::new("."));
    let work = tempfile_in(bin).map_err(|e| ArchiveError::Unreachable(format!("cannot make a temp dir: {e}")))?;
    let archive = work.join("download.tar.gz");
    let result = match download(url, &archive).await {
        Ok(()) => install_archive_member(&archive, url, member, sha256, &work, target).await,
        Err(err) => Err(err),
    };
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn download(url: &str, to: &Path) -> std::result::Result<(), ArchiveError> {
    let output = tokio::process::Command::new("curl")
        .args([
            "-fsSL",
            "--retry",
            "2",
            "--connect-timeout",
            "10",
            "--max-time",
            "600",
            "-o",
        ])
        .arg(to)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    match output {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => {
            // curl repeats its error once per retry; the last line says it.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let reason = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("curl failed");
            Err(ArchiveError::Unreachable(reason.trim().to_string()))
        }
        Err(err) => Err(ArchiveError::Unreachable(format!("cannot run curl: {err}"))),
    }
}

/// Checks `archive` (a `.tar.gz` named `shown` in messages) against `sha256`, then moves its executable
/// `member`, extracted into `work`, to `target`.
pub(super) async fn install_archive_member(
    archive: &Path,
    shown: &str,
    member: &str,
    sha256: &str,
    work: &Path,
    target: &Path,
) -> std::result::Result<(), ArchiveError> {
    let actual = file_sha256(archive).map_err(|e| ArchiveError::Unreachable(format!("{shown}: {e}")))?;
    if !actual.eq_ignore_ascii_case(sha256) {
        return Err(ArchiveError::Rejected(format!(
            "{shown} has SHA-256 {actual}, expected {sha256}: refusing to install it"
        )));
    }
    let untar = tokio::process::Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(work)
        .arg(member)
        .output()
        .await
        .map_err(|e| ArchiveError::Rejected(format!("cannot run tar: {e}")))?;
    let extracted = work.join(member);
    if !untar.status.success() || !is_executable(&extracted) {
        return Err(ArchiveError::Rejected(format!(
            "the archive has no executable {member}: {}",
            String::from_utf8_lossy(&untar.stderr).trim()
        )));
    }
    std::fs::rename(&extracted, target)
        .map_err(|e| ArchiveError::Rejected(format!("cannot install {}: {e}", target.display())))
}

/// The SHA-256 of a file, read in chunks, as lowercase hex.
pub(super) fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex_lower(&hasher.finalize()))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh directory inside `parent` (same file system, so the final rename is atomic).
pub(super) fn tempfile_in(parent: &Path) -> std::io::Result<PathBuf> {
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).map_err(std::io::Error::other)?;
    let dir = parent.join(format!(".download-{}", hex_lower(&random)));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub(super) async fn run_installer(
    mut command: tokio::process::Command,
    limit: Duration,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> std::result::Result<(), String> {
    let program = command.as_std().get_program().to_string_lossy().into_owned();
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().map_err(|e| format!("cannot run `{program}`: {e}"))?;
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| format!("`{program}` did not finish within {limit:?}"))?
        .map_err(|e| format!("`{program}`: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        progress(line);
    }
    if !output.status.success() {
        let tail: Vec<&str> = text.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("`{program}` failed ({}): {}", output.status, tail.join(" | ")));
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Serves one file over HTTP on loopback, as often as asked, until the test ends.
    pub(in crate::backend::local::clients) fn serve_file(bytes: Vec<u8>) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(8) {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    bytes.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&bytes);
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    /// A release-shaped archive: `<name>/geth`, a script that reports the pinned version.
    fn fake_archive(dir: &Path, name: &str) -> Vec<u8> {
        let root = dir.join("src");
        std::fs::create_dir_all(root.join(name)).unwrap();
        let geth = root.join(name).join("geth");
        std::fs::write(
            &geth,
            format!("#!/bin/sh\necho 'Geth'\necho 'Version: {GETH_INSTALL_VERSION}-stable'\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&geth, std::fs::Permissions::from_mode(0o755)).unwrap();
        let archive = dir.join("a.tar.gz");
        let status = std::process::Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(&root)
            .arg(name)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read(archive).unwrap()
    }

    #[tokio::test]
    async fn release_archives_install_only_with_the_pinned_checksum() {
        use sha2::{Digest, Sha256};
        let dir = tempfile::tempdir().unwrap();
        let name = "geth-linux-amd64-1.13.15-c5ba367e";
        let bytes = fake_archive(dir.path(), name);
        let good = hex_lower(&Sha256::digest(&bytes));
        let url = format!("{}/{name}.tar.gz", serve_file(bytes));
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let target = bin.join("geth");

        // A checksum that does not match: refused, nothing installed, no download left behind.
        let wrong = "00".repeat(32);
        match install_release_archive(&url, &format!("{name}/geth"), &wrong, &target).await {
            Err(ArchiveError::Rejected(reason)) => assert!(reason.contains("refusing"), "{reason}"),
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(&bin).unwrap().count(), 0, "no temp dir left");

        // The pinned checksum: installed and runnable.
        install_release_archive(&url, &format!("{name}/geth"), &good, &target)
            .await
            .unwrap();
        assert!(version_text(&target).unwrap().contains("Version: 1.13.15-stable"));
        assert_eq!(std::fs::read_dir(&bin).unwrap().count(), 1, "only geth");

        // Nothing listening: unreachable, so the caller may fall back to building from source.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let unreachable = format!("http://127.0.0.1:{port}/{name}.tar.gz");
        assert!(matches!(
            install_release_archive(&unreachable, &format!("{name}/geth"), &good, &bin.join("geth2")).await,
            Err(ArchiveError::Unreachable(_))
        ));
    }

    #[test]
    fn pinned_release_checksums_are_sha256_hex() {
        for (_, name, sha) in GETH_RELEASES {
            assert!(name.contains(GETH_INSTALL_VERSION), "{name}");
            assert_eq!(sha.len(), 64);
            assert!(sha.chars().all(|c| c.is_ascii_hexdigit()));
        }
    }
}
