//! The hand-over between whoever asks the drive to stop (Windows' console control
//! handler: Ctrl-C, closing the console, logoff, shutdown) and the main thread that
//! unmounts and drains. Platform-neutral so Linux tests cover it; only
//! [`windows`](super::windows) uses it.
//!
//! Windows ends the process as soon as the handler returns from a close, logoff or
//! shutdown event, so the handler must not return before the drive has unmounted and
//! drained: [`Shutdown::stop_and_wait`] blocks until [`Shutdown::finished`], bounded so
//! that a stuck drain cannot hold up a logoff for ever (the logoff script waits too).

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long the console handler waits for the unmount and the drain. Windows gives a
/// console program about 5 s on close and longer on logoff and shutdown; the drain's own
/// timeout (`--drain-timeout`, 10 s by default) fits inside.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct State {
    stop: bool,
    finished: bool,
}

/// Stop requested → main thread unmounts and drains → finished.
#[derive(Default)]
pub struct Shutdown {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shutdown {
    pub const fn new() -> Self {
        Self {
            state: Mutex::new(State {
                stop: false,
                finished: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// Asks the drive to stop, without waiting (Ctrl-C: the console stays).
    pub fn stop(&self) {
        let mut s = crate::sync::lock(&self.state);
        s.stop = true;
        self.changed.notify_all();
    }

    /// Asks the drive to stop and waits until it has unmounted and drained, at most
    /// `timeout`. True when it finished in time.
    pub fn stop_and_wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = crate::sync::lock(&self.state);
        s.stop = true;
        self.changed.notify_all();
        if !s.finished {
            tracing::info!(
                seconds = timeout.as_secs(),
                "Windows is ending ects: waiting for the drive to unmount and upload"
            );
        }
        while !s.finished {
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(
                    "the drive did not finish unmounting in time; what is left waits in the \
                     spool for the next mount"
                );
                return false;
            }
            s = crate::sync::wait_timeout(&self.changed, s, deadline - now);
        }
        true
    }

    /// Blocks the main thread until a stop is asked for.
    pub fn wait_for_stop(&self) {
        let mut s = crate::sync::lock(&self.state);
        while !s.stop {
            s = crate::sync::wait(&self.changed, s);
        }
    }

    /// The drive has unmounted and drained: a waiting handler may return.
    pub fn finished(&self) {
        let mut s = crate::sync::lock(&self.state);
        s.finished = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// The handler must not return before the main thread has drained: the main thread
    /// records that it drained before calling `finished`, and the handler sees it.
    #[test]
    fn the_handler_returns_only_after_the_drain() {
        let shutdown = Arc::new(Shutdown::new());
        let drained = Arc::new(AtomicBool::new(false));
        let main = {
            let (shutdown, drained) = (shutdown.clone(), drained.clone());
            std::thread::spawn(move || {
                shutdown.wait_for_stop();
                // Unmount and drain happen here.
                drained.store(true, Ordering::SeqCst);
                shutdown.finished();
            })
        };
        assert!(shutdown.stop_and_wait(Duration::from_secs(600)));
        assert!(
            drained.load(Ordering::SeqCst),
            "the handler returned before the drive drained"
        );
        main.join().unwrap();
    }

    #[test]
    fn the_wait_is_bounded() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.stop_and_wait(Duration::from_millis(1)));
        shutdown.wait_for_stop();
        shutdown.finished();
        assert!(shutdown.stop_and_wait(Duration::ZERO));
    }

    #[test]
    fn ctrl_c_only_asks() {
        let shutdown = Shutdown::new();
        shutdown.stop();
        shutdown.wait_for_stop();
    }

    /// The handler's bound leaves room for the default drain (`--drain-timeout` 10 s).
    #[test]
    fn the_bound_covers_the_default_drain() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["ects", "mount", "B:"]).unwrap();
        let crate::cli::Command::Mount(args) = cli.command else {
            panic!("not a mount");
        };
        assert!(Duration::from_secs(args.drain_timeout) < SHUTDOWN_WAIT);
    }
}
