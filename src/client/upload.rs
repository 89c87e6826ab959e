//! Where the spool sends versions: the [`Uploader`] trait, the HTTP implementation
//! ([`HttpUploader`], SPEC §3 HEAD + PUT) and the embedded-store one ([`StoreUploader`]).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};

use super::http::{SMALL_TIMEOUT, describe, error_message};
use super::{ClientError, ConnectConfig, Remote};
use crate::names::{RelPath, UserName};
use crate::store::{Digest, Store, StoreError};

/// What the spool does with an error: the one retry classification of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Will never succeed as it is (bad path, collision, too large, content not
    /// matching its hash): the entry goes to the failed list, its data kept.
    Permanent,
    /// Network or server trouble, a full server disk, throttling (429/503, honouring
    /// `Retry-After`): try again later with backoff.
    Transient,
    /// The server does not accept the user's credentials (401): everything stays
    /// queued and the spool re-checks only slowly, so the retries cannot trip the
    /// server's sign-in throttle.
    NeedsCredentials,
}

/// Why an upload did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UploadError {
    pub class: ErrorClass,
    /// The HTTP status (or the one the server would answer); 0 when none was received.
    pub status: u16,
    /// For a person.
    pub message: String,
    /// How long the server asked us to wait (`Retry-After`), if it did.
    pub retry_after: Option<Duration>,
}

impl UploadError {
    /// Network trouble or a server that could not answer: try again later.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Transient, 0, message)
    }

    /// Refused for good with HTTP `status`.
    pub fn refused(status: u16, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, status, message)
    }

    /// The credentials were refused (401).
    pub fn credentials(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::NeedsCredentials, 401, message)
    }

    pub fn new(class: ErrorClass, status: u16, message: impl Into<String>) -> Self {
        Self {
            class,
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// The class an HTTP answer falls in (SPEC §3, docs/ERRORS.md).
    pub fn class_of(status: u16) -> ErrorClass {
        match status {
            401 => ErrorClass::NeedsCredentials,
            408 | 429 => ErrorClass::Transient,
            s if s >= 500 => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

/// `Retry-After` in seconds (the form the ects server sends); an HTTP date or garbage
/// is ignored and the spool's own backoff applies.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Sends versions somewhere. Blocking; called from the spool's worker threads.
pub trait Uploader: Send + Sync {
    /// Whether this version of `path` is stored already (HTTP: `HEAD ...?sha256=`).
    fn exists(&self, path: &RelPath, sha: &Digest) -> Result<bool, UploadError>;
    /// Stores the content of `file` (which hashes to `sha` and is `size` bytes long) as a
    /// version of `path`, streaming it from disk.
    fn upload(
        &self,
        path: &RelPath,
        file: &Path,
        sha: &Digest,
        size: u64,
    ) -> Result<(), UploadError>;

    /// Where versions go, for a person reading the status: `None` for a server (the
    /// status then says whether it is reachable), or a description of a local store.
    fn local_store(&self) -> Option<String> {
        None
    }
}

/// The message a 401 gets everywhere (status pages, the failed list, logs).
pub const AUTH_FAILED: &str = "wrong user name or password";

/// Uploads to an ects server over HTTP(S).
#[derive(Clone)]
pub struct HttpUploader {
    remote: Remote,
}

impl HttpUploader {
    /// Shares `remote`'s connections.
    pub fn new(remote: &Remote) -> Self {
        Self {
            remote: remote.clone(),
        }
    }

    pub fn connect(cfg: &ConnectConfig) -> Result<Self, ClientError> {
        Ok(Self::new(&Remote::connect(cfg)?))
    }

    fn classify(&self, status: StatusCode, body: &str, after: Option<Duration>) -> UploadError {
        let server = &self.remote.http.server;
        let s = status.as_u16();
        let message = super::words::http_failure(server, s, &error_message(status, body), after);
        UploadError::new(UploadError::class_of(s), s, message).with_retry_after(after)
    }

    fn transport(&self, e: &reqwest::Error) -> UploadError {
        UploadError::transient(super::words::transport_failure(
            &self.remote.http.server,
            &describe(e),
        ))
    }
}

impl Uploader for HttpUploader {
    fn exists(&self, path: &RelPath, sha: &Digest) -> Result<bool, UploadError> {
        match self.head(path, sha) {
            Err(Attempt::Stale(_)) => self.head(path, sha),
            other => other,
        }
        .map_err(Attempt::into_error)
    }

    fn upload(
        &self,
        path: &RelPath,
        file: &Path,
        sha: &Digest,
        size: u64,
    ) -> Result<(), UploadError> {
        // A pooled connection the server closed a moment ago (it does so after refusing
        // a body it did not read) fails before the request is processed: one immediate
        // second try on a fresh connection. A PUT of the same bytes is idempotent, so
        // this never stores anything twice.
        match self.put(path, file, sha, size) {
            Err(Attempt::Stale(_)) => self.put(path, file, sha, size),
            other => other,
        }
        .map_err(Attempt::into_error)
    }
}

/// One PUT's failure, and whether trying again at once on a new connection makes sense.
enum Attempt {
    Stale(UploadError),
    Final(UploadError),
}

impl Attempt {
    fn into_error(self) -> UploadError {
        match self {
            Attempt::Stale(e) | Attempt::Final(e) => e,
        }
    }
}

fn attempt(uploader: &HttpUploader, e: &reqwest::Error) -> Attempt {
    let err = uploader.transport(e);
    if e.is_connect() || e.is_timeout() {
        Attempt::Final(err)
    } else {
        Attempt::Stale(err)
    }
}

impl HttpUploader {
    fn head(&self, path: &RelPath, sha: &Digest) -> Result<bool, Attempt> {
        let http = &self.remote.http;
        http.block_on(async {
            let resp = http
                .request(Method::HEAD, &http.file_url(path, Some(sha)))
                .timeout(SMALL_TIMEOUT)
                .send()
                .await
                .map_err(|e| attempt(self, &e))?;
            match resp.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                s => Err(Attempt::Final(self.classify(
                    s,
                    "",
                    retry_after(resp.headers()),
                ))),
            }
        })
    }

    fn put(&self, path: &RelPath, file: &Path, sha: &Digest, size: u64) -> Result<(), Attempt> {
        let http = &self.remote.http;
        http.block_on(async {
            let f = tokio::fs::File::open(file).await.map_err(|e| {
                Attempt::Final(UploadError::transient(format!(
                    "cannot read the spool copy {}: {e}",
                    file.display()
                )))
            })?;
            // 256 KiB reads: few syscalls, and memory stays bounded for any file size.
            let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024);
            let resp = http
                .request(Method::PUT, &http.file_url(path, None))
                .header(crate::api::SHA256_HEADER, sha.to_hex())
                .header(reqwest::header::CONTENT_LENGTH, size)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
                .map_err(|e| attempt(self, &e))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let after = retry_after(resp.headers());
            let body = resp.text().await.unwrap_or_default();
            Err(Attempt::Final(self.classify(status, &body, after)))
        })
    }
}

/// Uploads into an embedded store (the drive without `--server`, and tests).
pub struct StoreUploader {
    store: Arc<dyn Store>,
    user: UserName,
}

impl StoreUploader {
    pub fn new(store: Arc<dyn Store>, user: UserName) -> Self {
        Self { store, user }
    }
}

/// The HTTP status the server would answer for a store error, so refused versions look
/// the same in the failed list with or without a server.
fn store_error(e: StoreError) -> UploadError {
    // Locally, a body that cannot be read, a full disk or a quota may pass: retry those.
    let transient = matches!(
        e,
        StoreError::QuotaExceeded { .. }
            | StoreError::NoSpace
            | StoreError::NotFound
            | StoreError::Body(_)
    );
    let status = crate::api::store_error_status(&e);
    let class = match status {
        Some(_) if !transient => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    };
    UploadError::new(class, status.unwrap_or(0), e.to_string())
}

impl Uploader for StoreUploader {
    fn local_store(&self) -> Option<String> {
        Some("this computer's own store (no server)".to_owned())
    }

    fn exists(&self, path: &RelPath, sha: &Digest) -> Result<bool, UploadError> {
        self.store
            .version(&self.user, path, sha)
            .map(|v| v.is_some())
            .map_err(store_error)
    }

    fn upload(
        &self,
        path: &RelPath,
        file: &Path,
        sha: &Digest,
        _size: u64,
    ) -> Result<(), UploadError> {
        let mut f = File::open(file).map_err(|e| {
            UploadError::transient(format!(
                "cannot read the spool copy {}: {e}",
                file.display()
            ))
        })?;
        self.store
            .put(&self.user, path, &mut f, u64::MAX, Some(sha))
            .map(|_| ())
            .map_err(store_error)
    }
}
