//! Helpers for the client's integration tests: the real `ects server` on a fixed
//! loopback port (so it can be stopped and started again), client commands run with a
//! clean environment, the server's journal, and a throttling TCP proxy. Every process
//! is killed by a Drop guard, also on panic.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use ects::names::UserName;
use ects::store::{EventKind, JournalEvent};
use ects::users::{Role, UserDb};

pub const BIN: &str = env!("CARGO_BIN_EXE_ects");
pub const TIMEOUT: Duration = Duration::from_secs(120);

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ects-client-test-")
        .tempdir()
        .expect("temp dir")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child on drop (SIGKILL), also when a test panics.
pub struct Guard(pub Option<Child>);

impl Guard {
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map(Child::id).unwrap_or(0)
    }
    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    /// Waits for the process to end by itself, at most `TIMEOUT`; returns its output.
    pub fn wait(&mut self) -> Output {
        let mut child = self.0.take().expect("a running process");
        let deadline = Instant::now() + TIMEOUT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("process {} did not finish in {TIMEOUT:?}", child.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The real server with a data folder of its own and one user `asdf` / `pw`.
pub struct Server {
    pub data: PathBuf,
    pub port: u16,
    pub url: String,
    process: Guard,
    pub args: Vec<String>,
    _dir: tempfile::TempDir,
}

pub const USER: &str = "asdf";
pub const PASSWORD: &str = "correct horse";

impl Server {
    pub fn start(args: &[&str]) -> Server {
        let dir = temp_dir();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        let db = UserDb::open(&data).unwrap();
        db.add(&UserName::parse(USER).unwrap(), Role::Student, PASSWORD)
            .unwrap();
        let port = free_port();
        let mut s = Server {
            url: format!("http://127.0.0.1:{port}"),
            data,
            port,
            process: Guard(None),
            args: args.iter().map(|s| s.to_string()).collect(),
            _dir: dir,
        };
        s.restart();
        s
    }

    /// Starts the server (again) on the same port and data; waits until healthy.
    pub fn restart(&mut self) {
        self.process.kill();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.with_extension("log"))
            .unwrap();
        let child = clean(Command::new(BIN))
            .arg("server")
            .arg("--data")
            .arg(&self.data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.process = Guard(Some(child));
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if healthy(&self.url) {
                return;
            }
            if let Some(c) = self.process.0.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "the server exited with {status}; log:\n{}",
                    fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "the server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the server is gone at once.
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// The server's own record of what it accepted for `asdf`.
    pub fn journal(&self) -> Vec<JournalEvent> {
        let Ok(text) = fs::read_to_string(self.data.join("journal").join(format!("{USER}.log")))
        else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn new_events(&self) -> Vec<JournalEvent> {
        self.journal()
            .into_iter()
            .filter(|e| e.event == EventKind::New)
            .collect()
    }

    /// `uploads/asdf/<path>/<sha><ext>` for a stored version.
    pub fn version_file(&self, path: &str, sha: &str, ext: &str) -> PathBuf {
        let mut p = self.data.join("uploads").join(USER);
        p.extend(path.split('/'));
        p.join(format!("{sha}{ext}"))
    }
}

fn healthy(url: &str) -> bool {
    let Some(addr) = url.strip_prefix("http://") else {
        return false;
    };
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET /api/v1/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// A command without any ECTS_* setting from the outside world, and no terminal.
pub fn clean(mut c: Command) -> Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ECTS_") {
            c.env_remove(key);
        }
    }
    c.env("RUST_LOG", "warn");
    c
}

/// The client side of a test: a password file, a cache folder and a home.
pub struct Client {
    pub dir: tempfile::TempDir,
    pub password_file: PathBuf,
    pub cache: PathBuf,
}

impl Client {
    pub fn new() -> Client {
        let dir = temp_dir();
        let password_file = dir.path().join("password");
        fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let cache = dir.path().join("cache");
        Client {
            password_file,
            cache,
            dir,
        }
    }

    /// `ects <args> --server URL --user asdf --password-file F` (cache via ECTS_CACHE).
    pub fn command(&self, server: &str, args: &[&str]) -> Command {
        let mut c = clean(Command::new(BIN));
        c.args(args)
            .arg("--server")
            .arg(server)
            .arg("--user")
            .arg(USER)
            .arg("--password-file")
            .arg(&self.password_file)
            .env("ECTS_CACHE", &self.cache)
            .env("HOME", self.dir.path())
            .env_remove("XDG_CACHE_HOME")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, server: &str, args: &[&str]) -> Output {
        let child = self
            .command(server, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Guard(Some(child)).wait()
    }

    pub fn spool(&self) -> PathBuf {
        self.cache.join("spool")
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Polls `cond` every 20 ms for at most `TIMEOUT`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP proxy to `upstream` that forwards at most `budget` bytes from clients to the
/// server and then holds every connection open without forwarding more, like a network
/// that stopped mid-upload. Answers still flow back. Stops when dropped.
pub struct StallingProxy {
    pub url: String,
    budget: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
}

impl StallingProxy {
    pub fn start(upstream_port: u16, budget: i64) -> StallingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let budget = Arc::new(AtomicI64::new(budget));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, st) = (budget.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                            continue;
                        };
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        let (b, st2) = (b.clone(), st.clone());
                        std::thread::spawn(move || pump_limited(client, server, &b, &st2));
                        std::thread::spawn(move || pump(s2, c2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        StallingProxy { url, budget, stop }
    }

    pub fn stalled(&self) -> bool {
        self.budget.load(Ordering::SeqCst) <= 0
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn pump_limited(mut from: TcpStream, mut to: TcpStream, budget: &AtomicI64, stop: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if budget.load(Ordering::SeqCst) <= 0 {
            // Hold the connection: nothing more reaches the server.
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                budget.fetch_sub(n as i64, Ordering::SeqCst);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Writes `bytes` to `dir/rel`, creating folders.
pub fn write(dir: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, bytes).unwrap();
    p
}
