//! Where the drive's versions go, and where `.versions` reads them from.
//!
//! The core only sees these two traits. [`StoreSink`] and [`StoreSource`] implement them
//! over an embedded [`Store`]; the client's spool and remote implement them for a server.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::names::{RelPath, UserName};
use crate::store::{Digest, Staged, Store, StoreError, Tree, VersionInfo};

/// Why a capture or a read of versions failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("could not read the file to capture: {0}")]
    Read(io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
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

/// A version staged in the store's temp folder, waiting for its commit.
struct Job {
    path: RelPath,
    staged: Staged,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Jobs taken by the committer and not finished yet.
    in_flight: usize,
    committed: u64,
    failed: Vec<(String, String)>,
    last_error: Option<String>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
}

/// Versions into an embedded store. `capture` stages the file's bytes in the store's temp
/// folder (one read that copies and hashes); a background thread commits them in order,
/// so `close()` never waits for the store's fsyncs. A crash loses only staged captures,
/// and the next mount's reconcile takes a version of every file whose content has none.
pub struct StoreSink {
    store: Arc<dyn Store>,
    user: UserName,
    shared: Arc<Shared>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StoreSink {
    pub fn new(store: Arc<dyn Store>, user: UserName) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            changed: Condvar::new(),
        });
        let worker = {
            let store = store.clone();
            let user = user.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("ects-commit".into())
                .spawn(move || commit_loop(&*store, &user, &shared))?
        };
        Ok(Self {
            store,
            user,
            shared,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Versions committed since the sink started.
    pub fn committed(&self) -> u64 {
        lock(&self.shared.queue).committed
    }

    fn wait_idle(&self, deadline: Option<Instant>) -> usize {
        let mut q = lock(&self.shared.queue);
        loop {
            let left = q.jobs.len() + q.in_flight;
            if left == 0 {
                return 0;
            }
            match deadline {
                None => {
                    q = self
                        .shared
                        .changed
                        .wait(q)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return left;
                    }
                    q = self
                        .shared
                        .changed
                        .wait_timeout(q, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }
}

fn commit_loop(store: &dyn Store, user: &UserName, shared: &Shared) {
    loop {
        let job = {
            let mut q = lock(&shared.queue);
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    q.in_flight += 1;
                    break job;
                }
                if q.closed {
                    return;
                }
                q = shared
                    .changed
                    .wait(q)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let path = job.path.to_string();
        let result = store.commit(user, &job.path, job.staged, None);
        let mut q = lock(&shared.queue);
        q.in_flight -= 1;
        match result {
            Ok(outcome) => {
                q.committed += 1;
                tracing::debug!(%path, sha256 = %outcome.version.sha256, created = outcome.created, "version stored");
            }
            Err(e) => {
                tracing::warn!(%path, error = %e, "could not store a version");
                q.last_error = Some(format!("{path}: {e}"));
                q.failed.push((path, e.to_string()));
            }
        }
        shared.changed.notify_all();
    }
}

impl VersionSink for StoreSink {
    fn capture(&self, path: &RelPath, source: &Path) -> Result<Digest, SinkError> {
        let mut file = File::open(source).map_err(SinkError::Read)?;
        let staged = self.store.stage(&mut file, u64::MAX)?;
        let digest = *staged.digest();
        let mut q = lock(&self.shared.queue);
        q.jobs.push_back(Job {
            path: path.clone(),
            staged,
        });
        self.shared.changed.notify_all();
        Ok(digest)
    }

    fn flush(&self) -> Result<(), SinkError> {
        self.wait_idle(None);
        Ok(())
    }

    fn drain(&self, timeout: Duration) -> usize {
        self.wait_idle(Some(Instant::now() + timeout))
    }

    fn pending(&self) -> usize {
        let q = lock(&self.shared.queue);
        q.jobs.len() + q.in_flight
    }

    fn status_text(&self) -> String {
        let q = lock(&self.shared.queue);
        let mut s = String::new();
        s.push_str(&format!(
            "ects drive of user {} (embedded store)\n",
            self.user
        ));
        s.push_str(&format!(
            "Pending versions: {}\n",
            q.jobs.len() + q.in_flight
        ));
        s.push_str(&format!("Stored since mount: {}\n", q.committed));
        s.push_str(&format!("Failed versions: {}\n", q.failed.len()));
        for (path, why) in q.failed.iter().rev().take(20) {
            s.push_str(&format!("  {path}: {why}\n"));
        }
        s.push_str(&format!(
            "Last error: {}\n",
            q.last_error.as_deref().unwrap_or("none")
        ));
        s.push_str("Store reachable: yes (embedded)\n");
        s
    }
}

impl Drop for StoreSink {
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.changed.notify_all();
        if let Some(worker) = lock(&self.worker).take() {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[test]
    fn captures_are_committed_in_the_background() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let user = UserName::parse("u").unwrap();
        let sink = StoreSink::new(store.clone(), user.clone()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, b"one").unwrap();
        let path = RelPath::parse("a.txt").unwrap();
        let d1 = sink.capture(&path, &file).unwrap();
        // The capture is a snapshot: later writes do not leak into it.
        std::fs::write(&file, b"two").unwrap();
        let d2 = sink.capture(&path, &file).unwrap();
        assert_eq!(sink.drain(Duration::from_secs(30)), 0);
        let versions = store.versions(&user, &path).unwrap();
        let got: Vec<Digest> = versions.iter().map(|v| v.sha256).collect();
        assert_eq!(got.len(), 2);
        assert!(got.contains(&d1) && got.contains(&d2));
        assert_eq!(d1, Digest::of(b"one"));
        assert!(sink.status_text().contains("Pending versions: 0"));
    }
}
