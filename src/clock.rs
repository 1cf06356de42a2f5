//! The wall clock the function reads: when a lease lapses, when a dead letter failed,
//! whether an `OccurredAt` is in the future, the fleet's schedule instants. One value,
//! held by the pipeline and built from the system clock in production, so that a test
//! can run the same code with a clock of its own (a container whose clock is off).
//! Elapsed time (deadlines, pauses, limiters) is tokio's `Instant`, not this.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Reads the time of day.
pub trait WallClock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

struct System;

impl WallClock for System {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The wall clock a container reads; the system clock by default.
#[derive(Clone)]
pub struct Clock(Arc<dyn WallClock>);

impl Clock {
    /// The system clock.
    #[must_use]
    pub fn system() -> Self {
        Clock(Arc::new(System))
    }

    /// A clock that reads `clock`.
    #[must_use]
    pub fn new(clock: Arc<dyn WallClock>) -> Self {
        Clock(clock)
    }

    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }

    /// Now, in epoch microseconds.
    #[must_use]
    pub fn now_us(&self) -> i64 {
        self.now().timestamp_micros()
    }

    /// Now, in epoch milliseconds (0 before the epoch).
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.now().timestamp_millis()).unwrap_or(0)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}
