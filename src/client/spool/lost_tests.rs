//! A version the spool cannot keep is never dropped in silence (issue 9 item 1): a
//! spool-side failure under a live capture is told apart from a vanished source and
//! shows in the live status and, after a commit, in `ects status`'s read of the journal.

use std::sync::Arc;

use super::*;
use crate::client::upload::StoreUploader;
use crate::drive::sink::{SinkError, VersionSink};
use crate::names::UserName;
use crate::store::MemStore;

fn open(dir: &Path) -> Spool {
    let store = Arc::new(MemStore::new());
    let uploader = Arc::new(StoreUploader::new(store, UserName::parse("u").unwrap()));
    Spool::open(dir, uploader, SpoolOptions::default()).unwrap()
}

fn rel(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

#[test]
fn a_removed_spool_folder_is_a_lost_version_not_a_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let spool = open(&dir);
    let src = tmp.path().join("essay.txt");
    fs::write(&src, b"my essay").unwrap();
    fs::remove_dir_all(dir.join(CAPTURES)).unwrap();

    let sink: &dyn VersionSink = &spool;
    match sink.capture(&rel("essay.txt"), &src) {
        Err(SinkError::Spool { errno, message }) => {
            assert_eq!(errno, Some(libc::ENOENT));
            assert!(message.contains("writing a capture"), "{message}");
        }
        other => panic!("expected a spool failure, got {other:?}"),
    }
    let text = sink.status_text();
    assert!(text.contains("Versions NOT saved: 1"), "{text}");
    assert!(text.contains("essay.txt"), "{text}");

    // Another process (`ects status`) sees it once the record is committed.
    spool.flush().unwrap();
    fs::create_dir(dir.join(CAPTURES)).unwrap();
    // The flush has nothing to wait for; give the committer its record.
    let deadline = Instant::now() + Duration::from_secs(10);
    while SpoolStatus::read(&dir).unwrap().lost.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the lost record never reached the journal"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let read = SpoolStatus::read(&dir).unwrap();
    assert_eq!(read.lost[0].path, "essay.txt");

    // Once the file is captured again its newer content is safe: the warning goes,
    // in memory and in the journal (also across a reopen).
    spool.capture(&rel("essay.txt"), &src).unwrap();
    assert!(spool.status().lost.is_empty());
    assert_eq!(spool.drain(Duration::from_secs(30)), 0);
    drop(spool);
    assert!(SpoolStatus::read(&dir).unwrap().lost.is_empty());
    assert!(open(&dir).status().lost.is_empty());
}

#[test]
fn a_missing_source_is_still_a_source_error() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(&tmp.path().join("spool"));
    let sink: &dyn VersionSink = &spool;
    match sink.capture(&rel("gone.txt"), &tmp.path().join("gone.txt")) {
        Err(SinkError::Read(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
        other => panic!("expected a read failure, got {other:?}"),
    }
    assert!(spool.status().lost.is_empty());
}

/// A spool on a full disk: a 64 KiB tmpfs (tests run as root; skipped otherwise).
#[cfg(target_os = "linux")]
#[test]
fn a_full_spool_disk_is_a_lost_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    fs::create_dir(&dir).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot mount a tmpfs (not root?)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(dir.clone());
    let spool = open(&dir);
    let src = tmp.path().join("big.bin");
    fs::write(&src, vec![7u8; 1 << 20]).unwrap();
    let sink: &dyn VersionSink = &spool;
    match sink.capture(&rel("big.bin"), &src) {
        Err(SinkError::Spool { errno, .. }) => assert_eq!(errno, Some(libc::ENOSPC)),
        other => panic!("expected ENOSPC from the spool, got {other:?}"),
    }
    assert_eq!(spool.status().lost.len(), 1);
    assert!(sink.status_text().contains("big.bin"));
    // Nothing half-written stays behind.
    assert_eq!(fs::read_dir(dir.join(CAPTURES)).unwrap().count(), 0);
    drop(spool);
}
