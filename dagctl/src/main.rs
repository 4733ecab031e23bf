//! `dagctl`: the command line of the dagctl workflow engine.

mod cmd;
mod config;
mod link;
mod output;
mod reports;
mod runtime;
mod trigger;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::GlobalFlags;
use crate::output::Format;

#[derive(Parser)]
#[command(
    name = "dagctl",
    version,
    about = "A workflow engine that speaks Airflow's language, for testing private blockchain networks"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scheduler, executor and HTTP server in one process
    Standalone {
        /// Port of the HTTP server: UI, REST API, /health, /metrics (default 8080)
        #[arg(long)]
        port: Option<u16>,
        /// Address to listen on (default 127.0.0.1)
        #[arg(long)]
        host: Option<String>,
    },
    /// The web UI and REST API alone, beside schedulers that share its (PostgreSQL) database
    Webserver {
        /// Port to listen on (default 8080)
        #[arg(long)]
        port: Option<u16>,
        /// Address to listen on (default 127.0.0.1)
        #[arg(long)]
        host: Option<String>,
    },
    /// The scheduler with its local executor (several may share a PostgreSQL database)
    Scheduler {
        /// Also serve /health and /metrics on this port
        #[arg(long)]
        port: Option<u16>,
    },
    /// Work with DAGs
    #[command(subcommand)]
    Dags(DagsCommand),
    /// Trigger a DAG run (short for `dags trigger`)
    Trigger(TriggerArgs),
    /// Work with task instances
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Work with pools
    #[command(subcommand)]
    Pools(PoolsCommand),
    /// Measure the engine
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Deploy, inspect and tear down blockchain networks outside a DAG
    #[command(subcommand)]
    Net(NetCommand),
    /// Drive load at a network or a node's URL: open or closed loop, ramps, a breaking-point search
    Load(Box<cmd::load::LoadFlags>),
    /// A fault on a running network's nodes: kill, pause, stop, restart (pumba's grammar, --target naming nodes)
    Chaos(Box<cmd::chaos::ChaosArgs>),
    /// What a network's nodes (or one node's URL) expose over JSON-RPC: namespaces, binding, CORS, hosts,
    /// unlocked accounts, discovery
    Audit(cmd::audit::AuditArgs),
    /// Run a network through a resilience profile (gos-v1): faults, attacks, an exposure audit; a 0-100
    /// score and a hashed, optionally signed report (`certify verify` checks one)
    Certify(Box<cmd::certify::CertifyArgs>),
    /// KPIs of a run: throughput, latency, errors, blocks, nodes' resources, a configuration recommendation
    Kpi(cmd::kpi::KpiArgs),
    /// Install pinned blockchain clients into the data dir
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Local users of the web UI and API (OIDC users appear after their first login)
    #[command(subcommand)]
    Users(UsersCommand),
    /// Airflow's variables (`{{ var.value.x }}` in templates), encrypted at rest
    #[command(subcommand)]
    Variables(VariablesCommand),
    /// Airflow's connections (`{{ conn.x.host }}` in templates), encrypted at rest
    #[command(subcommand)]
    Connections(ConnectionsCommand),
    /// Encrypt every variable and connection again with the first of the configured Fernet keys
    RotateFernetKey,
}

#[derive(Subcommand)]
enum VariablesCommand {
    /// Print a variable's value
    Get {
        key: String,
        /// Printed when the variable does not exist (instead of failing)
        #[arg(long)]
        default: Option<String>,
        /// Parse the value as JSON and print it indented
        #[arg(short = 'j', long)]
        deserialize_json: bool,
        /// Print a value under a sensitive key (password, token, ...) instead of ***
        #[arg(long)]
        show_secrets: bool,
    },
    /// Create or replace a variable
    Set {
        key: String,
        value: String,
        #[arg(long)]
        description: Option<String>,
        /// Check that the value is JSON and store it compacted
        #[arg(short = 'j', long)]
        serialize_json: bool,
    },
    /// List variables (values under sensitive keys as ***)
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
        #[arg(long)]
        show_secrets: bool,
    },
    /// Delete a variable
    Delete { key: String },
    /// Import variables from a JSON file ({"key": value} or {"key": {"value": v, "description": d}})
    Import {
        file: PathBuf,
        /// overwrite, fail or skip
        #[arg(long, default_value = "overwrite")]
        action_on_existing_key: String,
    },
    /// Export every variable to a JSON file (values in clear; the file is private to its owner)
    Export { file: PathBuf },
}

#[derive(Subcommand)]
enum ConnectionsCommand {
    /// Add a connection (by URI, JSON or fields)
    Add(Box<cmd::connections::AddArgs>),
    /// Show a connection (password and sensitive extra fields as ***)
    Get {
        conn_id: String,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
        #[arg(long)]
        show_secrets: bool,
    },
    /// List connections (passwords and sensitive extra fields as ***)
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
        #[arg(long)]
        show_secrets: bool,
    },
    /// Delete a connection
    Delete { conn_id: String },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create or update a local user; the password is read from stdin (first line)
    Create {
        #[arg(long)]
        username: String,
        /// Admin, Op, User or Viewer
        #[arg(long)]
        role: String,
        #[arg(long)]
        email: Option<String>,
    },
    /// List users with their roles
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Subcommand)]
enum NetCommand {
    /// Deploy a network and wait until it is ready (e.g. --client geth --consensus clique --nodes 4)
    Up(Box<cmd::net::UpArgs>),
    /// Stop a network's processes and remove its data
    Down { name: String },
    /// List networks
    Ls {
        /// Also removed and failed networks
        #[arg(long)]
        all: bool,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Show one network with its nodes and endpoints
    Show {
        name: String,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Send a signal to one node (default SIGKILL; also SIGTERM, SIGSTOP to pause, SIGCONT to resume)
    Kill {
        name: String,
        node: String,
        #[arg(long, short, default_value = "SIGKILL")]
        signal: String,
    },
    /// Start one node again with its own command line, data and ports (stopping it first if it runs)
    Restart { name: String, node: String },
    /// Watch a network live: per node head, peers, txpool, block time, CPU, memory, disk (-o json: NDJSON)
    Watch(cmd::watch::WatchArgs),
    /// Samples stored by `net watch --store` and `chain.monitor`, oldest first
    Samples(cmd::watch::SamplesArgs),
    /// WARN and ERROR patterns of the network's node logs, with their counts (most recent first)
    Alerts {
        name: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Re-attach to or clean up networks after a restart, and tear down those past their TTL
    Reap,
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Install geth 1.13.15 (release archive or go install), anvil 1.7.1 (npm) or GoQuorum 24.4.1 (release
    /// archive, or --from a local copy) into <home>/clients
    Install {
        /// geth, anvil or quorum
        client: String,
        /// GoQuorum only: install this local copy (the release archive, or a `geth` binary, plain or .xz)
        /// instead of downloading; refused unless its SHA-256 is pinned
        #[arg(long)]
        from: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DagsCommand {
    /// List DAGs
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Show one DAG: schedule, tasks and their dependencies
    Show {
        dag_id: String,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Check DAG files without running anything (the DAGs folder, or the given files/folders)
    Validate {
        paths: Vec<PathBuf>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// List DAG files that failed to load
    ListImportErrors {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Pause a DAG: no new runs start
    Pause { dag_id: String },
    /// Unpause a DAG
    Unpause { dag_id: String },
    /// Trigger a DAG run
    Trigger(TriggerArgs),
    /// Run one DAG run in this process, without a scheduler, printing task logs
    Test {
        dag_id: String,
        /// Logical date (default: now)
        logical_date: Option<String>,
        /// JSON object of run parameters
        #[arg(long)]
        conf: Option<String>,
    },
    /// Create runs for every schedule interval between two dates
    Backfill {
        dag_id: String,
        #[arg(short = 's', long)]
        start_date: String,
        #[arg(short = 'e', long)]
        end_date: String,
        /// Run them in this process and wait (otherwise the scheduler runs them)
        #[arg(long)]
        local: bool,
    },
    /// List runs of a DAG
    ListRuns {
        dag_id: String,
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 25)]
        limit: i64,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(clap::Args, Clone)]
pub struct TriggerArgs {
    pub dag_id: String,
    /// JSON object of run parameters (overrides the DAG's params)
    #[arg(short, long)]
    pub conf: Option<String>,
    /// Run id (default manual__<time>)
    #[arg(short, long)]
    pub run_id: Option<String>,
    /// Logical date of the run (default: none, like Airflow 3)
    #[arg(short, long)]
    pub logical_date: Option<String>,
    /// Wait for the run to end, showing progress; exit 0 only on success
    #[arg(short, long)]
    pub wait: bool,
    /// Give up waiting after this long (e.g. 30m)
    #[arg(long)]
    pub timeout: Option<String>,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Subcommand)]
enum TasksCommand {
    /// List the tasks of a DAG
    List {
        dag_id: String,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Print a task's log
    Logs {
        dag_id: String,
        run_id: String,
        task_id: String,
        /// Try number (default: the latest)
        #[arg(long = "try")]
        try_number: Option<i64>,
        /// The instance of a mapped task
        #[arg(long = "map-index", default_value_t = -1, allow_negative_numbers = true)]
        map_index: i64,
        /// Keep printing while the task runs
        #[arg(short, long)]
        follow: bool,
    },
    /// Clear task instances so they run again
    Clear {
        dag_id: String,
        /// Run to clear (default: the latest run)
        #[arg(long)]
        run_id: Option<String>,
        /// Only these tasks
        #[arg(short, long)]
        task_id: Vec<String>,
        /// Only failed and upstream-failed tasks
        #[arg(long)]
        only_failed: bool,
    },
    /// Run one try of a task (started by an executor, with the try's token in DAGCTL_TASK_TOKEN)
    Run(dagctl::runner::RunArgs),
    /// States of the task instances of a run
    StatesForDagRun {
        dag_id: String,
        run_id: String,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Subcommand)]
enum PoolsCommand {
    /// List pools with their slots
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Create or update a pool
    Set {
        name: String,
        slots: i64,
        description: Option<String>,
    },
    /// Delete a pool
    Delete { name: String },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Scheduler throughput and latency: 1,000 independent tasks and a chain of 40, with empty and bash
    Scheduler {
        #[arg(long, value_enum, default_value_t = cmd::bench::Database::Sqlite)]
        database: cmd::bench::Database,
        /// PostgreSQL server to make the scratch database on (default: database_url when it is PostgreSQL,
        /// else postgres://postgres:postgres@127.0.0.1:5432/postgres)
        #[arg(long)]
        pg_url: Option<String>,
        /// Run only these scenarios (independent-1000-empty, independent-1000-bash, chain-40-empty,
        /// chain-40-bash); all of them when none is given
        #[arg(long)]
        scenario: Vec<String>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// What watching networks costs (monitor CPU per node) and whether it keeps up (replayed nodes, batched
    /// sample writes), each against a baseline of the same run
    Monitor(cmd::bench_monitor::MonitorBenchArgs),
    /// The load generator against wrk and locust on one anvil, signed transfers per second, and memory at
    /// millions of recorded calls
    Load(cmd::bench_load::LoadBenchArgs),
    /// The chaos mechanisms: round trips and throughput through the link proxy against a direct connection,
    /// the delay and rate it applies against its settings, and a wall-clock read under the clock supervisor
    /// against one without it
    Chaos(cmd::bench_chaos::ChaosBenchArgs),
    /// KPIs of millions of recorded calls and an hour of a network's samples, against reading them once, on
    /// one core
    Kpi(cmd::bench_kpi::KpiBenchArgs),
    /// Trigger to first task and run end to waiter, through the CLI and the API, against a standalone engine
    /// (median and p99), next to the store's round trip; `dags trigger chain_20 --wait` against the chain in
    /// process
    Trigger(cmd::bench_trigger::TriggerBenchArgs),
    /// Pods made by the Kubernetes executor per second, and from a task's claim to its pod, against bare pods
    /// created at once on the same cluster
    K8s(cmd::bench_k8s::K8sBenchArgs),
    /// Web pages and API calls over 1,000 runs x 200 tasks, against /health
    Web {
        #[arg(long, value_enum, default_value_t = cmd::bench::Database::Sqlite)]
        database: cmd::bench::Database,
        /// PostgreSQL server to make the scratch database on (default: database_url when it is PostgreSQL,
        /// else postgres://postgres:postgres@127.0.0.1:5432/postgres)
        #[arg(long)]
        pg_url: Option<String>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

fn main() -> ExitCode {
    // Everything dagctl makes (the database, logs, keys, sockets, network dirs, and what its tasks write) is
    // for its user alone, whatever umask it was started under.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    // The task runner starts before anything else (no engine configuration, a single-threaded runtime), so a
    // task's overhead stays small.
    let mut args = std::env::args_os();
    // The runner host too (it forks runners, so it must stay single-threaded: it never starts a runtime).
    if args.nth(1).is_some_and(|a| a == "tasks") {
        match args.next() {
            Some(verb) if verb == "run" => return dagctl::runner::run_main(),
            Some(verb) if verb == "host" => return dagctl::runner::host_main(),
            _ => {}
        }
    }
    // The clock supervisor a skewed node runs under (`chain::chaos::clock`): no runtime, no configuration.
    if std::env::args_os().nth(1).is_some_and(|a| a == "clock-shim") {
        return cmd::chaos::clock_shim_main();
    }
    // The program `dagctl bench chaos` runs with and without that supervisor.
    if std::env::args_os().nth(1).is_some_and(|a| a == "clock-probe") {
        return cmd::bench_chaos::clock_probe_main();
    }
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// `dagctl dags show X | head -1`: when whoever reads our output has gone, end as `ls` or `cat` do (killed by
/// SIGPIPE, no message), not with a panic. SIGPIPE itself stays ignored, so a socket whose peer went away is an
/// error to handle, never the end of an engine.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            use nix::sys::signal::{raise, signal, SigHandler, Signal};
            // SAFETY: restoring the default action of a signal; no handler function is installed.
            let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
            let _ = raise(Signal::SIGPIPE);
            std::process::exit(141);
        }
        default(info)
    }));
}

/// An error and its causes on one line, as the CLI prints it after `error: `.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        message.push_str(&format!(": {cause}"));
    }
    message.replace('\n', " ")
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = config::Config::load(&cli.global)?;
    match cli.command {
        Command::Standalone { port, host } => cmd::serve::standalone(config, host, port).await,
        Command::Webserver { port, host } => cmd::serve::webserver(config, host, port).await,
        Command::Scheduler { port } => cmd::serve::scheduler(config, port).await,
        Command::Trigger(args) => cmd::dags::trigger(&config, args).await,
        Command::Dags(command) => match command {
            DagsCommand::List { output } => cmd::dags::list(&config, output).await,
            DagsCommand::Show { dag_id, output } => cmd::dags::show(&config, &dag_id, output).await,
            DagsCommand::Validate { paths, output } => cmd::dags::validate(&config, &paths, output),
            DagsCommand::ListImportErrors { output } => cmd::dags::import_errors(&config, output).await,
            DagsCommand::Pause { dag_id } => cmd::dags::pause(&config, &dag_id, true).await,
            DagsCommand::Unpause { dag_id } => cmd::dags::pause(&config, &dag_id, false).await,
            DagsCommand::Trigger(args) => cmd::dags::trigger(&config, args).await,
            DagsCommand::Test {
                dag_id,
                logical_date,
                conf,
            } => cmd::dags::test(&config, &dag_id, logical_date, conf).await,
            DagsCommand::Backfill {
                dag_id,
                start_date,
                end_date,
                local,
            } => cmd::dags::backfill(&config, &dag_id, &start_date, &end_date, local).await,
            DagsCommand::ListRuns {
                dag_id,
                state,
                limit,
                output,
            } => cmd::dags::list_runs(&config, &dag_id, state, limit, output).await,
        },
        Command::Tasks(command) => match command {
            TasksCommand::List { dag_id, output } => cmd::tasks::list(&config, &dag_id, output).await,
            TasksCommand::Logs {
                dag_id,
                run_id,
                task_id,
                try_number,
                map_index,
                follow,
            } => cmd::tasks::logs(&config, &dag_id, &run_id, &task_id, map_index, try_number, follow).await,
            TasksCommand::Clear {
                dag_id,
                run_id,
                task_id,
                only_failed,
            } => cmd::tasks::clear(&config, &dag_id, run_id, task_id, only_failed).await,
            TasksCommand::Run(_) => Ok(dagctl::runner::run_main()),
            TasksCommand::StatesForDagRun { dag_id, run_id, output } => {
                cmd::tasks::states(&config, &dag_id, &run_id, output).await
            }
        },
        Command::Pools(command) => match command {
            PoolsCommand::List { output } => cmd::tasks::pools(&config, output).await,
            PoolsCommand::Set {
                name,
                slots,
                description,
            } => cmd::tasks::pool_set(&config, &name, slots, description).await,
            PoolsCommand::Delete { name } => cmd::tasks::pool_delete(&config, &name).await,
        },
        Command::Bench(BenchCommand::Monitor(args)) => cmd::bench_monitor::monitor(&config, &args).await,
        Command::Bench(BenchCommand::Load(args)) => cmd::bench_load::load(&config, &args).await,
        Command::Bench(BenchCommand::Kpi(args)) => cmd::bench_kpi::kpi(&config, &args).await,
        Command::Bench(BenchCommand::Trigger(args)) => cmd::bench_trigger::trigger(&config, &args).await,
        Command::Bench(BenchCommand::Chaos(args)) => cmd::bench_chaos::chaos(&args).await,
        Command::Bench(BenchCommand::K8s(args)) => cmd::bench_k8s::k8s(&config, &args).await,
        Command::Bench(BenchCommand::Web {
            database,
            pg_url,
            output,
        }) => cmd::bench_web::web(&config, database, pg_url, output).await,
        Command::Bench(BenchCommand::Scheduler {
            database,
            pg_url,
            scenario,
            output,
        }) => cmd::bench::scheduler(&config, database, pg_url, &scenario, output).await,
        Command::Load(flags) => cmd::load::load(&config, &flags).await,
        Command::Kpi(args) => cmd::kpi::kpi(&config, &args).await,
        Command::Audit(args) => cmd::audit::audit(&config, &args).await,
        Command::Chaos(args) => cmd::chaos::chaos(&config, &args).await,
        Command::Certify(args) => cmd::certify::certify(&config, &args).await,
        Command::Net(command) => match command {
            NetCommand::Up(args) => cmd::net::up(&config, *args).await,
            NetCommand::Down { name } => cmd::net::down(&config, &name).await,
            NetCommand::Ls { all, output } => cmd::net::list(&config, all, output).await,
            NetCommand::Show { name, output } => cmd::net::show(&config, &name, output).await,
            NetCommand::Kill { name, node, signal } => cmd::net::kill(&config, &name, &node, &signal).await,
            NetCommand::Restart { name, node } => cmd::net::restart(&config, &name, &node).await,
            NetCommand::Watch(args) => cmd::watch::watch(&config, &args).await,
            NetCommand::Samples(args) => cmd::watch::samples(&config, &args).await,
            NetCommand::Alerts { name, limit, output } => cmd::watch::alerts(&config, &name, limit, output).await,
            NetCommand::Reap => cmd::net::reap(&config).await,
        },
        Command::Users(UsersCommand::Create { username, role, email }) => {
            cmd::users::create(&config, &username, &role, email).await
        }
        Command::Users(UsersCommand::List { output }) => cmd::users::list(&config, output).await,
        Command::Variables(command) => match command {
            VariablesCommand::Get {
                key,
                default,
                deserialize_json,
                show_secrets,
            } => cmd::variables::get(&config, &key, default, deserialize_json, show_secrets).await,
            VariablesCommand::Set {
                key,
                value,
                description,
                serialize_json,
            } => cmd::variables::set(&config, &key, &value, description, serialize_json).await,
            VariablesCommand::List { output, show_secrets } => {
                cmd::variables::list(&config, output, show_secrets).await
            }
            VariablesCommand::Delete { key } => cmd::variables::delete(&config, &key).await,
            VariablesCommand::Import {
                file,
                action_on_existing_key,
            } => cmd::variables::import(&config, &file, &action_on_existing_key).await,
            VariablesCommand::Export { file } => cmd::variables::export(&config, &file).await,
        },
        Command::Connections(command) => match command {
            ConnectionsCommand::Add(args) => cmd::connections::add(&config, *args).await,
            ConnectionsCommand::Get {
                conn_id,
                output,
                show_secrets,
            } => cmd::connections::get(&config, &conn_id, output, show_secrets).await,
            ConnectionsCommand::List { output, show_secrets } => {
                cmd::connections::list(&config, output, show_secrets).await
            }
            ConnectionsCommand::Delete { conn_id } => cmd::connections::delete(&config, &conn_id).await,
        },
        Command::RotateFernetKey => cmd::variables::rotate(&config).await,
        Command::Clients(ClientsCommand::Install { client, from }) => {
            cmd::clients::install(&config, &client, from.as_deref()).await
        }
    }
}
