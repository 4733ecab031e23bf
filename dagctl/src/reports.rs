//! KPI reports for the web server (`web::reports::RunReports`) and `dagctl kpi`: a run's KPIs from the store
//! and its load tests' records files (`chain::kpi`), judged against its DAG's earlier runs.

use std::sync::Arc;

use chain::kpi::{self, Capacity, Kpis, Options, RunInfo};
use chain::registry::KpiStore;
use engine::store::{RunRow, Store};
use web::reports::{BoxFuture, DagTrend, RunReport, RunReports};

/// A run's identity for the KPIs.
pub fn run_info(run: &RunRow) -> RunInfo {
    RunInfo {
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        state: run.state.as_str().to_string(),
        start: run.start_date,
        end: run.end_date,
    }
}

/// The KPIs of `run`, with the trend of the runs of its DAG whose KPIs were kept before it ended.
pub async fn compute(store: &Store, run: &RunRow, options: &Options) -> Result<Kpis, String> {
    let xcoms = store.xcoms_of_run(run.id).await.map_err(|e| e.to_string())?;
    let (kpis, _) = kpi::gather::gather(store, run_info(run), &xcoms, options).await?;
    let history = store
        .kpi_history(&run.dag_id, &run.run_id, kpi::trend::WINDOW as u32)
        .await
        .map_err(|e| format!("cannot read the earlier runs' KPIs: {e}"))?;
    let until = run.end_date.unwrap_or_else(chrono::Utc::now);
    Ok(kpis.with_history(history.into_iter().filter(|p| p.computed_at <= until).collect()))
}

/// Reports over the engine's store, nodes' hosts taken to be this one (the local backend's).
pub struct KpiReports {
    pub store: Store,
}

impl KpiReports {
    pub fn new(store: Store) -> Arc<KpiReports> {
        Arc::new(KpiReports { store })
    }
}

impl RunReports for KpiReports {
    fn run_report<'a>(&'a self, dag_id: &'a str, run_id: &'a str) -> BoxFuture<'a, Result<RunReport, String>> {
        Box::pin(async move {
            let run = self.store.get_run(dag_id, run_id).await.map_err(|e| e.to_string())?;
            let options = Options {
                capacity: Capacity::of_this_host(),
                ..Default::default()
            };
            let kpis = compute(&self.store, &run, &options).await?;
            Ok(RunReport {
                json: serde_json::to_value(&kpis).map_err(|e| e.to_string())?,
                html: kpi::report::html(&kpis),
            })
        })
    }

    fn dag_trend<'a>(&'a self, dag_id: &'a str) -> BoxFuture<'a, Result<DagTrend, String>> {
        Box::pin(async move {
            let rows = self.store.dag_kpis(dag_id, None, 30).await.map_err(|e| e.to_string())?;
            let points = kpi::trend::points_of(
                rows.into_iter()
                    .filter_map(|row| Some((row.run_id, row.computed_at, serde_json::from_str(&row.kpis).ok()?))),
            );
            // The newest run against the ones before it.
            let regressions = match points.split_first() {
                Some((newest, earlier)) => kpi::trend::regressions(&newest.values, earlier),
                None => Vec::new(),
            };
            let mut oldest_first = points;
            oldest_first.reverse();
            Ok(DagTrend {
                json: serde_json::json!({"dag_id": dag_id, "runs": oldest_first, "regressions": regressions}),
                html: kpi::report::trend_html(dag_id, &oldest_first, &regressions),
            })
        })
    }
}
