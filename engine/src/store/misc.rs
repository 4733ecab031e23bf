//! Pools, XCom, scheduler jobs and the audit log.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{Any, Row, Transaction};

use super::{micros, time, Store};
use crate::spec::DEFAULT_POOL;
use crate::{Error, Result};

/// A pool with its slot usage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolRow {
    pub name: String,
    pub slots: i64,
    pub description: Option<String>,
    pub include_deferred: bool,
    pub running_slots: i64,
    pub queued_slots: i64,
    pub scheduled_slots: i64,
}

impl PoolRow {
    pub fn occupied_slots(&self) -> i64 {
        self.running_slots + self.queued_slots
    }

    pub fn open_slots(&self) -> i64 {
        self.slots - self.occupied_slots()
    }
}

/// A scheduler process as recorded in the store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SchedulerJobRow {
    pub id: String,
    pub hostname: String,
    pub pid: i64,
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

/// One audit log entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub id: i64,
    pub ts: DateTime<Utc>,
    pub event: String,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub owner: Option<String>,
    pub extra: Option<String>,
}

/// A pool's name is 1 to 256 characters and its slots are not negative.
pub(crate) fn check_pool(name: &str, slots: i64) -> Result<()> {
    if name.trim().is_empty() || name.len() > 256 {
        return Err(Error::invalid("pool name must be 1 to 256 characters"));
    }
    if slots < 0 {
        return Err(Error::invalid("pool slots must be >= 0"));
    }
    Ok(())
}

fn event_from_row(row: &sqlx::any::AnyRow) -> Result<EventRow> {
    Ok(EventRow {
        id: row.try_get("id")?,
        ts: time(row, "ts")?,
        event: row.try_get("event")?,
        dag_id: row.try_get("dag_id")?,
        run_id: row.try_get("run_id")?,
        task_id: row.try_get("task_id")?,
        owner: row.try_get("owner")?,
        extra: row.try_get("extra")?,
    })
}

/// Filters for reading the audit log.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub event: Option<String>,
    pub owner: Option<String>,
    pub limit: i64,
    pub offset: i64,
    /// Oldest first when false.
    pub descending: bool,
}

/// One XCom value.
#[derive(Debug, Clone, serde::Serialize)]
pub struct XcomRow {
    pub task_id: String,
    pub map_index: i64,
    pub key: String,
    pub value: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Appends an audit entry inside the caller's transaction, so the change and its record land together.
pub(crate) async fn log_event(
    tx: &mut Transaction<'static, Any>,
    event: &str,
    dag_id: Option<&str>,
    run_id: Option<&str>,
    task_id: Option<&str>,
    owner: Option<&str>,
    extra: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO event_log (ts, event, dag_id, run_id, task_id, owner, extra) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(micros(Utc::now()))
    .bind(event)
    .bind(dag_id.map(str::to_string))
    .bind(run_id.map(str::to_string))
    .bind(task_id.map(str::to_string))
    .bind(owner.map(str::to_string))
    .bind(extra.map(str::to_string))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    pub async fn list_pools(&self) -> Result<Vec<PoolRow>> {
        let usage = sqlx::query("SELECT pool, state, CAST(SUM(pool_slots) AS BIGINT) FROM task_instance WHERE state IN ('scheduled', 'queued', 'running', 'restarting') GROUP BY pool, state")
            .fetch_all(&self.pool)
            .await?;
        let mut by_pool: HashMap<String, (i64, i64, i64)> = HashMap::new();
        for row in usage {
            let pool: String = row.try_get(0)?;
            let state: String = row.try_get(1)?;
            let slots: i64 = row.try_get::<Option<i64>, _>(2)?.unwrap_or(0);
            let entry = by_pool.entry(pool).or_default();
            match state.as_str() {
                "running" | "restarting" => entry.0 += slots,
                "queued" => entry.1 += slots,
                _ => entry.2 += slots,
            }
        }
        let rows = sqlx::query("SELECT name, slots, description, include_deferred FROM pool ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get(0)?;
                let (running, queued, scheduled) = by_pool.get(&name).copied().unwrap_or_default();
                Ok(PoolRow {
                    name,
                    slots: row.try_get(1)?,
                    description: row.try_get(2)?,
                    include_deferred: row.try_get::<i64, _>(3)? != 0,
                    running_slots: running,
                    queued_slots: queued,
                    scheduled_slots: scheduled,
                })
            })
            .collect()
    }

    /// Creates or updates a pool.
    pub async fn put_pool(&self, name: &str, slots: i64, description: Option<&str>, user: Option<&str>) -> Result<()> {
        check_pool(name, slots)?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO pool (name, slots, description) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET slots = excluded.slots, description = excluded.description",
        )
        .bind(name)
        .bind(slots)
        .bind(description.map(str::to_string))
        .execute(&mut *tx)
        .await?;
        log_event(&mut tx, "pool_put", None, None, None, user, Some(name)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_pool(&self, name: &str, user: Option<&str>) -> Result<()> {
        if name == DEFAULT_POOL {
            return Err(Error::invalid("the default pool cannot be deleted"));
        }
        let mut tx = self.begin().await?;
        let result = sqlx::query("DELETE FROM pool WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound(format!("pool `{name}`")));
        }
        log_event(&mut tx, "pool_delete", None, None, None, user, Some(name)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// All XCom values of a run, by (task id, key). A mapped task's values are one list in map_index order
    /// (Airflow's `xcom_pull` of a mapped task; instances that pushed none are left out).
    pub async fn xcoms_of_run(&self, run_pk: i64) -> Result<HashMap<(String, String), serde_json::Value>> {
        xcoms_of_run(&self.pool, run_pk).await
    }

    /// Every XCom value of a run as stored: (task id, key, map_index, value), in map_index order.
    pub async fn xcom_values_of_run(&self, run_pk: i64) -> Result<Vec<(String, String, i64, serde_json::Value)>> {
        xcom_values(&self.pool, run_pk).await
    }

    /// XCom values of one task of a run by (map_index, key): of one instance, or of all with `None`.
    pub async fn xcom_entries(&self, run_pk: i64, task_id: &str, map_index: Option<i64>) -> Result<Vec<XcomRow>> {
        let one = if map_index.is_some() { " AND map_index = $3" } else { "" };
        let sql = format!(
            "SELECT task_id, key_name, value, created_at, map_index FROM xcom WHERE run_pk = $1 AND task_id = $2{one} \
             ORDER BY map_index, key_name"
        );
        let mut query = sqlx::query(&sql).bind(run_pk).bind(task_id);
        if let Some(map_index) = map_index {
            query = query.bind(map_index);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let value: String = row.try_get(2)?;
                Ok(XcomRow {
                    task_id: row.try_get(0)?,
                    key: row.try_get(1)?,
                    map_index: row.try_get(4)?,
                    value: serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value)),
                    created_at: time(row, "created_at")?,
                })
            })
            .collect()
    }

    /// Registers a scheduler process.
    /// Records a scheduler that starts; `api_url` is where its runners reach the task execution API.
    pub async fn register_job(
        &self,
        id: &str,
        hostname: &str,
        pid: u32,
        api_url: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query("INSERT INTO scheduler_job (id, hostname, pid, state, started_at, heartbeat_at, api_url) VALUES ($1, $2, $3, 'running', $4, $4, $5)")
            .bind(id)
            .bind(hostname)
            .bind(i64::from(pid))
            .bind(micros(now))
            .bind(api_url.map(str::to_string))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// A live scheduler's heartbeat; one that another judged dead while it could not write (a database blip
    /// of its own) is running again.
    pub async fn heartbeat_job(&self, id: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE scheduler_job SET heartbeat_at = $1, state = 'running' WHERE id = $2")
            .bind(micros(now))
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn set_job_state(&self, id: &str, state: &str) -> Result<()> {
        sqlx::query("UPDATE scheduler_job SET state = $1 WHERE id = $2")
            .bind(state)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Scheduler jobs still marked running.
    pub async fn running_jobs(&self) -> Result<Vec<SchedulerJobRow>> {
        let rows = sqlx::query("SELECT id, hostname, pid, state, started_at, heartbeat_at FROM scheduler_job WHERE state = 'running' ORDER BY started_at")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SchedulerJobRow {
                    id: row.try_get(0)?,
                    hostname: row.try_get(1)?,
                    pid: row.try_get(2)?,
                    state: row.try_get(3)?,
                    started_at: time(row, "started_at")?,
                    heartbeat_at: time(row, "heartbeat_at")?,
                })
            })
            .collect()
    }

    /// The execution API addresses of the schedulers that heartbeated since `since`, newest first.
    pub async fn live_api_urls(&self, since: DateTime<Utc>) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT api_url, MAX(heartbeat_at) FROM scheduler_job WHERE state = 'running' AND api_url IS NOT NULL \
             AND heartbeat_at >= $1 GROUP BY api_url ORDER BY 2 DESC",
        )
        .bind(micros(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(row.try_get::<String, _>(0)?)).collect()
    }

    /// Latest heartbeat of any scheduler.
    pub async fn latest_scheduler_heartbeat(&self) -> Result<Option<DateTime<Utc>>> {
        let row = sqlx::query("SELECT MAX(heartbeat_at) FROM scheduler_job")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.map(super::from_micros))
    }

    /// Appends an audit entry on its own.
    pub async fn audit(
        &self,
        event: &str,
        dag_id: Option<&str>,
        run_id: Option<&str>,
        owner: Option<&str>,
        extra: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        log_event(&mut tx, event, dag_id, run_id, None, owner, extra).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Newest audit entries first.
    pub async fn events(&self, limit: i64) -> Result<Vec<EventRow>> {
        let filter = EventFilter {
            limit,
            descending: true,
            ..Default::default()
        };
        Ok(self.list_events(&filter).await?.0)
    }

    /// Audit entries matching a filter (one page), and how many match in all.
    pub async fn list_events(&self, filter: &EventFilter) -> Result<(Vec<EventRow>, i64)> {
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        for (column, value) in [
            ("dag_id", &filter.dag_id),
            ("run_id", &filter.run_id),
            ("task_id", &filter.task_id),
            ("event", &filter.event),
            ("owner", &filter.owner),
        ] {
            if let Some(value) = value {
                binds.push(value.clone());
                conditions.push(format!("{column} = ${}", binds.len()));
            }
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let order = if filter.descending { "DESC" } else { "ASC" };
        let limit = if filter.limit <= 0 { 100 } else { filter.limit };
        let sql = format!(
            "SELECT id, ts, event, dag_id, run_id, task_id, owner, extra FROM event_log {where_clause} ORDER BY id {order} LIMIT {limit} OFFSET {}",
            filter.offset.max(0)
        );
        let mut query = sqlx::query(&sql);
        for bind in &binds {
            query = query.bind(bind.clone());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let count_sql = format!("SELECT COUNT(*) FROM event_log {where_clause}");
        let mut count = sqlx::query(&count_sql);
        for bind in &binds {
            count = count.bind(bind.clone());
        }
        let total: i64 = count.fetch_one(&self.pool).await?.try_get(0)?;
        let events = rows.iter().map(event_from_row).collect::<Result<Vec<_>>>()?;
        Ok((events, total))
    }

    /// One audit entry.
    pub async fn get_event(&self, id: i64) -> Result<EventRow> {
        let sql = "SELECT id, ts, event, dag_id, run_id, task_id, owner, extra FROM event_log WHERE id = $1";
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("event log entry {id}")))?;
        event_from_row(&row)
    }

    /// A quick query that proves the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }
}

/// [`Store::xcoms_of_run`] on any connection (the scheduler reads them inside its evaluation transaction).
pub(crate) async fn xcoms_of_run<'e, E>(
    executor: E,
    run_pk: i64,
) -> Result<HashMap<(String, String), serde_json::Value>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(crate::mapping::pull_view(xcom_values(executor, run_pk).await?))
}

async fn xcom_values<'e, E>(executor: E, run_pk: i64) -> Result<Vec<(String, String, i64, serde_json::Value)>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query("SELECT task_id, key_name, map_index, value FROM xcom WHERE run_pk = $1 ORDER BY map_index")
        .bind(run_pk)
        .fetch_all(executor)
        .await?;
    rows.iter()
        .map(|row| {
            let text: String = row.try_get(3)?;
            Ok((
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
            ))
        })
        .collect()
}
