//! Page forms: the body as pairs, and the checks every state-changing form passes (the session's CSRF token,
//! the user's role).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::UiUser;
use crate::auth::Role;
use crate::extract::{field, read_body, serde_urlencoded_pairs};
use crate::html::error_page;
use crate::WebState;

/// A form body as pairs (at most the body limit).
pub async fn form(req: axum::extract::Request) -> Result<Vec<(String, String)>, Response> {
    let bytes = read_body(req, &()).await.map_err(IntoResponse::into_response)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| error_page(StatusCode::BAD_REQUEST, "the form is not UTF-8"))?;
    serde_urlencoded_pairs(text).map_err(IntoResponse::into_response)
}

/// The form of a state-changing page request, once its CSRF token and the user's role (at least `role`)
/// are checked; otherwise the error page to answer with.
pub async fn checked_form(
    state: &WebState,
    user: &UiUser,
    role: Role,
    req: axum::extract::Request,
) -> Result<Vec<(String, String)>, Response> {
    let pairs = form(req).await?;
    check_csrf(state, user, &pairs)?;
    user.require(role)?;
    Ok(pairs)
}

/// Checks the session CSRF token of a form.
pub fn check_csrf(state: &WebState, user: &UiUser, pairs: &[(String, String)]) -> Result<(), Response> {
    if state
        .keys
        .csrf_ok(&user.0.session_id, field(pairs, "csrf_token").unwrap_or(""))
    {
        Ok(())
    } else {
        Err(error_page(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or stale: reload the page and try again.",
        ))
    }
}
