//! `ects mount B:` on Windows: the drive under WinFsp, in the foreground until Ctrl-C
//! (or Ctrl-Break, closing the console, logoff). Written against the winfsp crate's
//! documentation; compiled only by the GitHub Windows job.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

use anyhow::{Context, bail};

use super::{Prepared, finish, prepare, spawn_saver};
use crate::cli::MountArgs;
use crate::drive::winfsp;

pub fn mount(args: MountArgs) -> anyhow::Result<ExitCode> {
    let mountpoint = check_mountpoint(&args.mountpoint)?;
    if let Some(prefix) = &args.volume_prefix {
        check_prefix(prefix)?;
    }
    // First, so that a missing WinFsp is said before anything else happens.
    winfsp::init()?;
    watch_ctrl_c();

    let Prepared {
        user,
        describe,
        drive,
        sink,
        _cache_lock,
    } = prepare(&args)?;
    let (stop_tx, saver) = spawn_saver(&drive)?;
    let mounted = winfsp::mount(
        drive.clone(),
        mountpoint.as_os_str(),
        args.volume_prefix.as_deref(),
    )
    .with_context(|| format!("mounting the drive on {}", mountpoint.display()))?;
    match &args.volume_prefix {
        Some(prefix) => println!(
            "ects: drive mounted at {} as \\{prefix} (user {user}, {describe}); Ctrl-C to unmount",
            mountpoint.display()
        ),
        None => println!(
            "ects: drive mounted at {} (user {user}, {describe}); Ctrl-C to unmount",
            mountpoint.display()
        ),
    }

    wait_for_stop();
    eprintln!("ects: unmounting {} …", mountpoint.display());
    // Unmounts and stops WinFsp's dispatcher: open handles are cut off, but every
    // close already took its version and the backing files are on disk.
    drop(mounted);
    drop(stop_tx);
    let _ = saver.join();
    Ok(finish(&drive, &sink, args.drain_timeout, true))
}

/// `B:` (a free drive letter) or a folder that does not exist yet (WinFsp creates it
/// as the mount point and removes it at unmount).
fn check_mountpoint(mp: &Path) -> anyhow::Result<PathBuf> {
    let text = mp.as_os_str().to_string_lossy();
    let is_letter = {
        let b = text.as_bytes();
        (b.len() == 2 || (b.len() == 3 && (b[2] == b'\\' || b[2] == b'/')))
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
    };
    if is_letter {
        if Path::new(&format!("{}:\\", &text[..1])).exists() {
            bail!("the drive letter {} is already in use", &text[..2]);
        }
        return Ok(PathBuf::from(&text[..2]));
    }
    if mp.exists() {
        bail!(
            "{} exists; on Windows mount the drive on a drive letter (B:) or on a folder \
             that does not exist yet (WinFsp creates it)",
            mp.display()
        );
    }
    Ok(mp.to_path_buf())
}

/// WinFsp's network prefix: `\server\share`, each part a plain name.
fn check_prefix(prefix: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = prefix.trim_start_matches('\\').split('\\').collect();
    let ok = prefix.starts_with('\\')
        && !prefix.starts_with("\\\\")
        && parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 64
                && p.chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '$'))
        });
    if !ok {
        bail!(
            "--volume-prefix {prefix:?}: give it as \\server\\share, e.g. \\ects\\alice \
             (Explorer then shows \\\\ects\\alice)"
        );
    }
    Ok(())
}

/// Set by the console control handler; the main thread waits on it.
fn stop_signal() -> &'static (Mutex<bool>, Condvar) {
    static STOP: OnceLock<(Mutex<bool>, Condvar)> = OnceLock::new();
    STOP.get_or_init(|| (Mutex::new(false), Condvar::new()))
}

unsafe extern "system" fn on_console_event(_event: u32) -> i32 {
    let (stopped, cv) = stop_signal();
    *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
    cv.notify_all();
    // Handled: Windows waits (a few seconds at most for close/logoff) while the main
    // thread unmounts and drains.
    1
}

fn watch_ctrl_c() {
    use windows_sys::Win32::System::Console::SetConsoleCtrlHandler;
    // SAFETY: registers a handler with the signature Windows expects; it only touches
    // a static Mutex and Condvar.
    if unsafe { SetConsoleCtrlHandler(Some(on_console_event), 1) } == 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot watch for Ctrl-C; stop the drive by ending the process"
        );
    }
}

fn wait_for_stop() {
    let (stopped, cv) = stop_signal();
    let mut s = stopped.lock().unwrap_or_else(PoisonError::into_inner);
    while !*s {
        s = cv.wait(s).unwrap_or_else(PoisonError::into_inner);
    }
}
