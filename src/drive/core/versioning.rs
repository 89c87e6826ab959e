//! When a version is taken, and the index that remembers what was taken.
//!
//! The index maps each path to the version last taken there and the backing file's
//! identity at that moment (inode, size, mtime, ctime). A file whose identity still
//! matches needs no new version; anything else is captured (copied and hashed in one
//! pass by the sink). Capturing content that equals the last version is harmless: the
//! store keeps one copy per path and content.
//!
//! The index is saved in the cache folder only after the sink has made every capture
//! durable, so at the next mount a matching entry proves the version is safe, and every
//! file that does not match is captured again (reconcile, SPEC §4).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::sync::lock;

use serde::{Deserialize, Serialize};

use super::super::sink::{SinkError, VersionSink};
use crate::ignore::is_ignored;
use crate::names::{NameError, RelPath};
use crate::store::Digest;

/// What identifies one state of a backing file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub ino: u64,
    pub size: u64,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Fingerprint {
    pub fn of(meta: &fs::Metadata) -> Self {
        super::backing::fingerprint(meta)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Taken {
    #[serde(flatten)]
    fingerprint: Fingerprint,
    sha256: Digest,
}

/// Why a file could not be versioned, kept for the status file.
#[derive(Debug, Clone)]
pub struct Problem {
    pub path: String,
    pub why: String,
}

pub struct Versioning {
    sink: Arc<dyn VersionSink>,
    files: PathBuf,
    index_file: PathBuf,
    index: Mutex<HashMap<RelPath, Taken>>,
    dirty: AtomicBool,
    problems: Mutex<Vec<Problem>>,
}

/// What [`Versioning::consider`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Taken(Digest),
    Unchanged,
    Deferred,
    Ignored,
    NotAFile,
}

impl Versioning {
    /// `files` is the backing folder; `index_file` where the index is kept between mounts.
    pub fn new(sink: Arc<dyn VersionSink>, files: PathBuf, index_file: PathBuf) -> Self {
        let index = match fs::read(&index_file) {
            Ok(bytes) => match serde_json::from_slice::<HashMap<String, Taken>>(&bytes) {
                Ok(map) => map
                    .into_iter()
                    .filter_map(|(k, v)| RelPath::parse(&k).ok().map(|p| (p, v)))
                    .collect(),
                Err(e) => {
                    tracing::warn!(file = %index_file.display(), error = %e, "drive index unreadable; every file will be checked");
                    HashMap::new()
                }
            },
            Err(_) => HashMap::new(),
        };
        Self {
            sink,
            files,
            index_file,
            index: Mutex::new(index),
            dirty: AtomicBool::new(false),
            problems: Mutex::default(),
        }
    }

    pub fn sink(&self) -> &Arc<dyn VersionSink> {
        &self.sink
    }

    /// Turns a path relative to the backing folder into a store path, or records why it
    /// cannot be one.
    fn store_path(&self, rel: &Path) -> Option<RelPath> {
        let shown = rel.to_string_lossy().into_owned();
        match RelPath::from_local(rel) {
            Ok(p) => Some(p),
            Err(NameError::NotUtf8) => {
                self.problem(
                    shown,
                    "the name is not valid UTF-8, so it cannot be backed up",
                );
                None
            }
            Err(e) => {
                self.problem(shown, &format!("cannot be backed up: {e}"));
                None
            }
        }
    }

    fn problem(&self, path: String, why: &str) {
        let mut problems = lock(&self.problems);
        if problems.iter().any(|p| p.path == path && p.why == why) {
            return;
        }
        tracing::warn!(%path, why, "not versioned");
        problems.retain(|p| p.path != path);
        if problems.len() >= 100 {
            problems.remove(0);
        }
        problems.push(Problem {
            path,
            why: why.to_owned(),
        });
    }

    pub fn problems(&self) -> Vec<Problem> {
        lock(&self.problems).clone()
    }

    /// Takes a version of the file at `rel` (relative to the backing folder) unless its
    /// name is ignored or it has not changed since the last version taken there. With
    /// `defer_empty`, an empty file is left alone (reported as [`Outcome::Deferred`]).
    pub fn consider(&self, rel: &Path, defer_empty: bool) -> Outcome {
        let Some(name) = rel.file_name() else {
            return Outcome::NotAFile;
        };
        if is_ignored(&name.to_string_lossy()) {
            return Outcome::Ignored;
        }
        let full = self.files.join(rel);
        let meta = match fs::symlink_metadata(&full) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Outcome::NotAFile,
            Err(_) => return Outcome::NotAFile,
        };
        let Some(path) = self.store_path(rel) else {
            return Outcome::NotAFile;
        };
        if defer_empty && meta.len() == 0 {
            return Outcome::Deferred;
        }
        let fingerprint = Fingerprint::of(&meta);
        if lock(&self.index)
            .get(&path)
            .is_some_and(|t| t.fingerprint == fingerprint)
        {
            return Outcome::Unchanged;
        }
        // A folder on the way swapped for a symlink since the check above fails here;
        // the sink then reads through the folder opened now, whatever is renamed.
        let source = match super::backing::CaptureSource::open(&self.files, rel) {
            Ok(source) => source,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Outcome::NotAFile,
            Err(e) => {
                self.problem(path.to_string(), &format!("could not take a version: {e}"));
                return Outcome::NotAFile;
            }
        };
        match self.sink.capture(&path, source.path()) {
            Ok(sha256) => {
                tracing::debug!(%path, %sha256, size = meta.len(), "version taken");
                lock(&self.index).insert(
                    path,
                    Taken {
                        fingerprint,
                        sha256,
                    },
                );
                self.dirty.store(true, Ordering::Relaxed);
                Outcome::Taken(sha256)
            }
            // Only a source that vanished is "not a file"; a spool-side failure
            // (SinkError::Spool) is a lost version, listed below and by the spool.
            Err(SinkError::Read(e)) if e.kind() == io::ErrorKind::NotFound => Outcome::NotAFile,
            Err(e) => {
                self.problem(path.to_string(), &format!("could not take a version: {e}"));
                Outcome::NotAFile
            }
        }
    }

    /// Takes a version of every changed file under `rel` (a folder that was moved, or
    /// the whole backing folder at mount). Returns how many were taken.
    pub fn consider_tree(&self, rel: &Path) -> usize {
        let mut taken = 0;
        let mut stack = vec![rel.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(self.files.join(&dir)) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot list a folder");
                    continue;
                }
            };
            for entry in entries.flatten() {
                let child = dir.join(entry.file_name());
                match entry.file_type() {
                    Ok(t) if t.is_dir() => stack.push(child),
                    Ok(t) if t.is_file() => {
                        if matches!(self.consider(&child, false), Outcome::Taken(_)) {
                            taken += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        taken
    }

    /// Forgets what was taken at `rel` (the file is gone from there).
    pub fn forget(&self, rel: &Path) {
        if let Ok(path) = RelPath::from_local(rel)
            && lock(&self.index).remove(&path).is_some()
        {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Saves the index (atomically) if it changed, once the captures it records are durable.
    pub fn save(&self) -> io::Result<()> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        // Snapshot first: only captures made before the flush may be written as safe.
        let snapshot: HashMap<String, Taken> = lock(&self.index)
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if let Err(e) = self.sink.flush() {
            self.dirty.store(true, Ordering::Relaxed);
            return Err(io::Error::other(e.to_string()));
        }
        let bytes = serde_json::to_vec(&snapshot).map_err(io::Error::other)?;
        let tmp = self.index_file.with_extension("tmp");
        let result = (|| {
            // A fresh 0600 file: a leftover temp file could be someone else's.
            let _ = fs::remove_file(&tmp);
            let mut opts = crate::private::open_options();
            opts.write(true).create_new(true);
            let mut f = opts.open(&tmp)?;
            io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.index_file)
        })();
        if result.is_err() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        result
    }
}
