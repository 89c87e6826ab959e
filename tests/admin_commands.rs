//! The lab admin's commands with the real binary: `ects user import CLASS.csv` followed
//! by real uploads through the server, and `ects status --wait` as a logoff script uses
//! it, against a spool that drains only once the server comes back.

mod support;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ects::client::{ConnectConfig, HttpUploader, Remote, Spool, SpoolOptions, SpoolStatus};
use ects::names::{RelPath, UserName};
use reqwest::StatusCode;
use reqwest::blocking::Client as Http;
use support::client::{Client, Guard, PASSWORD, Server, USER, clean, text, wait_until};
use support::{TestServer, sha256_hex};

fn ects(args: &[&str], dir: &Path) -> Output {
    let child = clean(Command::new(support::BIN))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Guard(Some(child)).wait()
}

/// 28 students (every third with a password given in the list) and 2 teachers, with a
/// header, a comment and a blank line: 30 users on 33 lines.
fn class_list() -> (String, Vec<String>) {
    let mut csv = String::from("name,role,password\n# class 7b, autumn term\n\n");
    let mut students = Vec::new();
    for i in 1..=28 {
        let name = format!("student{i:02}");
        if i % 3 == 0 {
            csv.push_str(&format!("{name},student,given-pw-{i}\n"));
        } else {
            csv.push_str(&format!("{name},student\n"));
        }
        students.push(name);
    }
    csv.push_str("mrs-k,teacher,teach-pw\nmr.b,Teacher\n");
    (csv, students)
}

#[test]
fn thirty_imported_users_each_upload_and_no_student_reads_another() {
    let dir = support::temp_dir();
    let data = dir.path().join("data");
    let (csv, students) = class_list();
    fs::write(dir.path().join("7b.csv"), csv).unwrap();
    let out = ects(
        &[
            "user",
            "import",
            "7b.csv",
            "--data",
            "data",
            "--passwords-out",
            "slips.csv",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("30 users"),
        "{}",
        text(&out)
    );

    // The generated passwords: in a file only the admin can read, one per user left
    // without a password in the list, never one the list gave.
    let slips = dir.path().join("slips.csv");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&slips).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let slips = fs::read_to_string(&slips).unwrap();
    assert!(!slips.contains("given-") && !slips.contains("teach-pw"));
    let mut passwords: HashMap<String, String> = slips
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 3, "{l}");
            (f[0].to_owned(), f[2].to_owned())
        })
        .collect();
    assert_eq!(passwords.len(), 28 - 9 + 1, "{slips}");
    for i in (3..=28).step_by(3) {
        passwords.insert(format!("student{i:02}"), format!("given-pw-{i}"));
    }
    passwords.insert("mrs-k".into(), "teach-pw".into());

    let server = TestServer::start(&data, &[]);
    let http = Http::new();
    let file = |owner: &str| server.at(&format!("/api/v1/files/{owner}/Homework/essay.txt"));
    for name in &students {
        let body = format!("{name}'s essay");
        let res = http
            .put(file(name))
            .basic_auth(name, Some(&passwords[name]))
            .header("X-Content-SHA256", sha256_hex(body.as_bytes()))
            .body(body)
            .send()
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED, "{name} uploads");
    }
    for reader in &students {
        for owner in &students {
            let res = http
                .get(file(owner))
                .basic_auth(reader, Some(&passwords[reader]))
                .send()
                .unwrap();
            if reader == owner {
                assert_eq!(res.status(), StatusCode::OK, "{reader} reads their own");
                assert_eq!(res.text().unwrap(), format!("{owner}'s essay"));
            } else {
                assert_eq!(
                    res.status(),
                    StatusCode::FORBIDDEN,
                    "{reader} must not read {owner}'s work"
                );
            }
        }
    }
    // Both teachers can sign in; a teacher reads a student's work.
    let res = http
        .get(file("student07"))
        .basic_auth("mr.b", Some(&passwords["mr.b"]))
        .send()
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = http
        .get(file("student28"))
        .basic_auth("mrs-k", Some("teach-pw"))
        .send()
        .unwrap();
    assert_eq!(res.text().unwrap(), "student28's essay");
}

#[test]
fn an_import_with_any_bad_line_adds_nobody_and_names_every_line() {
    let dir = support::temp_dir();
    support::add_user(
        &dir.path().join("data"),
        "old",
        support::Role::Student,
        "pw",
    );
    let users_before = fs::read(dir.path().join("data/users.toml")).unwrap();
    fs::write(
        dir.path().join("list.csv"),
        "ann\nbob,janitor\nann\nold\ncarl,student,\nd e\n",
    )
    .unwrap();
    let out = ects(
        &["user", "import", "list.csv", "--data", "data"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for line in ["list.csv:2:", "list.csv:3:", "list.csv:4:", "list.csv:6:"] {
        assert!(err.contains(line), "{line} missing:\n{err}");
    }
    assert!(
        !err.contains("list.csv:1:") && !err.contains("list.csv:5:"),
        "{err}"
    );
    assert_eq!(
        fs::read(dir.path().join("data/users.toml")).unwrap(),
        users_before
    );
    assert!(!dir.path().join("list-passwords.csv").exists());

    // A good list, but the passwords file is there already: refused before adding.
    fs::write(dir.path().join("list.csv"), "ann\n").unwrap();
    fs::write(dir.path().join("list-passwords.csv"), "keep me").unwrap();
    let out = ects(
        &["user", "import", "list.csv", "--data", "data"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        fs::read_to_string(dir.path().join("list-passwords.csv")).unwrap(),
        "keep me"
    );
    assert_eq!(
        fs::read(dir.path().join("data/users.toml")).unwrap(),
        users_before
    );
}

/// `ects status --wait --cache C ARGS…`, run to its end.
fn status_wait(cache: &Path, args: &[&str]) -> Output {
    let cache_arg = cache.to_str().expect("temp paths are UTF-8");
    let all: Vec<&str> = ["status", "--wait", "--cache", cache_arg]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    // The cache may not exist (the "no spool" case), so it cannot be the working folder.
    ects(&all, &std::env::temp_dir())
}

fn spool_for(server: &Server, client: &Client, opts: SpoolOptions) -> Spool {
    let cfg = ConnectConfig::new(&server.url, UserName::parse(USER).unwrap(), PASSWORD.into());
    let remote = Remote::connect(&cfg).unwrap();
    Spool::open(&client.spool(), Arc::new(HttpUploader::new(&remote)), opts).unwrap()
}

#[test]
fn status_wait_returns_only_after_the_spool_drained() {
    let mut server = Server::start(&[]);
    let client = Client::new();
    let spool = spool_for(
        &server,
        &client,
        SpoolOptions {
            workers: 1,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(1),
            ..SpoolOptions::default()
        },
    );
    // The server is down while five versions are taken: they wait in the spool.
    server.stop();
    let src = client.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut shas = Vec::new();
    for i in 0..5 {
        let f = src.join(format!("{i}"));
        fs::write(&f, format!("version {i}")).unwrap();
        let path = RelPath::parse(&format!("Work/file{i}.txt")).unwrap();
        shas.push((path.clone(), spool.capture(&path, &f).unwrap()));
    }
    spool.flush().unwrap();
    assert_eq!(SpoolStatus::read(&client.spool()).unwrap().pending, 5);

    // A bounded wait gives up, says so, and exits 3.
    let out = status_wait(&client.cache, &["--timeout", "1"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("timed out after 1 s: 5 version(s)"),
        "{}",
        text(&out)
    );

    // An unbounded wait is still waiting while the server is down...
    let waiter = clean(Command::new(support::BIN))
        .args(["status", "--wait", "--timeout", "600", "--cache"])
        .arg(&client.cache)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut waiter = Guard(Some(waiter));
    wait_until("a failed upload attempt", || {
        spool.status().server_reachable == Some(false)
    });
    assert!(
        waiter.0.as_mut().unwrap().try_wait().unwrap().is_none(),
        "--wait ended while nothing could upload"
    );
    // ...and ends with 0 once the server is back and the spool has sent everything.
    server.restart();
    let out = waiter.wait();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("all uploads done"));
    for (path, sha) in &shas {
        let stored = server.version_file(path.as_str(), &sha.to_hex(), ".txt");
        assert!(
            stored.is_file(),
            "{path} was not on the server when --wait returned"
        );
    }
    assert_eq!(SpoolStatus::read(&client.spool()).unwrap().pending, 0);
}

#[test]
fn status_wait_exits_1_for_refused_uploads_and_0_without_a_spool() {
    let server = Server::start(&["--max-file-size", "10"]);
    let client = Client::new();
    let spool = spool_for(&server, &client, SpoolOptions::default());
    let f = client.dir.path().join("big");
    fs::write(&f, "more than ten bytes").unwrap();
    spool
        .capture(&RelPath::parse("big.txt").unwrap(), &f)
        .unwrap();
    spool.flush().unwrap();
    wait_until("the refusal", || spool.status().failed.len() == 1);
    let out = status_wait(&client.cache, &["--timeout", "60"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 were refused"),
        "{}",
        text(&out)
    );

    // A drive that never captured anything has nothing to wait for.
    let empty = client.dir.path().join("never-used");
    let out = status_wait(&empty, &["--timeout", "60"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to wait for"));
}
