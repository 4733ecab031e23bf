//! The sockets a process listens on: its socket inodes (`/proc/<pid>/fd`) matched against the kernel's
//! TCP (state LISTEN) and UDP (bound, not connected) tables in `/proc/<pid>/net/{tcp,tcp6,udp,udp6}`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// TCP or UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Listener {
    pub protocol: Protocol,
    pub address: SocketAddr,
}

impl Listener {
    /// Whether only this host can reach it: bound to 127.0.0.0/8, `::1`, or `::ffff:127.x.y.z`.
    pub fn is_loopback(&self) -> bool {
        match self.address.ip() {
            IpAddr::V4(ip) => ip.is_loopback(),
            IpAddr::V6(ip) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        }
    }
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.protocol, self.address)
    }
}

/// Every socket `pid` listens on (TCP) or is bound to without a peer (UDP), sorted.
pub fn listening_sockets(pid: u32) -> std::io::Result<Vec<Listener>> {
    let inodes = socket_inodes(pid)?;
    let mut found = BTreeSet::new();
    for (file, protocol, wanted_state) in [
        ("tcp", Protocol::Tcp, "0A"),
        ("tcp6", Protocol::Tcp, "0A"),
        ("udp", Protocol::Udp, "07"),
        ("udp6", Protocol::Udp, "07"),
    ] {
        // A kernel without IPv6 has no tcp6/udp6 table.
        let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9)) else {
                continue;
            };
            if *state != wanted_state || !inode.parse::<u64>().is_ok_and(|i| inodes.contains(&i)) {
                continue;
            }
            if let Some(address) = parse_address(local) {
                found.insert(Listener { protocol, address });
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// Every TCP socket listening on `port` in this network namespace, whatever process holds it (what
/// `ss -lnt sport = :port` shows): how a service at a local URL is bound.
pub fn tcp_listeners_on_port(port: u16) -> Vec<Listener> {
    let mut found = BTreeSet::new();
    for file in ["tcp", "tcp6"] {
        let Ok(table) = std::fs::read_to_string(format!("/proc/self/net/{file}")) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            if *state != "0A" {
                continue;
            }
            if let Some(address) = parse_address(local).filter(|a| a.port() == port) {
                found.insert(Listener {
                    protocol: Protocol::Tcp,
                    address,
                });
            }
        }
    }
    found.into_iter().collect()
}

/// Inodes of the sockets among `pid`'s open files.
fn socket_inodes(pid: u32) -> std::io::Result<BTreeSet<u64>> {
    let mut inodes = BTreeSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
            if let Ok(inode) = inode.parse() {
                inodes.insert(inode);
            }
        }
    }
    Ok(inodes)
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit word in host (little-endian)
/// order, the port big-endian.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Option<Vec<u32>> = (0..ip.len() / 8)
        .map(|i| {
            u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16)
                .ok()
                .map(u32::from_be)
        })
        .collect();
    let words = words?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_addresses_parse() {
        assert_eq!(parse_address("0100007F:1F90"), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(parse_address("00000000:0050"), Some("0.0.0.0:80".parse().unwrap()));
        assert_eq!(
            parse_address("00000000000000000000000001000000:0016"),
            Some("[::1]:22".parse().unwrap())
        );
        assert_eq!(
            parse_address("0000000000000000FFFF00000100007F:0016"),
            Some("[::ffff:127.0.0.1]:22".parse().unwrap())
        );
        assert_eq!(parse_address("zz:1"), None);
    }

    #[test]
    fn this_process_listeners_are_found_and_classified() {
        let loopback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let wildcard = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let connected = std::net::TcpStream::connect(loopback.local_addr().unwrap()).unwrap();
        let found = listening_sockets(std::process::id()).unwrap();
        let find = |protocol, port| {
            found
                .iter()
                .find(|l| l.protocol == protocol && l.address.port() == port)
        };
        let local = find(Protocol::Tcp, loopback.local_addr().unwrap().port()).expect("loopback listener");
        assert!(local.is_loopback());
        let any = find(Protocol::Tcp, wildcard.local_addr().unwrap().port()).expect("wildcard listener");
        assert!(!any.is_loopback());
        assert!(find(Protocol::Udp, udp.local_addr().unwrap().port())
            .unwrap()
            .is_loopback());
        let client_port = connected.local_addr().unwrap().port();
        assert!(
            find(Protocol::Tcp, client_port).is_none(),
            "a connection is not a listener"
        );
    }
}
