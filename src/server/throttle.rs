//! Sign-in throttling against password guessing, for the web page and HTTP Basic alike.
//!
//! Failed sign-ins are counted per (address, name), per address and per name, each in a
//! fixed window that starts at its first failure. Over a limit, sign-ins for that key
//! are refused with 429 until the window ends — before any password is checked, so
//! guessing also stops costing argon2 time. A success clears the (address, name) and
//! name counters.
//!
//! The per-name limit stops guessing spread over many PCs, but must not let a classmate
//! lock a student out of their own drive: an address where the name signed in
//! successfully in the last hours is trusted for that name and skips the per-name
//! limit (it still has its own per-(address, name) one). Uploads refused with 429 stay
//! in the drive's spool and are retried, so a lock-out delays backups, never loses one.
//!
//! The per-address limit stops one PC guessing many names, but must not lock out the
//! classmates who share its address (a lab's NAT): trusted pairs skip it as well.
//! Trust is kept in `<data>/signin-trust.json` (mode 0600), so a restart of the server
//! does not hand a guesser the lock-out trust prevented.
//!
//! The address is the TCP peer's: behind a reverse proxy all clients share one, so the
//! per-address limit is generous.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Name of the trust file in the data folder.
pub const TRUST_FILE: &str = "signin-trust.json";

/// How long failures are remembered (and a lock-out lasts, at most).
pub const WINDOW: Duration = Duration::from_secs(5 * 60);
/// Failures allowed per window for one name from one address.
pub const PER_ADDRESS_AND_NAME: u32 = 5;
/// Failures allowed per window for one name from anywhere.
pub const PER_NAME: u32 = 20;
/// Failures allowed per window from one address, for any names.
pub const PER_ADDRESS: u32 = 50;
/// How long a successful sign-in trusts its address for that name.
pub const TRUST: Duration = Duration::from_secs(12 * 60 * 60);
/// Keys remembered at most; beyond it, new keys are not tracked until old ones expire.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Pair(IpAddr, String),
    Name(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    failures: u32,
    started: Instant,
}

/// Failure counters shared by every request.
#[derive(Debug, Default)]
pub struct Throttle {
    windows: Mutex<HashMap<Key, Window>>,
    /// (address, name) pairs that signed in successfully, and when.
    trusted: Mutex<HashMap<(IpAddr, String), Instant>>,
    /// Where trust is kept across restarts, if anywhere.
    trust_file: Option<PathBuf>,
}

/// One trusted pair in the trust file.
#[derive(Serialize, Deserialize)]
struct TrustRecord {
    addr: IpAddr,
    name: String,
    /// When it last signed in, in seconds since 1970.
    at: u64,
}

impl Throttle {
    pub fn new() -> Self {
        Self::default()
    }

    /// A throttle whose trust is loaded from, and saved to, `file`. A missing or
    /// unreadable file starts with no trust (logged), never stops the server.
    pub fn with_trust_file(file: PathBuf) -> Self {
        let mut trusted = HashMap::new();
        match std::fs::read(&file) {
            Ok(bytes) => match serde_json::from_slice::<Vec<TrustRecord>>(&bytes) {
                Ok(records) => {
                    let (now, wall) = (Instant::now(), unix_now());
                    for r in records {
                        let age = Duration::from_secs(wall.saturating_sub(r.at));
                        if age < TRUST
                            && let Some(at) = now.checked_sub(age)
                        {
                            trusted.insert((r.addr, r.name), at);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "ignoring an unreadable sign-in trust file")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot read the sign-in trust file")
            }
        }
        Self {
            trusted: Mutex::new(trusted),
            trust_file: Some(file),
            ..Self::default()
        }
    }

    /// Writes the trusted pairs to the trust file (mode 0600, atomic rename).
    /// Blocking: call it off the async runtime.
    pub fn save(&self) {
        let Some(file) = &self.trust_file else { return };
        let records: Vec<TrustRecord> = {
            let trusted = crate::sync::lock(&self.trusted);
            let (now, wall) = (Instant::now(), unix_now());
            trusted
                .iter()
                .filter(|(_, t)| now.saturating_duration_since(**t) < TRUST)
                .map(|((addr, name), t)| TrustRecord {
                    addr: *addr,
                    name: name.clone(),
                    at: wall.saturating_sub(now.saturating_duration_since(*t).as_secs()),
                })
                .collect()
        };
        let dir = file.parent().unwrap_or(std::path::Path::new("."));
        let result = serde_json::to_vec(&records)
            .map_err(std::io::Error::other)
            .and_then(|json| {
                // tempfile creates the file 0600.
                let mut tmp = tempfile::Builder::new()
                    .prefix(".signin-trust.")
                    .tempfile_in(dir)?;
                tmp.write_all(&json)?;
                tmp.persist(file).map_err(|e| e.error)?;
                Ok(())
            });
        if let Err(e) = result {
            tracing::warn!(file = %file.display(), error = %e, "cannot save the sign-in trust file");
        }
    }

    /// `Err(wait)` when sign-ins for `name` from `addr` are refused for now.
    pub fn check(&self, addr: Option<IpAddr>, name: &str) -> Result<(), Duration> {
        self.check_at(addr, name, Instant::now())
    }

    /// Counts one failed sign-in.
    pub fn failed(&self, addr: Option<IpAddr>, name: &str) {
        self.failed_at(addr, name, Instant::now());
    }

    /// Clears the counters a successful sign-in proves were the owner's own mistakes.
    /// `true` when a new name/address pair became trusted and should be saved.
    pub fn succeeded(&self, addr: Option<IpAddr>, name: &str) -> bool {
        self.succeeded_at(addr, name, Instant::now())
    }

    fn succeeded_at(&self, addr: Option<IpAddr>, name: &str, now: Instant) -> bool {
        let mut changed = false;
        if let Some(addr) = addr {
            let mut trusted = crate::sync::lock(&self.trusted);
            let key = (addr, name.to_owned());
            // Refreshed at most once a minute: this runs on every authenticated request.
            let fresh = trusted
                .get(&key)
                .is_some_and(|t| now.saturating_duration_since(*t) < Duration::from_secs(60));
            if !fresh {
                if trusted.len() >= MAX_KEYS {
                    trusted.retain(|_, t| now.saturating_duration_since(*t) < TRUST);
                }
                if trusted.len() < MAX_KEYS {
                    // Saved when a pair is new; a refresh of a known pair is kept in
                    // memory only, or every active student would rewrite the file
                    // once a minute.
                    changed = trusted.insert(key, now).is_none();
                }
            }
        }
        let mut windows = crate::sync::lock(&self.windows);
        if windows.is_empty() {
            return changed;
        }
        windows.remove(&Key::Name(name.to_owned()));
        if let Some(addr) = addr {
            windows.remove(&Key::Pair(addr, name.to_owned()));
        }
        changed
    }

    fn is_trusted(&self, addr: Option<IpAddr>, name: &str, now: Instant) -> bool {
        let Some(addr) = addr else { return false };
        let trusted = crate::sync::lock(&self.trusted);
        trusted
            .get(&(addr, name.to_owned()))
            .is_some_and(|t| now.saturating_duration_since(*t) < TRUST)
    }

    fn keys(addr: Option<IpAddr>, name: &str) -> Vec<(Key, u32)> {
        let mut keys = vec![(Key::Name(name.to_owned()), PER_NAME)];
        if let Some(addr) = addr {
            keys.push((Key::Pair(addr, name.to_owned()), PER_ADDRESS_AND_NAME));
            keys.push((Key::Address(addr), PER_ADDRESS));
        }
        keys
    }

    fn check_at(&self, addr: Option<IpAddr>, name: &str, now: Instant) -> Result<(), Duration> {
        let windows = crate::sync::lock(&self.windows);
        if windows.is_empty() {
            return Ok(());
        }
        let mut wait = Duration::ZERO;
        for (key, limit) in Self::keys(addr, name) {
            // Guessing elsewhere, or at other names from the same address (a shared
            // lab NAT), does not lock out a pair that signed in before.
            if matches!(key, Key::Name(_) | Key::Address(_)) && self.is_trusted(addr, name, now) {
                continue;
            }
            if let Some(w) = windows.get(&key) {
                let age = now.saturating_duration_since(w.started);
                if age < WINDOW && w.failures >= limit {
                    wait = wait.max(WINDOW - age);
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    fn failed_at(&self, addr: Option<IpAddr>, name: &str, now: Instant) {
        let mut windows = crate::sync::lock(&self.windows);
        if windows.len() >= MAX_KEYS {
            windows.retain(|_, w| now.saturating_duration_since(w.started) < WINDOW);
        }
        for (key, _) in Self::keys(addr, name) {
            let full = windows.len() >= MAX_KEYS;
            match windows.get_mut(&key) {
                Some(w) if now.saturating_duration_since(w.started) < WINDOW => {
                    w.failures = w.failures.saturating_add(1);
                }
                Some(w) => {
                    *w = Window {
                        failures: 1,
                        started: now,
                    }
                }
                None if full => {}
                None => {
                    windows.insert(
                        key,
                        Window {
                            failures: 1,
                            started: now,
                        },
                    );
                }
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_one_pc_out_then_forgives() {
        let t = Throttle::new();
        let pc: IpAddr = "10.0.0.7".parse().unwrap();
        let other: IpAddr = "10.0.0.8".parse().unwrap();
        let now = Instant::now();
        for _ in 0..PER_ADDRESS_AND_NAME {
            assert!(t.check_at(Some(pc), "alice", now).is_ok());
            t.failed_at(Some(pc), "alice", now);
        }
        let wait = t.check_at(Some(pc), "alice", now).unwrap_err();
        assert!(wait <= WINDOW && wait > Duration::ZERO);
        assert!(t.check_at(Some(other), "alice", now).is_ok(), "other PCs");
        assert!(t.check_at(Some(pc), "bob", now).is_ok(), "other names");
        assert!(
            t.check_at(Some(pc), "alice", now + WINDOW).is_ok(),
            "expires"
        );
    }

    #[test]
    fn guessing_elsewhere_does_not_lock_the_owners_own_pc() {
        let t = Throttle::new();
        let now = Instant::now();
        let home: IpAddr = "10.0.0.1".parse().unwrap();
        t.succeeded_at(Some(home), "alice", now);
        for i in 0..PER_NAME {
            let addr: IpAddr = format!("10.0.9.{i}").parse().unwrap();
            t.failed_at(Some(addr), "alice", now);
        }
        assert!(
            t.check_at(Some("10.0.8.1".parse().unwrap()), "alice", now)
                .is_err()
        );
        assert!(
            t.check_at(Some(home), "alice", now).is_ok(),
            "trusted address"
        );
        assert!(
            t.check_at(Some(home), "alice", now + TRUST).is_ok(),
            "window over"
        );
        for _ in 0..PER_ADDRESS_AND_NAME {
            t.failed_at(Some(home), "alice", now);
        }
        assert!(
            t.check_at(Some(home), "alice", now).is_err(),
            "own limit holds"
        );
    }

    /// Issue 15 item 5: a classmate guessing many names from a shared address does not
    /// lock out the students who signed in from it before; newcomers are limited.
    #[test]
    fn guessing_from_a_shared_address_does_not_lock_out_its_known_users() {
        let t = Throttle::new();
        let now = Instant::now();
        let lab: IpAddr = "10.0.5.5".parse().unwrap();
        t.succeeded_at(Some(lab), "alice", now);
        for i in 0..PER_ADDRESS {
            t.failed_at(Some(lab), &format!("guess{i}"), now);
        }
        let cases = [("alice", true), ("newcomer", false)];
        for (name, allowed) in cases {
            assert_eq!(t.check_at(Some(lab), name, now).is_ok(), allowed, "{name}");
        }
    }

    /// Only a new pair is worth saving; refreshing a known one is not.
    #[test]
    fn only_a_new_pair_asks_to_be_saved() {
        let t = Throttle::new();
        let now = Instant::now();
        let pc: IpAddr = "10.0.0.7".parse().unwrap();
        assert!(t.succeeded_at(Some(pc), "alice", now));
        assert!(!t.succeeded_at(Some(pc), "alice", now + Duration::from_secs(120)));
        assert!(t.succeeded_at(Some(pc), "bob", now + Duration::from_secs(120)));
    }

    #[test]
    fn trust_survives_a_restart_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(TRUST_FILE);
        let home: IpAddr = "10.0.0.1".parse().unwrap();
        let before = Throttle::with_trust_file(file.clone());
        assert!(before.succeeded(Some(home), "alice"));
        before.save();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        let after = Throttle::with_trust_file(file);
        let now = Instant::now();
        assert!(after.is_trusted(Some(home), "alice", now));
        assert!(!after.is_trusted(Some(home), "bob", now));
    }

    #[test]
    fn per_name_and_per_address_limits() {
        let t = Throttle::new();
        let now = Instant::now();
        for i in 0..PER_NAME {
            let addr: IpAddr = format!("10.0.1.{i}").parse().unwrap();
            t.failed_at(Some(addr), "alice", now);
        }
        assert!(
            t.check_at(Some("10.0.2.1".parse().unwrap()), "alice", now)
                .is_err()
        );
        t.succeeded(None, "alice");
        assert!(
            t.check_at(Some("10.0.2.1".parse().unwrap()), "alice", now)
                .is_ok()
        );

        let guesser: IpAddr = "10.0.3.3".parse().unwrap();
        for i in 0..PER_ADDRESS {
            t.failed_at(Some(guesser), &format!("user{i}"), now);
        }
        assert!(t.check_at(Some(guesser), "someone-new", now).is_err());
        assert!(t.check_at(None, "someone-new", now).is_ok());
    }
}
