//! [`ApiError`]: every refusal the API gives, as a status and a JSON body
//! `{"error": "<for a person>"}` (SPEC §3).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::names::NameError;
use crate::store::{DigestParseError, StoreError};

/// The client's whole answer to a 500: the detail (server paths) stays in the log.
pub const STORAGE_FAILED: &str =
    "the server could not read or write its storage; the error is in the server's log";

/// A refused or failed request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Set on 405: the methods the resource does allow.
    allow: Option<&'static str>,
    /// Seconds for `Retry-After` (429, 503): when the client may try again.
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            allow: None,
            retry_after: None,
        }
    }

    /// Adds `Retry-After: secs` (the ects client's spool waits that long).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401 with a Basic challenge. The message never says whether the name exists.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "you may not do this in another user's folder",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 405 for anything that would delete or overwrite, naming what is allowed.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!(
                "ects never deletes or overwrites stored versions; this address allows only {allow}"
            ),
            allow: Some(allow),
            retry_after: None,
        }
    }

    pub fn too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the file is larger than this server's limit of {limit} bytes"),
        )
    }

    pub fn over_quota(quota: u64, used: u64) -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "over quota: this file does not fit in the {} bytes left of your {quota}-byte quota",
                quota.saturating_sub(used)
            ),
        )
    }

    /// 500: logs the detail (which may name server paths) and tells the client only
    /// that something went wrong on the server's side.
    pub fn internal(context: &str, detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(%detail, "{context}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, STORAGE_FAILED)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(crate::api::ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ects\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // A valid path can still be too long for the server's disk once the data folder
        // is prepended (PATH_MAX): the client's name to shorten, not a server fault.
        if let StoreError::Io(io) = &e
            && is_name_too_long(io)
        {
            return Self::bad_request(
                "name too long: this path is longer than the server's disk allows; \
                 use shorter folder or file names",
            );
        }
        match crate::api::store_error_status(&e).and_then(|s| StatusCode::from_u16(s).ok()) {
            Some(status) => Self::new(status, e.to_string()),
            None => Self::internal("storage error", &e),
        }
    }
}

fn is_name_too_long(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ENAMETOOLONG) {
        return true;
    }
    e.kind() == std::io::ErrorKind::InvalidFilename
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<DigestParseError> for ApiError {
    fn from(e: DigestParseError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal("a storage task failed", &e)
    }
}
