//! UI sessions: starting one (the signed session cookie), the attributes of the cookies sign-in sets, and the
//! only places a sign-in may send the browser next. Local sign-in (`ui`) and OpenID Connect (`oidc`) use it.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};

use crate::auth::Role;
use crate::{WebState, SESSION_COOKIE};

/// The cookie that guards the local sign-in form.
pub(crate) const LOGIN_CSRF_COOKIE: &str = "dagctl_login_csrf";

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

pub(crate) fn cookie_header(state: &WebState, name: &str, value: &str, max_age: i64) -> HeaderValue {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
