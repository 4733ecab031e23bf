//! Finding client binaries (pinned installs first, then PATH), checking they are the version a network
//! wants, and installing the pinned ones ([`install`]: geth, anvil, GoQuorum).

mod install;
mod quorum;

pub use install::{install, install_release_archive, ArchiveError, InstallSource};
pub use quorum::{QUORUM_BINARY_SHA256, QUORUM_INSTALL_VERSION, QUORUM_RELEASES, QUORUM_RELEASE_STORE};

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
    /// A geth that cannot seal Clique (1.14 or newer) is refused with the reason, and a GoQuorum whose
    /// `geth version` is not `version` (the network's pin) with the version found and the one wanted.
    pub fn resolve(&self, client: Client, consensus: Consensus, version: &str) -> Result<PathBuf> {
        if let Some(path) = self.overrides.get(&client) {
            if !is_executable(path) {
                return Err(Error::ClientMissing {
                    client,
                    hint: format!("{} (set explicitly) is not an executable file", path.display()),
                });
            }
            return check_binary(client, consensus, version, path.clone());
        }
        // GoQuorum's binary is also called `geth`; in our dir it is kept as `quorum`.
        let own_name = match client {
            Client::Quorum => "quorum",
            other => other.program(),
        };
        if let Some(dir) = &self.dir {
            let candidate = dir.join("bin").join(own_name);
            if is_executable(&candidate) {
                return check_binary(client, consensus, version, candidate);
            }
        }
        if let Some(found) = self.search_path(client.program()) {
            let is_quorum = version_text(&found).is_some_and(|v| v.contains("Quorum"));
            if (client == Client::Quorum) == is_quorum {
                return check_binary(client, consensus, version, found);
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
                "run `dagctl clients install quorum` (the GoQuorum {QUORUM_INSTALL_VERSION} release archive, or `--from` a copy of it) into {dir}, or set DAGCTL_QUORUM to a GoQuorum {QUORUM_INSTALL_VERSION} `geth`"
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

/// `geth version` / `--version` output, bounded in time. A Go client takes about a second to answer, so
/// answers are kept per binary (path, size and modification time) for the life of the process.
fn version_text(binary: &Path) -> Option<String> {
    use std::sync::Mutex;
    type Key = (PathBuf, u64, Option<std::time::SystemTime>);
    static SEEN: Mutex<BTreeMap<Key, String>> = Mutex::new(BTreeMap::new());
    let meta = std::fs::metadata(binary).ok()?;
    let key = (binary.to_path_buf(), meta.len(), meta.modified().ok());
    if let Some(text) = SEEN.lock().ok().and_then(|seen| seen.get(&key).cloned()) {
        return Some(text);
    }
    let text = ask_version(binary)?;
    if let Ok(mut seen) = SEEN.lock() {
        seen.insert(key, text.clone());
    }
    Some(text)
}

fn ask_version(binary: &Path) -> Option<String> {
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

/// The `Quorum Version: X` line of `geth version`; `None` for a plain geth (or no answer).
pub fn quorum_version(binary: &Path) -> Option<String> {
    version_text(binary)?
        .lines()
        .find_map(|l| l.strip_prefix("Quorum Version: "))
        .map(|v| v.trim().to_string())
}

/// Refuses a geth that cannot seal Clique (chains.md 0.1), and a GoQuorum of another version than wanted.
fn check_binary(client: Client, consensus: Consensus, wanted: &str, path: PathBuf) -> Result<PathBuf> {
    if client == Client::Quorum {
        return match quorum_version(&path) {
            Some(found) if found == wanted => Ok(path),
            Some(found) => Err(Error::ClientMissing {
                client,
                hint: format!(
                    "{} is GoQuorum {found}, but the network wants GoQuorum {wanted}: run `dagctl clients install quorum` for {QUORUM_INSTALL_VERSION}, or pin the network's client version to {found}",
                    path.display()
                ),
            }),
            None => Err(Error::ClientMissing {
                client,
                hint: format!(
                    "{} does not report a `Quorum Version` in `geth version` (a plain geth?); GoQuorum {wanted} is wanted",
                    path.display()
                ),
            }),
        };
    }
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
            (Client::Quorum, Consensus::Ibft, "dagctl clients install quorum"),
            (Client::Openethereum, Consensus::Aura, "OpenEthereum"),
            (Client::Geth, Consensus::Clique, "dagctl clients install geth"),
        ] {
            let err = binaries
                .resolve(client, consensus, client.default_version())
                .unwrap_err();
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
        let err = binaries
            .resolve(Client::Anvil, Consensus::Interval, "1.7.1")
            .unwrap_err();
        assert!(err.to_string().contains("not an executable"), "{err}");
    }

    #[test]
    fn a_goquorum_of_another_version_is_refused_with_both_versions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let old = make(
            "quorum",
            "echo Geth; echo 'Version: 1.10.3-stable'; echo 'Quorum Version: 22.7.0'",
        );
        let plain = make("geth", "echo Geth; echo 'Version: 1.13.15-stable'");
        for (binary, needles) in [
            (old, vec!["is GoQuorum 22.7.0", "wants GoQuorum 24.4.1"]),
            (
                plain,
                vec!["does not report a `Quorum Version`", "GoQuorum 24.4.1 is wanted"],
            ),
        ] {
            let binaries = ClientBinaries {
                overrides: BTreeMap::from([(Client::Quorum, binary)]),
                ..Default::default()
            };
            let err = binaries
                .resolve(Client::Quorum, Consensus::Ibft, "24.4.1")
                .unwrap_err()
                .to_string();
            for needle in needles {
                assert!(err.contains(needle), "{err}");
            }
        }
        let right = make("quorum2", "echo 'Quorum Version: 24.4.1'");
        // Named neither geth nor quorum, it is asked with --version; the script answers either way.
        let binaries = ClientBinaries {
            overrides: BTreeMap::from([(Client::Quorum, right.clone())]),
            ..Default::default()
        };
        assert_eq!(
            binaries.resolve(Client::Quorum, Consensus::Raft, "24.4.1").unwrap(),
            right
        );
    }
}
