//! What `stat` shows: attributes of backing and virtual nodes.

use std::ffi::OsStr;
use std::fs;
#[cfg(unix)]
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::nodes::{Ino, NodeKind, NodeTable};
use super::{BACKING_TTL, Drive, Result, SetTime, VIRTUAL_TTL};

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
    pub(super) fn of(t: fs::FileType) -> Self {
        if t.is_dir() {
            Self::Dir
        } else if t.is_symlink() {
            Self::Symlink
        } else {
            Self::File
        }
    }

    #[cfg(unix)]
    pub(super) fn of(t: fs::FileType) -> Self {
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

#[cfg(unix)]
pub(super) fn time_of(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsecs as u64)
    }
}

impl Drive {
    /// What Windows' std can tell: no owner, mode bits, links or device numbers. A
    /// read-only file shows as 0o444; the WinFsp adapter maps it back to
    /// FILE_ATTRIBUTE_READONLY.
    #[cfg(not(unix))]
    pub(super) fn attr_of(&self, ino: Ino, meta: &fs::Metadata) -> Attr {
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
    pub(super) fn attr_of(&self, ino: Ino, meta: &fs::Metadata) -> Attr {
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

    pub(super) fn virtual_attr(&self, ino: Ino, kind: &NodeKind) -> Attr {
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

    pub(super) fn virtual_entry(&self, ino: Ino, kind: &NodeKind) -> Entry {
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
    pub(super) fn backing_entry(
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
}

/// Permissions for a mode. Windows keeps only "read-only" (set when no write bit is),
/// so there the other attributes come from `current`.
pub(super) fn permissions_for(
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
