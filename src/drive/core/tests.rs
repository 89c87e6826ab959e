//! The core's rules, exercised without a mount: the calls a kernel would make.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

mod model;
mod offline;
#[cfg(unix)]
mod private;
mod windows_ops;
use crate::drive::sink::{SinkError, StoreSource, VersionSink};
use crate::names::{RelPath, UserName};
use crate::store::{Digest, MemStore, Store};

/// Records every capture: (path, bytes at the moment of capture).
#[derive(Default)]
struct Recorder {
    captures: Mutex<Vec<(String, Vec<u8>)>>,
    store: Option<(Arc<MemStore>, UserName)>,
    /// When set, a capture of this path meets the test at the first barrier and waits
    /// at the second: lets a test act while a capture is under way.
    gate: Mutex<Option<(String, Arc<Barriers>)>>,
}

/// Where a gated capture meets the test, and where it waits to go on.
type Barriers = (std::sync::Barrier, std::sync::Barrier);

impl Recorder {
    fn taken(&self) -> Vec<(String, Vec<u8>)> {
        self.captures.lock().unwrap().clone()
    }
}

impl VersionSink for Recorder {
    fn capture(&self, path: &RelPath, source: &Path) -> std::result::Result<Digest, SinkError> {
        let bytes = std::fs::read(source).map_err(SinkError::Read)?;
        let gate = self.gate.lock().unwrap().clone();
        if let Some((gated, barriers)) = gate
            && gated == path.as_str()
        {
            barriers.0.wait();
            barriers.1.wait();
        }
        if let Some((store, user)) = &self.store {
            store
                .put(user, path, &mut &bytes[..], u64::MAX, None)
                .unwrap();
        }
        self.captures
            .lock()
            .unwrap()
            .push((path.to_string(), bytes.clone()));
        Ok(Digest::of(&bytes))
    }
    fn flush(&self) -> std::result::Result<(), SinkError> {
        Ok(())
    }
    fn drain(&self, _timeout: Duration) -> usize {
        0
    }
    fn pending(&self) -> usize {
        0
    }
    fn status_text(&self) -> String {
        "recorder\n".into()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    rec: Arc<Recorder>,
    drive: Drive,
    store: Arc<MemStore>,
    user: UserName,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = Arc::new(MemStore::new());
    let user = UserName::parse("kim").unwrap();
    let rec = Arc::new(Recorder {
        captures: Mutex::default(),
        store: Some((store.clone(), user.clone())),
        gate: Mutex::default(),
    });
    let source = Arc::new(StoreSource::new(
        store.clone() as Arc<dyn Store>,
        user.clone(),
    ));
    let drive = Drive::new(
        DriveOptions {
            files: root.join("files"),
            index_file: root.join("index.json"),
            versions_cache: root.join("vcache"),
            versions_cache_bytes: 1 << 20,
        },
        rec.clone(),
        source,
    )
    .unwrap();
    Fixture {
        _dir: dir,
        root,
        rec,
        drive,
        store,
        user,
    }
}

const W: i32 = posix::O_WRONLY;
const RW: i32 = posix::O_RDWR;

impl Fixture {
    fn create(&self, parent: Ino, name: &str) -> (Ino, Fh) {
        let (e, o) = self
            .drive
            .create(parent, OsStr::new(name), 0o644, W, Some(1))
            .unwrap();
        (e.attr.ino, o.fh)
    }
    fn write(&self, fh: Fh, offset: u64, data: &[u8]) {
        assert_eq!(
            self.drive.write(fh, offset, data, false).unwrap(),
            data.len() as u32
        );
    }
    /// close(): flush then release, as the kernel does for the last descriptor.
    fn close(&self, fh: Fh) {
        self.drive.flush(fh, Some(1)).unwrap();
        self.drive.release(fh).unwrap();
    }
    fn save(&self, parent: Ino, name: &str, data: &[u8]) -> Ino {
        let (ino, fh) = self.create(parent, name);
        self.write(fh, 0, data);
        self.close(fh);
        ino
    }
    fn lookup(&self, parent: Ino, name: &str) -> Result<Entry> {
        self.drive.lookup(parent, OsStr::new(name))
    }
    fn taken(&self) -> Vec<(String, Vec<u8>)> {
        self.rec.taken()
    }
}

fn v(path: &str, data: &[u8]) -> (String, Vec<u8>) {
    (path.to_owned(), data.to_vec())
}

#[test]
fn a_version_is_taken_when_the_writer_closes() {
    let f = fixture();
    let ino = f.save(ROOT, "essay.txt", b"draft 1");
    assert_eq!(f.taken(), vec![v("essay.txt", b"draft 1")]);
    // Opening and closing again without a change takes nothing.
    let o = f.drive.open(ino, RW, Some(1)).unwrap();
    f.close(o.fh);
    let o = f.drive.open(ino, posix::O_RDONLY, Some(1)).unwrap();
    f.close(o.fh);
    assert_eq!(f.taken().len(), 1);
    // An append is a new version.
    let o = f.drive.open(ino, W | posix::O_APPEND, Some(1)).unwrap();
    f.write(o.fh, 7, b"+");
    f.close(o.fh);
    assert_eq!(f.taken()[1], v("essay.txt", b"draft 1+"));
}

#[test]
fn bytes_written_after_the_close_never_leak_into_the_version() {
    let f = fixture();
    let (ino, fh) = f.create(ROOT, "a.txt");
    f.write(fh, 0, b"one");
    f.drive.flush(fh, Some(1)).unwrap();
    // The next open for writing comes before the first release (the kernel sends
    // releases in the background).
    let o = f.drive.open(ino, W, Some(1)).unwrap();
    f.write(o.fh, 0, b"two");
    f.drive.release(fh).unwrap();
    f.close(o.fh);
    assert_eq!(f.taken(), vec![v("a.txt", b"one"), v("a.txt", b"two")]);
}

#[test]
fn a_forked_child_closing_its_copy_takes_no_version() {
    let f = fixture();
    let (_, fh) = f.create(ROOT, "big.log");
    f.write(fh, 0, b"half");
    // A child process inherited the descriptor and closes it (exec, exit).
    f.drive.flush(fh, Some(999)).unwrap();
    assert!(f.taken().is_empty());
    f.write(fh, 4, b" and the rest");
    f.close(fh);
    assert_eq!(f.taken(), vec![v("big.log", b"half and the rest")]);
}

#[test]
fn two_writers_make_one_version_at_the_last_close() {
    let f = fixture();
    let (ino, h1) = f.create(ROOT, "shared.txt");
    let h2 = f.drive.open(ino, W, Some(1)).unwrap().fh;
    f.write(h1, 0, b"aaaa");
    f.write(h2, 4, b"bbbb");
    f.close(h1);
    assert!(f.taken().is_empty(), "a writer is still open");
    f.close(h2);
    assert_eq!(f.taken(), vec![v("shared.txt", b"aaaabbbb")]);
}

#[test]
fn shell_redirect_dup_close_takes_no_empty_version() {
    let f = fixture();
    f.save(ROOT, "log.txt", b"old");
    let ino = f.lookup(ROOT, "log.txt").unwrap().attr.ino;
    // `echo new > log.txt`: open, truncate through the handle, close the original
    // descriptor (dup2'ed to stdout), write, close stdout.
    let fh = f.drive.open(ino, W, Some(1)).unwrap().fh;
    f.drive
        .setattr(
            ino,
            Some(fh),
            SetAttr {
                size: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    f.drive.flush(fh, Some(1)).unwrap();
    f.write(fh, 0, b"new\n");
    f.drive.flush(fh, Some(1)).unwrap();
    f.drive.release(fh).unwrap();
    assert_eq!(
        f.taken(),
        vec![v("log.txt", b"old"), v("log.txt", b"new\n")]
    );
}

#[test]
fn an_empty_file_gets_its_version_at_release() {
    let f = fixture();
    let (_, fh) = f.create(ROOT, "empty.txt");
    f.drive.flush(fh, Some(1)).unwrap();
    assert!(f.taken().is_empty());
    f.drive.release(fh).unwrap();
    assert_eq!(f.taken(), vec![v("empty.txt", b"")]);
}

#[test]
fn rename_onto_a_name_versions_the_destination() {
    let f = fixture();
    f.save(ROOT, "doc.docx", b"v1");
    // Word: new content in a temp file, original renamed aside, temp renamed onto the
    // name, old copy deleted, with a lock file alongside.
    f.save(ROOT, "~$doc.docx", b"lock");
    f.save(ROOT, "~WRD0000.tmp", b"v2");
    f.drive
        .rename(
            ROOT,
            OsStr::new("doc.docx"),
            ROOT,
            OsStr::new("~WRL0001.tmp"),
            0,
        )
        .unwrap();
    f.drive
        .rename(
            ROOT,
            OsStr::new("~WRD0000.tmp"),
            ROOT,
            OsStr::new("doc.docx"),
            0,
        )
        .unwrap();
    f.drive.unlink(ROOT, OsStr::new("~WRL0001.tmp")).unwrap();
    f.drive.unlink(ROOT, OsStr::new("~$doc.docx")).unwrap();
    assert_eq!(f.taken(), vec![v("doc.docx", b"v1"), v("doc.docx", b"v2")]);
}

#[test]
fn a_rename_during_a_capture_still_versions_the_destination() {
    // FUSE runs a handle's release and a rename on different threads: a rename onto a
    // versioned name can arrive while the release's capture (of the old name) runs.
    // The rename's request must not be dropped because a capture was under way.
    let f = fixture();
    let (_, fh) = f.create(ROOT, "draft.txt");
    f.write(fh, 0, b"v1");
    f.drive.flush(fh, Some(1)).unwrap();
    // Written after the close (a dup'ed descriptor): the release captures it.
    f.write(fh, 0, b"v2");
    let barriers = Arc::new((std::sync::Barrier::new(2), std::sync::Barrier::new(2)));
    *f.rec.gate.lock().unwrap() = Some(("draft.txt".into(), barriers.clone()));
    std::thread::scope(|s| {
        let releasing = s.spawn(|| f.drive.release(fh).unwrap());
        barriers.0.wait(); // the release's capture of draft.txt is under way
        f.drive
            .rename(
                ROOT,
                OsStr::new("draft.txt"),
                ROOT,
                OsStr::new("final.txt"),
                0,
            )
            .unwrap();
        barriers.1.wait();
        releasing.join().unwrap();
    });
    assert_eq!(
        f.taken(),
        vec![
            v("draft.txt", b"v1"),
            v("draft.txt", b"v2"),
            v("final.txt", b"v2")
        ]
    );
}

#[test]
fn rename_of_a_folder_versions_every_file_under_its_new_name() {
    let f = fixture();
    let d = f
        .drive
        .mkdir(ROOT, OsStr::new("d"), 0o755)
        .unwrap()
        .attr
        .ino;
    f.save(d, "x.txt", b"x");
    f.save(d, "y.swp", b"swap");
    f.drive
        .rename(ROOT, OsStr::new("d"), ROOT, OsStr::new("e"), 0)
        .unwrap();
    assert_eq!(f.taken(), vec![v("d/x.txt", b"x"), v("e/x.txt", b"x")]);
}

#[test]
fn truncate_by_path_takes_a_version_only_outside_a_handle() {
    let f = fixture();
    let ino = f.save(ROOT, "t.txt", b"0123456789");
    f.drive
        .setattr(
            ino,
            None,
            SetAttr {
                size: Some(4),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(f.taken()[1], v("t.txt", b"0123"));
    // With a writer open, the version waits for its close.
    let fh = f.drive.open(ino, W, Some(1)).unwrap().fh;
    f.drive
        .setattr(
            ino,
            None,
            SetAttr {
                size: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(f.taken().len(), 2);
    f.close(fh);
    assert_eq!(f.taken()[2], v("t.txt", b"01"));
}

#[test]
fn ignored_names_are_kept_but_never_versioned() {
    let f = fixture();
    for name in [
        "~$doc.docx",
        "~WRL0001.tmp",
        "x.tmp",
        ".~lock.a.odt#",
        ".a.txt.swp",
        ".DS_Store",
        "Thumbs.db",
        "desktop.ini",
        ".goutputstream-XYZ",
    ] {
        f.save(ROOT, name, b"scratch");
        assert!(f.lookup(ROOT, name).is_ok());
    }
    assert!(f.taken().is_empty(), "{:?}", f.taken());
    // Renaming onto an ignored name takes nothing either.
    f.save(ROOT, "keep.txt", b"k");
    f.drive
        .rename(
            ROOT,
            OsStr::new("keep.txt"),
            ROOT,
            OsStr::new("keep.tmp"),
            0,
        )
        .unwrap();
    assert_eq!(f.taken(), vec![v("keep.txt", b"k")]);
}

#[test]
fn reconcile_versions_what_changed_while_unmounted() {
    let f = fixture();
    f.save(ROOT, "a.txt", b"a");
    f.drive.save_index().unwrap();
    // Edits made behind the drive's back, as if while unmounted.
    std::fs::write(f.root.join("files/a.txt"), b"changed").unwrap();
    std::fs::write(f.root.join("files/new.txt"), b"new").unwrap();
    std::fs::write(f.root.join("files/skip.tmp"), b"tmp").unwrap();
    let again = Drive::new(
        DriveOptions {
            files: f.root.join("files"),
            index_file: f.root.join("index.json"),
            versions_cache: f.root.join("vcache"),
            versions_cache_bytes: 1 << 20,
        },
        f.rec.clone(),
        Arc::new(StoreSource::new(
            f.store.clone() as Arc<dyn Store>,
            f.user.clone(),
        )),
    )
    .unwrap();
    assert_eq!(again.reconcile(), 2);
    let mut taken = f.taken();
    taken.sort();
    assert_eq!(
        taken,
        vec![
            v("a.txt", b"a"),
            v("a.txt", b"changed"),
            v("new.txt", b"new")
        ]
    );
    // Nothing changed since: a second reconcile takes nothing.
    assert_eq!(again.reconcile(), 0);
}

#[test]
fn versions_tree_lists_and_reads_every_version() {
    let f = fixture();
    let d = f
        .drive
        .mkdir(ROOT, OsStr::new("Docs"), 0o755)
        .unwrap()
        .attr
        .ino;
    let ino = f.save(d, "r.md", b"one");
    let o = f.drive.open(ino, W, Some(1)).unwrap();
    f.write(o.fh, 0, b"two");
    f.close(o.fh);
    f.drive.unlink(d, OsStr::new("r.md")).unwrap();

    let vroot = f.lookup(ROOT, VERSIONS_DIR).unwrap();
    assert_eq!(vroot.attr.kind, FileKind::Dir);
    let vdocs = f.lookup(vroot.attr.ino, "Docs").unwrap().attr.ino;
    let vfile = f.lookup(vdocs, "r.md").unwrap().attr.ino;
    let dh = f.drive.opendir(vfile).unwrap();
    let names: Vec<String> = f
        .drive
        .readdir(dh)
        .unwrap()
        .iter()
        .skip(2)
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect();
    f.drive.releasedir(dh);
    assert_eq!(names.len(), 2, "{names:?}");
    let path = RelPath::parse("Docs/r.md").unwrap();
    let stored = f.store.versions(&f.user, &path).unwrap();
    let mut contents = Vec::new();
    for info in &stored {
        let name = version_name(&path, info);
        assert!(names.contains(&name), "{name} not in {names:?}");
        assert!(name.ends_with(&format!("_{}.md", &info.sha256.to_hex()[..8])));
        let e = f.lookup(vfile, &name).unwrap();
        assert_eq!(e.attr.size, info.size);
        assert_eq!(e.attr.mtime, SystemTime::from(info.stored_at));
        let o = f.drive.open(e.attr.ino, posix::O_RDONLY, Some(1)).unwrap();
        contents.push(f.drive.read(o.fh, 0, 100).unwrap());
        f.close(o.fh);
    }
    contents.sort();
    assert_eq!(contents, vec![b"one".to_vec(), b"two".to_vec()]);
}

#[test]
fn every_change_inside_versions_is_refused_with_erofs() {
    let f = fixture();
    f.save(ROOT, "a.txt", b"a");
    let vroot = f.lookup(ROOT, VERSIONS_DIR).unwrap().attr.ino;
    let vfile = f.lookup(vroot, "a.txt").unwrap().attr.ino;
    let info = &f
        .store
        .versions(&f.user, &RelPath::parse("a.txt").unwrap())
        .unwrap()[0];
    let name = version_name(&RelPath::parse("a.txt").unwrap(), info);
    let ver = f.lookup(vfile, &name).unwrap().attr.ino;
    let erofs = Err(DriveError::EROFS);
    assert_eq!(f.drive.open(ver, W, Some(1)).map(|_| ()), erofs);
    assert_eq!(
        f.drive
            .open(ver, posix::O_RDONLY | posix::O_TRUNC, Some(1))
            .map(|_| ()),
        erofs
    );
    assert_eq!(
        f.drive
            .setattr(
                ver,
                None,
                SetAttr {
                    mode: Some(0o777),
                    ..Default::default()
                }
            )
            .map(|_| ()),
        erofs
    );
    assert_eq!(
        f.drive
            .create(vfile, OsStr::new("x"), 0o644, W, Some(1))
            .map(|_| ()),
        erofs
    );
    assert_eq!(
        f.drive.mkdir(vroot, OsStr::new("x"), 0o755).map(|_| ()),
        erofs
    );
    assert_eq!(f.drive.unlink(vfile, OsStr::new(&name)), erofs);
    assert_eq!(f.drive.rmdir(vroot, OsStr::new("a.txt")), erofs);
    assert_eq!(
        f.drive
            .rename(vfile, OsStr::new(&name), ROOT, OsStr::new("b"), 0),
        erofs
    );
    assert_eq!(
        f.drive
            .rename(ROOT, OsStr::new("a.txt"), vroot, OsStr::new("b"), 0),
        erofs
    );
    assert_eq!(f.drive.unlink(ROOT, OsStr::new(VERSIONS_DIR)), erofs);
    assert_eq!(f.drive.rmdir(ROOT, OsStr::new(VERSIONS_DIR)), erofs);
    assert_eq!(
        f.drive
            .rename(ROOT, OsStr::new("a.txt"), ROOT, OsStr::new(STATUS_FILE), 0),
        erofs
    );
    assert_eq!(f.drive.setxattr(ver, OsStr::new("user.x"), b"1", 0), erofs);
    let status = f.lookup(ROOT, STATUS_FILE).unwrap().attr.ino;
    assert_eq!(f.drive.open(status, RW, Some(1)).map(|_| ()), erofs);
    // Nothing changed.
    assert_eq!(
        f.store
            .versions(&f.user, &RelPath::parse("a.txt").unwrap())
            .unwrap()
            .len(),
        1
    );
    assert_eq!(f.taken().len(), 1);
}

#[test]
fn status_file_reads_what_the_sink_reports() {
    let f = fixture();
    let e = f.lookup(ROOT, STATUS_FILE).unwrap();
    let o = f.drive.open(e.attr.ino, posix::O_RDONLY, Some(1)).unwrap();
    assert!(o.direct_io);
    let text = f.drive.read(o.fh, 0, 4096).unwrap();
    assert_eq!(text, b"recorder\n");
    f.close(o.fh);
}

#[test]
fn names_that_cannot_be_stored_are_reported_not_dropped_silently() {
    // A name the platform's file system takes but the store refuses: a backslash on
    // Unix; on Windows (which refuses a backslash itself) a name of 100 characters
    // that NTFS counts as 100 but that is 300 bytes of UTF-8, over the store's 255.
    let name = if cfg!(windows) {
        "日".repeat(100)
    } else {
        "back\\slash.txt".to_owned()
    };
    let f = fixture();
    f.save(ROOT, &name, b"x");
    assert!(f.taken().is_empty());
    let problems = f.drive.problems();
    assert_eq!(problems.len(), 1);
    assert!(f.drive.status_text().contains(&name));
    let mut out = Vec::new();
    writeln!(out, "{}", problems[0].why).unwrap();
    assert!(!out.is_empty());
}
