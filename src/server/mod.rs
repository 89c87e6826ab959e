//! The HTTP server (SPEC §3): axum routes over a [`Store`] and a [`UserDb`].
//!
//! Every route signs the caller in and checks the namespace rules before it reads a
//! byte of a body. Bodies stream between the network and the blocking store in
//! chunks (never a whole file in memory). [`router`] is the whole API, usable
//! in-process; [`serve`] runs it on a socket with optional TLS and graceful shutdown.

mod auth;
mod collect;
mod conn_limit;
mod download;
mod error;
mod files;
pub mod glob;
mod keep_body;
mod legacy;
mod log;
mod roaming;
mod serve;
mod target;
mod throttle;
mod upload;
mod web;
mod zip;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Extension, Router};

// The wire types moved to `crate::api`; re-exported for existing callers.
pub use crate::api::{
    CollectEnd, CollectEntry, CollectLine, CollectStatus, MANIFEST_HEADER, SHA256_HEADER,
    UserEntry, csv_field, manifest_row,
};
pub use error::ApiError;
pub use serve::{SHUTDOWN_GRACE, ServeOptions, serve, shutdown_signal};

use crate::store::Store;
use crate::users::UserDb;

/// Size and resource limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest version accepted (`--max-file-size`).
    pub max_file_size: u64,
    /// Bytes each user may store in all (`--quota`).
    pub quota: Option<u64>,
    /// An upload body silent this long is dropped (`--body-timeout`).
    pub body_timeout: std::time::Duration,
    /// Uploads in progress per user (`--max-uploads-per-user`).
    pub max_uploads_per_user: usize,
    /// Uploads in progress in all (`--max-uploads`).
    pub max_uploads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_size: 4 << 30,
            quota: None,
            body_timeout: std::time::Duration::from_secs(30),
            max_uploads_per_user: 32,
            max_uploads: 256,
        }
    }
}

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub users: Arc<UserDb>,
    pub limits: Limits,
    /// `--allow-registration`: an unknown name signs up as a student on first use.
    pub allow_registration: bool,
    /// Served over TLS: the web session cookie is marked `Secure`.
    pub tls: bool,
    /// The data folder, where sign-in trust is kept across restarts (`None`: in memory).
    pub data: Option<std::path::PathBuf>,
    /// Set when shutdown begins, so change-feed long-polls answer at once instead of
    /// holding the graceful shutdown for their whole wait.
    pub stopping: Stopping,
}

/// A flag raised once, when the server starts shutting down.
#[derive(Clone)]
pub struct Stopping(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Stopping {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl Stopping {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Completes once [`Stopping::stop`] was called (at once if it already was).
    pub async fn stopped(&self) {
        let mut rx = self.0.subscribe();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

/// Methods allowed on files; everything else (DELETE, PATCH, POST…) is a 405.
const FILE_METHODS: &str = "GET, HEAD, PUT";
const READ_METHODS: &str = "GET, HEAD";

/// The whole API.
pub fn router(state: AppState) -> Router {
    let refuse = |allow: &'static str| move || async move { ApiError::method_not_allowed(allow) };
    Router::new()
        .route(
            "/api/v1/health",
            get(files::health).fallback(refuse(READ_METHODS)),
        )
        .route(
            "/api/v1/files/{*rest}",
            get(files::get_file)
                .head(files::get_file)
                .put(files::put_file)
                .fallback(refuse(FILE_METHODS)),
        )
        .route(
            "/api/v1/versions/{*rest}",
            get(files::versions).fallback(refuse(READ_METHODS)),
        )
        .route(
            "/api/v1/tree/{*rest}",
            get(files::tree).fallback(refuse(READ_METHODS)),
        )
        // Roaming (extends SPEC §3): deletions as events, and the change feed.
        .route(
            "/api/v1/deletions/{*rest}",
            post(roaming::delete).fallback(refuse("POST")),
        )
        .route(
            "/api/v1/changes/{*rest}",
            get(roaming::changes).fallback(refuse(READ_METHODS)),
        )
        .route("/upload", post(legacy::upload).fallback(refuse("POST")))
        // Teachers: the class list and collecting work (extends SPEC §3).
        .route(
            "/api/v1/users",
            get(collect::users).fallback(refuse(READ_METHODS)),
        )
        .route(
            "/api/v1/collect",
            get(collect::collect).fallback(refuse(READ_METHODS)),
        )
        .route(
            "/api/v1/collect.zip",
            get(collect::collect_zip).fallback(refuse(READ_METHODS)),
        )
        .merge(web::routes())
        .fallback(|| async { ApiError::not_found("no such address in the ects API") })
        // Limits are enforced per route while streaming, against the store's limits.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(web::security_headers))
        .layer(Extension(Arc::new(web::session::Sessions::new())))
        .layer(Extension(Arc::new(match &state.data {
            Some(data) => throttle::Throttle::with_trust_file(data.join(throttle::TRUST_FILE)),
            None => throttle::Throttle::new(),
        })))
        .layer(Extension(Arc::new(upload::UploadSlots::new(
            state.limits.max_uploads_per_user,
            state.limits.max_uploads,
        ))))
        .layer(axum::middleware::from_fn(log::log_requests))
        // Outermost: a refused request's body outlives the response (HTTP/2 resets).
        .layer(axum::middleware::from_fn(keep_body::keep_request_body))
        .with_state(state)
}
