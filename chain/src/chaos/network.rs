//! Faults on peer links: pumba's `netem` (`delay`, `rate`; `loss`, `duplicate` and `corrupt` are refused, see
//! below) and partitions between node groups. The local backend runs every node on loopback and this kernel
//! has no `netem`, so each affected peer link is rerouted through a fault-injecting TCP proxy
//! ([`super::link`]): over JSON-RPC (`admin_removePeer` on both ends, `admin_addPeer` of the proxy's address on
//! the dialing end), recorded in the ledger first, and put back on its direct path at the end, on cancel, or by
//! the engine's recovery if this process dies.
//!
//! Which link carries what, for a delay on targets T (netem shapes a node's egress by default):
//! `x -> y` is delayed when x is in T (egress, both) or y is in T (ingress, both). A partition between groups
//! A (the target) and B (`from`, by default every other node) cuts `A -> B` (`to`), `B -> A` (`from`) or both.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::ledger::{relink, Book, FaultLedger, LinkEnd, Undo};
use super::link::{Cut, LinkProxy, Shape};
use super::process::{FaultReport, Step};
use super::targets::Selector;
use crate::backend::local::rpc::call;
use crate::backend::local::NetworkRecord;
use crate::backend::Progress;
use crate::error::{Error, Result};
use crate::spec::Client;

const RPC: Duration = Duration::from_secs(5);

/// Which of a target's directions a netem fault shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Egress,
    Ingress,
    Both,
}

/// Which way a partition cuts, as Chaos Mesh says it: `to` the other group, `from` it, or `both`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CutDirection {
    To,
    From,
    Both,
}

/// A fault on peer links.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkFault {
    /// netem on the targets' links.
    Netem {
        duration: Duration,
        interface: Option<String>,
        direction: Direction,
        shape: Shape,
    },
    /// Packets of the targets' interfaces lost, duplicated or corrupted (nodes in network namespaces only).
    Packets {
        duration: Duration,
        interface: Option<String>,
        direction: Direction,
        effect: PacketEffect,
    },
    /// The targets cut off from `from` (every other node when absent).
    Partition {
        duration: Duration,
        from: Option<Selector>,
        direction: CutDirection,
        mode: Cut,
    },
}

impl NetworkFault {
    /// The fault's name in reports.
    pub fn name(&self) -> String {
        match self {
            NetworkFault::Netem {
                duration,
                interface,
                direction,
                shape,
            } => {
                let mut name = String::from("netem");
                if let Some(d) = shape.delay {
                    name.push_str(&format!(
                        " delay {}ms ± {}ms, correlation {}%, {:?}",
                        d.time.as_millis(),
                        d.jitter.as_millis(),
                        (d.correlation * 100.0).round(),
                        d.distribution
                    ));
                }
                if let Some(rate) = shape.rate {
                    name.push_str(&format!(" rate {rate} bytes/s"));
                }
                let on = interface
                    .as_deref()
                    .map(|i| format!(", interface {i} (the node's peer links)"))
                    .unwrap_or_default();
                format!("{name} ({direction:?}{on}) for {duration:?}").to_lowercase()
            }
            NetworkFault::Packets {
                duration,
                interface,
                direction,
                effect,
            } => {
                let (percent, correlation) = effect.share();
                let on = interface
                    .as_deref()
                    .map(|i| format!(", interface {i}"))
                    .unwrap_or_default();
                format!(
                    "netem {} {percent}%, correlation {correlation}% ({direction:?}{on}) for {duration:?}",
                    effect.kind()
                )
                .to_lowercase()
            }
            NetworkFault::Partition {
                duration,
                direction,
                mode,
                ..
            } => format!("partition ({direction:?}, {mode:?}) for {duration:?}").to_lowercase(),
        }
    }

    pub fn duration(&self) -> Duration {
        match self {
            NetworkFault::Netem { duration, .. }
            | NetworkFault::Packets { duration, .. }
            | NetworkFault::Partition { duration, .. } => *duration,
        }
    }
}

/// What happens to a share of a node's packets: netem's `loss`, `duplicate` and `corrupt`. Percentages 0 to
/// 100; `correlation` is netem's (only 0 can be expressed by nftables, which draws each packet anew).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PacketEffect {
    Loss { percent: f64, correlation: f64 },
    Duplicate { percent: f64, correlation: f64 },
    Corrupt { percent: f64, correlation: f64 },
}

impl PacketEffect {
    pub fn kind(&self) -> &'static str {
        match self {
            PacketEffect::Loss { .. } => "loss",
            PacketEffect::Duplicate { .. } => "duplicate",
            PacketEffect::Corrupt { .. } => "corrupt",
        }
    }

    /// (percent, correlation).
    pub fn share(&self) -> (f64, f64) {
        match *self {
            PacketEffect::Loss { percent, correlation }
            | PacketEffect::Duplicate { percent, correlation }
            | PacketEffect::Corrupt { percent, correlation } => (percent, correlation),
        }
    }
}

/// One link to reroute: `a` dials `b` through the proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkPlan {
    pub a: LinkEnd,
    pub b: LinkEnd,
    /// `b`'s p2p address.
    pub target: SocketAddr,
    /// Where the link's proxy listens: `b`'s address on loopback, this host's bridge address when the nodes
    /// run in network namespaces.
    pub listen: std::net::IpAddr,
    /// What `a` sends.
    pub forward: Shape,
    /// What `b` sends.
    pub backward: Shape,
}

impl LinkPlan {
    pub fn part(&self) -> String {
        format!("{}|{}", self.a.node, self.b.node)
    }
}

/// `host:port` of an `enode://id@host:port?...` URL.
fn enode_address(enode: &str) -> Option<SocketAddr> {
    let rest = enode.strip_prefix("enode://")?.split_once('@')?.1;
    let address = rest.split(['?', '/']).next()?;
    address.parse().ok()
}

/// The enode `enode` with its address replaced by `address`.
fn enode_at(enode: &str, address: SocketAddr) -> String {
    let id = enode
        .strip_prefix("enode://")
        .and_then(|r| r.split_once('@'))
        .map(|(id, _)| id)
        .unwrap_or_default();
    format!("enode://{id}@{address}?discport=0")
}

/// The group a fault on `nodes` acts against: a partition's `from` (checked not to overlap the targets), or
/// every node not targeted; never empty.
pub fn other_group<'a>(
    record: impl Into<super::targets::Members<'a>>,
    nodes: &[String],
    fault: &NetworkFault,
    seed: u64,
) -> Result<BTreeSet<String>, String> {
    let record = record.into();
    let targets: BTreeSet<&str> = nodes.iter().map(String::as_str).collect();
    let others: BTreeSet<String> = match fault {
        NetworkFault::Partition { from: Some(from), .. } => {
            let picked = from.select(record.clone(), seed.wrapping_add(0x5eed))?;
            if let Some(twice) = picked.iter().find(|n| targets.contains(n.as_str())) {
                return Err(format!(
                    "`from`: node `{twice}` is in both groups of the partition (named twice)"
                ));
            }
            picked.into_iter().collect()
        }
        _ => record
            .nodes
            .iter()
            .map(|(name, _)| name.to_string())
            .filter(|n| !targets.contains(n.as_str()))
            .collect(),
    };
    if others.is_empty() {
        return Err("every node is targeted: there is no link to another node to fault".into());
    }
    Ok(others)
}

/// The links `fault` on `nodes` reroutes, each with its shapes; an error (nothing applied) when the network's
/// client cannot rewire peers or the groups are wrong. `seed` drives a random `from`.
pub fn plan(
    record: &NetworkRecord,
    nodes: &[String],
    fault: &NetworkFault,
    seed: u64,
) -> Result<Vec<LinkPlan>, String> {
    let targets: BTreeSet<&str> = nodes.iter().map(String::as_str).collect();
    let shape_of = |x: &str, y: &str| -> Shape {
        match fault {
            NetworkFault::Netem { direction, shape, .. } => {
                let from_x = targets.contains(x) && matches!(direction, Direction::Egress | Direction::Both);
                let into_y = targets.contains(y) && matches!(direction, Direction::Ingress | Direction::Both);
                if from_x || into_y {
                    *shape
                } else {
                    Shape::default()
                }
            }
            NetworkFault::Partition { .. } | NetworkFault::Packets { .. } => Shape::default(),
        }
    };
    let others = other_group(record, nodes, fault, seed)?;
    if let NetworkFault::Packets { effect, .. } = fault {
        return Err(format!(
            "netem {} cannot be applied to nodes on loopback: this kernel has no netem, and the TCP proxy that stands in for it carries a byte stream, which cannot {} packets; deploy the network with `isolation: netns` (nftables then acts on the nodes' packets), or use delay, rate or partition",
            effect.kind(),
            match effect {
                PacketEffect::Loss { .. } => "lose",
                PacketEffect::Duplicate { .. } => "duplicate",
                PacketEffect::Corrupt { .. } => "corrupt",
            }
        ));
    }
    if !matches!(record.client, Client::Geth | Client::Quorum) {
        return Err(format!(
            "network faults reroute peer links with admin_addPeer/admin_removePeer, which dagctl uses on geth and \
             GoQuorum; network `{}` runs {}",
            record.name,
            serde_json::to_value(record.client)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ));
    }
    let end = |i: usize| -> Result<(LinkEnd, SocketAddr), String> {
        let node = &record.nodes[i];
        let enode = node
            .enode
            .clone()
            .ok_or_else(|| format!("node `{}` has no p2p address", node.name))?;
        let address = enode_address(&enode).ok_or_else(|| format!("node `{}`: unreadable enode {enode}", node.name))?;
        Ok((
            LinkEnd {
                node: node.name.clone(),
                rpc: node.rpc.clone(),
                enode,
            },
            address,
        ))
    };
    let mut links = Vec::new();
    for i in 0..record.nodes.len() {
        for j in i + 1..record.nodes.len() {
            let (x, y) = (record.nodes[i].name.as_str(), record.nodes[j].name.as_str());
            let (forward, backward) = match fault {
                NetworkFault::Partition { direction, mode, .. } => {
                    let x_in_a = targets.contains(x);
                    let crosses = (x_in_a && others.contains(y)) || (targets.contains(y) && others.contains(x));
                    if !crosses {
                        continue;
                    }
                    let cut = Shape {
                        cut: Some(*mode),
                        ..Shape::default()
                    };
                    // x -> y goes from group A to B when x is in A.
                    let a_to_b = *direction != CutDirection::From;
                    let b_to_a = *direction != CutDirection::To;
                    let x_to_y = if x_in_a { a_to_b } else { b_to_a };
                    let y_to_x = if x_in_a { b_to_a } else { a_to_b };
                    (
                        if x_to_y { cut } else { Shape::default() },
                        if y_to_x { cut } else { Shape::default() },
                    )
                }
                NetworkFault::Netem { .. } | NetworkFault::Packets { .. } => {
                    if !targets.contains(x) && !targets.contains(y) {
                        continue;
                    }
                    (shape_of(x, y), shape_of(y, x))
                }
            };
            if forward.is_none() && backward.is_none() {
                continue;
            }
            let (a, _) = end(i)?;
            let (b, target) = end(j)?;
            let listen = match &record.netns {
                Some(layout) => layout
                    .gateway
                    .parse()
                    .map_err(|_| format!("the bridge address `{}` is not an IP address", layout.gateway))?,
                None => target.ip(),
            };
            links.push(LinkPlan {
                a,
                b,
                target,
                listen,
                forward,
                backward,
            });
        }
    }
    if links.is_empty() {
        return Err("the fault touches no peer link".into());
    }
    Ok(links)
}

/// The public key part of an enode URL (what identifies a peer whatever its address).
fn pubkey(enode: &str) -> &str {
    enode
        .strip_prefix("enode://")
        .and_then(|r| r.split_once('@'))
        .map(|(key, _)| key)
        .unwrap_or_default()
}

/// Whether `a` and `b` are still peers on a direct connection: `a` has `b` at another address than `proxy`, or
/// `b` dialed `a` itself.
async fn direct_link(link: &LinkPlan, proxy: Option<SocketAddr>) -> Result<bool> {
    let peers_of = |rpc: &str| {
        let rpc = rpc.to_string();
        async move {
            let peers = call(&rpc, "admin_peers", serde_json::json!([]), RPC).await?;
            Ok::<_, Error>(peers.as_array().cloned().unwrap_or_default())
        }
    };
    let proxy = proxy.map(|p| p.to_string());
    let from_a = peers_of(&link.a.rpc).await?.iter().any(|p| {
        p["enode"].as_str().map(pubkey) == Some(pubkey(&link.b.enode))
            && p.pointer("/network/remoteAddress").and_then(|v| v.as_str()) != proxy.as_deref()
    });
    let from_b = peers_of(&link.b.rpc).await?.iter().any(|p| {
        p["enode"].as_str().map(pubkey) == Some(pubkey(&link.a.enode))
            && p.pointer("/network/inbound").and_then(|v| v.as_bool()) == Some(false)
    });
    Ok(from_a || from_b)
}

/// Reroutes one link through `proxy`: both ends drop each other (again, while a redial that was under way when
/// the first drop came lands a direct connection), then `a` dials `b` through the proxy.
async fn reroute(link: &LinkPlan, proxy: SocketAddr) -> Result<()> {
    for _ in 0..20 {
        call(&link.a.rpc, "admin_removePeer", serde_json::json!([link.b.enode]), RPC).await?;
        call(&link.b.rpc, "admin_removePeer", serde_json::json!([link.a.enode]), RPC).await?;
        tokio::time::sleep(Duration::from_millis(250)).await;
        if !direct_link(link, None).await? {
            break;
        }
    }
    call(
        &link.a.rpc,
        "admin_addPeer",
        serde_json::json!([enode_at(&link.b.enode, proxy)]),
        RPC,
    )
    .await?;
    Ok(())
}

/// Whether `a` has `b` as a peer through the proxy at `proxy`.
async fn through_proxy(link: &LinkPlan, proxy: SocketAddr) -> bool {
    let Ok(peers) = call(&link.a.rpc, "admin_peers", serde_json::json!([]), RPC).await else {
        return false;
    };
    let want = proxy.to_string();
    peers.as_array().is_some_and(|peers| {
        peers
            .iter()
            .any(|p| p.pointer("/network/remoteAddress").and_then(|v| v.as_str()) == Some(want.as_str()))
    })
}

/// Applies `fault` to `links` for its duration (or until `cancel`), then puts every link back. Each link is
/// recorded in `book` before it is rerouted; a link that cannot be rerouted rolls back those that were, and
/// the error says what was applied and undone.
pub async fn apply<L: FaultLedger>(
    book: &Book<'_, L>,
    nodes: &[String],
    links: &[LinkPlan],
    fault: &NetworkFault,
    seed: u64,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<FaultReport> {
    let started = Instant::now();
    let mut report = FaultReport {
        fault: fault.name(),
        nodes: nodes.to_vec(),
        ..Default::default()
    };
    let step = |report: &mut FaultReport, part: &str, action: String| {
        progress(&format!("{part}: {action}"));
        report.steps.push(Step {
            node: part.to_string(),
            at: Utc::now(),
            action,
        });
    };
    let mut applied: Vec<(&LinkPlan, LinkProxy)> = Vec::new();
    let mut failure = None;
    for (i, link) in links.iter().enumerate() {
        let listen = SocketAddr::new(link.listen, 0);
        // A cut link is cut from the start; a delayed or limited one is unshaped until it runs through the
        // proxy (see `LinkProxy`).
        let cuts = link.forward.cut.is_some() || link.backward.cut.is_some();
        let (forward, backward) = if cuts {
            (link.forward, link.backward)
        } else {
            (Shape::default(), Shape::default())
        };
        let proxy = match LinkProxy::start(
            listen,
            link.target,
            forward,
            backward,
            seed.wrapping_add(i as u64 * 7919),
        )
        .await
        {
            Ok(proxy) => proxy,
            Err(err) => {
                failure = Some(format!("{}: cannot start its proxy: {err}", link.part()));
                break;
            }
        };
        let undo = Undo::Relink {
            a: link.a.clone(),
            b: link.b.clone(),
        };
        if let Err(err) = book.applying(&link.part(), "link", &undo).await {
            failure = Some(format!("{}: cannot record it: {err}", link.part()));
            break;
        }
        let proxy_address = proxy.address;
        applied.push((link, proxy));
        if let Err(err) = reroute(link, proxy_address).await {
            failure = Some(format!("{}: cannot reroute it: {err}", link.part()));
            break;
        }
        step(&mut report, &link.part(), format!("rerouted through {proxy_address}"));
    }
    if failure.is_none() {
        // Each link comes up through its proxy, then is shaped: as netem on a live link, not a handshake under
        // the fault. geth dials a peer at most once in 35 s (its dial history), so a link dialed lately comes
        // up only when that expires.
        let deadline = Instant::now() + Duration::from_secs(45);
        let mut up = 0;
        for (link, proxy) in &applied {
            let cuts = link.forward.cut.is_some() || link.backward.cut.is_some();
            while !cuts && Instant::now() < deadline && !cancel.is_cancelled() {
                if through_proxy(link, proxy.address).await {
                    up += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        for (link, proxy) in &applied {
            proxy.set(link.forward, link.backward);
        }
        step(
            &mut report,
            "links",
            format!(
                "fault in place on {} link(s), {up} of them connected through it",
                applied.len()
            ),
        );
        report.in_place = Some(Utc::now());
        tokio::select! {
            _ = cancel.cancelled() => report.cancelled = true,
            _ = tokio::time::sleep(fault.duration()) => {}
        }
    }
    let mut undo_errors = Vec::new();
    for (_, proxy) in &applied {
        proxy.set(Shape::default(), Shape::default());
    }
    for (link, proxy) in applied.drain(..).rev() {
        let result = relink(&link.a, &link.b).await;
        drop(proxy);
        let error = result.as_ref().err().map(|e| e.to_string());
        if let Err(err) = book.undone(&link.part(), error.as_deref()).await {
            undo_errors.push(format!("{}: undone, but the ledger was not told: {err}", link.part()));
        }
        match error {
            None => step(&mut report, &link.part(), "back on its direct path".into()),
            Some(err) => {
                step(&mut report, &link.part(), format!("could not be put back: {err}"));
                undo_errors.push(format!("{}: {err}", link.part()));
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.outcome(
        failure,
        &undo_errors,
        "not every link was put back (the engine's recovery retries)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::chaos::spec::{NetemSpec, PartitionSpec};

    fn netem(yaml: &str) -> Result<NetworkFault, String> {
        crate::chaos::spec::read::<NetemSpec>(yaml)?.fault()
    }

    fn record(n: usize) -> NetworkRecord {
        let nodes: Vec<serde_json::Value> = (1..=n)
            .map(|i| {
                serde_json::json!({
                    "name": format!("v{i}"), "role": "validator", "region": "local",
                    "rpc": format!("http://127.0.0.1:{}", 8000 + i), "ws": null,
                    "enode": format!("enode://{:0>128}@127.0.0.1:{}?discport=0", i, 30300 + i),
                    "address": "0x00", "pid": null, "data_dir": "/x", "log": "/x/log",
                    "ports": {"p2p": 30300 + i, "rpc": 8000 + i},
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "name": "net", "client": "geth", "consensus": "clique", "chain_id": 1, "base_dir": "/x",
            "deployer_pid": 1, "nodes": nodes,
        }))
        .unwrap()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_delay_shapes_the_targets_links_in_its_direction() {
        let rec = record(4);
        let fault = netem("{duration: 1m, delay: {time: 100}}").unwrap();
        let links = plan(&rec, &names(&["v2"]), &fault, 1).unwrap();
        let parts: Vec<String> = links.iter().map(LinkPlan::part).collect();
        assert_eq!(parts, vec!["v1|v2", "v2|v3", "v2|v4"]);
        // Egress of v2: v1 -> v2 untouched, v2 -> v1 delayed.
        assert!(links[0].forward.is_none() && links[0].backward.delay.is_some());
        assert!(links[1].forward.delay.is_some() && links[1].backward.is_none());
        assert_eq!(links[1].target, "127.0.0.1:30303".parse().unwrap());
        let both = netem("{duration: 1m, delay: {time: 100}, direction: both}").unwrap();
        let links = plan(&rec, &names(&["v2"]), &both, 1).unwrap();
        assert!(links
            .iter()
            .all(|l| l.forward.delay.is_some() && l.backward.delay.is_some()));
    }

    #[test]
    fn a_partition_cuts_only_links_between_its_groups() {
        let rec = record(4);
        let spec = |yaml: &str| crate::chaos::spec::read::<PartitionSpec>(yaml).unwrap().fault();
        let fault = spec("{duration: 1m}").unwrap();
        let links = plan(&rec, &names(&["v1", "v2"]), &fault, 1).unwrap();
        let parts: Vec<String> = links.iter().map(LinkPlan::part).collect();
        assert_eq!(
            parts,
            vec!["v1|v3", "v1|v4", "v2|v3", "v2|v4"],
            "2/2: four links cut, none inside a side"
        );
        assert!(links
            .iter()
            .all(|l| l.forward.cut == Some(Cut::Blackhole) && l.backward.cut.is_some()));
        // One way only: v3 -> v1 is cut when v3 is in the target and the direction is `to`.
        let to = spec("{duration: 1m, from: v1, direction: to}").unwrap();
        let links = plan(&rec, &names(&["v3"]), &to, 1).unwrap();
        assert_eq!(links.len(), 1);
        assert!(
            links[0].forward.is_none() && links[0].backward.cut.is_some(),
            "{links:?}"
        );
        let twice = spec("{duration: 1m, from: 'v2,v3'}").unwrap();
        assert!(plan(&rec, &names(&["v1", "v2"]), &twice, 1)
            .unwrap_err()
            .contains("named twice"));
        let all = spec("{duration: 1m}").unwrap();
        assert!(plan(&rec, &names(&["v1", "v2", "v3", "v4"]), &all, 1)
            .unwrap_err()
            .contains("every node"));
        assert!(spec("{duration: 1m, mode: drop}")
            .unwrap_err()
            .contains("blackhole or reset"));
        let mut anvil = rec.clone();
        anvil.client = Client::Anvil;
        assert!(plan(&anvil, &names(&["v1"]), &all, 1)
            .unwrap_err()
            .contains("runs anvil"));
    }

    #[test]
    fn enodes_are_read_and_readdressed() {
        let enode = "enode://abcd@127.0.0.1:30303?discport=0";
        assert_eq!(enode_address(enode), Some("127.0.0.1:30303".parse().unwrap()));
        assert_eq!(
            enode_at(enode, "127.0.0.1:4000".parse().unwrap()),
            "enode://abcd@127.0.0.1:4000?discport=0"
        );
    }
}
