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

    /// A file system or process operation failed; `context` names the path or node.
    #[error("{context}: {message}")]
    Io { context: String, message: String },

    /// The client binary is not installed where the backend looks.
    #[error("{client} binary not found: {hint}")]
    ClientMissing { client: Client, hint: String },

    /// Installing a client failed.
    #[error("installing {client}: {reason}")]
    Install { client: Client, reason: String },

    /// An init command (e.g. `geth init`) failed.
    #[error("node `{node}`: `{command}` failed: {reason}{log_tail}")]
    InitFailed {
        node: String,
        command: String,
        reason: String,
        /// The node log's last lines, already formatted (empty when there is none).
        log_tail: String,
    },

    /// The network did not become ready; everything it started was stopped and removed.
    #[error("network `{network}` is not ready: node `{node}` {reason}{log_tail}")]
    NotReady {
        network: String,
        node: String,
        reason: String,
        /// The failing node's last log lines, already formatted.
        log_tail: String,
    },

    /// A JSON-RPC call failed.
    #[error("JSON-RPC {method} at {url}: {reason}")]
    Rpc {
        url: String,
        method: String,
        reason: String,
    },

    /// The network record is missing or in the wrong state.
    #[error("network `{name}`: {reason}")]
    Network { name: String, reason: String },

    /// The store refused a change (e.g. a network name in use).
    #[error("{0}")]
    Rejected(String),

    /// A record (e.g. a network) does not exist.
    #[error("{0} not found")]
    NotFound(String),

    /// The store failed.
    #[error("store: {0}")]
    Store(String),

    /// The work was cancelled (task killed or timed out).
    #[error("cancelled: {0}")]
    Cancelled(String),

    /// A Kubernetes region is not configured, not reachable, or refused a request.
    #[error("kubernetes region `{region}`: {reason}")]
    Kube { region: String, reason: String },
}

impl Error {
    /// An IO error with the path or node it concerns.
    pub fn io(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Io {
            context: context.into(),
            message: err.to_string(),
        }
    }
}

impl From<engine::Error> for Error {
    fn from(err: engine::Error) -> Self {
        match err {
            engine::Error::NotFound(what) => Error::NotFound(what),
            engine::Error::Conflict(message) | engine::Error::Invalid(message) => Error::Rejected(message),
            other => Error::Store(other.to_string()),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
