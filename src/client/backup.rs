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
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::spool::{OutcomeKind, Spool, SpoolEvent};
use super::{ClientError, Remote};
use crate::ignore::is_ignored;
use crate::names::{RelPath, check_component};
use crate::store::Digest;

/// One regular file found by the walk.
#[derive(Debug, Clone)]
pub struct FileJob {
    pub local: PathBuf,
    pub path: RelPath,
    pub size: u64,
    key: StatKey,
}

/// What identifies unchanged content without reading it (restic and git use the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct StatKey {
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

/// What earlier runs confirmed the server stores, keyed by local path: the file's stat,
/// its hash and the path it is stored under. A hit needs the exact same size, mtime,
/// ctime, inode and device (and the same stored path); anything else is hashed again.
#[derive(Default)]
pub struct HashCache {
    entries: HashMap<PathBuf, (StatKey, Digest, String)>,
}

#[derive(Serialize, Deserialize)]
struct CacheLine {
    p: PathBuf,
    k: StatKey,
    h: Digest,
    r: String,
}

/// How many cache hits are checked with HEAD before the cache is trusted for the rest.
const TRUST_SAMPLE: usize = 32;

impl HashCache {
    /// Loads the cache; a missing or damaged file is an empty cache (it is only a cache).
    pub fn load(file: &Path) -> Self {
        let mut entries = HashMap::new();
        if let Ok(f) = fs::File::open(file) {
            for line in BufReader::new(f).lines().map_while(Result::ok) {
                if let Ok(l) = serde_json::from_str::<CacheLine>(&line) {
                    entries.insert(l.p, (l.k, l.h, l.r));
                }
            }
        }
        Self { entries }
    }

    fn get(&self, job: &FileJob) -> Option<Digest> {
        match self.entries.get(&job.local) {
            Some((k, d, r)) if *k == job.key && r == job.path.as_str() => Some(*d),
            _ => None,
        }
    }

    /// Writes the cache atomically (temp file + rename).
    pub fn save(file: &Path, lines: &[(FileJob, Digest)]) -> io::Result<()> {
        let tmp = file.with_extension("tmp");
        {
            // Owner-only, like the rest of the cache: it names the student's files.
            let f = crate::client::private::file_options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            let mut w = io::BufWriter::new(f);
            for (job, d) in lines {
                let line = CacheLine {
                    p: job.local.clone(),
                    k: job.key,
                    h: *d,
                    r: job.path.to_string(),
                };
                serde_json::to_writer(&mut w, &line).map_err(io::Error::other)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        }
        fs::rename(&tmp, file)
    }
}

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
                            results.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(r);
                        }
                        Err(message) => {
                            progress(Progress::Unreadable {
                                local: job.local.clone(),
                                message: message.clone(),
                            });
                            problems
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push((job.local.clone(), message));
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
mod tests {
    use super::*;

    // Unix only: a backslash in a name and unprivileged symlinks do not exist on Windows.
    #[cfg(unix)]
    #[test]
    fn walk_names_symlinks_and_ignored_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("Documents");
        fs::create_dir_all(root.join("New folder/Übung 1")).unwrap();
        fs::write(root.join("New folder/Übung 1/a b.txt"), b"x").unwrap();
        fs::write(root.join("empty"), b"").unwrap();
        fs::write(root.join("~$lock.docx"), b"lock").unwrap();
        fs::write(root.join("Thumbs.db"), b"t").unwrap();
        fs::write(root.join("bad\\name"), b"b").unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("filelink")).unwrap();

        let w = walk(std::slice::from_ref(&root)).unwrap();
        let paths: Vec<&str> = w.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["Documents/New folder/Übung 1/a b.txt", "Documents/empty"]
        );
        assert_eq!(w.bytes, 1);
        assert_eq!(w.skipped, 4, "two ignored names, two symlinks");
        assert_eq!(w.problems.len(), 1);
        assert!(
            w.problems[0].1.contains("cannot be stored"),
            "{:?}",
            w.problems
        );

        // `.` is stored under the folder's real name.
        let dot = walk(&[root.join(".")]).unwrap();
        assert_eq!(
            dot.files[0].path.as_str(),
            "Documents/New folder/Übung 1/a b.txt"
        );
        assert!(
            walk(&[root.join("empty")]).is_err(),
            "a file is not a folder"
        );
        assert!(walk(&[tmp.path().join("missing")]).is_err());
    }

    #[test]
    fn hash_cache_needs_the_exact_same_stat() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("d");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("f"), b"one").unwrap();
        let w = walk(std::slice::from_ref(&root)).unwrap();
        let file = tmp.path().join("hashes");
        let fake = Digest::of(b"pretend");
        HashCache::save(&file, &[(w.files[0].clone(), fake)]).unwrap();
        let cache = HashCache::load(&file);
        assert_eq!(cache.get(&w.files[0]), Some(fake));
        // Rewriting the file changes its ctime (and here its size): no hit.
        fs::write(root.join("f"), b"two!").unwrap();
        let w2 = walk(std::slice::from_ref(&root)).unwrap();
        assert_eq!(cache.get(&w2.files[0]), None);
        // A damaged cache is just empty.
        fs::write(&file, b"garbage\n{").unwrap();
        assert_eq!(HashCache::load(&file).get(&w.files[0]), None);
    }
}
