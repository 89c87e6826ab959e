use std::process::ExitCode;

use anyhow::Context;

use crate::cli::FsckArgs;

/// `ects fsck --data DIR`: exit 0 when clean, 1 on damage.
pub fn fsck(args: &FsckArgs) -> anyhow::Result<ExitCode> {
    let report = if args.repair_times {
        crate::store::fsck_repair_times(&args.data)
    } else {
        crate::store::fsck(&args.data)
    }
    .with_context(|| format!("checking the store in {}", args.data.display()))?;
    for path in &report.mismatches {
        println!(
            "DAMAGED  {}: content does not match its SHA-256 name",
            path.display()
        );
    }
    for w in &report.wrong_times {
        println!(
            "TIME     {}: stored at {} per the journal, but the file says {} (copied without \
             keeping times?); `ects fsck --repair-times` sets it back",
            w.file.display(),
            w.journaled
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            w.mtime.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }
    if report.repaired_times > 0 {
        println!(
            "REPAIRED {} version time(s) set back from the journal",
            report.repaired_times
        );
    }
    for (path, why) in &report.strays {
        println!("STRAY    {}: {why}", path.display());
    }
    for path in &report.temp_files {
        let what = if report.in_use {
            "upload in flight (the store is in use)"
        } else {
            "left by an interrupted upload; removed when the server next starts"
        };
        println!("TEMP     {}: {what}", path.display());
    }
    for (path, n) in &report.journal_errors {
        println!("JOURNAL  {}: {n} unreadable line(s)", path.display());
    }
    for path in &report.unjournaled {
        println!(
            "NOTE     {}: stored whole, but its journal line is missing (a crash between the two)",
            path.display()
        );
    }
    for path in &report.empty_dirs {
        println!(
            "NOTE     {}: empty folder (a first upload that never finished)",
            path.display()
        );
    }
    println!(
        "{} versions, {} bytes checked: {}",
        report.versions,
        report.bytes,
        if report.damaged() {
            "DAMAGE FOUND"
        } else {
            "no damage"
        }
    );
    Ok(if report.damaged() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
