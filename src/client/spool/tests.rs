use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::*;
use crate::client::upload::StoreUploader;
use crate::names::UserName;
use crate::store::{MemStore, Store};

/// What the fake server does with one attempt.
type Behaviour = dyn Fn(&RelPath, usize) -> Result<(), UploadError> + Send + Sync;

/// An uploader that keeps what it receives in memory and follows a script.
struct Fake {
    stored: Mutex<Vec<(RelPath, Digest, Vec<u8>)>>,
    attempts: AtomicUsize,
    heads: AtomicUsize,
    behaviour: Box<Behaviour>,
    busy: Mutex<HashSet<RelPath>>,
    overlap: AtomicUsize,
}

impl Fake {
    fn new(
        behaviour: impl Fn(&RelPath, usize) -> Result<(), UploadError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            stored: Mutex::default(),
            attempts: AtomicUsize::new(0),
            heads: AtomicUsize::new(0),
            behaviour: Box::new(behaviour),
            busy: Mutex::default(),
            overlap: AtomicUsize::new(0),
        })
    }
    fn ok() -> Arc<Self> {
        Self::new(|_, _| Ok(()))
    }
    fn stored(&self) -> Vec<(RelPath, Digest, Vec<u8>)> {
        lock(&self.stored).clone()
    }
}

impl Uploader for Fake {
    fn exists(&self, path: &RelPath, sha: &Digest) -> Result<bool, UploadError> {
        self.heads.fetch_add(1, Ordering::SeqCst);
        Ok(lock(&self.stored)
            .iter()
            .any(|(p, d, _)| p == path && d == sha))
    }
    fn upload(
        &self,
        path: &RelPath,
        file: &Path,
        sha: &Digest,
        size: u64,
    ) -> Result<(), UploadError> {
        if !lock(&self.busy).insert(path.clone()) {
            self.overlap.fetch_add(1, Ordering::SeqCst);
        }
        let n = self.attempts.fetch_add(1, Ordering::SeqCst);
        let result = (self.behaviour)(path, n);
        if result.is_ok() {
            let bytes = fs::read(file).unwrap();
            assert_eq!(bytes.len() as u64, size);
            assert_eq!(
                Digest::of(&bytes),
                *sha,
                "uploaded bytes must match the hash"
            );
            lock(&self.stored).push((path.clone(), *sha, bytes));
        }
        lock(&self.busy).remove(path);
        result
    }
}

fn p(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

fn fast() -> SpoolOptions {
    SpoolOptions {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        ..SpoolOptions::default()
    }
}

struct Dirs {
    _tmp: tempfile::TempDir,
    spool: PathBuf,
    src: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    Dirs {
        spool,
        src,
        _tmp: tmp,
    }
}

impl Dirs {
    /// Writes `content` to a source file and returns its path.
    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let f = self.src.join(name);
        fs::write(&f, content).unwrap();
        f
    }
}

const LONG: Duration = Duration::from_secs(60);

#[test]
fn store_uploader_end_to_end() {
    let d = dirs();
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let user = UserName::parse("asdf").unwrap();
    let up = Arc::new(StoreUploader::new(store.clone(), user.clone()));
    let spool = Spool::open(&d.spool, up, fast()).unwrap();
    let path = p("Documents/New folder/Übung 1.txt");
    let f = d.file("a", b"first");
    let d1 = spool.capture(&path, &f).unwrap();
    // The source changes right after capture: the version keeps the captured bytes.
    fs::write(&f, b"second").unwrap();
    let d2 = spool.capture_durable(&path, &f).unwrap();
    assert_eq!(d1, Digest::of(b"first"));
    assert_eq!(d2, Digest::of(b"second"));
    assert!(spool.wait_idle(LONG));
    let versions = store.versions(&user, &path).unwrap();
    assert_eq!(
        versions.iter().map(|v| v.sha256).collect::<Vec<_>>(),
        [d1, d2],
        "both versions stored, oldest first"
    );
    let s = spool.status();
    assert_eq!((s.pending, s.done, s.failed.len()), (0, 2, 0));
    assert_eq!(s.server_reachable, Some(true));
    assert!(spool.pending_for(&path).is_empty());
    // Uploaded data leaves the spool once the fact is durable.
    assert_eq!(spool.drain(LONG), 0);
    assert_eq!(fs::read_dir(d.spool.join(CAPTURES)).unwrap().count(), 0);
}

#[test]
fn group_commit_makes_many_captures_durable_at_once() {
    let d = dirs();
    let opts = SpoolOptions {
        commit_delay: Duration::from_secs(3600),
        max_batch: 50,
        ..fast()
    };
    let fake = Fake::ok();
    let spool = Spool::open(&d.spool, fake.clone(), opts).unwrap();
    let f = d.file("x", b"x");
    for i in 0..10 {
        fs::write(&f, format!("v{i}")).unwrap();
        spool.capture(&p(&format!("a/{i}.txt")), &f).unwrap();
    }
    // Nothing is durable or sent before the group is committed.
    assert_eq!(spool.status().commits, 0);
    assert!(fake.stored().is_empty());
    assert_eq!(SpoolStatus::read(&d.spool).unwrap().pending, 0);
    spool.flush().unwrap();
    assert_eq!(spool.status().commits, 1, "ten captures, one commit");
    // After flush, another process sees all ten in the journal.
    assert_eq!(
        SpoolStatus::read(&d.spool).unwrap().pending
            + SpoolStatus::read(&d.spool).unwrap().done as usize,
        10
    );
    for i in 0..200 {
        fs::write(&f, format!("w{i}")).unwrap();
        spool.capture(&p(&format!("b/{i}.txt")), &f).unwrap();
    }
    spool.flush().unwrap();
    let s = spool.status();
    assert_eq!(s.captures, 210);
    assert!(s.commits <= 6, "200 captures took {} commits", s.commits);
    assert!(spool.wait_idle(LONG));
    assert_eq!(fake.stored().len(), 210);
}

#[test]
fn retries_with_capped_exponential_backoff() {
    let d = dirs();
    let (tx, rx) = mpsc::channel();
    let fake = Fake::new(|_, n| {
        if n < 4 {
            Err(UploadError::transient("connection refused"))
        } else {
            Ok(())
        }
    });
    let opts = SpoolOptions {
        events: Some(tx),
        workers: 1,
        ..fast()
    };
    let spool = Spool::open(&d.spool, fake.clone(), opts).unwrap();
    let f = d.file("a", b"hello");
    spool.capture(&p("a.txt"), &f).unwrap();
    assert!(spool.wait_idle(LONG));
    assert_eq!(fake.attempts.load(Ordering::SeqCst), 5);
    assert_eq!(fake.stored().len(), 1, "uploaded exactly once");
    let events: Vec<SpoolEvent> = rx.try_iter().collect();
    let delays: Vec<Duration> = events
        .iter()
        .filter_map(|e| match e {
            SpoolEvent::Retrying { delay, .. } => Some(*delay),
            SpoolEvent::Outcome(_) => None,
        })
        .collect();
    let ms = Duration::from_millis;
    assert_eq!(delays, [ms(10), ms(20), ms(40), ms(40)]);
    assert!(matches!(
        events.last(),
        Some(SpoolEvent::Outcome(Outcome {
            kind: OutcomeKind::Uploaded,
            ..
        }))
    ));
    let s = spool.status();
    assert_eq!(s.server_reachable, Some(true));
    assert_eq!(s.last_error.unwrap().message, "connection refused");
}

#[test]
fn backoff_schedule() {
    let s = Duration::from_secs;
    let got: Vec<Duration> = (1..=9).map(|n| backoff(s(1), s(60), n)).collect();
    assert_eq!(
        got,
        [s(1), s(2), s(4), s(8), s(16), s(32), s(60), s(60), s(60)]
    );
    assert_eq!(backoff(s(1), s(60), u32::MAX), s(60));
}

#[test]
fn refused_versions_go_to_the_failed_list_and_stay() {
    let d = dirs();
    let fake = Fake::new(|path, _| {
        if path.as_str().starts_with("big/") {
            Err(UploadError::refused(
                413,
                "the file is larger than the limit",
            ))
        } else {
            Ok(())
        }
    });
    let spool = Spool::open(&d.spool, fake.clone(), fast()).unwrap();
    let big = d.file("big", b"pretend this is huge");
    let small = d.file("small", b"fine");
    let sha = spool.capture(&p("big/disk.iso"), &big).unwrap();
    spool.capture(&p("ok.txt"), &small).unwrap();
    assert!(spool.wait_idle(LONG));
    assert_eq!(
        fake.attempts.load(Ordering::SeqCst),
        2,
        "a refusal is not retried"
    );
    let s = spool.status();
    assert_eq!(s.pending, 0);
    assert_eq!(s.failed.len(), 1);
    let f = &s.failed[0];
    assert_eq!(
        (f.path.as_str(), f.sha256, f.status),
        ("big/disk.iso", sha, 413)
    );
    assert!(render_status(&s).contains("the file is larger than the limit"));
    drop(spool);

    // The failed list survives a restart and its bytes are kept.
    let read = SpoolStatus::read(&d.spool).unwrap();
    assert_eq!(read.failed.len(), 1);
    assert_eq!(read.done, 1);
    let ok = Fake::ok();
    let spool = Spool::open(&d.spool, ok.clone(), fast()).unwrap();
    assert_eq!(spool.status().failed.len(), 1);
    assert!(spool.wait_idle(LONG));
    assert!(
        ok.stored().is_empty(),
        "failed entries are not retried on their own"
    );
    // Once the cause is fixed, they can be queued again.
    assert_eq!(spool.retry_failed(), 1);
    assert!(spool.wait_idle(LONG));
    assert_eq!(ok.stored()[0].2, b"pretend this is huge");
    assert!(spool.status().failed.is_empty());
}

#[test]
fn wrong_password_keeps_everything_queued() {
    let d = dirs();
    let fake = Fake::new(|_, _| Err(UploadError::credentials("wrong user name or password")));
    let spool = Spool::open(&d.spool, fake.clone(), fast()).unwrap();
    spool.capture(&p("a.txt"), &d.file("a", b"a")).unwrap();
    spool.capture(&p("b.txt"), &d.file("b", b"b")).unwrap();
    assert_eq!(spool.drain(Duration::from_millis(300)), 2);
    let read = SpoolStatus::read(&d.spool).unwrap();
    assert_eq!((read.pending, read.failed.len()), (2, 0));
    assert!(
        read.last_error
            .unwrap()
            .message
            .contains("wrong user name or password")
    );
    drop(spool);
    let ok = Fake::ok();
    let spool = Spool::open(&d.spool, ok.clone(), fast()).unwrap();
    assert!(spool.wait_idle(LONG));
    assert_eq!(ok.stored().len(), 2);
}

#[test]
fn sends_in_capture_order_one_version_per_path_at_a_time() {
    let d = dirs();
    // One worker: strictly in capture order.
    let fake = Fake::ok();
    let opts = SpoolOptions {
        workers: 1,
        commit_delay: Duration::from_secs(3600),
        ..fast()
    };
    let spool = Spool::open(&d.spool, fake.clone(), opts).unwrap();
    let f = d.file("x", b"");
    let mut want = Vec::new();
    for i in 0..30 {
        fs::write(&f, format!("{i}")).unwrap();
        let path = p(&format!("f{}.txt", i % 4));
        want.push((path.clone(), spool.capture(&path, &f).unwrap()));
    }
    spool.flush().unwrap();
    assert!(spool.wait_idle(LONG));
    let got: Vec<(RelPath, Digest)> = fake.stored().into_iter().map(|(p, d, _)| (p, d)).collect();
    assert_eq!(got, want);
    drop(spool);

    // Four workers, slow uploads: versions of one path never overlap and keep their order.
    let d = dirs();
    let fake = Fake::new(|_, _| {
        std::thread::sleep(Duration::from_millis(2));
        Ok(())
    });
    let opts = SpoolOptions {
        workers: 4,
        commit_delay: Duration::from_secs(3600),
        ..fast()
    };
    let spool = Spool::open(&d.spool, fake.clone(), opts).unwrap();
    let f = d.file("x", b"");
    let mut want: BTreeMap<RelPath, Vec<Digest>> = BTreeMap::new();
    for i in 0..60 {
        fs::write(&f, format!("{i}")).unwrap();
        let path = p(&format!("f{}.txt", i % 3));
        let sha = spool.capture(&path, &f).unwrap();
        want.entry(path).or_default().push(sha);
    }
    for (path, shas) in &want {
        assert_eq!(&spool.pending_for(path), shas);
    }
    spool.flush().unwrap();
    assert!(spool.wait_idle(LONG));
    assert_eq!(fake.overlap.load(Ordering::SeqCst), 0);
    let mut got: BTreeMap<RelPath, Vec<Digest>> = BTreeMap::new();
    for (path, sha, _) in fake.stored() {
        got.entry(path).or_default().push(sha);
    }
    assert_eq!(got, want);
}

#[test]
fn recovery_discards_cut_off_captures_and_never_sends_damaged_ones() {
    let d = dirs();
    let down = Fake::new(|_, _| Err(UploadError::transient("down")));
    let spool = Spool::open(&d.spool, down, fast()).unwrap();
    let whole = spool
        .capture_durable(&p("whole.txt"), &d.file("w", b"whole content"))
        .unwrap();
    let cut = b"this capture will be cut off halfway by the test".to_vec();
    spool
        .capture_durable(&p("cut.txt"), &d.file("c", &cut))
        .unwrap();
    let gone = spool
        .capture_durable(&p("gone.txt"), &d.file("g", b"gone"))
        .unwrap();
    assert_eq!(spool.drain(Duration::ZERO), 3);
    drop(spool);

    let captures = d.spool.join(CAPTURES);
    let by_content = |want: &[u8]| {
        fs::read_dir(&captures)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|f| fs::read(f).unwrap() == want)
            .unwrap()
    };
    // A recorded capture whose data is cut off halfway (disk damage, a bad copy).
    let cut_file = by_content(&cut);
    fs::write(&cut_file, &cut[..cut.len() / 2]).unwrap();
    // A recorded capture whose data vanished.
    fs::remove_file(by_content(b"gone")).unwrap();
    // A data file without a record: a capture the crash cut off before it was durable.
    fs::write(captures.join("999.data"), b"half a capt").unwrap();
    fs::write(captures.join("junk"), b"?").unwrap();
    // And a torn journal line.
    std::fs::OpenOptions::new()
        .append(true)
        .open(d.spool.join("journal.log"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"rec\":\"capture\",\"id\":999,"))
        .unwrap();

    let store = Arc::new(MemStore::new());
    let user = UserName::parse("u").unwrap();
    let up = Arc::new(StoreUploader::new(store.clone(), user.clone()));
    let spool = Spool::open(&d.spool, up, fast()).unwrap();
    assert!(spool.wait_idle(LONG));
    assert!(!captures.join("999.data").exists());
    assert!(!captures.join("junk").exists());
    let stored = |path: &str| store.versions(&user, &p(path)).unwrap();
    assert_eq!(
        stored("whole.txt")
            .iter()
            .map(|v| v.sha256)
            .collect::<Vec<_>>(),
        [whole]
    );
    assert!(
        stored("cut.txt").is_empty(),
        "a cut-off capture is never uploaded"
    );
    assert!(stored("gone.txt").is_empty());
    let s = spool.status();
    let mut failed: Vec<(&str, u16)> = s
        .failed
        .iter()
        .map(|f| (f.path.as_str(), f.status))
        .collect();
    failed.sort();
    assert_eq!(failed, [("cut.txt", 0), ("gone.txt", 0)]);
    assert!(s.failed.iter().any(|f| f.message.contains("damaged")));
    assert!(
        s.failed
            .iter()
            .any(|f| f.sha256 == gone && f.message.contains("missing"))
    );
    // New captures get ids that never collide with what was there.
    spool
        .capture_durable(&p("new.txt"), &d.file("n", b"new"))
        .unwrap();
    assert!(spool.wait_idle(LONG));
    assert_eq!(stored("new.txt").len(), 1);
}

#[test]
fn drained_entries_are_sent_by_the_next_process() {
    let d = dirs();
    let down = Fake::new(|_, _| Err(UploadError::transient("cannot reach the server")));
    let spool = Spool::open(&d.spool, down, fast()).unwrap();
    for i in 0..20 {
        spool
            .capture(
                &p(&format!("d/{i}")),
                &d.file("x", format!("{i}").as_bytes()),
            )
            .unwrap();
    }
    assert_eq!(spool.drain(Duration::from_millis(50)), 20);
    let s = SpoolStatus::read(&d.spool).unwrap();
    assert_eq!((s.pending, s.done), (20, 0));
    assert_eq!(s.last_error.unwrap().message, "cannot reach the server");
    drop(spool);
    let ok = Fake::ok();
    let spool = Spool::open(&d.spool, ok.clone(), fast()).unwrap();
    assert!(spool.wait_idle(LONG));
    let mut names: Vec<String> = ok.stored().iter().map(|(p, _, _)| p.to_string()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20);
    assert_eq!(ok.stored().len(), 20, "each exactly once");
}

#[test]
fn already_stored_versions_are_not_sent_again() {
    let d = dirs();
    let fake = Fake::ok();
    let spool = Spool::open(&d.spool, fake.clone(), fast()).unwrap();
    let f = d.file("a", b"same");
    spool.capture_durable(&p("a.txt"), &f).unwrap();
    assert!(spool.wait_idle(LONG));
    spool.capture_durable(&p("a.txt"), &f).unwrap();
    assert!(spool.wait_idle(LONG));
    assert_eq!(fake.stored().len(), 1);
    assert_eq!(fake.attempts.load(Ordering::SeqCst), 1);
    assert_eq!(fake.heads.load(Ordering::SeqCst), 2);
    assert_eq!(spool.status().done, 2);
}

#[test]
fn identical_queued_capture_is_merged() {
    let d = dirs();
    let down = Fake::new(|_, _| Err(UploadError::transient("down")));
    let spool = Spool::open(&d.spool, down, fast()).unwrap();
    let f = d.file("a", b"same");
    let a = spool.capture_entry(&p("a.txt"), &f).unwrap();
    let b = spool.capture_entry(&p("a.txt"), &f).unwrap();
    let c = spool.capture_entry(&p("b.txt"), &f).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.id, c.id);
    assert_eq!(spool.status().pending, 2);
}

#[test]
fn one_process_per_spool_and_bad_sources_leave_nothing() {
    let d = dirs();
    let spool = Spool::open(&d.spool, Fake::ok(), fast()).unwrap();
    assert!(matches!(
        Spool::open(&d.spool, Fake::ok(), fast()),
        Err(SpoolError::Locked(_))
    ));
    // Read-only status works while the spool is in use.
    assert!(SpoolStatus::read(&d.spool).is_ok());
    let e = spool.capture(&p("x"), &d.src.join("missing")).unwrap_err();
    assert!(matches!(e, SpoolError::Source { .. }), "{e}");
    assert!(
        spool.capture(&p("x"), &d.src).is_err(),
        "a folder is not a version"
    );
    let s = spool.status();
    assert_eq!((s.pending, s.captures), (0, 0));
    assert_eq!(fs::read_dir(d.spool.join(CAPTURES)).unwrap().count(), 0);
    drop(spool);
    assert!(
        Spool::open(&d.spool, Fake::ok(), fast()).is_ok(),
        "the lock goes with the spool"
    );
    assert!(matches!(
        SpoolStatus::read(&d.src),
        Err(SpoolError::NotASpool(_))
    ));
}
