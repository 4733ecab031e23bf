//! Task-instance state changes decided elsewhere (by run evaluation, or by a user clearing or marking), written
//! as compare-and-set updates grouped by (from, to). Both runs and task instances use this; it uses neither.

use chrono::{DateTime, Utc};
use sqlx::{Any, Transaction};

use super::{micros, placeholders, CHUNK};
use crate::state::TaskState;
use crate::Result;

/// A task-instance state change decided by the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct TiChange {
    pub ti_id: i64,
    pub from: TaskState,
    pub to: TaskState,
    pub message: Option<String>,
}

/// Applies CAS state changes grouped by (from, to); `end_date` is set when a state is final.
pub(crate) async fn apply_changes(
    tx: &mut Transaction<'static, Any>,
    changes: &[TiChange],
    now: DateTime<Utc>,
) -> Result<usize> {
    type Group = (TaskState, TaskState, Option<String>);
    let mut groups: Vec<(Group, Vec<i64>)> = Vec::new();
    for change in changes {
        let key = (change.from, change.to, change.message.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, ids)) => ids.push(change.ti_id),
            None => groups.push((key, vec![change.ti_id])),
        }
    }
    let mut changed = 0;
    for ((from, to, message), ids) in groups {
        for chunk in ids.chunks(CHUNK) {
            let end = if to == TaskState::Success
                && matches!(from, TaskState::None | TaskState::Scheduled | TaskState::Queued)
            {
                // Completed by the scheduler itself (e.g. `empty`): it started and ended now, in one try.
                ", start_date = COALESCE(start_date, $1), end_date = COALESCE(end_date, $1), try_number = CASE WHEN try_number < 1 THEN 1 ELSE try_number END"
            } else if to.is_finished() {
                ", end_date = COALESCE(end_date, $1)"
            } else if to == TaskState::None {
                ", end_date = NULL, start_date = NULL"
            } else {
                ""
            };
            let sql = format!(
                "UPDATE task_instance SET state = $2, updated_at = $1, message = COALESCE($3, message){end} WHERE state = $4 AND id IN ({})",
                placeholders(5, chunk.len())
            );
            let mut query = sqlx::query(&sql)
                .bind(micros(now))
                .bind(to.as_str())
                .bind(message.clone())
                .bind(from.as_str());
            for id in chunk {
                query = query.bind(*id);
            }
            changed += query.execute(&mut **tx).await?.rows_affected() as usize;
        }
    }
    Ok(changed)
}
