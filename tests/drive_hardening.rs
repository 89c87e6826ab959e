//! Issue 15 item 1, the drive's part: another OS user on the same PC must not alter or
//! plant what the drive keeps for itself (its index, the `.versions` cache), and the
//! drive must not widen what students create. Runs the real binary on a real mount;
//! the other user is `nobody` through `setpriv` (the tests run as root).
//!
//! Every test here mounts a FUSE drive, so the suite is Unix-only; on Windows the
//! WinFsp drive is exercised by the GitHub Actions job (.github/workflows/).
#![cfg(unix)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::drive::{Place, wait_for};

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.push(p.clone());
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Runs `script` as `nobody` with `args`; returns its stdout.
fn as_nobody(script: &str, args: &[PathBuf]) -> String {
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(["sh", "-c", script, "sh"])
        .args(args)
        .output()
        .expect("setpriv");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn another_os_user_cannot_alter_or_plant_the_drives_own_files() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to act as a second OS user");
        return;
    }
    let place = Place::new();
    // Like a home folder: others may traverse it, as they may ~/.cache on a lab PC.
    fs::set_permissions(place.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let mount = place.mount();

    // A student whose umask is 002 asks for 0664 / 0775: that is what the drive keeps.
    let st = Command::new("sh")
        .arg("-c")
        .arg("umask 002 && echo mine > \"$1/essay.txt\" && mkdir \"$1/Group\"")
        .arg("sh")
        .arg(&mount.mnt)
        .status()
        .unwrap();
    assert!(st.success());
    // Read the version back through `.versions`: that fills the versions cache.
    let vdir = mount.path(".versions/essay.txt");
    wait_for("the version to reach the store", || {
        fs::read_dir(&vdir).is_ok_and(|mut d| d.next().is_some())
    });
    let version = fs::read_dir(&vdir).unwrap().next().unwrap().unwrap().path();
    assert_eq!(fs::read(&version).unwrap(), b"mine\n");
    mount.unmount();

    assert_eq!(mode(&place.backing().join("essay.txt")), 0o664);
    assert_eq!(mode(&place.backing().join("Group")), 0o775);

    let cache = place.cache();
    let index = cache.join("drive-index.json");
    let vcache = cache.join("versions-cache");
    assert!(index.exists() && vcache.exists());
    assert_eq!(mode(&index) & 0o077, 0, "drive-index.json");
    assert_eq!(mode(&vcache), 0o700, "versions-cache");

    let mut targets = vec![index];
    files_under(&vcache, &mut targets);
    let written = as_nobody(
        "for f in \"$@\"; do [ -f \"$f\" ] && (echo x >> \"$f\") 2>/dev/null && echo \"$f\"; done; true",
        &targets,
    );
    assert_eq!(written, "", "another OS user could write these");
    let planted = as_nobody(
        "(echo x > \"$1/planted\") 2>/dev/null && echo planted; true",
        &[vcache],
    );
    assert_eq!(
        planted, "",
        "another OS user could plant a file in the versions cache"
    );
}
