//! Folder listings, backing and virtual.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::sync::Arc;

use super::backing;
use super::nodes::{Ino, NodeKind, ROOT};
use super::{
    Drive, DriveError, Fh, FileKind, Result, STATUS_FILE, VERSIONS_DIR, is_reserved, version_name,
    versions_error,
};
use crate::sync::lock;

/// One entry of a folder listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: FileKind,
    pub name: OsString,
}

impl Drive {
    pub fn opendir(&self, ino: Ino) -> Result<Fh> {
        let t = lock(&self.nodes);
        let kind = Self::kind_of(&t, ino)?;
        let parent = t.get(ino).map(|n| n.parent).unwrap_or(ROOT);
        let mut entries = vec![
            DirEntry {
                ino,
                kind: FileKind::Dir,
                name: ".".into(),
            },
            DirEntry {
                ino: parent,
                kind: FileKind::Dir,
                name: "..".into(),
            },
        ];
        match &kind {
            NodeKind::Backing => {
                let path = self.backing_path(&t, ino)?;
                if ino == ROOT {
                    entries.push(DirEntry {
                        ino: t
                            .child(ROOT, OsStr::new(VERSIONS_DIR))
                            .unwrap_or(u64::MAX - 1),
                        kind: FileKind::Dir,
                        name: VERSIONS_DIR.into(),
                    });
                    entries.push(DirEntry {
                        ino: t
                            .child(ROOT, OsStr::new(STATUS_FILE))
                            .unwrap_or(u64::MAX - 2),
                        kind: FileKind::File,
                        name: STATUS_FILE.into(),
                    });
                }
                for entry in fs::read_dir(&path)? {
                    let entry = entry?;
                    let name = entry.file_name();
                    if is_reserved(ino, &name) {
                        continue;
                    }
                    let kind = entry
                        .file_type()
                        .map(backing::file_kind)
                        .unwrap_or(FileKind::File);
                    let ino = t
                        .child(ino, &name)
                        .unwrap_or(backing::dirent_ino(&entry) | (1 << 63));
                    entries.push(DirEntry { ino, kind, name });
                }
            }
            NodeKind::VersionsDir(dir) => {
                let dir = dir.clone();
                drop(t);
                let tree = self
                    .view
                    .tree(dir.as_ref())
                    .map_err(|e| versions_error("cannot list stored versions".into(), e))?;
                let Some(tree) = tree.as_ref() else {
                    return Err(DriveError::ENOENT);
                };
                let t = lock(&self.nodes);
                for name in tree.dirs.iter().chain(tree.files.iter().map(|f| &f.name)) {
                    let ino = t.child(ino, OsStr::new(name)).unwrap_or(u64::MAX - 3);
                    entries.push(DirEntry {
                        ino,
                        kind: FileKind::Dir,
                        name: name.into(),
                    });
                }
            }
            NodeKind::VersionsFile(path) => {
                let path = path.clone();
                drop(t);
                let versions = self
                    .view
                    .versions(&path)
                    .map_err(|e| versions_error("cannot list stored versions".into(), e))?;
                let t = lock(&self.nodes);
                for v in versions.iter() {
                    let name = version_name(&path, v);
                    let ino = t.child(ino, OsStr::new(&name)).unwrap_or(u64::MAX - 4);
                    entries.push(DirEntry {
                        ino,
                        kind: FileKind::File,
                        name: name.into(),
                    });
                }
            }
            _ => return Err(DriveError::ENOTDIR),
        }
        let fh = self.new_fh();
        lock(&self.dirs).insert(fh, Arc::new(entries));
        Ok(fh)
    }

    /// Entries from `offset` on; each entry's offset for the next call is its index + 1.
    pub fn readdir(&self, fh: Fh) -> Result<Arc<Vec<DirEntry>>> {
        lock(&self.dirs).get(&fh).cloned().ok_or(DriveError::EBADF)
    }

    pub fn releasedir(&self, fh: Fh) {
        lock(&self.dirs).remove(&fh);
    }
}
