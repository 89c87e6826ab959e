//! The client tests' fixtures: the real server with one student `asdf`, which can go
//! away and come back on the same port; client commands run with a clean environment;
//! the server's journal; and a TCP proxy that stalls uploads. Every process is killed
//! by a Drop guard, also on panic.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use ects::store::{EventKind, JournalEvent};

pub use super::process::{BIN, Guard, TIMEOUT, clean, temp_dir, text, wait_until};
use super::server::{Role, TestServer, add_user};

pub const USER: &str = "asdf";
pub const PASSWORD: &str = "correct horse";

/// The real server with a data folder of its own and one user `asdf` / `pw`.
pub struct Server {
    pub data: PathBuf,
    /// Chosen by the server (port 0) at the first start, kept across restarts.
    pub port: u16,
    pub url: String,
    // Dropped before the folder it serves.
    process: TestServer,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        let dir = temp_dir();
        let data = dir.path().join("data");
        fs::create_dir(&data).expect("creating the data folder");
        add_user(&data, USER, Role::Student, PASSWORD);
        let process = TestServer::start(&data, args);
        Server {
            data,
            port: process.port(),
            url: process.url.clone(),
            process,
            _dir: dir,
        }
    }

    /// Starts the server (again) on the same port and data; waits until it listens.
    pub fn restart(&mut self) {
        self.process.restart_on_same_port();
        assert_eq!(self.process.url, self.url, "the server moved");
    }

    /// Starts the server again on the same port and data with other arguments.
    pub fn restart_with(&mut self, args: &[&str]) {
        self.process.restart_on_same_port_with(args);
        assert_eq!(self.process.url, self.url, "the server moved");
    }

    /// Kills the server: it is gone at once.
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.process.log()
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

/// A URL where no server listens: nothing on a lab or CI machine serves port 1
/// (tcpmux), and on Linux no unprivileged test process can take it. Connecting is
/// refused, unlike a port found free and released, which another test may take.
pub fn unreachable_url() -> String {
    "http://127.0.0.1:1".to_owned()
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
