//! In-memory ports and payload builders shared by the library-level tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use connect_identity_sync::domain::change::IdentityInfo;
use connect_identity_sync::domain::document::{Admission, DEFAULT_MAX_CLOCK_SKEW};
use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::identity::{InstanceId, UserId};
use connect_identity_sync::domain::instance::{IdentityManagement, UpdatePlan};
use connect_identity_sync::domain::policy::{EmailDomains, Policy};
use connect_identity_sync::domain::ports::{
    CallFailure, DeadLetter, DeadLetterSink, Directory, Reach, Requeue, UserPage, UserRecord,
};
use connect_identity_sync::domain::record::Record;
use connect_identity_sync::inbound::{Invocation, read_invocation};
use connect_identity_sync::pipeline::{Pipeline, RateLimits, Settings};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::time::Instant;

pub const INSTANCE: &str = "11111111-2222-3333-4444-555555555555";

/// A scripted failure: its class and how far the request got.
pub type Fault = (ErrorClass, Reach);

#[derive(Default)]
pub struct FakeConnect {
    pub kind: Mutex<Option<IdentityManagement>>,
    pub users: Mutex<HashMap<String, (String, UserRecord)>>,
    /// Scripted failures, one per call (attempt): (operation, user id) → the class to
    /// fail with and how far the request got, in order.
    pub faults: Mutex<HashMap<(&'static str, String), Vec<Fault>>>,
    pub latency: Mutex<Duration>,
    /// Extra latency of one operation, on top of `latency`.
    pub op_latency: Mutex<HashMap<&'static str, Duration>>,
    /// When each call started: (operation, user id, instant).
    pub starts: Mutex<Vec<(&'static str, String, Instant)>>,
    pub panic_on: Mutex<Option<String>>,
    pub calls: Mutex<Vec<(&'static str, String)>>,
    pub updates: Mutex<Vec<(String, UpdatePlan)>>,
}

impl FakeConnect {
    pub fn with_users(users: &[(&str, &str, IdentityInfo, &[&str])]) -> Self {
        let fake = FakeConnect::default();
        for (id, username, info, profiles) in users {
            fake.users.lock().unwrap().insert(
                (*id).to_owned(),
                (
                    (*username).to_owned(),
                    UserRecord {
                        info: info.clone(),
                        security_profile_ids: profiles.iter().map(|p| (*p).to_owned()).collect(),
                        username: Some((*username).to_owned()),
                    },
                ),
            );
        }
        fake
    }

    /// Fails the next calls of `op` for `user` with `classes`, each answered by Connect.
    pub fn fail(&self, op: &'static str, user: &str, classes: &[ErrorClass]) {
        let answered: Vec<_> = classes.iter().map(|c| (*c, Reach::Answered)).collect();
        self.fail_reaching(op, user, &answered);
    }

    /// Fails the next calls of `op` for `user`, each with its class and reach.
    pub fn fail_reaching(&self, op: &'static str, user: &str, faults: &[(ErrorClass, Reach)]) {
        self.faults
            .lock()
            .unwrap()
            .insert((op, user.to_owned()), faults.to_vec());
    }

    pub fn count(&self, op: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| *o == op)
            .count()
    }

    async fn enter(&self, op: &'static str, user: &str) -> Result<(), CallFailure> {
        self.calls.lock().unwrap().push((op, user.to_owned()));
        self.starts
            .lock()
            .unwrap()
            .push((op, user.to_owned(), Instant::now()));
        let latency = *self.latency.lock().unwrap()
            + self
                .op_latency
                .lock()
                .unwrap()
                .get(op)
                .copied()
                .unwrap_or_default();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if self.panic_on.lock().unwrap().as_deref() == Some(user) {
            panic!("scripted panic");
        }
        let mut faults = self.faults.lock().unwrap();
        if let Some(list) = faults.get_mut(&(op, user.to_owned()))
            && !list.is_empty()
        {
            let (class, reach) = list.remove(0);
            return Err(
                CallFailure::new(class, format!("Connect {op} failed with {class}"))
                    .with_reach(reach),
            );
        }
        Ok(())
    }

    /// When each call of `op` started.
    pub fn starts_of(&self, op: &str) -> Vec<Instant> {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _, _)| *o == op)
            .map(|(_, _, at)| *at)
            .collect()
    }

    pub fn user(&self, id: &str) -> IdentityInfo {
        self.users.lock().unwrap()[id].1.info.clone()
    }
}

impl Directory for &FakeConnect {
    async fn identity_management(
        &self,
        _instance: &InstanceId,
    ) -> Result<IdentityManagement, CallFailure> {
        self.enter("DescribeInstance", "").await?;
        Ok(self
            .kind
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(IdentityManagement::ConnectManaged))
    }

    async fn find_user(
        &self,
        _instance: &InstanceId,
        username: &str,
    ) -> Result<UserId, CallFailure> {
        self.enter("SearchUsers", username).await?;
        let users = self.users.lock().unwrap();
        users
            .iter()
            .find(|(_, (name, _))| name == username)
            .map(|(id, _)| UserId::parse(id).unwrap())
            .ok_or_else(|| CallFailure::new(ErrorClass::ResourceNotFoundException, "no such user"))
    }

    async fn describe_user(
        &self,
        _instance: &InstanceId,
        user: &UserId,
    ) -> Result<UserRecord, CallFailure> {
        self.enter("DescribeUser", user.as_str()).await?;
        self.users
            .lock()
            .unwrap()
            .get(user.as_str())
            .map(|(_, r)| r.clone())
            .ok_or_else(|| CallFailure::new(ErrorClass::ResourceNotFoundException, "no such user"))
    }

    async fn list_users_page(
        &self,
        _instance: &InstanceId,
        next_token: Option<&str>,
    ) -> Result<UserPage, CallFailure> {
        self.enter("ListUsers", next_token.unwrap_or("")).await?;
        let users = self.users.lock().unwrap();
        let mut all: Vec<(String, String)> = users
            .iter()
            .map(|(id, (name, _))| (name.clone(), id.clone()))
            .collect();
        all.sort_by(|a, b| a.1.cmp(&b.1));
        let offset: usize = next_token.map_or(0, |t| t.parse().unwrap());
        let end = (offset + 1000).min(all.len());
        Ok(UserPage {
            users: all[offset..end].to_vec(),
            next_token: (end < all.len()).then(|| end.to_string()),
        })
    }

    async fn update_identity(
        &self,
        _instance: &InstanceId,
        user: &UserId,
        plan: &UpdatePlan,
    ) -> Result<(), CallFailure> {
        self.enter("UpdateUserIdentityInfo", user.as_str()).await?;
        self.updates
            .lock()
            .unwrap()
            .push((user.to_string(), plan.clone()));
        if let Some((_, record)) = self.users.lock().unwrap().get_mut(user.as_str()) {
            let mut info = plan.info.clone();
            if !plan.send_email {
                info.email = record.info.email.clone();
            }
            record.info = info;
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct FakeQueues {
    pub letters: Mutex<Vec<DeadLetter>>,
    pub down: Mutex<bool>,
    /// How long a send takes.
    pub latency: Mutex<Duration>,
    /// Sends started and sends that ran to their end (taken or refused).
    pub started: Mutex<u32>,
    pub finished: Mutex<u32>,
    /// Copies of deferred records queued again.
    pub requeued: Mutex<Vec<Requeue>>,
    /// Copies are refused (dead letters are still taken).
    pub refuse_copies: Mutex<bool>,
}

impl DeadLetterSink for &FakeQueues {
    async fn requeue(&self, copy: &Requeue) -> Result<(), String> {
        if *self.down.lock().unwrap() || *self.refuse_copies.lock().unwrap() {
            return Err("queue unavailable".into());
        }
        self.requeued.lock().unwrap().push(copy.clone());
        Ok(())
    }

    async fn send(&self, letter: &DeadLetter) -> Result<(), String> {
        *self.started.lock().unwrap() += 1;
        let latency = *self.latency.lock().unwrap();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        *self.finished.lock().unwrap() += 1;
        if *self.down.lock().unwrap() {
            return Err("queue unavailable".into());
        }
        self.letters.lock().unwrap().push(letter.clone());
        Ok(())
    }
}

pub fn info(first: &str, last: &str, email: &str) -> IdentityInfo {
    IdentityInfo {
        first_name: Some(first.into()),
        last_name: Some(last.into()),
        email: Some(email.into()),
        secondary_email: None,
        mobile: None,
    }
}

pub fn admission(domains: EmailDomains) -> Admission {
    Admission {
        policy: Policy {
            allowed_instances: [InstanceId::parse(INSTANCE).unwrap()].into(),
            email_domains: domains,
            secondary_email_domains: EmailDomains::Any,
            protected_profiles: ["sp-admin".to_owned()].into(),
            trusted_sources: None,
        },
        default_instance: Some(InstanceId::parse(INSTANCE).unwrap()),
        phone_region: Some("US".parse().unwrap()),
        max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
    }
}

pub fn settings() -> Settings {
    Settings {
        max_receive_count: 3,
        concurrency: 4,
        deadline_margin: Duration::from_millis(100),
        call_budget: Duration::from_millis(200),
    }
}

pub fn pipeline<'a>(
    connect: &'a FakeConnect,
    queues: &'a FakeQueues,
) -> Pipeline<&'a FakeConnect, &'a FakeQueues> {
    pipeline_with(connect, queues, RateLimits::new(1000.0, 1000.0, 1000.0))
}

pub fn pipeline_with<'a>(
    connect: &'a FakeConnect,
    queues: &'a FakeQueues,
    limits: RateLimits,
) -> Pipeline<&'a FakeConnect, &'a FakeQueues> {
    Pipeline::new(
        connect,
        queues,
        admission(EmailDomains::parse(Some("example.com")).unwrap()),
        settings(),
        limits,
    )
}

/// Users u-1, u-2 and u-3 (usernames a, b, c): A One, B Two and C Three.
pub fn three_users() -> FakeConnect {
    FakeConnect::with_users(&[
        ("u-1", "a", info("A", "One", "a@example.com"), &[]),
        ("u-2", "b", info("B", "Two", "b@example.com"), &[]),
        ("u-3", "c", info("C", "Three", "c@example.com"), &[]),
    ])
}

/// `pipeline_with`, its users one at a time (`MAX_CONCURRENT_USERS` 1).
pub fn pipeline_in_one_lane<'a>(
    connect: &'a FakeConnect,
    queues: &'a FakeQueues,
    limits: RateLimits,
) -> Pipeline<&'a FakeConnect, &'a FakeQueues> {
    let mut s = settings();
    s.concurrency = 1;
    Pipeline::new(
        connect,
        queues,
        admission(EmailDomains::parse(Some("example.com")).unwrap()),
        s,
        limits,
    )
}

pub fn sqs_record(id: &str, body: &Value, receive_count: u32, group: Option<&str>) -> Value {
    let mut attributes = json!({"ApproximateReceiveCount": receive_count.to_string(), "SentTimestamp": "1764403200000"});
    if let Some(g) = group {
        attributes["MessageGroupId"] = json!(g);
    }
    let queue = if group.is_some() {
        "changes.fifo"
    } else {
        "changes"
    };
    json!({
        "messageId": id, "receiptHandle": "rh", "body": body.to_string(), "attributes": attributes,
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{queue}"), "awsRegion": "us-east-1"
    })
}

pub fn change(user: &str, fields: Value, at: &str) -> Value {
    json!({"UserId": user, "IdentityInfo": fields, "OccurredAt": at})
}

/// A payload as the runtime hands it over: its JSON text.
pub fn raw(payload: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(payload).expect("JSON")
}

pub fn records(payload: &Value) -> (Vec<Record>, bool) {
    match read_invocation(&raw(payload)).unwrap() {
        Invocation::Sqs { records, fifo } => (records, fifo),
        Invocation::EventBridge(r) => (vec![*r], false),
    }
}

/// Connect with one user, `u-1` (username `a`), no protected profile.
pub fn one_user() -> FakeConnect {
    FakeConnect::with_users(&[("u-1", "a", info("A", "One", "a@example.com"), &[])])
}

/// Connect with `n` users, `u-1` to `u-n`, named `{prefix}1` to `{prefix}n`, each holding
/// `identity`, none with a protected profile.
pub fn numbered_users(n: usize, prefix: &str, identity: &IdentityInfo) -> FakeConnect {
    let users: Vec<(String, String)> = (1..=n)
        .map(|i| (format!("u-{i}"), format!("{prefix}{i}")))
        .collect();
    let rows: Vec<(&str, &str, IdentityInfo, &[&str])> = users
        .iter()
        .map(|(id, name)| (id.as_str(), name.as_str(), identity.clone(), &[][..]))
        .collect();
    FakeConnect::with_users(&rows)
}

/// A batch of one first-delivery SQS record per user (`m-0`, `m-1`, …), each changing
/// what `fields` gives for its place, all at the same instant.
pub fn one_change_each(users: &[&str], fields: impl Fn(usize) -> Value) -> (Vec<Record>, bool) {
    let recs: Vec<Value> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            sqs_record(
                &format!("m-{i}"),
                &change(u, fields(i), "2026-03-01T10:00:00Z"),
                1,
                None,
            )
        })
        .collect();
    records(&json!({ "Records": recs }))
}

/// A batch of one SQS record.
pub fn one_record(
    id: &str,
    body: &Value,
    receive_count: u32,
    group: Option<&str>,
) -> (Vec<Record>, bool) {
    records(&json!({ "Records": [sqs_record(id, body, receive_count, group)] }))
}

pub fn in_seconds(s: u64) -> Instant {
    Instant::now() + Duration::from_secs(s)
}
