use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::BackupArgs;
use crate::client::backup::{self, Options, Progress, Report};
use crate::client::spool::{SpoolError, human_bytes};
use crate::client::{
    ConnectConfig, HttpUploader, Remote, Spool, SpoolOptions, default_cache_dir, spool_dir,
};

/// `ects backup DIR...`: exit 0 when every file is on the server, 1 otherwise.
pub fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::connect::config(&args.connect)?;
    let walk = backup::walk(&args.dirs)?;
    let remote = Remote::connect(&cfg)?;
    remote.check_login()?;
    let cache = match args.cache.clone() {
        Some(c) => c,
        None => default_cache_dir(&cfg.server, &cfg.user).context(
            "no cache folder: give --cache DIR (or set ECTS_CACHE, XDG_CACHE_HOME or HOME)",
        )?,
    };
    let (tx, rx) = mpsc::channel();
    let spool = Spool::open(
        &spool_dir(&cache),
        Arc::new(HttpUploader::new(&remote)),
        SpoolOptions {
            workers: 4,
            events: Some(tx),
            ..SpoolOptions::default()
        },
    )
    .map_err(|e| {
        let hint = if matches!(e, SpoolError::Locked(_)) {
            "; while your drive is mounted, copy the folders into the drive instead, \
             or give this backup a cache of its own with --cache DIR"
        } else {
            ""
        };
        anyhow::anyhow!("{e}{hint}")
    })?;
    let reporter = Reporter::new(walk.files.len() as u64, walk.bytes);
    let opts = Options {
        hash_cache: Some(cache.join("backup-hashes.jsonl")),
        ..Options::default()
    };
    let report = backup::run(&remote, &spool, &rx, walk, &opts, &|p| reporter.on(p));
    reporter.finish();
    let refused = spool.status().credentials_refused;
    let left = spool.drain(Duration::ZERO);
    print_summary(&cfg, &report, left, &spool_dir(&cache));
    if refused {
        eprintln!(
            "error: {}",
            crate::client::ClientError::Auth {
                server: cfg.server.clone(),
                user: cfg.user.to_string(),
            }
        );
        return Ok(ExitCode::from(super::EXIT_CREDENTIALS_REFUSED));
    }
    Ok(if report.ok() && left == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A progress bar on a terminal, plain lines otherwise.
struct Reporter {
    bar: Option<ProgressBar>,
    files: u64,
    done: AtomicU64,
    last_retry: Mutex<String>,
}

impl Reporter {
    fn new(files: u64, bytes: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            files,
            done: AtomicU64::new(0),
            last_retry: Mutex::new(String::new()),
        }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    fn tick(&self, size: u64) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.inc(size);
            bar.set_message(format!("{done}/{} files", self.files));
        }
    }

    fn on(&self, p: Progress) {
        match p {
            Progress::AlreadyStored { size, .. } => self.tick(size),
            Progress::Queued { .. } => {}
            Progress::Uploaded { path, size } => {
                self.tick(size);
                if self.bar.is_none() {
                    self.line(format!("uploaded  {path} ({})", human_bytes(size)));
                }
            }
            Progress::Failed { path, message } => {
                self.tick(0);
                self.line(format!("FAILED    {path}: {message}"));
            }
            Progress::Unreadable { local, message } => {
                self.tick(0);
                self.line(format!("SKIPPED   {}: {message}", local.display()));
            }
            Progress::Retrying { message, delay } => {
                let mut last = crate::sync::lock(&self.last_retry);
                if *last != message {
                    if delay.is_zero() {
                        self.line(format!("stopped   {message}"));
                    } else {
                        self.line(format!("waiting   {message} (retrying, next in {delay:?})"));
                    }
                    *last = message;
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

fn print_summary(cfg: &ConnectConfig, r: &Report, left: usize, spool: &std::path::Path) {
    println!(
        "Backup to {} as {}: {} files ({}) in {:.1} s",
        cfg.server,
        cfg.user,
        r.files,
        human_bytes(r.bytes_total),
        r.elapsed.as_secs_f64()
    );
    println!(
        "  new versions:   {} ({} sent)",
        r.new_versions,
        human_bytes(r.bytes_sent)
    );
    println!("  already stored: {}", r.already_stored);
    println!("  failed:         {}", r.failed.len() + r.problems.len());
    if r.skipped > 0 {
        println!(
            "  skipped:        {} (ignored names, symlinks, special files)",
            r.skipped
        );
    }
    if r.from_earlier_runs > 0 {
        println!(
            "  also sent:      {} versions an earlier, interrupted run left in the spool",
            r.from_earlier_runs
        );
    }
    for (path, why) in &r.failed {
        println!("  FAILED {path}: {why}");
    }
    for (local, why) in &r.problems {
        println!("  NOT BACKED UP {}: {why}", local.display());
    }
    if left > 0 {
        println!(
            "  {left} version(s) are still waiting in {} (the server stopped answering); run `ects backup` again to send them",
            spool.display()
        );
    }
}
