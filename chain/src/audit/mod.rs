//! Audits of what a node exposes. [`listeners`]: the sockets a process listens on, read from the kernel's
//! tables (what `ss -lntup` shows), so a test or an operator can prove that nothing listens beyond loopback.
//! [`exposure`]: what a node's JSON-RPC gives away (namespaces, binding, CORS, virtual hosts, unlocked accounts,
//! discovery), behind `chain.audit` and `dagctl audit`.

pub mod exposure;
pub mod listeners;

pub use listeners::{listening_sockets, Listener, Protocol};
