use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::cli::StatusArgs;
use crate::client::{ConnectConfig, Remote, SpoolStatus, render_status, spool_dir};
use crate::names::UserName;

/// `ects status [--cache DIR] [--server URL]`: the spool of a drive or backup, read
/// without taking it over (works while the drive runs). Exit 1 when uploads failed.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if args.wait {
        return wait_for_uploads(&args);
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
                println!("all uploads done, but {failed} were refused by the server (see above)");
                return Ok(ExitCode::from(1));
            }
            println!("all uploads done");
            return Ok(ExitCode::SUCCESS);
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
            return Ok(ExitCode::from(TIMED_OUT));
        }
        if !announced {
            println!(
                "waiting for {pending} version(s) ({}) to upload",
                crate::client::spool::human_bytes(bytes)
            );
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
        && is_spool(&spool_dir(&cache))
    {
        return Ok(vec![spool_dir(&cache)]);
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
