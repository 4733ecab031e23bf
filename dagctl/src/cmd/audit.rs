//! `dagctl audit NETWORK|URL`: what a network's nodes, or one node, expose over JSON-RPC
//! (`chain::audit::exposure`), with severity and fix. Exit 1 when `--fail-on` is reached.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use chain::audit::exposure::{self, AuditTarget, Severity};
use chain::lifecycle;

use crate::config::Config;
use crate::output::Format;
use crate::runtime::open_store;

/// Flags of `dagctl audit`.
#[derive(clap::Args, Debug, Clone)]
pub struct AuditArgs {
    /// A network's name, or a node's JSON-RPC URL (http://host:port)
    pub target: String,
    /// Exit 1 when a finding is at this severity or worse: high, medium, low, info
    #[arg(long)]
    pub fail_on: Option<String>,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `dagctl audit`.
pub async fn audit(config: &Config, args: &AuditArgs) -> Result<ExitCode> {
    let fail_on = args
        .fail_on
        .as_deref()
        .map(|level| {
            Severity::parse(level)
                .ok_or_else(|| anyhow!("--fail-on: unknown severity `{level}`; expected high, medium, low or info"))
        })
        .transpose()?;
    let targets = if args.target.contains("://") {
        vec![AuditTarget::of_url(&args.target).map_err(|e| anyhow!(e))?]
    } else {
        let store = open_store(config).await?;
        let row = store.get_network(&args.target).await?;
        match lifecycle::record_of(&row)? {
            Some(record) if row.status == "running" => AuditTarget::of_record(&record),
            _ => bail!("network `{}` is {}: nothing runs to audit", args.target, row.status),
        }
    };
    let report = exposure::audit(&targets).await;
    match args.output {
        Format::Table => print!("{}", report.table()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(level) = fail_on.filter(|l| report.reaches(*l)) {
        eprintln!("error: findings at {} or worse", level.as_str());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
