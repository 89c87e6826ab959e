//! The spool's shared state: the entries it knows, the background threads' shared
//! `Inner`, and the guard that stops them.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::journal::{CaptureRec, ForeignRecords, JournalFile, Record};
use super::status::{FailedUpload, LastError, LostCapture};
use super::{SpoolEvent, SpoolOptions};
use crate::client::upload::Uploader;
use crate::names::RelPath;
use crate::store::Digest;
use crate::sync::lock;

/// A captured version known to the spool.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) id: u64,
    pub(super) path: RelPath,
    pub(super) sha256: Digest,
    pub(super) size: u64,
    pub(super) time: DateTime<Utc>,
}

impl Entry {
    /// The entry a journal record describes, once its path has been checked.
    pub(super) fn from_rec(path: RelPath, c: &CaptureRec) -> Entry {
        Entry {
            id: c.id,
            path,
            sha256: c.sha256,
            size: c.size,
            time: c.time,
        }
    }

    pub(super) fn rec(&self) -> CaptureRec {
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
pub(super) struct State {
    pub(super) next_id: u64,
    /// Captured, not durable yet (waiting for the committer).
    pub(super) uncommitted: Vec<Entry>,
    /// The group the committer is making durable right now.
    pub(super) committing: Vec<Entry>,
    /// Durable, not yet stored on the server. Keyed by id = capture order.
    pub(super) pending: BTreeMap<u64, Entry>,
    /// Refused for good; the data is kept.
    pub(super) failed: BTreeMap<u64, (CaptureRec, FailedUpload)>,
    pub(super) in_flight: HashSet<u64>,
    pub(super) busy_paths: HashSet<RelPath>,
    /// Journal records (done/failed/retry/error) waiting for the next commit.
    pub(super) records: Vec<Record>,
    /// Data files to delete once their `done` records are durable.
    pub(super) unlinks: Vec<u64>,
    /// Commit groups started / finished.
    pub(super) taken_gen: u64,
    pub(super) finished_gen: u64,
    pub(super) commit_error: Option<String>,
    /// Someone waits for durability: commit without gathering more.
    pub(super) urgent: bool,
    pub(super) failures_in_a_row: u32,
    pub(super) backoff_until: Option<Instant>,
    pub(super) done: u64,
    pub(super) captures: u64,
    pub(super) commits: u64,
    pub(super) last_error: Option<LastError>,
    /// Versions that could not be captured, by path (shown until the path is captured).
    pub(super) lost: BTreeMap<String, LostCapture>,
    pub(super) reachable: Option<bool>,
    /// The server refused the password (401). Uploads pause until the spool is opened
    /// again (a new mount or backup), unless `credentials_recheck` is set.
    pub(super) credentials_refused: bool,
    /// Journal records refused because this spool did not write them.
    pub(super) foreign: Option<ForeignRecords>,
    pub(super) stop: bool,
}

impl State {
    /// Captured but not durable yet.
    pub(super) fn not_durable(&self) -> impl Iterator<Item = &Entry> {
        self.uncommitted.iter().chain(self.committing.iter())
    }

    /// Everything not yet stored on the server (failed ones excluded).
    pub(super) fn queued(&self) -> impl Iterator<Item = &Entry> {
        self.not_durable().chain(self.pending.values())
    }

    pub(super) fn queued_len(&self) -> usize {
        self.uncommitted.len() + self.committing.len() + self.pending.len()
    }

    pub(super) fn is_idle(&self) -> bool {
        self.queued_len() == 0
    }
}

pub(super) struct Inner {
    pub(super) dir: PathBuf,
    pub(super) captures_dir: PathBuf,
    pub(super) uploader: Arc<dyn Uploader>,
    pub(super) opts: SpoolOptions,
    pub(super) state: Mutex<State>,
    /// Wakes the committer, the workers and everyone waiting for a state change.
    pub(super) changed: Condvar,
    pub(super) journal: Mutex<Option<JournalFile>>,
}

/// Stops the background threads when the last [`Spool`] handle goes away.
/// Upload workers busy with a big file finish it on their own; they no longer touch
/// the journal, so the lock can go (a new spool on the folder re-checks with HEAD).
pub(super) struct Guard {
    pub(super) inner: Arc<Inner>,
    pub(super) committer: Mutex<Option<JoinHandle<()>>>,
    /// Held while the spool is open: one uploading process per spool folder.
    pub(super) _lock: File,
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

pub(super) fn data_file(captures: &Path, id: u64) -> PathBuf {
    captures.join(format!("{id}.data"))
}

impl Inner {
    /// Uploads wait for a new start: the password was refused and the same one would be
    /// refused again. Nothing is sent, so nothing is worth waiting for either.
    pub(super) fn paused(&self, st: &State) -> bool {
        st.credentials_refused && self.opts.credentials_recheck.is_none()
    }

    pub(super) fn stop(&self) {
        lock(&self.state).stop = true;
        self.changed.notify_all();
    }

    pub(super) fn emit(&self, ev: SpoolEvent) {
        if let Some(tx) = &self.opts.events {
            let _ = tx.send(ev);
        }
    }
}
