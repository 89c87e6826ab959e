//! The core's vocabulary for flags, modes and errors: POSIX's (`O_*`, `S_*`, `E*`).
//!
//! On Unix these are the platform's own values (`libc`), so the FUSE adapter passes
//! the kernel's numbers straight through. Elsewhere (Windows) they are Linux's values,
//! fixed here: the WinFsp adapter translates Windows requests into this vocabulary and
//! [`DriveError`](super::DriveError)s back into NTSTATUS codes, and nothing else sees
//! the numbers. (The Windows C runtime's own `errno.h` lacks several of them, such as
//! `ENODATA` and `EDQUOT`.)

#[cfg(unix)]
pub use libc::{
    EACCES, EBADF, EBUSY, EDQUOT, EEXIST, EINVAL, EIO, EISDIR, ENAMETOOLONG, ENETUNREACH, ENODATA,
    ENOENT, ENOSPC, ENOTDIR, ENOTEMPTY, ENOTSUP, EPERM, EROFS, EXDEV, O_ACCMODE, O_APPEND, O_CREAT,
    O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, S_IFMT, S_IFREG, S_ISGID, S_ISUID,
};

/// `renameat2` flags, as the FUSE kernel module sends them.
#[cfg(target_os = "linux")]
pub use libc::{RENAME_EXCHANGE, RENAME_NOREPLACE};

#[cfg(not(target_os = "linux"))]
pub const RENAME_NOREPLACE: u32 = 1;
#[cfg(not(target_os = "linux"))]
pub const RENAME_EXCHANGE: u32 = 2;

#[cfg(not(unix))]
mod linux_values {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const EBADF: i32 = 9;
    pub const EACCES: i32 = 13;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const EXDEV: i32 = 18;
    pub const ENOTDIR: i32 = 20;
    pub const EISDIR: i32 = 21;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const EROFS: i32 = 30;
    pub const ENAMETOOLONG: i32 = 36;
    pub const ENOTEMPTY: i32 = 39;
    pub const ENODATA: i32 = 61;
    pub const ENOTSUP: i32 = 95;
    pub const ENETUNREACH: i32 = 101;
    pub const EDQUOT: i32 = 122;

    pub const O_RDONLY: i32 = 0;
    pub const O_WRONLY: i32 = 1;
    pub const O_RDWR: i32 = 2;
    pub const O_ACCMODE: i32 = 3;
    pub const O_CREAT: i32 = 0o100;
    pub const O_EXCL: i32 = 0o200;
    pub const O_TRUNC: i32 = 0o1000;
    pub const O_APPEND: i32 = 0o2000;

    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFREG: u32 = 0o100000;
    pub const S_ISUID: u32 = 0o4000;
    pub const S_ISGID: u32 = 0o2000;
}

#[cfg(not(unix))]
pub use linux_values::*;

/// A short description of an errno, where `strerror` is not the platform's own.
#[cfg(not(unix))]
pub fn describe(errno: i32) -> &'static str {
    match errno {
        EPERM => "Operation not permitted",
        ENOENT => "No such file or directory",
        EIO => "Input/output error",
        EBADF => "Bad file descriptor",
        EACCES => "Permission denied",
        EBUSY => "Device or resource busy",
        EEXIST => "File exists",
        EXDEV => "Invalid cross-device link",
        ENOTDIR => "Not a directory",
        EISDIR => "Is a directory",
        EINVAL => "Invalid argument",
        ENOSPC => "No space left on device",
        EROFS => "Read-only file system",
        ENAMETOOLONG => "File name too long",
        ENOTEMPTY => "Directory not empty",
        ENODATA => "No data available",
        ENOTSUP => "Operation not supported",
        ENETUNREACH => "Network is unreachable",
        EDQUOT => "Disk quota exceeded",
        _ => "Unknown error",
    }
}

/// The errno for an I/O error from the backing folder: the raw code on Unix, the
/// portable [`std::io::ErrorKind`] elsewhere (Windows' raw codes are not errnos) and
/// for errors made in-process (no raw code), EIO if the kind says nothing better.
pub fn errno_of(e: &std::io::Error) -> i32 {
    #[cfg(unix)]
    if let Some(errno) = e.raw_os_error() {
        return errno;
    }
    errno_of_kind(e.kind())
}

fn errno_of_kind(kind: std::io::ErrorKind) -> i32 {
    use std::io::ErrorKind as K;
    match kind {
        K::NotFound => ENOENT,
        K::PermissionDenied => EACCES,
        K::AlreadyExists => EEXIST,
        K::InvalidInput | K::InvalidFilename => EINVAL,
        K::NotADirectory => ENOTDIR,
        K::IsADirectory => EISDIR,
        K::DirectoryNotEmpty => ENOTEMPTY,
        K::ReadOnlyFilesystem => EROFS,
        K::StorageFull => ENOSPC,
        K::QuotaExceeded => EDQUOT,
        K::ResourceBusy => EBUSY,
        K::CrossesDevices => EXDEV,
        K::Unsupported => ENOTSUP,
        _ => EIO,
    }
}
