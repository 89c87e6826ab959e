//! Sign-in (HTTP Basic) and the namespace rules: students read and write only their
//! own namespace; teachers read every namespace and write their own (SPEC §3, §5).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::{StatusCode, header, request::Parts};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::AppState;
use super::error::ApiError;
use super::log::LogUser;
use super::throttle::Throttle;
use super::web;
use crate::names::UserName;
use crate::users::{Auth, Role, User, UsersError};

/// The same answer for an unknown name and a wrong password, so that nobody can
/// probe which names exist.
const WRONG: &str = "wrong user name or password";

/// What a request wants to do in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Signs the caller in from the `Authorization` header (or, for reading only, the web
/// page's session cookie), registering an unknown name when the server allows
/// registration. Records the name for the request log.
pub async fn authenticate(state: &AppState, parts: &Parts) -> Result<User, ApiError> {
    let no_credentials = || {
        ApiError::unauthorized(
            "sign in with your ects user name and password (HTTP Basic authentication)",
        )
    };
    let user = match basic_credentials(parts) {
        Some((name, password)) => check_password(state, parts, name, password).await?,
        None if web::cookie_allowed(&parts.method) => web::session_user(state, parts)
            .await?
            .ok_or_else(no_credentials)?,
        None => return Err(no_credentials()),
    };
    if let Some(slot) = parts.extensions.get::<LogUser>() {
        slot.set(user.name.as_str());
    }
    Ok(user)
}

/// Checks a name and password, throttled per address and name (see `throttle.rs`).
pub async fn check_password(
    state: &AppState,
    parts: &Parts,
    name: String,
    password: String,
) -> Result<User, ApiError> {
    let throttle = parts.extensions.get::<Arc<Throttle>>().cloned();
    let addr = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(t) = &throttle
        && let Err(wait) = t.check(addr, &name)
    {
        // `?`: the name is the caller's, unchecked; Debug escapes control characters
        // so it cannot forge log lines.
        tracing::warn!(user = ?name, ?addr, "sign-in refused: too many failures");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed sign-ins; try again in {}",
                crate::client::words::plural(wait.as_secs().div_ceil(60), "minute")
            ),
        ));
    }
    let users = state.users.clone();
    let allow_registration = state.allow_registration;
    let who = name.clone();
    let (result, guessed) = tokio::task::spawn_blocking(move || {
        let auth = match users.authenticate(&who, &password) {
            Ok(auth) => {
                // Only after a failure: the common path touches no shared lock.
                if USERS_ERROR_LOGGED.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    *crate::sync::lock(&LAST_USERS_ERROR) = None;
                }
                auth
            }
            Err(e) => return (Err(users_error(e)), false),
        };
        match auth {
            Auth::Ok(user) => (Ok(user), false),
            Auth::UnknownUser if allow_registration => {
                (register(&users, &who, &password, addr), false)
            }
            // The store spent one argon2 check on an unknown name too (see
            // `UserDb::authenticate`), so neither time nor answer tells which names exist.
            Auth::UnknownUser | Auth::WrongPassword => (Err(ApiError::unauthorized(WRONG)), true),
            // The right password for a disabled account: the same answer as a wrong one,
            // or the answer would confirm a guessed password. Not counted as a guess.
            Auth::Disabled => {
                tracing::info!(user = %who, "sign-in refused: the account is disabled");
                (Err(ApiError::unauthorized(WRONG)), false)
            }
        }
    })
    .await?;
    if let Some(t) = &throttle {
        match (&result, guessed) {
            (Ok(_), _) => {
                if t.succeeded(addr, &name) {
                    let t = t.clone();
                    // Off the runtime: a small file write, not awaited by the request.
                    tokio::task::spawn_blocking(move || t.save());
                }
            }
            (Err(_), true) => t.failed(addr, &name),
            (Err(_), false) => {}
        }
    }
    result
}

/// First sign-in with an unknown name claims it as a student (`--allow-registration`).
fn register(
    users: &crate::users::UserDb,
    name: &str,
    password: &str,
    addr: Option<std::net::IpAddr>,
) -> Result<User, ApiError> {
    let parsed = UserName::parse_new(name).map_err(|e| ApiError::unauthorized(e.to_string()))?;
    match users.register(&parsed, password, addr) {
        Ok(user) => {
            tracing::info!(user = %user.name, "registered a new student on first sign-in");
            Ok(user)
        }
        // Someone registered the same name a moment ago: sign in normally.
        Err(UsersError::Exists(_)) => {
            match users.authenticate(name, password).map_err(users_error)? {
                Auth::Ok(user) => Ok(user),
                _ => Err(ApiError::unauthorized(WRONG)),
            }
        }
        Err(e @ UsersError::TooManyRegistrations) => {
            tracing::warn!(
                ?addr,
                "registration refused: too many new accounts from one address"
            );
            Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()))
        }
        // A look-alike of an existing name is a wrong sign-in, like any other.
        Err(UsersError::LookAlike { .. }) => Err(ApiError::unauthorized(WRONG)),
        Err(
            e @ (UsersError::EmptyPassword
            | UsersError::PasswordTooLong
            | UsersError::PasswordTooShort
            | UsersError::Name(_)),
        ) => Err(ApiError::unauthorized(e.to_string())),
        Err(e) => Err(users_error(e)),
    }
}

/// A users.toml the server cannot read fails every sign-in; its error (which names the
/// file and the fix) is logged once per distinct message, not once per request.
fn users_error(e: UsersError) -> ApiError {
    let message = e.to_string();
    let mut last = crate::sync::lock(&LAST_USERS_ERROR);
    if last.as_deref() == Some(message.as_str()) {
        tracing::debug!(error = %message, "the user database is still unreadable");
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            super::error::STORAGE_FAILED,
        );
    }
    *last = Some(message);
    USERS_ERROR_LOGGED.store(true, std::sync::atomic::Ordering::Relaxed);
    ApiError::internal("reading the user database failed", &e)
}

/// The user-database error logged last; cleared when the database reads again, so a
/// new failure is logged again.
static LAST_USERS_ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
/// Whether `LAST_USERS_ERROR` holds something to clear.
static USERS_ERROR_LOGGED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Name and password from `Authorization: Basic …`, if well-formed UTF-8.
fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (name, password) = decoded.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

/// Refuses (403) what `user` may not do in `owner`'s namespace.
pub fn authorize(user: &User, owner: &UserName, access: Access) -> Result<(), ApiError> {
    let allowed = user.name == *owner || (access == Access::Read && user.role == Role::Teacher);
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role) -> User {
        User {
            name: UserName::parse(name).unwrap(),
            role,
            disabled: false,
        }
    }

    #[test]
    fn namespace_rules() {
        let alice = user("alice", Role::Student);
        let teach = user("teach", Role::Teacher);
        let own = UserName::parse("alice").unwrap();
        let other = UserName::parse("bob").unwrap();
        assert!(authorize(&alice, &own, Access::Read).is_ok());
        assert!(authorize(&alice, &own, Access::Write).is_ok());
        assert!(authorize(&alice, &other, Access::Read).is_err());
        assert!(authorize(&alice, &other, Access::Write).is_err());
        assert!(authorize(&teach, &other, Access::Read).is_ok());
        assert!(authorize(&teach, &other, Access::Write).is_err());
    }

    #[test]
    fn credentials() {
        let parts = |value: &str| {
            let (parts, ()) = axum::http::Request::builder()
                .header(header::AUTHORIZATION, value)
                .body(())
                .unwrap()
                .into_parts();
            parts
        };
        let ok = format!("Basic {}", BASE64.encode("alice:pa:ss wörd"));
        assert_eq!(
            basic_credentials(&parts(&ok)),
            Some(("alice".into(), "pa:ss wörd".into()))
        );
        let lower = format!("basic {}", BASE64.encode("a:b"));
        assert!(basic_credentials(&parts(&lower)).is_some());
        assert!(basic_credentials(&parts("Bearer x")).is_none());
        assert!(basic_credentials(&parts("Basic !!!")).is_none());
        let no_colon = format!("Basic {}", BASE64.encode("alice"));
        assert!(basic_credentials(&parts(&no_colon)).is_none());
    }
}
