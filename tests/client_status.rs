//! `ects status` on failed uploads (issue 16 item 8): `--wait` names what is waiting
//! and says how to resolve a refusal; `--retry-failed` sends failed versions again
//! once the cause is fixed; `--dismiss` takes them off the list without losing their
//! bytes, after which `--wait` exits 0 again (one 413 is not exit 1 forever).

mod support;

use std::fs;

use ects::store::Digest;
use support::client::*;

fn cache_arg(client: &Client) -> String {
    client.cache.to_string_lossy().into_owned()
}

/// A backup whose big file the server refuses (413), the small one stored.
fn backup_with_a_refusal(server: &Server, client: &Client) -> Vec<u8> {
    let root = client.dir.path().join("Work");
    let big = vec![b'B'; 100];
    write(&root, "big.txt", &big);
    write(&root, "small.txt", b"ok");
    let out = client.run(&server.url, &["backup", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    big
}

#[test]
fn retry_failed_sends_them_once_the_cause_is_fixed() {
    let mut server = Server::start(&["--max-file-size", "10"]);
    let client = Client::new();
    let big = backup_with_a_refusal(&server, &client);

    let out = client.run(
        &server.url,
        &["status", "--wait", "--cache", &cache_arg(&client)],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("--retry-failed") && shown.contains("--dismiss"),
        "{shown}"
    );

    // The admin raises the limit; the student (or a script) retries.
    server.restart_with(&[]);
    let out = client.run(&server.url, &["status", "--retry-failed"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("1 failed upload(s) queued again"), "{shown}");
    assert!(
        server
            .journal()
            .iter()
            .any(|e| e.path == "Work/big.txt" && e.sha256 == Digest::of(&big)),
        "{shown}"
    );
    let out = client.run(
        &server.url,
        &["status", "--wait", "--cache", &cache_arg(&client)],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn dismiss_keeps_the_bytes_and_lets_wait_succeed_again() {
    let server = Server::start(&["--max-file-size", "10"]);
    let client = Client::new();
    let big = backup_with_a_refusal(&server, &client);

    let out = client.run(
        &server.url,
        &["status", "--dismiss", "--cache", &cache_arg(&client)],
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let kept = client.cache.join("not-uploaded/Work/big.txt");
    assert!(shown.contains(&kept.display().to_string()), "{shown}");
    assert_eq!(fs::read(&kept).unwrap(), big, "the bytes are kept, visibly");

    let out = client.run(
        &server.url,
        &["status", "--wait", "--cache", &cache_arg(&client)],
    );
    assert!(out.status.success(), "not exit 1 forever: {}", text(&out));
    let out = client.run(&server.url, &["status", "--cache", &cache_arg(&client)]);
    assert!(
        text(&out).contains("Failed uploads:    none"),
        "{}",
        text(&out)
    );
}

#[test]
fn wait_names_what_is_waiting() {
    use std::sync::Arc;

    use ects::client::{ConnectConfig, HttpUploader, Remote, Spool, SpoolOptions};
    use ects::names::{RelPath, UserName};

    let client = Client::new();
    let down = unreachable_url();
    let cfg = ConnectConfig::new(&down, UserName::parse(USER).unwrap(), PASSWORD.into());
    let spool = Spool::open(
        &client.spool(),
        Arc::new(HttpUploader::new(&Remote::connect(&cfg).unwrap())),
        SpoolOptions::default(),
    )
    .unwrap();
    let src = client.dir.path().join("x");
    fs::write(&src, b"essay").unwrap();
    spool
        .capture_durable(&RelPath::parse("History/essay.odt").unwrap(), &src)
        .unwrap();
    drop(spool);
    let out = client.run(
        &down,
        &[
            "status",
            "--wait",
            "--timeout",
            "0",
            "--cache",
            &cache_arg(&client),
        ],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert!(shown.contains("  History/essay.odt"), "{shown}");
}

/// Unmounts (lazily) and stops a drive, also when the test panics.
struct Drive {
    mnt: std::path::PathBuf,
    process: Guard,
}

impl Drop for Drive {
    fn drop(&mut self) {
        let _ = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&self.mnt)
            .stderr(std::process::Stdio::null())
            .status();
        self.process.kill();
    }
}

#[test]
fn wait_on_a_mounted_drive_by_its_folder() {
    let server = Server::start(&[]);
    let client = Client::new();
    let mnt = client.dir.path().join("B");
    fs::create_dir(&mnt).unwrap();
    let child = client
        .command(&server.url, &["mount", mnt.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _drive = Drive {
        mnt: mnt.clone(),
        process: Guard(Some(child)),
    };
    wait_until("the drive", || mnt.join(".ects-status.txt").exists());
    fs::write(mnt.join("essay.txt"), b"saved on the drive").unwrap();
    // Another spool of this user's (in the default cache folder, where a plain
    // `status --wait` looks) with a version that cannot be sent must not keep this
    // drive's wait from finishing.
    let other_spool = client.dir.path().join(".cache/ects/elsewhere_asdf/spool");
    let down = unreachable_url();
    {
        use std::sync::Arc;

        use ects::client::{ConnectConfig, HttpUploader, Remote, Spool, SpoolOptions};
        use ects::names::{RelPath, UserName};
        let cfg = ConnectConfig::new(&down, UserName::parse(USER).unwrap(), PASSWORD.into());
        let spool = Spool::open(
            &other_spool,
            Arc::new(HttpUploader::new(&Remote::connect(&cfg).unwrap())),
            SpoolOptions::default(),
        )
        .unwrap();
        let f = client.dir.path().join("x");
        fs::write(&f, b"stuck").unwrap();
        spool
            .capture_durable(&RelPath::parse("stuck.txt").unwrap(), &f)
            .unwrap();
    }
    let mut cmd = client.command(&server.url, &["status", "--wait", "--timeout", "60"]);
    cmd.env_remove("ECTS_CACHE").arg("--drive").arg(&mnt);
    let out = Guard(Some(
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    ))
    .wait();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        server
            .journal()
            .iter()
            .any(|e| e.path == "essay.txt" && e.sha256 == Digest::of(b"saved on the drive"))
    );
}
