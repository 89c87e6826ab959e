//! Mounting, unmounting and crashing: refusals with clear messages, clean ends on every
//! signal, stale mounts explained, reconcile after edits made while unmounted.
//!
//! Every test here mounts a FUSE drive, so the suite is Unix-only; on Windows the
//! WinFsp drive is exercised by the GitHub Actions job (.github/workflows/).
#![cfg(unix)]

mod support;

use std::fs;
use std::process::Command;

use support::drive::{Place, StaleGuard, is_mounted, sorted, wait_for};

/// A mount that is expected to be refused. One that mounts by mistake gets SIGTERM from
/// `timeout` after 30 s and unmounts, rather than hanging the test.
fn try_mount(place: &Place, mnt: &std::path::Path) -> std::process::Output {
    Command::new("timeout")
        .arg("30")
        .arg(env!("CARGO_BIN_EXE_ects"))
        .arg("mount")
        .arg(mnt)
        .arg("--data")
        .arg(place.data())
        .arg("--cache")
        .arg(place.cache())
        .arg("--user")
        .arg("kim")
        .output()
        .unwrap()
}

#[test]
fn refuses_a_non_empty_folder_and_an_existing_mount() {
    let place = Place::new();
    fs::create_dir_all(place.mnt()).unwrap();
    fs::write(place.mnt().join("homework.txt"), b"mine").unwrap();
    let out = try_mount(&place, &place.mnt());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(fs::read(place.mnt().join("homework.txt")).unwrap(), b"mine");
    fs::remove_file(place.mnt().join("homework.txt")).unwrap();

    let m = place.mount();
    let other = Place::new();
    let out = try_mount(&other, &m.mnt);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already a mount point"), "{err}");
    // The first drive still works.
    fs::write(m.path("still.txt"), b"ok").unwrap();
    m.unmount();
    assert_eq!(place.stored("still.txt"), sorted(&[b"ok"]));
}

#[test]
fn a_bad_user_name_is_refused_before_mounting() {
    let place = Place::new();
    let out = Command::new(env!("CARGO_BIN_EXE_ects"))
        .arg("mount")
        .arg(place.mnt())
        .arg("--data")
        .arg(place.data())
        .arg("--user")
        .arg("../etc")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!is_mounted(&place.mnt()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("user name"), "{err}");
}

#[test]
fn sigterm_sigint_and_fusermount_all_end_cleanly_with_everything_stored() {
    let place = Place::new();

    let m = place.mount();
    fs::write(m.path("a.txt"), b"by sigterm").unwrap();
    let out = m.unmount();
    assert!(out.contains("every version is stored"), "{out}");
    assert!(!is_mounted(&place.mnt()));

    let m = place.mount();
    fs::write(m.path("a.txt"), b"by sigint").unwrap();
    let (status, out) = m.stop_with(libc::SIGINT);
    assert!(status.success(), "{status} {out}");
    assert!(!is_mounted(&place.mnt()));

    let m = place.mount();
    fs::write(m.path("a.txt"), b"by fusermount").unwrap();
    let (status, out) = m.fusermount_u();
    assert!(status.success(), "{status} {out}");
    assert!(out.contains("every version is stored"), "{out}");

    assert_eq!(
        place.stored("a.txt"),
        sorted(&[b"by sigterm", b"by sigint", b"by fusermount"])
    );
    assert_eq!(
        fs::read(place.backing().join("a.txt")).unwrap(),
        b"by fusermount"
    );
}

#[test]
fn a_second_ctrl_c_ends_the_drive_even_with_files_open() {
    let place = Place::new();
    let m = place.mount();
    let mut f = fs::File::create(m.path("open.txt")).unwrap();
    std::io::Write::write_all(&mut f, b"saved before the end").unwrap();
    let pid = m.pid() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    wait_for("the lazy unmount", || !is_mounted(&place.mnt()));
    // The program with the open file keeps working until it closes it…
    std::io::Write::write_all(&mut f, b"!").unwrap();
    // …unless the student insists.
    let (status, _out) = m.stop_with(libc::SIGINT);
    assert!(
        status.code().is_some(),
        "ended by itself, not killed: {status}"
    );
    drop(f);
    assert_eq!(
        fs::read(place.backing().join("open.txt")).unwrap(),
        b"saved before the end!"
    );
}

#[test]
fn a_stale_mount_is_explained_and_reconcile_versions_what_was_missed() {
    let place = Place::new();
    let m = place.mount();
    fs::write(m.path("kept.txt"), b"before the crash").unwrap();
    let mnt = m.mnt.clone();
    m.kill();
    let _guard = StaleGuard(mnt.clone());

    let out = try_mount(&place, &mnt);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stale mount"), "{err}");
    assert!(err.contains("fusermount3 -u"), "{err}");

    support::drive::fusermount_u(&mnt);
    // Edits made while the drive was not mounted, straight in its folder.
    fs::write(place.backing().join("kept.txt"), b"edited offline").unwrap();
    fs::write(place.backing().join("new.txt"), b"made offline").unwrap();
    fs::write(place.backing().join("skip.tmp"), b"ignored").unwrap();

    let m = place.mount();
    assert_eq!(fs::read(m.path("kept.txt")).unwrap(), b"edited offline");
    m.unmount();
    let kept = place.stored("kept.txt");
    assert!(kept.contains(&b"edited offline".to_vec()), "{kept:?}");
    assert_eq!(place.stored("new.txt"), sorted(&[b"made offline"]));
    assert!(place.stored("skip.tmp").is_empty());

    // A mount with nothing changed takes nothing new, not even a repeat: the drive's
    // index remembers what was versioned.
    let journal = place.data().join("journal/kim.log");
    let before = fs::read_to_string(&journal).unwrap();
    let m = place.mount();
    m.unmount();
    assert_eq!(fs::read_to_string(&journal).unwrap(), before);
}
