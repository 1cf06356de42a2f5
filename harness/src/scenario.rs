//! The fleet scenario of issue 20, shared by `tests/e2e_fleet.rs` and the bench: changes to a
//! set of users (several per user, `LastName` changed by every one of them, shuffled, a third
//! sent twice) on the standard source queue; several containers polling it through the event
//! source mapping, each with its share of the quota (`CONNECT_RPS_*` = quota/containers);
//! Connect's quotas emulated account-wide; the staleness guard on; optionally another
//! caller drawing on the same `UpdateUserIdentityInfo` bucket and containers killed
//! mid-invocation. Time can be scaled: at `scale` 5 every quota and the other caller's rate
//! are five times Connect's (the buckets keep their sizes), so a run takes a fifth of the
//! time.
//!
//! [`ScenarioOutcome`] holds what the run left, per record and per field, and the figures.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use connect_emulator::{CallCounts, Operation};
use serde_json::{Value, json};

use crate::HarnessError;
use crate::dynamodb::Dynamo;
use crate::fixtures::{self, INSTANCE};
use crate::fleet::{FleetConfig, FleetReport, run_fleet};
use crate::other_caller::{OTHER_CALLER_KEY, OtherCaller, OtherCallerCounts};
use crate::sqs::Message;
use crate::stack::Stack;
use crate::table_faults::{TableFault, TableFaultCounts, TableFaultProxy};

/// Connect's default quotas (requests/s, bucket size) as SPEC §2.4 and issue 20 give them.
pub const CONNECT_QUOTAS: [(Operation, f64, u32); 5] = [
    (Operation::UpdateUserIdentityInfo, 2.0, 5),
    (Operation::DescribeInstance, 2.0, 5),
    (Operation::SearchUsers, 2.0, 5),
    (Operation::DescribeUser, 10.0, 15),
    (Operation::ListUsers, 10.0, 15),
];

/// The fields a change names besides `LastName`, in turn.
const FIELDS: [&str; 3] = ["FirstName", "SecondaryEmail", "Mobile"];

/// The users the other caller changes (seeded apart from the scenario's).
const OTHER_USERS: [&str; 2] = ["u-jdoe", "u-asmith"];

/// What to run.
#[derive(Clone, Debug)]
pub struct Scenario {
    binary: PathBuf,
    users: usize,
    changes_per_user: usize,
    containers: usize,
    scale: f64,
    other_rate: f64,
    visibility_timeout: u32,
    function_timeout: Duration,
    limit: Duration,
    kills: Vec<(usize, usize, Duration)>,
    seed: u64,
    env: Vec<(String, String)>,
    table_faults: Vec<TableFault>,
    copy_faults: Vec<TableFault>,
    schedule_ahead: Option<Duration>,
    connect_faults: Vec<connect_emulator::Fault>,
}

impl Scenario {
    /// `users` users with `changes_per_user` changes each, two containers, Connect's own
    /// pace (`scale` 1), no other caller, no kills; the source queue's visibility timeout
    /// 6 × the function timeout of 30 s, as the template sets them.
    #[must_use]
    ///
    /// # Panics
    /// With more than 9999 users or 9 changes a user (a user's Mobile numbers would repeat).
    pub fn new(binary: impl Into<PathBuf>, users: usize, changes_per_user: usize) -> Self {
        assert!(
            users <= 9999 && changes_per_user <= 9,
            "at most 9999 users, 9 changes each"
        );
        Self {
            binary: binary.into(),
            users,
            changes_per_user,
            containers: 2,
            scale: 1.0,
            other_rate: 0.0,
            visibility_timeout: 180,
            function_timeout: Duration::from_secs(30),
            limit: Duration::from_secs(600),
            kills: Vec::new(),
            seed: 0x9e37_79b9_7f4a_7c15,
            env: Vec::new(),
            table_faults: Vec::new(),
            copy_faults: Vec::new(),
            schedule_ahead: None,
            connect_faults: Vec::new(),
        }
    }

    /// Containers polling the queue (`MaximumConcurrency`).
    #[must_use]
    pub fn containers(mut self, n: usize) -> Self {
        self.containers = n.max(1);
        self
    }

    /// Quotas and the other caller's rate × `scale` (buckets keep their sizes).
    #[must_use]
    pub fn scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// Another caller at `rate` updates/s (before scaling); 0 for none.
    #[must_use]
    pub fn other_caller(mut self, rate: f64) -> Self {
        self.other_rate = rate;
        self
    }

    /// The function timeout and the source queue's visibility timeout.
    #[must_use]
    pub fn timeouts(mut self, function: Duration, visibility_seconds: u32) -> Self {
        self.function_timeout = function;
        self.visibility_timeout = visibility_seconds;
        self
    }

    /// How long the fleet may take.
    #[must_use]
    pub fn limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// Kills container `slot` in its `nth` invocation, `after` it was picked up.
    #[must_use]
    pub fn kill(mut self, slot: usize, nth: usize, after: Duration) -> Self {
        self.kills.push((slot, nth, after));
        self
    }

    /// The shuffle's seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets a function variable on top of the scenario's.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Puts the containers' SQS requests through a [`TableFaultProxy`] with `fault`
    /// scheduled (after any added before): with the `pk_prefix` [`crate::SQS_COPY`], it
    /// strikes the copies of deferred records (dead letters pass untouched).
    #[must_use]
    pub fn copy_fault(mut self, fault: TableFault) -> Self {
        self.copy_faults.push(fault);
        self
    }

    /// Puts the containers' DynamoDB requests through a [`TableFaultProxy`] with
    /// `fault` scheduled (after any added before).
    #[must_use]
    pub fn table_fault(mut self, fault: TableFault) -> Self {
        self.table_faults.push(fault);
        self
    }

    /// Injects `fault` into the Connect emulator before the fleet starts.
    #[must_use]
    pub fn connect_fault(mut self, fault: connect_emulator::Fault) -> Self {
        self.connect_faults.push(fault);
        self
    }

    /// Seeds the fleet's update schedule with its next instant `ahead` of the clock, as a
    /// container whose clock runs ahead leaves it.
    #[must_use]
    pub fn schedule_ahead(mut self, ahead: Duration) -> Self {
        self.schedule_ahead = Some(ahead);
        self
    }

    fn quota(&self, operation: Operation) -> f64 {
        CONNECT_QUOTAS
            .iter()
            .find(|(op, _, _)| *op == operation)
            .map_or(0.0, |(_, rps, _)| rps * self.scale)
    }

    /// The changes to send (bodies, duplicates included, shuffled) and, per user and
    /// field, the newest value.
    #[must_use]
    pub fn changes(&self) -> (Vec<String>, BTreeMap<String, BTreeMap<String, Value>>) {
        let mut expected: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        let mut bodies = Vec::new();
        for n in 1..=self.users {
            let user = format!("u-{n:04}");
            for v in 1..=self.changes_per_user {
                let other = FIELDS[(n + v) % FIELDS.len()];
                let value = match other {
                    "FirstName" => json!(format!("First{n}v{v}")),
                    "SecondaryEmail" => json!(format!("alt{n}v{v}@example.com")),
                    _ => json!(format!("+1415555{:04}", (n * 10 + v) % 10_000)),
                };
                let identity = json!({"LastName": format!("Last{n}v{v}"), other: value});
                let occurred = format!("2026-03-01T10:{:02}:{:02}Z", v / 60, v % 60);
                let latest = expected.entry(user.clone()).or_default();
                latest.insert("LastName".to_owned(), identity["LastName"].clone());
                latest.insert(other.to_owned(), value);
                let body = json!({"InstanceId": INSTANCE, "UserId": user,
                                  "IdentityInfo": identity, "OccurredAt": occurred})
                .to_string();
                if (n + v) % 3 == 0 {
                    bodies.push(body.clone());
                }
                bodies.push(body);
            }
        }
        shuffle(&mut bodies, self.seed);
        (bodies, expected)
    }

    /// Starts the stack, sends the changes, runs the fleet (and the other caller) until the
    /// queue is drained or the limit passes, and reads back what it left.
    ///
    /// # Errors
    /// When a part of the stack fails (not when the function loses a change: that is in
    /// the outcome).
    pub async fn run(&self) -> Result<ScenarioOutcome, HarnessError> {
        let n = self.containers;
        let share = |op: Operation| format!("{}/{n}", self.quota(op));
        let mut config = fixtures::stack(&self.binary, self.users)
            .watermarks()
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .visibility_timeout(self.visibility_timeout)
            .function_timeout(self.function_timeout)
            .env(
                "CONNECT_RPS_UPDATE",
                share(Operation::UpdateUserIdentityInfo),
            )
            .env("CONNECT_RPS_DESCRIBE", share(Operation::DescribeUser))
            .env("CONNECT_RPS_SEARCH", share(Operation::SearchUsers))
            .env("CONNECT_RPS_LIST", share(Operation::ListUsers))
            // As the template does: the fleet keeps the stack's share of the update
            // quota as one rate, in the watermark table.
            .env(
                "CONNECT_FLEET_RPS_UPDATE",
                self.quota(Operation::UpdateUserIdentityInfo).to_string(),
            );
        for (k, v) in &self.env {
            config = config.env(k, v);
        }
        let mut stack = config.start().await?;
        // The stack's own process stays idle: the fleet starts its containers.
        stack.function.kill();
        let proxy = if self.table_faults.is_empty() {
            None
        } else {
            let moto = stack.moto.endpoint();
            let proxy = TableFaultProxy::start(moto.trim_start_matches("http://")).await?;
            for fault in &self.table_faults {
                proxy.add(fault.clone());
            }
            stack.function_config = stack
                .function_config
                .clone()
                .env("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint());
            Some(proxy)
        };
        let copy_proxy = if self.copy_faults.is_empty() {
            None
        } else {
            let moto = stack.moto.endpoint();
            let proxy = TableFaultProxy::start(moto.trim_start_matches("http://")).await?;
            for fault in &self.copy_faults {
                proxy.add(fault.clone());
            }
            stack.function_config = stack
                .function_config
                .clone()
                .env("AWS_ENDPOINT_URL_SQS", proxy.endpoint());
            Some(proxy)
        };
        for fault in &self.connect_faults {
            stack.emulator.inject_fault(fault.clone());
        }
        if let (Some(ahead), Some(table)) = (self.schedule_ahead, &stack.watermark_table) {
            seed_schedule(&stack.moto.endpoint(), table, ahead).await?;
        }
        for (op, rps, burst) in CONNECT_QUOTAS {
            stack.emulator.set_quota(op, rps * self.scale, burst);
        }

        let (bodies, expected) = self.changes();
        stack.sqs.send_bodies(&stack.source.url, &bodies).await?;

        let other = (self.other_rate > 0.0).then(|| {
            OtherCaller::start(
                &stack.emulator.endpoint_url(),
                INSTANCE,
                OTHER_USERS.iter().map(|u| (*u).to_owned()).collect(),
                self.other_rate * self.scale,
            )
        });
        let mut fleet_config = FleetConfig::new(n).limit(self.limit);
        for (slot, nth, after) in &self.kills {
            fleet_config = fleet_config.kill(*slot, *nth, *after);
        }
        let fleet = run_fleet(&stack, &fleet_config).await?;
        let table_faults = proxy.map(|p| p.counts());
        let copy_faults = copy_proxy.map(|p| p.counts());
        let other = match other {
            Some(o) => Some(o.stop().await),
            None => None,
        };
        let mut outcome =
            ScenarioOutcome::read(&stack, self, fleet, other, bodies.len(), &expected).await?;
        outcome.table_faults = table_faults;
        outcome.copy_faults = copy_faults;
        if let Some(table) = &stack.watermark_table {
            outcome.schedule_drops = Dynamo::new(&stack.moto.endpoint())
                .await
                .item(table, "fleet-rate#UpdateUserIdentityInfo")
                .await?
                .and_then(|item| item.get("epoch")?.parse().ok());
        }
        Ok(outcome)
    }
}

/// Writes the fleet's `UpdateUserIdentityInfo` schedule into `table` with its next
/// instant `ahead` of now, in the item format of `outbound/schedules.rs`.
async fn seed_schedule(endpoint: &str, table: &str, ahead: Duration) -> Result<(), HarnessError> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let n = |v: u128| AttributeValue::N(v.to_string());
    Dynamo::new(endpoint)
        .await
        .client()
        .put_item()
        .table_name(table)
        .item(
            "pk",
            AttributeValue::S("fleet-rate#UpdateUserIdentityInfo".to_owned()),
        )
        .item("next_us", n((now + ahead).as_micros()))
        .item("epoch", n(0))
        .item("version", n(1))
        .item("expires_at", n(u128::from(now.as_secs()) + 86_400))
        .send()
        .await
        .map_err(|e| {
            HarnessError::Dynamo(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
        })?;
    Ok(())
}

/// What a scenario run left.
#[derive(Debug)]
pub struct ScenarioOutcome {
    /// The fleet's report.
    pub fleet: FleetReport,
    /// The other caller's own counts.
    pub other: Option<OtherCallerCounts>,
    /// Messages sent (changes and their duplicates).
    pub messages: usize,
    /// Distinct changes.
    pub changes: usize,
    /// Per user and field not at its newest value: `user field: want …, have …`.
    pub stale_fields: Vec<String>,
    /// Fields checked.
    pub fields: usize,
    /// Per failure class, the messages in its dead-letter queue (classes holding some).
    pub dead_letters: BTreeMap<String, Vec<Message>>,
    /// The source queue's own redrive target (the catch-all).
    pub catch_all: Vec<Message>,
    /// Messages left on the source queue, visible or in flight.
    pub source_depth: u64,
    /// The containers' calls per operation (every container process together).
    pub function_calls: BTreeMap<String, CallCounts>,
    /// The other caller's calls as the emulator counted them.
    pub other_calls: CallCounts,
    /// `UpdateUserIdentityInfo` calls of the containers that Connect applied.
    pub updates_applied: u64,
    /// From the first container call that Connect answered to the last applied update.
    pub update_window: Duration,
    /// The quota of `UpdateUserIdentityInfo` (requests/s, scaled) and the other caller's
    /// rate (scaled).
    pub update_quota: f64,
    pub other_rate: f64,
    /// What the table's fault proxy saw, when the scenario put one in front of it.
    pub table_faults: Option<TableFaultCounts>,
    /// What the SQS fault proxy saw (the copies of deferred records), when the scenario
    /// put one in front of SQS.
    pub copy_faults: Option<TableFaultCounts>,
    /// The drops of the fleet's update rate (the schedule's `epoch` at the end).
    pub schedule_drops: Option<u64>,
}

impl ScenarioOutcome {
    async fn read(
        stack: &Stack,
        scenario: &Scenario,
        fleet: FleetReport,
        other: Option<OtherCallerCounts>,
        messages: usize,
        expected: &BTreeMap<String, BTreeMap<String, Value>>,
    ) -> Result<Self, HarnessError> {
        let mut stale_fields = Vec::new();
        let mut fields = 0;
        for (user, latest) in expected {
            let now = fixtures::identity(stack, user);
            for (field, value) in latest {
                fields += 1;
                if &now[field] != value {
                    stale_fields.push(format!("{user} {field}: want {value}, have {}", now[field]));
                }
            }
        }
        let dead_letters = stack
            .dead_letters()
            .await?
            .into_iter()
            .filter(|(_, m)| !m.is_empty())
            .collect();
        let catch_all = stack.sqs.receive_all(&stack.source_dlq.url).await?;
        let source_depth = stack.sqs.total_depth(&stack.source.url).await?;

        let journal = stack.emulator.journal();
        let is_fleet = |c: &Option<String>| {
            c.as_deref()
                .is_some_and(|k| k.starts_with(crate::fleet::FLEET_KEY_PREFIX))
        };
        // `FLEET_TIMELINE=FILE`: every update call as `ms caller outcome`, to see when
        // the throttles came.
        if let Some(path) = std::env::var_os("FLEET_TIMELINE") {
            let start = journal.iter().map(|e| e.at).min().unwrap_or(0);
            let lines: String = journal
                .iter()
                .filter(|e| e.operation == Operation::UpdateUserIdentityInfo.as_str())
                .map(|e| {
                    format!(
                        "{} {} {}\n",
                        e.at - start,
                        if is_fleet(&e.caller) {
                            "fleet"
                        } else {
                            "other"
                        },
                        e.error_type.as_deref().unwrap_or("ok")
                    )
                })
                .collect();
            let _ = std::fs::write(&path, lines);
            let mut logs = std::path::PathBuf::from(&path);
            logs.set_extension("logs");
            let _ = std::fs::write(logs, fleet.logs());
        }
        let mut function_calls: BTreeMap<String, CallCounts> = BTreeMap::new();
        let mut first = None;
        let mut last = None;
        let mut updates_applied = 0;
        for e in journal.iter().filter(|e| is_fleet(&e.caller)) {
            let counts = function_calls.entry(e.operation.clone()).or_default();
            counts.calls += 1;
            let throttled = e.error_type.as_deref() == Some("ThrottlingException");
            counts.throttled += u64::from(throttled);
            if e.error_type.is_none() && e.status / 100 == 2 {
                first = Some(first.map_or(e.at, |f: u64| f.min(e.at)));
                if e.operation == Operation::UpdateUserIdentityInfo.as_str() {
                    updates_applied += 1;
                    let done = e.finished_at.unwrap_or(e.at);
                    last = Some(last.map_or(done, |l: u64| l.max(done)));
                }
            }
        }
        let update_window = match (first, last) {
            (Some(f), Some(l)) if l > f => Duration::from_millis(l - f),
            _ => Duration::ZERO,
        };
        let other_calls = stack
            .emulator
            .counts(Operation::UpdateUserIdentityInfo, Some(OTHER_CALLER_KEY));
        Ok(Self {
            fleet,
            other,
            messages,
            changes: scenario.users * scenario.changes_per_user,
            stale_fields,
            fields,
            dead_letters,
            catch_all,
            source_depth,
            function_calls,
            other_calls,
            updates_applied,
            update_window,
            update_quota: scenario.quota(Operation::UpdateUserIdentityInfo),
            other_rate: scenario.other_rate * scenario.scale,
            table_faults: None,
            copy_faults: None,
            schedule_drops: None,
        })
    }

    /// Good changes dead-lettered: every message in a class queue or the catch-all (every
    /// change the scenario sends is good).
    #[must_use]
    pub fn dead_lettered(&self) -> usize {
        self.dead_letters.values().map(Vec::len).sum::<usize>() + self.catch_all.len()
    }

    /// The containers' calls of every operation together.
    #[must_use]
    pub fn function_total(&self) -> CallCounts {
        self.function_calls
            .values()
            .fold(CallCounts::default(), |a, c| CallCounts {
                calls: a.calls + c.calls,
                throttled: a.throttled + c.throttled,
            })
    }

    /// The `UpdateUserIdentityInfo` rate left free by the other caller (scaled).
    #[must_use]
    pub fn free_rate(&self) -> f64 {
        (self.update_quota - self.other_rate).max(0.0)
    }

    /// Updates applied per second over the free rate, in the window the containers worked.
    #[must_use]
    pub fn quota_use(&self) -> f64 {
        let secs = self.update_window.as_secs_f64();
        if secs <= 0.0 || self.free_rate() <= 0.0 {
            return 0.0;
        }
        self.updates_applied as f64 / secs / self.free_rate()
    }

    /// Deferred records the containers queued again as fresh copies (and acknowledged),
    /// from their log lines.
    #[must_use]
    pub fn requeued(&self) -> u64 {
        self.fleet
            .logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|v| v["fields"]["requeued"] == serde_json::Value::Bool(true))
            .count() as u64
    }

    /// Receives per message sent: every delivery, of the messages sent and of the copies
    /// the containers queued again.
    #[must_use]
    pub fn receives_per_message(&self) -> f64 {
        self.fleet.deliveries() as f64 / self.messages.max(1) as f64
    }

    /// `DescribeUser` calls per update applied.
    #[must_use]
    pub fn reads_per_update(&self) -> f64 {
        let reads = self
            .function_calls
            .get(Operation::DescribeUser.as_str())
            .map_or(0, |c| c.calls);
        reads as f64 / self.updates_applied.max(1) as f64
    }

    /// Writes to the fleet's shared update schedule, summed from the containers' logs
    /// (each invocation logs its `schedule_requests`; a killed invocation's are lost).
    pub fn schedule_writes(&self) -> u64 {
        self.fleet
            .logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|v| v["fields"]["schedule_requests"].as_u64())
            .sum()
    }

    /// A one-paragraph account of the run, for test output and the bench's notes.
    #[must_use]
    pub fn summary(&self) -> String {
        let f = self.function_total();
        let per_op: Vec<String> = self
            .function_calls
            .iter()
            .map(|(op, c)| format!("{op} {}/{}", c.throttled, c.calls))
            .collect();
        format!(
            "{} changes in {} messages, {} containers' processes, {} killed; {} invocations, \
             {} deliveries ({:.2} receives a message), {} handed back, {} queued again; drained {} in {:.1} s; containers' calls throttled \
             {}/{} ({:.1} %: {}); other caller throttled {}/{} ({:.1} %); {} updates applied in \
             {:.1} s = {:.2}/s of {:.2}/s free (quota use {:.2}); {:.2} DescribeUser an update; {} fields not at their newest \
             value of {}; {} good changes dead-lettered ({} in the catch-all); {} left on the \
             source queue; {} writes to the fleet's update schedule ({:.2} an update call); \
             slowest reply {:.2} s; table faults {:?}; copy faults {:?}; fleet rate drops {:?}",
            self.changes,
            self.messages,
            self.fleet.callers().len(),
            self.fleet.kills(),
            self.fleet.batches().count(),
            self.fleet.deliveries(),
            self.receives_per_message(),
            self.fleet.handed_back(),
            self.requeued(),
            self.fleet.drained,
            self.fleet.elapsed.as_secs_f64(),
            f.throttled,
            f.calls,
            100.0 * f.throttled_share(),
            per_op.join(", "),
            self.other_calls.throttled,
            self.other_calls.calls,
            100.0 * self.other_calls.throttled_share(),
            self.updates_applied,
            self.update_window.as_secs_f64(),
            self.updates_applied as f64 / self.update_window.as_secs_f64().max(1e-9),
            self.free_rate(),
            self.quota_use(),
            self.reads_per_update(),
            self.stale_fields.len(),
            self.fields,
            self.dead_lettered(),
            self.catch_all.len(),
            self.source_depth,
            self.schedule_writes(),
            self.schedule_writes() as f64
                / self
                    .function_calls
                    .get(Operation::UpdateUserIdentityInfo.as_str())
                    .map_or(1.0, |c| c.calls.max(1) as f64),
            self.fleet.slowest_reply().as_secs_f64(),
            self.table_faults,
            self.copy_faults,
            self.schedule_drops,
        )
    }
}

/// xorshift shuffle: the same order for the same seed.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}
