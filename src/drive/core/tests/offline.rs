//! Issue 16 item 9: with the server out of reach, `ls .versions` must say so (a clear
//! errno, a line in `.ects-status.txt`), not a bare "Input/output error".

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Recorder;
use crate::drive::core::{Drive, DriveOptions, ROOT, VERSIONS_DIR, posix};
use crate::drive::sink::{SinkError, StoreSource, VersionSource};
use crate::names::{RelPath, UserName};
use crate::store::{Digest, MemStore, Store, Tree, VersionInfo};

/// A server that can be switched off: while off, every call fails as a network error.
struct Switchable {
    online: AtomicBool,
    store: StoreSource,
}

impl Switchable {
    fn check(&self) -> Result<(), SinkError> {
        if self.online.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(SinkError::Unreachable(
                "cannot reach the ects server at http://127.0.0.1:9: connection refused".into(),
            ))
        }
    }
}

impl VersionSource for Switchable {
    fn tree(&self, dir: Option<&RelPath>) -> Result<Option<Tree>, SinkError> {
        self.check()?;
        self.store.tree(dir)
    }
    fn versions(&self, path: &RelPath) -> Result<Vec<VersionInfo>, SinkError> {
        self.check()?;
        self.store.versions(path)
    }
    fn fetch(&self, path: &RelPath, sha: &Digest, out: &mut dyn Write) -> Result<u64, SinkError> {
        self.check()?;
        self.store.fetch(path, sha, out)
    }
}

#[test]
fn versions_offline_says_the_server_is_out_of_reach() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::new());
    let user = UserName::parse("kim").unwrap();
    store
        .put(
            &user,
            &RelPath::parse("essay.txt").unwrap(),
            &mut &b"v1"[..],
            u64::MAX,
            None,
        )
        .unwrap();
    let source = Arc::new(Switchable {
        online: AtomicBool::new(false),
        store: StoreSource::new(store.clone() as Arc<dyn Store>, user),
    });
    let drive = Drive::new(
        DriveOptions {
            files: dir.path().join("files"),
            index_file: dir.path().join("index.json"),
            versions_cache: dir.path().join("vcache"),
            versions_cache_bytes: 1 << 20,
        },
        Arc::new(Recorder::default()),
        source.clone(),
    )
    .unwrap();
    let vroot = drive
        .lookup(ROOT, VERSIONS_DIR.as_ref())
        .expect(".versions itself is always there")
        .attr
        .ino;

    // `ls .versions` offline: "Network is unreachable", not "Input/output error".
    let e = drive.opendir(vroot).unwrap_err();
    assert_eq!(e.errno(), posix::ENETUNREACH, "{e}");
    assert!(e.to_string().contains("cannot reach"), "{e}");
    let e = drive.lookup(vroot, "essay.txt".as_ref()).unwrap_err();
    assert_eq!(e.errno(), posix::ENETUNREACH, "{e}");
    // ... and the status file says why.
    let status = drive.status_text();
    assert!(
        status.contains(".versions: the server is out of reach since"),
        "{status}"
    );
    assert!(status.contains("Saving works as usual"), "{status}");

    // The server answers again: the listing works and the note is gone.
    source.online.store(true, Ordering::SeqCst);
    let fh = drive.opendir(vroot).unwrap();
    let names: Vec<_> = drive
        .readdir(fh)
        .unwrap()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    drive.releasedir(fh);
    assert!(names.iter().any(|n| n == "essay.txt"), "{names:?}");
    assert!(!drive.status_text().contains("out of reach"));
}

/// A version already in the local cache opens offline, and opening it does not make
/// the drive claim the server answers again: only a real answer from it does.
#[test]
fn a_cached_version_opens_offline_without_claiming_the_server_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::new());
    let user = UserName::parse("kim").unwrap();
    store
        .put(
            &user,
            &RelPath::parse("essay.txt").unwrap(),
            &mut &b"v1"[..],
            u64::MAX,
            None,
        )
        .unwrap();
    store
        .put(
            &user,
            &RelPath::parse("Docs/b.txt").unwrap(),
            &mut &b"b"[..],
            u64::MAX,
            None,
        )
        .unwrap();
    let source = Arc::new(Switchable {
        online: AtomicBool::new(true),
        store: StoreSource::new(store.clone() as Arc<dyn Store>, user),
    });
    let drive = Drive::new(
        DriveOptions {
            files: dir.path().join("files"),
            index_file: dir.path().join("index.json"),
            versions_cache: dir.path().join("vcache"),
            versions_cache_bytes: 1 << 20,
        },
        Arc::new(Recorder::default()),
        source.clone(),
    )
    .unwrap();
    let vroot = drive.lookup(ROOT, VERSIONS_DIR.as_ref()).unwrap().attr.ino;
    let docs = drive.lookup(vroot, "Docs".as_ref()).unwrap().attr.ino;
    let file = drive.lookup(vroot, "essay.txt".as_ref()).unwrap().attr.ino;
    let fh = drive.opendir(file).unwrap();
    let name = drive
        .readdir(fh)
        .unwrap()
        .iter()
        .map(|e| e.name.clone())
        .find(|n| n != "." && n != "..")
        .expect("one version");
    drive.releasedir(fh);
    let version = drive.lookup(file, name.as_ref()).unwrap().attr.ino;
    let read = |drive: &Drive| {
        let o = drive.open(version, posix::O_RDONLY, None).unwrap();
        let bytes = drive.read(o.fh, 0, 16).unwrap();
        drive.release(o.fh).unwrap();
        bytes
    };
    assert_eq!(read(&drive), b"v1", "fetched into the cache");

    source.online.store(false, Ordering::SeqCst);
    // A folder not listed yet needs the server: now it is known to be out of reach.
    let e = drive.opendir(docs).unwrap_err();
    assert_eq!(e.errno(), posix::ENETUNREACH);
    assert_eq!(read(&drive), b"v1", "the cached copy opens offline");
    let status = drive.status_text();
    assert!(status.contains("out of reach"), "{status}");
}
