//! The Kubernetes objects of a network, as JSON for server-side apply: per node a Service (p2p, RPC, WS,
//! metrics), a ConfigMap with its generated files (genesis or chain spec, static nodes, config), a Secret
//! with its keys, and a StatefulSet of one pod whose container runs the generated command line; per region
//! a headless Service the StatefulSets name for their pods' DNS. Pure functions: nothing here calls the API.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde_json::{json, Value};

use super::images::program_path;
use crate::output::{NodeConfig, NodePorts};
use crate::spec::{Client, Consensus, PodResources, Storage};

/// Where a node's data directory is in its pod.
pub const DATA_DIR: &str = "/data";
/// Where the node's ConfigMap and Secret are mounted for the copy into [`DATA_DIR`].
const FILES_DIR: &str = "/dagctl/files";
const KEYS_DIR: &str = "/dagctl/keys";

/// Label every object of a network carries (its value: the network's name).
pub const NETWORK_LABEL: &str = "dagctl.io/network";
/// Label naming the node an object belongs to.
pub const NODE_LABEL: &str = "dagctl.io/node";
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "dagctl");
/// The longest `<network>-<node>` may be: a StatefulSet's name plus its pods' revision hash must fit a label.
pub const MAX_OBJECT_NAME: usize = 52;

/// The ports a node's container listens on: the clients' usual ports, the same in every pod.
pub fn container_ports(client: Client, consensus: Consensus) -> NodePorts {
    let mut ports = NodePorts::new(30303, 8545);
    if client != Client::Anvil {
        ports.ws = Some(8546);
        ports.metrics = Some(9545);
    }
    if matches!(client, Client::Geth | Client::Quorum) {
        ports.authrpc = Some(8551);
    }
    if consensus == Consensus::Raft {
        ports.raft = Some(50400);
    }
    ports
}

/// The name of node `node`'s objects (Service, ConfigMap, Secret, StatefulSet).
pub fn object_name(network: &str, node: &str) -> String {
    format!("{network}-{node}")
}

/// The labels of `network`'s objects, of one node's when `node` is given.
pub fn labels(network: &str, node: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (NETWORK_LABEL.to_string(), network.to_string()),
    ]);
    if let Some(node) = node {
        labels.insert(NODE_LABEL.to_string(), node.to_string());
    }
    labels
}

/// `dagctl.io/network=<network>`: selects every object of the network.
pub fn network_selector(network: &str) -> String {
    format!("{NETWORK_LABEL}={network}")
}

/// The Service ports of a node: name, port, protocol.
fn service_ports(ports: &NodePorts) -> Vec<Value> {
    let mut list = vec![("p2p", ports.p2p), ("rpc", ports.rpc)];
    list.extend(ports.ws.map(|p| ("ws", p)));
    list.extend(ports.metrics.map(|p| ("metrics", p)));
    list.extend(ports.raft.map(|p| ("raft", p)));
    list.into_iter()
        .map(|(name, port)| json!({"name": name, "port": port, "targetPort": port, "protocol": "TCP"}))
        .collect()
}

/// Node `node`'s peer Service of type `service_type` (`ClusterIP`, `NodePort` or `LoadBalancer`): its p2p port
/// (and raft's), which peers dial, and nothing else. Not-ready pods are published: readiness is dagctl's own.
pub fn node_service(network: &str, node: &str, service_type: &str, ports: &NodePorts) -> Value {
    let peer_ports = NodePorts {
        ws: None,
        metrics: None,
        authrpc: None,
        ..*ports
    };
    let mut list = service_ports(&peer_ports);
    list.retain(|p| p["name"] != "rpc");
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": object_name(network, node), "labels": labels(network, Some(node))},
        "spec": {
            "type": service_type,
            "selector": selector(network, node),
            "publishNotReadyAddresses": true,
            "ports": list,
        }
    })
}

/// The name of node `node`'s RPC Service.
pub fn rpc_service_name(network: &str, node: &str) -> String {
    format!("{}-rpc", object_name(network, node))
}

/// Node `node`'s RPC Service (JSON-RPC, WebSocket, metrics), which the engine reaches: `ClusterIP` unless the
/// engine is outside the cluster, and then limited to `source_ranges` on a load balancer. Validators hold
/// unlocked signer keys: this Service is never published further than the engine needs.
pub fn rpc_service(
    network: &str,
    node: &str,
    service_type: &str,
    ports: &NodePorts,
    source_ranges: &[String],
) -> Value {
    let rpc_ports = NodePorts {
        raft: None,
        authrpc: None,
        ..*ports
    };
    let mut list = service_ports(&rpc_ports);
    list.retain(|p| p["name"] != "p2p");
    let mut spec = json!({
        "type": service_type,
        "selector": selector(network, node),
        "publishNotReadyAddresses": true,
        "ports": list,
    });
    if service_type == "LoadBalancer" && !source_ranges.is_empty() {
        spec["loadBalancerSourceRanges"] = json!(source_ranges);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": rpc_service_name(network, node), "labels": labels(network, Some(node))},
        "spec": spec,
    })
}

/// The headless Service of `network` in one namespace: the StatefulSets' `serviceName`, giving each pod a
/// DNS name (`<pod>.<network>.<namespace>.svc`) for discovery.
pub fn headless_service(network: &str, ports: &NodePorts) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": network, "labels": labels(network, None)},
        "spec": {
            "clusterIP": "None",
            "selector": {NETWORK_LABEL: network},
            "publishNotReadyAddresses": true,
            "ports": service_ports(ports),
        }
    })
}

fn selector(network: &str, node: &str) -> Value {
    json!({NETWORK_LABEL: network, NODE_LABEL: node})
}

/// How a node's pod is shaped beyond its command line.
#[derive(Debug, Clone, Default)]
pub struct PodShape {
    pub resources: Option<PodResources>,
    pub storage: Option<Storage>,
    /// Seconds between SIGTERM and SIGKILL when the pod stops.
    pub grace_seconds: u64,
}

/// A file's key in its ConfigMap or Secret (keys allow `[-._a-zA-Z0-9]`; the index keeps them unique).
fn file_key(index: usize, path: &Path) -> String {
    let flat: String = path
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{index}-{flat}")
}

/// A shell word: single-quoted.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The user (and group) every container of a node's pod runs as: not root, and the owner of what its init
/// container copies into the data volume (the official Besu, OpenEthereum and Foundry images run as 1000 too).
pub const RUN_AS: u64 = 1000;
/// Command-line flags whose value is a secret (OpenEthereum's `--node-key`): the pod spec says
/// `$(DAGCTL_NODE_KEY)` and the value comes from the node's Secret.
const SECRET_FLAGS: &[(&str, &str, &str)] = &[("--node-key", "node-key", "DAGCTL_NODE_KEY")];

/// The node's arguments with secret flag values replaced by environment references, and the (key, variable,
/// value) of each.
pub fn hide_secret_args(args: &[String]) -> (Vec<String>, Vec<(&'static str, &'static str, String)>) {
    let mut shown = args.to_vec();
    let mut hidden = Vec::new();
    for (flag, key, variable) in SECRET_FLAGS {
        if let Some(i) = shown.iter().position(|a| a == flag) {
            if let Some(value) = shown.get_mut(i + 1) {
                hidden.push((*key, *variable, std::mem::replace(value, format!("$({variable})"))));
            }
        }
    }
    (shown, hidden)
}

/// Node `node`'s ConfigMap (public files), Secret (key files) and StatefulSet, in that order.
pub fn node_objects(network: &str, client: Client, image: &str, node: &NodeConfig, shape: &PodShape) -> Vec<Value> {
    let name = object_name(network, &node.name);
    let node_labels = labels(network, Some(&node.name));
    let mut public = serde_json::Map::new();
    let mut binary = serde_json::Map::new();
    let mut secret = serde_json::Map::new();
    let (args, hidden) = hide_secret_args(&node.command.args);
    let mut node_env = env(&node.command.env);
    for (key, variable, value) in &hidden {
        secret.insert(
            (*key).to_string(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(value)),
        );
        node_env.push(json!({"name": variable, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}));
    }
    let mut copy = vec!["set -e".to_string()];
    for (index, file) in node.files.iter().enumerate() {
        let key = file_key(index, &file.path);
        let target = Path::new(DATA_DIR).join(&file.path);
        if let Some(parent) = target.parent() {
            copy.push(format!("mkdir -p {}", quoted(&parent.to_string_lossy())));
        }
        let target = quoted(&target.to_string_lossy());
        if file.secret {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&file.contents);
            secret.insert(key.clone(), Value::String(encoded));
            copy.push(format!("cp {} {target}", quoted(&format!("{KEYS_DIR}/{key}"))));
            copy.push(format!("chmod 600 {target}"));
        } else {
            match std::str::from_utf8(&file.contents) {
                Ok(text) => public.insert(key.clone(), Value::String(text.to_string())),
                Err(_) => binary.insert(
                    key.clone(),
                    Value::String(base64::engine::general_purpose::STANDARD.encode(&file.contents)),
                ),
            };
            copy.push(format!("cp {} {target}", quoted(&format!("{FILES_DIR}/{key}"))));
        }
    }
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": node_labels},
        "data": public,
        "binaryData": binary,
    });
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": node_labels},
        "type": "Opaque",
        "data": secret,
    });
    let data_mount = json!({"name": "data", "mountPath": DATA_DIR});
    let mut init_containers = vec![json!({
        "name": "files",
        "image": image,
        "command": ["/bin/sh", "-c", copy.join("\n")],
        "volumeMounts": [
            data_mount,
            {"name": "files", "mountPath": FILES_DIR, "readOnly": true},
            {"name": "keys", "mountPath": KEYS_DIR, "readOnly": true},
        ],
    })];
    for (index, init) in node.init.iter().enumerate() {
        init_containers.push(json!({
            "name": format!("init-{index}"),
            "image": image,
            "command": [program_in_image(client, &init.program)],
            "args": init.args,
            "env": env(&init.env),
            "volumeMounts": [data_mount],
        }));
    }
    let mut container = json!({
        "name": "node",
        "image": image,
        "command": [program_in_image(client, &node.command.program)],
        "args": args,
        "env": node_env,
        "ports": container_port_list(&node.ports),
        "volumeMounts": [data_mount],
    });
    if let Some(resources) = &shape.resources {
        let mut requests = serde_json::Map::new();
        if let Some(cpu) = &resources.cpu {
            requests.insert("cpu".into(), Value::String(cpu.clone()));
        }
        if let Some(memory) = &resources.memory {
            requests.insert("memory".into(), Value::String(memory.clone()));
        }
        container["resources"] = json!({"requests": requests});
    }
    let mut volumes = vec![
        json!({"name": "files", "configMap": {"name": name}}),
        // Readable by the pod's group (fsGroup) only: the init container copies them as RUN_AS.
        json!({"name": "keys", "secret": {"secretName": name, "defaultMode": 0o440}}),
    ];
    let mut sts_spec = json!({
        "replicas": 1,
        "serviceName": network,
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": selector(network, &node.name)},
        "template": {
            "metadata": {"labels": node_labels},
            "spec": {
                "terminationGracePeriodSeconds": shape.grace_seconds,
                "automountServiceAccountToken": false,
                "securityContext": {
                    "runAsUser": RUN_AS,
                    "runAsGroup": RUN_AS,
                    "fsGroup": RUN_AS,
                    "runAsNonRoot": true,
                },
                "enableServiceLinks": false,
                "initContainers": init_containers,
                "containers": [container],
                "volumes": [],
            }
        }
    });
    match &shape.storage {
        Some(storage) => {
            let mut claim_spec = json!({
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": storage.size}},
            });
            if let Some(class) = &storage.class {
                claim_spec["storageClassName"] = Value::String(class.clone());
            }
            sts_spec["volumeClaimTemplates"] = json!([{
                "metadata": {"name": "data", "labels": node_labels},
                "spec": claim_spec,
            }]);
            sts_spec["persistentVolumeClaimRetentionPolicy"] = json!({"whenDeleted": "Delete", "whenScaled": "Delete"});
        }
        None => volumes.push(json!({"name": "data", "emptyDir": {}})),
    }
    sts_spec["template"]["spec"]["volumes"] = Value::Array(volumes);
    let stateful_set = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": node_labels},
        "spec": sts_spec,
    });
    vec![config_map, secret, stateful_set]
}

/// The client's program is at a fixed path in its image; other programs are looked up on the image's PATH.
fn program_in_image(client: Client, program: &str) -> String {
    if program == client.program() {
        program_path(client).to_string()
    } else {
        program.to_string()
    }
}

fn env(vars: &[(String, String)]) -> Vec<Value> {
    vars.iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect()
}

fn container_port_list(ports: &NodePorts) -> Vec<Value> {
    let mut list = vec![("p2p", ports.p2p), ("rpc", ports.rpc)];
    list.extend(ports.ws.map(|p| ("ws", p)));
    list.extend(ports.metrics.map(|p| ("metrics", p)));
    list.extend(ports.authrpc.map(|p| ("authrpc", p)));
    list.extend(ports.raft.map(|p| ("raft", p)));
    list.into_iter()
        .map(|(name, port)| json!({"name": name, "containerPort": port, "protocol": "TCP"}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_are_configmap_keys_and_shell_words_are_quoted() {
        assert_eq!(file_key(3, Path::new("geth/nodekey")), "3-geth_nodekey");
        assert_eq!(file_key(0, Path::new("keystore/UTC--x")), "0-keystore_UTC--x");
        assert_eq!(quoted("/data/a b"), "'/data/a b'");
        assert_eq!(quoted("it's"), r"'it'\''s'");
    }

    #[test]
    fn every_client_listens_on_its_usual_ports() {
        let geth = container_ports(Client::Geth, Consensus::Clique);
        assert_eq!(
            (geth.p2p, geth.rpc, geth.ws, geth.authrpc),
            (30303, 8545, Some(8546), Some(8551))
        );
        assert_eq!(container_ports(Client::Quorum, Consensus::Raft).raft, Some(50400));
        let anvil = container_ports(Client::Anvil, Consensus::Interval);
        assert_eq!((anvil.ws, anvil.metrics), (None, None));
        let service = node_service("net", "validator-1", "NodePort", &geth);
        assert_eq!(service["metadata"]["name"], "net-validator-1");
        let names: Vec<&str> = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["p2p"], "only p2p is published to peers");
        let rpc = rpc_service("net", "validator-1", "LoadBalancer", &geth, &["10.0.0.0/8".into()]);
        let names: Vec<&str> = rpc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["rpc", "ws", "metrics"], "authrpc is not published");
        assert_eq!(rpc["spec"]["loadBalancerSourceRanges"][0], "10.0.0.0/8");
        let (args, hidden) = hide_secret_args(&["--node-key".into(), "abc".into(), "--x".into()]);
        assert_eq!(args, ["--node-key", "$(DAGCTL_NODE_KEY)", "--x"]);
        assert_eq!(hidden, [("node-key", "DAGCTL_NODE_KEY", "abc".to_string())]);
    }
}
