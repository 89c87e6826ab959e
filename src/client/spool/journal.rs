//! The spool's journal: `<spool>/journal.log`, one JSON record per line, appended in
//! groups by the committer and rewritten compactly at start-up (and when it grows).
//!
//! A capture's record is appended only after its data file is durable, so a record
//! always names whole data; a data file without a record is a capture cut off by a
//! crash and is discarded. A torn last line (a crash mid-append) is skipped.
//!
//! Each line is `<HMAC-SHA256 in hex> <JSON record>`, keyed with `journal.key` (32
//! random bytes, owner-only, created once beside the journal). A record whose MAC does
//! not verify was not written by this spool (planted or edited): it is never acted on.
//! Its count is kept and shown in the status, and the data a foreign capture names is
//! moved to `refused/`, never uploaded.
//!
//! A journal from before keys existed (no `journal.key` yet, lines without a MAC) is
//! trusted once, and signed by the rewrite at open, when only its owner could have
//! written it ([`legacy_trusted`]); otherwise its records are refused like any other
//! unsigned line. The MAC keeps out other OS accounts; it does not separate students
//! who share one OS account (they share the key too: that is the sign-in issue's job).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::status::{FailedUpload, LastError, LostCapture};
use crate::store::Digest;

pub(super) const JOURNAL: &str = "journal.log";
const JOURNAL_TMP: &str = "journal.log.tmp";
pub(super) const KEY: &str = "journal.key";

type HmacSha256 = Hmac<Sha256>;

/// The spool's journal key.
#[derive(Clone)]
pub(super) struct Key([u8; 32]);

impl Key {
    /// Reads `journal.key`, creating it (owner-only, durable) the first time.
    pub(super) fn load_or_create(dir: &Path) -> io::Result<Key> {
        if let Some(k) = Self::load(dir)? {
            return Ok(k);
        }
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        let path = dir.join(KEY);
        let mut f = crate::private::open_options()
            .write(true)
            .create_new(true)
            .open(&path)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        crate::durable::sync_dir(dir)?;
        Ok(Key(bytes))
    }

    /// Reads `journal.key`; `None` when there is none yet.
    pub(super) fn load(dir: &Path) -> io::Result<Option<Key>> {
        match fs::read(dir.join(KEY)) {
            Ok(b) => <[u8; 32]>::try_from(b.as_slice())
                .map(|k| Some(Key(k)))
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is not a spool journal key (wrong length)", KEY),
                    )
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; 32 bytes cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }

    fn sign(&self, json: &[u8]) -> String {
        let mut m = self.mac();
        m.update(json);
        hex::encode(m.finalize().into_bytes())
    }

    fn verify(&self, json: &[u8], tag_hex: &[u8]) -> bool {
        let Ok(tag) = hex::decode(tag_hex) else {
            return false;
        };
        let mut m = self.mac();
        m.update(json);
        m.verify_slice(&tag).is_ok()
    }
}

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
    /// A failed entry taken off the list by hand (its bytes moved out of the spool).
    Dismissed { id: u64 },
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
        /// The server refused the password (401): uploads wait for a new start.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        credentials: bool,
    },
    /// Journal records refused so far because their MAC did not verify (kept across
    /// compactions so the status keeps saying so).
    Foreign { lines: u64, time: DateTime<Utc> },
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
    /// The newest error was a refused password, and nothing was stored since.
    pub credentials_refused: bool,
    /// Versions lost at capture, by path (the newest per path).
    pub lost: BTreeMap<String, LostCapture>,
    /// Lines that did not parse (a torn last line after a crash).
    pub bad_lines: usize,
    /// Records refused for a missing or wrong MAC: ever (with the newest time), and
    /// the capture ids they named in this replay (their data is not ours to send).
    pub foreign: Option<ForeignRecords>,
    pub foreign_ids: std::collections::BTreeSet<u64>,
}

/// Journal records the spool refused because it did not write them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignRecords {
    pub lines: u64,
    pub time: DateTime<Utc>,
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
                self.credentials_refused = false;
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
            Record::Dismissed { id } => {
                self.failed.remove(&id);
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
            Record::Error {
                time,
                message,
                credentials,
            } => {
                self.credentials_refused = credentials;
                self.last_error = Some(LastError { time, message });
            }
            Record::Foreign { lines, time } => {
                let before = self.foreign.as_ref().map_or(0, |f| f.lines);
                self.foreign = Some(ForeignRecords {
                    lines: before + lines,
                    time,
                });
            }
        }
    }

    /// A record that failed its MAC check: counted, never applied.
    fn refuse(&mut self, rec: Option<Record>) {
        if let Some(Record::Capture { id, .. }) = rec {
            self.foreign_ids.insert(id);
        }
        let lines = self.foreign.as_ref().map_or(0, |f| f.lines) + 1;
        self.foreign = Some(ForeignRecords {
            lines,
            time: Utc::now(),
        });
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
                credentials: self.credentials_refused,
            });
        }
        if let Some(f) = &self.foreign {
            out.push(Record::Foreign {
                lines: f.lines,
                time: f.time,
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

/// Whether the unsigned records of a journal from before keys existed may be acted on:
/// there is no key yet, and the journal is a plain file of this OS user that nobody
/// else could write. (Windows keeps the spool in the user's profile, private by its ACL.)
pub(super) fn legacy_trusted(dir: &Path) -> io::Result<bool> {
    if Key::load(dir)?.is_some() {
        return Ok(false);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match fs::symlink_metadata(dir.join(JOURNAL)) {
            // SAFETY: geteuid(2) has no preconditions and cannot fail.
            Ok(m) => Ok(m.file_type().is_file()
                && m.uid() == unsafe { libc::geteuid() }
                && m.mode() & 0o022 == 0),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    Ok(true)
}

/// Reads a journal (missing = empty), applying only records `key` signed (none when
/// there is no key), and with `legacy` also unsigned ones. Never writes.
pub(super) fn replay(dir: &Path, key: Option<&Key>, legacy: bool) -> io::Result<Replayed> {
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
        let (tag, json) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (&b""[..], &line[..]),
        };
        let parsed = serde_json::from_slice::<Record>(json)
            .or_else(|_| serde_json::from_slice::<Record>(&line))
            .ok();
        // A signed line starts with its hex MAC, an unsigned (pre-key) one with `{`.
        let signed =
            key.is_some_and(|k| k.verify(json, tag)) || (legacy && line.first() == Some(&b'{'));
        match (signed, parsed) {
            (true, Some(rec)) => state.apply(rec),
            // Torn by a crash mid-append (or junk): nothing to act on.
            (_, None) => state.bad_lines += 1,
            (false, rec) => {
                tracing::warn!(
                    line = %String::from_utf8_lossy(&line),
                    "refused a spool journal record this spool did not write"
                );
                state.refuse(rec)
            }
        }
    }
    Ok(state)
}

fn encode(records: &[Record], key: &Key) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    for r in records {
        let json = serde_json::to_vec(r).map_err(io::Error::other)?;
        buf.extend_from_slice(key.sign(&json).as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(&json);
        buf.push(b'\n');
    }
    Ok(buf)
}

/// The open journal, written only by the committer thread.
pub(super) struct JournalFile {
    dir: PathBuf,
    key: Key,
    file: File,
    len: u64,
}

impl JournalFile {
    /// Replaces the journal with exactly `records` (write, fsync, rename, fsync folder),
    /// then opens it for appending.
    pub(super) fn rewrite(dir: &Path, key: &Key, records: &[Record]) -> io::Result<Self> {
        let (file, len) = Self::write_tmp(dir, key, records)?;
        Self::install(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            key: key.clone(),
            file,
            len,
        })
    }

    /// Writes `records` to the temporary journal and returns a handle appending to it
    /// (it stays valid across the rename that makes it the journal).
    fn write_tmp(dir: &Path, key: &Key, records: &[Record]) -> io::Result<(File, u64)> {
        let tmp = dir.join(JOURNAL_TMP);
        let bytes = encode(records, key)?;
        let mut f = crate::private::open_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        let file = OpenOptions::new().append(true).open(&tmp)?;
        Ok((file, bytes.len() as u64))
    }

    /// Makes the temporary journal the journal.
    fn install(dir: &Path) -> io::Result<()> {
        fs::rename(dir.join(JOURNAL_TMP), dir.join(JOURNAL))?;
        crate::durable::sync_dir(dir)
    }

    /// Appends records and makes them durable. On failure the journal is cut back to
    /// where it was, so a later append never follows a torn line.
    pub(super) fn append(&mut self, records: &[Record]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let bytes = encode(records, &self.key)?;
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
        let (file, len) = Self::write_tmp(&self.dir, &self.key, records)?;
        // Close the old journal's handle before replacing it: Windows refuses to
        // rename over a file that is still open ("Access denied", os error 5).
        self.file = file;
        if let Err(e) = Self::install(&self.dir) {
            // Keep appending to the journal that is still in place.
            self.file = OpenOptions::new()
                .append(true)
                .open(self.dir.join(JOURNAL))?;
            return Err(e);
        }
        self.len = len;
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
        let key = Key::load_or_create(dir.path()).unwrap();
        let mut j = JournalFile::rewrite(dir.path(), &key, &[]).unwrap();
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
                credentials: false,
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
        let s = replay(dir.path(), Some(&key), false).unwrap();
        assert_eq!(s.bad_lines, 1);
        assert_eq!(s.pending.keys().copied().collect::<Vec<_>>(), [3, 4]);
        assert_eq!(s.failed.keys().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(s.failed[&2].1.status, 413);
        assert_eq!(s.done, 1);
        assert_eq!(s.next_id, 5);
        assert_eq!(s.last_error.as_ref().unwrap().message, "down");

        j.compact(&s.records()).unwrap();
        let again = replay(dir.path(), Some(&key), false).unwrap();
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

    /// Records the spool did not sign are never applied: not a planted capture, not a
    /// forged `done` that would drop a real one, not one signed with another key.
    #[test]
    fn refuses_records_it_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::load_or_create(dir.path()).unwrap();
        let mut j = JournalFile::rewrite(dir.path(), &key, &[]).unwrap();
        j.append(&[cap(1)]).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL))
            .unwrap();
        // Plain JSON, as an older ects wrote it, or an attacker without the key.
        let mut planted = serde_json::to_vec(&cap(2)).unwrap();
        planted.push(b'\n');
        f.write_all(&planted).unwrap();
        // Signed, but with another key.
        let other = Key([7; 32]);
        f.write_all(&encode(&[Record::Done { id: 1 }, cap(3)], &other).unwrap())
            .unwrap();
        // A valid signature over different bytes.
        let good = encode(&[cap(4)], &key).unwrap();
        let edited = String::from_utf8(good)
            .unwrap()
            .replace("a/4.txt", "a/9.txt");
        f.write_all(edited.as_bytes()).unwrap();
        let s = replay(dir.path(), Some(&key), false).unwrap();
        assert_eq!(s.pending.keys().copied().collect::<Vec<_>>(), [1]);
        assert_eq!(s.foreign.as_ref().map(|f| f.lines), Some(4));
        assert_eq!(s.foreign_ids.iter().copied().collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(s.bad_lines, 0);
        // Without the key nothing is trusted.
        assert!(replay(dir.path(), None, false).unwrap().pending.is_empty());
        // The key is created once and kept.
        assert_eq!(Key::load_or_create(dir.path()).unwrap().0, key.0);
    }

    /// An upgrade keeps what was waiting: a pre-key journal only its owner could write
    /// is trusted once; one another account could write (as older versions left it,
    /// 0666) is refused like any unsigned record.
    #[cfg(unix)]
    #[test]
    fn a_journal_from_before_keys_is_trusted_only_when_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL);
        let mut old = Vec::new();
        for r in [cap(1), cap(2), Record::Done { id: 1 }] {
            old.extend(serde_json::to_vec(&r).unwrap());
            old.push(b'\n');
        }
        std::fs::write(&path, &old).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(legacy_trusted(dir.path()).unwrap());
        let s = replay(dir.path(), None, true).unwrap();
        assert_eq!(s.pending.keys().copied().collect::<Vec<_>>(), [2]);
        assert!(s.foreign.is_none());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!legacy_trusted(dir.path()).unwrap());
        // Once a key exists, unsigned lines are never trusted again.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Key::load_or_create(dir.path()).unwrap();
        assert!(!legacy_trusted(dir.path()).unwrap());
    }
}
