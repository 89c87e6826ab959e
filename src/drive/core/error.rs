//! The core's error: an errno for the platform adapter to reply with.

use std::io;

use super::posix;

/// A failed call, carrying the errno the platform adapter replies with.
/// The numbers are [`posix`]'s on every platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_errno(*.0))]
pub struct DriveError(pub i32);

fn describe_errno(errno: i32) -> String {
    super::backing::describe_errno(errno)
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
