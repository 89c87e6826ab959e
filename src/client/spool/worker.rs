//! Upload workers: send the oldest sendable entry, never two versions of one path at
//! once; classify the answer (stored, refused for good, try again later).

use std::fs;

use std::time::{Duration, Instant};

use chrono::Utc;

use super::journal::Record;
use super::state::{Entry, Inner, State, data_file};
use super::status::{FailedUpload, LastError};
use super::{Outcome, OutcomeKind, SpoolEvent};
use crate::client::upload::UploadError;
use crate::sync::{lock, wait, wait_timeout};

impl Inner {
    /// One upload worker: oldest sendable entry first; one version per path at a time.
    pub(super) fn worker(&self) {
        loop {
            let entry = {
                let mut st = lock(&self.state);
                loop {
                    if st.stop {
                        return;
                    }
                    if let Some(until) = st.backoff_until {
                        let now = Instant::now();
                        if now < until {
                            st = wait_timeout(&self.changed, st, until - now);
                            continue;
                        }
                    }
                    let next = st
                        .pending
                        .values()
                        .find(|e| !st.in_flight.contains(&e.id) && !st.busy_paths.contains(&e.path))
                        .cloned();
                    if let Some(e) = next {
                        st.in_flight.insert(e.id);
                        st.busy_paths.insert(e.path.clone());
                        break e;
                    }
                    st = wait(&self.changed, st);
                }
            };
            let result = self.send(&entry);
            self.finish(entry, result);
        }
    }

    pub(super) fn send(&self, e: &Entry) -> Result<OutcomeKind, UploadError> {
        let file = data_file(&self.captures_dir, e.id);
        match fs::metadata(&file) {
            Ok(m) if m.len() == e.size => {}
            Ok(m) => {
                return Ok(OutcomeKind::Failed {
                    status: 0,
                    message: format!(
                        "the spool's copy is damaged ({} of {} bytes); save the file again",
                        m.len(),
                        e.size
                    ),
                });
            }
            Err(err) => {
                return Ok(OutcomeKind::Failed {
                    status: 0,
                    message: format!("the spool's copy is missing ({err}); save the file again"),
                });
            }
        }
        if self.uploader.exists(&e.path, &e.sha256)? {
            return Ok(OutcomeKind::AlreadyStored);
        }
        self.uploader.upload(&e.path, &file, &e.sha256, e.size)?;
        Ok(OutcomeKind::Uploaded)
    }

    pub(super) fn finish(&self, e: Entry, result: Result<OutcomeKind, UploadError>) {
        let mut st = lock(&self.state);
        st.in_flight.remove(&e.id);
        st.busy_paths.remove(&e.path);
        let event;
        match result {
            Ok(kind) => {
                if !matches!(kind, OutcomeKind::Failed { .. }) {
                    st.reachable = Some(true);
                    st.failures_in_a_row = 0;
                    st.backoff_until = None;
                }
                st.pending.remove(&e.id);
                match &kind {
                    OutcomeKind::Failed { status, message } => {
                        self.fail(&mut st, &e, *status, message.clone());
                    }
                    OutcomeKind::Uploaded | OutcomeKind::AlreadyStored => {
                        tracing::debug!(path = %e.path, sha256 = %e.sha256, ?kind, "version stored");
                        st.done += 1;
                        st.records.push(Record::Done { id: e.id });
                        st.unlinks.push(e.id);
                    }
                }
                event = Some(SpoolEvent::Outcome(Outcome {
                    id: e.id,
                    path: e.path.clone(),
                    sha256: e.sha256,
                    size: e.size,
                    kind,
                }));
            }
            Err(UploadError::Refused { status, message }) if status != 401 => {
                st.reachable = Some(true);
                st.failures_in_a_row = 0;
                st.backoff_until = None;
                st.pending.remove(&e.id);
                tracing::warn!(path = %e.path, status, %message, "the server refused a version");
                self.fail(&mut st, &e, status, message.clone());
                event = Some(SpoolEvent::Outcome(Outcome {
                    id: e.id,
                    path: e.path.clone(),
                    sha256: e.sha256,
                    size: e.size,
                    kind: OutcomeKind::Failed { status, message },
                }));
            }
            Err(err) => {
                // Network or server trouble, or wrong credentials (401): the entry stays
                // queued and everybody waits.
                let (message, reachable) = match err {
                    UploadError::Retryable(m) => (m, false),
                    UploadError::Refused { message, .. } => (message, true),
                };
                st.reachable = Some(reachable);
                st.failures_in_a_row = st.failures_in_a_row.saturating_add(1);
                let delay = backoff(
                    self.opts.initial_backoff,
                    self.opts.max_backoff,
                    st.failures_in_a_row,
                );
                st.backoff_until = Some(Instant::now() + delay);
                let new_message = st.last_error.as_ref().map(|l| &l.message) != Some(&message);
                if new_message {
                    tracing::warn!(path = %e.path, "upload failed, retrying in {delay:?}: {message}");
                } else {
                    tracing::debug!(path = %e.path, "upload failed, retrying in {delay:?}: {message}");
                }
                st.last_error = Some(LastError {
                    time: Utc::now(),
                    message: message.clone(),
                });
                if new_message {
                    st.records.push(Record::Error {
                        time: Utc::now(),
                        message: message.clone(),
                    });
                }
                event = Some(SpoolEvent::Retrying { message, delay });
            }
        }
        // Sent before anyone can see the new state, so a caller that saw "idle" has
        // every event already.
        if let Some(ev) = event {
            self.emit(ev);
        }
        drop(st);
        self.changed.notify_all();
    }

    pub(super) fn fail(&self, st: &mut State, e: &Entry, status: u16, message: String) {
        let time = Utc::now();
        st.records.push(Record::Failed {
            id: e.id,
            status,
            message: message.clone(),
            time,
        });
        let f = FailedUpload {
            id: e.id,
            path: e.path.to_string(),
            sha256: e.sha256,
            size: e.size,
            status,
            message,
            time,
        };
        st.failed.insert(e.id, (e.rec(), f));
    }
}

/// `initial · 2^(n-1)`, capped at `max`.
pub(super) fn backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    initial.saturating_mul(1u32 << exp).min(max)
}
