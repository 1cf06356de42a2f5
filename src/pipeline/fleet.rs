//! The fleet's one rate for an operation (`CONNECT_FLEET_RPS_UPDATE`): the containers
//! take their requests' instants from one schedule kept in the staleness guard's table,
//! so that together they keep to the stack's share of Connect's quota, and a throttle met
//! by any of them drops the fleet's rate once, for all, along the fleet's curve
//! (`crate::limiter::Shape::FLEET`). Each container's own limiter would otherwise climb
//! back on its own, and the containers together would take more than another caller
//! leaves free.
//!
//! A container waits, holding nothing, for the next instant it knows of, and only then
//! claims it with one conditional write on the schedule's version, moving the schedule
//! one period on. Nothing is booked ahead, so a drop holds back every request not yet
//! sent. A container that lost the race learns the schedule from the failed write and
//! waits again. When the table fails, or the race is lost too often in a row, the
//! request is paced on the container's own limiter instead; nothing waits on the table
//! longer than one request.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::warn;

use crate::domain::ports::{Schedules, SharedSchedule, Swap, Throttle};
use crate::limiter::Shape;

/// Races lost in a row (the schedule written by another container between this
/// container's read and its write, with the instant still due) before the container
/// paces the request itself.
const TRIES: usize = 4;

/// A stored next instant further ahead than this is not one to wait for (a request's
/// wait never outlasts an invocation, at most 15 minutes): a clock far ahead wrote it,
/// and the schedule starts again from now.
const HORIZON_US: i64 = 15 * 60 * 1_000_000;

/// The right to make one request on the fleet's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetToken {
    /// The schedule's drops before this token was taken.
    epoch: u64,
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
    /// The schedule as this container last wrote or was told it; one write at a time.
    known: Mutex<Option<SharedSchedule>>,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
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
        }
    }

    /// The fleet's rate at `at_us` under `schedule`.
    fn rate(&self, schedule: &SharedSchedule, at_us: i64) -> f64 {
        Shape::FLEET.curve(
            self.ceiling,
            schedule.throttle.map(|t| {
                let since = u64::try_from(at_us.saturating_sub(t.at_us)).unwrap_or(0);
                (Duration::from_micros(since), t.from)
            }),
        )
    }

    fn period_us(rate: f64) -> i64 {
        (1e6 / rate).ceil() as i64
    }

    /// The schedule to build on: the one known, or a new one starting now.
    fn base(known: Option<&SharedSchedule>, now: i64) -> SharedSchedule {
        match known {
            Some(s) if s.next_us <= now + HORIZON_US => s.clone(),
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

    /// Writes `next` over `current` (`version` 0: none stored yet, as far as this
    /// container knows). `Ok(true)` written; `Ok(false)` lost, with what is known now.
    async fn swap(
        &self,
        known: &mut Option<SharedSchedule>,
        current: &SharedSchedule,
        next: SharedSchedule,
    ) -> Result<bool, String> {
        let expected = (current.version > 0).then_some(current.version);
        match self.store.write(&self.key, expected, &next).await? {
            Swap::Done => {
                *known = Some(next);
                Ok(true)
            }
            Swap::Lost(Some(stands)) => {
                *known = Some(stands);
                Ok(false)
            }
            Swap::Lost(None) => {
                *known = None;
                Err("the table did not return the schedule it holds".to_owned())
            }
        }
    }

    /// Takes the fleet's next instant once it has come, if it comes no later than
    /// `latest`. Nothing is reserved ahead: a container waits for the instant it knows
    /// of and only then claims it, so a drop by any container holds back every request
    /// not yet sent, and the fleet never has requests booked at a rate older than its
    /// last drop.
    /// Also says how many writes to the table it took.
    pub async fn take_by(&self, latest: Instant) -> (Take, u32) {
        let mut lost = 0;
        let mut writes = 0;
        loop {
            let mut known = self.known.lock().await;
            let now = now_us();
            let current = Self::base(known.as_ref(), now);
            if current.next_us > now {
                let wait = Duration::from_micros(u64::try_from(current.next_us - now).unwrap_or(0));
                if Instant::now() + wait > latest {
                    return (Take::Late, writes);
                }
                drop(known);
                tokio::time::sleep(wait).await;
                lost = 0;
                continue;
            }
            let next = SharedSchedule {
                next_us: now + Self::period_us(self.rate(&current, now)),
                version: current.version + 1,
                ..current.clone()
            };
            writes += 1;
            match self.swap(&mut known, &current, next).await {
                Ok(true) => {
                    let token = FleetToken {
                        epoch: current.epoch,
                    };
                    return (Take::Token(token), writes);
                }
                Ok(false) => {
                    lost += 1;
                    if lost == TRIES {
                        return (Take::Unavailable, writes);
                    }
                }
                Err(why) => {
                    warn!(
                        error = %why,
                        "the fleet's rate could not be read; this request is paced on the container's own"
                    );
                    return (Take::Unavailable, writes);
                }
            }
        }
    }

    /// Connect throttled the request `token` was taken for: the fleet's rate drops to
    /// half of what it is now, once per drop (a token taken before the last drop, by
    /// any container, does not drop it again).
    /// Says how many writes to the table it took.
    pub async fn throttled(&self, token: FleetToken) -> u32 {
        let mut known = self.known.lock().await;
        let mut writes = 0;
        for _ in 0..TRIES {
            let now = now_us();
            let current = Self::base(known.as_ref(), now);
            if current.epoch != token.epoch {
                return writes;
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
            writes += 1;
            match self.swap(&mut known, &current, next).await {
                Ok(true) => return writes,
                Ok(false) => {}
                Err(why) => {
                    warn!(error = %why, "the fleet's rate could not be lowered");
                    return writes;
                }
            }
        }
        writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
                if item.as_ref().map(|s| s.version) == expected {
                    *item = Some(schedule.clone());
                    Ok(Swap::Done)
                } else {
                    Ok(Swap::Lost(item.clone()))
                }
            })
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    async fn token(rate: &FleetRate) -> FleetToken {
        match rate.take_by(far()).await.0 {
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
        // Ten requests at 20/s for the fleet: nine periods of 50 ms at least, where each
        // container on its own schedule would have taken four.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(440), "{took:?}");
        let stored = table.item.lock().unwrap().clone().unwrap();
        assert_eq!(stored.version, 10, "one successful write per request");
        // Each container learned the other's writes from its lost races: one each.
        assert_eq!(*table.writes.lock().unwrap(), 10 + 9);
    }

    #[tokio::test]
    async fn a_throttle_met_by_one_container_drops_the_fleets_rate_once() {
        let table = Arc::new(Table::default());
        let a = FleetRate::new(table.clone(), "Op", 10.0);
        let b = FleetRate::new(table.clone(), "Op", 10.0);
        let ta = token(&a).await;
        let tb = token(&b).await;
        a.throttled(ta).await;
        // b's token was taken before a's drop: the drop answered it already.
        b.throttled(tb).await;
        let stored = table.item.lock().unwrap().clone().unwrap();
        assert_eq!(stored.epoch, 1);
        let from = stored.throttle.unwrap().from;
        assert!((from - 10.0).abs() < 1e-9, "{from}");
        // Both containers now keep to half of it.
        assert!((b.rate(&stored, now_us()) - 5.0).abs() < 0.01);
        // And the next request waits the respite: two periods at 5/s.
        let start = std::time::Instant::now();
        let tb = token(&b).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(350), "{waited:?}");
        b.throttled(tb).await;
        assert_eq!(table.item.lock().unwrap().as_ref().unwrap().epoch, 2);
    }

    #[tokio::test]
    async fn an_instant_after_the_latest_start_is_not_claimed() {
        let table = Arc::new(Table::default());
        let a = FleetRate::new(table.clone(), "Op", 0.5);
        token(&a).await;
        let version = table.item.lock().unwrap().as_ref().unwrap().version;
        assert_eq!(
            a.take_by(Instant::now() + Duration::from_millis(500)).await,
            (Take::Late, 0)
        );
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
        assert_eq!(a.take_by(far()).await, (Take::Unavailable, 1));
    }
}
