//! Taking a copy of a file into the spool and hashing it in the same pass. Where the
//! filesystem can share blocks (btrfs, XFS: the FICLONE ioctl) the copy is a reflink,
//! instant for any size, and the hash is computed from the clone, so it describes
//! exactly the bytes that will be uploaded even if the source changes right after.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::Digest as _;

use crate::store::Digest;

const BUF: usize = 256 * 1024;

/// Where a capture failed: reading the student's file, or writing the spool's copy.
/// The two mean different things (a file that vanished is no version; a full spool
/// disk is a version lost that the student must hear about), so they are told apart
/// where they happen, not guessed afterwards.
#[derive(Debug)]
pub(super) enum CaptureError {
    Source(io::Error),
    Spool(io::Error),
}

/// Copies `source` to the new file `dest` (which must not exist); returns the copy's
/// digest and size. Does not fsync: the committer makes captures durable in groups.
/// On failure `dest` is removed.
pub(super) fn copy_and_hash(source: &Path, dest: &Path) -> Result<(Digest, u64), CaptureError> {
    let mut src = open_source(source).map_err(CaptureError::Source)?;
    let mut dst = crate::private::open_options()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(CaptureError::Spool)?;
    let result = if reflink(&src, &dst) {
        drop(dst);
        File::open(dest)
            .and_then(|mut f| hash_file(&mut f))
            .map_err(CaptureError::Spool)
    } else {
        copy_hashing(&mut src, &mut dst)
    };
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

/// Opens the file to capture without following a final symlink, then checks the
/// opened descriptor (fstat) is a regular file. Checking the path first and opening it
/// after is a race: a symlink renamed into place in between would make the drive upload
/// a file from outside the drive (issue 15 item 8).
fn open_source(source: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        // FILE_FLAG_OPEN_REPARSE_POINT: open a symlink or junction itself.
        opts.custom_flags(0x0020_0000);
    }
    let src = opts.open(source)?;
    if !src.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(src)
}

/// One FICLONE ioctl; false where the filesystem cannot share blocks (ext4, tmpfs...).
fn reflink(src: &File, dst: &File) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: both descriptors are open for the duration of the call; FICLONE takes
        // the source descriptor as its integer argument and touches no user memory.
        let rc = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
        rc == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (src, dst);
        false
    }
}

fn copy_hashing(src: &mut File, dst: &mut File) -> Result<(Digest, u64), CaptureError> {
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CaptureError::Source(e)),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(CaptureError::Spool)?;
        total += n as u64;
    }
    Ok((Digest::from_bytes(hasher.finalize().into()), total))
}

pub(super) fn hash_file(f: &mut File) -> io::Result<(Digest, u64)> {
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((Digest::from_bytes(hasher.finalize().into()), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let dst = dir.path().join("dst");
        let (d, n) = copy_and_hash(&src, &dst).unwrap();
        assert_eq!((d, n), (Digest::of(&data), data.len() as u64));
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        // The destination must be new: never overwrite.
        assert!(matches!(
            copy_and_hash(&src, &dst),
            Err(CaptureError::Spool(_))
        ));
        // A folder is refused and leaves nothing behind.
        let out = dir.path().join("out");
        assert!(matches!(
            copy_and_hash(dir.path(), &out),
            Err(CaptureError::Source(_))
        ));
        // A missing spool folder is the spool's fault, not the file's.
        let lost = dir.path().join("gone").join("x");
        assert!(matches!(
            copy_and_hash(&src, &lost),
            Err(CaptureError::Spool(e)) if e.kind() == io::ErrorKind::NotFound
        ));
        assert!(!out.exists());
    }

    /// A symlink swapped in for the student's file must not make the spool copy what it
    /// points to (a file outside the drive).
    #[cfg(unix)]
    #[test]
    fn a_symlink_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"not the student's").unwrap();
        let link = dir.path().join("essay.txt");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let out = dir.path().join("out");
        assert!(matches!(
            copy_and_hash(&link, &out),
            Err(CaptureError::Source(e)) if e.raw_os_error() == Some(libc::ELOOP)
        ));
        assert!(!out.exists());
    }
}
