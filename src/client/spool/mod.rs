//! The durable upload spool (SPEC §4 "Spool"): every version the drive or `ects backup`
//! takes is copied here first, then sent by background workers, whatever the network does.
//!
//! ```text
//! <spool>/spool.lock          held by the one process that uploads from this spool
//! <spool>/journal.log         records: capture, done, failed, retry, error (journal.rs)
//! <spool>/captures/<id>.data  the bytes of one captured version
//! ```
//!
//! - `capture` copies (reflink where possible) and hashes in one pass and returns at
//!   once; it never waits for the network and never fsyncs.
//! - A committer thread makes captures durable in groups: one `syncfs` (or a couple of
//!   `fdatasync`s for tiny groups) for the data, then their records appended to the
//!   journal with one `fdatasync`. Only then are they handed to the uploaders.
//! - Upload workers send entries oldest first, a few at a time, never two versions of one
//!   path at once (so the server stores them in order): HEAD first, PUT if missing.
//!   Network and server trouble → retry with exponential backoff capped at
//!   `max_backoff`; a refusal (400/403/409/413/422…) → the failed list, data kept; a 401
//!   keeps everything queued (the password may be fixed on the server) and backs off.
//! - An entry's data is removed only after the server said it has the version, and only
//!   after that fact is durable in the journal.
//! - On open, the journal is replayed: data files without a record are captures cut off
//!   by a crash and are deleted; a recorded capture whose data is missing or shorter than
//!   recorded goes to the failed list (never uploaded as if it were whole).

mod capture;
mod journal;
mod status;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use self::journal::{CaptureRec, JournalFile, Record};
pub use self::status::{FailedUpload, LastError, SpoolStatus, human_bytes, render_status};
use super::upload::{UploadError, Uploader};
use crate::names::RelPath;
use crate::store::Digest;

const CAPTURES: &str = "captures";
const LOCK: &str = "spool.lock";
/// Rewrite the journal compactly once it grows past this.
const COMPACT_AT: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "the upload spool {0} is in use by another ects process (a mounted drive or a running backup)"
    )]
    Locked(PathBuf),
    #[error("{0} is not an ects upload spool (no journal.log)")]
    NotASpool(PathBuf),
    #[error("cannot read {path}: {source}")]
    Source { path: PathBuf, source: io::Error },
    #[error("upload spool {dir}: {context}: {source}")]
    Io {
        dir: PathBuf,
        context: &'static str,
        source: io::Error,
    },
    #[error("the upload spool could not make captures durable: {0}")]
    Commit(String),
    #[error("the upload spool has been stopped")]
    Stopped,
}

impl SpoolError {
    fn io(dir: &Path, context: &'static str, source: io::Error) -> Self {
        SpoolError::Io {
            dir: dir.to_owned(),
            context,
            source,
        }
    }

    /// The OS error behind this, if any (the drive turns it into an errno).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            SpoolError::Source { source, .. } | SpoolError::Io { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }
}

/// What happened to one captured version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeKind {
    /// Sent and stored.
    Uploaded,
    /// The server had it already (HEAD); nothing was sent.
    AlreadyStored,
    /// Refused for good; the entry is in the failed list.
    Failed { status: u16, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub id: u64,
    pub path: RelPath,
    pub sha256: Digest,
    pub size: u64,
    pub kind: OutcomeKind,
}

/// Sent to [`SpoolOptions::events`] as uploads progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolEvent {
    Outcome(Outcome),
    /// An upload hit trouble; the spool waits `delay` and tries again.
    Retrying {
        message: String,
        delay: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Uploads sent at the same time.
    pub workers: usize,
    /// How long the committer waits for more captures to join a group.
    pub commit_delay: Duration,
    /// A group this large is committed without waiting `commit_delay`.
    pub max_batch: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Receives an event per finished entry and per retry.
    pub events: Option<Sender<SpoolEvent>>,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self {
            workers: 2,
            commit_delay: Duration::from_millis(5),
            max_batch: 512,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            events: None,
        }
    }
}

/// A captured version known to the spool.
#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    path: RelPath,
    sha256: Digest,
    size: u64,
    time: DateTime<Utc>,
}

impl Entry {
    fn rec(&self) -> CaptureRec {
        CaptureRec {
            id: self.id,
            path: self.path.to_string(),
            sha256: self.sha256,
            size: self.size,
            time: self.time,
        }
    }
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Captured, not durable yet (waiting for the committer).
    uncommitted: Vec<Entry>,
    /// The group the committer is making durable right now.
    committing: Vec<Entry>,
    /// Durable, not yet stored on the server. Keyed by id = capture order.
    pending: BTreeMap<u64, Entry>,
    /// Refused for good; the data is kept.
    failed: BTreeMap<u64, (CaptureRec, FailedUpload)>,
    in_flight: HashSet<u64>,
    busy_paths: HashSet<RelPath>,
    /// Journal records (done/failed/retry/error) waiting for the next commit.
    records: Vec<Record>,
    /// Data files to delete once their `done` records are durable.
    unlinks: Vec<u64>,
    /// Commit groups started / finished.
    taken_gen: u64,
    finished_gen: u64,
    commit_error: Option<String>,
    /// Someone waits for durability: commit without gathering more.
    urgent: bool,
    failures_in_a_row: u32,
    backoff_until: Option<Instant>,
    done: u64,
    captures: u64,
    commits: u64,
    last_error: Option<LastError>,
    reachable: Option<bool>,
    stop: bool,
}

impl State {
    /// Captured but not durable yet.
    fn not_durable(&self) -> impl Iterator<Item = &Entry> {
        self.uncommitted.iter().chain(self.committing.iter())
    }

    /// Everything not yet stored on the server (failed ones excluded).
    fn queued(&self) -> impl Iterator<Item = &Entry> {
        self.not_durable().chain(self.pending.values())
    }

    fn queued_len(&self) -> usize {
        self.uncommitted.len() + self.committing.len() + self.pending.len()
    }

    fn is_idle(&self) -> bool {
        self.queued_len() == 0
    }
}

struct Inner {
    dir: PathBuf,
    captures_dir: PathBuf,
    uploader: Arc<dyn Uploader>,
    opts: SpoolOptions,
    state: Mutex<State>,
    /// Wakes the committer, the workers and everyone waiting for a state change.
    changed: Condvar,
    journal: Mutex<Option<JournalFile>>,
}

/// Stops the background threads when the last [`Spool`] handle goes away.
/// Upload workers busy with a big file finish it on their own; they no longer touch
/// the journal, so the lock can go (a new spool on the folder re-checks with HEAD).
struct Guard {
    inner: Arc<Inner>,
    committer: Mutex<Option<JoinHandle<()>>>,
    /// Held while the spool is open: one uploading process per spool folder.
    _lock: File,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.inner.stop();
        let handle = lock(&self.committer).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        // Close the journal so nothing more is written once the lock is released.
        lock(&self.inner.journal).take();
    }
}

/// The upload spool. Cheap to clone; all clones share one spool.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
    guard: Arc<Guard>,
}

/// The answer of [`Spool::capture_entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captured {
    /// The spool entry (an earlier one when the same version was already queued).
    pub id: u64,
    pub sha256: Digest,
    pub size: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn data_file(captures: &Path, id: u64) -> PathBuf {
    captures.join(format!("{id}.data"))
}

impl Spool {
    /// Opens the spool folder (creating it), recovers what a crash left and starts the
    /// committer and upload threads.
    pub fn open(
        dir: &Path,
        uploader: Arc<dyn Uploader>,
        opts: SpoolOptions,
    ) -> Result<Spool, SpoolError> {
        let captures_dir = dir.join(CAPTURES);
        fs::create_dir_all(&captures_dir)
            .map_err(|e| SpoolError::io(dir, "creating the folder", e))?;
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))
            .map_err(|e| SpoolError::io(dir, "opening the lock file", e))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir.to_owned())),
            Err(fs::TryLockError::Error(e)) => {
                return Err(SpoolError::io(dir, "locking the spool", e));
            }
        }
        let (state, journal) = recover(dir, &captures_dir)?;
        let inner = Arc::new(Inner {
            dir: dir.to_owned(),
            captures_dir,
            uploader,
            opts,
            state: Mutex::new(state),
            changed: Condvar::new(),
            journal: Mutex::new(Some(journal)),
        });
        let spawn_err = |e| SpoolError::io(dir, "starting a thread", e);
        let committer = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("ects-spool-commit".into())
                .spawn(move || inner.committer())
                .map_err(spawn_err)?
        };
        let guard = Arc::new(Guard {
            inner: inner.clone(),
            committer: Mutex::new(Some(committer)),
            _lock: lock_file,
        });
        for i in 0..inner.opts.workers.max(1) {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(format!("ects-upload-{i}"))
                .spawn(move || inner.worker())
                .map_err(spawn_err)?;
        }
        Ok(Spool { inner, guard })
    }

    /// The folder this spool lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Takes a version of `path` from the local file `source`: copies it into the spool
    /// and hashes it in the same pass. Returns without waiting for the disk or network.
    pub fn capture(&self, path: &RelPath, source: &Path) -> Result<Digest, SpoolError> {
        self.capture_entry(path, source).map(|c| c.sha256)
    }

    /// Like [`Spool::capture`], but returns only once the capture is durable.
    pub fn capture_durable(&self, path: &RelPath, source: &Path) -> Result<Digest, SpoolError> {
        let c = self.capture_entry(path, source)?;
        self.wait_durable(c.id)?;
        Ok(c.sha256)
    }

    /// [`Spool::capture`], also telling the entry's id and size.
    pub fn capture_entry(&self, path: &RelPath, source: &Path) -> Result<Captured, SpoolError> {
        let inner = &self.inner;
        let id = {
            let mut st = lock(&inner.state);
            if st.stop {
                return Err(SpoolError::Stopped);
            }
            st.next_id += 1;
            st.next_id - 1
        };
        let dest = data_file(&inner.captures_dir, id);
        let (sha256, size) = capture::copy_and_hash(source, &dest).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists || dest.exists() {
                SpoolError::io(&inner.dir, "writing a capture", e)
            } else {
                SpoolError::Source {
                    path: source.to_owned(),
                    source: e,
                }
            }
        })?;
        let mut st = lock(&inner.state);
        st.captures += 1;
        // The same version of the same path already queued: keep the older entry.
        let same = |e: &Entry| e.path == *path && e.sha256 == sha256;
        let existing = st.queued().find(|e| same(e)).map(|e| e.id);
        if let Some(existing) = existing {
            drop(st);
            let _ = fs::remove_file(&dest);
            return Ok(Captured {
                id: existing,
                sha256,
                size,
            });
        }
        if st.stop {
            drop(st);
            let _ = fs::remove_file(&dest);
            return Err(SpoolError::Stopped);
        }
        st.uncommitted.push(Entry {
            id,
            path: path.clone(),
            sha256,
            size,
            time: Utc::now(),
        });
        inner.changed.notify_all();
        Ok(Captured { id, sha256, size })
    }

    /// Waits until entry `id` is durable (or already uploaded/failed).
    fn wait_durable(&self, id: u64) -> Result<(), SpoolError> {
        self.wait_until_durable(|st| {
            if st.not_durable().any(|e| e.id == id) {
                vec![id]
            } else {
                Vec::new()
            }
        })
    }

    /// Waits until everything captured so far is durable on disk.
    pub fn flush(&self) -> Result<(), SpoolError> {
        self.wait_until_durable(|st| st.not_durable().map(|e| e.id).collect())
    }

    /// Asks the committer to commit now and waits until the entries `pick` names (among
    /// those not yet durable) are durable. They are, once the committer has finished the
    /// group that holds them: the one under way, or the next if one is still uncommitted.
    fn wait_until_durable(&self, pick: impl FnOnce(&State) -> Vec<u64>) -> Result<(), SpoolError> {
        let inner = &self.inner;
        let mut st = lock(&inner.state);
        let ids = pick(&st);
        if ids.is_empty() {
            return Ok(());
        }
        let want = if st.uncommitted.iter().any(|e| ids.contains(&e.id)) {
            st.taken_gen + 1
        } else {
            st.taken_gen
        };
        st.urgent = true;
        inner.changed.notify_all();
        while st.finished_gen < want {
            if st.stop && st.finished_gen >= st.taken_gen && st.uncommitted.is_empty() {
                break;
            }
            st = inner
                .changed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if st.not_durable().any(|e| ids.contains(&e.id)) {
            return Err(SpoolError::Commit(
                st.commit_error
                    .clone()
                    .unwrap_or_else(|| "the spool stopped first".into()),
            ));
        }
        Ok(())
    }

    /// Keeps uploading for at most `timeout`, then stops the workers. Returns how many
    /// entries are left (they stay in the spool for the next start).
    pub fn drain(&self, timeout: Duration) -> usize {
        let _ = self.flush();
        let inner = &self.inner;
        let deadline = Instant::now() + timeout;
        let mut st = lock(&inner.state);
        while !st.is_idle() && !st.stop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = inner
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let left = st.queued_len();
        drop(st);
        inner.stop();
        let handle = lock(&self.guard.committer).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        left
    }

    /// Waits until nothing is queued (everything stored or failed), at most `timeout`.
    /// Returns whether the spool is idle.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let inner = &self.inner;
        let deadline = Instant::now() + timeout;
        let mut st = lock(&inner.state);
        loop {
            if st.is_idle() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || st.stop {
                return false;
            }
            st = inner
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    pub fn status(&self) -> SpoolStatus {
        let st = lock(&self.inner.state);
        SpoolStatus {
            pending: st.queued_len(),
            pending_bytes: st.queued().map(|e| e.size).sum(),
            oldest_pending: st.queued().map(|e| e.time).min(),
            uploading: st.in_flight.len(),
            failed: st.failed.values().map(|(_, f)| f.clone()).collect(),
            last_error: st.last_error.clone(),
            server_reachable: st.reachable,
            local_store: self.inner.uploader.local_store(),
            done: st.done,
            captures: st.captures,
            commits: st.commits,
        }
    }

    /// The digests captured for `path` that are not stored on the server yet, oldest
    /// first (failed ones excluded).
    pub fn pending_for(&self, path: &RelPath) -> Vec<Digest> {
        let st = lock(&self.inner.state);
        let mut v: Vec<(u64, Digest)> = st
            .queued()
            .filter(|e| e.path == *path)
            .map(|e| (e.id, e.sha256))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v.into_iter().map(|(_, d)| d).collect()
    }

    /// Queues every failed entry whose data is still here again (after an admin fixed
    /// the cause, e.g. raised the size limit). Returns how many.
    pub fn retry_failed(&self) -> usize {
        let inner = &self.inner;
        let mut st = lock(&inner.state);
        let ids: Vec<u64> = st.failed.keys().copied().collect();
        let mut n = 0;
        for id in ids {
            if !data_file(&inner.captures_dir, id).exists() {
                continue;
            }
            if let Some((c, _)) = st.failed.remove(&id) {
                let Ok(path) = RelPath::parse(&c.path) else {
                    continue;
                };
                st.pending.insert(
                    id,
                    Entry {
                        id,
                        path,
                        sha256: c.sha256,
                        size: c.size,
                        time: c.time,
                    },
                );
                st.records.push(Record::Retry { id });
                n += 1;
            }
        }
        inner.changed.notify_all();
        n
    }
}

/// Replays the journal, drops what a crash cut off, and rewrites the journal compactly.
fn recover(dir: &Path, captures_dir: &Path) -> Result<(State, JournalFile), SpoolError> {
    let mut replayed =
        journal::replay(dir).map_err(|e| SpoolError::io(dir, "reading the journal", e))?;
    if replayed.bad_lines > 0 {
        tracing::warn!(
            lines = replayed.bad_lines,
            "skipped unreadable spool journal lines (a write cut off by a crash)"
        );
    }
    // Data files: keep those a record names, delete the rest (captures cut off by a crash,
    // or uploads whose "done" record was durable before the file was removed).
    let mut max_file_id = 0;
    let listing =
        fs::read_dir(captures_dir).map_err(|e| SpoolError::io(dir, "listing captures", e))?;
    let mut discarded = 0usize;
    for item in listing {
        let item = item.map_err(|e| SpoolError::io(dir, "listing captures", e))?;
        let name = item.file_name();
        let id = name
            .to_str()
            .and_then(|n| n.strip_suffix(".data"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(id) = id {
            max_file_id = max_file_id.max(id + 1);
            if replayed.pending.contains_key(&id) || replayed.failed.contains_key(&id) {
                continue;
            }
        }
        discarded += 1;
        let _ = fs::remove_file(item.path());
    }
    if discarded > 0 {
        tracing::info!(
            discarded,
            "removed spool files without a durable record (captures cut off by a crash)"
        );
    }
    let now = Utc::now();
    let mut state = State {
        next_id: replayed.next_id.max(max_file_id).max(1),
        done: replayed.done,
        last_error: replayed.last_error.clone(),
        ..State::default()
    };
    // A recorded capture whose data is not whole is never uploaded as if it were.
    let pending = std::mem::take(&mut replayed.pending);
    for (id, c) in pending {
        let actual = fs::metadata(data_file(captures_dir, id)).map(|m| m.len());
        let damage = match actual {
            Ok(n) if n == c.size => None,
            Ok(n) => Some(format!(
                "the spool's copy is damaged ({n} of {} bytes); the file on disk was not changed, save it again",
                c.size
            )),
            Err(e) => Some(format!(
                "the spool's copy is missing ({e}); save the file again"
            )),
        };
        let path = RelPath::parse(&c.path);
        match (damage, path) {
            (None, Ok(path)) => {
                state.pending.insert(
                    id,
                    Entry {
                        id,
                        path,
                        sha256: c.sha256,
                        size: c.size,
                        time: c.time,
                    },
                );
            }
            (damage, path) => {
                let message = damage.unwrap_or_else(|| match path {
                    Err(e) => format!("the spool names a bad path: {e}"),
                    Ok(_) => String::new(),
                });
                tracing::warn!(path = %c.path, %message, "spool entry cannot be uploaded");
                let f = FailedUpload {
                    id,
                    path: c.path.clone(),
                    sha256: c.sha256,
                    size: c.size,
                    status: 0,
                    message,
                    time: now,
                };
                replayed.failed.insert(id, (c, f));
            }
        }
    }
    state.failed = replayed.failed;
    let snapshot = snapshot_records(&state);
    let journal = JournalFile::rewrite(dir, &snapshot)
        .map_err(|e| SpoolError::io(dir, "rewriting the journal", e))?;
    if !state.pending.is_empty() {
        tracing::info!(
            pending = state.pending.len(),
            "upload spool: sending versions left by an earlier run"
        );
    }
    Ok((state, journal))
}

/// Records that rebuild `st`'s durable part (for compaction).
fn snapshot_records(st: &State) -> Vec<Record> {
    let mut r = journal::Replayed {
        done: st.done,
        next_id: st.next_id,
        last_error: st.last_error.clone(),
        failed: st.failed.clone(),
        ..Default::default()
    };
    for e in st.pending.values() {
        r.pending.insert(e.id, e.rec());
    }
    r.records()
}

#[cfg(target_os = "linux")]
fn syncfs(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(dir)?;
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn syncfs(dir: &Path) -> io::Result<()> {
    // No syncfs: fsync every data file of the folder instead (correct, just slower).
    // Opened for writing: Windows' FlushFileBuffers refuses a read-only handle.
    for item in fs::read_dir(dir)? {
        let item = item?;
        if item.file_type()?.is_file() {
            OpenOptions::new()
                .write(true)
                .open(item.path())?
                .sync_data()?;
        }
    }
    Ok(())
}

impl Inner {
    fn stop(&self) {
        lock(&self.state).stop = true;
        self.changed.notify_all();
    }

    fn emit(&self, ev: SpoolEvent) {
        if let Some(tx) = &self.opts.events {
            let _ = tx.send(ev);
        }
    }

    /// Makes groups of captures durable, then appends their records; also appends the
    /// workers' done/failed records and removes uploaded data.
    fn committer(&self) {
        loop {
            let mut st = lock(&self.state);
            while st.uncommitted.is_empty() && st.records.is_empty() && !st.stop {
                st = self
                    .changed
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if st.uncommitted.is_empty() && st.records.is_empty() && st.stop {
                return;
            }
            // Group commit: give more captures a moment to join, unless someone waits.
            let deadline = Instant::now() + self.opts.commit_delay;
            while !st.stop && !st.urgent && st.uncommitted.len() < self.opts.max_batch {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                st = self
                    .changed
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            st.urgent = false;
            st.committing = std::mem::take(&mut st.uncommitted);
            let mut records: Vec<Record> = st
                .committing
                .iter()
                .map(|e| journal::capture_record(&e.rec()))
                .collect();
            let batch_len = st.committing.len();
            records.append(&mut st.records);
            let worker_records = records.len() - batch_len;
            let unlinks = std::mem::take(&mut st.unlinks);
            st.taken_gen += 1;
            let generation = st.taken_gen;
            drop(st);

            let result = self.commit(batch_len, &records);

            let mut st = lock(&self.state);
            st.finished_gen = generation;
            let failed = match result {
                Ok(()) => {
                    if batch_len > 0 {
                        st.commits += 1;
                    }
                    st.commit_error = None;
                    for e in std::mem::take(&mut st.committing) {
                        st.pending.insert(e.id, e);
                    }
                    drop(st);
                    for id in unlinks {
                        let _ = fs::remove_file(data_file(&self.captures_dir, id));
                    }
                    self.maybe_compact();
                    false
                }
                Err(e) => {
                    let message = format!(
                        "cannot write to the upload spool {}: {e}",
                        self.dir.display()
                    );
                    tracing::error!("{message}");
                    st.commit_error = Some(message.clone());
                    st.last_error = Some(LastError {
                        time: Utc::now(),
                        message,
                    });
                    let mut b = std::mem::take(&mut st.committing);
                    b.append(&mut st.uncommitted);
                    st.uncommitted = b;
                    let mut r = records.split_off(records.len() - worker_records);
                    r.append(&mut st.records);
                    st.records = r;
                    let mut u = unlinks;
                    u.append(&mut st.unlinks);
                    st.unlinks = u;
                    drop(st);
                    true
                }
            };
            self.changed.notify_all();
            if failed {
                // Disk trouble (full, read-only): try again in a moment, unless stopping.
                let st = lock(&self.state);
                if st.stop {
                    return;
                }
                let _ = self
                    .changed
                    .wait_timeout(st, Duration::from_secs(1))
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    /// `records` starts with the capture records of the `batch_len` new captures.
    fn commit(&self, batch_len: usize, records: &[Record]) -> io::Result<()> {
        if batch_len > 0 {
            if batch_len <= 2 {
                for r in &records[..batch_len] {
                    if let Record::Capture { id, .. } = r {
                        File::open(data_file(&self.captures_dir, *id))?.sync_data()?;
                    }
                }
            } else {
                syncfs(&self.captures_dir)?;
            }
            // New data files' names must survive too.
            File::open(&self.captures_dir)?.sync_all()?;
        }
        let mut j = lock(&self.journal);
        match j.as_mut() {
            Some(j) => j.append(records),
            None => Err(io::Error::other("the journal is closed")),
        }
    }

    fn maybe_compact(&self) {
        let mut j = lock(&self.journal);
        let Some(journal) = j.as_mut() else { return };
        if journal.len() < COMPACT_AT {
            return;
        }
        // Records still waiting for a commit are appended after the snapshot, so they are
        // not lost; a snapshot taken under the state lock is consistent.
        let records = snapshot_records(&lock(&self.state));
        if let Err(e) = journal.compact(&records) {
            tracing::warn!("could not compact the spool journal: {e}");
        }
    }

    /// One upload worker: oldest sendable entry first; one version per path at a time.
    fn worker(&self) {
        loop {
            let entry = {
                let mut st = lock(&self.state);
                loop {
                    if st.stop {
                        return;
                    }
                    if let Some(until) = st.backoff_until {
                        let now = Instant::now();
                        if now < until {
                            st = self
                                .changed
                                .wait_timeout(st, until - now)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0;
                            continue;
                        }
                    }
                    let next = st
                        .pending
                        .values()
                        .find(|e| !st.in_flight.contains(&e.id) && !st.busy_paths.contains(&e.path))
                        .cloned();
                    if let Some(e) = next {
                        st.in_flight.insert(e.id);
                        st.busy_paths.insert(e.path.clone());
                        break e;
                    }
                    st = self
                        .changed
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            let result = self.send(&entry);
            self.finish(entry, result);
        }
    }

    fn send(&self, e: &Entry) -> Result<OutcomeKind, UploadError> {
        let file = data_file(&self.captures_dir, e.id);
        match fs::metadata(&file) {
            Ok(m) if m.len() == e.size => {}
            Ok(m) => {
                return Ok(OutcomeKind::Failed {
                    status: 0,
                    message: format!(
                        "the spool's copy is damaged ({} of {} bytes); save the file again",
                        m.len(),
                        e.size
                    ),
                });
            }
            Err(err) => {
                return Ok(OutcomeKind::Failed {
                    status: 0,
                    message: format!("the spool's copy is missing ({err}); save the file again"),
                });
            }
        }
        if self.uploader.exists(&e.path, &e.sha256)? {
            return Ok(OutcomeKind::AlreadyStored);
        }
        self.uploader.upload(&e.path, &file, &e.sha256, e.size)?;
        Ok(OutcomeKind::Uploaded)
    }

    fn finish(&self, e: Entry, result: Result<OutcomeKind, UploadError>) {
        let mut st = lock(&self.state);
        st.in_flight.remove(&e.id);
        st.busy_paths.remove(&e.path);
        let event;
        match result {
            Ok(kind) => {
                if !matches!(kind, OutcomeKind::Failed { .. }) {
                    st.reachable = Some(true);
                    st.failures_in_a_row = 0;
                    st.backoff_until = None;
                }
                st.pending.remove(&e.id);
                match &kind {
                    OutcomeKind::Failed { status, message } => {
                        self.fail(&mut st, &e, *status, message.clone());
                    }
                    OutcomeKind::Uploaded | OutcomeKind::AlreadyStored => {
                        tracing::debug!(path = %e.path, sha256 = %e.sha256, ?kind, "version stored");
                        st.done += 1;
                        st.records.push(Record::Done { id: e.id });
                        st.unlinks.push(e.id);
                    }
                }
                event = Some(SpoolEvent::Outcome(Outcome {
                    id: e.id,
                    path: e.path.clone(),
                    sha256: e.sha256,
                    size: e.size,
                    kind,
                }));
            }
            Err(UploadError::Refused { status, message }) if status != 401 => {
                st.reachable = Some(true);
                st.failures_in_a_row = 0;
                st.backoff_until = None;
                st.pending.remove(&e.id);
                tracing::warn!(path = %e.path, status, %message, "the server refused a version");
                self.fail(&mut st, &e, status, message.clone());
                event = Some(SpoolEvent::Outcome(Outcome {
                    id: e.id,
                    path: e.path.clone(),
                    sha256: e.sha256,
                    size: e.size,
                    kind: OutcomeKind::Failed { status, message },
                }));
            }
            Err(err) => {
                // Network or server trouble, or wrong credentials (401): the entry stays
                // queued and everybody waits.
                let (message, reachable) = match err {
                    UploadError::Retryable(m) => (m, false),
                    UploadError::Refused { message, .. } => (message, true),
                };
                st.reachable = Some(reachable);
                st.failures_in_a_row = st.failures_in_a_row.saturating_add(1);
                let delay = backoff(
                    self.opts.initial_backoff,
                    self.opts.max_backoff,
                    st.failures_in_a_row,
                );
                st.backoff_until = Some(Instant::now() + delay);
                let new_message = st.last_error.as_ref().map(|l| &l.message) != Some(&message);
                if new_message {
                    tracing::warn!(path = %e.path, "upload failed, retrying in {delay:?}: {message}");
                } else {
                    tracing::debug!(path = %e.path, "upload failed, retrying in {delay:?}: {message}");
                }
                st.last_error = Some(LastError {
                    time: Utc::now(),
                    message: message.clone(),
                });
                if new_message {
                    st.records.push(Record::Error {
                        time: Utc::now(),
                        message: message.clone(),
                    });
                }
                event = Some(SpoolEvent::Retrying { message, delay });
            }
        }
        // Sent before anyone can see the new state, so a caller that saw "idle" has
        // every event already.
        if let Some(ev) = event {
            self.emit(ev);
        }
        drop(st);
        self.changed.notify_all();
    }

    fn fail(&self, st: &mut State, e: &Entry, status: u16, message: String) {
        let time = Utc::now();
        st.records.push(Record::Failed {
            id: e.id,
            status,
            message: message.clone(),
            time,
        });
        let f = FailedUpload {
            id: e.id,
            path: e.path.to_string(),
            sha256: e.sha256,
            size: e.size,
            status,
            message,
            time,
        };
        st.failed.insert(e.id, (e.rec(), f));
    }
}

/// `initial · 2^(n-1)`, capped at `max`.
fn backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    initial.saturating_mul(1u32 << exp).min(max)
}

#[cfg(test)]
mod tests;
