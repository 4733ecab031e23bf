//! `/api/v2`: Airflow 3's REST API paths and JSON shapes, for the subset its clients use, plus our own
//! endpoints under `/api/v2/dagctl/...`. The OpenAPI document of exactly this subset is served at
//! `/api/v2/openapi.json`.

pub(crate) mod assets;
mod bulk;
mod clear;
mod connections;
pub mod dags;
mod events;
pub(crate) mod kpis;
mod logs;
mod misc;
mod networks;
pub mod runs;
pub mod shapes;
mod tis;
mod variables;
mod versions;
mod xcom;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use crate::{Principal, WebState};

/// The OpenAPI document (generated from Airflow's own by `web/openapi/build_subset.py`).
pub const OPENAPI_JSON: &str = include_str!("../../openapi/openapi.json");

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v2/openapi.json", get(openapi))
        .route("/api/v2/dags", get(dags::list))
        .route("/api/v2/dags/{dag_id}", get(dags::get).patch(dags::patch))
        .route("/api/v2/dags/{dag_id}/details", get(dags::details))
        .route("/api/v2/dags/{dag_id}/dagVersions", get(versions::list))
        .route("/api/v2/dags/{dag_id}/dagVersions/{version_number}", get(versions::get))
        .route("/api/v2/dags/{dag_id}/dagRuns", get(runs::list).post(runs::trigger))
        .route(
            "/api/v2/dags/{dag_id}/dagRuns/{run_id}",
            get(runs::get).patch(runs::patch),
        )
        .route("/api/v2/dags/{dag_id}/dagRuns/{run_id}/clear", post(runs::clear))
        .route("/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", get(tis::list))
        .route(
            "/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}",
            get(tis::get),
        )
        .route(
            "/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries",
            get(tis::tries),
        )
        .route(
            "/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/listMapped",
            get(tis::list_mapped),
        )
        .route(
            "/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}",
            get(tis::get_mapped),
        )
        .route(
            "/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries",
            get(tis::tries_mapped),
        )
        .route(
            "/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            get(logs::logs),
        )
        .route(
            "/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries",
            get(xcom::xcom_list),
        )
        .route(
            "/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            get(xcom::xcom_get),
        )
        .route("/api/v2/dags/{dag_id}/clearTaskInstances", post(clear::clear))
        .route("/api/v2/importErrors", get(misc::import_errors))
        .route("/api/v2/importErrors/{id}", get(misc::import_error))
        .route("/api/v2/pools", get(misc::pools).post(misc::create_pool))
        .route(
            "/api/v2/pools/{name}",
            get(misc::pool).patch(misc::patch_pool).delete(misc::delete_pool),
        )
        .route("/api/v2/assets", get(assets::list))
        .route("/api/v2/assets/events", get(assets::events).post(assets::create_event))
        .route("/api/v2/assets/{asset_id}", get(assets::get))
        .route(
            "/api/v2/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents",
            get(assets::of_run),
        )
        .route(
            "/api/v2/variables",
            get(variables::list).post(variables::create).patch(variables::bulk),
        )
        .route(
            "/api/v2/variables/{key}",
            get(variables::get).patch(variables::patch).delete(variables::delete),
        )
        .route(
            "/api/v2/connections",
            get(connections::list)
                .post(connections::create)
                .patch(connections::bulk),
        )
        .route(
            "/api/v2/connections/{connection_id}",
            get(connections::get)
                .patch(connections::patch)
                .delete(connections::delete),
        )
        .route("/api/v2/eventLogs", get(misc::events))
        .route("/api/v2/eventLogs/{id}", get(misc::event))
        .route("/api/v2/dagctl/whoami", get(misc::whoami))
        .route("/api/v2/dagctl/token", post(misc::issue_token))
        .route("/api/v2/dagctl/dags/{dag_id}/grid", get(dags::grid))
        .route("/api/v2/dagctl/dags/{dag_id}/graph", get(dags::graph))
        .route("/api/v2/dagctl/networks/{network_name}/series", get(networks::series))
        .route("/api/v2/dagctl/networks/{network_name}/alerts", get(networks::alerts))
        .route("/api/v2/dagctl/runs/{dag_id}/{run_id}/kpis", get(kpis::kpis))
        .route("/api/v2/dagctl/runs/{dag_id}/{run_id}/events", get(events::run_events))
        .route("/api/v2/dagctl/runs/{dag_id}/{run_id}/report.html", get(kpis::report))
        .route("/api/v2/dagctl/dags/{dag_id}/kpi-trend", get(kpis::trend))
        .fallback(not_found)
}

async fn openapi(_who: Principal) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    if uri.path().starts_with("/api/") {
        crate::error::ApiError::not_found(format!("no such endpoint: {}", uri.path())).into_response()
    } else {
        crate::html::not_found_page().into_response()
    }
}

/// Matches SQL LIKE patterns the way Airflow's `*_pattern` filters do: a case-insensitive substring match
/// where `%` is any run of characters and `_` any one character.
pub fn like(pattern: &str, text: &str) -> bool {
    // Substring match = the pattern wrapped in `%`; dynamic programming keeps it O(pattern x text).
    let p: Vec<char> = std::iter::once('%')
        .chain(pattern.chars())
        .chain(std::iter::once('%'))
        .collect();
    let t: Vec<char> = text.chars().collect();
    // row[j]: the pattern so far matches t[..j].
    let mut row = vec![false; t.len() + 1];
    row[0] = true;
    for pc in &p {
        let mut next = vec![false; t.len() + 1];
        match pc {
            '%' => {
                let mut any = false;
                for j in 0..=t.len() {
                    any |= row[j];
                    next[j] = any;
                }
            }
            c => {
                for j in 1..=t.len() {
                    next[j] = row[j - 1] && (*c == '_' || t[j - 1].eq_ignore_ascii_case(c));
                }
            }
        }
        row = next;
    }
    row[t.len()]
}

/// One page of an in-memory list in Airflow's collection shape: `{<name>: [...], "total_entries": n}`.
pub fn collection<T>(
    name: &str,
    rows: &[T],
    offset: i64,
    limit: i64,
    shape: impl FnMut(&T) -> serde_json::Value,
) -> axum::Json<serde_json::Value> {
    let skip = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(limit).unwrap_or(0);
    let page: Vec<serde_json::Value> = rows.iter().skip(skip).take(take).map(shape).collect();
    let mut body = serde_json::Map::new();
    body.insert(name.to_string(), serde_json::Value::Array(page));
    body.insert("total_entries".into(), rows.len().into());
    axum::Json(serde_json::Value::Object(body))
}

/// `true`, for fields that Airflow defaults to true (`#[serde(default = "yes")]`).
pub(crate) fn yes() -> bool {
    true
}

/// Refuses a run note over 1000 characters (Airflow's limit), before anything is written.
pub(crate) fn check_note(note: Option<&str>) -> crate::error::ApiResult<()> {
    if note.is_some_and(|n| n.len() > 1000) {
        return Err(crate::error::ApiError::validation(
            &["body", "note"],
            "a note is at most 1000 characters",
            "string_too_long",
        ));
    }
    Ok(())
}

/// Limits for page sizes.
pub const MAX_LIMIT: i64 = 1000;

#[cfg(test)]
mod tests {
    #[test]
    fn like_is_a_case_insensitive_substring_match_with_wildcards() {
        assert!(super::like("geth", "deploy-GETH-clique"));
        assert!(super::like("dep%clique", "deploy-geth-clique"));
        assert!(super::like("g_th", "geth"));
        assert!(!super::like("besu", "deploy-geth-clique"));
        assert!(super::like("", "anything"));
    }

    #[test]
    fn the_openapi_document_parses() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI_JSON).unwrap();
        assert!(doc["paths"]["/api/v2/dags"]["get"].is_object());
    }
}
