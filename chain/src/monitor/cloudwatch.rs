//! Node log lines shipped to AWS CloudWatch Logs with the official AWS SDK for Rust: one log group per network
//! (by default `/dagctl/networks/<network>`), one log stream per node, batched `PutLogEvents`.
//!
//! Credentials and region come from the SDK's standard chain (environment, shared config and credentials files
//! under `$HOME/.aws`, web identity, ECS and EC2 instance metadata); `region` and `endpoint_url` settings
//! override it. Nothing of the credentials is ever logged.
//!
//! Shipping never blocks the monitor: lines go through an [`Outbox`]; its sender gathers up to one second of
//! lines, groups them by node, and sends each stream's lines within the API's limits (10,000 events and
//! 1,048,576 bytes per call, 256 KiB per event, in time order). A failed call is retried by the SDK with
//! backoff (4 attempts); lines it gives up on, or that CloudWatch rejects, are counted as dropped.
//!
//! An event's timestamp is when the monitor read the line (clients' own stamps lack the year or the zone).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatchlogs as cwl;
/// The SDK, for readers of what was shipped (tests, tools).
pub use aws_sdk_cloudwatchlogs as sdk;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::logs::Level;
use super::outbox::{Outbox, Outcome, Tally};

/// Lines waiting for the sender before new ones are dropped.
const QUEUE: usize = 20_000;
/// How long the sender gathers lines before a call.
const GATHER: Duration = Duration::from_secs(1);
/// `PutLogEvents` limits.
const MAX_EVENTS: usize = 10_000;
const MAX_BATCH_BYTES: usize = 1_048_576;
const EVENT_OVERHEAD: usize = 26;
const MAX_EVENT_BYTES: usize = 262_144 - EVENT_OVERHEAD;

/// Where and what to ship: the `cloudwatch` argument of `chain.monitor`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchSettings {
    /// The log group (default `/dagctl/networks/<network>`); made if missing.
    #[serde(default)]
    pub log_group: Option<String>,
    /// The AWS region; without it, the standard chain's (`AWS_REGION`, the profile).
    #[serde(default)]
    pub region: Option<String>,
    /// Another endpoint than AWS's (a VPC endpoint, LocalStack, moto).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Ship only lines of this level and above (`trace` .. `error`); without it, every line, including lines
    /// in no known format.
    #[serde(default)]
    pub min_level: Option<Level>,
}

impl CloudWatchSettings {
    /// The log group for `network`.
    pub fn log_group(&self, network: &str) -> String {
        self.log_group
            .clone()
            .unwrap_or_else(|| format!("/dagctl/networks/{network}"))
    }

    /// Checks what can be checked before anything is sent.
    pub fn check(&self) -> Result<(), String> {
        if let Some(group) = &self.log_group {
            check_name("log_group", group, |c| c.is_ascii_alphanumeric() || "._-/#".contains(c))?;
        }
        if let Some(region) = &self.region {
            let valid = !region.is_empty()
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid {
                return Err(format!("region `{region}` is not an AWS region name (like eu-west-1)"));
            }
        }
        if let Some(url) = &self.endpoint_url {
            super::webhook::check_url(url).map_err(|e| format!("endpoint_url: {e}"))?;
        }
        if self.min_level == Some(Level::Unknown) {
            return Err("min_level must be one of trace, debug, info, warn, error".into());
        }
        Ok(())
    }

    /// Whether a line of `level` is shipped.
    pub fn ships(&self, level: impl FnOnce() -> Level) -> bool {
        match self.min_level {
            None => true,
            Some(min) => {
                let level = level();
                level != Level::Unknown && level >= min
            }
        }
    }
}

/// CloudWatch's rule for log group and stream names: 1 to 512 characters of an allowed set.
fn check_name(what: &str, name: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if name.is_empty() || name.len() > 512 || !name.chars().all(allowed) {
        return Err(format!(
            "{what} `{name}` is not a CloudWatch name (1 to 512 of letters, digits and . _ - / #)"
        ));
    }
    Ok(())
}

/// One line for one stream.
#[derive(Debug)]
struct Line {
    stream: String,
    timestamp_ms: i64,
    message: String,
}

/// A CloudWatch client built on the workspace's rustls (ring) HTTP stack, from the standard chain and
/// `settings`. Fails when no region is set anywhere.
pub async fn client(settings: &CloudWatchSettings) -> Result<cwl::Client, String> {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .build(),
        )
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(4)
                .with_initial_backoff(Duration::from_millis(500)),
        );
    if let Some(region) = &settings.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err("no AWS region: set `region`, or AWS_REGION or a profile's region for the runner".into());
    }
    Ok(cwl::Client::new(&config))
}

/// The shipping side: lines in, batches out.
#[derive(Debug)]
pub struct CloudWatchSink {
    outbox: Outbox<Line>,
    log_group: String,
}

impl CloudWatchSink {
    /// Starts shipping to `log_group` with `client`.
    pub fn start(client: cwl::Client, log_group: String) -> Self {
        let group = log_group.clone();
        let outbox = Outbox::start(QUEUE, move |receiver, tally| ship(client, group, receiver, tally));
        Self { outbox, log_group }
    }

    pub fn log_group(&self) -> &str {
        &self.log_group
    }

    /// Queues `line` of node `stream`, read at `at`; a full queue drops it (counted).
    pub fn send(&self, stream: &str, at: DateTime<Utc>, line: &str) {
        let mut message = line.to_string();
        if message.len() > MAX_EVENT_BYTES {
            let mut end = MAX_EVENT_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        self.outbox.send(Line {
            stream: stream.to_string(),
            timestamp_ms: at.timestamp_millis(),
            message,
        });
    }

    /// Stops taking lines and gives the queued ones up to `grace` to go.
    pub async fn finish(self, grace: Duration) -> Outcome {
        self.outbox.finish(grace).await
    }
}

/// Why an SDK call failed, with its causes (never credentials: the SDK's errors do not hold them).
fn describe(error: &impl std::error::Error) -> String {
    aws_sdk_cloudwatchlogs::error::DisplayErrorContext(error).to_string()
}

async fn ship(client: cwl::Client, group: String, mut receiver: mpsc::Receiver<Line>, tally: Arc<Tally>) {
    let mut group_ready = false;
    let mut streams_ready = BTreeSet::new();
    while let Some(first) = receiver.recv().await {
        let mut lines = vec![first];
        let until = tokio::time::Instant::now() + GATHER;
        while lines.len() < QUEUE {
            match tokio::time::timeout_at(until, receiver.recv()).await {
                Ok(Some(line)) => lines.push(line),
                Ok(None) | Err(_) => break,
            }
        }
        let mut by_stream: BTreeMap<String, Vec<Line>> = BTreeMap::new();
        for line in lines {
            by_stream.entry(line.stream.clone()).or_default().push(line);
        }
        if !group_ready {
            match client.create_log_group().log_group_name(&group).send().await {
                Ok(_) => group_ready = true,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_already_exists_exception()) =>
                {
                    group_ready = true
                }
                Err(e) => {
                    let count = by_stream.values().map(Vec::len).sum::<usize>() as u64;
                    tally.failed(count, format!("cannot make log group `{group}`: {}", describe(&e)));
                    continue;
                }
            }
        }
        for (stream, mut lines) in by_stream {
            if !streams_ready.contains(&stream) {
                let made = client
                    .create_log_stream()
                    .log_group_name(&group)
                    .log_stream_name(&stream)
                    .send()
                    .await;
                match made {
                    Ok(_) => {}
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
                    Err(e) => {
                        tally.failed(
                            lines.len() as u64,
                            format!("cannot make log stream `{stream}`: {}", describe(&e)),
                        );
                        continue;
                    }
                }
                streams_ready.insert(stream.clone());
            }
            // CloudWatch wants a call's events in time order.
            lines.sort_by_key(|l| l.timestamp_ms);
            for batch in batches(lines) {
                put(&client, &group, &stream, batch, &tally).await;
            }
        }
    }
}

/// Splits one stream's lines into calls within the API's limits.
fn batches(lines: Vec<Line>) -> Vec<Vec<Line>> {
    let mut out: Vec<Vec<Line>> = Vec::new();
    let mut bytes = 0;
    for line in lines {
        let size = line.message.len() + EVENT_OVERHEAD;
        let full = out
            .last()
            .is_none_or(|b| b.len() >= MAX_EVENTS || bytes + size > MAX_BATCH_BYTES);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        out.last_mut().expect("a batch was just pushed").push(line);
    }
    out
}

async fn put(client: &cwl::Client, group: &str, stream: &str, batch: Vec<Line>, tally: &Tally) {
    let count = batch.len() as u64;
    let events: Result<Vec<_>, _> = batch
        .into_iter()
        .map(|l| {
            cwl::types::InputLogEvent::builder()
                .timestamp(l.timestamp_ms)
                .message(l.message)
                .build()
        })
        .collect();
    let events = match events {
        Ok(events) => events,
        Err(e) => return tally.failed(count, format!("cannot build log events: {e}")),
    };
    let answer = client
        .put_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .set_log_events(Some(events))
        .send()
        .await;
    match answer {
        Err(e) => tally.failed(
            count,
            format!("PutLogEvents to `{group}/{stream}` failed: {}", describe(&e)),
        ),
        Ok(answer) => {
            let rejected = answer.rejected_log_events_info().map_or(0, |info| {
                // The indexes bound the rejected events: before `too_new_log_event_start_index`... (see the API).
                let too_new = info
                    .too_new_log_event_start_index()
                    .map_or(0, |i| count.saturating_sub(i.max(0) as u64));
                let too_old = info.too_old_log_event_end_index().map_or(0, |i| i.max(0) as u64);
                let expired = info.expired_log_event_end_index().map_or(0, |i| i.max(0) as u64);
                (too_new + too_old.max(expired)).min(count)
            });
            tally.sent(count - rejected);
            if rejected > 0 {
                tally.failed(
                    rejected,
                    format!("CloudWatch rejected {rejected} events as too old or too new"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let ok = CloudWatchSettings {
            log_group: Some("/dagctl/net-1".into()),
            region: Some("eu-west-1".into()),
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            min_level: Some(Level::Warn),
        };
        assert_eq!(ok.check(), Ok(()));
        let bad = |f: fn(&mut CloudWatchSettings)| {
            let mut s = ok.clone();
            f(&mut s);
            s.check().unwrap_err()
        };
        assert!(bad(|s| s.log_group = Some("a b".into())).contains("log_group `a b`"));
        assert!(bad(|s| s.log_group = Some(String::new())).contains("log_group"));
        assert!(bad(|s| s.region = Some("EU WEST".into())).contains("region"));
        assert!(bad(|s| s.endpoint_url = Some("ftp://x".into())).contains("endpoint_url"));
        assert!(bad(|s| s.min_level = Some(Level::Unknown)).contains("min_level"));
        assert_eq!(CloudWatchSettings::default().log_group("n"), "/dagctl/networks/n");
    }

    #[test]
    fn the_level_filter_keeps_unknown_lines_only_without_a_minimum() {
        let all = CloudWatchSettings::default();
        assert!(all.ships(|| Level::Unknown) && all.ships(|| Level::Debug));
        let warn = CloudWatchSettings {
            min_level: Some(Level::Warn),
            ..Default::default()
        };
        assert!(warn.ships(|| Level::Error) && warn.ships(|| Level::Warn));
        assert!(!warn.ships(|| Level::Info) && !warn.ships(|| Level::Unknown));
    }

    #[test]
    fn batches_keep_within_the_api_limits() {
        let line = |n: usize, size: usize| Line {
            stream: "s".into(),
            timestamp_ms: n as i64,
            message: "x".repeat(size),
        };
        let many: Vec<Line> = (0..25_000).map(|n| line(n, 10)).collect();
        let sizes: Vec<usize> = batches(many).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10_000, 10_000, 5_000]);
        let big: Vec<Line> = (0..10).map(|n| line(n, 200_000)).collect();
        let split = batches(big);
        assert!(split
            .iter()
            .all(|b| b.iter().map(|l| l.message.len() + EVENT_OVERHEAD).sum::<usize>() <= MAX_BATCH_BYTES));
        assert_eq!(split.iter().map(Vec::len).sum::<usize>(), 10);
        assert_eq!(split[0].len(), 5);
    }
}
