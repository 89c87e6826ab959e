//! `ects backup`: one pass over existing folders, the original client's job done right.
//!
//! Walk each folder (symlinks and special files are never followed or sent; ignored
//! names are skipped), hash files in parallel — or take the hash from the cache when
//! size, mtime, ctime and inode are unchanged — ask the server with HEAD whether it has
//! each version, and send the rest through the durable spool, so a run that is killed or
//! loses the network leaves its work for the next run. Each folder is stored under its
//! own name: `backup ~/Documents` → `Documents/...`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Remote;
use super::spool::{OutcomeKind, Spool, SpoolEvent};
use crate::names::RelPath;
use crate::store::Digest;

mod hash_cache;
mod walk;

pub use hash_cache::HashCache;
use hash_cache::TRUST_SAMPLE;
pub use walk::{FileJob, Walk, walk};

/// Progress as the run goes, for a progress bar or plain lines.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The server already had this version.
    AlreadyStored {
        path: RelPath,
        size: u64,
    },
    /// Captured into the spool; the upload follows.
    Queued {
        path: RelPath,
        size: u64,
    },
    Uploaded {
        path: RelPath,
        size: u64,
    },
    Failed {
        path: String,
        message: String,
    },
    /// A file could not be read.
    Unreadable {
        local: PathBuf,
        message: String,
    },
    Retrying {
        message: String,
        delay: Duration,
    },
}

#[derive(Debug, Default)]
pub struct Report {
    pub files: u64,
    pub bytes_total: u64,
    pub new_versions: u64,
    pub already_stored: u64,
    pub bytes_sent: u64,
    /// (path, reason) of versions the server refused.
    pub failed: Vec<(String, String)>,
    /// Local files not backed up (unreadable, names that cannot be stored).
    pub problems: Vec<(PathBuf, String)>,
    pub skipped: u64,
    /// Versions an earlier, interrupted run left in the spool that this run sent.
    pub from_earlier_runs: u64,
    /// Versions still waiting in the spool when the run gave up (server gone too long).
    pub left_in_spool: usize,
    pub elapsed: Duration,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.problems.is_empty() && self.left_in_spool == 0
    }
}

pub struct Options {
    /// Files hashed and checked at the same time.
    pub threads: usize,
    /// Give up waiting for the server after this long without any upload finishing.
    pub stall_timeout: Duration,
    /// Where to remember hashes between runs (`None`: always hash).
    pub hash_cache: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            threads: 4,
            stall_timeout: Duration::from_secs(300),
            hash_cache: None,
        }
    }
}

/// Backs up the files of `walk`. `events` must be the receiver whose sender was given
/// to the spool in [`super::SpoolOptions::events`].
pub fn run(
    remote: &Remote,
    spool: &Spool,
    events: &Receiver<SpoolEvent>,
    walk: Walk,
    opts: &Options,
    progress: &(dyn Fn(Progress) + Sync),
) -> Report {
    let start = Instant::now();
    let cache = opts
        .hash_cache
        .as_deref()
        .map(HashCache::load)
        .unwrap_or_default();
    let mut report = Report {
        files: walk.files.len() as u64,
        bytes_total: walk.bytes,
        problems: walk.problems,
        skipped: walk.skipped,
        ..Report::default()
    };
    let jobs = walk.files;
    let trusted = cache_is_trusted(remote, &cache, &jobs);
    let next = AtomicUsize::new(0);
    // Per job: the id of its spool entry, or None when the server had it already.
    let results: Mutex<Vec<Option<JobResult>>> = Mutex::new(vec![None; jobs.len()]);
    let problems = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    match check_one(remote, spool, &cache, trusted, job) {
                        Ok(r) => {
                            match &r {
                                JobResult::Stored(_) => progress(Progress::AlreadyStored {
                                    path: job.path.clone(),
                                    size: job.size,
                                }),
                                JobResult::Queued { .. } => progress(Progress::Queued {
                                    path: job.path.clone(),
                                    size: job.size,
                                }),
                            }
                            crate::sync::lock(&results)[i] = Some(r);
                        }
                        Err(message) => {
                            progress(Progress::Unreadable {
                                local: job.local.clone(),
                                message: message.clone(),
                            });
                            crate::sync::lock(&problems).push((job.local.clone(), message));
                        }
                    }
                }
            });
        }
    });
    tracing::debug!(files = jobs.len(), elapsed = ?start.elapsed(), "hashed, checked and captured");
    let results = results.into_inner().unwrap_or_else(PoisonError::into_inner);
    report.problems.extend(
        problems
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner),
    );

    // Wait for the spool to send everything (this run's and any earlier run's).
    let mut outcomes: HashMap<u64, (OutcomeKind, u64, String)> = HashMap::new();
    if let Err(e) = spool.flush() {
        progress(Progress::Retrying {
            message: e.to_string(),
            delay: Duration::ZERO,
        });
    }
    let mut last_progress = Instant::now();
    loop {
        match events.recv_timeout(Duration::from_millis(200)) {
            Ok(SpoolEvent::Outcome(o)) => {
                last_progress = Instant::now();
                match &o.kind {
                    OutcomeKind::Uploaded => progress(Progress::Uploaded {
                        path: o.path.clone(),
                        size: o.size,
                    }),
                    OutcomeKind::Failed { status, message } => progress(Progress::Failed {
                        path: o.path.to_string(),
                        message: failure_text(*status, message),
                    }),
                    OutcomeKind::AlreadyStored => {}
                }
                outcomes.insert(o.id, (o.kind, o.size, o.path.to_string()));
            }
            Ok(SpoolEvent::Retrying { message, delay }) => {
                progress(Progress::Retrying { message, delay })
            }
            Err(RecvTimeoutError::Timeout) => {
                if spool.wait_idle(Duration::ZERO) {
                    // Events are sent before the state changes, so all are here now.
                    while let Ok(SpoolEvent::Outcome(o)) = events.try_recv() {
                        outcomes.insert(o.id, (o.kind, o.size, o.path.to_string()));
                    }
                    break;
                }
                // A refused password pauses the spool: waiting longer changes nothing.
                if last_progress.elapsed() > opts.stall_timeout
                    || spool.status().credentials_refused
                {
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    tracing::debug!(elapsed = ?start.elapsed(), "uploads finished");
    report.left_in_spool = spool.status().pending;

    let mut mine: HashSet<u64> = HashSet::new();
    let mut cache_lines = Vec::new();
    for (job, r) in jobs.iter().zip(&results) {
        match r {
            Some(JobResult::Stored(d)) => {
                report.already_stored += 1;
                cache_lines.push((job.clone(), *d));
            }
            Some(JobResult::Queued { id, sha }) => {
                mine.insert(*id);
                match outcomes.get(id) {
                    Some((OutcomeKind::Uploaded, size, _)) => {
                        report.new_versions += 1;
                        report.bytes_sent += size;
                        cache_lines.push((job.clone(), *sha));
                    }
                    Some((OutcomeKind::AlreadyStored, _, _)) => {
                        report.already_stored += 1;
                        cache_lines.push((job.clone(), *sha));
                    }
                    Some((OutcomeKind::Failed { status, message }, _, path)) => {
                        report
                            .failed
                            .push((path.clone(), failure_text(*status, message)));
                    }
                    None => {}
                }
            }
            None => {}
        }
    }
    for (id, (kind, size, path)) in &outcomes {
        if mine.contains(id) {
            continue;
        }
        match kind {
            OutcomeKind::Uploaded => {
                report.from_earlier_runs += 1;
                report.bytes_sent += size;
            }
            OutcomeKind::AlreadyStored => report.from_earlier_runs += 1,
            OutcomeKind::Failed { status, message } => {
                report
                    .failed
                    .push((path.clone(), failure_text(*status, message)));
            }
        }
    }
    if let Some(file) = &opts.hash_cache
        && let Err(e) = HashCache::save(file, &cache_lines)
    {
        tracing::warn!("could not save the hash cache {}: {e}", file.display());
    }
    report.elapsed = start.elapsed();
    report
}

/// The server never deletes through its API, so what it confirmed once it still has —
/// unless it is a different server now (reset, restored from an old backup) or an admin
/// pruned it. A sample of the cache hits, spread over the tree, is checked with HEAD;
/// only when all are there are the other hits trusted without asking.
fn cache_is_trusted(remote: &Remote, cache: &HashCache, jobs: &[FileJob]) -> bool {
    let hits: Vec<(&FileJob, Digest)> = jobs
        .iter()
        .filter_map(|j| cache.get(j).map(|d| (j, d)))
        .collect();
    if hits.is_empty() {
        return false;
    }
    let step = hits.len().div_ceil(TRUST_SAMPLE).max(1);
    let all_there = hits
        .iter()
        .step_by(step)
        .all(|(job, sha)| matches!(remote.exists(&job.path, sha), Ok(true)));
    if !all_there {
        tracing::info!("the server lacks versions it confirmed before; checking every file");
    }
    all_there
}

fn failure_text(status: u16, message: &str) -> String {
    if status == 0 {
        message.to_owned()
    } else {
        format!("refused by the server (HTTP {status}): {message}")
    }
}

#[derive(Debug, Clone, Copy)]
enum JobResult {
    /// The server has this version.
    Stored(Digest),
    /// In the spool as entry `id`.
    Queued { id: u64, sha: Digest },
}

/// Hash (or take it from the cache), HEAD, and capture what the server lacks. Any HEAD
/// trouble is left to the spool, which retries; only unreadable files are errors.
fn check_one(
    remote: &Remote,
    spool: &Spool,
    cache: &HashCache,
    trusted: bool,
    job: &FileJob,
) -> Result<JobResult, String> {
    let sha = match cache.get(job) {
        // Unchanged since the server confirmed it, and the cache passed its check.
        Some(d) if trusted => return Ok(JobResult::Stored(d)),
        Some(d) => d,
        None => {
            let f = fs::File::open(&job.local).map_err(|e| format!("cannot read it: {e}"))?;
            Digest::of_reader(io::BufReader::with_capacity(256 * 1024, f))
                .map_err(|e| format!("cannot read it: {e}"))?
                .0
        }
    };
    if let Ok(true) = remote.exists(&job.path, &sha) {
        return Ok(JobResult::Stored(sha));
    }
    let c = spool
        .capture_entry(&job.path, &job.local)
        .map_err(|e| e.to_string())?;
    Ok(JobResult::Queued {
        id: c.id,
        sha: c.sha256,
    })
}

#[cfg(test)]
mod tests;
