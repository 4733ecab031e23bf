//! The chaos fault ledger: every part of a fault (one node paused, one peer link rerouted through a proxy) is
//! written here *before* it is applied, with how to undo it, and closed once undone. A fault whose owner process
//! died (SIGKILL of `dagctl chaos`, of a task runner or of the engine) stays open, so the next engine start,
//! or its periodic sweep, finds it and undoes it. The engine does not look inside `undo` (JSON text).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_micros, micros, Store};
use crate::Result;

/// One applied part of a fault.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChaosFaultRow {
    /// The fault's id (one per fault of a task or command).
    pub id: String,
    /// What the part touches: a node name, or a link `a|b`.
    pub part: String,
    pub network: String,
    /// `pause`, `stop`, `kill`, `link`, ...
    pub kind: String,
    /// How to undo it (JSON text, read by the chain crate).
    pub undo: String,
    /// The host and process that applied it, and the process's start time (clock ticks since boot), so a
    /// reused pid is not taken for the owner.
    pub owner_host: String,
    pub owner_pid: i64,
    pub owner_started: i64,
    #[serde(default)]
    pub dag_id: Option<String>,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub task_id: Option<String>,
    pub applied_at: DateTime<Utc>,
    #[serde(default)]
    pub undone_at: Option<DateTime<Utc>>,
    /// Why the last undo attempt failed, if it did.
    #[serde(default)]
    pub undo_error: Option<String>,
}

const COLUMNS: &str = "id, part, network, kind, undo, owner_host, owner_pid, owner_started, dag_id, run_id, task_id, \
                       applied_at, undone_at, undo_error";

impl Store {
    /// Records a part of a fault about to be applied (again, if it was: the same id and part is one row).
    pub async fn record_chaos_fault(&self, row: &ChaosFaultRow) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO chaos_fault ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, NULL) \
             ON CONFLICT (id, part) DO UPDATE SET undo = excluded.undo, applied_at = excluded.applied_at, \
             undone_at = NULL, undo_error = NULL"
        ))
        .bind(row.id.as_str())
        .bind(row.part.as_str())
        .bind(row.network.as_str())
        .bind(row.kind.as_str())
        .bind(row.undo.as_str())
        .bind(row.owner_host.as_str())
        .bind(row.owner_pid)
        .bind(row.owner_started)
        .bind(row.dag_id.clone())
        .bind(row.run_id.clone())
        .bind(row.task_id.clone())
        .bind(micros(row.applied_at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Marks a part undone (`error: None`) or notes why undoing it failed (it stays open). Whether a row changed.
    pub async fn close_chaos_fault(
        &self,
        id: &str,
        part: &str,
        at: DateTime<Utc>,
        error: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE chaos_fault SET undone_at = CASE WHEN $3 = '' THEN $4 ELSE NULL END, \
             undo_error = CASE WHEN $3 = '' THEN NULL ELSE $3 END WHERE id = $1 AND part = $2 AND undone_at IS NULL",
        )
        .bind(id)
        .bind(part)
        .bind(error.unwrap_or(""))
        .bind(micros(at))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Parts not undone yet, oldest first (of one network, or all).
    pub async fn open_chaos_faults(&self, network: Option<&str>) -> Result<Vec<ChaosFaultRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM chaos_fault WHERE undone_at IS NULL AND ($1 = '' OR network = $1) \
             ORDER BY applied_at, id, part"
        ))
        .bind(network.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_of).collect()
    }

    /// Every part of fault `id`.
    pub async fn chaos_fault(&self, id: &str) -> Result<Vec<ChaosFaultRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM chaos_fault WHERE id = $1 ORDER BY part"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_of).collect()
    }
}

fn row_of(row: &sqlx::any::AnyRow) -> Result<ChaosFaultRow> {
    Ok(ChaosFaultRow {
        id: row.try_get("id")?,
        part: row.try_get("part")?,
        network: row.try_get("network")?,
        kind: row.try_get("kind")?,
        undo: row.try_get("undo")?,
        owner_host: row.try_get("owner_host")?,
        owner_pid: row.try_get("owner_pid")?,
        owner_started: row.try_get("owner_started")?,
        dag_id: row.try_get("dag_id")?,
        run_id: row.try_get("run_id")?,
        task_id: row.try_get("task_id")?,
        applied_at: from_micros(row.try_get("applied_at")?),
        undone_at: row.try_get::<Option<i64>, _>("undone_at")?.map(from_micros),
        undo_error: row.try_get("undo_error")?,
    })
}
