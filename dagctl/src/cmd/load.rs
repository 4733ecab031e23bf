//! `dagctl load TARGET`: the `chain.load_test` operator's load, from the command line, against a network by
//! name or any node's `http://` URL. The flags are the operator's arguments (same names, same checks); a live
//! progress line goes to stderr every second, the summary table (or `-o json`) to stdout.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use chain::lifecycle;
use chain::load::{self, LoadArgs, Setup};
use engine::operators::OperatorArgs;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::output::Format;
use crate::runtime::open_store;

/// Flags of `dagctl load`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadFlags {
    /// A network's name, or a node's JSON-RPC URL (http://host:port)
    pub target: String,
    /// Open loop at this many calls per second
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open-loop arrivals: constant or poisson
    #[arg(long)]
    pub arrivals: Option<String>,
    /// Closed loop with this many concurrent users
    #[arg(long)]
    pub users: Option<u32>,
    /// A closed-loop user's pause between calls (e.g. 10ms)
    #[arg(long)]
    pub think_time: Option<String>,
    /// Open-loop phases: RATE:FOR,... (e.g. 100:30s,1000:1m)
    #[arg(long)]
    pub ramp: Option<String>,
    /// Breaking-point search: start=R,increase=R,for=D[,max_rate=R,max_error_rate=F,max_p99=D,max_steps=N]
    #[arg(long)]
    pub step: Option<String>,
    /// How long (e.g. 30s, 2m)
    #[arg(long)]
    pub duration: Option<String>,
    /// Stop after this many calls
    #[arg(long)]
    pub max_calls: Option<u64>,
    /// Send every call to this node of the network
    #[arg(long, conflicts_with = "weights")]
    pub node: Option<String>,
    /// Spread calls by weight: NODE=W,... (e.g. node-1=3,node-2=1)
    #[arg(long)]
    pub weights: Option<String>,
    /// Call kinds by weight: KIND=W,... (e.g. eth_blockNumber=3,transfer=1; default eth_blockNumber=1)
    #[arg(long)]
    pub workload: Option<String>,
    /// JSON-RPC bodies, one per line, for the `raw` kind
    #[arg(long)]
    pub raw_file: Option<String>,
    /// A funded private key (hex) for transfers [env: DAGCTL_LOAD_FUNDER_KEY]
    #[arg(long, env = "DAGCTL_LOAD_FUNDER_KEY", hide_env_values = true)]
    pub funder_key: Option<String>,
    /// How many senders transfers come from (default 16)
    #[arg(long)]
    pub senders: Option<u32>,
    /// Wei per transfer (default 1)
    #[arg(long)]
    pub value: Option<u64>,
    /// A call without an answer this long is a timeout (default 5s)
    #[arg(long)]
    pub timeout: Option<String>,
    /// Blocks on top of a transfer's block before it counts as confirmed (default 2)
    #[arg(long)]
    pub confirmations: Option<u64>,
    /// Calls in flight at most; beyond, a call is not sent and counts as dropped (default 10000)
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// After the last call, how long to wait for transfers to be included (default 30s)
    #[arg(long)]
    pub settle: Option<String>,
    /// Write the per-call records here
    #[arg(long)]
    pub records: Option<PathBuf>,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `K=V,...` as a JSON object of numbers (a value that is not a number stays text, for the check to name).
fn pairs(flag: &str, text: &str) -> Result<Value> {
    let mut map = Map::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("--{flag}: `{part}` is not KEY=VALUE"))?;
        map.insert(key.trim().to_string(), number_or_text(value.trim()));
    }
    Ok(Value::Object(map))
}

fn number_or_text(text: &str) -> Value {
    if let Ok(whole) = text.parse::<u64>() {
        return Value::from(whole);
    }
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(text.to_string()))
}

impl LoadFlags {
    /// The flags as the operator's arguments.
    fn args(&self) -> Result<Value> {
        let mut args = Map::new();
        let is_url = self.target.contains("://");
        args.insert(
            if is_url { "url" } else { "network" }.into(),
            Value::String(self.target.clone()),
        );
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                args.insert(key.to_string(), value);
            }
        };
        put("rate", self.rate.map(|r| json!(r)));
        put("arrivals", self.arrivals.clone().map(Value::String));
        put("users", self.users.map(|u| json!(u)));
        put("think_time", self.think_time.clone().map(Value::String));
        put("duration", self.duration.clone().map(Value::String));
        put("max_calls", self.max_calls.map(|n| json!(n)));
        put("raw_file", self.raw_file.clone().map(Value::String));
        put("funder_key", self.funder_key.clone().map(Value::String));
        put("senders", self.senders.map(|n| json!(n)));
        put("value", self.value.map(|n| json!(n)));
        put("timeout", self.timeout.clone().map(Value::String));
        put("confirmations", self.confirmations.map(|n| json!(n)));
        put("max_in_flight", self.max_in_flight.map(|n| json!(n)));
        put("settle", self.settle.clone().map(Value::String));
        if let Some(ramp) = &self.ramp {
            let mut phases = Vec::new();
            for part in ramp.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (rate, length) = part
                    .split_once(':')
                    .ok_or_else(|| anyhow!("--ramp: `{part}` is not RATE:FOR"))?;
                phases.push(json!({"rate": number_or_text(rate.trim()), "for": length.trim()}));
            }
            args.insert("ramp".into(), Value::Array(phases));
        }
        if let Some(step) = &self.step {
            let mut step = pairs("step", step)?;
            // Durations stay text.
            for key in ["for", "max_p99"] {
                if let Some(v) = step.get_mut(key) {
                    if let Value::Number(n) = v {
                        *v = Value::String(format!("{n}s"));
                    }
                }
            }
            args.insert("step".into(), step);
        }
        if let Some(node) = &self.node {
            args.insert("targets".into(), json!({"node": node}));
        }
        if let Some(weights) = &self.weights {
            args.insert("targets".into(), json!({"weights": pairs("weights", weights)?}));
        }
        if let Some(workload) = &self.workload {
            args.insert("workload".into(), pairs("workload", workload)?);
        }
        Ok(Value::Object(args))
    }
}

pub async fn load(config: &Config, flags: &LoadFlags) -> Result<ExitCode> {
    let args: LoadArgs = serde_path_to_error::deserialize(flags.args()?).map_err(|e| {
        let path = e.path().to_string();
        anyhow!("`{path}`: {}", e.into_inner())
    })?;
    args.check()
        .map_err(|issue| anyhow!("`{}`: {}", issue.key, issue.message))?;
    let plan = args
        .plan()
        .map_err(|issue| anyhow!("`{}`: {}", issue.key, issue.message))?;
    let (nodes, ws) = match &args.url {
        Some(url) => (vec![(url.clone(), url.clone())], Default::default()),
        None => {
            let store = open_store(config).await?;
            let row = store.get_network(&flags.target).await?;
            if row.status != "running" {
                bail!(
                    "network `{}` is {}; load needs a running network",
                    flags.target,
                    row.status
                );
            }
            let Some(record) = lifecycle::record_of(&row)? else {
                bail!("network `{}` has no nodes yet", flags.target);
            };
            let ws = record
                .nodes
                .iter()
                .filter_map(|n| Some((n.name.clone(), n.ws.clone()?)))
                .collect();
            (
                record.nodes.iter().map(|n| (n.name.clone(), n.rpc.clone())).collect(),
                ws,
            )
        }
    };
    let setup = Setup::of(&args, nodes, ws, flags.records.clone()).map_err(|e| anyhow!(e))?;
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let live = std::io::stderr().is_terminal();
    let summary = tokio::task::spawn_blocking(move || {
        load::run_blocking(
            plan,
            setup,
            cancel,
            move |p| {
                if live {
                    eprint!("\r\x1b[2K{}", load::progress_line(p));
                } else {
                    eprintln!("{}", load::progress_line(p));
                }
            },
            |text| eprintln!("{text}"),
        )
    })
    .await
    .map_err(|e| anyhow!("the generator's thread failed: {e}"))?
    .map_err(|e| anyhow!(e))?;
    if live {
        eprintln!();
    }
    match flags.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        _ => {
            print!("{}", summary.table());
            println!("ended: {}", summary.ended);
            if let Some(file) = &summary.records_file {
                println!("records: {file}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
