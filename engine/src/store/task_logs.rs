//! Task logs in the database: appended in chunks of whole lines at byte offsets, read back by offset.

use sqlx::Row;

use super::Store;
use crate::{Error, Result};

/// One try's log.
#[derive(Debug, Clone, Copy)]
pub struct LogRef<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    pub task_id: &'a str,
    pub map_index: i64,
    pub try_number: i64,
}

const KEY: &str = "dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4 AND try_number = $5";

/// The most rows one read fetches (each chunk is one batch a runner sent).
const MAX_CHUNKS: i64 = 2000;

impl Store {
    /// Appends `body` (whole lines) to a try's log. Two servers appending at once take turns: the loser of
    /// the offset tries again.
    pub async fn append_log(&self, key: LogRef<'_>, body: &str) -> Result<()> {
        if body.is_empty() {
            return Ok(());
        }
        let mut last = None;
        for attempt in 0..5u64 {
            if attempt > 0 {
                // Another server took this offset: a short, growing pause before the next.
                tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
            }
            let mut tx = self.begin().await?;
            // The last chunk by the primary key's order: one index step, however long the log.
            let end: i64 = sqlx::query(&format!(
                "SELECT end_offset FROM task_log_chunk WHERE {KEY} ORDER BY start_offset DESC LIMIT 1"
            ))
            .bind(key.dag_id)
            .bind(key.run_id)
            .bind(key.task_id)
            .bind(key.map_index)
            .bind(key.try_number)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?
            .unwrap_or(0);
            let inserted = sqlx::query(
                "INSERT INTO task_log_chunk (dag_id, run_id, task_id, map_index, try_number, start_offset, end_offset, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(key.dag_id)
            .bind(key.run_id)
            .bind(key.task_id)
            .bind(key.map_index)
            .bind(key.try_number)
            .bind(end)
            .bind(end + body.len() as i64)
            .bind(body)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {
                    tx.commit().await?;
                    return Ok(());
                }
                Err(err) => last = Some(err),
            }
        }
        Err(Error::Database(format!(
            "cannot append to the log of {}/{}/{} try {}: {}",
            key.dag_id,
            key.run_id,
            key.task_id,
            key.try_number,
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// The chunks that hold bytes from `from` to `from + max`, as (start offset, body), in order.
    pub async fn read_log(&self, key: LogRef<'_>, from: u64, max: u64) -> Result<Vec<(u64, String)>> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let until = from.saturating_add(i64::try_from(max).unwrap_or(i64::MAX));
        let rows = sqlx::query(&format!(
            "SELECT start_offset, body FROM task_log_chunk WHERE {KEY} AND end_offset > $6 AND start_offset < $7 \
             ORDER BY start_offset LIMIT {MAX_CHUNKS}"
        ))
        .bind(key.dag_id)
        .bind(key.run_id)
        .bind(key.task_id)
        .bind(key.map_index)
        .bind(key.try_number)
        .bind(from)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<i64, _>(0)?.max(0) as u64, row.try_get(1)?)))
            .collect()
    }

    /// The length of a try's log in bytes; None when it has none.
    pub async fn log_length(&self, key: LogRef<'_>) -> Result<Option<u64>> {
        let row = sqlx::query(&format!(
            "SELECT end_offset FROM task_log_chunk WHERE {KEY} ORDER BY start_offset DESC LIMIT 1"
        ))
        .bind(key.dag_id)
        .bind(key.run_id)
        .bind(key.task_id)
        .bind(key.map_index)
        .bind(key.try_number)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok(row.try_get::<i64, _>(0)?.max(0) as u64)).transpose()
    }

    /// The last chunks of a try's log holding at least `max` bytes (or all of it), as (start offset, body), in
    /// order.
    pub async fn read_log_tail(&self, key: LogRef<'_>, max: u64) -> Result<Vec<(u64, String)>> {
        let rows = sqlx::query(&format!(
            "SELECT start_offset, body FROM task_log_chunk WHERE {KEY} ORDER BY start_offset DESC LIMIT {MAX_CHUNKS}"
        ))
        .bind(key.dag_id)
        .bind(key.run_id)
        .bind(key.task_id)
        .bind(key.map_index)
        .bind(key.try_number)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for row in &rows {
            let body: String = row.try_get(1)?;
            bytes += body.len() as u64;
            out.push((row.try_get::<i64, _>(0)?.max(0) as u64, body));
            if bytes >= max {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }
}
