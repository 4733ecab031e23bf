//! The built-in operators, one module each; `chain` registers its own beside them.

pub mod bash;
pub mod empty;
