//! Time series of the nodes of a network, written by the monitor in batches: one row per (network, node, metric,
//! time), optionally tied to the DAG run and task that sampled it. Old rows are pruned by a retention setting.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{from_micros, micros, Store};
use crate::Result;

/// Rows per INSERT statement: 7 parameters each stays far below SQLite's limit on bound parameters.
const ROWS_PER_INSERT: usize = 100;

/// One sample of one metric of one node.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeSample {
    pub network: String,
    pub node: String,
    pub metric: String,
    pub at: DateTime<Utc>,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
}

/// Which samples to read: one network, optionally one metric and node, in a time window, oldest first.
#[derive(Debug, Clone, Default)]
pub struct SampleFilter<'a> {
    pub network: &'a str,
    pub metric: Option<&'a str>,
    pub node: Option<&'a str>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

/// One page of a network's samples in a time window (see [`Store::samples_page`]).
#[derive(Debug, Clone)]
pub struct SamplePage<'a> {
    pub network: &'a str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub cursor: Option<DateTime<Utc>>,
    pub skip: u32,
    pub limit: u32,
}

impl SamplePage<'_> {
    /// Moves past `samples`, the page just read; false when it was the last.
    pub fn advance(&mut self, samples: &[NodeSample]) -> bool {
        let Some(last) = samples.last() else { return false };
        let at_last = samples.iter().rev().take_while(|s| s.at == last.at).count() as u32;
        if self.cursor == Some(last.at) {
            self.skip += at_last;
        } else {
            self.cursor = Some(last.at);
            self.skip = at_last;
        }
        samples.len() as u32 >= self.limit
    }
}

fn row_to_sample(row: &AnyRow) -> Result<NodeSample> {
    Ok(NodeSample {
        network: row.try_get("network")?,
        node: row.try_get("node")?,
        metric: row.try_get("metric")?,
        at: from_micros(row.try_get("at")?),
        value: row.try_get("value")?,
        run_id: row.try_get("run_id")?,
        task_id: row.try_get("task_id")?,
    })
}

impl Store {
    /// Writes `samples` in one transaction, many rows per statement. Returns how many were written.
    pub async fn insert_samples(&self, samples: &[NodeSample]) -> Result<usize> {
        if samples.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        for chunk in samples.chunks(ROWS_PER_INSERT) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * 7;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 7
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO node_sample (network, node, metric, at, value, run_id, task_id) VALUES {}",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for sample in chunk {
                query = query
                    .bind(sample.network.as_str())
                    .bind(sample.node.as_str())
                    .bind(sample.metric.as_str())
                    .bind(micros(sample.at))
                    .bind(sample.value)
                    .bind(sample.run_id.clone())
                    .bind(sample.task_id.clone());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(samples.len())
    }

    /// Samples matching `filter`, oldest first (at most `limit`, default 10,000).
    pub async fn samples(&self, filter: &SampleFilter<'_>) -> Result<Vec<NodeSample>> {
        let mut sql = String::from(
            "SELECT network, node, metric, at, value, run_id, task_id FROM node_sample WHERE network = $1",
        );
        let mut next = 2;
        let mut clause = |sql: &mut String, condition: &str| {
            sql.push_str(&format!(" AND {condition} ${next}"));
            next += 1;
        };
        if filter.metric.is_some() {
            clause(&mut sql, "metric =");
        }
        if filter.node.is_some() {
            clause(&mut sql, "node =");
        }
        if filter.from.is_some() {
            clause(&mut sql, "at >=");
        }
        if filter.to.is_some() {
            clause(&mut sql, "at <");
        }
        sql.push_str(&format!(
            " ORDER BY at, node, metric LIMIT {}",
            filter.limit.unwrap_or(10_000)
        ));
        let mut query = sqlx::query(&sql).bind(filter.network);
        if let Some(metric) = filter.metric {
            query = query.bind(metric);
        }
        if let Some(node) = filter.node {
            query = query.bind(node);
        }
        if let Some(from) = filter.from {
            query = query.bind(micros(from));
        }
        if let Some(to) = filter.to {
            query = query.bind(micros(to));
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(row_to_sample).collect()
    }

    /// One page of `network`'s samples taken in `[from, to)`, in a fixed order (time, node, metric, value):
    /// those at or after `cursor`, less the first `skip` of them (the ones at `cursor` already read). A reader
    /// pages on with the last sample's time as the cursor and, as `skip`, how many of the samples read carry
    /// that time.
    pub async fn samples_page(&self, page: &SamplePage<'_>) -> Result<Vec<NodeSample>> {
        let cursor = page.cursor.map_or(micros(page.from), micros).max(micros(page.from));
        let rows = sqlx::query(&format!(
            "SELECT network, node, metric, at, value, run_id, task_id FROM node_sample \
             WHERE network = $1 AND at >= $2 AND at < $3 ORDER BY at, node, metric, value LIMIT {} OFFSET {}",
            page.limit.clamp(1, 100_000),
            page.skip
        ))
        .bind(page.network)
        .bind(cursor)
        .bind(micros(page.to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_sample).collect()
    }

    /// The newest sample of every (network, node, metric) of the networks that are `running`, among those
    /// taken at or after `since`: what the engine's `/metrics` shows.
    pub async fn latest_samples_of_running(&self, since: DateTime<Utc>) -> Result<Vec<NodeSample>> {
        let rows = sqlx::query(
            "SELECT s.network, s.node, s.metric, s.at, s.value, s.run_id, s.task_id FROM node_sample s \
             JOIN (SELECT network, node, metric, MAX(at) AS last FROM node_sample WHERE at >= $1 \
                   GROUP BY network, node, metric) l \
               ON s.network = l.network AND s.node = l.node AND s.metric = l.metric AND s.at = l.last \
             JOIN network n ON n.name = s.network \
             WHERE n.status = 'running' \
             ORDER BY s.network, s.node, s.metric",
        )
        .bind(micros(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_sample).collect()
    }

    /// Deletes samples older than `before`; returns how many.
    pub async fn prune_samples(&self, before: DateTime<Utc>) -> Result<u64> {
        let result = sqlx::query("DELETE FROM node_sample WHERE at < $1")
            .bind(micros(before))
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected())
    }
}
