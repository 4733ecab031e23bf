//! The network spec: what a DAG or `dagctl net up` asks for, and its validation.

mod engine;
mod values;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use engine::{Client, Consensus};
pub use values::{Account, Balance, NodeSlot, PodResources, Region, Role, Storage};

use crate::duration::SpecDuration;
use crate::error::{Error, Result};
use crate::version::Version;

/// Smallest block gas limit accepted (geth's `params.MinGasLimit`, OpenEthereum's `minGasLimit` 0x1388).
pub const MIN_GAS_LIMIT: u64 = 5_000;
/// Largest block gas limit accepted (geth's `params.MaxGasLimit`, 2^63-1).
pub const MAX_GAS_LIMIT: u64 = i64::MAX as u64;
/// Gas limit used when the spec sets none.
pub const DEFAULT_GAS_LIMIT: u64 = 30_000_000;
/// Chain id used when the spec sets none.
pub const DEFAULT_CHAIN_ID: u64 = 1337;
/// Epoch length used when the spec sets none (the Clique, IBFT and QBFT default).
pub const DEFAULT_EPOCH: u64 = 30_000;
/// Most nodes (validators plus members) one network may have.
pub const MAX_NODES: u32 = 128;
/// Region used when the spec declares none.
pub const DEFAULT_REGION: &str = "local";

/// A request for a private Ethereum network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Network name: lowercase letters, digits and `-`, at most 63 characters.
    pub name: String,
    /// The client every node runs.
    pub client: Client,
    /// The consensus engine (anvil: mining mode).
    pub consensus: Consensus,
    /// Number of validators (anvil: number of standalone nodes); at least 1.
    pub nodes: u32,
    /// Number of non-validating nodes.
    #[serde(default)]
    pub members: u32,
    /// Target time between blocks; converted into each client's unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_time: Option<SpecDuration>,
    /// Epoch length in blocks (Clique, IBFT, QBFT, IBFT 2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// BFT round request timeout (IBFT, QBFT, IBFT 2.0), whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<SpecDuration>,
    /// Block gas limit, 5000 to 2^63-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gas_limit: Option<u64>,
    /// EIP-155 chain id (also the network id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// Accounts funded at genesis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<Account>,
    /// When set, every node's own address is funded with this many wei at genesis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_balance: Option<Balance>,
    /// Client version pin; defaults to [`Client::default_version`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Named placements; nodes are spread across them round-robin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<Region>,
    /// Explicit node-name to region assignments that override round-robin.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub placement: BTreeMap<String, String>,
    /// Seed for deterministic keys; random keys when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_seed: Option<String>,
    /// How the local backend isolates nodes: `host` (every node a process on loopback, the default) or
    /// `netns` (each node in its own network namespace on a bridge; root only).
    #[serde(default, skip_serializing_if = "Isolation::is_host")]
    pub isolation: Isolation,
    /// Where the nodes run: `local` (processes on this machine, the default) or `kubernetes` (a StatefulSet per
    /// node in the regions of `[chain.kubernetes]`).
    #[serde(default, skip_serializing_if = "BackendKind::is_local")]
    pub backend: BackendKind,
    /// Resource requests of each node's pod (Kubernetes only; the local backend ignores them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<PodResources>,
    /// A persistent volume per node for its data (Kubernetes only; without it a pod's data is an emptyDir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
}

/// Which backend runs a network's nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Processes on this machine.
    #[default]
    Local,
    /// Pods on Kubernetes.
    Kubernetes,
}

impl BackendKind {
    pub fn is_local(&self) -> bool {
        *self == BackendKind::Local
    }

    /// The backend's name, as the store records it.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Kubernetes => "kubernetes",
        }
    }
}

/// How nodes are isolated from each other on one host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Processes on loopback.
    #[default]
    Host,
    /// A network namespace per node, veth pairs on a bridge.
    Netns,
}

impl Isolation {
    pub fn is_host(&self) -> bool {
        *self == Isolation::Host
    }
}

/// A validated spec with every default filled in, in client-neutral units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Time between blocks; `None` only for anvil `instant`.
    pub block_time: Option<Duration>,
    /// Epoch length; `None` where the engine has none.
    pub epoch: Option<u64>,
    /// BFT request timeout; `None` for non-BFT engines.
    pub request_timeout: Option<Duration>,
    /// Block gas limit.
    pub gas_limit: u64,
    /// Chain id and network id.
    pub chain_id: u64,
    /// Client version pin as given (or the default).
    pub version: String,
    /// Parsed version pin.
    pub parsed_version: Version,
    /// Regions, never empty.
    pub regions: Vec<Region>,
}

impl NetworkSpec {
    /// A spec with the given essentials and every optional field at its default.
    pub fn new(name: impl Into<String>, client: Client, consensus: Consensus, nodes: u32) -> Self {
        Self {
            name: name.into(),
            client,
            consensus,
            nodes,
            members: 0,
            block_time: None,
            epoch: None,
            request_timeout: None,
            gas_limit: None,
            chain_id: None,
            accounts: Vec::new(),
            node_balance: None,
            version: None,
            regions: Vec::new(),
            placement: BTreeMap::new(),
            key_seed: None,
            isolation: Isolation::Host,
            backend: BackendKind::Local,
            resources: None,
            storage: None,
        }
    }

    /// Checks the whole spec; the error names the first offending field.
    pub fn validate(&self) -> Result<()> {
        self.layout().map(|_| ())
    }

    /// Validates the spec and fills in defaults.
    pub fn settings(&self) -> Result<Settings> {
        validate_name("name", &self.name)?;
        self.check_consensus()?;
        self.check_node_counts()?;
        let block_time = self.resolve_block_time()?;
        let epoch = self.resolve_epoch()?;
        let request_timeout = self.resolve_request_timeout(block_time)?;
        let gas_limit = self.gas_limit.unwrap_or(DEFAULT_GAS_LIMIT);
        if !(MIN_GAS_LIMIT..=MAX_GAS_LIMIT).contains(&gas_limit) {
            return Err(Error::InvalidField {
                field: "gas_limit",
                reason: format!("{gas_limit} is out of range {MIN_GAS_LIMIT}..={MAX_GAS_LIMIT}"),
            });
        }
        let chain_id = self.chain_id.unwrap_or(DEFAULT_CHAIN_ID);
        if chain_id == 0 {
            return Err(invalid("chain_id", "must be greater than zero"));
        }
        let (version, parsed_version) = self.resolve_version()?;
        self.check_accounts()?;
        if self.key_seed.as_deref() == Some("") {
            return Err(invalid("key_seed", "must not be empty when set"));
        }
        let regions = self.resolve_regions()?;
        self.check_pod_shape()?;
        Ok(Settings {
            block_time,
            epoch,
            request_timeout,
            gas_limit,
            chain_id,
            version,
            parsed_version,
            regions,
        })
    }

    /// The nodes this spec produces, with names, roles and regions.
    pub fn layout(&self) -> Result<Vec<NodeSlot>> {
        let settings = self.settings()?;
        self.layout_with(&settings)
    }

    pub(crate) fn layout_with(&self, settings: &Settings) -> Result<Vec<NodeSlot>> {
        let region_names: Vec<&str> = settings.regions.iter().map(|r| r.name.as_str()).collect();
        let mut slots = Vec::new();
        let validator_role = if self.client == Client::Anvil {
            Role::Standalone
        } else {
            Role::Validator
        };
        let validator_prefix = if self.client == Client::Anvil {
            "node"
        } else {
            "validator"
        };
        let roles = (1..=self.nodes)
            .map(|n| (validator_role, format!("{validator_prefix}-{n}")))
            .chain((1..=self.members).map(|n| (Role::Member, format!("member-{n}"))));
        for (index, (role, name)) in roles.enumerate() {
            // Round-robin over all nodes in order, so members fill the regions
            // that the validators left short.
            let region = region_names[index % region_names.len()].to_string();
            slots.push(NodeSlot {
                index,
                name,
                role,
                region,
            });
        }
        for (node, region) in &self.placement {
            if !region_names.contains(&region.as_str()) {
                return Err(Error::UnknownRegion {
                    node: node.clone(),
                    region: region.clone(),
                    known: region_names.join(", "),
                });
            }
            let Some(slot) = slots.iter_mut().find(|slot| &slot.name == node) else {
                let known: Vec<&str> = slots.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::UnknownNode {
                    node: node.clone(),
                    known: known.join(", "),
                });
            };
            slot.region = region.clone();
        }
        Ok(slots)
    }

    fn check_pod_shape(&self) -> Result<()> {
        if self.backend == BackendKind::Kubernetes && !self.isolation.is_host() {
            return Err(invalid(
                "isolation",
                "applies to the local backend only (pods have their own network)",
            ));
        }
        if let Some(resources) = &self.resources {
            for (field, value) in [
                ("resources.cpu", &resources.cpu),
                ("resources.memory", &resources.memory),
            ] {
                if let Some(value) = value {
                    values::check_quantity(field, value)?;
                }
            }
        }
        if let Some(storage) = &self.storage {
            values::check_quantity("storage.size", &storage.size)?;
        }
        Ok(())
    }

    fn check_consensus(&self) -> Result<()> {
        let supported = self.client.supported_consensus();
        if supported.contains(&self.consensus) {
            return Ok(());
        }
        Err(Error::UnsupportedConsensus {
            client: self.client,
            consensus: self.consensus,
            supported: join(supported),
        })
    }

    fn check_node_counts(&self) -> Result<()> {
        if self.nodes == 0 {
            return Err(invalid("nodes", "must be at least 1"));
        }
        if self.members > 0 {
            match self.consensus {
                Consensus::Raft => return Err(invalid(
                    "members",
                    "raft has no non-voting members at genesis: every node is a raft peer, so count them in `nodes`",
                )),
                Consensus::Interval | Consensus::Instant => {
                    return Err(invalid(
                        "members",
                        "anvil nodes are standalone chains with no peers: count them in `nodes`",
                    ))
                }
                _ => {}
            }
        }
        let total = u64::from(self.nodes) + u64::from(self.members);
        if total > u64::from(MAX_NODES) {
            return Err(Error::InvalidField {
                field: "nodes",
                reason: format!("nodes + members is {total}; at most {MAX_NODES} are supported"),
            });
        }
        Ok(())
    }

    fn resolve_block_time(&self) -> Result<Option<Duration>> {
        let given = self.block_time.map(SpecDuration::get);
        if self.consensus == Consensus::Instant {
            if given.is_some() {
                return Err(Error::FieldNotApplicable {
                    field: "block_time",
                    client: self.client,
                    consensus: self.consensus,
                    hint: "`instant` mines a block for every transaction; use consensus `interval` for a block time",
                });
            }
            return Ok(None);
        }
        let Some(block_time) = given.or_else(|| self.consensus.default_block_time()) else {
            return Ok(None);
        };
        if block_time.is_zero() {
            return Err(invalid("block_time", "must be greater than zero"));
        }
        let whole_seconds = block_time.subsec_nanos() == 0;
        let whole_millis = block_time.subsec_nanos() % 1_000_000 == 0;
        match self.consensus {
            Consensus::Clique | Consensus::Ibft | Consensus::Qbft | Consensus::Ibft2 | Consensus::Aura
                if !whole_seconds =>
            {
                Err(Error::BlockTimeUnit {
                    client: self.client,
                    consensus: self.consensus,
                    given: block_time,
                    reason: "the client reads block time in whole seconds",
                })
            }
            Consensus::Raft | Consensus::Interval if !whole_millis => Err(Error::BlockTimeUnit {
                client: self.client,
                consensus: self.consensus,
                given: block_time,
                reason: "the client reads block time in whole milliseconds",
            }),
            _ => Ok(Some(block_time)),
        }
    }

    fn resolve_epoch(&self) -> Result<Option<u64>> {
        if !self.consensus.has_epoch() {
            if self.epoch.is_some() {
                return Err(Error::FieldNotApplicable {
                    field: "epoch",
                    client: self.client,
                    consensus: self.consensus,
                    hint: "epoch applies to clique, ibft, qbft and ibft2",
                });
            }
            return Ok(None);
        }
        let epoch = self.epoch.unwrap_or(DEFAULT_EPOCH);
        if epoch == 0 {
            return Err(invalid("epoch", "must be greater than zero"));
        }
        Ok(Some(epoch))
    }

    fn resolve_request_timeout(&self, block_time: Option<Duration>) -> Result<Option<Duration>> {
        if !self.consensus.is_bft() {
            if self.request_timeout.is_some() {
                return Err(Error::FieldNotApplicable {
                    field: "request_timeout",
                    client: self.client,
                    consensus: self.consensus,
                    hint: "request_timeout applies to ibft, qbft and ibft2",
                });
            }
            return Ok(None);
        }
        let timeout = match self.request_timeout {
            Some(given) => given.get(),
            // Besu's tuning advice: start with twice the block period (ibft.md), at least 10 s.
            None => block_time
                .map(|bt| bt.saturating_mul(2))
                .unwrap_or_default()
                .max(Duration::from_secs(10)),
        };
        if timeout.is_zero() {
            return Err(invalid("request_timeout", "must be greater than zero"));
        }
        if timeout.subsec_nanos() != 0 {
            return Err(Error::InvalidField {
                field: "request_timeout",
                reason: format!(
                    "{timeout:?} is not a whole number of seconds; {} {} reads requesttimeoutseconds",
                    self.client, self.consensus
                ),
            });
        }
        Ok(Some(timeout))
    }

    fn resolve_version(&self) -> Result<(String, Version)> {
        let text = self
            .version
            .clone()
            .unwrap_or_else(|| self.client.default_version().to_string());
        let Some(version) = Version::parse(&text) else {
            return Err(Error::InvalidField {
                field: "version",
                reason: format!("`{text}` is not a version like 1.13.15"),
            });
        };
        let refuse = |reason: &str| Error::UnsupportedVersion {
            client: self.client,
            consensus: self.consensus,
            version: text.clone(),
            reason: reason.to_string(),
        };
        match (self.client, self.consensus) {
            (Client::Geth, _) if version >= Version::new(1, 14, 0) => Err(refuse(
                "geth 1.14 and later cannot seal Clique blocks (go-ethereum#29249); pin 1.13.x, e.g. 1.13.15",
            )),
            (Client::Geth, _) if version < Version::new(1, 11, 0) => Err(refuse(
                "the generated command line (--authrpc.port, [Node.P2P] StaticNodes in config.toml) needs geth 1.11 to 1.13",
            )),
            (Client::Besu, Consensus::Clique) if version >= Version::new(25, 12, 0) => Err(refuse(
                "Besu 25.12.0 and later cannot create or validate Clique networks (besu-docs clique.md); pin an earlier release, e.g. 23.4.1",
            )),
            (Client::Openethereum, _) if version > Version::new(3, 3, 5) => Err(refuse(
                "OpenEthereum's last release is 3.3.5",
            )),
            _ => Ok((text, version)),
        }
    }

    fn check_accounts(&self) -> Result<()> {
        let mut seen = BTreeSet::new();
        for account in &self.accounts {
            if !seen.insert(account.address) {
                return Err(Error::InvalidField {
                    field: "accounts",
                    reason: format!("address {} is listed twice", account.address),
                });
            }
        }
        Ok(())
    }

    fn resolve_regions(&self) -> Result<Vec<Region>> {
        if self.regions.is_empty() {
            return Ok(vec![Region::named(DEFAULT_REGION)]);
        }
        let mut seen = BTreeSet::new();
        for region in &self.regions {
            validate_name("regions", &region.name)?;
            if !seen.insert(region.name.as_str()) {
                return Err(Error::InvalidField {
                    field: "regions",
                    reason: format!("region `{}` is declared twice", region.name),
                });
            }
        }
        Ok(self.regions.clone())
    }
}

fn invalid(field: &'static str, reason: &str) -> Error {
    Error::InvalidField {
        field,
        reason: reason.to_string(),
    }
}

fn join(consensus: &[Consensus]) -> String {
    consensus.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Names become directory names and kube object names: keep them DNS-label shaped.
fn validate_name(field: &'static str, name: &str) -> Result<()> {
    let shaped = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if shaped {
        return Ok(());
    }
    Err(Error::InvalidField {
        field,
        reason: format!("`{name}` must be 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'"),
    })
}
