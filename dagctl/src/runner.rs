//! The part of dagctl a task's process runs: `dagctl tasks run` (and the lean `dagctl-runner` binary, which
//! holds only this, so a try's process starts in about half the time): its arguments, the allow-listed
//! environment it reads, the operator table and the local chain backend it runs operators with.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use worker::operator::Operators;

/// The lean runner binary's name; the executor starts it when it sits beside `dagctl`.
pub const RUNNER_BIN: &str = "dagctl-runner";

/// What a task runner (`dagctl tasks run`) reads from its environment: the execution API, its token, and
/// where the local chain backend keeps networks and finds clients. Never the engine's configuration.
#[derive(Clone)]
pub struct RunnerConfig {
    pub api_url: String,
    pub token: String,
    pub networks_dir: Option<PathBuf>,
    pub clients_dir: Option<PathBuf>,
    pub load_dir: Option<PathBuf>,
    pub locust: Option<PathBuf>,
    pub path: Option<String>,
    pub client_overrides: std::collections::BTreeMap<chain::Client, PathBuf>,
    /// `[chain.kubernetes]` of the engine, as JSON ([`chain::kubernetes::KubeSetup`]).
    pub chain_kubernetes: Option<String>,
}

/// The runner's environment names for the chain backend's settings.
pub const NETWORKS_DIR_ENV: &str = "DAGCTL_NETWORKS_DIR";
pub const CLIENTS_DIR_ENV: &str = "DAGCTL_CLIENTS_DIR";
pub const LOAD_DIR_ENV: &str = "DAGCTL_LOAD_DIR";
pub const LOCUST_ENV: &str = "DAGCTL_LOCUST";
/// The engine's `[chain.kubernetes]` settings, as JSON.
pub const CHAIN_KUBERNETES_ENV: &str = "DAGCTL_CHAIN_KUBERNETES";

impl RunnerConfig {
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<RunnerConfig> {
        let api_url = env(worker::execution::API_URL_ENV).filter(|v| !v.is_empty()).ok_or_else(|| {
            anyhow::anyhow!(
                "{} is not set: `dagctl tasks run` is started by an executor (to run a DAG yourself use `dagctl dags test`)",
                worker::execution::API_URL_ENV
            )
        })?;
        let token = env(worker::execution::TOKEN_ENV)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} is not set: a runner needs its try's token",
                    worker::execution::TOKEN_ENV
                )
            })?;
        Ok(RunnerConfig {
            api_url,
            token,
            ..Self::settings_from_env(env)
        })
    }

    /// Everything but the execution API's address and token (which a runner host gets per launch).
    fn settings_from_env(env: impl Fn(&str) -> Option<String>) -> RunnerConfig {
        RunnerConfig {
            api_url: String::new(),
            token: String::new(),
            networks_dir: env(NETWORKS_DIR_ENV).map(PathBuf::from),
            clients_dir: env(CLIENTS_DIR_ENV).map(PathBuf::from),
            load_dir: env(LOAD_DIR_ENV).map(PathBuf::from),
            locust: env(LOCUST_ENV).map(PathBuf::from),
            path: env("PATH"),
            client_overrides: client_overrides(&env),
            chain_kubernetes: env(CHAIN_KUBERNETES_ENV).filter(|v| !v.is_empty()),
        }
    }
}

pub fn client_overrides(env: &impl Fn(&str) -> Option<String>) -> std::collections::BTreeMap<chain::Client, PathBuf> {
    chain::Client::ALL
        .iter()
        .filter_map(|client| {
            env(&client_override_name(*client))
                .filter(|p| !p.is_empty())
                .map(|path| (*client, PathBuf::from(path)))
        })
        .collect()
}

/// The environment name that overrides `client`'s binary.
pub fn client_override_name(client: chain::Client) -> String {
    format!("DAGCTL_{}", client.to_string().to_ascii_uppercase())
}

/// `dagctl tasks run DAG_ID RUN_ID TASK_ID [--try N]`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    /// The try to run (default: the one the token is for)
    #[arg(long = "try")]
    pub try_number: Option<i64>,
    /// The instance of a mapped task (default -1: the task is not mapped)
    #[arg(long = "map-index", default_value_t = -1, allow_negative_numbers = true)]
    pub map_index: i64,
    /// Also print each log line (masked, as text) on standard output: a pod's own log (`kubectl logs`) then
    /// holds the try's log
    #[arg(long = "log-to-stdout")]
    pub log_to_stdout: bool,
}

#[derive(clap::Parser)]
#[command(name = "dagctl tasks run", about = "Run one try of a task (started by an executor)")]
struct RunnerCli {
    #[command(flatten)]
    args: RunArgs,
}

/// The task runner: parses its own arguments, reads only its allow-listed environment, runs one try on a
/// single-threaded runtime, and exits with the runner's code.
pub fn run_main() -> ExitCode {
    let argv = std::iter::once(std::ffi::OsString::from("dagctl tasks run")).chain(std::env::args_os().skip(3));
    let code = match (parse(argv), RunnerConfig::from_env(|name| std::env::var(name).ok())) {
        (Err(code), _) => code,
        (Ok(_), Err(err)) => {
            eprintln!("error: {err}");
            worker::runner::exit::NOT_STARTED
        }
        (Ok(args), Ok(config)) => {
            init_tracing();
            match operators_for(&config) {
                Ok(operators) => run_with(args, config, operators),
                Err(err) => {
                    eprintln!("error: {err}");
                    worker::runner::exit::NOT_STARTED
                }
            }
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// The runner host (`tasks host`, started by the local executor): forks one runner per launch, each running
/// as `tasks run` would with the launch's arguments, API address and token. What every runner shares (the
/// log subscriber, the operator table, the CPU feature probes) is made once, before the first fork.
pub fn host_main() -> ExitCode {
    init_tracing();
    let settings = RunnerConfig::settings_from_env(|name| std::env::var(name).ok());
    let operators = match operators_for(&settings) {
        Ok(operators) => operators,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(worker::runner::exit::NOT_STARTED.clamp(0, 255) as u8);
        }
    };
    #[cfg(target_arch = "x86_64")]
    let _ = std::arch::is_x86_feature_detected!("avx2");
    let code = worker::host::serve::serve(&|launch: &worker::host::Launch| {
        let argv = std::iter::once("dagctl tasks run".to_string()).chain(launch.argv.iter().skip(2).cloned());
        let config = RunnerConfig {
            api_url: launch.api_url.clone(),
            token: launch.token.clone(),
            ..settings.clone()
        };
        match parse(argv) {
            Ok(args) => run_with(args, config, operators.clone()),
            Err(code) => code,
        }
    });
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// Warnings and errors of the runner's own code go to its stderr.
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
}

fn operators_for(config: &RunnerConfig) -> Result<Operators> {
    let settings = chain::operators::Settings {
        load_dir: config
            .load_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("dagctl-load")),
        locust: config.locust.clone(),
    };
    Ok(operators(runner_backend(config)?, settings))
}

/// `tasks run`'s arguments (after the verb); on a bad one (or `--help`), the exit code once clap has said so.
fn parse<I, T>(argv: I) -> Result<RunArgs, i32>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser;
    RunnerCli::try_parse_from(argv).map(|cli| cli.args).map_err(|err| {
        let _ = err.print();
        if err.use_stderr() {
            worker::runner::exit::NOT_STARTED
        } else {
            0
        }
    })
}

/// One try. Returns the runner's exit code.
fn run_with(args: RunArgs, config: RunnerConfig, operators: Operators) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return worker::runner::exit::NOT_STARTED;
        }
    };
    let args = worker::runner::RunnerArgs {
        dag_id: args.dag_id,
        run_id: args.run_id,
        task_id: args.task_id,
        try_number: args.try_number,
        map_index: args.map_index,
        api_url: config.api_url,
        token: config.token,
        hostname: hostname(),
        retry: Default::default(),
        log_to_stdout: args.log_to_stdout,
    };
    runtime.block_on(worker::runner::run(args, operators))
}

/// The operators this binary knows and runs: the built-in ones and the chain operators, whose networks run
/// on `backend`.
pub fn operators(backend: chain::Backends, settings: chain::operators::Settings) -> Operators {
    let mut operators = Operators::builtin();
    chain::operators::register(&mut operators, Arc::new(backend), settings);
    operators
}

/// The chain backends of a runner, from the settings its executor passed down.
pub fn runner_backend(config: &RunnerConfig) -> Result<chain::Backends> {
    let networks = config
        .networks_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("dagctl-networks"));
    let local = backend_of(
        networks,
        config.clients_dir.clone(),
        config.path.clone(),
        config.client_overrides.clone(),
    );
    let kube = match &config.chain_kubernetes {
        None => None,
        Some(json) => {
            let setup: chain::kubernetes::KubeSetup = serde_json::from_str(json).map_err(|e| {
                anyhow::anyhow!("{CHAIN_KUBERNETES_ENV} does not hold the chain's Kubernetes settings: {e}")
            })?;
            Some(setup.backend(hostname())?)
        }
    };
    Ok(chain::Backends::new(local, kube))
}

pub fn backend_of(
    networks_dir: PathBuf,
    clients_dir: Option<PathBuf>,
    path: Option<String>,
    overrides: std::collections::BTreeMap<chain::Client, PathBuf>,
) -> chain::local::LocalBackend {
    use chain::local::{ClientBinaries, LocalOptions};
    let binaries = ClientBinaries {
        dir: clients_dir,
        path: path.map(Into::into),
        overrides,
    };
    let mut options = LocalOptions::new(networks_dir, binaries, hostname());
    // `dagctl clock-shim` runs a node under a skewed clock (chain::chaos::clock): this binary, or beside the
    // lean runner binary, the `dagctl` it came with.
    options.clock_shim = std::env::current_exe().ok().map(|exe| {
        let dagctl = exe.with_file_name("dagctl");
        if exe.file_name().is_some_and(|n| n == RUNNER_BIN) && dagctl.exists() {
            dagctl
        } else {
            exe
        }
    });
    chain::local::LocalBackend::new(options)
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
