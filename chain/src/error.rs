//! The crate's one error type.

use std::time::Duration;

use crate::spec::{Client, Consensus};

/// Everything that can go wrong while validating a spec or generating a network.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The client cannot run the requested consensus engine.
    #[error("consensus `{consensus}` is not supported by client `{client}`; supported: {supported}")]
    UnsupportedConsensus {
        client: Client,
        consensus: Consensus,
        /// The legal engines for this client, comma separated.
        supported: String,
    },

    /// A spec field holds a value outside its legal range or shape.
    #[error("invalid `{field}`: {reason}")]
    InvalidField { field: &'static str, reason: String },

    /// A spec field is set for a client x consensus pair that has no use for it.
    #[error("`{field}` has no effect with {client} {consensus}; {hint}")]
    FieldNotApplicable {
        field: &'static str,
        client: Client,
        consensus: Consensus,
        hint: &'static str,
    },

    /// The block time cannot be expressed in the unit the client reads.
    #[error("block_time {given:?} cannot be used with {client} {consensus}: {reason}")]
    BlockTimeUnit {
        client: Client,
        consensus: Consensus,
        given: Duration,
        reason: &'static str,
    },

    /// The pinned client version cannot run the requested network.
    #[error("{client} version `{version}` cannot run {consensus}: {reason}")]
    UnsupportedVersion {
        client: Client,
        consensus: Consensus,
        version: String,
        reason: String,
    },

    /// A placement names a region that the spec does not declare.
    #[error("node `{node}` is placed in unknown region `{region}`; regions: {known}")]
    UnknownRegion {
        node: String,
        region: String,
        known: String,
    },

    /// A placement names a node that the spec does not produce.
    #[error("placement names unknown node `{node}`; nodes: {known}")]
    UnknownNode { node: String, known: String },

    /// The caller passed a different number of node parameters than the layout has nodes.
    #[error("expected parameters for {expected} nodes, got {got}")]
    NodeParamsCount { expected: usize, got: usize },

    /// A port the client needs was not allocated by the caller.
    #[error("node `{node}`: {client} needs a `{port}` port")]
    MissingPort {
        node: String,
        client: Client,
        port: &'static str,
    },

    /// A private key is not a valid secp256k1 scalar.
    #[error("invalid secp256k1 private key: {0}")]
    InvalidKey(String),

    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),

    /// RLP data could not be decoded.
    #[error("invalid extraData: {0}")]
    ExtraData(String),

    /// A keystore file could not be built or opened.
    #[error("keystore: {0}")]
    Keystore(String),

    /// A generated document could not be serialized.
    #[error("serializing {what}: {reason}")]
    Serialize { what: &'static str, reason: String },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
