//! The committer thread: makes groups of captures durable, then appends their records
//! (and the workers' done/failed records) to the journal, and removes uploaded data.

#[cfg(not(target_os = "linux"))]
use std::fs::OpenOptions;
use std::fs::{self, File};
use std::io;
use std::path::Path;

use std::time::{Duration, Instant};

use chrono::Utc;

use super::COMPACT_AT;
use super::journal::{self, Record};
use super::recovery::snapshot_records;
use super::state::{Inner, data_file};
use super::status::LastError;
use crate::sync::{lock, wait, wait_timeout};

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
    /// Makes groups of captures durable, then appends their records; also appends the
    /// workers' done/failed records and removes uploaded data.
    pub(super) fn committer(&self) {
        loop {
            let mut st = lock(&self.state);
            while st.uncommitted.is_empty() && st.records.is_empty() && !st.stop {
                st = wait(&self.changed, st);
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
                st = wait_timeout(&self.changed, st, deadline - now);
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
                drop(wait_timeout(&self.changed, st, Duration::from_secs(1)));
            }
        }
    }

    /// `records` starts with the capture records of the `batch_len` new captures.
    pub(super) fn commit(&self, batch_len: usize, records: &[Record]) -> io::Result<()> {
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

    pub(super) fn maybe_compact(&self) {
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
}
