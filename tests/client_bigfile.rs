//! A 1 GiB version goes through `ects backup` with the client's memory bounded.
//!
//! Linux-only: the peak memory comes from /proc.
#![cfg(target_os = "linux")]

mod support;

use std::fs;
use std::io::Write;
use std::time::Duration;

use ects::store::Digest;
use support::client::*;

/// Peak resident memory (VmHWM) of a running process, in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[test]
fn one_gib_upload_keeps_client_memory_under_100_mib() {
    let server = Server::start(&[]);
    let client = Client::new();
    let root = client.dir.path().join("Big");
    fs::create_dir(&root).unwrap();
    let path = root.join("disk.img");
    let mut f = fs::File::create(&path).unwrap();
    let mut block = vec![0u8; 1 << 20];
    let sha = {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for i in 0..1024u64 {
            block[..8].copy_from_slice(&i.to_le_bytes());
            f.write_all(&block).unwrap();
            h.update(&block);
        }
        Digest::from_bytes(h.finalize().into())
    };
    drop(f);

    let mut child = Guard(Some(
        client
            .command(&server.url, &["backup", root.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let pid = child.pid();
    let mut peak = 0;
    while let Some(kib) = peak_kib(pid) {
        peak = peak.max(kib);
        if child.0.as_mut().unwrap().try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait();
    assert!(out.status.success(), "{}", text(&out));
    assert!(peak > 0, "never saw the process's memory");
    assert!(
        peak < 100 * 1024,
        "client peak RSS {peak} KiB, want < 100 MiB"
    );
    let events = server.new_events();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].sha256, events[0].size), (sha, 1 << 30));
    eprintln!("client peak RSS for a 1 GiB backup: {} MiB", peak / 1024);
}
