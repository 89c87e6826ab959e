//! The append-only upload journal: `<data>/journal/<user>.log`, one JSON line per
//! accepted upload (new version or repeat). It is never rewritten; it lets an admin
//! (and the tests) see exactly what arrived and when, independent of any client's word.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Digest, VersionInfo};
use crate::names::{RelPath, UserName};

/// One line of a user's journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEvent {
    /// When the store accepted the upload (its own clock).
    pub time: DateTime<Utc>,
    pub path: String,
    pub sha256: Digest,
    pub size: u64,
    /// `new`: a version was stored; `dup`: the same content was already there.
    pub event: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    New,
    Dup,
}

pub(crate) struct Journal {
    dir: PathBuf,
    /// Serializes appends within the process (the store's lock keeps other processes
    /// out). Append mode alone does not keep concurrent lines whole everywhere: under
    /// Wine two writers landed at the same end offset and lines were lost.
    writing: Mutex<()>,
}

impl Journal {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            writing: Mutex::new(()),
        }
    }

    fn file(&self, user: &UserName) -> PathBuf {
        self.dir.join(format!("{user}.log"))
    }

    /// Appends one event with a single `write`, one writer at a time, and makes it
    /// durable before returning.
    pub(crate) fn append(
        &self,
        user: &UserName,
        path: &RelPath,
        version: &VersionInfo,
        created: bool,
        now: DateTime<Utc>,
    ) -> io::Result<()> {
        // A new version's event carries its stored_at; a repeat carries when it was seen.
        let event = JournalEvent {
            time: if created { version.stored_at } else { now },
            path: path.as_str().to_owned(),
            sha256: version.sha256,
            size: version.size,
            event: if created {
                EventKind::New
            } else {
                EventKind::Dup
            },
        };
        let mut line = serde_json::to_vec(&event).map_err(io::Error::other)?;
        line.push(b'\n');
        let file = {
            // A poisoned lock only means another append panicked; the file is fine.
            let _one_writer = crate::sync::lock(&self.writing);
            let mut file = super::private::open_options()
                .create(true)
                .append(true)
                .open(self.file(user))?;
            file.write_all(&line)?;
            file
        };
        // Outside the lock: concurrent uploads' syncs may overlap.
        file.sync_data()
    }

    /// Every complete event of a user's journal, oldest first. A torn last line (a
    /// crash mid-append) is skipped.
    pub(crate) fn read(&self, user: &UserName) -> io::Result<Vec<JournalEvent>> {
        let file = match fs::File::open(self.file(user)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for line in BufReader::new(file).lines() {
            if let Ok(event) = serde_json::from_str(&line?) {
                out.push(event);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uploads finish on many threads at once; every one must leave its line. (Under
    /// wine64 unserialized appends lost lines: two writers at the same end offset.)
    #[test]
    fn concurrent_appends_keep_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path().to_path_buf());
        let user = UserName::parse("kim").unwrap();
        let (threads, per_thread) = (16, 25);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (journal, user) = (&journal, &user);
                s.spawn(move || {
                    for i in 0..per_thread {
                        let body = format!("{t}-{i}");
                        let version = VersionInfo {
                            sha256: Digest::of(body.as_bytes()),
                            size: body.len() as u64,
                            stored_at: Utc::now(),
                        };
                        let path = RelPath::parse(&format!("t{t}/f{i}.txt")).unwrap();
                        journal
                            .append(user, &path, &version, true, version.stored_at)
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(journal.read(&user).unwrap().len(), threads * per_thread);
    }
}
