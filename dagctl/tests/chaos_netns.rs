//! Nodes in network namespaces (`net up --isolation netns`, root) on a real four-signer geth 1.13 Clique
//! network: each node runs in its own namespace with its own address on a bridge, the signers peer and seal
//! through it; network faults act on their packets (a 2/2 partition by nftables with TCP resets drops the
//! peers across it and the halves' chains part, then heal; loss, duplicate and corrupt count the packets their
//! rules caught; rate puts tbf on both ends of the node's veth pair; delay still goes through the proxy, now on
//! the bridge's address); a `dagctl chaos` killed mid-partition leaves its tables until `chaos recover`; and
//! teardown leaves no namespace, veth or bridge. geth comes from `DAGCTL_GETH` or
//! `DAGCTL_CLIENTS_BIN`; without it the test fails.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

use common::{stderr, Home};
use serde_json::{json, Value};

/// A JSON-RPC call to `url` (`http://HOST:PORT`, any host): its `result`.
fn rpc(url: &str, method: &str, params: Value) -> Option<Value> {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let json = &answer[answer.find("\r\n\r\n")? + 4..];
    serde_json::from_str::<Value>(json).ok()?.get("result").cloned()
}

/// `program args` run inside `namespace` (`ip netns exec`): its stdout.
fn inside(namespace: &str, program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", namespace, program])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn head(url: &str) -> Option<(u64, String)> {
    let block = rpc(url, "eth_getBlockByNumber", json!(["latest", false]))?;
    let number = u64::from_str_radix(block["number"].as_str()?.trim_start_matches("0x"), 16).ok()?;
    Some((number, block["hash"].as_str()?.to_string()))
}

/// The peers' addresses of the node at `url`.
fn peer_addresses(url: &str) -> Vec<String> {
    rpc(url, "admin_peers", json!([]))
        .and_then(|p| p.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.pointer("/network/remoteAddress").and_then(|v| v.as_str()))
        .map(|a| a.split(':').next().unwrap_or_default().to_string())
        .collect()
}

/// Runs `dagctl chaos --network isolated ARGS -o json` to its end: the fault's report.
fn fault(home: &Home, args: &[&str]) -> Value {
    let mut all = vec!["chaos", "--network", "isolated"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = home.run(&all);
    let text = common::stdout(&out);
    assert!(out.status.success(), "{args:?}: {text}{}", stderr(&out));
    serde_json::from_str(&text[text.find('{').unwrap_or(0)..]).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// JSON-RPC calls from inside `namespace` to `url` (another node), one after another for `seconds`, on a
/// thread of their own: traffic between nodes that does not depend on the chain making blocks. How many
/// answered.
fn traffic(namespace: &str, url: &str, seconds: u64) -> std::thread::JoinHandle<u32> {
    let (namespace, url) = (namespace.to_string(), url.to_string());
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(std::path::Path::new("/run/netns").join(&namespace)).unwrap();
        // SAFETY: this thread alone enters the namespace.
        assert_eq!(
            unsafe { nix::libc::setns(file.as_raw_fd(), nix::libc::CLONE_NEWNET) },
            0
        );
        let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        let mut answered = 0;
        while std::time::Instant::now() < until {
            if rpc(&url, "eth_getBlockByNumber", json!(["latest", true])).is_some() {
                answered += 1;
            }
        }
        answered
    })
}

/// The packets the rules of a fault caught, from its report's `removed (N packet(s) caught)` steps.
fn caught(report: &Value) -> u64 {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| {
            let action = s["action"].as_str()?;
            action
                .strip_prefix("removed (")?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

fn faults(home: &Home, nodes: &[Value], namespaces: &[String]) {
    let urls: Vec<String> = nodes.iter().map(|n| n["rpc"].as_str().unwrap().to_string()).collect();
    let ip = |i: usize| {
        urls[i]
            .trim_start_matches("http://")
            .split(':')
            .next()
            .unwrap()
            .to_string()
    };

    // A 2/2 partition with resets: nftables tables in validator-1's and -2's namespaces; each half keeps only
    // its own peer and the halves' chains part; afterwards the tables are gone and the chains join again.
    let partition = home.spawn(&[
        "chaos",
        "--network",
        "isolated",
        "partition",
        "--duration",
        "15s",
        "--mode",
        "reset",
        "--target",
        "validator-1,validator-2",
        "-o",
        "json",
    ]);
    common::wait_for(std::time::Duration::from_secs(20), "the partition's tables", || {
        inside(&namespaces[0], "nft", &["list", "tables"])
            .contains("table ip dagctl_")
            .then_some(())
    });
    assert!(inside(&namespaces[1], "nft", &["list", "tables"]).contains("table ip dagctl_"));
    assert!(!inside(&namespaces[2], "nft", &["list", "tables"]).contains("dagctl_"));
    common::wait_for(
        std::time::Duration::from_secs(12),
        "peers across the cut to drop",
        || {
            let one = peer_addresses(&urls[0]);
            let three = peer_addresses(&urls[2]);
            (one == vec![ip(1)] && three == vec![ip(3)]).then_some(())
        },
    );
    // Each half seals what Clique lets two of four signers seal: their heads part, and stay apart.
    let apart = || -> Option<()> { (head(&urls[0])? != head(&urls[2])?).then_some(()) };
    common::wait_for(std::time::Duration::from_secs(12), "the halves' heads to part", || {
        apart()?;
        std::thread::sleep(std::time::Duration::from_secs(2));
        apart()
    });
    common::wait_for(std::time::Duration::from_secs(30), "the partition to end", || {
        (!common::pid_alive(partition.pid())).then_some(())
    });
    let output = partition.output();
    let report: Value =
        serde_json::from_str(&output[output.find('{').unwrap_or(0)..]).unwrap_or_else(|e| panic!("{e}: {output}"));
    assert!(
        report["fault"].as_str().unwrap().starts_with("partition (both, reset)"),
        "{report}"
    );
    for ns in namespaces {
        assert!(!inside(ns, "nft", &["list", "tables"]).contains("dagctl_"), "{ns}");
    }
    // Clique's equal-difficulty halves may deadlock (docs/chaos.md); this test only needs the links back.
    common::wait_for(std::time::Duration::from_secs(90), "peers across the cut again", || {
        (peer_addresses(&urls[0]).len() == 3).then_some(())
    });

    // Rate: tbf on validator-4's eth1 and on the host's end of its pair while it holds, gone after.
    let veth = namespaces[3].replace("dg", "dgv");
    let rate = home.spawn(&[
        "chaos",
        "--network",
        "isolated",
        "netem",
        "--duration",
        "8s",
        "--direction",
        "both",
        "rate",
        "--rate",
        "1mbit",
        "--target",
        "validator-4",
    ]);
    common::wait_for(std::time::Duration::from_secs(10), "tbf on both ends", || {
        let inner = inside(&namespaces[3], "tc", &["qdisc", "show", "dev", "eth1"]);
        let outer = std::process::Command::new("tc")
            .args(["qdisc", "show", "dev", &veth])
            .output()
            .ok()?;
        (inner.contains("tbf") && String::from_utf8_lossy(&outer.stdout).contains("tbf")).then_some(())
    });
    common::wait_for(std::time::Duration::from_secs(20), "the rate fault to end", || {
        (!common::pid_alive(rate.pid())).then_some(())
    });
    assert!(!inside(&namespaces[3], "tc", &["qdisc", "show", "dev", "eth1"]).contains("tbf"));

    // Delay through the proxy, which listens on the bridge's address.
    let report = fault(
        home,
        &[
            "netem",
            "--duration",
            "5s",
            "delay",
            "--time",
            "100",
            "--target",
            "validator-2",
        ],
    );
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["action"].as_str().unwrap().contains("rerouted through 10.213.")),
        "{report}"
    );

    // Loss, duplicate and corrupt (last: a corrupted segment fails its connection's MAC and the peer drops it)
    // on validator-3's packets to the others: their rules caught packets.
    for (effect, percent) in [("loss", "30"), ("duplicate", "50"), ("corrupt", "100")] {
        let calls = traffic(&namespaces[2], &urls[3], 7);
        let report = fault(
            home,
            &[
                "netem",
                "--duration",
                "6s",
                effect,
                "--percent",
                percent,
                "--target",
                "validator-3",
            ],
        );
        let answered = calls.join().unwrap();
        assert!(caught(&report) > 0, "{effect}: {report} ({answered} calls answered)");
        assert!(
            report["fault"]
                .as_str()
                .unwrap()
                .contains(&format!("netem {effect} {percent}%")),
            "{report}"
        );
    }
    let refused = home.run(&[
        "chaos",
        "--network",
        "isolated",
        "netem",
        "--duration",
        "6s",
        "loss",
        "--percent",
        "5",
        "--correlation",
        "25",
        "--target",
        "validator-3",
    ]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("correlation"), "{}", stderr(&refused));

    // SIGKILL mid-partition: the tables outlive the command until `chaos recover` deletes them.
    let mut long = home.spawn(&[
        "chaos",
        "--network",
        "isolated",
        "partition",
        "--duration",
        "10m",
        "--target",
        "validator-3",
    ]);
    common::wait_for(std::time::Duration::from_secs(20), "the partition's table", || {
        inside(&namespaces[2], "nft", &["list", "tables"])
            .contains("dagctl_")
            .then_some(())
    });
    long.kill9();
    assert!(inside(&namespaces[2], "nft", &["list", "tables"]).contains("dagctl_"));
    let out = home.run(&["chaos", "recover"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        common::stdout(&out).contains("undid 1 fault part(s)"),
        "{}",
        common::stdout(&out)
    );
    assert!(!inside(&namespaces[2], "nft", &["list", "tables"]).contains("dagctl_"));
    assert_eq!(home.ok(&["chaos", "faults"]).trim(), "no fault in place");
}

/// The inode of a network namespace handle (`/proc/PID/ns/net` or `/run/netns/NAME`).
fn netns_inode(path: &str) -> u64 {
    std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0)
}

#[test]
fn nodes_in_their_own_namespaces_peer_seal_and_leave_nothing() {
    let home = Home::new();
    home.down_at_end("isolated");
    let up = home
        .command()
        .env("DAGCTL_GETH", common::client_binary("geth", "DAGCTL_GETH"))
        .args([
            "net",
            "up",
            "--client",
            "geth",
            "--consensus",
            "clique",
            "--block-time",
            "1",
            "--nodes",
            "4",
            "--name",
            "isolated",
            "--isolation",
            "netns",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", common::stdout(&up), stderr(&up));
    assert!(up.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("network namespaces "))
        .unwrap_or_else(|| panic!("{text}"));
    let bridge = line
        .split("on bridge ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(std::path::Path::new("/sys/class/net").join(&bridge).exists());
    let shown = home.json(&["net", "show", "isolated"]);
    let nodes = shown["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    let ours = netns_inode("/proc/self/ns/net");
    let mut namespaces = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let url = node["rpc"].as_str().unwrap();
        assert!(url.starts_with("http://10.213."), "{url}");
        let pid = node["pid"].as_u64().unwrap();
        // The node's process is in the node's namespace, not this one.
        let namespace = bridge.replace("dgbr", "dg") + &format!("-{}", i + 1);
        let inode = netns_inode(&format!("/proc/{pid}/ns/net"));
        assert_ne!(inode, ours, "{node}");
        assert_eq!(inode, netns_inode(&format!("/run/netns/{namespace}")), "{node}");
        namespaces.push(namespace);
        // Peered with the other three at their namespace addresses.
        let peers = rpc(url, "admin_peers", json!([])).unwrap();
        let addresses: Vec<&str> = peers
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p.pointer("/network/remoteAddress").and_then(|v| v.as_str()))
            .collect();
        assert_eq!(addresses.len(), 3, "{addresses:?}");
        assert!(addresses.iter().all(|a| a.starts_with("10.213.")), "{addresses:?}");
    }
    faults(&home, nodes, &namespaces);
    home.ok(&["net", "down", "isolated"]);
    for namespace in &namespaces {
        assert!(
            !std::path::Path::new("/run/netns").join(namespace).exists(),
            "{namespace} left"
        );
    }
    assert!(
        !std::path::Path::new("/sys/class/net").join(&bridge).exists(),
        "{bridge} left"
    );
}
