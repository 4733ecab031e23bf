//! Shared set-up for commands: the store, the operator registry, a scheduler with its executor.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use engine::operators::OperatorRegistry;
use engine::parse::{load_folder, ParsedFile};
use engine::store::Store;
use scheduler::{Metrics, Scheduler, SchedulerOptions};
use worker::operator::OperatorRuntime;
use worker::{ExecutorOptions, LocalExecutor};

use crate::config::Config;

/// Opens the store (creating the data dir for SQLite) and applies migrations.
pub async fn open_store(config: &Config) -> Result<Store> {
    std::fs::create_dir_all(&config.home)
        .with_context(|| format!("cannot create data dir {}", config.home.display()))?;
    Ok(Store::connect(&config.database_url).await?)
}

/// The operators this binary knows: the built-in ones and the chain operators.
pub fn registry() -> OperatorRegistry {
    let mut registry = OperatorRegistry::builtin();
    for def in chain::operators::definitions() {
        registry.register(def);
    }
    registry
}

/// In-process operators this binary runs.
pub fn operator_runtime(config: &Config) -> OperatorRuntime {
    let mut runtime = OperatorRuntime::default();
    chain::operators::register(&mut runtime, Arc::new(chain_backend(config)));
    runtime
}

/// The local chain backend: networks under `<home>/networks`, clients from `<home>/clients`, then
/// `DAGCTL_GETH`-style overrides, then PATH.
pub fn chain_backend(config: &Config) -> chain::local::LocalBackend {
    use chain::local::{ClientBinaries, LocalOptions};
    let mut binaries = ClientBinaries {
        dir: Some(config.home.join("clients")),
        path: std::env::var_os("PATH"),
        ..Default::default()
    };
    for client in chain::Client::ALL {
        let variable = format!("DAGCTL_{}", client.to_string().to_ascii_uppercase());
        if let Some(path) = std::env::var_os(&variable).filter(|p| !p.is_empty()) {
            binaries.overrides.insert(client, PathBuf::from(path));
        }
    }
    chain::local::LocalBackend::new(LocalOptions::new(config.home.join("networks"), binaries, hostname()))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Reads the DAGs folder into the store once.
pub async fn sync_folder(config: &Config, store: &Store) -> Result<Vec<ParsedFile>> {
    let registry = registry();
    let folder = config.dags_folder.clone();
    let files = tokio::task::spawn_blocking(move || load_folder(&folder, &registry)).await?;
    store.sync_dags(&files, config.paused_at_creation, Utc::now()).await?;
    Ok(files)
}

/// A scheduler and its executor.
pub fn build_scheduler(
    config: &Config,
    store: &Store,
    mut options: SchedulerOptions,
    metrics: Arc<Metrics>,
) -> Result<Scheduler> {
    let supervisor_exe = std::env::current_exe().context("cannot find the dagctl binary to supervise tasks")?;
    let executor_options = ExecutorOptions {
        parallelism: config.parallelism,
        logs_dir: config.logs_dir(),
        supervisor_exe,
        hostname: options.hostname.clone(),
        kill_grace: Duration::from_secs(3),
    };
    let (executor, events) = LocalExecutor::new(executor_options, store.clone(), operator_runtime(config));
    options.paused_at_creation = config.paused_at_creation;
    Ok(Scheduler::new(
        store.clone(),
        options,
        registry(),
        executor,
        events,
        metrics,
    ))
}

/// Options for a scheduler of this process.
pub fn scheduler_options(config: &Config) -> SchedulerOptions {
    let mut options = SchedulerOptions::new(
        format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ),
        hostname(),
    );
    options.dags_folder = Some(config.dags_folder.clone());
    options
}
