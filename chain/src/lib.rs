//! Private Ethereum networks as data: the network spec, its validation, node keys and
//! every client's genesis, files and command line.
//!
//! This crate owns what a network *is*: which client and consensus engine, how many
//! validators and members, where they are placed, their keys, the genesis (or chain
//! spec) with the right extraData, and the exact program, arguments and environment
//! each node needs. It returns plain data ([`GeneratedNetwork`]) for a backend to write
//! to disk and run.
//!
//! Architecture invariant: this crate never spawns a process, opens a socket, touches
//! the file system or reads the environment. It knows nothing about backends, the store,
//! operators or the CLI; ports and data directories come in as parameters.
//!
//! Typical use:
//! 1. deserialize a [`NetworkSpec`] and call [`NetworkSpec::validate`] when a DAG is loaded;
//! 2. at deploy time call [`NetworkSpec::layout`] to learn node names and regions,
//!    allocate ports and data dirs, then call [`generate`] with one [`NodeParams`] per node.

mod clients;
mod duration;
mod error;
pub mod extradata;
mod generate;
mod keys;
mod keystore;
mod output;
mod spec;
mod version;

pub use clients::{ISTANBUL_MIX_HASH, ZERO_ADDRESS, ZERO_HASH};
pub use duration::SpecDuration;
pub use error::{Error, Result};
pub use generate::{extra_data_format, generate, generate_with_keys};
pub use keys::{KeySource, NodeKey};
pub use keystore::{CipherParams, Keystore, KeystoreCrypto, ScryptParams};
pub use output::{CommandSpec, GeneratedFile, GeneratedNetwork, NodeConfig, NodeParams, NodePorts};
pub use spec::{
    Account, Balance, Client, Consensus, NetworkSpec, NodeSlot, Region, Role, Settings, DEFAULT_CHAIN_ID,
    DEFAULT_EPOCH, DEFAULT_GAS_LIMIT, DEFAULT_REGION, MAX_GAS_LIMIT, MAX_NODES, MIN_GAS_LIMIT,
};
pub use version::Version;

/// Re-exported so callers can name addresses and byte strings without depending on alloy.
pub use alloy_primitives::{Address, Bytes};
