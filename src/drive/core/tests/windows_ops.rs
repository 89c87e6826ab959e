//! What the WinFsp adapter used to decide itself, now in the core (issue 10 item 3):
//! the path walker, "may this be deleted", appends and paging writes, the read-only
//! fallback at open, and listings with attributes. Tested here, on Linux.

use std::ffi::{OsStr, OsString};
use std::sync::{Arc, Barrier};

use super::{RW, fixture};
use crate::drive::core::{
    DriveError, FileKind, PathError, ROOT, STATUS_FILE, VERSIONS_DIR, WriteAt, posix, version_name,
};
use crate::names::RelPath;
use crate::store::Store;

fn parts(path: &str) -> Vec<OsString> {
    path.split('\\')
        .filter(|p| !p.is_empty())
        .map(OsString::from)
        .collect()
}

#[test]
fn one_walker_resolves_whole_paths_the_windows_way() {
    let f = fixture();
    let dir = f.drive.mkdir(ROOT, OsStr::new("Essays"), 0o755).unwrap();
    f.save(dir.attr.ino, "Draft.docx", b"hello");
    f.drive.forget(dir.attr.ino, 1);
    let before = f.drive.node_count();

    // Any case finds the entry; the stored spelling comes back.
    let walk = f.drive.walk(&parts("\\ESSAYS\\draft.DOCX")).unwrap();
    assert_eq!(walk.entry.as_ref().unwrap().attr.size, 5);
    assert_eq!(walk.stored, parts("\\Essays\\Draft.docx"));
    assert_eq!(walk.name, "Draft.docx");
    assert_eq!(walk.held.len(), 2);
    drop(walk);
    assert_eq!(
        f.drive.node_count(),
        before,
        "the walk's lookups are forgotten"
    );

    // The root.
    let root = f.drive.walk(&[]).unwrap();
    assert_eq!(root.entry.as_ref().unwrap().attr.ino, ROOT);
    assert_eq!(root.keep(), Some(ROOT));

    // A new name: its folder, and the name as given.
    let walk = f.drive.walk_parent(&parts("\\essays\\New.txt")).unwrap();
    assert!(walk.entry.is_none());
    assert_eq!(walk.name, "New.txt");
    assert_eq!(walk.stored, parts("\\Essays\\New.txt"));
    drop(walk);

    // What went wrong, told apart.
    let err = |r: Result<_, PathError>| r.err().expect("must fail");
    assert!(matches!(
        err(f.drive.walk(&parts("\\Essays\\CON"))),
        PathError::BadName(_)
    ));
    assert!(matches!(
        err(f.drive.walk(&parts("\\Nope\\x.txt"))),
        PathError::NoFolder
    ));
    assert!(matches!(
        err(f.drive.walk_parent(&parts("\\Essays\\Draft.docx\\x.txt"))),
        PathError::NoFolder
    ));
    assert!(matches!(
        err(f.drive.walk(&parts("\\Essays\\missing.txt"))),
        PathError::Drive(e) if e == DriveError::ENOENT
    ));
    assert!(matches!(
        err(f.drive.walk_parent(&[])),
        PathError::Drive(e) if e == DriveError::EACCES
    ));
    // The virtual names answer to any case too, and are not "forbidden".
    let walk = f.drive.walk(&parts("\\.VERSIONS")).unwrap();
    assert_eq!(walk.name, VERSIONS_DIR);
    // A handle keeps the entry's lookup, and only that one.
    let kept = walk.keep().unwrap();
    assert_eq!(f.drive.node_count(), before + 1);
    f.drive.forget(kept, 1);
    assert_eq!(f.drive.node_count(), before);
}

#[test]
fn what_may_be_deleted() {
    let f = fixture();
    let ino = f.save(ROOT, "a.txt", b"v1");
    let dir = f
        .drive
        .mkdir(ROOT, OsStr::new("Full"), 0o755)
        .unwrap()
        .attr
        .ino;
    f.save(dir, "inside.txt", b"x");
    let empty = f
        .drive
        .mkdir(ROOT, OsStr::new("Empty"), 0o755)
        .unwrap()
        .attr
        .ino;

    assert_eq!(f.drive.may_delete(ino), Ok(()));
    assert_eq!(f.drive.may_delete(empty), Ok(()));
    assert_eq!(f.drive.may_delete(dir), Err(DriveError::ENOTEMPTY));
    assert_eq!(f.drive.may_delete(ROOT), Err(DriveError::EACCES));
    let status = f.lookup(ROOT, STATUS_FILE).unwrap().attr.ino;
    assert_eq!(f.drive.may_delete(status), Err(DriveError::EROFS));
    let vroot = f.lookup(ROOT, VERSIONS_DIR).unwrap().attr.ino;
    assert_eq!(f.drive.may_delete(vroot), Err(DriveError::EROFS));
    let vfile = f.lookup(vroot, "a.txt").unwrap().attr.ino;
    assert_eq!(f.drive.may_delete(vfile), Err(DriveError::EROFS));
    // Nothing was deleted by asking.
    assert!(f.root.join("files/a.txt").exists());
    assert!(f.root.join("files/Full/inside.txt").exists());
}

/// Appends from two handles at once (Windows' FILE_APPEND_DATA, `write_to_eof`): the
/// size must be read and written at as one step, or one append overwrites another.
#[test]
fn appends_at_once_never_overwrite_each_other() {
    const EACH: usize = 2000;
    let f = Arc::new(fixture());
    let ino = f.save(ROOT, "log.txt", b"");
    let start = Arc::new(Barrier::new(2));
    let threads: Vec<_> = [b'a', b'b']
        .into_iter()
        .map(|byte| {
            let (f, start) = (f.clone(), start.clone());
            std::thread::spawn(move || {
                let fh = f.drive.open(ino, RW, Some(1)).unwrap().fh;
                start.wait();
                for _ in 0..EACH {
                    let n = f
                        .drive
                        .write_at(fh, WriteAt::EndOfFile, &[byte; 7])
                        .unwrap();
                    assert_eq!(n, 7);
                }
                f.close(fh);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let data = std::fs::read(f.root.join("files/log.txt")).unwrap();
    assert_eq!(data.len(), 2 * EACH * 7, "appends were lost");
    for chunk in data.chunks(7) {
        assert!(
            chunk.iter().all(|&b| b == chunk[0]),
            "torn append: {chunk:?}"
        );
    }
}

#[test]
fn paging_writes_never_extend_and_offsets_write_where_asked() {
    let f = fixture();
    let ino = f.save(ROOT, "a.bin", b"0123456789");
    let fh = f.drive.open(ino, RW, Some(1)).unwrap().fh;
    assert_eq!(
        f.drive
            .write_at(fh, WriteAt::WithinSize(8), b"abcdef")
            .unwrap(),
        2
    );
    assert_eq!(
        f.drive
            .write_at(fh, WriteAt::WithinSize(10), b"zz")
            .unwrap(),
        0
    );
    assert_eq!(f.drive.write_at(fh, WriteAt::Offset(0), b"X").unwrap(), 1);
    assert_eq!(f.drive.write_at(fh, WriteAt::EndOfFile, b"!").unwrap(), 1);
    f.close(fh);
    assert_eq!(
        std::fs::read(f.root.join("files/a.bin")).unwrap(),
        b"X1234567ab!"
    );
}

/// Windows grants more than a program needs (MAXIMUM_ALLOWED): opening something
/// read-only for writing gets a read-only handle, and writing through it is refused.
#[test]
fn an_open_for_writing_of_something_read_only_falls_back_to_reading() {
    let f = fixture();
    f.save(ROOT, "a.txt", b"v1");
    let status = f.lookup(ROOT, STATUS_FILE).unwrap().attr.ino;
    let (o, writable) = f.drive.open_for(status, true, None).unwrap();
    assert!(!writable);
    assert_eq!(
        f.drive.write_at(o.fh, WriteAt::Offset(0), b"x"),
        Err(DriveError::EACCES)
    );
    assert!(!f.drive.read(o.fh, 0, 4096).unwrap().is_empty());
    f.drive.release(o.fh).unwrap();

    let path = RelPath::parse("a.txt").unwrap();
    let info = f.store.versions(&f.user, &path).unwrap()[0].clone();
    let vroot = f.lookup(ROOT, VERSIONS_DIR).unwrap().attr.ino;
    let vfile = f.lookup(vroot, "a.txt").unwrap().attr.ino;
    let v = f
        .lookup(vfile, &version_name(&path, &info))
        .unwrap()
        .attr
        .ino;
    let (o, writable) = f.drive.open_for(v, true, None).unwrap();
    assert!(!writable);
    assert_eq!(f.drive.read(o.fh, 0, 10).unwrap(), b"v1");
    f.drive.release(o.fh).unwrap();

    // A writable file opens for writing; a reader stays a reader.
    let ino = f.lookup(ROOT, "a.txt").unwrap().attr.ino;
    let (o, writable) = f.drive.open_for(ino, true, None).unwrap();
    assert!(writable);
    f.close(o.fh);
    let (o, writable) = f.drive.open_for(ino, false, None).unwrap();
    assert!(!writable);
    assert_eq!(
        f.drive.write_at(o.fh, WriteAt::EndOfFile, b"x"),
        Err(DriveError::EACCES)
    );
    f.drive.release(o.fh).unwrap();
    let _ = posix::O_RDONLY;
}

/// A listing carries every entry's attributes, without a lookup per entry.
#[test]
fn listings_come_with_attributes_and_no_lookups() {
    let f = fixture();
    f.save(ROOT, "a.txt", b"12345");
    let sub = f
        .drive
        .mkdir(ROOT, OsStr::new("Sub"), 0o755)
        .unwrap()
        .attr
        .ino;
    f.drive.forget(sub, 1);
    let before = f.drive.node_count();
    let list = f.drive.list_dir(ROOT).unwrap();
    assert_eq!(f.drive.node_count(), before, "the listing registered nodes");
    let get = |name: &str| {
        list.iter()
            .find(|(e, _)| e.name == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("{name} not listed"))
    };
    assert_eq!(get("a.txt").size, 5);
    assert_eq!(get("a.txt").kind, FileKind::File);
    assert_eq!(get("Sub").kind, FileKind::Dir);
    assert_eq!(get(VERSIONS_DIR).kind, FileKind::Dir);
    assert_eq!(get(VERSIONS_DIR).perm, 0o555);
    assert_eq!(get(STATUS_FILE).perm, 0o444);
    assert_eq!(get(".").ino, ROOT);

    // Inside `.versions`: one folder per file, holding its versions with their size.
    let vroot = f.lookup(ROOT, VERSIONS_DIR).unwrap().attr.ino;
    let vfile = f.lookup(vroot, "a.txt").unwrap().attr.ino;
    let versions = f.drive.list_dir(vfile).unwrap();
    let files: Vec<_> = versions
        .iter()
        .filter(|(e, _)| e.name != "." && e.name != "..")
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].1.size, 5);
    assert_eq!(files[0].1.kind, FileKind::File);
    let in_root = f.drive.list_dir(vroot).unwrap();
    assert!(
        in_root
            .iter()
            .any(|(e, a)| e.name == "a.txt" && a.kind == FileKind::Dir)
    );
}

/// Windows' allocation size cuts a file only when below its end.
#[test]
fn an_allocation_size_cuts_only_below_the_end() {
    let f = fixture();
    let ino = f.save(ROOT, "a.bin", b"0123456789");
    let fh = f.drive.open(ino, RW, Some(1)).unwrap().fh;
    f.drive.set_allocation(fh, 4096).unwrap();
    assert_eq!(f.drive.getattr(ino, Some(fh)).unwrap().attr.size, 10);
    f.drive.set_allocation(fh, 4).unwrap();
    assert_eq!(f.drive.getattr(ino, Some(fh)).unwrap().attr.size, 4);
    f.close(fh);
    let (o, _) = f.drive.open_for(ino, false, None).unwrap();
    assert_eq!(f.drive.set_allocation(o.fh, 0), Err(DriveError::EACCES));
    f.drive.release(o.fh).unwrap();
    assert_eq!(std::fs::read(f.root.join("files/a.bin")).unwrap(), b"0123");
}

/// Windows' read-only attribute flips the write bits and keeps the rest (a script's
/// execute bits survive a round trip through Explorer's "Read-only" box).
#[test]
fn the_read_only_attribute_keeps_the_other_mode_bits() {
    use crate::drive::core::attr::readonly_mode;
    assert_eq!(readonly_mode(0o755, true), Some(0o555));
    assert_eq!(readonly_mode(0o555, false), Some(0o755));
    assert_eq!(readonly_mode(0o644, true), Some(0o444));
    assert_eq!(readonly_mode(0o444, false), Some(0o644));
    assert_eq!(readonly_mode(0o444, true), None);
    assert_eq!(readonly_mode(0o644, false), None);
}
