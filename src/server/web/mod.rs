//! The web page at `/`: plain HTML, CSS and a little JavaScript, built into the binary
//! (labs are often offline: no CDN, no build step), plus its sign-in endpoints.
//!
//! Security model:
//! - The page reads through the same `/api/v1` routes as every client, so it gets the
//!   same authorization. A session cookie (HttpOnly, SameSite=Strict) stands in for
//!   HTTP Basic, but only on GET and HEAD: nothing the cookie alone sends can write.
//! - Non-GET page endpoints (sign-out) need the session's CSRF token in a header and a
//!   same-origin `Origin`; sign-in needs a JSON body, which a cross-site form cannot send.
//! - Sign-in goes through the same throttled password check as HTTP Basic.
//! - Every response carries `nosniff` and a CSP; the page's CSP allows only its own
//!   script and style, so a file name that slipped into the DOM as markup still could
//!   not run. The script inserts names with `textContent` only.
//! - Stored content is always sent as an attachment (see `files.rs`), never inline.

pub mod session;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::AppState;
use super::auth;
use super::error::ApiError;
use crate::users::User;
use session::{COOKIE, Sessions, same_secret, token_from_cookies};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The page's own policy: its script and style only, no inline code, no framing.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";
/// Everything else (API answers, stored content): nothing may run or load.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// Header the page's script sends, so 401 answers to it carry no Basic challenge (a
/// browser would otherwise pop up its own password dialog).
pub const PAGE_HEADER: &str = "x-ects-web";
/// Header carrying the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Largest sign-in body accepted.
const MAX_LOGIN_BODY: usize = 8 * 1024;

/// The page and its sign-in endpoints.
pub fn routes() -> Router<AppState> {
    let refuse = |allow: &'static str| move || async move { ApiError::method_not_allowed(allow) };
    Router::new()
        .route("/", get(page).fallback(refuse("GET, HEAD")))
        .route("/index.html", get(page).fallback(refuse("GET, HEAD")))
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route("/web/session", get(current).fallback(refuse("GET, HEAD")))
        .route("/web/login", post(login).fallback(refuse("POST")))
        .route("/web/logout", post(logout).fallback(refuse("POST")))
}

async fn page() -> Response {
    let mut response = asset(INDEX_HTML, "text/html; charset=utf-8");
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    response
}

fn asset(text: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Small files, and a new binary may bring new ones: always revalidate.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response()
}

/// Middleware for every response: `nosniff`, no referrer, no framing, a closed CSP
/// unless the route set its own; and no Basic challenge toward the page's script.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let from_page =
        req.headers().contains_key(PAGE_HEADER) || req.uri().path().starts_with("/web/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(API_CSP),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if from_page {
        h.remove(header::WWW_AUTHENTICATE);
    }
    response
}

/// The user of the request's session cookie, if it has a live one and the account is
/// still enabled. The role is read afresh, so a change applies at once.
pub async fn session_user(state: &AppState, parts: &Parts) -> Result<Option<User>, ApiError> {
    let Some(active) = active_session(parts) else {
        return Ok(None);
    };
    let users = state.users.clone();
    let user = tokio::task::spawn_blocking(move || users.get(&active.user))
        .await?
        .map_err(|e| ApiError::internal("reading the user database failed", &e))?;
    Ok(user.filter(|u| !u.disabled))
}

fn active_session(parts: &Parts) -> Option<session::Active> {
    let sessions = parts.extensions.get::<Arc<Sessions>>()?;
    let token = session_token(&parts.headers)?;
    sessions.get(&token)
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    token_from_cookies(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// Refuses a state-changing request whose `Origin` is another site's.
fn same_origin(parts: &Parts) -> Result<(), ApiError> {
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    if !host.is_empty() && origin_host == Some(host) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this request came from another web site",
        ))
    }
}

fn session_json(user: &User, csrf: &str) -> serde_json::Value {
    serde_json::json!({ "name": user.name.as_str(), "role": user.role, "csrf": csrf })
}

/// `GET /web/session`: who the cookie signs in, with the CSRF token; 401 if nobody.
async fn current(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let signed_out = || ApiError::unauthorized("not signed in");
    let active = active_session(&parts).ok_or_else(signed_out)?;
    let user = session_user(&state, &parts).await?.ok_or_else(signed_out)?;
    let mut response = Json(session_json(&user, &active.csrf)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Deserialize)]
struct LoginBody {
    name: String,
    password: String,
}

/// `POST /web/login` with `{"name","password"}` (JSON): opens a session.
async fn login(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    same_origin(&parts)?;
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "sign in with a JSON body {\"name\": …, \"password\": …}",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_LOGIN_BODY)
        .await
        .map_err(|_| ApiError::bad_request("the sign-in request is too large or was cut off"))?;
    let LoginBody { name, password } = serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::bad_request("sign in with a JSON body {\"name\": …, \"password\": …}")
    })?;
    let user = auth::check_password(&state, &parts, name, password).await?;
    let sessions = parts
        .extensions
        .get::<Arc<Sessions>>()
        .ok_or_else(|| ApiError::internal("sign-in", &"no session store"))?;
    // A new token on every sign-in: an old cookie (fixation) is worth nothing.
    if let Some(old) = session_token(&parts.headers) {
        sessions.remove(&old);
    }
    let (token, csrf) = sessions.create(user.name.as_str());
    tracing::info!(user = %user.name, "signed in on the web page");
    let mut response = Json(session_json(&user, &csrf)).into_response();
    // From the server's own TLS, not from a header the client chose.
    let secure = state.tls;
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        session::LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    set_cookie(response.headers_mut(), &cookie);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /web/logout` with the CSRF token in `X-CSRF-Token`: ends the session.
async fn logout(req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    same_origin(&parts)?;
    if let Some(active) = active_session(&parts) {
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same_secret(sent, &active.csrf) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token; reload the page",
            ));
        }
        if let (Some(sessions), Some(token)) = (
            parts.extensions.get::<Arc<Sessions>>(),
            session_token(&parts.headers),
        ) {
            sessions.remove(&token);
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(
        response.headers_mut(),
        &format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(response)
}

fn set_cookie(headers: &mut HeaderMap, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        headers.insert(header::SET_COOKIE, value);
    }
}

/// Whether a request may sign in with its session cookie: reading only.
pub fn cookie_allowed(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_self_contained() {
        // No inline script or style (the CSP would block them), no outside address.
        for text in [INDEX_HTML, APP_JS, APP_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(!INDEX_HTML.contains("style="));
        assert!(!APP_JS.contains("innerHTML"));
        assert!(!APP_JS.contains("insertAdjacentHTML"));
        assert!(!APP_JS.contains("eval("));
    }

    #[test]
    fn origins() {
        let parts = |origin: Option<&str>, host: &str| {
            let mut b = axum::http::Request::builder().header(header::HOST, host);
            if let Some(o) = origin {
                b = b.header(header::ORIGIN, o);
            }
            b.body(()).unwrap().into_parts().0
        };
        assert!(same_origin(&parts(None, "h:1")).is_ok());
        assert!(same_origin(&parts(Some("http://h:1"), "h:1")).is_ok());
        assert!(same_origin(&parts(Some("https://h:1"), "h:1")).is_ok());
        assert!(same_origin(&parts(Some("http://evil:1"), "h:1")).is_err());
        assert!(same_origin(&parts(Some("null"), "h:1")).is_err());
    }
}
