//! `ects versions`, `ects restore` and `ects status` against the real server.

mod support;

use std::fs;

use ects::store::Digest;
use support::client::*;

#[test]
fn versions_restore_and_status() {
    let server = Server::start(&[]);
    let client = Client::new();
    let root = client.dir.path().join("Documents");
    let essay = "Documents/My essay (final).txt";
    write(&root, "My essay (final).txt", b"first draft");
    let out = client.run(&server.url, &["backup", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    write(&root, "My essay (final).txt", b"second draft, longer");
    let out = client.run(&server.url, &["backup", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let (v1, v2) = (
        Digest::of(b"first draft"),
        Digest::of(b"second draft, longer"),
    );

    let out = client.run(&server.url, &["versions", essay]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.contains(&v1.short()) || l.contains(&v2.short()))
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[0].contains(&v1.short()) && rows[1].contains(&v2.short()),
        "oldest first:\n{table}"
    );
    assert!(table.contains("2 versions"), "{table}");
    let out = client.run(&server.url, &["versions", "Documents/nothing.txt"]);
    assert_eq!(out.status.code(), Some(1));

    // Newest by default.
    let target = client.dir.path().join("restored.txt");
    let t = target.to_str().unwrap();
    let out = client.run(&server.url, &["restore", essay, "-o", t]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read(&target).unwrap(), b"second draft, longer");
    // Never over an existing file without --force, and the file stays as it was.
    fs::write(&target, b"my own edits").unwrap();
    let out = client.run(
        &server.url,
        &["restore", essay, "-o", t, "--sha256", &v1.short()],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        text(&out)
    );
    assert_eq!(fs::read(&target).unwrap(), b"my own edits");
    let out = client.run(
        &server.url,
        &[
            "restore",
            essay,
            "-o",
            t,
            "--sha256",
            &v1.short(),
            "--force",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read(&target).unwrap(), b"first draft");
    // By time: before the first version there is nothing; now gives the newest.
    let out = client.run(
        &server.url,
        &["restore", essay, "-o", t, "--force", "--at", "2000-01-01"],
    );
    assert!(!out.status.success());
    assert_eq!(
        fs::read(&target).unwrap(),
        b"first draft",
        "a refused restore changes nothing"
    );
    let now = chrono::Utc::now().to_rfc3339();
    let out = client.run(
        &server.url,
        &["restore", essay, "-o", t, "--force", "--at", &now],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read(&target).unwrap(), b"second draft, longer");
    // To stdout.
    let out = client.run(
        &server.url,
        &["restore", essay, "-o", "-", "--sha256", &v1.to_hex()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, b"first draft");
    // Nothing half-written is left beside the target.
    let leftovers: Vec<_> = fs::read_dir(client.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ects-restore"))
        .collect();
    assert!(leftovers.is_empty());

    // Status of the backup's spool, with the server's health.
    let out = client.run(&server.url, &["status"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    for want in [
        "Server:            reachable",
        "Waiting to upload: nothing",
        "Uploaded:          2 versions",
        "Failed uploads:    none",
    ] {
        assert!(report.contains(want), "missing {want:?}:\n{report}");
    }
    let nobody = unreachable_url();
    let out = client.run(&nobody, &["status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NOT reachable"),
        "{}",
        text(&out)
    );
}

/// `restore --at` with a time copied from `ects versions` (second precision) restores
/// that version, and says which one it chose (issue 16 item 5).
#[test]
fn restore_at_a_time_shown_by_versions_restores_that_version() {
    let server = Server::start(&[]);
    let client = Client::new();
    let root = client.dir.path().join("Docs");
    let essay = "Docs/essay.txt";
    write(&root, "essay.txt", b"first");
    let out = client.run(&server.url, &["backup", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    // Into the next second, so the two versions show different times.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(&root, "essay.txt", b"second");
    let out = client.run(&server.url, &["backup", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    let out = client.run(&server.url, &["versions", essay]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let second = Digest::of(b"second").short();
    let row = table
        .lines()
        .find(|l| l.contains(&second))
        .unwrap_or_else(|| panic!("{table}"));
    let shown = &row[..19];
    let target = client.dir.path().join("out.txt");
    let t = target.to_str().unwrap();
    let out = client.run(&server.url, &["restore", essay, "-o", t, "--at", shown]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        fs::read(&target).unwrap(),
        b"second",
        "--at {shown}\n{table}"
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("chose version 2 of 2") && said.contains(&second),
        "{said}"
    );
}
