use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::cli::StatusArgs;
use std::sync::Arc;

use crate::client::spool::SpoolError;
use crate::client::{
    ConnectConfig, HttpUploader, Remote, Spool, SpoolOptions, SpoolStatus, UploadError, Uploader,
    render_status, spool_dir,
};
use crate::names::{RelPath, UserName};
use crate::store::Digest;

/// `ects status [--cache DIR] [--server URL]`: the spool of a drive or backup, read
/// without taking it over (works while the drive runs). Exit 1 when uploads failed.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if args.wait {
        return wait_for_uploads(&args);
    }
    if args.retry_failed || args.dismiss {
        return fix_failed(&args);
    }
    let spools = find_spools(&args)?;
    let reachable = args
        .connect
        .server
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|server| server_answers(server, &args));
    let mut any_failed = false;
    for (i, dir) in spools.iter().enumerate() {
        let mut status = SpoolStatus::read(dir)?;
        status.server_reachable = reachable;
        any_failed |= !status.failed.is_empty() || !status.lost.is_empty();
        if spools.len() > 1 {
            if i > 0 {
                println!();
            }
            println!("== {}", dir.display());
        }
        print!("{}", render_status(&status));
    }
    Ok(if any_failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Where `--dismiss` puts the bytes of failed versions: `<cache>/not-uploaded/<path>`.
const NOT_UPLOADED: &str = "not-uploaded";

/// `ects status --retry-failed` / `--dismiss`: takes the spool over (so the drive must
/// not be running on it), re-queues or dismisses the failed versions, and records it.
fn fix_failed(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let spools = find_spools(args)?;
    let [dir] = spools.as_slice() else {
        bail!(
            "{} upload spools here; say which with --cache DIR (or --server and --user)",
            spools.len()
        );
    };
    let send_now = args.retry_failed && args.connect.server.is_some();
    let uploader: Arc<dyn Uploader> = if send_now {
        let cfg = super::connect::config(&args.connect)?;
        Arc::new(HttpUploader::new(&Remote::connect(&cfg)?))
    } else {
        Arc::new(NotNow)
    };
    let workers = if send_now { 2 } else { 0 };
    let spool = Spool::open(
        dir,
        uploader,
        SpoolOptions {
            workers,
            ..SpoolOptions::default()
        },
    )
    .map_err(|e| match e {
        SpoolError::Locked(_) => anyhow::anyhow!(
            "{e}: unmount the drive (or let the backup finish) first, then run this again"
        ),
        e => e.into(),
    })?;
    if args.dismiss {
        // The drive's cache folder: the spool's parent when the spool sits where a
        // cache keeps it, else the folder given (a spool passed as --cache itself);
        // never a folder outside the cache, such as the home folder.
        let cache = match dir.parent() {
            Some(parent) if spool_dir(parent) == *dir => parent,
            _ => dir,
        };
        let moved = spool.dismiss_failed(&cache.join(NOT_UPLOADED))?;
        for (path, to) in &moved {
            println!("dismissed {path}: its bytes are in {}", to.display());
        }
        println!("{} failed upload(s) dismissed", moved.len());
        spool.drain(Duration::ZERO);
        return Ok(ExitCode::SUCCESS);
    }
    let n = spool.retry_failed();
    if !send_now {
        spool.drain(Duration::ZERO);
        println!("{n} failed upload(s) queued again; they are sent at the next mount or backup");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{n} failed upload(s) queued again; sending");
    let left = spool.drain(Duration::from_secs(args.timeout.unwrap_or(60)));
    let status = spool.status();
    print!("{}", render_status(&status));
    Ok(if left == 0 && status.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The uploader of a spool opened without workers: never called.
struct NotNow;

impl Uploader for NotNow {
    fn exists(&self, _: &RelPath, _: &Digest) -> Result<bool, UploadError> {
        Err(UploadError::transient("not sending from `ects status`"))
    }
    fn upload(&self, _: &RelPath, _: &Path, _: &Digest, _: u64) -> Result<(), UploadError> {
        Err(UploadError::transient("not sending from `ects status`"))
    }
}

/// The paths of the oldest waiting versions, one per line.
fn print_waiting(statuses: &[SpoolStatus]) {
    for s in statuses {
        for p in &s.waiting {
            println!("  {p}");
        }
    }
}

/// Exit code of `ects status --wait` when --timeout passed with uploads still pending.
const TIMED_OUT: u8 = 3;

/// `ects status --wait [--timeout S]`: polls the spool(s) until nothing is pending.
/// Another process (the drive, `ects backup`) does the uploading; this only watches.
fn wait_for_uploads(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let spools = match find_spools(args) {
        Ok(s) => s,
        Err(e) => {
            // At logoff, a drive that never captured anything has nothing to send.
            println!("nothing to wait for: {e}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let deadline = args
        .timeout
        .map(|s| Instant::now() + Duration::from_secs(s));
    let mut announced = false;
    loop {
        let statuses = spools
            .iter()
            .map(|d| SpoolStatus::read(d))
            .collect::<Result<Vec<_>, _>>()?;
        let pending: usize = statuses.iter().map(|s| s.pending).sum();
        let failed: usize = statuses.iter().map(|s| s.failed.len()).sum();
        if pending == 0 {
            if failed > 0 {
                for s in &statuses {
                    print!("{}", render_status(s));
                }
                println!(
                    "all uploads done, but {failed} were refused by the server (see above); \
                     `ects status --retry-failed` sends them again once the cause is fixed, \
                     `ects status --dismiss` takes them off the list (their bytes are kept)"
                );
                return Ok(ExitCode::from(1));
            }
            println!("all uploads done");
            return Ok(ExitCode::SUCCESS);
        }
        if statuses.iter().any(|s| s.credentials_refused) {
            // Nothing is sent until the drive starts again with a password that works:
            // say so now instead of waiting out the timeout.
            for s in &statuses {
                print!("{}", render_status(s));
            }
            println!(
                "{pending} version(s) wait for a password the server accepts; they stay in the \
                 spool and are sent by the next mount or backup with the right password"
            );
            return Ok(ExitCode::from(super::EXIT_CREDENTIALS_REFUSED));
        }
        let bytes: u64 = statuses.iter().map(|s| s.pending_bytes).sum();
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            println!(
                "timed out after {} s: {pending} version(s) ({}) still waiting to upload; \
                 they stay in the spool and are sent by the next mount (is the drive still running?)",
                args.timeout.unwrap_or(0),
                crate::client::spool::human_bytes(bytes),
            );
            print_waiting(&statuses);
            return Ok(ExitCode::from(TIMED_OUT));
        }
        if !announced {
            println!(
                "waiting for {pending} version(s) ({}) to upload:",
                crate::client::spool::human_bytes(bytes)
            );
            print_waiting(&statuses);
            announced = true;
        }
        let step = Duration::from_millis(250);
        std::thread::sleep(left.map_or(step, |l| l.min(step)));
    }
}

/// `GET /api/v1/health` (no credentials needed).
fn server_answers(server: &str, args: &StatusArgs) -> bool {
    let user = args
        .connect
        .user
        .as_deref()
        .and_then(|u| UserName::parse(u).ok())
        .or_else(|| UserName::parse("status").ok());
    let Some(user) = user else { return false };
    let mut cfg = ConnectConfig::new(server, user, String::new());
    cfg.ca_file = args.connect.ca_file.clone();
    Remote::connect(&cfg).and_then(|r| r.health()).is_ok()
}

/// The spool named by --cache (the cache folder or the spool folder itself), or the
/// default one for --server/--user, or every spool under the default cache folder.
fn find_spools(args: &StatusArgs) -> anyhow::Result<Vec<PathBuf>> {
    let is_spool = |d: &Path| d.join("journal.log").is_file();
    if let Some(drive) = &args.drive {
        let file = drive.join(".ects-status.txt");
        let text = std::fs::read_to_string(&file).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a mounted ects drive (cannot read {}: {e})",
                drive.display(),
                file.display()
            )
        })?;
        let dir = text
            .lines()
            .find_map(|l| l.strip_prefix(crate::client::spool::SPOOL_LINE))
            .map(PathBuf::from)
            .filter(|d| is_spool(d));
        return match dir {
            Some(d) => Ok(vec![d]),
            None => bail!(
                "the drive at {} has saved nothing yet (its status names no upload spool)",
                drive.display()
            ),
        };
    }
    if let Some(cache) = &args.cache {
        for d in [spool_dir(cache), cache.clone()] {
            if is_spool(&d) {
                return Ok(vec![d]);
            }
        }
        bail!(
            "no upload spool in {}: nothing was ever captured there (is it the drive's --cache folder?)",
            cache.display()
        );
    }
    if let (Some(server), Some(user)) = (&args.connect.server, &args.connect.user)
        && let Ok(user) = UserName::parse(user)
        && let Some(cache) = crate::client::default_cache_dir(server, &user)
    {
        // This drive's spool, never every spool on the computer.
        if is_spool(&spool_dir(&cache)) {
            return Ok(vec![spool_dir(&cache)]);
        }
        bail!(
            "no upload spool for {user} at {server} in {} (nothing was saved there yet)",
            cache.display()
        );
    }
    let user = UserName::parse("x").ok();
    let base = user
        .and_then(|u| crate::client::default_cache_dir("x", &u))
        .and_then(|d| d.parent().map(Path::to_path_buf));
    let mut found = Vec::new();
    if let Some(base) = &base
        && let Ok(entries) = std::fs::read_dir(base)
    {
        for e in entries.flatten() {
            let d = spool_dir(&e.path());
            if is_spool(&d) {
                found.push(d);
            }
        }
    }
    found.sort();
    if found.is_empty() {
        bail!("no drive or backup spool found; give the drive's cache folder with --cache DIR");
    }
    Ok(found)
}
