//! Which container image runs a client at a version: pinned by digest, from the configuration or the few
//! built-in pins whose digest was seen published (docs/chain.md says where each came from).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::spec::Client;

/// Digests seen written next to the exact tag in several public projects. No digest of
/// `ethereum/client-go:v1.13.15`, `quorumengineering/quorum:24.4.1`, `hyperledger/besu:23.4.1` or
/// `openethereum/openethereum:v3.3.5` could be read on these machines (no registry access): those are pinned
/// in `[chain.kubernetes.images]`.
const BUILT_IN: &[(Client, &str, &str)] = &[(
    Client::Anvil,
    "1.5.1",
    "ghcr.io/foundry-rs/foundry:v1.5.1@sha256:3a70bfa9bd2c732a767bb60d12c8770b40e8f9b6cca28efc4b12b1be81c7f28e",
)];

/// Where a client's program is in its official image (each image's Dockerfile).
pub fn program_path(client: Client) -> &'static str {
    match client {
        Client::Geth | Client::Quorum => "/usr/local/bin/geth",
        Client::Besu => "/opt/besu/bin/besu",
        Client::Openethereum => "/home/openethereum/openethereum",
        Client::Anvil => "/usr/local/bin/anvil",
    }
}

/// Images by client and version, checked when the configuration is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Images {
    pinned: BTreeMap<(Client, String), String>,
}

impl Images {
    /// The built-in pins plus `configured` (which wins); every reference must be pinned by digest.
    pub fn new(configured: impl IntoIterator<Item = (Client, String, String)>) -> Result<Self> {
        let mut pinned: BTreeMap<(Client, String), String> = BUILT_IN
            .iter()
            .map(|(client, version, image)| ((*client, (*version).to_string()), (*image).to_string()))
            .collect();
        for (client, version, image) in configured {
            check_pinned(&image).map_err(|reason| Error::InvalidField {
                field: "chain.kubernetes.images",
                reason: format!("{client} {version}: {reason}"),
            })?;
            pinned.insert((client, version), image);
        }
        Ok(Self { pinned })
    }

    /// The image for `client` at `version`, or an error naming what is pinned.
    pub fn image(&self, client: Client, version: &str) -> Result<&str> {
        if let Some(image) = self.pinned.get(&(client, version.to_string())) {
            return Ok(image);
        }
        let known: Vec<String> = self
            .pinned
            .keys()
            .filter(|(c, _)| *c == client)
            .map(|(_, v)| v.clone())
            .collect();
        Err(Error::InvalidField {
            field: "version",
            reason: format!(
                "no image is pinned for {client} {version} on Kubernetes (pinned: {}); add it under [chain.kubernetes.images.{client}] as \"{version}\" = \"<image>:<tag>@sha256:<digest>\"",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ),
        })
    }
}

/// Whether `image` names its content by a sha256 digest (`name[:tag]@sha256:<64 hex>`).
fn check_pinned(image: &str) -> std::result::Result<(), String> {
    let Some((name, digest)) = image.split_once("@sha256:") else {
        return Err(format!(
            "`{image}` is not pinned by digest (expected name:tag@sha256:<64 hex digits>)"
        ));
    };
    let hex_ok = digest.len() == 64 && digest.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_' | '/' | ':'));
    if !hex_ok {
        return Err(format!("`{image}`: the digest must be 64 lowercase hex digits"));
    }
    if !name_ok {
        return Err(format!("`{image}` is not an image reference"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn images_are_pinned_by_digest_per_client_version() {
        let images = Images::new([(
            Client::Geth,
            "1.13.15".to_string(),
            format!("ethereum/client-go:v1.13.15@sha256:{DIGEST}"),
        )])
        .unwrap();
        assert!(images.image(Client::Geth, "1.13.15").unwrap().ends_with(DIGEST));
        assert!(images.image(Client::Anvil, "1.5.1").unwrap().contains("foundry"));
        let err = images.image(Client::Geth, "1.13.14").unwrap_err().to_string();
        assert!(
            err.contains("pinned: 1.13.15") && err.contains("[chain.kubernetes.images.geth]"),
            "{err}"
        );
        let err = images.image(Client::Besu, "23.4.1").unwrap_err().to_string();
        assert!(err.contains("pinned: none"), "{err}");

        for bad in [
            "ethereum/client-go:v1.13.15",
            "ethereum/client-go@sha256:abc",
            &format!("Ethereum/Client-Go@sha256:{DIGEST}"),
        ] {
            let err = Images::new([(Client::Geth, "1.13.15".into(), bad.to_string())])
                .unwrap_err()
                .to_string();
            assert!(err.contains("geth 1.13.15"), "{bad}: {err}");
        }
    }
}
