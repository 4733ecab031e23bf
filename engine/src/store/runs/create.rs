//! Creating runs: a run and its task instances in one transaction; scheduled runs that give way to a run that
//! already holds their logical date; the run ids users may choose.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{run_from_row, RunRow, RunType, RUN_COLUMNS};
use crate::spec::DagSpec;
use crate::store::dags::spec_hash;
use crate::store::{micros, misc, Change, Store, CHUNK};
use crate::timetable::DataInterval;
use crate::{Error, Result};

/// What came of creating a scheduled run.
#[derive(Debug, Clone)]
pub enum ScheduledRun {
    Created(Box<RunRow>),
    /// A run already holds that logical date (or run id).
    Exists {
        run_id: String,
        run_type: RunType,
    },
}

/// Checks a run id chosen by a user: Airflow's default pattern (`^[A-Za-z0-9_.~:+-]+$`), at most 250
/// characters, not `.` or `..`, and not the `scheduled__`/`backfill__`/`asset_triggered__` prefixes the engine
/// gives its own runs.
pub fn validate_manual_run_id(run_id: &str) -> Result<()> {
    let legal = |c: char| c.is_ascii_alphanumeric() || "_.~:+-".contains(c);
    if run_id.is_empty() || run_id.len() > 250 || !run_id.chars().all(legal) || run_id == "." || run_id == ".." {
        return Err(Error::invalid(format!(
            "run id `{}` is not allowed: use 1 to 250 of A-Z a-z 0-9 _ . ~ : + -",
            run_id.escape_debug()
        )));
    }
    for reserved in ["scheduled__", "backfill__", "asset_triggered__"] {
        if run_id.starts_with(reserved) {
            return Err(Error::invalid(format!(
                "run ids starting with `{reserved}` are reserved for the scheduler"
            )));
        }
    }
    Ok(())
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub spec: &'a DagSpec,
    pub run_id: Option<String>,
    pub run_type: RunType,
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval: Option<DataInterval>,
    pub run_after: DateTime<Utc>,
    pub conf: serde_json::Map<String, serde_json::Value>,
    pub triggered_by: String,
    pub triggering_user: Option<String>,
    pub note: Option<String>,
}

impl Store {
    /// Creates a run and its task instances (state `none`) in one transaction. A run id or logical date that
    /// already exists for the DAG is a conflict, and nothing is written.
    pub async fn create_run(&self, new: NewRun<'_>) -> Result<RunRow> {
        let mut tx = self.begin().await?;
        let run = insert_run(&mut tx, &new).await?;
        misc::log_event(
            &mut tx,
            "trigger",
            Some(&run.dag_id),
            Some(&run.run_id),
            None,
            new.triggering_user.as_deref(),
            Some(&new.triggered_by),
        )
        .await?;
        let changes = [Change::RunCreated(run.id)];
        self.announce(&mut tx, &changes).await?;
        tx.commit().await?;
        self.emit(&changes);
        Ok(run)
    }

    /// Creates a scheduled run unless a run exists for its logical date: another scheduler may have made it,
    /// or a manual or backfill run took that date. Returns the run that holds the date in that case.
    pub async fn create_scheduled_run(&self, new: NewRun<'_>) -> Result<ScheduledRun> {
        let mut tx = self.begin().await?;
        let holder = |row: Option<AnyRow>| -> Result<Option<ScheduledRun>> {
            row.map(|row| {
                Ok(ScheduledRun::Exists {
                    run_id: row.try_get(0)?,
                    run_type: RunType::parse(&row.try_get::<String, _>(1)?),
                })
            })
            .transpose()
        };
        let find = "SELECT run_id, run_type FROM dag_run WHERE dag_id = $1 AND (logical_date = $2 OR run_id = $3)";
        let planned_id = new
            .run_id
            .clone()
            .unwrap_or_else(|| new.run_type.run_id(new.logical_date.unwrap_or(new.run_after)));
        let existing = sqlx::query(find)
            .bind(&new.spec.dag_id)
            .bind(new.logical_date.map(micros))
            .bind(&planned_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(found) = holder(existing)? {
            return Ok(found);
        }
        match insert_run(&mut tx, &new).await {
            Ok(run) => {
                let changes = [Change::RunCreated(run.id)];
                self.announce(&mut tx, &changes).await?;
                tx.commit().await?;
                self.emit(&changes);
                Ok(ScheduledRun::Created(Box::new(run)))
            }
            Err(Error::Conflict(_)) => {
                drop(tx);
                let existing = sqlx::query(find)
                    .bind(&new.spec.dag_id)
                    .bind(new.logical_date.map(micros))
                    .bind(&planned_id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(holder(existing)?.unwrap_or(ScheduledRun::Exists {
                    run_id: planned_id,
                    run_type: RunType::Scheduled,
                }))
            }
            Err(err) => Err(err),
        }
    }
}

pub(crate) async fn insert_run(tx: &mut Transaction<'static, Any>, new: &NewRun<'_>) -> Result<RunRow> {
    let now = Utc::now();
    let run_id = new
        .run_id
        .clone()
        .unwrap_or_else(|| new.run_type.run_id(new.logical_date.unwrap_or(new.run_after)));
    if run_id.is_empty() || run_id.len() > 250 {
        return Err(Error::invalid("run id must be 1 to 250 characters"));
    }
    let conf = serde_json::to_string(&new.conf).map_err(|err| Error::invalid(err.to_string()))?;
    let hash = spec_hash(new.spec);
    let sql = format!(
        "INSERT INTO dag_run (dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, run_after, queued_at, \
         conf, version_hash, triggered_by, triggering_user, note, needs_eval, updated_at) \
         VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $8) RETURNING {RUN_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(&new.spec.dag_id)
        .bind(&run_id)
        .bind(new.run_type.as_str())
        .bind(new.logical_date.map(micros))
        .bind(new.data_interval.map(|i| micros(i.start)))
        .bind(new.data_interval.map(|i| micros(i.end)))
        .bind(micros(new.run_after))
        .bind(micros(now))
        .bind(conf)
        .bind(&hash)
        .bind(&new.triggered_by)
        .bind(new.triggering_user.clone())
        .bind(new.note.clone())
        .fetch_one(&mut **tx)
        .await
        .map_err(|err| match Error::from(err) {
            Error::Conflict(_) => Error::Conflict(match new.logical_date {
                Some(date) if new.run_id.is_none() || run_id.contains("__") => format!(
                    "dag `{}` already has a run `{run_id}` or a run with logical date {}",
                    new.spec.dag_id,
                    date.to_rfc3339_opts(SecondsFormat::Secs, true)
                ),
                _ => format!("dag `{}` already has a run `{run_id}`", new.spec.dag_id),
            }),
            other => other,
        })?;
    let run = run_from_row(&row)?;
    for chunk in new.spec.tasks.chunks(CHUNK / 10) {
        let mut values = Vec::new();
        for i in 0..chunk.len() {
            let b = i * 10;
            values.push(format!(
                "(${}, ${}, ${}, ${}, ${}, 'none', 0, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9,
                b + 10,
                chunk.len() * 10 + 1
            ));
        }
        let sql = format!(
            "INSERT INTO task_instance (uuid, run_pk, dag_id, run_id, task_id, state, try_number, max_tries, operator, pool, pool_slots, priority_weight, updated_at) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for task in chunk {
            query = query
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(run.id)
                .bind(&run.dag_id)
                .bind(&run.run_id)
                .bind(&task.task_id)
                .bind(i64::from(task.retries))
                .bind(&task.operator)
                .bind(&task.pool)
                .bind(i64::from(task.pool_slots))
                .bind(task.effective_priority);
        }
        query = query.bind(micros(now));
        query.execute(&mut **tx).await?;
    }
    Ok(run)
}
