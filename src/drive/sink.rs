//! Where the drive's versions go, and where `.versions` reads them from.
//!
//! The core only sees these two traits. The client's [`Spool`] is the sink in both modes
//! (its uploader writes into an embedded store or to a server); [`StoreSource`] reads
//! `.versions` from an embedded store and [`Remote`] from a server.

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{ClientError, Remote, Spool, SpoolError, render_status};
use crate::names::{RelPath, UserName};
use crate::store::{Digest, Store, StoreError, Tree, VersionInfo};

/// Why a capture or a read of versions failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("could not read the file to capture: {0}")]
    Read(io::Error),
    /// The file was read but its copy could not be kept (spool disk full, spool folder
    /// gone...): the version is lost and the spool reports it; never "not a file".
    #[error("{message}")]
    Spool { errno: Option<i32>, message: String },
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The server did not answer (network down, server stopped): `.versions` cannot be
    /// listed or fetched now.
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Other(String),
}

/// Takes versions. `capture` copies (or reflinks) and hashes `source` in one pass and
/// returns before anything is uploaded or fsynced; the bytes are the file's content at
/// the moment of the call, whatever happens to the file afterwards.
pub trait VersionSink: Send + Sync {
    fn capture(&self, path: &RelPath, source: &Path) -> Result<Digest, SinkError>;
    /// Makes every capture so far durable (survives a crash of this process).
    fn flush(&self) -> Result<(), SinkError>;
    /// Keeps delivering for at most `timeout`; returns how many captures are left.
    fn drain(&self, timeout: Duration) -> usize;
    /// Captures not yet delivered.
    fn pending(&self) -> usize;
    /// A report for a person: pending, failed, last error, reachable (`.ects-status.txt`).
    fn status_text(&self) -> String;
}

/// Lists and reads stored versions of the drive's user, for `.versions`.
pub trait VersionSource: Send + Sync {
    /// The children of a folder (`None` = the root); `Ok(None)` if it does not exist.
    fn tree(&self, dir: Option<&RelPath>) -> Result<Option<Tree>, SinkError>;
    /// Every version of one file, oldest first.
    fn versions(&self, path: &RelPath) -> Result<Vec<VersionInfo>, SinkError>;
    /// Writes one version's bytes to `out`.
    fn fetch(&self, path: &RelPath, sha256: &Digest, out: &mut dyn Write)
    -> Result<u64, SinkError>;
}

/// Reads `.versions` straight from an embedded store.
pub struct StoreSource {
    store: Arc<dyn Store>,
    user: UserName,
}

impl StoreSource {
    pub fn new(store: Arc<dyn Store>, user: UserName) -> Self {
        Self { store, user }
    }
}

impl VersionSource for StoreSource {
    fn tree(&self, dir: Option<&RelPath>) -> Result<Option<Tree>, SinkError> {
        Ok(self.store.tree(&self.user, dir)?)
    }

    fn versions(&self, path: &RelPath) -> Result<Vec<VersionInfo>, SinkError> {
        Ok(self.store.versions(&self.user, path)?)
    }

    fn fetch(
        &self,
        path: &RelPath,
        sha256: &Digest,
        out: &mut dyn Write,
    ) -> Result<u64, SinkError> {
        let (_, mut reader) = self.store.open(&self.user, path, sha256)?;
        io::copy(&mut reader, out).map_err(|e| SinkError::Other(e.to_string()))
    }
}

impl VersionSink for Spool {
    fn capture(&self, path: &RelPath, source: &Path) -> Result<Digest, SinkError> {
        Spool::capture(self, path, source).map_err(|e| match e {
            // The student's file could not be read (gone, a symlink, not a regular
            // file). Its own error, without the path the drive read it by (on Linux
            // `/proc/self/fd/N/name`): the drive reports it under the file's name.
            SpoolError::Source { source, .. } => SinkError::Read(source),
            e => SinkError::Spool {
                errno: e.raw_os_error(),
                message: e.to_string(),
            },
        })
    }

    fn flush(&self) -> Result<(), SinkError> {
        Spool::flush(self).map_err(|e| SinkError::Other(e.to_string()))
    }

    fn drain(&self, timeout: Duration) -> usize {
        Spool::drain(self, timeout)
    }

    fn pending(&self) -> usize {
        self.status().pending
    }

    fn status_text(&self) -> String {
        render_status(&self.status())
    }
}

/// A server that did not answer is told apart from one that failed.
fn from_client(e: ClientError) -> SinkError {
    match e {
        ClientError::Unreachable { .. } => SinkError::Unreachable(e.to_string()),
        e => SinkError::Other(e.to_string()),
    }
}

impl VersionSource for Remote {
    fn tree(&self, dir: Option<&RelPath>) -> Result<Option<Tree>, SinkError> {
        Remote::tree(self, dir).map_err(from_client)
    }

    fn versions(&self, path: &RelPath) -> Result<Vec<VersionInfo>, SinkError> {
        Remote::versions(self, path).map_err(from_client)
    }

    fn fetch(
        &self,
        path: &RelPath,
        sha256: &Digest,
        out: &mut dyn Write,
    ) -> Result<u64, SinkError> {
        Remote::fetch(self, path, sha256, out).map_err(from_client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{SpoolOptions, StoreUploader};
    use crate::store::MemStore;

    #[test]
    fn the_spool_is_a_sink_whose_captures_are_snapshots() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let user = UserName::parse("u").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(
            &dir.path().join("spool"),
            Arc::new(StoreUploader::new(store.clone(), user.clone())),
            SpoolOptions::default(),
        )
        .unwrap();
        let sink: &dyn VersionSink = &spool;
        let file = dir.path().join("a.txt");
        std::fs::write(&file, b"one").unwrap();
        let path = RelPath::parse("a.txt").unwrap();
        let d1 = sink.capture(&path, &file).unwrap();
        // Later writes do not leak into the capture.
        std::fs::write(&file, b"two").unwrap();
        let d2 = sink.capture(&path, &file).unwrap();
        assert_eq!(sink.drain(Duration::from_secs(60)), 0);
        let got: Vec<Digest> = store
            .versions(&user, &path)
            .unwrap()
            .iter()
            .map(|v| v.sha256)
            .collect();
        assert_eq!(got.len(), 2);
        assert!(got.contains(&d1) && got.contains(&d2));
        assert_eq!(d1, Digest::of(b"one"));
        assert_eq!(sink.pending(), 0);
        assert!(!sink.status_text().is_empty());
    }
}
