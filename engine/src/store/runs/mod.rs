//! DAG runs: the run row and the reads of one run or of run counts. Creating runs (with their task instances)
//! is in `create`, listing and paging in `list`, starting queued runs in `start`, evaluation batches in `eval`,
//! and the changes users make (state, note) in `edits`.

pub(crate) mod create;
mod edits;
mod eval;
mod list;
mod start;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

pub use super::changes::TiChange;
pub use create::{validate_manual_run_id, NewRun, ScheduledRun};
pub use eval::{EvalBatch, Expansion, RunPlan};
pub use list::{CursorValue, RunFilter, RunOrder, TimeRange};

use super::{opt_time, placeholders, time, Store};
use crate::state::RunState;
use crate::timetable::DataInterval;
use crate::{Error, Result};

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunType {
    Scheduled,
    Manual,
    Backfill,
    AssetTriggered,
}

impl RunType {
    pub fn as_str(self) -> &'static str {
        match self {
            RunType::Scheduled => "scheduled",
            RunType::Manual => "manual",
            RunType::Backfill => "backfill",
            RunType::AssetTriggered => "asset_triggered",
        }
    }

    pub fn parse(text: &str) -> RunType {
        match text {
            "scheduled" => RunType::Scheduled,
            "backfill" => RunType::Backfill,
            "asset_triggered" => RunType::AssetTriggered,
            _ => RunType::Manual,
        }
    }

    /// Airflow's run id for a run of this type at `at`.
    pub fn run_id(self, at: DateTime<Utc>) -> String {
        // Whole seconds for interval starts, microseconds for trigger times, as Airflow writes them.
        let precision = if at.timestamp_subsec_micros() == 0 {
            SecondsFormat::Secs
        } else {
            SecondsFormat::Micros
        };
        format!("{}__{}", self.as_str(), at.to_rfc3339_opts(precision, false))
    }
}

/// A DAG run row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub run_type: RunType,
    pub state: RunState,
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub conf: serde_json::Map<String, serde_json::Value>,
    pub version_hash: String,
    pub triggered_by: String,
    pub triggering_user: Option<String>,
    pub note: Option<String>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) const RUN_COLUMNS: &str =
    "id, dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, \
     run_after, queued_at, start_date, end_date, conf, version_hash, triggered_by, triggering_user, note, updated_at";

pub(crate) fn run_from_row(row: &AnyRow) -> Result<RunRow> {
    let conf_text: String = row.try_get("conf")?;
    Ok(RunRow {
        id: row.try_get("id")?,
        dag_id: row.try_get("dag_id")?,
        run_id: row.try_get("run_id")?,
        run_type: RunType::parse(&row.try_get::<String, _>("run_type")?),
        state: row.try_get::<String, _>("state")?.parse()?,
        logical_date: opt_time(row, "logical_date")?,
        data_interval_start: opt_time(row, "data_interval_start")?,
        data_interval_end: opt_time(row, "data_interval_end")?,
        run_after: time(row, "run_after")?,
        queued_at: opt_time(row, "queued_at")?,
        start_date: opt_time(row, "start_date")?,
        end_date: opt_time(row, "end_date")?,
        conf: serde_json::from_str(&conf_text).unwrap_or_default(),
        version_hash: row.try_get("version_hash")?,
        triggered_by: row.try_get("triggered_by")?,
        triggering_user: row.try_get("triggering_user")?,
        note: row.try_get("note")?,
        updated_at: time(row, "updated_at")?,
    })
}

impl Store {
    pub async fn get_run(&self, dag_id: &str, run_id: &str) -> Result<RunRow> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM dag_run WHERE dag_id = $1 AND run_id = $2");
        let row = sqlx::query(&sql)
            .bind(dag_id)
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| run_from_row(&r))
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("dag run `{run_id}` of dag `{dag_id}`")))
    }

    pub async fn get_run_by_pk(&self, pk: i64) -> Result<RunRow> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM dag_run WHERE id = $1");
        let row = sqlx::query(&sql).bind(pk).fetch_optional(&self.pool).await?;
        row.map(|r| run_from_row(&r))
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("dag run #{pk}")))
    }

    /// Data interval of the latest scheduled run of a DAG.
    pub async fn latest_scheduled_interval(&self, dag_id: &str) -> Result<Option<DataInterval>> {
        let row = sqlx::query(
            "SELECT data_interval_start, data_interval_end FROM dag_run WHERE dag_id = $1 AND run_type = 'scheduled' \
             AND data_interval_end IS NOT NULL ORDER BY data_interval_end DESC LIMIT 1",
        )
        .bind(dag_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => match (
                opt_time(&row, "data_interval_start")?,
                opt_time(&row, "data_interval_end")?,
            ) {
                (Some(start), Some(end)) => Some(DataInterval { start, end }),
                _ => None,
            },
            None => None,
        })
    }

    /// Number of queued and running runs per DAG.
    pub async fn active_run_counts(&self) -> Result<Vec<(String, RunState, i64)>> {
        let rows = sqlx::query(
            "SELECT dag_id, state, COUNT(*) FROM dag_run WHERE state IN ('queued', 'running') GROUP BY dag_id, state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get::<String, _>(1)?.parse()?, row.try_get(2)?)))
            .collect()
    }

    /// Whether any run of `run_pks` is still unfinished.
    pub async fn runs_unfinished(&self, run_pks: &[i64]) -> Result<usize> {
        if run_pks.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "SELECT COUNT(*) FROM dag_run WHERE state IN ('queued', 'running') AND id IN ({})",
            placeholders(1, run_pks.len())
        );
        let mut query = sqlx::query(&sql);
        for pk in run_pks {
            query = query.bind(*pk);
        }
        let count: i64 = query.fetch_one(&self.pool).await?.try_get(0)?;
        Ok(count as usize)
    }
}
