//! The FUSE session around the adapter: the mountpoint check, the mount itself, the
//! signal thread that unmounts on Ctrl-C / SIGTERM / SIGHUP, and the forced exit on a
//! second signal. `ects mount` only chooses the backend and reports.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::{FuseDrive, IoMode};
use crate::drive::Drive;
use crate::sync::lock;

/// Why the drive could not be mounted or served.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(
        "{0} is a stale mount left by a drive that crashed (\"Transport endpoint is not \
         connected\"). Unmount it with `fusermount3 -u {0}` (or `umount -l {0}` as root) and \
         mount again; your files are safe in the drive's cache folder."
    )]
    Stale(DisplayPath),
    #[error("{0} is not a folder")]
    NotAFolder(DisplayPath),
    #[error(
        "{0} is already a mount point (another drive?); unmount it first with `fusermount3 -u {0}`"
    )]
    AlreadyMounted(DisplayPath),
    #[error("{0} is not empty; mount the drive on an empty folder so nothing in it gets hidden")]
    NotEmpty(DisplayPath),
    #[error("{what} {path}: {source}", path = .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mounting the drive on {path}: {source}", path = .path.display())]
    Mount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A path that formats as itself, for messages.
#[derive(Debug)]
pub struct DisplayPath(pub PathBuf);

impl std::fmt::Display for DisplayPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display().fmt(f)
    }
}

impl From<PathBuf> for DisplayPath {
    fn from(p: PathBuf) -> Self {
        Self(p)
    }
}

/// A mountpoint that passed its checks, watched by the signal thread.
pub struct Mountpoint {
    path: PathBuf,
    mounted: Arc<AtomicBool>,
    force: Arc<Mutex<Option<ForceExit>>>,
}

impl Mountpoint {
    /// Checks (or creates) the mountpoint and starts the signal thread. Call before any
    /// other thread starts, so that only the signal thread ever sees the signals.
    pub fn claim(mp: &Path) -> Result<Self, SessionError> {
        let path = check_mountpoint(mp)?;
        let signals = block_signals();
        let mounted = Arc::new(AtomicBool::new(false));
        let force: Arc<Mutex<Option<ForceExit>>> = Arc::default();
        spawn_signal_thread(signals, mounted.clone(), force.clone(), path.clone());
        Ok(Self {
            path,
            mounted,
            force,
        })
    }

    /// The mountpoint's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Mounts `drive` and serves it until it is unmounted. `on_mounted` runs once the
    /// kernel has said how it will talk to the drive. A second signal while files are
    /// still open saves the index, drains for `drain_timeout` and exits.
    pub fn serve(
        self,
        drive: Arc<Drive>,
        passthrough: bool,
        drain_timeout: Duration,
        on_mounted: impl FnOnce(IoMode),
    ) -> Result<io::Result<()>, SessionError> {
        // Modes arrive already masked by the kernel; don't mask them twice.
        // SAFETY: umask only changes this process's file creation mask.
        unsafe { libc::umask(0) };

        let (mode_tx, mode_rx) = mpsc::channel();
        let fs = FuseDrive::new(drive.clone(), passthrough, Some(mode_tx));
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("ects".into()),
            fuser::MountOption::Subtype("ects".into()),
            fuser::MountOption::DefaultPermissions,
            // Students' files: nothing in them may gain privileges or reach devices.
            fuser::MountOption::NoSuid,
            fuser::MountOption::NoDev,
        ];
        config.n_threads = Some(
            std::thread::available_parallelism()
                .map(|n| n.get().clamp(2, 8))
                .unwrap_or(4),
        );
        config.clone_fd = true;
        let session =
            fuser::Session::new(fs, &self.path, &config).map_err(|source| SessionError::Mount {
                path: self.path.clone(),
                source,
            })?;
        self.mounted.store(true, Ordering::SeqCst);
        let mode = mode_rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or(IoMode::Plain);
        *lock(&self.force) = Some({
            let abort = fuse_connection(&self.path);
            Box::new(move || {
                // Abort the kernel connection so the session ends normally, or else leave
                // now: the kernel cuts off open files when this process exits.
                if let Some(abort) = abort
                    && fs::write(&abort, b"1").is_ok()
                {
                    return;
                }
                if let Err(e) = drive.save_index() {
                    tracing::warn!(error = %e, "could not save the drive's index");
                }
                let left = drive.sink().drain(drain_timeout);
                println!("ects: unmounted by force; {left} version(s) left in the spool");
                std::process::exit(1);
            })
        });
        on_mounted(mode);
        Ok(session.run())
    }
}

/// Refuses a mountpoint that is a stale mount, already mounted, not a folder or not
/// empty; creates it if missing. Returns its absolute path.
fn check_mountpoint(mp: &Path) -> Result<PathBuf, SessionError> {
    let io = |what: &'static str| {
        let path = mp.to_path_buf();
        move |source| SessionError::Io { what, path, source }
    };
    match fs::metadata(mp) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(SessionError::Stale(mp.to_path_buf().into()));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(mp).map_err(io("creating the mountpoint"))?;
        }
        Err(e) => return Err(io("checking")(e)),
        Ok(m) if !m.is_dir() => return Err(SessionError::NotAFolder(mp.to_path_buf().into())),
        Ok(_) => {}
    }
    let abs = fs::canonicalize(mp).map_err(io("resolving"))?;
    if is_mount_point(&abs) {
        return Err(SessionError::AlreadyMounted(abs.into()));
    }
    let mut entries = fs::read_dir(&abs).map_err(io("listing"))?;
    if entries.next().is_some() {
        return Err(SessionError::NotEmpty(abs.into()));
    }
    Ok(abs)
}

/// The kernel's control file that aborts this mount's FUSE connection. Read from
/// mountinfo: a `stat` of our own mountpoint would wait for the session we are about
/// to run.
fn fuse_connection(mountpoint: &Path) -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mountpoint.to_string_lossy();
    let dev = info.lines().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        (fields.len() > 4 && unescape_mountinfo(fields[4]) == want).then(|| fields[2].to_owned())
    })?;
    let minor = dev.split(':').nth(1)?;
    let abort = PathBuf::from(format!("/sys/fs/fuse/connections/{minor}/abort"));
    abort.exists().then_some(abort)
}

/// Whether `path` appears as a mount point in /proc/self/mountinfo.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| unescape_mountinfo(m) == want)
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts; lazily (detached now, gone when the last open file closes) if files are
/// still open. Returns whether it had to be lazy.
fn unmount(mountpoint: &Path) -> io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(false);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EBUSY) => {
            // SAFETY: a valid C string.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
                Ok(true)
            } else {
                Err(io::Error::last_os_error())
            }
        }
        Some(libc::EPERM) => {
            // Not root: the setuid helper may unmount what we mounted.
            let fusermount = |lazy: bool| {
                let mut cmd = std::process::Command::new("fusermount3");
                cmd.arg("-u").arg("-q");
                if lazy {
                    cmd.arg("-z");
                }
                cmd.arg("--").arg(mountpoint);
                cmd.stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if fusermount(false) {
                Ok(false)
            } else if fusermount(true) {
                Ok(true)
            } else {
                Err(err)
            }
        }
        _ => Err(err),
    }
}

/// What a second Ctrl-C does: end the drive although files are still open.
type ForceExit = Box<dyn FnOnce() + Send>;

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread and every thread started after, so
/// only the signal thread receives them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain signal-mask calls on a set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for Ctrl-C / SIGTERM / SIGHUP and unmounts, which ends the session loop.
/// Before the drive is mounted, a signal simply ends the process: nothing is lost, the
/// next mount's reconcile takes what was not stored yet.
///
/// The unmount is lazy: programs that still have files open keep them until they close
/// them, and the drive keeps serving them. A second signal cuts them off.
fn spawn_signal_thread(
    set: libc::sigset_t,
    mounted: Arc<std::sync::atomic::AtomicBool>,
    force: Arc<Mutex<Option<ForceExit>>>,
    mountpoint: PathBuf,
) {
    let spawned = std::thread::Builder::new()
        .name("ects-signals".into())
        .spawn(move || {
            let mut unmounted = false;
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: waits on a valid, blocked signal set.
                let rc = unsafe { libc::sigwait(&set, &mut sig) };
                if rc != 0 {
                    continue;
                }
                if !mounted.load(std::sync::atomic::Ordering::SeqCst) {
                    eprintln!("ects: interrupted before the drive was mounted");
                    std::process::exit(130);
                }
                if unmounted {
                    let action = lock(&force).take();
                    if let Some(action) = action {
                        eprintln!("ects: cutting off the files still open on the drive");
                        action();
                    }
                    continue;
                }
                unmounted = true;
                eprintln!("ects: unmounting {} …", mountpoint.display());
                match unmount(&mountpoint) {
                    Ok(false) => {}
                    Ok(true) => eprintln!(
                        "ects: files are still open on the drive; the programs using them \
                         keep them until they close them (press Ctrl-C again to cut them off)"
                    ),
                    Err(e) => eprintln!(
                        "ects: could not unmount {}: {e}; close the programs using it, \
                         or run `fusermount3 -u -z {}`",
                        mountpoint.display(),
                        mountpoint.display()
                    ),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch for Ctrl-C; unmount with fusermount3 -u");
    }
}
