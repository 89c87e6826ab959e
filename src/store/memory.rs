//! [`MemStore`]: the store's semantics in memory, for unit tests of code above the
//! store (the server's routes, the drive core) without touching a disk.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::sync::{Arc, Mutex};

use super::clock::{self, Clock};
use super::journal::{ChangeSignal, EventKind, JournalEvent};
use super::{
    Deletion, Digest, HashingReader, PutOutcome, Staged, StagedData, Store, StoreError, Tree,
    TreeFile, VersionInfo, VersionRead,
};
use crate::names::{RelPath, UserName};
use crate::sync::lock;

type Key = (String, String); // (user, path)
type Versions = Vec<(VersionInfo, Vec<u8>)>;

/// An in-memory [`Store`]. Same rules as [`super::FsStore`]: write-once versions,
/// repeats succeed with `created: false`, files and folders never share a name.
pub struct MemStore {
    files: Mutex<BTreeMap<Key, Versions>>,
    /// Each user's journal, as `FsStore` keeps it on disk.
    journal: Mutex<BTreeMap<String, Vec<JournalEvent>>>,
    changes: ChangeSignal,
    clock: Arc<dyn Clock>,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::with_clock(clock::system())
    }
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose `stored_at` times come from `clock` (tests advance a
    /// [`super::ManualClock`] instead of sleeping).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            files: Mutex::default(),
            journal: Mutex::default(),
            changes: ChangeSignal::default(),
            clock,
        }
    }
}

impl MemStore {
    /// Long-polls waiting on `user`'s change feed (lets tests wait for one to start).
    pub fn feed_waiters(&self, user: &UserName) -> usize {
        self.changes.waiters(user)
    }

    fn append(&self, user: &UserName, event: JournalEvent) {
        lock(&self.journal)
            .entry(user.as_str().to_owned())
            .or_default()
            .push(event);
        self.changes.notify(user);
    }
}

fn is_under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

impl Store for MemStore {
    fn stage(&self, body: &mut dyn Read, limit: u64) -> Result<Staged, StoreError> {
        let mut reader = HashingReader::new(body.take(limit.saturating_add(1)));
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(StoreError::Body)?;
        if bytes.len() as u64 > limit {
            return Err(StoreError::TooLarge { limit });
        }
        let (digest, size) = reader.finish();
        Ok(Staged {
            digest,
            size,
            data: StagedData::Memory(bytes),
        })
    }

    fn commit(
        &self,
        user: &UserName,
        path: &RelPath,
        staged: Staged,
        expected: Option<&Digest>,
    ) -> Result<PutOutcome, StoreError> {
        staged.check(expected)?;
        let bytes = match staged.data {
            StagedData::Memory(b) => b,
            StagedData::Disk(mut tmp) => {
                let mut b = Vec::new();
                tmp.as_file_mut()
                    .read_to_end(&mut b)
                    .map_err(StoreError::Io)?;
                b
            }
        };
        let mut files = lock(&self.files);
        let u = user.as_str().to_owned();
        let p = path.as_str();
        for (key, _) in files.range((u.clone(), String::new())..) {
            if key.0 != u {
                break;
            }
            if is_under(&key.1, p) {
                return Err(StoreError::Collision(format!(
                    "\"{p}\" is already stored as a folder, so it cannot also be a file"
                )));
            }
            if is_under(p, &key.1) {
                return Err(StoreError::Collision(format!(
                    "\"{}\" is already stored as a file, so it cannot also be a folder",
                    key.1
                )));
            }
        }
        let versions = files.entry((u, p.to_owned())).or_default();
        if let Some((v, _)) = versions.iter().find(|(v, _)| v.sha256 == staged.digest) {
            let version = v.clone();
            drop(files);
            self.append(
                user,
                event(path, &version, self.clock.now(), EventKind::Dup),
            );
            return Ok(PutOutcome {
                version,
                created: false,
            });
        }
        let version = VersionInfo {
            sha256: staged.digest,
            size: staged.size,
            stored_at: self.clock.now(),
        };
        versions.push((version.clone(), bytes));
        drop(files);
        self.append(
            user,
            event(path, &version, version.stored_at, EventKind::New),
        );
        Ok(PutOutcome {
            version,
            created: true,
        })
    }

    fn version(
        &self,
        user: &UserName,
        path: &RelPath,
        sha256: &Digest,
    ) -> Result<Option<VersionInfo>, StoreError> {
        Ok(self
            .versions(user, path)?
            .into_iter()
            .find(|v| v.sha256 == *sha256))
    }

    fn versions(&self, user: &UserName, path: &RelPath) -> Result<Vec<VersionInfo>, StoreError> {
        let files = lock(&self.files);
        Ok(files
            .get(&(user.as_str().to_owned(), path.as_str().to_owned()))
            .map(|vs| vs.iter().map(|(v, _)| v.clone()).collect())
            .unwrap_or_default())
    }

    fn tree(&self, user: &UserName, dir: Option<&RelPath>) -> Result<Option<Tree>, StoreError> {
        let files = lock(&self.files);
        let prefix = dir.map(|d| format!("{d}/")).unwrap_or_default();
        let mut tree = Tree::default();
        let mut found = dir.is_none();
        for ((u, p), versions) in files.iter() {
            if u != user.as_str() {
                continue;
            }
            if dir.is_some_and(|d| d.as_str() == p) {
                return Ok(None); // a file, not a folder
            }
            let Some(rest) = p.strip_prefix(&prefix) else {
                continue;
            };
            found = true;
            match rest.split_once('/') {
                Some((sub, _)) => {
                    if tree.dirs.last().map(String::as_str) != Some(sub) {
                        tree.dirs.push(sub.to_owned());
                    }
                }
                None => tree.files.push(TreeFile {
                    name: rest.to_owned(),
                    versions: versions.len() as u64,
                    latest: versions.last().map(|(v, _)| v.clone()).ok_or_else(|| {
                        StoreError::Io(std::io::Error::other("empty version list"))
                    })?,
                }),
            }
        }
        tree.dirs.sort();
        tree.dirs.dedup();
        Ok(found.then_some(tree))
    }

    fn open(
        &self,
        user: &UserName,
        path: &RelPath,
        sha256: &Digest,
    ) -> Result<(VersionInfo, Box<dyn VersionRead>), StoreError> {
        let files = lock(&self.files);
        let (v, bytes) = files
            .get(&(user.as_str().to_owned(), path.as_str().to_owned()))
            .and_then(|vs| vs.iter().find(|(v, _)| v.sha256 == *sha256))
            .ok_or(StoreError::NotFound)?;
        Ok((v.clone(), Box::new(Cursor::new(bytes.clone()))))
    }

    fn usage(&self, user: &UserName) -> Result<u64, StoreError> {
        let files = lock(&self.files);
        Ok(files
            .iter()
            .filter(|((u, _), _)| u == user.as_str())
            .flat_map(|(_, vs)| vs.iter().map(|(v, _)| v.size))
            .sum())
    }

    fn delete(&self, user: &UserName, path: &RelPath) -> Result<Deletion, StoreError> {
        // The files lock orders deletions of one store, as the user lock does on disk.
        let files = lock(&self.files);
        let versions: Vec<VersionInfo> = files
            .get(&(user.as_str().to_owned(), path.as_str().to_owned()))
            .map(|vs| vs.iter().map(|(v, _)| v.clone()).collect())
            .unwrap_or_default();
        let events = self.events(user)?;
        let deletion = super::deletion_for(&events, &versions, path, self.clock.now())?;
        if deletion.created {
            self.append(user, deletion.event.clone());
        }
        drop(files);
        Ok(deletion)
    }

    fn events_after(
        &self,
        user: &UserName,
        cursor: u64,
    ) -> Result<Option<(Vec<JournalEvent>, u64)>, StoreError> {
        // Here a cursor is the number of events already seen.
        let journal = lock(&self.journal);
        let all = journal
            .get(user.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let Some(rest) = usize::try_from(cursor).ok().and_then(|c| all.get(c..)) else {
            return Ok(None);
        };
        Ok(Some((rest.to_vec(), all.len() as u64)))
    }

    fn subscribe(&self, user: &UserName) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe(user)
    }
}

fn event(
    path: &RelPath,
    v: &VersionInfo,
    time: chrono::DateTime<chrono::Utc>,
    kind: EventKind,
) -> JournalEvent {
    JournalEvent {
        time,
        path: path.as_str().to_owned(),
        sha256: v.sha256,
        size: v.size,
        event: kind,
    }
}
