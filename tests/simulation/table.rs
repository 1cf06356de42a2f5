//! The staleness guard's DynamoDB table in memory, with the conditions of
//! `src/outbound/watermarks.rs` and `src/outbound/schedules.rs` mirrored request for
//! request, and the SDK's retries around them (three attempts, each bounded by the
//! attempt timeout): so a write whose reply was lost is sent again, as in production.
//! Faults per attempt: throttled, failing, slow (past the attempt timeout: the write is
//! done and the SDK sends it again), the reply lost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use connect_identity_sync::clock::Clock;
use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::identity::{Field, InstanceId, UserId};
use connect_identity_sync::domain::ports::{CallFailure, Lease, Leased, PortFuture, Watermarks};
use connect_identity_sync::domain::watermark::FieldWatermarks;
use connect_identity_sync::limiter::fleet::{Schedules, SharedSchedule, Swap};
use tokio::time::sleep;

use crate::connect::ATTEMPT;
use crate::world::{InvocationId, World};

/// A user's item.
#[derive(Default, Clone)]
struct Item {
    owner: Option<String>,
    /// Epoch milliseconds on the holder's clock.
    until_ms: Option<i64>,
    /// The lease's end in true time (what the holder's clock meant).
    true_until: Option<DateTime<Utc>>,
    released: Option<String>,
    marks: FieldWatermarks,
    /// `intent_<owner>`: what each lease not yet released may apply, per field as the
    /// adapter stores it: the newest time and the `EventId`s of the changes of that time.
    intents: BTreeMap<String, FieldWatermarks>,
}

#[derive(Default)]
pub struct Table {
    items: Mutex<BTreeMap<String, Item>>,
    schedules: Mutex<BTreeMap<String, SharedSchedule>>,
    /// Per SQS message, the receives noted as deferrals.
    notes: Mutex<BTreeMap<String, std::collections::BTreeSet<u32>>>,
    /// Each change's `messageId` (a copy's is `<id>.<k>`) → its user, so that a fault of
    /// a note's request is one of that user's.
    pub message_users: Mutex<BTreeMap<String, String>>,
}

pub fn key(instance: &InstanceId, user: &UserId) -> String {
    format!("{}#{}", instance.as_str(), user.as_str())
}

fn incarnation_of(owner: &str) -> Option<u64> {
    owner.strip_prefix('i')?.split('-').next()?.parse().ok()
}

impl Table {
    /// Whether receive `receive` of message `id` was noted as a deferral.
    pub fn noted(&self, id: &str, receive: u32) -> bool {
        self.notes
            .lock()
            .expect("notes")
            .get(id)
            .is_some_and(|n| n.contains(&receive))
    }

    fn user_of(&self, message_id: &str) -> String {
        let first = message_id.split('.').next().unwrap_or(message_id);
        self.message_users
            .lock()
            .expect("users")
            .get(first)
            .cloned()
            .unwrap_or_default()
    }

    /// Why an update of `user` sent at `now` (true time) by `incarnation` is not
    /// covered by a lease of its own that has not lapsed.
    pub fn lease_problem(
        &self,
        instance: &InstanceId,
        user: &UserId,
        incarnation: u64,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let items = self.items.lock().expect("table");
        let Some(item) = items.get(&key(instance, user)) else {
            return Some("no lease was ever taken".into());
        };
        match (&item.owner, item.true_until) {
            (Some(owner), _) if incarnation_of(owner) != Some(incarnation) => {
                Some(format!("the lease is held by {owner}"))
            }
            (Some(_), Some(until)) if until <= now => Some(format!(
                "its lease lapsed {} ms before",
                (now - until).num_milliseconds()
            )),
            (Some(_), _) => None,
            (None, _) => Some("the lease was given up".into()),
        }
    }

    /// Writes the fleet's schedule as a clock an hour ahead would.
    pub fn write_far_ahead(&self, key: &str, true_now: DateTime<Utc>) {
        let mut schedules = self.schedules.lock().expect("schedules");
        let next_us = (true_now + TimeDelta::hours(1)).timestamp_micros();
        let s = schedules.entry(key.to_owned()).or_insert(SharedSchedule {
            next_us,
            epoch: 0,
            throttle: None,
            version: 0,
        });
        s.next_us = next_us;
        s.version += 1;
    }
}

/// What an attempt of a table request met.
enum Attempt {
    /// Refused before doing anything (throttled, failing): the SDK tries again.
    Refused(&'static str),
    /// Done, and answered after this long (past the attempt timeout: the SDK gave up
    /// on the reply and tries again).
    Done(Duration),
}

/// One container's view of the table.
pub struct SimTable {
    pub world: Arc<World>,
    pub table: Arc<Table>,
    pub clock: Clock,
    pub incarnation: u64,
    pub invocation: Arc<AtomicU64>,
    leases: AtomicU64,
}

impl SimTable {
    pub fn new(
        world: Arc<World>,
        table: Arc<Table>,
        clock: Clock,
        incarnation: u64,
        invocation: Arc<AtomicU64>,
    ) -> Self {
        SimTable {
            world,
            table,
            clock,
            incarnation,
            invocation,
            leases: AtomicU64::new(0),
        }
    }

    fn invocation_id(&self) -> InvocationId {
        (self.incarnation, self.invocation.load(Ordering::Relaxed))
    }

    fn attempt(&self, user: &str) -> Attempt {
        let w = &self.world;
        let f = &w.faults;
        let quick = w.between(Duration::from_millis(2), Duration::from_millis(15));
        let fault = |what| {
            if !user.is_empty() {
                w.fault_for(self.invocation_id(), user);
            }
            what
        };
        let elapsed = w.elapsed();
        if f.table_brownout
            .is_some_and(|from| elapsed >= from && elapsed < from + Duration::from_secs(20))
        {
            let d = w.between(Duration::from_millis(500), ATTEMPT * 2);
            return fault(Attempt::Done(d));
        }
        if w.fault(f.table_throttle) {
            return fault(Attempt::Refused("DynamoDB throttled the request"));
        }
        if w.fault(f.table_fail) {
            return fault(Attempt::Refused("DynamoDB failed internally"));
        }
        if w.fault(f.table_lost) {
            return fault(Attempt::Done(ATTEMPT + Duration::from_millis(1)));
        }
        if w.fault(f.table_slow) {
            let d = w.between(Duration::from_millis(100), ATTEMPT * 2);
            return fault(Attempt::Done(d));
        }
        Attempt::Done(quick)
    }

    /// The SDK's standard retries: up to three attempts, 20 ms then 40 ms apart (with
    /// jitter), each bounded by the attempt timeout. `apply` runs on the table when an
    /// attempt reaches it.
    async fn send<T>(&self, user: &str, mut apply: impl FnMut() -> T) -> Result<T, &'static str> {
        let mut last = "a timeout";
        for n in 0..3u32 {
            if n > 0 {
                let backoff = Duration::from_millis(20 * 2u64.pow(n - 1));
                sleep(self.world.between(Duration::ZERO, backoff)).await;
            }
            let attempt = self.attempt(user);
            self.world.detail(|| {
                let what = match &attempt {
                    Attempt::Refused(why) => (*why).to_owned(),
                    Attempt::Done(after) => format!("answered in {after:?}"),
                };
                format!(
                    "table request of i{} for {user:?}, try {n}: {what}",
                    self.incarnation
                )
            });
            match attempt {
                Attempt::Refused(why) => {
                    sleep(Duration::from_millis(5)).await;
                    last = why;
                }
                Attempt::Done(after) => {
                    let answer = apply();
                    if after > ATTEMPT {
                        sleep(ATTEMPT).await;
                        last = "a timeout";
                        continue;
                    }
                    sleep(after).await;
                    return Ok(answer);
                }
            }
        }
        Err(last)
    }
}

fn guard_failure(step: &str, what: &str) -> CallFailure {
    CallFailure::new(
        ErrorClass::UnknownError,
        format!("staleness guard: {step} failed: {what}"),
    )
}

impl Watermarks for SimTable {
    async fn acquire(
        &self,
        instance: &InstanceId,
        user: &UserId,
        until: DateTime<Utc>,
        intent: &FieldWatermarks,
    ) -> Result<Option<Leased>, CallFailure> {
        let now = self.clock.now();
        let k = key(instance, user);
        let owner = format!(
            "i{}-{}",
            self.incarnation,
            self.leases.fetch_add(1, Ordering::Relaxed)
        );
        let true_until = self.world.true_time_of(self.incarnation, until);
        let sent = self
            .send(user.as_str(), || {
                let mut items = self.table.items.lock().expect("table");
                let item = items.entry(k.clone()).or_default();
                // attribute_not_exists(#until) OR #until < :now OR #owner = :me
                let free = item.until_ms.is_none_or(|u| u < now.timestamp_millis())
                    || item.owner.as_deref() == Some(owner.as_str());
                if !free {
                    return Err(item.owner.clone());
                }
                item.owner = Some(owner.clone());
                item.until_ms = Some(until.timestamp_millis());
                item.true_until = Some(true_until);
                if !intent.is_empty() {
                    // Per field its mark (time and ids), nothing else: as stored.
                    let stored = Field::ALL
                        .into_iter()
                        .filter_map(|f| Some((f, intent.mark(f)?.clone())))
                        .fold(FieldWatermarks::default(), |m, (f, mark)| {
                            m.with_mark(f, mark)
                        });
                    item.intents.insert(owner.clone(), stored);
                }
                let unsettled: Vec<(String, FieldWatermarks)> = item
                    .intents
                    .iter()
                    .filter(|(o, _)| **o != owner)
                    .map(|(o, m)| (o.clone(), m.clone()))
                    .collect();
                Ok((item.marks.clone(), unsettled))
            })
            .await;
        match sent {
            Ok(Ok((marks, unsettled))) => {
                self.world.note(format!("lease {k} taken by {owner}"));
                let all = unsettled
                    .iter()
                    .fold(FieldWatermarks::default(), |all, (_, m)| all.max(m));
                Ok(Some(Leased {
                    lease: Lease {
                        key: k,
                        owner,
                        until,
                        unsettled,
                    },
                    watermarks: marks,
                    unsettled: all,
                }))
            }
            Ok(Err(holder)) => {
                if holder.as_deref() == Some(owner.as_str()) {
                    self.world.violate(
                        "lease-locked-out-its-own-request",
                        format!("{owner}'s lease request on {k} was refused by its own lease"),
                    );
                }
                Ok(None)
            }
            Err(what) => Err(guard_failure("taking the lease", what)),
        }
    }

    async fn release(
        &self,
        lease: &Lease,
        advanced: Option<&FieldWatermarks>,
    ) -> Result<(), CallFailure> {
        let user = lease.key.split('#').nth(1).unwrap_or("").to_owned();
        let sent = self
            .send(&user, || {
                let mut items = self.table.items.lock().expect("table");
                let item = items.entry(lease.key.clone()).or_default();
                // (#owner = :me OR (attribute_not_exists(#owner) AND #released = :me))
                let mine = item.owner.as_deref() == Some(lease.owner.as_str())
                    || (item.owner.is_none()
                        && item.released.as_deref() == Some(lease.owner.as_str()));
                if !mine {
                    return false;
                }
                // Forward only: (attribute_not_exists(wm) OR wm <= :w) per field written.
                let forward = Field::ALL.into_iter().all(|f| {
                    match (advanced.and_then(|a| a.mark(f)), item.marks.mark(f)) {
                        (Some(new), Some(old)) => old.at <= new.at,
                        _ => true,
                    }
                });
                if !forward {
                    return false;
                }
                if let Some(advanced) = advanced {
                    for f in Field::ALL {
                        if let Some(mark) = advanced.mark(f) {
                            item.marks = item.marks.clone().with_mark(f, mark.clone());
                        }
                    }
                }
                item.intents.remove(&lease.owner);
                if let Some(advanced) = advanced {
                    for (owner, intent) in &lease.unsettled {
                        let covers = Field::ALL.into_iter().all(|f| match intent.get(f) {
                            None => true,
                            Some(at) => advanced.get(f).is_some_and(|m| m >= at),
                        });
                        if covers {
                            item.intents.remove(owner);
                        }
                    }
                }
                item.released = Some(lease.owner.clone());
                item.owner = None;
                item.until_ms = None;
                item.true_until = None;
                true
            })
            .await;
        match sent {
            Ok(true) => {
                self.world
                    .note(format!("lease {} released by {}", lease.key, lease.owner));
                Ok(())
            }
            Ok(false) => Err(guard_failure(
                "writing the watermarks",
                "the lease was no longer held, or a watermark would have moved back",
            )),
            Err(what) => Err(guard_failure("writing the watermarks", what)),
        }
    }

    async fn note_deferral(&self, message_id: &str, receive: u32) -> Result<(), CallFailure> {
        let user = self.table.user_of(message_id);
        let sent = self
            .send(&user, || {
                self.table
                    .notes
                    .lock()
                    .expect("notes")
                    .entry(message_id.to_owned())
                    .or_default()
                    .insert(receive);
            })
            .await;
        match sent {
            Ok(()) => {
                self.world.note(format!(
                    "receive {receive} of {message_id} noted a deferral"
                ));
                Ok(())
            }
            Err(what) => Err(guard_failure("noting a deferral", what)),
        }
    }

    async fn deferrals(&self, message_id: &str) -> Result<Vec<u32>, CallFailure> {
        let user = self.table.user_of(message_id);
        self.send(&user, || {
            self.table
                .notes
                .lock()
                .expect("notes")
                .get(message_id)
                .map(|n| n.iter().copied().collect())
                .unwrap_or_default()
        })
        .await
        .map_err(|what| guard_failure("reading the deferral notes", what))
    }
}

impl Schedules for SimTable {
    fn write<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        schedule: &'a SharedSchedule,
    ) -> PortFuture<'a, Result<Swap, String>> {
        Box::pin(async move {
            let sent = self
                .send("", || {
                    let mut schedules = self.table.schedules.lock().expect("schedules");
                    // `#version = :expected`, or `attribute_not_exists(#pk)`.
                    let mut item = schedules.get(key).cloned();
                    let swap = Swap::conditional(&mut item, expected, schedule);
                    if let (Swap::Done, Some(written)) = (&swap, item) {
                        schedules.insert(key.to_owned(), written);
                    }
                    swap
                })
                .await;
            sent.map_err(|what| format!("fleet rate: writing the schedule failed: {what}"))
        })
    }
}
