//! [`FsStore`]: the SPEC §2 layout on a local filesystem.
//!
//! ```text
//! <data>/uploads/<user>/<dir>/.../<file name>/<sha256 hex><.ext>
//! <data>/journal/<user>.log
//! <data>/tmp/
//! ```
//!
//! A version is written to `tmp/`, fsynced, given its `stored_at` as mtime, hard-linked
//! to its final name (a link never replaces anything), and the folder is fsynced before
//! success is reported. Readers therefore never see a partial version, and a crash at
//! any moment leaves either the whole version or none of it (plus a temp file that the
//! next start removes).
//!
//! Inside a user's tree a folder holds either only sub-folders (a real folder) or only
//! version files (the versions of one file); a per-user lock keeps it that way, and
//! anything that would mix the two is refused as a collision (409).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::clock::{self, Clock};
use super::journal::{ChangeSignal, Journal, JournalEvent};
use super::{
    Deletion, Digest, HashingReader, PutOutcome, Staged, StagedData, Stager, Store, StoreError,
    Tree, TreeFile, VersionInfo, VersionRead,
};
use crate::durable::sync_dir;
use crate::names::{RelPath, UserName, version_ext};
use crate::private;
use crate::sync::lock;

const COPY_BUF: usize = 256 * 1024;

/// Versions on a local disk, in the layout an admin can browse with a file manager.
pub struct FsStore {
    data: PathBuf,
    uploads: PathBuf,
    tmp: PathBuf,
    journal: Journal,
    changes: ChangeSignal,
    quota: Option<u64>,
    clock: Arc<dyn Clock>,
    user_locks: Mutex<HashMap<UserName, Arc<Mutex<()>>>>,
    usage: Mutex<HashMap<UserName, u64>>,
    /// Held for the store's lifetime: one process owns a data folder at a time, so the
    /// temp folder can be emptied at start-up without racing another writer.
    _lock: File,
}

impl FsStore {
    /// Opens (creating if needed) the store in `data`, takes its lock and removes
    /// temp files left by a crash.
    pub fn open(data: &Path) -> Result<Self, StoreError> {
        let uploads = data.join("uploads");
        let tmp = data.join("tmp");
        let journal_dir = data.join("journal");
        for dir in [data, &uploads, &tmp, &journal_dir] {
            private::create_dir_all(dir).map_err(StoreError::from_disk)?;
        }
        // A data folder from an older version may be 0755: closing its root closes
        // every version and journal under it to other local users.
        private::narrow_dir(data).map_err(StoreError::from_disk)?;
        let lock = private::open_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data.join("store.lock"))
            .map_err(StoreError::from_disk)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(data.display().to_string()));
            }
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::Io(e)),
        }
        let mut removed = 0usize;
        for entry in fs::read_dir(&tmp).map_err(StoreError::Io)? {
            let entry = entry.map_err(StoreError::Io)?;
            let path = entry.path();
            let result = if entry.file_type().map_err(StoreError::Io)?.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            result.map_err(StoreError::Io)?;
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(removed, "removed temp files left by an interrupted upload");
        }
        Ok(Self {
            data: data.to_owned(),
            uploads,
            tmp,
            journal: Journal::new(journal_dir),
            changes: ChangeSignal::default(),
            quota: None,
            clock: clock::system(),
            user_locks: Mutex::default(),
            usage: Mutex::default(),
            _lock: lock,
        })
    }

    /// Limits the bytes each user may store (each version counted once).
    pub fn with_quota(mut self, quota: Option<u64>) -> Self {
        self.quota = quota;
        self
    }

    /// Takes `stored_at` times from `clock` (tests advance a [`super::ManualClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The data folder this store lives in.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Reads the journal of one user, oldest event first.
    pub fn journal(&self, user: &UserName) -> Result<Vec<JournalEvent>, StoreError> {
        self.journal.read(user).map_err(StoreError::Io)
    }

    fn user_dir(&self, user: &UserName) -> PathBuf {
        self.uploads.join(user.as_str())
    }

    fn container(&self, user: &UserName, path: &RelPath) -> PathBuf {
        let mut p = self.user_dir(user);
        p.extend(path.components());
        p
    }

    fn user_lock(&self, user: &UserName) -> Arc<Mutex<()>> {
        let mut locks = lock(&self.user_locks);
        locks.entry(user.clone()).or_default().clone()
    }

    /// Refuses a path that would mix files and folders in the layout: a folder of the
    /// path is already stored as a file, or the file is already a folder.
    fn check_collision(&self, user: &UserName, path: &RelPath) -> Result<(), StoreError> {
        let mut dir = self.user_dir(user);
        let mut shown = String::new();
        let components: Vec<&str> = path.components().collect();
        for (i, component) in components.iter().enumerate() {
            dir.push(component);
            if !shown.is_empty() {
                shown.push('/');
            }
            shown.push_str(component);
            let is_last = i + 1 == components.len();
            match classify(&dir).map_err(StoreError::Io)? {
                Kind::Missing => return Ok(()),
                Kind::Empty => {}
                Kind::Versions if !is_last => {
                    return Err(StoreError::Collision(format!(
                        "\"{shown}\" is already stored as a file, so it cannot also be a folder"
                    )));
                }
                Kind::Folder if is_last => {
                    return Err(StoreError::Collision(format!(
                        "\"{shown}\" is already stored as a folder, so it cannot also be a file"
                    )));
                }
                Kind::NotADir => {
                    return Err(StoreError::Collision(format!(
                        "\"{shown}\" is in the way in the store (not a folder); ask an admin to run `ects fsck`"
                    )));
                }
                Kind::Versions | Kind::Folder => {}
            }
        }
        Ok(())
    }

    /// Creates the folders down to `container`; returns the parents whose entries changed
    /// and so must be fsynced for the new folders to survive a crash.
    fn create_container(&self, user: &UserName, path: &RelPath) -> io::Result<Vec<PathBuf>> {
        let mut dirty = Vec::new();
        let mut dir = self.uploads.clone();
        let mut parent = dir.clone();
        for component in std::iter::once(user.as_str()).chain(path.components()) {
            dir.push(component);
            match private::create_dir(&dir) {
                Ok(()) => dirty.push(parent.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            parent.push(component);
        }
        Ok(dirty)
    }

    fn read_version(&self, container: &Path, name: &str) -> io::Result<Option<VersionInfo>> {
        let Some((digest, _)) = parse_version_name(name) else {
            return Ok(None);
        };
        match fs::symlink_metadata(container.join(name)) {
            Ok(meta) if meta.is_file() => Ok(Some(VersionInfo {
                sha256: digest,
                size: meta.len(),
                stored_at: DateTime::<Utc>::from(meta.modified()?),
            })),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn compute_usage(&self, user: &UserName) -> io::Result<u64> {
        fn walk(dir: &Path, total: &mut u64) -> io::Result<()> {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if is_missing(&e) => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let ft = entry.file_type()?;
                if ft.is_dir() {
                    walk(&entry.path(), total)?;
                } else if ft.is_file() {
                    *total += entry.metadata()?.len();
                }
            }
            Ok(())
        }
        let mut total = 0;
        walk(&self.user_dir(user), &mut total)?;
        Ok(total)
    }
}

impl Store for FsStore {
    fn stager(&self, limit: u64) -> Result<Stager, StoreError> {
        let tmp = tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&self.tmp)
            .map_err(StoreError::from_disk)?;
        Ok(Stager::new(limit, StagedData::Disk(tmp)))
    }

    fn stage(&self, body: &mut dyn Read, limit: u64) -> Result<Staged, StoreError> {
        let mut tmp = tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&self.tmp)
            .map_err(StoreError::from_disk)?;
        let mut reader = HashingReader::new(body);
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::Body(e)),
            };
            if reader.count() > limit {
                return Err(StoreError::TooLarge { limit });
            }
            tmp.as_file_mut()
                .write_all(&buf[..n])
                .map_err(StoreError::from_disk)?;
        }
        let (digest, size) = reader.finish();
        Ok(Staged {
            digest,
            size,
            data: StagedData::Disk(tmp),
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
        let tmp = match staged.data {
            StagedData::Disk(tmp) => tmp,
            StagedData::Memory(bytes) => {
                // Content staged by another backend: spool it to our own temp file.
                let restaged = self.stage(&mut &bytes[..], u64::MAX)?;
                return self.commit(user, path, restaged, Some(&staged.digest));
            }
        };
        let container = self.container(user, path);
        let name = format!("{}{}", staged.digest, path.version_ext());
        let target = container.join(&name);

        // The expensive fsync happens before taking the lock, and only when needed.
        // stored_at is set (as the file's mtime) before that one fsync, so data and
        // time become durable together.
        let mut stored_at = None;
        if !target.exists() {
            let file = tmp.as_file();
            file.set_modified(self.clock.now().into())
                .map_err(StoreError::from_disk)?;
            file.sync_all().map_err(StoreError::from_disk)?;
            // Read back what the filesystem kept, so the answer equals every later listing.
            let kept = file
                .metadata()
                .and_then(|m| m.modified())
                .map_err(StoreError::Io)?;
            stored_at = Some(DateTime::<Utc>::from(kept));
        }

        let user_lock = self.user_lock(user);
        let guard = lock(&user_lock);
        self.check_collision(user, path)?;
        if let Some(existing) = self
            .read_version(&container, &name)
            .map_err(StoreError::Io)?
        {
            drop(guard);
            // It may have been linked a moment ago by a racing upload: make sure it is
            // durable before we, too, report it as stored.
            sync_dir(&container).map_err(StoreError::from_disk)?;
            self.journal
                .append(user, path, &existing, false, self.clock.now())
                .map_err(StoreError::from_disk)?;
            self.changes.notify(user);
            return Ok(PutOutcome {
                version: existing,
                created: false,
            });
        }
        let Some(stored_at) = stored_at else {
            // It existed a moment ago and vanished: only an admin's hand does that.
            return Err(StoreError::Io(io::Error::other(
                "a stored version disappeared while it was being stored again",
            )));
        };
        if let Some(quota) = self.quota {
            let used = self.usage(user)?;
            if used.saturating_add(staged.size) > quota {
                return Err(StoreError::QuotaExceeded {
                    quota,
                    used,
                    size: staged.size,
                });
            }
        }
        let dirty = self
            .create_container(user, path)
            .map_err(StoreError::from_disk)?;
        fs::hard_link(tmp.path(), &target).map_err(StoreError::from_disk)?;
        if let Some(total) = lock(&self.usage).get_mut(user) {
            *total += staged.size;
        }
        drop(guard);
        drop(tmp);
        sync_dir(&container).map_err(StoreError::from_disk)?;
        for dir in dirty {
            sync_dir(&dir).map_err(StoreError::from_disk)?;
        }
        let version = VersionInfo {
            sha256: staged.digest,
            size: staged.size,
            stored_at,
        };
        self.journal
            .append(user, path, &version, true, stored_at)
            .map_err(StoreError::from_disk)?;
        self.changes.notify(user);
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
        let name = format!("{sha256}{}", path.version_ext());
        self.read_version(&self.container(user, path), &name)
            .map_err(StoreError::Io)
    }

    fn versions(&self, user: &UserName, path: &RelPath) -> Result<Vec<VersionInfo>, StoreError> {
        let container = self.container(user, path);
        let entries = match fs::read_dir(&container) {
            Ok(entries) => entries,
            Err(e) if is_missing(&e) || is_not_a_dir(&e) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(StoreError::Io(e)),
        };
        let ext = path.version_ext();
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(StoreError::Io)?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !name.ends_with(ext) || name.len() != 64 + ext.len() {
                continue;
            }
            if let Some(v) = self
                .read_version(&container, &name)
                .map_err(StoreError::Io)?
            {
                out.push(v);
            }
        }
        out.sort_by_key(|v| (v.stored_at, v.sha256));
        Ok(out)
    }

    fn tree(&self, user: &UserName, dir: Option<&RelPath>) -> Result<Option<Tree>, StoreError> {
        let mut base = self.user_dir(user);
        if let Some(dir) = dir {
            base.extend(dir.components());
        }
        let entries = match fs::read_dir(&base) {
            Ok(entries) => entries,
            Err(e) if dir.is_none() && is_missing(&e) => return Ok(Some(Tree::default())),
            Err(e) if is_missing(&e) || is_not_a_dir(&e) => {
                return Ok(None);
            }
            Err(e) => return Err(StoreError::Io(e)),
        };
        let mut tree = Tree::default();
        for entry in entries {
            let entry = entry.map_err(StoreError::Io)?;
            if !entry.file_type().map_err(StoreError::Io)?.is_dir() {
                // A version file: `base` holds the versions of a file, not a folder.
                return Ok(None);
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            match classify(&entry.path()).map_err(StoreError::Io)? {
                Kind::Folder => tree.dirs.push(name),
                Kind::Versions => {
                    let child = match dir {
                        Some(d) => d.join(&name),
                        None => RelPath::parse(&name),
                    };
                    let Ok(child) = child else { continue };
                    let versions = self.versions(user, &child)?;
                    if let Some(latest) = versions.last() {
                        tree.files.push(TreeFile {
                            name,
                            versions: versions.len() as u64,
                            latest: latest.clone(),
                        });
                    }
                }
                // Left by an interrupted first upload, or not ours: not shown.
                Kind::Empty | Kind::Missing | Kind::NotADir => {}
            }
        }
        tree.dirs.sort();
        tree.files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(tree))
    }

    fn open(
        &self,
        user: &UserName,
        path: &RelPath,
        sha256: &Digest,
    ) -> Result<(VersionInfo, Box<dyn VersionRead>), StoreError> {
        let container = self.container(user, path);
        let name = format!("{sha256}{}", path.version_ext());
        let file = match File::open(container.join(&name)) {
            Ok(f) => f,
            Err(e) if is_missing(&e) || is_not_a_dir(&e) => {
                return Err(StoreError::NotFound);
            }
            Err(e) => return Err(StoreError::Io(e)),
        };
        let meta = file.metadata().map_err(StoreError::Io)?;
        if !meta.is_file() {
            return Err(StoreError::NotFound);
        }
        let info = VersionInfo {
            sha256: *sha256,
            size: meta.len(),
            stored_at: DateTime::<Utc>::from(meta.modified().map_err(StoreError::Io)?),
        };
        Ok((info, Box::new(file)))
    }

    fn usage(&self, user: &UserName) -> Result<u64, StoreError> {
        if let Some(total) = lock(&self.usage).get(user) {
            return Ok(*total);
        }
        let total = self.compute_usage(user).map_err(StoreError::Io)?;
        Ok(*lock(&self.usage).entry(user.clone()).or_insert(total))
    }

    fn delete(&self, user: &UserName, path: &RelPath) -> Result<Deletion, StoreError> {
        // Under the user's lock: two deletions racing cannot both append an event.
        let user_lock = self.user_lock(user);
        let _guard = lock(&user_lock);
        let versions = self.versions(user, path)?;
        let events = self.journal(user)?;
        let deletion = super::deletion_for(&events, &versions, path, self.clock.now())?;
        if deletion.created {
            self.journal
                .append_event(user, &deletion.event)
                .map_err(StoreError::from_disk)?;
            self.changes.notify(user);
        }
        Ok(deletion)
    }

    fn events_after(
        &self,
        user: &UserName,
        cursor: u64,
    ) -> Result<Option<(Vec<JournalEvent>, u64)>, StoreError> {
        self.journal
            .read_after(user, cursor)
            .map_err(StoreError::Io)
    }

    fn subscribe(&self, user: &UserName) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe(user)
    }
}

/// What a folder in a user's tree is, judged by its first entry (the layout never
/// mixes files and folders in one folder).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Missing,
    NotADir,
    Empty,
    Folder,
    Versions,
}

pub(crate) fn classify(dir: &Path) -> io::Result<Kind> {
    let mut entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if is_missing(&e) => return Ok(Kind::Missing),
        Err(e) if is_not_a_dir(&e) => return Ok(Kind::NotADir),
        Err(e) => return Err(e),
    };
    match entries.next() {
        None => Ok(Kind::Empty),
        Some(entry) => {
            if entry?.file_type()?.is_dir() {
                Ok(Kind::Folder)
            } else {
                Ok(Kind::Versions)
            }
        }
    }
}

/// Splits `<64 hex><.ext>` into the digest and the extension.
pub(crate) fn parse_version_name(name: &str) -> Option<(Digest, &str)> {
    let hex = name.get(..64)?;
    let digest = hex.parse().ok()?;
    // Stored names use lowercase hex only.
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    Some((digest, &name[64..]))
}

/// Whether `name` is a version file name that belongs in a folder named `container`.
pub(crate) fn is_version_name_for(name: &str, container: &str) -> bool {
    matches!(parse_version_name(name), Some((_, ext)) if ext == version_ext(container))
}

fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// A path component that should be a folder is a file (ENOTDIR).
fn is_not_a_dir(e: &io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ENOTDIR) {
        return true;
    }
    e.kind() == io::ErrorKind::NotADirectory
}
