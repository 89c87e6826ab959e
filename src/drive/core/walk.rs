//! Whole paths, as WinFsp hands them over (`\Essays\draft.docx`): one walker that
//! resolves them name by name with Windows' rules ([`Drive::windows_name`]), for an
//! entry that must exist ([`Drive::walk`]) and for a name about to be created, renamed
//! or deleted ([`Drive::walk_parent`]). FUSE resolves names one at a time and does
//! not need it.
//!
//! Every lookup the walk makes counts (the node table keeps the node while counted);
//! [`Held`] forgets them when dropped, so the table does not grow with every path ever
//! opened (FUSE's `forget`, which WinFsp does not have). A handle keeps the entry's own
//! lookup with [`Walk::keep`].

use std::ffi::{OsStr, OsString};

use super::windows_names::{WindowsNameError, check_name};
use super::{Drive, DriveError, Entry, FileKind, Ino, ROOT};

/// Why a path could not be resolved; the adapter picks the status Windows expects.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// A name Windows forbids (STATUS_OBJECT_NAME_INVALID).
    #[error("{0}")]
    BadName(WindowsNameError),
    /// A folder on the way is missing or is not a folder (STATUS_OBJECT_PATH_NOT_FOUND).
    #[error("a folder on the way is missing")]
    NoFolder,
    /// Resolving the path's last name failed, or the core refused (its errno says why).
    #[error("{0}")]
    Drive(#[from] DriveError),
}

/// Lookups made by a walk, forgotten when dropped.
pub struct Held<'a> {
    drive: &'a Drive,
    inos: Vec<Ino>,
}

impl Held<'_> {
    /// How many lookups are held (for tests).
    pub fn len(&self) -> usize {
        self.inos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inos.is_empty()
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        for &ino in &self.inos {
            self.drive.forget(ino, 1);
        }
    }
}

/// A resolved path.
pub struct Walk<'a> {
    /// The entry at the end of the path; `None` from [`Drive::walk_parent`].
    pub entry: Option<Entry>,
    /// The folder the last name is in (the root for the root itself).
    pub parent: Ino,
    /// The last name as stored (the existing entry's case); empty for the root.
    pub name: OsString,
    /// Every name as stored, root first: the path Windows should show.
    pub stored: Vec<OsString>,
    pub held: Held<'a>,
}

impl Walk<'_> {
    /// Keeps the entry's own lookup for a handle (released by `forget` at close); the
    /// folders' lookups are forgotten now.
    pub fn keep(mut self) -> Option<Ino> {
        let ino = self.entry.as_ref()?.attr.ino;
        if ino != ROOT {
            self.held.inos.pop();
        }
        Some(ino)
    }
}

impl Drive {
    /// Resolves a path to an existing entry, name by name. `parts` empty is the root.
    pub fn walk(&self, parts: &[OsString]) -> Result<Walk<'_>, PathError> {
        let Some((last, folders)) = parts.split_last() else {
            let root = self.getattr(ROOT, None)?;
            return Ok(Walk {
                entry: Some(root),
                parent: ROOT,
                name: OsString::new(),
                stored: Vec::new(),
                held: Held {
                    drive: self,
                    inos: Vec::new(),
                },
            });
        };
        let mut walk = self.walk_parent_of(folders, last)?;
        let entry = self.lookup(walk.parent, &walk.name)?;
        walk.held.inos.push(entry.attr.ino);
        walk.entry = Some(entry);
        Ok(walk)
    }

    /// Resolves the folder of a path's last name, and that name as it will be stored
    /// (the existing entry's case, else as given). The last name need not exist.
    pub fn walk_parent(&self, parts: &[OsString]) -> Result<Walk<'_>, PathError> {
        let Some((last, folders)) = parts.split_last() else {
            // The root has no parent: it cannot be created, renamed or deleted.
            return Err(PathError::Drive(DriveError::EACCES));
        };
        self.walk_parent_of(folders, last)
    }

    fn walk_parent_of(&self, folders: &[OsString], last: &OsStr) -> Result<Walk<'_>, PathError> {
        let mut held = Held {
            drive: self,
            inos: Vec::with_capacity(folders.len() + 1),
        };
        let mut dir = ROOT;
        let mut stored = Vec::with_capacity(folders.len() + 1);
        for part in folders {
            let name = self.checked_name(dir, part)?;
            let entry = self.lookup(dir, &name).map_err(|e| {
                if e == DriveError::ENOENT || e == DriveError::ENOTDIR {
                    PathError::NoFolder
                } else {
                    PathError::Drive(e)
                }
            })?;
            held.inos.push(entry.attr.ino);
            if entry.attr.kind != FileKind::Dir {
                return Err(PathError::NoFolder);
            }
            stored.push(name);
            dir = entry.attr.ino;
        }
        let name = self.checked_name(dir, last)?;
        stored.push(name.clone());
        Ok(Walk {
            entry: None,
            parent: dir,
            name,
            stored,
            held,
        })
    }

    /// [`Drive::windows_name`], telling a forbidden name apart from other failures.
    fn checked_name(&self, dir: Ino, name: &OsStr) -> Result<OsString, PathError> {
        let reserved_here = dir == ROOT
            && [super::VERSIONS_DIR, super::STATUS_FILE]
                .iter()
                .any(|r| super::windows_names::same_name(name, OsStr::new(r)));
        if !reserved_here && let Err(e) = check_name(name) {
            tracing::info!(reason = %e, "refused a name Windows does not allow");
            return Err(PathError::BadName(e));
        }
        Ok(self.windows_name(dir, name)?)
    }
}
