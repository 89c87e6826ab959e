//! The engine of `ects collect`: ask the server which version of which file each
//! student has (one streamed request for the whole class), then fetch each into
//! `DIR/<student>/<path>` with the server's `stored_at` as its mtime, and write
//! `DIR/manifest.csv`.
//!
//! Safe to run again: a file already there with the right SHA-256 is not fetched again;
//! a file that differs is never replaced without `force`. Every file (and the manifest)
//! is written to a temp file beside its target and renamed into place only once
//! complete and hash-checked, so an interrupted run leaves no half-written file.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use sha2::Digest as _;

use super::http::{Http, encode, encode_path, error_message};
use super::{ClientError, Remote};
use crate::api::{
    CollectEnd, CollectEntry, CollectLine, CollectStatus, MANIFEST_HEADER, UserEntry, manifest_row,
};
use crate::names::{RelPath, UserName};
use crate::store::{Digest, VersionInfo};

/// Longest line accepted in a collect answer (a path is at most 4 KiB).
const MAX_LINE: usize = 64 * 1024;

/// What to collect.
#[derive(Debug, Clone)]
pub struct CollectQuery {
    /// Glob over each student's paths, e.g. `Documents/History/essay*.docx`.
    pub pattern: String,
    /// Only versions stored strictly before this count as on time.
    pub before: Option<DateTime<Utc>>,
    /// `None`: every enabled student.
    pub students: Option<Vec<UserName>>,
}

/// How to write the collection.
#[derive(Debug, Clone, Default)]
pub struct CollectOptions {
    /// Replace files that differ from the version collected.
    pub force: bool,
    /// Also fetch files that have only late versions (their newest).
    pub include_late: bool,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    Fetched,
    /// Already there with the right content.
    Present,
    /// Replaced a differing file (`force`).
    Replaced,
    /// A differing file is in the way; kept as it was.
    Conflict,
    Failed(String),
}

/// Progress, for a bar or log lines.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    /// The listing is complete: this many bytes in this many files are to be handled.
    Planned { files: u64, bytes: u64 },
    File {
        entry: &'a CollectEntry,
        local: &'a Path,
        outcome: &'a FileOutcome,
    },
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub struct CollectReport {
    /// Every line of the manifest, in the server's order.
    pub entries: Vec<CollectEntry>,
    pub fetched: u64,
    pub present: u64,
    pub replaced: u64,
    /// Files kept because they differ (re-run with `force` to replace them).
    pub conflicts: Vec<PathBuf>,
    /// Files that could not be fetched or written, with why.
    pub failures: Vec<(PathBuf, String)>,
    pub manifest: PathBuf,
}

impl CollectReport {
    pub fn ok(&self) -> bool {
        self.conflicts.is_empty() && self.failures.is_empty()
    }

    pub fn count(&self, status: CollectStatus) -> usize {
        self.entries.iter().filter(|e| e.status == status).count()
    }
}

impl Remote {
    /// `GET /api/v1/users` (teachers only).
    pub fn users(&self) -> Result<Vec<UserEntry>, ClientError> {
        let http = &self.http;
        let url = format!("{}/api/v1/users", http.server);
        http.block_on(async {
            let resp = send(http, &url).await?;
            let body = resp.text().await.map_err(|e| http.transport_error(&e))?;
            serde_json::from_str(&body).map_err(|e| protocol(http, format!("bad user list: {e}")))
        })
    }

    /// `GET /api/v1/collect`: hands each line to `each` as it arrives; fails if the
    /// answer ends without its `end` line.
    pub fn collect_lines(
        &self,
        query: &CollectQuery,
        each: &mut dyn FnMut(CollectEntry),
    ) -> Result<CollectEnd, ClientError> {
        let http = &self.http;
        let url = collect_url(&http.server, query);
        http.block_on(async {
            let mut resp = send(http, &url).await?;
            let mut buf: Vec<u8> = Vec::new();
            let mut end = None;
            let mut handle = |line: &[u8]| -> Result<(), ClientError> {
                if line.iter().all(u8::is_ascii_whitespace) {
                    return Ok(());
                }
                if end.is_some() {
                    return Err(protocol(http, "lines after the end of the answer".into()));
                }
                match serde_json::from_slice::<CollectLine>(line) {
                    Ok(CollectLine::Entry(entry)) => each(entry),
                    Ok(CollectLine::End { end: e }) => end = Some(e),
                    Ok(CollectLine::Error { error }) => {
                        return Err(ClientError::Server {
                            server: http.server.clone(),
                            status: 500,
                            message: error,
                        });
                    }
                    Err(e) => return Err(protocol(http, format!("bad collect line: {e}"))),
                }
                Ok(())
            };
            while let Some(chunk) = resp.chunk().await.map_err(|e| http.transport_error(&e))? {
                buf.extend_from_slice(&chunk);
                while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                    handle(&buf[..i])?;
                    buf.drain(..=i);
                }
                if buf.len() > MAX_LINE {
                    return Err(protocol(http, "a line of the answer is too long".into()));
                }
            }
            handle(&buf)?;
            end.ok_or_else(|| ClientError::Unreachable {
                server: http.server.clone(),
                reason: format!(
                    "the answer from the ects server at {} was cut off before its end; run the command again",
                    http.server
                ),
            })
        })
    }

    /// Streams one version of `owner`'s `path` into `out`, checking its SHA-256.
    pub fn fetch_of(
        &self,
        owner: &UserName,
        path: &RelPath,
        sha: &Digest,
        out: &mut dyn Write,
    ) -> Result<u64, ClientError> {
        let http = &self.http;
        let url = format!(
            "{}/api/v1/files/{}/{}?sha256={}",
            http.server,
            encode(owner.as_str()),
            encode_path(path),
            sha.to_hex()
        );
        let (actual, n) = self.download(&url, None, out)?;
        if actual != *sha {
            return Err(ClientError::HashMismatch {
                expected: *sha,
                actual,
            });
        }
        Ok(n)
    }
}

async fn send(http: &Http, url: &str) -> Result<reqwest::Response, ClientError> {
    let resp = http
        .request(Method::GET, url)
        .send()
        .await
        .map_err(|e| http.transport_error(&e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::NOT_FOUND {
        // Here a 404 names what is missing (e.g. an unknown student): keep the message.
        return Err(ClientError::Refused {
            server: http.server.clone(),
            status: status.as_u16(),
            message: error_message(status, &body),
        });
    }
    Err(http.status_error(status, &body))
}

fn protocol(http: &Http, message: String) -> ClientError {
    ClientError::Protocol {
        server: http.server.clone(),
        message,
    }
}

fn collect_url(server: &str, query: &CollectQuery) -> String {
    let mut url = format!("{server}/api/v1/collect?pattern={}", encode(&query.pattern));
    if let Some(before) = query.before {
        url.push_str("&before=");
        url.push_str(&encode(
            &before.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        ));
    }
    if let Some(students) = &query.students {
        let list: Vec<&str> = students.iter().map(UserName::as_str).collect();
        url.push_str("&students=");
        url.push_str(&encode(&list.join(",")));
    }
    url
}

/// Collects into `out`: lists, fetches what is missing, writes the manifest.
pub fn run(
    remote: &Remote,
    query: &CollectQuery,
    out: &Path,
    options: &CollectOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<CollectReport, ClientError> {
    let mut entries = Vec::new();
    remote.collect_lines(query, &mut |e| entries.push(e))?;
    // Never trust names from the network with the local disk: re-validate each.
    for entry in &entries {
        let bad = UserName::parse(&entry.user).is_err()
            || entry
                .path
                .as_deref()
                .is_some_and(|p| RelPath::parse(p).is_err());
        if bad {
            return Err(ClientError::Protocol {
                server: remote.server().to_owned(),
                message: format!("invalid user or path in the answer: {entry:?}"),
            });
        }
    }
    fs::create_dir_all(out).map_err(io_error(format!("creating {}", out.display())))?;
    let wanted = |e: &CollectEntry| match e.status {
        CollectStatus::OnTime => true,
        CollectStatus::LateOnly => options.include_late,
        CollectStatus::Missing => false,
    };
    let (files, bytes) = entries
        .iter()
        .filter(|e| wanted(e))
        .filter_map(|e| e.version.as_ref())
        .fold((0, 0), |(n, b), v| (n + 1, b + v.size));
    progress(Progress::Planned { files, bytes });

    let mut report = CollectReport::default();
    for entry in entries.iter().filter(|e| wanted(e)) {
        let (Some(path), Some(version)) = (&entry.path, &entry.version) else {
            continue;
        };
        let (Ok(user), Ok(path)) = (UserName::parse(&entry.user), RelPath::parse(path)) else {
            continue;
        };
        let local = local_path(out, &user, &path);
        let outcome = match collect_one(remote, &user, &path, version, &local, options.force) {
            Ok(outcome) => outcome,
            Err(e) => FileOutcome::Failed(e.to_string()),
        };
        match &outcome {
            FileOutcome::Fetched => report.fetched += 1,
            FileOutcome::Present => report.present += 1,
            FileOutcome::Replaced => report.replaced += 1,
            FileOutcome::Conflict => report.conflicts.push(local.clone()),
            FileOutcome::Failed(why) => report.failures.push((local.clone(), why.clone())),
        }
        progress(Progress::File {
            entry,
            local: &local,
            outcome: &outcome,
        });
    }

    let manifest = out.join("manifest.csv");
    let mut csv = MANIFEST_HEADER.as_bytes().to_vec();
    for entry in &entries {
        csv.extend_from_slice(manifest_row(entry).as_bytes());
    }
    write_atomically(&manifest, &mut &csv[..], None, true)?;
    report.entries = entries;
    report.manifest = manifest;
    Ok(report)
}

/// `out/<user>/<path components…>`.
pub fn local_path(out: &Path, user: &UserName, path: &RelPath) -> PathBuf {
    let mut local = out.join(user.as_str());
    local.extend(path.components());
    local
}

fn collect_one(
    remote: &Remote,
    user: &UserName,
    path: &RelPath,
    version: &VersionInfo,
    local: &Path,
    force: bool,
) -> Result<FileOutcome, ClientError> {
    let existing = match File::open(local) {
        Ok(file) => {
            Some(sha256_of(file).map_err(io_error(format!("reading {}", local.display())))?)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(ClientError::Io {
                context: format!("reading {}", local.display()),
                source: e,
            });
        }
    };
    if existing == Some(version.sha256) {
        // Right content; make sure the time is right too (a run cut off after the
        // rename but before anything else cannot happen, but a user may touch it).
        set_mtime(local, version.stored_at)?;
        return Ok(FileOutcome::Present);
    }
    if existing.is_some() && !force {
        return Ok(FileOutcome::Conflict);
    }
    let parent = local.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_error(format!("creating {}", parent.display())))?;
    let mut tmp = temp_beside(local)?;
    remote.fetch_of(user, path, &version.sha256, tmp.as_file_mut())?;
    finish(tmp, local, Some(version.stored_at), existing.is_some())?;
    Ok(if existing.is_some() {
        FileOutcome::Replaced
    } else {
        FileOutcome::Fetched
    })
}

fn temp_beside(target: &Path) -> Result<tempfile::NamedTempFile, ClientError> {
    let parent = target.parent().unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".ects-collect-").suffix(".part");
    // Like any file the teacher creates (the umask applies), not tempfile's private 0600.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder.tempfile_in(parent).map_err(io_error(format!(
        "creating a temp file in {}",
        parent.display()
    )))
}

/// Syncs, sets the mtime, and renames into place (replacing only when `replace`).
fn finish(
    tmp: tempfile::NamedTempFile,
    target: &Path,
    mtime: Option<DateTime<Utc>>,
    replace: bool,
) -> Result<(), ClientError> {
    let context = || format!("writing {}", target.display());
    tmp.as_file().sync_all().map_err(io_error(context()))?;
    if let Some(t) = mtime {
        tmp.as_file()
            .set_modified(SystemTime::from(t))
            .map_err(io_error(context()))?;
    }
    if replace {
        tmp.persist(target)
            .map_err(|e| io_error(context())(e.error))?;
    } else {
        // Fails rather than replace a file that appeared meanwhile.
        tmp.persist_noclobber(target)
            .map_err(|e| io_error(context())(e.error))?;
    }
    Ok(())
}

fn write_atomically(
    target: &Path,
    body: &mut dyn Read,
    mtime: Option<DateTime<Utc>>,
    replace: bool,
) -> Result<(), ClientError> {
    let mut tmp = temp_beside(target)?;
    io::copy(body, tmp.as_file_mut()).map_err(io_error(format!("writing {}", target.display())))?;
    finish(tmp, target, mtime, replace)
}

fn set_mtime(path: &Path, t: DateTime<Utc>) -> Result<(), ClientError> {
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::from(t)))
        .map_err(io_error(format!("setting the time of {}", path.display())))
}

fn sha256_of(mut file: File) -> io::Result<Digest> {
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Digest::from_bytes(hasher.finalize().into()))
}

fn io_error(context: String) -> impl FnOnce(io::Error) -> ClientError {
    move |source| ClientError::Io { context, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let q = CollectQuery {
            pattern: "Docs/essay*.docx".into(),
            before: DateTime::from_timestamp(1_714_567_890, 0),
            students: Some(vec![
                UserName::parse("a").unwrap(),
                UserName::parse("b.c").unwrap(),
            ]),
        };
        assert_eq!(
            collect_url("http://h:1", &q),
            "http://h:1/api/v1/collect?pattern=Docs%2Fessay%2A.docx&before=2024-05-01T12%3A51%3A30Z&students=a%2Cb.c"
        );
    }

    #[test]
    fn local_paths_stay_inside() {
        let p = local_path(
            Path::new("/out"),
            &UserName::parse("alice").unwrap(),
            &RelPath::parse("Docs/a b.txt").unwrap(),
        );
        assert_eq!(p, Path::new("/out/alice/Docs/a b.txt"));
    }

    #[test]
    fn atomic_writes_never_clobber_without_replace() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        write_atomically(&f, &mut &b"one"[..], None, false).unwrap();
        assert!(write_atomically(&f, &mut &b"two"[..], None, false).is_err());
        assert_eq!(fs::read(&f).unwrap(), b"one");
        let t = DateTime::from_timestamp(1_000_000_000, 0).unwrap();
        write_atomically(&f, &mut &b"two"[..], Some(t), true).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"two");
        let mtime = fs::metadata(&f).unwrap().modified().unwrap();
        assert_eq!(mtime, SystemTime::from(t));
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }
}
