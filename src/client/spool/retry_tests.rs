//! The one retry class at work in the spool: `Retry-After` is honoured, a refused
//! password is re-checked only slowly.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::*;
use crate::client::upload::{ErrorClass, UploadError};

/// Answers every HEAD with `answer` and counts the attempts.
struct Always {
    answer: UploadError,
    attempts: AtomicUsize,
}

impl Uploader for Always {
    fn exists(&self, _: &RelPath, _: &Digest) -> Result<bool, UploadError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        Err(self.answer.clone())
    }
    fn upload(&self, _: &RelPath, _: &Path, _: &Digest, _: u64) -> Result<(), UploadError> {
        Err(self.answer.clone())
    }
}

fn fast(tx: mpsc::Sender<SpoolEvent>) -> SpoolOptions {
    SpoolOptions {
        workers: 1,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        events: Some(tx),
        ..SpoolOptions::default()
    }
}

fn run(answer: UploadError) -> (usize, Vec<Duration>) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("a");
    fs::write(&src, b"a").unwrap();
    let up = Arc::new(Always {
        answer,
        attempts: AtomicUsize::new(0),
    });
    let (tx, rx) = mpsc::channel();
    let spool = Spool::open(&tmp.path().join("spool"), up.clone(), fast(tx)).unwrap();
    spool
        .capture(&RelPath::parse("a.txt").unwrap(), &src)
        .unwrap();
    assert_eq!(spool.drain(Duration::from_millis(400)), 1, "stays queued");
    let delays = rx
        .try_iter()
        .filter_map(|e| match e {
            SpoolEvent::Retrying { delay, .. } => Some(delay),
            SpoolEvent::Outcome(_) => None,
        })
        .collect();
    (up.attempts.load(Ordering::SeqCst), delays)
}

#[test]
fn retry_after_is_honoured_over_the_backoff() {
    let busy = UploadError::new(ErrorClass::Transient, 429, "throttled")
        .with_retry_after(Some(Duration::from_secs(5)));
    let (attempts, delays) = run(busy);
    // The backoff alone would have tried ~10 times (10..40 ms) in 400 ms.
    assert_eq!(attempts, 1);
    assert_eq!(delays, [Duration::from_secs(5)]);
}

#[test]
fn a_refused_password_is_not_hammered() {
    let (attempts, delays) = run(UploadError::credentials("wrong user name or password"));
    assert_eq!(attempts, 1, "one sign-in, then paused until the next start");
    assert_eq!(delays, [Duration::ZERO]);
}
