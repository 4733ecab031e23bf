//! The KPIs computed for a run (by `chain.log_etl`), kept per (DAG, run, task) as JSON text: a run's report and
//! a DAG's trend across runs read them. The engine does not look inside.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_micros, micros, Store};
use crate::Result;

/// The KPIs one task computed for its run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunKpiRow {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub computed_at: DateTime<Utc>,
    /// JSON text.
    pub kpis: String,
}

impl Store {
    /// Keeps `kpis` for (dag, run, task), replacing what that task stored before.
    pub async fn put_run_kpis(&self, row: &RunKpiRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO run_kpi (dag_id, run_id, task_id, computed_at, kpis) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (dag_id, run_id, task_id) DO UPDATE SET computed_at = excluded.computed_at, kpis = excluded.kpis",
        )
        .bind(row.dag_id.as_str())
        .bind(row.run_id.as_str())
        .bind(row.task_id.as_str())
        .bind(micros(row.computed_at))
        .bind(row.kpis.as_str())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The newest KPIs of each of `dag_id`'s runs, newest first (at most `limit` runs), without `except_run`.
    pub async fn dag_kpis(&self, dag_id: &str, except_run: Option<&str>, limit: u32) -> Result<Vec<RunKpiRow>> {
        let rows = sqlx::query(&format!(
            "SELECT k.dag_id, k.run_id, k.task_id, k.computed_at, k.kpis FROM run_kpi k \
             WHERE k.dag_id = $1 AND k.run_id <> $2 AND k.computed_at = \
               (SELECT MAX(l.computed_at) FROM run_kpi l WHERE l.dag_id = k.dag_id AND l.run_id = k.run_id) \
             ORDER BY k.computed_at DESC, k.run_id LIMIT {}",
            limit.clamp(1, 10_000)
        ))
        .bind(dag_id)
        .bind(except_run.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_of).collect()
    }

    /// The newest KPIs stored for one run.
    pub async fn run_kpis(&self, dag_id: &str, run_id: &str) -> Result<Option<RunKpiRow>> {
        let row = sqlx::query(
            "SELECT dag_id, run_id, task_id, computed_at, kpis FROM run_kpi WHERE dag_id = $1 AND run_id = $2 \
             ORDER BY computed_at DESC LIMIT 1",
        )
        .bind(dag_id)
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_of).transpose()
    }
}

fn row_of(row: &sqlx::any::AnyRow) -> Result<RunKpiRow> {
    Ok(RunKpiRow {
        dag_id: row.try_get("dag_id")?,
        run_id: row.try_get("run_id")?,
        task_id: row.try_get("task_id")?,
        computed_at: from_micros(row.try_get("computed_at")?),
        kpis: row.try_get("kpis")?,
    })
}
