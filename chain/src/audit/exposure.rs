//! What a node exposes to whoever reaches its JSON-RPC: the audit behind `chain.audit` and `dagctl audit`
//! (the brief's penetration tests). Each check asks the node itself, over plain HTTP/1.1 written here so the
//! `Host` and `Origin` headers are exactly what an attacker would send, or reads the kernel's socket tables:
//!
//! | check | how | severity |
//! |---|---|---|
//! | `rpc_api` | `rpc_modules`, else each method's "not found" | admin, personal, debug, miner: high; clique, istanbul, qbft, raft (governance votes): medium; txpool: low |
//! | `bind` | the listening sockets of the node's ports (`/proc/net/tcp*`) and the URL's host | RPC, WS or engine API beyond loopback: high; metrics: medium; p2p: info |
//! | `cors` | a POST with `Origin: http://attacker.invalid` | answered with that origin or `*` allowed: high |
//! | `vhosts` | a POST with `Host: attacker.invalid` | answered: medium (DNS rebinding) |
//! | `accounts` | `eth_accounts`, then `eth_sign` with the first | it signs: high (unlocked); accounts only: low |
//! | `discovery` | `admin_nodeInfo`'s discovery port, or a UDP socket on the p2p port | on in a private network: medium |

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::listeners::{listening_sockets, tcp_listeners_on_port, Protocol};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        [Severity::Info, Severity::Low, Severity::Medium, Severity::High]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One thing found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub node: String,
    pub check: String,
    pub severity: Severity,
    pub detail: String,
    pub fix: String,
}

/// A node to audit: its JSON-RPC URL, and what the local backend knows of it.
#[derive(Debug, Clone, Default)]
pub struct AuditTarget {
    pub name: String,
    pub rpc: String,
    pub pid: Option<u32>,
    /// Port roles: (port, `rpc` | `ws` | `metrics` | `p2p` | `authrpc`).
    pub ports: Vec<(u16, &'static str)>,
}

/// The audit of every node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub findings: Vec<Finding>,
    /// Findings by severity.
    pub counts: BTreeMap<String, u64>,
    /// Checks that could not be made, and why.
    pub skipped: Vec<String>,
}

impl AuditReport {
    /// Whether any finding is at `severity` or worse.
    pub fn reaches(&self, severity: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= severity)
    }
}

const ATTACKER: &str = "attacker.invalid";
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP answer: status, lower-case headers, body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// `http://host:port[/path]` split.
fn split_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}` is not an http:// URL"))?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| format!("`{url}` has no valid port"))?),
        None => (authority, 80),
    };
    Ok((host.trim_matches(|c| c == '[' || c == ']').to_string(), port, path))
}

/// One POST of `body`, with `host_header` and `origin` as given; the whole answer (Connection: close).
async fn post(url: &str, host_header: Option<&str>, origin: Option<&str>, body: &str) -> Result<Answer, String> {
    let (host, port, path) = split_url(url)?;
    let work = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        let host_value = host_header.map_or_else(|| format!("{host}:{port}"), str::to_string);
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host_value}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if let Some(origin) = origin {
            request.push_str(&format!("Origin: {origin}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot write to {url}: {e}"))?;
        let mut raw = Vec::new();
        stream
            .take(4 << 20)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("cannot read from {url}: {e}"))?;
        parse_answer(&raw).ok_or_else(|| format!("{url} answered something that is not HTTP"))
    };
    tokio::time::timeout(CALL_TIMEOUT, work)
        .await
        .map_err(|_| format!("{url} did not answer within {CALL_TIMEOUT:?}"))?
}

fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Some(Answer { status, headers, body })
}

/// The body of an HTTP/1.1 answer sent with `Transfer-Encoding: chunked`, joined.
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn request(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string()
}

/// A call's result, or its error message.
async fn call(url: &str, method: &str, params: Value) -> Result<Value, String> {
    let answer = post(url, None, None, &request(method, params)).await?;
    let value = answer
        .json()
        .ok_or_else(|| format!("{method}: HTTP {} and no JSON-RPC answer", answer.status))?;
    match (value.get("result"), value.get("error")) {
        (Some(result), None) => Ok(result.clone()),
        (_, Some(error)) => Err(error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_string()),
        _ => Err(format!("{method}: no result")),
    }
}

/// Namespaces and how bad it is to expose them.
const NAMESPACES: &[(&str, Severity, &str)] = &[
    ("admin", Severity::High, "admin_addPeer"),
    ("personal", Severity::High, "personal_listAccounts"),
    ("debug", Severity::High, "debug_getRawHeader"),
    ("miner", Severity::High, "miner_setExtra"),
    ("clique", Severity::Medium, "clique_proposals"),
    ("istanbul", Severity::Medium, "istanbul_candidates"),
    ("qbft", Severity::Medium, "qbft_getPendingValidators"),
    ("raft", Severity::Medium, "raft_cluster"),
    ("txpool", Severity::Low, "txpool_status"),
];

/// Audits one node.
pub async fn audit_node(target: &AuditTarget, report: &mut AuditReport) {
    let node = target.name.clone();
    let mut found = |check: &str, severity: Severity, detail: String, fix: &str| {
        report.findings.push(Finding {
            node: node.clone(),
            check: check.into(),
            severity,
            detail,
            fix: fix.into(),
        });
    };
    let url = target.rpc.as_str();
    // The node must answer at all.
    if let Err(err) = call(url, "eth_chainId", json!([])).await {
        report
            .skipped
            .push(format!("{}: every check (it does not answer: {err})", target.name));
        return;
    }
    // 1. Namespaces.
    let modules: Option<Vec<String>> = call(url, "rpc_modules", json!([]))
        .await
        .ok()
        .and_then(|v| v.as_object().map(|m| m.keys().cloned().collect()));
    for (namespace, severity, probe) in NAMESPACES {
        let exposed = match &modules {
            Some(modules) => modules.iter().any(|m| m == namespace),
            // Without rpc_modules: a method of the namespace that is not "not found" (bad params still count).
            None => match post(url, None, None, &request(probe, json!([]))).await {
                Ok(answer) => answer
                    .json()
                    .and_then(|v| v.get("error").and_then(|e| e.get("code")).and_then(Value::as_i64))
                    .is_none_or(|code| code != -32601),
                Err(_) => false,
            },
        };
        if exposed {
            found(
                "rpc_api",
                *severity,
                format!("the `{namespace}` namespace is open on {url}"),
                "expose only eth,net,web3 on the public RPC (`--http.api`/`--ws.api`, Besu `--rpc-http-api`); keep the rest on IPC or an authenticated port",
            );
        }
    }
    // 2. Binding.
    if let Ok((host, port, _)) = split_url(url) {
        let loopback_host = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback_host {
            found(
                "bind",
                Severity::High,
                format!("its RPC is reached at {host}:{port}, beyond this host"),
                "bind RPC to 127.0.0.1 and put an authenticating proxy in front if it must be reached",
            );
        }
        let mut ports = target.ports.clone();
        if !ports.iter().any(|(p, _)| *p == port) {
            ports.push((port, "rpc"));
        }
        let listeners = match target.pid {
            Some(pid) => listening_sockets(pid).unwrap_or_default(),
            None => ports.iter().flat_map(|(p, _)| tcp_listeners_on_port(*p)).collect(),
        };
        for (port, role) in &ports {
            for listener in listeners
                .iter()
                .filter(|l| l.address.port() == *port && !l.is_loopback())
            {
                let (severity, fix) = match *role {
                    "rpc" | "ws" | "authrpc" => (
                        Severity::High,
                        "bind it to 127.0.0.1 (`--http.addr`, `--ws.addr`, `--authrpc.addr`)",
                    ),
                    "metrics" => (
                        Severity::Medium,
                        "bind metrics to 127.0.0.1 or a monitoring network only",
                    ),
                    _ => (
                        Severity::Info,
                        "p2p must reach the other nodes; restrict it to them with a firewall",
                    ),
                };
                found(
                    "bind",
                    severity,
                    format!("its {role} port listens on {listener}, every interface or a public one"),
                    fix,
                );
            }
        }
        // 6. Discovery: a UDP socket on the p2p port.
        if let Some(pid) = target.pid {
            let p2p: Vec<u16> = target
                .ports
                .iter()
                .filter(|(_, r)| *r == "p2p")
                .map(|(p, _)| *p)
                .collect();
            if listeners
                .iter()
                .any(|l| l.protocol == Protocol::Udp && p2p.contains(&l.address.port()))
            {
                found(
                    "discovery",
                    Severity::Medium,
                    format!("process {pid} has a UDP discovery socket on its p2p port"),
                    "turn discovery off in a private network (`--nodiscover`) and list peers statically",
                );
            }
        }
    }
    // 3. CORS.
    let body = request("eth_chainId", json!([]));
    let origin = format!("http://{ATTACKER}");
    if let Ok(answer) = post(url, None, Some(&origin), &body).await {
        let allowed = answer.header("access-control-allow-origin");
        if answer.status == 200 && allowed.is_some_and(|a| a == "*" || a == origin) {
            found(
                "cors",
                Severity::High,
                format!(
                    "a page on {origin} may call it from a browser (Access-Control-Allow-Origin: {})",
                    allowed.unwrap_or_default()
                ),
                "set `--http.corsdomain` to the few origins that need it, never `*`",
            );
        }
    }
    // 4. Virtual hosts.
    if let Ok(answer) = post(url, Some(ATTACKER), None, &body).await {
        if answer.status == 200 && answer.json().is_some_and(|v| v.get("result").is_some()) {
            found(
                "vhosts",
                Severity::Medium,
                format!("it answers requests for any Host (`{ATTACKER}` was served): DNS rebinding reaches it"),
                "set `--http.vhosts` to the names it is reached by (default localhost)",
            );
        }
    }
    // 5. Accounts.
    if let Ok(Value::Array(accounts)) = call(url, "eth_accounts", json!([])).await {
        if let Some(first) = accounts.first().and_then(Value::as_str) {
            match call(url, "eth_sign", json!([first, "0x64616763746c2d6175646974"])).await {
                Ok(_) => found(
                    "accounts",
                    Severity::High,
                    format!("account {first} is unlocked: whoever reaches the RPC signs with it"),
                    "do not unlock accounts on a node with an open RPC (`--unlock`, `--allow-insecure-unlock`); sign elsewhere",
                ),
                Err(_) => found(
                    "accounts",
                    Severity::Low,
                    format!("{} account(s) have keys on the node ({first} ...)", accounts.len()),
                    "keep keys off RPC nodes where you can",
                ),
            }
        }
    }
    // 6. Discovery, as the node says it.
    if let Ok(info) = call(url, "admin_nodeInfo", json!([])).await {
        let discovery = info["ports"]["discovery"].as_u64().unwrap_or(0);
        if discovery > 0 && target.pid.is_none() {
            found(
                "discovery",
                Severity::Medium,
                format!("discovery is on (UDP port {discovery})"),
                "turn discovery off in a private network (`--nodiscover`) and list peers statically",
            );
        }
    }
}

impl AuditTarget {
    /// The nodes of a network the local backend runs, with their processes and ports.
    pub fn of_record(record: &crate::backend::local::NetworkRecord) -> Vec<AuditTarget> {
        record
            .nodes
            .iter()
            .map(|n| {
                let p = &n.ports;
                let mut ports = vec![(p.rpc, "rpc")];
                if p.p2p > 0 {
                    ports.push((p.p2p, "p2p"));
                }
                for (port, role) in [
                    (p.ws, "ws"),
                    (p.metrics, "metrics"),
                    (p.authrpc, "authrpc"),
                    (p.raft, "p2p"),
                ] {
                    if let Some(port) = port {
                        ports.push((port, role));
                    }
                }
                AuditTarget {
                    name: n.name.clone(),
                    rpc: n.rpc.clone(),
                    pid: n.pid,
                    ports,
                }
            })
            .collect()
    }

    /// A node known only by its URL (`http://host:port`).
    pub fn of_url(url: &str) -> Result<AuditTarget, String> {
        let (host, port, _) = split_url(url)?;
        Ok(AuditTarget {
            name: format!("{host}:{port}"),
            rpc: url.to_string(),
            pid: None,
            ports: vec![(port, "rpc")],
        })
    }
}

/// Audits every target; counts by severity.
pub async fn audit(targets: &[AuditTarget]) -> AuditReport {
    let mut report = AuditReport::default();
    for target in targets {
        audit_node(target, &mut report).await;
    }
    report
        .findings
        .sort_by(|a, b| b.severity.cmp(&a.severity).then(a.node.cmp(&b.node)));
    for f in &report.findings {
        *report.counts.entry(f.severity.as_str().to_string()).or_insert(0) += 1;
    }
    report
}

impl AuditReport {
    /// One line per finding, for a terminal or a task log.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&format!(
                "{:<6} {:<12} {:<10} {}\n       fix: {}\n",
                f.severity.as_str(),
                f.node,
                f.check,
                f.detail,
                f.fix
            ));
        }
        for s in &self.skipped {
            out.push_str(&format!("skipped: {s}\n"));
        }
        let counts: Vec<String> = ["high", "medium", "low", "info"]
            .iter()
            .map(|s| format!("{} {s}", self.counts.get(*s).copied().unwrap_or(0)))
            .collect();
        out.push_str(&format!("{} finding(s): {}\n", self.findings.len(), counts.join(", ")));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_answers_parse() {
        assert_eq!(
            split_url("http://127.0.0.1:8545").unwrap(),
            ("127.0.0.1".into(), 8545, "/".into())
        );
        assert_eq!(split_url("http://[::1]:1/x").unwrap(), ("::1".into(), 1, "/x".into()));
        assert!(split_url("https://x").is_err());
        let answer = parse_answer(
            b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (answer.status, answer.header("access-control-allow-origin")),
            (200, Some("*"))
        );
        assert_eq!(answer.json(), Some(json!({"a": 1})));
        assert!(Severity::High > Severity::Medium && Severity::parse("low") == Some(Severity::Low));
    }
}
