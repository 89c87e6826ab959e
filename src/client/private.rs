//! Folders and files only their owner can read: the spool and cache hold copies of
//! students' work and the journal's key. Created 0700 / 0600 whatever the umask (a lab
//! image may set a permissive one), and a folder left wider by an older version is
//! narrowed on open. On Windows the folders inherit the user profile's ACL.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `dir` (and missing parents) owner-only, and narrows it if it already exists.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        // `mode` is masked by the umask only towards fewer bits, but an existing folder
        // keeps whatever it had.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        builder.create(dir)
    }
}

/// Options that create a file owner-only (0600 on Unix).
pub fn file_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut opts = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts
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
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("f");
        file_options()
            .write(true)
            .create_new(true)
            .open(&f)
            .unwrap();
        assert_eq!(mode(&f) & 0o077, 0);
    }
}
