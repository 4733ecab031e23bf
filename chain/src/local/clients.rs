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
pub async fn install(client: Client, dir: &Path, progress: &(dyn Fn(&str) + Send + Sync)) -> Result<PathBuf> {
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
