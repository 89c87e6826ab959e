use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use chrono::Local;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::CollectStatus;
use crate::cli::CollectArgs;
use crate::client::Remote;
use crate::client::collect::{self, CollectOptions, CollectQuery, FileOutcome, Progress};
use crate::client::spool::human_bytes;
use crate::names::UserName;

/// `ects collect PATTERN --out DIR [--before TIME] (--students LIST | --all)`: exit 0
/// when every wanted file is in DIR with the right content, 1 when some file could not
/// be fetched or a differing file was kept (re-run, or use --force).
pub fn collect(args: CollectArgs) -> anyhow::Result<ExitCode> {
    let before = args
        .before
        .as_deref()
        .map(|s| super::time::parse_local_time("--before", s))
        .transpose()?;
    let students = if args.all {
        None
    } else {
        let names = args
            .students
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| UserName::parse(s).map_err(|e| anyhow!("--students: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if names.is_empty() {
            return Err(anyhow!("--students: give at least one name, or use --all"));
        }
        Some(names)
    };
    let cfg = super::connect::config(&args.connect)?;
    let remote = Remote::connect(&cfg)?;
    let query = CollectQuery {
        pattern: args.pattern.clone(),
        before,
        students,
    };
    let options = CollectOptions {
        force: args.force,
        include_late: args.include_late,
    };
    let mut reporter = Reporter::default();
    let report = collect::run(&remote, &query, &args.out, &options, &mut |p| {
        reporter.on(p)
    })
    .with_context(|| format!("collecting {:?} from {}", args.pattern, cfg.server))?;
    reporter.finish();

    let deadline = before.map_or_else(
        || "no deadline: newest versions".to_owned(),
        |t| {
            format!(
                "deadline {}",
                t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S %Z")
            )
        },
    );
    println!(
        "{} students, {deadline}: {} on time, {} late only, {} missing",
        report
            .entries
            .iter()
            .map(|e| e.user.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        report.count(CollectStatus::OnTime),
        report.count(CollectStatus::LateOnly),
        report.count(CollectStatus::Missing),
    );
    println!(
        "fetched {}, already there {}, replaced {}; manifest: {}",
        report.fetched,
        report.present,
        report.replaced,
        report.manifest.display()
    );
    for path in &report.conflicts {
        eprintln!(
            "KEPT      {}: it differs from the version collected; use --force to replace it",
            path.display()
        );
    }
    for (path, why) in &report.failures {
        eprintln!("FAILED    {}: {why}", path.display());
    }
    if report.count(CollectStatus::LateOnly) > 0 && !args.include_late {
        println!("late-only files are listed in the manifest; --include-late fetches them too");
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A progress bar on a terminal, one line per fetched file otherwise.
#[derive(Default)]
struct Reporter {
    bar: Option<ProgressBar>,
}

impl Reporter {
    fn on(&mut self, p: Progress<'_>) {
        match p {
            Progress::Planned { files, bytes } => {
                if std::io::stderr().is_terminal() {
                    let bar =
                        ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_message(format!("0/{files} files"));
                    bar.enable_steady_tick(Duration::from_millis(200));
                    self.bar = Some(bar);
                }
            }
            Progress::File {
                entry,
                local,
                outcome,
            } => {
                let size = entry.version.as_ref().map_or(0, |v| v.size);
                let line = match outcome {
                    FileOutcome::Fetched => {
                        format!("fetched   {} ({})", local.display(), human_bytes(size))
                    }
                    FileOutcome::Replaced => {
                        format!("replaced  {} ({})", local.display(), human_bytes(size))
                    }
                    _ => String::new(),
                };
                match &self.bar {
                    Some(bar) => {
                        bar.inc(size);
                        bar.set_message(entry.user.clone());
                    }
                    None if !line.is_empty() => println!("{line}"),
                    None => {}
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
