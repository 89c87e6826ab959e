//! The spool against the real server: a server that goes away and comes back, and an
//! uploading process killed with SIGKILL mid-queue. Proved from the server's journal.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::sync::Arc;
use std::time::Duration;

use ects::client::{ConnectConfig, HttpUploader, Remote, Spool, SpoolOptions, SpoolStatus};
use ects::names::{RelPath, UserName};
use ects::store::{Digest, EventKind};
use support::client::*;

const WORKERS: usize = 2;

#[test]
fn server_down_while_500_versions_are_spooled_then_back() {
    let mut server = Server::start(&[]);
    let client = Client::new();
    let cfg = ConnectConfig::new(&server.url, UserName::parse(USER).unwrap(), PASSWORD.into());
    let remote = Remote::connect(&cfg).unwrap();
    let spool = Spool::open(
        &client.spool(),
        Arc::new(HttpUploader::new(&remote)),
        SpoolOptions {
            workers: WORKERS,
            max_backoff: Duration::from_secs(4),
            ..SpoolOptions::default()
        },
    )
    .unwrap();
    let src = client.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    // 100 files, 5 versions each, 16 KiB apiece.
    let mut want: BTreeMap<String, Vec<Digest>> = BTreeMap::new();
    let mut capture = |i: usize| {
        let name = format!("Class work/file {:03}.txt", i % 100);
        let mut bytes = vec![b'x'; 16 << 10];
        bytes[..16].copy_from_slice(format!("{i:016}").as_bytes());
        let f = src.join(format!("{i}"));
        fs::write(&f, &bytes).unwrap();
        let sha = spool.capture(&RelPath::parse(&name).unwrap(), &f).unwrap();
        want.entry(name).or_default().push(sha);
    };
    for i in 0..100 {
        capture(i);
    }
    // Some arrive, then the server dies mid-stream.
    wait_until("first uploads", || server.journal().len() >= 10);
    server.stop();
    for i in 100..500 {
        capture(i);
    }
    spool.flush().unwrap();
    let waiting = spool.status();
    assert!(
        waiting.pending > 0,
        "versions are waiting while the server is down"
    );
    // The scenario: the server comes back ten seconds later.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(spool.status().server_reachable, Some(false));
    server.restart();
    wait_until("the spool to empty", || spool.status().pending == 0);
    assert!(spool.status().failed.is_empty());

    // All 500 are stored, each as its own version file at its SPEC path...
    let total: usize = want.values().map(Vec::len).sum();
    assert_eq!(total, 500);
    for (path, shas) in &want {
        let mut stored_at = Vec::new();
        for sha in shas {
            let file = server.version_file(path, &sha.to_hex(), ".txt");
            let meta = fs::metadata(&file).unwrap_or_else(|e| panic!("{path} {sha} lost: {e}"));
            stored_at.push(meta.modified().unwrap());
        }
        // ...stored in the order they were taken.
        assert!(
            stored_at.windows(2).all(|w| w[0] < w[1]),
            "{path}: out of order"
        );
    }
    // ...and none was sent twice. (The server's journal can miss a line for a version
    // it had linked just before SIGKILL; the version file above is the proof of arrival.)
    let journal = server.journal();
    let mut seen: HashMap<(String, Digest), usize> = HashMap::new();
    for e in &journal {
        assert_eq!(e.event, EventKind::New, "{e:?}: sent twice");
        *seen.entry((e.path.clone(), e.sha256)).or_default() += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "none twice");
    // At most one line per upload in flight at the kill can be missing.
    assert!(
        seen.len() >= 500 - WORKERS,
        "journal has {} of 500",
        seen.len()
    );
    assert_eq!(spool.drain(Duration::ZERO), 0);
}

#[test]
fn killed_uploader_leaves_the_rest_to_the_next_process() {
    let server = Server::start(&[]);
    let client = Client::new();
    let root = client.dir.path().join("Homework");
    let mut files = Vec::new();
    for i in 0..150 {
        let mut bytes = vec![b'a' + (i % 26) as u8; 32 << 10];
        bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let rel = format!("week {}/task {i}.txt", i % 7);
        write(&root, &rel, &bytes);
        files.push((format!("Homework/{rel}"), Digest::of(&bytes)));
    }
    // The network stops after ~1.5 MB: the first process gets part of the way.
    let proxy = StallingProxy::start(server.port, 1_500_000);
    let mut first = Guard(Some(
        client
            .command(&proxy.url, &["backup", root.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    ));
    wait_until("the network to stall with versions spooled", || {
        proxy.stalled()
            && SpoolStatus::read(&client.spool()).is_ok_and(|s| s.pending > 0)
            && !server.journal().is_empty()
    });
    first.kill(); // SIGKILL, mid-queue
    let left = SpoolStatus::read(&client.spool()).unwrap().pending;
    assert!(left > 0);
    let before = server.journal().len();
    assert!(before < files.len(), "killed before the end");

    // A new process on the same cache folder, straight to the server, with an empty
    // folder: whatever it sends is what the killed process left in the spool.
    let empty = client.dir.path().join("Nothing");
    fs::create_dir(&empty).unwrap();
    let out = client.run(&server.url, &["backup", empty.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(SpoolStatus::read(&client.spool()).unwrap().pending, 0);
    assert!(
        server.journal().len() > before,
        "the spool's leftovers were sent"
    );

    // Then the folder itself: every file exactly once, never twice, none lost.
    let out = client.run(&server.url, &["backup", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    // Every file stored exactly once. A request the killed process had in flight may be
    // finished by the server and also re-sent by the next process (at most one per
    // upload worker); the server records that as a harmless "dup", never a new version.
    let journal = server.journal();
    let mut seen: HashMap<(String, Digest), usize> = HashMap::new();
    let mut dups = 0;
    for e in &journal {
        match e.event {
            EventKind::New => *seen.entry((e.path.clone(), e.sha256)).or_default() += 1,
            EventKind::Dup => dups += 1,
            EventKind::Delete => panic!("nothing was deleted: {e:?}"),
        }
    }
    for f in &files {
        assert_eq!(seen.get(f), Some(&1), "{f:?}");
    }
    assert!(dups <= 4, "{dups} versions sent twice");
    assert_eq!(seen.len(), files.len());
}
