//! Network faults on nodes in network namespaces (`isolation: netns`, see `backend::local::netns`): the
//! kernel acts on the nodes' real packets.
//!
//! - `partition`: an nftables table (`table ip dagctl_…`) inside each target's namespace drops (`blackhole`) or
//!   rejects with a TCP reset (`reset`) what it sends to the other group (`to`), what it receives from it
//!   (`from`), or both; the host's own address (the engine, the monitor) stays reachable. In `reset` mode the
//!   established connections to the other group are ended too (`ss -K`, socket destroy): a reject in the output
//!   hook does not reset the local socket, which would only retransmit; in `blackhole` mode they stall until
//!   the clients' own timeouts end them, as behind a real blackhole;
//! - `loss`, `duplicate`, `corrupt`: an nftables table in the target's namespace acts on that share of the
//!   packets it exchanges with other nodes (`numgen random`: each packet drawn anew, so netem's `correlation`
//!   is refused): dropped, sent twice (`dup`), or one byte of a TCP segment's payload overwritten;
//! - `rate`: `tbf` on the target's `eth1` (egress: what it sends) and on the host's end of its veth pair
//!   (ingress: what it receives; the host end's egress is the node's ingress, so no IFB device is needed);
//!   every packet of the interface is shaped, the node's JSON-RPC answers included, as pumba's netem on a
//!   container's interface would;
//! - `delay`: this kernel has no netem qdisc, so delay goes through the TCP proxy on the node's peer links
//!   (`super::network`) as on loopback.
//!
//! Each table or qdisc is recorded in the ledger before it is made, and removed at the fault's end, on cancel,
//! or by recovery; the namespaces themselves go at teardown, taking whatever is left in them.

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::ledger::{Book, FaultLedger, Undo};
use super::link::Cut;
use super::network::{CutDirection, Direction, NetworkFault, PacketEffect};
use super::process::{FaultReport, Step};
use crate::backend::local::netns::{enter, NetnsLayout, NODE_INTERFACE};
use crate::backend::local::NetworkRecord;
use crate::backend::Progress;
use crate::error::{Error, Result};

/// One thing a fault makes in a namespace, or on the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// An nftables table in `namespace` (its text as `nft -f` reads it); the TCP connections to `reset` (their
    /// addresses) are ended once it is in place (`ss -K`), as a partition in `reset` mode does.
    Table {
        node: String,
        namespace: String,
        table: String,
        text: String,
        reset: Vec<String>,
    },
    /// A root qdisc on `device`, in `namespace` or (None) on the host.
    Qdisc {
        node: String,
        namespace: Option<String>,
        device: String,
        args: Vec<String>,
    },
}

impl Rule {
    fn part(&self) -> String {
        match self {
            Rule::Table { node, table, .. } => format!("{node}/{table}"),
            Rule::Qdisc { node, device, .. } => format!("{node}/{device}"),
        }
    }

    fn undo(&self) -> Undo {
        match self {
            Rule::Table { namespace, table, .. } => Undo::NftTable {
                namespace: namespace.clone(),
                table: table.clone(),
            },
            Rule::Qdisc { namespace, device, .. } => Undo::Qdisc {
                namespace: namespace.clone(),
                device: device.clone(),
            },
        }
    }
}

/// Whether the namespace mechanism expresses `fault` (delay does not: no netem here).
pub fn expresses(fault: &NetworkFault) -> bool {
    match fault {
        NetworkFault::Partition { .. } | NetworkFault::Packets { .. } => true,
        NetworkFault::Netem { shape, .. } => shape.delay.is_none() && shape.rate.is_some(),
    }
}

/// The tables and qdiscs `fault` on `nodes` makes; `others` is the group it acts against. An error (nothing
/// made) when the fault cannot be expressed.
pub fn plan(
    record: &NetworkRecord,
    layout: &NetnsLayout,
    nodes: &[String],
    others: &BTreeSet<String>,
    fault: &NetworkFault,
    seed: u64,
) -> std::result::Result<Vec<Rule>, String> {
    let ns_of = |node: &str| {
        layout
            .of(node)
            .ok_or_else(|| format!("node `{node}` of network `{}` has no network namespace", record.name))
    };
    let table = format!("dagctl_{:012x}", seed & 0xffff_ffff_ffff);
    let mut rules = Vec::new();
    match fault {
        NetworkFault::Partition { direction, mode, .. } => {
            let ips: Vec<String> = others
                .iter()
                .map(|n| ns_of(n).map(|ns| ns.ip.clone()))
                .collect::<std::result::Result<_, _>>()?;
            let set = format!("{{ {} }}", ips.join(", "));
            let verdicts: &[&str] = match mode {
                Cut::Blackhole => &["counter drop"],
                Cut::Reset => &["meta l4proto tcp counter reject with tcp reset", "counter drop"],
            };
            let chain = |hook: &str, field: &str| {
                // In reset mode the resets `ss -K` sends when it ends a connection go out, so the other end
                // drops it too.
                let rst = (*mode == Cut::Reset && hook == "output").then_some("tcp flags rst accept");
                let lines: String = rst
                    .iter()
                    .chain(verdicts.iter())
                    .map(|v| format!("    ip {field} {set} {v}\n"))
                    .collect();
                format!("  chain {hook} {{\n    type filter hook {hook} priority 0; policy accept;\n{lines}  }}\n")
            };
            for node in nodes {
                let ns = ns_of(node)?;
                let mut text = format!("table ip {table} {{\n");
                if *direction != CutDirection::From {
                    text.push_str(&chain("output", "daddr"));
                }
                if *direction != CutDirection::To {
                    text.push_str(&chain("input", "saddr"));
                }
                text.push_str("}\n");
                rules.push(Rule::Table {
                    node: node.clone(),
                    namespace: ns.namespace.clone(),
                    table: table.clone(),
                    text,
                    reset: if *mode == Cut::Reset { ips.clone() } else { Vec::new() },
                });
            }
        }
        NetworkFault::Packets { direction, effect, .. } => {
            let (percent, correlation) = effect.share();
            if correlation != 0.0 {
                return Err(format!(
                    "netem {} correlation {correlation}% cannot be expressed: nftables draws each packet anew \
                     (this kernel has no netem); leave correlation at 0",
                    effect.kind()
                ));
            }
            let egress = matches!(direction, Direction::Egress | Direction::Both);
            let ingress = matches!(direction, Direction::Ingress | Direction::Both);
            if ingress && matches!(effect, PacketEffect::Duplicate { .. }) {
                return Err(
                    "netem duplicate on ingress cannot be expressed with nftables (`dup` sends a copy out of an \
                     interface); use direction: egress"
                        .into(),
                );
            }
            // Per ten thousand, so that 0.01% is expressible; every packet at 100% (nft takes 0 to 9999 here).
            let share = (percent * 100.0).round() as u64;
            let draw = if share >= 10_000 {
                String::new()
            } else {
                format!("numgen random mod 10000 < {share} ")
            };
            let action = match effect {
                PacketEffect::Loss { .. } => format!("{draw}counter drop"),
                // A copy out of the same interface to the same address.
                PacketEffect::Duplicate { .. } => format!("{draw}counter dup to ip daddr device \"{NODE_INTERFACE}\""),
                // One byte of a TCP segment carrying data (the 80th: past a 32-byte header with timestamps).
                PacketEffect::Corrupt { .. } => {
                    format!("meta l4proto tcp meta length > 120 {draw}counter @th,640,8 set 0xa5")
                }
            };
            // Packets between nodes: the subnet, not the host's own address on it.
            let subnet = subnet_of(&layout.gateway);
            let gateway = &layout.gateway;
            for node in nodes {
                let ns = ns_of(node)?;
                let mut text = format!("table ip {table} {{\n");
                if egress {
                    text.push_str(&format!(
                        "  chain output {{\n    type filter hook output priority 0; policy accept;\n    oifname \"{NODE_INTERFACE}\" ip daddr {subnet}.0/24 ip daddr != {gateway} {action}\n  }}\n"
                    ));
                }
                if ingress {
                    text.push_str(&format!(
                        "  chain input {{\n    type filter hook input priority 0; policy accept;\n    iifname \"{NODE_INTERFACE}\" ip saddr {subnet}.0/24 ip saddr != {gateway} {action}\n  }}\n"
                    ));
                }
                text.push_str("}\n");
                rules.push(Rule::Table {
                    node: node.clone(),
                    namespace: ns.namespace.clone(),
                    table: table.clone(),
                    text,
                    reset: Vec::new(),
                });
            }
        }
        NetworkFault::Netem { direction, shape, .. } => {
            let Some(rate) = shape.rate else {
                return Err("only rate is expressed in network namespaces here (delay goes through the proxy)".into());
            };
            // tbf: rate in bytes/s; a burst of a tenth of a second (at least 16 KiB), at most 1 s queued.
            let burst = (rate / 10).max(16 * 1024);
            let args = vec![
                "tbf".to_string(),
                "rate".to_string(),
                format!("{}bps", rate),
                "burst".to_string(),
                burst.to_string(),
                "latency".to_string(),
                "1s".to_string(),
            ];
            for node in nodes {
                let ns = ns_of(node)?;
                if matches!(direction, Direction::Egress | Direction::Both) {
                    rules.push(Rule::Qdisc {
                        node: node.clone(),
                        namespace: Some(ns.namespace.clone()),
                        device: NODE_INTERFACE.into(),
                        args: args.clone(),
                    });
                }
                if matches!(direction, Direction::Ingress | Direction::Both) {
                    rules.push(Rule::Qdisc {
                        node: node.clone(),
                        namespace: None,
                        device: ns.veth.clone(),
                        args: args.clone(),
                    });
                }
            }
        }
    }
    Ok(rules)
}

/// `10.213.N` of the gateway `10.213.N.1`.
fn subnet_of(gateway: &str) -> &str {
    gateway.rsplit_once('.').map(|(net, _)| net).unwrap_or(gateway)
}

/// Runs `program args` inside `namespace` (or on the host), with `input` on stdin; what it printed, or why it
/// failed.
fn run_in(namespace: Option<&str>, program: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ns) = namespace {
        enter(&mut command, ns)?;
    }
    let shown = format!("{program} {}", args.join(" "));
    let mut child = command.spawn().map_err(|e| {
        Error::Rejected(format!(
            "`{shown}` could not run: {e} (Debian: apt-get install nftables iproute2)"
        ))
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(text.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| Error::Rejected(format!("`{shown}`: {e}")))?;
    if !output.status.success() {
        return Err(Error::Rejected(format!(
            "`{shown}`{} failed: {}",
            namespace.map(|n| format!(" in {n}")).unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn make(rule: &Rule) -> Result<()> {
    match rule {
        Rule::Table {
            namespace, text, reset, ..
        } => {
            run_in(Some(namespace), "nft", &["-f", "-"], Some(text))?;
            if !reset.is_empty() {
                // Established connections end now (the table refuses new ones): `ss -K dst A or dst B`.
                let mut args = vec!["-K", "-tn"];
                for (i, ip) in reset.iter().enumerate() {
                    if i > 0 {
                        args.push("or");
                    }
                    args.extend(["dst", ip.as_str()]);
                }
                run_in(Some(namespace), "ss", &args, None)?;
            }
            Ok(())
        }
        Rule::Qdisc {
            namespace,
            device,
            args,
            ..
        } => {
            let mut all = vec!["qdisc", "add", "dev", device.as_str(), "root"];
            all.extend(args.iter().map(String::as_str));
            run_in(namespace.as_deref(), "tc", &all, None).map(|_| ())
        }
    }
}

/// Removes what `undo` names (an `NftTable` or `Qdisc` undo); one already gone, or whose namespace is gone, is
/// not an error.
pub fn unmake(undo: &Undo) -> Result<()> {
    match undo {
        Undo::NftTable { namespace, table } => {
            if !crate::backend::local::netns::exists_namespace(namespace) {
                return Ok(());
            }
            match run_in(Some(namespace), "nft", &["delete", "table", "ip", table], None) {
                Err(Error::Rejected(e)) if e.contains("No such file or directory") => Ok(()),
                other => other.map(|_| ()),
            }
        }
        Undo::Qdisc { namespace, device } => {
            if namespace
                .as_deref()
                .is_some_and(|ns| !crate::backend::local::netns::exists_namespace(ns))
                || (namespace.is_none() && !crate::backend::local::netns::exists_link(device))
            {
                return Ok(());
            }
            match run_in(
                namespace.as_deref(),
                "tc",
                &["qdisc", "del", "dev", device, "root"],
                None,
            ) {
                Err(Error::Rejected(e))
                    if e.contains("No such file or directory")
                        || e.contains("Cannot delete qdisc with handle of zero") =>
                {
                    Ok(())
                }
                other => other.map(|_| ()),
            }
        }
        _ => Ok(()),
    }
}

/// What `rule`'s counters say it caught (packets), for nftables tables; None for qdiscs or when unreadable.
fn caught(rule: &Rule) -> Option<u64> {
    let Rule::Table { namespace, table, .. } = rule else {
        return None;
    };
    let text = run_in(Some(namespace), "nft", &["list", "table", "ip", table], None).ok()?;
    Some(
        text.split("counter packets ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .sum(),
    )
}

/// Makes `rules` for `fault`'s duration (or until `cancel`), then removes them. Each is recorded in `book`
/// before it is made; one that cannot be made rolls back those that were, and the error says what was made
/// and removed.
pub async fn apply<L: FaultLedger>(
    book: &Book<'_, L>,
    nodes: &[String],
    rules: &[Rule],
    fault: &NetworkFault,
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
    let mut made: Vec<&Rule> = Vec::new();
    let mut failure = None;
    for rule in rules {
        if let Err(err) = book.applying(&rule.part(), "netns", &rule.undo()).await {
            failure = Some(format!("{}: cannot record it: {err}", rule.part()));
            break;
        }
        made.push(rule);
        match make(rule) {
            Ok(()) => step(&mut report, &rule.part(), describe(rule)),
            Err(err) => {
                failure = Some(format!("{}: {err}", rule.part()));
                break;
            }
        }
    }
    if failure.is_none() {
        report.in_place = Some(Utc::now());
        tokio::select! {
            _ = cancel.cancelled() => report.cancelled = true,
            _ = tokio::time::sleep(fault.duration()) => {}
        }
    }
    let mut undo_errors = Vec::new();
    for rule in made.into_iter().rev() {
        let count = caught(rule);
        let result = unmake(&rule.undo());
        let error = result.as_ref().err().map(|e| e.to_string());
        if let Err(err) = book.undone(&rule.part(), error.as_deref()).await {
            undo_errors.push(format!("{}: removed, but the ledger was not told: {err}", rule.part()));
        }
        match error {
            None => step(
                &mut report,
                &rule.part(),
                match count {
                    Some(n) => format!("removed ({n} packet(s) caught)"),
                    None => "removed".into(),
                },
            ),
            Some(err) => {
                step(&mut report, &rule.part(), format!("could not be removed: {err}"));
                undo_errors.push(format!("{}: {err}", rule.part()));
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.outcome(failure, &undo_errors, "not everything could be removed")
}

fn describe(rule: &Rule) -> String {
    match rule {
        Rule::Table { namespace, table, .. } => format!("nftables table {table} in {namespace}"),
        Rule::Qdisc {
            namespace,
            device,
            args,
            ..
        } => format!(
            "{} on {device}{}",
            args.join(" "),
            namespace
                .as_deref()
                .map(|n| format!(" in {n}"))
                .unwrap_or_else(|| " (host end)".into())
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::backend::local::netns::NetnsNode;
    use crate::chaos::link::Shape;

    fn layout() -> NetnsLayout {
        NetnsLayout {
            bridge: "dgbr7".into(),
            gateway: "10.213.7.1".into(),
            nodes: (1..=4)
                .map(|i| NetnsNode {
                    node: format!("v{i}"),
                    namespace: format!("dg7-{i}"),
                    veth: format!("dgv7-{i}"),
                    ip: format!("10.213.7.{}", i + 1),
                })
                .collect(),
        }
    }

    fn record() -> NetworkRecord {
        serde_json::from_value(serde_json::json!({
            "name": "n", "client": "geth", "consensus": "clique", "chain_id": 1, "base_dir": "/x",
            "deployer_pid": 1, "nodes": []
        }))
        .unwrap()
    }

    fn text(rules: &[Rule], i: usize) -> &str {
        match &rules[i] {
            Rule::Table { text, .. } => text,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn partitions_drop_or_reset_the_other_group_only() {
        let others: BTreeSet<String> = ["v3".to_string(), "v4".to_string()].into();
        let fault = NetworkFault::Partition {
            duration: Duration::from_secs(5),
            from: None,
            direction: CutDirection::To,
            mode: Cut::Reset,
        };
        let rules = plan(&record(), &layout(), &["v1".into(), "v2".into()], &others, &fault, 1).unwrap();
        assert_eq!(rules.len(), 2);
        let t = text(&rules, 0);
        assert!(t.contains("hook output"), "{t}");
        assert!(!t.contains("hook input"), "{t}");
        assert!(
            t.contains("ip daddr { 10.213.7.4, 10.213.7.5 } meta l4proto tcp counter reject with tcp reset"),
            "{t}"
        );
        assert!(t.contains("ip daddr { 10.213.7.4, 10.213.7.5 } counter drop"), "{t}");
        assert!(!t.contains("10.213.7.1"), "the host stays reachable: {t}");
    }

    #[test]
    fn packet_effects_draw_per_ten_thousand_and_refuse_correlation() {
        let others: BTreeSet<String> = ["v2".to_string()].into();
        let fault = |effect, direction| NetworkFault::Packets {
            duration: Duration::from_secs(5),
            interface: None,
            direction,
            effect,
        };
        let loss = fault(
            PacketEffect::Loss {
                percent: 12.5,
                correlation: 0.0,
            },
            Direction::Both,
        );
        let rules = plan(&record(), &layout(), &["v1".into()], &others, &loss, 1).unwrap();
        let t = text(&rules, 0);
        assert!(
            t.contains("oifname \"eth1\" ip daddr 10.213.7.0/24 ip daddr != 10.213.7.1 numgen random mod 10000 < 1250 counter drop"),
            "{t}"
        );
        assert!(t.contains("iifname \"eth1\" ip saddr 10.213.7.0/24"), "{t}");
        // Every packet at 100% (numgen takes 0 to 9999).
        let all = fault(
            PacketEffect::Corrupt {
                percent: 100.0,
                correlation: 0.0,
            },
            Direction::Egress,
        );
        let rules = plan(&record(), &layout(), &["v1".into()], &others, &all, 1).unwrap();
        let t = text(&rules, 0);
        assert!(!t.contains("numgen"), "{t}");
        assert!(t.contains("meta length > 120 counter @th,640,8 set 0xa5"), "{t}");
        let correlated = fault(
            PacketEffect::Loss {
                percent: 5.0,
                correlation: 25.0,
            },
            Direction::Egress,
        );
        assert!(plan(&record(), &layout(), &["v1".into()], &others, &correlated, 1)
            .unwrap_err()
            .contains("correlation"));
    }

    #[test]
    fn rate_is_tbf_on_both_ends_of_the_pair() {
        let others: BTreeSet<String> = ["v2".to_string()].into();
        let fault = NetworkFault::Netem {
            duration: Duration::from_secs(5),
            interface: None,
            direction: Direction::Both,
            shape: Shape {
                rate: Some(125_000),
                ..Shape::default()
            },
        };
        let rules = plan(&record(), &layout(), &["v1".into()], &others, &fault, 1).unwrap();
        assert_eq!(rules.len(), 2);
        assert!(
            matches!(&rules[0], Rule::Qdisc { namespace: Some(ns), device, .. } if ns == "dg7-1" && device == "eth1")
        );
        assert!(
            matches!(&rules[1], Rule::Qdisc { namespace: None, device, args, .. } if device == "dgv7-1" && args[2] == "125000bps")
        );
    }
}
