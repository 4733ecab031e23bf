//! dagctl's library face: only what a task runner process needs (see [`runner`]); the CLI and the engine are
//! the `dagctl` binary.

pub mod runner;
