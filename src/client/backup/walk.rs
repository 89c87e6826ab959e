//! The walk: every regular file under the folders to back up, each with the stored
//! path it goes to; symlinks and special files are never followed or sent.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::super::ClientError;
use crate::ignore::is_ignored;
use crate::names::{RelPath, check_component};

/// One regular file found by the walk.
#[derive(Debug, Clone)]
pub struct FileJob {
    pub local: PathBuf,
    pub path: RelPath,
    pub size: u64,
    pub(super) key: StatKey,
}

/// What identifies unchanged content without reading it (restic and git use the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StatKey {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
}

impl StatKey {
    #[cfg(unix)]
    fn of(m: &fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            size: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
            ino: m.ino(),
            dev: m.dev(),
        }
    }

    /// Windows' std exposes no change time nor a stable file id: size and the
    /// last-write time (100 ns ticks) decide, as in robocopy's default check.
    #[cfg(not(unix))]
    fn of(m: &fs::Metadata) -> Self {
        let mtime_ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        Self {
            size: m.len(),
            mtime_ns,
            ctime_ns: 0,
            ino: 0,
            dev: 0,
        }
    }
}

/// What the walk found.
#[derive(Debug, Default)]
pub struct Walk {
    pub files: Vec<FileJob>,
    pub bytes: u64,
    /// Local paths not backed up, and why (unreadable, a name the server cannot store).
    pub problems: Vec<(PathBuf, String)>,
    /// Ignored names, symlinks and special files: skipped on purpose.
    pub skipped: u64,
}

/// Walks `roots`, each stored under its own folder name.
pub fn walk(roots: &[PathBuf]) -> Result<Walk, ClientError> {
    let mut out = Walk::default();
    // Stored name (lowercased: one folder on Windows) → the root already using it.
    let mut names: std::collections::HashMap<String, &Path> = std::collections::HashMap::new();
    for root in roots {
        let meta = fs::metadata(root).map_err(|e| ClientError::Io {
            context: format!("cannot back up {}", root.display()),
            source: e,
        })?;
        if !meta.is_dir() {
            return Err(ClientError::Config(format!(
                "{} is not a folder: `ects backup` takes folders",
                root.display()
            )));
        }
        let name = root_name(root)?;
        let base = RelPath::parse(&name).map_err(|e| {
            ClientError::Config(format!(
                "the folder name of {} cannot be stored: {e}",
                root.display()
            ))
        })?;
        if let Some(first) = names.insert(name.to_lowercase(), root) {
            let same = fs::canonicalize(first).ok() == fs::canonicalize(root).ok();
            if same {
                continue;
            }
            return Err(ClientError::Config(format!(
                "{} and {} would both be stored as {name}/ and their files mixed: back up \
                 the folder that holds both instead, or rename one of them",
                first.display(),
                root.display()
            )));
        }
        walk_dir(root, &base, &mut out);
    }
    Ok(out)
}

/// The name a root is stored under: its own last component (`.` resolved).
fn root_name(root: &Path) -> Result<String, ClientError> {
    let named = root
        .file_name()
        .map(PathBuf::from)
        .or_else(|| fs::canonicalize(root).ok()?.file_name().map(PathBuf::from));
    match named.as_deref().and_then(Path::to_str) {
        Some(n) => Ok(n.to_owned()),
        None => Err(ClientError::Config(format!(
            "{} has no folder name to store it under (or it is not UTF-8); back up a named folder",
            root.display()
        ))),
    }
}

fn walk_dir(dir: &Path, rel: &RelPath, out: &mut Walk) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.problems
                .push((dir.to_owned(), format!("cannot list the folder: {e}")));
            return;
        }
    };
    let mut items: Vec<fs::DirEntry> = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => items.push(e),
            Err(e) => out
                .problems
                .push((dir.to_owned(), format!("cannot list the folder: {e}"))),
        }
    }
    items.sort_by_key(|e| e.file_name());
    for entry in items {
        let local = entry.path();
        // file_type() does not follow symlinks: a link is never followed anywhere.
        let Ok(kind) = entry.file_type() else {
            out.problems.push((local, "cannot read its type".into()));
            continue;
        };
        if kind.is_symlink() || !(kind.is_dir() || kind.is_file()) {
            out.skipped += 1;
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            out.problems.push((
                local,
                "the name is not valid UTF-8, so it cannot be stored".into(),
            ));
            continue;
        };
        if kind.is_file() && is_ignored(&name) {
            out.skipped += 1;
            continue;
        }
        let path = match check_component(&name).and_then(|()| rel.join(&name)) {
            Ok(p) => p,
            Err(e) => {
                out.problems
                    .push((local, format!("the name cannot be stored: {e}")));
                continue;
            }
        };
        if kind.is_dir() {
            walk_dir(&local, &path, out);
            continue;
        }
        match entry.metadata() {
            Ok(m) => {
                out.bytes += m.len();
                out.files.push(FileJob {
                    local,
                    path,
                    size: m.len(),
                    key: StatKey::of(&m),
                });
            }
            Err(e) => out.problems.push((local, format!("cannot read it: {e}"))),
        }
    }
}
