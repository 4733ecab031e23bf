//! Audits of what a node exposes. [`listeners`]: the sockets a process listens on, read from the kernel's
//! tables (what `ss -lntup` shows), so a test or an operator can prove that nothing listens beyond loopback.

pub mod listeners;

pub use listeners::{listening_sockets, Listener, Protocol};
