//! users.toml keeps its owner, group and mode when an admin edits it (as root, say):
//! a file the running server can no longer read would take the whole class offline.

use std::fs;
use std::io;
use std::path::Path;

use super::UsersError;

/// Who owns users.toml (or, before it exists, the data folder), and its mode.
/// Only Unix has owners to keep.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(unix), allow(dead_code))]
pub(super) struct Owner {
    uid: u32,
    gid: u32,
    /// Permission bits of the existing users.toml; `None` keeps the new file's 0600.
    pub(super) mode: Option<u32>,
}

#[cfg(unix)]
pub(super) fn owner_of(file: &Path, dir: &Path) -> io::Result<Option<Owner>> {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata(file) {
        Ok(m) => Ok(Some(Owner {
            uid: m.uid(),
            gid: m.gid(),
            mode: Some(m.mode() & 0o7777),
        })),
        // A new file goes to the folder's owner, which only root may need to fix.
        Err(e) if e.kind() == io::ErrorKind::NotFound && current_uid() != 0 => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let m = fs::metadata(dir)?;
            Ok(Some(Owner {
                uid: m.uid(),
                gid: m.gid(),
                mode: None,
            }))
        }
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
pub(super) fn owner_of(_file: &Path, _dir: &Path) -> io::Result<Option<Owner>> {
    Ok(None)
}

/// Gives `file` (an open handle of the new `path`) the owner `owner` and mode `mode`.
/// Only root may give a file away: anyone else editing a file they do not own is
/// refused with a message that says whose it is.
#[cfg(unix)]
pub(super) fn keep_owner(
    file: &fs::File,
    path: &Path,
    owner: Option<Owner>,
    mode: Option<u32>,
) -> Result<(), UsersError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, fchown};
    let err = |source: io::Error| UsersError::Io {
        path: path.display().to_string(),
        source,
    };
    let Some(owner) = owner else { return Ok(()) };
    let meta = file.metadata().map_err(err)?;
    if (meta.uid(), meta.gid()) != (owner.uid, owner.gid) {
        let uid = current_uid();
        if uid != 0 && meta.uid() != owner.uid {
            return Err(UsersError::NotOwner {
                path: path.display().to_string(),
                owner: owner.uid,
                uid,
            });
        }
        fchown(file, Some(owner.uid), Some(owner.gid)).map_err(err)?;
    }
    if let Some(mode) = mode {
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(not(unix))]
pub(super) fn keep_owner(
    _file: &fs::File,
    _path: &Path,
    _owner: Option<Owner>,
    _mode: Option<u32>,
) -> Result<(), UsersError> {
    Ok(())
}

pub(super) fn current_uid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    #[cfg(unix)]
    return unsafe { libc::geteuid() };
    #[cfg(not(unix))]
    0
}
