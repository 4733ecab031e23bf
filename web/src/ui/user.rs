//! The signed-in UI user: the extractor that sends the browser to `/login` without a session, the context
//! every page gets, and role checks that answer with an error page.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{json, Value};

use super::urlencode;
use crate::auth::Role;
use crate::html::error_page;
use crate::{authenticate, AuthVia, Principal, WebState};

/// A signed-in UI user (session cookie); pages redirect to `/login` without one.
pub struct UiUser(pub Principal);

pub struct LoginRedirect(Response);

impl IntoResponse for LoginRedirect {
    fn into_response(self) -> Response {
        self.0
    }
}

impl FromRequestParts<WebState> for UiUser {
    type Rejection = LoginRedirect;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Self::Rejection> {
        match authenticate(parts, state).await {
            Ok(Some(principal)) if principal.via == AuthVia::Session => Ok(UiUser(principal)),
            _ => {
                let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/dags");
                let to = format!("/login?next={}", urlencode(next));
                Err(LoginRedirect(Redirect::to(&to).into_response()))
            }
        }
    }
}

impl UiUser {
    /// The context every page gets: who, their role, the CSRF token for forms.
    pub fn base(&self, state: &WebState, section: &str) -> serde_json::Map<String, Value> {
        let mut ctx = serde_json::Map::new();
        ctx.insert(
            "user".into(),
            json!({"username": self.0.username, "role": self.0.role.as_str()}),
        );
        ctx.insert("csrf".into(), json!(state.keys.csrf_token(&self.0.session_id)));
        ctx.insert("can_edit".into(), json!(self.0.role >= Role::User));
        ctx.insert("section".into(), json!(section));
        ctx
    }

    /// 403 page unless the user has `role` (forms are only shown to those who may use them, but the server
    /// decides).
    pub fn require(&self, role: Role) -> Result<(), Response> {
        self.0
            .require(role)
            .map_err(|err| error_page(StatusCode::FORBIDDEN, err.detail.as_str().unwrap_or("forbidden")))
    }
}
