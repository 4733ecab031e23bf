//! Node logs read back from CloudWatch Logs, where `chain.monitor` shipped them (`cloudwatch:`): every event
//! of the network's log group in the run's time, paged with `FilterLogEvents`, each stream a node. The lines
//! are counted by level per node and their WARN and ERROR patterns become the run's alerts, as the monitor's
//! own alert book counts them.

use chrono::{DateTime, Utc};

use crate::monitor::cloudwatch::{self, CloudWatchSettings};

/// Pages read at most (10,000 events each).
const MAX_PAGES: u32 = 1_000;

/// Reads the events of `network`'s log group between `from` and `to`, calling `each(node, at, line)` for every
/// line; returns how many were read.
pub async fn read_logs(
    settings: &CloudWatchSettings,
    network: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    mut each: impl FnMut(&str, DateTime<Utc>, &str),
) -> Result<u64, String> {
    let client = cloudwatch::client(settings).await?;
    let group = settings.log_group(network);
    let mut token: Option<String> = None;
    let mut count = 0u64;
    for _ in 0..MAX_PAGES {
        let page = client
            .filter_log_events()
            .log_group_name(&group)
            .start_time(from.timestamp_millis())
            .end_time(to.timestamp_millis())
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot read log group `{group}` from CloudWatch Logs: {}",
                    aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e)
                )
            })?;
        for event in page.events() {
            let (Some(node), Some(message)) = (event.log_stream_name(), event.message()) else {
                continue;
            };
            let at = event
                .timestamp()
                .and_then(DateTime::from_timestamp_millis)
                .unwrap_or(from);
            each(node, at, message);
            count += 1;
        }
        match page.next_token() {
            Some(next) if Some(next) != token.as_deref() => token = Some(next.to_string()),
            _ => return Ok(count),
        }
    }
    Ok(count)
}
