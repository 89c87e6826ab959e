//! Where the store's `stored_at` comes from. Production reads the system clock; tests
//! inject a [`ManualClock`] and advance it, so "a later version" needs no sleep.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// A source of `stored_at` times.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock: every real store uses it.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until told to move: `advance` is the only way time passes.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// Starts at `start` (whole microseconds keep it exact on every filesystem we use).
    pub fn starting_at(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self(Mutex::new(start)))
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        *crate::sync::lock(&self.0) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *crate::sync::lock(&self.0)
    }
}

/// The clock every store starts with.
pub(crate) fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}
