//! The drive: a folder that backs itself up (SPEC §4).
//!
//! [`core`] is the filesystem logic with no FUSE or WinFsp types: a passthrough over a
//! local backing folder that decides when a version is taken, plus the read-only
//! `.versions` tree and `.ects-status.txt`. [`fuse`] is a thin adapter that maps it to
//! the Linux kernel through `fuser`; [`winfsp`] (Windows only) maps the same core to
//! WinFsp.
//! Versions leave the core through a [`sink::VersionSink`] and `.versions` reads through
//! a [`sink::VersionSource`], so the core never knows whether the store is embedded or
//! behind HTTP.

pub mod core;
#[cfg(unix)]
pub mod fuse;
pub mod sink;
#[cfg(all(windows, target_env = "msvc"))]
pub mod winfsp;

pub use self::core::{Drive, DriveError, DriveOptions};
