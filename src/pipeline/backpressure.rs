//! Backpressure from the update schedule, before the reads: a user's `DescribeUser` is
//! made only when its update can still get a turn in this invocation. A container
//! receives a whole batch, but under a backlog the fleet's one rate (or the container's
//! own share) reaches only part of it before the deadline; a user read and then not
//! given a turn costs a read for nothing, and its redelivery reads it again.
//!
//! Two rules, both kept per container (Lambda gives a container one invocation at a
//! time, and what it learns carries over to the next):
//! - **Read slots.** A user takes a slot before its lease and its `DescribeUser` and keeps
//!   it through its update: at most [`ReadSlots::size`] users hold a read while they wait
//!   for their turn. Two are enough for the next read to be done by the time the turn
//!   comes at Connect's rates; more only at rates where a quarter second holds more turns.
//! - **The turn meter.** The container's own rate of update turns, measured while it had
//!   a request waiting (the fleet's rate shared with the other busy containers, or its
//!   own share without the fleet): a user is deferred without a read when the turns
//!   already waited for and its own cannot come before the latest start. Before any
//!   measurement the container counts on its configured share.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long a window the meter remembers, roughly: older turns weigh half as much
/// once this much waiting has been seen again.
const MEMORY: Duration = Duration::from_secs(60);

/// The time a read is given before its turn (the reads are made while the turn is waited
/// for, so only one read's worth of time is asked for).
const READ_ALLOWANCE: Duration = Duration::from_millis(250);

/// A container's update turns per second while it had one waiting.
pub(super) struct TurnMeter {
    state: Mutex<MeterState>,
}

struct MeterState {
    /// Requests waiting for a turn now, and since when at least one has.
    waiting: u32,
    busy_since: Option<Instant>,
    /// Turns obtained and seconds spent with a request waiting, decayed.
    turns: f64,
    busy_secs: f64,
}

impl TurnMeter {
    /// A meter that counts on `share` turns a second until it has measured.
    pub(super) fn new(share: f64) -> Self {
        let share = share.max(0.001);
        TurnMeter {
            state: Mutex::new(MeterState {
                waiting: 0,
                busy_since: None,
                // One turn at the share: the prior weighs as one measured turn.
                turns: 1.0,
                busy_secs: 1.0 / share,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MeterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request starts waiting for its turn.
    pub(super) fn waits(&self) {
        let mut s = self.lock();
        if s.waiting == 0 {
            s.busy_since = Some(Instant::now());
        }
        s.waiting += 1;
    }

    /// A request stopped waiting: with its turn (`got`), or without (late).
    pub(super) fn done(&self, got: bool) {
        let mut s = self.lock();
        s.waiting = s.waiting.saturating_sub(1);
        let now = Instant::now();
        if let Some(since) = s.busy_since {
            let busy = now.saturating_duration_since(since).as_secs_f64();
            s.busy_secs += busy;
            s.busy_since = (s.waiting > 0).then_some(now);
        }
        if got {
            s.turns += 1.0;
        }
        let memory = MEMORY.as_secs_f64();
        if s.busy_secs > memory {
            let k = memory / s.busy_secs;
            s.turns *= k;
            s.busy_secs = memory;
        }
    }

    /// The container's turns per second while waiting, as measured.
    pub(super) fn rate(&self) -> f64 {
        let s = self.lock();
        let mut busy = s.busy_secs;
        if let Some(since) = s.busy_since {
            busy += Instant::now()
                .saturating_duration_since(since)
                .as_secs_f64();
        }
        (s.turns / busy.max(1e-3)).max(1e-3)
    }

    /// Whether a turn `ahead` turns from now (1: the next; 0: a read alone) can come by
    /// `latest_start`.
    pub(super) fn reaches(&self, ahead: usize, latest_start: Instant) -> bool {
        let wait = Duration::from_secs_f64(ahead as f64 / self.rate());
        Instant::now() + READ_ALLOWANCE + wait <= latest_start
    }
}

/// The container's read slots.
pub(super) struct ReadSlots {
    slots: std::sync::Arc<Semaphore>,
    size: usize,
}

impl ReadSlots {
    /// Enough slots to read a quarter second of turns ahead at `ceiling` updates a
    /// second, at least 2 and at most `lanes`.
    pub(super) fn new(ceiling: f64, lanes: usize) -> Self {
        let ahead = (ceiling * 0.25).ceil();
        let size = if ahead.is_finite() && ahead > 2.0 {
            (ahead as usize).min(lanes.max(2))
        } else {
            2
        };
        ReadSlots {
            slots: std::sync::Arc::new(Semaphore::new(size)),
            size,
        }
    }

    #[cfg(test)]
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// A slot, once one is free, no later than `by`; with the number of slots held by
    /// others then (the users read before this one that wait for their turn).
    pub(super) async fn take_by(&self, by: Instant) -> Option<(OwnedSemaphorePermit, usize)> {
        let permit =
            tokio::time::timeout_at(by, std::sync::Arc::clone(&self.slots).acquire_owned())
                .await
                .ok()?
                .ok()?;
        let held_by_others = self.size - self.slots.available_permits() - 1;
        Some((permit, held_by_others))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_meter_starts_at_the_share_and_learns_the_turns_it_gets() {
        let meter = TurnMeter::new(0.5);
        assert!((meter.rate() - 0.5).abs() < 1e-9);
        // Four turns in 40 s of waiting: 0.1 a second, weighed with the prior.
        for _ in 0..4 {
            meter.waits();
            tokio::time::advance(Duration::from_secs(10)).await;
            meter.done(true);
        }
        let r = meter.rate();
        assert!((r - 5.0 / 42.0).abs() < 1e-6, "{r}");
        // A user three turns out cannot be reached in 20 s; the next turn can.
        let latest = Instant::now() + Duration::from_secs(20);
        assert!(!meter.reaches(3, latest));
        assert!(meter.reaches(1, latest));
    }

    #[tokio::test(start_paused = true)]
    async fn time_with_nobody_waiting_does_not_count() {
        let meter = TurnMeter::new(1.0);
        meter.waits();
        tokio::time::advance(Duration::from_secs(1)).await;
        meter.done(true);
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!((meter.rate() - 1.0).abs() < 1e-9);
        // A late request counts its wait, without a turn.
        meter.waits();
        tokio::time::advance(Duration::from_secs(2)).await;
        meter.done(false);
        assert!((meter.rate() - 0.5).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn the_memory_keeps_recent_turns() {
        let meter = TurnMeter::new(10.0);
        for _ in 0..200 {
            meter.waits();
            tokio::time::advance(Duration::from_secs(1)).await;
            meter.done(false);
        }
        // 200 s without a turn: what it knew weighs little now.
        assert!(meter.rate() < 0.01, "{}", meter.rate());
    }

    #[tokio::test(start_paused = true)]
    async fn read_slots_say_how_many_wait_before_this_one() {
        let slots = ReadSlots::new(2.0, 10);
        assert_eq!(slots.size(), 2);
        let by = Instant::now() + Duration::from_secs(1);
        let (a, ahead_a) = slots.take_by(by).await.unwrap();
        let (_b, ahead_b) = slots.take_by(by).await.unwrap();
        assert_eq!((ahead_a, ahead_b), (0, 1));
        assert!(slots.take_by(by).await.is_none(), "no third slot by then");
        drop(a);
        assert!(slots.take_by(by + Duration::from_secs(1)).await.is_some());
        assert_eq!(ReadSlots::new(1000.0, 4).size(), 4);
        assert_eq!(ReadSlots::new(16.0, 10).size(), 4);
    }
}
