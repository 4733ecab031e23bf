//! Nodes in network namespaces (`net up --isolation netns`, root) on a real four-signer geth 1.13 Clique
//! network: each node runs in its own namespace with its own address on a bridge, the signers peer and seal
//! through it, and teardown leaves no namespace, veth or bridge. geth comes from `DAGCTL_GETH` or
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
