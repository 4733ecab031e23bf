//! `/api/v2/variables`: Airflow's variables (Op and above). Values are encrypted at rest; a value under a
//! sensitive key (`password`, `token`, ...), and sensitive fields inside a JSON value, read as `***` for
//! anyone but an Admin, as Airflow's redaction shows them.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::secrets::{is_sensitive, mask_json, Variable, MASK};
use engine::store::Existing;
use serde::Deserialize;
use serde_json::{json, Value};

use super::bulk::{self, Action, BulkBody};
use super::{like, MAX_LIMIT};
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Params};
use crate::{Principal, WebState};

/// `VariableBody`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableBody {
    key: String,
    value: Value,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    team_name: Option<String>,
}

impl VariableBody {
    /// The variable it describes: a string value as is, any other JSON value as its JSON text.
    fn variable(&self) -> ApiResult<Variable> {
        if self.team_name.is_some() {
            return Err(ApiError::bad_request("team_name is not supported by dagctl"));
        }
        let value = match &self.value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let variable = Variable {
            key: self.key.clone(),
            value,
            description: self.description.clone(),
        };
        variable
            .check()
            .map_err(|e| ApiError::validation(&["body"], e.to_string(), "value_error"))?;
        Ok(variable)
    }
}

/// `new` with the masked parts of what a non-Admin was shown of `current` put back: `***` for a whole
/// sensitive value, or for fields under sensitive keys of a JSON value.
fn keep_masked(new: &str, current: &Variable) -> String {
    if !new.contains(MASK) {
        return new.to_string();
    }
    if new == MASK && current.is_sensitive() {
        return current.value.clone();
    }
    match (
        serde_json::from_str::<Value>(new),
        serde_json::from_str::<Value>(&current.value),
    ) {
        (Ok(n @ (Value::Object(_) | Value::Array(_))), Ok(o)) => {
            engine::secrets::unmask_json(&n, &o, current.is_sensitive()).to_string()
        }
        _ => new.to_string(),
    }
}

/// The value as the caller may see it.
fn shown_value(v: &Variable, who: &Principal) -> String {
    if who.role >= Role::Admin {
        return v.value.clone();
    }
    if is_sensitive(&v.key) {
        return MASK.into();
    }
    match serde_json::from_str::<Value>(&v.value) {
        Ok(parsed @ Value::Object(_)) => mask_json(&parsed).to_string(),
        _ => v.value.clone(),
    }
}

fn shape(v: &Variable, who: &Principal) -> Value {
    json!({
        "key": v.key,
        "value": shown_value(v, who),
        "description": v.description,
        "is_encrypted": true,
        "team_name": null,
    })
}

fn not_found(key: &str) -> ApiError {
    ApiError::not_found(format!("The Variable with key: `{key}` was not found"))
}

/// `GET /api/v2/variables`.
pub async fn list(State(state): State<WebState>, who: Principal, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    who.require(Role::Op)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["limit", "offset", "order_by", "variable_key_pattern"])?;
    let limit = params.int("limit", 50, 0, MAX_LIMIT)?;
    let offset = params.int("offset", 0, 0, i64::MAX)?;
    let pattern = params.pattern("variable_key_pattern")?;
    let (descending, field) = params.order_by("id")?;
    let mut rows: Vec<Variable> = state
        .vault
        .list_variables()
        .await?
        .into_iter()
        .filter(|v| {
            pattern
                .as_deref()
                .is_none_or(|p| p.split('|').any(|alt| like(alt.trim(), &v.key)))
        })
        .collect();
    match field {
        "id" | "key" => {}
        "description" => rows.sort_by(|a, b| a.description.cmp(&b.description).then(a.key.cmp(&b.key))),
        // Ordering by values that read `***` would give them away: Admins only.
        "_val" | "value" if who.role >= Role::Admin => {
            rows.sort_by(|a, b| a.value.cmp(&b.value).then(a.key.cmp(&b.key)))
        }
        "_val" | "value" => return Err(ApiError::forbidden("ordering variables by value needs the Admin role")),
        "is_encrypted" | "team_name" => {}
        other => {
            return Err(ApiError::bad_request(format!(
                "cannot order variables by `{other}`; use key, id, _val, description or is_encrypted"
            )))
        }
    }
    if descending {
        rows.reverse();
    }
    Ok(super::collection("variables", &rows, offset, limit, |v| shape(v, &who)))
}

/// `GET /api/v2/variables/{key}`.
pub async fn get(State(state): State<WebState>, who: Principal, Path(key): Path<String>) -> ApiResult<Json<Value>> {
    who.require(Role::Op)?;
    match state.vault.get_variable(&key).await {
        Ok(v) => Ok(Json(shape(&v, &who))),
        Err(engine::Error::NotFound(_)) => Err(not_found(&key)),
        Err(err) => Err(err.into()),
    }
}

/// `POST /api/v2/variables`: 201, or 409 when the key is taken.
pub async fn create(
    State(state): State<WebState>,
    who: Principal,
    JsonBody(body): JsonBody<VariableBody>,
) -> ApiResult<Response> {
    who.require(Role::Op)?;
    let variable = body.variable()?;
    state
        .vault
        .put_variable(&variable, Existing::Fail, Some(&who.username))
        .await
        .map_err(|err| match err {
            engine::Error::Conflict(_) => {
                ApiError::conflict(format!("The Variable with key: `{}` already exists", variable.key))
            }
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(shape(&variable, &who))).into_response())
}

/// `PATCH /api/v2/variables/{key}` (`update_mask`: value, description).
pub async fn patch(
    State(state): State<WebState>,
    who: Principal,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody<VariableBody>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Op)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["update_mask"])?;
    let mask = params.list("update_mask");
    if let Some(field) = mask
        .iter()
        .find(|f| !["value", "description", "key"].contains(&f.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "`{field}` cannot be updated; use value or description"
        )));
    }
    if body.key != key {
        return Err(ApiError::bad_request(format!(
            "Invalid body, key from request body doesn't match uri parameter: `{}` is not `{key}`",
            body.key
        )));
    }
    let mut wanted = body.variable()?;
    let current = match state.vault.get_variable(&key).await {
        Ok(v) => v,
        Err(engine::Error::NotFound(_)) => return Err(not_found(&key)),
        Err(err) => return Err(err.into()),
    };
    let wants = |field: &str| mask.is_empty() || mask.iter().any(|f| f == field);
    if wants("value") {
        wanted.value = keep_masked(&wanted.value, &current);
    } else {
        wanted.value = current.value.clone();
    }
    if !wants("description") {
        wanted.description = current.description.clone();
    }
    state
        .vault
        .put_variable(&wanted, Existing::MustExist, Some(&who.username))
        .await?;
    Ok(Json(shape(&wanted, &who)))
}

/// `DELETE /api/v2/variables/{key}`: 204.
pub async fn delete(State(state): State<WebState>, who: Principal, Path(key): Path<String>) -> ApiResult<StatusCode> {
    who.require(Role::Op)?;
    match state.vault.delete_variable(&key, Some(&who.username)).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(engine::Error::NotFound(_)) => Err(not_found(&key)),
        Err(err) => Err(err.into()),
    }
}

/// `PATCH /api/v2/variables`: create, update and delete in bulk (`BulkBody[VariableBody]`).
pub async fn bulk(
    State(state): State<WebState>,
    who: Principal,
    JsonBody(body): JsonBody<BulkBody<VariableBody>>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Op)?;
    let user = who.username.clone();
    let vault = state.vault.clone();
    let response = bulk::apply(body, |action| {
        let vault = vault.clone();
        let user = user.clone();
        async move {
            match action {
                Action::Write { entity, existing } => {
                    let mut v = entity.variable()?;
                    if existing != Existing::Fail {
                        if let Ok(current) = vault.get_variable(&v.key).await {
                            v.value = keep_masked(&v.value, &current);
                        }
                    }
                    vault.put_variable(&v, existing, Some(&user)).await?;
                    Ok(v.key)
                }
                Action::Delete(key) => {
                    vault.delete_variable(&key, Some(&user)).await?;
                    Ok(key)
                }
            }
        }
    })
    .await?;
    Ok(Json(response))
}

impl bulk::Entity for VariableBody {
    fn name(&self) -> &str {
        &self.key
    }
}
