//! Faults on a running network, pumba's and Chaos Mesh's vocabulary on this machine's nodes. Built so far:
//! which nodes a fault hits ([`targets`]) and faults on node processes ([`process`]: kill with a signal and
//! optionally restart, pause with SIGSTOP for a duration, stop and start again, restart), each undone at its
//! end or when cancelled. Network faults (delay, loss, partition), stress and clock skew, the resilience
//! verdict and the profile score are not built yet (see `docs/chaos.md`).

pub mod process;
pub mod targets;

pub use process::{FaultReport, ProcessFault};
pub use targets::Selector;
