//! Extended attributes and filesystem statistics, passed through to the backing folder.

use std::ffi::OsStr;
use std::path::PathBuf;

use super::nodes::{Ino, NodeKind};
use super::{Drive, DriveError, FsStats, Result, backing};
use crate::sync::lock;

impl Drive {
    pub fn statfs(&self) -> Result<FsStats> {
        Ok(backing::statvfs(&self.files)?)
    }

    pub(super) fn xattr_path(&self, ino: Ino) -> Result<Option<PathBuf>> {
        let t = lock(&self.nodes);
        match Self::kind_of(&t, ino)? {
            NodeKind::Backing => Ok(Some(self.backing_path(&t, ino)?)),
            _ => Ok(None),
        }
    }

    /// An attribute's value; with `size` 0 only its length matters to the caller.
    pub fn getxattr(&self, ino: Ino, name: &OsStr, size: u32) -> Result<Vec<u8>> {
        let Some(path) = self.xattr_path(ino)? else {
            return Err(DriveError::ENODATA);
        };
        let len = backing::getxattr(&path, name, &mut [])?;
        if size == 0 {
            return Ok(vec![0; len]);
        }
        let mut buf = vec![0u8; (size as usize).max(len)];
        let n = backing::getxattr(&path, name, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    pub fn listxattr(&self, ino: Ino, size: u32) -> Result<Vec<u8>> {
        let Some(path) = self.xattr_path(ino)? else {
            return Ok(Vec::new());
        };
        let len = backing::listxattr(&path, &mut [])?;
        if size == 0 {
            return Ok(vec![0; len]);
        }
        let mut buf = vec![0u8; (size as usize).max(len)];
        let n = backing::listxattr(&path, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    pub fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        let path = self.xattr_path(ino)?.ok_or(DriveError::EROFS)?;
        Ok(backing::setxattr(&path, name, value, flags)?)
    }

    pub fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        let path = self.xattr_path(ino)?.ok_or(DriveError::EROFS)?;
        Ok(backing::removexattr(&path, name)?)
    }
}
