//! `/api/v2/dagctl/networks/{network_name}/...`: what the monitor stored of a network, for API users and the
//! network page: its samples (`series`) and its log alerts (`alerts`). Viewers may read both.

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use engine::store::SampleFilter;
use serde_json::{json, Value};

use super::shapes;
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::Params;
use crate::{Principal, WebState};

/// `GET /api/v2/dagctl/networks/{network_name}/series?metric=&node=&from=&to=&limit=`: samples, oldest first.
pub async fn series(
    State(state): State<WebState>,
    who: Principal,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["metric", "node", "from", "to", "limit"])?;
    let limit = params.int("limit", 10_000, 1, 100_000)?;
    for field in ["metric", "node"] {
        if params.str(field).is_some_and(|v| v.is_empty() || v.len() > 200) {
            return Err(ApiError::validation(
                &["query", field],
                "must be 1 to 200 characters",
                "string_length",
            ));
        }
    }
    let (from, to) = (params.time("from")?, params.time("to")?);
    state.store.get_network(&name).await?;
    let samples = state
        .store
        .samples(&SampleFilter {
            network: &name,
            metric: params.str("metric"),
            node: params.str("node"),
            from,
            to,
            limit: Some(limit as u32),
        })
        .await?;
    Ok(Json(json!({
        "network": name,
        "samples": samples.iter().map(|s| json!({
            "at": shapes::ts(s.at), "node": s.node, "metric": s.metric, "value": s.value,
        })).collect::<Vec<_>>(),
    })))
}

/// `GET /api/v2/dagctl/networks/{network_name}/alerts?limit=`: log alerts, most recent first.
pub async fn alerts(
    State(state): State<WebState>,
    who: Principal,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["limit"])?;
    let limit = params.int("limit", 100, 1, 1000)?;
    state.store.get_network(&name).await?;
    let alerts = state.store.alerts(&name, limit as u32).await?;
    Ok(Json(json!({
        "network": name,
        "alerts": alerts.iter().map(|a| json!({
            "node": a.node, "level": a.level, "pattern": a.pattern, "message": a.message, "count": a.count,
            "first_at": shapes::ts(a.first_at), "last_at": shapes::ts(a.last_at),
        })).collect::<Vec<_>>(),
    })))
}
