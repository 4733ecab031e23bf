//! Server-rendered HTML: the page templates (minijinja, compiled into the binary), rendering with the security
//! headers every page gets, and the error pages. The UI's pages, sign-in and the API's fallback for paths
//! outside `/api` use it.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde_json::{json, Value};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../assets/base.html")),
    ("login.html", include_str!("../assets/login.html")),
    ("dags.html", include_str!("../assets/dags.html")),
    ("dag.html", include_str!("../assets/dag.html")),
    ("trigger.html", include_str!("../assets/trigger.html")),
    ("run.html", include_str!("../assets/run.html")),
    ("runs.html", include_str!("../assets/runs.html")),
    ("log.html", include_str!("../assets/log.html")),
    ("networks.html", include_str!("../assets/networks.html")),
    ("network.html", include_str!("../assets/network.html")),
    ("audit.html", include_str!("../assets/audit.html")),
    ("error.html", include_str!("../assets/error.html")),
    ("pools.html", include_str!("../assets/pools.html")),
    ("assets.html", include_str!("../assets/assets.html")),
    ("users.html", include_str!("../assets/users.html")),
    ("token.html", include_str!("../assets/token.html")),
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
