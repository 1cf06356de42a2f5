//! One run: the changes sent to an SQS queue over the first minute, the containers
//! polling it (each invocation through the library's `handler::invoke`, with an SQS
//! event and a deadline as Lambda gives them), killed and restarted, another caller on
//! the update quota; then, faults off, the run goes on until the queue drains.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SecondsFormat, TimeDelta};
use connect_identity_sync::clock::Clock;
use connect_identity_sync::domain::change::IdentityInfo;
use connect_identity_sync::domain::document::{Admission, DEFAULT_MAX_CLOCK_SKEW};
use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::identity::{Field, InstanceId};
use connect_identity_sync::domain::policy::{EmailDomains, Policy};
use connect_identity_sync::domain::ports::{DeadLetter, DeadLetterSink};
use connect_identity_sync::handler::invoke;
use connect_identity_sync::pipeline::{Pipeline, RateLimits, Settings};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep, sleep_until, timeout_at};

use crate::connect::{ATTEMPT, Connect, OPS, SimDirectory};
use crate::table::{SimTable, Table};
use crate::world::{InvocationId, OffsetClock, World, epoch};

pub const INSTANCE: &str = "11111111-2222-3333-4444-555555555555";
/// The function's timeout (the template's).
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The source queue's visibility timeout (the fleet test's: just over the timeout).
pub const VISIBILITY: Duration = Duration::from_secs(40);
/// The source queue's redrive `maxReceiveCount` (the template's).
pub const REDRIVE_AT: u32 = 6;
/// `MAX_RECEIVE_COUNT`.
pub const MAX_RECEIVE_COUNT: u32 = 3;
/// Changes are sent over this long; faults strike until `FAULTS_END`.
const SENDING: Duration = Duration::from_secs(60);
const FAULTS_END: Duration = Duration::from_secs(150);
/// The queue must have drained by then (a backlog: and a few seconds a change more).
const LIMIT: Duration = Duration::from_secs(30 * 60);

/// How long a run may take to drain its queue: a backlog is given three seconds a change
/// on top (the quota's free part with another caller is 0.8 updates a second).
pub fn limit(faults: &crate::world::Faults) -> Duration {
    if faults.backlog {
        LIMIT + Duration::from_secs(3) * faults.changes as u32
    } else {
        LIMIT
    }
}

/// What a change is, and what must become of it.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A change every rule accepts: the fields it sets (`None`: cleared).
    Good(BTreeMap<Field, Option<String>>),
    /// A change refused with this class.
    Bad(ErrorClass),
}

#[derive(Debug, Clone)]
pub struct Change {
    pub id: String,
    pub user: String,
    pub kind: Kind,
    pub occurred_us: i64,
    pub body: String,
    pub send_at: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Queued,
    Deleted,
    CatchAll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Acked,
    HandedBack,
    /// Killed, or timed out by Lambda: no reply.
    Lost,
    /// Acknowledged with a receipt handle older than the message's latest (it was
    /// delivered again while in flight): the delete did nothing.
    Stale,
    /// Handed back after the message was delivered again while in flight: the later
    /// delivery, counting the record's own failures, found this receive neither failed
    /// nor noted as a deferral yet, and may count it (the function cannot tell it from a
    /// failure).
    Overlapped,
}

pub struct Message {
    pub change: usize,
    /// Its `messageId`: the change's id, with `.k` for the k-th copy queued again.
    pub id: String,
    /// Message attributes: (name, data type, value).
    pub attributes: Vec<(&'static str, &'static str, String)>,
    pub receive_count: u32,
    visible_at: Duration,
    receipt: u64,
    pub state: State,
    pub deliveries: Vec<(InvocationId, u64, Option<End>)>,
}

#[derive(Default)]
pub struct Queue {
    pub messages: Mutex<Vec<Message>>,
    /// The messages still queued, by when each is visible (so that a receive from a
    /// backlog of thousands, and the many receives of an idle fleet of fifty, need not
    /// look at every message); and each change's messages so far.
    queued: Mutex<BTreeSet<(Duration, usize)>>,
    copies: Mutex<BTreeMap<usize, usize>>,
    receipts: AtomicU64,
}

impl Queue {
    /// Sends a message of `change`, made given how many messages of it were sent before.
    fn push(&self, change: usize, make: impl FnOnce(usize) -> Message) {
        let mut messages = self.messages.lock().expect("queue");
        let i = messages.len();
        let mut copies = self.copies.lock().expect("copies");
        let before = copies.entry(change).or_default();
        let m = make(*before);
        *before += 1;
        self.queued
            .lock()
            .expect("queued")
            .insert((m.visible_at, i));
        messages.push(m);
    }

    fn receive(&self, world: &World, invocation: InvocationId) -> Vec<(usize, u64, u32)> {
        let now = world.elapsed();
        let mut messages = self.messages.lock().expect("queue");
        let mut queued = self.queued.lock().expect("queued");
        // In the order of the messages, as SQS's shuffle below starts from.
        let mut visible: Vec<usize> = queued
            .range(..=(now, usize::MAX))
            .map(|&(_, i)| i)
            .collect();
        visible.sort_unstable();
        world.rng(|r| r.shuffle(&mut visible));
        let mut out = Vec::new();
        for i in visible {
            if out.len() == 10 {
                break;
            }
            let m = &mut messages[i];
            queued.remove(&(m.visible_at, i));
            m.receive_count += 1;
            if m.receive_count > REDRIVE_AT {
                m.state = State::CatchAll;
                world.note(format!("message {i} moved to the catch-all"));
                continue;
            }
            let receipt = self.receipts.fetch_add(1, Ordering::Relaxed) + 1;
            m.receipt = receipt;
            m.visible_at = if world.fault(world.faults.duplicate) {
                now + world.between(Duration::ZERO, Duration::from_secs(2))
            } else {
                now + VISIBILITY
            };
            queued.insert((m.visible_at, i));
            m.deliveries.push((invocation, receipt, None));
            out.push((i, receipt, m.receive_count));
        }
        out
    }

    fn end(&self, i: usize, receipt: u64, end: End) {
        let mut messages = self.messages.lock().expect("queue");
        let m = &mut messages[i];
        // A delete with an older receipt handle than the latest does nothing.
        let end = match end {
            End::Acked if m.receipt != receipt => End::Stale,
            End::HandedBack if m.receipt != receipt => End::Overlapped,
            end => end,
        };
        if let Some(d) = m.deliveries.iter_mut().find(|d| d.1 == receipt) {
            d.2 = Some(end);
        }
        if end == End::Acked && m.state == State::Queued {
            m.state = State::Deleted;
            self.queued
                .lock()
                .expect("queued")
                .remove(&(m.visible_at, i));
        }
    }

    pub fn pending(&self) -> usize {
        self.queued.lock().expect("queued").len()
    }
}

pub struct Dlq {
    pub world: Arc<World>,
    pub letters: Arc<Mutex<Vec<DeadLetter>>>,
    /// The source queue, where a deferred record's copy goes, and every change's body,
    /// by which a copy is known (with the change's own `messageId`).
    pub queue: Arc<Queue>,
    pub bodies: Arc<BTreeMap<String, (usize, String)>>,
}

impl DeadLetterSink for Dlq {
    /// A deferred record queued again, as the function does on a standard queue: a new
    /// message (`<id>.<k>`) of the same change, with the copy's attributes, visible
    /// after its delay, its receive count starting again.
    async fn requeue(
        &self,
        copy: &connect_identity_sync::domain::ports::Requeue,
    ) -> Result<(), String> {
        sleep(
            self.world
                .between(Duration::from_millis(5), Duration::from_millis(30)),
        )
        .await;
        let (change, first) = self
            .bodies
            .get(&copy.body)
            .ok_or("a copy of no change sent")?;
        let f = &self.world.faults;
        if self.world.copy_fault(f.copy_refused) {
            self.world
                .note(format!("the copy of a message of change {change} refused"));
            return Err("SQS SendMessage of a deferred record failed (a fault)".into());
        }
        // Taken, and answered late.
        let late = self.world.copy_fault(f.copy_late);
        let now = self.world.elapsed();
        let mut k = 0;
        self.queue.push(*change, |before| {
            k = before;
            Message {
                change: *change,
                id: format!("{first}.{before}"),
                attributes: connect_identity_sync::outbound::dead_letter::requeue_attributes(copy),
                receive_count: 0,
                visible_at: now + Duration::from_secs(u64::from(copy.delay_seconds)),
                receipt: 0,
                state: State::Queued,
                deliveries: Vec::new(),
            }
        });
        self.world.note(format!(
            "message of change {change} queued again as copy {k}"
        ));
        if late {
            // As moto's SQS answered under load (19–60 sends a run after 250 ms): from a
            // quarter second to three, after the copy's budget when the deferral came
            // late in its invocation.
            let after = self
                .world
                .copy_between(Duration::from_millis(250), Duration::from_secs(3));
            self.world.note(format!(
                "the copy {k} of change {change} answers after {} ms (its budget {} ms)",
                after.as_millis(),
                copy.within.as_millis()
            ));
            sleep(after).await;
        }
        Ok(())
    }

    async fn send(&self, letter: &DeadLetter) -> Result<(), String> {
        sleep(
            self.world
                .between(Duration::from_millis(5), Duration::from_millis(30)),
        )
        .await;
        self.world.note(format!(
            "dead letter {} {}",
            letter.source_id,
            letter.class.as_str()
        ));
        self.letters.lock().expect("dlq").push(letter.clone());
        Ok(())
    }
}

/// Everything a run left behind, for the invariants.
pub struct Ran {
    pub world: Arc<World>,
    /// The guard's table, with its notes of deferrals.
    pub table: Arc<Table>,
    pub changes: Vec<Change>,
    pub queue: Arc<Queue>,
    pub letters: Vec<DeadLetter>,
    pub connect: Arc<Connect>,
    pub drained: bool,
    pub invocations: u64,
}

fn admission() -> Admission {
    let instance = InstanceId::parse(INSTANCE).expect("an instance id");
    Admission {
        policy: Policy {
            allowed_instances: [instance.clone()].into(),
            email_domains: EmailDomains::parse(Some("example.com")).expect("domains"),
            secondary_email_domains: EmailDomains::Any,
            protected_profiles: ["sp-admin".to_owned()].into(),
            trusted_sources: None,
        },
        default_instance: Some(instance),
        phone_region: Some("US".parse().expect("a region")),
        max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
    }
}

fn settings() -> Settings {
    Settings {
        max_receive_count: MAX_RECEIVE_COUNT,
        concurrency: 4,
        deadline_margin: Duration::from_millis(500),
        call_budget: ATTEMPT,
    }
}

fn user_id(n: usize) -> String {
    format!("u-{n}")
}

/// The changes of a run, in the order they are sent.
fn changes(world: &World) -> Vec<Change> {
    let f = &world.faults;
    let mut out = Vec::new();
    for n in 0..f.changes {
        let number = world.rng(|r| r.usize(0..f.users));
        let user = user_id(number);
        // A backlog is queued within the first second.
        let sending = if f.backlog {
            Duration::from_secs(1)
        } else {
            SENDING
        };
        let send_at = world.between(Duration::ZERO, sending);
        // Published up to 5 s before it is sent (a backlog: up to ten minutes before the
        // start); a distinct microsecond per change.
        let lag = world.between(Duration::ZERO, Duration::from_secs(5));
        let published = if f.backlog {
            epoch() - TimeDelta::from_std(lag * 120).expect("short")
        } else {
            epoch() + TimeDelta::from_std(send_at.saturating_sub(lag)).expect("short")
        };
        let occurred = published + TimeDelta::microseconds(n as i64);
        let mut fields = serde_json::Map::new();
        let roll = world.rng(|r| r.u8(0..100));
        let kind = match roll {
            0..=2 => Kind::Bad(ErrorClass::MalformedEvent),
            3..=5 => {
                fields.insert("Mobile".into(), json!("not a phone"));
                Kind::Bad(ErrorClass::ValidationError)
            }
            6..=8 => {
                fields.insert("Email".into(), json!(format!("x{n}@elsewhere.test")));
                Kind::Bad(ErrorClass::PolicyViolation)
            }
            _ if f.unchanged > 0.0 && world.rng(|r| r.f64()) < f.unchanged => {
                // What the user already has (`run_world`'s initial identities).
                let set = BTreeMap::from([
                    (Field::FirstName, Some(format!("Initial{number}"))),
                    (Field::LastName, Some("Agent".to_owned())),
                ]);
                fields.insert("FirstName".into(), json!(format!("Initial{number}")));
                fields.insert("LastName".into(), json!("Agent"));
                Kind::Good(set)
            }
            _ => {
                let mut set = BTreeMap::new();
                for (field, name) in [
                    (Field::FirstName, "FirstName"),
                    (Field::LastName, "LastName"),
                    (Field::SecondaryEmail, "SecondaryEmail"),
                    (Field::Mobile, "Mobile"),
                ] {
                    if !world.rng(|r| r.bool()) {
                        continue;
                    }
                    let clear = matches!(field, Field::SecondaryEmail | Field::Mobile)
                        && world.rng(|r| r.u8(0..5)) == 0;
                    let value = match field {
                        _ if clear => None,
                        Field::FirstName => Some(format!("First{n}")),
                        Field::LastName => Some(format!("Last{n}")),
                        Field::SecondaryEmail => Some(format!("s{n}@example.com")),
                        _ => Some(format!("+1415555{:04}", n % 10_000)),
                    };
                    fields.insert(name.into(), value.clone().map_or(Value::Null, Value::from));
                    set.insert(field, value);
                }
                if set.is_empty() {
                    let value = format!("First{n}");
                    fields.insert("FirstName".into(), json!(value));
                    set.insert(Field::FirstName, Some(value));
                }
                Kind::Good(set)
            }
        };
        let body = if matches!(kind, Kind::Bad(ErrorClass::MalformedEvent)) {
            format!("{{\"UserId\": \"{user}\", \"n\": {n}, not json")
        } else {
            json!({
                "UserId": user,
                "IdentityInfo": fields,
                "OccurredAt": occurred.to_rfc3339_opts(SecondsFormat::Micros, true),
                "EventId": format!("e-{n}"),
            })
            .to_string()
        };
        out.push(Change {
            id: format!("m{n}"),
            user,
            kind,
            occurred_us: occurred.timestamp_micros(),
            body,
            send_at,
        });
    }
    out.sort_by_key(|c| c.send_at);
    out
}

struct Shared {
    world: Arc<World>,
    connect: Arc<Connect>,
    table: Arc<Table>,
    queue: Arc<Queue>,
    letters: Arc<Mutex<Vec<DeadLetter>>>,
    changes: Vec<Change>,
    /// Each change's body: its index and `messageId`.
    bodies: Arc<BTreeMap<String, (usize, String)>>,
    stop: AtomicBool,
    running: AtomicUsize,
    incarnations: AtomicU64,
    invocations: AtomicU64,
}

type App = Pipeline<SimDirectory, Dlq, SimTable>;

fn container(shared: &Arc<Shared>, incarnation: u64, invocation: &Arc<AtomicU64>) -> App {
    let world = &shared.world;
    let skew = world.faults.clock_skew_ms;
    let offset = if skew > 0 {
        world.rng(|r| r.i64(-skew / 2..=skew / 2))
    } else {
        0
    };
    world
        .offsets
        .lock()
        .expect("offsets")
        .insert(incarnation, offset);
    let clock = Clock::new(Arc::new(OffsetClock {
        start: world.start,
        offset_ms: offset,
    }));
    let n = world.faults.containers as f64;
    let table = |_| {
        SimTable::new(
            Arc::clone(world),
            Arc::clone(&shared.table),
            clock.clone(),
            incarnation,
            Arc::clone(invocation),
        )
    };
    // As the template sets them: each container its share, the fleet one update rate.
    let limits = RateLimits::new(OPS[3].1 / n, OPS[2].1 / n, OPS[1].1 / n)
        .with_list(0.0)
        .with_fleet_update(Arc::new(table(())), OPS[3].1);
    Pipeline::new(
        SimDirectory {
            world: Arc::clone(world),
            connect: Arc::clone(&shared.connect),
            table: Arc::clone(&shared.table),
            incarnation,
            invocation: Arc::clone(invocation),
        },
        Dlq {
            world: Arc::clone(world),
            letters: Arc::clone(&shared.letters),
            queue: Arc::clone(&shared.queue),
            bodies: Arc::clone(&shared.bodies),
        },
        admission(),
        settings(),
        limits,
    )
    .with_watermarks(Some(table(())))
    .with_clock(clock)
    // As the function runs: a deferred record is queued again, not handed back.
    .requeue_deferrals(true)
}

fn event(shared: &Shared, batch: &[(usize, u64, u32)]) -> Box<serde_json::value::RawValue> {
    let messages = shared.queue.messages.lock().expect("queue");
    let records: Vec<Value> =
        batch
            .iter()
            .map(|&(i, receipt, count)| {
                let m = &messages[i];
                let change = &shared.changes[m.change];
                let sent = epoch() + TimeDelta::from_std(change.send_at).expect("short");
                let attributes: serde_json::Map<String, Value> = m
                .attributes
                .iter()
                .map(|(name, data_type, value)| {
                    ((*name).to_owned(), json!({
                        "stringValue": value, "stringListValues": [], "binaryListValues": [],
                        "dataType": data_type
                    }))
                })
                .collect();
                json!({
                    "messageId": m.id,
                    "receiptHandle": format!("rh-{receipt}"),
                    "body": change.body,
                    "attributes": {
                        "ApproximateReceiveCount": count.to_string(),
                        "SentTimestamp": sent.timestamp_millis().to_string(),
                        "SenderId": "AIDAEXAMPLE",
                        "ApproximateFirstReceiveTimestamp": sent.timestamp_millis().to_string(),
                    },
                    "messageAttributes": attributes,
                    "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:changes",
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
    serde_json::value::to_raw_value(&json!({ "Records": records })).expect("JSON")
}

/// One container slot: a container, replaced by a new one when it is killed.
async fn slot(shared: Arc<Shared>, slot: usize) {
    let world = Arc::clone(&shared.world);
    while !shared.stop.load(Ordering::Relaxed) {
        let incarnation = shared.incarnations.fetch_add(1, Ordering::Relaxed) + 1;
        let invocation = Arc::new(AtomicU64::new(0));
        let app = container(&shared, incarnation, &invocation);
        world.note(format!("slot {slot}: incarnation {incarnation} starts"));
        sleep(world.between(Duration::from_millis(100), Duration::from_millis(800))).await;
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            let n = invocation.fetch_add(1, Ordering::Relaxed) + 1;
            let id = (incarnation, n);
            let batch = shared.queue.receive(&world, id);
            if batch.is_empty() {
                sleep(world.between(Duration::from_millis(200), Duration::from_secs(1))).await;
                continue;
            }
            shared.running.fetch_add(1, Ordering::Relaxed);
            shared.invocations.fetch_add(1, Ordering::Relaxed);
            let payload = event(&shared, &batch);
            let deadline = Instant::now() + TIMEOUT;
            let kill = world
                .fault(world.faults.kill)
                .then(|| Instant::now() + world.between(Duration::ZERO, TIMEOUT));
            let until = kill.map_or(deadline, |k| k.min(deadline));
            world.note(format!(
                "invocation {id:?}: {}",
                batch
                    .iter()
                    .map(|b| format!(
                        "{}#{}",
                        shared.queue.messages.lock().expect("q")[b.0].id,
                        b.2
                    ))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            let handled = timeout_at(until, invoke(&app, &payload, deadline, false)).await;
            shared.running.fetch_sub(1, Ordering::Relaxed);
            match handled {
                Ok(handled) => {
                    let failures: BTreeSet<String> = match &handled.reply {
                        Ok(v) => v["batchItemFailures"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                            .collect(),
                        Err(e) => {
                            world.violate("invocation-error", format!("{id:?}: {e}"));
                            let messages = shared.queue.messages.lock().expect("q");
                            batch.iter().map(|b| messages[b.0].id.clone()).collect()
                        }
                    };
                    for &(i, receipt, _) in &batch {
                        let id = shared.queue.messages.lock().expect("q")[i].id.clone();
                        let end = if failures.contains(&id) {
                            End::HandedBack
                        } else {
                            End::Acked
                        };
                        shared.queue.end(i, receipt, end);
                    }
                    world.note(format!(
                        "invocation {id:?} replied; handed back: {}",
                        failures.iter().cloned().collect::<Vec<_>>().join(" ")
                    ));
                }
                Err(_) => {
                    for &(i, receipt, _) in &batch {
                        shared.queue.end(i, receipt, End::Lost);
                    }
                    if kill.is_some_and(|k| k < deadline) {
                        world.note(format!("invocation {id:?}: container killed"));
                    } else {
                        world.violate(
                            "reply-after-deadline",
                            format!("invocation {id:?} had not replied at its deadline"),
                        );
                    }
                    break;
                }
            }
        }
    }
}

pub async fn run(seed: u64, large: bool, echo: bool) -> Ran {
    run_world(World::new(seed, large, echo)).await
}

/// A run in `world`, of its faults.
pub async fn run_world(world: World) -> Ran {
    let world = Arc::new(world);
    let f = world.faults.clone();
    world.note(format!("{f:?}"));
    let users: Vec<(String, IdentityInfo)> = (0..f.users)
        .map(|n| {
            (
                user_id(n),
                IdentityInfo {
                    first_name: Some(format!("Initial{n}")),
                    last_name: Some("Agent".into()),
                    email: Some(format!("agent{n}@example.com")),
                    secondary_email: None,
                    mobile: None,
                },
            )
        })
        .collect();
    let changes = changes(&world);
    let table = Table::default();
    table
        .message_users
        .lock()
        .expect("users")
        .extend(changes.iter().map(|c| (c.id.clone(), c.user.clone())));
    let shared = Arc::new(Shared {
        world: Arc::clone(&world),
        connect: Arc::new(Connect::new(&users)),
        table: Arc::new(table),
        queue: Arc::new(Queue::default()),
        letters: Arc::default(),
        changes: changes.clone(),
        bodies: Arc::new(
            changes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.body.clone(), (i, c.id.clone())))
                .collect(),
        ),
        stop: AtomicBool::new(false),
        running: AtomicUsize::new(0),
        incarnations: AtomicU64::new(0),
        invocations: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    {
        let shared = Arc::clone(&shared);
        tasks.push(tokio::spawn(async move {
            for (i, c) in shared.changes.iter().enumerate() {
                sleep_until(shared.world.start + c.send_at).await;
                shared.queue.push(i, |_| Message {
                    change: i,
                    id: c.id.clone(),
                    attributes: Vec::new(),
                    receive_count: 0,
                    visible_at: c.send_at,
                    receipt: 0,
                    state: State::Queued,
                    deliveries: Vec::new(),
                });
            }
        }));
    }
    if f.other_caller > 0.0 {
        let shared = Arc::clone(&shared);
        tasks.push(tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / shared.world.faults.other_caller);
            while !shared.stop.load(Ordering::Relaxed) {
                let jitter = shared
                    .world
                    .between(period.mul_f64(0.8), period.mul_f64(1.2));
                sleep(jitter).await;
                if !shared.connect.other_caller_update() {
                    shared
                        .world
                        .note("the other caller's update throttled by the quota");
                }
            }
        }));
    }
    if f.far_ahead {
        let shared = Arc::clone(&shared);
        tasks.push(tokio::spawn(async move {
            let at = shared.world.between(Duration::from_secs(5), SENDING);
            sleep(at).await;
            shared
                .table
                .write_far_ahead("fleet-rate#UpdateUserIdentityInfo", shared.world.true_now());
            shared
                .world
                .note("the fleet's schedule written from a clock an hour ahead");
        }));
    }
    // Lambda's SQS poller starts five containers at once and, while messages wait,
    // adds up to 300 a minute (one every 200 ms) up to `MaximumConcurrency`.
    for s in 0..f.containers.min(5) {
        tasks.push(tokio::spawn(slot(Arc::clone(&shared), s)));
    }
    if f.containers > 5 {
        let shared = Arc::clone(&shared);
        tasks.push(tokio::spawn(async move {
            for s in 5..shared.world.faults.containers {
                loop {
                    sleep(Duration::from_millis(200)).await;
                    if shared.queue.pending() > 0 || shared.stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                // It stops at the run's end, as every slot does.
                tokio::spawn(slot(Arc::clone(&shared), s));
            }
        }));
    }
    let mut drained = false;
    loop {
        sleep(Duration::from_secs(1)).await;
        let elapsed = world.elapsed();
        if elapsed > SENDING + Duration::from_secs(1)
            && shared.queue.pending() == 0
            && shared.running.load(Ordering::Relaxed) == 0
        {
            drained = true;
            break;
        }
        if elapsed > limit(&f) {
            break;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    // Requests of unknown outcome still on their way land.
    sleep(ATTEMPT * 3).await;
    for t in &tasks {
        t.abort();
    }
    let letters = shared.letters.lock().expect("dlq").clone();
    Ran {
        world,
        table: Arc::clone(&shared.table),
        changes,
        queue: Arc::clone(&shared.queue),
        letters,
        connect: Arc::clone(&shared.connect),
        drained,
        invocations: shared.invocations.load(Ordering::Relaxed),
    }
}

/// Whether faults may still strike.
pub fn faults_on(elapsed: Duration) -> bool {
    elapsed < FAULTS_END
}
