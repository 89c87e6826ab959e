//! `ects mount MOUNTPOINT`: the drive, in the foreground, until Ctrl-C, SIGTERM or
//! `fusermount3 -u` (Unix, FUSE), or Ctrl-C (Windows, WinFsp: see [`windows`]).
//!
//! The backend, cache folder, spool, drive core and index saver are the same on every
//! platform ([`prepare`], [`spawn_saver`], [`finish`]); only the session differs.

// A windows-gnu build has no WinFsp adapter, so the shared mount plumbing is unused there.
#![cfg_attr(
    all(windows, not(target_env = "msvc")),
    allow(dead_code, unused_imports)
)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::MountArgs;
use crate::client::{
    ClientError, HttpUploader, Remote, Spool, SpoolOptions, StoreUploader, Uploader,
    default_cache_dir, spool_dir,
};
#[cfg(unix)]
use crate::drive::fuse::{IoMode, Mountpoint};
use crate::drive::sink::{StoreSource, VersionSink, VersionSource};
use crate::drive::{Drive, DriveOptions};
use crate::names::UserName;
use crate::store::{FsStore, Store};

// Platform-neutral parts of the Windows mount, tested on every platform.
#[cfg(any(test, all(windows, target_env = "msvc")))]
mod share;
#[cfg(any(test, all(windows, target_env = "msvc")))]
mod shutdown;
#[cfg(all(windows, target_env = "msvc"))]
mod windows;

/// Bytes of fetched `.versions` contents kept on disk.
const VERSIONS_CACHE_BYTES: u64 = 512 << 20;
/// How often the index of versioned files is saved while mounted.
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// Where versions go and where `.versions` reads from.
struct Backend {
    user: UserName,
    cache: PathBuf,
    uploader: Arc<dyn Uploader>,
    source: Arc<dyn VersionSource>,
    /// For the ready line, e.g. "embedded store at …".
    describe: String,
}

fn embedded(args: &MountArgs) -> anyhow::Result<Backend> {
    let user = match &args.connect.user {
        Some(u) => UserName::parse(u).with_context(|| format!("--user {u:?}"))?,
        None => default_user(),
    };
    let data = match &args.data {
        Some(d) => d.clone(),
        None => default_data_dir().context(
            "no home folder to keep the drive's versions in: give --data DIR (or ECTS_DATA)",
        )?,
    };
    let store: Arc<dyn Store> = Arc::new(
        FsStore::open(&data)
            .with_context(|| format!("opening the embedded store at {}", data.display()))?,
    );
    let data = fs::canonicalize(&data).unwrap_or(data);
    let cache = match &args.cache {
        Some(c) => c.clone(),
        None => default_cache(&data, &user)?,
    };
    Ok(Backend {
        uploader: Arc::new(StoreUploader::new(store.clone(), user.clone())),
        source: Arc::new(StoreSource::new(store, user.clone())),
        describe: format!("embedded store at {}", data.display()),
        user,
        cache,
    })
}

fn server(args: &MountArgs) -> anyhow::Result<Backend> {
    let cfg = super::connect::config(&args.connect)?;
    let remote = Remote::connect(&cfg)?;
    check_credentials(&remote)?;
    let cache = match &args.cache {
        Some(c) => c.clone(),
        None => default_cache_dir(&cfg.server, &cfg.user)
            .context("no cache folder: set --cache, XDG_CACHE_HOME or HOME")?,
    };
    Ok(Backend {
        uploader: Arc::new(HttpUploader::new(&remote)),
        source: Arc::new(remote.clone()),
        describe: format!("server {}", remote.server()),
        user: cfg.user,
        cache,
    })
}

/// How long the mount waits for the server to answer the credential check before it
/// mounts anyway (offline is fine: saving never needs the server).
const LOGIN_WAIT: Duration = Duration::from_secs(10);

/// Refuses to mount when the server refuses the password: a drive that can never upload
/// would look fine while nothing reaches the server. Unreachable (or slow) → mount
/// offline; the spool shows a later refusal in the status.
fn check_credentials(remote: &Remote) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel();
    let r = remote.clone();
    std::thread::Builder::new()
        .name("ects-login".into())
        .spawn(move || {
            let _ = tx.send(r.check_login());
        })
        .context("starting the sign-in check")?;
    match rx.recv_timeout(LOGIN_WAIT) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e @ ClientError::Auth { .. })) => {
            Err(anyhow::Error::new(e).context("the drive was not mounted"))
        }
        Ok(Err(e)) => {
            tracing::warn!(
                error = %e,
                "cannot reach the server now; saving locally, uploads follow when it answers"
            );
            Ok(())
        }
        Err(_) => {
            tracing::warn!(
                "the server did not answer the sign-in check within {LOGIN_WAIT:?}; \
                 saving locally, uploads follow when it answers"
            );
            Ok(())
        }
    }
}

pub fn mount(args: MountArgs) -> anyhow::Result<ExitCode> {
    if let Some(u) = &args.connect.user {
        UserName::parse(u).with_context(|| format!("--user {u:?}"))?;
    }
    #[cfg(unix)]
    return mount_fuse(args);
    #[cfg(all(windows, target_env = "msvc"))]
    return windows::mount(args);
    #[cfg(all(windows, not(target_env = "msvc")))]
    bail!(
        "this ects.exe was built without WinFsp support (WinFsp needs the MSVC toolchain); \
         `ects mount` is not available, the other commands are"
    );
    #[cfg(not(any(unix, windows)))]
    bail!(
        "`ects mount` is not supported on this platform: the drive needs FUSE (Linux) or \
         WinFsp (Windows). The other commands (backup, versions, restore, status) work here."
    )
}

/// The drive, ready to be served by a platform adapter.
struct Prepared {
    user: UserName,
    describe: String,
    drive: Arc<Drive>,
    sink: Arc<dyn VersionSink>,
    /// Held while mounted: one drive per cache folder.
    _cache_lock: File,
}

/// Everything but the platform session: backend, cache folder and its lock, spool,
/// the drive core, and the reconcile of files changed while unmounted.
fn prepare(args: &MountArgs) -> anyhow::Result<Prepared> {
    let Backend {
        user,
        cache,
        uploader,
        source,
        describe,
    } = if args.connect.server.is_some() {
        server(args)?
    } else {
        embedded(args)?
    };
    // Owner-only: it holds copies of the student's work (docs/SEMANTICS.md).
    crate::private::own_dir(&cache)
        .with_context(|| format!("creating the cache folder {}", cache.display()))?;
    let _cache_lock = lock_cache(&cache)?;
    let spool = Spool::open(&spool_dir(&cache), uploader, SpoolOptions::default())
        .with_context(|| format!("opening the upload spool in {}", cache.display()))?;
    let sink: Arc<dyn VersionSink> = Arc::new(spool);
    let options = DriveOptions {
        files: cache.join("files"),
        index_file: cache.join("drive-index.json"),
        versions_cache: cache.join("versions-cache"),
        versions_cache_bytes: VERSIONS_CACHE_BYTES,
    };
    let drive = Arc::new(
        Drive::new(options, sink.clone(), source)
            .with_context(|| format!("preparing the drive's folder in {}", cache.display()))?,
    );
    let reconciled = drive.reconcile();
    if reconciled > 0 {
        tracing::info!(
            files = reconciled,
            "took versions of files changed while the drive was not mounted"
        );
    }
    Ok(Prepared {
        user,
        describe,
        drive,
        sink,
        _cache_lock,
    })
}

/// Saves the drive's index every few seconds until the returned sender is dropped.
fn spawn_saver(
    drive: &Arc<Drive>,
) -> anyhow::Result<(mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let drive = drive.clone();
    let saver = std::thread::Builder::new()
        .name("ects-index".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(SAVE_EVERY) {
                if let Err(e) = drive.save_index() {
                    tracing::warn!(error = %e, "could not save the drive's index");
                }
            }
        })
        .context("starting the index saver")?;
    Ok((stop_tx, saver))
}

/// After the session: saves the index, drains the spool for a bounded time and says
/// how many versions are left for the next mount.
fn finish(drive: &Drive, sink: &Arc<dyn VersionSink>, drain_timeout: u64, ok: bool) -> ExitCode {
    if let Err(e) = drive.save_index() {
        tracing::warn!(error = %e, "could not save the drive's index");
    }
    let left = sink.drain(Duration::from_secs(drain_timeout));
    if left == 0 {
        println!("ects: unmounted; every version is stored");
    } else {
        println!(
            "ects: unmounted; {left} version(s) still waiting in the spool, sent at the next mount"
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(unix)]
fn mount_fuse(args: MountArgs) -> anyhow::Result<ExitCode> {
    if args.volume_prefix.is_some() {
        bail!("--volume-prefix is for Windows only (a WinFsp network drive); leave it out here");
    }
    // Before `prepare` starts any thread (see `Mountpoint::claim`).
    let mountpoint = Mountpoint::claim(&args.mountpoint)?;
    let Prepared {
        user,
        describe,
        drive,
        sink,
        _cache_lock,
    } = prepare(&args)?;
    let (stop_tx, saver) = spawn_saver(&drive)?;
    let passthrough = std::env::var_os("ECTS_NO_PASSTHROUGH").is_none();
    let at = mountpoint.path().display().to_string();
    let served = mountpoint.serve(
        drive.clone(),
        passthrough,
        Duration::from_secs(args.drain_timeout),
        |mode| {
            // The I/O mode is for the admin's log, not for the student's banner.
            let io = match mode {
                IoMode::Passthrough => "kernel passthrough",
                IoMode::Writeback => "kernel writeback cache",
                IoMode::Plain => "no kernel cache",
            };
            tracing::info!(io, "drive mounted");
            println!(
                "ects: drive mounted at {at} for {user}, versions go to the {describe}; Ctrl-C to unmount"
            );
        },
    )?;
    drop(stop_tx);
    let _ = saver.join();
    if let Err(e) = &served {
        tracing::error!(error = %e, "the drive stopped with an error");
    }
    Ok(finish(&drive, &sink, args.drain_timeout, served.is_ok()))
}

/// The OS user's name if it is a valid ects user name, else `local`.
fn default_user() -> UserName {
    os_user_name()
        .and_then(|n| UserName::parse(&n).ok())
        .unwrap_or_else(|| UserName::parse("local").expect("\"local\" is a valid user name"))
}

#[cfg(not(unix))]
fn os_user_name() -> Option<String> {
    std::env::var("USERNAME").ok()
}

#[cfg(unix)]
fn os_user_name() -> Option<String> {
    // SAFETY: getpwuid_r writes into the buffers we own; the result points into them.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return std::env::var("USER").ok();
        }
        std::ffi::CStr::from_ptr(pwd.pw_name)
            .to_str()
            .ok()
            .map(str::to_owned)
    }
}

/// `$XDG_CACHE_HOME/ects/local-<user>-<data hash>` (or under `~/.cache`; on Windows
/// under `%LOCALAPPDATA%`).
/// The embedded store's default folder, as `scripts/drive` uses it: never the current
/// folder, which a student would not think of backing up or may not own.
/// `$XDG_DATA_HOME/ects/data`, `~/.local/share/ects/data`, or `%LOCALAPPDATA%\ects\data`.
fn default_data_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = if cfg!(windows) {
        env("LOCALAPPDATA")?
    } else {
        env("XDG_DATA_HOME").or_else(|| env("HOME").map(|h| h.join(".local/share")))?
    };
    Some(base.join("ects").join("data"))
}

fn default_cache(data: &Path, user: &UserName) -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .or_else(|| {
            std::env::var_os("LOCALAPPDATA")
                .filter(|v| cfg!(windows) && !v.is_empty())
                .map(PathBuf::from)
        })
        .context("no cache folder: set --cache, XDG_CACHE_HOME or HOME")?;
    let key = crate::store::Digest::of(data.as_os_str().as_encoded_bytes()).short();
    Ok(base.join("ects").join(format!("local-{user}-{key}")))
}

/// One drive per cache folder: a second one would fight over the same files.
fn lock_cache(cache: &Path) -> anyhow::Result<File> {
    let file = crate::private::open_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache.join("drive.lock"))
        .with_context(|| format!("locking {}", cache.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => bail!(
            "another ects drive is already using the cache folder {}",
            cache.display()
        ),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", cache.display()))
        }
    }
}
