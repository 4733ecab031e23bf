//! The API token page: creates a token for the signed-in user and shows it once.

use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};

use super::{checked_form, UiUser};
use crate::auth::Role;
use crate::html::render;
use crate::WebState;

fn token_view(state: &WebState, user: &UiUser, token: Option<String>, headers: &axum::http::HeaderMap) -> Response {
    let origin = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"))
        .unwrap_or_default();
    let mut ctx = user.base(state, "token");
    ctx.insert("token".into(), json!(token));
    ctx.insert("hours".into(), json!(state.config.token_ttl_secs / 3600));
    ctx.insert("origin".into(), json!(origin));
    render("token.html", Value::Object(ctx))
}

/// `/token`: a page to create an API token for the signed-in user.
pub async fn token_page(State(state): State<WebState>, user: UiUser, headers: axum::http::HeaderMap) -> Response {
    token_view(&state, &user, None, &headers)
}

/// `POST /token`: creates the token and shows it once.
pub async fn token_submit(State(state): State<WebState>, user: UiUser, req: axum::extract::Request) -> Response {
    let headers = req.headers().clone();
    if let Err(r) = checked_form(&state, &user, Role::Viewer, req).await {
        return r;
    }
    let (token, _) = state
        .keys
        .issue(&user.0.username, user.0.role, "api", state.config.token_ttl_secs);
    let _ = state
        .store
        .audit(
            "token_issued",
            None,
            None,
            Some(&user.0.username),
            Some("api token (page)"),
        )
        .await;
    token_view(&state, &user, Some(token), &headers)
}
