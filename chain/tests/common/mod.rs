//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use chain::{NetworkSpec, NodeParams, NodePorts};
use serde_json::Value;

/// Deterministic placement: ports 31000 + 10*i.., data dirs under /srv/dagctl/<net>/<node>.
pub fn params_for(spec: &NetworkSpec, with_optional_ports: bool) -> Vec<NodeParams> {
    let layout = spec.layout().expect("spec is valid");
    layout
        .iter()
        .map(|slot| {
            let base = 31_000 + 10 * slot.index as u16;
            let mut ports = NodePorts::new(base, base + 1);
            ports.authrpc = Some(base + 2);
            ports.raft = Some(base + 3);
            if with_optional_ports {
                ports.ws = Some(base + 4);
                ports.metrics = Some(base + 5);
            }
            NodeParams {
                data_dir: PathBuf::from(format!("/srv/dagctl/{}/{}", spec.name, slot.name)),
                host: "127.0.0.1".to_string(),
                ports,
                advertise: None,
            }
        })
        .collect()
}

/// Follows a `/`-separated path of object keys through JSON.
pub fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('/').fold(value, |v, key| {
        v.get(key)
            .unwrap_or_else(|| panic!("missing `{key}` on the way to `{path}` in {v}"))
    })
}
