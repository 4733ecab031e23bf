//! `dagctl net up|down|ls|show|kill|restart|reap`: networks outside a DAG.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use chain::lifecycle::{self, DeployRequest};
use chain::local::NetworkRecord;
use chain::{AnyRecord, Client, Consensus, NetworkSpec, NodeBackend, NodeSignal, Region, SpecDuration};
use chrono::Utc;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::output::{print_rows, Format};
use crate::runtime::{chain_backend, open_store};

/// Flags of `dagctl net up`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// geth, quorum, besu, openethereum or anvil
    #[arg(long)]
    pub client: String,
    /// clique, ibft, qbft, raft, ibft2, aura, interval or instant (legal pairs depend on the client)
    #[arg(long)]
    pub consensus: String,
    /// Number of validators (anvil: standalone nodes)
    #[arg(long, default_value_t = 4)]
    pub nodes: u32,
    /// Number of non-validating members
    #[arg(long, default_value_t = 0)]
    pub members: u32,
    /// Time between blocks: seconds, or 2s, 500ms, 1m (converted into the client's own unit)
    #[arg(long)]
    pub block_time: Option<String>,
    /// Block gas limit
    #[arg(long)]
    pub gas_limit: Option<u64>,
    /// Epoch length in blocks (clique, ibft, qbft, ibft2)
    #[arg(long)]
    pub epoch: Option<u64>,
    /// BFT request timeout in whole seconds (ibft, qbft, ibft2)
    #[arg(long)]
    pub request_timeout: Option<String>,
    /// Chain id (also the network id)
    #[arg(long)]
    pub chain_id: Option<u64>,
    /// Client version pin
    #[arg(long)]
    pub client_version: Option<String>,
    /// Regions, comma separated; nodes are spread across them
    #[arg(long, value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Prefund every node's own address with this many wei
    #[arg(long)]
    pub node_balance: Option<String>,
    /// Prefund an account at genesis: ADDRESS=WEI (repeat for more)
    #[arg(long = "account")]
    pub accounts: Vec<String>,
    /// Network name (default <client>-<consensus>-<suffix>)
    #[arg(long)]
    pub name: Option<String>,
    /// How nodes are isolated: host (processes on loopback) or netns (a network namespace per node, veth pairs
    /// on a bridge; root only)
    #[arg(long, default_value = "host")]
    pub isolation: String,
    /// Where the nodes run: local (processes here) or kubernetes (pods in the regions of [chain.kubernetes])
    #[arg(long, default_value = "local")]
    pub backend: String,
    /// Give up if the network is not ready after this long (e.g. 3m)
    #[arg(long, default_value = "3m")]
    pub wait_ready_timeout: String,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

fn spec_from(args: &UpArgs) -> Result<NetworkSpec> {
    let client: Client = serde_json::from_value(json!(args.client)).map_err(|e| anyhow!("--client: {e}"))?;
    let consensus: Consensus = serde_json::from_value(json!(args.consensus)).map_err(|_| {
        let runs: Vec<String> = client.supported_consensus().iter().map(|c| c.to_string()).collect();
        anyhow!(
            "--consensus: `{}` is not a consensus engine dagctl knows; {client} {} runs {}",
            args.consensus,
            client.default_version(),
            runs.join(", ")
        )
    })?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => format!(
            "{client}-{consensus}-{:06x}",
            Utc::now().timestamp_micros() as u64 & 0xff_ffff
        ),
    };
    let mut spec = NetworkSpec::new(name, client, consensus, args.nodes);
    spec.members = args.members;
    spec.block_time = args
        .block_time
        .as_deref()
        .map(|t| t.parse::<SpecDuration>().map_err(|e| anyhow!("--block-time: {e}")))
        .transpose()?;
    spec.request_timeout = args
        .request_timeout
        .as_deref()
        .map(|t| t.parse::<SpecDuration>().map_err(|e| anyhow!("--request-timeout: {e}")))
        .transpose()?;
    spec.gas_limit = args.gas_limit;
    spec.epoch = args.epoch;
    spec.chain_id = args.chain_id;
    spec.version = args.client_version.clone();
    spec.regions = args.regions.iter().map(|r| Region::named(r.trim())).collect();
    spec.isolation = serde_json::from_value(json!(args.isolation))
        .map_err(|_| anyhow!("--isolation: `{}` is neither host nor netns", args.isolation))?;
    spec.backend = serde_json::from_value(json!(args.backend))
        .map_err(|_| anyhow!("--backend: `{}` is neither local nor kubernetes", args.backend))?;
    spec.node_balance = match &args.node_balance {
        Some(text) => Some(
            chain::Balance::parse(text).ok_or_else(|| anyhow!("--node-balance: `{text}` is not a number of wei"))?,
        ),
        None => None,
    };
    for text in &args.accounts {
        let (address, balance) = text
            .split_once('=')
            .ok_or_else(|| anyhow!("--account: `{text}`: expected ADDRESS=WEI"))?;
        spec.accounts.push(
            serde_json::from_value(json!({"address": address.trim(), "balance": balance.trim()}))
                .map_err(|e| anyhow!("--account: `{text}`: {e}"))?,
        );
    }
    spec.validate().map_err(|e| anyhow!("invalid network: {e}"))?;
    Ok(spec)
}

/// `dagctl net up`: deploys a network and prints its endpoints once it is ready.
pub async fn up(config: &Config, args: UpArgs) -> Result<ExitCode> {
    let spec = spec_from(&args)?;
    let ready_timeout = engine::duration::parse_duration_str(&args.wait_ready_timeout)
        .map_err(|e| anyhow!("--wait-ready-timeout: {e}"))?;
    let store = open_store(config).await?;
    let backend = chain_backend(config)?;
    let progress = |line: &str| eprintln!("{line}");
    lifecycle::reap(&store, &backend, Utc::now(), &progress).await?;
    let cancel = CancellationToken::new();
    let on_interrupt = cancel.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: stopping the network");
            on_interrupt.cancel();
        }
    });
    let request = DeployRequest {
        spec,
        ready_timeout,
        ttl: None,
        owner: None,
    };
    let result = lifecycle::deploy(&store, &backend, &request, &cancel, &progress).await;
    watcher.abort();
    let deployed = result?;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&backend.describe(&deployed.record))?),
        Format::Table => {
            let described = backend.describe(&deployed.record);
            println!(
                "network {} ({} {}, chain id {}) ready in {:.1}s",
                described["name"].as_str().unwrap_or_default(),
                described["client"].as_str().unwrap_or_default(),
                described["consensus"].as_str().unwrap_or_default(),
                described["chain_id"],
                deployed.ready.elapsed.as_secs_f64()
            );
            match &deployed.record {
                AnyRecord::Local(record) => print_nodes(record, Format::Table),
                AnyRecord::Kubernetes(record) => print_pods(record, Format::Table),
            }
            println!(
                "tear down with: dagctl net down {}",
                described["name"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn node_rows(record: &NetworkRecord) -> Vec<Value> {
    let dead = record.dead_nodes();
    record
        .nodes
        .iter()
        .map(|n| {
            json!({
                "node": n.name,
                "role": n.role.to_string(),
                "region": n.region,
                "rpc": n.rpc,
                "ws": n.ws,
                "address": n.address,
                "pid": n.pid,
                "alive": !dead.contains(&n.name),
                "log": n.log.display().to_string(),
                "ports": n.ports,
            })
        })
        .collect()
}

/// The nodes of a network on Kubernetes: where each runs and is reached.
fn print_pods(record: &chain::kubernetes::KubeRecord, format: Format) {
    let rows: Vec<Value> = record
        .nodes
        .iter()
        .map(|n| {
            json!({
                "node": n.name,
                "role": n.role.to_string(),
                "region": n.region,
                "namespace": n.namespace,
                "pod": n.pod(),
                "rpc": n.rpc,
                "address": n.address,
            })
        })
        .collect();
    print_rows(
        format,
        &["node", "role", "region", "namespace", "pod", "rpc", "address"],
        &rows,
    );
}

fn print_nodes(record: &NetworkRecord, format: Format) {
    print_rows(
        format,
        &["node", "role", "region", "rpc", "ws", "address", "pid", "alive"],
        &node_rows(record),
    );
}

/// `dagctl net down NAME`.
pub async fn down(config: &Config, name: &str) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let backend = chain_backend(config)?;
    lifecycle::teardown(&store, &backend, name, &|line: &str| eprintln!("{line}")).await?;
    println!("network {name} removed");
    Ok(ExitCode::SUCCESS)
}

/// `dagctl net kill NAME NODE [--signal S]`: one signal to one node (SIGKILL unless told otherwise).
pub async fn kill(config: &Config, name: &str, node: &str, signal: &str) -> Result<ExitCode> {
    let wanted = signal.trim().to_ascii_uppercase();
    let wanted = wanted.strip_prefix("SIG").unwrap_or(&wanted);
    let signal = match wanted {
        "KILL" => NodeSignal::Kill,
        "TERM" => NodeSignal::Terminate,
        "STOP" => NodeSignal::Stop,
        "CONT" => NodeSignal::Continue,
        _ => bail!("--signal: `{signal}` is not one of SIGKILL, SIGTERM, SIGSTOP, SIGCONT"),
    };
    let store = open_store(config).await?;
    let backend = chain_backend(config)?;
    lifecycle::signal_node(&store, &backend, name, node, signal).await?;
    println!("sent {signal} to {node} of {name}");
    Ok(ExitCode::SUCCESS)
}

/// `dagctl net restart NAME NODE`: the node starts again with its own command line, data and ports.
pub async fn restart(config: &Config, name: &str, node: &str) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let backend = chain_backend(config)?;
    let record = lifecycle::restart_node(&store, &backend, name, node, &|line: &str| eprintln!("{line}")).await?;
    match &record {
        AnyRecord::Local(record) => {
            let restarted = &record.nodes[record.node_index(node)?];
            println!(
                "{node} of {name} restarted (pid {}), rpc {}",
                restarted.pid.unwrap_or_default(),
                restarted.rpc
            );
        }
        AnyRecord::Kubernetes(record) => {
            let restarted = &record.nodes[record.node_index(node)?];
            println!(
                "{node} of {name} restarted (pod {}), rpc {}",
                restarted.pod(),
                restarted.rpc
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dagctl net ls`.
pub async fn list(config: &Config, all: bool, format: Format) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let mut rows = Vec::new();
    for row in store.list_networks(all).await? {
        let spec: Value = serde_json::from_str(&row.spec).unwrap_or(Value::Null);
        let endpoints = lifecycle::any_record_of(&row).ok().flatten().map(|r| r.rpc_endpoints());
        rows.push(json!({
            "name": row.name,
            "status": row.status,
            "client": spec.get("client"),
            "consensus": spec.get("consensus"),
            "nodes": endpoints.as_ref().map(Vec::len),
            "rpc": endpoints.as_ref().and_then(|e| e.first().map(|(_, rpc)| rpc.clone())),
            "owner": row.dag_id.as_ref().map(|d| format!("{d}/{}", row.run_id.clone().unwrap_or_default())),
            "host": row.host,
            "created_at": row.created_at.to_rfc3339(),
            "message": row.message,
        }));
    }
    print_rows(
        format,
        &[
            "name",
            "status",
            "client",
            "consensus",
            "nodes",
            "rpc",
            "owner",
            "created_at",
            "message",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// `dagctl net show NAME`.
pub async fn show(config: &Config, name: &str, format: Format) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let row = store.get_network(name).await?;
    let any = lifecycle::any_record_of(&row)?;
    let (record, pods) = match &any {
        Some(AnyRecord::Local(record)) => (Some(record), None),
        Some(AnyRecord::Kubernetes(record)) => (None, Some(record)),
        None => (None, None),
    };
    let spec: Value = serde_json::from_str(&row.spec).context("stored spec is not JSON")?;
    match format {
        Format::Json => {
            let value = json!({
                "name": row.name,
                "status": row.status,
                "backend": row.backend,
                "host": row.host,
                "spec": spec,
                "dag_id": row.dag_id,
                "run_id": row.run_id,
                "task_id": row.task_id,
                "ttl_seconds": row.ttl_seconds,
                "message": row.message,
                "created_at": row.created_at.to_rfc3339(),
                "updated_at": row.updated_at.to_rfc3339(),
                "base_dir": record.map(|r| r.base_dir.display().to_string()),
                "rpc": any.as_ref().and_then(|r| r.rpc_endpoints().first().map(|(_, rpc)| rpc.clone())),
                "nodes": match (record, pods) {
                    (Some(record), _) => Value::from(node_rows(record)),
                    (_, Some(pods)) => pods.endpoints()["nodes"].clone(),
                    _ => json!([]),
                },
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Format::Table => {
            println!("name:     {}", row.name);
            println!("status:   {}", row.status);
            println!("spec:     {spec}");
            if let Some(dag_id) = &row.dag_id {
                println!(
                    "owner:    {dag_id} / {} / {}",
                    row.run_id.clone().unwrap_or_default(),
                    row.task_id.clone().unwrap_or_default()
                );
            }
            if let Some(ttl) = row.ttl_seconds {
                println!("ttl:      {ttl}s after the owning run ends");
            }
            if let Some(message) = &row.message {
                println!("message:  {message}");
            }
            if let Some(record) = record {
                println!("dir:      {}", record.base_dir.display());
                print_nodes(record, Format::Table);
            }
            if let Some(pods) = pods {
                println!("image:    {}", pods.image);
                print_pods(pods, Format::Table);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dagctl net reap`: re-attach to or clean up networks after a restart, then apply TTLs.
pub async fn reap(config: &Config) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let backend = chain_backend(config)?;
    let progress = |line: &str| eprintln!("{line}");
    let recovery = lifecycle::recover(&store, &backend, &progress).await?;
    let reaped = lifecycle::reap(&store, &backend, Utc::now(), &progress).await?;
    println!(
        "re-attached {}, cleaned up {}, past TTL {}",
        recovery.attached.len(),
        recovery.cleaned.len(),
        reaped.len()
    );
    Ok(ExitCode::SUCCESS)
}
