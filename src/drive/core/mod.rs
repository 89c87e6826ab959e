//! The drive's filesystem logic, free of any FUSE or WinFsp type.
//!
//! [`Drive`] is a passthrough over a local backing folder: every call maps to the same
//! call on the backing file, and the drive decides when a version is taken (SPEC §4):
//!
//! - (a) when the last handle that had a file open for writing is closed and the content
//!   changed since the last version taken at that path. The decision is made at the
//!   close (FUSE `flush`), which the application waits for, so a later open and write can
//!   never slip bytes into that version; `release` checks again for writes that came
//!   after (a `dup`ed descriptor, a shared mapping).
//! - (b) when a rename puts a file (or a folder of files) onto a name that is not
//!   ignored: the version belongs to the destination.
//! - (c) when a file is truncated by path while no handle has it open for writing.
//!
//! Names under [`ignore`](super::ignore) are kept but never versioned. `.versions` and
//! `.ects-status.txt` at the root are virtual and read-only.

pub mod attr;
mod backing;
mod dirs;
mod error;
mod handles;
mod namespace;
mod nodes;
pub mod posix;
mod versioning;
mod view;
mod walk;
pub mod windows_names;
mod xattr;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, SystemTime};

pub use attr::{Attr, Entry, FileKind, SetAttr};
pub use backing::{FsStats, SetTime};
pub use dirs::DirEntry;
pub use error::{DriveError, Fh, Result};
pub use handles::{Opened, WriteAt};
pub use nodes::{Ino, ROOT};
pub use versioning::{Fingerprint, Outcome, Problem};
pub use view::{format_version_name, version_name};
pub use walk::{Held, PathError, Walk};

use super::sink::{VersionSink, VersionSource};
use crate::sync::lock;
use handles::Handle;
use nodes::{NodeKind, NodeTable};
use versioning::Versioning;
use view::{VersionsView, versions_error};

/// The virtual folder of stored versions, at the drive's root.
pub const VERSIONS_DIR: &str = ".versions";
/// The virtual status file, at the drive's root.
pub const STATUS_FILE: &str = ".ects-status.txt";

/// How long the kernel may trust what it learned about the backing folder: the drive is
/// its only writer while mounted.
pub const BACKING_TTL: Duration = Duration::from_secs(3600);
/// `.versions` changes behind the kernel's back (new versions arrive); keep it short.
pub const VIRTUAL_TTL: Duration = Duration::from_secs(1);

/// Size locks, one per inode modulo this: enough that two busy files rarely share one.
const SIZE_STRIPES: usize = 64;

/// Where the drive keeps its local state.
#[derive(Debug, Clone)]
pub struct DriveOptions {
    /// The backing folder: the drive's files, as the student sees them.
    pub files: PathBuf,
    /// Remembers which content was versioned, between mounts.
    pub index_file: PathBuf,
    /// Fetched `.versions` contents.
    pub versions_cache: PathBuf,
    pub versions_cache_bytes: u64,
}

fn is_reserved(parent: Ino, name: &OsStr) -> bool {
    parent == ROOT && (name == VERSIONS_DIR || name == STATUS_FILE)
}

/// The filesystem core. All methods may be called from many threads at once.
pub struct Drive {
    files: PathBuf,
    nodes: Mutex<NodeTable>,
    /// Signalled (with `nodes`) when a capture ends.
    captured: Condvar,
    handles: Mutex<HashMap<Fh, Arc<Handle>>>,
    dirs: Mutex<HashMap<Fh, Arc<Vec<DirEntry>>>>,
    next_fh: AtomicU64,
    /// Per file (striped by inode): writes share its lock; a write at the end of file or
    /// within the size, and a size change, take it alone, so the size they read is
    /// still the size they write at. Other files' writes never wait for it.
    sizes: [RwLock<()>; SIZE_STRIPES],
    versioning: Versioning,
    view: VersionsView,
    uid: u32,
    gid: u32,
    started: SystemTime,
}

impl Drive {
    /// The size lock of file `ino` (see `sizes`).
    fn size_lock(&self, ino: Ino) -> &RwLock<()> {
        &self.sizes[(ino % SIZE_STRIPES as u64) as usize]
    }

    pub fn new(
        options: DriveOptions,
        sink: Arc<dyn VersionSink>,
        source: Arc<dyn VersionSource>,
    ) -> io::Result<Self> {
        // Folders the drive creates are the OS user's alone (issue 15): another user of
        // the PC must not read, plant or alter a student's work or the drive's state.
        crate::private::create_dir_all(&options.files)?;
        if let Some(parent) = options.index_file.parent() {
            crate::private::create_dir_all(parent)?;
        }
        let (uid, gid) = backing::owner();
        Ok(Self {
            versioning: Versioning::new(sink, options.files.clone(), options.index_file),
            view: VersionsView::new(source, options.versions_cache, options.versions_cache_bytes),
            files: options.files,
            nodes: Mutex::default(),
            captured: Condvar::new(),
            handles: Mutex::default(),
            dirs: Mutex::default(),
            next_fh: AtomicU64::new(1),
            sizes: std::array::from_fn(|_| RwLock::default()),
            uid,
            gid,
            started: SystemTime::now(),
        })
    }

    /// The backing folder.
    pub fn files(&self) -> &Path {
        &self.files
    }

    pub fn sink(&self) -> &Arc<dyn VersionSink> {
        self.versioning.sink()
    }

    /// Takes a version of every file in the backing folder whose current content has
    /// none yet (edits made while unmounted, captures lost in a crash). Returns how many.
    pub fn reconcile(&self) -> usize {
        self.versioning.consider_tree(Path::new(""))
    }

    /// Saves what was versioned, once it is durable. Call periodically and at unmount.
    pub fn save_index(&self) -> io::Result<()> {
        self.versioning.save()
    }

    /// The text of `.ects-status.txt`.
    pub fn status_text(&self) -> String {
        let mut s = self.sink().status_text();
        if let Some(note) = self.view.status_note() {
            s.push_str(&note);
        }
        let problems = self.versioning.problems();
        if !problems.is_empty() {
            s.push_str(&format!(
                "Files that could not be versioned: {}\n",
                problems.len()
            ));
            for p in problems.iter().rev().take(20) {
                s.push_str(&format!("  {}: {}\n", p.path, p.why));
            }
        }
        s
    }

    /// What happened to the files that could not be versioned.
    pub fn problems(&self) -> Vec<Problem> {
        self.versioning.problems()
    }

    // ----- helpers -----

    fn new_fh(&self) -> Fh {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn kind_of(t: &NodeTable, ino: Ino) -> Result<NodeKind> {
        t.get(ino).map(|n| n.kind.clone()).ok_or(DriveError::ENOENT)
    }

    /// Nodes the table holds (for tests and diagnostics).
    pub fn node_count(&self) -> usize {
        lock(&self.nodes).len()
    }
}

#[cfg(test)]
mod tests;
