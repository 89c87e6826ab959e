//! Unix (Linux) system calls on the backing folder that `std` does not wrap.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::SystemTime;

use std::fs::{File, OpenOptions};

use super::super::{Attr, FileKind, Fingerprint, Ino};
use super::{FsStats, SetTime};

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// `renameat2` with the kernel's flags (RENAME_NOREPLACE, RENAME_EXCHANGE).
pub fn rename(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
    let (f, t) = (cpath(from)?, cpath(to)?);
    // SAFETY: both are valid NUL-terminated strings for the duration of the call.
    check(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            flags,
        )
    })
}

pub fn mknod(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: valid C string.
    check(unsafe { libc::mknod(p.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) })
}

pub fn lchown(path: &Path, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    std::os::unix::fs::lchown(path, uid, gid)
}

fn timespec(t: SetTime) -> libc::timespec {
    match t {
        SetTime::Keep => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        SetTime::Now => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        SetTime::At(t) => {
            let (secs, nanos) = match t.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i64),
                Err(e) => {
                    let d = e.duration();
                    let mut secs = -(d.as_secs() as i64);
                    let mut nanos = -(d.subsec_nanos() as i64);
                    if nanos < 0 {
                        secs -= 1;
                        nanos += 1_000_000_000;
                    }
                    (secs, nanos)
                }
            };
            libc::timespec {
                tv_sec: secs as libc::time_t,
                tv_nsec: nanos as _,
            }
        }
    }
}

/// Sets access and modification times without following a final symlink.
pub fn utimens(path: &Path, atime: SetTime, mtime: SetTime) -> io::Result<()> {
    let p = cpath(path)?;
    let times = [timespec(atime), timespec(mtime)];
    // SAFETY: valid C string and a two-element timespec array.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

pub fn futimens(file: &std::fs::File, atime: SetTime, mtime: SetTime) -> io::Result<()> {
    let times = [timespec(atime), timespec(mtime)];
    // SAFETY: a valid open fd and a two-element timespec array.
    check(unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) })
}

pub fn statvfs(path: &Path) -> io::Result<FsStats> {
    let p = cpath(path)?;
    // SAFETY: statvfs fills the zeroed struct.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::statvfs(p.as_ptr(), &mut s) })?;
    Ok(FsStats {
        blocks: s.f_blocks,
        bfree: s.f_bfree,
        bavail: s.f_bavail,
        files: s.f_files,
        ffree: s.f_ffree,
        bsize: s.f_bsize as u32,
        namelen: s.f_namemax as u32,
        frsize: s.f_frsize as u32,
    })
}

pub fn getxattr(path: &Path, name: &OsStr, buf: &mut [u8]) -> io::Result<usize> {
    let (p, n) = (cpath(path)?, cstr(name)?);
    // SAFETY: valid strings; the buffer pointer and length match.
    check_size(unsafe {
        libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    })
}

pub fn setxattr(path: &Path, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
    let (p, n) = (cpath(path)?, cstr(name)?);
    // SAFETY: valid strings; the value pointer and length match.
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
}

pub fn listxattr(path: &Path, buf: &mut [u8]) -> io::Result<usize> {
    let p = cpath(path)?;
    // SAFETY: valid string; the buffer pointer and length match.
    check_size(unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

pub fn removexattr(path: &Path, name: &OsStr) -> io::Result<()> {
    let (p, n) = (cpath(path)?, cstr(name)?);
    // SAFETY: valid strings.
    check(unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) })
}

pub fn fallocate(file: &std::fs::File, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: a valid open fd.
    check(unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as i64, len as i64) })
}

// ----- files, folders and their attributes -----

/// The process's user and group: what virtual nodes show as their owner.
pub fn owner() -> (u32, u32) {
    // SAFETY: geteuid/getegid cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// An errno in words, as the platform says it.
pub fn describe_errno(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

pub fn file_kind(t: std::fs::FileType) -> FileKind {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        FileKind::Dir
    } else if t.is_symlink() {
        FileKind::Symlink
    } else if t.is_fifo() {
        FileKind::Fifo
    } else if t.is_socket() {
        FileKind::Socket
    } else if t.is_char_device() {
        FileKind::CharDevice
    } else if t.is_block_device() {
        FileKind::BlockDevice
    } else {
        FileKind::File
    }
}

fn time_of(secs: i64, nsecs: i64) -> SystemTime {
    use std::time::{Duration, UNIX_EPOCH};
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsecs as u64)
    }
}

/// A backing node's attributes, straight from its `stat`.
pub fn attr(ino: Ino, meta: &std::fs::Metadata, _owner: (u32, u32)) -> Attr {
    use std::os::unix::fs::MetadataExt;
    Attr {
        ino,
        kind: file_kind(meta.file_type()),
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

/// What identifies a file's state: inode, size, modification and change times.
pub fn fingerprint(meta: &std::fs::Metadata) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    Fingerprint {
        ino: meta.ino(),
        size: meta.size(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    }
}

/// Permissions for a mode (`current` is for platforms that keep less than a mode).
pub fn permissions_for(
    mode: u32,
    _current: impl FnOnce() -> io::Result<std::fs::Metadata>,
) -> io::Result<std::fs::Permissions> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::Permissions::from_mode(mode & 0o7777))
}

/// A folder entry's inode number, for entries the node table has not seen.
pub fn dirent_ino(entry: &std::fs::DirEntry) -> u64 {
    std::os::unix::fs::DirEntryExt::ino(entry)
}

/// Opens with the caller's flags, less those the kernel already handled: it sends
/// explicit offsets and handles O_APPEND and O_TRUNC itself; O_DIRECT would demand
/// aligned buffers from us.
pub fn open_flags(opts: &mut OpenOptions, flags: i32) {
    use std::os::unix::fs::OpenOptionsExt;
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
}

/// A new file gets `mode` (permission bits only).
pub fn create_mode(opts: &mut OpenOptions, mode: u32) {
    use std::os::unix::fs::OpenOptionsExt;
    opts.mode(mode & 0o7777);
}

/// A new folder gets `mode` (permission bits only).
pub fn dir_mode(builder: &mut std::fs::DirBuilder, mode: u32) {
    use std::os::unix::fs::DirBuilderExt;
    builder.mode(mode & 0o7777);
}

/// Clears set-user-id and set-group-id, as a write by an unprivileged user does.
pub fn kill_suidgid(f: &File) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mode = f.metadata()?.mode();
    if mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
        let cleared = mode & 0o7777 & !(libc::S_ISUID | libc::S_ISGID);
        f.set_permissions(std::fs::Permissions::from_mode(cleared))?;
    }
    Ok(())
}

pub fn symlink(target: &Path, path: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

pub fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, offset)
}

pub fn write_all_at(f: &File, data: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, data, offset)
}

/// Gives a file the mode it was asked to have, without the process's umask: the
/// kernel already applied the caller's.
pub fn set_mode(f: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
}

/// [`set_mode`] by path, for folders and special files (never follows a symlink:
/// callers only pass what they just created).
pub fn set_path_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
}

/// Where the sink reads a file to capture: `<root>/<rel>` reached without following a
/// symlink anywhere on the way. The folders are opened one by one with `O_NOFOLLOW`
/// (a folder swapped for a symlink fails here), and the sink is handed
/// `/proc/self/fd/<folder>/<name>`, which names the folder that was opened, whatever
/// is renamed afterwards; the sink opens the last name with `O_NOFOLLOW` itself.
/// Without `/proc`, the plain path (the last name is still protected).
pub struct CaptureSource {
    path: std::path::PathBuf,
    _dir: Option<std::os::fd::OwnedFd>,
}

impl CaptureSource {
    pub fn open(root: &Path, rel: &Path) -> io::Result<Self> {
        use std::os::fd::{FromRawFd, OwnedFd};
        let plain = Self {
            path: root.join(rel),
            _dir: None,
        };
        let (Some(name), Some(folders)) = (rel.file_name(), rel.parent()) else {
            return Ok(plain);
        };
        if !Path::new("/proc/self/fd").is_dir() {
            return Ok(plain);
        }
        let open = |at: libc::c_int, name: &CString, extra: libc::c_int| -> io::Result<OwnedFd> {
            // SAFETY: a NUL-terminated name; on success we own the new descriptor.
            let fd = unsafe {
                libc::openat(
                    at,
                    name.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC | extra,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is a fresh descriptor nobody else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        // The backing folder itself is the drive's own: trusted.
        let mut dir = open(libc::AT_FDCWD, &cpath(root)?, 0)?;
        for part in folders.components() {
            dir = open(dir.as_raw_fd(), &cstr(part.as_os_str())?, libc::O_NOFOLLOW)?;
        }
        Ok(Self {
            path: Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name),
            _dir: Some(dir),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
