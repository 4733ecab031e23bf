//! DAG versions (`/api/v2/dags/{dag_id}/dagVersions`): every stored version with the commit it came from.

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use engine::store::VersionInfo;
use serde_json::Value;

use super::dags::find_dag;
use super::{shapes, MAX_LIMIT};
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::Params;
use crate::{Principal, WebState};

/// `GET /api/v2/dags/{dag_id}/dagVersions`.
pub async fn list(
    State(state): State<WebState>,
    who: Principal,
    Path(dag_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&[
        "limit",
        "offset",
        "version_number",
        "bundle_name",
        "bundle_version",
        "order_by",
    ])?;
    let limit = params.int("limit", 50, 0, MAX_LIMIT)?;
    let offset = params.int("offset", 0, 0, i64::MAX)?;
    let number = match params.str("version_number") {
        None => None,
        Some(_) => Some(params.int("version_number", 0, 1, i64::MAX)?),
    };
    let bundle_version = params.str("bundle_version");
    let (descending, column) = params.order_by("id")?;
    find_dag(&state, &dag_id).await?;
    if params.str("bundle_name").is_some_and(|name| name != "dags-folder") {
        return Ok(super::collection(
            "dag_versions",
            &Vec::<VersionInfo>::new(),
            0,
            0,
            |_| Value::Null,
        ));
    }
    let mut versions: Vec<VersionInfo> = state
        .store
        .list_versions(&dag_id)
        .await?
        .into_iter()
        .filter(|v| number.is_none_or(|n| v.number == n))
        .filter(|v| bundle_version.is_none_or(|b| v.bundle_version.as_deref() == Some(b)))
        .collect();
    match column {
        // Ids are random: Airflow's order by id is creation order, which version numbers are.
        "id" | "version_number" | "bundle_name" => {}
        "bundle_version" => versions.sort_by(|a, b| a.bundle_version.cmp(&b.bundle_version)),
        other => {
            return Err(ApiError::bad_request(format!(
                "cannot order DAG versions by `{other}`; use id, version_number, bundle_name or bundle_version (prefix - for descending)"
            )))
        }
    }
    if descending {
        versions.reverse();
    }
    Ok(super::collection("dag_versions", &versions, offset, limit, |v| {
        shapes::version(&dag_id, v)
    }))
}

/// `GET /api/v2/dags/{dag_id}/dagVersions/{version_number}`.
pub async fn get(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, number)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let wanted: i64 = number.parse().map_err(|_| {
        ApiError::validation(
            &["path", "version_number"],
            format!("`{number}` is not an integer"),
            "int_parsing",
        )
    })?;
    find_dag(&state, &dag_id).await?;
    let versions = state.store.list_versions(&dag_id).await?;
    let version = versions.iter().find(|v| v.number == wanted).ok_or_else(|| {
        ApiError::not_found(format!(
            "The DagVersion with dag_id: `{dag_id}` and version_number: `{wanted}` was not found"
        ))
    })?;
    Ok(Json(shapes::version(&dag_id, version)))
}
