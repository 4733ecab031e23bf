//! Turning a validated spec plus backend-chosen placement into a [`GeneratedNetwork`].

use alloy_primitives::{hex, Address};

use crate::clients;
use crate::error::{Error, Result};
use crate::keys::{KeySource, NodeKey};
use crate::output::{GeneratedFile, GeneratedNetwork, NodeParams};
use crate::plan::{Plan, PlannedNode};
use crate::spec::{Client, Consensus, NetworkSpec, NodeSlot, Role};

/// Generates keys (seeded from `spec.key_seed`, random otherwise) and every node's configuration.
///
/// `params` holds one entry per node of [`NetworkSpec::layout`], in layout order.
pub fn generate(spec: &NetworkSpec, params: &[NodeParams]) -> Result<GeneratedNetwork> {
    // Validate and count before making keys, so a bad request costs nothing.
    let slots = spec.layout()?;
    if params.len() != slots.len() {
        return Err(Error::NodeParamsCount {
            expected: slots.len(),
            got: params.len(),
        });
    }
    let count = u32::try_from(slots.len()).map_err(|_| Error::InvalidField {
        field: "nodes",
        reason: format!("{} nodes do not fit in u32", slots.len()),
    })?;
    let source = KeySource::from_seed(spec.key_seed.as_deref());
    let keys = NodeKey::generate_many(&source, count)?;
    generate_with_keys(spec, params, keys)
}

/// Like [`generate`], with caller-supplied node keys (one per node, in layout order).
pub fn generate_with_keys(spec: &NetworkSpec, params: &[NodeParams], keys: Vec<NodeKey>) -> Result<GeneratedNetwork> {
    let settings = spec.settings()?;
    let slots = spec.layout_with(&settings)?;
    if params.len() != slots.len() {
        return Err(Error::NodeParamsCount {
            expected: slots.len(),
            got: params.len(),
        });
    }
    if keys.len() != slots.len() {
        return Err(Error::InvalidField {
            field: "keys",
            reason: format!("expected {} node keys, got {}", slots.len(), keys.len()),
        });
    }
    for (slot, node_params) in slots.iter().zip(params) {
        check_params(spec.client, spec.consensus, slot, node_params)?;
    }
    let source = KeySource::from_seed(spec.key_seed.as_deref());
    let mut nodes = Vec::with_capacity(slots.len());
    for (index, ((slot, node_params), key)) in slots.iter().zip(params).zip(keys).enumerate() {
        let password_bytes = source.bytes32("password", index as u32, 0)?;
        nodes.push(PlannedNode {
            slot,
            params: node_params,
            key,
            password: hex::encode(&password_bytes[..16]),
        });
    }
    let mut validators: Vec<Address> = nodes
        .iter()
        .filter(|n| n.slot.role == Role::Validator)
        .map(|n| n.key.address())
        .collect();
    // Clients keep validator sets sorted; besu-docs asks for ascending order in extraData.
    validators.sort();
    let plan = Plan {
        spec,
        settings: &settings,
        nodes,
        validators,
        source,
    };
    let built = clients::build(&plan)?;
    let genesis_json = built
        .genesis
        .as_ref()
        .map(|genesis| {
            serde_json::to_string_pretty(genesis).map_err(|e| Error::Serialize {
                what: "genesis",
                reason: e.to_string(),
            })
        })
        .transpose()?;
    let static_nodes = plan.enodes();
    let mut node_configs = Vec::with_capacity(plan.nodes.len());
    for (planned, mut output) in plan.nodes.iter().zip(built.nodes) {
        if let (Some(json), Some(file)) = (&genesis_json, built.genesis_file) {
            output
                .files
                .insert(0, GeneratedFile::public(file, json.clone().into_bytes()));
        }
        node_configs.push(planned.config(spec.client, output));
    }
    Ok(GeneratedNetwork {
        name: spec.name.clone(),
        client: spec.client,
        consensus: spec.consensus,
        settings: plan.settings.clone(),
        genesis_json,
        genesis_file: built.genesis_file,
        extra_data: built.extra_data,
        validators: plan.validators.clone(),
        static_nodes,
        nodes: node_configs,
    })
}

fn check_params(client: Client, consensus: Consensus, slot: &NodeSlot, params: &NodeParams) -> Result<()> {
    let host_ok = |host: &str| {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
    };
    let hosts = std::iter::once(params.host.as_str()).chain(params.advertise.as_ref().map(|a| a.host.as_str()));
    for host in hosts {
        if !host_ok(host) {
            return Err(Error::InvalidField {
                field: "host",
                reason: format!("node `{}`: `{host}` is not a host name or IP address", slot.name),
            });
        }
    }
    if !params.data_dir.is_absolute() {
        return Err(Error::InvalidField {
            field: "data_dir",
            reason: format!(
                "node `{}`: `{}` must be an absolute path",
                slot.name,
                params.data_dir.display()
            ),
        });
    }
    let missing = |port: &'static str| Error::MissingPort {
        node: slot.name.clone(),
        client,
        port,
    };
    if client == Client::Geth && params.ports.authrpc.is_none() {
        return Err(missing("authrpc"));
    }
    if consensus == Consensus::Raft && params.ports.raft.is_none() {
        return Err(missing("raft"));
    }
    Ok(())
}
