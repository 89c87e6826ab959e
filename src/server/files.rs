//! The `/api/v1` routes: files (PUT, GET, HEAD), versions and tree (SPEC §3).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::{Access, authenticate, authorize};
use super::download::{self, Ranged};
use super::error::ApiError;
use super::target;
use super::upload::{UploadLimit, content_length, receive, upload_slots};
use crate::api::SHA256_HEADER;
use crate::names::{RelPath, UserName};
use crate::store::{Digest, VersionInfo};

const FILES: &str = "/api/v1/files/";
const VERSIONS: &str = "/api/v1/versions/";
const TREE: &str = "/api/v1/tree/";

/// `GET /api/v1/health`: no sign-in needed.
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// Signs in, reads the owner from the URL after `prefix`, and checks `access`.
/// Returns the owner and the raw rest of the path.
pub(super) async fn enter<'p>(
    state: &AppState,
    parts: &'p Parts,
    prefix: &str,
    access: Access,
) -> Result<(UserName, &'p str), ApiError> {
    let user = authenticate(state, parts).await?;
    let raw = parts.uri.path().strip_prefix(prefix).unwrap_or_default();
    let (owner, rest) = target::split_owner(raw)?;
    authorize(&user, &owner, access)?;
    Ok((owner, rest))
}

/// `PUT /api/v1/files/{user}/{path}`: stores the body as a new version.
pub async fn put_file(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    // Everything is checked before a byte of the body is read.
    let (owner, rest) = enter(&state, &parts, FILES, Access::Write).await?;
    let path = target::file_path(rest)?;
    let expected = declared_sha256(&parts.headers)?;
    let declared = content_length(&parts)?;
    let dedup = match state.limits.quota {
        Some(_) => {
            let (store, o, p) = (state.store.clone(), owner.clone(), path.clone());
            tokio::task::spawn_blocking(move || store.version(&o, &p, &expected))
                .await??
                .is_some()
        }
        None => false,
    };
    let limit = UploadLimit::decide(&state, &owner, declared, dedup).await?;
    let _slot = upload_slots(&parts)?.acquire(&owner)?;
    let staged = receive(&state, body, &limit).await?;
    let store = state.store.clone();
    let outcome =
        tokio::task::spawn_blocking(move || store.commit(&owner, &path, staged, Some(&expected)))
            .await?
            .map_err(|e| limit.error(e))?;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(outcome)).into_response())
}

fn declared_sha256(headers: &HeaderMap) -> Result<Digest, ApiError> {
    let value = headers.get(SHA256_HEADER).ok_or_else(|| {
        ApiError::bad_request("the X-Content-SHA256 header (64 hex digits) is required")
    })?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("the X-Content-SHA256 header is not 64 hex digits"))?;
    Ok(text.trim().parse()?)
}

/// `GET` and `HEAD /api/v1/files/{user}/{path}[?sha256=<hex>]`: one version's bytes,
/// the newest when no hash is given.
pub async fn get_file(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let (owner, rest) = enter(&state, &parts, FILES, Access::Read).await?;
    let path = target::file_path(rest)?;
    let pinned = target::sha256_query(parts.uri.query())?;
    // Always a download, never rendered: an uploaded .html or .svg must not run here.
    let disposition = download::attachment(path.file_name());
    let store = state.store.clone();
    let (info, reader) = tokio::task::spawn_blocking(move || {
        let sha256 = match pinned {
            Some(sha256) => sha256,
            None => match store.versions(&owner, &path)?.pop() {
                Some(newest) => newest.sha256,
                None => return Err(crate::store::StoreError::NotFound),
            },
        };
        store.open(&owner, &path, &sha256)
    })
    .await?
    .map_err(|e| match e {
        crate::store::StoreError::NotFound => ApiError::not_found("no such version"),
        e => e.into(),
    })?;

    let mut headers = HeaderMap::new();
    let cache = if pinned.is_some() {
        // A version never changes: caches may keep it for good.
        "private, max-age=31536000, immutable"
    } else {
        // "The newest" changes with every save.
        "no-cache"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::ETAG, header_value(&download::etag(&info.sha256)));
    headers.insert(SHA256_HEADER, header_value(&info.sha256.to_hex()));
    headers.insert(header::LAST_MODIFIED, header_value(&http_date(&info)));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );

    if download::not_modified(&parts.headers, &info.sha256) {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    let (status, start, len) = match download::range(&parts.headers, info.size, &info.sha256) {
        Ranged::Full => (StatusCode::OK, 0, info.size),
        Ranged::Part { start, end } => {
            headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {start}-{end}/{}", info.size)),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Ranged::Unsatisfiable => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the range is outside the version's {} bytes", info.size),
            )
            .into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{}", info.size)),
            );
            return Ok(response);
        }
    };
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, header_value(&len.to_string()));
    let body = if parts.method == Method::HEAD {
        axum::body::Body::empty()
    } else {
        download::stream(reader, start, len)
    };
    Ok((status, headers, body).into_response())
}

/// `GET /api/v1/versions/{user}/{path}`: every version, oldest first; 404 when none.
pub async fn versions(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let (owner, rest) = enter(&state, &parts, VERSIONS, Access::Read).await?;
    let path = target::file_path(rest)?;
    let store = state.store.clone();
    let versions: Vec<VersionInfo> =
        tokio::task::spawn_blocking(move || store.versions(&owner, &path)).await??;
    if versions.is_empty() {
        return Err(ApiError::not_found("no version of this file is stored"));
    }
    Ok(Json(versions).into_response())
}

/// `GET /api/v1/tree/{user}[/{dir}]`: the folders and files of one folder.
pub async fn tree(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    // `{user}` alone (no trailing slash) is the root, like `{user}/`.
    let (owner, rest) = enter(&state, &parts, TREE, Access::Read).await?;
    let dir: Option<RelPath> = target::dir_path(rest)?;
    let (store, users) = (state.store.clone(), state.users.clone());
    let tree = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        // A teacher asking for a name nobody has gets a 404, not an empty folder.
        let known = users
            .get(owner.as_str())
            .map_err(|e| ApiError::internal("reading the user database failed", &e))?;
        if known.is_none() {
            return Ok(None);
        }
        Ok(store.tree(&owner, dir.as_ref())?)
    })
    .await??;
    match tree {
        Some(tree) => Ok(Json(tree).into_response()),
        None => Err(ApiError::not_found("no such folder")),
    }
}

fn header_value(s: &str) -> HeaderValue {
    // Every value built here is ASCII (hex, digits, dates).
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn http_date(info: &VersionInfo) -> String {
    info.stored_at
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}
