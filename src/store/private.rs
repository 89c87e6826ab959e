//! Creating the store's folders and files private to the server's user: folders 0700,
//! files 0600 on Unix, set explicitly so that a permissive umask (0 under some service
//! managers and containers) cannot make students' work readable by other local users.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;

/// Mode of every folder the store creates.
#[cfg(unix)]
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the store creates.
#[cfg(unix)]
pub const FILE_MODE: u32 = 0o600;

fn builder(recursive: bool) -> fs::DirBuilder {
    let mut b = fs::DirBuilder::new();
    b.recursive(recursive);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, DIR_MODE);
    b
}

/// `fs::create_dir_all`, creating each missing folder 0700.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    builder(true).create(path)
}

/// `fs::create_dir` with mode 0700.
pub fn create_dir(path: &Path) -> io::Result<()> {
    builder(false).create(path)
}

/// `OpenOptions` whose newly created file gets mode 0600.
pub fn open_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options
}
