//! Roaming on the real server binary (issue 11): deletions are appended events that
//! never hide a version (versions, downloads, tree and collect still see them), and the
//! change feed lists new versions and deletions in order, resumes from a cursor and is
//! woken by another client's upload. Another student can neither delete nor read it.

mod support;

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use ects::api::Changes;
use ects::client::{ClientError, ConnectConfig, Remote};
use ects::names::{RelPath, UserName};
use ects::store::{Digest, EventKind, JournalEvent};
use reqwest::StatusCode;
use serde_json::Value;
use support::{Role, TestServer, encode_path, http_client, put_version, wait_until};

const PW: &str = "a long enough password";
const ESSAY: &str = "Docs/my essay [final].txt";

fn server() -> TestServer {
    TestServer::with_users(
        &[
            ("alice", Role::Student, PW),
            ("bob", Role::Student, PW),
            ("teach", Role::Teacher, PW),
        ],
        &[],
    )
}

fn remote(server: &TestServer, user: &str) -> Remote {
    let cfg = ConnectConfig::new(&server.url, UserName::parse(user).unwrap(), PW.into());
    Remote::connect(&cfg).unwrap()
}

/// The user's journal as the server wrote it on disk.
fn journal(server: &TestServer, user: &str) -> Vec<JournalEvent> {
    let text = std::fs::read_to_string(server.data.join("journal").join(format!("{user}.log")))
        .unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn rel(p: &str) -> RelPath {
    RelPath::parse(p).unwrap()
}

fn post_deletion(
    server: &TestServer,
    as_user: &str,
    owner: &str,
    path: &str,
) -> (StatusCode, Value) {
    let r = http_client()
        .post(server.at(&format!("/api/v1/deletions/{owner}/{}", encode_path(path))))
        .basic_auth(as_user, Some(PW))
        .send()
        .unwrap();
    let status = r.status();
    (status, r.json().unwrap())
}

fn feed(server: &TestServer, as_user: &str, owner: &str, query: &str) -> (StatusCode, Value) {
    let r = http_client()
        .get(server.at(&format!("/api/v1/changes/{owner}{query}")))
        .basic_auth(as_user, Some(PW))
        .send()
        .unwrap();
    let status = r.status();
    (status, r.json().unwrap())
}

#[test]
fn a_deletion_is_an_event_and_every_version_stays() {
    let server = server();
    // Nothing stored yet: 404, and nothing is journaled.
    let (status, body) = post_deletion(&server, "alice", "alice", ESSAY);
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    put_version(&server, "alice", PW, ESSAY, b"draft");
    put_version(&server, "alice", PW, ESSAY, b"final");
    let stored_at: DateTime<Utc> =
        remote(&server, "alice").versions(&rel(ESSAY)).unwrap()[1].stored_at;

    // A deadline after the last save; the deletion comes after the deadline.
    let deadline = stored_at + chrono::Duration::milliseconds(1);
    wait_until("the clock to pass the deadline", || Utc::now() > deadline);

    // Bob cannot delete Alice's file; the teacher cannot either (write is owner only).
    for who in ["bob", "teach"] {
        let (status, body) = post_deletion(&server, who, "alice", ESSAY);
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {body}");
    }
    assert!(
        journal(&server, "alice")
            .iter()
            .all(|e| e.event != EventKind::Delete)
    );

    let (status, body) = post_deletion(&server, "alice", "alice", ESSAY);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let event: JournalEvent = serde_json::from_value(body).unwrap();
    assert_eq!(event.event, EventKind::Delete);
    assert_eq!(event.path, ESSAY);
    assert_eq!(event.sha256, Digest::of(b"final"));
    assert!(event.time > deadline);
    // Again: the same event, 200, no second line.
    let (status, body) = post_deletion(&server, "alice", "alice", ESSAY);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_value::<JournalEvent>(body).unwrap(), event);
    let deletes = journal(&server, "alice")
        .into_iter()
        .filter(|e| e.event == EventKind::Delete)
        .count();
    assert_eq!(deletes, 1);

    // Versions listed and downloadable, the tree shows the file.
    let alice = remote(&server, "alice");
    let versions = alice.versions(&rel(ESSAY)).unwrap();
    assert_eq!(versions.len(), 2);
    for (v, body) in versions.iter().zip([&b"draft"[..], b"final"]) {
        let mut out = Vec::new();
        alice.fetch(&rel(ESSAY), &v.sha256, &mut out).unwrap();
        assert_eq!(out, body);
    }
    let mut out = Vec::new();
    alice.fetch_latest(&rel(ESSAY), &mut out).unwrap();
    assert_eq!(out, b"final");
    let tree = alice.tree(Some(&rel("Docs"))).unwrap().unwrap();
    assert_eq!(tree.files.len(), 1);
    assert_eq!(tree.files[0].versions, 2);

    // Collect with the deadline before the deletion still finds the work, on time.
    let before = deadline.to_rfc3339_opts(SecondsFormat::Millis, true);
    let r = http_client()
        .get(server.at("/api/v1/collect"))
        .query(&[
            ("pattern", "Docs/*.txt"),
            ("before", before.as_str()),
            ("students", "alice"),
        ])
        .basic_auth("teach", Some(PW))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["status"], "on-time", "{text}");
    assert_eq!(first["path"], ESSAY, "{text}");
    assert_eq!(first["sha256"], Digest::of(b"final").to_hex(), "{text}");

    // A later save brings it back: a new deletion is a new event (201).
    put_version(&server, "alice", PW, ESSAY, b"draft");
    let again = alice.delete(&rel(ESSAY)).unwrap();
    assert_ne!(again, event);
    assert_eq!(again.event, EventKind::Delete);
    assert!(matches!(
        alice.delete(&rel("Docs/never.txt")),
        Err(ClientError::NotFound)
    ));
}

#[test]
fn the_feed_lists_versions_and_deletions_in_order_and_resumes() {
    let server = server();
    let alice = remote(&server, "alice");
    let empty = alice.changes(None, Duration::ZERO).unwrap();
    assert!(empty.events.is_empty());

    put_version(&server, "alice", PW, "a.txt", b"1");
    put_version(&server, "alice", PW, "a.txt", b"1"); // a repeat: `dup`
    put_version(&server, "alice", PW, "b.txt", b"2");
    alice.delete(&rel("a.txt")).unwrap();
    put_version(&server, "bob", PW, "a.txt", b"bob's"); // another namespace: not in the feed

    let all = alice.changes(Some(&empty.cursor), Duration::ZERO).unwrap();
    let seen: Vec<(&str, EventKind)> = all
        .events
        .iter()
        .map(|e| (e.path.as_str(), e.event))
        .collect();
    assert_eq!(
        seen,
        [
            ("a.txt", EventKind::New),
            ("a.txt", EventKind::Dup),
            ("b.txt", EventKind::New),
            ("a.txt", EventKind::Delete)
        ]
    );
    // From the cursor: nothing, and the same cursor back.
    let none = alice.changes(Some(&all.cursor), Duration::ZERO).unwrap();
    assert!(none.events.is_empty());
    assert_eq!(none.cursor, all.cursor);
    // Resumed from that cursor: only what came after.
    put_version(&server, "alice", PW, "c.txt", b"3");
    let next = alice.changes(Some(&all.cursor), Duration::ZERO).unwrap();
    assert_eq!(next.events.len(), 1);
    assert_eq!(next.events[0].path, "c.txt");

    // The teacher may read the feed; another student may not; bad cursors are 400.
    let (status, body) = feed(&server, "teach", "alice", "");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_value::<Changes>(body)
            .unwrap()
            .events
            .len(),
        5
    );
    let (status, body) = feed(&server, "bob", "alice", "");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = feed(&server, "teach", "nobody", "");
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(matches!(
        remote(&server, "bob").changes(None, Duration::ZERO),
        Ok(Changes { ref events, .. }) if events.len() == 1
    ));
    for bad in [
        "?after=nonsense",
        "?after=-1",
        "?after=1",
        "?after=99999999",
        "?wait=soon",
    ] {
        let (status, body) = feed(&server, "alice", "alice", bad);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad}: {body}"
        );
    }
}

#[test]
fn a_long_poll_is_woken_by_another_clients_upload() {
    let server = server();
    let alice = remote(&server, "alice");
    let start = alice.changes(None, Duration::ZERO).unwrap();
    // The poll waits up to 30 s and answers empty at its end without looking again: it
    // can only carry the event if the upload woke it.
    let poll = {
        let alice = alice.clone();
        let cursor = start.cursor.clone();
        std::thread::spawn(move || alice.changes(Some(&cursor), Duration::from_secs(30)))
    };
    // Another client (the same student on another machine) saves.
    put_version(&server, "alice", PW, "from elsewhere.txt", b"hello");
    let woke = poll.join().unwrap().unwrap();
    assert_eq!(woke.events.len(), 1, "{woke:?}");
    assert_eq!(woke.events[0].path, "from elsewhere.txt");
    assert_eq!(woke.events[0].event, EventKind::New);
    assert_ne!(woke.cursor, start.cursor);
}
