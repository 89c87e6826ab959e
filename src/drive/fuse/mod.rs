//! The FUSE adapter: converts `fuser` calls to [`Drive`] calls and back, logs, replies.
//! No filesystem logic lives here.
//!
//! Speed: kernel passthrough (reads and writes go straight to the backing file, never
//! through this process) when the kernel offers it and we may use it; otherwise the
//! kernel's writeback cache with 1 MiB writes. Passthrough needs one backing id per
//! inode shared by all its open handles, which this adapter keeps.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::sync::lock;
use std::time::SystemTime;

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

mod log;
mod metrics;
mod session;

use log::failed;
use metrics::{Op, OpStats};
pub use session::{Mountpoint, SessionError, is_mount_point};

use super::core::{Attr, Drive, DriveError, Entry, FileKind, Opened, SetAttr, SetTime, posix};

/// Largest write the kernel sends in one request.
pub const MAX_WRITE: u32 = 1 << 20;

/// How the adapter talks to the kernel; decided at `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    Passthrough,
    Writeback,
    Plain,
}

pub struct FuseDrive {
    drive: Arc<Drive>,
    allow_passthrough: bool,
    passthrough: AtomicBool,
    writeback: AtomicBool,
    /// One backing id per inode while any passthrough handle is open on it.
    backing_by_ino: Mutex<HashMap<u64, Weak<BackingId>>>,
    backing_by_fh: Mutex<HashMap<u64, Arc<BackingId>>>,
    mode_report: Mutex<Option<std::sync::mpsc::Sender<IoMode>>>,
    ops: OpStats,
}

/// The mode a new node gets: the caller's, less the caller's umask. The kernel has
/// usually applied it already (then this changes nothing); the drive applies it
/// exactly, never its own process umask.
fn created_mode(mode: u32, umask: u32) -> u32 {
    mode & !(umask & 0o777)
}

fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

fn attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

/// The entry that tells the kernel a name does not exist (inode 0).
fn no_such_name() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(at) => SetTime::At(at),
    })
}

/// The process (thread group) a request comes from: FUSE reports the calling thread.
/// `None` when it cannot be told (the thread is gone, another pid namespace).
fn process_of(req: &Request) -> Option<u32> {
    let pid = req.pid();
    if pid == 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

impl FuseDrive {
    /// `allow_passthrough`: try kernel passthrough when the kernel offers it. `report`
    /// learns the mode chosen once the kernel has connected.
    pub fn new(
        drive: Arc<Drive>,
        allow_passthrough: bool,
        report: Option<std::sync::mpsc::Sender<IoMode>>,
    ) -> Self {
        Self {
            drive,
            allow_passthrough,
            passthrough: AtomicBool::new(false),
            writeback: AtomicBool::new(false),
            backing_by_ino: Mutex::default(),
            backing_by_fh: Mutex::default(),
            mode_report: Mutex::new(report),
            ops: OpStats::for_log_level(),
        }
    }

    fn reply_entry(reply: ReplyEntry, e: Entry) {
        reply.entry(&e.ttl, &attr(&e.attr), Generation(0));
    }

    fn open_flags(&self, opened: &Opened) -> FopenFlags {
        if opened.direct_io {
            FopenFlags::FOPEN_DIRECT_IO
        } else if opened.backing.is_some() && self.writeback.load(Ordering::Relaxed) {
            // The drive is the only writer of its backing files.
            FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        }
    }

    /// The inode's backing id, registering `file` if none is live. `None` when
    /// passthrough is off or the kernel refused (then passthrough is turned off).
    fn backing_id(
        &self,
        ino: u64,
        register: impl FnOnce() -> std::io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        if !self.passthrough.load(Ordering::Relaxed) {
            return None;
        }
        let mut by_ino = lock(&self.backing_by_ino);
        if let Some(id) = by_ino.get(&ino).and_then(Weak::upgrade) {
            return Some(id);
        }
        match register() {
            Ok(id) => {
                let id = Arc::new(id);
                by_ino.insert(ino, Arc::downgrade(&id));
                Some(id)
            }
            Err(e) => {
                tracing::warn!(error = %e, "kernel passthrough refused; serving reads and writes in the drive");
                self.passthrough.store(false, Ordering::Relaxed);
                None
            }
        }
    }
}

impl Filesystem for FuseDrive {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let caps = config.capabilities();
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS & caps);
        let _ = config.add_capabilities(InitFlags::FUSE_CACHE_SYMLINKS & caps);
        // Listings carry attributes, so `ls -l`, `du` and file managers need no lookup
        // round trip per entry; the kernel picks plain readdir when nobody will stat.
        let _ = config.add_capabilities(
            (InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO) & caps,
        );
        // Without it the kernel asks for `security.capability` before every write (one
        // round trip each, a 5× slowdown of 4 KiB writes, even with passthrough); with
        // it, suid/sgid clearing is ours (see `write`), and the mount is nosuid anyway.
        let _ = config.add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2 & caps);
        let mode = if self.allow_passthrough
            && caps.contains(InitFlags::FUSE_PASSTHROUGH)
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(2).is_ok()
        {
            self.passthrough.store(true, Ordering::Relaxed);
            IoMode::Passthrough
        } else if caps.contains(InitFlags::FUSE_WRITEBACK_CACHE)
            && config
                .add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE)
                .is_ok()
        {
            self.writeback.store(true, Ordering::Relaxed);
            IoMode::Writeback
        } else {
            IoMode::Plain
        };
        tracing::debug!(?mode, "kernel connected");
        if let Some(tx) = lock(&self.mode_report).take() {
            let _ = tx.send(mode);
        }
        Ok(())
    }

    fn destroy(&mut self) {
        self.ops.log();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _timed = self.ops.time(Op::Lookup);
        match self.drive.lookup(parent.0, name) {
            Ok(e) => Self::reply_entry(reply, e),
            Err(e) if e.errno() == posix::ENOENT => match self.drive.negative_ttl(parent.0) {
                // Inode 0: the kernel keeps a negative entry and stops asking.
                Some(ttl) => reply.entry(&ttl, &no_such_name(), Generation(0)),
                None => reply.error(failed("lookup", e)),
            },
            Err(e) => reply.error(failed("lookup", e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _timed = self.ops.time(Op::Forget);
        self.drive.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let _timed = self.ops.time(Op::Getattr);
        match self.drive.getattr(ino.0, fh.map(|f| f.0)) {
            Ok(e) => reply.attr(&e.ttl, &attr(&e.attr)),
            Err(e) => reply.error(failed("getattr", e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _timed = self.ops.time(Op::Setattr);
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
        };
        match self.drive.setattr(ino.0, fh.map(|f| f.0), set) {
            Ok(e) => reply.attr(&e.ttl, &attr(&e.attr)),
            Err(e) => reply.error(failed("setattr", e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _timed = self.ops.time(Op::Readlink);
        use std::os::unix::ffi::OsStrExt;
        match self.drive.readlink(ino.0) {
            Ok(target) => reply.data(target.as_bytes()),
            Err(e) => reply.error(failed("readlink", e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let _timed = self.ops.time(Op::Mknod);
        match self
            .drive
            .mknod(parent.0, name, created_mode(mode, umask), rdev as u64)
        {
            Ok(e) => Self::reply_entry(reply, e),
            Err(e) => reply.error(failed("mknod", e)),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let _timed = self.ops.time(Op::Mkdir);
        match self.drive.mkdir(parent.0, name, created_mode(mode, umask)) {
            Ok(e) => Self::reply_entry(reply, e),
            Err(e) => reply.error(failed("mkdir", e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _timed = self.ops.time(Op::Unlink);
        reply_empty(reply, "unlink", self.drive.unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _timed = self.ops.time(Op::Rmdir);
        reply_empty(reply, "rmdir", self.drive.rmdir(parent.0, name));
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let _timed = self.ops.time(Op::Symlink);
        match self.drive.symlink(parent.0, link_name, target) {
            Ok(e) => Self::reply_entry(reply, e),
            Err(e) => reply.error(failed("symlink", e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _timed = self.ops.time(Op::Rename);
        reply_empty(
            reply,
            "rename",
            self.drive
                .rename(parent.0, name, newparent.0, newname, flags.bits()),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let _timed = self.ops.time(Op::Link);
        match self.drive.link(ino.0, newparent.0, newname) {
            Ok(e) => Self::reply_entry(reply, e),
            Err(e) => reply.error(failed("link", e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _timed = self.ops.time(Op::Open);
        let opened = match self.drive.open(ino.0, flags.0, process_of(req)) {
            Ok(o) => o,
            Err(e) => return reply.error(failed("open", e)),
        };
        let fopen = self.open_flags(&opened);
        if let Some(file) = &opened.backing
            && let Some(id) = self.backing_id(ino.0, || reply.open_backing(file.as_ref()))
        {
            lock(&self.backing_by_fh).insert(opened.fh, id.clone());
            reply.opened_passthrough(FileHandle(opened.fh), FopenFlags::empty(), &id);
            return;
        }
        reply.opened(FileHandle(opened.fh), fopen);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _timed = self.ops.time(Op::Create);
        let (entry, opened) = match self.drive.create(
            parent.0,
            name,
            created_mode(mode, umask),
            flags,
            process_of(req),
        ) {
            Ok(x) => x,
            Err(e) => return reply.error(failed("create", e)),
        };
        let fopen = self.open_flags(&opened);
        let a = attr(&entry.attr);
        if let Some(file) = &opened.backing
            && let Some(id) = self.backing_id(entry.attr.ino, || reply.open_backing(file.as_ref()))
        {
            lock(&self.backing_by_fh).insert(opened.fh, id.clone());
            reply.created_passthrough(
                &entry.ttl,
                &a,
                Generation(0),
                FileHandle(opened.fh),
                FopenFlags::empty(),
                &id,
            );
            return;
        }
        reply.created(&entry.ttl, &a, Generation(0), FileHandle(opened.fh), fopen);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _timed = self.ops.time(Op::Read);
        match self.drive.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(failed("read", e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _timed = self.ops.time(Op::Write);
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        match self.drive.write(fh.0, offset, data, kill) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(failed("write", e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _timed = self.ops.time(Op::Flush);
        tracing::trace!(ino = _ino.0, fh = fh.0, "flush");
        reply_empty(reply, "flush", self.drive.flush(fh.0, process_of(req)));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _timed = self.ops.time(Op::Release);
        tracing::trace!(ino = _ino.0, fh = fh.0, "release");
        let result = self.drive.release(fh.0);
        lock(&self.backing_by_fh).remove(&fh.0);
        reply_empty(reply, "release", result);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _timed = self.ops.time(Op::Fsync);
        reply_empty(reply, "fsync", self.drive.fsync(fh.0, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _timed = self.ops.time(Op::Opendir);
        match self.drive.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(failed("opendir", e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _timed = self.ops.time(Op::Readdir);
        let entries = match self.drive.readdir(fh.0) {
            Ok(e) => e,
            Err(e) => return reply.error(failed("readdir", e)),
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), (i + 1) as u64, file_type(e.kind), &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _timed = self.ops.time(Op::Readdirplus);
        let entries = match self.drive.readdir(fh.0) {
            Ok(e) => e,
            Err(e) => return reply.error(failed("readdirplus", e)),
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            let next = (i + 1) as u64;
            let dots = e.name == "." || e.name == "..";
            // Each entry but . and .. counts as a lookup the kernel will forget.
            let entry = if dots {
                self.drive.getattr(e.ino, None)
            } else {
                self.drive.lookup(ino.0, &e.name)
            };
            let Ok(entry) = entry else {
                continue; // gone since opendir
            };
            let full = reply.add(
                INodeNo(entry.attr.ino),
                next,
                &e.name,
                &entry.ttl,
                &attr(&entry.attr),
                Generation(0),
            );
            if full {
                if !dots {
                    self.drive.forget(entry.attr.ino, 1);
                }
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _timed = self.ops.time(Op::Releasedir);
        self.drive.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _timed = self.ops.time(Op::Fsyncdir);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _timed = self.ops.time(Op::Statfs);
        match self.drive.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(failed("statfs", e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _timed = self.ops.time(Op::Setxattr);
        reply_empty(
            reply,
            "setxattr",
            self.drive.setxattr(ino.0, name, value, flags),
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let op = if name == "security.capability" {
            Op::GetxattrCapability
        } else {
            Op::Getxattr
        };
        let _timed = self.ops.time(op);
        reply_xattr(
            reply,
            "getxattr",
            size,
            self.drive.getxattr(ino.0, name, size),
        );
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _timed = self.ops.time(Op::Listxattr);
        reply_xattr(reply, "listxattr", size, self.drive.listxattr(ino.0, size));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _timed = self.ops.time(Op::Removexattr);
        reply_empty(reply, "removexattr", self.drive.removexattr(ino.0, name));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _timed = self.ops.time(Op::Fallocate);
        reply_empty(
            reply,
            "fallocate",
            self.drive.fallocate(fh.0, offset, length, mode),
        );
    }
}

/// Replies to an operation whose only answer is success or an errno.
fn reply_empty(reply: ReplyEmpty, op: &'static str, result: Result<(), DriveError>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(failed(op, e)),
    }
}

/// The xattr protocol: `size == 0` asks for the length, a too-small buffer is ERANGE.
fn reply_xattr(
    reply: ReplyXattr,
    op: &'static str,
    size: u32,
    result: Result<Vec<u8>, DriveError>,
) {
    match result {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(failed(op, e)),
    }
}
