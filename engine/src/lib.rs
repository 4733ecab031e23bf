//! The domain of dagctl: DAG files and their model, run and task states with their legal transitions,
//! trigger rules, timetables, the templating context and the store (SQLite or PostgreSQL).
//!
//! This crate knows nothing of processes, HTTP or blockchains: the scheduler, the worker and the faces build
//! on it, and operators from other crates plug in through [`operators::OperatorRegistry`].

pub mod assets;
pub mod duration;
pub mod error;
pub mod executor_config;
pub mod graph;
pub mod mapping;
pub mod operators;
pub mod parse;
pub mod runs;
pub mod scratch;
pub mod secrets;
pub mod spec;
pub mod state;
pub mod store;
pub mod template;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timetable;
pub mod trigger;
pub mod yaml;

pub use error::{Error, Result};
