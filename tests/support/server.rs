//! The real `ects server` on a loopback port it picks itself (port 0) and reports,
//! killed by a Drop guard, also on panic.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ects::names::UserName;
pub use ects::users::Role;
use ects::users::UserDb;

use super::process::{BIN, PROCESS_TIMEOUT, temp_dir};

/// Adds a user to the data folder `data` (as `ects user add` does).
pub fn add_user(data: &Path, name: &str, role: Role, password: &str) {
    let db = UserDb::open(data).expect("opening users");
    db.add(&UserName::parse(name).expect("user name"), role, password)
        .expect("adding a user");
}

/// A running `ects server`; killed (SIGKILL) when dropped, also on panic.
pub struct TestServer {
    /// e.g. `http://127.0.0.1:41234`, as the server printed it.
    pub url: String,
    pub data: PathBuf,
    args: Vec<String>,
    /// `127.0.0.1:0` at first; the port the server reported once it must stay.
    listen: String,
    child: Option<Child>,
    log: PathBuf,
    // Dropped last: the data folder (when the server owns it) and the log folder.
    _owned_data: Option<tempfile::TempDir>,
    _logs: tempfile::TempDir,
}

/// Why a server did not come up.
#[derive(Debug)]
pub struct StartFailure {
    pub status: Option<ExitStatus>,
    pub stderr: String,
}

impl TestServer {
    /// A fresh data folder with `users` (name, role, password) and a server on it.
    pub fn with_users(users: &[(&str, Role, &str)], args: &[&str]) -> Self {
        let dir = temp_dir();
        for (name, role, password) in users {
            add_user(dir.path(), name, *role, password);
        }
        let mut server = Self::start(dir.path(), args);
        server._owned_data = Some(dir);
        server
    }

    /// Starts `ects server --data DATA --listen 127.0.0.1:0 ARGS…` and waits for the
    /// line with its URL. Panics, showing the server's log, if it does not come up.
    pub fn start(data: &Path, args: &[&str]) -> Self {
        match Self::try_start(data, args) {
            Ok(server) => server,
            Err(f) => panic!(
                "the server did not start (exit: {:?}); its log:\n{}",
                f.status, f.stderr
            ),
        }
    }

    /// Like [`TestServer::start`], but returns how it failed instead of panicking.
    pub fn try_start(data: &Path, args: &[&str]) -> Result<Self, StartFailure> {
        let logs = temp_dir();
        let mut server = TestServer {
            url: String::new(),
            data: data.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            listen: "127.0.0.1:0".to_owned(),
            child: None,
            log: logs.path().join("server.log"),
            _owned_data: None,
            _logs: logs,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), StartFailure> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening the server log");
        let mut command = Command::new(BIN);
        // Only the arguments given here count, not the environment's ECTS_* settings.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ECTS_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .arg("server")
            .arg("--data")
            .arg(&self.data)
            .arg("--listen")
            .arg(&self.listen)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning ects server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("ects server listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Ok(url) = rx.recv_timeout(Duration::from_millis(50)) {
                self.url = url;
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(StartFailure {
                    status: Some(status),
                    stderr: self.log(),
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartFailure {
                    status: None,
                    stderr: self.log(),
                });
            }
        }
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the server logged (stderr) so far, across restarts.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// SIGKILL, no chance to clean up (a crash or power cut, as far as the store knows).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a URL ending in a port")
    }

    /// SIGTERM, then waits (bounded) for the exit: the graceful shutdown path.
    #[cfg(unix)]
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the running server.
    #[cfg(unix)]
    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("the server is not running");
        // SAFETY: kill(2) on our own child's pid, which it still is: not yet waited for.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
    }

    /// Waits (bounded by [`PROCESS_TIMEOUT`]) for the server to exit by itself.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is not running");
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the server") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not exit; its log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server if it runs and starts it again on the same data folder with the
    /// same arguments. The port (and so `url`) changes.
    pub fn restart(&mut self) {
        self.kill();
        self.listen = "127.0.0.1:0".to_owned();
        self.respawn();
    }

    /// Like [`TestServer::restart`], but on the port it had, so clients configured
    /// with `url` reach it again (a server that went away and came back). The port was
    /// the server's own until a moment ago, so nothing else holds it.
    pub fn restart_on_same_port(&mut self) {
        self.kill();
        self.listen = format!("127.0.0.1:{}", self.port());
        self.respawn();
    }

    /// Like [`TestServer::restart_on_same_port`], with new arguments (an admin who
    /// changed the server's settings).
    pub fn restart_on_same_port_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self.restart_on_same_port();
    }

    fn respawn(&mut self) {
        if let Err(f) = self.spawn() {
            panic!(
                "the server did not restart (exit: {:?}); its log:\n{}",
                f.status, f.stderr
            );
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}
