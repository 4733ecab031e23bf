//! `dagctl kpi [DAG] RUN`: the KPIs of a run, computed from the store (its network's samples and alerts, its
//! XComs) and the records files its load tests left, as a table, JSON, or a self-contained HTML report.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use chain::kpi::{self, Capacity, Options, Targets};
use engine::store::{RunFilter, RunRow, Store};

use crate::config::Config;
use crate::runtime::open_store;

/// How `dagctl kpi` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KpiFormat {
    Table,
    Json,
    Html,
}

/// Flags of `dagctl kpi`.
#[derive(clap::Args, Debug, Clone)]
pub struct KpiArgs {
    /// RUN, or DAG RUN when a run id is used by more than one DAG
    #[arg(required = true, num_args = 1..=2)]
    pub ids: Vec<String>,
    #[arg(short, long, value_enum, default_value_t = KpiFormat::Table)]
    pub output: KpiFormat,
    /// The rate the sizing is for (TPS); default: the busiest window that met the p99 target
    #[arg(long)]
    pub target_tps: Option<f64>,
    /// The p99 latency the sizing aims under, in ms
    #[arg(long, default_value_t = 1000.0)]
    pub target_p99_ms: f64,
    /// Error rate above which a window counts as broken
    #[arg(long, default_value_t = 0.01)]
    pub max_error_rate: f64,
    /// A node host's cores (default: this host's)
    #[arg(long)]
    pub cores: Option<f64>,
    /// A node host's memory in GiB (default: this host's)
    #[arg(long)]
    pub memory_gib: Option<f64>,
    /// Read node logs (alerts, lines by level) from CloudWatch Logs in this region, where the monitor shipped
    /// them
    #[arg(long)]
    pub cloudwatch_region: Option<String>,
    /// Their log group (default /dagctl/networks/<network>)
    #[arg(long)]
    pub cloudwatch_log_group: Option<String>,
    /// Another CloudWatch endpoint (a VPC endpoint, LocalStack, moto)
    #[arg(long)]
    pub cloudwatch_endpoint_url: Option<String>,
}

impl KpiArgs {
    /// The recommendation's options, checked.
    pub fn options(&self) -> Result<Options> {
        let positive = |name: &str, v: Option<f64>| -> Result<()> {
            if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                bail!("--{name}: must be a positive number");
            }
            Ok(())
        };
        positive("target-tps", self.target_tps)?;
        positive("target-p99-ms", Some(self.target_p99_ms))?;
        positive("cores", self.cores)?;
        positive("memory-gib", self.memory_gib)?;
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            bail!("--max-error-rate: must be between 0 and 1");
        }
        let host = Capacity::of_this_host();
        let capacity = match (
            self.cores.or(host.map(|h| h.cores)),
            self.memory_gib.or(host.map(|h| h.memory_gib)),
        ) {
            (Some(cores), Some(memory_gib)) => Some(Capacity { cores, memory_gib }),
            _ => None,
        };
        let cloudwatch = (self.cloudwatch_region.is_some()
            || self.cloudwatch_log_group.is_some()
            || self.cloudwatch_endpoint_url.is_some())
        .then(|| chain::monitor::cloudwatch::CloudWatchSettings {
            log_group: self.cloudwatch_log_group.clone(),
            region: self.cloudwatch_region.clone(),
            endpoint_url: self.cloudwatch_endpoint_url.clone(),
            min_level: None,
        });
        if let Some(settings) = &cloudwatch {
            settings.check().map_err(|e| anyhow!("--cloudwatch-*: {e}"))?;
        }
        Ok(Options {
            cloudwatch,
            targets: Targets {
                tps: self.target_tps,
                p99_ms: self.target_p99_ms,
                max_error_rate: self.max_error_rate,
            },
            capacity,
        })
    }
}

/// The run `ids` names: `[RUN]` (unique across DAGs) or `[DAG, RUN]`.
pub async fn find_run(store: &Store, ids: &[String]) -> Result<RunRow> {
    match ids {
        [dag_id, run_id] => store
            .get_run(dag_id, run_id)
            .await
            .map_err(|_| anyhow!("no run `{run_id}` of DAG `{dag_id}`")),
        [run_id] => {
            let filter = RunFilter {
                run_id_pattern: Some(run_id.clone()),
                limit: 100,
                ..Default::default()
            };
            let (rows, _) = store.list_runs(&filter).await?;
            let mut matching: Vec<RunRow> = rows.into_iter().filter(|r| &r.run_id == run_id).collect();
            match matching.len() {
                0 => bail!("no run `{run_id}`; `dagctl dags list-runs DAG` lists a DAG's runs"),
                1 => Ok(matching.remove(0)),
                _ => bail!(
                    "run id `{run_id}` is used by DAGs {}; give the DAG too: dagctl kpi DAG {run_id}",
                    matching
                        .iter()
                        .map(|r| r.dag_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        _ => bail!("give RUN, or DAG RUN"),
    }
}

/// `dagctl kpi`.
pub async fn kpi(config: &Config, args: &KpiArgs) -> Result<ExitCode> {
    let options = args.options()?;
    let store = open_store(config).await?;
    let run = find_run(&store, &args.ids).await?;
    let kpis = crate::reports::compute(&store, &run, &options)
        .await
        .map_err(|e| anyhow!(e))?;
    match args.output {
        KpiFormat::Table => print!("{}", kpis.table()),
        KpiFormat::Json => println!("{}", serde_json::to_string_pretty(&kpis)?),
        KpiFormat::Html => print!("{}", kpi::report::html(&kpis)),
    }
    Ok(ExitCode::SUCCESS)
}
