//! The append-only upload journal: `<data>/journal/<user>.log`, one JSON line per
//! accepted upload (new version or repeat). It is never rewritten; it lets an admin
//! (and the tests) see exactly what arrived and when, independent of any client's word.
//!
//! A deletion is one more appended line (`delete`), never an erase: every version
//! stays. The journal is also the change feed (`GET /api/v1/changes`): a cursor is a
//! byte offset at the start of a line, and [`ChangeSignal`] wakes the feed's waiters.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
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
    /// `new`: a version was stored; `dup`: the same content was already there;
    /// `delete`: the file was deleted (`sha256`/`size` name its newest version then).
    pub event: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    New,
    Dup,
    Delete,
}

/// The deletion in force for `path`: its last event is a `delete` (a later save, new or
/// repeat, makes the file live again).
pub fn current_deletion<'a>(events: &'a [JournalEvent], path: &str) -> Option<&'a JournalEvent> {
    events
        .iter()
        .rev()
        .find(|e| e.path == path)
        .filter(|e| e.event == EventKind::Delete)
}

/// One watch channel per user, bumped after each event appended to their journal, so
/// that a long-polling change feed wakes at once instead of re-reading on a timer.
#[derive(Default)]
pub struct ChangeSignal {
    users: Mutex<HashMap<String, tokio::sync::watch::Sender<u64>>>,
}

impl ChangeSignal {
    fn sender(&self, user: &UserName) -> tokio::sync::watch::Sender<u64> {
        let mut users = crate::sync::lock(&self.users);
        users
            .entry(user.as_str().to_owned())
            .or_insert_with(|| tokio::sync::watch::channel(0).0)
            .clone()
    }

    /// Wakes every waiter on `user`'s feed.
    pub fn notify(&self, user: &UserName) {
        self.sender(user).send_modify(|n| *n = n.wrapping_add(1));
    }

    /// How many receivers of `user`'s feed exist (long-polls waiting, for tests).
    pub fn waiters(&self, user: &UserName) -> usize {
        self.sender(user).receiver_count()
    }

    /// A receiver that sees a change after each later [`ChangeSignal::notify`].
    pub fn subscribe(&self, user: &UserName) -> tokio::sync::watch::Receiver<u64> {
        self.sender(user).subscribe()
    }
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
        self.append_event(user, &event)
    }

    /// Appends one event as it is (the deletion path).
    pub(crate) fn append_event(&self, user: &UserName, event: &JournalEvent) -> io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        let file = {
            // A poisoned lock only means another append panicked; the file is fine.
            let _one_writer = crate::sync::lock(&self.writing);
            let mut file = crate::private::open_options()
                .create(true)
                .append(true)
                .read(true)
                .open(self.file(user))?;
            if ends_torn(&mut file)? {
                // A crash cut the last line short: start a new line, or this event would
                // be glued to the torn one and lost to every reader (and the change feed).
                line.insert(0, b'\n');
            }
            file.write_all(&line)?;
            file
        };
        // Outside the lock: concurrent uploads' syncs may overlap.
        file.sync_data()
    }

    /// The complete events after byte offset `cursor`, and the offset after the last
    /// complete line: a feed reads only what is new. `None` when `cursor` is past the
    /// end or not at the start of a line. A torn last line is neither read nor passed.
    pub(crate) fn read_after(
        &self,
        user: &UserName,
        cursor: u64,
    ) -> io::Result<Option<(Vec<JournalEvent>, u64)>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = match fs::File::open(self.file(user)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok((cursor == 0).then(|| (Vec::new(), 0)));
            }
            Err(e) => return Err(e),
        };
        if cursor > file.metadata()?.len() {
            return Ok(None);
        }
        if cursor > 0 {
            // A cursor this journal gave out always follows a newline.
            file.seek(SeekFrom::Start(cursor - 1))?;
            let mut before = [0u8; 1];
            file.read_exact(&mut before)?;
            if before[0] != b'\n' {
                return Ok(None);
            }
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        // Only whole lines: a line still being written is read next time.
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let events = bytes[..whole]
            .split(|&b| b == b'\n')
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect();
        Ok(Some((events, cursor + whole as u64)))
    }

    /// Every complete event of a user's journal, oldest first. A torn last line (a
    /// crash mid-append) is skipped.
    pub(crate) fn read(&self, user: &UserName) -> io::Result<Vec<JournalEvent>> {
        // One parser for the journal: the change feed's, from its start.
        Ok(self
            .read_after(user, 0)?
            .map(|(events, _)| events)
            .unwrap_or_default())
    }
}

/// Whether the journal's last byte is not a newline (a crash mid-append).
fn ends_torn(file: &mut fs::File) -> io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
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
