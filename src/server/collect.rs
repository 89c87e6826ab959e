//! Collecting work for grading (teachers only): `GET /api/v1/users` lists the class,
//! `GET /api/v1/collect` finds, for each student, every file matching a glob and picks
//! the newest version the server stored strictly before a deadline.
//!
//! The answer streams as JSON lines, one per file or missing student, then one `end`
//! line: memory stays bounded for any class size, and a client that does not see the
//! `end` line knows the answer was cut off (rather than taking absent students for
//! missing ones). Fairness: only `stored_at`, the server's clock, decides on-time.

use std::io;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header, request::Parts};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::AppState;
use super::auth::authenticate;
use super::error::ApiError;
use super::glob::Glob;
use super::zip::{self, ZipPlan, ZipSource};
use crate::api::{
    CollectEnd, CollectEntry, CollectLine, CollectStatus, MANIFEST_HEADER, UserEntry, manifest_row,
};
use crate::names::{RelPath, UserName};
use crate::store::{Store, StoreError, VersionInfo};
use crate::users::{Role, User, UserDb};

/// What to collect, from the query string.
#[derive(Debug, Clone)]
pub struct CollectRequest {
    pub pattern: Glob,
    /// Only versions stored strictly before this count as on time.
    pub before: Option<DateTime<Utc>>,
    pub students: Vec<UserName>,
    /// Whether late-only files go into a zip too.
    pub include_late: bool,
}

#[derive(Debug, Deserialize)]
struct RawQuery {
    pattern: Option<String>,
    before: Option<String>,
    students: Option<String>,
    late: Option<String>,
}

/// Signs in and refuses anyone but a teacher.
async fn teacher(state: &AppState, parts: &Parts) -> Result<User, ApiError> {
    let user = authenticate(state, parts).await?;
    if user.role != Role::Teacher {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "only teachers may list users or collect work",
        ));
    }
    Ok(user)
}

/// `GET /api/v1/users`: every user with role and state, sorted by name (teachers only).
pub async fn users(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    teacher(&state, &parts).await?;
    let db = state.users.clone();
    let list = tokio::task::spawn_blocking(move || db.list())
        .await?
        .map_err(|e| ApiError::internal("reading the user database failed", &e))?;
    let entries: Vec<UserEntry> = list
        .into_iter()
        .map(|u| UserEntry {
            name: u.name.to_string(),
            role: u.role,
            disabled: u.disabled,
        })
        .collect();
    Ok(Json(entries).into_response())
}

/// Reads and checks a collect query: a valid pattern, an RFC 3339 deadline, and known
/// students (default: every enabled student). Runs before anything is streamed, so a
/// bad request is a plain 400/404.
pub async fn parse_request(state: &AppState, parts: &Parts) -> Result<CollectRequest, ApiError> {
    let axum::extract::Query(raw) = axum::extract::Query::<RawQuery>::try_from_uri(&parts.uri)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let pattern = raw.pattern.unwrap_or_default();
    let pattern = Glob::parse(&pattern)
        .map_err(|e| ApiError::bad_request(format!("pattern {pattern:?}: {e}")))?;
    let before = match raw.before.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text)
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "before {text:?} is not an RFC 3339 time such as 2024-05-01T14:30:00Z: {e}"
                    ))
                })?
                .with_timezone(&Utc),
        ),
    };
    let include_late = matches!(raw.late.as_deref(), Some("1" | "true" | "yes" | "on"));
    let db = state.users.clone();
    let wanted = raw.students.filter(|s| !s.trim().is_empty());
    let students =
        tokio::task::spawn_blocking(move || choose_students(&db, wanted.as_deref())).await??;
    Ok(CollectRequest {
        pattern,
        before,
        students,
        include_late,
    })
}

fn choose_students(db: &UserDb, wanted: Option<&str>) -> Result<Vec<UserName>, ApiError> {
    let all = db
        .list()
        .map_err(|e| ApiError::internal("reading the user database failed", &e))?;
    let Some(wanted) = wanted else {
        return Ok(all
            .into_iter()
            .filter(|u| u.role == Role::Student && !u.disabled)
            .map(|u| u.name)
            .collect());
    };
    let mut out: Vec<UserName> = Vec::new();
    for name in wanted.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let name = UserName::parse(name)?;
        if !all.iter().any(|u| u.name == name) {
            return Err(ApiError::not_found(format!(
                "there is no user named {name}"
            )));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// `GET /api/v1/collect?pattern=GLOB[&before=RFC3339][&students=a,b]`: JSON lines.
pub async fn collect(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    teacher(&state, &parts).await?;
    let request = parse_request(&state, &parts).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(16);
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let send = |line: &CollectLine| -> bool {
            let mut bytes = serde_json::to_vec(line).unwrap_or_default();
            bytes.push(b'\n');
            tx.blocking_send(Ok(Bytes::from(bytes))).is_ok()
        };
        let result = walk(store.as_ref(), &request, &mut |entry| {
            if send(&CollectLine::Entry(entry)) {
                Ok(())
            } else {
                Err(Stop::ClientGone)
            }
        });
        match result {
            Ok(end) => {
                send(&CollectLine::End { end });
            }
            Err(Stop::ClientGone | Stop::TooMany) => {}
            Err(Stop::Store(e)) => {
                tracing::error!(error = %e, "collecting failed part-way");
                send(&CollectLine::Error {
                    error:
                        "the server could not read its storage; the error is in the server's log"
                            .into(),
                });
            }
        }
    });
    Ok(streamed(rx, "application/x-ndjson; charset=utf-8"))
}

/// A response whose body is what a blocking producer sends into `rx`; an `Err` item
/// ends it early, so the client sees a cut-off answer rather than a complete one.
fn streamed(
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    content_type: &'static str,
) -> Response {
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /api/v1/collect.zip?…` (same query as `collect`, plus `late=1` to include
/// late-only files): `manifest.csv` and every collected version as `<user>/<path>`.
pub async fn collect_zip(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    teacher(&state, &parts).await?;
    let request = parse_request(&state, &parts).await?;
    let store = state.store.clone();
    // The whole listing first (bounded by the zip's entry limit), so that a collection
    // too large for one zip is a clean 413 rather than a broken download.
    let plan = tokio::task::spawn_blocking(move || plan_zip(store.as_ref(), &request)).await??;
    let size = plan.size();
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter::new(tx.clone());
        if let Err(e) = plan.write(store.as_ref(), &mut out) {
            if out.connected {
                tracing::error!(error = %e, "writing a collection zip failed part-way");
            }
            // Ends the response with an error, so the client sees a cut-off download.
            let _ = tx.blocking_send(Err(e));
        }
    });
    let mut response = streamed(rx, "application/zip");
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"collection.zip\""),
    );
    Ok(response)
}

fn plan_zip(store: &dyn Store, request: &CollectRequest) -> Result<ZipPlan, ApiError> {
    let mut manifest = MANIFEST_HEADER.as_bytes().to_vec();
    let mut sources = Vec::new();
    let mut entries = 0usize;
    let result = walk(store, request, &mut |entry| {
        entries += 1;
        if entries > zip::MAX_ENTRIES {
            return Err(Stop::TooMany);
        }
        manifest.extend_from_slice(manifest_row(&entry).as_bytes());
        let wanted = match entry.status {
            CollectStatus::OnTime => true,
            CollectStatus::LateOnly => request.include_late,
            CollectStatus::Missing => false,
        };
        if let (true, Some(path), Some(version)) = (wanted, &entry.path, entry.version) {
            let user = UserName::parse(&entry.user).map_err(|e| Stop::Store(e.into()))?;
            let path = RelPath::parse(path).map_err(|e| Stop::Store(e.into()))?;
            sources.push(ZipSource {
                user,
                path,
                version,
            });
        }
        Ok(())
    });
    match result {
        Ok(_) => {}
        Err(Stop::TooMany | Stop::ClientGone) => {
            return Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                zip::ZipTooLarge::Entries(entries).to_string(),
            ));
        }
        Err(Stop::Store(e)) => return Err(e.into()),
    }
    ZipPlan::new(manifest, Utc::now(), sources)
        .map_err(|e| ApiError::new(axum::http::StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))
}

/// Hands what is written to the response body in chunks; fails once the client left.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    connected: bool,
}

impl ChannelWriter {
    const CHUNK: usize = 256 * 1024;

    fn new(tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(Self::CHUNK),
            connected: true,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(Self::CHUNK));
        if self.tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
            self.connected = false;
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            ));
        }
        Ok(())
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(Self::CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Why a walk stopped early.
#[derive(Debug)]
pub enum Stop {
    ClientGone,
    /// More entries than the answer can hold.
    TooMany,
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(e)
    }
}

/// Walks every chosen student's namespace depth first (folders in name order, files
/// before sub-folders), skipping folders the pattern cannot reach, and hands `emit`
/// one entry per matching file, or one `missing` entry per student without any.
pub fn walk(
    store: &dyn Store,
    request: &CollectRequest,
    emit: &mut dyn FnMut(CollectEntry) -> Result<(), Stop>,
) -> Result<CollectEnd, Stop> {
    let mut files = 0;
    for student in &request.students {
        let found = walk_one(store, student, request, emit)?;
        if found == 0 {
            emit(CollectEntry {
                user: student.to_string(),
                status: CollectStatus::Missing,
                path: None,
                version: None,
            })?;
        }
        files += found;
    }
    Ok(CollectEnd {
        students: request.students.len() as u64,
        files,
    })
}

fn walk_one(
    store: &dyn Store,
    student: &UserName,
    request: &CollectRequest,
    emit: &mut dyn FnMut(CollectEntry) -> Result<(), Stop>,
) -> Result<u64, Stop> {
    let mut found = 0;
    let mut stack: Vec<Option<RelPath>> = vec![None];
    while let Some(dir) = stack.pop() {
        let Some(mut tree) = store.tree(student, dir.as_ref())? else {
            continue;
        };
        tree.files.sort_by(|a, b| a.name.cmp(&b.name));
        tree.dirs.sort();
        let child = |name: &str| match &dir {
            Some(d) => d.join(name),
            None => RelPath::parse(name),
        };
        for file in &tree.files {
            let Ok(path) = child(&file.name) else {
                continue;
            };
            if !request.pattern.matches(path.as_str()) {
                continue;
            }
            let (status, version) = choose(store, student, &path, &file.latest, request.before)?;
            emit(CollectEntry {
                user: student.to_string(),
                status,
                path: Some(path.to_string()),
                version: Some(version),
            })?;
            found += 1;
        }
        // Reversed onto the stack, so folders come off it in name order.
        for name in tree.dirs.iter().rev() {
            let Ok(path) = child(name) else { continue };
            if request.pattern.may_match_inside(path.as_str()) {
                stack.push(Some(path));
            }
        }
    }
    Ok(found)
}

/// The version to collect: the newest stored strictly before `before` (on time), else
/// the newest of all (late only).
fn choose(
    store: &dyn Store,
    student: &UserName,
    path: &RelPath,
    latest: &VersionInfo,
    before: Option<DateTime<Utc>>,
) -> Result<(CollectStatus, VersionInfo), StoreError> {
    let Some(before) = before else {
        return Ok((CollectStatus::OnTime, latest.clone()));
    };
    if latest.stored_at < before {
        return Ok((CollectStatus::OnTime, latest.clone()));
    }
    let versions = store.versions(student, path)?;
    Ok(match versions.iter().rev().find(|v| v.stored_at < before) {
        Some(v) => (CollectStatus::OnTime, v.clone()),
        None => (
            CollectStatus::LateOnly,
            versions.last().cloned().unwrap_or_else(|| latest.clone()),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::csv_field;
    use crate::store::{Digest, MemStore};

    fn put(store: &MemStore, user: &str, path: &str, body: &[u8]) -> VersionInfo {
        let u = UserName::parse(user).unwrap();
        let p = RelPath::parse(path).unwrap();
        store
            .put(&u, &p, &mut &body[..], u64::MAX, None)
            .unwrap()
            .version
    }

    fn request(pattern: &str, before: Option<DateTime<Utc>>, students: &[&str]) -> CollectRequest {
        CollectRequest {
            pattern: Glob::parse(pattern).unwrap(),
            before,
            students: students
                .iter()
                .map(|s| UserName::parse(s).unwrap())
                .collect(),
            include_late: false,
        }
    }

    fn run(store: &MemStore, req: &CollectRequest) -> (Vec<CollectEntry>, CollectEnd) {
        let mut out = Vec::new();
        let end = walk(store, req, &mut |e| {
            out.push(e);
            Ok(())
        })
        .unwrap();
        (out, end)
    }

    #[test]
    fn picks_by_deadline_and_reports_missing() {
        use crate::store::Clock;
        let clock = crate::store::ManualClock::starting_at(Utc::now());
        let store = MemStore::with_clock(clock.clone());
        let v1 = put(&store, "alice", "Docs/essay.txt", b"draft");
        clock.advance(chrono::Duration::seconds(1));
        // "Strictly before": a version stored at the deadline itself is late.
        let deadline = clock.now();
        let v2 = put(&store, "alice", "Docs/essay.txt", b"final");
        let late = put(&store, "bob", "Docs/essay.txt", b"late");
        put(&store, "bob", "Docs/other.txt", b"x");
        put(&store, "carol", "Pictures/essay.txt", b"wrong folder");

        let req = request("docs/essay*", Some(deadline), &["alice", "bob", "carol"]);
        let (entries, end) = run(&store, &req);
        assert_eq!(
            end,
            CollectEnd {
                students: 3,
                files: 2
            }
        );
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].status, CollectStatus::OnTime);
        assert_eq!(entries[0].version.as_ref(), Some(&v1));
        assert_eq!(entries[1].user, "bob");
        assert_eq!(entries[1].status, CollectStatus::LateOnly);
        assert_eq!(entries[1].version.as_ref(), Some(&late));
        assert_eq!(entries[2].user, "carol");
        assert_eq!(entries[2].status, CollectStatus::Missing);

        let (entries, _) = run(&store, &request("**/essay.txt", None, &["alice"]));
        assert_eq!(
            entries[0].version.as_ref(),
            Some(&v2),
            "no deadline: newest"
        );
    }

    #[test]
    fn walk_order_and_pruning() {
        let store = MemStore::new();
        for p in ["b/x.py", "a/z.py", "a/y.txt", "a/sub/w.py", "top.py"] {
            put(&store, "s", p, p.as_bytes());
        }
        let (entries, _) = run(&store, &request("**/*.py", None, &["s"]));
        let paths: Vec<_> = entries.iter().map(|e| e.path.clone().unwrap()).collect();
        assert_eq!(paths, ["top.py", "a/z.py", "a/sub/w.py", "b/x.py"]);
    }

    #[test]
    fn lines_round_trip() {
        let v = VersionInfo {
            sha256: Digest::of(b"x"),
            size: 1,
            stored_at: Utc::now(),
        };
        for line in [
            CollectLine::Entry(CollectEntry {
                user: "a".into(),
                status: CollectStatus::OnTime,
                path: Some("p".into()),
                version: Some(v),
            }),
            CollectLine::Entry(CollectEntry {
                user: "b".into(),
                status: CollectStatus::Missing,
                path: None,
                version: None,
            }),
            CollectLine::End {
                end: CollectEnd {
                    students: 2,
                    files: 1,
                },
            },
            CollectLine::Error {
                error: "oops".into(),
            },
        ] {
            let text = serde_json::to_string(&line).unwrap();
            assert_eq!(serde_json::from_str::<CollectLine>(&text).unwrap(), line);
        }
        let missing = r#"{"user":"b","status":"missing"}"#;
        assert!(matches!(
            serde_json::from_str::<CollectLine>(missing).unwrap(),
            CollectLine::Entry(_)
        ));
    }

    #[test]
    fn csv() {
        assert_eq!(csv_field("plain name.docx"), "plain name.docx");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\".txt"), "\"say \"\"hi\"\".txt\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("@x,y"), "\"'@x,y\"");
        assert_eq!(csv_field(" lead"), "\" lead\"");
        let row = manifest_row(&CollectEntry {
            user: "carol".into(),
            status: CollectStatus::Missing,
            path: None,
            version: None,
        });
        assert_eq!(row, "carol,,,,,missing\r\n");
    }
}
