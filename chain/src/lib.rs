//! Private Ethereum networks as data: the network spec, its validation, node keys and
//! every client's genesis, files and command line.
//!
//! This crate owns what a network *is*: which client and consensus engine, how many
//! validators and members, where they are placed, their keys, the genesis (or chain
//! spec) with the right extraData, and the exact program, arguments and environment
//! each node needs. It returns plain data ([`GeneratedNetwork`]) for a backend to write
//! to disk and run.
//!
//! Around that pure core sit the parts that act on the world:
//! - [`backend`]: the [`NodeBackend`] trait (start a network, wait until ready, stop it, describe
//!   its endpoints, signal one node) and its implementations;
//! - [`local`] (`backend::local`): the local backend, which writes the generated files, runs real
//!   client processes on this machine, waits until the network is ready and tears it down;
//! - [`lifecycle`]: a network's record in the engine's store (status, nodes, owner, TTL), reaping
//!   after the TTL and re-attaching after a restart;
//! - [`registry`]: where those records are read and written: the engine's store directly, or the
//!   task execution API from a task runner (which holds no database credentials);
//! - [`operators`]: `chain.deploy_network` and `chain.teardown`, the only place where the engine
//!   (argument validation) and the task runner (operators) meet this crate.
//!
//! Architecture invariant: the spec, key and generation modules never spawn a process, open a
//! socket, touch the file system or read the environment; ports and data directories come in
//! as parameters. Only `backend::local` starts processes and opens sockets (loopback only), and only
//! `lifecycle`, `registry` and `operators` know the store and the worker. No module reads the environment:
//! binaries, directories and host name come in through [`local::LocalOptions`].
//!
//! Typical use:
//! 1. deserialize a [`NetworkSpec`] and call [`NetworkSpec::validate`] when a DAG is loaded;
//! 2. at deploy time call [`NetworkSpec::layout`] to learn node names and regions,
//!    allocate ports and data dirs, then call [`generate`] with one [`NodeParams`] per node.

pub mod audit;
pub mod backend;
pub mod certify;
pub mod chaos;
mod clients;
mod duration;
mod error;
pub mod extradata;
mod generate;
mod keys;
mod keystore;
pub mod kpi;
pub mod lifecycle;
pub mod load;
pub mod monitor;
pub mod operators;
mod output;
mod plan;
pub mod registry;
mod spec;
pub mod tx;
mod version;

pub use backend::any::{AnyRecord, Backends};
pub use backend::{kubernetes, local, NodeBackend, NodeSignal};
pub use clients::{ISTANBUL_MIX_HASH, ZERO_ADDRESS, ZERO_HASH};
pub use duration::SpecDuration;
pub use error::{Error, Result};
pub use extradata::extra_data_format;
pub use generate::{generate, generate_with_keys};
pub use keys::{KeySource, NodeKey};
pub use keystore::{CipherParams, Keystore, KeystoreCrypto, ScryptParams};
pub use output::{CommandSpec, GeneratedFile, GeneratedNetwork, NodeConfig, NodeParams, NodePorts, PeerAddress};
pub use spec::{
    Account, BackendKind, Balance, Client, Consensus, NetworkSpec, NodeSlot, PodResources, Region, Role, Settings,
    Storage, DEFAULT_CHAIN_ID, DEFAULT_EPOCH, DEFAULT_GAS_LIMIT, DEFAULT_REGION, MAX_GAS_LIMIT, MAX_NODES,
    MIN_GAS_LIMIT,
};
pub use version::Version;

/// Re-exported so callers can name addresses and byte strings without depending on alloy.
pub use alloy_primitives::{Address, Bytes};
