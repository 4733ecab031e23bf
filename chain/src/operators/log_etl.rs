//! `chain.log_etl`: the KPIs of the run it is part of ([`crate::kpi`]): its load tests' records files, its
//! network's samples and alerts (through the task execution API), turned into KPIs, a configuration
//! recommendation and a self-contained HTML report. The XCom is the KPIs without their chart series (so it
//! stays small), with `report_file`; the report is written to `<load dir>/<dag>/<run>/<task>-try<N>.html`. The
//! whole KPIs are kept per run in the store (`PUT /execution/kpis`), and judged against the DAG's last runs
//! ([`crate::kpi::trend`]): a regression is a warning, or with `on_regression: fail` fails the task.

use std::path::PathBuf;
use std::time::Duration;

use engine::operators::{validate_typed, ArgIssue, OperatorArgs, OperatorDef, Templated};
use serde::Deserialize;
use worker::operator::{Operator, OperatorContext, OperatorFuture, OperatorResult};

use crate::duration::SpecDuration;
use crate::kpi::{self, Capacity, Options, RunInfo, Targets};
use crate::registry::{ApiNetworks, KpiStore};

/// Canonical name of the log ETL operator.
pub const LOG_ETL: &str = "chain.log_etl";

/// The arguments of `chain.log_etl`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEtlArgs {
    /// The rate the sizing is for (TPS); default: the busiest window that met the p99 target.
    #[serde(default)]
    pub target_tps: Option<Templated<f64>>,
    /// The p99 latency the sizing aims under (default 1s).
    #[serde(default)]
    pub target_p99: Option<Templated<SpecDuration>>,
    /// Error rate above which a window counts as broken (default 0.01).
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// A node host's cores and memory (default: the runner's host, where the local backend runs nodes).
    #[serde(default)]
    pub cores: Option<f64>,
    #[serde(default)]
    pub memory_gib: Option<f64>,
    /// Write the HTML report (default true).
    #[serde(default)]
    pub report: Option<bool>,
    /// Read the network's node logs back from CloudWatch Logs, where `chain.monitor` shipped them (its
    /// `cloudwatch` settings: `log_group`, `region`, `endpoint_url`): alerts and line counts by level come from
    /// there.
    #[serde(default)]
    pub cloudwatch: Option<crate::monitor::cloudwatch::CloudWatchSettings>,
    /// What a regression against the DAG's last runs does: `warn` (default: a warning in the log, the report
    /// and the XCom) or `fail` (the task fails, after the KPIs and the report are kept).
    #[serde(default)]
    pub on_regression: Option<OnRegression>,
}

/// What a regression does to the task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRegression {
    #[default]
    Warn,
    Fail,
}

fn positive(key: &str, value: Option<f64>) -> Result<(), ArgIssue> {
    match value {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(ArgIssue::new(key, format!("`{key}` must be a positive number"))),
        _ => Ok(()),
    }
}

impl OperatorArgs for LogEtlArgs {
    fn check(&self) -> Result<(), ArgIssue> {
        if let Some(Templated::Value(tps)) = &self.target_tps {
            positive("target_tps", Some(*tps))?;
        }
        if let Some(Templated::Value(p99)) = &self.target_p99 {
            if p99.get().is_zero() {
                return Err(ArgIssue::new("target_p99", "`target_p99` must be more than zero"));
            }
        }
        if self.max_error_rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            return Err(ArgIssue::new(
                "max_error_rate",
                "`max_error_rate` must be between 0 and 1",
            ));
        }
        positive("cores", self.cores)?;
        positive("memory_gib", self.memory_gib)?;
        if let Some(settings) = &self.cloudwatch {
            settings.check().map_err(|reason| ArgIssue::new("cloudwatch", reason))?;
        }
        Ok(())
    }
}

/// `chain.log_etl`.
pub(super) struct LogEtl {
    /// Where reports go (beside the load tests' records).
    pub reports_dir: PathBuf,
}

impl Operator for LogEtl {
    fn definition(&self) -> OperatorDef {
        OperatorDef {
            name: LOG_ETL,
            aliases: &[],
            validate: |args| validate_typed::<LogEtlArgs>(LOG_ETL, args),
            completes_in_scheduler: false,
            is_teardown: false,
        }
    }

    fn run(&self, ctx: OperatorContext) -> OperatorFuture {
        let dir = self.reports_dir.clone();
        Box::pin(async move {
            match run(ctx, dir).await {
                Ok(value) => OperatorResult::Success(Some(value)),
                Err(reason) => OperatorResult::Failed(reason),
            }
        })
    }
}

async fn run(ctx: OperatorContext, reports_dir: PathBuf) -> Result<serde_json::Value, String> {
    let args = ctx.args_as::<LogEtlArgs>()?;
    let host = Capacity::of_this_host();
    let capacity = match (
        args.cores.or(host.map(|h| h.cores)),
        args.memory_gib.or(host.map(|h| h.memory_gib)),
    ) {
        (Some(cores), Some(memory_gib)) => Some(Capacity { cores, memory_gib }),
        _ => None,
    };
    let options = Options {
        targets: Targets {
            tps: args
                .target_tps
                .as_ref()
                .map(|t| t.value("target_tps").copied())
                .transpose()?,
            p99_ms: args
                .target_p99
                .as_ref()
                .map(|t| t.value("target_p99").map(|d| d.get()))
                .transpose()?
                .unwrap_or(Duration::from_secs(1))
                .as_secs_f64()
                * 1000.0,
            max_error_rate: args.max_error_rate.unwrap_or(0.01),
        },
        capacity,
        cloudwatch: args.cloudwatch.clone(),
    };
    let run = RunInfo {
        dag_id: ctx.dag_id.clone(),
        run_id: ctx.run_id.clone(),
        state: "running".into(),
        start: None,
        end: None,
    };
    let networks = ApiNetworks(ctx.api.clone());
    let (kpis, gathered) = kpi::gather::gather(&networks, run, &ctx.xcoms, &options).await?;
    let log = &ctx.log;
    let history = match networks
        .kpi_history(&ctx.dag_id, &ctx.run_id, kpi::trend::WINDOW as u32)
        .await
    {
        Ok(history) => history,
        Err(err) => {
            log.line(
                "warning",
                "kpi",
                &format!("no trend: the earlier runs' KPIs cannot be read: {err}"),
            );
            Vec::new()
        }
    };
    let kpis = kpis.with_history(history);
    let full = serde_json::to_value(&kpis).map_err(|e| e.to_string())?;
    networks
        .save_kpis(&ctx.dag_id, &ctx.run_id, &ctx.task_id, &full)
        .await
        .map_err(|e| format!("the KPIs cannot be kept: {e}"))?;
    log.line(
        "info",
        "kpi",
        &format!(
            "read {} records file(s), {} samples and {} CloudWatch log lines{}",
            gathered.records_files.len(),
            gathered.samples,
            gathered.log_lines,
            kpis.network
                .as_deref()
                .map(|n| format!(" of network `{n}`"))
                .unwrap_or_default()
        ),
    );
    for line in kpis.table().lines() {
        log.line("info", "kpi", line);
    }
    let mut report_file = None;
    if args.report.unwrap_or(true) {
        let path = super::results_path(&reports_dir, &ctx, "html");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        }
        std::fs::write(&path, kpi::report::html(&kpis)).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        log.line("info", "kpi", &format!("report: {}", path.display()));
        report_file = Some(path.display().to_string());
    }
    for regression in &kpis.regressions {
        log.line("warning", "kpi", &format!("regression: {}", regression.text));
    }
    let mut value = serde_json::to_value(kpis.headline()).map_err(|e| e.to_string())?;
    value["report_file"] = serde_json::json!(report_file);
    if args.on_regression.unwrap_or_default() == OnRegression::Fail && !kpis.regressions.is_empty() {
        return Err(format!(
            "{} regression(s) against the last runs: {}",
            kpis.regressions.len(),
            kpis.regressions
                .iter()
                .map(|r| r.kpi.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(value)
}
