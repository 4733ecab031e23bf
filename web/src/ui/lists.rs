//! Read-only lists: the blockchain networks, the audit log, and (for Admins) the users.

use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};

use super::view::{fail, when};
use super::UiUser;
use crate::auth::Role;
use crate::html::render;
use crate::WebState;

/// `/networks`: the blockchain networks the store knows.
pub async fn networks(State(state): State<WebState>, user: UiUser) -> Response {
    let rows = match state.store.list_networks(true).await {
        Ok(r) => r,
        Err(err) => return fail(err.into()),
    };
    let networks: Vec<Value> = rows
        .iter()
        .map(|n| {
            let spec: Value = serde_json::from_str(&n.spec).unwrap_or(Value::Null);
            let nodes: Value = serde_json::from_str(&n.nodes).unwrap_or(Value::Null);
            json!({
                "name": n.name, "status": n.status, "message": n.message, "backend": n.backend, "host": n.host,
                "client": spec.get("client"), "consensus": spec.get("consensus"),
                "nodes": nodes.as_array().map(|a| a.len()).or_else(|| spec.get("nodes").and_then(|v| v.as_u64()).map(|v| v as usize)),
                "dag_id": n.dag_id, "run_id": n.run_id, "task_id": n.task_id, "created_at": when(Some(n.created_at)),
            })
        })
        .collect();
    let mut ctx = user.base(&state, "networks");
    ctx.insert("networks".into(), json!(networks));
    render("networks.html", Value::Object(ctx))
}

/// `/audit`: the newest 200 audit entries.
pub async fn audit(State(state): State<WebState>, user: UiUser) -> Response {
    let rows = match state.store.events(200).await {
        Ok(r) => r,
        Err(err) => return fail(err.into()),
    };
    let events: Vec<Value> = rows
        .iter()
        .map(|e| {
            json!({"when": when(Some(e.ts)), "owner": e.owner, "event": e.event, "dag_id": e.dag_id,
                        "run_id": e.run_id, "task_id": e.task_id, "extra": e.extra})
        })
        .collect();
    let mut ctx = user.base(&state, "audit");
    ctx.insert("events".into(), json!(events));
    render("audit.html", Value::Object(ctx))
}

/// `/users` (Admin): who may sign in, with which role.
pub async fn users(State(state): State<WebState>, user: UiUser) -> Response {
    if let Err(r) = user.require(Role::Admin) {
        return r;
    }
    let rows = match state.store.list_users().await {
        Ok(r) => r,
        Err(err) => return fail(err.into()),
    };
    let users: Vec<Value> = rows
        .iter()
        .map(|u| {
            json!({"username": u.username, "role": u.role, "source": u.source, "email": u.email,
                        "last_login_at": when(u.last_login_at)})
        })
        .collect();
    let mut ctx = user.base(&state, "users");
    ctx.insert("users".into(), json!(users));
    render("users.html", Value::Object(ctx))
}
