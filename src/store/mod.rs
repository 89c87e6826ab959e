//! The version store: every saved version of every file, written once, never
//! overwritten, never deleted through any API.
//!
//! [`Store`] is the one interface the server and the drive's embedded mode use.
//! [`FsStore`] keeps the SPEC §2 layout on a local disk; [`MemStore`] keeps the same
//! semantics in memory for unit tests. An object-storage backend would be a third
//! implementation; nothing above this module needs to change for it.
//!
//! The trait is synchronous on purpose: the drive calls it from FUSE worker threads,
//! and the server calls it from `spawn_blocking`, streaming request bodies through a
//! bridge so that memory stays bounded for any file size.

mod clock;
mod digest;
mod fs;
mod fsck;
mod journal;
mod memory;

use std::io::{self, Read, Seek};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub(crate) use crate::durable::sync_dir;
pub use clock::{Clock, ManualClock, SystemClock};
pub use digest::{Digest, DigestParseError, HashingReader};
pub use fs::FsStore;
pub use fsck::{FsckReport, WrongTime, fsck, fsck_repair_times};
pub use journal::{ChangeSignal, EventKind, JournalEvent, current_deletion};
pub use memory::MemStore;

use crate::names::{NameError, RelPath, UserName};

/// One stored version of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub sha256: Digest,
    pub size: u64,
    /// The store's clock when this content was first stored at this path.
    pub stored_at: DateTime<Utc>,
}

/// What [`Store::commit`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOutcome {
    #[serde(flatten)]
    pub version: VersionInfo,
    /// `false` when this exact content was already stored at this path.
    pub created: bool,
}

/// What [`Store::delete`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub event: JournalEvent,
    /// `false` when the file was already deleted: `event` is that earlier deletion.
    pub created: bool,
}

/// The children of one folder of a user's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub dirs: Vec<String>,
    pub files: Vec<TreeFile>,
}

/// A file in a [`Tree`]: its name, how many versions it has and the newest one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeFile {
    pub name: String,
    pub versions: u64,
    pub latest: VersionInfo,
}

/// Content received and hashed, waiting to be committed under a name.
///
/// Dropping it without committing discards the bytes (the temp file is removed),
/// so an error on any path leaves nothing behind.
#[derive(Debug)]
pub struct Staged {
    digest: Digest,
    size: u64,
    data: StagedData,
}

#[derive(Debug)]
enum StagedData {
    Disk(tempfile::NamedTempFile),
    Memory(Vec<u8>),
}

impl Staged {
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Refuses content whose hash is not the one the client declared.
    pub(crate) fn check(&self, expected: Option<&Digest>) -> Result<(), StoreError> {
        match expected {
            Some(expected) if *expected != self.digest => Err(StoreError::HashMismatch {
                expected: *expected,
                actual: self.digest,
            }),
            _ => Ok(()),
        }
    }
}

/// Content pushed in chunks into a staging area, hashed on the way: for callers that
/// must not block a thread while waiting for the next chunk (the server's uploads).
/// Dropped before [`Stager::finish`], it discards everything (the temp file is removed).
#[derive(Debug)]
pub struct Stager {
    hasher: sha2::Sha256,
    size: u64,
    limit: u64,
    data: StagedData,
}

impl Stager {
    fn new(limit: u64, data: StagedData) -> Self {
        use sha2::Digest as _;
        Self {
            hasher: sha2::Sha256::new(),
            size: 0,
            limit,
            data,
        }
    }

    /// Appends a chunk. Blocking (disk I/O). Fails with [`StoreError::TooLarge`] as
    /// soon as more than the limit has arrived.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        use sha2::Digest as _;
        use std::io::Write as _;
        self.size = self.size.saturating_add(chunk.len() as u64);
        if self.size > self.limit {
            return Err(StoreError::TooLarge { limit: self.limit });
        }
        self.hasher.update(chunk);
        match &mut self.data {
            StagedData::Disk(tmp) => tmp
                .as_file_mut()
                .write_all(chunk)
                .map_err(StoreError::from_disk),
            StagedData::Memory(bytes) => {
                bytes.extend_from_slice(chunk);
                Ok(())
            }
        }
    }

    /// The whole content, ready for [`Store::commit`].
    pub fn finish(self) -> Staged {
        use sha2::Digest as _;
        Staged {
            digest: Digest::from_bytes(self.hasher.finalize().into()),
            size: self.size,
            data: self.data,
        }
    }
}

/// A readable, seekable stored version.
pub trait VersionRead: Read + Seek + Send {}
impl<T: Read + Seek + Send> VersionRead for T {}

/// Why the store refused or failed an operation. Each variant maps to one HTTP
/// status in the server and one errno in the drive; see `docs/ERRORS.md`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid name: {0}")]
    Name(#[from] NameError),
    #[error("{0}")]
    Collision(String),
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(
        "the content does not match its declared SHA-256 (declared {expected}, received {actual})"
    )]
    HashMismatch { expected: Digest, actual: Digest },
    #[error("over quota: {used} of {quota} bytes used, this version needs {size} more")]
    QuotaExceeded { quota: u64, used: u64, size: u64 },
    #[error("the store's disk is full")]
    NoSpace,
    #[error("not found")]
    NotFound,
    #[error("the upload was cut off or could not be read: {0}")]
    Body(io::Error),
    #[error("storage I/O error: {0}")]
    Io(io::Error),
    #[error("the store at {0} is in use by another ects process")]
    Locked(String),
}

impl StoreError {
    /// Classifies an error from writing to the store's disk.
    pub(crate) fn from_disk(e: io::Error) -> Self {
        // The kinds are std's portable names for ENOSPC/EDQUOT (and Windows'
        // ERROR_DISK_FULL/ERROR_DISK_QUOTA_EXCEEDED); the raw check stays for Unix
        // errors std may not classify.
        #[cfg(unix)]
        let raw_full = matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT));
        #[cfg(not(unix))]
        let raw_full = false;
        if raw_full
            || matches!(
                e.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            )
        {
            StoreError::NoSpace
        } else {
            StoreError::Io(e)
        }
    }
}

/// A backend that keeps versions. All methods are blocking.
pub trait Store: Send + Sync {
    /// Streams `body` into a staging area while hashing it. Fails with
    /// [`StoreError::TooLarge`] as soon as more than `limit` bytes arrive.
    fn stage(&self, body: &mut dyn Read, limit: u64) -> Result<Staged, StoreError>;

    /// A staging area to push content into chunk by chunk (see [`Stager`]), holding
    /// at most `limit` bytes. By default in memory; disk stores stage on disk.
    fn stager(&self, limit: u64) -> Result<Stager, StoreError> {
        Ok(Stager::new(limit, StagedData::Memory(Vec::new())))
    }

    /// Stores staged content as a version of `path`. If `expected` is given and differs
    /// from the content's hash, nothing is stored. The same content at the same path
    /// again succeeds with `created: false` and the first `stored_at`.
    fn commit(
        &self,
        user: &UserName,
        path: &RelPath,
        staged: Staged,
        expected: Option<&Digest>,
    ) -> Result<PutOutcome, StoreError>;

    /// [`Store::stage`] then [`Store::commit`].
    fn put(
        &self,
        user: &UserName,
        path: &RelPath,
        body: &mut dyn Read,
        limit: u64,
        expected: Option<&Digest>,
    ) -> Result<PutOutcome, StoreError> {
        let staged = self.stage(body, limit)?;
        self.commit(user, path, staged, expected)
    }

    /// One version of `path`, if stored.
    fn version(
        &self,
        user: &UserName,
        path: &RelPath,
        sha256: &Digest,
    ) -> Result<Option<VersionInfo>, StoreError>;

    /// Every version of `path`, oldest first; empty when there is none.
    fn versions(&self, user: &UserName, path: &RelPath) -> Result<Vec<VersionInfo>, StoreError>;

    /// The children of a folder (`None` = the namespace's root). `Ok(None)` when the
    /// folder does not exist; the root of an existing user is always `Some`.
    fn tree(&self, user: &UserName, dir: Option<&RelPath>) -> Result<Option<Tree>, StoreError>;

    /// Opens one version for reading.
    fn open(
        &self,
        user: &UserName,
        path: &RelPath,
        sha256: &Digest,
    ) -> Result<(VersionInfo, Box<dyn VersionRead>), StoreError>;

    /// Bytes stored by `user` (each version counted once).
    fn usage(&self, user: &UserName) -> Result<u64, StoreError>;

    /// Records that `path` was deleted: one appended journal event, never an erase —
    /// every version stays readable and listed. [`StoreError::NotFound`] when `path`
    /// has no version; an already deleted path answers its deletion (`created: false`).
    fn delete(&self, user: &UserName, path: &RelPath) -> Result<Deletion, StoreError>;

    /// The events of `user`'s journal after `cursor` (0: from the start), oldest first,
    /// and the cursor that follows them: the change feed's source. A cursor is a
    /// position only this backend interprets (a byte offset on disk); `Ok(None)` when
    /// `cursor` is not one it gave out (past the end, or inside a line).
    fn events_after(
        &self,
        user: &UserName,
        cursor: u64,
    ) -> Result<Option<(Vec<JournalEvent>, u64)>, StoreError>;

    /// Every event of `user`'s journal, oldest first.
    fn events(&self, user: &UserName) -> Result<Vec<JournalEvent>, StoreError> {
        Ok(self
            .events_after(user, 0)?
            .map(|(events, _)| events)
            .unwrap_or_default())
    }

    /// Changes after each event appended to `user`'s journal.
    fn subscribe(&self, user: &UserName) -> tokio::sync::watch::Receiver<u64>;
}

/// The deletion event for `path` given its journal and versions (shared by backends;
/// the caller holds whatever lock orders writes to this user's journal).
fn deletion_for(
    events: &[JournalEvent],
    versions: &[VersionInfo],
    path: &RelPath,
    now: DateTime<Utc>,
) -> Result<Deletion, StoreError> {
    let newest = versions.last().ok_or(StoreError::NotFound)?;
    if let Some(existing) = current_deletion(events, path.as_str()) {
        return Ok(Deletion {
            event: existing.clone(),
            created: false,
        });
    }
    Ok(Deletion {
        event: JournalEvent {
            time: now,
            path: path.as_str().to_owned(),
            sha256: newest.sha256,
            size: newest.size,
            event: EventKind::Delete,
        },
        created: true,
    })
}

#[cfg(test)]
mod contract_tests;
