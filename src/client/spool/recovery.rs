//! Opening a spool after a run (or a crash): replay the journal, drop what a crash cut
//! off, and send nothing that is not whole.

use std::fs;
use std::path::Path;

use chrono::Utc;

use super::journal::{self, JournalFile, Record};
use super::state::{Entry, State, data_file};
use super::status::FailedUpload;
use super::{REFUSED, SpoolError};
use crate::names::RelPath;

/// Replays the journal, drops what a crash cut off, and rewrites the journal compactly.
pub(super) fn recover(dir: &Path, captures_dir: &Path) -> Result<(State, JournalFile), SpoolError> {
    // Decided before the key exists: an upgraded spool's own records still go up.
    let legacy = journal::legacy_trusted(dir)
        .map_err(|e| SpoolError::io(dir, "reading the journal key", e))?;
    let key = journal::Key::load_or_create(dir)
        .map_err(|e| SpoolError::io(dir, "reading the journal key", e))?;
    let mut replayed = journal::replay(dir, Some(&key), legacy)
        .map_err(|e| SpoolError::io(dir, "reading the journal", e))?;
    if replayed.bad_lines > 0 {
        tracing::warn!(
            lines = replayed.bad_lines,
            "skipped unreadable spool journal lines (a write cut off by a crash)"
        );
    }
    // Data files: keep those a record names, delete the rest (captures cut off by a crash,
    // or uploads whose "done" record was durable before the file was removed).
    let mut max_file_id = 0;
    let listing =
        fs::read_dir(captures_dir).map_err(|e| SpoolError::io(dir, "listing captures", e))?;
    let mut discarded = 0usize;
    for item in listing {
        let item = item.map_err(|e| SpoolError::io(dir, "listing captures", e))?;
        let name = item.file_name();
        let id = name
            .to_str()
            .and_then(|n| n.strip_suffix(".data"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(id) = id {
            max_file_id = max_file_id.max(id + 1);
            if replayed.pending.contains_key(&id) || replayed.failed.contains_key(&id) {
                continue;
            }
            if replayed.foreign_ids.contains(&id) {
                // Named only by a record this spool did not write: never sent, but not
                // ours to delete either. Kept aside for a person to look at.
                quarantine(dir, &item.path(), &name);
                continue;
            }
        }
        discarded += 1;
        let _ = fs::remove_file(item.path());
    }
    if discarded > 0 {
        tracing::info!(
            discarded,
            "removed spool files without a durable record (captures cut off by a crash)"
        );
    }
    let now = Utc::now();
    let mut state = State {
        next_id: replayed.next_id.max(max_file_id).max(1),
        done: replayed.done,
        last_error: replayed.last_error.clone(),
        lost: std::mem::take(&mut replayed.lost),
        foreign: replayed.foreign.clone(),
        ..State::default()
    };
    // A recorded capture whose data is not whole is never uploaded as if it were.
    let pending = std::mem::take(&mut replayed.pending);
    for (id, c) in pending {
        let actual = fs::metadata(data_file(captures_dir, id)).map(|m| m.len());
        let damage = match actual {
            Ok(n) if n == c.size => None,
            Ok(n) => Some(format!(
                "the spool's copy is damaged ({n} of {} bytes); the file on disk was not changed, save it again",
                c.size
            )),
            Err(e) => Some(format!(
                "the spool's copy is missing ({e}); save the file again"
            )),
        };
        let path = RelPath::parse(&c.path);
        match (damage, path) {
            (None, Ok(path)) => {
                state.pending.insert(id, Entry::from_rec(path, &c));
            }
            (damage, path) => {
                let message = damage.unwrap_or_else(|| match path {
                    Err(e) => format!("the spool names a bad path: {e}"),
                    Ok(_) => String::new(),
                });
                tracing::warn!(path = %c.path, %message, "spool entry cannot be uploaded");
                let f = FailedUpload {
                    id,
                    path: c.path.clone(),
                    sha256: c.sha256,
                    size: c.size,
                    status: 0,
                    message,
                    time: now,
                };
                replayed.failed.insert(id, (c, f));
            }
        }
    }
    state.failed = replayed.failed;
    let snapshot = snapshot_records(&state);
    let journal = JournalFile::rewrite(dir, &key, &snapshot)
        .map_err(|e| SpoolError::io(dir, "rewriting the journal", e))?;
    if !state.pending.is_empty() {
        tracing::info!(
            pending = state.pending.len(),
            "upload spool: sending versions left by an earlier run"
        );
    }
    Ok((state, journal))
}

/// Moves a data file a foreign record named to `<spool>/refused/`.
fn quarantine(dir: &Path, file: &Path, name: &std::ffi::OsStr) {
    let refused = dir.join(REFUSED);
    let moved =
        crate::private::own_dir(&refused).and_then(|()| fs::rename(file, refused.join(name)));
    match moved {
        Ok(()) => tracing::warn!(
            file = %refused.join(name).display(),
            "kept aside a spool file named only by a journal record this spool did not write"
        ),
        Err(e) => {
            tracing::warn!(file = %file.display(), "could not move a refused spool file aside: {e}")
        }
    }
}

/// Records that rebuild `st`'s durable part (for compaction).
pub(super) fn snapshot_records(st: &State) -> Vec<Record> {
    let mut r = journal::Replayed {
        done: st.done,
        next_id: st.next_id,
        last_error: st.last_error.clone(),
        lost: st.lost.clone(),
        failed: st.failed.clone(),
        foreign: st.foreign.clone(),
        credentials_refused: st.credentials_refused,
        ..Default::default()
    };
    for e in st.pending.values() {
        r.pending.insert(e.id, e.rec());
    }
    r.records()
}
