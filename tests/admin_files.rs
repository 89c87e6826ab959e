//! What an admin does to a live server's data folder with the real binary: `sudo ects
//! user …` beside a server that runs as its own user (issue 16 item 2).

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
#[cfg(unix)]
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
#[cfg(unix)]
use std::time::Duration;

use support::client::{Guard, clean, text};

fn ects(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = clean(Command::new(support::BIN));
    c.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    Guard(Some(c.spawn().unwrap())).wait()
}

#[cfg(unix)]
/// `ects server` on `data` as user `nobody` (as a service runs as `ects`), with its
/// URL and a guard that kills it. Its log goes to `log`.
fn server_as_nobody(data: &Path, log: &Path) -> (Guard, String) {
    let mut command = clean(Command::new("setpriv"));
    command
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(support::BIN)
        .arg("server")
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info");
    start_server(command, log)
}

/// Runs a `server` command line until it prints its URL; its stderr goes to `log`.
fn start_server(mut command: Command, log: &Path) -> (Guard, String) {
    let log_file = fs::File::create(log).unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("starting the server");
    let stdout = child.stdout.take().unwrap();
    let guard = Guard(Some(child));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("ects server listening on ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(support::PROCESS_TIMEOUT)
        .unwrap_or_else(|_| {
            panic!(
                "the server did not start; its log:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            )
        });
    (guard, url)
}

fn list_status(url: &str, user: &str, password: &str) -> u16 {
    support::http_client()
        .get(format!("{url}/api/v1/tree/{user}/"))
        .basic_auth(user, Some(password))
        .send()
        .expect("GET")
        .status()
        .as_u16()
}

#[cfg(unix)]
fn uid_of(name: &str) -> u32 {
    let out = Command::new("id").args(["-u", name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
#[cfg(unix)] // Unix users: root, and `nobody` through setpriv
fn root_running_user_commands_keeps_the_server_serving() {
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run the server as another user");
        return;
    }
    let dir = support::temp_dir();
    // The server's user must reach its data folder through the temp folder.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    let nobody = uid_of("nobody");
    std::os::unix::fs::chown(&data, Some(nobody), None).unwrap();

    // The admin (root) creates the first user in the server's folder.
    let env = [("ECTS_PASSWORD", "first-password")];
    let out = ects(
        &["user", "add", "alice", "--data", "data"],
        dir.path(),
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    let users = data.join("users.toml");
    let meta = fs::metadata(&users).unwrap();
    assert_eq!(
        meta.uid(),
        nobody,
        "a new users.toml goes to the folder's owner"
    );
    assert_eq!(meta.mode() & 0o777, 0o600);

    let log = dir.path().join("server.log");
    let (mut server, url) = server_as_nobody(&data, &log);
    assert_eq!(list_status(&url, "alice", "first-password"), 200);

    // The admin changes the password as root (and adds a user) while the server runs.
    let env = [("ECTS_PASSWORD", "second-password")];
    let out = ects(
        &["user", "passwd", "alice", "--data", "data"],
        dir.path(),
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = ects(&["user", "add", "bob", "--data", "data"], dir.path(), &env);
    assert!(out.status.success(), "{}", text(&out));
    let meta = fs::metadata(&users).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (nobody, 0o600),
        "the replaced users.toml keeps its owner and mode"
    );
    let lock = fs::metadata(data.join("users.lock")).unwrap();
    assert_eq!(
        lock.uid(),
        nobody,
        "the lock file stays usable by the server"
    );
    assert_eq!(
        list_status(&url, "alice", "second-password"),
        200,
        "server log:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(list_status(&url, "bob", "second-password"), 200);

    // A users.toml the server cannot read (left by an older version): the request
    // fails, and the server's log names the file and the fix.
    let old = data.join("users.toml.old-version");
    fs::copy(&users, &old).unwrap();
    fs::set_permissions(&old, fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(&old, &users).unwrap();
    assert_eq!(list_status(&url, "alice", "second-password"), 500);
    std::thread::sleep(Duration::from_millis(200));
    let logged = fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&users.display().to_string()) && logged.contains("chown"),
        "the log must name the file and the fix:\n{logged}"
    );
    server.kill();
}

/// One name rule for every way a name is created (issue 15 item 6): `user add`,
/// `user import` and registration all refuse look-alikes (case) and reserved names,
/// and one address cannot register accounts without end.
#[test]
fn one_name_rule_for_add_import_and_registration() {
    let dir = support::temp_dir();
    let env = [("ECTS_PASSWORD", "a-good-password")];
    let add = |name: &str| ects(&["user", "add", name, "--data", "data"], dir.path(), &env);
    let out = add("alice");
    assert!(out.status.success(), "{}", text(&out));
    let out = add("mrs-k");
    assert!(out.status.success(), "{}", text(&out));
    for bad in [
        "Alice", "MRS-K", "con", "NUL", "com1", "a.", "admin", "Root",
    ] {
        let out = add(bad);
        assert!(!out.status.success(), "user add {bad} must be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("only in case") || err.contains("reserved") || err.contains("end with"),
            "{bad}: {err}"
        );
    }
    // One password rule too: a 2-character password is refused.
    let out = ects(
        &["user", "add", "shorty", "--data", "data"],
        dir.path(),
        &[("ECTS_PASSWORD", "ab")],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 8"));
    fs::write(
        dir.path().join("list.csv"),
        "name,role\nALICE,student\nprn,student\n",
    )
    .unwrap();
    let out = ects(
        &["user", "import", "list.csv", "--data", "data"],
        dir.path(),
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2:") && err.contains(":3:"), "{err}");

    let server = support::TestServer::start(&dir.path().join("data"), &["--allow-registration"]);
    let sign_in = |name: &str| list_status(&server.url, name, "a-good-password");
    for bad in ["Alice", "MRS-K", "con", "lpt1.x", "a.", "admin"] {
        assert_eq!(sign_in(bad), 401, "registering {bad} must be refused");
    }
    assert_eq!(list_status(&server.url, "shorty", "ab"), 401);
    for i in 0..ects::users::REGISTRATIONS_PER_ADDRESS {
        assert_eq!(sign_in(&format!("new{i}")), 200);
    }
    assert_eq!(sign_in("one-too-many"), 429);
    // Those already registered still sign in.
    assert_eq!(sign_in("new0"), 200);
    let out = ects(&["user", "list", "--data", "data"], dir.path(), &[]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        listed.lines().count(),
        2 + ects::users::REGISTRATIONS_PER_ADDRESS,
        "{listed}"
    );
}

/// Copying the data folder with `cp -r` resets every `stored_at` (issue 16 item 6):
/// fsck finds it, `--repair-times` restores the journal's times.
#[test]
#[cfg(unix)] // copies the data folder with `cp -r`
fn fsck_finds_and_repairs_times_lost_by_a_copy() {
    let mut server =
        support::TestServer::with_users(&[("alice", support::Role::Student, "pw-alice")], &[]);
    support::put_version(&server, "alice", "pw-alice", "Docs/essay.txt", b"first");
    support::put_version(&server, "alice", "pw-alice", "Docs/essay.txt", b"second");
    server.kill();
    let versions = support::stored_versions(&server.data);
    assert_eq!(versions.len(), 2);
    let mtime = |data: &Path, rel: &str| {
        fs::metadata(data.join("uploads").join(rel))
            .unwrap()
            .modified()
            .unwrap()
    };
    // Long enough that the copy's times differ by more than the filesystem rounding.
    std::thread::sleep(Duration::from_millis(1200));
    let dir = support::temp_dir();
    let copy = dir.path().join("copy");
    let cp = Command::new("cp")
        .arg("-r")
        .arg(&server.data)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());
    assert_ne!(
        mtime(&copy, &versions[0]),
        mtime(&server.data, &versions[0])
    );

    let copy_arg = copy.to_str().unwrap();
    let out = ects(&["fsck", "--data", copy_arg], dir.path(), &[]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(report.matches("TIME ").count(), 2, "{report}");
    assert!(report.contains("--repair-times"), "{report}");

    let out = ects(
        &["fsck", "--repair-times", "--data", copy_arg],
        dir.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("REPAIRED 2"));
    for v in &versions {
        assert_eq!(mtime(&copy, v), mtime(&server.data, v), "{v}");
    }
    let out = ects(&["fsck", "--data", copy_arg], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// `ects mount ~/B` with no --server and no --data keeps its versions under the
/// user's data folder, never in `./ects-data` of wherever it was started (issue 16
/// item 9). On/off flags read `1` from the environment.
#[test]
#[cfg(unix)] // mounts a FUSE drive
fn mount_without_data_uses_the_users_data_folder() {
    if !Path::new("/dev/fuse").exists() {
        println!("SKIPPED: no /dev/fuse");
        return;
    }
    let dir = support::temp_dir();
    let home = dir.path().join("home");
    let cwd = dir.path().join("elsewhere");
    fs::create_dir_all(&cwd).unwrap();
    let mnt = dir.path().join("B");
    let _stale = support::drive::StaleGuard(mnt.clone());
    let mut mount = clean(Command::new(support::BIN));
    mount
        .args(["mount", "--user", "kim"])
        .env("ECTS_MOUNTPOINT", &mnt)
        .env("HOME", &home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CACHE_HOME")
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut drive = Guard(Some(mount.spawn().unwrap()));
    support::drive::wait_for("the drive to mount", || {
        support::drive::is_mounted(&mnt) && mnt.join(".versions").exists()
    });
    fs::write(mnt.join("note.txt"), b"kept").unwrap();
    support::drive::fusermount_u(&mnt);
    let out = drive.wait();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !cwd.join("ects-data").exists(),
        "nothing in the current folder"
    );
    let data = home.join(".local/share/ects/data");
    assert_eq!(
        support::drive::stored_versions_of(&data, "kim", "note.txt"),
        vec![b"kept".to_vec()]
    );

    // ECTS_REPAIR_TIMES=1 (and the role from ECTS_ROLE) are understood.
    let data_arg = data.to_str().unwrap();
    let out = ects(
        &["fsck", "--data", data_arg],
        dir.path(),
        &[("ECTS_REPAIR_TIMES", "1")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let env = [
        ("ECTS_ROLE", "teacher"),
        ("ECTS_PASSWORD", "a-good-password"),
    ];
    let out = ects(&["user", "add", "mrs-k", "--data", "srv"], dir.path(), &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("teacher"));
}

/// `-vv` and `RUST_LOG=debug` show more than INFO on the server (issue 16 item 9).
#[test]
fn server_debug_logging_takes_effect() {
    let dir = support::temp_dir();
    let env = [("ECTS_PASSWORD", "a-good-password")];
    let out = ects(&["user", "add", "kim", "--data", "data"], dir.path(), &env);
    assert!(out.status.success(), "{}", text(&out));
    for (flags, rust_log) in [(&["-vv"][..], None), (&[][..], Some("debug"))] {
        let mut command = clean(Command::new(support::BIN));
        command
            .args(flags)
            .args(["server", "--data", "data", "--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env_remove("RUST_LOG");
        if let Some(level) = rust_log {
            command.env("RUST_LOG", level);
        }
        let log = dir.path().join("server.log");
        let (mut server, _url) = start_server(command, &log);
        server.kill();
        let logged = fs::read_to_string(&log).unwrap();
        assert!(
            logged.contains("DEBUG") && logged.contains("configuration"),
            "{flags:?} RUST_LOG={rust_log:?}:\n{logged}"
        );
    }
}
