//! Issue 15: nothing the drive keeps for itself may be changed by another OS user, and
//! what `.versions` shows is what the store holds. Unix modes, so Unix only.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;

use super::{W, fixture};
use crate::drive::core::{ROOT, VERSIONS_DIR, posix, version_name};
use crate::names::RelPath;
use crate::store::Store;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Under the test runner's umask (022), a creator asking for 0664 / 0775 (its own
/// umask 002, as the kernel passes it) must get exactly that, not the drive's umask.
#[test]
fn created_files_and_folders_get_the_mode_the_kernel_asked_for() {
    let f = fixture();
    let (e, o) = f
        .drive
        .create(ROOT, OsStr::new("shared.txt"), 0o664, W, Some(1))
        .unwrap();
    f.close(o.fh);
    assert_eq!(e.attr.perm, 0o664);
    assert_eq!(mode(&f.root.join("files/shared.txt")), 0o664);
    f.drive.mkdir(ROOT, OsStr::new("Group"), 0o775).unwrap();
    assert_eq!(mode(&f.root.join("files/Group")), 0o775);
}

#[test]
fn the_versions_cache_and_the_index_are_private() {
    let f = fixture();
    let ino = f.save(ROOT, "a.txt", b"mine");
    let _ = ino;
    f.drive.save_index().unwrap();
    assert_eq!(mode(&f.root.join("index.json")), 0o600);
    let path = RelPath::parse("a.txt").unwrap();
    let info = f.store.versions(&f.user, &path).unwrap()[0].clone();
    let vroot = f.lookup(ROOT, VERSIONS_DIR).unwrap().attr.ino;
    let vfile = f.lookup(vroot, "a.txt").unwrap().attr.ino;
    let v = f
        .lookup(vfile, &version_name(&path, &info))
        .unwrap()
        .attr
        .ino;
    let o = f.drive.open(v, posix::O_RDONLY, Some(1)).unwrap();
    f.drive.release(o.fh).unwrap();
    assert_eq!(mode(&f.root.join("vcache")), 0o700);
    assert_eq!(
        mode(&f.root.join("vcache").join(info.sha256.to_hex())),
        0o600
    );
}

/// Another user rewrote a cached version (issue 15: `.versions` then showed forged
/// bytes): the drive must show the stored bytes again, never the forged ones.
#[test]
fn a_tampered_cached_version_is_never_shown() {
    let f = fixture();
    f.save(ROOT, "essay.txt", b"what I wrote");
    let path = RelPath::parse("essay.txt").unwrap();
    let info = f.store.versions(&f.user, &path).unwrap()[0].clone();
    let vroot = f.lookup(ROOT, VERSIONS_DIR).unwrap().attr.ino;
    let vfile = f.lookup(vroot, "essay.txt").unwrap().attr.ino;
    let v = f
        .lookup(vfile, &version_name(&path, &info))
        .unwrap()
        .attr
        .ino;
    let read = || {
        let o = f.drive.open(v, posix::O_RDONLY, Some(1)).unwrap();
        let bytes = f.drive.read(o.fh, 0, 100).unwrap();
        f.drive.release(o.fh).unwrap();
        bytes
    };
    assert_eq!(read(), b"what I wrote");
    let cached = f.root.join("vcache").join(info.sha256.to_hex());
    std::fs::write(&cached, b"planted by someone").unwrap();
    assert_eq!(read(), b"what I wrote");
    assert_eq!(std::fs::read(&cached).unwrap(), b"what I wrote");
}

/// Issue 15 item 8: the drive checks a file is a regular file, then the spool opens it
/// to capture. A symlink renamed into place in between must not make the drive upload
/// what it points to, a file from outside the drive.
#[test]
fn a_symlink_swapped_in_before_the_capture_is_not_uploaded() {
    for folder in [None, Some("Essays")] {
        swap_in_a_symlink(folder);
    }
}

fn swap_in_a_symlink(folder: Option<&'static str>) {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::client::{Spool, SpoolOptions, StoreUploader};
    use crate::drive::core::{Drive, DriveOptions};
    use crate::drive::sink::{SinkError, StoreSource, VersionSink};
    use crate::names::UserName;
    use crate::store::{Digest, MemStore};

    /// The real spool, with the attacker's rename run just before it opens the file:
    /// the file itself, or (with `folder`) the folder it is in, becomes a symlink to
    /// the outside.
    struct SwapThenSpool {
        spool: Spool,
        outside: std::path::PathBuf,
        files: std::path::PathBuf,
        folder: Option<&'static str>,
        /// The swap happens once, before the first capture.
        swapped: std::sync::atomic::AtomicBool,
    }
    impl VersionSink for SwapThenSpool {
        fn capture(&self, path: &RelPath, source: &std::path::Path) -> Result<Digest, SinkError> {
            let first = !self.swapped.swap(true, std::sync::atomic::Ordering::SeqCst);
            match self.folder {
                _ if !first => {}
                None => {
                    let target = self.files.join(path.as_str());
                    let link = target.with_extension("link");
                    std::os::unix::fs::symlink(self.outside.join("secret.txt"), &link).unwrap();
                    std::fs::rename(&link, &target).unwrap();
                }
                Some(folder) => {
                    let dir = self.files.join(folder);
                    std::fs::rename(&dir, dir.with_extension("moved")).unwrap();
                    std::os::unix::fs::symlink(&self.outside, &dir).unwrap();
                }
            }
            VersionSink::capture(&self.spool, path, source)
        }
        fn flush(&self) -> Result<(), SinkError> {
            VersionSink::flush(&self.spool)
        }
        fn drain(&self, timeout: Duration) -> usize {
            self.spool.drain(timeout)
        }
        fn pending(&self) -> usize {
            VersionSink::pending(&self.spool)
        }
        fn status_text(&self) -> String {
            VersionSink::status_text(&self.spool)
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("teacher");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"answers").unwrap();
    std::fs::write(outside.join("essay.txt"), b"answers").unwrap();
    let store = Arc::new(MemStore::new());
    let user = UserName::parse("kim").unwrap();
    let spool = Spool::open(
        &dir.path().join("spool"),
        Arc::new(StoreUploader::new(store.clone(), user.clone())),
        SpoolOptions::default(),
    )
    .unwrap();
    let sink = Arc::new(SwapThenSpool {
        spool,
        outside,
        files: dir.path().join("files"),
        folder,
        swapped: Default::default(),
    });
    let drive = Drive::new(
        DriveOptions {
            files: dir.path().join("files"),
            index_file: dir.path().join("index.json"),
            versions_cache: dir.path().join("vcache"),
            versions_cache_bytes: 1 << 20,
        },
        sink.clone(),
        Arc::new(StoreSource::new(store.clone(), user.clone())),
    )
    .unwrap();
    let parent = match folder {
        Some(name) => drive.mkdir(ROOT, OsStr::new(name), 0o755).unwrap().attr.ino,
        None => ROOT,
    };
    let (_, o) = drive
        .create(parent, OsStr::new("essay.txt"), 0o644, W, Some(1))
        .unwrap();
    drive.write(o.fh, 0, b"my essay", false).unwrap();
    drive.flush(o.fh, Some(1)).unwrap();
    drive.release(o.fh).unwrap();

    assert_eq!(sink.drain(Duration::from_secs(60)), 0);
    let rel = match folder {
        Some(name) => format!("{name}/essay.txt"),
        None => "essay.txt".into(),
    };
    let path = RelPath::parse(&rel).unwrap();
    for v in store.versions(&user, &path).unwrap() {
        let (_, mut r) = store.open(&user, &path, &v.sha256).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut bytes).unwrap();
        assert_ne!(
            bytes, b"answers",
            "{folder:?}: a file outside the drive was uploaded"
        );
    }
    if folder.is_none() {
        let problems = drive.problems();
        let problem = problems.iter().find(|p| p.path == rel);
        let why = &problem.expect("the skipped capture is visible").why;
        // Told under the file's own name, not the path the drive read it by.
        assert!(!why.contains("/proc/"), "{why}");
    }
}

/// Issue 14: the kernel may remember a missing name in the backing folder (the drive is
/// its only writer), never in `.versions`, where a new version must show within a second.
#[test]
fn missing_names_are_remembered_only_in_the_backing_folder() {
    let f = fixture();
    assert_eq!(
        f.drive.negative_ttl(ROOT),
        Some(crate::drive::core::BACKING_TTL)
    );
    let vroot = f.lookup(ROOT, VERSIONS_DIR).unwrap().attr.ino;
    assert_eq!(f.drive.negative_ttl(vroot), None);
    f.save(ROOT, "later.txt", b"v1");
    let vfile = f.lookup(vroot, "later.txt").unwrap().attr.ino;
    assert_eq!(f.drive.negative_ttl(vfile), None);
}
