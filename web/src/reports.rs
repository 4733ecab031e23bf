//! A run's KPIs and report, and a DAG's KPI trend, for the API and the UI. This crate knows nothing of
//! blockchains: the binary hands in a [`RunReports`] that computes them (`chain::kpi`) from the store.

use std::future::Future;
use std::pin::Pin;

/// A future that may borrow its arguments.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A run's KPIs: as JSON, and as the self-contained HTML report.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub json: serde_json::Value,
    pub html: String,
}

/// A DAG's KPIs across runs: as JSON (`{dag_id, runs: [{run_id, computed_at, values}], regressions}`), and as an
/// HTML page of charts.
#[derive(Debug, Clone)]
pub struct DagTrend {
    pub json: serde_json::Value,
    pub html: String,
}

/// What computes reports. Errors are messages for a 500.
pub trait RunReports: Send + Sync {
    /// The KPIs of a run that exists (computed now, so a running run's are live).
    fn run_report<'a>(&'a self, dag_id: &'a str, run_id: &'a str) -> BoxFuture<'a, Result<RunReport, String>>;

    /// The KPI trend of a DAG that exists, from the KPIs its runs kept.
    fn dag_trend<'a>(&'a self, dag_id: &'a str) -> BoxFuture<'a, Result<DagTrend, String>>;
}
