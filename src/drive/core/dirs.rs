//! Folder listings, backing and virtual.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::sync::Arc;

use super::backing;
use super::nodes::{Ino, NodeKind, ROOT};
use super::{
    Attr, Drive, DriveError, Fh, FileKind, Result, STATUS_FILE, VERSIONS_DIR, is_reserved,
    version_name, versions_error,
};
use crate::sync::lock;

/// One entry of a folder listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: FileKind,
    pub name: OsString,
}

/// One entry of a listing, with its attributes when asked for.
type Listed = (DirEntry, Option<Attr>);

impl Drive {
    pub fn opendir(&self, ino: Ino) -> Result<Fh> {
        let entries = self.listing(ino, false)?;
        let entries = entries.into_iter().map(|(e, _)| e).collect();
        let fh = self.new_fh();
        lock(&self.dirs).insert(fh, Arc::new(entries));
        Ok(fh)
    }

    /// A folder's entries with their attributes, in one pass and without a lookup per
    /// entry (Windows lists folders this way; nothing is added to the node table). An
    /// entry that vanished while listed is left out.
    pub fn list_dir(&self, ino: Ino) -> Result<Vec<(DirEntry, Attr)>> {
        let mut out = Vec::new();
        for (e, attr) in self.listing(ino, true)? {
            let attr = match attr {
                Some(a) => a,
                // `.` and `..`: the folder and its parent.
                None => match self.getattr(e.ino, None) {
                    Ok(entry) => entry.attr,
                    Err(_) => continue,
                },
            };
            out.push((e, attr));
        }
        Ok(out)
    }

    fn listing(&self, ino: Ino, with_attrs: bool) -> Result<Vec<Listed>> {
        let t = lock(&self.nodes);
        let kind = Self::kind_of(&t, ino)?;
        let parent = t.get(ino).map(|n| n.parent).unwrap_or(ROOT);
        let mut entries: Vec<Listed> = vec![
            (
                DirEntry {
                    ino,
                    kind: FileKind::Dir,
                    name: ".".into(),
                },
                None,
            ),
            (
                DirEntry {
                    ino: parent,
                    kind: FileKind::Dir,
                    name: "..".into(),
                },
                None,
            ),
        ];
        let virtual_attr = |ino, kind: &NodeKind| with_attrs.then(|| self.virtual_attr(ino, kind));
        match &kind {
            NodeKind::Backing => {
                let path = self.backing_path(&t, ino)?;
                if ino == ROOT {
                    let vino = t
                        .child(ROOT, OsStr::new(VERSIONS_DIR))
                        .unwrap_or(u64::MAX - 1);
                    entries.push((
                        DirEntry {
                            ino: vino,
                            kind: FileKind::Dir,
                            name: VERSIONS_DIR.into(),
                        },
                        virtual_attr(vino, &NodeKind::VersionsDir(None)),
                    ));
                    let sino = t
                        .child(ROOT, OsStr::new(STATUS_FILE))
                        .unwrap_or(u64::MAX - 2);
                    entries.push((
                        DirEntry {
                            ino: sino,
                            kind: FileKind::File,
                            name: STATUS_FILE.into(),
                        },
                        virtual_attr(sino, &NodeKind::Status),
                    ));
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
                    // On Windows the listing itself carries the metadata; on Linux it
                    // is one lstat, still no lookup.
                    let attr = match with_attrs.then(|| entry.metadata()) {
                        None => None,
                        Some(Ok(meta)) => Some(self.attr_of(ino, &meta)),
                        Some(Err(_)) => continue, // gone since read_dir
                    };
                    entries.push((DirEntry { ino, kind, name }, attr));
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
                    entries.push((
                        DirEntry {
                            ino,
                            kind: FileKind::Dir,
                            name: name.into(),
                        },
                        // Folders and files alike are folders here (of versions).
                        virtual_attr(ino, &NodeKind::VersionsDir(None)),
                    ));
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
                    let attr = virtual_attr(ino, &NodeKind::Version(path.clone(), v.clone()));
                    entries.push((
                        DirEntry {
                            ino,
                            kind: FileKind::File,
                            name: name.into(),
                        },
                        attr,
                    ));
                }
            }
            _ => return Err(DriveError::ENOTDIR),
        }
        Ok(entries)
    }

    /// Entries from `offset` on; each entry's offset for the next call is its index + 1.
    pub fn readdir(&self, fh: Fh) -> Result<Arc<Vec<DirEntry>>> {
        lock(&self.dirs).get(&fh).cloned().ok_or(DriveError::EBADF)
    }

    pub fn releasedir(&self, fh: Fh) {
        lock(&self.dirs).remove(&fh);
    }
}
