//! Names: lookup, create, remove and rename, and the versions a rename takes (rule b).

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::handles::HandleKind;
use super::nodes::{Ino, NodeKind, NodeTable, ROOT};
use super::{
    BACKING_TTL, Drive, DriveError, Entry, Fh, Result, STATUS_FILE, SetAttr, SetTime, VERSIONS_DIR,
    backing, is_reserved, posix, version_name, versions_error,
};
use crate::names::RelPath;
use crate::sync::lock;

impl Drive {
    /// The backing path of a node; EROFS for virtual nodes, ENOENT for orphans.
    pub(super) fn backing_path(&self, t: &NodeTable, ino: Ino) -> Result<PathBuf> {
        match Self::kind_of(t, ino)? {
            NodeKind::Backing => {}
            _ => return Err(DriveError::EROFS),
        }
        let rel = t.rel_path(ino).ok_or(DriveError::ENOENT)?;
        Ok(self.files.join(rel))
    }

    /// The backing path of `name` in folder `parent`, for a call that changes it.
    pub(super) fn child_path(&self, t: &NodeTable, parent: Ino, name: &OsStr) -> Result<PathBuf> {
        if is_reserved(parent, name) {
            return Err(DriveError::EROFS);
        }
        if name.as_encoded_bytes().contains(&b'/')
            || (cfg!(windows) && name.as_encoded_bytes().contains(&b'\\'))
            || name == "."
            || name == ".."
        {
            return Err(DriveError::EINVAL);
        }
        Ok(self.backing_path(t, parent)?.join(name))
    }

    /// Resolves a name inside `.versions`.
    pub(super) fn virtual_child(&self, parent_kind: &NodeKind, name: &OsStr) -> Result<NodeKind> {
        let name = name.to_str().ok_or(DriveError::ENOENT)?;
        let io_err = |e: crate::drive::sink::SinkError| {
            versions_error("cannot list stored versions".into(), e)
        };
        match parent_kind {
            NodeKind::VersionsDir(dir) => {
                let tree = self.view.tree(dir.as_ref()).map_err(io_err)?;
                let Some(tree) = tree.as_ref() else {
                    return Err(DriveError::ENOENT);
                };
                let child = match dir {
                    Some(d) => d.join(name),
                    None => RelPath::parse(name),
                }
                .map_err(|_| DriveError::ENOENT)?;
                if tree.dirs.iter().any(|d| d == name) {
                    Ok(NodeKind::VersionsDir(Some(child)))
                } else if tree.files.iter().any(|f| f.name == name) {
                    Ok(NodeKind::VersionsFile(child))
                } else {
                    Err(DriveError::ENOENT)
                }
            }
            NodeKind::VersionsFile(path) => {
                let versions = self.view.versions(path).map_err(io_err)?;
                versions
                    .iter()
                    .find(|v| version_name(path, v) == name)
                    .map(|v| NodeKind::Version(path.clone(), v.clone()))
                    .ok_or(DriveError::ENOENT)
            }
            _ => Err(DriveError::ENOTDIR),
        }
    }

    // ----- the filesystem calls -----

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Entry> {
        let mut t = lock(&self.nodes);
        let parent_kind = Self::kind_of(&t, parent)?;
        if parent == ROOT && name == VERSIONS_DIR {
            let kind = NodeKind::VersionsDir(None);
            let ino = t.lookup(parent, name, kind.clone());
            return Ok(self.virtual_entry(ino, &kind));
        }
        if parent == ROOT && name == STATUS_FILE {
            let ino = t.lookup(parent, name, NodeKind::Status);
            return Ok(self.virtual_entry(ino, &NodeKind::Status));
        }
        match parent_kind {
            NodeKind::Backing => {
                let path = self.backing_path(&t, parent)?.join(name);
                self.backing_entry(&mut t, parent, name, &path)
            }
            NodeKind::VersionsDir(_) | NodeKind::VersionsFile(_) => {
                drop(t);
                let kind = self.virtual_child(&parent_kind, name)?;
                let mut t = lock(&self.nodes);
                let ino = t.lookup(parent, name, kind.clone());
                Ok(self.virtual_entry(ino, &kind))
            }
            _ => Err(DriveError::ENOTDIR),
        }
    }

    /// How long the kernel may remember that `parent` has no such name: as long as
    /// what it learns about the backing folder, whose names change only through the
    /// kernel (which drops the memory when it creates one). `None` for the virtual
    /// folders, where new versions appear behind the kernel's back.
    pub fn negative_ttl(&self, parent: Ino) -> Option<Duration> {
        let t = lock(&self.nodes);
        matches!(Self::kind_of(&t, parent), Ok(NodeKind::Backing)).then_some(BACKING_TTL)
    }

    pub fn forget(&self, ino: Ino, n: u64) {
        lock(&self.nodes).forget(ino, n);
    }

    pub fn getattr(&self, ino: Ino, fh: Option<Fh>) -> Result<Entry> {
        if let Some(fh) = fh
            && let Ok(h) = self.handle(fh)
            && let HandleKind::Backing(file) = &h.kind
        {
            let meta = file.metadata()?;
            return Ok(Entry {
                attr: self.attr_of(ino, &meta),
                ttl: BACKING_TTL,
            });
        }
        let t = lock(&self.nodes);
        let kind = Self::kind_of(&t, ino)?;
        match kind {
            NodeKind::Backing => match t.rel_path(ino) {
                Some(rel) => {
                    let meta = fs::symlink_metadata(self.files.join(rel))?;
                    Ok(Entry {
                        attr: self.attr_of(ino, &meta),
                        ttl: BACKING_TTL,
                    })
                }
                None => {
                    // An orphan: answer from any handle still open on it.
                    drop(t);
                    let handles = lock(&self.handles);
                    let file = handles.values().find_map(|h| match &h.kind {
                        HandleKind::Backing(f) if h.ino == ino => Some(f.clone()),
                        _ => None,
                    });
                    drop(handles);
                    let meta = file.ok_or(DriveError::ENOENT)?.metadata()?;
                    Ok(Entry {
                        attr: self.attr_of(ino, &meta),
                        ttl: BACKING_TTL,
                    })
                }
            },
            other => Ok(self.virtual_entry(ino, &other)),
        }
    }

    pub fn setattr(&self, ino: Ino, fh: Option<Fh>, set: SetAttr) -> Result<Entry> {
        let file = match fh.map(|fh| self.handle(fh)) {
            Some(Ok(h)) => match &h.kind {
                HandleKind::Backing(f) if h.writable => Some(f.clone()),
                HandleKind::Backing(_) => None,
                _ => return Err(DriveError::EROFS),
            },
            _ => None,
        };
        let path = {
            let t = lock(&self.nodes);
            match self.backing_path(&t, ino) {
                Ok(p) => Some(p),
                Err(e) if e == DriveError::ENOENT && file.is_some() => None,
                Err(e) => return Err(e),
            }
        };
        let path_or_enoent = || path.as_deref().ok_or(DriveError::ENOENT);
        if let Some(mode) = set.mode {
            let perm = backing::permissions_for(mode, || match &file {
                Some(f) => f.metadata(),
                None => match path.as_deref() {
                    Some(p) => fs::symlink_metadata(p),
                    None => Err(io::ErrorKind::NotFound.into()),
                },
            })?;
            match &file {
                Some(f) => f.set_permissions(perm)?,
                None => fs::set_permissions(path_or_enoent()?, perm)?,
            }
        }
        if set.uid.is_some() || set.gid.is_some() {
            backing::lchown(path_or_enoent()?, set.uid, set.gid)?;
        }
        if let Some(size) = set.size {
            // Not while an append reads the size and writes at it.
            let _sizes = crate::sync::write(self.size_lock(ino));
            match &file {
                Some(f) => f.set_len(size)?,
                None => OpenOptions::new()
                    .write(true)
                    .open(path_or_enoent()?)?
                    .set_len(size)?,
            }
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let a = set.atime.unwrap_or(SetTime::Keep);
            let m = set.mtime.unwrap_or(SetTime::Keep);
            match &file {
                Some(f) => backing::futimens(f, a, m)?,
                None => backing::utimens(path_or_enoent()?, a, m)?,
            }
        }
        // (c) a truncate outside any handle takes a version now.
        if set.size.is_some() && fh.is_none() {
            self.consider_node(ino, false);
        }
        self.getattr(ino, fh)
    }

    pub fn readlink(&self, ino: Ino) -> Result<OsString> {
        let path = self.backing_path(&lock(&self.nodes), ino)?;
        Ok(fs::read_link(path)?.into_os_string())
    }

    pub fn mknod(&self, parent: Ino, name: &OsStr, mode: u32, rdev: u64) -> Result<Entry> {
        let mut t = lock(&self.nodes);
        let path = self.child_path(&t, parent, name)?;
        if mode & posix::S_IFMT == posix::S_IFREG {
            let mut opts = OpenOptions::new();
            opts.write(true).create_new(true);
            backing::create_mode(&mut opts, mode);
            backing::set_mode(&opts.open(&path)?, mode)?;
        } else {
            backing::mknod(&path, mode, rdev)?;
            backing::set_path_mode(&path, mode)?;
        }
        self.backing_entry(&mut t, parent, name, &path)
    }

    pub fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32) -> Result<Entry> {
        let mut t = lock(&self.nodes);
        let path = self.child_path(&t, parent, name)?;
        let mut builder = fs::DirBuilder::new();
        backing::dir_mode(&mut builder, mode);
        builder.create(&path)?;
        // The caller's mode exactly, not less ects' own umask.
        backing::set_path_mode(&path, mode)?;
        self.backing_entry(&mut t, parent, name, &path)
    }

    pub fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        let mut t = lock(&self.nodes);
        let path = self.child_path(&t, parent, name)?;
        fs::remove_file(&path)?;
        t.detach(parent, name);
        drop(t);
        if let Ok(rel) = path.strip_prefix(&self.files) {
            self.versioning.forget(rel);
        }
        Ok(())
    }

    /// Whether the entry may be deleted, asked before the delete itself (Windows marks
    /// a file for delete-on-close first and removes it at the last close): never the
    /// root (EACCES) or anything virtual (`.versions` and all in it,
    /// `.ects-status.txt`: EROFS), and a folder only when empty (ENOTEMPTY).
    pub fn may_delete(&self, ino: Ino) -> Result<()> {
        if ino == ROOT {
            return Err(DriveError::EACCES);
        }
        let path = self.backing_path(&lock(&self.nodes), ino)?;
        if fs::symlink_metadata(&path)?.is_dir() && fs::read_dir(&path)?.next().is_some() {
            return Err(DriveError::ENOTEMPTY);
        }
        Ok(())
    }

    pub fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        let mut t = lock(&self.nodes);
        let path = self.child_path(&t, parent, name)?;
        fs::remove_dir(&path)?;
        t.detach(parent, name);
        Ok(())
    }

    pub fn symlink(&self, parent: Ino, name: &OsStr, target: &Path) -> Result<Entry> {
        let mut t = lock(&self.nodes);
        let path = self.child_path(&t, parent, name)?;
        backing::symlink(target, &path)?;
        self.backing_entry(&mut t, parent, name, &path)
    }

    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> Result<Entry> {
        let mut t = lock(&self.nodes);
        let from = self.backing_path(&t, ino)?;
        let to = self.child_path(&t, new_parent, new_name)?;
        fs::hard_link(&from, &to)?;
        let entry = self.backing_entry(&mut t, new_parent, new_name, &to)?;
        drop(t);
        // A file appearing under a new name is versioned there, like a rename.
        self.consider_node(entry.attr.ino, false);
        Ok(entry)
    }

    /// Renames with the kernel's flags (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: u32,
    ) -> Result<()> {
        let exchange = flags & posix::RENAME_EXCHANGE != 0;
        let mut t = lock(&self.nodes);
        let from = self.child_path(&t, parent, name)?;
        let to = self.child_path(&t, new_parent, new_name)?;
        backing::rename(&from, &to, flags)?;
        if exchange {
            t.exchange(parent, name, new_parent, new_name);
        } else {
            t.rename(parent, name, new_parent, new_name);
        }
        let moved = t.child(new_parent, new_name);
        let swapped = if exchange {
            t.child(parent, name)
        } else {
            None
        };
        drop(t);
        // (b) whatever now sits under a name gets a version there.
        let rel = |p: &Path| p.strip_prefix(&self.files).map(Path::to_path_buf).ok();
        if !exchange && let Some(r) = rel(&from) {
            self.versioning.forget(&r);
        }
        for (path, node) in [(Some(&to), moved), (exchange.then_some(&from), swapped)] {
            let Some(r) = path.and_then(|p| rel(p)) else {
                continue;
            };
            match fs::symlink_metadata(self.files.join(&r)) {
                Ok(m) if m.is_dir() => {
                    self.versioning.consider_tree(&r);
                }
                Ok(m) if m.is_file() => match node {
                    Some(ino) => self.consider_node(ino, false),
                    None => {
                        self.versioning.consider(&r, false);
                    }
                },
                _ => {}
            }
        }
        Ok(())
    }
}
