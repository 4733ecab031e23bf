//! The pools page: slots and their use; Ops and Admins also create, change and delete pools here.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{json, Value};

use super::view::fail;
use super::{checked_form, UiUser};
use crate::auth::Role;
use crate::extract::field;
use crate::html::render;
use crate::WebState;

fn pools_page(state: &WebState, user: &UiUser, pools: &[engine::store::PoolRow], error: Option<&str>) -> Response {
    let mut ctx = user.base(state, "pools");
    ctx.insert(
        "pools".into(),
        json!(pools.iter().map(crate::api::shapes::pool).collect::<Vec<_>>()),
    );
    ctx.insert("can_manage".into(), json!(user.0.role >= Role::Op));
    ctx.insert("error".into(), json!(error));
    let mut response = render("pools.html", Value::Object(ctx));
    if error.is_some() {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    response
}

/// `/pools`: slots and their use; Ops and Admins also create, change and delete pools here.
pub async fn pools(State(state): State<WebState>, user: UiUser) -> Response {
    match state.store.list_pools().await {
        Ok(pools) => pools_page(&state, &user, &pools, None),
        Err(err) => fail(err.into()),
    }
}

/// `POST /pools`: create or change a pool (Op).
pub async fn pool_submit(State(state): State<WebState>, user: UiUser, req: axum::extract::Request) -> Response {
    let pairs = match checked_form(&state, &user, Role::Op, req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let name = field(&pairs, "name").unwrap_or("").trim().to_string();
    let description = field(&pairs, "description").map(str::trim).filter(|d| !d.is_empty());
    let slots = field(&pairs, "slots").and_then(|s| s.trim().parse::<i64>().ok());
    let outcome = match slots {
        Some(slots) if (0..=1_000_000).contains(&slots) => {
            if description.is_some_and(|d| d.len() > 1000) {
                Err("A description is at most 1000 characters.".to_string())
            } else {
                state
                    .store
                    .put_pool(&name, slots, description, Some(&user.0.username))
                    .await
                    .map_err(|err| err.to_string())
            }
        }
        _ => Err("Slots must be a whole number from 0 to 1000000.".to_string()),
    };
    match outcome {
        Ok(()) => Redirect::to("/pools").into_response(),
        Err(error) => match state.store.list_pools().await {
            Ok(pools) => pools_page(&state, &user, &pools, Some(&error)),
            Err(err) => fail(err.into()),
        },
    }
}

/// `POST /pools/{name}/delete` (Op).
pub async fn pool_delete(
    State(state): State<WebState>,
    user: UiUser,
    Path(name): Path<String>,
    req: axum::extract::Request,
) -> Response {
    if let Err(r) = checked_form(&state, &user, Role::Op, req).await {
        return r;
    }
    match state.store.delete_pool(&name, Some(&user.0.username)).await {
        Ok(()) => Redirect::to("/pools").into_response(),
        Err(err) => fail(err.into()),
    }
}
