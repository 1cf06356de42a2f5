//! One invocation's instants, computed once from its deadline and the settings'
//! margins, and asked by every part that must end in time: Connect's attempts
//! (`calls.rs`), the fleet's schedule (`limiter/fleet.rs`), the staleness guard's table
//! (`guard.rs`) and the dead-letter sends (`settle.rs`). Nothing else subtracts from
//! the deadline.
//!
//! ```text
//! now ─ last_attempt ─ cutoff ─ dead_letter_by ─ release_by ─ note_by ─ deadline
//!      (attempt budget)  (the dead-letter  (half the margin kept for the reply; a
//!                         budget before     deferral's note may take half of it)
//!                         release_by)
//! ```

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant;

use super::Settings;
use crate::clock::Clock;

/// How far past the invocation deadline a lease runs: room for clocks of two
/// containers that disagree. Lambda stops an invocation at its deadline, so the holder
/// is not working on the user by then.
pub(crate) const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// One invocation's instants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// When the invocation started (its instants were computed).
    pub started: Instant,
    /// When the reply is due.
    pub deadline: Instant,
    /// The deadline less the margin: every Connect attempt and every request to the
    /// table has ended by then.
    pub cutoff: Instant,
    /// No attempt (of a Connect call, a claim on the fleet's schedule or a lease) starts
    /// after this: the attempt budget before the cutoff.
    pub last_attempt: Instant,
    /// The last instant a dead-letter send may start: its own budget still fits before
    /// the half of the margin kept for the reply.
    pub dead_letter_by: Instant,
    /// The lease's release (and the watermarks written with it) has ended by then: the
    /// other half of the margin is the reply's.
    pub release_by: Instant,
    /// The note of a deferral handed back has ended by then: half of what is kept for
    /// the reply after `release_by`, so that a record whose deferral is known only that
    /// late (its lane waited for the guard's release of others) is still not counted as
    /// one of its own failures. A reply to the local Runtime API takes a few milliseconds.
    pub note_by: Instant,
    /// The longest one attempt may take.
    pub attempt: Duration,
    /// The longest a dead-letter send may take, its retries included.
    pub dead_letter_send: Duration,
}

impl Budget {
    /// The instants of an invocation due at `deadline`.
    pub(crate) fn new(settings: &Settings, deadline: Instant) -> Self {
        let before = |d: Duration| deadline.checked_sub(d).unwrap_or_else(Instant::now);
        let cutoff = before(settings.deadline_margin);
        let last_attempt = cutoff
            .checked_sub(settings.call_budget)
            .unwrap_or_else(Instant::now);
        let release_by = before(settings.deadline_margin / 2);
        let note_by = before(settings.deadline_margin / 4);
        let dead_letter_send = settings.dead_letter_budget();
        let dead_letter_by = release_by
            .checked_sub(dead_letter_send)
            .unwrap_or_else(Instant::now);
        Budget {
            started: Instant::now(),
            deadline,
            cutoff,
            last_attempt,
            dead_letter_by,
            release_by,
            note_by,
            attempt: settings.call_budget,
            dead_letter_send,
        }
    }

    /// The invocation's whole time, from its start to its deadline.
    pub(crate) fn length(&self) -> Duration {
        self.deadline.saturating_duration_since(self.started)
    }

    /// Whether an attempt may still start now.
    pub(crate) fn may_start(&self) -> bool {
        Instant::now() <= self.last_attempt
    }

    /// When one request to the table or the schedule started now must end: one attempt
    /// budget, and never after `limit`.
    pub(crate) fn request_ends(&self, limit: Instant) -> Instant {
        (Instant::now() + self.attempt).min(limit)
    }

    /// Until when a lease taken now runs (by the wall clock, which the table and the
    /// other containers share): the time left to the deadline, and the lease margin.
    pub(crate) fn lease_horizon(&self, clock: &Clock) -> DateTime<Utc> {
        let remaining = self.deadline.saturating_duration_since(Instant::now()) + LEASE_MARGIN;
        clock.now() + TimeDelta::from_std(remaining).unwrap_or(TimeDelta::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(margin_ms: u64, attempt_ms: u64) -> Settings {
        Settings {
            max_receive_count: 3,
            concurrency: 4,
            deadline_margin: Duration::from_millis(margin_ms),
            call_budget: Duration::from_millis(attempt_ms),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_instants_come_in_order_before_the_deadline() {
        let deadline = Instant::now() + Duration::from_secs(4);
        let b = Budget::new(&settings(1000, 1000), deadline);
        assert_eq!(b.cutoff, deadline - Duration::from_millis(1000));
        assert_eq!(b.last_attempt, deadline - Duration::from_millis(2000));
        // Half the margin for the reply, the other half (at least 100 ms) for a send.
        assert_eq!(b.dead_letter_by, deadline - Duration::from_millis(1000));
        assert_eq!(b.release_by, deadline - Duration::from_millis(500));
        assert_eq!(b.note_by, deadline - Duration::from_millis(250));
        assert!(b.may_start());
        assert_eq!(
            b.request_ends(b.cutoff),
            Instant::now() + Duration::from_secs(1)
        );
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert!(!b.may_start());
        assert_eq!(b.request_ends(b.cutoff), b.cutoff, "never past the limit");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_already_past_leaves_no_attempt() {
        let b = Budget::new(&settings(500, 1000), Instant::now());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!b.may_start());
        assert!(b.lease_horizon(&Clock::system()) > Utc::now() + TimeDelta::seconds(1));
    }
}
