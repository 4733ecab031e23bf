//! The web UI: server-rendered pages (minijinja templates compiled into the binary, see [`crate::html`]) with
//! one small script that follows live logs. No CDN: every asset is served from here.
//!
//! Sign-in: `/login` (local users; a login CSRF cookie guards the form), `/auth/oidc/*` (OpenID Connect, in
//! `oidc.rs`), `/logout` (POST with the session's CSRF token). Every page needs a session and redirects
//! to `/login` without one; every form that changes something carries the session's CSRF token and the
//! server checks the role again, whatever the page showed.

// Page helpers return a ready error page as their `Err`; it goes straight back to the browser, so boxing it
// would only add an allocation.
#![allow(clippy::result_large_err)]

mod assets;
mod dags;
mod forms;
mod kpis;
mod lists;
mod login;
mod logs;
mod network;
mod pools;
mod runs;
mod token;
mod trigger;
mod user;
mod view;

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

pub use forms::{check_csrf, checked_form, form};
pub use user::{LoginRedirect, UiUser};

use crate::WebState;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dags") }))
        .route("/login", get(login::login_page).post(login::login_submit))
        .route("/logout", post(login::logout))
        .route("/static/style.css", get(style))
        .route("/static/app.js", get(script))
        .route("/dags", get(dags::dags))
        .route("/dags/{dag_id}", get(dags::dag))
        .route("/dags/{dag_id}/pause", post(dags::pause))
        .route(
            "/dags/{dag_id}/trigger",
            get(trigger::trigger_form).post(trigger::trigger_submit),
        )
        .route("/dags/{dag_id}/runs/{run_id}", get(runs::run))
        .route("/dags/{dag_id}/runs/{run_id}/kpis", get(kpis::run_kpis))
        .route("/dags/{dag_id}/kpis", get(kpis::dag_trend))
        .route("/dags/{dag_id}/runs/{run_id}/clear", post(runs::clear))
        .route("/dags/{dag_id}/runs/{run_id}/tasks/{task_id}", get(logs::log))
        .route("/runs", get(runs::runs))
        .route("/networks", get(lists::networks))
        .route("/networks/{name}", get(network::network))
        .route("/static/network.js", get(network::script))
        .route("/static/uplot.js", get(network::uplot_script))
        .route("/static/uplot.css", get(network::uplot_style))
        .route("/audit", get(lists::audit))
        .route("/pools", get(pools::pools).post(pools::pool_submit))
        .route("/assets", get(assets::assets))
        .route("/pools/{name}/delete", post(pools::pool_delete))
        .route("/users", get(lists::users))
        .route("/token", get(token::token_page).post(token::token_submit))
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
