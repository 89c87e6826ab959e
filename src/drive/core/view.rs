//! The read-only `.versions` tree: names, short-lived listings, and a size-capped LRU
//! cache of fetched version contents on local disk.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::sync::lock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, Utc};

use super::super::sink::{SinkError, VersionSource};
use super::{DriveError, posix};
use crate::names::RelPath;
use crate::store::{Digest, Tree, VersionInfo};

/// How long a listing is reused; with the kernel's TTL this keeps new versions visible
/// within two seconds.
pub const LISTING_TTL: Duration = Duration::from_millis(900);

/// `<YYYY-MM-DD_HH-MM-SS>_<sha8><.ext>` in local time (SPEC §4).
pub fn version_name(path: &RelPath, info: &VersionInfo) -> String {
    format_version_name(info.stored_at, &info.sha256, path.version_ext())
}

pub fn format_version_name(stored_at: DateTime<Utc>, sha: &Digest, ext: &str) -> String {
    let local = stored_at.with_timezone(&Local);
    format!(
        "{}_{}{}",
        local.format("%Y-%m-%d_%H-%M-%S"),
        sha.short(),
        ext
    )
}

type Cached<T> = (Instant, Arc<T>);

/// Since when the server has not answered `.versions`, and why.
#[derive(Debug, Clone)]
struct Unreachable {
    since: DateTime<Local>,
    reason: String,
}

pub struct VersionsView {
    source: Arc<dyn VersionSource>,
    trees: Mutex<HashMap<Option<RelPath>, Cached<Option<Tree>>>>,
    versions: Mutex<HashMap<RelPath, Cached<Vec<VersionInfo>>>>,
    cache: ContentCache,
    /// Set while the server does not answer, for `.ects-status.txt` and the log.
    unreachable: Mutex<Option<Unreachable>>,
}

/// The errno a failed `.versions` call answers with. A server out of reach says so
/// (`ls: cannot open directory '.versions': Network is unreachable`) rather than a bare
/// "Input/output error"; anything else is an I/O error.
pub fn versions_error(what: String, e: SinkError) -> DriveError {
    let errno = match &e {
        SinkError::Unreachable(_) => posix::ENETUNREACH,
        _ => posix::EIO,
    };
    DriveError::new(errno, format!("{what}: {e}"))
}

impl VersionsView {
    pub fn new(source: Arc<dyn VersionSource>, cache_dir: PathBuf, cache_bytes: u64) -> Self {
        Self {
            source,
            trees: Mutex::default(),
            versions: Mutex::default(),
            cache: ContentCache::new(cache_dir, cache_bytes),
            unreachable: Mutex::default(),
        }
    }

    /// Remembers whether the server answered; logs each change once, not every `ls`.
    fn note<T>(&self, result: Result<T, SinkError>) -> Result<T, SinkError> {
        let mut unreachable = lock(&self.unreachable);
        match &result {
            Err(SinkError::Unreachable(reason)) => {
                if unreachable.is_none() {
                    tracing::warn!(
                        %reason,
                        "the server is out of reach: .versions cannot be listed or opened until it answers (saving still works)"
                    );
                }
                *unreachable = Some(Unreachable {
                    since: unreachable.as_ref().map_or_else(Local::now, |u| u.since),
                    reason: reason.clone(),
                });
            }
            Ok(_) => {
                if unreachable.take().is_some() {
                    tracing::info!("the server answers again: .versions is back");
                }
            }
            // Trouble on this computer says nothing about the server.
            Err(SinkError::Read(_) | SinkError::Spool { .. }) => {}
            // The server answered, with an error: it is reachable.
            Err(_) => {
                unreachable.take();
            }
        }
        result
    }

    /// A line for `.ects-status.txt` while `.versions` cannot reach the server.
    pub fn status_note(&self) -> Option<String> {
        lock(&self.unreachable).as_ref().map(|u| {
            format!(
                ".versions: the server is out of reach since {} ({}); stored versions \
                 cannot be listed or opened until it answers. Saving works as usual.\n",
                u.since.format("%H:%M:%S"),
                u.reason
            )
        })
    }

    /// The children of a folder of the namespace, reused for [`LISTING_TTL`].
    pub fn tree(&self, dir: Option<&RelPath>) -> Result<Arc<Option<Tree>>, SinkError> {
        let key = dir.cloned();
        if let Some((at, t)) = lock(&self.trees).get(&key)
            && at.elapsed() < LISTING_TTL
        {
            return Ok(t.clone());
        }
        let tree = Arc::new(self.note(self.source.tree(dir))?);
        let mut trees = lock(&self.trees);
        if trees.len() > 4096 {
            trees.clear();
        }
        trees.insert(key, (Instant::now(), tree.clone()));
        Ok(tree)
    }

    /// The versions of one file, reused for [`LISTING_TTL`].
    pub fn versions(&self, path: &RelPath) -> Result<Arc<Vec<VersionInfo>>, SinkError> {
        if let Some((at, v)) = lock(&self.versions).get(path)
            && at.elapsed() < LISTING_TTL
        {
            return Ok(v.clone());
        }
        let v = Arc::new(self.note(self.source.versions(path))?);
        let mut all = lock(&self.versions);
        if all.len() > 4096 {
            all.clear();
        }
        all.insert(path.clone(), (Instant::now(), v.clone()));
        Ok(v)
    }

    /// Opens a version's content, fetching it into the local cache if needed.
    pub fn open(&self, path: &RelPath, info: &VersionInfo) -> Result<File, SinkError> {
        // Only the fetch asks the server: a cached copy says nothing about it.
        self.cache.open(path, info, &mut |out| {
            self.note(self.source.fetch(path, &info.sha256, out))
                .map(drop)
        })
    }
}

/// Fetched contents, one file per digest, evicted least-recently-used beyond a byte cap.
/// Eviction unlinks the file; handles already open keep reading it.
struct ContentCache {
    dir: PathBuf,
    cap: u64,
    lru: Mutex<(lru::LruCache<Digest, u64>, u64)>,
    tmp_seq: AtomicU64,
}

impl ContentCache {
    fn new(dir: PathBuf, cap: u64) -> Self {
        // Start empty: what a previous mount cached is not tracked.
        let _ = fs::remove_dir_all(&dir);
        // 0700 and its files 0600: nobody else may plant what `.versions` shows.
        if let Err(e) = crate::private::own_dir(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the versions cache");
        }
        Self {
            dir,
            cap,
            lru: Mutex::new((lru::LruCache::unbounded(), 0)),
            tmp_seq: AtomicU64::new(0),
        }
    }

    fn file(&self, sha: &Digest) -> PathBuf {
        self.dir.join(sha.to_hex())
    }

    /// The verified cached copy, or one `fetch` writes (hash-checked) into the cache.
    fn open(
        &self,
        path: &RelPath,
        info: &VersionInfo,
        fetch: &mut dyn FnMut(&mut dyn Write) -> Result<(), SinkError>,
    ) -> Result<File, SinkError> {
        let sha = info.sha256;
        {
            let mut lru = lock(&self.lru);
            if lru.0.get(&sha).is_some() {
                // Verified on every open: what `.versions` shows is what the store holds,
                // even if the cached copy was altered; a mismatch is fetched again.
                match File::open(self.file(&sha)).and_then(|f| verify(f, &sha)) {
                    Ok(Some(f)) => return Ok(f),
                    Ok(None) | Err(_) => {
                        tracing::warn!(%path, "a cached version did not match its hash; fetching it again");
                        let _ = fs::remove_file(self.file(&sha));
                        if let Some(size) = lru.0.pop(&sha) {
                            lru.1 -= size;
                        }
                    }
                }
            }
        }
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("fetch-{seq}.tmp"));
        let result = (|| {
            let _ = fs::remove_file(&tmp);
            let mut opts = crate::private::open_options();
            opts.read(true).write(true).create_new(true);
            let mut out = HashingWriter::new(opts.open(&tmp).map_err(SinkError::Read)?);
            fetch(&mut out)?;
            let (file, got, size) = out.finish();
            file.sync_data().ok();
            if got != sha {
                return Err(SinkError::Other(format!(
                    "the stored version of {path} does not match its hash (expected {sha}, got {got})"
                )));
            }
            fs::rename(&tmp, self.file(&sha)).map_err(SinkError::Read)?;
            // The descriptor that received the verified bytes, not a new open by name.
            Ok((file, size))
        })();
        let (file, size) = match result {
            Ok(x) => x,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let mut lru = lock(&self.lru);
        if lru.0.put(sha, size).is_none() {
            lru.1 += size;
        }
        while lru.1 > self.cap && lru.0.len() > 1 {
            match lru.0.pop_lru() {
                Some((old, old_size)) => {
                    lru.1 -= old_size;
                    let _ = fs::remove_file(self.file(&old));
                }
                None => break,
            }
        }
        Ok(file)
    }
}

/// `f` if its content hashes to `sha`.
fn verify(f: File, sha: &Digest) -> io::Result<Option<File>> {
    let (got, _) = Digest::of_reader(&f)?;
    Ok((got == *sha).then_some(f))
}

/// Counts and hashes what is written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        use sha2::Digest as _;
        Self {
            inner,
            hasher: sha2::Sha256::new(),
            count: 0,
        }
    }

    fn finish(self) -> (W, Digest, u64) {
        use sha2::Digest as _;
        (
            self.inner,
            Digest::from_bytes(self.hasher.finalize().into()),
            self.count,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_the_extension_and_short_hash() {
        let sha = Digest::of(b"x");
        let at = DateTime::parse_from_rfc3339("2024-03-05T07:08:09Z")
            .unwrap()
            .with_timezone(&Utc);
        let name = format_version_name(at, &sha, ".docx");
        let local = at.with_timezone(&Local).format("%Y-%m-%d_%H-%M-%S");
        assert_eq!(name, format!("{local}_{}.docx", &sha.to_hex()[..8]));
        let p = RelPath::parse("a/Makefile").unwrap();
        let info = VersionInfo {
            sha256: sha,
            size: 1,
            stored_at: at,
        };
        assert!(!version_name(&p, &info).contains('.'));
    }
}
