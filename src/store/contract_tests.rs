//! The store contract, run against every backend: whatever passes here behaves the
//! same behind the server and the drive.

use std::sync::Arc;

use super::*;

fn user(s: &str) -> UserName {
    UserName::parse(s).unwrap()
}
fn path(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}
fn put(store: &dyn Store, u: &str, p: &str, body: &[u8]) -> Result<PutOutcome, StoreError> {
    store.put(&user(u), &path(p), &mut &body[..], u64::MAX, None)
}
fn read_all(store: &dyn Store, u: &str, p: &str, d: &Digest) -> Vec<u8> {
    let (_, mut r) = store.open(&user(u), &path(p), d).unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    out
}

/// 2026-09-01 08:00:00 UTC: a fixed start, so times in failures read the same every run.
fn term_start() -> Arc<ManualClock> {
    ManualClock::starting_at(chrono::DateTime::from_timestamp(1_788_249_600, 0).unwrap())
}

fn contract(store: &dyn Store, clock: &ManualClock) {
    // New, then the same again: one version, second answer created=false, same time.
    let first = put(store, "asdf", "Documents/a.txt", b"one").unwrap();
    assert!(first.created);
    assert_eq!(first.version.sha256, Digest::of(b"one"));
    assert_eq!(first.version.size, 3);
    let again = put(store, "asdf", "Documents/a.txt", b"one").unwrap();
    assert!(!again.created);
    assert_eq!(again.version, first.version);

    clock.advance(chrono::Duration::seconds(1));
    let second = put(store, "asdf", "Documents/a.txt", b"two").unwrap();
    assert!(second.created);
    // stored_at is the store's clock at the commit, exactly (the disk keeps it too).
    assert_eq!(first.version.stored_at, term_start().now());
    assert_eq!(
        second.version.stored_at - first.version.stored_at,
        chrono::Duration::seconds(1)
    );
    let versions = store
        .versions(&user("asdf"), &path("Documents/a.txt"))
        .unwrap();
    assert_eq!(
        versions,
        vec![first.version.clone(), second.version.clone()]
    );
    assert_eq!(
        read_all(store, "asdf", "Documents/a.txt", &Digest::of(b"one")),
        b"one"
    );
    assert_eq!(
        store
            .version(&user("asdf"), &path("Documents/a.txt"), &Digest::of(b"two"))
            .unwrap(),
        Some(second.version.clone())
    );
    assert_eq!(
        store
            .version(&user("asdf"), &path("Documents/a.txt"), &Digest::of(b"x"))
            .unwrap(),
        None
    );

    // Wrong declared hash: refused, nothing stored.
    let err = store
        .put(
            &user("asdf"),
            &path("Documents/b.txt"),
            &mut &b"data"[..],
            u64::MAX,
            Some(&Digest::of(b"other")),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::HashMismatch { .. }), "{err}");
    assert!(
        store
            .versions(&user("asdf"), &path("Documents/b.txt"))
            .unwrap()
            .is_empty()
    );

    // Too large: refused while streaming.
    let err = store
        .put(
            &user("asdf"),
            &path("big.bin"),
            &mut &[0u8; 100][..],
            99,
            None,
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { limit: 99 }), "{err}");
    assert!(
        store
            .versions(&user("asdf"), &path("big.bin"))
            .unwrap()
            .is_empty()
    );
    put(store, "asdf", "exact.bin", &[0u8; 99]).unwrap();

    // Files and folders never share a name.
    let err = put(store, "asdf", "Documents/a.txt/inner", b"x").unwrap_err();
    assert!(matches!(err, StoreError::Collision(_)), "{err}");
    let err = put(store, "asdf", "Documents", b"x").unwrap_err();
    assert!(matches!(err, StoreError::Collision(_)), "{err}");

    // Namespaces are separate.
    assert!(
        store
            .versions(&user("other"), &path("Documents/a.txt"))
            .unwrap()
            .is_empty()
    );
    put(store, "other", "Documents/a.txt", b"one").unwrap();

    // Trees.
    put(store, "asdf", "Documents/sub/c.txt", b"c").unwrap();
    let root = store.tree(&user("asdf"), None).unwrap().unwrap();
    assert_eq!(root.dirs, vec!["Documents"]);
    assert_eq!(
        root.files
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        vec!["exact.bin"]
    );
    let docs = store
        .tree(&user("asdf"), Some(&path("Documents")))
        .unwrap()
        .unwrap();
    assert_eq!(docs.dirs, vec!["sub"]);
    assert_eq!(docs.files.len(), 1);
    assert_eq!(docs.files[0].name, "a.txt");
    assert_eq!(docs.files[0].versions, 2);
    assert_eq!(docs.files[0].latest, second.version);
    assert!(
        store
            .tree(&user("asdf"), Some(&path("nope")))
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .tree(&user("asdf"), Some(&path("Documents/a.txt")))
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.tree(&user("nobody"), None).unwrap().unwrap(),
        Tree::default()
    );

    // Usage counts each stored version once.
    assert_eq!(store.usage(&user("asdf")).unwrap(), 3 + 3 + 99 + 1);
    assert!(matches!(
        store.open(&user("asdf"), &path("Documents/a.txt"), &Digest::of(b"zz")),
        Err(StoreError::NotFound)
    ));
}

/// Deletions are appended events, never erases (issue 11).
fn deletion_contract(store: &dyn Store, clock: &ManualClock) {
    let (u, p) = (user("del"), path("Docs/essay.txt"));
    // Nothing stored there: nothing to delete, and nothing is written.
    assert!(matches!(store.delete(&u, &p), Err(StoreError::NotFound)));
    assert!(store.events(&u).unwrap().is_empty());

    let mut feed = store.subscribe(&u);
    let one = put(store, "del", "Docs/essay.txt", b"one").unwrap().version;
    assert!(feed.has_changed().unwrap(), "a put wakes the feed");
    feed.mark_unchanged();
    clock.advance(chrono::Duration::seconds(1));
    let two = put(store, "del", "Docs/essay.txt", b"two").unwrap().version;
    clock.advance(chrono::Duration::seconds(1));

    let deleted = store.delete(&u, &p).unwrap();
    assert!(deleted.created);
    assert!(feed.has_changed().unwrap(), "a deletion wakes the feed");
    assert_eq!(deleted.event.event, EventKind::Delete);
    assert_eq!(deleted.event.path, "Docs/essay.txt");
    assert_eq!(deleted.event.sha256, two.sha256, "names the newest version");
    assert_eq!(deleted.event.time, clock.now());
    // Again: the same event, no second line.
    let again = store.delete(&u, &p).unwrap();
    assert!(!again.created);
    assert_eq!(again.event, deleted.event);
    let events = store.events(&u).unwrap();
    assert_eq!(
        events.iter().map(|e| e.event).collect::<Vec<_>>(),
        [EventKind::New, EventKind::New, EventKind::Delete]
    );
    assert_eq!(current_deletion(&events, p.as_str()), Some(&deleted.event));

    // The feed: everything from the start, then nothing from the cursor given back,
    // then only what came later; a cursor past the end is not one.
    let (all, cursor) = store.events_after(&u, 0).unwrap().unwrap();
    assert_eq!(all, events);
    assert_eq!(
        store.events_after(&u, cursor).unwrap(),
        Some((vec![], cursor))
    );
    assert_eq!(store.events_after(&u, cursor + 1).unwrap(), None);

    // Every version stays: listed, readable, in the tree.
    assert_eq!(store.versions(&u, &p).unwrap(), vec![one.clone(), two]);
    assert_eq!(
        read_all(store, "del", "Docs/essay.txt", &one.sha256),
        b"one"
    );
    let tree = store.tree(&u, Some(&path("Docs"))).unwrap().unwrap();
    assert_eq!(tree.files.len(), 1);
    assert_eq!(tree.files[0].versions, 2);

    // A later save (even of old content) brings it back; then it can be deleted anew.
    put(store, "del", "Docs/essay.txt", b"one").unwrap();
    let (later_events, _) = store.events_after(&u, cursor).unwrap().unwrap();
    assert_eq!(later_events.len(), 1);
    assert_eq!(later_events[0].event, EventKind::Dup);
    assert_eq!(
        current_deletion(&store.events(&u).unwrap(), p.as_str()),
        None
    );
    clock.advance(chrono::Duration::seconds(1));
    let later = store.delete(&u, &p).unwrap();
    assert!(later.created);
    assert_ne!(later.event, deleted.event);
    assert_eq!(
        later.event.sha256,
        Digest::of(b"two"),
        "the newest stored version"
    );
    // Another user's file of the same name is not touched.
    put(store, "other", "Docs/essay.txt", b"x").unwrap();
    assert_eq!(
        current_deletion(&store.events(&user("other")).unwrap(), p.as_str()),
        None
    );
}

#[test]
fn fs_store_journal_goes_on_after_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    put(&store, "torn", "a.txt", b"a").unwrap();
    // A crash mid-append leaves half a line without its newline.
    let log = dir.path().join("journal/torn.log");
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, b"{\"time\":\"2026-").unwrap();
    drop(f);
    put(&store, "torn", "b.txt", b"b").unwrap();
    store.delete(&user("torn"), &path("a.txt")).unwrap();
    let seen: Vec<(String, EventKind)> = store
        .events(&user("torn"))
        .unwrap()
        .into_iter()
        .map(|e| (e.path, e.event))
        .collect();
    assert_eq!(
        seen,
        [
            ("a.txt".to_owned(), EventKind::New),
            ("b.txt".to_owned(), EventKind::New),
            ("a.txt".to_owned(), EventKind::Delete)
        ]
    );
}

#[test]
fn mem_store_contract() {
    let clock = term_start();
    contract(&MemStore::with_clock(clock.clone()), &clock);
}

#[test]
fn mem_store_deletions() {
    let clock = term_start();
    deletion_contract(&MemStore::with_clock(clock.clone()), &clock);
}

#[test]
fn fs_store_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = term_start();
    let store = FsStore::open(dir.path()).unwrap().with_clock(clock.clone());
    deletion_contract(&store, &clock);
    // Durable: a reopened store reads the same journal, and fsck finds nothing wrong.
    let events = store.events(&user("del")).unwrap();
    drop(store);
    let reopened = FsStore::open(dir.path()).unwrap();
    assert_eq!(reopened.events(&user("del")).unwrap(), events);
    // On disk a cursor is a byte offset at a line's start; one inside a line is refused.
    assert_eq!(reopened.events_after(&user("del"), 1).unwrap(), None);
    assert!(!fsck(dir.path()).unwrap().damaged());
}

#[test]
fn fs_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let clock = term_start();
    let store = FsStore::open(dir.path()).unwrap().with_clock(clock.clone());
    contract(&store, &clock);
    // Layout exactly as SPEC §2, nothing left in tmp/, fsck clean.
    let v = dir
        .path()
        .join("uploads/asdf/Documents/a.txt")
        .join(format!("{}.txt", Digest::of(b"one")));
    assert_eq!(std::fs::read(v).unwrap(), b"one");
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    let journal = store.journal(&user("asdf")).unwrap();
    assert_eq!(journal.len(), 5, "{journal:#?}");
    assert_eq!(journal[1].event, journal::EventKind::Dup);
    drop(store);
    let report = fsck(dir.path()).unwrap();
    assert!(!report.damaged(), "{report:#?}");
    assert_eq!(report.versions, 5);
    assert!(report.unjournaled.is_empty(), "{report:#?}");
    // A crash between link and journal line: fsck notes it, without calling it damage.
    std::fs::remove_file(dir.path().join("journal/other.log")).unwrap();
    let report = fsck(dir.path()).unwrap();
    assert_eq!(report.unjournaled.len(), 1, "{report:#?}");
    assert!(!report.damaged());
}

#[test]
fn fs_store_is_exclusive_and_cleans_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    assert!(matches!(
        FsStore::open(dir.path()),
        Err(StoreError::Locked(_))
    ));
    drop(store);
    std::fs::write(dir.path().join("tmp/upload-leftover"), b"half").unwrap();
    assert!(fsck(dir.path()).unwrap().damaged());
    let _store = FsStore::open(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn fs_store_quota_and_failed_stage_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap().with_quota(Some(10));
    put(&store, "q", "a", b"12345678").unwrap();
    let err = put(&store, "q", "b", b"12345").unwrap_err();
    assert!(matches!(err, StoreError::QuotaExceeded { .. }), "{err}");
    // A repeat of stored content needs no room.
    assert!(!put(&store, "q", "a", b"12345678").unwrap().created);

    struct Broken(usize);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("connection reset"));
            }
            self.0 -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }
    let err = store
        .put(&user("q"), &path("c"), &mut Broken(3), u64::MAX, None)
        .unwrap_err();
    assert!(matches!(err, StoreError::Body(_)), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert!(!dir.path().join("uploads/q/c").exists());
}

#[test]
fn fsck_finds_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    put(&store, "u", "f.txt", b"good").unwrap();
    drop(store);
    let v = dir
        .path()
        .join("uploads/u/f.txt")
        .join(format!("{}.txt", Digest::of(b"good")));
    std::fs::write(&v, b"evil").unwrap();
    std::fs::write(dir.path().join("uploads/u/f.txt/notes"), b"?").unwrap();
    let report = fsck(dir.path()).unwrap();
    assert_eq!(report.mismatches, vec![v]);
    assert_eq!(report.strays.len(), 1, "{report:#?}");
    assert!(report.damaged());
}

/// A data folder an older version left 0755 is closed at open: its root guards every
/// version and journal under it.
#[cfg(unix)]
#[test]
fn fs_store_closes_an_existing_data_folder() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _store = FsStore::open(&data).unwrap();
    let mode = std::fs::metadata(&data).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}
