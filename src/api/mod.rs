//! The wire contract shared by the client and the server (SPEC §3): header names,
//! the JSON bodies, the collect answer's line types and manifest CSV, and the one
//! table from a store error to its HTTP status. Neither side defines these itself, so
//! they cannot drift apart; `client/` depends on this module, never on `server/`.

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};

use crate::store::{JournalEvent, StoreError, VersionInfo};
use crate::users::Role;

/// The SHA-256 of a version's content, hex: sent with a PUT (checked by the server)
/// and answered with a GET/HEAD (checked by the client).
pub const SHA256_HEADER: &str = "x-content-sha256";

/// `{"error": "<for a person>"}`: the body of every refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// The HTTP status the server answers for a store error; `None` for the server's
/// own failures (500, detail only in its log). The embedded store's uploader uses the
/// same numbers, so a refused version reads the same with or without a server.
pub fn store_error_status(e: &StoreError) -> Option<u16> {
    Some(match e {
        StoreError::Name(_) | StoreError::Body(_) => 400,
        StoreError::Collision(_) => 409,
        StoreError::TooLarge { .. } => 413,
        StoreError::HashMismatch { .. } => 422,
        StoreError::QuotaExceeded { .. } | StoreError::NoSpace => 507,
        StoreError::NotFound => 404,
        StoreError::Io(_) | StoreError::Locked(_) => return None,
    })
}

/// The answer of `GET /api/v1/changes/{user}`: the journal's events after the cursor
/// asked for, oldest first, and the cursor to ask with next (opaque to clients).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub events: Vec<JournalEvent>,
    pub cursor: String,
}

/// The longest `wait` of a change-feed long-poll, in seconds; more is cut to this.
pub const MAX_CHANGES_WAIT_SECS: u64 = 30;

/// One user in `GET /api/v1/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
}

/// Where a student stands for one collected file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CollectStatus {
    /// A version was stored before the deadline (or there is no deadline).
    OnTime,
    /// The file exists, but every version was stored at or after the deadline.
    LateOnly,
    /// Nothing of the student matches the pattern.
    Missing,
}

impl CollectStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectStatus::OnTime => "on-time",
            CollectStatus::LateOnly => "late-only",
            CollectStatus::Missing => "missing",
        }
    }
}

/// One line of the collect answer about a student: a matching file with the version
/// chosen (on-time: the newest before the deadline; late-only: the newest of all), or
/// the student's one `missing` line (no `path`, no version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectEntry {
    pub user: String,
    pub status: CollectStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionInfo>,
}

/// The last line of a complete answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectEnd {
    pub students: u64,
    pub files: u64,
}

/// Any line of the collect answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CollectLine {
    Entry(CollectEntry),
    End {
        end: CollectEnd,
    },
    /// The server failed part-way; no `end` line follows.
    Error {
        error: String,
    },
}

/// The manifest's header line.
pub const MANIFEST_HEADER: &str = "student,path,sha256,size,stored_at,status\r\n";

/// One manifest line (RFC 4180 CSV, CRLF) for an entry.
pub fn manifest_row(entry: &CollectEntry) -> String {
    let path = entry.path.as_deref().unwrap_or("");
    let (sha, size, at) = match &entry.version {
        Some(v) => (
            v.sha256.to_hex(),
            v.size.to_string(),
            v.stored_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        ),
        None => Default::default(),
    };
    format!(
        "{},{},{},{},{},{}\r\n",
        csv_field(&entry.user),
        csv_field(path),
        sha,
        size,
        at,
        entry.status.as_str()
    )
}

/// Quotes a field when needed (RFC 4180). A field a spreadsheet would run as a formula
/// (starting with `=`, `+`, `-`, `@`) gets a leading `'`: file names come from students.
pub fn csv_field(value: &str) -> String {
    let guarded;
    let value = if value.starts_with(['=', '+', '-', '@']) {
        guarded = format!("'{value}");
        guarded.as_str()
    } else {
        value
    };
    if value.contains([',', '"', '\r', '\n']) || value.starts_with(' ') || value.ends_with(' ') {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}
