//! Finding client binaries (pinned installs first, then PATH) and installing geth and anvil.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::spec::{Client, Consensus};
use crate::version::Version;

/// geth version `dagctl clients install geth` builds: the last line that seals Clique.
pub const GETH_INSTALL_VERSION: &str = "1.13.15";
/// The official geth release archives of [`GETH_INSTALL_VERSION`] (commit `c5ba367e`) and their SHA-256, per
/// platform. The checksums are those pinned by the guix-crypto channel's `geth-binary` package for 1.13.15
/// (nix-base32 there, hex here), which downloads the same files from the same store.
pub const GETH_RELEASES: &[(&str, &str, &str)] = &[
    (
        "x86_64",
        "geth-linux-amd64-1.13.15-c5ba367e",
        "2f153cdcd9801d748d8f812cce9d7a432d155f52eb78018d09d881dfe354dfdd",
    ),
    (
        "aarch64",
        "geth-linux-arm64-1.13.15-c5ba367e",
        "8976fce7e02ab904ef69d1b45ca5215c35c7d29dfbd705cc59f1cd8179976f2d",
    ),
];
/// Where geth's release archives are published (`DAGCTL_GETH_RELEASE_URL` or `geth_release_url` in
/// `dagctl.toml` points elsewhere, e.g. a mirror).
pub const GETH_RELEASE_STORE: &str = "https://gethstore.blob.core.windows.net/builds";

/// anvil version `dagctl clients install anvil` installs.
pub const ANVIL_INSTALL_VERSION: &str = "1.7.1";

/// Where client binaries are looked up.
#[derive(Debug, Clone, Default)]
pub struct ClientBinaries {
    /// dagctl's clients dir (`<home>/clients`); binaries are in its `bin/`.
    pub dir: Option<PathBuf>,
    /// Explicit binaries (e.g. from `DAGCTL_GETH`), used before anything else.
    pub overrides: BTreeMap<Client, PathBuf>,
    /// The PATH to search last.
    pub path: Option<OsString>,
}

impl ClientBinaries {
    /// The binary for `client` running `consensus`: an override, then `<dir>/bin`, then PATH.
    /// A geth that cannot seal Clique (1.14 or newer) is refused with the reason.
    pub fn resolve(&self, client: Client, consensus: Consensus) -> Result<PathBuf> {
        if let Some(path) = self.overrides.get(&client) {
            if !is_executable(path) {
                return Err(Error::ClientMissing {
                    client,
                    hint: format!("{} (set explicitly) is not an executable file", path.display()),
                });
            }
            return check_binary(client, consensus, path.clone());
        }
        // GoQuorum's binary is also called `geth`; in our dir it is kept as `quorum`.
        let own_name = match client {
            Client::Quorum => "quorum",
            other => other.program(),
        };
        if let Some(dir) = &self.dir {
            let candidate = dir.join("bin").join(own_name);
            if is_executable(&candidate) {
                return check_binary(client, consensus, candidate);
            }
        }
        if let Some(found) = self.search_path(client.program()) {
            let is_quorum = version_text(&found).is_some_and(|v| v.contains("Quorum"));
            if (client == Client::Quorum) == is_quorum {
                return check_binary(client, consensus, found);
            }
        }
        Err(Error::ClientMissing {
            client,
            hint: self.install_hint(client),
        })
    }

    fn search_path(&self, program: &str) -> Option<PathBuf> {
        let path = self.path.as_ref()?;
        std::env::split_paths(path)
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable(candidate))
    }

    /// How to get `client`, naming where dagctl looks.
    pub fn install_hint(&self, client: Client) -> String {
        let dir = self
            .dir
            .as_ref()
            .map(|d| d.join("bin").display().to_string())
            .unwrap_or_else(|| "<home>/clients/bin".into());
        match client {
            Client::Geth => format!(
                "run `dagctl clients install geth` (builds geth {GETH_INSTALL_VERSION} with `go install` into {dir}) or put a geth 1.13.x on PATH"
            ),
            Client::Anvil => format!(
                "run `dagctl clients install anvil` (npm package @foundry-rs/anvil {ANVIL_INSTALL_VERSION} into {dir}) or put anvil on PATH"
            ),
            Client::Quorum => format!(
                "dagctl does not install GoQuorum; get the GoQuorum {} release for your platform from the ConsenSys/quorum GitHub releases and put its `geth` at {dir}/quorum or first on PATH",
                Client::Quorum.default_version()
            ),
            Client::Besu => format!(
                "dagctl does not install Besu; get Hyperledger Besu {} (needs Java 17+) from the hyperledger/besu releases and put `besu` on PATH or in {dir}",
                Client::Besu.default_version()
            ),
            Client::Openethereum => format!(
                "dagctl does not install OpenEthereum; get its last release {} from the openethereum/openethereum GitHub releases and put `openethereum` on PATH or in {dir}",
                Client::Openethereum.default_version()
            ),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `geth version` / `--version` output, bounded in time.
fn version_text(binary: &Path) -> Option<String> {
    let arg = if binary.file_name().is_some_and(|n| n == "geth" || n == "quorum") {
        "version"
    } else {
        "--version"
    };
    let mut child = std::process::Command::new(binary)
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    Some(out)
}

/// Refuses a geth that cannot seal Clique (chains.md 0.1).
fn check_binary(client: Client, consensus: Consensus, path: PathBuf) -> Result<PathBuf> {
    if client == Client::Geth && consensus == Consensus::Clique {
        let text = version_text(&path).unwrap_or_default();
        let reported = text
            .lines()
            .find_map(|l| l.strip_prefix("Version: "))
            .map(|v| v.split('-').next().unwrap_or(v).trim().to_string());
        if let Some(version) = reported {
            let parsed = Version::parse(&version);
            let too_new = parsed.is_some_and(|v| v >= Version::new(1, 14, 0));
            if too_new {
                return Err(Error::ClientMissing {
                    client,
                    hint: format!(
                        "{} is geth {version}, which cannot seal Clique blocks (go-ethereum#29249); run `dagctl clients install geth` for {GETH_INSTALL_VERSION}",
                        path.display()
                    ),
                });
            }
        }
    }
    Ok(path)
}

/// Installs `client` into `<dir>/bin`, returning the binary path. Output of the installer goes to
/// `progress`, one line at a time.
/// Installs `client` under `dir/bin`; geth's release archive comes from `release_store` (default
/// [`GETH_RELEASE_STORE`]; a mirror may be configured).
pub async fn install(
    client: Client,
    dir: &Path,
    release_store: Option<&str>,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<PathBuf> {
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
                match install_release_archive(&url, name, sha256, &target).await {
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
        other => {
            let binaries = ClientBinaries {
                dir: Some(dir.to_path_buf()),
                ..Default::default()
            };
            Err(install_err(format!(
                "only geth and anvil can be installed by dagctl; {}",
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

/// Downloads `url` (with curl), checks its SHA-256 against `sha256`, and installs `<name>/geth` from it as
/// `target`. Nothing is installed unless the checksum matches; the download is removed either way.
pub async fn install_release_archive(
    url: &str,
    name: &str,
    sha256: &str,
    target: &Path,
) -> std::result::Result<(), ArchiveError> {
    use sha2::{Digest, Sha256};
    let bin = target.parent().unwrap_or(Path::new("."));
    let work = tempfile_in(bin).map_err(|e| ArchiveError::Unreachable(format!("cannot make a temp dir: {e}")))?;
    let archive = work.join("geth.tar.gz");
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
        .arg(&archive)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    let cleanup = |work: &Path| {
        let _ = std::fs::remove_dir_all(work);
    };
    match output {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            cleanup(&work);
            // curl repeats its error once per retry; the last line says it.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let reason = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("curl failed");
            return Err(ArchiveError::Unreachable(reason.trim().to_string()));
        }
        Err(err) => {
            cleanup(&work);
            return Err(ArchiveError::Unreachable(format!("cannot run curl: {err}")));
        }
    }
    let bytes = std::fs::read(&archive).map_err(|e| ArchiveError::Unreachable(e.to_string()))?;
    let actual = hex_lower(&Sha256::digest(&bytes));
    if !actual.eq_ignore_ascii_case(sha256) {
        cleanup(&work);
        return Err(ArchiveError::Rejected(format!(
            "{url} has SHA-256 {actual}, expected {sha256}: refusing to install it"
        )));
    }
    let untar = tokio::process::Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&work)
        .arg(format!("{name}/geth"))
        .output()
        .await
        .map_err(|e| ArchiveError::Rejected(format!("cannot run tar: {e}")))?;
    let extracted = work.join(name).join("geth");
    if !untar.status.success() || !is_executable(&extracted) {
        cleanup(&work);
        return Err(ArchiveError::Rejected(format!(
            "the archive has no executable {name}/geth: {}",
            String::from_utf8_lossy(&untar.stderr).trim()
        )));
    }
    let result = std::fs::rename(&extracted, target)
        .map_err(|e| ArchiveError::Rejected(format!("cannot install {}: {e}", target.display())));
    cleanup(&work);
    result
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh directory inside `parent` (same file system, so the final rename is atomic).
fn tempfile_in(parent: &Path) -> std::io::Result<PathBuf> {
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).map_err(std::io::Error::other)?;
    let dir = parent.join(format!(".download-{}", hex_lower(&random)));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn run_installer(
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
mod tests {
    use super::*;

    #[test]
    fn missing_clients_name_how_to_get_them() {
        let binaries = ClientBinaries {
            dir: Some(PathBuf::from("/nonexistent/clients")),
            overrides: BTreeMap::new(),
            path: Some(OsString::from("/nonexistent/bin")),
        };
        for (client, consensus, needle) in [
            (Client::Besu, Consensus::Qbft, "besu"),
            (Client::Quorum, Consensus::Ibft, "GoQuorum"),
            (Client::Openethereum, Consensus::Aura, "OpenEthereum"),
            (Client::Geth, Consensus::Clique, "dagctl clients install geth"),
        ] {
            let err = binaries.resolve(client, consensus).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, Error::ClientMissing { .. }), "{text}");
            assert!(text.contains(needle), "{text}");
            assert!(text.contains("/nonexistent/clients/bin"), "{text}");
        }
    }

    /// Serves one file over HTTP on loopback, as often as asked, until the test ends.
    fn serve_file(bytes: Vec<u8>) -> String {
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
        match install_release_archive(&url, name, &wrong, &target).await {
            Err(ArchiveError::Rejected(reason)) => assert!(reason.contains("refusing"), "{reason}"),
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(&bin).unwrap().count(), 0, "no temp dir left");

        // The pinned checksum: installed and runnable.
        install_release_archive(&url, name, &good, &target).await.unwrap();
        assert!(version_text(&target).unwrap().contains("Version: 1.13.15-stable"));
        assert_eq!(std::fs::read_dir(&bin).unwrap().count(), 1, "only geth");

        // Nothing listening: unreachable, so the caller may fall back to building from source.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let unreachable = format!("http://127.0.0.1:{port}/{name}.tar.gz");
        assert!(matches!(
            install_release_archive(&unreachable, name, &good, &bin.join("geth2")).await,
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

    #[test]
    fn overrides_must_be_executable() {
        let dir = tempfile::tempdir().unwrap();
        let not_executable = dir.path().join("anvil");
        std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
        let mut overrides = BTreeMap::new();
        overrides.insert(Client::Anvil, not_executable);
        let binaries = ClientBinaries {
            overrides,
            ..Default::default()
        };
        let err = binaries.resolve(Client::Anvil, Consensus::Interval).unwrap_err();
        assert!(err.to_string().contains("not an executable"), "{err}");
    }
}
