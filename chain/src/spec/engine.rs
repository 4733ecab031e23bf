//! Clients and consensus engines: which pairs exist and their defaults.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An Ethereum client implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Client {
    /// go-ethereum; Clique sealing needs 1.13.x or older.
    #[serde(alias = "go-ethereum")]
    Geth,
    /// GoQuorum (ConsenSys).
    #[serde(alias = "goquorum")]
    Quorum,
    /// Hyperledger Besu (formerly Pantheon).
    #[serde(alias = "pantheon")]
    Besu,
    /// OpenEthereum (formerly Parity Ethereum); last release 3.3.5.
    #[serde(alias = "parity")]
    Openethereum,
    /// Foundry's anvil: one fast standalone node, no peers.
    Anvil,
}

impl Client {
    /// Every client, in documentation order.
    pub const ALL: [Client; 5] = [
        Client::Geth,
        Client::Quorum,
        Client::Besu,
        Client::Openethereum,
        Client::Anvil,
    ];

    /// The consensus engines this client can run, in documentation order.
    pub fn supported_consensus(self) -> &'static [Consensus] {
        match self {
            Client::Geth => &[Consensus::Clique],
            Client::Quorum => &[Consensus::Ibft, Consensus::Qbft, Consensus::Raft, Consensus::Clique],
            Client::Besu => &[Consensus::Ibft2, Consensus::Qbft, Consensus::Clique],
            Client::Openethereum => &[Consensus::Aura, Consensus::Clique],
            Client::Anvil => &[Consensus::Interval, Consensus::Instant],
        }
    }

    /// The version pinned when the spec sets none (chains.md section 0).
    pub fn default_version(self) -> &'static str {
        match self {
            // Last line that seals Clique (go-ethereum#29249).
            Client::Geth => "1.13.15",
            // quorum params/version.go at the last release line.
            Client::Quorum => "24.4.1",
            // quorum-dev-quickstart's BESU_VERSION; before 25.12, so Clique still seals.
            Client::Besu => "23.4.1",
            // Last OpenEthereum tag.
            Client::Openethereum => "3.3.5",
            // The anvil npm package version tried on these machines.
            Client::Anvil => "1.7.1",
        }
    }

    /// The name of the client's executable.
    pub fn program(self) -> &'static str {
        match self {
            Client::Geth | Client::Quorum => "geth",
            Client::Besu => "besu",
            Client::Openethereum => "openethereum",
            Client::Anvil => "anvil",
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Client::Geth => "geth",
            Client::Quorum => "quorum",
            Client::Besu => "besu",
            Client::Openethereum => "openethereum",
            Client::Anvil => "anvil",
        })
    }
}

/// A consensus engine (or, for anvil, a mining mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consensus {
    /// Clique proof of authority (EIP-225).
    Clique,
    /// GoQuorum's IBFT 1.0 (istanbul).
    Ibft,
    /// QBFT (GoQuorum and Besu).
    Qbft,
    /// GoQuorum's Raft.
    Raft,
    /// Besu's IBFT 2.0.
    Ibft2,
    /// OpenEthereum's Authority Round.
    #[serde(alias = "authorityround")]
    Aura,
    /// anvil mines a block every `block_time`.
    Interval,
    /// anvil mines a block for every transaction.
    Instant,
}

impl Consensus {
    /// Whether the engine has an epoch (vote reset / checkpoint interval).
    pub fn has_epoch(self) -> bool {
        matches!(
            self,
            Consensus::Clique | Consensus::Ibft | Consensus::Qbft | Consensus::Ibft2
        )
    }

    /// Whether the engine is a BFT engine with round request timeouts.
    pub fn is_bft(self) -> bool {
        matches!(self, Consensus::Ibft | Consensus::Qbft | Consensus::Ibft2)
    }

    /// The block time used when the spec sets none.
    pub fn default_block_time(self) -> Option<Duration> {
        match self {
            // Client defaults: clique period 5 (geth testdata), IBFT/QBFT 5 (quickstart),
            // stepDuration 5, raft 50 ms (quorum flags.go), anvil 1 s.
            Consensus::Clique | Consensus::Ibft | Consensus::Qbft | Consensus::Ibft2 | Consensus::Aura => {
                Some(Duration::from_secs(5))
            }
            Consensus::Raft => Some(Duration::from_millis(50)),
            Consensus::Interval => Some(Duration::from_secs(1)),
            Consensus::Instant => None,
        }
    }
}

impl fmt::Display for Consensus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Consensus::Clique => "clique",
            Consensus::Ibft => "ibft",
            Consensus::Qbft => "qbft",
            Consensus::Raft => "raft",
            Consensus::Ibft2 => "ibft2",
            Consensus::Aura => "aura",
            Consensus::Interval => "interval",
            Consensus::Instant => "instant",
        })
    }
}
