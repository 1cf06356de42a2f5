//! A contact centre to test against and the events that reach the function: the
//! emulator seed, the function configuration that goes with it, EventBridge
//! envelopes and Lambda SQS events built by hand (for invocations that bypass a
//! queue), checks on dead-letter messages, and what end-to-end tests read back from a
//! running stack (the reply, an identity, journalled calls, JSON log lines).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use connect_emulator::Operation;

use crate::runtime_api::Invocation;
use crate::sqs::{Message, REGION};
use crate::stack::{Stack, StackConfig};

/// `CONNECT_MANAGED` instance: the default and allowed one.
pub const INSTANCE: &str = "11111111-2222-3333-4444-555555555555";
/// `SAML` instance, allowed.
pub const SAML_INSTANCE: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
/// `EXISTING_DIRECTORY` instance, allowed.
pub const DIRECTORY_INSTANCE: &str = "dddddddd-1111-2222-3333-444444444444";
/// An instance that exists in the emulator but is not allowed.
pub const FOREIGN_INSTANCE: &str = "99999999-8888-7777-6666-555555555555";
/// The account of every ARN.
pub const ACCOUNT: &str = "123456789012";
/// The EventBridge `source` the function trusts.
pub const TRUSTED_SOURCE: &str = "com.example.idp";
/// The allowed email domain.
pub const ALLOWED_DOMAIN: &str = "example.com";
/// The protected security profile.
pub const PROTECTED_PROFILE: &str = "sp-admin";

/// `arn:aws:connect:us-east-1:123456789012:instance/{instance}/agent/{user}`.
#[must_use]
pub fn user_arn(instance: &str, user: &str) -> String {
    format!("arn:aws:connect:{REGION}:{ACCOUNT}:instance/{instance}/agent/{user}")
}

/// `arn:aws:connect:us-east-1:123456789012:instance/{instance}`.
#[must_use]
pub fn instance_arn(instance: &str) -> String {
    format!("arn:aws:connect:{REGION}:{ACCOUNT}:instance/{instance}")
}

/// The test contact centre: four instances (one of each identity mode plus one not
/// allowed) and named users; `extra` more plain users `u-0001`… in [`INSTANCE`]
/// (username `agent0001`, name `Agent 0001`, email `agent0001@example.com`).
#[must_use]
pub fn seed(extra: usize) -> Value {
    let mut users = vec![
        json!({"instanceId": INSTANCE, "id": "u-jdoe", "username": "jdoe",
               "identityInfo": {"FirstName": "Jane", "LastName": "Doe",
                                "Email": "jane.doe@example.com", "SecondaryEmail": "jd@example.com",
                                "Mobile": "+14155550123"},
               "securityProfileIds": ["sp-agent"]}),
        json!({"instanceId": INSTANCE, "id": "u-asmith", "username": "asmith",
               "identityInfo": {"FirstName": "Alex", "LastName": "Smith",
                                "Email": "alex.smith@example.com", "Mobile": "+14155550124"},
               "securityProfileIds": ["sp-agent"]}),
        json!({"instanceId": INSTANCE, "id": "u-bking", "username": "bking",
               "identityInfo": {"FirstName": "Bea", "LastName": "King",
                                "Email": "bea.king@example.com", "Mobile": "+14155550125"},
               "securityProfileIds": ["sp-agent"]}),
        json!({"instanceId": INSTANCE, "id": "u-cwu", "username": "cwu",
               "identityInfo": {"FirstName": "Chen", "LastName": "Wu",
                                "Email": "chen.wu@example.com"},
               "securityProfileIds": ["sp-agent"]}),
        json!({"instanceId": INSTANCE, "id": "u-dlee", "username": "dlee",
               "identityInfo": {"FirstName": "Dana", "LastName": "Lee",
                                "Email": "dana.lee@example.com"},
               "securityProfileIds": ["sp-agent"]}),
        json!({"instanceId": INSTANCE, "id": "u-protected", "username": "padmin",
               "identityInfo": {"FirstName": "Priya", "LastName": "Natarajan",
                                "Email": "priya.natarajan@example.com"},
               "securityProfileIds": [PROTECTED_PROFILE]}),
        json!({"instanceId": SAML_INSTANCE, "id": "u-saml", "username": "lchen",
               "identityInfo": {"FirstName": "Li", "LastName": "Chen",
                                "Email": "li.chen@example.com"},
               "securityProfileIds": ["sp-agent"]}),
        json!({"instanceId": DIRECTORY_INSTANCE, "id": "u-dir", "username": "dirk",
               "identityInfo": {"FirstName": "Dirk", "LastName": "Berg",
                                "Email": "dirk.berg@example.com"},
               "securityProfileIds": ["sp-agent"]}),
        json!({"instanceId": FOREIGN_INSTANCE, "id": "u-foreign", "username": "fmeyer",
               "identityInfo": {"FirstName": "Fritz", "LastName": "Meyer",
                                "Email": "fritz.meyer@example.com"},
               "securityProfileIds": ["sp-agent"]}),
    ];
    for n in 1..=extra {
        users.push(json!({
            "instanceId": INSTANCE,
            "id": format!("u-{n:04}"),
            "username": format!("agent{n:04}"),
            "identityInfo": {"FirstName": "Agent", "LastName": format!("{n:04}"),
                             "Email": format!("agent{n:04}@example.com")},
            "securityProfileIds": ["sp-agent"],
        }));
    }
    json!({
        "instances": [
            {"id": INSTANCE, "identityManagementType": "CONNECT_MANAGED", "alias": "support"},
            {"id": SAML_INSTANCE, "identityManagementType": "SAML", "alias": "sales"},
            {"id": DIRECTORY_INSTANCE, "identityManagementType": "EXISTING_DIRECTORY", "alias": "backoffice"},
            {"id": FOREIGN_INSTANCE, "identityManagementType": "CONNECT_MANAGED", "alias": "elsewhere"},
        ],
        "users": users,
    })
}

/// A stack around `binary` with [`seed`]`(extra)` and the matching configuration:
/// default instance [`INSTANCE`], allowed [`INSTANCE`], [`SAML_INSTANCE`] and
/// [`DIRECTORY_INSTANCE`], email domain [`ALLOWED_DOMAIN`], protected profile
/// [`PROTECTED_PROFILE`], trusted source [`TRUSTED_SOURCE`], phone region `US`,
/// `MAX_RECEIVE_COUNT=3`, per-container rates high enough for tests.
pub fn stack(binary: impl Into<PathBuf>, extra: usize) -> StackConfig {
    StackConfig::new(binary)
        .seed(seed(extra))
        .env("DEFAULT_INSTANCE_ID", INSTANCE)
        .env(
            "ALLOWED_INSTANCE_IDS",
            format!("{INSTANCE},{SAML_INSTANCE},{DIRECTORY_INSTANCE}"),
        )
        .env("EMAIL_DOMAIN_ALLOWLIST", ALLOWED_DOMAIN)
        .env("PROTECTED_SECURITY_PROFILE_IDS", PROTECTED_PROFILE)
        .env("TRUSTED_SOURCES", TRUSTED_SOURCE)
        .env("DEFAULT_PHONE_REGION", "US")
        .env("MAX_RECEIVE_COUNT", "3")
        .env("CONNECT_RPS_UPDATE", "50")
        .env("CONNECT_RPS_DESCRIBE", "100")
        .env("CONNECT_RPS_SEARCH", "50")
}

/// An EventBridge event from [`TRUSTED_SOURCE`] with `detail`.
#[must_use]
pub fn eventbridge(id: &str, detail: &Value) -> Value {
    eventbridge_from(id, TRUSTED_SOURCE, detail)
}

/// An EventBridge event from `source` with `detail`.
#[must_use]
pub fn eventbridge_from(id: &str, source: &str, detail: &Value) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": "User Identity Changed",
        "source": source,
        "account": ACCOUNT,
        "time": "2026-03-01T12:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": detail,
    })
}

/// A canonical change document.
#[must_use]
pub fn change(instance: &str, user: &str, identity: &Value) -> Value {
    json!({"InstanceId": instance, "UserId": user, "IdentityInfo": identity})
}

/// One record of a hand-built SQS event.
#[derive(Clone, Debug)]
pub struct Record {
    /// `messageId`.
    pub message_id: String,
    /// `body`, as it would sit in the queue.
    pub body: String,
    /// `ApproximateReceiveCount`.
    pub receive_count: u32,
    /// `MessageGroupId` (FIFO).
    pub group_id: Option<String>,
    /// `SentTimestamp` (ms).
    pub sent_ms: u128,
}

impl Record {
    /// A record with `body`, received once.
    pub fn new(message_id: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            message_id: message_id.into(),
            body: body.into(),
            receive_count: 1,
            group_id: None,
            sent_ms: now_ms(),
        }
    }

    /// A record with a JSON body.
    pub fn json(message_id: impl Into<String>, body: &Value) -> Self {
        Self::new(message_id, body.to_string())
    }

    /// Received `count` times.
    #[must_use]
    pub fn received(mut self, count: u32) -> Self {
        self.receive_count = count;
        self
    }

    /// In FIFO group `group`.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A Lambda SQS event of `records` from the queue `queue_arn`, as Lambda builds it.
#[must_use]
pub fn sqs_event(queue_arn: &str, records: &[Record]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut attributes = json!({
                "ApproximateReceiveCount": r.receive_count.to_string(),
                "SentTimestamp": r.sent_ms.to_string(),
                "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                "ApproximateFirstReceiveTimestamp": (r.sent_ms + 5).to_string(),
            });
            if let Some(group) = &r.group_id {
                attributes["MessageGroupId"] = json!(group);
                attributes["SequenceNumber"] = json!(format!(
                    "{:020}",
                    18_849_496_460_467_696_128_u128 + i as u128
                ));
                attributes["MessageDeduplicationId"] = json!(r.message_id);
            }
            json!({
                "messageId": r.message_id,
                "receiptHandle": format!("AQEB{}{}", r.message_id, r.receive_count),
                "body": r.body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": format!("{:x}", md5::compute(r.body.as_bytes())),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The `itemIdentifier`s of an SQS reply's `batchItemFailures`.
///
/// # Panics
/// When the reply is not a batch response.
#[must_use]
pub fn batch_item_failures(reply: &Value) -> Vec<String> {
    let items = reply
        .get("batchItemFailures")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("not an SQS batch response: {reply}"));
    items
        .iter()
        .map(|i| {
            i.get("itemIdentifier")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("batch item without itemIdentifier: {reply}"))
                .to_owned()
        })
        .collect()
}

/// What a dead-letter message must carry (SPEC §3.1); `None` fields are not checked.
#[derive(Clone, Debug, Default)]
pub struct Expected<'a> {
    /// `ErrorClass`.
    pub class: &'a str,
    /// `SourceType`: `sqs` or `eventbridge`.
    pub source_type: &'a str,
    /// `SourceId`.
    pub source_id: &'a str,
    /// `EventId`, when it must be present.
    pub event_id: Option<&'a str>,
    /// `InstanceId`, when it must be present.
    pub instance_id: Option<&'a str>,
    /// `UserId`, when it must be present.
    pub user_id: Option<&'a str>,
    /// `Attempts`, when it must have this value.
    pub attempts: Option<u32>,
    /// Texts that must not appear in `ErrorMessage` (personal data of the change).
    pub secrets: &'a [&'a str],
}

/// Checks a dead-letter message's attributes against SPEC §3.1; returns the
/// problems found (empty when it conforms).
#[must_use]
pub fn dead_letter_problems(message: &Message, expected: &Expected<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut string_attr =
        |name: &str, want: Option<&str>| match (message.attr(name), message.attr_type(name)) {
            (Some(value), Some("String")) => {
                if let Some(want) = want.filter(|w| *w != value) {
                    problems.push(format!("{name} is {value:?}, expected {want:?}"));
                }
            }
            (Some(_), other) => {
                problems.push(format!("{name} has data type {other:?}, expected String"))
            }
            (None, _) => problems.push(format!("{name} is missing")),
        };
    string_attr("ErrorClass", Some(expected.class));
    string_attr("SourceType", Some(expected.source_type));
    string_attr("SourceId", Some(expected.source_id));
    string_attr("ErrorMessage", None);
    string_attr("FailedAt", None);
    if let Some(v) = expected.event_id {
        string_attr("EventId", Some(v));
    }
    if let Some(v) = expected.instance_id {
        string_attr("InstanceId", Some(v));
    }
    if let Some(v) = expected.user_id {
        string_attr("UserId", Some(v));
    }
    if let Some(msg) = message.attr("ErrorMessage") {
        if msg.is_empty() || msg.len() > 1024 {
            problems.push(format!("ErrorMessage is {} bytes", msg.len()));
        }
        for secret in expected.secrets {
            if msg.contains(secret) {
                problems.push(format!(
                    "ErrorMessage contains personal data {secret:?}: {msg}"
                ));
            }
        }
    }
    if let Some(at) = message
        .attr("FailedAt")
        .filter(|at| !looks_like_rfc3339(at))
    {
        problems.push(format!("FailedAt {at:?} is not RFC 3339"));
    }
    match (message.attr("Attempts"), message.attr_type("Attempts")) {
        (Some(v), Some(t)) if t == "Number" || t.starts_with("Number.") => match v.parse::<u32>() {
            Ok(n) => {
                if let Some(want) = expected.attempts.filter(|w| *w != n) {
                    problems.push(format!("Attempts is {n}, expected {want}"));
                }
                if n == 0 {
                    problems.push("Attempts is 0".to_owned());
                }
            }
            Err(_) => problems.push(format!("Attempts {v:?} is not a whole number")),
        },
        (Some(_), t) => problems.push(format!("Attempts has data type {t:?}, expected Number")),
        (None, _) => problems.push("Attempts is missing".to_owned()),
    }
    problems
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`.
#[must_use]
pub fn looks_like_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let head = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !head {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z"
        || rest == "z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':')
}

/// The stack `config` describes, started.
///
/// # Panics
/// When it does not start.
pub async fn start(config: StackConfig) -> Stack {
    config.start().await.expect("stack starts")
}

/// The function's reply to an invocation that succeeded.
///
/// # Panics
/// When the invocation failed, with the function's logs (so a call whose reply is
/// not read still checks that it succeeded).
pub fn response(reply: Invocation, stack: &Stack) -> Value {
    match reply {
        Invocation::Response(v) => v,
        other => panic!(
            "the invocation failed: {other:?}\n{}",
            stack.function.logs()
        ),
    }
}

/// The identity of `user` in [`INSTANCE`] as the emulator holds it now.
///
/// # Panics
/// When the emulator has no such user.
#[must_use]
pub fn identity(stack: &Stack, user: &str) -> Value {
    serde_json::to_value(
        stack
            .emulator
            .user(INSTANCE, user)
            .expect("user")
            .identity_info,
    )
    .expect("an identity is JSON")
}

/// The request bodies of the `operation` calls the emulator journalled for `user`.
#[must_use]
pub fn requests_for(stack: &Stack, operation: Operation, user: &str) -> Vec<Value> {
    stack
        .emulator
        .calls(operation)
        .into_iter()
        .filter(|c| c.user_id.as_deref() == Some(user))
        .map(|c| c.request_body)
        .collect()
}

/// How many `operation` calls the emulator journalled for `user`.
#[must_use]
pub fn calls_for(stack: &Stack, operation: Operation, user: &str) -> usize {
    stack
        .emulator
        .calls(operation)
        .iter()
        .filter(|c| c.user_id.as_deref() == Some(user))
        .count()
}

/// The log lines that are JSON documents, parsed (the others are left out).
#[must_use]
pub fn json_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// The JSON log lines whose `fields.message` is `message`.
#[must_use]
pub fn log_messages(lines: &[String], message: &str) -> Vec<Value> {
    json_lines(lines)
        .into_iter()
        .filter(|v| v["fields"]["message"] == message)
        .collect()
}

/// The CloudWatch embedded-metric-format documents among the log lines.
#[must_use]
pub fn emf_documents(lines: &[String]) -> Vec<Value> {
    json_lines(lines)
        .into_iter()
        .filter(|v| v.get("_aws").is_some())
        .collect()
}

/// Asserts that every dead-letter queue of the stack is empty.
///
/// # Panics
/// When one holds a message (naming its class and what it holds), or SQS fails.
pub async fn assert_no_dead_letters(stack: &Stack) {
    for (class, letters) in stack.dead_letters().await.expect("dead-letter queues read") {
        assert!(letters.is_empty(), "{class} holds {letters:#?}");
    }
}
