//! Receiving bodies: size and quota limits decided before the first byte is read, and
//! a bridge that lets the blocking store pull the body in chunks, so memory stays
//! bounded for any file size.

use axum::body::Body;
use axum::http::{header, request::Parts};
use futures_util::TryStreamExt as _;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::AppState;
use super::error::ApiError;
use crate::names::UserName;
use crate::store::StoreError;

/// The most bytes one upload may bring, and whether the user's quota (rather than
/// `--max-file-size`) is what sets it.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimit {
    pub bytes: u64,
    max_file_size: u64,
    /// `(quota, used)` when the quota binds.
    quota: Option<(u64, u64)>,
}

impl UploadLimit {
    /// Decides the limit for an upload into `owner`'s namespace, refusing at once
    /// (413/507) when `declared` bytes cannot fit. `dedup` says the content is already
    /// stored there: it will cost no space, so the quota does not apply.
    pub async fn decide(
        state: &AppState,
        owner: &UserName,
        declared: Option<u64>,
        dedup: bool,
    ) -> Result<Self, ApiError> {
        let max = state.limits.max_file_size;
        if declared.is_some_and(|n| n > max) {
            return Err(ApiError::too_large(max));
        }
        let mut limit = Self {
            bytes: max,
            max_file_size: max,
            quota: None,
        };
        let Some(quota) = state.limits.quota.filter(|_| !dedup) else {
            return Ok(limit);
        };
        let store = state.store.clone();
        let who = owner.clone();
        let used = tokio::task::spawn_blocking(move || store.usage(&who)).await??;
        let left = quota.saturating_sub(used);
        if left < max {
            limit.bytes = left;
            limit.quota = Some((quota, used));
            if declared.is_some_and(|n| n > left) {
                return Err(ApiError::over_quota(quota, used));
            }
        }
        Ok(limit)
    }

    /// Turns the store's "too large" into the status for what actually bound.
    pub fn error(&self, e: StoreError) -> ApiError {
        match (e, self.quota) {
            (StoreError::TooLarge { .. }, Some((quota, used))) => ApiError::over_quota(quota, used),
            (StoreError::TooLarge { .. }, None) => ApiError::too_large(self.max_file_size),
            (e, _) => e.into(),
        }
    }
}

/// The `Content-Length` header, if any. A malformed one is a 400.
pub fn content_length(parts: &Parts) -> Result<Option<u64>, ApiError> {
    let Some(value) = parts.headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("the Content-Length header is not a number"))
}

/// A blocking reader over a request body, for use inside `spawn_blocking`. Must be
/// created on the runtime. A body cut off by the client reads as an error, never as
/// a short end.
pub fn blocking_reader(body: Body) -> impl std::io::Read + Send + 'static {
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    SyncIoBridge::new(StreamReader::new(stream))
}
