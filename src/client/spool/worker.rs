//! Upload workers: send the oldest sendable entry, never two versions of one path at
//! once; classify the answer (stored, refused for good, try again later).

use std::fs;

use std::time::{Duration, Instant};

use chrono::Utc;

use super::capture::hash_file;
use super::journal::Record;
use super::state::{Entry, Inner, State, data_file};
use super::status::{FailedUpload, LastError};
use super::{Outcome, OutcomeKind, SpoolEvent};
use crate::client::upload::{ErrorClass, UploadError};
use crate::sync::{lock, wait, wait_timeout};

/// The longest `Retry-After` honoured as given (a server asking for more gets re-asked).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

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
                    if self.paused(&st) {
                        // Paused: the same password would be refused again.
                        st = wait(&self.changed, st);
                        continue;
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
        // Only now that it will be sent (not at every try while the server is away):
        // the bytes must still be the ones the journal recorded: a copy changed on disk
        // since (by another program, or someone with access to this folder) is never
        // sent as if it were the student's version.
        match fs::File::open(&file).and_then(|mut f| hash_file(&mut f)) {
            Ok((sha, size)) if sha == e.sha256 && size == e.size => {}
            Ok(_) => {
                tracing::error!(path = %e.path, file = %file.display(), "spool copy changed since it was saved; not uploading it");
                return Ok(OutcomeKind::Failed {
                    status: 0,
                    message: "the spool's copy was changed after it was saved (its bytes no longer match what was recorded); not uploaded, save the file again".into(),
                });
            }
            Err(err) => {
                return Ok(OutcomeKind::Failed {
                    status: 0,
                    message: format!(
                        "the spool's copy cannot be read ({err}); save the file again"
                    ),
                });
            }
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
                    st.credentials_refused = false;
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
            Err(UploadError {
                class: ErrorClass::Permanent,
                status,
                message,
                ..
            }) => {
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
                // Transient trouble, or credentials refused (401): the entry stays queued
                // and everybody waits. A refused password is re-checked only slowly: the
                // server throttles sign-ins, and only an admin (or the next mount) fixes it.
                let UploadError {
                    class,
                    status,
                    message,
                    retry_after,
                } = err;
                let reachable = status != 0;
                st.reachable = Some(reachable);
                st.failures_in_a_row = st.failures_in_a_row.saturating_add(1);
                let credentials = class == ErrorClass::NeedsCredentials;
                st.credentials_refused = credentials;
                let delay = match (class, retry_after) {
                    // Paused (see `worker`) unless told to re-check now and then.
                    (ErrorClass::NeedsCredentials, _) => {
                        self.opts.credentials_recheck.unwrap_or(Duration::ZERO)
                    }
                    // The server said when: that, within reason, whatever our backoff.
                    (_, Some(after)) => after.min(MAX_RETRY_AFTER),
                    _ => backoff(
                        self.opts.initial_backoff,
                        self.opts.max_backoff,
                        st.failures_in_a_row,
                    ),
                };
                st.backoff_until = Some(Instant::now() + delay);
                let new_message =
                    st.last_error.as_ref().map(|l| &l.message) != Some(&message) || credentials;
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
                        credentials,
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
