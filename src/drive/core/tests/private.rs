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
