//! `ects fsck`: re-hash every stored version and check the layout.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use super::Digest;
use super::fs::{is_version_name_for, parse_version_name};

/// What [`fsck`] found. `damaged()` decides the exit code.
#[derive(Debug, Default)]
pub struct FsckReport {
    pub versions: u64,
    pub bytes: u64,
    /// Version files whose content no longer hashes to their name.
    pub mismatches: Vec<PathBuf>,
    /// Anything in `uploads/` that is not part of the layout.
    pub strays: Vec<(PathBuf, &'static str)>,
    /// Files in `tmp/`: uploads in flight, or left by a crash.
    pub temp_files: Vec<PathBuf>,
    /// Folders created for a first version that never arrived (harmless).
    pub empty_dirs: Vec<PathBuf>,
    /// Unparseable journal lines, per file.
    pub journal_errors: Vec<(PathBuf, usize)>,
    /// Whole versions with no journal line: the server was killed between storing a
    /// version and journaling it. The version is safe; only the audit line is missing.
    pub unjournaled: Vec<PathBuf>,
    /// Versions whose mtime (their `stored_at`, which deadlines compare against)
    /// disagrees with the time the journal recorded when they were stored: the data
    /// folder was copied without keeping times (`cp -r`). `ects fsck --repair-times`
    /// sets them back from the journal.
    pub wrong_times: Vec<WrongTime>,
    /// Versions whose mtime was set back from the journal (`--repair-times`).
    pub repaired_times: u64,
    /// Another process (a running server or drive) holds the store, so temp files
    /// may be uploads in flight rather than leftovers.
    pub in_use: bool,
}

/// One version whose `stored_at` (mtime) differs from its journal line.
#[derive(Debug, Clone)]
pub struct WrongTime {
    pub file: PathBuf,
    /// What the file says now.
    pub mtime: DateTime<Utc>,
    /// When the store accepted it, per the journal.
    pub journaled: DateTime<Utc>,
}

/// Differences below this are a coarser filesystem's rounding, not a lost time.
const TIME_TOLERANCE: Duration = Duration::from_secs(1);

impl FsckReport {
    pub fn damaged(&self) -> bool {
        !self.mismatches.is_empty()
            || !self.wrong_times.is_empty()
            || !self.strays.is_empty()
            || !self.journal_errors.is_empty()
            || (!self.temp_files.is_empty() && !self.in_use)
    }
}

/// Checks the store in `data` without changing anything.
pub fn fsck(data: &Path) -> io::Result<FsckReport> {
    check(data, false)
}

/// Like [`fsck`], and sets every version's mtime that disagrees with the journal
/// back to the journal's time. Only mtimes change; content, names and the journal
/// stay as they are. Repaired versions are counted, not listed as wrong.
pub fn fsck_repair_times(data: &Path) -> io::Result<FsckReport> {
    check(data, true)
}

fn check(data: &Path, repair_times: bool) -> io::Result<FsckReport> {
    let mut report = FsckReport::default();
    let uploads = data.join("uploads");
    if !uploads.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} has no uploads/ folder: not an ects data folder",
                data.display()
            ),
        ));
    }
    if let Ok(lock) = OpenOptions::new().write(true).open(data.join("store.lock")) {
        report.in_use = matches!(lock.try_lock(), Err(fs::TryLockError::WouldBlock));
    }
    for entry in fs::read_dir(&uploads)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let valid_user = name
            .to_str()
            .is_some_and(|n| crate::names::UserName::parse(n).is_ok());
        if !entry.file_type()?.is_dir() || !valid_user {
            report.strays.push((path, "not a user's folder"));
            continue;
        }
        let mut versions = Vec::new();
        check_folder(&path, true, &mut report, &mut versions)?;
        let journaled = journaled(
            &data
                .join("journal")
                .join(format!("{}.log", name.to_string_lossy())),
        );
        for (file, digest) in versions {
            let rel = file
                .parent()
                .and_then(|p| p.strip_prefix(&path).ok())
                // `/`-joined like the journal, also on Windows (where Path joins with `\`).
                .and_then(|p| crate::names::RelPath::from_local(p).ok())
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            match journaled.get(&(rel, digest)) {
                None => report.unjournaled.push(file),
                Some(None) => {}
                Some(Some(stored_at)) => {
                    check_time(file, *stored_at, repair_times, &mut report)?;
                }
            }
        }
    }
    if let Ok(entries) = fs::read_dir(data.join("tmp")) {
        for entry in entries {
            report.temp_files.push(entry?.path());
        }
    }
    if let Ok(entries) = fs::read_dir(data.join("journal")) {
        for entry in entries {
            let path = entry?.path();
            let text = fs::read_to_string(&path)?;
            let lines: Vec<&str> = text.lines().collect();
            let bad = lines
                .iter()
                .enumerate()
                // A torn last line is what a crash mid-append leaves; not damage.
                .filter(|(i, l)| {
                    let torn_tail = *i + 1 == lines.len() && !text.ends_with('\n');
                    !torn_tail && serde_json::from_str::<super::JournalEvent>(l).is_err()
                })
                .count();
            if bad > 0 {
                report.journal_errors.push((path, bad));
            }
        }
    }
    Ok(report)
}

/// Compares a version's mtime with its journaled `stored_at`; repairs it if asked.
fn check_time(
    file: PathBuf,
    stored_at: DateTime<Utc>,
    repair: bool,
    report: &mut FsckReport,
) -> io::Result<()> {
    let mtime = fs::metadata(&file)?.modified()?;
    let want = SystemTime::from(stored_at);
    let off = mtime
        .duration_since(want)
        .or_else(|_| want.duration_since(mtime))
        .unwrap_or_default();
    if off < TIME_TOLERANCE {
        return Ok(());
    }
    if repair {
        set_mtime(&file, want)?;
        report.repaired_times += 1;
    } else {
        report.wrong_times.push(WrongTime {
            file,
            mtime: mtime.into(),
            journaled: stored_at,
        });
    }
    Ok(())
}

/// Sets `file`'s mtime durably. The owner (or root) may do that through a read-only
/// handle on Unix; Windows needs write access to the attributes.
fn set_mtime(file: &Path, time: SystemTime) -> io::Result<()> {
    #[cfg(unix)]
    let handle = File::open(file)?;
    #[cfg(not(unix))]
    let handle = OpenOptions::new().write(true).open(file)?;
    handle.set_modified(time)?;
    handle.sync_all()
}

/// The (path, sha256) pairs a user's journal records, with the time of the line
/// that stored the version (`new`; `None` when only repeats are journaled).
fn journaled(log: &Path) -> HashMap<(String, Digest), Option<DateTime<Utc>>> {
    let mut out = HashMap::new();
    let Ok(text) = fs::read_to_string(log) else {
        return out;
    };
    for e in text
        .lines()
        .filter_map(|l| serde_json::from_str::<super::JournalEvent>(l).ok())
    {
        let slot = out.entry((e.path, e.sha256)).or_insert(None);
        if e.event == super::EventKind::New && slot.is_none() {
            *slot = Some(e.time);
        }
    }
    out
}

/// Checks one folder below a user's root; collects every whole version as
/// (file, digest).
fn check_folder(
    dir: &Path,
    is_user_root: bool,
    report: &mut FsckReport,
    versions: &mut Vec<(PathBuf, Digest)>,
) -> io::Result<()> {
    let mut subdirs = Vec::new();
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            subdirs.push(entry.path());
        } else if ft.is_file() {
            files.push(entry.path());
        } else {
            report
                .strays
                .push((entry.path(), "not a regular file or folder"));
        }
    }
    if subdirs.is_empty() && files.is_empty() && !is_user_root {
        report.empty_dirs.push(dir.to_owned());
    }
    if !files.is_empty() && (is_user_root || !subdirs.is_empty()) {
        // Files and folders mixed: the files are the odd ones out.
        for f in files.drain(..) {
            report.strays.push((f, "a file where only folders belong"));
        }
    }
    let container = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    for file in files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !is_version_name_for(name, container) {
            report
                .strays
                .push((file, "name is not <sha256><.ext> of its folder"));
            continue;
        }
        let Some((want, _)) = parse_version_name(name) else {
            continue;
        };
        let (got, size) = Digest::of_reader(File::open(&file)?)?;
        report.versions += 1;
        report.bytes += size;
        if got != want {
            report.mismatches.push(file);
        } else {
            versions.push((file, got));
        }
    }
    for sub in subdirs {
        check_folder(&sub, false, report, versions)?;
    }
    Ok(())
}
