//! The core's error: the errno the platform adapter replies with, and what caused it.
//!
//! Like mountpoint-s3's error type, it keeps both: the errno goes to the kernel (or is
//! mapped to an NTSTATUS), the message and source go to the log, once, from the
//! adapter.

use std::borrow::Cow;
use std::fmt;
use std::io;

use super::posix;

/// A failed call. The numbers are [`posix`]'s on every platform.
#[derive(Debug, thiserror::Error)]
pub struct DriveError {
    errno: i32,
    /// What the core was doing; empty for a plain errno.
    message: Cow<'static, str>,
    #[source]
    source: Option<io::Error>,
}

impl fmt::Display for DriveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&*self.message, &self.source) {
            ("", Some(e)) => write!(f, "{e}"),
            ("", None) => f.write_str(&super::backing::describe_errno(self.errno)),
            (m, _) => f.write_str(m),
        }
    }
}

/// Two errors are the same answer when their errnos are.
impl PartialEq for DriveError {
    fn eq(&self, other: &Self) -> bool {
        self.errno == other.errno
    }
}

impl Eq for DriveError {}

impl DriveError {
    pub const ENOENT: Self = Self::from_errno(posix::ENOENT);
    pub const EROFS: Self = Self::from_errno(posix::EROFS);
    pub const EBADF: Self = Self::from_errno(posix::EBADF);
    pub const EEXIST: Self = Self::from_errno(posix::EEXIST);
    pub const EIO: Self = Self::from_errno(posix::EIO);
    pub const EINVAL: Self = Self::from_errno(posix::EINVAL);
    pub const ENODATA: Self = Self::from_errno(posix::ENODATA);
    pub const ENOTDIR: Self = Self::from_errno(posix::ENOTDIR);
    pub const EISDIR: Self = Self::from_errno(posix::EISDIR);
    pub const EACCES: Self = Self::from_errno(posix::EACCES);
    pub const ENOTEMPTY: Self = Self::from_errno(posix::ENOTEMPTY);

    /// A plain errno: the answer says it all.
    pub const fn from_errno(errno: i32) -> Self {
        Self {
            errno,
            message: Cow::Borrowed(""),
            source: None,
        }
    }

    /// An errno with what went wrong, for the log.
    pub fn new(errno: i32, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            errno,
            message: message.into(),
            source: None,
        }
    }

    /// An I/O failure while doing `message`; the errno is the failure's own.
    pub fn io(message: impl Into<Cow<'static, str>>, e: io::Error) -> Self {
        Self {
            errno: posix::errno_of(&e),
            message: message.into(),
            source: Some(e),
        }
    }

    /// The same failure answered with another errno (e.g. EIO for a network error).
    pub fn with_errno(mut self, errno: i32) -> Self {
        self.errno = errno;
        self
    }

    pub fn errno(&self) -> i32 {
        self.errno
    }
}

impl From<io::Error> for DriveError {
    fn from(e: io::Error) -> Self {
        Self {
            errno: posix::errno_of(&e),
            message: Cow::Borrowed(""),
            source: Some(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, DriveError>;
pub type Fh = u64;

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn an_io_failure_keeps_its_errno_and_its_source() {
        let e = DriveError::io(
            "reading the backing file",
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert_eq!(e, DriveError::ENOENT);
        assert_eq!(e.to_string(), "reading the backing file");
        let source = e.source().expect("the io::Error is kept");
        assert_eq!(
            source.downcast_ref::<io::Error>().map(io::Error::kind),
            Some(io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn a_plain_errno_describes_itself() {
        assert!(!DriveError::EIO.to_string().is_empty());
        assert!(DriveError::EIO.source().is_none());
        let e = DriveError::new(posix::EIO, "cannot list stored versions: down")
            .with_errno(posix::ENOSPC);
        assert_eq!(e.errno(), posix::ENOSPC);
    }
}
