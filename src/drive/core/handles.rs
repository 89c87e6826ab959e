//! Open files: handles, reads and writes, and the capture gate (SPEC §4 rule a).

use std::fs::{File, OpenOptions};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::nodes::{Ino, NodeKind};
use super::{Drive, DriveError, Entry, Fh, Result, backing, is_reserved, posix, versions_error};
use crate::sync::{lock, wait};
use std::ffi::OsStr;
use std::path::Path;

/// Where [`Drive::write_at`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAt {
    Offset(u64),
    /// At the end of the file, whatever its size when the write happens.
    EndOfFile,
    /// At this offset, cut to the file's current size (never extends the file).
    WithinSize(u64),
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

pub(super) enum HandleKind {
    Backing(Arc<File>),
    Version(File),
    Status(Vec<u8>),
}

pub(super) struct Handle {
    pub(super) ino: Ino,
    pub(super) kind: HandleKind,
    pub(super) writable: bool,
    /// The process that opened it, when the platform can tell.
    pub(super) owner: Option<u32>,
    /// Closed at least once (FUSE `flush`): no longer counted as an open writer.
    pub(super) flushed: AtomicBool,
}

impl Drive {
    /// Takes a version of the node's file if no handle still has it open for writing.
    /// While the capture copies the file, opens for writing wait, so no later write can
    /// slip into it. With `defer_empty`, an empty file is left for the release to judge:
    /// shells close a `dup`ed descriptor right after `> file` truncates it.
    pub(super) fn consider_node(&self, ino: Ino, defer_empty: bool) {
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

    pub(super) fn handle(&self, fh: Fh) -> Result<Arc<Handle>> {
        lock(&self.handles)
            .get(&fh)
            .cloned()
            .ok_or(DriveError::EBADF)
    }

    pub(super) fn open_backing(&self, path: &Path, flags: i32) -> Result<(File, bool)> {
        let acc = flags & posix::O_ACCMODE;
        let writable = acc != posix::O_RDONLY;
        let mut opts = OpenOptions::new();
        backing::open_flags(&mut opts, flags);
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

    pub(super) fn add_handle(
        &self,
        ino: Ino,
        kind: HandleKind,
        writable: bool,
        owner: Option<u32>,
    ) -> Fh {
        let fh = self.new_fh();
        {
            let mut t = lock(&self.nodes);
            while writable && t.get(ino).is_some_and(|n| n.capturing) {
                t = wait(&self.captured, t);
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
                    versions_error(format!("cannot fetch a stored version of {path}"), e)
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

    /// Opens a file for reading and, with `write`, for writing too when the file
    /// allows it. Windows grants programs more than they need (MAXIMUM_ALLOWED,
    /// Everyone's full access): on a read-only file such an open gets a read-only
    /// handle, and a write through it then fails as read-only. Returns whether the
    /// handle may write.
    pub fn open_for(&self, ino: Ino, write: bool, owner: Option<u32>) -> Result<(Opened, bool)> {
        if !write {
            return Ok((self.open(ino, posix::O_RDONLY, owner)?, false));
        }
        match self.open(ino, posix::O_RDWR, owner) {
            Ok(o) => Ok((o, true)),
            Err(e) if e == DriveError::EROFS || e == DriveError::EACCES => {
                Ok((self.open(ino, posix::O_RDONLY, owner)?, false))
            }
            Err(e) => Err(e),
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
        // Create first, then open with the caller's flags like any open. A file this
        // call created gets the caller's mode exactly (the kernel applied the caller's
        // umask; ects' own must not strip more); an existing one is left as it is.
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        backing::create_mode(&mut opts, mode);
        match opts.open(&path) {
            Ok(f) => backing::set_mode(&f, mode)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && flags & posix::O_EXCL == 0 => {}
            Err(e) => return Err(e.into()),
        }
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
                match backing::read_at(f, &mut buf[done..], offset + done as u64) {
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
        let _sizes = crate::sync::read(self.size_lock(h.ino));
        Self::write_handle(&h, offset, data, kill_suidgid)
    }

    /// Writes where Windows asks: at an offset, at the end of the file (an append: no
    /// other write or size change can come between reading the size and writing
    /// there), or within the current size (paging I/O, which never extends a file).
    /// A handle [`Drive::open_for`] opened read-only refuses writes (EACCES).
    pub fn write_at(&self, fh: Fh, at: WriteAt, data: &[u8]) -> Result<u32> {
        let h = self.handle(fh)?;
        if !h.writable {
            return Err(DriveError::EACCES);
        }
        if let WriteAt::Offset(offset) = at {
            let _sizes = crate::sync::read(self.size_lock(h.ino));
            return Self::write_handle(&h, offset, data, false);
        }
        let _sizes = crate::sync::write(self.size_lock(h.ino));
        let size = match &h.kind {
            HandleKind::Backing(f) => f.metadata()?.len(),
            _ => return Err(DriveError::EROFS),
        };
        let (offset, data) = match at {
            WriteAt::WithinSize(offset) if offset >= size => return Ok(0),
            WriteAt::WithinSize(offset) => {
                let room = usize::try_from(size - offset).unwrap_or(usize::MAX);
                (offset, &data[..data.len().min(room)])
            }
            _ => (size, data),
        };
        Self::write_handle(&h, offset, data, false)
    }

    /// Windows' allocation size: below the end of the file it cuts the file there,
    /// above it is only a hint and changes nothing. The size is read and cut in one
    /// step, so an append at the same moment is not cut off.
    pub fn set_allocation(&self, fh: Fh, size: u64) -> Result<()> {
        let h = self.handle(fh)?;
        let HandleKind::Backing(f) = &h.kind else {
            return Err(DriveError::EROFS);
        };
        if !h.writable {
            return Err(DriveError::EACCES);
        }
        let _sizes = crate::sync::write(self.size_lock(h.ino));
        if size < f.metadata()?.len() {
            f.set_len(size)?;
        }
        Ok(())
    }

    fn write_handle(h: &Handle, offset: u64, data: &[u8], kill_suidgid: bool) -> Result<u32> {
        match &h.kind {
            HandleKind::Backing(f) => {
                if kill_suidgid {
                    backing::kill_suidgid(f)?;
                }
                backing::write_all_at(f, data, offset)?;
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
}
