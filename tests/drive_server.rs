//! The drive against a real server on loopback: saves go on while the server is down
//! and all arrive when it is back; a drive killed with a full spool delivers everything
//! at its next mount.
//!
//! Every test here mounts a FUSE drive, so the suite is Unix-only; on Windows the
//! WinFsp drive is exercised by the GitHub Actions job (.github/workflows/).
#![cfg(unix)]

mod support;

use std::fs;

use support::client::{PASSWORD, Server, USER};
use support::drive::{Place, StaleGuard, stored_versions_of, wait_for};

fn content(i: usize) -> Vec<u8> {
    format!("essay draft number {i}\n")
        .repeat(1 + i % 7)
        .into_bytes()
}

#[test]
fn saves_while_the_server_is_down_all_arrive_when_it_is_back() {
    let mut server = Server::start(&[]);
    let place = Place::new();
    let m = place.mount_server(&server.url, USER, PASSWORD);
    fs::write(m.path("online.txt"), b"while online").unwrap();
    wait_for("the first upload", || {
        stored_versions_of(&server.data, USER, "online.txt").len() == 1
    });

    server.stop();
    fs::create_dir(m.path("Essays")).unwrap();
    for i in 0..200 {
        fs::write(m.path("Essays/essay.txt"), content(i)).unwrap();
    }
    // Saving never waited for the network; the drive has every byte locally.
    assert_eq!(fs::read(m.path("Essays/essay.txt")).unwrap(), content(199));
    let status = fs::read_to_string(m.path(".ects-status.txt")).unwrap();
    assert!(!status.is_empty());

    server.restart();
    wait_for("all 200 offline versions on the server", || {
        stored_versions_of(&server.data, USER, "Essays/essay.txt").len() == 200
    });
    let mut want: Vec<Vec<u8>> = (0..200).map(content).collect();
    want.sort();
    assert_eq!(
        stored_versions_of(&server.data, USER, "Essays/essay.txt"),
        want
    );
    // .versions reads them back from the server.
    wait_for(".versions listing all 200", || {
        fs::read_dir(m.path(".versions/Essays/essay.txt"))
            .map(|d| d.count() == 200)
            .unwrap_or(false)
    });
    let first = fs::read_dir(m.path(".versions/Essays/essay.txt"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(want.contains(&fs::read(first).unwrap()));
    let out = m.unmount();
    assert!(out.contains("every version is stored"), "{out}");
}

#[test]
fn a_drive_killed_with_a_full_spool_delivers_everything_at_the_next_mount() {
    let mut server = Server::start(&[]);
    let place = Place::new();
    let m = place.mount_server(&server.url, USER, PASSWORD);
    server.stop();
    for i in 0..50 {
        fs::write(m.path(&format!("file-{i}.txt")), content(i)).unwrap();
    }
    let mnt = m.mnt.clone();
    m.kill();
    let _stale = StaleGuard(mnt.clone());
    support::drive::fusermount_u(&mnt);

    server.restart();
    let m = place.mount_server(&server.url, USER, PASSWORD);
    wait_for("all 50 files on the server", || {
        (0..50).all(|i| {
            stored_versions_of(&server.data, USER, &format!("file-{i}.txt")) == vec![content(i)]
        })
    });
    m.unmount();
}

/// Issue 16 item 9: `ls .versions` with the server down said "Input/output error" and
/// nothing more. It must say the network is out of reach, and `.ects-status.txt` why.
#[test]
fn versions_with_the_server_down_says_it_is_out_of_reach() {
    let mut server = Server::start(&[]);
    let place = Place::new();
    let m = place.mount_server(&server.url, USER, PASSWORD);
    fs::write(m.path("a.txt"), b"stored").unwrap();
    wait_for("the upload", || {
        stored_versions_of(&server.data, USER, "a.txt").len() == 1
    });

    server.stop();
    // Listings are reused for about a second; then the drive asks the server again.
    wait_for(".versions to fail", || {
        fs::read_dir(m.path(".versions")).is_err()
    });
    let e = fs::read_dir(m.path(".versions")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENETUNREACH), "{e}");
    let status = fs::read_to_string(m.path(".ects-status.txt")).unwrap();
    assert!(
        status.contains(".versions: the server is out of reach since"),
        "{status}"
    );
    // Saving goes on.
    fs::write(m.path("b.txt"), b"offline").unwrap();

    server.restart();
    wait_for(".versions back", || {
        fs::read_dir(m.path(".versions")).is_ok()
    });
    let status = fs::read_to_string(m.path(".ects-status.txt")).unwrap();
    assert!(!status.contains("out of reach"), "{status}");
    let out = m.unmount();
    assert!(out.contains("every version is stored"), "{out}");
}
