//! The durable upload spool (SPEC §4 "Spool"): every version the drive or `ects backup`
//! takes is copied here first, then sent by background workers, whatever the network does.
//!
//! ```text
//! <spool>/spool.lock          held by the one process that uploads from this spool
//! <spool>/journal.log         records: capture, done, failed, retry, error (journal.rs)
//! <spool>/captures/<id>.data  the bytes of one captured version
//! <spool>/journal.key         the key of the records' MACs (journal.rs)
//! <spool>/refused/<id>.data   data named only by records the spool did not write
//! ```
//!
//! Everything here is owner-only (folders 0700, files 0600, whatever the umask).
//!
//! - `capture` copies (reflink where possible) and hashes in one pass and returns at
//!   once; it never waits for the network and never fsyncs.
//! - A committer thread makes captures durable in groups: one `syncfs` (or a couple of
//!   `fdatasync`s for tiny groups) for the data, then their records appended to the
//!   journal with one `fdatasync`. Only then are they handed to the uploaders.
//! - Upload workers send entries oldest first, a few at a time, never two versions of one
//!   path at once (so the server stores them in order): HEAD first, PUT if missing.
//!   The answer's [`ErrorClass`](super::ErrorClass) decides: transient (network, 5xx,
//!   429) → retry after the server's `Retry-After` or with exponential backoff capped at
//!   `max_backoff`; permanent (400/403/409/413/422…) → the failed list, data kept;
//!   needs-credentials (401) → everything stays queued and uploads pause until the
//!   spool is opened again (a new mount or backup), shown as such in the status.
//! - An entry's data is removed only after the server said it has the version, and only
//!   after that fact is durable in the journal.
//! - On open, the journal is replayed: data files without a record are captures cut off
//!   by a crash and are deleted; a recorded capture whose data is missing or shorter than
//!   recorded goes to the failed list (never uploaded as if it were whole).

mod capture;
mod committer;
mod journal;
mod recovery;
mod state;
mod status;
mod worker;

#[cfg(test)]
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use self::capture::CaptureError;
pub use self::journal::ForeignRecords;
use self::journal::Record;
use self::state::{Entry, Guard, Inner, State, data_file};
pub use self::status::{
    FailedUpload, LastError, LostCapture, SPOOL_LINE, SpoolStatus, human_bytes, render_status,
};
#[cfg(test)]
use self::worker::backoff;
#[cfg(test)]
use super::upload::UploadError;
use super::upload::Uploader;
use crate::names::RelPath;
use crate::private;
use crate::store::Digest;
use crate::sync::{lock, wait, wait_timeout};

const CAPTURES: &str = "captures";
const LOCK: &str = "spool.lock";
/// Data files named only by journal records this spool did not write, kept aside.
const REFUSED: &str = "refused";
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

    /// True when the file to capture could not be read (gone, not a regular file), as
    /// opposed to the spool failing to keep a copy.
    pub fn is_source(&self) -> bool {
        matches!(self, SpoolError::Source { .. })
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
    /// Uploads sent at the same time (0: none, the spool only keeps and records).
    pub workers: usize,
    /// How long the committer waits for more captures to join a group.
    pub commit_delay: Duration,
    /// A group this large is committed without waiting `commit_delay`.
    pub max_batch: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// After the server refused the credentials (401): `None` pauses the uploads until
    /// the spool is opened again (a new mount or backup, presumably with the right
    /// password), so a wrong password never trips the server's sign-in throttle;
    /// `Some(d)` tries again after `d`.
    pub credentials_recheck: Option<Duration>,
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
            credentials_recheck: None,
            events: None,
        }
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

impl Spool {
    /// Opens the spool folder (creating it), recovers what a crash left and starts the
    /// committer and upload threads.
    pub fn open(
        dir: &Path,
        uploader: Arc<dyn Uploader>,
        opts: SpoolOptions,
    ) -> Result<Spool, SpoolError> {
        let captures_dir = dir.join(CAPTURES);
        private::own_dir(dir)
            .and_then(|()| private::own_dir(&captures_dir))
            .map_err(|e| SpoolError::io(dir, "creating the folder", e))?;
        let lock_file = private::open_options()
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
        let (state, journal) = recovery::recover(dir, &captures_dir)?;
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
        // No workers: a maintenance view (`ects status --dismiss`) that sends nothing.
        for i in 0..inner.opts.workers {
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
        let (sha256, size) = match capture::copy_and_hash(source, &dest) {
            Ok(done) => done,
            Err(CaptureError::Source(e)) => {
                return Err(SpoolError::Source {
                    path: source.to_owned(),
                    source: e,
                });
            }
            Err(CaptureError::Spool(e)) => {
                let err = SpoolError::io(&inner.dir, "writing a capture", e);
                self.lost(path, &err);
                return Err(err);
            }
        };
        let mut st = lock(&inner.state);
        st.captures += 1;
        if st.lost.remove(path.as_str()).is_some() {
            // Not yet committed: it would land after this capture's record and revive.
            st.records
                .retain(|r| !matches!(r, Record::Lost { path: p, .. } if p == path.as_str()));
        }
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

    /// Records a version that could not be captured as a visible problem: in the
    /// status (`.ects-status.txt`) at once and in the journal (`ects status`) with the
    /// next commit. Never silent: the student's save is not backed up.
    fn lost(&self, path: &RelPath, err: &SpoolError) {
        let inner = &self.inner;
        let time = Utc::now();
        let message = err.to_string();
        tracing::error!(%path, "version NOT taken: {message}");
        let mut st = lock(&inner.state);
        st.lost.insert(
            path.to_string(),
            LostCapture {
                path: path.to_string(),
                message: message.clone(),
                time,
            },
        );
        st.records.push(Record::Lost {
            path: path.to_string(),
            message: message.clone(),
            time,
        });
        st.last_error = Some(LastError { time, message });
        inner.changed.notify_all();
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
            st = wait(&inner.changed, st);
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
        while !st.is_idle() && !st.stop && !inner.paused(&st) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = wait_timeout(&inner.changed, st, deadline - now);
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
            st = wait_timeout(&inner.changed, st, deadline - now);
        }
    }

    pub fn status(&self) -> SpoolStatus {
        let st = lock(&self.inner.state);
        SpoolStatus {
            pending: st.queued_len(),
            pending_bytes: st.queued().map(|e| e.size).sum(),
            oldest_pending: st.queued().map(|e| e.time).min(),
            waiting: {
                let mut q: Vec<&Entry> = st.queued().collect();
                q.sort_by_key(|e| e.id);
                q.iter()
                    .take(status::WAITING_SHOWN)
                    .map(|e| e.path.to_string())
                    .collect()
            },
            uploading: st.in_flight.len(),
            failed: st.failed.values().map(|(_, f)| f.clone()).collect(),
            lost: st.lost.values().cloned().collect(),
            last_error: st.last_error.clone(),
            server_reachable: st.reachable,
            spool_dir: Some(self.inner.dir.clone()),
            credentials_refused: st.credentials_refused,
            foreign: st.foreign.clone(),
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

    /// Takes every failed version out of the failed list, moving its bytes to
    /// `dest/<its path>` (a name already there gets the version's short hash added), so
    /// nothing is lost in silence. Returns (path, where the bytes are now).
    pub fn dismiss_failed(&self, dest: &Path) -> Result<Vec<(String, PathBuf)>, SpoolError> {
        let inner = &self.inner;
        let failed: Vec<(u64, FailedUpload)> = lock(&inner.state)
            .failed
            .iter()
            .map(|(id, (_, f))| (*id, f.clone()))
            .collect();
        let mut moved = Vec::new();
        for (id, f) in failed {
            let data = data_file(&inner.captures_dir, id);
            let mut to = dest.to_path_buf();
            to.extend(f.path.split('/'));
            if to.exists() {
                let name = format!(
                    "{}.{}",
                    to.file_name().and_then(|n| n.to_str()).unwrap_or("version"),
                    f.sha256.short()
                );
                to.set_file_name(name);
            }
            let parent = to.parent().unwrap_or(dest);
            private::own_dir(parent)
                .map_err(|e| SpoolError::io(&inner.dir, "creating the dismissed folder", e))?;
            match fs::rename(&data, &to).or_else(|_| fs::copy(&data, &to).map(|_| ())) {
                Ok(()) => {}
                // Damaged or missing already (status 0): nothing left to keep.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(SpoolError::io(&inner.dir, "moving a dismissed version", e)),
            }
            let _ = fs::remove_file(&data);
            let mut st = lock(&inner.state);
            st.failed.remove(&id);
            st.records.push(Record::Dismissed { id });
            inner.changed.notify_all();
            drop(st);
            moved.push((f.path, to));
        }
        Ok(moved)
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
                st.pending.insert(id, Entry::from_rec(path, &c));
                st.records.push(Record::Retry { id });
                n += 1;
            }
        }
        inner.changed.notify_all();
        n
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod lost_tests;
#[cfg(test)]
mod retry_tests;
