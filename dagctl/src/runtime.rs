//! Shared set-up for commands: the store, the operator registry and runtime, task logs, the task execution
//! API's server, a scheduler with its executor.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use engine::operators::OperatorRegistry;
use engine::parse::ParsedFile;
use engine::secrets::{Fernet, Vault};
use engine::store::Store;
use scheduler::{Metrics, Scheduler, SchedulerOptions};
use tokio_util::sync::CancellationToken;
use worker::log::{FileLogs, TaskLogs};
use worker::{KubeExecutor, KubeOptions, LocalExecutor, LocalOptions};

use crate::config::{
    client_override_name, Config, ExecutorKind, KubeSettings, TaskLogStore, CHAIN_KUBERNETES_ENV, CLIENTS_DIR_ENV,
    LOAD_DIR_ENV, LOCUST_ENV, NETWORKS_DIR_ENV,
};

/// Opens the store (creating the data dir for SQLite) and applies migrations.
/// The store, for a command that is not the engine: on SQLite, what it changes is also told to the running
/// engine of the data dir (see `link`).
pub async fn open_store(config: &Config) -> Result<Store> {
    let store = open_engine_store(config).await?;
    crate::link::relay_changes(config, &store);
    Ok(store)
}

/// The store, for the engine itself (`standalone`, `scheduler`).
pub async fn open_engine_store(config: &Config) -> Result<Store> {
    std::fs::create_dir_all(&config.home)
        .with_context(|| format!("cannot create data dir {}", config.home.display()))?;
    let store = Store::connect(&config.database_url).await?;
    make_private(&config.home);
    Ok(store)
}

/// The soft limit of open files raised to the hard one, so the web face's connection cap (`max_connections`)
/// leaves the scheduler, its logs and its database the descriptors they need.
pub fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("cannot raise the open files limit from {soft} to {hard}: {err}");
            }
        }
    }
}

/// The data dir and what lies directly in it (the SQLite files, keys, the admin password, logs) closed to
/// group and others, also when an older dagctl or another umask left them open; the owner's own bits stay
/// (an executable stays executable).
fn make_private(home: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let tighten = |path: &std::path::Path| {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode();
        if meta.file_type().is_symlink() || mode & 0o077 == 0 {
            return;
        }
        if let Err(err) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !0o077)) {
            tracing::warn!(path = %path.display(), "cannot make it private to this user: {err}");
        }
    };
    tighten(home);
    for entry in std::fs::read_dir(home).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir() || kind.is_file()) {
            tighten(&entry.path());
        }
    }
}

/// The engine's view of [`operators`]: argument checks by name and Airflow path.
pub fn registry(config: &Config) -> OperatorRegistry {
    // Argument checks need no region: the local backend alone.
    operators(
        chain::Backends::new(local_backend(config), None),
        chain::operators::Settings {
            load_dir: config.load_dir(),
            locust: config.locust.clone(),
        },
    )
    .registry()
    .clone()
}

/// A backend for a benchmark's throwaway networks: networks under `scratch`, clients found as the engine
/// finds them (the data dir's installed clients, overrides, PATH).
pub fn scratch_backend(config: &Config, scratch: &std::path::Path) -> chain::local::LocalBackend {
    backend_of(
        scratch.join("networks"),
        Some(config.clients_dir()),
        config.path.clone(),
        config.client_overrides.clone(),
    )
}

/// The local chain backend of the engine.
pub fn local_backend(config: &Config) -> chain::local::LocalBackend {
    backend_of(
        config.networks_dir(),
        Some(config.clients_dir()),
        config.path.clone(),
        config.client_overrides.clone(),
    )
}

/// The chain backends of the engine: local networks under `<home>/networks` with clients from `<home>/clients`,
/// then `DAGCTL_GETH`-style overrides, then PATH; Kubernetes networks in the regions of `[chain.kubernetes]`.
pub fn chain_backend(config: &Config) -> Result<chain::Backends> {
    let local = local_backend(config);
    let kube = match &config.chain_kube {
        Some(setup) => Some(setup.backend(dagctl::runner::hostname())?),
        None => None,
    };
    Ok(chain::Backends::new(local, kube))
}

/// A token cancelled when the user presses Ctrl-C (SIGINT).
pub fn cancel_on_ctrl_c() -> tokio_util::sync::CancellationToken {
    let cancel = tokio_util::sync::CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    cancel
}

/// Reads the DAGs folder into the store once (as a scheduler's DAG processor does, git sync errors included).
pub async fn sync_folder(config: &Config, store: &Store) -> Result<Vec<ParsedFile>> {
    Ok(dag_processor(config).process(store).await?.files)
}

/// A DAG processor of this installation's folder.
pub fn dag_processor(config: &Config) -> scheduler::dag_processor::DagProcessor {
    let processor = scheduler::dag_processor::DagProcessor::new(
        &config.dags_folder,
        config.folder_options,
        registry(config),
        config.paused_at_creation,
    );
    match &config.git {
        Some(git) => processor.with_git_root(&git.root),
        None => processor,
    }
}

/// Task logs of this installation: files in the data dir, or the database (`task_logs = "database"`).
pub fn task_logs(config: &Config, store: &Store) -> Arc<dyn TaskLogs> {
    match config.task_logs {
        TaskLogStore::Files => Arc::new(FileLogs::new(config.logs_dir())),
        TaskLogStore::Database => Arc::new(worker::log::DbLogs::new(
            store.clone(),
            tokio::runtime::Handle::current(),
        )),
    }
}

/// Variables and connections of this installation, through its Fernet key: the configured one, else
/// `fernet_key` in the data dir (made once, atomically, when missing: two processes starting together agree
/// on one key).
pub fn vault(config: &Config, store: &Store) -> Result<Vault> {
    let text = match config.fernet_key.as_deref().filter(|k| !k.trim().is_empty()) {
        Some(key) => key.to_string(),
        None => fernet_key_file(&config.home.join("fernet_key"))?,
    };
    let fernet = Fernet::new(&text).map_err(|e| anyhow::anyhow!("fernet_key: {e}"))?;
    Ok(Vault::new(store.clone(), fernet))
}

fn fernet_key_file(path: &std::path::Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text.trim().to_string()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot read the Fernet key {}", path.display())),
    }
    // Written whole under a private name, then linked into place: a reader never sees half a key, and when
    // two processes race, the first link wins and the other reads its key.
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    web::auth::write_private(&tmp, &format!("{}\n", Fernet::generate_key()))?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err).with_context(|| format!("cannot write the Fernet key {}", path.display())),
    }
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the Fernet key {}", path.display()))?
        .trim()
        .to_string())
}

/// The signing key of this installation (tokens for the API, the UI and task runners).
pub fn keys(config: &Config) -> Result<web::auth::Keys> {
    web::load_keys(&config.home, config.secret_key.as_deref())
}

/// The task execution API's state for a server of this process.
pub async fn execution_state(
    config: &Config,
    store: &Store,
    keys: &web::auth::Keys,
) -> Result<web::execution::ExecState> {
    let vault = vault(config, store)?;
    // Said at start rather than at the first template that reads a secret.
    match vault.unreadable().await {
        Ok(Some(name)) => tracing::warn!(
            "the configured Fernet key cannot read {name}: engines sharing this database need the same `fernet_key` (several, comma-separated, while rotating)"
        ),
        Ok(None) => {}
        Err(err) => tracing::warn!(error = %err, "cannot check the stored variables and connections"),
    }
    Ok(web::execution::ExecState::new(
        store.clone(),
        keys.clone(),
        task_logs(config, store),
        vault,
    ))
}

/// A scheduler and its executor (local, or Kubernetes when configured); runners reach the execution API at
/// `api_url` (pods: at `[kubernetes] execution_api_url`, else `execution_api_url`).
pub async fn build_scheduler(
    config: &Config,
    store: &Store,
    mut options: SchedulerOptions,
    metrics: Arc<Metrics>,
    keys: &web::auth::Keys,
    api_url: &str,
) -> Result<Scheduler> {
    // The lean runner beside this binary when there is one (a try's process starts in about half the time),
    // else this binary's own `tasks run`.
    let this = std::env::current_exe().context("cannot find the dagctl binary to run tasks")?;
    let lean = this.with_file_name(dagctl::runner::RUNNER_BIN);
    let runner_exe = if lean.is_file() { lean } else { this };
    let mut base_env = config.runner_env.clone();
    base_env.push((NETWORKS_DIR_ENV.into(), config.networks_dir().display().to_string()));
    base_env.push((CLIENTS_DIR_ENV.into(), config.clients_dir().display().to_string()));
    base_env.push((LOAD_DIR_ENV.into(), config.load_dir().display().to_string()));
    if let Some(locust) = &config.locust {
        base_env.push((LOCUST_ENV.into(), locust.display().to_string()));
    }
    if let Some(setup) = &config.chain_kube {
        let json = serde_json::to_string(setup).context("cannot pass [chain.kubernetes] to runners")?;
        base_env.push((CHAIN_KUBERNETES_ENV.into(), json));
    }
    for (client, path) in &config.client_overrides {
        base_env.push((client_override_name(*client), path.display().to_string()));
    }
    let executor_options = LocalOptions {
        parallelism: config.parallelism,
        runner_exe,
        fork_runners: config.fork_runners,
        api_url: api_url.to_string(),
        hostname: options.hostname.clone(),
        kill_grace: Duration::from_secs(3),
        base_env,
        work_dir: config.home.join("run").join("runners"),
    };
    let minter = Arc::new(web::execution::TryTokens(keys.clone()));
    let (executor, events): (Arc<dyn worker::Executor>, _) = match &config.executor {
        ExecutorKind::Local => {
            let (executor, events) = LocalExecutor::new(executor_options, minter, task_logs(config, store));
            (Arc::new(executor), events)
        }
        ExecutorKind::Kubernetes(kube) => {
            let kube_options = kube_options(config, kube, &options)?;
            let client = worker::executor::kubernetes::client(kube.kubeconfig.as_deref(), kube.context.as_deref())
                .await
                .map_err(anyhow::Error::msg)?;
            let (executor, events) = KubeExecutor::new(kube_options, client, minter, task_logs(config, store));
            (Arc::new(executor), events)
        }
    };
    options.paused_at_creation = config.paused_at_creation;
    options.api_url = Some(api_url.to_string());
    Ok(Scheduler::new(
        store.clone(),
        options,
        registry(config),
        executor,
        events,
        metrics,
    ))
}

/// The Kubernetes executor's options: its pod template read and checked, the runner image and the address
/// pods reach the execution API at known.
fn kube_options(config: &Config, kube: &KubeSettings, options: &SchedulerOptions) -> Result<KubeOptions> {
    use worker::executor::kubernetes::pod;
    let template = match &kube.pod_template_file {
        Some(path) => pod::read_template(path).map_err(anyhow::Error::msg)?,
        None => pod::default_template(),
    };
    let template_image = template
        .spec
        .as_ref()
        .and_then(|spec| spec.containers.iter().find(|c| c.name == pod::BASE_CONTAINER))
        .and_then(|base| base.image.clone());
    let image = match (&kube.image, template_image) {
        (Some(image), _) => image.clone(),
        (None, Some(image)) => image,
        (None, None) => bail!(
            "the Kubernetes executor needs the runner's image: set [kubernetes] image, or the `base` container's image in the pod template"
        ),
    };
    let Some(api_url) = kube
        .execution_api_url
        .clone()
        .or_else(|| config.execution_api_url.clone())
    else {
        bail!(
            "the Kubernetes executor needs the address pods reach the execution API at: set [kubernetes] execution_api_url (or execution_api_url)"
        );
    };
    Ok(KubeOptions {
        namespace: kube.namespace.clone(),
        parallelism: config.parallelism,
        image,
        template,
        command: kube.command.clone(),
        api_url,
        scheduler_id: options.id.clone(),
        hostname: options.hostname.clone(),
        delete_succeeded: kube.delete_worker_pods,
        keep_failed: kube.keep_failed_pods,
        pending_timeout: kube.worker_pods_pending_timeout,
        kill_grace: Duration::from_secs(10),
        templates_dir: config.dags_folder.clone(),
        task_secrets: kube.task_secrets.clone(),
        task_service_accounts: kube.task_service_accounts.clone(),
    })
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
    options.git_root = config.git.as_ref().map(|git| git.root.clone());
    options.folder_options = config.folder_options;
    options.sample_retention = config.sample_retention;
    options.idle_interval = config.scheduler_idle_sleep_time;
    options
}

/// Listens on `host:port` (loopback unless configured otherwise).
pub async fn bind(host: &str, port: u16) -> Result<tokio::net::TcpListener> {
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("`{host}:{port}` is not an address to listen on"))?;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// A scheduler with the execution API served on an ephemeral loopback port, for commands that run tasks
/// in this process only (`dags test`, `dags backfill --local`, benchmarks). The server stops with `stop`.
/// Tries run as local processes whatever the configured executor: a pod could not report to this process's
/// loopback port.
pub async fn scoped_scheduler(
    config: &Config,
    store: &Store,
    options: SchedulerOptions,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<(Scheduler, tokio::task::JoinHandle<()>)> {
    let mut local = config.clone();
    local.executor = ExecutorKind::Local;
    scoped_scheduler_with_executor(&local, store, options, metrics, stop).await
}

/// As [`scoped_scheduler`], with the configured executor (`bench k8s`, whose pods never need to report).
pub async fn scoped_scheduler_with_executor(
    config: &Config,
    store: &Store,
    options: SchedulerOptions,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<(Scheduler, tokio::task::JoinHandle<()>)> {
    let keys = keys(config)?;
    let listener = bind("127.0.0.1", 0).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let scheduler = build_scheduler(config, store, options, metrics, &keys, &url).await?;
    let app = web::execution::router(execution_state(config, store, &keys).await?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    Ok((scheduler, server))
}

pub use dagctl::runner::{backend_of, hostname, operators};
