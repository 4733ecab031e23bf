//! `/api/v2/connections`: Airflow's connections (Op and above). Passwords and extras are encrypted at rest;
//! the password and sensitive extra fields read as `***` for anyone but an Admin. A masked value sent back
//! unchanged keeps the stored one. `POST /connections/test` is not offered: like Airflow's default
//! (`test_connection = Disabled`), the engine does not dial addresses users type in.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::secrets::{Connection, MASK};
use engine::store::Existing;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::bulk::{self, Action, BulkBody};
use super::{like, MAX_LIMIT};
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Params};
use crate::{Principal, WebState};

/// Present-but-null apart from absent (`Some(None)` vs `None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `ConnectionBody`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    connection_id: String,
    conn_type: String,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    host: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    login: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    schema: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    port: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    password: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    extra: Option<Option<String>>,
    #[serde(default)]
    team_name: Option<String>,
}

impl ConnectionBody {
    /// The connection it describes, over `base` (fields absent from the body, or left out by `mask`, keep
    /// `base`'s; a masked password or extra sent back keeps `base`'s).
    fn connection(&self, base: Option<&Connection>, mask: &[String]) -> ApiResult<Connection> {
        if self.team_name.is_some() {
            return Err(ApiError::bad_request("team_name is not supported by dagctl"));
        }
        let empty = Connection::default();
        let base = base.unwrap_or(&empty);
        let wants = |field: &str| mask.is_empty() || mask.iter().any(|f| f == field);
        fn pick<T: Clone>(field: &Option<Option<T>>, wanted: bool, base: &Option<T>) -> Option<T> {
            match field {
                Some(value) if wanted => value.clone(),
                _ => base.clone(),
            }
        }
        let mut conn = Connection {
            conn_id: self.connection_id.clone(),
            conn_type: if wants("conn_type") {
                self.conn_type.clone()
            } else {
                base.conn_type.clone()
            },
            description: pick(&self.description, wants("description"), &base.description),
            host: pick(&self.host, wants("host"), &base.host),
            schema: pick(&self.schema, wants("schema"), &base.schema),
            login: pick(&self.login, wants("login"), &base.login),
            password: pick(&self.password, wants("password"), &base.password),
            port: pick(&self.port, wants("port"), &base.port),
            extra: pick(&self.extra, wants("extra"), &base.extra),
        };
        if conn.password.as_deref() == Some(MASK) {
            conn.password = base.password.clone();
        }
        // Sensitive extra fields sent back as `***` keep their stored values.
        if let (Some(new), Some(_)) = (&conn.extra, &base.extra) {
            if new.contains(MASK) {
                if let Ok(parsed) = serde_json::from_str::<Value>(new) {
                    conn.extra = Some(engine::secrets::unmask_json(&parsed, &base.extra_dejson(), false).to_string());
                }
            }
        }
        conn.check()
            .map_err(|e| ApiError::validation(&["body"], e.to_string(), "value_error"))?;
        Ok(conn)
    }
}

fn shape(c: &Connection, who: &Principal) -> Value {
    let c = c.shown(who.role >= Role::Admin);
    json!({
        "connection_id": c.conn_id,
        "conn_type": c.conn_type,
        "description": c.description,
        "host": c.host,
        "login": c.login,
        "schema": c.schema,
        "port": c.port,
        "password": c.password,
        "extra": c.extra,
        "team_name": null,
    })
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("The Connection with connection_id: `{id}` was not found"))
}

async fn find(state: &WebState, id: &str) -> ApiResult<Connection> {
    match state.vault.get_connection(id).await {
        Ok(c) => Ok(c),
        Err(engine::Error::NotFound(_)) => Err(not_found(id)),
        Err(err) => Err(err.into()),
    }
}

/// `GET /api/v2/connections`.
pub async fn list(State(state): State<WebState>, who: Principal, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    who.require(Role::Op)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["limit", "offset", "order_by", "connection_id_pattern"])?;
    let limit = params.int("limit", 50, 0, MAX_LIMIT)?;
    let offset = params.int("offset", 0, 0, i64::MAX)?;
    let pattern = params.pattern("connection_id_pattern")?;
    let (descending, field) = params.order_by("id")?;
    let mut rows: Vec<Connection> = state
        .vault
        .list_connections()
        .await?
        .into_iter()
        .filter(|c| {
            pattern
                .as_deref()
                .is_none_or(|p| p.split('|').any(|alt| like(alt.trim(), &c.conn_id)))
        })
        .collect();
    match field {
        "id" | "connection_id" | "conn_id" => {}
        "conn_type" => rows.sort_by(|a, b| a.conn_type.cmp(&b.conn_type).then(a.conn_id.cmp(&b.conn_id))),
        "host" => rows.sort_by(|a, b| a.host.cmp(&b.host).then(a.conn_id.cmp(&b.conn_id))),
        "port" => rows.sort_by(|a, b| a.port.cmp(&b.port).then(a.conn_id.cmp(&b.conn_id))),
        "description" => rows.sort_by(|a, b| a.description.cmp(&b.description).then(a.conn_id.cmp(&b.conn_id))),
        other => {
            return Err(ApiError::bad_request(format!(
                "cannot order connections by `{other}`; use connection_id, conn_type, description, host, port or id"
            )))
        }
    }
    if descending {
        rows.reverse();
    }
    Ok(super::collection("connections", &rows, offset, limit, |c| {
        shape(c, &who)
    }))
}

/// `GET /api/v2/connections/{connection_id}`.
pub async fn get(State(state): State<WebState>, who: Principal, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    who.require(Role::Op)?;
    Ok(Json(shape(&find(&state, &id).await?, &who)))
}

/// `POST /api/v2/connections`: 201, or 409 when the id is taken.
pub async fn create(
    State(state): State<WebState>,
    who: Principal,
    JsonBody(body): JsonBody<ConnectionBody>,
) -> ApiResult<Response> {
    who.require(Role::Op)?;
    let conn = body.connection(None, &[])?;
    state
        .vault
        .put_connection(&conn, Existing::Fail, Some(&who.username))
        .await
        .map_err(|err| match err {
            engine::Error::Conflict(_) => ApiError::conflict(format!(
                "The connection with connection_id: `{}` already exists",
                conn.conn_id
            )),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(shape(&conn, &who))).into_response())
}

/// `PATCH /api/v2/connections/{connection_id}` (only the fields in the body, limited by `update_mask`).
pub async fn patch(
    State(state): State<WebState>,
    who: Principal,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody<ConnectionBody>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Op)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["update_mask"])?;
    let mask = params.list("update_mask");
    const FIELDS: &[&str] = &[
        "conn_type",
        "description",
        "host",
        "login",
        "schema",
        "port",
        "password",
        "extra",
        "connection_id",
    ];
    if let Some(field) = mask.iter().find(|f| !FIELDS.contains(&f.as_str())) {
        return Err(ApiError::bad_request(format!("`{field}` is not a connection field")));
    }
    if body.connection_id != id {
        return Err(ApiError::bad_request(format!(
            "The connection_id in the request body does not match the URL: `{}` is not `{id}`",
            body.connection_id
        )));
    }
    let current = find(&state, &id).await?;
    let conn = body.connection(Some(&current), &mask)?;
    state
        .vault
        .put_connection(&conn, Existing::MustExist, Some(&who.username))
        .await?;
    Ok(Json(shape(&conn, &who)))
}

/// `DELETE /api/v2/connections/{connection_id}`: 204.
pub async fn delete(State(state): State<WebState>, who: Principal, Path(id): Path<String>) -> ApiResult<StatusCode> {
    who.require(Role::Op)?;
    match state.vault.delete_connection(&id, Some(&who.username)).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(engine::Error::NotFound(_)) => Err(not_found(&id)),
        Err(err) => Err(err.into()),
    }
}

/// `PATCH /api/v2/connections`: create, update and delete in bulk (`BulkBody[ConnectionBody]`).
pub async fn bulk(
    State(state): State<WebState>,
    who: Principal,
    JsonBody(body): JsonBody<BulkBody<ConnectionBody>>,
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
                    let base = match existing {
                        Existing::MustExist | Existing::Overwrite => {
                            vault.get_connection(&entity.connection_id).await.ok()
                        }
                        Existing::Fail => None,
                    };
                    let conn = entity.connection(base.as_ref(), &[])?;
                    vault.put_connection(&conn, existing, Some(&user)).await?;
                    Ok(conn.conn_id)
                }
                Action::Delete(id) => {
                    vault.delete_connection(&id, Some(&user)).await?;
                    Ok(id)
                }
            }
        }
    })
    .await?;
    Ok(Json(response))
}

impl bulk::Entity for ConnectionBody {
    fn name(&self) -> &str {
        &self.connection_id
    }
}
