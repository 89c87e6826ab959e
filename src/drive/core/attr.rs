//! What `stat` shows: attributes of backing and virtual nodes.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::nodes::{Ino, NodeKind, NodeTable};
use super::{BACKING_TTL, Drive, Result, SetTime, VIRTUAL_TTL, backing};

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

/// The mode for Windows' read-only attribute: read-only clears every write bit,
/// writable gives the owner write again; the other bits stay. `None` when the mode
/// already says so.
pub fn readonly_mode(perm: u16, readonly: bool) -> Option<u32> {
    let perm = u32::from(perm);
    let want = if readonly {
        perm & !0o222
    } else {
        perm | 0o200
    };
    (want != perm).then_some(want)
}

impl Drive {
    pub(super) fn attr_of(&self, ino: Ino, meta: &fs::Metadata) -> Attr {
        backing::attr(ino, meta, (self.uid, self.gid))
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
