use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Local, Utc};

use crate::cli::RestoreArgs;
use crate::client::Remote;
use crate::client::spool::human_bytes;
use crate::names::RelPath;
use crate::store::VersionInfo;

use super::time::TypedTime;

/// `ects restore PATH [--sha256 H | --at TIME] [-o OUT] [--force]`. Writes to a temp file
/// beside OUT and renames it into place only once the download is complete and its hash
/// checked, so a failure leaves nothing behind; never replaces a file without --force.
pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let path = RelPath::parse(args.path.trim_start_matches("./"))
        .map_err(|e| anyhow!("{:?} is not a path in your backup: {e}", args.path))?;
    let at = args
        .at
        .as_deref()
        .map(|s| super::time::parse_typed_time("--at", s))
        .transpose()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(path.file_name()));
    let to_stdout = out.as_os_str() == "-";
    if !to_stdout && !args.force && out.symlink_metadata().is_ok() {
        bail!(
            "{} already exists; use --force to replace it, or -o to write somewhere else",
            out.display()
        );
    }
    let cfg = super::connect::config(&args.connect)?;
    let remote = Remote::connect(&cfg)?;
    let list = remote.versions(&path)?;
    if list.is_empty() {
        bail!(
            "no versions of {path} are stored for {} at {}",
            cfg.user,
            cfg.server
        );
    }
    let version = choose(&list, args.sha256.as_deref(), at, &path)?;
    if let (Some(at), None) = (at, &args.sha256) {
        // Say which one: a person compares it with what `ects versions` shows.
        let older = list
            .iter()
            .filter(|v| v.stored_at < version.stored_at)
            .count();
        eprintln!(
            "--at {}: chose version {} of {} ({}, stored {}), the newest stored within or before {}",
            args.at.as_deref().unwrap_or_default(),
            older + 1,
            list.len(),
            version.sha256.short(),
            local(version.stored_at),
            at.unit()
        );
    }
    if to_stdout {
        let stdout = std::io::stdout();
        let mut w = BufWriter::new(stdout.lock());
        remote.fetch(&path, &version.sha256, &mut w)?;
        w.flush().context("writing to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    write_atomically(&remote, &path, version, &out, args.force)?;
    eprintln!(
        "restored {path} ({}, {}, stored {}) to {}",
        version.sha256.short(),
        human_bytes(version.size),
        version
            .stored_at
            .with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S"),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn write_atomically(
    remote: &Remote,
    path: &RelPath,
    version: &VersionInfo,
    out: &Path,
    force: bool,
) -> anyhow::Result<()> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".ects-restore-")
        .tempfile_in(parent)
        .with_context(|| format!("cannot create a file in {}", parent.display()))?;
    {
        let mut w = BufWriter::with_capacity(256 * 1024, tmp.as_file());
        remote.fetch(path, &version.sha256, &mut w)?;
        w.flush()
            .with_context(|| format!("writing into {}", parent.display()))?;
    }
    let file = tmp.as_file();
    file.sync_all()
        .with_context(|| format!("writing into {}", parent.display()))?;
    let _ = file.set_modified(version.stored_at.into());
    let persisted = if force {
        tmp.persist(out).map(|_| ())
    } else {
        // Link-based: fails instead of replacing a file that appeared meanwhile.
        tmp.persist_noclobber(out).map(|_| ())
    };
    persisted.map_err(|e| anyhow!("cannot write {}: {}", out.display(), e.error))
}

/// The version asked for: by hash (full or a unique prefix), by time, or the newest.
fn choose<'a>(
    list: &'a [VersionInfo],
    sha: Option<&str>,
    at: Option<TypedTime>,
    path: &RelPath,
) -> anyhow::Result<&'a VersionInfo> {
    if let Some(prefix) = sha {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("--sha256 {prefix:?} is not a hexadecimal hash (or the start of one)");
        }
        let hits: Vec<&VersionInfo> = list
            .iter()
            .filter(|v| v.sha256.to_hex().starts_with(&prefix))
            .collect();
        return match hits.as_slice() {
            [one] => Ok(one),
            [] => bail!(
                "no version of {path} has a SHA-256 starting with {prefix}; see `ects versions {path}`"
            ),
            _ => bail!(
                "{} versions of {path} start with {prefix}; give more digits",
                hits.len()
            ),
        };
    }
    if let Some(at) = at {
        return list
            .iter()
            .filter(|v| at.covers(v.stored_at))
            .max_by_key(|v| v.stored_at)
            .ok_or_else(|| {
                anyhow!(
                    "{path} has no version stored at or before {}; the first is from {}",
                    local(at.start),
                    local(list.iter().map(|v| v.stored_at).min().unwrap_or(at.start))
                )
            });
    }
    list.iter()
        .max_by_key(|v| v.stored_at)
        .ok_or_else(|| anyhow!("no versions of {path}"))
}

/// A time as `ects versions` shows it.
fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Digest;

    fn v(n: u8, secs: i64) -> VersionInfo {
        VersionInfo {
            sha256: Digest::of(&[n]),
            size: 1,
            stored_at: DateTime::from_timestamp(secs, 0).unwrap(),
        }
    }

    #[test]
    fn choosing() {
        let list = [v(1, 100), v(2, 200), v(3, 300)];
        let p = RelPath::parse("a").unwrap();
        assert_eq!(choose(&list, None, None, &p).unwrap(), &list[2]);
        let second = |secs| {
            Some(TypedTime {
                start: DateTime::from_timestamp(secs, 0).unwrap(),
                len: chrono::TimeDelta::seconds(1),
            })
        };
        assert_eq!(choose(&list, None, second(250), &p).unwrap(), &list[1]);
        assert!(choose(&list, None, second(50), &p).is_err());
        // A version stored within the typed second counts.
        let mut late = list.clone();
        late[1].stored_at += chrono::TimeDelta::milliseconds(700);
        assert_eq!(choose(&late, None, second(200), &p).unwrap(), &late[1]);
        let full = list[0].sha256.to_hex();
        assert_eq!(choose(&list, Some(&full), None, &p).unwrap(), &list[0]);
        assert_eq!(
            choose(&list, Some(&full[..8].to_uppercase()), None, &p).unwrap(),
            &list[0]
        );
        assert!(choose(&list, Some("zz"), None, &p).is_err());
        assert!(choose(&list, Some("ffffffffff"), None, &p).is_err());
    }
}
