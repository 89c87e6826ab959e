//! The spool's journal: `<spool>/journal.log`, one JSON record per line, appended in
//! groups by the committer and rewritten compactly at start-up (and when it grows).
//!
//! A capture's record is appended only after its data file is durable, so a record
//! always names whole data; a data file without a record is a capture cut off by a
//! crash and is discarded. A torn last line (a crash mid-append) is skipped.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::status::{FailedUpload, LastError, LostCapture};
use crate::store::Digest;

pub(super) const JOURNAL: &str = "journal.log";
const JOURNAL_TMP: &str = "journal.log.tmp";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rec", rename_all = "snake_case")]
pub(super) enum Record {
    /// Written first by a compaction: totals that the dropped records carried.
    Counter { done: u64, next_id: u64 },
    /// A durable capture, waiting to be uploaded.
    Capture {
        id: u64,
        path: String,
        sha256: Digest,
        size: u64,
        time: DateTime<Utc>,
    },
    /// Stored on the server (uploaded, or it was there already): the data is gone.
    Done { id: u64 },
    /// Refused for good; the data is kept and shown in the status.
    Failed {
        id: u64,
        status: u16,
        message: String,
        time: DateTime<Utc>,
    },
    /// A failed entry queued again by hand.
    Retry { id: u64 },
    /// A version that could not be copied into the spool: never queued, shown until a
    /// later capture of the same path.
    Lost {
        path: String,
        message: String,
        time: DateTime<Utc>,
    },
    /// The newest trouble, for `ects status` in another process.
    Error {
        time: DateTime<Utc>,
        message: String,
    },
}

/// A capture as the journal knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CaptureRec {
    pub id: u64,
    pub path: String,
    pub sha256: Digest,
    pub size: u64,
    pub time: DateTime<Utc>,
}

/// The state a journal describes.
#[derive(Debug, Default)]
pub(super) struct Replayed {
    pub pending: BTreeMap<u64, CaptureRec>,
    pub failed: BTreeMap<u64, (CaptureRec, FailedUpload)>,
    pub done: u64,
    pub next_id: u64,
    pub last_error: Option<LastError>,
    /// Versions lost at capture, by path (the newest per path).
    pub lost: BTreeMap<String, LostCapture>,
    /// Lines that did not parse (a torn last line after a crash).
    pub bad_lines: usize,
}

impl Replayed {
    fn apply(&mut self, rec: Record) {
        match rec {
            Record::Counter { done, next_id } => {
                self.done = done;
                self.next_id = self.next_id.max(next_id);
            }
            Record::Capture {
                id,
                path,
                sha256,
                size,
                time,
            } => {
                self.next_id = self.next_id.max(id + 1);
                self.lost.remove(&path);
                self.pending.insert(
                    id,
                    CaptureRec {
                        id,
                        path,
                        sha256,
                        size,
                        time,
                    },
                );
            }
            Record::Done { id } => {
                if self.pending.remove(&id).is_some() || self.failed.remove(&id).is_some() {
                    self.done += 1;
                }
            }
            Record::Failed {
                id,
                status,
                message,
                time,
            } => {
                if let Some(c) = self.pending.remove(&id) {
                    let f = FailedUpload {
                        id,
                        path: c.path.clone(),
                        sha256: c.sha256,
                        size: c.size,
                        status,
                        message,
                        time,
                    };
                    self.failed.insert(id, (c, f));
                }
            }
            Record::Retry { id } => {
                if let Some((c, _)) = self.failed.remove(&id) {
                    self.pending.insert(id, c);
                }
            }
            Record::Lost {
                path,
                message,
                time,
            } => {
                self.lost.insert(
                    path.clone(),
                    LostCapture {
                        path,
                        message,
                        time,
                    },
                );
            }
            Record::Error { time, message } => {
                self.last_error = Some(LastError { time, message });
            }
        }
    }

    /// The records that rebuild this state, for a compaction.
    pub(super) fn records(&self) -> Vec<Record> {
        let mut out = vec![Record::Counter {
            done: self.done,
            next_id: self.next_id,
        }];
        let mut all: Vec<&CaptureRec> = self
            .pending
            .values()
            .chain(self.failed.values().map(|(c, _)| c))
            .collect();
        all.sort_by_key(|c| c.id);
        for c in all {
            out.push(capture_record(c));
        }
        for (_, f) in self.failed.values() {
            out.push(Record::Failed {
                id: f.id,
                status: f.status,
                message: f.message.clone(),
                time: f.time,
            });
        }
        // After every capture record: a capture of the same path would clear them.
        for l in self.lost.values() {
            out.push(Record::Lost {
                path: l.path.clone(),
                message: l.message.clone(),
                time: l.time,
            });
        }
        if let Some(e) = &self.last_error {
            out.push(Record::Error {
                time: e.time,
                message: e.message.clone(),
            });
        }
        out
    }
}

pub(super) fn capture_record(c: &CaptureRec) -> Record {
    Record::Capture {
        id: c.id,
        path: c.path.clone(),
        sha256: c.sha256,
        size: c.size,
        time: c.time,
    }
}

/// Reads a journal (missing = empty). Never writes.
pub(super) fn replay(dir: &Path) -> io::Result<Replayed> {
    let mut state = Replayed::default();
    let file = match File::open(dir.join(JOURNAL)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(state),
        Err(e) => return Err(e),
    };
    for line in BufReader::new(file).split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Record>(&line) {
            Ok(rec) => state.apply(rec),
            Err(_) => state.bad_lines += 1,
        }
    }
    Ok(state)
}

fn encode(records: &[Record]) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    for r in records {
        serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
        buf.push(b'\n');
    }
    Ok(buf)
}

/// The open journal, written only by the committer thread.
pub(super) struct JournalFile {
    dir: PathBuf,
    file: File,
    len: u64,
}

impl JournalFile {
    /// Replaces the journal with exactly `records` (write, fsync, rename, fsync folder),
    /// then opens it for appending.
    pub(super) fn rewrite(dir: &Path, records: &[Record]) -> io::Result<Self> {
        let tmp = dir.join(JOURNAL_TMP);
        let bytes = encode(records)?;
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, dir.join(JOURNAL))?;
        crate::store::sync_dir(dir)?;
        let file = OpenOptions::new().append(true).open(dir.join(JOURNAL))?;
        Ok(Self {
            dir: dir.to_owned(),
            file,
            len: bytes.len() as u64,
        })
    }

    /// Appends records and makes them durable. On failure the journal is cut back to
    /// where it was, so a later append never follows a torn line.
    pub(super) fn append(&mut self, records: &[Record]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let bytes = encode(records)?;
        let result = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.len
    }

    pub(super) fn compact(&mut self, records: &[Record]) -> io::Result<()> {
        *self = Self::rewrite(&self.dir, records)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(id: u64) -> Record {
        Record::Capture {
            id,
            path: format!("a/{id}.txt"),
            sha256: Digest::of(&id.to_le_bytes()),
            size: 8,
            time: Utc::now(),
        }
    }

    #[test]
    fn replay_and_compact() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = JournalFile::rewrite(dir.path(), &[]).unwrap();
        j.append(&[cap(1), cap(2), cap(3), cap(4)]).unwrap();
        j.append(&[
            Record::Done { id: 1 },
            Record::Failed {
                id: 2,
                status: 413,
                message: "too large".into(),
                time: Utc::now(),
            },
            Record::Failed {
                id: 4,
                status: 409,
                message: "collides".into(),
                time: Utc::now(),
            },
            Record::Retry { id: 4 },
            Record::Error {
                time: Utc::now(),
                message: "down".into(),
            },
        ])
        .unwrap();
        // A torn last line, as a crash mid-append leaves it.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL))
            .unwrap()
            .write_all(b"{\"rec\":\"capture\",\"id\":9,\"pa")
            .unwrap();
        let s = replay(dir.path()).unwrap();
        assert_eq!(s.bad_lines, 1);
        assert_eq!(s.pending.keys().copied().collect::<Vec<_>>(), [3, 4]);
        assert_eq!(s.failed.keys().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(s.failed[&2].1.status, 413);
        assert_eq!(s.done, 1);
        assert_eq!(s.next_id, 5);
        assert_eq!(s.last_error.as_ref().unwrap().message, "down");

        j.compact(&s.records()).unwrap();
        let again = replay(dir.path()).unwrap();
        assert_eq!(again.bad_lines, 0);
        assert_eq!(again.pending, s.pending);
        assert_eq!(
            again.failed.keys().collect::<Vec<_>>(),
            s.failed.keys().collect::<Vec<_>>()
        );
        assert_eq!(again.done, 1);
        assert_eq!(again.next_id, 5);
        assert!(j.len() > 0);
    }
}
