//! The backing-folder calls on platforms without Linux's system calls (Windows).
//!
//! Written against std's and the Win32 documentation; it is compiled only on Windows
//! (the GitHub Windows job), never on the Linux machines that run the core's tests.
//! What Windows has no equivalent for (device nodes, owners, extended attributes in
//! the POSIX sense, fallocate modes, exchanging renames) answers "not supported": the
//! WinFsp adapter never asks for them.

use std::ffi::OsStr;
use std::fs::{File, FileTimes, OpenOptions};
use std::io;
use std::path::Path;
use std::time::SystemTime;

use super::super::{Attr, FileKind, Fingerprint, Ino, posix};
use super::{FsStats, SetTime};

fn unsupported() -> io::Error {
    io::Error::from(io::ErrorKind::Unsupported)
}

/// Renames with the FUSE flags' meaning: `RENAME_NOREPLACE` fails if `to` exists,
/// otherwise an existing `to` is replaced (Windows' `MoveFileExW` does both atomically).
pub fn rename(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
    if flags & posix::RENAME_EXCHANGE != 0 {
        return Err(unsupported());
    }
    if flags & posix::RENAME_NOREPLACE != 0 {
        return rename_noreplace(from, to);
    }
    // std's rename on Windows is MoveFileExW(MOVEFILE_REPLACE_EXISTING).
    std::fs::rename(from, to)
}

#[cfg(windows)]
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::windows::ffi::OsStrExt;
    use windows_sys::Win32::Storage::FileSystem::MoveFileExW;
    let wide = |p: &Path| -> Vec<u16> { p.as_os_str().encode_wide().chain(Some(0)).collect() };
    let (f, t) = (wide(from), wide(to));
    // SAFETY: both are NUL-terminated UTF-16 strings that outlive the call. Flags 0:
    // fail if `to` exists, same volume only (the backing folder is one folder).
    if unsafe { MoveFileExW(f.as_ptr(), t.as_ptr(), 0) } != 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(windows))]
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    // Not atomic, but no such platform mounts the drive (see commands::mount).
    if to.symlink_metadata().is_ok() {
        return Err(io::ErrorKind::AlreadyExists.into());
    }
    std::fs::rename(from, to)
}

pub fn mknod(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let _ = (path, mode, rdev);
    Err(unsupported())
}

pub fn lchown(path: &Path, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    let _ = (path, uid, gid);
    Err(unsupported())
}

fn file_times(atime: SetTime, mtime: SetTime) -> FileTimes {
    let now = SystemTime::now();
    let resolve = |t: SetTime| match t {
        SetTime::Keep => None,
        SetTime::Now => Some(now),
        SetTime::At(t) => Some(t),
    };
    let mut times = FileTimes::new();
    if let Some(a) = resolve(atime) {
        times = times.set_accessed(a);
    }
    if let Some(m) = resolve(mtime) {
        times = times.set_modified(m);
    }
    times
}

/// Sets access and modification times of a file or folder by path.
pub fn utimens(path: &Path, atime: SetTime, mtime: SetTime) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        // FILE_WRITE_ATTRIBUTES is all SetFileTime needs; FILE_FLAG_BACKUP_SEMANTICS
        // lets the same call open a folder; FILE_FLAG_OPEN_REPARSE_POINT does not
        // follow a final link (like AT_SYMLINK_NOFOLLOW).
        const FILE_WRITE_ATTRIBUTES: u32 = 0x0100;
        const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
        const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
        opts.access_mode(FILE_WRITE_ATTRIBUTES)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT);
    }
    #[cfg(not(windows))]
    opts.write(true);
    futimens(&opts.open(path)?, atime, mtime)
}

pub fn futimens(file: &File, atime: SetTime, mtime: SetTime) -> io::Result<()> {
    file.set_times(file_times(atime, mtime))
}

/// Free and total space of the backing folder's volume, in 4 KiB blocks.
#[cfg(windows)]
pub fn statvfs(path: &Path) -> io::Result<FsStats> {
    use std::os::windows::ffi::OsStrExt;
    use windows_sys::Win32::Storage::FileSystem::GetDiskFreeSpaceExW;
    const BSIZE: u64 = 4096;
    let p: Vec<u16> = path.as_os_str().encode_wide().chain(Some(0)).collect();
    let (mut avail, mut total, mut free) = (0u64, 0u64, 0u64);
    // SAFETY: a NUL-terminated path and three u64 out-parameters we own.
    if unsafe { GetDiskFreeSpaceExW(p.as_ptr(), &mut avail, &mut total, &mut free) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FsStats {
        blocks: total / BSIZE,
        bfree: free / BSIZE,
        bavail: avail / BSIZE,
        files: 0,
        ffree: 0,
        bsize: BSIZE as u32,
        namelen: 255,
        frsize: BSIZE as u32,
    })
}

#[cfg(not(windows))]
pub fn statvfs(path: &Path) -> io::Result<FsStats> {
    let _ = path;
    Err(unsupported())
}

pub fn getxattr(path: &Path, name: &OsStr, buf: &mut [u8]) -> io::Result<usize> {
    let _ = (path, name, buf);
    Err(unsupported())
}

pub fn setxattr(path: &Path, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
    let _ = (path, name, value, flags);
    Err(unsupported())
}

pub fn listxattr(path: &Path, buf: &mut [u8]) -> io::Result<usize> {
    let _ = (path, buf);
    Err(unsupported())
}

pub fn removexattr(path: &Path, name: &OsStr) -> io::Result<()> {
    let _ = (path, name);
    Err(unsupported())
}

pub fn fallocate(file: &File, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    let _ = (file, mode, offset, len);
    Err(unsupported())
}

// ----- files, folders and their attributes -----

/// Windows has SIDs, not numbers; the WinFsp adapter ignores these.
pub fn owner() -> (u32, u32) {
    (0, 0)
}

pub fn describe_errno(errno: i32) -> String {
    posix::describe(errno).to_owned()
}

pub fn file_kind(t: std::fs::FileType) -> FileKind {
    if t.is_dir() {
        FileKind::Dir
    } else if t.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::File
    }
}

/// What Windows' std can tell: no owner, mode bits, links or device numbers. A
/// read-only file shows as 0o444; the WinFsp adapter maps it back to
/// FILE_ATTRIBUTE_READONLY.
pub fn attr(ino: Ino, meta: &std::fs::Metadata, owner: (u32, u32)) -> Attr {
    use std::time::UNIX_EPOCH;
    let kind = file_kind(meta.file_type());
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
        uid: owner.0,
        gid: owner.1,
        rdev: 0,
        blksize: 4096,
    }
}

/// Windows' std has no inode nor change time: size and the last-write time (NTFS
/// keeps 100 ns) identify a state there.
pub fn fingerprint(meta: &std::fs::Metadata) -> Fingerprint {
    let mtime = match meta
        .modified()
        .map(|t| t.duration_since(std::time::UNIX_EPOCH))
    {
        Ok(Ok(d)) => (d.as_secs() as i64, i64::from(d.subsec_nanos())),
        _ => (0, 0),
    };
    Fingerprint {
        ino: 0,
        size: meta.len(),
        mtime,
        ctime: (0, 0),
    }
}

/// Windows keeps only "read-only" (set when no write bit is), so the other
/// attributes come from `current`.
pub fn permissions_for(
    mode: u32,
    current: impl FnOnce() -> io::Result<std::fs::Metadata>,
) -> io::Result<std::fs::Permissions> {
    let mut perm = current()?.permissions();
    perm.set_readonly(mode & 0o222 == 0);
    Ok(perm)
}

/// A made-up but stable-enough 0: Windows' std gives no file index here.
pub fn dirent_ino(entry: &std::fs::DirEntry) -> u64 {
    let _ = entry;
    0
}

/// Windows opens have no flags beyond access and creation, which std sets.
pub fn open_flags(opts: &mut OpenOptions, flags: i32) {
    let _ = (opts, flags);
}

/// New files take their attributes from the folder (ACL inheritance).
pub fn create_mode(opts: &mut OpenOptions, mode: u32) {
    let _ = (opts, mode);
}

pub fn dir_mode(builder: &mut std::fs::DirBuilder, mode: u32) {
    let _ = (builder, mode);
}

/// No set-user-id bits to clear on Windows.
pub fn kill_suidgid(f: &File) -> io::Result<()> {
    let _ = f;
    Ok(())
}

/// Windows symlinks need a privilege students do not have, and Windows programs
/// never ask a drive for POSIX ones.
pub fn symlink(target: &Path, path: &Path) -> io::Result<()> {
    let _ = (target, path);
    Err(unsupported())
}

/// Positioned I/O on Windows moves the handle's cursor too, which nothing here uses.
#[cfg(windows)]
pub fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, offset)
}

#[cfg(windows)]
pub fn write_all_at(f: &File, mut data: &[u8], mut offset: u64) -> io::Result<()> {
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

#[cfg(not(windows))]
pub fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let _ = (f, buf, offset);
    Err(unsupported())
}

#[cfg(not(windows))]
pub fn write_all_at(f: &File, data: &[u8], offset: u64) -> io::Result<()> {
    let _ = (f, data, offset);
    Err(unsupported())
}

pub fn set_mode(f: &File, mode: u32) -> io::Result<()> {
    let _ = (f, mode);
    Ok(())
}

pub fn set_path_mode(path: &Path, mode: u32) -> io::Result<()> {
    let _ = (path, mode);
    Ok(())
}

/// Where the sink reads a file to capture: the plain path here (the sink opens it
/// without following a final symlink or junction).
pub struct CaptureSource {
    path: std::path::PathBuf,
}

impl CaptureSource {
    pub fn open(root: &Path, rel: &Path) -> io::Result<Self> {
        Ok(Self {
            path: root.join(rel),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
