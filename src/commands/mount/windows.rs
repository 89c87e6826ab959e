//! `ects mount B:` on Windows: the drive under WinFsp, in the foreground until Ctrl-C
//! (or Ctrl-Break, closing the console, logoff). Written against the winfsp crate's
//! documentation; type-checked on Linux with clippy for `x86_64-pc-windows-msvc`, built
//! and run by the GitHub Windows job. What it decides is platform-neutral and tested on
//! Linux: [`share`](super::share) and [`shutdown`](super::shutdown).
//!
//! With `--volume-prefix \ects\alice` (WinFsp's launcher, `net use B: \\ects\alice`)
//! the drive is alice's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::shutdown::{SHUTDOWN_WAIT, Shutdown};
use super::{Prepared, finish, prepare, share, spawn_saver};
use crate::cli::MountArgs;
use crate::drive::winfsp;

pub fn mount(mut args: MountArgs) -> anyhow::Result<ExitCode> {
    let mountpoint = check_mountpoint(&args.mountpoint)?;
    if let Some(prefix) = &args.volume_prefix {
        let share = share::parse_prefix(prefix)?;
        let os_user = std::env::var("USERNAME").ok();
        let user = share::share_user(&share, args.connect.user.as_deref(), os_user.as_deref())?;
        args.connect.user = Some(user.as_str().to_owned());
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

    SHUTDOWN.wait_for_stop();
    eprintln!("ects: unmounting {} …", mountpoint.display());
    // Unmounts and stops WinFsp's dispatcher: open handles are cut off, but every
    // close already took its version and the backing files are on disk.
    drop(mounted);
    drop(stop_tx);
    let _ = saver.join();
    let code = finish(&drive, &sink, args.drain_timeout, true);
    // Only now may a console handler waiting on a close/logoff/shutdown return.
    SHUTDOWN.finished();
    Ok(code)
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
    if text.is_empty() {
        bail!(
            "no drive letter given: map the share to one (net use B: \\\\ects\\%USERNAME%), \
             or give it: ects mount B:"
        );
    }
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

/// Stop requests from the console control handler, and the main thread's "done".
static SHUTDOWN: Shutdown = Shutdown::new();

// Console control events (wincon.h).
const CTRL_C_EVENT: u32 = 0;
const CTRL_BREAK_EVENT: u32 = 1;

unsafe extern "system" fn on_console_event(event: u32) -> i32 {
    match event {
        // Ctrl-C, and Ctrl-Break (how WinFsp's launcher stops the drive): the process
        // lives on after the handler returns, and the main thread unmounts and drains.
        CTRL_C_EVENT | CTRL_BREAK_EVENT => SHUTDOWN.stop(),
        // Close, logoff, shutdown: Windows ends the process when the handler returns,
        // so return only once the drive has unmounted and drained (bounded).
        _ => {
            SHUTDOWN.stop_and_wait(SHUTDOWN_WAIT);
        }
    }
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
