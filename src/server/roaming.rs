//! Roaming (extends SPEC §3): deletions recorded as journal events, and the change feed
//! a drive elsewhere follows to see new versions and deletions. Both are write-only:
//! a deletion appends, it never removes or hides a version.

use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Access;
use super::error::ApiError;
use super::files::enter;
use super::target;
use crate::api::{Changes, MAX_CHANGES_WAIT_SECS};
use crate::store::StoreError;

const DELETIONS: &str = "/api/v1/deletions/";
const CHANGES: &str = "/api/v1/changes/";
/// `Retry-After` of a long-poll cut short by a shutdown.
const SHUTDOWN_RETRY_SECS: u64 = 5;

/// `POST /api/v1/deletions/{user}/{path}`: records that the file was deleted. 201 with
/// the event; 200 with the earlier event when it is already deleted; 404 when the path
/// has no version. Only the owner may (403 before anything is written).
pub async fn delete(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let (owner, rest) = enter(&state, &parts, DELETIONS, Access::Write).await?;
    let path = target::file_path(rest)?;
    let store = state.store.clone();
    let deletion = tokio::task::spawn_blocking(move || store.delete(&owner, &path))
        .await?
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found(
                "no version of this file is stored, so there is nothing to delete",
            ),
            e => e.into(),
        })?;
    let status = if deletion.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(deletion.event)).into_response())
}

/// `GET /api/v1/changes/{user}[?after=CURSOR][&wait=SECONDS]`: the events of the user's
/// journal after `CURSOR` (from the start without one). With `wait`, an answer that
/// would be empty waits until an event is appended or `wait` seconds (at most 30) pass.
pub async fn changes(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let (owner, rest) = enter(&state, &parts, CHANGES, Access::Read).await?;
    if !rest.is_empty() {
        return Err(ApiError::not_found(
            "the change feed is /api/v1/changes/{user}, with nothing after the name",
        ));
    }
    let query = FeedQuery::parse(parts.uri.query())?;
    // As the tree: a teacher asking for a name nobody has gets a 404, not an empty feed
    // (and no watch channel is kept for it).
    let (users, who) = (state.users.clone(), owner.clone());
    let known = tokio::task::spawn_blocking(move || users.get(who.as_str()))
        .await?
        .map_err(|e| ApiError::internal("reading the user database failed", &e))?;
    if known.is_none() {
        return Err(ApiError::not_found("no such user"));
    }
    // Subscribed before the first read, so an event appended in between still wakes us.
    let mut signal = state.store.subscribe(&owner);
    let deadline = tokio::time::Instant::now() + query.wait;
    loop {
        signal.mark_unchanged();
        let (store, who) = (state.store.clone(), owner.clone());
        let after = query.after;
        let read = tokio::task::spawn_blocking(move || store.events_after(&who, after)).await??;
        let Some((events, cursor)) = read else {
            return Err(ApiError::bad_request(format!(
                "the cursor {after} is not one this server gave out for this journal; start again without one"
            )));
        };
        if !events.is_empty() {
            let cursor = cursor.to_string();
            return Ok(Json(Changes { events, cursor }).into_response());
        }
        // A shutdown ends the wait too, so it is not held up for the rest of it; the
        // 503 tells the drive to ask again (with the same cursor) once the server is back.
        tokio::select! {
            waited = tokio::time::timeout_at(deadline, signal.changed()) => {
                if waited.is_err() {
                    // Over: answer empty without another read, so a lost wake-up shows
                    // as an empty answer (the same cursor finds the event next time).
                    let cursor = query.after.to_string();
                    return Ok(Json(Changes { events: Vec::new(), cursor }).into_response());
                }
            }
            () = state.stopping.stopped() => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is shutting down; ask again with the same cursor",
                )
                .retry_after(SHUTDOWN_RETRY_SECS));
            }
        }
    }
}

/// The change feed's query: where to start and how long to wait.
#[derive(Debug, PartialEq, Eq)]
struct FeedQuery {
    after: u64,
    wait: Duration,
}

impl FeedQuery {
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut out = FeedQuery {
            after: 0,
            wait: Duration::ZERO,
        };
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "after" => {
                    out.after = value.parse().map_err(|_| {
                        ApiError::bad_request(format!(
                            "the cursor \"{}\" is not one this server gave out",
                            value.escape_debug()
                        ))
                    })?;
                }
                "wait" => {
                    let secs: u64 = value.parse().map_err(|_| {
                        ApiError::bad_request("wait is a whole number of seconds (0 to 30)")
                    })?;
                    out.wait = Duration::from_secs(secs.min(MAX_CHANGES_WAIT_SECS));
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use tower::ServiceExt as _;

    use super::*;
    use crate::names::UserName;
    use crate::store::MemStore;
    use crate::users::{Role, UserDb};

    /// A long-poll in progress when shutdown begins answers 503 at once, instead of
    /// holding the graceful shutdown for the rest of its wait (it would answer an
    /// empty 200 after 30 s without the stop).
    #[tokio::test]
    async fn shutdown_ends_a_long_poll() {
        let dir = tempfile::tempdir().unwrap();
        let users = UserDb::open(dir.path()).unwrap();
        let alice = UserName::parse("alice").unwrap();
        users
            .add(&alice, Role::Student, "a long enough password")
            .unwrap();
        let store = Arc::new(MemStore::new());
        let state = crate::server::AppState {
            store: store.clone(),
            users: Arc::new(users),
            limits: crate::server::Limits::default(),
            allow_registration: false,
            tls: false,
            data: None,
            stopping: crate::server::Stopping::default(),
        };
        let stopping = state.stopping.clone();
        let app = crate::server::router(state);
        let req = axum::http::Request::get("/api/v1/changes/alice?wait=30")
            .header(
                "authorization",
                "Basic YWxpY2U6YSBsb25nIGVub3VnaCBwYXNzd29yZA==",
            )
            .body(Body::empty())
            .unwrap();
        let poll = tokio::spawn(app.oneshot(req));
        // Wait (for a condition, not a time) until the poll has subscribed to the feed.
        while store.feed_waiters(&alice) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        stopping.stop();
        let response = poll.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
    }

    #[test]
    fn feed_query() {
        assert_eq!(
            FeedQuery::parse(None).unwrap(),
            FeedQuery {
                after: 0,
                wait: Duration::ZERO
            }
        );
        assert_eq!(
            FeedQuery::parse(Some("after=12&wait=999&x=1")).unwrap(),
            FeedQuery {
                after: 12,
                wait: Duration::from_secs(30)
            }
        );
        for bad in ["after=-1", "after=abc", "after=", "wait=1.5", "wait=-2"] {
            assert!(FeedQuery::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
