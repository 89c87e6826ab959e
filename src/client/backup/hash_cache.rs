//! The hash cache: what earlier runs confirmed the server stores, so an unchanged file
//! is not hashed again.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::Digest;

use super::walk::{FileJob, StatKey};

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
pub(super) const TRUST_SAMPLE: usize = 32;

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

    pub(super) fn get(&self, job: &FileJob) -> Option<Digest> {
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
            let f = crate::private::open_options()
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
