//! `ects collect` and the teacher API against the real server binary: five students
//! (on time, on time with a version after the deadline, a hostile file name, late only,
//! missing), the manifest and the files checked byte for byte, re-runs that fetch
//! nothing, a differing file kept unless --force, the class list and the zip.
//!
//! "Late" comes from the server's clock: the deadline is read from the clock between
//! uploads, with a pause on each side so the order is certain (no timing assertions).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use support::{BIN, Role, TestServer, encode_path as encode, http_client as client, temp_dir};

const TEACHER: &str = "teach";
const PW: &str = "a long enough password";
const STUDENTS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
// A server on Windows cannot store `"` in a name (Windows forbids it); there the
// comma and `=` still test the CSV's quoting and formula guard.
#[cfg(not(windows))]
const HOSTILE: &str = "Docs/essay, \"final\" =1.txt";
#[cfg(windows)]
const HOSTILE: &str = "Docs/essay, final =1.txt";

fn put(server: &TestServer, user: &str, path: &str, body: &[u8]) {
    support::put_version(server, user, PW, path, body);
}

/// The versions of `user`'s `path`, as the teacher sees them.
fn versions(server: &TestServer, user: &str, path: &str) -> Vec<Value> {
    let r = client()
        .get(server.at(&format!("/api/v1/versions/{user}/{}", encode(path))))
        .basic_auth(TEACHER, Some(PW))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Vec<Value>>().unwrap()
}

fn ects_collect(server: &TestServer, user: &str, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ECTS_") {
            command.env_remove(key);
        }
    }
    command
        .arg("collect")
        .args(args)
        .env("ECTS_SERVER", &server.url)
        .env("ECTS_USER", user)
        .env("ECTS_PASSWORD", PW)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file under `dir`, relative, `/`-separated.
fn files_under(dir: &Path) -> BTreeSet<String> {
    support::snapshot(dir)
        .into_iter()
        .filter(|(p, _)| dir.join(p).is_file())
        .map(|(p, _)| support::slash_path(&p))
        .collect()
}

fn mtime_secs(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn stored_secs(v: &Value) -> u64 {
    let t: DateTime<Utc> = v["stored_at"].as_str().unwrap().parse().unwrap();
    SystemTime::from(t)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn row(student: &str, path: &str, v: &Value, status: &str) -> String {
    let t: DateTime<Utc> = v["stored_at"].as_str().unwrap().parse().unwrap();
    format!(
        "{student},{path},{},{},{},{status}\r\n",
        v["sha256"].as_str().unwrap(),
        v["size"],
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

struct Class {
    server: TestServer,
    deadline: DateTime<Utc>,
}

/// alice: a draft before the deadline and a final version after it; bob: on time;
/// carol: on time, under a name with a comma, quotes and a formula sign; dave: only
/// after the deadline; erin: only a file the pattern does not match.
fn class() -> Class {
    let mut users = vec![(TEACHER, Role::Teacher, PW)];
    users.extend(STUDENTS.iter().map(|s| (*s, Role::Student, PW)));
    let server = TestServer::with_users(&users, &[]);
    put(&server, "alice", "Docs/essay.txt", b"alice draft");
    put(&server, "bob", "Docs/essay.txt", b"bob's essay");
    put(&server, "carol", HOSTILE, b"carol's essay");
    put(&server, "erin", "Docs/notes.txt", b"not the essay");
    put(&server, "erin", "Other/essay.txt", b"wrong folder");
    std::thread::sleep(Duration::from_millis(1100));
    let deadline = Utc::now();
    std::thread::sleep(Duration::from_millis(1100));
    put(
        &server,
        "alice",
        "Docs/essay.txt",
        b"alice final, after the deadline",
    );
    put(&server, "dave", "Docs/essay.txt", b"dave, late");
    Class { server, deadline }
}

#[test]
fn collect_by_deadline_then_resume_and_refuse_to_clobber() {
    let Class { server, deadline } = class();
    let out = temp_dir();
    let dir = out.path().join("grading");
    let dir_s = dir.to_str().unwrap();
    let before = deadline.to_rfc3339();
    let args = ["Docs/essay*", "--out", dir_s, "--before", &before, "--all"];

    let run = ects_collect(&server, TEACHER, &args);
    assert!(run.status.success(), "{}", text(&run));

    let alice = versions(&server, "alice", "Docs/essay.txt");
    assert_eq!(alice.len(), 2);
    let bob = versions(&server, "bob", "Docs/essay.txt");
    let carol = versions(&server, "carol", HOSTILE);
    let dave = versions(&server, "dave", "Docs/essay.txt");
    let expected = [
        "student,path,sha256,size,stored_at,status\r\n".to_owned(),
        row("alice", "Docs/essay.txt", &alice[0], "on-time"),
        row("bob", "Docs/essay.txt", &bob[0], "on-time"),
        // Quoted (a comma), inner quotes doubled.
        row(
            "carol",
            &format!("\"{}\"", HOSTILE.replace('"', "\"\"")),
            &carol[0],
            "on-time",
        ),
        row("dave", "Docs/essay.txt", &dave[0], "late-only"),
        "erin,,,,,missing\r\n".to_owned(),
    ]
    .concat();
    let manifest = std::fs::read_to_string(dir.join("manifest.csv")).unwrap();
    assert_eq!(manifest, expected);

    // Exactly the on-time files, with the version before the deadline and its time.
    let carol_file = format!("carol/{HOSTILE}");
    let want: BTreeSet<String> = [
        "manifest.csv",
        "alice/Docs/essay.txt",
        "bob/Docs/essay.txt",
        &carol_file,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(files_under(&dir), want);
    let alice_file = dir.join("alice/Docs/essay.txt");
    assert_eq!(std::fs::read(&alice_file).unwrap(), b"alice draft");
    assert_eq!(mtime_secs(&alice_file), stored_secs(&alice[0]));
    assert_eq!(
        std::fs::read(dir.join("carol").join(HOSTILE)).unwrap(),
        b"carol's essay"
    );
    assert_eq!(
        std::fs::read(dir.join("bob/Docs/essay.txt")).unwrap(),
        b"bob's essay"
    );

    // A second run fetches nothing and changes nothing.
    let before_rerun = support::snapshot(&dir);
    let again = ects_collect(&server, TEACHER, &args);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("fetched 0, already there 3"),
        "{}",
        text(&again)
    );
    assert_eq!(support::snapshot(&dir), before_rerun);
    assert_eq!(
        std::fs::read_to_string(dir.join("manifest.csv")).unwrap(),
        expected
    );

    // A file that differs is kept (exit 1) unless --force.
    let bob_file = dir.join("bob/Docs/essay.txt");
    std::fs::write(&bob_file, b"edited by hand").unwrap();
    let kept = ects_collect(&server, TEACHER, &args);
    assert_eq!(kept.status.code(), Some(1), "{}", text(&kept));
    assert!(String::from_utf8_lossy(&kept.stderr).contains("--force"));
    assert_eq!(std::fs::read(&bob_file).unwrap(), b"edited by hand");
    let mut forced_args = args.to_vec();
    forced_args.push("--force");
    let forced = ects_collect(&server, TEACHER, &forced_args);
    assert!(forced.status.success(), "{}", text(&forced));
    assert_eq!(std::fs::read(&bob_file).unwrap(), b"bob's essay");

    // --include-late adds dave's late work; the manifest still says late-only.
    let mut late_args = args.to_vec();
    late_args.push("--include-late");
    let late = ects_collect(&server, TEACHER, &late_args);
    assert!(late.status.success(), "{}", text(&late));
    assert_eq!(
        std::fs::read(dir.join("dave/Docs/essay.txt")).unwrap(),
        b"dave, late"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("manifest.csv")).unwrap(),
        expected
    );
    assert!(
        !files_under(&dir)
            .iter()
            .any(|f| f.contains(".ects-collect-")),
        "no temp files left"
    );
}

#[test]
fn without_a_deadline_the_newest_counts_and_students_can_be_chosen() {
    let Class { server, .. } = class();
    let out = temp_dir();
    let dir = out.path();
    let run = ects_collect(
        &server,
        TEACHER,
        &[
            "docs/ESSAY.txt",
            "--out",
            dir.to_str().unwrap(),
            "--students",
            "alice,dave",
        ],
    );
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(
        std::fs::read(dir.join("alice/Docs/essay.txt")).unwrap(),
        b"alice final, after the deadline"
    );
    assert_eq!(
        std::fs::read(dir.join("dave/Docs/essay.txt")).unwrap(),
        b"dave, late"
    );
    let manifest = std::fs::read_to_string(dir.join("manifest.csv")).unwrap();
    assert_eq!(manifest.lines().count(), 3, "{manifest}");
    assert!(!dir.join("bob").exists());

    // Unknown students and students as collectors are refused; nothing is written.
    let other = temp_dir();
    let unknown = ects_collect(
        &server,
        TEACHER,
        &[
            "*",
            "--out",
            other.path().to_str().unwrap(),
            "--students",
            "nobody",
        ],
    );
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nobody"));
    let student = ects_collect(
        &server,
        "bob",
        &["*", "--out", other.path().to_str().unwrap(), "--all"],
    );
    assert_eq!(student.status.code(), Some(1), "{}", text(&student));
    assert!(String::from_utf8_lossy(&student.stderr).contains("only teachers"));
    assert!(files_under(other.path()).is_empty());
}

#[test]
fn class_list_streamed_collect_and_zip() {
    let Class { server, deadline } = class();
    let c = client();
    let users: Vec<Value> = c
        .get(server.at("/api/v1/users"))
        .basic_auth(TEACHER, Some(PW))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let names: Vec<&str> = users.iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob", "carol", "dave", "erin", "teach"]);
    assert_eq!(users[5]["role"], "teacher");
    let refused = c
        .get(server.at("/api/v1/users"))
        .basic_auth("alice", Some(PW))
        .send()
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let query = [
        ("pattern", "Docs/essay*"),
        ("before", &deadline.to_rfc3339()),
    ];
    let r = c
        .get(server.at("/api/v1/collect"))
        .query(&query)
        .basic_auth(TEACHER, Some(PW))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/x-ndjson")
    );
    let lines: Vec<Value> = r
        .text()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let statuses: Vec<(&str, &str)> = lines[..5]
        .iter()
        .map(|l| (l["user"].as_str().unwrap(), l["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("alice", "on-time"),
            ("bob", "on-time"),
            ("carol", "on-time"),
            ("dave", "late-only"),
            ("erin", "missing")
        ]
    );
    assert_eq!(lines[5]["end"]["students"], 5);
    assert_eq!(lines[5]["end"]["files"], 4);
    assert_eq!(lines.len(), 6);

    for (query, status) in [
        (vec![("pattern", "a[b")], StatusCode::BAD_REQUEST),
        (vec![("pattern", "")], StatusCode::BAD_REQUEST),
        (
            vec![("pattern", "*"), ("before", "yesterday")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("pattern", "*"), ("students", "ghost")],
            StatusCode::NOT_FOUND,
        ),
    ] {
        let r = c
            .get(server.at("/api/v1/collect"))
            .query(&query)
            .basic_auth(TEACHER, Some(PW))
            .send()
            .unwrap();
        assert_eq!(r.status(), status, "{query:?}");
    }

    // The zip: same selection, read back by Info-ZIP's unzip (when installed).
    let r = c
        .get(server.at("/api/v1/collect.zip"))
        .query(&query)
        .basic_auth(TEACHER, Some(PW))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let zip = r.bytes().unwrap();
    let student_zip = c
        .get(server.at("/api/v1/collect.zip"))
        .query(&query)
        .basic_auth("alice", Some(PW))
        .send()
        .unwrap();
    assert_eq!(student_zip.status(), StatusCode::FORBIDDEN);
    if Command::new("unzip").arg("-v").output().is_err() {
        eprintln!("SKIPPED the zip content check: unzip is not installed");
        return;
    }
    let tmp = temp_dir();
    std::fs::write(tmp.path().join("c.zip"), &zip).unwrap();
    let x = tmp.path().join("x");
    let unzip = Command::new("unzip")
        .arg("-q")
        .arg(tmp.path().join("c.zip"))
        .arg("-d")
        .arg(&x)
        .output()
        .unwrap();
    assert!(unzip.status.success(), "{unzip:?}");
    let carol_file = format!("carol/{HOSTILE}");
    let want: BTreeSet<String> = [
        "manifest.csv",
        "alice/Docs/essay.txt",
        "bob/Docs/essay.txt",
        &carol_file,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(files_under(&x), want);
    assert_eq!(
        std::fs::read(x.join("alice/Docs/essay.txt")).unwrap(),
        b"alice draft"
    );
    let manifest = std::fs::read_to_string(x.join("manifest.csv")).unwrap();
    assert!(manifest.ends_with("erin,,,,,missing\r\n"), "{manifest}");
    assert!(manifest.contains(",late-only\r\n"));
}
