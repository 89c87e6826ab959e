//! Receiving bodies: size and quota limits decided before the first byte is read, a
//! cap on uploads in progress, and a pump that reads the body asynchronously and hands
//! the store only data that has arrived, so a slow client holds no blocking thread and
//! memory stays bounded for any file size.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{StatusCode, header, request::Parts};
use futures_util::StreamExt as _;

use super::AppState;
use super::error::ApiError;
use crate::names::UserName;
use crate::store::{Staged, Stager, StoreError};

/// Bytes gathered before one blocking write to the staging area.
const BATCH: usize = 256 * 1024;
/// `Retry-After` for uploads refused because too many are in progress.
const BUSY_RETRY_SECS: u64 = 10;

/// Uploads in progress, per user and in all (`--max-uploads-per-user`,
/// `--max-uploads`). One user's many slow uploads get 429 before they can take the
/// places everyone else needs.
#[derive(Debug)]
pub struct UploadSlots {
    per_user: usize,
    total: usize,
    open: Mutex<(usize, HashMap<UserName, usize>)>,
}

impl UploadSlots {
    pub fn new(per_user: usize, total: usize) -> Self {
        Self {
            per_user,
            total,
            open: Mutex::default(),
        }
    }

    /// A place for one upload of `user`, held until the guard drops; 429 when the user
    /// has too many in progress, 503 when the server has.
    pub fn acquire(self: &Arc<Self>, user: &UserName) -> Result<UploadSlot, ApiError> {
        let mut open = crate::sync::lock(&self.open);
        let (total, users) = &mut *open;
        let mine = users.get(user).copied().unwrap_or(0);
        if mine >= self.per_user {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("you have {mine} uploads in progress already; this one is retried shortly"),
            )
            .retry_after(BUSY_RETRY_SECS));
        }
        if *total >= self.total {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is receiving too many uploads at once; this one is retried shortly",
            )
            .retry_after(BUSY_RETRY_SECS));
        }
        *total += 1;
        users.insert(user.clone(), mine + 1);
        Ok(UploadSlot {
            slots: self.clone(),
            user: user.clone(),
        })
    }
}

/// One upload's place; freed on drop.
#[derive(Debug)]
pub struct UploadSlot {
    slots: Arc<UploadSlots>,
    user: UserName,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut open = crate::sync::lock(&self.slots.open);
        let (total, users) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = users.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                users.remove(&self.user);
            }
        }
    }
}

/// Reads `body` into the store's staging area. Waiting for the network happens here,
/// on the async runtime; only writes of data that has arrived go to a blocking thread.
/// A body that sends nothing for `--body-timeout` is a 408, and everything staged so
/// far is discarded (the temp file is removed).
pub async fn receive(
    state: &AppState,
    body: Body,
    limit: &UploadLimit,
) -> Result<Staged, ApiError> {
    let store = state.store.clone();
    let max = limit.bytes;
    let mut stager = tokio::task::spawn_blocking(move || store.stager(max))
        .await?
        .map_err(|e| limit.error(e))?;
    let timeout = state.limits.body_timeout;
    let mut stream = body.into_data_stream();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let next = tokio::time::timeout(timeout, stream.next())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the upload sent nothing for {} seconds, so it was dropped; nothing was stored",
                        timeout.as_secs()
                    ),
                )
            })?;
        match next {
            Some(Ok(bytes)) => {
                batch.extend_from_slice(&bytes);
                if batch.len() >= BATCH {
                    (stager, batch) = write(stager, batch, limit).await?;
                }
            }
            Some(Err(e)) => return Err(StoreError::Body(io::Error::other(e)).into()),
            None => break,
        }
    }
    if !batch.is_empty() {
        (stager, _) = write(stager, batch, limit).await?;
    }
    Ok(stager.finish())
}

/// Writes one batch on a blocking thread; gives back the stager and the emptied batch.
async fn write(
    mut stager: Stager,
    mut batch: Vec<u8>,
    limit: &UploadLimit,
) -> Result<(Stager, Vec<u8>), ApiError> {
    tokio::task::spawn_blocking(move || {
        stager.write(&batch)?;
        batch.clear();
        Ok((stager, batch))
    })
    .await?
    .map_err(|e| limit.error(e))
}

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

/// The server's [`UploadSlots`] (a router layer).
pub fn upload_slots(parts: &Parts) -> Result<&Arc<UploadSlots>, ApiError> {
    parts
        .extensions
        .get::<Arc<UploadSlots>>()
        .ok_or_else(|| ApiError::internal("upload", &"no upload slots"))
}
