//! `ects fsck`: re-hash every stored version and check the layout.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

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
    /// Another process (a running server or drive) holds the store, so temp files
    /// may be uploads in flight rather than leftovers.
    pub in_use: bool,
}

impl FsckReport {
    pub fn damaged(&self) -> bool {
        !self.mismatches.is_empty()
            || !self.strays.is_empty()
            || !self.journal_errors.is_empty()
            || (!self.temp_files.is_empty() && !self.in_use)
    }
}

/// Checks the store in `data` without changing anything.
pub fn fsck(data: &Path) -> io::Result<FsckReport> {
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
            if !journaled.contains(&(rel, digest)) {
                report.unjournaled.push(file);
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

/// The (path, sha256) pairs a user's journal records.
fn journaled(log: &Path) -> HashSet<(String, Digest)> {
    let Ok(text) = fs::read_to_string(log) else {
        return HashSet::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<super::JournalEvent>(l).ok())
        .map(|e| (e.path, e.sha256))
        .collect()
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
