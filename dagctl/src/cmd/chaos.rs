//! `dagctl chaos [--network N] FAULT --target SEL ...`: a fault on a running network's nodes, in pumba's
//! grammar with `--target` naming nodes (`chain::chaos`): `kill [--signal S] [--restart-after D]`, `pause
//! --duration D`, `stop --duration D`, `restart`. Ctrl-C undoes a pause or stop at once.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use chain::chaos::{process, ProcessFault, Selector};
use chain::lifecycle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::output::Format;
use crate::runtime::{chain_backend, open_store};

/// Flags of `dagctl chaos`.
#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// The network
    #[arg(long, global = true)]
    pub network: Option<String>,
    /// Which nodes: names (a,b), re2:<regex>, random:N, P%, or f (the most faulty validators the consensus
    /// tolerates)
    #[arg(long, global = true)]
    pub target: Option<String>,
    /// Seed of random:, P% and f choices (default: the clock)
    #[arg(long, global = true)]
    pub seed: Option<u64>,
    #[arg(short, long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    #[command(subcommand)]
    pub fault: FaultCommand,
}

/// The faults.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum FaultCommand {
    /// Send a signal to the target nodes' processes (SIGKILL by default), and start them again after a while
    Kill {
        #[arg(long, default_value = "SIGKILL")]
        signal: String,
        /// Start the nodes again with their own command lines after this long (e.g. 10s)
        #[arg(long)]
        restart_after: Option<String>,
    },
    /// Freeze the target nodes (SIGSTOP) for a duration, then resume them (SIGCONT)
    Pause {
        #[arg(long)]
        duration: String,
    },
    /// Stop the target nodes (SIGTERM) for a duration, then start them again
    Stop {
        #[arg(long)]
        duration: String,
    },
    /// Restart the target nodes with their own command lines
    Restart,
}

fn duration(flag: &str, text: &str) -> Result<std::time::Duration> {
    let d = engine::duration::parse_duration_str(text).map_err(|e| anyhow!("--{flag}: {e}"))?;
    if d.is_zero() {
        bail!("--{flag}: must be more than zero");
    }
    Ok(d)
}

/// The fault `command` names, checked.
fn fault_of(command: &FaultCommand) -> Result<ProcessFault> {
    Ok(match command {
        FaultCommand::Kill { signal, restart_after } => {
            let signal = process::kill_signal(signal).map_err(|e| anyhow!("--signal: {e}"))?;
            ProcessFault::Kill {
                signal,
                restart_after: restart_after
                    .as_deref()
                    .map(|d| duration("restart-after", d))
                    .transpose()?,
            }
        }
        FaultCommand::Pause { duration: d } => ProcessFault::Pause {
            duration: duration("duration", d)?,
        },
        FaultCommand::Stop { duration: d } => ProcessFault::Stop {
            duration: duration("duration", d)?,
        },
        FaultCommand::Restart => ProcessFault::Restart,
    })
}

/// `dagctl chaos`.
pub async fn chaos(config: &Config, args: &ChaosArgs) -> Result<ExitCode> {
    let fault = fault_of(&args.fault)?;
    let name = args
        .network
        .as_deref()
        .ok_or_else(|| anyhow!("--network: which network?"))?;
    let target = args
        .target
        .as_deref()
        .ok_or_else(|| anyhow!("--target: which nodes? names, re2:<regex>, random:N, P% or f"))?;
    let selector = Selector::parse(target).map_err(|e| anyhow!("--target: {e}"))?;
    let store = open_store(config).await?;
    let row = store.get_network(name).await?;
    let record = match lifecycle::record_of(&row)? {
        Some(record) if row.status == "running" => record,
        _ => bail!("network `{name}` is {}: no node to fault", row.status),
    };
    let seed = args
        .seed
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    let nodes = selector.select(&record, seed).map_err(|e| anyhow!("--target: {e}"))?;
    let backend = chain_backend(config);
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let report = process::apply(&store, &backend, name, &nodes, &fault, &cancel, &|line: &str| {
        eprintln!("{line}")
    })
    .await?;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => println!(
            "{} on {} of {name}: done in {:.1}s{}",
            report.fault,
            report.nodes.join(", "),
            report.seconds,
            if report.cancelled {
                " (cut short and undone)"
            } else {
                ""
            }
        ),
    }
    Ok(ExitCode::SUCCESS)
}
