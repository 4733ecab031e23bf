//! `dagctl chaos [--network N] FAULT --target SEL ...`: a fault on a running network's nodes, in pumba's
//! grammar with `--target` naming nodes (`chain::chaos`): `kill [--signal S] [--restart-after D]`, `pause
//! --duration D`, `stop --duration D`, `restart`, `netem --duration D [--interface I] delay|rate|... ...`,
//! `partition --duration D [--from SEL] [--direction both|to|from] [--mode blackhole|reset]`. Ctrl-C undoes
//! the fault at once; `dagctl chaos recover` undoes faults whose process was killed.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use chain::chaos::spec::{DelaySpec, NetemSpec, PartitionSpec, PercentSpec, RateSpec};
use chain::chaos::{process, Fault, ProcessFault, Selector};
use chain::lifecycle;

use crate::config::Config;
use crate::output::Format;
use crate::runtime::{chain_backend, open_store};

/// Flags of `dagctl chaos`.
#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// The network
    #[arg(long, global = true)]
    pub network: Option<String>,
    /// Which nodes: names (a,b), re2:<regex>, random:N, validators:N, P%, f (the most faulty validators the
    /// consensus tolerates) or majority (of the validators)
    #[arg(long, global = true)]
    pub target: Option<String>,
    /// Seed of random:, P% and f choices (default: the clock)
    #[arg(long, global = true)]
    pub seed: Option<u64>,
    /// Apply the fault again this long after each start (pumba's --interval; with --repeat)
    #[arg(long, global = true)]
    pub interval: Option<String>,
    /// How many times in all (1 to 1000; the targets are chosen again each time)
    #[arg(long, global = true)]
    pub repeat: Option<u32>,
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
    /// pumba's netem on the target nodes' peer links (through a fault-injecting proxy: this kernel has no netem)
    Netem {
        #[arg(long)]
        duration: String,
        /// pumba's interface; here the node's peer links
        #[arg(long)]
        interface: Option<String>,
        /// egress (netem's), ingress or both
        #[arg(long)]
        direction: Option<String>,
        #[command(subcommand)]
        effect: NetemCommand,
    },
    /// Cut the target nodes off from the others (or from --from) for a duration
    Partition {
        #[arg(long)]
        duration: String,
        /// The other group (a target selector; default: every node not targeted)
        #[arg(long)]
        from: Option<String>,
        /// both (default), to or from
        #[arg(long)]
        direction: Option<String>,
        /// blackhole (default: what is sent is swallowed) or reset (connections refused)
        #[arg(long)]
        mode: Option<String>,
    },
    /// CPU and memory pressure on the target nodes' host for a duration (Debian's stress-ng, pinned to the
    /// CPUs each node may run on)
    Stress {
        #[arg(long)]
        duration: String,
        /// CPU workers
        #[arg(long)]
        cpu: Option<u32>,
        /// Each CPU worker's load, percent (default 100)
        #[arg(long)]
        cpu_load: Option<u32>,
        /// Memory each memory worker touches: 256M, 1G, 50%
        #[arg(long)]
        memory: Option<String>,
        /// Memory workers (default 1 with --memory)
        #[arg(long)]
        vm: Option<u32>,
    },
    /// Skew the target node's wall clock by --offset (+30s, -2m) for a duration: the node is started again
    /// under dagctl's clock supervisor (seccomp user notification; see docs/chaos.md), then without it
    Clock {
        #[arg(long, allow_hyphen_values = true)]
        offset: String,
        #[arg(long)]
        duration: String,
    },
    /// List the faults in place now (recorded and not undone), with who applied them
    Faults,
    /// Undo the faults of processes that died mid-fault (with --all: every open fault of this host)
    Recover {
        #[arg(long)]
        all: bool,
    },
}

/// netem's effects, with pumba's flags.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum NetemCommand {
    /// Delay what the targets send: --time ms [--jitter ms] [--correlation %] [--distribution D]
    Delay {
        #[arg(long)]
        time: u64,
        #[arg(long, default_value_t = 0)]
        jitter: u64,
        #[arg(long, default_value_t = 0.0)]
        correlation: f64,
        /// uniform (default), normal, pareto or paretonormal
        #[arg(long)]
        distribution: Option<String>,
    },
    /// Drop --percent of the packets the targets exchange with other nodes (nodes in network namespaces:
    /// nftables; refused on loopback, where a TCP proxy carries the links)
    Loss {
        #[arg(long)]
        percent: f64,
        #[arg(long, default_value_t = 0.0)]
        correlation: f64,
    },
    /// Send --percent of the targets' packets to other nodes twice (network namespaces, egress only)
    Duplicate {
        #[arg(long)]
        percent: f64,
        #[arg(long, default_value_t = 0.0)]
        correlation: f64,
    },
    /// Overwrite a byte of --percent of the targets' TCP segments to other nodes (network namespaces)
    Corrupt {
        #[arg(long)]
        percent: f64,
        #[arg(long, default_value_t = 0.0)]
        correlation: f64,
    },
    /// Limit the rate: --rate 100kbit, 1mbit, 500kbps
    Rate {
        #[arg(long)]
        rate: String,
    },
}

fn duration(flag: &str, text: &str) -> Result<std::time::Duration> {
    let d = engine::duration::parse_duration_str(text).map_err(|e| anyhow!("--{flag}: {e}"))?;
    if d.is_zero() {
        bail!("--{flag}: must be more than zero");
    }
    Ok(d)
}

fn spec_duration(flag: &str, text: &str) -> Result<chain::SpecDuration> {
    text.parse::<chain::SpecDuration>()
        .map_err(|e| anyhow!("--{flag}: {e}"))
}

/// The fault `command` names, checked.
fn fault_of(command: &FaultCommand) -> Result<Fault> {
    Ok(match command {
        FaultCommand::Netem {
            duration,
            interface,
            direction,
            effect,
        } => {
            let percent = |percent: f64, correlation: f64| Some(PercentSpec { percent, correlation });
            let mut spec = NetemSpec {
                duration: spec_duration("duration", duration)?,
                interface: interface.clone(),
                direction: direction.clone(),
                delay: None,
                loss: None,
                duplicate: None,
                corrupt: None,
                rate: None,
            };
            match effect {
                NetemCommand::Delay {
                    time,
                    jitter,
                    correlation,
                    distribution,
                } => {
                    spec.delay = Some(DelaySpec {
                        time: *time,
                        jitter: *jitter,
                        correlation: *correlation,
                        distribution: distribution.clone(),
                    })
                }
                NetemCommand::Loss {
                    percent: p,
                    correlation,
                } => spec.loss = percent(*p, *correlation),
                NetemCommand::Duplicate {
                    percent: p,
                    correlation,
                } => spec.duplicate = percent(*p, *correlation),
                NetemCommand::Corrupt {
                    percent: p,
                    correlation,
                } => spec.corrupt = percent(*p, *correlation),
                NetemCommand::Rate { rate } => spec.rate = Some(RateSpec { rate: rate.clone() }),
            }
            Fault::Network(spec.fault().map_err(|e| anyhow!("netem: {e}"))?)
        }
        FaultCommand::Partition {
            duration,
            from,
            direction,
            mode,
        } => {
            let spec = PartitionSpec {
                duration: spec_duration("duration", duration)?,
                from: from.clone(),
                direction: direction.clone(),
                mode: mode.clone(),
            };
            Fault::Network(spec.fault().map_err(|e| anyhow!("partition: {e}"))?)
        }
        FaultCommand::Stress {
            duration,
            cpu,
            cpu_load,
            memory,
            vm,
        } => Fault::Stress(
            chain::chaos::stress::StressSpec {
                duration: spec_duration("duration", duration)?,
                cpu: *cpu,
                cpu_load: *cpu_load,
                memory: memory.clone(),
                vm: *vm,
            }
            .fault()
            .map_err(|e| anyhow!("stress: {e}"))?,
        ),
        FaultCommand::Clock { offset, duration } => chain::chaos::spec::ClockSpec {
            offset: offset.clone(),
            duration: spec_duration("duration", duration)?,
        }
        .fault()
        .map_err(|e| anyhow!("clock: {e}"))?,
        FaultCommand::Recover { .. } | FaultCommand::Faults => bail!("not a fault"),
        other => Fault::Process(process_fault_of(other)?),
    })
}

/// The process fault `command` names, checked.
fn process_fault_of(command: &FaultCommand) -> Result<ProcessFault> {
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
        _ => bail!("not a fault on node processes"),
    })
}

/// `dagctl chaos`.
pub async fn chaos(config: &Config, args: &ChaosArgs) -> Result<ExitCode> {
    match args.fault {
        FaultCommand::Recover { all } => return recover(config, all).await,
        FaultCommand::Faults => return faults(config, args.output).await,
        _ => {}
    }
    let fault = fault_of(&args.fault)?;
    let name = args
        .network
        .as_deref()
        .ok_or_else(|| anyhow!("--network: which network?"))?;
    let target = args.target.as_deref().ok_or_else(|| {
        anyhow!("--target: which nodes? names, re2:<regex>, random:N, validators:N, P%, f or majority")
    })?;
    let selector = Selector::parse(target).map_err(|e| anyhow!("--target: {e}"))?;
    let store = open_store(config).await?;
    let row = store.get_network(name).await?;
    let record = match lifecycle::any_record_of(&row)? {
        Some(record) if row.status == "running" => record,
        _ => bail!("network `{name}` is {}: no node to fault", row.status),
    };
    let seed = args
        .seed
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    let repeat = args.repeat.unwrap_or(1);
    if !(1..=1000).contains(&repeat) {
        bail!("--repeat: 1 to 1000 times in all, not {repeat}");
    }
    let interval = match (&args.interval, repeat) {
        (None, 1) => std::time::Duration::ZERO,
        (Some(_), 1) => bail!("--interval: give --repeat too (how many times in all, at least 2)"),
        (None, _) => bail!("--repeat: give --interval too (from one start to the next)"),
        (Some(text), _) => {
            let every = duration("interval", text)?;
            if every < fault.lasts() {
                bail!(
                    "--interval: {every:?} is shorter than the fault lasts ({:?}): repetitions would overlap",
                    fault.lasts()
                );
            }
            every
        }
    };
    let plan = |k: u32| {
        chain::chaos::plan_any(
            &record,
            &selector,
            fault.clone(),
            seed.wrapping_add(7919 * u64::from(k)),
        )
        .map_err(|e| match e.target {
            true => anyhow!("--target: {}", e.message),
            false => anyhow!("{}", e.message),
        })
    };
    let first = plan(0)?;
    let backend = chain_backend(config)?;
    let cancel = crate::runtime::cancel_on_ctrl_c();
    let began = tokio::time::Instant::now();
    let mut reports = Vec::new();
    for k in 0..repeat {
        let planned = if k == 0 {
            first.clone()
        } else {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(began + interval * k) => {}
            }
            plan(k)?
        };
        let report = chain::chaos::apply(&store, &backend, &store, name, &planned, &cancel, &|line: &str| {
            eprintln!("{line}")
        })
        .await?;
        match args.output {
            Format::Json if repeat == 1 => println!("{}", serde_json::to_string_pretty(&report)?),
            Format::Json => {}
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
        reports.push(report);
        if cancel.is_cancelled() {
            break;
        }
    }
    if repeat > 1 && matches!(args.output, Format::Json) {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `dagctl chaos recover`: undoes the faults of this host whose process is gone (all open ones with `--all`).
async fn recover(config: &Config, all: bool) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let backend = chain_backend(config)?;
    let undone = chain::chaos::ledger::recover(&store, &backend, all, &|line: &str| eprintln!("{line}")).await?;
    let left = store.open_chaos_faults(None).await?;
    println!(
        "undid {} fault part(s){}",
        undone.len(),
        if left.is_empty() {
            String::new()
        } else {
            format!("; {} still open (owner alive, or undo failed: see above)", left.len())
        }
    );
    Ok(if left.iter().any(|row| row.undo_error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `dagctl chaos faults`: what is in place now.
async fn faults(config: &Config, output: Format) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let open = store.open_chaos_faults(None).await?;
    match output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&open)?),
        Format::Table => {
            if open.is_empty() {
                println!("no fault in place");
            }
            for row in &open {
                let task = match (&row.dag_id, &row.run_id, &row.task_id) {
                    (Some(d), Some(r), Some(t)) => format!(" task {d}/{r}/{t}"),
                    _ => String::new(),
                };
                println!(
                    "{} {} {} {} since {} by pid {} on {}{task}{}",
                    row.id,
                    row.network,
                    row.kind,
                    row.part,
                    row.applied_at.format("%H:%M:%S"),
                    row.owner_pid,
                    row.owner_host,
                    row.undo_error
                        .as_deref()
                        .map(|e| format!(" (undo failed: {e})"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dagctl clock-shim OFFSET PROGRAM [ARGS...]`: runs PROGRAM with its wall clock OFFSET (`+2h`, `-30s`) away
/// from the host's (see `chain::chaos::clock::shim`); exits with the program's status.
pub fn clock_shim_main() -> ExitCode {
    let mut args = std::env::args_os().skip(2);
    let usage = "usage: dagctl clock-shim OFFSET PROGRAM [ARGS...] (OFFSET like +2h or -30s)";
    let (Some(offset), Some(program)) = (args.next(), args.next()) else {
        eprintln!("error: {usage}");
        return ExitCode::from(2);
    };
    let offset = match chain::chaos::clock::parse_offset(&offset.to_string_lossy()) {
        Ok(seconds) => seconds,
        Err(err) => {
            eprintln!("error: {err}; {usage}");
            return ExitCode::from(2);
        }
    };
    let rest: Vec<std::ffi::OsString> = args.collect();
    match chain::chaos::clock::shim::run(offset.saturating_mul(1_000_000_000), &program, &rest) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            eprintln!(
                "error: cannot run {} under a skewed clock: {err}",
                program.to_string_lossy()
            );
            ExitCode::from(127)
        }
    }
}
