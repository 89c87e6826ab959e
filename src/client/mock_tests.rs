//! The HTTP client against a small in-process axum server that follows SPEC §3, so the
//! wire format (paths, headers, statuses, streaming) is checked without the real server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use futures_util::StreamExt;
use sha2::Digest as _;

use super::*;
use crate::names::{RelPath, UserName};
use crate::store::{Digest, Tree, TreeFile, VersionInfo};

type Versions = Vec<(Digest, Vec<u8>)>;

#[derive(Default)]
struct Mock {
    /// path → versions (sha, bytes), oldest first.
    files: Mutex<BTreeMap<String, Versions>>,
    /// Every PUT: the decoded path and its Content-Length header.
    puts: Mutex<Vec<(String, Option<String>)>>,
}

type Shared = Arc<Mock>;

fn authorized(h: &HeaderMap) -> bool {
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("asdf:pw")
    );
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str())
}

fn err(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": msg }))).into_response()
}

fn info(sha: Digest, bytes: &[u8]) -> VersionInfo {
    VersionInfo {
        sha256: sha,
        size: bytes.len() as u64,
        stored_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
    }
}

async fn files(
    State(m): State<Shared>,
    method: Method,
    UrlPath((user, path)): UrlPath<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !authorized(&headers) || user != "asdf" {
        return err(StatusCode::UNAUTHORIZED, "no");
    }
    if path.starts_with("boom/") {
        return err(StatusCode::INSUFFICIENT_STORAGE, "out of disk");
    }
    if path.starts_with("busy/") {
        let mut r = err(StatusCode::TOO_MANY_REQUESTS, "too many uploads at once");
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("7"));
        return r;
    }
    let want: Option<Digest> = q.get("sha256").and_then(|s| s.parse().ok());
    match method {
        Method::PUT => {
            if path.starts_with("refuse/") {
                return err(
                    StatusCode::CONFLICT,
                    "\"refuse\" is already stored as a file",
                );
            }
            let declared: Option<Digest> = headers
                .get("x-content-sha256")
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse().ok());
            let len = headers
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            m.puts.lock().unwrap().push((path.clone(), len));
            let mut stream = body.into_data_stream();
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.next().await {
                bytes.extend_from_slice(&chunk.unwrap());
            }
            let sha = Digest::from_bytes(sha2::Sha256::digest(&bytes).into());
            if declared != Some(sha) {
                return err(StatusCode::UNPROCESSABLE_ENTITY, "hash mismatch");
            }
            let mut files = m.files.lock().unwrap();
            let versions = files.entry(path).or_default();
            let created = !versions.iter().any(|(d, _)| *d == sha);
            if created {
                versions.push((sha, bytes.clone()));
            }
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (
                status,
                axum::Json(serde_json::json!({"sha256": sha, "created": created})),
            )
                .into_response()
        }
        Method::HEAD | Method::GET => {
            let files = m.files.lock().unwrap();
            let versions = files.get(&path).cloned().unwrap_or_default();
            let found = match want {
                Some(w) => versions.into_iter().find(|(d, _)| *d == w),
                None => versions.last().cloned(),
            };
            let Some((sha, mut bytes)) = found else {
                return err(StatusCode::NOT_FOUND, "no such version");
            };
            if path.starts_with("corrupt/") {
                bytes.push(b'!');
            }
            if let Some(range) = headers.get("range").and_then(|v| v.to_str().ok()) {
                let r = range.trim_start_matches("bytes=");
                let (a, b) = r.split_once('-').unwrap();
                let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                let part = bytes[a..=b.min(bytes.len() - 1)].to_vec();
                return (StatusCode::PARTIAL_CONTENT, part).into_response();
            }
            ([("x-content-sha256", sha.to_hex())], bytes).into_response()
        }
        _ => err(StatusCode::METHOD_NOT_ALLOWED, "no"),
    }
}

async fn versions(
    State(m): State<Shared>,
    UrlPath((_user, path)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return err(StatusCode::UNAUTHORIZED, "no");
    }
    let files = m.files.lock().unwrap();
    match files.get(&path) {
        Some(v) => {
            axum::Json(v.iter().map(|(d, b)| info(*d, b)).collect::<Vec<_>>()).into_response()
        }
        None => err(StatusCode::NOT_FOUND, "none"),
    }
}

async fn tree_root(
    State(m): State<Shared>,
    UrlPath(_user): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return err(StatusCode::UNAUTHORIZED, "no");
    }
    let files = m.files.lock().unwrap();
    let mut t = Tree::default();
    for (path, v) in files.iter() {
        match path.split_once('/') {
            Some((dir, _)) => {
                if !t.dirs.contains(&dir.to_owned()) {
                    t.dirs.push(dir.to_owned());
                }
            }
            None => {
                let (d, b) = v.last().unwrap();
                t.files.push(TreeFile {
                    name: path.clone(),
                    versions: v.len() as u64,
                    latest: info(*d, b),
                });
            }
        }
    }
    axum::Json(t).into_response()
}

async fn tree_dir(
    UrlPath((_user, _dir)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return err(StatusCode::UNAUTHORIZED, "no");
    }
    err(StatusCode::NOT_FOUND, "no such folder")
}

/// A running mock server; stops when dropped.
struct Server {
    addr: SocketAddr,
    mock: Shared,
    _rt: tokio::runtime::Runtime,
}

fn serve() -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mock: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/api/v1/health",
            get(|| async { axum::Json(serde_json::json!({"status":"ok"})) }),
        )
        .route(
            "/api/v1/files/{user}/{*path}",
            get(files).head(files).put(files),
        )
        .route("/api/v1/versions/{user}/{*path}", get(versions))
        .route("/api/v1/tree/{user}/", get(tree_root))
        .route("/api/v1/tree/{user}/{*dir}", get(tree_dir))
        .with_state(mock.clone());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        addr,
        mock,
        _rt: rt,
    }
}

fn cfg(server: &Server, password: &str) -> ConnectConfig {
    ConnectConfig::new(
        &format!("http://{}", server.addr),
        UserName::parse("asdf").unwrap(),
        password.into(),
    )
}

fn p(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

#[test]
fn upload_list_and_fetch_round_trip() {
    let server = serve();
    let remote = Remote::connect(&cfg(&server, "pw")).unwrap();
    remote.health().unwrap();
    remote.check_login().unwrap();
    let up = HttpUploader::new(&remote);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let sha = Digest::of(&data);
    let path = p("Übung [1]/New folder/a?b#c%d.txt");
    assert!(!up.exists(&path, &sha).unwrap());
    up.upload(&path, &file, &sha, data.len() as u64).unwrap();
    assert!(up.exists(&path, &sha).unwrap());
    // The server saw the decoded path and a Content-Length (no chunked guessing).
    let puts = server.mock.puts.lock().unwrap().clone();
    assert_eq!(puts, [(path.to_string(), Some(data.len().to_string()))]);

    let versions = remote.versions(&path).unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].sha256, sha);
    assert!(remote.versions(&p("nothing.txt")).unwrap().is_empty());

    let mut out = Vec::new();
    assert_eq!(
        remote.fetch(&path, &sha, &mut out).unwrap(),
        data.len() as u64
    );
    assert_eq!(out, data);
    let mut out = Vec::new();
    assert_eq!(
        remote.fetch_latest(&path, &mut out).unwrap(),
        (sha, data.len() as u64)
    );
    let mut part = Vec::new();
    remote.fetch_range(&path, &sha, 10, 5, &mut part).unwrap();
    assert_eq!(part, &data[10..15]);

    let tree = remote.tree(None).unwrap().unwrap();
    assert_eq!(tree.dirs, ["Übung [1]"]);
    assert_eq!(remote.tree(Some(&p("missing"))).unwrap(), None);
}

#[test]
fn statuses_map_to_refused_retryable_and_clear_errors() {
    let server = serve();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let sha = Digest::of(b"x");
    let up = HttpUploader::connect(&cfg(&server, "pw")).unwrap();
    match up.upload(&p("refuse/x"), &file, &sha, 1) {
        Err(UploadError {
            class: ErrorClass::Permanent,
            status: 409,
            message,
            ..
        }) => {
            assert!(message.contains("already stored as a file"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // The declared hash is checked by the server: a lie is refused, not retried.
    let r = up.upload(&p("lie"), &file, &Digest::of(b"y"), 1);
    assert!(
        matches!(
            r,
            Err(UploadError {
                class: ErrorClass::Permanent,
                status: 422,
                ..
            })
        ),
        "{r:?}"
    );
    assert!(matches!(
        up.upload(&p("boom/x"), &file, &sha, 1),
        Err(UploadError { class: ErrorClass::Transient, message: m, .. })
            if m.contains("your space on the server is full")
    ));

    // Throttled: transient, and the server's Retry-After comes along for the spool.
    match up.upload(&p("busy/x"), &file, &sha, 1) {
        Err(UploadError {
            class: ErrorClass::Transient,
            status: 429,
            retry_after,
            ..
        }) => assert_eq!(retry_after, Some(std::time::Duration::from_secs(7))),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        up.exists(&p("busy/x"), &sha).unwrap_err().retry_after,
        Some(std::time::Duration::from_secs(7))
    );

    let bad = HttpUploader::connect(&cfg(&server, "wrong")).unwrap();
    match bad.upload(&p("a"), &file, &sha, 1) {
        Err(UploadError {
            class: ErrorClass::NeedsCredentials,
            status: 401,
            message,
            ..
        }) => {
            assert!(message.contains("wrong user name or password"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let remote = Remote::connect(&cfg(&server, "wrong")).unwrap();
    let e = remote.check_login().unwrap_err();
    assert!(matches!(e, ClientError::Auth { .. }));
    assert!(e.to_string().contains("wrong user name or password"), "{e}");
    assert!(e.to_string().contains(&server.addr.to_string()), "{e}");

    // A download that does not match its hash is reported, never passed off as good.
    let good = Remote::connect(&cfg(&server, "pw")).unwrap();
    HttpUploader::new(&good)
        .upload(&p("corrupt/x"), &file, &sha, 1)
        .unwrap();
    let e = good
        .fetch(&p("corrupt/x"), &sha, &mut Vec::new())
        .unwrap_err();
    assert!(matches!(e, ClientError::HashMismatch { .. }), "{e}");
}

#[test]
fn unreachable_server_is_retryable_and_says_where() {
    // A port nobody listens on: bind, note it, close it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = ConnectConfig::new(
        &format!("http://{addr}"),
        UserName::parse("asdf").unwrap(),
        "pw".into(),
    );
    let remote = Remote::connect(&c).unwrap();
    let e = remote.health().unwrap_err();
    assert!(e.is_transient());
    let text = e.to_string();
    assert!(
        text.contains(&addr.to_string()) && text.contains("cannot reach"),
        "{text}"
    );
    let up = HttpUploader::new(&remote);
    assert!(matches!(
        up.exists(&p("a"), &Digest::of(b"")),
        Err(UploadError {
            class: ErrorClass::Transient,
            ..
        })
    ));
}

#[test]
fn spool_over_http() {
    let server = serve();
    let remote = Remote::connect(&cfg(&server, "pw")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(
        &dir.path().join("spool"),
        Arc::new(HttpUploader::new(&remote)),
        SpoolOptions::default(),
    )
    .unwrap();
    let src = dir.path().join("src");
    for i in 0..20 {
        std::fs::write(&src, format!("version {i}")).unwrap();
        spool.capture(&p("Documents/essay.txt"), &src).unwrap();
    }
    assert!(spool.wait_idle(std::time::Duration::from_secs(60)));
    let versions = remote.versions(&p("Documents/essay.txt")).unwrap();
    let want: Vec<Digest> = (0..20)
        .map(|i| Digest::of(format!("version {i}").as_bytes()))
        .collect();
    assert_eq!(versions.iter().map(|v| v.sha256).collect::<Vec<_>>(), want);
    assert_eq!(spool.status().server_reachable, Some(true));
}
