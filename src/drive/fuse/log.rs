//! One log line per failed FUSE operation, like mountpoint-s3's `fuse_error!`: the
//! operation's name, the errno the kernel gets and the core's message and source.
//!
//! Answers a program expects as part of normal work (a lookup of a name that does not
//! exist, `mkdir` of one that does, an attribute that is not set) go to debug; the
//! rest warn, at most [`WARNINGS_PER_SECOND`] a second so a program retrying a failing
//! call in a loop cannot flood the log (the next warning says how many were dropped).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use fuser::Errno;

use crate::drive::core::{DriveError, posix};
use crate::sync::lock;

pub const WARNINGS_PER_SECOND: u32 = 10;

/// Whether `errno` is an answer programs expect, not a failure of the drive.
pub fn expected(errno: i32) -> bool {
    matches!(
        errno,
        posix::ENOENT
            | posix::EEXIST
            | posix::ENODATA
            | posix::ENOTEMPTY
            | posix::ENOTSUP
            | posix::EROFS
            | posix::EACCES
            | posix::EPERM
            | posix::EISDIR
            | posix::ENOTDIR
            | posix::ENAMETOOLONG
            | posix::EXDEV
            // .versions offline: the view logs the change once (VersionsView::note).
            | posix::ENETUNREACH
    ) || errno == libc::ERANGE
}

/// Counts warnings in one-second windows.
pub struct Limiter {
    state: Mutex<(Option<Instant>, u32, u64)>,
}

impl Limiter {
    pub const fn new() -> Self {
        Self {
            state: Mutex::new((None, 0, 0)),
        }
    }

    /// Whether a warning may be logged at `now`, and how many were dropped before it.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut s = lock(&self.state);
        let (start, count, dropped) = &mut *s;
        if start.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1)) {
            *start = Some(now);
            *count = 0;
        }
        if *count < WARNINGS_PER_SECOND {
            *count += 1;
            Some(std::mem::take(dropped))
        } else {
            *dropped += 1;
            None
        }
    }
}

static LIMITER: Limiter = Limiter::new();

/// Logs the failure of `op` once and returns the errno to reply with.
pub fn failed(op: &'static str, e: DriveError) -> Errno {
    let errno = e.errno();
    if expected(errno) {
        tracing::debug!(op, errno, error = %e, "operation failed");
    } else if let Some(dropped) = LIMITER.admit(Instant::now()) {
        let source = std::error::Error::source(&e).map(|s| s.to_string());
        tracing::warn!(op, errno, error = %e, source, dropped, "operation failed");
    }
    Errno::from_i32(errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_admits_a_burst_per_second_and_counts_what_it_drops() {
        let l = Limiter::new();
        let t0 = Instant::now();
        for _ in 0..WARNINGS_PER_SECOND {
            assert_eq!(l.admit(t0), Some(0));
        }
        assert_eq!(l.admit(t0), None);
        assert_eq!(l.admit(t0 + Duration::from_millis(999)), None);
        assert_eq!(l.admit(t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(l.admit(t0 + Duration::from_secs(1)), Some(0));
    }

    #[test]
    fn a_lookup_miss_is_expected_and_an_io_error_is_not() {
        assert!(expected(posix::ENOENT));
        assert!(!expected(posix::EIO));
        // Offline .versions is said once by the view, not per `ls`.
        assert!(expected(posix::ENETUNREACH));
        assert!(!expected(posix::ENOSPC));
    }
}
