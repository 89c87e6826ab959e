use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;

use crate::cli::StatusArgs;
use crate::client::{ConnectConfig, Remote, SpoolStatus, render_status, spool_dir};
use crate::names::UserName;

/// `ects status [--cache DIR] [--server URL]`: the spool of a drive or backup, read
/// without taking it over (works while the drive runs). Exit 1 when uploads failed.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
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
        any_failed |= !status.failed.is_empty();
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
