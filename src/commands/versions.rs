use std::process::ExitCode;

use chrono::Local;

use crate::cli::VersionsArgs;
use crate::client::Remote;
use crate::client::spool::human_bytes;
use crate::names::RelPath;

/// `ects versions PATH`: a table of every stored version, oldest first.
pub fn versions(args: VersionsArgs) -> anyhow::Result<ExitCode> {
    let path = RelPath::parse(args.path.trim_start_matches("./"))
        .map_err(|e| anyhow::anyhow!("{:?} is not a path in your backup: {e}", args.path))?;
    let cfg = super::connect::config(&args.connect)?;
    let remote = Remote::connect(&cfg)?;
    let list = remote.versions(&path)?;
    if list.is_empty() {
        eprintln!(
            "no versions of {path} are stored for {} at {}",
            cfg.user, cfg.server
        );
        return Ok(ExitCode::from(1));
    }
    println!("{:<19}  {:>10}  SHA-256", "STORED (local time)", "SIZE");
    for v in &list {
        println!(
            "{:<19}  {:>10}  {}",
            v.stored_at
                .with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S"),
            human_bytes(v.size),
            v.sha256.short()
        );
    }
    println!(
        "{} version{} of {path}",
        list.len(),
        if list.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}
