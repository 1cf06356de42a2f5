//! The fleet's one rate for an operation (`CONNECT_FLEET_RPS_UPDATE`): the containers
//! take their requests' instants from one schedule kept in the staleness guard's table,
//! so that together they keep to the stack's share of Connect's quota, and a throttle met
//! by any of them drops the fleet's rate once, for all, along the fleet's curve
//! (`crate::limiter::Shape::FLEET`). Each container's own limiter would otherwise climb
//! back on its own, and the containers together would take more than another caller
//! leaves free.
//!
//! The request itself goes at a random point of the period around its claimed instant
//! (up to half a period early or late), not on it: requests spaced exactly at the rate
//! Connect's bucket refills take each token as it comes, and another caller then finds
//! the bucket empty every time while the fleet is never throttled and never slows.
//!
//! A container claims the next free instant with one conditional write on the
//! schedule's version, moving the schedule one period on from that instant (not from
//! the write's end: the table's latency does not slow the rate), and waits, holding
//! nothing, until the instant comes (`take_by`; `claim_by` returns the claim at once,
//! for a request that has a read to make before its point). It claims up to two periods ahead (`lead_us`), so
//! that busy containers book their turns in a row, and no further, so that a drop
//! holds back every request but the next one or two. After a lost race a container
//! learns the schedule from the failed write and tries again after a random pause of a
//! few writes' time, and containers that learned the same next instant wake at random
//! points of the lead, so that they do not collide again and again (on a table that
//! serves writes one at a time, ten containers racing for every instant took more of
//! its time than a turn, and lost four races in a row). Its own other tasks learn the
//! instant it claims before the write is sent, and book the next one once it has
//! landed (one claim of a container in flight at a time). No lock on what the container
//! knows is held across a request to the table. Every `REPORT_EVERY` claims the
//! container logs what the schedule cost it (`fleet rate schedule`: writes, their
//! time, the wait for a turn, the lateness after the instant, requests paced on its
//! own limiter).
//!
//! Every request to the table ends within one attempt budget and never after the
//! invocation's last attempt start (a claim) or its cutoff (a drop): the invocation's
//! `Window` says when. A write the table fails or answers too late is written again;
//! after `FAILS` such writes in a row, or races lost too often in a row without another
//! container's claim to show for them, the request is paced on the container's own
//! limiter instead, and the schedule is left alone for `SKIP` (a table that does not
//! answer would otherwise cost every request an attempt budget); a drop that could not
//! be written drops the container's own rate instead (`calls.rs`). A busy table's one
//! late answer does not send a container to its own limiter: its share of the quota
//! would come on top of the whole rate the others keep on the schedule.
//!
//! A stored instant further ahead than the longest wait the schedule itself can ask for
//! (`HORIZON_PERIODS` periods at its lowest rate; a drop asks for two) was written by a
//! clock running ahead: the schedule starts again from now.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, timeout_at};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::domain::ports::PortFuture;

use super::{Shape, Window};

/// One Connect operation's request schedule, shared by the fleet's containers so that
/// together they keep to one rate that drops once when any of them is throttled (kept in
/// the staleness guard's table). Times are epoch microseconds of the containers' clocks.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedSchedule {
    /// When the next request may start.
    pub next_us: i64,
    /// Drops so far.
    pub epoch: u64,
    /// The last drop.
    pub throttle: Option<Throttle>,
    /// Writes so far: each write expects the version it read.
    pub version: u64,
}

/// The last drop of a shared schedule's rate: when, and the rate it dropped from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    pub at_us: i64,
    pub from: f64,
}

/// What writing a schedule came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Swap {
    /// Written.
    Done,
    /// Another container wrote first: the schedule as it now stands, when the store
    /// returned it.
    Lost(Option<SharedSchedule>),
}

impl Swap {
    /// The store's conditional write on an item held in memory: `schedule` replaces
    /// `item` when the item's version is `expected` (`None`: no item yet), else the item
    /// as it stands is returned. In-memory stores (tests, the simulation) use it.
    pub fn conditional(
        item: &mut Option<SharedSchedule>,
        expected: Option<u64>,
        schedule: &SharedSchedule,
    ) -> Swap {
        if item.as_ref().map(|s| s.version) == expected {
            *item = Some(schedule.clone());
            Swap::Done
        } else {
            Swap::Lost(item.clone())
        }
    }
}

/// Where the fleet's shared schedules are kept. Failures are messages with no item
/// contents; the caller paces itself on its own limiter meanwhile.
pub trait Schedules: Send + Sync {
    /// Writes `schedule` under `key` if the stored one is still at version `expected`
    /// (`None`: no schedule yet). A container that knows none yet writes with `None`
    /// and learns the stored one from `Swap::Lost`.
    fn write<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        schedule: &'a SharedSchedule,
    ) -> PortFuture<'a, Result<Swap, String>>;
}

/// Races lost in a row (the schedule written by another container between this
/// container's read and its write, with the instant still due) before the container
/// paces the request itself.
const TRIES: usize = 4;

/// A stored next instant further ahead than this many periods at the schedule's lowest
/// rate is not one to wait for: the longest the schedule asks for is the respite after
/// a drop at its lowest rate (`Shape::FLEET`'s two periods), and a container whose
/// clock runs ahead wrote anything beyond. The schedule starts again from now.
const HORIZON_PERIODS: f64 = 4.0;

/// How long the schedule is left alone after the table failed or did not answer within
/// an attempt budget `FAILS` times in a row: the container's own limiter paces its
/// updates meanwhile.
const SKIP: Duration = Duration::from_secs(10);

/// Writes to the schedule failed or unanswered in a row (any of the container's tasks)
/// before it is left alone for `SKIP`. One write that a busy table answers late is
/// written again: a container that turned to its own limiter for `SKIP` on each would
/// add its own share of the quota to the whole rate the others keep on the schedule
/// (measured under a backlog of 10,000 changes at five containers: 24 writes unanswered
/// within 600 ms, the fleet throttled by its own 33 times, 0.82 of the quota used).
const FAILS: u32 = 3;

/// The most periods ahead a turn is booked (beyond the table's latency).
const BOOKED_PERIODS: f64 = 2.0;

/// After a lost race, a container writes again within this many writes' time (at a
/// random point), so that the containers that lost together do not collide again.
const BACKOFF_WRITES: u64 = 4;

/// Claims between two of the container's log lines on the schedule's health.
const REPORT_EVERY: u64 = 25;

/// What the schedule cost this container over its last `REPORT_EVERY` claims: writes
/// (claims, lost races and drops), the time the writes took, the time a request waited
/// for its turn, how late the turns came after their instants, and the requests paced
/// on the container's own limiter because the schedule could not be used. Logged (and
/// started again) every `REPORT_EVERY` claims, so that an operator (and the bench) sees
/// why a fleet keeps less than its rate.
#[derive(Default)]
struct Health {
    claims: AtomicU64,
    writes: AtomicU64,
    write_us: AtomicU64,
    wait_us: AtomicU64,
    late_us: AtomicU64,
    fallbacks: AtomicU64,
}

impl Health {
    fn wrote(&self, took: Duration) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.write_us
            .fetch_add(micros(took).max(0).unsigned_abs(), Ordering::Relaxed);
    }

    fn fell_back(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    fn claimed(&self, waited: Duration, late_us: i64) {
        self.wait_us
            .fetch_add(micros(waited).max(0).unsigned_abs(), Ordering::Relaxed);
        self.late_us
            .fetch_add(late_us.max(0).unsigned_abs(), Ordering::Relaxed);
        if self.claims.fetch_add(1, Ordering::Relaxed) + 1 < REPORT_EVERY {
            return;
        }
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        let claims = take(&self.claims);
        let writes = take(&self.writes);
        let mean_ms = |total: u64, n: u64| total as f64 / 1000.0 / n.max(1) as f64;
        info!(
            claims,
            writes,
            write_ms = mean_ms(take(&self.write_us), writes),
            wait_ms = mean_ms(take(&self.wait_us), claims),
            late_ms = mean_ms(take(&self.late_us), claims),
            fallbacks = take(&self.fallbacks),
            "fleet rate schedule"
        );
    }
}

/// The right to make one request on the fleet's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetToken {
    /// The schedule's drops before this token was taken.
    epoch: u64,
    /// When its request may go: the random point of the period around its instant.
    pub at: Instant,
    /// When it was asked for: its wait and lateness are reported when the request goes
    /// (`FleetRate::went`).
    asked: Instant,
}

/// What asking the schedule for an instant came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// Claimed, at its instant.
    Token(FleetToken),
    /// The next free instant comes after the latest start: nothing claimed.
    Late,
    /// The schedule could not be used this time: pace on the container's own limiter.
    Unavailable,
}

pub struct FleetRate {
    store: Arc<dyn Schedules>,
    key: String,
    ceiling: f64,
    /// The schedule as this container last wrote, claimed or was told it. Held only to
    /// read or set it, never across a request.
    known: Mutex<Option<SharedSchedule>>,
    /// Until when the schedule is left alone after the table failed.
    skip_until: Mutex<Option<Instant>>,
    /// Writes failed or unanswered in a row (`FAILS`).
    failures: AtomicU32,
    /// Back at the plateau this long after a throttle at the ceiling. Also how long a
    /// user whose throttle dropped the fleet's rate drops it no more from this container
    /// (the time the rate takes to climb back from a drop at its ceiling): a user whose
    /// every update is throttled (a fault of that user's, not the account's quota
    /// filling) would otherwise drop the fleet's one rate at every delivery of each of
    /// its records, and hold every other change at the floor.
    recovery: Duration,
    /// The users whose throttle dropped the fleet's rate from this container, and when.
    dropped_for: Mutex<std::collections::HashMap<String, Instant>>,
    /// The container's wall clock, which the schedule's instants are read on.
    clock: Clock,
    health: Health,
    /// The writes' time, smoothed, in microseconds (0: none yet).
    write_us: AtomicU64,
    /// The containers that share the schedule at most (`MaximumConcurrency`).
    containers: f64,
    /// Held by the container's one claim in flight.
    writing: tokio::sync::Mutex<()>,
    /// Where in the lead a container wakes to claim an instant it learned from a lost
    /// race: a sequence seeded by the process and the time it started (by the clock
    /// when one is given, so that the simulation replays a seed).
    jitter: AtomicU64,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// What one write to the table came to.
enum Wrote {
    Done,
    /// Another container wrote first; whether the schedule it holds is newer than the
    /// one this write expected (another container's turn, not a fault).
    Lost(bool),
    /// Failed, or not answered in time (it may still have landed).
    Failed(String),
    /// Not answered before the limit, which had come.
    Late,
}

impl FleetRate {
    /// The fleet's schedule for `operation` in `store`, at `ceiling` requests a second
    /// at most for the whole fleet.
    pub fn new(store: Arc<dyn Schedules>, operation: &str, ceiling: f64) -> Self {
        FleetRate {
            store,
            key: format!("fleet-rate#{operation}"),
            ceiling: ceiling.max(0.001),
            known: Mutex::new(None),
            skip_until: Mutex::new(None),
            failures: AtomicU32::new(0),
            recovery: super::RECOVERY,
            dropped_for: Mutex::default(),
            clock: Clock::system(),
            health: Health::default(),
            write_us: AtomicU64::new(0),
            containers: 1.0,
            writing: tokio::sync::Mutex::new(()),
            jitter: AtomicU64::new(
                Clock::system().now_us().unsigned_abs() ^ u64::from(std::process::id()),
            ),
        }
    }

    /// The most requests a second the fleet makes together.
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// The same schedule, shared by `containers` containers at most: each may claim an
    /// instant up to that many periods ahead.
    #[must_use]
    pub fn shared_by(mut self, containers: f64) -> Self {
        if containers.is_finite() {
            self.containers = containers.clamp(1.0, 1000.0);
        }
        self
    }

    /// The same schedule, its rate back at the plateau `recovery` after a throttle at
    /// the ceiling.
    #[must_use]
    pub fn recovering_in(mut self, recovery: Duration) -> Self {
        self.recovery = recovery;
        self
    }

    /// The same schedule, its instants read on `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.jitter = AtomicU64::new(clock.now_us().unsigned_abs());
        self.clock = clock;
        self
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Option<SharedSchedule>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fleet's rate at `at_us` under `schedule`.
    fn rate(&self, schedule: &SharedSchedule, at_us: i64) -> f64 {
        Shape::FLEET.curve(
            self.ceiling,
            schedule.throttle.map(|t| {
                let since = u64::try_from(at_us.saturating_sub(t.at_us)).unwrap_or(0);
                (Duration::from_micros(since), t.from)
            }),
            self.recovery,
        )
    }

    fn period_us(rate: f64) -> i64 {
        (1e6 / rate).ceil() as i64
    }

    /// How far ahead a stored instant may lie and still be waited for.
    fn horizon_us(&self) -> i64 {
        (HORIZON_PERIODS * 1e6 / Shape::FLEET.floor(self.ceiling)).ceil() as i64
    }

    /// The schedule to build on: the one known, or a new one starting now.
    fn base(&self, known: Option<&SharedSchedule>, now: i64) -> SharedSchedule {
        match known {
            Some(s) if s.next_us <= now.saturating_add(self.horizon_us()) => s.clone(),
            Some(s) => SharedSchedule {
                next_us: now,
                ..s.clone()
            },
            None => SharedSchedule {
                next_us: now,
                epoch: 0,
                throttle: None,
                version: 0,
            },
        }
    }

    /// Whether the schedule is being left alone after a failure of the table.
    fn skipping(&self) -> bool {
        let skip = self.skip_until.lock().unwrap_or_else(|e| e.into_inner());
        skip.is_some_and(|until| Instant::now() < until)
    }

    /// A write failed or went unanswered: says whether the schedule is now left alone
    /// for `SKIP` (the `FAILS`th such write in a row), else the caller writes again.
    fn failed(&self) -> bool {
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 < FAILS {
            return false;
        }
        self.failures.store(0, Ordering::Relaxed);
        *self.skip_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + SKIP);
        true
    }

    /// Writes `next` over `current` (`version` 0: none stored yet, as far as this
    /// container knows), within one attempt budget and never after `limit`. `next` is
    /// already what this container knows; a lost race replaces it with what the table
    /// holds, a failure puts `current` back (unless another task has known better since).
    async fn swap(
        &self,
        current: &SharedSchedule,
        next: &SharedSchedule,
        window: &Window,
        limit: Instant,
    ) -> Wrote {
        let expected = (current.version > 0).then_some(current.version);
        let ends = window.request_ends(limit);
        let sent = Instant::now();
        let written = timeout_at(ends, self.store.write(&self.key, expected, next)).await;
        let took = sent.elapsed();
        self.health.wrote(took);
        // The writes' time, smoothed (an eighth of each new one), for the claims' lead.
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let was = self.write_us.load(Ordering::Relaxed);
        let smoothed = if was == 0 {
            took
        } else {
            was - was / 8 + took / 8
        };
        self.write_us.store(smoothed, Ordering::Relaxed);
        let mut known = self.known();
        let mine = known.as_ref() == Some(next);
        match written {
            Ok(Ok(Swap::Done)) => {
                self.failures.store(0, Ordering::Relaxed);
                Wrote::Done
            }
            Ok(Ok(Swap::Lost(Some(stands)))) => {
                self.failures.store(0, Ordering::Relaxed);
                let moved_on = stands.version > current.version;
                if mine || known.as_ref().is_none_or(|k| k.version <= stands.version) {
                    *known = Some(stands);
                }
                Wrote::Lost(moved_on)
            }
            other => {
                // The table holds `current`, `next` (an unanswered write may have
                // landed) or a later one: the next write, expecting `current`, learns
                // which.
                if mine {
                    *known = (current.version > 0).then(|| current.clone());
                }
                drop(known);
                match other {
                    Ok(Err(why)) => Wrote::Failed(why),
                    Ok(Ok(_)) => {
                        Wrote::Failed("the table did not return the schedule it holds".to_owned())
                    }
                    Err(_) if ends >= limit => Wrote::Late,
                    Err(_) => Wrote::Failed(
                        "the table did not answer within an attempt's budget".to_owned(),
                    ),
                }
            }
        }
    }

    /// Takes the fleet's next instant, if it comes no later than the window's last
    /// start, and returns once it has come. The instant may be claimed up to the lead
    /// ahead (`lead_us`), and the next instant is the claimed one plus a period, not the
    /// write's end plus a period. A schedule that sat idle is claimed from half a period
    /// ago at most (no burst saved up). Containers that learned the same next instant
    /// wake at a random point of the lead, and after a lost race write again at a random
    /// point of a few writes' time.
    /// Also says how many writes to the table it took.
    pub async fn take_by(&self, window: &Window) -> (Take, u32) {
        let (take, writes) = self.claim_by(window).await;
        if let Take::Token(token) = &take {
            tokio::time::sleep_until(token.at).await;
            self.went(token);
        }
        (take, writes)
    }

    /// The request `token` was claimed for goes now: its wait since it was asked for, and
    /// how late after its point (the random point is not lateness), are counted for the
    /// schedule's log line.
    pub fn went(&self, token: &FleetToken) {
        let late = Instant::now().saturating_duration_since(token.at);
        self.health.claimed(token.asked.elapsed(), micros(late));
    }

    /// `take_by`, returning once the instant is claimed, before it has come: the
    /// token says when its request may go.
    pub async fn claim_by(&self, window: &Window) -> (Take, u32) {
        let latest = window.last_start;
        let asked = Instant::now();
        let mut lost = 0;
        let mut writes = 0;
        loop {
            if self.skipping() {
                return (Take::Unavailable, writes);
            }
            // One claim of the container's in flight at a time: its other tasks book
            // after it, knowing what it wrote, instead of racing it.
            let Ok(writing) = timeout_at(latest, self.writing.lock()).await else {
                return (Take::Late, writes);
            };
            if self.skipping() {
                return (Take::Unavailable, writes);
            }
            let claim = {
                let mut known = self.known();
                let now = self.clock.now_us();
                let current = self.base(known.as_ref(), now);
                let period = Self::period_us(self.rate(&current, now));
                let instant = current.next_us.max(now - period / 2);
                let lead = self.lead_us(period);
                let until = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
                if Instant::now() + until(instant - now) > latest {
                    return (Take::Late, writes);
                }
                if instant > now + lead {
                    let jitter = self.jitter(lead / 2);
                    Err(until(instant - lead - now + jitter))
                } else {
                    let next = SharedSchedule {
                        next_us: instant + period,
                        version: current.version + 1,
                        ..current.clone()
                    };
                    // This container's other tasks wait for the instant after this one.
                    *known = Some(next.clone());
                    Ok((current, next, instant))
                }
            };
            let (current, next, instant) = match claim {
                Ok(claim) => claim,
                Err(wait) => {
                    drop(writing);
                    tokio::time::sleep(wait).await;
                    lost = 0;
                    continue;
                }
            };
            if !window.may_start() {
                return (Take::Late, writes);
            }
            writes += 1;
            let wrote = self.swap(&current, &next, window, latest).await;
            drop(writing);
            match wrote {
                Wrote::Done => {
                    // The request goes at a random point of the period around its
                    // instant, not on it: requests spaced exactly at the rate Connect's
                    // bucket refills take each token as it comes, so another caller
                    // finds the bucket empty every time while the fleet is never
                    // throttled and never slows down (measured: the other caller
                    // throttled on 94.7 % of its calls). Early by up to half a period,
                    // a request meets the other caller's use of the bucket as a
                    // throttle of its own, and the fleet slows; the mean rate stays.
                    let period = next.next_us - instant;
                    let last_us = self
                        .clock
                        .now_us()
                        .saturating_add(micros(latest.saturating_duration_since(Instant::now())));
                    let at = (instant - period / 2 + self.jitter(period)).min(last_us);
                    // A point already past when claimed goes at once: its request is
                    // late only after the claim.
                    let ahead = at - self.clock.now_us();
                    let ahead = Duration::from_micros(u64::try_from(ahead).unwrap_or(0));
                    let token = FleetToken {
                        epoch: current.epoch,
                        at: Instant::now() + ahead,
                        asked,
                    };
                    return (Take::Token(token), writes);
                }
                Wrote::Lost(moved_on) => {
                    // A race lost to another container's claim is the fleet's turn
                    // taken, not a fault: only races that showed no claim count.
                    if !moved_on {
                        lost += 1;
                    }
                    if lost == TRIES {
                        self.health.fell_back();
                        return (Take::Unavailable, writes);
                    }
                    // The others who lost with it learned the same schedule: each
                    // writes again after a random share of a few writes' time, so that
                    // they do not all collide again.
                    let write = self.write_us.load(Ordering::Relaxed);
                    let spread =
                        i64::try_from(write.saturating_mul(BACKOFF_WRITES)).unwrap_or(i64::MAX);
                    let pause = self.jitter(spread).unsigned_abs();
                    if Instant::now() + Duration::from_micros(pause) > latest {
                        return (Take::Late, writes);
                    }
                    tokio::time::sleep(Duration::from_micros(pause)).await;
                }
                Wrote::Late => return (Take::Late, writes),
                Wrote::Failed(why) => {
                    if !self.failed() {
                        continue;
                    }
                    self.health.fell_back();
                    warn!(
                        error = %why,
                        "the fleet's rate could not be read; updates are paced on the container's own for a while"
                    );
                    return (Take::Unavailable, writes);
                }
            }
        }
    }

    /// A number in `0..=max`, from the container's own sequence (splitmix64).
    fn jitter(&self, max: i64) -> i64 {
        let state = self
            .jitter
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let span = max.max(0).unsigned_abs() + 1;
        i64::try_from(z % span).unwrap_or(0)
    }

    /// How far ahead of an instant it may be claimed: one period, two when the fleet
    /// has two containers or more (so that busy containers book turns in a row instead
    /// of racing for each), and at least two writes' time as measured (the claim must
    /// land before the instant comes; at most two periods more). Not further: what is
    /// booked before a drop goes at the rate before it, and with as many periods as
    /// containers the other caller of the simulation's seed 83 (three containers) was
    /// throttled on 17 % of its calls.
    fn lead_us(&self, period: i64) -> i64 {
        let write = i64::try_from(self.write_us.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        let landing = write
            .saturating_mul(2)
            .clamp(period / 4, period.saturating_mul(2));
        let turns = (self.containers.min(BOOKED_PERIODS) * period as f64).ceil() as i64;
        landing.max(turns)
    }

    /// How far ahead the schedule is booked as this container last knew it (the wait
    /// for its next free instant), and the fleet's rate now; for choosing when a
    /// deferred record comes back. Waits for no lock: while another request of the
    /// container writes, the schedule counts as free now.
    pub fn outlook(&self) -> (Duration, f64) {
        let now = self.clock.now_us();
        match self.known.try_lock().ok().and_then(|k| k.clone()) {
            Some(known) => {
                let s = self.base(Some(&known), now);
                let ahead = u64::try_from(s.next_us.saturating_sub(now)).unwrap_or(0);
                (Duration::from_micros(ahead), self.rate(&s, now))
            }
            None => (Duration::ZERO, self.ceiling),
        }
    }

    /// Connect throttled the request `token` was taken for: the fleet's rate drops to
    /// half of what it is now, once per drop (a token taken before the last drop, by
    /// any container, does not drop it again). Each write ends within an attempt budget
    /// and by the window's cutoff.
    /// A throttle of `user` (when known) whose throttle already dropped the rate from
    /// this container within the recovery drops nothing: that drop answered it.
    /// Says whether the fleet's rate is lowered (by this drop or an earlier one), and
    /// how many writes to the table it took.
    pub async fn throttled(
        &self,
        token: FleetToken,
        window: &Window,
        user: Option<&str>,
    ) -> (bool, u32) {
        if let Some(user) = user {
            let mut dropped = self.dropped_for.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            dropped.retain(|_, at| now.duration_since(*at) < self.recovery);
            if dropped.contains_key(user) {
                return (true, 0);
            }
        }
        let (lowered, writes) = self.drop_rate(token, window).await;
        if let (true, Some(user)) = (lowered, user) {
            self.dropped_for
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(user.to_owned(), Instant::now());
        }
        (lowered, writes)
    }

    async fn drop_rate(&self, token: FleetToken, window: &Window) -> (bool, u32) {
        let mut writes = 0;
        for _ in 0..TRIES {
            let (current, next) = {
                let known = self.known();
                let now = self.clock.now_us();
                let current = self.base(known.as_ref(), now);
                if current.epoch != token.epoch {
                    return (true, writes);
                }
                let rate = self.rate(&current, now);
                let mut next = SharedSchedule {
                    epoch: current.epoch + 1,
                    throttle: Some(Throttle {
                        at_us: now,
                        from: rate,
                    }),
                    version: current.version + 1,
                    ..current.clone()
                };
                let respite = micros(Shape::FLEET.respite(self.rate(&next, now)));
                next.next_us = next.next_us.max(now.saturating_add(respite));
                (current, next)
            };
            if Instant::now() >= window.cutoff {
                break;
            }
            writes += 1;
            match self.swap(&current, &next, window, window.cutoff).await {
                Wrote::Done => {
                    let mut known = self.known();
                    if known.as_ref().is_none_or(|k| k.version <= next.version) {
                        *known = Some(next);
                    }
                    return (true, writes);
                }
                Wrote::Lost(_) => {}
                Wrote::Late => break,
                Wrote::Failed(why) => {
                    if !self.failed() {
                        continue;
                    }
                    warn!(error = %why, "the fleet's rate could not be lowered; the container's own is");
                    return (false, writes);
                }
            }
        }
        (false, writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_us() -> i64 {
        Clock::system().now_us()
    }
    use crate::domain::ports::PortFuture;
    use std::sync::Mutex as StdMutex;

    /// The table as one value behind a lock, with a count of writes.
    #[derive(Default)]
    struct Table {
        item: StdMutex<Option<SharedSchedule>>,
        writes: StdMutex<u32>,
    }

    impl Schedules for Table {
        fn write<'a>(
            &'a self,
            _key: &'a str,
            expected: Option<u64>,
            schedule: &'a SharedSchedule,
        ) -> PortFuture<'a, Result<Swap, String>> {
            Box::pin(async move {
                *self.writes.lock().unwrap() += 1;
                let mut item = self.item.lock().unwrap();
                Ok(Swap::conditional(&mut item, expected, schedule))
            })
        }
    }

    /// An invocation due in `secs` seconds, with a margin and an attempt budget of 1 s.
    fn due_in(secs: u64) -> Window {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let before = |d: u64| {
            deadline
                .checked_sub(Duration::from_secs(d))
                .unwrap_or_else(Instant::now)
        };
        Window {
            last_start: before(2),
            cutoff: before(1),
            request: Duration::from_secs(1),
        }
    }

    fn far() -> Window {
        due_in(60)
    }

    async fn token(rate: &FleetRate) -> FleetToken {
        match rate.take_by(&far()).await.0 {
            Take::Token(t) => t,
            other => panic!("no token: {other:?}"),
        }
    }

    #[tokio::test]
    async fn two_containers_take_turns_on_one_schedule_at_the_fleets_rate() {
        let table = Arc::new(Table::default());
        let a = FleetRate::new(table.clone(), "Op", 20.0);
        let b = FleetRate::new(table.clone(), "Op", 20.0);
        let start = std::time::Instant::now();
        for _ in 0..5 {
            token(&a).await;
            token(&b).await;
        }
        // Ten requests at 20/s for the fleet: nine periods of 50 ms, the last one sent
        // up to half a period early (a random point of the period around its instant),
        // where each container on its own schedule would have taken four.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(415), "{took:?}");
        let stored = table.item.lock().unwrap().clone().unwrap();
        assert_eq!(stored.version, 10, "one successful write per request");
        // Each container learned the other's writes from its lost races: one each.
        assert_eq!(*table.writes.lock().unwrap(), 10 + 9);
    }

    #[tokio::test]
    async fn a_claim_returns_before_its_point_and_a_take_at_it() {
        let table = Arc::new(Table::default());
        let a = FleetRate::new(table.clone(), "Op", 2.0).shared_by(2.0);
        // The first instant is now or up to half a period (250 ms) ago; the next two
        // are one and two periods on from it, within the lead of two periods (a fleet
        // of two or more): both claimed at once, the second's point (up to half a period
        // either side of its instant, 0.75–1 s on) ahead.
        token(&a).await;
        let asked = Instant::now();
        assert!(matches!(a.claim_by(&far()).await, (Take::Token(_), 1)));
        let (Take::Token(claimed), 1) = a.claim_by(&far()).await else {
            panic!("not claimed in one write");
        };
        assert!(asked.elapsed() < Duration::from_millis(100));
        let ahead = claimed.at.saturating_duration_since(Instant::now());
        assert!(ahead >= Duration::from_millis(400), "{ahead:?}");
        assert!(ahead <= Duration::from_millis(1300), "{ahead:?}");
        // A take returns at its point.
        let Take::Token(taken) = a.take_by(&far()).await.0 else {
            panic!("no token");
        };
        assert!(Instant::now() >= taken.at);
        assert!(taken.at > claimed.at);
    }

    #[tokio::test]
    async fn a_throttle_met_by_one_container_drops_the_fleets_rate_once() {
        let table = Arc::new(Table::default());
        let a = FleetRate::new(table.clone(), "Op", 10.0);
        let b = FleetRate::new(table.clone(), "Op", 10.0);
        let ta = token(&a).await;
        let tb = token(&b).await;
        a.throttled(ta, &far(), None).await;
        // b's token was taken before a's drop: the drop answered it already.
        b.throttled(tb, &far(), None).await;
        let stored = table.item.lock().unwrap().clone().unwrap();
        assert_eq!(stored.epoch, 1);
        let from = stored.throttle.unwrap().from;
        assert!((from - 10.0).abs() < 1e-9, "{from}");
        // Both containers now keep to half of it.
        assert!((b.rate(&stored, now_us()) - 5.0).abs() < 0.01);
        // And the next request waits the respite: two periods at 5/s, less up to half
        // a period for the request's random point around its instant.
        let start = std::time::Instant::now();
        let tb = token(&b).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(290), "{waited:?}");
        b.throttled(tb, &far(), None).await;
        assert_eq!(table.item.lock().unwrap().as_ref().unwrap().epoch, 2);
    }

    #[tokio::test]
    async fn a_user_throttled_again_soon_after_its_drop_drops_the_rate_no_more() {
        let table = Arc::new(Table::default());
        let a = FleetRate::new(table.clone(), "Op", 100.0);
        let epoch = || table.item.lock().unwrap().as_ref().unwrap().epoch;
        let t = token(&a).await;
        assert_eq!(a.throttled(t, &far(), Some("i#u-bad")).await, (true, 1));
        assert_eq!(epoch(), 1);
        // Its next update, taken after the drop, is throttled too: no second drop.
        let t = token(&a).await;
        assert_eq!(a.throttled(t, &far(), Some("i#u-bad")).await, (true, 0));
        assert_eq!(epoch(), 1);
        // Another user's throttle is news about the account: it drops the rate.
        let t = token(&a).await;
        assert_eq!(a.throttled(t, &far(), Some("i#u-other")).await, (true, 1));
        assert_eq!(epoch(), 2);
    }

    #[tokio::test]
    async fn an_instant_after_the_latest_start_is_not_claimed() {
        let table = Arc::new(Table::default());
        let a = FleetRate::new(table.clone(), "Op", 0.5);
        token(&a).await;
        let version = table.item.lock().unwrap().as_ref().unwrap().version;
        assert_eq!(a.take_by(&due_in(2)).await, (Take::Late, 0));
        assert_eq!(
            table.item.lock().unwrap().as_ref().unwrap().version,
            version,
            "nothing written"
        );
    }

    #[tokio::test]
    async fn a_schedule_far_ahead_of_this_clock_starts_again_from_now() {
        let table = Arc::new(Table::default());
        *table.item.lock().unwrap() = Some(SharedSchedule {
            next_us: now_us() + 3_600_000_000,
            epoch: 0,
            throttle: None,
            version: 7,
        });
        let a = FleetRate::new(table.clone(), "Op", 1.0);
        let start = std::time::Instant::now();
        token(&a).await;
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(table.item.lock().unwrap().as_ref().unwrap().version, 8);
    }

    #[tokio::test]
    async fn an_instant_within_the_longest_wait_the_schedule_asks_for_is_waited_for() {
        let table = Arc::new(Table::default());
        // At 2/s the lowest rate is 0.1/s: a drop there asks for 20 s, and the horizon
        // is four periods, 40 s.
        let a = FleetRate::new(table.clone(), "Op", 2.0);
        assert_eq!(a.horizon_us(), 40_000_000);
        *table.item.lock().unwrap() = Some(SharedSchedule {
            next_us: now_us() + 20_000_000,
            epoch: 0,
            throttle: None,
            version: 7,
        });
        // It learns the stored instant from its lost race and would wait for it: not in
        // time for this invocation; the next asks nothing of the table.
        assert_eq!(a.take_by(&due_in(10)).await, (Take::Late, 1));
        assert_eq!(a.take_by(&due_in(10)).await, (Take::Late, 0));
        // A minute ahead is past the horizon: a clock error, claimed from now.
        table.item.lock().unwrap().as_mut().unwrap().next_us = now_us() + 60_000_000;
        let b = FleetRate::new(table.clone(), "Op", 2.0);
        // (Its first write, knowing nothing, lost the race and learned the item.)
        assert!(matches!(b.take_by(&due_in(10)).await, (Take::Token(_), 2)));
    }

    #[tokio::test]
    async fn a_table_that_does_not_answer_is_left_alone_for_a_while() {
        struct Silent;
        impl Schedules for Silent {
            fn write<'a>(
                &'a self,
                _key: &'a str,
                _expected: Option<u64>,
                _schedule: &'a SharedSchedule,
            ) -> PortFuture<'a, Result<Swap, String>> {
                Box::pin(std::future::pending())
            }
        }
        let a = FleetRate::new(Arc::new(Silent), "Op", 2.0);
        let start = std::time::Instant::now();
        // `FAILS` attempt budgets (1 s each), then the container's own limiter.
        assert_eq!(a.take_by(&due_in(30)).await, (Take::Unavailable, FAILS));
        let took = start.elapsed();
        let fails = Duration::from_secs(FAILS.into());
        assert!(
            took >= fails - Duration::from_millis(50) && took < fails + Duration::from_secs(1),
            "{took:?}"
        );
        assert_eq!(a.take_by(&due_in(30)).await, (Take::Unavailable, 0));
        // Near the last attempt start, the wait is cut there and nothing is claimed.
        let b = FleetRate::new(Arc::new(Silent), "Op", 2.0);
        let budget = due_in(2);
        assert_eq!(b.take_by(&budget).await, (Take::Late, 0));
    }

    struct Broken;
    impl Schedules for Broken {
        fn write<'a>(
            &'a self,
            _key: &'a str,
            _expected: Option<u64>,
            _schedule: &'a SharedSchedule,
        ) -> PortFuture<'a, Result<Swap, String>> {
            Box::pin(async { Err("the table does not exist".to_owned()) })
        }
    }

    #[tokio::test]
    async fn a_failing_table_leaves_the_request_to_the_containers_own_limiter() {
        let a = FleetRate::new(Arc::new(Broken), "Op", 1.0);
        assert_eq!(a.take_by(&far()).await, (Take::Unavailable, FAILS));
        assert_eq!(a.take_by(&far()).await, (Take::Unavailable, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_answered_late_is_written_again_and_the_schedule_kept() {
        // Each of the first writes lands, and its answer comes 5 s later, after the
        // attempt budget.
        let store = Arc::new(Slow {
            table: Table::default(),
            latency: Duration::from_secs(5),
            serving: tokio::sync::Mutex::new(()),
            slow_writes: StdMutex::new(Some(FAILS - 1)),
        });
        let a = FleetRate::new(store.clone(), "Op", 2.0);
        // The first write landed but was not answered in time, nor was the second (which,
        // expecting what the first replaced, lost); the third learns the table's
        // schedule and the fourth claims the instant after the unanswered first.
        let (take, writes) = a.take_by(&due_in(30)).await;
        assert!(matches!(take, Take::Token(_)), "{take:?}");
        assert_eq!(writes, FAILS + 1);
        assert_eq!(
            store.table.item.lock().unwrap().as_ref().unwrap().version,
            2,
            "two claims landed"
        );
        // Not left alone: the next request is on the schedule too, in one write.
        let (take, writes) = a.take_by(&due_in(30)).await;
        assert!(matches!(take, Take::Token(_)), "{take:?}");
        assert_eq!(writes, 1);
    }

    /// The wall clock on tokio's (paused) clock, so that the table's latency and the
    /// schedule's instants are exact.
    struct Paused {
        start: Instant,
    }

    impl crate::clock::WallClock for Paused {
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            let since = Instant::now().saturating_duration_since(self.start);
            chrono::DateTime::UNIX_EPOCH
                + chrono::TimeDelta::from_std(since).unwrap()
                + chrono::TimeDelta::days(20_000)
        }
    }

    /// A table that serves one write at a time, each answered `latency` after it landed
    /// (as a loaded server does): writes sent at once wait for each other, so every lost
    /// race delays the next claim. `slow_writes`: only that many first writes are slow.
    struct Slow {
        table: Table,
        latency: Duration,
        serving: tokio::sync::Mutex<()>,
        slow_writes: StdMutex<Option<u32>>,
    }

    impl Schedules for Slow {
        fn write<'a>(
            &'a self,
            key: &'a str,
            expected: Option<u64>,
            schedule: &'a SharedSchedule,
        ) -> PortFuture<'a, Result<Swap, String>> {
            Box::pin(async move {
                let _serving = self.serving.lock().await;
                let answer = self.table.write(key, expected, schedule).await;
                let slow = match &mut *self.slow_writes.lock().unwrap() {
                    None => true,
                    Some(left) => {
                        let was = *left;
                        *left = was.saturating_sub(1);
                        was > 0
                    }
                };
                if slow {
                    tokio::time::sleep(self.latency).await;
                }
                answer
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ten_containers_on_a_table_that_serves_one_write_at_a_time_keep_the_fleets_rate() {
        // Ten containers, each with a request waiting, 20 turns a second for the fleet
        // (50 ms apart), and a table that takes 12 ms for each write, one at a time:
        // ten containers racing for every instant would need 120 ms of the table's time
        // per turn.
        let store = Arc::new(Slow {
            table: Table::default(),
            latency: Duration::from_millis(12),
            serving: tokio::sync::Mutex::new(()),
            slow_writes: StdMutex::new(None),
        });
        let clock = Clock::new(Arc::new(Paused {
            start: Instant::now(),
        }));
        let containers: Vec<FleetRate> = (0..10)
            .map(|_| {
                FleetRate::new(store.clone(), "Op", 20.0)
                    .shared_by(10.0)
                    .with_clock(clock.clone())
            })
            .collect();
        let start = Instant::now();
        let budget = due_in(600);
        async fn turns(rate: &FleetRate, window: &Window) -> u32 {
            let mut writes = 0;
            for _ in 0..6 {
                let (take, w) = rate.take_by(window).await;
                assert!(matches!(take, Take::Token(_)), "{take:?}");
                writes += w;
            }
            writes
        }
        let writes: u32 = futures::future::join_all(containers.iter().map(|c| turns(c, &budget)))
            .await
            .into_iter()
            .sum();
        let took = start.elapsed().as_secs_f64();
        // 60 turns at 20 a second: 59 periods after the first, 2.95 s; the writes' time
        // may add a little at the start, never a share of every turn.
        assert!((2.9..3.3).contains(&took), "{took} s for 60 turns");
        assert_eq!(
            store.table.item.lock().unwrap().as_ref().unwrap().version,
            60,
            "one successful write per turn"
        );
        // Each container books its next turn after the others' (a lost race or two to
        // learn where the schedule stands, then the claim), instead of all ten racing
        // for each turn (before: four lost races in a row, and the container gave up
        // the schedule for its own limiter).
        assert!(writes <= 180, "{writes} writes for 60 turns");
    }
}
