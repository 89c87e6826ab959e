//! Spawning the binary under test and keeping its processes in check.

use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ects");

/// How long a server may take to start or stop on a loaded machine.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a client command or a awaited condition may take on a loaded machine.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// A fresh temporary folder, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ects-test-")
        .tempdir()
        .expect("creating a temp dir")
}

/// A command without any ECTS_* setting from the outside world, logging warnings.
pub fn clean(mut c: Command) -> Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ECTS_") {
            c.env_remove(key);
        }
    }
    c.env("RUST_LOG", "warn");
    c
}

/// Kills the child on drop, also when a test panics.
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

    /// Waits for the process to end by itself, at most [`TIMEOUT`]; returns its output.
    pub fn wait(&mut self) -> Output {
        let mut child = self.0.take().expect("a running process");
        let deadline = Instant::now() + TIMEOUT;
        while child.try_wait().expect("waiting for a child").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("process {} did not finish in {TIMEOUT:?}", child.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child
            .wait_with_output()
            .expect("collecting a child's output")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Polls `cond` every 20 ms for at most [`TIMEOUT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The same as [`wait_until`] (the drive tests' name for it).
pub fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    wait_until(what, cond)
}
