//! `POST /upload`: the original client's API, kept working (SPEC §3).
//!
//! The request is `multipart/form-data` with Basic auth and a `Content-MD5` header
//! (32 hex digits; the RFC 1864 base64 form is accepted too) holding the MD5 of the
//! file. Fields:
//!
//! - `upload_file`: the file's bytes, with its file name (only the name after the
//!   last `/` or `\` is used, for old clients that sent a full local path);
//! - `path` (optional): where the file goes in the caller's own namespace.
//!
//! How `path` is read, so that both ways old clients called it work:
//!
//! - `\` is taken as a folder separator (the original ran on Windows) and a trailing
//!   `/` is ignored;
//! - empty or missing: the file is stored under its own name at the top;
//! - ending with the uploaded file's name (`Documents/New folder/Copy (13).docx`
//!   for `Copy (13).docx`, or just `Copy (13).docx`): the full relative path;
//! - anything else (`Documents/New folder`): the folder to put the file in.
//!
//! The result must pass the same path rules as the rest of the API (400 otherwise).
//! The server checks the MD5 (422 on mismatch) and stores the version by SHA-256 like
//! `PUT /api/v1/files`. The answer is always 200 on success (old clients check for
//! 200), with the same JSON as `PUT`: `{"sha256","size","stored_at","created"}`.
//! Fields other than these two are read and ignored.

use std::io::{self, Read};

use axum::Json;
use axum::body::Bytes;
use axum::extract::multipart::{Field, Multipart, MultipartError};
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use md5::Digest as _;

use super::AppState;
use super::auth::authenticate;
use super::error::ApiError;
use super::upload::{UploadLimit, content_length};
use crate::names::RelPath;
use crate::store::Staged;

/// Room allowed in `Content-Length` for the multipart framing and the `path` field.
const MULTIPART_SLACK: u64 = 64 * 1024;
/// Longest `path` field accepted, in bytes (a valid path is at most 4096).
const MAX_PATH_FIELD: usize = 16 * 1024;

pub async fn upload(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let user = authenticate(&state, &parts).await?;
    let owner = user.name;
    let md5 = declared_md5(&parts.headers)?;
    let declared = content_length(&parts)?.map(|n| n.saturating_sub(MULTIPART_SLACK));
    let limit = UploadLimit::decide(&state, &owner, declared, false).await?;
    let _slot = super::upload::upload_slots(&parts)?.acquire(&owner)?;

    let mut multipart = Multipart::from_request(Request::from_parts(parts, body), &state)
        .await
        .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let mut file: Option<(Staged, [u8; 16], String)> = None;
    let mut path_field: Option<String> = None;
    let mut ignored = 0u64;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("upload_file") => {
                if file.is_some() {
                    return Err(ApiError::bad_request(
                        "send one file per request (upload_file appears twice)",
                    ));
                }
                let name = field.file_name().map(base_name).unwrap_or_default();
                if name.is_empty() {
                    return Err(ApiError::bad_request(
                        "the upload_file field has no file name",
                    ));
                }
                // When the path came first, refuse a bad one before reading the file.
                if let Some(path) = &path_field {
                    legacy_path(path, &name)?;
                }
                let (staged, actual) = stage_field(&state, &mut field, limit).await?;
                file = Some((staged, actual, name));
            }
            Some("path") => path_field = Some(small_text(&mut field).await?),
            // Other fields are read and dropped, but only so much of them.
            _ => {
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    ignored += chunk.len() as u64;
                    if ignored > MULTIPART_SLACK {
                        return Err(ApiError::bad_request(
                            "the form has large fields other than upload_file and path",
                        ));
                    }
                }
            }
        }
    }
    let Some((staged, actual, name)) = file else {
        return Err(ApiError::bad_request(
            "the multipart field upload_file (the file) is missing",
        ));
    };
    if actual != md5 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the content does not match its declared MD5 (declared {}, received {})",
                hex::encode(md5),
                hex::encode(actual)
            ),
        ));
    }
    let path = legacy_path(path_field.as_deref().unwrap_or(""), &name)?;
    let store = state.store.clone();
    let outcome = tokio::task::spawn_blocking(move || store.commit(&owner, &path, staged, None))
        .await?
        .map_err(|e| limit.error(e))?;
    Ok((StatusCode::OK, Json(outcome)).into_response())
}

fn multipart_error(e: MultipartError) -> ApiError {
    ApiError::new(e.status(), e.body_text())
}

/// The `Content-MD5` header: 32 hex digits, or 16 bytes in base64 (RFC 1864).
fn declared_md5(headers: &HeaderMap) -> Result<[u8; 16], ApiError> {
    let bad =
        || ApiError::bad_request("the Content-MD5 header (the file's MD5 in hex) is required");
    let text = headers
        .get("content-md5")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or_else(bad)?;
    let mut out = [0u8; 16];
    if hex::decode_to_slice(text, &mut out).is_ok() {
        return Ok(out);
    }
    match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(bytes) if bytes.len() == 16 => {
            out.copy_from_slice(&bytes);
            Ok(out)
        }
        _ => Err(bad()),
    }
}

/// The last component of a client-side file name (old browsers sent full paths).
fn base_name(name: &str) -> String {
    name.rsplit(['/', '\\']).next().unwrap_or(name).to_owned()
}

/// Where the upload goes; see the module documentation for the rule.
fn legacy_path(field: &str, file_name: &str) -> Result<RelPath, ApiError> {
    let field = field.replace('\\', "/");
    let field = field.trim_end_matches('/');
    let full = if field.is_empty() {
        file_name.to_owned()
    } else if field == file_name || field.ends_with(&format!("/{file_name}")) {
        field.to_owned()
    } else {
        format!("{field}/{file_name}")
    };
    Ok(RelPath::parse(&full)?)
}

async fn small_text(field: &mut Field<'_>) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_PATH_FIELD {
            return Err(ApiError::bad_request("the path field is too long"));
        }
    }
    String::from_utf8(bytes).map_err(|_| ApiError::bad_request("the path field is not UTF-8"))
}

/// Streams one multipart field into the store's staging area, computing its MD5 on
/// the way. The field is pumped through a small channel to the blocking store.
async fn stage_field(
    state: &AppState,
    field: &mut Field<'_>,
    limit: UploadLimit,
) -> Result<(Staged, [u8; 16]), ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    let store = state.store.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut reader = Md5Reader {
            inner: ChannelReader {
                rx,
                current: Bytes::new(),
            },
            md5: md5::Md5::new(),
        };
        let staged = store.stage(&mut reader, limit.bytes)?;
        Ok((staged, reader.md5.finalize().into()))
    });
    let timeout = state.limits.body_timeout;
    loop {
        let Ok(next) = tokio::time::timeout(timeout, field.chunk()).await else {
            // Staging must fail, not see a short end: its temp file is then removed.
            let _ = tx.send(Err(io::Error::other("no data"))).await;
            drop(tx);
            let _ = task.await;
            return Err(ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the upload sent nothing for {} seconds, so it was dropped; nothing was stored",
                    timeout.as_secs()
                ),
            ));
        };
        match next {
            Ok(Some(chunk)) => {
                // A closed channel means staging stopped (e.g. too large): its
                // error is the answer.
                if tx.send(Ok(chunk)).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx.send(Err(io::Error::other(e.body_text()))).await;
                break;
            }
        }
    }
    drop(tx);
    task.await?.map_err(|e| limit.error(e))
}

/// Reads the chunks a channel delivers; the sender hanging up is the end.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

struct Md5Reader<R> {
    inner: R,
    md5: md5::Md5,
}

impl<R: Read> Read for Md5Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.md5.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rule() {
        let name = "New Microsoft Word Document - Copy (13).docx";
        let full = "Documents/New folder/New Microsoft Word Document - Copy (13).docx";
        let cases = [
            ("", name),
            (name, name),
            (full, full),
            ("Documents/New folder", full),
            ("Documents/New folder/", full),
            ("Documents\\New folder", full),
            (
                "Documents\\New folder\\New Microsoft Word Document - Copy (13).docx",
                full,
            ),
            // A folder whose name merely ends like the file is still a folder.
            (
                "Old Copy (13).docx",
                "Old Copy (13).docx/New Microsoft Word Document - Copy (13).docx",
            ),
        ];
        for (field, want) in cases {
            assert_eq!(
                legacy_path(field, name).unwrap().as_str(),
                want,
                "{field:?}"
            );
        }
        for bad in ["/abs", "../x", "a//b", "a\0b", "..\\..\\x"] {
            assert!(legacy_path(bad, name).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_md5() {
        assert_eq!(base_name("C:\\Users\\x\\a.docx"), "a.docx");
        assert_eq!(base_name("a/b.txt"), "b.txt");
        let mut h = HeaderMap::new();
        assert!(declared_md5(&h).is_err());
        let md5: [u8; 16] = md5::Md5::digest(b"abc").into();
        h.insert("content-md5", hex::encode(md5).parse().unwrap());
        assert_eq!(declared_md5(&h).unwrap(), md5);
        h.insert(
            "content-md5",
            base64::engine::general_purpose::STANDARD
                .encode(md5)
                .parse()
                .unwrap(),
        );
        assert_eq!(declared_md5(&h).unwrap(), md5);
        h.insert("content-md5", "nope".parse().unwrap());
        assert!(declared_md5(&h).is_err());
    }
}
