//! Local sign-in and sign-out: the login form (guarded by a login CSRF cookie), checking the password, and
//! signing out (which revokes the session's token).

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::{checked_form, form, UiUser};
use crate::auth::{random_token, Role};
use crate::extract::{field, serde_urlencoded_pairs};
use crate::html::{error_page, render};
use crate::session::{cookie_header, safe_next, start_session, LOGIN_CSRF_COOKIE};
use crate::{cookie, WebState, SESSION_COOKIE};

pub(super) async fn login_page(State(state): State<WebState>, RawQuery(query): RawQuery) -> Response {
    let pairs = serde_urlencoded_pairs(query.as_deref().unwrap_or("")).unwrap_or_default();
    let next = safe_next(field(&pairs, "next"));
    let error = field(&pairs, "error").map(|e| match e {
        "sso" => "Single sign-on failed; try again or ask an administrator.".to_string(),
        "norole" => "Your account is not in any group that has a role in dagctl.".to_string(),
        _ => "Sign-in failed.".to_string(),
    });
    login_form(&state, &next, error.as_deref(), StatusCode::OK)
}

fn login_form(state: &WebState, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let csrf = random_token(16);
    let mut response = render(
        "login.html",
        json!({"next": next, "error": error, "csrf": csrf, "sso": state.oidc.as_ref().map(|o| o.display_name())}),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .append(header::SET_COOKIE, cookie_header(state, LOGIN_CSRF_COOKIE, &csrf, 3600));
    response
}

pub(super) async fn login_submit(State(state): State<WebState>, req: axum::extract::Request) -> Response {
    let expected = cookie(req.headers(), LOGIN_CSRF_COOKIE).unwrap_or("").to_string();
    let client = crate::client_address(&req);
    let pairs = match form(req).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let next = safe_next(field(&pairs, "next"));
    let given = field(&pairs, "csrf_token").unwrap_or("");
    if expected.is_empty() || given != expected {
        return login_form(
            &state,
            &next,
            Some("The sign-in form expired; please try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let username = field(&pairs, "username").unwrap_or("");
    let password = field(&pairs, "password").unwrap_or("");
    match crate::check_local_login(&state, username, password, client).await {
        Ok(user) => {
            let role = Role::parse(&user.role).unwrap_or(Role::Viewer);
            let _ = state.store.touch_login(&user.username, chrono::Utc::now()).await;
            let _ = state
                .store
                .audit("login", None, None, Some(&user.username), Some("local"))
                .await;
            start_session(&state, &user.username, role, &next)
        }
        Err(err) if err.status == StatusCode::TOO_MANY_REQUESTS => login_form(
            &state,
            &next,
            Some(&format!(
                "{}.",
                err.detail.as_str().unwrap_or("Too many failed sign-ins")
            )),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(_) => login_form(
            &state,
            &next,
            Some("Wrong user name or password."),
            StatusCode::UNAUTHORIZED,
        ),
    }
}

pub(super) async fn logout(State(state): State<WebState>, user: UiUser, req: axum::extract::Request) -> Response {
    if let Err(response) = checked_form(&state, &user, Role::Viewer, req).await {
        return response;
    }
    // The cookie is gone from this browser; the revocation makes a copy of it worthless too.
    let expires = chrono::DateTime::from_timestamp(user.0.expires_at, 0).unwrap_or_else(chrono::Utc::now);
    if let Err(err) = state.store.revoke_token(&user.0.session_id, expires).await {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot sign out: {err}"));
    }
    let _ = state
        .store
        .audit("logout", None, None, Some(&user.0.username), None)
        .await;
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, cookie_header(&state, SESSION_COOKIE, "", 0));
    response
}
