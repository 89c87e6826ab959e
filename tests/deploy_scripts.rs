//! The admin's files in `mount-scripts/`: every systemd unit passes `systemd-analyze
//! verify`, the server unit's hardening rates "OK", the server unit really runs the
//! server (where systemd is PID 1 and we are root), and the shell scripts pass
//! shellcheck. A missing tool skips its test with a line saying why, except under CI
//! (`CI` set), where a missing tool is a failure: CI must install it.
//!
//! The files checked here are the Linux deployment (systemd units, shell scripts), so
//! the suite is Unix-only.
#![cfg(unix)]

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{BIN, Role, sha256_hex, temp_dir};

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mount-scripts")
}

fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

/// Whether `tool` runs; if not, says why and whether the test should skip (outside
/// CI) or fail (under CI).
fn have_tool(tool: &str, package: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        let why = format!("{tool} is not installed (apt-get install {package})");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install it: {why}"
        );
        println!("SKIPPED: {why}");
    }
    found
}

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The unit's text with the installed binary's path replaced by the one under test
/// (verify checks that every Exec command exists).
fn unit_with_test_binary(unit: &Path) -> String {
    fs::read_to_string(unit)
        .unwrap()
        .replace("/usr/local/bin/ects", BIN)
}

fn is_user_unit(unit: &Path) -> bool {
    unit.file_name().unwrap() == "ects-drive.service"
}

#[test]
fn systemd_units_pass_verify() {
    if !have_tool("systemd-analyze", "systemd") {
        return;
    }
    let units = files_with_ext(&scripts().join("linux"), "service");
    assert_eq!(units.len(), 2, "{units:?}");
    let dir = temp_dir();
    let runtime = dir.path().join("runtime");
    fs::create_dir(&runtime).unwrap();
    for unit in &units {
        let copy = dir.path().join(unit.file_name().unwrap());
        fs::write(&copy, unit_with_test_binary(unit)).unwrap();
        let mut cmd = Command::new("systemd-analyze");
        if is_user_unit(unit) {
            // A user unit is checked against a user manager, which needs a runtime dir.
            cmd.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
        }
        let out = run(cmd.arg("verify").arg(&copy));
        // verify exits 0 on mere warnings (an unknown key is "ignored"): a clean
        // unit has no output at all.
        assert!(
            out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
            "{} does not verify cleanly:\n{}",
            unit.display(),
            text(&out)
        );
    }
}

#[test]
fn verify_would_catch_a_broken_unit() {
    // The check above can fail: an unknown key is reported.
    if !have_tool("systemd-analyze", "systemd") {
        return;
    }
    let dir = temp_dir();
    let unit = scripts().join("linux/ects-server.service");
    let broken = unit_with_test_binary(&unit).replace("UMask=0077", "UMask=0077\nProtectSytem=yes");
    let copy = dir.path().join("ects-server.service");
    fs::write(&copy, broken).unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&copy));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ProtectSytem"),
        "{}",
        text(&out)
    );
}

#[test]
fn server_unit_hardening_rates_ok() {
    if !have_tool("systemd-analyze", "systemd") {
        return;
    }
    let dir = temp_dir();
    let copy = dir.path().join("ects-server.service");
    fs::write(
        &copy,
        unit_with_test_binary(&scripts().join("linux/ects-server.service")),
    )
    .unwrap();
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(level) = stdout
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for ects-server.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
    else {
        // systemd before 252 has no --offline.
        println!("SKIPPED: systemd-analyze security --offline is not supported here");
        println!("{}", text(&out));
        return;
    };
    assert!(
        level <= 2.0,
        "the server unit is exposed at {level} (want at most 2.0):\n{stdout}"
    );
}

#[test]
fn shell_scripts_pass_shellcheck() {
    if !have_tool("shellcheck", "shellcheck") {
        return;
    }
    let scripts = files_with_ext(&scripts().join("linux"), "sh");
    assert!(!scripts.is_empty());
    for script in &scripts {
        let out = run(Command::new("shellcheck").arg(script));
        assert!(
            out.status.success(),
            "{} fails shellcheck:\n{}",
            script.display(),
            text(&out)
        );
    }
}

/// Removes the test's unit, binary copy and data folder, also on panic.
struct InstalledUnit {
    name: String,
}

impl Drop for InstalledUnit {
    fn drop(&mut self) {
        let unit = format!("{}.service", self.name);
        let _ = Command::new("systemctl").args(["stop", &unit]).status();
        let _ = fs::remove_file(format!("/run/systemd/system/{unit}"));
        let _ = Command::new("systemctl").arg("daemon-reload").status();
        let _ = fs::remove_dir_all(format!("/run/{}", self.name));
        let _ = fs::remove_dir_all(format!("/var/lib/{}", self.name));
    }
}

/// Why the real-systemd test cannot run here, if it cannot.
fn systemd_unavailable() -> Option<String> {
    let init = fs::read_to_string("/proc/1/comm").unwrap_or_default();
    if init.trim() != "systemd" {
        return Some(format!(
            "systemd is not PID 1 here (PID 1 is {:?}), so no unit can be started",
            init.trim()
        ));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("starting a system unit needs root".into());
    }
    None
}

/// Installs the real server unit (only paths and port changed) as a transient unit
/// under /run/systemd/system, starts it under every hardening setting it declares,
/// and uploads through it.
#[test]
fn server_unit_runs_the_server_under_its_hardening() {
    if let Some(why) = systemd_unavailable() {
        println!("SKIPPED: {why}");
        return;
    }
    let name = format!("ects-test-{}", std::process::id());
    let _installed = InstalledUnit { name: name.clone() };
    // The service user, as the admin creates it.
    let out = run(Command::new("systemd-sysusers").arg(scripts().join("linux/ects.sysusers.conf")));
    assert!(out.status.success(), "{}", text(&out));

    // ProtectHome= and PrivateTmp= hide the build folder: the binary goes under /run.
    let bin_dir = PathBuf::from(format!("/run/{name}"));
    fs::create_dir_all(&bin_dir).unwrap();
    fs::copy(BIN, bin_dir.join("ects")).unwrap();
    let data = PathBuf::from(format!("/var/lib/{name}"));
    support::add_user(&data, "anna", Role::Student, "pw-anna");

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unit = fs::read_to_string(scripts().join("linux/ects-server.service"))
        .unwrap()
        .replace(
            "/usr/local/bin/ects",
            &format!("{}/ects", bin_dir.display()),
        )
        .replace("/var/lib/ects", &data.display().to_string())
        .replace("StateDirectory=ects", &format!("StateDirectory={name}"))
        .replace("/etc/ects/server.env", &format!("/etc/{name}/none.env"))
        .replace(
            "ECTS_LISTEN=0.0.0.0:8080",
            &format!("ECTS_LISTEN=127.0.0.1:{port}"),
        );
    fs::write(format!("/run/systemd/system/{name}.service"), unit).unwrap();
    let out = run(Command::new("systemctl").arg("daemon-reload"));
    assert!(out.status.success(), "{}", text(&out));
    let out = run(Command::new("systemctl").args(["start", &format!("{name}.service")]));
    assert!(out.status.success(), "{}\n{}", text(&out), journal(&name));

    let deadline = Instant::now() + support::PROCESS_TIMEOUT;
    while http(port, "GET /api/v1/health", "", b"").is_none() {
        assert!(
            Instant::now() < deadline,
            "the server did not answer:\n{}",
            journal(&name)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = b"written under ProtectSystem=strict";
    let answer = http(
        port,
        "PUT /api/v1/files/anna/Work/essay.txt",
        &format!(
            "Authorization: Basic YW5uYTpwdy1hbm5h\r\nX-Content-SHA256: {}\r\n",
            sha256_hex(body)
        ),
        body,
    )
    .unwrap_or_default();
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "{answer}\n{}",
        journal(&name)
    );
    let stored = data
        .join("uploads/anna/Work/essay.txt")
        .join(format!("{}.txt", sha256_hex(body)));
    assert_eq!(fs::read(&stored).unwrap(), body);
    // Written by the service's own user, not root.
    use std::os::unix::fs::MetadataExt;
    assert_ne!(fs::metadata(&stored).unwrap().uid(), 0);
}

fn journal(name: &str) -> String {
    Command::new("journalctl")
        .args(["--no-pager", "-n", "50", "-u", &format!("{name}.service")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// One HTTP/1.1 request; the whole answer, or None when nothing listens.
fn http(port: u16, request_line: &str, headers: &str, body: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let head = format!(
        "{request_line} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// After a drive is killed (its mount left dead), the login script clears the dead
/// mount and mounts again instead of stopping at "Transport endpoint is not connected"
/// (issue 16 item 7). The real script, the real binary, a real FUSE mount.
#[test]
fn login_script_remounts_after_a_killed_drive() {
    if !Path::new("/dev/fuse").exists() || !have_tool("fusermount3", "fuse3") {
        println!("SKIPPED: no FUSE here");
        return;
    }
    let place = support::drive::Place::new();
    let mnt = place.mnt();
    let _stale = support::drive::StaleGuard(mnt.clone());
    let drive = place.mount();
    fs::write(drive.path("before-crash.txt"), b"saved").unwrap();
    drive.kill();
    // Once the kernel's cached attributes expire, every look at it fails.
    support::drive::wait_for("the dead mount to answer ENOTCONN", || {
        fs::metadata(&mnt).is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN))
    });

    // `ects` on the PATH is the binary under test; no systemd user session here.
    let bin = place.dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("ects")).unwrap();
    let password = place.dir.path().join("password");
    fs::write(&password, "unused by the embedded store\n").unwrap();
    let mut script = Command::new(scripts().join("linux/ects-drive-login.sh"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ECTS_") || key.to_string_lossy().starts_with("XDG_") {
            script.env_remove(key);
        }
    }
    let child = script
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("HOME", place.dir.path())
        .env("ECTS_MOUNTPOINT", &mnt)
        .env("ECTS_USER", support::drive::USER)
        .env("ECTS_PASSWORD_FILE", &password)
        .env("ECTS_DATA", place.data())
        .env("ECTS_CACHE", place.cache())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut drive = KillOnDrop(child);
    let log = place.dir.path().join(".local/state/ects/drive.log");
    support::drive::wait_for("the login script to mount the drive again", || {
        if let Ok(Some(status)) = drive.0.try_wait() {
            panic!(
                "the login script exited ({status}):\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        mnt.join(".ects-status.txt").exists()
    });
    fs::write(mnt.join("after-crash.txt"), b"saved again").unwrap();
    support::drive::fusermount_u(&mnt);
    support::drive::wait_for("the drive to exit", || {
        matches!(drive.0.try_wait(), Ok(Some(_)))
    });
    assert_eq!(
        place.stored("after-crash.txt"),
        vec![b"saved again".to_vec()]
    );
}

/// Kills a child process when dropped, also on panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The user unit, like the login script, clears a dead mount before `mkdir` touches
/// the mount point (on a dead mount mkdir fails and the unit would never start).
#[test]
fn drive_unit_clears_a_dead_mount_before_mkdir() {
    let unit = fs::read_to_string(scripts().join("linux/ects-drive.service")).unwrap();
    let pos = |needle: &str| {
        unit.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing:\n{unit}"))
    };
    assert!(pos("ExecStartPre=-/usr/bin/fusermount3 -u -z") < pos("ExecStartPre=/usr/bin/mkdir"));
}
