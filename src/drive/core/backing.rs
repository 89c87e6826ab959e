//! Calls on the backing folder that `std` does not wrap: Linux system calls on Unix,
//! their nearest portable equivalents elsewhere (Windows, under WinFsp).

use std::time::SystemTime;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(not(unix))]
mod portable;
#[cfg(not(unix))]
pub use portable::*;

/// A time to set: a given instant, now, or left alone.
#[derive(Debug, Clone, Copy)]
pub enum SetTime {
    Keep,
    Now,
    At(SystemTime),
}

pub struct FsStats {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}
