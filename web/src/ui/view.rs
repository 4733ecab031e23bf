//! What the pages share: an API error as an error page, times and durations as pages show them, and the query
//! pairs and page number of a list.

use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::{field, serde_urlencoded_pairs};
use crate::html::error_page;

pub(super) fn fail(err: ApiError) -> Response {
    let detail = match &err.detail {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    error_page(err.status, &detail)
}

pub(super) fn when(at: Option<DateTime<Utc>>) -> Value {
    at.map(|t| json!(t.to_rfc3339_opts(SecondsFormat::Secs, true)))
        .unwrap_or(Value::Null)
}

pub(super) fn human_duration(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Value {
    let (Some(s), Some(e)) = (start, end) else {
        return Value::Null;
    };
    let ms = (e - s).num_milliseconds().max(0);
    json!(if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60)
    })
}

pub(super) fn query_pairs(query: &Option<String>) -> Vec<(String, String)> {
    serde_urlencoded_pairs(query.as_deref().unwrap_or("")).unwrap_or_default()
}

pub(super) fn page_number(pairs: &[(String, String)]) -> i64 {
    field(pairs, "page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
        .clamp(0, 1_000_000)
}
