//! `[chain.kubernetes]` in `dagctl.toml`: the regions networks with `backend: kubernetes` run in, and the images
//! (pinned by digest) each client version runs as, checked when the configuration is read. Runners get the
//! checked settings ([`KubeSetup`]) as JSON in `DAGCTL_CHAIN_KUBERNETES`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use chain::kubernetes::{Access, Images, KubeRegion, KubeSetup, ServiceType};
use serde::Deserialize;

/// `[chain]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileChain {
    kubernetes: Option<FileChainKube>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileChainKube {
    /// Time a node's pod gets between SIGTERM and SIGKILL.
    kill_grace: Option<String>,
    #[serde(default)]
    regions: Vec<FileRegion>,
    /// `client -> version -> image@sha256:…`.
    #[serde(default)]
    images: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRegion {
    name: String,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    namespace: Option<String>,
    service_type: Option<String>,
    access: Option<String>,
    node_address: Option<String>,
    rpc_source_ranges: Option<Vec<String>>,
}

fn dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Checks `[chain]`; None when it configures no Kubernetes region.
pub(super) fn load_chain(file: Option<FileChain>) -> Result<Option<KubeSetup>> {
    let Some(kube) = file.and_then(|f| f.kubernetes) else {
        return Ok(None);
    };
    if kube.regions.is_empty() {
        bail!("chain.kubernetes: no [[chain.kubernetes.regions]]: name at least one region (a kube context and namespace)");
    }
    let mut regions: Vec<KubeRegion> = Vec::with_capacity(kube.regions.len());
    for (index, region) in kube.regions.into_iter().enumerate() {
        let at = format!("chain.kubernetes.regions[{index}]");
        if !dns_label(&region.name) {
            bail!(
                "{at}.name: `{}` is not a region name (lowercase letters, digits and -)",
                region.name
            );
        }
        if regions.iter().any(|r| r.name == region.name) {
            bail!("{at}.name: region `{}` is named twice", region.name);
        }
        let namespace = region.namespace.unwrap_or_else(|| "default".into());
        if !dns_label(&namespace) {
            bail!("{at}.namespace: `{namespace}` is not a namespace name");
        }
        if region.context.as_deref() == Some("") {
            bail!("{at}.context: empty (leave it out for the kubeconfig's current context)");
        }
        if region.context.is_some() && region.kubeconfig.is_none() {
            bail!(
                "{at}.context: `{}` needs a kubeconfig to be read from",
                region.context.unwrap_or_default()
            );
        }
        let service_type = match region.service_type {
            None => ServiceType::ClusterIp,
            Some(text) => ServiceType::parse(&text).ok_or_else(|| {
                anyhow::anyhow!("{at}.service_type: `{text}` is not ClusterIP, NodePort or LoadBalancer")
            })?,
        };
        let access = match region.access {
            None => Access::Cluster,
            Some(text) => Access::parse(&text)
                .ok_or_else(|| anyhow::anyhow!("{at}.access: `{text}` is not cluster, node-port or load-balancer"))?,
        };
        regions.push(KubeRegion {
            name: region.name,
            kubeconfig: region.kubeconfig,
            context: region.context,
            namespace,
            service_type,
            access,
            node_address: region.node_address.filter(|a| !a.is_empty()),
            rpc_source_ranges: region.rpc_source_ranges.unwrap_or_default(),
        });
    }
    let mut images = Vec::new();
    for (client, versions) in kube.images {
        let parsed: chain::Client =
            serde_json::from_value(serde_json::Value::String(client.clone())).map_err(|_| {
                anyhow::anyhow!(
                    "chain.kubernetes.images.{client}: not a client (geth, quorum, besu, openethereum, anvil)"
                )
            })?;
        for (version, image) in versions {
            images.push((parsed, version, image));
        }
    }
    Images::new(images.iter().cloned()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let kill_grace_seconds = super::positive_duration("chain.kubernetes.kill_grace", kube.kill_grace, 10)?.as_secs();
    Ok(Some(KubeSetup {
        regions,
        images,
        kill_grace_seconds,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Option<KubeSetup>> {
        let file: FileChain = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        load_chain(Some(file))
    }

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn regions_and_image_pins_are_checked_when_read() {
        let setup = load(&format!(
            "[kubernetes]\nkill_grace = \"5s\"\n[[kubernetes.regions]]\nname = \"east\"\nkubeconfig = \"/k\"\ncontext = \"c\"\n\
             namespace = \"chain\"\nservice_type = \"NodePort\"\naccess = \"node-port\"\n\
             [[kubernetes.regions]]\nname = \"west\"\n\
             [kubernetes.images.geth]\n\"1.13.15\" = \"ethereum/client-go:v1.13.15@sha256:{DIGEST}\"\n"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(setup.regions.len(), 2);
        assert_eq!(setup.regions[0].service_type, ServiceType::NodePort);
        assert_eq!(setup.regions[1].namespace, "default");
        assert_eq!(setup.regions[1].access, Access::Cluster);
        assert_eq!(setup.kill_grace_seconds, 5);
        assert_eq!(setup.images[0].0, chain::Client::Geth);
        assert!(load("").unwrap().is_none());

        for (text, wanted) in [
            ("[kubernetes]\n", "no [[chain.kubernetes.regions]]"),
            ("[[kubernetes.regions]]\nname = \"East\"\n", "regions[0].name"),
            ("[[kubernetes.regions]]\nname = \"a\"\n[[kubernetes.regions]]\nname = \"a\"\n", "named twice"),
            ("[[kubernetes.regions]]\nname = \"a\"\ncontext = \"c\"\n", "needs a kubeconfig"),
            ("[[kubernetes.regions]]\nname = \"a\"\nservice_type = \"Ingress\"\n", "regions[0].service_type"),
            ("[[kubernetes.regions]]\nname = \"a\"\naccess = \"vpn\"\n", "regions[0].access"),
            (
                "[[kubernetes.regions]]\nname = \"a\"\n[kubernetes.images.geth]\n\"1.13.15\" = \"ethereum/client-go:v1.13.15\"\n",
                "not pinned by digest",
            ),
            (
                "[[kubernetes.regions]]\nname = \"a\"\n[kubernetes.images.erigon]\n\"1\" = \"x\"\n",
                "images.erigon: not a client",
            ),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }
}
