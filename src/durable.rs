//! Making files and folder entries survive a crash, the same way on every platform.
//! Used by the client's spool and the server's store.
//!
//! Windows differs from Unix in two ways that matter here:
//! - `FlushFileBuffers` (what `sync_data`/`sync_all` call) refuses a handle opened
//!   read-only with "Access denied (os error 5)", so a file is flushed through a handle
//!   opened for writing.
//! - A folder cannot be opened as a plain `File`, nor flushed. It need not be: NTFS
//!   journals its metadata, so a completed create, rename or hard link survives a crash
//!   on its own. On Unix the folder must be fsynced for a new name to survive.

#[cfg(unix)]
use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::path::Path;

/// Flushes the data of the file at `path` to disk (it must already exist).
pub fn sync_file(path: &Path) -> io::Result<()> {
    // Write access, not read: see the module comment. Never creates nor truncates.
    OpenOptions::new().write(true).open(path)?.sync_data()
}

/// Makes the entries of folder `dir` (new names, renames, links) durable.
#[cfg(unix)]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Nothing to do: NTFS journals folder entries (see the module comment).
#[cfg(not(unix))]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let _ = dir;
    Ok(())
}

/// Flushes every plain file directly inside `dir`, then the folder's entries.
pub fn sync_files_in(dir: &Path) -> io::Result<()> {
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        if item.file_type()?.is_file() {
            sync_file(&item.path())?;
        }
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every call succeeds on a real folder of real files, on every platform (on
    /// Windows a read-only handle or a folder handle fails with error 5).
    #[test]
    fn files_and_folders_sync_on_this_platform() {
        let tmp = tempfile::tempdir().unwrap();
        let sub = tmp.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let file = sub.join("a b Ü.txt");
        std::fs::write(&file, b"data").unwrap();
        sync_file(&file).unwrap();
        sync_dir(&sub).unwrap();
        sync_files_in(&sub).unwrap();
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"data",
            "syncing changes nothing"
        );
    }

    #[test]
    fn a_missing_file_is_an_error_not_a_new_file() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        assert_eq!(
            sync_file(&missing).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(!missing.exists());
    }
}
