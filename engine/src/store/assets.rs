//! Assets as stored: the assets DAGs name (registered with each new DAG version, with which DAGs consume and
//! which tasks produce them), their events (from a producing task's success or from the API), the queue of
//! assets updated since each consuming DAG's last asset-triggered run, and the run each queue became.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::runs::create::insert_run;
use super::runs::{NewRun, RunRow};
use super::{micros, time, Change, Store};
use crate::assets::AssetCondition;
use crate::spec::DagSpec;
use crate::timetable::Schedule;
use crate::{Error, Result};

/// An asset.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetRow {
    pub id: i64,
    pub uri: String,
    pub name: String,
    pub group: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A DAG scheduled by an asset (`task_id` None) or a task updating it.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetRefRow {
    pub asset_id: i64,
    pub dag_id: String,
    pub task_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A run an asset event went into.
#[derive(Debug, Clone)]
pub struct EventRun {
    pub run: RunRow,
    /// Whether this event was the run's most recent one (the one that triggered it).
    pub triggering: bool,
}

/// An asset event.
#[derive(Debug, Clone)]
pub struct AssetEventRow {
    pub id: i64,
    pub asset_id: i64,
    pub uri: String,
    pub name: String,
    pub group: String,
    pub timestamp: DateTime<Utc>,
    pub source_dag_id: Option<String>,
    pub source_task_id: Option<String>,
    pub source_run_id: Option<String>,
    pub source_map_index: i64,
    pub extra: Option<serde_json::Value>,
    pub created_runs: Vec<EventRun>,
}

/// An event to record: for the asset with this URI (or id), from a task or from the API.
#[derive(Debug, Clone, Default)]
pub struct NewAssetEvent {
    pub asset_id: Option<i64>,
    pub uri: Option<String>,
    pub source_dag_id: Option<String>,
    pub source_task_id: Option<String>,
    pub source_run_id: Option<String>,
    /// The mapped task instance it came from (None: -1, not mapped or from the API).
    pub source_map_index: Option<i64>,
    pub extra: Option<serde_json::Value>,
    pub at: DateTime<Utc>,
}

/// Filters of `GET /api/v2/assets/events`.
#[derive(Debug, Clone, Default)]
pub struct AssetEventFilter {
    pub asset_id: Option<i64>,
    pub source_dag_id: Option<String>,
    pub source_task_id: Option<String>,
    pub source_run_id: Option<String>,
    /// Events at or after (`after_strict`: after) this time.
    pub after: Option<DateTime<Utc>>,
    pub after_strict: bool,
    /// Events at or before (`before_strict`: before) this time.
    pub before: Option<DateTime<Utc>>,
    pub before_strict: bool,
    /// One event only.
    pub event_id: Option<i64>,
    /// Only the events that went into this run.
    pub run_pk: Option<i64>,
    /// SQL LIKE over the asset's name, case-insensitive (Airflow's `name_pattern`).
    pub name_pattern: Option<String>,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

fn asset_from_row(row: &AnyRow) -> Result<AssetRow> {
    Ok(AssetRow {
        id: row.try_get("id")?,
        uri: row.try_get("uri")?,
        name: row.try_get("name")?,
        group: row.try_get("group_name")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

/// Registers `uris` as assets (those not yet known) and returns their ids by URI.
async fn ensure_assets(
    tx: &mut Transaction<'static, Any>,
    uris: &[&str],
    now: DateTime<Utc>,
) -> Result<HashMap<String, i64>> {
    let mut ids = HashMap::new();
    for uri in uris {
        sqlx::query(
            "INSERT INTO asset (uri, name, group_name, created_at, updated_at) VALUES ($1, $1, 'asset', $2, $2) \
             ON CONFLICT (uri) DO NOTHING",
        )
        .bind(*uri)
        .bind(micros(now))
        .execute(&mut **tx)
        .await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM asset WHERE uri = $1")
            .bind(*uri)
            .fetch_one(&mut **tx)
            .await?;
        ids.insert(uri.to_string(), id);
    }
    Ok(ids)
}

/// Makes the store's record of which assets `spec` is scheduled by and which its tasks update match it (with
/// each sync: a DAG back to an earlier version, or defined again after it went stale, gets its references
/// back), and drops queued updates of assets it is no longer scheduled by.
pub(crate) async fn sync_references(
    tx: &mut Transaction<'static, Any>,
    spec: &DagSpec,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut refs: Vec<(&str, &str)> = Vec::new();
    if let Schedule::Assets { condition } = &spec.schedule {
        refs.extend(condition.uris().into_iter().map(|uri| (uri, "")));
    }
    for task in &spec.tasks {
        refs.extend(task.outlets.iter().map(|uri| (uri.as_str(), task.task_id.as_str())));
    }
    let uris: Vec<&str> = refs
        .iter()
        .map(|(u, _)| *u)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let ids = ensure_assets(tx, &uris, now).await?;
    let wanted: HashSet<(i64, String)> = refs.iter().map(|(uri, task)| (ids[*uri], task.to_string())).collect();
    let stored: Vec<(i64, String)> = sqlx::query_as("SELECT asset_id, task_id FROM asset_reference WHERE dag_id = $1")
        .bind(&spec.dag_id)
        .fetch_all(&mut **tx)
        .await?;
    for (asset_id, task_id) in stored.iter().filter(|r| !wanted.contains(*r)) {
        sqlx::query("DELETE FROM asset_reference WHERE asset_id = $1 AND dag_id = $2 AND task_id = $3")
            .bind(*asset_id)
            .bind(&spec.dag_id)
            .bind(task_id)
            .execute(&mut **tx)
            .await?;
        if task_id.is_empty() {
            sqlx::query("DELETE FROM asset_queue WHERE asset_id = $1 AND dag_id = $2")
                .bind(*asset_id)
                .bind(&spec.dag_id)
                .execute(&mut **tx)
                .await?;
        }
    }
    let stored: HashSet<(i64, String)> = stored.into_iter().collect();
    for (asset_id, task_id) in wanted.iter().filter(|r| !stored.contains(*r)) {
        sqlx::query(
            "INSERT INTO asset_reference (asset_id, dag_id, task_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (asset_id, dag_id, task_id) DO NOTHING",
        )
        .bind(*asset_id)
        .bind(&spec.dag_id)
        .bind(task_id)
        .bind(micros(now))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Forgets what a DAG that no file defines any more consumes and produces.
pub(crate) async fn drop_references(tx: &mut Transaction<'static, Any>, dag_id: &str) -> Result<()> {
    for sql in [
        "DELETE FROM asset_reference WHERE dag_id = $1",
        "DELETE FROM asset_queue WHERE dag_id = $1",
    ] {
        sqlx::query(sql).bind(dag_id).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Records an asset event and queues it for every DAG scheduled by the asset (a DAG already queued keeps the
/// time it was first queued, so every event since then goes into its next run). Returns the event's id.
pub(crate) async fn record_event(tx: &mut Transaction<'static, Any>, event: &NewAssetEvent) -> Result<i64> {
    let asset_id = match (event.asset_id, &event.uri) {
        (Some(id), _) => {
            let known: Option<i64> = sqlx::query_scalar("SELECT id FROM asset WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?;
            known.ok_or_else(|| Error::NotFound(format!("asset {id}")))?
        }
        (None, Some(uri)) => ensure_assets(tx, &[uri.as_str()], event.at).await?[uri.as_str()],
        (None, None) => return Err(Error::invalid("an asset event needs an asset")),
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO asset_event (asset_id, ts, source_dag_id, source_task_id, source_run_id, source_map_index, extra) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(asset_id)
    .bind(micros(event.at))
    .bind(event.source_dag_id.clone())
    .bind(event.source_task_id.clone())
    .bind(event.source_run_id.clone())
    .bind(event.source_map_index.unwrap_or(crate::mapping::UNMAPPED))
    .bind(event.extra.as_ref().map(|e| e.to_string()))
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO asset_queue (asset_id, dag_id, created_at, first_event_id) \
         SELECT asset_id, dag_id, $2, $3 FROM asset_reference WHERE asset_id = $1 AND task_id = '' \
         ON CONFLICT (asset_id, dag_id) DO NOTHING",
    )
    .bind(asset_id)
    .bind(micros(event.at))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

impl Store {
    pub async fn list_assets(&self) -> Result<Vec<AssetRow>> {
        sqlx::query("SELECT id, uri, name, group_name, created_at, updated_at FROM asset ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(asset_from_row)
            .collect()
    }

    pub async fn get_asset(&self, id: i64) -> Result<AssetRow> {
        let row = sqlx::query("SELECT id, uri, name, group_name, created_at, updated_at FROM asset WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| asset_from_row(&r))
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("asset {id}")))
    }

    /// Which DAGs consume and which tasks produce which assets.
    pub async fn asset_references(&self) -> Result<Vec<AssetRefRow>> {
        sqlx::query("SELECT asset_id, dag_id, task_id, created_at FROM asset_reference ORDER BY dag_id, task_id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let task_id: String = row.try_get(2)?;
                Ok(AssetRefRow {
                    asset_id: row.try_get(0)?,
                    dag_id: row.try_get(1)?,
                    task_id: (!task_id.is_empty()).then_some(task_id),
                    created_at: time(row, "created_at")?,
                })
            })
            .collect()
    }

    /// The newest event of each asset: (event id, time) by asset id.
    pub async fn last_asset_events(&self) -> Result<HashMap<i64, (i64, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT e.asset_id, e.id, e.ts FROM asset_event e \
             WHERE e.id = (SELECT MAX(id) FROM asset_event x WHERE x.asset_id = e.asset_id)",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, (row.try_get(1)?, super::from_micros(row.try_get(2)?)))))
            .collect()
    }

    /// Records an event (from the API) and queues it for the DAGs scheduled by its asset.
    pub async fn create_asset_event(&self, event: &NewAssetEvent, user: Option<&str>) -> Result<AssetEventRow> {
        let mut tx = self.begin().await?;
        let id = record_event(&mut tx, event).await?;
        super::misc::log_event(&mut tx, "asset_event", None, None, None, user, Some(&id.to_string())).await?;
        tx.commit().await?;
        let (mut events, _) = self
            .asset_events(&AssetEventFilter {
                event_id: Some(id),
                limit: 1,
                ..Default::default()
            })
            .await?;
        events.pop().ok_or_else(|| Error::NotFound(format!("asset event {id}")))
    }

    /// One page of asset events by `filter`, and how many match in all.
    pub async fn asset_events(&self, filter: &AssetEventFilter) -> Result<(Vec<AssetEventRow>, i64)> {
        let mut clauses = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        if let Some(id) = filter.asset_id {
            clauses.push(format!("e.asset_id = {id}"));
        }
        for (column, value) in [
            ("e.source_dag_id", &filter.source_dag_id),
            ("e.source_task_id", &filter.source_task_id),
            ("e.source_run_id", &filter.source_run_id),
        ] {
            if let Some(value) = value {
                binds.push(value.clone());
                clauses.push(format!("{column} = ${}", binds.len()));
            }
        }
        if let Some(pattern) = &filter.name_pattern {
            binds.push(format!("%{pattern}%"));
            clauses.push(format!("LOWER(a.name) LIKE LOWER(${})", binds.len()));
        }
        if let Some(after) = filter.after {
            let op = if filter.after_strict { ">" } else { ">=" };
            clauses.push(format!("e.ts {op} {}", micros(after)));
        }
        if let Some(before) = filter.before {
            let op = if filter.before_strict { "<" } else { "<=" };
            clauses.push(format!("e.ts {op} {}", micros(before)));
        }
        if let Some(run_pk) = filter.run_pk {
            clauses.push(format!(
                "e.id IN (SELECT event_id FROM asset_run_event WHERE run_pk = {run_pk})"
            ));
        }
        if let Some(id) = filter.event_id {
            clauses.push(format!("e.id = {id}"));
        }
        let where_clause = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let order = if filter.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT e.id, e.asset_id, a.uri, a.name, a.group_name, e.ts, e.source_dag_id, e.source_task_id, \
             e.source_run_id, e.source_map_index, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id \
             {where_clause} ORDER BY e.id {order} LIMIT {} OFFSET {}",
            filter.limit.clamp(0, 10_000),
            filter.offset.max(0)
        );
        let mut query = sqlx::query(&sql);
        for value in &binds {
            query = query.bind(value.clone());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let count_sql = format!("SELECT COUNT(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id {where_clause}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for value in &binds {
            count = count.bind(value.clone());
        }
        let total = count.fetch_one(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get(0)?;
            let extra: Option<String> = row.try_get(10)?;
            out.push(AssetEventRow {
                id,
                asset_id: row.try_get(1)?,
                uri: row.try_get(2)?,
                name: row.try_get(3)?,
                group: row.try_get(4)?,
                timestamp: super::from_micros(row.try_get(5)?),
                source_dag_id: row.try_get(6)?,
                source_task_id: row.try_get(7)?,
                source_run_id: row.try_get(8)?,
                source_map_index: row.try_get(9)?,
                extra: extra.and_then(|e| serde_json::from_str(&e).ok()),
                created_runs: Vec::new(),
            });
        }
        let ids: Vec<i64> = out.iter().map(|e| e.id).collect();
        let mut runs = self.runs_of_events(&ids).await?;
        for event in &mut out {
            event.created_runs = runs.remove(&event.id).unwrap_or_default();
        }
        Ok((out, total))
    }

    /// The runs each of `event_ids` went into, one query per chunk of ids.
    async fn runs_of_events(&self, event_ids: &[i64]) -> Result<HashMap<i64, Vec<EventRun>>> {
        let columns: Vec<String> = super::runs::RUN_COLUMNS
            .split(',')
            .map(|c| format!("r.{}", c.trim()))
            .collect();
        let mut out: HashMap<i64, Vec<EventRun>> = HashMap::new();
        for chunk in event_ids.chunks(super::CHUNK) {
            let sql = format!(
                "SELECT {}, l.event_id AS event_id, \
                 (SELECT MAX(event_id) FROM asset_run_event x WHERE x.run_pk = r.id) AS newest \
                 FROM dag_run r JOIN asset_run_event l ON l.run_pk = r.id WHERE l.event_id IN ({}) ORDER BY r.id",
                columns.join(", "),
                super::placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.pool).await? {
                let event_id: i64 = row.try_get("event_id")?;
                let newest: i64 = row.try_get("newest")?;
                out.entry(event_id).or_default().push(EventRun {
                    run: super::runs::run_from_row(&row)?,
                    triggering: newest == event_id,
                });
            }
        }
        Ok(out)
    }

    /// Creates the asset-triggered run of `spec` if its condition holds over the assets queued for it: the
    /// queue is taken in the same transaction (so two schedulers never both make the run), the run made with
    /// `new`, and every event of the queued assets since they were queued linked to it. Returns the run, or
    /// None when the condition does not hold yet (nothing is changed then).
    pub async fn trigger_by_assets(
        &self,
        spec: &DagSpec,
        condition: &AssetCondition,
        new: NewRun<'_>,
    ) -> Result<Option<RunRow>> {
        // A look without the write lock first: most of the time the condition does not hold yet.
        let queued_uris: HashSet<String> =
            sqlx::query_scalar("SELECT a.uri FROM asset_queue q JOIN asset a ON a.id = q.asset_id WHERE q.dag_id = $1")
                .bind(&spec.dag_id)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
        if !condition.met(&queued_uris) {
            return Ok(None);
        }
        let mut tx = self.begin().await?;
        let taken = sqlx::query("DELETE FROM asset_queue WHERE dag_id = $1 RETURNING asset_id, first_event_id")
            .bind(&spec.dag_id)
            .fetch_all(&mut *tx)
            .await?;
        if taken.is_empty() {
            return Ok(None);
        }
        let mut queued: Vec<(i64, i64)> = Vec::with_capacity(taken.len());
        for row in &taken {
            queued.push((row.try_get(0)?, row.try_get(1)?));
        }
        let sql = format!(
            "SELECT uri FROM asset WHERE id IN ({})",
            super::placeholders(1, queued.len())
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for (asset_id, _) in &queued {
            query = query.bind(*asset_id);
        }
        let updated: HashSet<String> = query.fetch_all(&mut *tx).await?.into_iter().collect();
        if !condition.met(&updated) {
            // Dropping the transaction puts the queue back as it was.
            return Ok(None);
        }
        let run = insert_run(&mut tx, &new).await?;
        for (asset_id, first_event) in &queued {
            sqlx::query(
                "INSERT INTO asset_run_event (run_pk, event_id) SELECT $1, id FROM asset_event \
                 WHERE asset_id = $2 AND id >= $3 ON CONFLICT (run_pk, event_id) DO NOTHING",
            )
            .bind(run.id)
            .bind(*asset_id)
            .bind(*first_event)
            .execute(&mut *tx)
            .await?;
        }
        super::misc::log_event(
            &mut tx,
            "trigger",
            Some(&run.dag_id),
            Some(&run.run_id),
            None,
            None,
            Some("asset"),
        )
        .await?;
        let changes = [Change::RunCreated(run.id)];
        self.announce(&mut tx, &changes).await?;
        tx.commit().await?;
        self.emit(&changes);
        Ok(Some(run))
    }

    /// The DAG ids with assets queued (candidates for an asset-triggered run).
    pub async fn dags_with_queued_assets(&self) -> Result<Vec<String>> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT DISTINCT dag_id FROM asset_queue ORDER BY dag_id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    /// The events that went into a run (`GET …/dagRuns/{id}/upstreamAssetEvents`).
    pub async fn asset_events_of_run(&self, run_pk: i64) -> Result<Vec<AssetEventRow>> {
        let (events, _) = self
            .asset_events(&AssetEventFilter {
                run_pk: Some(run_pk),
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        Ok(events)
    }
}
