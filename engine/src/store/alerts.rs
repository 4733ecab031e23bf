//! Alerts raised by node logs: one row per (network, node, level, pattern) with how often it was seen and
//! when first and last. Writers add counts (an upsert), so a monitor sends only what it saw since its last
//! batch.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_micros, micros, Store};
use crate::Result;

/// An alert: a WARN or ERROR pattern of one node.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeAlert {
    pub network: String,
    pub node: String,
    /// `warn` or `error`.
    pub level: String,
    /// The message with its variable parts blanked.
    pub pattern: String,
    /// One line of this pattern as written (the first one stored).
    pub message: String,
    pub count: i64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
}

impl Store {
    /// Adds `alerts` (counts since the writer's last batch): new patterns are inserted, known ones get the count
    /// added and their last time moved. One transaction.
    pub async fn add_alerts(&self, alerts: &[NodeAlert]) -> Result<()> {
        if alerts.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for alert in alerts {
            sqlx::query(
                "INSERT INTO node_alert (network, node, level, pattern, message, count, first_at, last_at, run_id, task_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (network, node, level, pattern) DO UPDATE SET \
                   count = node_alert.count + excluded.count, \
                   first_at = CASE WHEN excluded.first_at < node_alert.first_at THEN excluded.first_at ELSE node_alert.first_at END, \
                   last_at = CASE WHEN excluded.last_at > node_alert.last_at THEN excluded.last_at ELSE node_alert.last_at END",
            )
            .bind(alert.network.as_str())
            .bind(alert.node.as_str())
            .bind(alert.level.as_str())
            .bind(alert.pattern.as_str())
            .bind(alert.message.as_str())
            .bind(alert.count)
            .bind(micros(alert.first_at))
            .bind(micros(alert.last_at))
            .bind(alert.run_id.clone())
            .bind(alert.task_id.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The alerts of `network`, most recent first (at most `limit`).
    pub async fn alerts(&self, network: &str, limit: u32) -> Result<Vec<NodeAlert>> {
        let rows = sqlx::query(&format!(
            "SELECT network, node, level, pattern, message, count, first_at, last_at, run_id, task_id \
             FROM node_alert WHERE network = $1 ORDER BY last_at DESC, node, pattern LIMIT {limit}"
        ))
        .bind(network)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(NodeAlert {
                    network: row.try_get("network")?,
                    node: row.try_get("node")?,
                    level: row.try_get("level")?,
                    pattern: row.try_get("pattern")?,
                    message: row.try_get("message")?,
                    count: row.try_get("count")?,
                    first_at: from_micros(row.try_get("first_at")?),
                    last_at: from_micros(row.try_get("last_at")?),
                    run_id: row.try_get("run_id")?,
                    task_id: row.try_get("task_id")?,
                })
            })
            .collect()
    }
}
