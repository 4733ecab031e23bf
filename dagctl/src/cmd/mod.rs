pub mod bench;
pub mod dags;
pub mod serve;
pub mod tasks;
