//! Web sessions: a random token in an HttpOnly, SameSite=Strict cookie, kept in memory
//! only (a server restart signs everyone out, which is harmless). Each session has its
//! own CSRF token that every non-GET request of the page must send in a header.
//!
//! The session map is keyed by the SHA-256 of the token, so a lookup's timing says
//! nothing about the token itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// A session ends after this long without a request…
pub const IDLE: Duration = Duration::from_secs(2 * 60 * 60);
/// …and after this long in any case (one school day).
pub const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions kept at most; the oldest is dropped beyond it.
const MAX_SESSIONS: usize = 20_000;

/// The name of the session cookie.
pub const COOKIE: &str = "ects_session";

#[derive(Debug, Clone)]
struct Session {
    user: String,
    csrf: String,
    created: Instant,
    last: Instant,
}

/// A session as a request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub user: String,
    pub csrf: String,
}

/// Every open session of this server process.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a session for `user`; returns the cookie token and the CSRF token.
    pub fn create(&self, user: &str) -> (String, String) {
        let token = hex::encode(rand::random::<[u8; 32]>());
        let csrf = hex::encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut map = crate::sync::lock(&self.map);
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| alive(s, now));
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            key(&token),
            Session {
                user: user.to_owned(),
                csrf: csrf.clone(),
                created: now,
                last: now,
            },
        );
        (token, csrf)
    }

    /// The live session of `token`, refreshing its idle time.
    pub fn get(&self, token: &str) -> Option<Active> {
        let now = Instant::now();
        let mut map = crate::sync::lock(&self.map);
        let k = key(token);
        let session = map.get_mut(&k)?;
        if !alive(session, now) {
            map.remove(&k);
            return None;
        }
        session.last = now;
        Some(Active {
            user: session.user.clone(),
            csrf: session.csrf.clone(),
        })
    }

    pub fn remove(&self, token: &str) {
        let mut map = crate::sync::lock(&self.map);
        map.remove(&key(token));
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.last) < IDLE
        && now.saturating_duration_since(s.created) < LIFETIME
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two secrets without an early exit on the first difference.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The session token from a `Cookie` header value list, if any.
pub fn token_from_cookies<'a>(headers: impl Iterator<Item = &'a str>) -> Option<String> {
    headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_get_remove() {
        let s = Sessions::new();
        let (token, csrf) = s.create("alice");
        assert_eq!(token.len(), 64);
        assert_ne!(token, csrf);
        let a = s.get(&token).unwrap();
        assert_eq!(a.user, "alice");
        assert_eq!(a.csrf, csrf);
        assert!(s.get(&csrf).is_none(), "the CSRF token is no session token");
        s.remove(&token);
        assert!(s.get(&token).is_none());
    }

    #[test]
    fn cookies_and_secrets() {
        let t = "ab".repeat(32);
        let header = format!("theme=dark; {COOKIE}={t}; x=y");
        assert_eq!(token_from_cookies([header.as_str()].into_iter()), Some(t));
        assert_eq!(
            token_from_cookies([format!("{COOKIE}=short").as_str()].into_iter()),
            None
        );
        assert_eq!(token_from_cookies(["other=1"].into_iter()), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }

    #[test]
    fn idle_sessions_end() {
        let now = Instant::now();
        let s = Session {
            user: "a".into(),
            csrf: String::new(),
            created: now,
            last: now,
        };
        assert!(alive(&s, now));
        assert!(!alive(&s, now + IDLE));
        let busy = Session {
            last: now + LIFETIME - Duration::from_secs(1),
            ..s
        };
        assert!(!alive(&busy, now + LIFETIME));
    }
}
