//! The HTTP API in-process: table-driven request sequences against the real router over
//! a real `FsStore` in a temp folder, so "nothing was written" is checked on disk.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine as _;
use ects::server::{AppState, Limits, router};
use ects::store::FsStore;
use ects::users::{Role, UserDb};
use serde_json::Value;
use tower::ServiceExt as _;

use support::{sha256_hex, snapshot, stored_versions, temp_dir, temp_files};

const ALICE: (&str, &str) = ("alice", "alice-pw");
const BOB: (&str, &str) = ("bob", "bob-pw");
const TEACH: (&str, &str) = ("teach", "teach-pw");
const CAROL: (&str, &str) = ("carol", "carol-pw"); // disabled

/// A server's state over a fresh data folder holding the users above.
struct Api {
    router: Router,
    data: tempfile::TempDir,
}

/// users.toml with every test user, hashed once (argon2 is slow in debug builds).
fn users_template() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = temp_dir();
        for ((name, pw), role) in [
            (ALICE, Role::Student),
            (BOB, Role::Student),
            (TEACH, Role::Teacher),
            (CAROL, Role::Student),
        ] {
            support::add_user(dir.path(), name, role, pw);
        }
        let db = UserDb::open(dir.path()).unwrap();
        db.disable(&ects::names::UserName::parse(CAROL.0).unwrap())
            .unwrap();
        dir
    })
    .path()
}

impl Api {
    fn new() -> Self {
        Self::with(4 << 30, None, false)
    }

    fn with(max_file_size: u64, quota: Option<u64>, allow_registration: bool) -> Self {
        let data = temp_dir();
        std::fs::copy(
            users_template().join("users.toml"),
            data.path().join("users.toml"),
        )
        .unwrap();
        let store = FsStore::open(data.path()).unwrap().with_quota(quota);
        let state = AppState {
            store: Arc::new(store),
            users: Arc::new(UserDb::open(data.path()).unwrap()),
            limits: Limits {
                max_file_size,
                quota,
                ..Limits::default()
            },
            allow_registration,
            tls: false,
            data: None,
            stopping: Default::default(),
        };
        Self {
            router: router(state),
            data,
        }
    }

    fn data(&self) -> &Path {
        self.data.path()
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    /// Errors are JSON with a non-empty "error" for a person.
    fn assert_error(&self) {
        let json = self.json();
        let msg = json["error"].as_str().unwrap_or_default();
        assert!(!msg.is_empty(), "no error message in {json}");
    }
}

fn basic((user, pw): (&str, &str)) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

/// A request builder: method, raw URI, optional credentials.
fn req(method: &str, uri: &str, who: Option<(&str, &str)>) -> axum::http::request::Builder {
    let b = Request::builder().method(method).uri(uri);
    match who {
        Some(who) => b.header(header::AUTHORIZATION, basic(who)),
        None => b,
    }
}

fn get(uri: &str, who: (&str, &str)) -> Request<Body> {
    req("GET", uri, Some(who)).body(Body::empty()).unwrap()
}

/// `PUT` with the right hash and a Content-Length.
fn put(uri: &str, who: (&str, &str), bytes: &[u8]) -> Request<Body> {
    req("PUT", uri, Some(who))
        .header("x-content-sha256", sha256_hex(bytes))
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(Body::from(bytes.to_vec()))
        .unwrap()
}

/// `PUT` with no Content-Length: the body arrives as a stream of 100-byte chunks.
fn put_chunked(uri: &str, who: (&str, &str), bytes: &[u8]) -> Request<Body> {
    let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(100)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    req("PUT", uri, Some(who))
        .header("x-content-sha256", sha256_hex(bytes))
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap()
}

/// A body that notes whether anyone read it: refusals must come before reading.
fn watched_body(bytes: &[u8]) -> (Body, Arc<AtomicBool>) {
    let polled = Arc::new(AtomicBool::new(false));
    let flag = polled.clone();
    let data = Bytes::copy_from_slice(bytes);
    let stream = futures_util::stream::once(async move {
        flag.store(true, Ordering::SeqCst);
        Ok::<_, std::io::Error>(data)
    });
    (Body::from_stream(stream), polled)
}

fn f(path: &str) -> String {
    format!("/api/v1/files/{path}")
}

// ---------------------------------------------------------------------------------

#[tokio::test]
async fn upload_read_list_sequence() {
    let api = Api::new();
    let v1 = b"first version".as_slice();
    let v2 = b"second version, longer".as_slice();
    let (h1, h2) = (sha256_hex(v1), sha256_hex(v2));
    let url = f("alice/Documents/essay.txt");

    // (request, status, created) in order.
    let steps: Vec<(&str, Request<Body>, StatusCode, Option<bool>)> = vec![
        ("new", put(&url, ALICE, v1), StatusCode::CREATED, Some(true)),
        (
            "same again",
            put(&url, ALICE, v1),
            StatusCode::OK,
            Some(false),
        ),
        (
            "second",
            put(&url, ALICE, v2),
            StatusCode::CREATED,
            Some(true),
        ),
        (
            "chunked repeat",
            put_chunked(&url, ALICE, v2),
            StatusCode::OK,
            Some(false),
        ),
    ];
    let mut first_stored_at = None;
    for (name, request, want, created) in steps {
        let r = api.send(request).await;
        assert_eq!(r.status, want, "{name}: {:?}", r.body);
        let json = r.json();
        assert_eq!(json["created"].as_bool(), created, "{name}");
        if name == "new" {
            assert_eq!(json["sha256"], h1.as_str());
            assert_eq!(json["size"], v1.len());
            first_stored_at = Some(json["stored_at"].clone());
        }
        if name == "same again" {
            assert_eq!(Some(json["stored_at"].clone()), first_stored_at);
        }
    }

    // Newest version, no hash: no-cache and the hash in a header.
    let r = api.send(get(&url, ALICE)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], v2);
    assert_eq!(r.header("x-content-sha256"), h2);
    assert_eq!(r.header("cache-control"), "no-cache");

    // One pinned version: immutable caching and an ETag.
    let r = api.send(get(&format!("{url}?sha256={h1}"), ALICE)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], v1);
    assert_eq!(r.header("etag"), format!("\"{h1}\""));
    assert!(r.header("cache-control").contains("immutable"));
    assert_eq!(r.header("content-length"), v1.len().to_string());

    let missing = sha256_hex(b"never stored");
    let head = |q: &str| {
        req("HEAD", &format!("{url}?sha256={q}"), Some(ALICE))
            .body(Body::empty())
            .unwrap()
    };
    let cases = [
        (head(&h1), StatusCode::OK),
        (head(&missing), StatusCode::NOT_FOUND),
        (head("nothex"), StatusCode::BAD_REQUEST),
        (
            get(&format!("{url}?sha256={missing}"), ALICE),
            StatusCode::NOT_FOUND,
        ),
        (
            get(&f("alice/Documents/none.txt"), ALICE),
            StatusCode::NOT_FOUND,
        ),
        (
            get("/api/v1/versions/alice/Documents/none.txt", ALICE),
            StatusCode::NOT_FOUND,
        ),
        (get("/api/v1/tree/alice/nope", ALICE), StatusCode::NOT_FOUND),
        (
            get("/api/v1/tree/alice/Documents/essay.txt", ALICE),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (i, (request, want)) in cases.into_iter().enumerate() {
        let r = api.send(request).await;
        assert_eq!(r.status, want, "case {i}");
        if want == StatusCode::OK {
            assert!(r.body.is_empty(), "HEAD has no body");
            assert_eq!(r.header("content-length"), v1.len().to_string());
        }
    }

    // Versions: oldest first.
    let r = api
        .send(get("/api/v1/versions/alice/Documents/essay.txt", ALICE))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json();
    let hashes: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["sha256"].as_str().unwrap())
        .collect();
    assert_eq!(hashes, [h1.as_str(), h2.as_str()]);
    assert_eq!(list[1]["size"], v2.len());

    // Tree: the root (with and without the trailing slash), then the folder.
    for root in ["/api/v1/tree/alice", "/api/v1/tree/alice/"] {
        let r = api.send(get(root, ALICE)).await;
        assert_eq!(r.status, StatusCode::OK, "{root}");
        assert_eq!(r.json()["dirs"], serde_json::json!(["Documents"]));
    }
    let r = api.send(get("/api/v1/tree/alice/Documents", ALICE)).await;
    assert_eq!(r.status, StatusCode::OK);
    let tree = r.json();
    assert_eq!(tree["dirs"], serde_json::json!([]));
    assert_eq!(tree["files"][0]["name"], "essay.txt");
    assert_eq!(tree["files"][0]["versions"], 2);
    assert_eq!(tree["files"][0]["latest"]["sha256"], h2.as_str());

    // Exactly the two versions on disk, at the SPEC's layout; nothing in flight.
    let mut want = vec![
        format!("alice/Documents/essay.txt/{h1}.txt"),
        format!("alice/Documents/essay.txt/{h2}.txt"),
    ];
    want.sort();
    assert_eq!(stored_versions(api.data()), want);
    assert!(temp_files(api.data()).is_empty());
}

#[tokio::test]
async fn bad_hashes_and_headers_store_nothing() {
    let api = Api::new();
    let url = f("alice/a.txt");
    let before = snapshot(api.data());
    let body = b"content".as_slice();
    let with_header = |value: Option<&str>| {
        let b = req("PUT", &url, Some(ALICE)).header(header::CONTENT_LENGTH, body.len());
        let b = match value {
            Some(v) => b.header("x-content-sha256", v),
            None => b,
        };
        b.body(Body::from(body.to_vec())).unwrap()
    };
    let other = sha256_hex(b"other content");
    let cases = [
        (
            "wrong hash",
            with_header(Some(&other)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("no hash", with_header(None), StatusCode::BAD_REQUEST),
        (
            "short hash",
            with_header(Some("abc")),
            StatusCode::BAD_REQUEST,
        ),
        (
            "not hex",
            with_header(Some(&"z".repeat(64))),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad length",
            req("PUT", &url, Some(ALICE))
                .header("x-content-sha256", sha256_hex(body))
                .header(header::CONTENT_LENGTH, "lots")
                .body(Body::from(body.to_vec()))
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (name, request, want) in cases {
        let r = api.send(request).await;
        assert_eq!(r.status, want, "{name}");
        r.assert_error();
        assert_eq!(snapshot(api.data()), before, "{name} wrote something");
    }
    // A body cut off by the client: an error, and nothing kept.
    let stream = futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"half of it")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ]);
    let request = req("PUT", &url, Some(ALICE))
        .header("x-content-sha256", sha256_hex(b"half of it and more"))
        .body(Body::from_stream(stream))
        .unwrap();
    let r = api.send(request).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        snapshot(api.data()),
        before,
        "a cut-off upload left something"
    );
}

#[tokio::test]
async fn nothing_is_deleted_or_overwritten() {
    let api = Api::new();
    let r = api.send(put(&f("alice/keep.txt"), ALICE, b"keep me")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let before = snapshot(api.data());
    let cases = [
        ("DELETE", f("alice/keep.txt"), "GET, HEAD, PUT"),
        ("PATCH", f("alice/keep.txt"), "GET, HEAD, PUT"),
        ("POST", f("alice/keep.txt"), "GET, HEAD, PUT"),
        (
            "DELETE",
            "/api/v1/versions/alice/keep.txt".into(),
            "GET, HEAD",
        ),
        ("PUT", "/api/v1/versions/alice/keep.txt".into(), "GET, HEAD"),
        ("DELETE", "/api/v1/tree/alice".into(), "GET, HEAD"),
        ("POST", "/api/v1/tree/alice/x".into(), "GET, HEAD"),
        ("DELETE", "/upload".into(), "POST"),
        ("PUT", "/upload".into(), "POST"),
    ];
    for (method, uri, allow) in cases {
        for who in [None, Some(ALICE)] {
            let r = api
                .send(req(method, &uri, who).body(Body::from("x")).unwrap())
                .await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            assert_eq!(r.header("allow"), allow, "{method} {uri}");
            r.assert_error();
        }
    }
    assert_eq!(snapshot(api.data()), before);
    let r = api.send(get(&f("alice/keep.txt"), ALICE)).await;
    assert_eq!(&r.body[..], b"keep me");
}

#[tokio::test]
async fn namespaces_are_enforced_before_the_body_is_read() {
    let api = Api::new();
    let r = api
        .send(put(&f("alice/Documents/a.txt"), ALICE, b"alice's"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let hash = sha256_hex(b"alice's");
    let before = snapshot(api.data());

    let reads = [
        f("alice/Documents/a.txt"),
        format!("{}?sha256={hash}", f("alice/Documents/a.txt")),
        "/api/v1/versions/alice/Documents/a.txt".into(),
        "/api/v1/tree/alice".into(),
        "/api/v1/tree/alice/Documents".into(),
    ];
    for uri in &reads {
        for method in ["GET", "HEAD"] {
            let r = api
                .send(req(method, uri, Some(BOB)).body(Body::empty()).unwrap())
                .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "bob {method} {uri}");
            let r = api
                .send(req(method, uri, Some(TEACH)).body(Body::empty()).unwrap())
                .await;
            assert_eq!(r.status, StatusCode::OK, "teacher {method} {uri}");
        }
    }
    // A teacher may not see into a namespace nobody has; a student gets 403 either way.
    let r = api.send(get("/api/v1/tree/nobody", TEACH)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api.send(get("/api/v1/tree/nobody", BOB)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Writes into someone else's namespace: refused without reading a byte.
    for (who, uri) in [
        (BOB, f("alice/Documents/a.txt")),
        (BOB, f("alice/new.txt")),
        (TEACH, f("alice/from-teacher.txt")),
        (ALICE, f("teach/x.txt")),
    ] {
        let (body, polled) = watched_body(b"intruder");
        let request = req("PUT", &uri, Some(who))
            .header("x-content-sha256", sha256_hex(b"intruder"))
            .body(body)
            .unwrap();
        let r = api.send(request).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{} PUT {uri}", who.0);
        r.assert_error();
        assert!(
            !polled.load(Ordering::SeqCst),
            "the body was read before 403"
        );
    }
    assert_eq!(snapshot(api.data()), before);

    // The teacher writes their own namespace.
    let r = api.send(put(&f("teach/notes.txt"), TEACH, b"mine")).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn credentials_are_checked() {
    let api = Api::new();
    let before = snapshot(api.data());
    let url = f("alice/a.txt");
    let with_auth = |value: Option<&str>| {
        let (body, polled) = watched_body(b"x");
        let mut b = Request::builder()
            .method("PUT")
            .uri(&url)
            .header("x-content-sha256", sha256_hex(b"x"));
        if let Some(v) = value {
            b = b.header(header::AUTHORIZATION, v);
        }
        (b.body(body).unwrap(), polled)
    };
    let unknown = basic(("mallory", "alice-pw"));
    let wrong = basic(("alice", "bob-pw"));
    let disabled = basic(CAROL);
    let empty = basic(("alice", ""));
    let bad_name = basic(("../alice", "alice-pw"));
    let cases = [
        ("none", None),
        ("unknown user", Some(unknown.as_str())),
        ("wrong password", Some(wrong.as_str())),
        ("disabled", Some(disabled.as_str())),
        ("empty password", Some(empty.as_str())),
        ("not base64", Some("Basic ***")),
        ("other scheme", Some("Bearer abc")),
        ("bad name", Some(bad_name.as_str())),
    ];
    let mut messages = Vec::new();
    for (name, value) in cases {
        let (request, polled) = with_auth(value);
        let r = api.send(request).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(
            r.header("www-authenticate"),
            "Basic realm=\"ects\"",
            "{name}"
        );
        r.assert_error();
        assert!(
            !polled.load(Ordering::SeqCst),
            "{name}: body read before 401"
        );
        messages.push(r.json()["error"].clone());
    }
    // Nobody learns whether a name exists.
    assert_eq!(messages[1], messages[2]);
    assert_eq!(snapshot(api.data()), before);

    // Health needs no sign-in.
    let r = api
        .send(
            req("GET", "/api/v1/health", None)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(r.json()["version"], env!("CARGO_PKG_VERSION"));
    // Unknown addresses are JSON 404s.
    let r = api.send(get("/api/v2/anything", ALICE)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.assert_error();
}

#[tokio::test]
async fn size_limit_is_enforced_from_the_header_and_while_streaming() {
    let api = Api::with(1000, None, false);
    let before = snapshot(api.data());
    let big = vec![7u8; 1001];
    let (announced, polled) = watched_body(&big);
    let cases = [
        (
            "Content-Length over the limit",
            req("PUT", &f("alice/big.bin"), Some(ALICE))
                .header("x-content-sha256", sha256_hex(&big))
                .header(header::CONTENT_LENGTH, big.len())
                .body(announced)
                .unwrap(),
        ),
        (
            "chunked over the limit",
            put_chunked(&f("alice/big.bin"), ALICE, &big),
        ),
        (
            "Content-Length that lies",
            req("PUT", &f("alice/big.bin"), Some(ALICE))
                .header("x-content-sha256", sha256_hex(&big))
                .header(header::CONTENT_LENGTH, 10)
                .body(Body::from(big.clone()))
                .unwrap(),
        ),
    ];
    for (name, request) in cases {
        let r = api.send(request).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{name}");
        r.assert_error();
        assert_eq!(snapshot(api.data()), before, "{name} left something");
    }
    assert!(
        !polled.load(Ordering::SeqCst),
        "413 from Content-Length read the body"
    );
    // Exactly at the limit is fine.
    let r = api.send(put(&f("alice/ok.bin"), ALICE, &big[..1000])).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn quota_gives_507_and_repeats_still_succeed() {
    let api = Api::with(1000, Some(1500), false);
    let a = vec![1u8; 1000];
    let r = api.send(put(&f("alice/a.bin"), ALICE, &a)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let before = snapshot(api.data());
    let b = vec![2u8; 600];
    for (name, request) in [
        ("announced", put(&f("alice/b.bin"), ALICE, &b)),
        ("chunked", put_chunked(&f("alice/b.bin"), ALICE, &b)),
    ] {
        let r = api.send(request).await;
        assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE, "{name}");
        r.assert_error();
        assert_eq!(snapshot(api.data()), before, "{name} left something");
    }
    // Content already stored costs nothing: a repeat succeeds even over quota.
    let r = api.send(put(&f("alice/a.bin"), ALICE, &a)).await;
    assert_eq!(r.status, StatusCode::OK);
    // Other users have their own quota.
    let r = api.send(put(&f("bob/b.bin"), BOB, &b)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Filling exactly up to the quota is allowed, one byte more is not.
    let r = api.send(put(&f("alice/c.bin"), ALICE, &[3u8; 500])).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = api.send(put(&f("alice/d.bin"), ALICE, b"x")).await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE);
    // The size limit still answers 413 when it, not the quota, is what binds.
    let r = api.send(put(&f("bob/big.bin"), BOB, &[0u8; 1001])).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn hostile_paths_are_refused_with_nothing_written() {
    let api = Api::new();
    // Something stored first, so that the data folder is not trivially empty.
    let r = api
        .send(put(&f("alice/Documents/a.txt"), ALICE, b"a"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let before = snapshot(api.data());
    let long_component = "x".repeat(256);
    let long_path = vec!["y"; 2100].join("/");
    let hostile: Vec<String> = vec![
        "..".into(),
        "../bob/x.txt".into(),
        "Documents/../../bob/x.txt".into(),
        "%2e%2e".into(),
        "%2E%2E/x".into(),
        "%2e%2e/%2e%2e/etc/passwd".into(),
        "..%2Fbob%2Fx.txt".into(),
        "a%2Fb".into(),
        "/abs".into(),
        "/etc/passwd".into(),
        "a%00b".into(),
        "a%00".into(),
        "a%0Ab".into(),
        "a%0D%0Ab".into(),
        "a%1Bb".into(),
        "a%7Fb".into(),
        "a%C2%85b".into(),
        "a/./b".into(),
        "./a".into(),
        "a/%2E/b".into(),
        "a//b".into(),
        "a/".into(),
        "".into(),
        "a%5Cb".into(),
        "..%5C..%5Cx".into(),
        "%FF%FE".into(),
        long_component,
        long_path,
    ];
    for path in &hostile {
        let url = format!("/api/v1/files/alice/{path}");
        let r = api.send(put(&url, ALICE, b"evil")).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "PUT {path:?}: {:?}",
            r.body
        );
        r.assert_error();
        let r = api.send(get(&url, ALICE)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "GET {path:?}");
        let r = api
            .send(get(&format!("/api/v1/versions/alice/{path}"), ALICE))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "versions {path:?}");
    }
    for dir in ["..", "%2e%2e", "a/../..", "a//b", "a%00", "a%2Fb"] {
        let r = api
            .send(get(&format!("/api/v1/tree/alice/{dir}"), ALICE))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "tree {dir:?}");
    }
    // Hostile owners: a student still cannot reach past their own namespace.
    for owner in [
        "..",
        "%2e%2e",
        ".alice",
        "alice%2F..",
        "al%00ice",
        "a%20b",
        "",
    ] {
        let url = format!("/api/v1/files/{owner}/x.txt");
        let r = api.send(put(&url, ALICE, b"evil")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "owner {owner:?}");
    }
    assert_eq!(snapshot(api.data()), before);
}

#[tokio::test]
async fn accepted_names_round_trip() {
    let api = Api::new();
    let names = [
        (
            "Documents/New%20folder/New%20Microsoft%20Word%20Document%20-%20Copy%20(13).docx",
            "Documents/New folder/New Microsoft Word Document - Copy (13).docx/{h}.docx",
        ),
        (
            "%C3%9Cbung/%E6%97%A5%E6%9C%AC%E8%AA%9E%20%5Bdraft%5D%20%7B1%7D.txt",
            "Übung/日本語 [draft] {1}.txt/{h}.txt",
        ),
        ("a/.bashrc", "a/.bashrc/{h}"),
        ("archive.tar.gz", "archive.tar.gz/{h}.gz"),
        ("...", ".../{h}"),
        ("100%25.txt", "100%.txt/{h}.txt"),
    ];
    for (i, (raw, layout)) in names.iter().enumerate() {
        let body = format!("content {i}");
        let h = sha256_hex(body.as_bytes());
        let url = format!("/api/v1/files/alice/{raw}");
        let r = api.send(put(&url, ALICE, body.as_bytes())).await;
        assert_eq!(r.status, StatusCode::CREATED, "{raw}: {:?}", r.body);
        let want = api
            .data()
            .join("uploads/alice")
            .join(layout.replace("{h}", &h));
        assert!(want.is_file(), "{raw} is not at {}", want.display());
        let r = api.send(get(&url, ALICE)).await;
        assert_eq!(r.body, body.as_bytes(), "{raw}");
    }
}

#[tokio::test]
async fn layout_collisions_are_409() {
    let api = Api::new();
    let cases = [
        ("a/b.txt", StatusCode::CREATED),
        ("a/b.txt/c.txt", StatusCode::CONFLICT),
        ("a", StatusCode::CONFLICT),
        ("a/other.txt", StatusCode::CREATED),
    ];
    for (path, want) in cases {
        let before = snapshot(api.data());
        let r = api
            .send(put(&f(&format!("alice/{path}")), ALICE, path.as_bytes()))
            .await;
        assert_eq!(r.status, want, "{path}");
        if want == StatusCode::CONFLICT {
            r.assert_error();
            assert_eq!(snapshot(api.data()), before, "{path}");
        }
    }
}

#[tokio::test]
async fn ranges_and_conditional_requests() {
    let api = Api::new();
    let body = b"0123456789".as_slice();
    let h = sha256_hex(body);
    let r = api.send(put(&f("alice/digits.txt"), ALICE, body)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let pinned = format!("{}?sha256={h}", f("alice/digits.txt"));
    let newest = f("alice/digits.txt");
    let etag = format!("\"{h}\"");

    // (url, headers, status, body, Content-Range)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        StatusCode,
        &'a [u8],
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            &pinned,
            vec![("range", "bytes=2-5")],
            StatusCode::PARTIAL_CONTENT,
            b"2345",
            Some("bytes 2-5/10"),
        ),
        (
            &pinned,
            vec![("range", "bytes=7-")],
            StatusCode::PARTIAL_CONTENT,
            b"789",
            Some("bytes 7-9/10"),
        ),
        (
            &pinned,
            vec![("range", "bytes=-2")],
            StatusCode::PARTIAL_CONTENT,
            b"89",
            Some("bytes 8-9/10"),
        ),
        (
            &pinned,
            vec![("range", "bytes=5-99")],
            StatusCode::PARTIAL_CONTENT,
            b"56789",
            Some("bytes 5-9/10"),
        ),
        (
            &newest,
            vec![("range", "bytes=0-0")],
            StatusCode::PARTIAL_CONTENT,
            b"0",
            Some("bytes 0-0/10"),
        ),
        (
            &pinned,
            vec![("range", "bytes=10-")],
            StatusCode::RANGE_NOT_SATISFIABLE,
            b"",
            Some("bytes */10"),
        ),
        (
            &pinned,
            vec![("range", "bytes=0-1,4-5")],
            StatusCode::OK,
            body,
            None,
        ),
        (
            &pinned,
            vec![("range", "bytes=2-5"), ("if-range", "\"other\"")],
            StatusCode::OK,
            body,
            None,
        ),
        (
            &pinned,
            vec![("range", "bytes=2-5"), ("if-range", &etag)],
            StatusCode::PARTIAL_CONTENT,
            b"2345",
            Some("bytes 2-5/10"),
        ),
        (
            &pinned,
            vec![("if-none-match", &etag)],
            StatusCode::NOT_MODIFIED,
            b"",
            None,
        ),
        (
            &newest,
            vec![("if-none-match", &etag)],
            StatusCode::NOT_MODIFIED,
            b"",
            None,
        ),
        (
            &pinned,
            vec![("if-none-match", "\"something-else\"")],
            StatusCode::OK,
            body,
            None,
        ),
    ];
    for (i, (url, headers, status, want, content_range)) in cases.into_iter().enumerate() {
        let mut b = req("GET", url, Some(ALICE));
        for (k, v) in &headers {
            b = b.header(*k, *v);
        }
        let r = api.send(b.body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, status, "case {i}: {headers:?}");
        if status == StatusCode::RANGE_NOT_SATISFIABLE {
            r.assert_error();
        } else {
            assert_eq!(&r.body[..], want, "case {i}");
            assert_eq!(r.header("etag"), etag, "case {i}");
        }
        assert_eq!(
            r.headers.get("content-range").map(|v| v.to_str().unwrap()),
            content_range,
            "case {i}"
        );
    }
}

#[tokio::test]
async fn registration_off_and_on() {
    let off = Api::new();
    let newcomer = ("newcomer", "first-pw");
    let r = off.send(put(&f("newcomer/a.txt"), newcomer, b"hi")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        UserDb::open(off.data())
            .unwrap()
            .get("newcomer")
            .unwrap()
            .is_none()
    );

    let on = Api::with(4 << 30, None, true);
    let r = on.send(put(&f("newcomer/a.txt"), newcomer, b"hi")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let user = UserDb::open(on.data())
        .unwrap()
        .get("newcomer")
        .unwrap()
        .unwrap();
    assert_eq!(user.role, Role::Student);
    let cases = [
        // The name is now taken: another password is just wrong.
        (
            put(&f("newcomer/b.txt"), ("newcomer", "other"), b"x"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            put(&f("newcomer/b.txt"), newcomer, b"x"),
            StatusCode::CREATED,
        ),
        // A registered student is a student like any other.
        (get(&f("alice/x"), newcomer), StatusCode::FORBIDDEN),
        // Invalid names cannot be claimed; existing users are unaffected.
        (
            put(&f(".x/a.txt"), (".x", "pw"), b"x"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            put(&f("alice/a.txt"), ("alice", "guess"), b"x"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            put(&f("carol/a.txt"), CAROL, b"x"),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (i, (request, want)) in cases.into_iter().enumerate() {
        let r = on.send(request).await;
        assert_eq!(r.status, want, "case {i}: {:?}", r.body);
    }
    assert!(
        UserDb::open(on.data())
            .unwrap()
            .get(".x")
            .unwrap()
            .is_none()
    );
}

/// A multipart body as the original client sent it.
fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----ectsTestBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, file_name, data) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file_name {
            Some(fname) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{fname}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn legacy(
    who: Option<(&str, &str)>,
    md5: Option<&str>,
    fields: &[(&str, Option<&str>, &[u8])],
) -> Request<Body> {
    let (content_type, body) = multipart(fields);
    let mut b = req("POST", "/upload", who)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len());
    if let Some(md5) = md5 {
        b = b.header("content-md5", md5);
    }
    b.body(Body::from(body)).unwrap()
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(bytes))
}

#[tokio::test]
async fn legacy_upload_as_the_original_client_sent_it() {
    let api = Api::new();
    let doc = b"PK\x03\x04 a word document".as_slice();
    let (md5, h) = (md5_hex(doc), sha256_hex(doc));
    let name = "New Microsoft Word Document - Copy (13).docx";
    let full = format!("Documents/New folder/{name}");
    let cases: Vec<(&str, Request<Body>, &str)> = vec![
        (
            "full path",
            legacy(
                Some(ALICE),
                Some(&md5),
                &[
                    ("upload_file", Some(name), doc),
                    ("path", None, full.as_bytes()),
                ],
            ),
            "Documents/New folder",
        ),
        (
            "folder, path after the file",
            legacy(
                Some(ALICE),
                Some(&md5),
                &[("upload_file", Some(name), doc), ("path", None, b"Other")],
            ),
            "Other",
        ),
        (
            "folder, path first, Windows separators",
            legacy(
                Some(ALICE),
                Some(&md5),
                &[
                    ("path", None, b"Win\\Sub"),
                    ("upload_file", Some(name), doc),
                ],
            ),
            "Win/Sub",
        ),
        (
            "no path",
            legacy(Some(ALICE), Some(&md5), &[("upload_file", Some(name), doc)]),
            "",
        ),
    ];
    for (what, request, folder) in cases {
        let r = api.send(request).await;
        assert_eq!(r.status, StatusCode::OK, "{what}: {:?}", r.body);
        assert_eq!(r.json()["sha256"], h.as_str(), "{what}");
        let mut want = api.data().join("uploads/alice");
        if !folder.is_empty() {
            want.push(folder);
        }
        want.push(format!("{name}/{h}.docx"));
        assert!(want.is_file(), "{what}: not at {}", want.display());
    }
    // The same again: still 200, not created.
    let r = api
        .send(legacy(
            Some(ALICE),
            Some(&md5),
            &[
                ("upload_file", Some(name), doc),
                ("path", None, full.as_bytes()),
            ],
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["created"], false);

    let before = snapshot(api.data());
    let wrong_md5 = md5_hex(b"something else");
    let junk = vec![b'j'; 100_000];
    let refused: Vec<(&str, Request<Body>, StatusCode)> = vec![
        (
            "bad MD5",
            legacy(
                Some(ALICE),
                Some(&wrong_md5),
                &[("upload_file", Some("x.txt"), doc)],
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "no MD5",
            legacy(Some(ALICE), None, &[("upload_file", Some("x.txt"), doc)]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "large extra field",
            legacy(
                Some(ALICE),
                Some(&md5),
                &[("junk", None, &junk), ("upload_file", Some("x.txt"), doc)],
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "no credentials",
            legacy(None, Some(&md5), &[("upload_file", Some("x.txt"), doc)]),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong password",
            legacy(
                Some(("alice", "nope")),
                Some(&md5),
                &[("upload_file", Some("x.txt"), doc)],
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no file",
            legacy(Some(ALICE), Some(&md5), &[("path", None, b"a")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "no file name",
            legacy(Some(ALICE), Some(&md5), &[("upload_file", None, doc)]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "hostile path",
            legacy(
                Some(ALICE),
                Some(&md5),
                &[
                    ("upload_file", Some("x.txt"), doc),
                    ("path", None, b"../../bob"),
                ],
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "absolute path",
            legacy(
                Some(ALICE),
                Some(&md5),
                &[("upload_file", Some("x.txt"), doc), ("path", None, b"/etc")],
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "not multipart",
            req("POST", "/upload", Some(ALICE))
                .header("content-md5", &md5)
                .body(Body::from(doc.to_vec()))
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, request, want) in refused {
        let r = api.send(request).await;
        assert_eq!(r.status, want, "{what}: {:?}", r.body);
        r.assert_error();
        assert_eq!(snapshot(api.data()), before, "{what} left something");
    }
}

#[tokio::test]
async fn legacy_upload_respects_limits() {
    let api = Api::with(1000, None, false);
    let big = vec![9u8; 1001];
    let before = snapshot(api.data());
    let r = api
        .send(legacy(
            Some(ALICE),
            Some(&md5_hex(&big)),
            &[("upload_file", Some("big.bin"), &big)],
        ))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(snapshot(api.data()), before);
}
