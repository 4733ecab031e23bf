//! The web UI: server-rendered pages (minijinja templates compiled into the binary) with one small script
//! that follows live logs. No CDN: every asset is served from here.
//!
//! Sign-in: `/login` (local users; a login CSRF cookie guards the form), `/auth/oidc/*` (OpenID Connect, see
//! [`crate::oidc`]), `/logout` (POST with the session's CSRF token). Every page needs a session and redirects
//! to `/login` without one; every form that changes something carries the session's CSRF token and the
//! server checks the role again, whatever the page showed.

// Page helpers return a ready error page as their `Err`; it goes straight back to the browser, so boxing it
// would only add an allocation.
#![allow(clippy::result_large_err)]

mod pages;

use std::sync::OnceLock;

use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::Environment;
use serde_json::{json, Value};

use crate::auth::{random_token, Role};
use crate::extract::{read_body, serde_urlencoded_pairs};
use crate::{authenticate, cookie, AuthVia, Principal, WebState, SESSION_COOKIE};

const LOGIN_CSRF_COOKIE: &str = "dagctl_login_csrf";

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../assets/base.html")),
    ("login.html", include_str!("../../assets/login.html")),
    ("dags.html", include_str!("../../assets/dags.html")),
    ("dag.html", include_str!("../../assets/dag.html")),
    ("trigger.html", include_str!("../../assets/trigger.html")),
    ("run.html", include_str!("../../assets/run.html")),
    ("runs.html", include_str!("../../assets/runs.html")),
    ("log.html", include_str!("../../assets/log.html")),
    ("networks.html", include_str!("../../assets/networks.html")),
    ("audit.html", include_str!("../../assets/audit.html")),
    ("error.html", include_str!("../../assets/error.html")),
    ("pools.html", include_str!("../../assets/pools.html")),
    ("users.html", include_str!("../../assets/users.html")),
    ("token.html", include_str!("../../assets/token.html")),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .expect("templates compile (checked by a test)");
        }
        env
    })
}

/// Renders a template; a template error is a 500 page (and a test keeps every template rendering).
pub fn render(name: &str, ctx: Value) -> Response {
    match env().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => {
            let mut response = Html(html).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"),
            );
            response
        }
        Err(err) => {
            tracing::error!(template = name, error = %err, "cannot render page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<h1>500</h1><p>cannot render this page</p>"),
            )
                .into_response()
        }
    }
}

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dags") }))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/static/style.css", get(style))
        .route("/static/app.js", get(script))
        .route("/dags", get(pages::dags))
        .route("/dags/{dag_id}", get(pages::dag))
        .route("/dags/{dag_id}/pause", post(pages::pause))
        .route(
            "/dags/{dag_id}/trigger",
            get(pages::trigger_form).post(pages::trigger_submit),
        )
        .route("/dags/{dag_id}/runs/{run_id}", get(pages::run))
        .route("/dags/{dag_id}/runs/{run_id}/clear", post(pages::clear))
        .route("/dags/{dag_id}/runs/{run_id}/tasks/{task_id}", get(pages::log))
        .route("/runs", get(pages::runs))
        .route("/networks", get(pages::networks))
        .route("/audit", get(pages::audit))
        .route("/pools", get(pages::pools).post(pages::pool_submit))
        .route("/pools/{name}/delete", post(pages::pool_delete))
        .route("/users", get(pages::users))
        .route("/token", get(pages::token_page).post(pages::token_submit))
        .merge(crate::oidc::routes())
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../assets/style.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../assets/app.js"),
    )
        .into_response()
}

pub fn not_found_page() -> Response {
    error_page(StatusCode::NOT_FOUND, "There is no page here.")
}

/// A page for an error, without the signed-in chrome (the caller may not be signed in).
pub fn error_page(status: StatusCode, detail: &str) -> Response {
    let mut response = render(
        "error.html",
        json!({"status": status.as_u16(), "detail": detail, "user": {"username": "", "role": ""}, "csrf": ""}),
    );
    *response.status_mut() = status;
    response
}

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

/// A form body as pairs (at most the body limit).
pub async fn form(req: axum::extract::Request) -> Result<Vec<(String, String)>, Response> {
    let bytes = read_body(req, &()).await.map_err(IntoResponse::into_response)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| error_page(StatusCode::BAD_REQUEST, "the form is not UTF-8"))?;
    serde_urlencoded_pairs(text).map_err(IntoResponse::into_response)
}

pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
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

pub fn urlencode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Only same-site paths are followed after login (no `//host` or scheme).
pub fn safe_next(next: Option<&str>) -> String {
    // Printable ASCII only: browsers drop tabs and newlines from URLs, so `/\t/evil` would become `//evil`.
    let printable = |n: &str| n.bytes().all(|b| (0x21..0x7f).contains(&b));
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.contains("://")
                && n.len() <= 2000
                && printable(n) =>
        {
            n.to_string()
        }
        _ => "/dags".to_string(),
    }
}

fn cookie_header(state: &WebState, name: &str, value: &str, max_age: i64) -> HeaderValue {
    cookie_value(state.config.secure_cookies, name, value, max_age)
}

/// A cookie the page's scripts cannot read, sent on top-level navigations but not on cross-site posts, and
/// only over https when the server is reached over https.
fn cookie_value(secure: bool, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("cookie values are URL-safe")
}

/// Starts a UI session for `username`: the signed session cookie, then a redirect to `next`.
pub fn start_session(state: &WebState, username: &str, role: Role, next: &str) -> Response {
    let ttl = state.config.session_ttl_secs;
    let (token, _) = state.keys.issue(username, role, "session", ttl);
    let mut response = Redirect::to(next).into_response();
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, cookie_header(state, SESSION_COOKIE, &token, ttl));
    headers.append(header::SET_COOKIE, cookie_header(state, LOGIN_CSRF_COOKIE, "", 0));
    response
}

async fn login_page(State(state): State<WebState>, RawQuery(query): RawQuery) -> Response {
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

async fn login_submit(State(state): State<WebState>, req: axum::extract::Request) -> Response {
    let expected = cookie(req.headers(), LOGIN_CSRF_COOKIE).unwrap_or("").to_string();
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
    match crate::check_local_login(&state, username, password).await {
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

async fn logout(State(state): State<WebState>, user: UiUser, req: axum::extract::Request) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        for (name, _) in TEMPLATES {
            assert!(env().get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn the_login_page_renders_with_and_without_sso() {
        for sso in [json!(null), json!("Example SSO")] {
            let html = env()
                .get_template("login.html")
                .unwrap()
                .render(json!({"next": "/dags?x=1&y=2", "error": null, "csrf": "t", "sso": sso}))
                .unwrap();
            assert!(html.contains("id=\"login-form\""));
            assert_eq!(html.contains("/auth/oidc/login?next="), !sso.is_null());
            assert_eq!(html.contains("x%3D1%26y%3D2"), !sso.is_null(), "next is URL-encoded");
        }
    }

    #[test]
    fn cookies_are_http_only_lax_and_secure_under_https() {
        let plain = cookie_value(false, "dagctl_session", "t", 60);
        assert_eq!(plain, "dagctl_session=t; Path=/; HttpOnly; SameSite=Lax; Max-Age=60");
        let secure = cookie_value(true, "dagctl_session", "t", 60);
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/dags/x?view=graph")), "/dags/x?view=graph");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "dags",
            "/\t/evil.example",
            "/\r\nSet-Cookie: x",
            "/ /x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/dags", "{bad}");
        }
        assert_eq!(safe_next(None), "/dags");
    }

    #[test]
    fn pages_escape_what_users_wrote() {
        let html = env()
            .get_template("error.html")
            .unwrap()
            .render(json!({"status": 400, "detail": "<script>alert(1)</script>", "user": {"username": "u", "role": "Viewer"}, "csrf": "t"}))
            .unwrap();
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>alert"));
    }
}
