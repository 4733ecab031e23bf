//! Networks that operators deployed: a named record that outlives the task that made it.
//!
//! The engine keeps the network spec and the per-node data as opaque JSON text; only the `chain` crate reads
//! them. What the engine understands is the status, the owning DAG run (for the TTL) and the times.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::misc::log_event;
use super::{micros, time, Store};
use crate::{Error, Result};

/// Statuses of a network record. `removed` and `failed` mean nothing runs any more.
pub const NETWORK_STATUSES: &[&str] = &["starting", "running", "stopping", "removed", "failed"];

/// Statuses whose processes may still run.
pub const ACTIVE_NETWORK_STATUSES: &[&str] = &["starting", "running", "stopping"];

/// A network as recorded in the store.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkRow {
    pub name: String,
    /// Which backend runs it (`local`, ...).
    pub backend: String,
    /// The machine whose processes make up the network.
    pub host: String,
    pub status: String,
    /// The network spec, JSON text.
    pub spec: String,
    /// Nodes with endpoints and processes, JSON text written by the backend.
    pub nodes: String,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    /// Seconds after the owning run ended that the network is torn down; none: kept until torn down.
    pub ttl_seconds: Option<i64>,
    /// Why the network failed or was removed.
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A network about to be deployed.
#[derive(Debug, Clone)]
pub struct NewNetwork<'a> {
    pub name: &'a str,
    pub backend: &'a str,
    pub host: &'a str,
    pub spec: &'a str,
    pub dag_id: Option<&'a str>,
    pub run_id: Option<&'a str>,
    pub task_id: Option<&'a str>,
    pub ttl_seconds: Option<i64>,
}

const COLUMNS: &str =
    "name, backend, host, status, spec, nodes, dag_id, run_id, task_id, ttl_seconds, message, created_at, updated_at";

fn row_to_network(row: &AnyRow) -> Result<NetworkRow> {
    Ok(NetworkRow {
        name: row.try_get("name")?,
        backend: row.try_get("backend")?,
        host: row.try_get("host")?,
        status: row.try_get("status")?,
        spec: row.try_get("spec")?,
        nodes: row.try_get("nodes")?,
        dag_id: row.try_get("dag_id")?,
        run_id: row.try_get("run_id")?,
        task_id: row.try_get("task_id")?,
        ttl_seconds: row.try_get("ttl_seconds")?,
        message: row.try_get("message")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

fn check_status(status: &str) -> Result<()> {
    if NETWORK_STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "unknown network status `{status}`; expected one of {}",
            NETWORK_STATUSES.join(", ")
        )))
    }
}

impl Store {
    /// Records a new network in status `starting`. A name held by a network that still runs is a conflict; a
    /// name whose network was removed or failed is reused.
    pub async fn claim_network(&self, new: &NewNetwork<'_>, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        let existing = sqlx::query(&format!(
            "SELECT status FROM network WHERE name = $1{}",
            self.skip_locked()
        ))
        .bind(new.name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let status: String = row.try_get(0)?;
            if ACTIVE_NETWORK_STATUSES.contains(&status.as_str()) {
                return Err(Error::Conflict(format!(
                    "network `{}` already exists and is {status}; tear it down first (`dagctl net down {}`)",
                    new.name, new.name
                )));
            }
            sqlx::query("DELETE FROM network WHERE name = $1")
                .bind(new.name)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(&format!(
            "INSERT INTO network ({COLUMNS}) VALUES ($1, $2, $3, 'starting', $4, '[]', $5, $6, $7, $8, NULL, $9, $9)"
        ))
        .bind(new.name)
        .bind(new.backend)
        .bind(new.host)
        .bind(new.spec)
        .bind(new.dag_id.map(str::to_string))
        .bind(new.run_id.map(str::to_string))
        .bind(new.task_id.map(str::to_string))
        .bind(new.ttl_seconds)
        .bind(micros(now))
        .execute(&mut *tx)
        .await?;
        log_event(
            &mut tx,
            "network_claim",
            new.dag_id,
            new.run_id,
            new.task_id,
            None,
            Some(new.name),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the nodes JSON of a network (e.g. once its processes started).
    pub async fn set_network_nodes(&self, name: &str, nodes: &str, now: DateTime<Utc>) -> Result<()> {
        let result = sqlx::query("UPDATE network SET nodes = $1, updated_at = $2 WHERE name = $3")
            .bind(nodes)
            .bind(micros(now))
            .bind(name)
            .execute(&self.writer)
            .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound(format!("network `{name}`")));
        }
        Ok(())
    }

    /// Moves a network to `to` if its status is one of `from`; returns whether it moved. Two reapers or a
    /// reaper and a teardown therefore never both act on one network.
    pub async fn transition_network(
        &self,
        name: &str,
        from: &[&str],
        to: &str,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        check_status(to)?;
        for status in from {
            check_status(status)?;
        }
        let mut tx = self.begin().await?;
        let placeholders = super::placeholders(5, from.len());
        let sql = format!(
            "UPDATE network SET status = $1, message = COALESCE($2, message), updated_at = $3 WHERE name = $4 AND status IN ({placeholders})"
        );
        let mut query = sqlx::query(&sql)
            .bind(to)
            .bind(message.map(str::to_string))
            .bind(micros(now))
            .bind(name);
        for status in from {
            query = query.bind(*status);
        }
        let moved = query.execute(&mut *tx).await?.rows_affected() > 0;
        if moved {
            log_event(&mut tx, &format!("network_{to}"), None, None, None, None, Some(name)).await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    pub async fn get_network(&self, name: &str) -> Result<NetworkRow> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM network WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("network `{name}`")))?;
        row_to_network(&row)
    }

    /// Networks by name; with `include_gone` also the removed and failed ones.
    pub async fn list_networks(&self, include_gone: bool) -> Result<Vec<NetworkRow>> {
        let filter = if include_gone {
            ""
        } else {
            " WHERE status IN ('starting', 'running', 'stopping')"
        };
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM network{filter} ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_network).collect()
    }

    /// Running networks whose owning run ended (or no longer exists) more than their TTL before `now`.
    pub async fn networks_past_ttl(&self, now: DateTime<Utc>) -> Result<Vec<NetworkRow>> {
        let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("n.{c}")).collect();
        let rows = sqlx::query(&format!(
            "SELECT {} FROM network n LEFT JOIN dag_run r ON r.dag_id = n.dag_id AND r.run_id = n.run_id \
             WHERE n.status = 'running' AND n.ttl_seconds IS NOT NULL AND n.run_id IS NOT NULL \
             AND (r.id IS NULL OR (r.state IN ('success', 'failed') AND r.end_date IS NOT NULL AND r.end_date + n.ttl_seconds * 1000000 <= $1)) \
             ORDER BY n.name",
            columns.join(", ")
        ))
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_network).collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::each_backend;
    use crate::operators::OperatorRegistry;
    use crate::parse::parse_text;
    use crate::state::RunState;
    use crate::store::runs::{NewRun, RunType};
    use crate::testing::TestDb;

    fn new_network<'a>(name: &'a str, run_id: Option<&'a str>) -> NewNetwork<'a> {
        NewNetwork {
            name,
            backend: "local",
            host: "here",
            spec: "{\"name\":\"n\"}",
            dag_id: run_id.map(|_| "d"),
            run_id,
            task_id: run_id.map(|_| "deploy"),
            ttl_seconds: Some(60),
        }
    }

    async fn networks_claim_transition_and_ttl(db: TestDb) {
        let store = &db.store;
        let now = Utc::now();
        store.claim_network(&new_network("a", None), now).await.unwrap();
        let err = store.claim_network(&new_network("a", None), now).await.unwrap_err();
        assert!(
            matches!(err, Error::Conflict(ref m) if m.contains("already exists")),
            "{err}"
        );
        store.set_network_nodes("a", "[{\"pid\":1}]", now).await.unwrap();
        assert!(store
            .transition_network("a", &["starting"], "running", None, now)
            .await
            .unwrap());
        assert!(
            !store
                .transition_network("a", &["starting"], "failed", Some("x"), now)
                .await
                .unwrap(),
            "compare-and-set"
        );
        let row = store.get_network("a").await.unwrap();
        assert_eq!(
            (row.status.as_str(), row.nodes.as_str(), row.backend.as_str()),
            ("running", "[{\"pid\":1}]", "local")
        );
        assert!(store
            .transition_network("a", &["running"], "nope", None, now)
            .await
            .is_err());
        assert!(store
            .transition_network("a", &["running"], "removed", Some("torn down"), now)
            .await
            .unwrap());
        assert!(store.list_networks(false).await.unwrap().is_empty());
        assert_eq!(store.list_networks(true).await.unwrap().len(), 1);
        // A removed network's name can be used again.
        store.claim_network(&new_network("a", None), now).await.unwrap();
        assert_eq!(store.get_network("a").await.unwrap().message, None);
        assert!(matches!(store.get_network("zz").await, Err(Error::NotFound(_))));

        // TTL: owned by a run that is still going, then ended.
        let dag = parse_text(
            "t.yml",
            "d:\n  tasks: {deploy: {operator: empty}}\n",
            &[],
            &OperatorRegistry::builtin(),
        )
        .dags
        .remove(0);
        store.put_dag(&dag, false).await.unwrap();
        let run = store
            .create_run(NewRun {
                spec: &dag,
                run_id: Some("r1".into()),
                run_type: RunType::Manual,
                logical_date: None,
                data_interval: None,
                run_after: now,
                conf: Default::default(),
                triggered_by: "test".into(),
                triggering_user: None,
                note: None,
            })
            .await
            .unwrap();
        store
            .claim_network(&new_network("owned", Some("r1")), now)
            .await
            .unwrap();
        store
            .transition_network("owned", &["starting"], "running", None, now)
            .await
            .unwrap();
        store
            .claim_network(&new_network("orphan", Some("gone-run")), now)
            .await
            .unwrap();
        store
            .transition_network("orphan", &["starting"], "running", None, now)
            .await
            .unwrap();
        let due: Vec<String> = store
            .networks_past_ttl(now)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(due, vec!["orphan"], "a running run keeps its network");
        sqlx::query("UPDATE dag_run SET state = $1, end_date = $2 WHERE id = $3")
            .bind(RunState::Success.to_string())
            .bind(micros(now))
            .bind(run.id)
            .execute(&store.writer)
            .await
            .unwrap();
        let due: Vec<String> = store
            .networks_past_ttl(now + Duration::seconds(59))
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(due, vec!["orphan"], "within the TTL");
        let due: Vec<String> = store
            .networks_past_ttl(now + Duration::seconds(61))
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(due, vec!["orphan", "owned"]);
    }

    each_backend!(networks_claim_transition_and_ttl);
}
