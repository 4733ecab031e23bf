//! OpenID Connect sign-in: the authorization code flow with PKCE (S256), a nonce and a state, through the
//! `openidconnect` crate. The provider is discovered on first use (so dagctl starts while the IdP is down)
//! and cached. The ID token's signature, issuer, audience, expiry and nonce are checked by the crate; the
//! groups claim then maps to a role (the strongest one any group gives). The flow's secrets (PKCE verifier,
//! nonce, state, where to go next) ride in a short-lived signed, HttpOnly cookie, so no server-side storage.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use engine::store::UserRow;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::auth::Role;
use crate::extract::{field, serde_urlencoded_pairs};
use crate::session::{safe_next, start_session};
use crate::WebState;

const FLOW_COOKIE: &str = "dagctl_oidc";
/// How long a sign-in at the provider may take.
const FLOW_TTL_SECS: i64 = 600;

/// How dagctl talks to the OpenID provider.
#[derive(Clone)]
pub struct OidcConfig {
    /// The issuer URL exactly as the provider writes it in its tokens.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Scopes besides `openid` (e.g. profile, email, groups).
    pub scopes: Vec<String>,
    /// The ID token claim that lists the user's groups.
    pub groups_claim: String,
    /// Group -> role; a user gets the strongest role of their groups, and no sign-in without one.
    pub role_map: Vec<(String, Role)>,
    /// Where the provider sends the browser back: `<base_url>/auth/oidc/callback`.
    pub redirect_url: String,
    /// Shown on the login button.
    pub display_name: String,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<secret>"))
            .field("scopes", &self.scopes)
            .field("groups_claim", &self.groups_claim)
            .field("role_map", &self.role_map)
            .field("redirect_url", &self.redirect_url)
            .finish()
    }
}

impl OidcConfig {
    /// Parses a role map written as `group=Role,group=Role`.
    pub fn parse_role_map(text: &str) -> Result<Vec<(String, Role)>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (group, role) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("`{pair}` is not group=Role"))?;
                let role =
                    Role::parse(role).ok_or_else(|| format!("`{role}` is not a role (Admin, Op, User or Viewer)"))?;
                Ok((group.trim().to_string(), role))
            })
            .collect()
    }

    /// The strongest role that any of `groups` maps to.
    pub fn role_for(&self, groups: &[String]) -> Option<Role> {
        self.role_map
            .iter()
            .filter(|(group, _)| groups.contains(group))
            .map(|(_, role)| *role)
            .max()
    }
}

type Client =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// The configured provider; its metadata is fetched on first use.
pub struct OidcClient {
    config: OidcConfig,
    http: reqwest::Client,
    client: Mutex<Option<Client>>,
}

impl OidcClient {
    pub fn new(config: OidcConfig) -> OidcClient {
        let http = reqwest::Client::builder()
            // The OIDC spec forbids following redirects from the token endpoint (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .expect("a client without custom TLS roots builds");
        OidcClient {
            config,
            http,
            client: Mutex::new(None),
        }
    }

    pub fn display_name(&self) -> String {
        self.config.display_name.clone()
    }

    /// Forgets the provider's metadata and keys, so the next sign-in discovers them again (after a key
    /// rotation, a token that fails verification would otherwise fail until restart).
    async fn forget(&self) {
        *self.client.lock().await = None;
    }

    async fn client(&self) -> Result<Client, String> {
        let mut cached = self.client.lock().await;
        if let Some(client) = cached.as_ref() {
            return Ok(client.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone()).map_err(|e| format!("bad issuer URL: {e}"))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| format!("cannot discover the OpenID provider {}: {e}", self.config.issuer))?;
        let redirect =
            RedirectUrl::new(self.config.redirect_url.clone()).map_err(|e| format!("bad redirect URL: {e}"))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            self.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect);
        *cached = Some(client.clone());
        Ok(client)
    }
}

/// What the flow cookie carries between the redirect to the provider and the callback.
#[derive(Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    exp: i64,
}

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/auth/oidc/login", get(login))
        .route("/auth/oidc/callback", get(callback))
}

fn flow_cookie(state: &WebState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if state.config.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{FLOW_COOKIE}={value}; Path=/auth/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("cookie values are URL-safe")
}

fn sso_failed(reason: &str) -> Response {
    tracing::warn!(reason, "single sign-on failed");
    Redirect::to("/login?error=sso").into_response()
}

/// `GET /auth/oidc/login?next=`: to the provider's authorization endpoint.
async fn login(State(state): State<WebState>, RawQuery(query): RawQuery) -> Response {
    let Some(oidc) = state.oidc.clone() else {
        return crate::html::not_found_page();
    };
    let pairs = serde_urlencoded_pairs(query.as_deref().unwrap_or("")).unwrap_or_default();
    let next = safe_next(field(&pairs, "next"));
    let client = match oidc.client().await {
        Ok(c) => c,
        Err(err) => return sso_failed(&err),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for scope in &oidc.config.scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, csrf, nonce) = request.set_pkce_challenge(challenge).url();
    let flow = Flow {
        state: csrf.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        next,
        exp: Utc::now().timestamp() + FLOW_TTL_SECS,
    };
    let value = state
        .keys
        .sign_value(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(&flow).unwrap_or_default()));
    let mut response = Redirect::to(url.as_str()).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, flow_cookie(&state, &value, FLOW_TTL_SECS));
    response
}

/// `GET /auth/oidc/callback?code=&state=`: checks the state, trades the code (with the PKCE verifier) for
/// tokens, verifies the ID token, maps groups to a role and starts a session.
async fn callback(
    State(state): State<WebState>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(oidc) = state.oidc.clone() else {
        return crate::html::not_found_page();
    };
    let pairs = serde_urlencoded_pairs(query.as_deref().unwrap_or("")).unwrap_or_default();
    if let Some(error) = field(&pairs, "error") {
        return sso_failed(&format!(
            "the provider answered {error}: {}",
            field(&pairs, "error_description").unwrap_or("")
        ));
    }
    let flow: Flow = match crate::cookie(&headers, FLOW_COOKIE)
        .and_then(|c| state.keys.verify_value(c))
        .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(flow) => flow,
        None => return sso_failed("no valid sign-in in progress (flow cookie missing or forged)"),
    };
    if flow.exp < Utc::now().timestamp() {
        return sso_failed("the sign-in took too long");
    }
    if field(&pairs, "state") != Some(flow.state.as_str()) {
        return sso_failed("the state does not match this browser's sign-in");
    }
    let Some(code) = field(&pairs, "code") else {
        return sso_failed("the provider sent no code");
    };
    let client = match oidc.client().await {
        Ok(c) => c,
        Err(err) => return sso_failed(&err),
    };
    let exchange = match client.exchange_code(AuthorizationCode::new(code.to_string())) {
        Ok(request) => request,
        Err(err) => return sso_failed(&format!("cannot build the token request: {err}")),
    };
    let tokens = match exchange
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
        .request_async(&oidc.http)
        .await
    {
        Ok(t) => t,
        Err(err) => {
            oidc.forget().await;
            // The transport's causes (refused, timed out) say what went wrong; a response that did not parse is
            // said without its parser's text, which could quote claims (names, e-mail addresses) into the log.
            let why = match &err {
                openidconnect::RequestTokenError::Request(cause) => {
                    format!("{err}: {}", engine::error::chain_of(cause))
                }
                other => other.to_string(),
            };
            return sso_failed(&format!("the token request failed: {why}"));
        }
    };
    let Some(id_token) = tokens.id_token() else {
        return sso_failed("the provider sent no ID token");
    };
    let claims = match id_token.claims(&client.id_token_verifier(), &Nonce::new(flow.nonce.clone())) {
        Ok(c) => c.clone(),
        Err(err) => {
            oidc.forget().await;
            return sso_failed(&format!("the ID token is not valid: {err}"));
        }
    };
    // The signature and claims are verified above; read the groups claim from the same payload.
    let payload: serde_json::Value = id_token
        .to_string()
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let groups: Vec<String> = match payload.get(&oidc.config.groups_claim) {
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|g| g.as_str().map(str::to_string)).collect(),
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    // The name shown and audited: preferred_username, else a verified email, else the subject.
    let verified_email = claims
        .email()
        .filter(|_| claims.email_verified().unwrap_or(false))
        .map(|e| e.as_str().to_string());
    let username = claims
        .preferred_username()
        .map(|u| u.as_str().to_string())
        .or(verified_email)
        .unwrap_or_else(|| claims.subject().as_str().to_string());
    // The identity: issuer and subject, which the provider never gives to another account.
    let external_id = format!("{} {}", claims.issuer().as_str(), claims.subject().as_str());
    let Some(role) = oidc.config.role_for(&groups) else {
        tracing::warn!(user = %username, ?groups, "signed in at the provider but no group maps to a role");
        let _ = state
            .store
            .audit("login_refused", None, None, Some(&username), Some("oidc: no role"))
            .await;
        let mut response = Redirect::to("/login?error=norole").into_response();
        response
            .headers_mut()
            .append(header::SET_COOKIE, flow_cookie(&state, "", 0));
        return response;
    };
    let existing = state.store.get_user(&username).await.ok();
    if existing.as_ref().is_some_and(|u| u.source == "local") {
        return sso_failed("a local user has this name; an OpenID sign-in may not take it over");
    }
    if existing
        .as_ref()
        .and_then(|u| u.external_id.as_deref())
        .is_some_and(|id| id != external_id)
    {
        return sso_failed(&format!(
            "the name `{username}` belongs to another account of the provider; an administrator must resolve it"
        ));
    }
    let user = UserRow {
        username: username.clone(),
        password_hash: None,
        role: role.as_str().to_string(),
        source: "oidc".into(),
        email: claims.email().map(|e| e.as_str().to_string()),
        external_id: Some(external_id),
        created_at: existing.map(|u| u.created_at).unwrap_or_else(Utc::now),
        last_login_at: None,
    };
    if let Err(err) = state.store.put_user(&user).await {
        return sso_failed(&format!("cannot record the user: {err}"));
    }
    let _ = state.store.touch_login(&username, Utc::now()).await;
    let _ = state
        .store
        .audit("login", None, None, Some(&username), Some(&format!("oidc role={role}")))
        .await;
    let mut response = start_session(&state, &username, role, &flow.next);
    response
        .headers_mut()
        .append(header::SET_COOKIE, flow_cookie(&state, "", 0));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_the_strongest_role() {
        let config = OidcConfig {
            issuer: "http://127.0.0.1:1".into(),
            client_id: "c".into(),
            client_secret: None,
            scopes: vec![],
            groups_claim: "groups".into(),
            role_map: OidcConfig::parse_role_map("viewers=Viewer, ops=op,admins=ADMIN").unwrap(),
            redirect_url: "http://127.0.0.1:2/auth/oidc/callback".into(),
            display_name: "SSO".into(),
        };
        assert_eq!(config.role_for(&["viewers".into(), "ops".into()]), Some(Role::Op));
        assert_eq!(config.role_for(&["admins".into()]), Some(Role::Admin));
        assert_eq!(config.role_for(&["strangers".into()]), None);
        assert!(OidcConfig::parse_role_map("x=Root").is_err());
        assert!(OidcConfig::parse_role_map("nogroup").is_err());
        assert!(!format!("{config:?}").contains("secret\":"));
    }
}
