//! The drive's filesystem logic, free of any FUSE or WinFsp type.
//!
//! [`Drive`] is a passthrough over a local backing folder: every call maps to the same
//! call on the backing file, and the drive decides when a version is taken (SPEC §4):
//!
//! - (a) when the last handle that had a file open for writing is closed and the content
//!   changed since the last version taken at that path. The decision is made at the
//!   close (FUSE `flush`), which the application waits for, so a later open and write can
//!   never slip bytes into that version; `release` checks again for writes that came
//!   after (a `dup`ed descriptor, a shared mapping).
//! - (b) when a rename puts a file (or a folder of files) onto a name that is not
//!   ignored: the version belongs to the destination.
//! - (c) when a file is truncated by path while no handle has it open for writing.
//!
//! Names under [`ignore`](super::ignore) are kept but never versioned. `.versions` and
//! `.ects-status.txt` at the root are virtual and read-only.

mod backing;
mod nodes;
pub mod posix;
mod versioning;
mod view;
pub mod windows_names;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use backing::{FsStats, SetTime};
pub use nodes::{Ino, ROOT};
pub use versioning::{Fingerprint, Outcome, Problem};
pub use view::{format_version_name, version_name};

use super::sink::{VersionSink, VersionSource};
use crate::names::RelPath;
use nodes::{NodeKind, NodeTable};
use versioning::Versioning;
use view::VersionsView;

/// The virtual folder of stored versions, at the drive's root.
pub const VERSIONS_DIR: &str = ".versions";
/// The virtual status file, at the drive's root.
pub const STATUS_FILE: &str = ".ects-status.txt";

/// How long the kernel may trust what it learned about the backing folder: the drive is
/// its only writer while mounted.
pub const BACKING_TTL: Duration = Duration::from_secs(3600);
/// `.versions` changes behind the kernel's back (new versions arrive); keep it short.
pub const VIRTUAL_TTL: Duration = Duration::from_secs(1);

/// A failed call, carrying the errno the platform adapter replies with.
/// The numbers are [`posix`]'s on every platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_errno(*.0))]
pub struct DriveError(pub i32);

#[cfg(unix)]
fn describe_errno(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

#[cfg(not(unix))]
fn describe_errno(errno: i32) -> &'static str {
    posix::describe(errno)
}

impl DriveError {
    pub const ENOENT: Self = Self(posix::ENOENT);
    pub const EROFS: Self = Self(posix::EROFS);
    pub const EBADF: Self = Self(posix::EBADF);
    pub const EEXIST: Self = Self(posix::EEXIST);
    pub const EIO: Self = Self(posix::EIO);
    pub const EINVAL: Self = Self(posix::EINVAL);
    pub const ENODATA: Self = Self(posix::ENODATA);
    pub const ENOTDIR: Self = Self(posix::ENOTDIR);
    pub const EISDIR: Self = Self(posix::EISDIR);

    pub fn errno(self) -> i32 {
        self.0
    }
}

impl From<io::Error> for DriveError {
    fn from(e: io::Error) -> Self {
        Self(posix::errno_of(&e))
    }
}

pub type Result<T> = std::result::Result<T, DriveError>;
pub type Fh = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    #[cfg(not(unix))]
    fn of(t: fs::FileType) -> Self {
        if t.is_dir() {
            Self::Dir
        } else if t.is_symlink() {
            Self::Symlink
        } else {
            Self::File
        }
    }

    #[cfg(unix)]
    fn of(t: fs::FileType) -> Self {
        if t.is_dir() {
            Self::Dir
        } else if t.is_symlink() {
            Self::Symlink
        } else if t.is_fifo() {
            Self::Fifo
        } else if t.is_socket() {
            Self::Socket
        } else if t.is_char_device() {
            Self::CharDevice
        } else if t.is_block_device() {
            Self::BlockDevice
        } else {
            Self::File
        }
    }
}

/// A node's attributes, as `stat` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileKind,
    pub size: u64,
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub blksize: u32,
}

/// Attributes and how long the kernel may cache them (and the name that led to them).
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub attr: Attr,
    pub ttl: Duration,
}

/// A successful open.
#[derive(Debug, Clone)]
pub struct Opened {
    pub fh: Fh,
    /// The backing file, for kernel passthrough; `None` for virtual files.
    pub backing: Option<Arc<File>>,
    /// Reads must always come to the drive (content generated on open).
    pub direct_io: bool,
}

/// One entry of a folder listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: FileKind,
    pub name: OsString,
}

/// Which attributes `setattr` changes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
}

/// Where the drive keeps its local state.
#[derive(Debug, Clone)]
pub struct DriveOptions {
    /// The backing folder: the drive's files, as the student sees them.
    pub files: PathBuf,
    /// Remembers which content was versioned, between mounts.
    pub index_file: PathBuf,
    /// Fetched `.versions` contents.
    pub versions_cache: PathBuf,
    pub versions_cache_bytes: u64,
}

enum HandleKind {
    Backing(Arc<File>),
    Version(File),
    Status(Vec<u8>),
}

struct Handle {
    ino: Ino,
    kind: HandleKind,
    writable: bool,
    /// The process that opened it, when the platform can tell.
    owner: Option<u32>,
    /// Closed at least once (FUSE `flush`): no longer counted as an open writer.
    flushed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn is_reserved(parent: Ino, name: &OsStr) -> bool {
    parent == ROOT && (name == VERSIONS_DIR || name == STATUS_FILE)
}

#[cfg(unix)]
fn time_of(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsecs as u64)
    }
}

/// The filesystem core. All methods may be called from many threads at once.
pub struct Drive {
    files: PathBuf,
    nodes: Mutex<NodeTable>,
    /// Signalled (with `nodes`) when a capture ends.
    captured: Condvar,
    handles: Mutex<HashMap<Fh, Arc<Handle>>>,
    dirs: Mutex<HashMap<Fh, Arc<Vec<DirEntry>>>>,
    next_fh: AtomicU64,
    versioning: Versioning,
    view: VersionsView,
    uid: u32,
    gid: u32,
    started: SystemTime,
}

impl Drive {
    pub fn new(
        options: DriveOptions,
        sink: Arc<dyn VersionSink>,
        source: Arc<dyn VersionSource>,
    ) -> io::Result<Self> {
        fs::create_dir_all(&options.files)?;
        if let Some(parent) = options.index_file.parent() {
            fs::create_dir_all(parent)?;
        }
        // SAFETY: geteuid/getegid cannot fail.
        #[cfg(unix)]
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        // Windows has SIDs, not numbers; the WinFsp adapter ignores these.
        #[cfg(not(unix))]
        let (uid, gid) = (0, 0);
        Ok(Self {
            versioning: Versioning::new(sink, options.files.clone(), options.index_file),
            view: VersionsView::new(source, options.versions_cache, options.versions_cache_bytes),
            files: options.files,
            nodes: Mutex::default(),
            captured: Condvar::new(),
            handles: Mutex::default(),
            dirs: Mutex::default(),
            next_fh: AtomicU64::new(1),
            uid,
            gid,
            started: SystemTime::now(),
        })
    }

    /// The backing folder.
    pub fn files(&self) -> &Path {
        &self.files
    }

    pub fn sink(&self) -> &Arc<dyn VersionSink> {
        self.versioning.sink()
    }

    /// Takes a version of every file in the backing folder whose current content has
    /// none yet (edits made while unmounted, captures lost in a crash). Returns how many.
    pub fn reconcile(&self) -> usize {
        self.versioning.consider_tree(Path::new(""))
    }

    /// Saves what was versioned, once it is durable. Call periodically and at unmount.
    pub fn save_index(&self) -> io::Result<()> {
        self.versioning.save()
    }

    /// The text of `.ects-status.txt`.
    pub fn status_text(&self) -> String {
        let mut s = self.sink().status_text();
        let problems = self.versioning.problems();
        if !problems.is_empty() {
            s.push_str(&format!(
                "Files that could not be versioned: {}\n",
                problems.len()
            ));
            for p in problems.iter().rev().take(20) {
                s.push_str(&format!("  {}: {}\n", p.path, p.why));
            }
        }
        s
    }

    /// What happened to the files that could not be versioned.
    pub fn problems(&self) -> Vec<Problem> {
        self.versioning.problems()
    }

    // ----- helpers -----

    fn new_fh(&self) -> Fh {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn kind_of(t: &NodeTable, ino: Ino) -> Result<NodeKind> {
        t.get(ino).map(|n| n.kind.clone()).ok_or(DriveError::ENOENT)
    }

    /// The backing path of a node; EROFS for virtual nodes, ENOENT for orphans.
    fn backing_path(&self, t: &NodeTable, ino: Ino) -> Result<PathBuf> {
        match Self::kind_of(t, ino)? {
            NodeKind::Backing => {}
            _ => return Err(DriveError::EROFS),
        }
        let rel = t.rel_path(ino).ok_or(DriveError::ENOENT)?;
        Ok(self.files.join(rel))
    }

    /// The backing path of `name` in folder `parent`, for a call that changes it.
    fn child_path(&self, t: &NodeTable, parent: Ino, name: &OsStr) -> Result<PathBuf> {
        if is_reserved(parent, name) {
            return Err(DriveError::EROFS);
        }
        if name.as_encoded_bytes().contains(&b'/')
            || (cfg!(windows) && name.as_encoded_bytes().contains(&b'\\'))
            || name == "."
            || name == ".."
        {
            return Err(DriveError::EINVAL);
        }
        Ok(self.backing_path(t, parent)?.join(name))
    }

    /// What Windows' std can tell: no owner, mode bits, links or device numbers. A
    /// read-only file shows as 0o444; the WinFsp adapter maps it back to
    /// FILE_ATTRIBUTE_READONLY.
    #[cfg(not(unix))]
    fn attr_of(&self, ino: Ino, meta: &fs::Metadata) -> Attr {
        let kind = FileKind::of(meta.file_type());
        let size = meta.len();
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        let perm = match (kind == FileKind::Dir, meta.permissions().readonly()) {
            (true, _) => 0o755,
            (false, true) => 0o444,
            (false, false) => 0o644,
        };
        Attr {
            ino,
            kind,
            size,
            blocks: size.div_ceil(512),
            atime: meta.accessed().unwrap_or(mtime),
            mtime,
            // No change time in std on Windows; creation time is the closest stable one.
            ctime: meta.created().unwrap_or(mtime),
            perm,
            nlink: 1,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
        }
    }

    #[cfg(unix)]
    fn attr_of(&self, ino: Ino, meta: &fs::Metadata) -> Attr {
        Attr {
            ino,
            kind: FileKind::of(meta.file_type()),
            size: meta.size(),
            blocks: meta.blocks(),
            atime: time_of(meta.atime(), meta.atime_nsec()),
            mtime: time_of(meta.mtime(), meta.mtime_nsec()),
            ctime: time_of(meta.ctime(), meta.ctime_nsec()),
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: meta.blksize() as u32,
        }
    }

    fn virtual_attr(&self, ino: Ino, kind: &NodeKind) -> Attr {
        let (fkind, size, perm, time) = match kind {
            NodeKind::Version(_, info) => (
                FileKind::File,
                info.size,
                0o444,
                SystemTime::from(info.stored_at),
            ),
            NodeKind::Status => (
                FileKind::File,
                self.status_text().len() as u64,
                0o444,
                SystemTime::now(),
            ),
            _ => (FileKind::Dir, 0, 0o555, self.started),
        };
        Attr {
            ino,
            kind: fkind,
            size,
            blocks: size.div_ceil(512),
            atime: time,
            mtime: time,
            ctime: time,
            perm,
            nlink: if fkind == FileKind::Dir { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
        }
    }

    fn virtual_entry(&self, ino: Ino, kind: &NodeKind) -> Entry {
        let ttl = match kind {
            NodeKind::Status => Duration::ZERO,
            _ => VIRTUAL_TTL,
        };
        Entry {
            attr: self.virtual_attr(ino, kind),
            ttl,
        }
    }

    /// Registers a backing child that now exists and returns its entry.
    fn backing_entry(
        &self,
        t: &mut NodeTable,
        parent: Ino,
        name: &OsStr,
        path: &Path,
    ) -> Result<Entry> {
        let meta = fs::symlink_metadata(path)?;
        let ino = t.lookup(parent, name, NodeKind::Backing);
        Ok(Entry {
            attr: self.attr_of(ino, &meta),
            ttl: BACKING_TTL,
        })
    }

    /// Resolves a name inside `.versions`.
    fn virtual_child(&self, parent_kind: &NodeKind, name: &OsStr) -> Result<NodeKind> {
        let name = name.to_str().ok_or(DriveError::ENOENT)?;
        let io_err = |e: super::sink::SinkError| {
            tracing::warn!(error = %e, "cannot list stored versions");
            DriveError::EIO
        };
        match parent_kind {
            NodeKind::VersionsDir(dir) => {
                let tree = self.view.tree(dir.as_ref()).map_err(io_err)?;
                let Some(tree) = tree.as_ref() else {
                    return Err(DriveError::ENOENT);
                };
                let child = match dir {
                    Some(d) => d.join(name),
                    None => RelPath::parse(name),
                }
                .map_err(|_| DriveError::ENOENT)?;
                if tree.dirs.iter().any(|d| d == name) {
                    Ok(NodeKind::VersionsDir(Some(child)))
                } else if tree.files.iter().any(|f| f.name == name) {
                    Ok(NodeKind::VersionsFile(child))
                } else {
                    Err(DriveError::ENOENT)
                }
            }
            NodeKind::VersionsFile(path) => {
                let versions = self.view.versions(path).map_err(io_err)?;
                versions
                    .iter()
                    .find(|v| version_name(path, v) == name)
                    .map(|v| NodeKind::Version(path.clone(), v.clone()))
                    .ok_or(DriveError::ENOENT)
            }
            _ => Err(DriveError::ENOTDIR),
        }
    }

    /// Takes a version of the node's file if no handle still has it open for writing.
    /// While the capture copies the file, opens for writing wait, so no later write can
    /// slip into it. With `defer_empty`, an empty file is left for the release to judge:
    /// shells close a `dup`ed descriptor right after `> file` truncates it.
    fn consider_node(&self, ino: Ino, defer_empty: bool) {
        let mut rel = {
            let mut t = lock(&self.nodes);
            let Some(n) = t.get_mut(ino) else { return };
            if !matches!(n.kind, NodeKind::Backing) || n.writers > 0 {
                // Not a backing file, or still open for writing: the last writer's
                // close or release considers it.
                return;
            }
            if n.capturing {
                // Another thread is taking a version of this node right now, perhaps
                // under its old name: it looks again when done.
                n.recheck = true;
                return;
            }
            n.capturing = true;
            t.rel_path(ino)
        };
        loop {
            if let Some(r) = &rel {
                self.versioning.consider(r, defer_empty);
            }
            let mut t = lock(&self.nodes);
            let Some(n) = t.get_mut(ino) else { break };
            if !std::mem::take(&mut n.recheck) || n.writers > 0 {
                n.capturing = false;
                break;
            }
            rel = t.rel_path(ino);
        }
        self.captured.notify_all();
    }

    fn handle(&self, fh: Fh) -> Result<Arc<Handle>> {
        lock(&self.handles)
            .get(&fh)
            .cloned()
            .ok_or(DriveError::EBADF)
    }

    // ----- the filesystem calls -----

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Entry> {
        let mut t = lock(&self.nodes);
        let parent_kind = Self::kind_of(&t, parent)?;
        if parent == ROOT && name == VERSIONS_DIR {
            let kind = NodeKind::VersionsDir(None);
            let ino = t.lookup(parent, name, kind.clone());
            return Ok(self.virtual_entry(ino, &kind));
        }
        if parent == ROOT && name == STATUS_FILE {
            let ino = t.lookup(parent, name, NodeKind::Status);
            return Ok(self.virtual_entry(ino, &NodeKind::Status));
        }
        match parent_kind {
            NodeKind::Backing => {
                let path = self.backing_path(&t, parent)?.join(name);
                self.backing_entry(&mut t, parent, name, &path)
            }
            NodeKind::VersionsDir(_) | NodeKind::VersionsFile(_) => {
                drop(t);
                let kind = self.virtual_child(&parent_kind, name)?;
                let mut t = lock(&self.nodes);
                let ino = t.lookup(parent, name, kind.clone());
                Ok(self.virtual_entry(ino, &kind))
            }
            _ => Err(DriveError::ENOTDIR),
        }
    }

    pub fn forget(&self, ino: Ino, n: u64) {
        lock(&self.nodes).forget(ino, n);
    }

    pub fn getattr(&self, ino: Ino, fh: Option<Fh>) -> Result<Entry> {
        if let Some(fh) = fh
            && let Ok(h) = self.handle(fh)
            && let HandleKind::Backing(file) = &h.kind
        {
            let meta = file.metadata()?;
            return Ok(Entry {
                attr: self.attr_of(ino, &meta),
                ttl: BACKING_TTL,
            });
        }
        let t = lock(&self.nodes);
        let kind = Self::kind_of(&t, ino)?;
        match kind {
            NodeKind::Backing => match t.rel_path(ino) {
                Some(rel) => {
                    let meta = fs::symlink_metadata(self.files.join(rel))?;
                    Ok(Entry {
                        attr: self.attr_of(ino, &meta),
                        ttl: BACKING_TTL,
                    })
                }
                None => {
                    // An orphan: answer from any handle still open on it.
                    drop(t);
                    let handles = lock(&self.handles);
                    let file = handles.values().find_map(|h| match &h.kind {
                        HandleKind::Backing(f) if h.ino == ino => Some(f.clone()),
                        _ => None,
                    });
                    drop(handles);
                    let meta = file.ok_or(DriveError::ENOENT)?.metadata()?;
                    Ok(Entry {
                        attr: self.attr_of(ino, &meta),
                        ttl: BACKING_TTL,
                    })
                }
            },
            other => Ok(self.virtual_entry(ino, &other)),
        }
    }

    pub fn setattr(&self, ino: Ino, fh: Option<Fh>, set: SetAttr) -> Result<Entry> {
        let file = match fh.map(|fh| self.handle(fh)) {
            Some(Ok(h)) => match &h.kind {
                HandleKind::Backing(f) if h.writable => Some(f.clone()),
                HandleKind::Backing(_) => None,
                _ => return Err(DriveError::EROFS),
            },
            _ => None,
        };
        let path = {
            let t = lock(&self.nodes);
            match self.backing_path(&t, ino) {
                Ok(p) => Some(p),
                Err(e) if e == DriveError::ENOENT && file.is_some() => None,
                Err(e) => return Err(e),
            }
        };
        let path_or_enoent = || path.as_deref().ok_or(DriveError::ENOENT);
        if let Some(mode) = set.mode {
            let perm = permissions_for(mode, || match &file {
                Some(f) => Ok(f.metadata()?),
                None => Ok(fs::symlink_metadata(path_or_enoent()?)?),
            })?;
            match &file {
                Some(f) => f.set_permissions(perm)?,
                None => fs::set_permissions(path_or_enoent()?, perm)?,
            }
        }
        if set.uid.is_some() || set.gid.is_some() {
            backing::lchown(path_or_enoent()?, set.uid, set.gid)?;
        }
        if let Some(size) = set.size {
            match &file {
                Some(f) => f.set_len(size)?,
                None => OpenOptions::new()
                    .write(true)
                    .open(path_or_enoent()?)?
                    .set_len(size)?,
            }
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let a = set.atime.unwrap_or(SetTime::Keep);
            let m = set.mtime.unwrap_or(SetTime::Keep);
            match &file {
                Some(f) => backing::futimens(f, a, m)?,
                None => backing::utimens(path_or_enoent()?, a, m)?,
            }
        }
        // (c) a truncate outside any handle takes a version now.
        if set.size.is_some() && fh.is_none() {
            self.consider_node(ino, false);
        }
        self.getattr(ino, fh)
    }

    pub fn readlink(&self, ino: Ino) -> Result<OsString> {
        let path = self.backing_path(&lock(&self.nodes), ino)?;
        Ok(fs::read_link(path)?.into_os_string())
    }

    pub fn mknod(&self, parent: Ino, name: &OsStr, mode: u32, rdev: u64) -> Result<Entry> {
        let mut t = lock(&self.nodes);
        let path = self.child_path(&t, parent, name)?;
        if mode & posix::S_IFMT == posix::S_IFREG {
            let mut opts = OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            opts.mode(mode & 0o7777);
            opts.open(&path)?;
        } else {
            backing::mknod(&path, mode, rdev)?;
        }
        self.backing_entry(&mut t, parent, name, &path)
    }

    pub fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32) -> Result<Entry> {
        let mut t = lock(&self.nodes);
        let path = self.child_path(&t, parent, name)?;
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        builder.mode(mode & 0o7777);
        #[cfg(not(unix))]
        let _ = (mode, &mut builder);
        builder.create(&path)?;
        self.backing_entry(&mut t, parent, name, &path)
    }

    pub fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        let mut t = lock(&self.nodes);
        let path = self.child_path(&t, parent, name)?;
        fs::remove_file(&path)?;
        t.detach(parent, name);
        drop(t);
        if let Ok(rel) = path.strip_prefix(&self.files) {
            self.versioning.forget(rel);
        }
        Ok(())
    }

    pub fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        let mut t = lock(&self.nodes);
        let path = self.child_path(&t, parent, name)?;
        fs::remove_dir(&path)?;
        t.detach(parent, name);
        Ok(())
    }

    #[cfg(unix)]
    pub fn symlink(&self, parent: Ino, name: &OsStr, target: &Path) -> Result<Entry> {
        let mut t = lock(&self.nodes);
        let path = self.child_path(&t, parent, name)?;
        std::os::unix::fs::symlink(target, &path)?;
        self.backing_entry(&mut t, parent, name, &path)
    }

    /// Windows symlinks need a privilege students do not have, and Windows programs
    /// never ask a drive for POSIX ones.
    #[cfg(not(unix))]
    pub fn symlink(&self, _parent: Ino, _name: &OsStr, _target: &Path) -> Result<Entry> {
        Err(DriveError(posix::ENOTSUP))
    }

    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> Result<Entry> {
        let mut t = lock(&self.nodes);
        let from = self.backing_path(&t, ino)?;
        let to = self.child_path(&t, new_parent, new_name)?;
        fs::hard_link(&from, &to)?;
        let entry = self.backing_entry(&mut t, new_parent, new_name, &to)?;
        drop(t);
        // A file appearing under a new name is versioned there, like a rename.
        self.consider_node(entry.attr.ino, false);
        Ok(entry)
    }

    /// Renames with the kernel's flags (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: u32,
    ) -> Result<()> {
        let exchange = flags & posix::RENAME_EXCHANGE != 0;
        let mut t = lock(&self.nodes);
        let from = self.child_path(&t, parent, name)?;
        let to = self.child_path(&t, new_parent, new_name)?;
        backing::rename(&from, &to, flags)?;
        if exchange {
            t.exchange(parent, name, new_parent, new_name);
        } else {
            t.rename(parent, name, new_parent, new_name);
        }
        let moved = t.child(new_parent, new_name);
        let swapped = if exchange {
            t.child(parent, name)
        } else {
            None
        };
        drop(t);
        // (b) whatever now sits under a name gets a version there.
        let rel = |p: &Path| p.strip_prefix(&self.files).map(Path::to_path_buf).ok();
        if !exchange && let Some(r) = rel(&from) {
            self.versioning.forget(&r);
        }
        for (path, node) in [(Some(&to), moved), (exchange.then_some(&from), swapped)] {
            let Some(r) = path.and_then(|p| rel(p)) else {
                continue;
            };
            match fs::symlink_metadata(self.files.join(&r)) {
                Ok(m) if m.is_dir() => {
                    self.versioning.consider_tree(&r);
                }
                Ok(m) if m.is_file() => match node {
                    Some(ino) => self.consider_node(ino, false),
                    None => {
                        self.versioning.consider(&r, false);
                    }
                },
                _ => {}
            }
        }
        Ok(())
    }

    fn open_backing(&self, path: &Path, flags: i32) -> Result<(File, bool)> {
        let acc = flags & posix::O_ACCMODE;
        let writable = acc != posix::O_RDONLY;
        let mut opts = OpenOptions::new();
        // The kernel sends explicit offsets and handles O_APPEND and O_TRUNC itself;
        // O_DIRECT would demand aligned buffers from us.
        #[cfg(unix)]
        opts.custom_flags(
            flags
                & !(libc::O_CREAT
                    | libc::O_EXCL
                    | libc::O_TRUNC
                    | libc::O_APPEND
                    | libc::O_NOCTTY
                    | libc::O_DIRECT
                    | libc::O_ACCMODE),
        );
        // Writable handles also read: the kernel's writeback cache reads through them.
        opts.read(true).write(writable);
        let file = match opts.open(path) {
            Ok(f) => f,
            Err(e) if acc == posix::O_WRONLY && posix::errno_of(&e) == posix::EACCES => {
                opts.read(false);
                opts.open(path)?
            }
            Err(e) => return Err(e.into()),
        };
        Ok((file, writable))
    }

    fn add_handle(&self, ino: Ino, kind: HandleKind, writable: bool, owner: Option<u32>) -> Fh {
        let fh = self.new_fh();
        {
            let mut t = lock(&self.nodes);
            while writable && t.get(ino).is_some_and(|n| n.capturing) {
                t = self
                    .captured
                    .wait(t)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if let Some(n) = t.get_mut(ino) {
                n.open += 1;
                if writable {
                    n.writers += 1;
                }
            }
        }
        lock(&self.handles).insert(
            fh,
            Arc::new(Handle {
                ino,
                kind,
                writable,
                owner,
                flushed: AtomicBool::new(false),
            }),
        );
        fh
    }

    /// Opens a node. `owner` is the opening process (see [`Drive::flush`]).
    pub fn open(&self, ino: Ino, flags: i32, owner: Option<u32>) -> Result<Opened> {
        let wants_write =
            flags & posix::O_ACCMODE != posix::O_RDONLY || flags & posix::O_TRUNC != 0;
        let t = lock(&self.nodes);
        let kind = Self::kind_of(&t, ino)?;
        match kind {
            NodeKind::Backing => {
                let path = self.backing_path(&t, ino)?;
                drop(t);
                let (file, writable) = self.open_backing(&path, flags)?;
                let file = Arc::new(file);
                let fh = self.add_handle(ino, HandleKind::Backing(file.clone()), writable, owner);
                Ok(Opened {
                    fh,
                    backing: Some(file),
                    direct_io: false,
                })
            }
            NodeKind::Version(path, info) => {
                drop(t);
                if wants_write {
                    return Err(DriveError::EROFS);
                }
                let file = self.view.open(&path, &info).map_err(|e| {
                    tracing::warn!(%path, error = %e, "cannot fetch a stored version");
                    DriveError::EIO
                })?;
                let fh = self.add_handle(ino, HandleKind::Version(file), false, owner);
                Ok(Opened {
                    fh,
                    backing: None,
                    direct_io: false,
                })
            }
            NodeKind::Status => {
                drop(t);
                if wants_write {
                    return Err(DriveError::EROFS);
                }
                let text = self.status_text().into_bytes();
                let fh = self.add_handle(ino, HandleKind::Status(text), false, owner);
                Ok(Opened {
                    fh,
                    backing: None,
                    direct_io: true,
                })
            }
            _ => Err(DriveError::EISDIR),
        }
    }

    pub fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
        owner: Option<u32>,
    ) -> Result<(Entry, Opened)> {
        let mut t = lock(&self.nodes);
        if is_reserved(parent, name) {
            return Err(DriveError::EEXIST);
        }
        let path = self.child_path(&t, parent, name)?;
        let mut opts = OpenOptions::new();
        opts.create(true);
        #[cfg(unix)]
        opts.mode(mode & 0o7777);
        #[cfg(not(unix))]
        let _ = mode;
        if flags & posix::O_EXCL != 0 {
            opts.create_new(true);
        }
        // Create first, then open with the caller's flags like any open.
        drop(opts.write(true).open(&path)?);
        let entry = self.backing_entry(&mut t, parent, name, &path)?;
        drop(t);
        let (file, writable) = self.open_backing(&path, flags)?;
        let file = Arc::new(file);
        let fh = self.add_handle(
            entry.attr.ino,
            HandleKind::Backing(file.clone()),
            writable,
            owner,
        );
        Ok((
            entry,
            Opened {
                fh,
                backing: Some(file),
                direct_io: false,
            },
        ))
    }

    pub fn read(&self, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
        let h = self.handle(fh)?;
        let read_file = |f: &File| -> Result<Vec<u8>> {
            let mut buf = vec![0u8; size as usize];
            let mut done = 0;
            while done < buf.len() {
                match read_at(f, &mut buf[done..], offset + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            buf.truncate(done);
            Ok(buf)
        };
        match &h.kind {
            HandleKind::Backing(f) => read_file(f),
            HandleKind::Version(f) => read_file(f),
            HandleKind::Status(text) => {
                let start = (offset as usize).min(text.len());
                let end = start.saturating_add(size as usize).min(text.len());
                Ok(text[start..end].to_vec())
            }
        }
    }

    /// Writes at `offset`. `kill_suidgid`: the kernel asks to clear the set-user-id and
    /// set-group-id bits, as a write by an unprivileged user does.
    pub fn write(&self, fh: Fh, offset: u64, data: &[u8], kill_suidgid: bool) -> Result<u32> {
        let h = self.handle(fh)?;
        match &h.kind {
            HandleKind::Backing(f) => {
                #[cfg(unix)]
                if kill_suidgid {
                    let mode = f.metadata()?.mode();
                    if mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
                        use std::os::unix::fs::PermissionsExt;
                        let cleared = mode & 0o7777 & !(libc::S_ISUID | libc::S_ISGID);
                        f.set_permissions(fs::Permissions::from_mode(cleared))?;
                    }
                }
                #[cfg(not(unix))]
                let _ = kill_suidgid;
                write_all_at(f, data, offset)?;
                Ok(data.len() as u32)
            }
            _ => Err(DriveError::EROFS),
        }
    }

    /// A `close()` of a descriptor of this handle: the moment a version is taken (rule a).
    ///
    /// `closer` is the process closing it. A close by another process than the opener is
    /// a copy of the descriptor going away (a child inherited it across `fork` and is now
    /// `exec`ing or exiting) while the opener may still write: it is left to the opener's
    /// own close, or to the release.
    pub fn flush(&self, fh: Fh, closer: Option<u32>) -> Result<()> {
        let h = self.handle(fh)?;
        if let (Some(owner), Some(closer)) = (h.owner, closer)
            && owner != closer
        {
            return Ok(());
        }
        if h.writable && !h.flushed.swap(true, Ordering::AcqRel) {
            if let Some(n) = lock(&self.nodes).get_mut(h.ino) {
                n.writers = n.writers.saturating_sub(1);
            }
            self.consider_node(h.ino, true);
        }
        Ok(())
    }

    /// The last reference to the handle is gone.
    pub fn release(&self, fh: Fh) -> Result<()> {
        let Some(h) = lock(&self.handles).remove(&fh) else {
            return Err(DriveError::EBADF);
        };
        let was_writer = h.writable && !h.flushed.swap(true, Ordering::AcqRel);
        {
            let mut t = lock(&self.nodes);
            if let Some(n) = t.get_mut(h.ino) {
                n.open = n.open.saturating_sub(1);
                if was_writer {
                    n.writers = n.writers.saturating_sub(1);
                }
            }
        }
        if h.writable {
            // Writes after the last close (a dup'ed descriptor, a shared mapping), or an
            // empty file left for now by `flush`.
            self.consider_node(h.ino, false);
        }
        lock(&self.nodes).maybe_drop(h.ino);
        Ok(())
    }

    pub fn fsync(&self, fh: Fh, datasync: bool) -> Result<()> {
        let h = self.handle(fh)?;
        if let HandleKind::Backing(f) = &h.kind {
            if datasync {
                f.sync_data()?;
            } else {
                f.sync_all()?;
            }
        }
        Ok(())
    }

    pub fn fallocate(&self, fh: Fh, offset: u64, len: u64, mode: i32) -> Result<()> {
        let h = self.handle(fh)?;
        match &h.kind {
            HandleKind::Backing(f) => Ok(backing::fallocate(f, mode, offset, len)?),
            _ => Err(DriveError::EROFS),
        }
    }

    pub fn opendir(&self, ino: Ino) -> Result<Fh> {
        let t = lock(&self.nodes);
        let kind = Self::kind_of(&t, ino)?;
        let parent = t.get(ino).map(|n| n.parent).unwrap_or(ROOT);
        let mut entries = vec![
            DirEntry {
                ino,
                kind: FileKind::Dir,
                name: ".".into(),
            },
            DirEntry {
                ino: parent,
                kind: FileKind::Dir,
                name: "..".into(),
            },
        ];
        match &kind {
            NodeKind::Backing => {
                let path = self.backing_path(&t, ino)?;
                if ino == ROOT {
                    entries.push(DirEntry {
                        ino: t
                            .child(ROOT, OsStr::new(VERSIONS_DIR))
                            .unwrap_or(u64::MAX - 1),
                        kind: FileKind::Dir,
                        name: VERSIONS_DIR.into(),
                    });
                    entries.push(DirEntry {
                        ino: t
                            .child(ROOT, OsStr::new(STATUS_FILE))
                            .unwrap_or(u64::MAX - 2),
                        kind: FileKind::File,
                        name: STATUS_FILE.into(),
                    });
                }
                for entry in fs::read_dir(&path)? {
                    let entry = entry?;
                    let name = entry.file_name();
                    if is_reserved(ino, &name) {
                        continue;
                    }
                    let kind = entry
                        .file_type()
                        .map(FileKind::of)
                        .unwrap_or(FileKind::File);
                    let ino = t
                        .child(ino, &name)
                        .unwrap_or(dirent_ino(&entry) | (1 << 63));
                    entries.push(DirEntry { ino, kind, name });
                }
            }
            NodeKind::VersionsDir(dir) => {
                let dir = dir.clone();
                drop(t);
                let tree = self.view.tree(dir.as_ref()).map_err(|e| {
                    tracing::warn!(error = %e, "cannot list stored versions");
                    DriveError::EIO
                })?;
                let Some(tree) = tree.as_ref() else {
                    return Err(DriveError::ENOENT);
                };
                let t = lock(&self.nodes);
                for name in tree.dirs.iter().chain(tree.files.iter().map(|f| &f.name)) {
                    let ino = t.child(ino, OsStr::new(name)).unwrap_or(u64::MAX - 3);
                    entries.push(DirEntry {
                        ino,
                        kind: FileKind::Dir,
                        name: name.into(),
                    });
                }
            }
            NodeKind::VersionsFile(path) => {
                let path = path.clone();
                drop(t);
                let versions = self.view.versions(&path).map_err(|e| {
                    tracing::warn!(error = %e, "cannot list stored versions");
                    DriveError::EIO
                })?;
                let t = lock(&self.nodes);
                for v in versions.iter() {
                    let name = version_name(&path, v);
                    let ino = t.child(ino, OsStr::new(&name)).unwrap_or(u64::MAX - 4);
                    entries.push(DirEntry {
                        ino,
                        kind: FileKind::File,
                        name: name.into(),
                    });
                }
            }
            _ => return Err(DriveError::ENOTDIR),
        }
        let fh = self.new_fh();
        lock(&self.dirs).insert(fh, Arc::new(entries));
        Ok(fh)
    }

    /// Entries from `offset` on; each entry's offset for the next call is its index + 1.
    pub fn readdir(&self, fh: Fh) -> Result<Arc<Vec<DirEntry>>> {
        lock(&self.dirs).get(&fh).cloned().ok_or(DriveError::EBADF)
    }

    pub fn releasedir(&self, fh: Fh) {
        lock(&self.dirs).remove(&fh);
    }

    pub fn statfs(&self) -> Result<FsStats> {
        Ok(backing::statvfs(&self.files)?)
    }

    fn xattr_path(&self, ino: Ino) -> Result<Option<PathBuf>> {
        let t = lock(&self.nodes);
        match Self::kind_of(&t, ino)? {
            NodeKind::Backing => Ok(Some(self.backing_path(&t, ino)?)),
            _ => Ok(None),
        }
    }

    /// An attribute's value; with `size` 0 only its length matters to the caller.
    pub fn getxattr(&self, ino: Ino, name: &OsStr, size: u32) -> Result<Vec<u8>> {
        let Some(path) = self.xattr_path(ino)? else {
            return Err(DriveError::ENODATA);
        };
        let len = backing::getxattr(&path, name, &mut [])?;
        if size == 0 {
            return Ok(vec![0; len]);
        }
        let mut buf = vec![0u8; (size as usize).max(len)];
        let n = backing::getxattr(&path, name, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    pub fn listxattr(&self, ino: Ino, size: u32) -> Result<Vec<u8>> {
        let Some(path) = self.xattr_path(ino)? else {
            return Ok(Vec::new());
        };
        let len = backing::listxattr(&path, &mut [])?;
        if size == 0 {
            return Ok(vec![0; len]);
        }
        let mut buf = vec![0u8; (size as usize).max(len)];
        let n = backing::listxattr(&path, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    pub fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        let path = self.xattr_path(ino)?.ok_or(DriveError::EROFS)?;
        Ok(backing::setxattr(&path, name, value, flags)?)
    }

    pub fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        let path = self.xattr_path(ino)?.ok_or(DriveError::EROFS)?;
        Ok(backing::removexattr(&path, name)?)
    }

    /// Nodes the table holds (for tests and diagnostics).
    pub fn node_count(&self) -> usize {
        lock(&self.nodes).len()
    }
}

/// Permissions for a mode. Windows keeps only "read-only" (set when no write bit is),
/// so there the other attributes come from `current`.
fn permissions_for(
    mode: u32,
    current: impl FnOnce() -> Result<fs::Metadata>,
) -> Result<fs::Permissions> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = current;
        Ok(fs::Permissions::from_mode(mode & 0o7777))
    }
    #[cfg(not(unix))]
    {
        let mut perm = current()?.permissions();
        perm.set_readonly(mode & 0o222 == 0);
        Ok(perm)
    }
}

/// A folder entry's inode number, for entries the node table has not seen; a
/// made-up but stable-enough 0 where the platform has none to give (Windows' std).
fn dirent_ino(entry: &fs::DirEntry) -> u64 {
    #[cfg(unix)]
    {
        std::os::unix::fs::DirEntryExt::ino(entry)
    }
    #[cfg(not(unix))]
    {
        let _ = entry;
        0
    }
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, offset)
}

#[cfg(unix)]
fn write_all_at(f: &File, data: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, data, offset)
}

/// Positioned I/O on Windows moves the handle's cursor too, which nothing here uses.
#[cfg(windows)]
fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, offset)
}

#[cfg(windows)]
fn write_all_at(f: &File, mut data: &[u8], mut offset: u64) -> io::Result<()> {
    while !data.is_empty() {
        match std::os::windows::fs::FileExt::seek_write(f, data, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = &data[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let _ = (f, buf, offset);
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(not(any(unix, windows)))]
fn write_all_at(f: &File, data: &[u8], offset: u64) -> io::Result<()> {
    let _ = (f, data, offset);
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests;
