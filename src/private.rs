//! Folders and files only their owner can read, for everything ects keeps of a
//! student's work: the store's data folder, the spool and cache, the drive's index and
//! versions cache, password lists. Folders 0700 and files 0600 on Unix, set explicitly
//! so that a permissive umask (0 under some service managers, containers and lab
//! images) cannot widen them. On Windows they inherit the ACL of the user profile or
//! service folder they live in.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;

fn builder(recursive: bool) -> fs::DirBuilder {
    let mut b = fs::DirBuilder::new();
    b.recursive(recursive);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b
}

/// `fs::create_dir_all`, creating each missing folder 0700 (existing ones keep theirs).
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    builder(true).create(path)
}

/// `fs::create_dir` with mode 0700.
pub fn create_dir(path: &Path) -> io::Result<()> {
    builder(false).create(path)
}

/// Makes an existing folder 0700, whatever an older version or an admin left it.
pub fn narrow_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// A folder ects owns outright (a spool, a cache): created with its parents 0700, and
/// narrowed if it already existed.
pub fn own_dir(path: &Path) -> io::Result<()> {
    create_dir_all(path)?;
    narrow_dir(path)
}

/// `OpenOptions` whose newly created file gets mode 0600.
pub fn open_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn narrows_an_existing_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        own_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("f");
        open_options()
            .write(true)
            .create_new(true)
            .open(&f)
            .unwrap();
        assert_eq!(mode(&f) & 0o077, 0);
    }
}
