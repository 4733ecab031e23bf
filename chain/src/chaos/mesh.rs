//! Faults on a network on Kubernetes, as Chaos Mesh resources (`chaos-mesh.org/v1alpha1`): netem delay, rate,
//! loss, duplicate and corrupt and partitions as `NetworkChaos`; kill, pause, stop and restart as `PodChaos`
//! (`pod-kill`, `pod-failure`); CPU and memory pressure as `StressChaos`; clock skew as `TimeChaos`. The targets
//! are label selectors on the nodes' pods (`dagctl.io/network`, `dagctl.io/node In [...]`); peers in another
//! region are named by their advertised addresses (`externalTargets`), since a selector sees one cluster.
//!
//! Each object is recorded in the fault ledger ([`Undo::ClusterObject`]) before it is created, and deleted at
//! the fault's end, on failure, on cancel, and by the engine's recovery when whoever applied it is gone.
//! Chaos Mesh's controller (which must run in the cluster) does the injecting and, on deletion, the recovery.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::ledger::{Book, FaultLedger, Undo};
use super::link::{Cut, Distribution, Shape};
use super::network::{CutDirection, Direction, NetworkFault, PacketEffect};
use super::process::{FaultReport, ProcessFault, Step};
use super::stress::StressFault;
use super::Fault;
use crate::backend::kubernetes::render::{NETWORK_LABEL, NODE_LABEL};
use crate::backend::kubernetes::{ClusterObject, KubeRecord};
use crate::backend::{NodeBackend, NodeSignal, Progress};
use crate::error::Result;

/// Chaos Mesh's API group and version.
pub const API_VERSION: &str = "chaos-mesh.org/v1alpha1";
/// Label naming the fault (its ledger id) on each object.
pub const FAULT_LABEL: &str = "dagctl.io/fault";
/// How long a one-shot `pod-kill` stays for Chaos Mesh's controller to act on it before it is deleted.
const ONE_SHOT_HOLD: Duration = Duration::from_secs(5);
/// A bandwidth limit's queue and bucket (Chaos Mesh's examples' values).
const BANDWIDTH_LIMIT: u64 = 20_971_520;
const BANDWIDTH_BUFFER: u64 = 10_000;

/// One Chaos Mesh object of a planned fault, in one region (its name is completed when applied).
#[derive(Debug, Clone, PartialEq)]
pub struct MeshObject {
    pub region: String,
    pub namespace: String,
    pub kind: &'static str,
    /// The name's stem; the fault id is appended when it is applied.
    pub stem: String,
    pub object: Value,
}

/// A Chaos Mesh duration (`30s`, `1500ms`).
fn duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A percentage as Chaos Mesh writes it (`"25"`, `"0.5"`).
fn percent(p: f64) -> String {
    let text = format!("{p:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A stress-ng size (`256M`, `1G`, `512b`, `50%`; binary units) as Chaos Mesh's (`256MiB`, `1GiB`, `512B`, `50%`).
fn memory_size(size: &str) -> String {
    let size = size.trim();
    let number = &size[..size.len().saturating_sub(1)];
    match size.chars().last() {
        Some('b' | 'B') => format!("{number}B"),
        Some(unit @ ('K' | 'M' | 'G' | 'T' | 'k' | 'm' | 'g' | 't')) => {
            format!("{number}{}iB", unit.to_ascii_uppercase())
        }
        _ => size.to_string(),
    }
}

/// The selector of `nodes` of `network` in `namespace`.
fn selector(network: &str, namespace: &str, nodes: &[&str]) -> Value {
    json!({
        "namespaces": [namespace],
        "labelSelectors": {NETWORK_LABEL: network},
        "expressionSelectors": [{"key": NODE_LABEL, "operator": "In", "values": nodes}],
    })
}

/// The nodes of `record` named in `names`, grouped by region (in record order).
fn by_region<'a>(record: &'a KubeRecord, names: &[String]) -> Vec<(&'a str, &'a str, Vec<&'a str>)> {
    let mut groups: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for node in record.nodes.iter().filter(|n| names.contains(&n.name)) {
        match groups.iter_mut().find(|(r, _, _)| *r == node.region) {
            Some(group) => group.2.push(&node.name),
            None => groups.push((&node.region, &node.namespace, vec![&node.name])),
        }
    }
    groups
}

/// Renders `fault` on `nodes` of `record`; `others` is the other side of a partition, or the peers whose
/// traffic to the targets an ingress or two-way netem fault shapes. An error says what Chaos Mesh cannot express.
pub fn render(
    record: &KubeRecord,
    fault: &Fault,
    nodes: &[String],
    others: &[String],
) -> std::result::Result<Vec<MeshObject>, String> {
    let mut objects = Vec::new();
    match fault {
        Fault::Network(network) => {
            for (side, what, spec) in network_specs(record, network, nodes, others)? {
                push_for(record, &side, "NetworkChaos", what, spec, &mut objects);
            }
        }
        Fault::Process(process) => {
            let (what, spec) = pod_spec(process, record.kill_grace_seconds)?;
            push_for(record, nodes, "PodChaos", what, spec, &mut objects);
        }
        Fault::Stress(stress) => push_for(
            record,
            nodes,
            "StressChaos",
            "stress",
            stress_spec(stress)?,
            &mut objects,
        ),
        Fault::Clock {
            offset_seconds,
            duration: lasts,
        } => push_for(
            record,
            nodes,
            "TimeChaos",
            "clock",
            json!({
                "timeOffset": format!("{offset_seconds}s"),
                "clockIds": ["CLOCK_REALTIME"],
                "containerNames": ["node"],
                "duration": duration(*lasts),
            }),
            &mut objects,
        ),
    }
    Ok(objects)
}

/// One object of `kind` per region holding any of `selected`, selecting them there, with `spec`'s fields.
fn push_for(
    record: &KubeRecord,
    selected: &[String],
    kind: &'static str,
    what: &str,
    spec: Value,
    objects: &mut Vec<MeshObject>,
) {
    for (region, namespace, names) in by_region(record, selected) {
        let mut full = json!({"selector": selector(&record.name, namespace, &names), "mode": "all"});
        if let (Some(full), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
            full.extend(extra.clone());
        }
        objects.push(MeshObject {
            region: region.to_string(),
            namespace: namespace.to_string(),
            kind,
            stem: format!("{}-{what}", record.name),
            object: json!({
                "apiVersion": API_VERSION,
                "kind": kind,
                "metadata": {"labels": {NETWORK_LABEL: record.name}},
                "spec": full,
            }),
        });
    }
}

/// Where peers dial `names`: the addresses in their enodes (cluster IPs in one region, node or load-balancer
/// addresses across regions), which is what a node's packets to them carry (a Service's cluster IP is rewritten
/// only after they leave the pod, where Chaos Mesh's rules act).
fn addresses(record: &KubeRecord, names: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for node in record.nodes.iter().filter(|n| names.contains(&n.name)) {
        if !hosts.contains(&node.peer.host) {
            hosts.push(node.peer.host.clone());
        }
    }
    hosts
}

/// One `NetworkChaos` of a network fault: the nodes it selects, its name's suffix, its spec.
type Rule = (Vec<String>, &'static str, Value);

/// The `NetworkChaos` specs of a network fault, each with the nodes it selects. Every one acts on what its
/// nodes send (`direction: to`): what a target receives is shaped as its peers send it (`externalTargets`, the
/// targets' addresses), and a partition is one such rule on each side it cuts.
fn network_specs(
    record: &KubeRecord,
    fault: &NetworkFault,
    targets: &[String],
    others: &[String],
) -> std::result::Result<Vec<Rule>, String> {
    // `interface` names the node's peer links (pumba's `eth1` of a container on a second network); a pod's peer
    // links are its own interface, which Chaos Mesh picks when no `device` is given.
    let outgoing = |spec: &Value| {
        let mut spec = spec.clone();
        spec["direction"] = json!("to");
        spec
    };
    let towards = |spec: &Value, names: &[String]| {
        let mut spec = outgoing(spec);
        spec["externalTargets"] = json!(addresses(record, names));
        spec
    };
    // (the nodes it acts on, name, spec) for a netem-like effect in `direction`.
    let shaped = |direction: Direction, what: (&'static str, &'static str, &'static str), spec: Value| {
        let mut specs = Vec::new();
        if matches!(direction, Direction::Egress | Direction::Both) {
            let name = if direction == Direction::Both { what.1 } else { what.0 };
            specs.push((targets.to_vec(), name, outgoing(&spec)));
        }
        if matches!(direction, Direction::Ingress | Direction::Both) {
            specs.push((others.to_vec(), what.2, towards(&spec, targets)));
        }
        specs
    };
    match fault {
        NetworkFault::Netem {
            duration: lasts,
            direction,
            shape,
            ..
        } => {
            let Shape { delay, rate, cut } = *shape;
            if cut.is_some() {
                return Err("a netem cut is a partition on Kubernetes: use `partition`".into());
            }
            let mut specs = Vec::new();
            if let Some(delay) = delay {
                if delay.distribution != Distribution::Uniform {
                    return Err(format!(
                        "Chaos Mesh's delay has no distribution; `{:?}` cannot be rendered (leave it out for uniform jitter)",
                        delay.distribution
                    )
                    .to_lowercase());
                }
                let spec = json!({
                    "action": "delay",
                    "duration": duration(*lasts),
                    "delay": {
                        "latency": format!("{}ms", delay.time.as_millis()),
                        "jitter": format!("{}ms", delay.jitter.as_millis()),
                        "correlation": percent(delay.correlation * 100.0),
                    },
                });
                specs.extend(shaped(*direction, ("delay", "delay-out", "delay-in"), spec));
            }
            if let Some(rate) = rate {
                let spec = json!({
                    "action": "bandwidth",
                    "duration": duration(*lasts),
                    "bandwidth": {"rate": format!("{rate}bps"), "limit": BANDWIDTH_LIMIT, "buffer": BANDWIDTH_BUFFER},
                });
                specs.extend(shaped(*direction, ("rate", "rate-out", "rate-in"), spec));
            }
            if specs.is_empty() {
                return Err("a netem fault with neither delay nor rate".into());
            }
            Ok(specs)
        }
        NetworkFault::Packets {
            duration: lasts,
            direction,
            effect,
            ..
        } => {
            let (share, correlation) = effect.share();
            let kind = effect.kind();
            let detail = match effect {
                PacketEffect::Loss { .. } => json!({"loss": percent(share), "correlation": percent(correlation)}),
                PacketEffect::Duplicate { .. } => {
                    json!({"duplicate": percent(share), "correlation": percent(correlation)})
                }
                PacketEffect::Corrupt { .. } => json!({"corrupt": percent(share), "correlation": percent(correlation)}),
            };
            let mut spec = json!({"action": kind, "duration": duration(*lasts)});
            spec[kind] = detail;
            let names = match effect {
                PacketEffect::Loss { .. } => ("loss", "loss-out", "loss-in"),
                PacketEffect::Duplicate { .. } => ("duplicate", "duplicate-out", "duplicate-in"),
                PacketEffect::Corrupt { .. } => ("corrupt", "corrupt-out", "corrupt-in"),
            };
            Ok(shaped(*direction, names, spec))
        }
        NetworkFault::Partition {
            duration: lasts,
            direction,
            mode,
            ..
        } => {
            if *mode == Cut::Reset {
                return Err("Chaos Mesh's partition drops packets; mode `reset` is not available on Kubernetes".into());
            }
            let spec = json!({"action": "partition", "duration": duration(*lasts)});
            let mut specs = Vec::new();
            if matches!(direction, CutDirection::To | CutDirection::Both) {
                specs.push((targets.to_vec(), "partition-out", towards(&spec, others)));
            }
            if matches!(direction, CutDirection::From | CutDirection::Both) {
                specs.push((others.to_vec(), "partition-in", towards(&spec, targets)));
            }
            Ok(specs)
        }
    }
}

/// `grace`: seconds a pod gets to stop (the backend's kill grace), never 0 (Chaos Mesh's default), which
/// force-deletes the pod and may start the node again beside its old container (two signers with one key).
fn pod_spec(fault: &ProcessFault, grace: u64) -> std::result::Result<(&'static str, Value), String> {
    let grace = grace.max(1);
    Ok(match fault {
        // Down for a while, then back: the container's image swapped for a pause image until the end.
        ProcessFault::Kill {
            restart_after: Some(after),
            ..
        } => ("kill", json!({"action": "pod-failure", "duration": duration(*after)})),
        ProcessFault::Kill {
            signal,
            restart_after: None,
        } => {
            let grace = match signal {
                // Not 0: a grace of 0 force-deletes the pod, and its StatefulSet may start the node again
                // while the old container still runs (two signers with one key).
                NodeSignal::Kill => json!({"action": "pod-kill", "gracePeriod": 1}),
                NodeSignal::Terminate => json!({"action": "pod-kill", "gracePeriod": grace}),
                other => return Err(format!("a kill with {other} cannot be sent to a pod")),
            };
            ("kill", grace)
        }
        ProcessFault::Pause { duration: lasts } => {
            ("pause", json!({"action": "pod-failure", "duration": duration(*lasts)}))
        }
        ProcessFault::Stop { duration: lasts } => {
            ("stop", json!({"action": "pod-failure", "duration": duration(*lasts)}))
        }
        ProcessFault::Restart => ("restart", json!({"action": "pod-kill", "gracePeriod": grace})),
    })
}

fn stress_spec(fault: &StressFault) -> std::result::Result<Value, String> {
    let mut stressors = serde_json::Map::new();
    if fault.cpu > 0 {
        stressors.insert("cpu".into(), json!({"workers": fault.cpu, "load": fault.cpu_load}));
    }
    if fault.vm > 0 {
        let mut memory = json!({"workers": fault.vm});
        if let Some(size) = &fault.vm_bytes {
            memory["size"] = json!(memory_size(size));
        }
        stressors.insert("memory".into(), memory);
    }
    if stressors.is_empty() {
        return Err("a stress fault with no CPU or memory workers".into());
    }
    Ok(json!({"stressors": stressors, "containerNames": ["node"], "duration": duration(fault.duration)}))
}

/// Creates the planned objects (each recorded first), holds them for the fault's length or until `cancel`,
/// then deletes them all; a failure part-way deletes what was created.
pub async fn apply<B: NodeBackend, L: FaultLedger>(
    book: &Book<'_, L>,
    backend: &B,
    fault: &Fault,
    nodes: &[String],
    objects: &[MeshObject],
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<FaultReport> {
    let started = Instant::now();
    let mut report = FaultReport {
        fault: fault.name(),
        nodes: nodes.to_vec(),
        ..Default::default()
    };
    let step = |report: &mut FaultReport, action: String| {
        progress(&action);
        report.steps.push(Step {
            node: nodes.join(","),
            at: Utc::now(),
            action,
        });
    };
    let short_id: String = book.id.chars().take(8).collect();
    let mut created: Vec<(String, ClusterObject)> = Vec::new();
    let mut failure = None;
    for planned in objects {
        let name = format!("{}-{short_id}", planned.stem);
        let target = ClusterObject {
            region: planned.region.clone(),
            namespace: planned.namespace.clone(),
            api_version: API_VERSION.to_string(),
            kind: planned.kind.to_string(),
            name: name.clone(),
        };
        let part = format!("{}/{}/{name}", planned.region, planned.kind);
        if let Err(err) = book
            .applying(&part, "chaos-mesh", &Undo::ClusterObject(target.clone()))
            .await
        {
            failure = Some(err);
            break;
        }
        let mut object = planned.object.clone();
        object["metadata"]["name"] = json!(name);
        object["metadata"]["labels"][FAULT_LABEL] = json!(book.id);
        match backend.apply_cluster_object(&planned.region, &object).await {
            Ok(()) => {
                step(
                    &mut report,
                    format!("{} {name} created in region {}", planned.kind, planned.region),
                );
                created.push((part, target));
            }
            Err(err) => {
                // It may exist half-made: delete it like the others.
                created.push((part, target));
                failure = Some(err);
                break;
            }
        }
    }
    if failure.is_none() {
        report.in_place = Some(Utc::now());
        let hold = match fault.lasts() {
            d if d.is_zero() => ONE_SHOT_HOLD,
            d => d,
        };
        tokio::select! {
            _ = cancel.cancelled() => report.cancelled = true,
            _ = tokio::time::sleep(hold) => {}
        }
    }
    let mut undo_errors = Vec::new();
    for (part, target) in created {
        match backend.delete_cluster_object(&target).await {
            Ok(()) => {
                step(&mut report, format!("{} {} deleted", target.kind, target.name));
                let _ = book.undone(&part, None).await;
            }
            Err(err) => {
                let reason = err.to_string();
                let _ = book.undone(&part, Some(&reason)).await;
                undo_errors.push(format!("{}: {reason}", target.name));
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.outcome(
        failure.map(|e| e.to_string()),
        &undo_errors,
        "the Chaos Mesh object is still in the cluster: delete it (kubectl delete) to end the fault",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_percentages_read_as_chaos_mesh_writes_them() {
        assert_eq!(memory_size("256M"), "256MiB");
        assert_eq!(memory_size("1g"), "1GiB");
        assert_eq!(memory_size("512b"), "512B");
        assert_eq!(memory_size("50%"), "50%");
        assert_eq!(memory_size("1048576"), "1048576");
        assert_eq!(duration(Duration::from_secs(30)), "30s");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(percent(25.0), "25");
        assert_eq!(percent(0.5), "0.5");
        assert_eq!(percent(0.0), "0");
    }
}
