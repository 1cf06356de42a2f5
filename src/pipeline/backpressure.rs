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
//! - **Turn first.** While most users the container reads need an update, a user whose
//!   turn the meter does not promise (with a turn to spare) is not read first: it claims
//!   its update's turn after its lease and is read before the turn's point. Under a fleet whose
//!   turns come seldom to each container (many containers, or another caller) a user
//!   read first would often get no turn and be read again on its redelivery. One user
//!   at a time holds that place ([`ReadSlots::hold_by`]), and up to `STANDING_BY`
//!   others wait for it unread, so that a turn claimed for a user that needs no update
//!   goes to the next (`RateLimits::spare_turn`) instead of being lost; the rest are
//!   deferred at once. While most reads find nothing to update (an identity provider's
//!   first cycle), reads come first as above: the read quota is then what drains the
//!   backlog, and a turn claimed for every user would be spent on users that need none.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long a window the meter remembers, roughly: older turns weigh half as much
/// once this much waiting has been seen again.
const MEMORY: Duration = Duration::from_secs(60);

/// How much a read weighs once another has been made: the share of reads that needed an
/// update is that of the last fifty or so.
const READ_MEMORY: f64 = 0.98;

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
    /// Users read, and those of them that needed an update, decayed.
    reads: f64,
    updates: f64,
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
                // One read that needed an update.
                reads: 1.0,
                updates: 1.0,
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

    /// A user was read: it needed an update (`updated`), or found nothing to change.
    pub(super) fn read(&self, updated: bool) {
        let mut s = self.lock();
        s.reads = s.reads * READ_MEMORY + 1.0;
        s.updates = s.updates * READ_MEMORY + f64::from(u8::from(updated));
    }

    /// Whether most of the users the container read lately needed an update: a turn
    /// taken before the read is then seldom spent on a user that needs none.
    pub(super) fn mostly_updates(&self) -> bool {
        let s = self.lock();
        s.updates >= s.reads * 0.5
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

/// Users standing by, unread and unleased, for the turn of the user that waits for one
/// unread: its turn is theirs if that user needs no update.
const STANDING_BY: usize = 2;

/// The container's read slots, and its one user waiting unread for an update turn.
pub(super) struct ReadSlots {
    slots: std::sync::Arc<Semaphore>,
    size: usize,
    /// Held by the user that waits for its turn before its read, through its update.
    holder: std::sync::Arc<Semaphore>,
    /// Users waiting to be the next to hold it.
    standing_by: AtomicUsize,
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
            holder: std::sync::Arc::new(Semaphore::new(1)),
            standing_by: AtomicUsize::new(0),
        }
    }

    /// The place of the user that waits for its update's turn unread, once free and no
    /// later than `by`, if fewer than `STANDING_BY` users already wait for it: a user
    /// that finds more is deferred at once rather than held for a turn it cannot have.
    pub(super) async fn hold_by(&self, by: Instant) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = std::sync::Arc::clone(&self.holder).try_acquire_owned() {
            return Some(permit);
        }
        let standing = self.standing_by.fetch_add(1, Ordering::AcqRel);
        let permit = if standing < STANDING_BY {
            tokio::time::timeout_at(by, std::sync::Arc::clone(&self.holder).acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        self.standing_by.fetch_sub(1, Ordering::AcqRel);
        permit
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
    async fn one_user_holds_the_turn_first_place_and_two_stand_by() {
        let slots = std::sync::Arc::new(ReadSlots::new(2.0, 10));
        let by = Instant::now() + Duration::from_secs(5);
        let holder = slots.hold_by(by).await.expect("free");
        let standing: Vec<_> = (0..STANDING_BY)
            .map(|_| {
                let slots = std::sync::Arc::clone(&slots);
                tokio::spawn(async move { slots.hold_by(by).await.is_some() })
            })
            .collect();
        tokio::task::yield_now().await;
        // The place is held and two stand by: a fourth user is refused at once.
        let asked = Instant::now();
        assert!(slots.hold_by(by).await.is_none());
        assert_eq!(asked.elapsed(), Duration::ZERO);
        // Given back, it goes to those standing by, in turn.
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(holder);
        for s in standing {
            assert!(s.await.unwrap());
        }
        // Nobody holds it past `by`.
        let _held = slots.hold_by(by).await.expect("free again");
        let late = slots.hold_by(Instant::now() + Duration::from_secs(1));
        assert!(late.await.is_none());
    }

    #[test]
    fn turns_come_first_while_most_users_read_need_an_update() {
        let meter = TurnMeter::new(1.0);
        assert!(
            meter.mostly_updates(),
            "until it has read, it counts on updates"
        );
        for _ in 0..10 {
            meter.read(false);
        }
        assert!(!meter.mostly_updates());
        for _ in 0..12 {
            meter.read(true);
        }
        assert!(meter.mostly_updates());
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
