pub mod bench;
pub mod bench_web;
pub mod clients;
pub mod dags;
pub mod net;
pub mod serve;
pub mod tasks;
pub mod users;
