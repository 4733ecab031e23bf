//! Which nodes a fault hits, as pumba and Chaos Mesh let one say it: node names, `re2:<regex>` over names,
//! `random:N` nodes, `P%` of the nodes (rounded down, at least one), or `f`: the most faulty validators the
//! consensus tolerates (floor((n-1)/3) for BFT engines, a minority floor((n-1)/2) for Clique, Raft and Aura),
//! `majority` (floor(v/2)+1 of the v validators) or `validators:N`.
//! A selector that matches no node is an error, never a fault on nothing.

use crate::backend::kubernetes::KubeRecord;
use crate::backend::local::NetworkRecord;
use crate::spec::{Consensus, Role};

/// The nodes a selector chooses among, on any backend.
#[derive(Debug, Clone)]
pub struct Members<'a> {
    pub network: &'a str,
    pub consensus: Consensus,
    /// Name and role of every node, in the network's order.
    pub nodes: Vec<(&'a str, Role)>,
}

impl<'a> From<&'a NetworkRecord> for Members<'a> {
    fn from(record: &'a NetworkRecord) -> Self {
        Members {
            network: &record.name,
            consensus: record.consensus,
            nodes: record.nodes.iter().map(|n| (n.name.as_str(), n.role)).collect(),
        }
    }
}

impl<'a> From<&'a crate::backend::any::AnyRecord> for Members<'a> {
    fn from(record: &'a crate::backend::any::AnyRecord) -> Self {
        match record {
            crate::backend::any::AnyRecord::Local(r) => r.into(),
            crate::backend::any::AnyRecord::Kubernetes(r) => r.into(),
        }
    }
}

impl<'a> From<&'a KubeRecord> for Members<'a> {
    fn from(record: &'a KubeRecord) -> Self {
        Members {
            network: &record.name,
            consensus: record.consensus,
            nodes: record.nodes.iter().map(|n| (n.name.as_str(), n.role)).collect(),
        }
    }
}

/// A target selector.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    Names(Vec<String>),
    Regex(String),
    Random(usize),
    Percent(f64),
    Tolerated,
    /// `majority`: more than half of the validators (floor(v/2)+1).
    Majority,
    /// `validators:N`: N validators at random.
    Validators(usize),
}

impl Selector {
    /// Reads a selector; what is wrong with it, said plainly.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(
                "an empty target; expected node names, re2:<regex>, random:N, validators:N, P%, f or majority".into(),
            );
        }
        if let Some(pattern) = text.strip_prefix("re2:") {
            regex_lite_check(pattern)?;
            return Ok(Selector::Regex(pattern.to_string()));
        }
        if let Some(n) = text.strip_prefix("random:") {
            let n: usize = n
                .parse()
                .map_err(|_| format!("`{text}`: random:N needs a whole number of nodes"))?;
            if n == 0 {
                return Err(format!("`{text}`: random:0 selects no node"));
            }
            return Ok(Selector::Random(n));
        }
        if let Some(p) = text.strip_suffix('%') {
            let p: f64 = p
                .parse()
                .map_err(|_| format!("`{text}`: a percentage is a number and %"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!("`{text}`: a percentage must be more than 0 and at most 100"));
            }
            return Ok(Selector::Percent(p));
        }
        if text == "f" {
            return Ok(Selector::Tolerated);
        }
        if text == "majority" {
            return Ok(Selector::Majority);
        }
        if let Some(n) = text.strip_prefix("validators:") {
            let n: usize = n
                .parse()
                .map_err(|_| format!("`{text}`: validators:N needs a whole number of validators"))?;
            if n == 0 {
                return Err(format!("`{text}`: validators:0 selects no node"));
            }
            return Ok(Selector::Validators(n));
        }
        let names: Vec<String> = text.split(',').map(|n| n.trim().to_string()).collect();
        if names.iter().any(String::is_empty) {
            return Err(format!("`{text}`: an empty node name"));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(format!("`{text}`: node `{twice}` is named twice"));
        }
        Ok(Selector::Names(names))
    }

    /// The nodes of `record` it selects (in the record's order); `seed` drives `random:` choices.
    pub fn select<'a>(&self, members: impl Into<Members<'a>>, seed: u64) -> Result<Vec<String>, String> {
        let record = members.into();
        let names: Vec<&str> = record.nodes.iter().map(|(name, _)| *name).collect();
        let picked: Vec<String> = match self {
            Selector::Names(wanted) => {
                for name in wanted {
                    if !names.contains(&name.as_str()) {
                        return Err(format!(
                            "network `{}` has no node `{name}`; its nodes: {}",
                            record.network,
                            names.join(", ")
                        ));
                    }
                }
                names
                    .iter()
                    .filter(|n| wanted.iter().any(|w| w == *n))
                    .map(|n| n.to_string())
                    .collect()
            }
            Selector::Regex(pattern) => {
                let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| e.to_string())?;
                names.iter().filter(|n| re.is_match(n)).map(|n| n.to_string()).collect()
            }
            Selector::Random(n) => {
                if *n > names.len() {
                    return Err(format!(
                        "random:{n}: network `{}` has only {} nodes",
                        record.network,
                        names.len()
                    ));
                }
                shuffled(&names, seed)
                    .into_iter()
                    .take(*n)
                    .map(str::to_string)
                    .collect()
            }
            Selector::Percent(p) => {
                let n = ((names.len() as f64 * p / 100.0).floor() as usize).max(1);
                shuffled(&names, seed).into_iter().take(n).map(str::to_string).collect()
            }
            Selector::Majority | Selector::Validators(_) => {
                let validators = validators(&record);
                let n = match self {
                    Selector::Validators(n) => *n,
                    _ => validators.len() / 2 + 1,
                };
                if n > validators.len() {
                    return Err(format!(
                        "{}: network `{}` has {} validator(s)",
                        if matches!(self, Selector::Majority) {
                            "majority".to_string()
                        } else {
                            format!("validators:{n}")
                        },
                        record.network,
                        validators.len()
                    ));
                }
                shuffled(&validators, seed)
                    .into_iter()
                    .take(n)
                    .map(str::to_string)
                    .collect()
            }
            Selector::Tolerated => {
                let validators = validators(&record);
                let f = tolerated(record.consensus, validators.len());
                if f == 0 {
                    return Err(format!(
                        "f: {} with {} validator(s) tolerates no faulty validator",
                        serde_json::to_value(record.consensus)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        validators.len()
                    ));
                }
                shuffled(&validators, seed)
                    .into_iter()
                    .take(f)
                    .map(str::to_string)
                    .collect()
            }
        };
        if picked.is_empty() {
            return Err(format!("the target matches no node of network `{}`", record.network));
        }
        let mut ordered: Vec<String> = names
            .iter()
            .filter(|n| picked.contains(&n.to_string()))
            .map(|n| n.to_string())
            .collect();
        ordered.dedup();
        Ok(ordered)
    }
}

fn validators<'a>(record: &Members<'a>) -> Vec<&'a str> {
    record
        .nodes
        .iter()
        .filter(|(_, role)| *role == Role::Validator)
        .map(|(name, _)| *name)
        .collect()
}

/// The most faulty validators `consensus` tolerates among `n`.
pub fn tolerated(consensus: Consensus, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    if consensus.is_bft() {
        (n - 1) / 3
    } else {
        match consensus {
            Consensus::Clique | Consensus::Raft | Consensus::Aura => (n - 1) / 2,
            Consensus::Interval | Consensus::Instant => 0,
            _ => 0,
        }
    }
}

/// A regex is checked when read, so a bad one is an error at load time.
fn regex_lite_check(pattern: &str) -> Result<(), String> {
    regex::Regex::new(pattern).map(|_| ()).map_err(|e| {
        format!(
            "re2:{pattern} is not a valid expression: {}",
            e.to_string().lines().last().unwrap_or_default().trim()
        )
    })
}

/// `names` in an order fixed by `seed` (Fisher-Yates over xorshift).
fn shuffled<'a>(names: &[&'a str], seed: u64) -> Vec<&'a str> {
    let mut out = names.to_vec();
    let mut state = seed | 1;
    for i in (1..out.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.swap(i, (state % (i as u64 + 1)) as usize);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(consensus: &str, roles: &[&str]) -> NetworkRecord {
        let nodes: Vec<serde_json::Value> = roles
            .iter()
            .enumerate()
            .map(|(i, role)| {
                let name = if *role == "member" {
                    format!("member-{}", i + 1)
                } else {
                    format!("validator-{}", i + 1)
                };
                serde_json::json!({"name": name, "role": role, "region": "local", "rpc": "http://127.0.0.1:1",
                    "ws": null, "enode": null, "address": "0x0", "pid": null, "data_dir": "/x", "log": "/x.log",
                    "ports": {"p2p": 1, "rpc": 2}})
            })
            .collect();
        serde_json::from_value(
            serde_json::json!({"name": "net", "client": "geth", "consensus": consensus,
            "chain_id": 1, "base_dir": "/x", "deployer_pid": 1, "nodes": nodes}),
        )
        .unwrap()
    }

    #[test]
    fn selectors_read_and_pick_nodes() {
        let net = record(
            "clique",
            &["validator", "validator", "validator", "validator", "member"],
        );
        let pick = |text: &str| Selector::parse(text).and_then(|s| s.select(&net, 7));
        assert_eq!(pick("validator-2, member-5").unwrap(), vec!["validator-2", "member-5"]);
        assert_eq!(pick("re2:validator-[13]").unwrap(), vec!["validator-1", "validator-3"]);
        assert_eq!(pick("random:2").unwrap().len(), 2);
        assert_eq!(
            pick("random:2").unwrap(),
            pick("random:2").unwrap(),
            "the seed fixes the choice"
        );
        assert_eq!(pick("40%").unwrap().len(), 2);
        assert_eq!(pick("1%").unwrap().len(), 1, "at least one");
        // Clique, 4 signers: a minority of 1 (floor(3/2)); never the member.
        let f = pick("f").unwrap();
        assert_eq!(f.len(), 1);
        assert!(f[0].starts_with("validator-"), "{f:?}");
        assert_eq!(tolerated(Consensus::Ibft, 4), 1);
        assert_eq!(tolerated(Consensus::Qbft, 7), 2);
        assert_eq!(tolerated(Consensus::Raft, 5), 2);
        assert_eq!(tolerated(Consensus::Interval, 3), 0);
        // A majority of the 4 signers is 3, never the member; validators:N picks only validators.
        let majority = pick("majority").unwrap();
        assert_eq!(majority.len(), 3);
        assert!(majority.iter().all(|n| n.starts_with("validator-")), "{majority:?}");
        assert_eq!(pick("validators:4").unwrap().len(), 4);
        assert!(pick("validators:5").unwrap_err().contains("has 4 validator(s)"));
        assert!(pick("validators:0").is_err() && pick("validators:x").is_err());
        // What is wrong, said.
        assert!(pick("validator-9").unwrap_err().contains("has no node `validator-9`"));
        assert!(pick("re2:nothing-.*").unwrap_err().contains("matches no node"));
        assert!(pick("re2:(")
            .unwrap_err()
            .starts_with("re2:( is not a valid expression"));
        assert!(pick("random:9").unwrap_err().contains("has only 5 nodes"));
        assert!(pick("random:0").is_err() && pick("random:x").is_err());
        assert!(pick("0%").unwrap_err().contains("more than 0") && pick("101%").is_err());
        assert!(pick("a,a").unwrap_err().contains("named twice"));
        assert!(pick("").is_err() && pick("a,").is_err());
        let one = record("ibft", &["validator", "validator", "validator"]);
        let err = Selector::parse("f").unwrap().select(&one, 1).unwrap_err();
        assert!(
            err.contains("ibft with 3 validator(s) tolerates no faulty validator"),
            "{err}"
        );
    }
}
