//! The spool on a shared lab computer (issue 15 item 1): its folders and files are
//! owner-only whatever the umask, a capture changed on disk is never uploaded, and
//! journal records the spool did not write are refused. Through the real binary.

#![cfg(unix)] // owner-only modes and a second OS user are Unix notions

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use ects::client::{ConnectConfig, HttpUploader, Remote, Spool, SpoolOptions};
use ects::names::{RelPath, UserName};
use ects::store::Digest;
use support::client::*;

/// Every folder and file under `dir`, with its permission bits.
fn modes(dir: &Path, out: &mut Vec<(String, bool, u32)>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = fs::symlink_metadata(e.path()).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        out.push((e.path().display().to_string(), meta.is_dir(), mode));
        if meta.is_dir() {
            modes(&e.path(), out);
        }
    }
}

#[test]
fn spool_and_cache_are_private_whatever_the_umask() {
    let server = Server::start(&[]);
    let client = Client::new();
    let root = client.dir.path().join("Homework");
    write(&root, "a.txt", b"first");
    write(&root, "sub/b.txt", b"second");
    let mut cmd = client.command(&server.url, &["backup", root.to_str().unwrap()]);
    // SAFETY: umask is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let out = Guard(Some(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
    .wait();
    assert!(out.status.success(), "{}", text(&out));
    let mut all = vec![("cache".to_string(), true, {
        fs::metadata(&client.cache).unwrap().permissions().mode() & 0o777
    })];
    modes(&client.cache, &mut all);
    assert!(all.iter().any(|(p, _, _)| p.ends_with("journal.key")));
    for (path, is_dir, mode) in &all {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{path}: {mode:o}, want {want:o}");
    }
}

#[test]
fn planted_records_and_edited_captures_are_never_uploaded() {
    let server = Server::start(&[]);
    let client = Client::new();
    let src = client.dir.path().join("src");
    fs::create_dir(&src).unwrap();

    // The student saves two files while the server cannot be reached.
    let down = unreachable_url();
    let cfg = ConnectConfig::new(&down, UserName::parse(USER).unwrap(), PASSWORD.into());
    let remote = Remote::connect(&cfg).unwrap();
    let spool = Spool::open(
        &client.spool(),
        Arc::new(HttpUploader::new(&remote)),
        SpoolOptions::default(),
    )
    .unwrap();
    let real = b"the student's essay, version 1".to_vec();
    let edited = b"the student's essay, version X".to_vec();
    assert_eq!(real.len(), edited.len());
    let kept = b"notes that must arrive".to_vec();
    for (name, bytes) in [("essay.txt", &real), ("notes.txt", &kept)] {
        let f = src.join(name);
        fs::write(&f, bytes).unwrap();
        spool
            .capture_durable(&RelPath::parse(name).unwrap(), &f)
            .unwrap();
    }
    assert_eq!(spool.drain(Duration::ZERO), 2, "both wait for the server");
    drop(spool);

    // The attacker: rewrites one capture in place (same size) and plants a version,
    // with a journal record claiming it and a forged "done" for the notes.
    let spool_dir = client.spool();
    let captures = spool_dir.join("captures");
    let essay = fs::read_dir(&captures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| fs::read(f).unwrap() == real)
        .unwrap();
    fs::write(&essay, &edited).unwrap();
    let planted = b"planted by someone else".to_vec();
    fs::write(captures.join("900.data"), &planted).unwrap();
    let journal = spool_dir.join("journal.log");
    let notes_id: u64 = fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .find(|l| l.contains("notes.txt"))
        .and_then(|l| l.split("\"id\":").nth(1))
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    let sha = Digest::of(&planted).to_hex();
    let mut j = fs::OpenOptions::new().append(true).open(&journal).unwrap();
    writeln!(
        j,
        r#"{{"rec":"capture","id":900,"path":"planted.txt","sha256":"{sha}","size":{},"time":"2026-01-01T00:00:00Z"}}"#,
        planted.len()
    )
    .unwrap();
    writeln!(j, r#"{{"rec":"done","id":{notes_id}}}"#).unwrap();
    // A signed-looking line: a MAC from somewhere else in front of a planted record.
    let any_mac = "0".repeat(64);
    writeln!(
        j,
        r#"{any_mac} {{"rec":"capture","id":901,"path":"planted2.txt","sha256":"{sha}","size":{},"time":"2026-01-01T00:00:00Z"}}"#,
        planted.len()
    )
    .unwrap();
    drop(j);

    // The next start, with the server back: an empty backup sends what the spool holds.
    let empty = client.dir.path().join("Nothing");
    fs::create_dir(&empty).unwrap();
    let out = client.run(&server.url, &["backup", empty.to_str().unwrap()]);
    let out_text = text(&out);

    let stored: Vec<(String, Digest)> = server
        .journal()
        .into_iter()
        .map(|e| (e.path, e.sha256))
        .collect();
    assert!(
        stored.contains(&("notes.txt".into(), Digest::of(&kept))),
        "the real version arrives: {stored:?}\n{out_text}"
    );
    assert!(
        stored.iter().all(|(p, _)| p == "notes.txt"),
        "nothing planted or edited was uploaded: {stored:?}"
    );
    assert!(
        spool_dir.join("refused").join("900.data").exists(),
        "the planted file is kept aside, not deleted"
    );

    // The edited capture is visibly failed, the refused records visibly counted.
    let status = client.run(
        &server.url,
        &["status", "--cache", client.cache.to_str().unwrap()],
    );
    let shown = text(&status);
    assert!(shown.contains("essay.txt"), "{shown}");
    assert!(shown.contains("changed after it was saved"), "{shown}");
    assert!(shown.contains("Refused journal records: 3"), "{shown}");
    assert!(!shown.contains("planted.txt  ("), "{shown}");
}
