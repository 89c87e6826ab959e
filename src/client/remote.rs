//! [`Remote`]: a blocking client for the server's read API (SPEC §3) — health, trees,
//! version lists, downloads — usable from plain threads such as FUSE workers.

use std::io::Write;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use sha2::Digest as _;

use super::http::{Http, SMALL_TIMEOUT};
use super::{ClientError, ConnectConfig};
use crate::api::Changes;
use crate::names::{RelPath, UserName};
use crate::store::{Digest, JournalEvent, Tree, VersionInfo};

/// A connection to one server as one user. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Remote {
    pub(crate) http: Arc<Http>,
}

impl Remote {
    /// Sets up the client. Does not contact the server: call [`Remote::health`] or
    /// [`Remote::check_login`] to find out whether it answers.
    pub fn connect(cfg: &ConnectConfig) -> Result<Remote, ClientError> {
        Ok(Remote {
            http: Arc::new(Http::new(cfg)?),
        })
    }

    /// The server's base URL, for messages.
    pub fn server(&self) -> &str {
        &self.http.server
    }

    pub fn user(&self) -> &UserName {
        &self.http.user
    }

    /// `GET /api/v1/health` (no credentials needed).
    pub fn health(&self) -> Result<(), ClientError> {
        let http = &self.http;
        http.block_on(async {
            let resp = http
                .client
                .get(http.health_url())
                .timeout(SMALL_TIMEOUT)
                .send()
                .await
                .map_err(|e| http.transport_error(&e))?;
            let status = resp.status();
            if status.is_success() {
                Ok(())
            } else {
                let body = resp.text().await.unwrap_or_default();
                Err(match http.status_error(status, &body) {
                    ClientError::NotFound => ClientError::Protocol {
                        server: http.server.clone(),
                        message: "no /api/v1/health here; is this an ects server?".into(),
                    },
                    e => e,
                })
            }
        })
    }

    /// Checks that the server answers and accepts the user name and password.
    pub fn check_login(&self) -> Result<(), ClientError> {
        self.health()?;
        self.tree(None).map(|_| ())
    }

    /// The children of one folder of the user's own namespace (`None` = the root);
    /// `Ok(None)` when the folder does not exist.
    pub fn tree(&self, dir: Option<&RelPath>) -> Result<Option<Tree>, ClientError> {
        match self.get_json(&self.http.url("tree", dir)) {
            Ok(tree) => Ok(Some(tree)),
            Err(ClientError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every stored version of `path`, oldest first; empty when there is none.
    pub fn versions(&self, path: &RelPath) -> Result<Vec<VersionInfo>, ClientError> {
        match self.get_json(&self.http.url("versions", Some(path))) {
            Ok(list) => Ok(list),
            Err(ClientError::NotFound) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// `HEAD ...?sha256=`: whether this version of `path` is stored.
    pub fn exists(&self, path: &RelPath, sha: &Digest) -> Result<bool, ClientError> {
        let http = &self.http;
        http.block_on(async {
            let resp = http
                .request(Method::HEAD, &http.file_url(path, Some(sha)))
                .timeout(SMALL_TIMEOUT)
                .send()
                .await
                .map_err(|e| http.transport_error(&e))?;
            match resp.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                s => Err(http.status_error(s, "")),
            }
        })
    }

    /// Streams one version into `out`, checking its SHA-256 as it goes. On a mismatch the
    /// bytes already written are not to be trusted: the caller discards them.
    pub fn fetch(
        &self,
        path: &RelPath,
        sha: &Digest,
        out: &mut dyn Write,
    ) -> Result<u64, ClientError> {
        let (actual, n) = self.download(&self.http.file_url(path, Some(sha)), None, out)?;
        if actual != *sha {
            return Err(ClientError::HashMismatch {
                expected: *sha,
                actual,
            });
        }
        Ok(n)
    }

    /// Streams the newest version of `path` into `out`; returns its digest and size.
    pub fn fetch_latest(
        &self,
        path: &RelPath,
        out: &mut dyn Write,
    ) -> Result<(Digest, u64), ClientError> {
        self.download(&self.http.file_url(path, None), None, out)
    }

    /// Streams `len` bytes of one version from `offset` (an HTTP Range request), for
    /// readers that need only part of a big file. Not hash-checked (it is a part).
    pub fn fetch_range(
        &self,
        path: &RelPath,
        sha: &Digest,
        offset: u64,
        len: u64,
        out: &mut dyn Write,
    ) -> Result<u64, ClientError> {
        if len == 0 {
            return Ok(0);
        }
        let range = format!("bytes={}-{}", offset, offset.saturating_add(len - 1));
        self.download(&self.http.file_url(path, Some(sha)), Some(range), out)
            .map(|(_, n)| n)
    }

    /// GETs `url` into `out`, hashing as it streams; returns the digest and byte count.
    /// A whole (not ranged) answer must match its `X-Content-SHA256`, if it has one.
    pub(crate) fn download(
        &self,
        url: &str,
        range: Option<String>,
        out: &mut dyn Write,
    ) -> Result<(Digest, u64), ClientError> {
        let http = &self.http;
        http.block_on(async {
            let mut req = http.request(Method::GET, url);
            if let Some(r) = &range {
                req = req.header(reqwest::header::RANGE, r);
            }
            let mut resp = req.send().await.map_err(|e| http.transport_error(&e))?;
            let status = resp.status();
            if !status.is_success() {
                let body = resp.text().await.unwrap_or_default();
                return Err(http.status_error(status, &body));
            }
            let declared = resp
                .headers()
                .get(crate::api::SHA256_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<Digest>().ok());
            let mut hasher = sha2::Sha256::new();
            let mut n = 0u64;
            while let Some(chunk) = resp.chunk().await.map_err(|e| http.transport_error(&e))? {
                hasher.update(&chunk);
                n += chunk.len() as u64;
                out.write_all(&chunk).map_err(|e| ClientError::Io {
                    context: "writing the download".into(),
                    source: e,
                })?;
            }
            let actual = Digest::from_bytes(hasher.finalize().into());
            if range.is_none()
                && let Some(declared) = declared
                && declared != actual
            {
                return Err(ClientError::HashMismatch {
                    expected: declared,
                    actual,
                });
            }
            Ok((actual, n))
        })
    }

    /// `POST /api/v1/deletions/...`: records that `path` was deleted (its versions stay).
    /// Answers the deletion event, also when the file was already deleted;
    /// [`ClientError::NotFound`] when the server has no version of it.
    pub fn delete(&self, path: &RelPath) -> Result<JournalEvent, ClientError> {
        self.send_json(
            Method::POST,
            &self.http.url("deletions", Some(path)),
            SMALL_TIMEOUT,
        )
    }

    /// `GET /api/v1/changes/{user}`: the journal's events after `after` (a cursor from
    /// an earlier answer; `None` = from the start). When there are none yet, the server
    /// waits up to `wait` (at most 30 s) for one before answering empty.
    pub fn changes(
        &self,
        after: Option<&str>,
        wait: std::time::Duration,
    ) -> Result<Changes, ClientError> {
        let mut url = format!("{}?wait={}", self.http.url("changes", None), wait.as_secs());
        if let Some(after) = after {
            url.push_str("&after=");
            url.extend(percent_encoding::utf8_percent_encode(
                after,
                percent_encoding::NON_ALPHANUMERIC,
            ));
        }
        self.send_json(Method::GET, &url, SMALL_TIMEOUT + wait)
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, ClientError> {
        self.send_json(Method::GET, url, SMALL_TIMEOUT)
    }

    fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        timeout: std::time::Duration,
    ) -> Result<T, ClientError> {
        let http = &self.http;
        http.block_on(async {
            let resp = http
                .request(method, url)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| http.transport_error(&e))?;
            let status = resp.status();
            let body = resp.text().await.map_err(|e| http.transport_error(&e))?;
            if !status.is_success() {
                return Err(http.status_error(status, &body));
            }
            serde_json::from_str(&body).map_err(|e| ClientError::Protocol {
                server: http.server.clone(),
                message: format!("bad JSON from {url}: {e}"),
            })
        })
    }
}
