//! Network records for task runners: what `chain.*` operators running in `dagctl tasks run` read and write
//! in the store, which they cannot reach themselves. The client is `chain::registry::ApiNetworks`; the
//! bodies here and there are kept in step by hand (neither crate depends on the other).
//!
//! Every call needs the token of a try that is executing now. `{name}` is one percent-encoded path segment.
//!
//! | call | body | answer |
//! |------|------|--------|
//! | `POST /execution/networks` (claim) | `{name, backend, host, spec, dag_id?, run_id?, task_id?, ttl_seconds?}` | 204; 409 name in use |
//! | `PUT /execution/networks/{name}/nodes` | `{nodes}` | 204; 404 |
//! | `POST /execution/networks/{name}/transition` | `{from: [..], to, message?}` | `{"changed": bool}`; 422 unknown status |
//! | `GET /execution/networks/{name}` | | `NetworkRow`; 404 |
//! | `GET /execution/networks?include_gone=true\|false` | | `[NetworkRow]` (without: active ones) |
//! | `GET /execution/networks-past-ttl` | | `[NetworkRow]` |
//! | `POST /execution/networks/{name}/samples` | `{samples: [{node, metric, at, value}]}` (at most 10,000) | 204; 404; 422 |
//! | `POST /execution/networks/{name}/alerts` | `{alerts: [{node, level, pattern, message, count, first_at, last_at}]}` (at most 1,000) | 204; 404; 422 |
//! | `GET /execution/networks/{name}/samples?from=&to=&cursor=&skip=&limit=` | | `[NodeSample]`: one page (`Store::samples_page`, at most 10,000); 404; 422 |
//! | `GET /execution/networks/{name}/alerts` | | `[NodeAlert]`, most recent first (at most 10,000); 404 |
//!
//! Samples are stored with the network of the path and the calling try's run and task, whatever else the
//! body says.
//!
//! The claim's owner (`dag_id`, `run_id`, `task_id`), when given, must be the calling try's task (403
//! otherwise). Collection-wide calls sit outside `/execution/networks/{name}` so that no network name
//! (`past-ttl`, `claim`, ...) is shadowed. The engine's clock is `now`.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::Utc;
use engine::store::networks::NETWORK_STATUSES;
use engine::store::{NetworkRow, NewNetwork};
use serde::{Deserialize, Serialize};

use super::{CallerTry, ExecState};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Params};

/// Body of `POST /execution/networks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimRequest {
    name: String,
    backend: String,
    host: String,
    /// The network spec, JSON text.
    spec: String,
    #[serde(default)]
    dag_id: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

/// Body of `PUT /execution/networks/{name}/nodes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodesRequest {
    /// Nodes JSON text written by the backend.
    nodes: String,
}

/// Body of `POST /execution/networks/{name}/transition`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionRequest {
    from: Vec<String>,
    to: String,
    #[serde(default)]
    message: Option<String>,
}

/// Answer of `POST /execution/networks/{name}/transition`.
#[derive(Debug, Serialize)]
struct TransitionResponse {
    changed: bool,
}

/// The most samples one `POST .../samples` may carry.
const MAX_SAMPLES: usize = 10_000;

/// One sample in `POST /execution/networks/{name}/samples`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleIn {
    node: String,
    metric: String,
    at: chrono::DateTime<Utc>,
    value: f64,
}

/// Body of `POST /execution/networks/{name}/samples`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplesRequest {
    samples: Vec<SampleIn>,
}

/// The most alerts one `POST .../alerts` may carry.
const MAX_ALERTS: usize = 1_000;

/// One alert in `POST /execution/networks/{name}/alerts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertIn {
    node: String,
    level: String,
    pattern: String,
    message: String,
    count: i64,
    first_at: chrono::DateTime<Utc>,
    last_at: chrono::DateTime<Utc>,
}

/// Body of `POST /execution/networks/{name}/alerts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsRequest {
    alerts: Vec<AlertIn>,
}

/// The network routes of the execution API.
pub(super) fn routes() -> Router<ExecState> {
    Router::new()
        .route("/execution/networks", post(claim).get(list))
        .route("/execution/networks-past-ttl", get(past_ttl))
        .route("/execution/networks/{name}", get(show))
        .route("/execution/networks/{name}/nodes", put(set_nodes))
        .route("/execution/networks/{name}/transition", post(transition))
        .route("/execution/networks/{name}/samples", post(samples).get(read_samples))
        .route("/execution/networks/{name}/alerts", post(alerts).get(read_alerts))
}

/// `POST /execution/networks/{name}/alerts`: log alerts (counts since the caller's last batch), added up by
/// pattern.
async fn alerts(
    State(state): State<ExecState>,
    caller: CallerTry,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<AlertsRequest>,
) -> ApiResult<Response> {
    let ti = caller.current(&state).await?;
    if body.alerts.len() > MAX_ALERTS {
        return Err(ApiError::validation(
            &["body", "alerts"],
            format!("{} alerts in one call; at most {MAX_ALERTS}", body.alerts.len()),
            "too_long",
        ));
    }
    for (i, alert) in body.alerts.iter().enumerate() {
        let index = i.to_string();
        let bad = |field: &str, msg: &str, kind: &str| {
            Err(ApiError::validation(
                &["body", "alerts", &index, field],
                msg.to_string(),
                kind,
            ))
        };
        if !["warn", "error"].contains(&alert.level.as_str()) {
            return bad("level", "must be warn or error", "enum");
        }
        if alert.count < 1 {
            return bad("count", "must be at least 1", "greater_than_equal");
        }
        if alert.last_at < alert.first_at {
            return bad("last_at", "must not be before first_at", "value_error");
        }
        for (field, text, max) in [
            ("node", &alert.node, 200),
            ("pattern", &alert.pattern, 1000),
            ("message", &alert.message, 4000),
        ] {
            if text.is_empty() || text.len() > max {
                return bad(field, &format!("must be 1 to {max} characters"), "string_length");
            }
        }
    }
    state.store.get_network(&name).await?;
    let rows: Vec<engine::store::NodeAlert> = body
        .alerts
        .into_iter()
        .map(|a| engine::store::NodeAlert {
            network: name.clone(),
            node: a.node,
            level: a.level,
            pattern: a.pattern,
            message: a.message,
            count: a.count,
            first_at: a.first_at,
            last_at: a.last_at,
            run_id: Some(ti.run_id.clone()),
            task_id: Some(ti.task_id.clone()),
        })
        .collect();
    state.store.add_alerts(&rows).await?;
    Ok(no_content())
}

/// `POST /execution/networks/{name}/samples`: a batch of the network's samples, written in one transaction.
async fn samples(
    State(state): State<ExecState>,
    caller: CallerTry,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<SamplesRequest>,
) -> ApiResult<Response> {
    let ti = caller.current(&state).await?;
    if body.samples.len() > MAX_SAMPLES {
        return Err(ApiError::validation(
            &["body", "samples"],
            format!("{} samples in one call; at most {MAX_SAMPLES}", body.samples.len()),
            "too_long",
        ));
    }
    for (i, sample) in body.samples.iter().enumerate() {
        let index = i.to_string();
        if !sample.value.is_finite() {
            return Err(ApiError::validation(
                &["body", "samples", &index, "value"],
                "not a finite number",
                "finite",
            ));
        }
        for (field, text) in [("node", &sample.node), ("metric", &sample.metric)] {
            if text.is_empty() || text.len() > 200 {
                return Err(ApiError::validation(
                    &["body", "samples", &index, field],
                    "must be 1 to 200 characters",
                    "string_length",
                ));
            }
        }
    }
    state.store.get_network(&name).await?;
    let rows: Vec<engine::store::NodeSample> = body
        .samples
        .into_iter()
        .map(|s| engine::store::NodeSample {
            network: name.clone(),
            node: s.node,
            metric: s.metric,
            at: s.at,
            value: s.value,
            run_id: Some(ti.run_id.clone()),
            task_id: Some(ti.task_id.clone()),
        })
        .collect();
    state.store.insert_samples(&rows).await?;
    Ok(no_content())
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /execution/networks`: records a new network in status `starting` (409 while the name is in use).
async fn claim(
    State(state): State<ExecState>,
    caller: CallerTry,
    JsonBody(body): JsonBody<ClaimRequest>,
) -> ApiResult<Response> {
    let ti = caller.current(&state).await?;
    let owner = [
        ("dag_id", body.dag_id.as_deref(), ti.dag_id.as_str()),
        ("run_id", body.run_id.as_deref(), ti.run_id.as_str()),
        ("task_id", body.task_id.as_deref(), ti.task_id.as_str()),
    ];
    for (field, given, own) in owner {
        if given.is_some_and(|given| given != own) {
            return Err(ApiError::forbidden(format!(
                "`{field}` must be this token's task ({}.{} of run `{}`)",
                ti.dag_id, ti.task_id, ti.run_id
            )));
        }
    }
    let new = NewNetwork {
        name: &body.name,
        backend: &body.backend,
        host: &body.host,
        spec: &body.spec,
        dag_id: body.dag_id.as_deref(),
        run_id: body.run_id.as_deref(),
        task_id: body.task_id.as_deref(),
        ttl_seconds: body.ttl_seconds,
    };
    state.store.claim_network(&new, Utc::now()).await?;
    Ok(no_content())
}

/// `PUT /execution/networks/{name}/nodes`: replaces the network's nodes JSON.
async fn set_nodes(
    State(state): State<ExecState>,
    caller: CallerTry,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<NodesRequest>,
) -> ApiResult<Response> {
    caller.current(&state).await?;
    state.store.set_network_nodes(&name, &body.nodes, Utc::now()).await?;
    Ok(no_content())
}

/// A 422 unless `status` is a network status.
fn check_status(field: &str, status: &str) -> ApiResult<()> {
    if NETWORK_STATUSES.contains(&status) {
        return Ok(());
    }
    Err(ApiError::validation(
        &["body", field],
        format!(
            "unknown network status `{status}`; expected one of {}",
            NETWORK_STATUSES.join(", ")
        ),
        "enum",
    ))
}

/// `POST /execution/networks/{name}/transition`: compare-and-set of the status; whether it moved.
async fn transition(
    State(state): State<ExecState>,
    caller: CallerTry,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<TransitionRequest>,
) -> ApiResult<Json<TransitionResponse>> {
    caller.current(&state).await?;
    check_status("to", &body.to)?;
    for status in &body.from {
        check_status("from", status)?;
    }
    let from: Vec<&str> = body.from.iter().map(String::as_str).collect();
    let changed = state
        .store
        .transition_network(&name, &from, &body.to, body.message.as_deref(), Utc::now())
        .await?;
    Ok(Json(TransitionResponse { changed }))
}

/// `GET /execution/networks/{name}`.
async fn show(
    State(state): State<ExecState>,
    caller: CallerTry,
    Path(name): Path<String>,
) -> ApiResult<Json<NetworkRow>> {
    caller.current(&state).await?;
    Ok(Json(state.store.get_network(&name).await?))
}

/// `GET /execution/networks?include_gone=`: the active networks, or with `include_gone=true` all of them.
async fn list(
    State(state): State<ExecState>,
    caller: CallerTry,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Vec<NetworkRow>>> {
    caller.current(&state).await?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["include_gone"])?;
    let include_gone = params.bool("include_gone")?.unwrap_or(false);
    Ok(Json(state.store.list_networks(include_gone).await?))
}

/// `GET /execution/networks-past-ttl`: running networks whose owning run ended more than their TTL ago.
async fn past_ttl(State(state): State<ExecState>, caller: CallerTry) -> ApiResult<Json<Vec<NetworkRow>>> {
    caller.current(&state).await?;
    Ok(Json(state.store.networks_past_ttl(Utc::now()).await?))
}

/// `GET /execution/networks/{name}/samples`: one page of the network's samples in `[from, to)` (see
/// `Store::samples_page`), for the KPIs of a run.
async fn read_samples(
    State(state): State<ExecState>,
    caller: CallerTry,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Vec<engine::store::NodeSample>>> {
    caller.current(&state).await?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["from", "to", "cursor", "skip", "limit"])?;
    let required = |key: &str| -> ApiResult<chrono::DateTime<Utc>> {
        params
            .time(key)?
            .ok_or_else(|| ApiError::validation(&["query", key], format!("`{key}` is required"), "missing"))
    };
    let (from, to) = (required("from")?, required("to")?);
    state.store.get_network(&name).await?;
    let page = engine::store::SamplePage {
        network: &name,
        from,
        to,
        cursor: params.time("cursor")?,
        skip: params.int("skip", 0, 0, i64::from(u32::MAX))? as u32,
        limit: params.int("limit", i64::from(MAX_SAMPLES as u32), 1, MAX_SAMPLES as i64)? as u32,
    };
    Ok(Json(state.store.samples_page(&page).await?))
}

/// `GET /execution/networks/{name}/alerts`: the network's alerts, most recent first.
async fn read_alerts(
    State(state): State<ExecState>,
    caller: CallerTry,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<engine::store::NodeAlert>>> {
    caller.current(&state).await?;
    state.store.get_network(&name).await?;
    Ok(Json(state.store.alerts(&name, 10_000).await?))
}
