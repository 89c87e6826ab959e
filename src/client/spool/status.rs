//! What the spool is doing, as data ([`SpoolStatus`]) and as the text that `ects status`
//! prints and the drive shows in `.ects-status.txt` ([`render_status`]).

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Local, Utc};
use serde::{Deserialize, Serialize};

use super::SpoolError;
use super::journal::{self, ForeignRecords};
use crate::store::Digest;

/// A version the server refused for good. Its bytes stay in the spool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedUpload {
    pub id: u64,
    pub path: String,
    pub sha256: Digest,
    pub size: u64,
    /// The HTTP status (0 when the spool's own copy was found damaged).
    pub status: u16,
    /// The server's reason, for a person.
    pub message: String,
    pub time: DateTime<Utc>,
}

/// A version the drive could not copy into the spool (spool disk full, spool folder
/// removed...): it was never queued, so the student must hear about it. Cleared when a
/// later version of the same path is captured (the file's newer content is safe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostCapture {
    pub path: String,
    pub message: String,
    pub time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub time: DateTime<Utc>,
    pub message: String,
}

/// The status line naming the spool folder (`ects status --drive` reads it back).
pub const SPOOL_LINE: &str = "Kept here until sent: ";

/// How many waiting paths the status names.
pub const WAITING_SHOWN: usize = 10;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolStatus {
    /// Versions captured but not yet stored on the server (durable or not yet).
    pub pending: usize,
    pub pending_bytes: u64,
    /// When the oldest pending version was captured.
    pub oldest_pending: Option<DateTime<Utc>>,
    /// The paths of the oldest pending versions (at most [`WAITING_SHOWN`]).
    #[serde(default)]
    pub waiting: Vec<String>,
    /// Uploads being sent right now.
    pub uploading: usize,
    pub failed: Vec<FailedUpload>,
    /// Versions that could not be captured at all (oldest first).
    #[serde(default)]
    pub lost: Vec<LostCapture>,
    pub last_error: Option<LastError>,
    /// `None` when nothing has been tried yet (or this is a read-only view).
    pub server_reachable: Option<bool>,
    /// The server refused the password: uploads are paused until the next start.
    #[serde(default)]
    pub credentials_refused: bool,
    /// Journal records the spool refused because it did not write them (planted or
    /// edited); nothing they name is uploaded.
    #[serde(default)]
    pub foreign: Option<ForeignRecords>,
    /// Set when versions go to a local (embedded) store instead of a server.
    pub local_store: Option<String>,
    /// The spool folder, so `ects status --drive DIR` finds a mounted drive's spool.
    #[serde(default)]
    pub spool_dir: Option<std::path::PathBuf>,
    /// Versions stored on the server since the spool was created.
    pub done: u64,
    /// Captures and group commits made by this process (shows the grouping at work).
    pub captures: u64,
    pub commits: u64,
}

impl SpoolStatus {
    /// Reads a spool folder without taking it over: no uploads start, nothing is
    /// written. Safe while a drive or `ects backup` is using the folder.
    pub fn read(dir: &Path) -> Result<SpoolStatus, SpoolError> {
        if !dir.join(journal::JOURNAL).exists() {
            return Err(SpoolError::NotASpool(dir.to_owned()));
        }
        let key = journal::Key::load(dir)
            .map_err(|e| SpoolError::io(dir, "reading the journal key", e))?;
        let legacy = journal::legacy_trusted(dir)
            .map_err(|e| SpoolError::io(dir, "reading the journal key", e))?;
        let state = journal::replay(dir, key.as_ref(), legacy)
            .map_err(|e| SpoolError::io(dir, "reading the journal", e))?;
        Ok(SpoolStatus {
            pending: state.pending.len(),
            pending_bytes: state.pending.values().map(|c| c.size).sum(),
            oldest_pending: state.pending.values().map(|c| c.time).min(),
            waiting: state
                .pending
                .values()
                .take(WAITING_SHOWN)
                .map(|c| c.path.clone())
                .collect(),
            uploading: 0,
            failed: state.failed.values().map(|(_, f)| f.clone()).collect(),
            lost: state.lost.values().cloned().collect(),
            last_error: state.last_error,
            server_reachable: None,
            spool_dir: Some(dir.to_owned()),
            foreign: state.foreign,
            credentials_refused: state.credentials_refused,
            // A read-only view cannot tell; the drive's own status file can.
            local_store: None,
            done: state.done,
            captures: 0,
            commits: 0,
        })
    }
}

/// Bytes for a person: `0 B`, `12.3 KiB`, `4.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - t).num_seconds().max(0);
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86400 => format!("{} h {} min ago", s / 3600, s % 3600 / 60),
        _ => format!("{} days ago", s / 86400),
    }
}

/// The status as text for a student or teacher; what `ects status` prints and the
/// drive's `.ects-status.txt` shows.
pub fn render_status(s: &SpoolStatus) -> String {
    render_status_at(s, Utc::now())
}

pub(super) fn render_status_at(s: &SpoolStatus, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "ects backup status, {}", local(now));
    let _ = writeln!(out);
    if let Some(store) = &s.local_store {
        let _ = writeln!(out, "Versions go to:    {store}");
    } else {
        let server = match s.server_reachable {
            _ if s.credentials_refused => {
                "REFUSED YOUR PASSWORD: uploads are paused; saved versions wait on this computer. \
                 Mount the drive again with the right password (or ask your teacher to check your account)"
            }
            Some(true) => "reachable",
            Some(false) => "NOT reachable: saved versions wait on this computer and are sent later",
            None => "not contacted yet",
        };
        let _ = writeln!(out, "Server:            {server}");
    }
    if s.pending == 0 {
        let where_ = if s.local_store.is_some() {
            "stored"
        } else {
            "on the server"
        };
        let _ = writeln!(
            out,
            "Waiting to upload: nothing, every saved version is {where_}"
        );
    } else {
        let _ = write!(
            out,
            "Waiting to upload: {} version{}, {}",
            s.pending,
            if s.pending == 1 { "" } else { "s" },
            human_bytes(s.pending_bytes)
        );
        if let Some(t) = s.oldest_pending {
            let _ = write!(out, " (oldest saved {}, {})", local(t), ago(t, now));
        }
        let _ = writeln!(out);
        for p in &s.waiting {
            let _ = writeln!(out, "  waiting: {p}");
        }
        if s.pending > s.waiting.len() && !s.waiting.is_empty() {
            let _ = writeln!(out, "  … and {} more", s.pending - s.waiting.len());
        }
    }
    if s.uploading > 0 {
        let _ = writeln!(out, "Uploading now:     {}", s.uploading);
    }
    if let Some(dir) = &s.spool_dir {
        let _ = writeln!(out, "{SPOOL_LINE}{}", dir.display());
    }
    let _ = writeln!(
        out,
        "Uploaded:          {} version{}",
        s.done,
        if s.done == 1 { "" } else { "s" }
    );
    match &s.last_error {
        Some(e) => {
            let _ = writeln!(
                out,
                "Last error:        {} ({}): {}",
                local(e.time),
                ago(e.time, now),
                e.message
            );
        }
        None => {
            let _ = writeln!(out, "Last error:        none");
        }
    }
    if !s.lost.is_empty() {
        let _ = writeln!(
            out,
            "\nVersions NOT saved: {} (ects could not copy them into its upload spool on this computer; fix the cause below, then save these files again):",
            s.lost.len()
        );
        for l in &s.lost {
            let _ = writeln!(out, "  {}  {}: {}", local(l.time), l.path, l.message);
        }
    }
    if let Some(f) = &s.foreign {
        let _ = writeln!(
            out,
            "\nRefused journal records: {} (this computer's upload spool holds records ects did not write, last seen {}; nothing they name was uploaded, their files are kept in the spool's \"refused\" folder; tell your teacher)",
            f.lines,
            local(f.time)
        );
    }
    if s.failed.is_empty() {
        let _ = writeln!(out, "Failed uploads:    none");
    } else {
        let _ = writeln!(
            out,
            "\nFailed uploads: {} (the server refused these versions; they are kept on this computer, ask your teacher; \
             once the cause is fixed `ects status --retry-failed` sends them again, `ects status --dismiss` takes them off this list and moves their bytes to the cache's not-uploaded folder):",
            s.failed.len()
        );
        for f in &s.failed {
            let why = if f.status == 0 {
                f.message.clone()
            } else {
                format!("HTTP {}: {}", f.status, f.message)
            };
            let _ = writeln!(
                out,
                "  {}  {}  ({}, {}): {}",
                local(f.time),
                f.path,
                f.sha256.short(),
                human_bytes(f.size),
                why
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn render() {
        let now = Utc::now();
        let empty = render_status_at(&SpoolStatus::default(), now);
        assert!(
            empty.contains("nothing, every saved version is on the server"),
            "{empty}"
        );
        assert!(empty.contains("Failed uploads:    none"));
        let local = render_status_at(
            &SpoolStatus {
                local_store: Some("this computer's own store (no server)".into()),
                server_reachable: Some(true),
                ..SpoolStatus::default()
            },
            now,
        );
        assert!(
            local.contains("Versions go to:    this computer's own store"),
            "{local}"
        );
        assert!(!local.contains("Server:"), "{local}");
        assert!(local.contains("every saved version is stored"), "{local}");
        let s = SpoolStatus {
            pending: 2,
            pending_bytes: 2048,
            oldest_pending: Some(now - chrono::Duration::seconds(125)),
            failed: vec![FailedUpload {
                id: 7,
                path: "Documents/big.iso".into(),
                sha256: Digest::of(b"x"),
                size: 5 << 30,
                status: 413,
                message: "the file is larger than the limit".into(),
                time: now,
            }],
            last_error: Some(LastError {
                time: now,
                message: "cannot reach the server http://x: connection refused".into(),
            }),
            server_reachable: Some(false),
            done: 1,
            ..Default::default()
        };
        let text = render_status_at(&s, now);
        for want in [
            "NOT reachable",
            "2 versions, 2.0 KiB",
            "2 min ago",
            "Uploaded:          1 version\n",
            "connection refused",
            "Documents/big.iso",
            "HTTP 413: the file is larger than the limit",
            &Digest::of(b"x").short(),
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }
}
