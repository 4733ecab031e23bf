//! Nodes in network namespaces (`isolation: netns`, root only): each node gets its own namespace, whose
//! `eth1` is one end of a veth pair whose other end sits on a bridge of the network's own; the bridge has the
//! subnet's first address, so this host (the engine, the monitor, the load generator) reaches every node at its
//! own address, and the nodes reach each other through the bridge. Network faults then act on real interfaces
//! (`tc` on `eth1` and on the host's end, `nftables` inside the namespace: see `crate::chaos::netns`).
//!
//! Names: the bridge `dgbrN` (N, 0 to 255, picks the subnet 10.213.N.0/24; creating the bridge is how a
//! network claims N, so two deploys never share one), namespaces `dgN-I` and host-side veths `dgvN-I` for
//! node I (1-based). Everything is removed at teardown; deleting a namespace removes its veth pair.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The interface each node sees, named as in pumba's example (`--interface eth1`).
pub const NODE_INTERFACE: &str = "eth1";
const SUBNET: &str = "10.213";
/// The bridge's alias: this prefix and the network's name.
const ALIAS: &str = "dagctl:";

/// Where a network's namespaces are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsLayout {
    pub bridge: String,
    /// The bridge's address: this host's on the network's subnet.
    pub gateway: String,
    pub nodes: Vec<NetnsNode>,
}

/// One node's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsNode {
    pub node: String,
    pub namespace: String,
    /// The host's end of the node's veth pair (on the bridge).
    pub veth: String,
    /// The node's address (on its `eth1`).
    pub ip: String,
}

impl NetnsLayout {
    /// The namespace of `node`, if the network has one for it.
    pub fn of(&self, node: &str) -> Option<&NetnsNode> {
        self.nodes.iter().find(|n| n.node == node)
    }
}

/// Runs `program args`; an error with what it printed.
pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String> {
    let shown = format!(
        "{program} {}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::Rejected(format!(
                "`{shown}` could not run ({e}): network namespaces need iproute2's `ip`, `tc` and nftables' `nft` \
                 (Debian: apt-get install iproute2 nftables)"
            ))
        })?;
    if !output.status.success() {
        return Err(Error::Rejected(format!(
            "`{shown}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Why namespaces cannot be made here, if they cannot: they need root.
pub fn refusal() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { nix::libc::geteuid() } == 0 {
        None
    } else {
        Some(
            "`isolation: netns` needs root (network namespaces, veth pairs and a bridge); without it nodes run on \
             loopback (`isolation: host`), where network faults go through dagctl's TCP proxy"
                .into(),
        )
    }
}

/// Creates the namespaces of `nodes` of network `network`: claims a subnet by creating its bridge, then a
/// namespace and veth pair per node. On any failure what was made is removed.
pub fn create(network: &str, nodes: &[String]) -> Result<NetnsLayout> {
    if let Some(why) = refusal() {
        return Err(Error::Rejected(why));
    }
    if nodes.len() > 250 {
        return Err(Error::Rejected(format!(
            "`isolation: netns` takes at most 250 nodes, not {}",
            nodes.len()
        )));
    }
    // Start at a number drawn from the name, so concurrent deploys rarely race for the same one.
    let start = network
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 256;
    let mut claimed = None;
    let mut last_error = String::new();
    for k in 0..256 {
        let n = (start + k) % 256;
        let bridge = format!("dgbr{n}");
        match run("ip", &["link", "add", &bridge, "type", "bridge"]) {
            Ok(_) => {
                claimed = Some((n, bridge));
                break;
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    let Some((n, bridge)) = claimed else {
        return Err(Error::Rejected(format!(
            "no free subnet for network namespaces (256 tried): {last_error}"
        )));
    };
    let mut layout = NetnsLayout {
        bridge: bridge.clone(),
        gateway: format!("{SUBNET}.{n}.1"),
        nodes: Vec::new(),
    };
    let made = (|| -> Result<()> {
        // The bridge says whose it is, so that what a deploy killed before it recorded anything made can be
        // found by the network's name ([`remove_named`]).
        run(
            "ip",
            &["link", "set", "dev", &bridge, "alias", &format!("{ALIAS}{network}")],
        )?;
        run(
            "ip",
            &["addr", "add", &format!("{}/24", layout.gateway), "dev", &bridge],
        )?;
        run("ip", &["link", "set", &bridge, "up"])?;
        for (i, node) in nodes.iter().enumerate() {
            let entry = NetnsNode {
                node: node.clone(),
                namespace: format!("dg{n}-{}", i + 1),
                veth: format!("dgv{n}-{}", i + 1),
                ip: format!("{SUBNET}.{n}.{}", i + 2),
            };
            // Stale from a deploy killed before its record was written: the bridge claim says N is ours now.
            let _ = run("ip", &["netns", "del", &entry.namespace]);
            run("ip", &["netns", "add", &entry.namespace])?;
            layout.nodes.push(entry.clone());
            let ns = entry.namespace.as_str();
            run(
                "ip",
                &[
                    "link",
                    "add",
                    &entry.veth,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    NODE_INTERFACE,
                    "netns",
                    ns,
                ],
            )?;
            run("ip", &["link", "set", &entry.veth, "master", &bridge, "up"])?;
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{}/24", entry.ip),
                    "dev",
                    NODE_INTERFACE,
                ],
            )?;
            run("ip", &["-n", ns, "link", "set", NODE_INTERFACE, "up"])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    })();
    match made {
        Ok(()) => Ok(layout),
        Err(err) => {
            let left = remove(&layout);
            Err(Error::Rejected(if left.is_empty() {
                format!("{err}; removed what was made")
            } else {
                format!("{err}; could not remove: {}", left.join("; "))
            }))
        }
    }
}

/// Removes every veth pair, namespace and the bridge; what could not be removed. Safe to
/// call again.
pub fn remove(layout: &NetnsLayout) -> Vec<String> {
    let mut left = Vec::new();
    for node in &layout.nodes {
        // The pair first: a namespace's interfaces go with it only once the kernel gets round to it.
        if exists_link(&node.veth) {
            if let Err(e) = run("ip", &["link", "del", &node.veth]) {
                left.push(e.to_string());
            }
        }
        if exists_namespace(&node.namespace) {
            if let Err(e) = run("ip", &["netns", "del", &node.namespace]) {
                left.push(e.to_string());
            }
        }
    }
    if exists_link(&layout.bridge) {
        if let Err(e) = run("ip", &["link", "del", &layout.bridge]) {
            left.push(e.to_string());
        }
    }
    left
}

/// Removes the namespaces, pairs and bridge of network `name` found by the bridge's alias (for a deploy that
/// died before its record was written); what could not be removed.
pub fn remove_named(network: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut left = Vec::new();
    for entry in entries.flatten() {
        let bridge = entry.file_name().to_string_lossy().into_owned();
        let Some(n) = bridge.strip_prefix("dgbr") else {
            continue;
        };
        let alias = std::fs::read_to_string(entry.path().join("ifalias")).unwrap_or_default();
        if alias.trim() != format!("{ALIAS}{network}") {
            continue;
        }
        let prefix = format!("dg{n}-");
        let nodes: Vec<NetnsNode> = std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let ns = e.file_name().to_string_lossy().into_owned();
                        let i = ns.strip_prefix(&prefix)?.to_string();
                        Some(NetnsNode {
                            node: String::new(),
                            veth: format!("dgv{n}-{i}"),
                            namespace: ns,
                            ip: String::new(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        left.extend(remove(&NetnsLayout {
            bridge: bridge.clone(),
            gateway: String::new(),
            nodes,
        }));
    }
    left
}

/// Whether the namespace `name` exists (`ip netns add` makes `/run/netns/NAME`).
pub fn exists_namespace(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Whether this host (the root namespace) has an interface `name`.
pub fn exists_link(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Makes `command` run in namespace `namespace`: the namespace is opened now and entered between fork and
/// exec (`setns`), so the program's pid is the node's, as without namespaces.
pub fn enter(command: &mut Command, namespace: &str) -> Result<()> {
    let path = std::path::Path::new("/run/netns").join(namespace);
    let file = File::open(&path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    // SAFETY: setns is async-signal-safe; the descriptor lives in the closure until exec (it is close-on-exec).
    unsafe {
        command.pre_exec(move || {
            if nix::libc::setns(file.as_raw_fd(), nix::libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_made_reach_each_other_and_are_removed() {
        let name = format!("netns-test-{}", std::process::id());
        let nodes = vec!["a".to_string(), "b".to_string()];
        let layout = create(&name, &nodes).expect("namespaces (needs root)");
        assert_eq!(layout.nodes.len(), 2);
        for node in &layout.nodes {
            assert!(exists_namespace(&node.namespace), "{node:?}");
            assert!(exists_link(&node.veth), "{node:?}");
        }
        assert!(exists_link(&layout.bridge));
        // A TCP listener in b's namespace, reached from a's and from the host's.
        let in_namespace = |ns: String, f: Box<dyn FnOnce() -> bool + Send>| {
            std::thread::spawn(move || {
                let file = File::open(std::path::Path::new("/run/netns").join(ns)).unwrap();
                // SAFETY: this thread alone enters the namespace.
                assert_eq!(
                    unsafe { nix::libc::setns(file.as_raw_fd(), nix::libc::CLONE_NEWNET) },
                    0
                );
                f()
            })
            .join()
            .unwrap()
        };
        let a = layout.nodes[0].clone();
        let b = layout.nodes[1].clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let b_ip = b.ip.clone();
        let server = std::thread::spawn({
            let ns = b.namespace.clone();
            move || {
                in_namespace(
                    ns,
                    Box::new(move || {
                        let listener = std::net::TcpListener::bind((b_ip.as_str(), 0)).unwrap();
                        tx.send(listener.local_addr().unwrap()).unwrap();
                        listener.set_nonblocking(true).unwrap();
                        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                        let mut accepted = 0;
                        while accepted < 2 && std::time::Instant::now() < deadline {
                            match listener.accept() {
                                Ok(_) => accepted += 1,
                                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                            }
                        }
                        accepted == 2
                    }),
                )
            }
        });
        let address = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        let connect = move || std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(3)).is_ok();
        let from_a = in_namespace(a.namespace.clone(), Box::new(connect));
        let from_host = connect();
        let served = server.join().unwrap();
        let left = remove(&layout);
        assert!(left.is_empty(), "{left:?}");
        assert!(from_a, "a reaches b");
        assert!(from_host, "the host reaches b");
        assert!(served);
        for node in &layout.nodes {
            assert!(!exists_namespace(&node.namespace));
            assert!(!exists_link(&node.veth));
        }
        assert!(!exists_link(&layout.bridge));
        assert!(remove(&layout).is_empty(), "removing again is fine");

        // What a deploy that died before recording it made is found by the network's name.
        let again = create(&name, &nodes).unwrap();
        assert!(remove_named(&name).is_empty());
        assert!(!exists_link(&again.bridge));
        for node in &again.nodes {
            assert!(!exists_namespace(&node.namespace));
            assert!(!exists_link(&node.veth));
        }
    }
}
