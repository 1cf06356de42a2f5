//! The bench's local world: the Connect emulator (in process), moto as SQS with one
//! dead-letter queue, the function's configuration, and the events it is fed.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use connect_emulator::{Emulator, EmulatorHandle, JournalEntry, Operation, Seed};
use harness::{FunctionConfig, Moto, Queue, QueueSpec, Sqs};
use serde_json::{Value, json};

/// The one (allowed, default) instance, `CONNECT_MANAGED`.
pub const INSTANCE: &str = "11111111-2222-3333-4444-555555555555";
/// The EventBridge `source` every event carries.
pub const SOURCE: &str = "com.example.idp";
/// The queue ARN the SQS events claim to come from.
pub const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:identity-changes";
/// Users seeded: `u-0001` … (username `agent0001`, name `Agent 0001`).
pub const USERS: usize = 1200;

/// Per-invocation function timeout (the deadline the Runtime API hands out).
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Lab {
    pub moto: Moto,
    pub sqs: Sqs,
    pub dlq: Queue,
    pub emulator: EmulatorHandle,
}

impl Lab {
    /// Starts moto (with one dead-letter queue for every class) and the emulator,
    /// seeded with [`USERS`] users.
    pub async fn start() -> Result<Self, String> {
        let moto = Moto::start().await.map_err(|e| e.to_string())?;
        let sqs = moto.sqs().await;
        let dlq = sqs
            .create_queue(&QueueSpec::new("bench-dead-letters"))
            .await
            .map_err(|e| e.to_string())?;
        let seed: Seed = serde_json::from_value(seed()).map_err(|e| e.to_string())?;
        let emulator = Emulator::builder()
            .seed(seed)
            .start("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            moto,
            sqs,
            dlq,
            emulator,
        })
    }

    /// The function's configuration (SPEC §3/§5/§6) plus `extra`. No `SSL_CERT_FILE`, as
    /// `template.yaml` sets none: the HTTPS client trusts its compiled-in roots and reads
    /// no CA bundle at start-up.
    pub fn config(&self, binary: &Path, extra: &[(&str, &str)]) -> FunctionConfig {
        let mut config = FunctionConfig::new(binary)
            .env("DEFAULT_INSTANCE_ID", INSTANCE)
            .env("ALLOWED_INSTANCE_IDS", INSTANCE)
            .env("EMAIL_DOMAIN_ALLOWLIST", "example.com")
            .env("TRUSTED_SOURCES", SOURCE)
            .env("DEFAULT_PHONE_REGION", "US")
            .env("MAX_RECEIVE_COUNT", "3")
            .env("DLQ_URL", &self.dlq.url)
            .echo_logs(false);
        for (k, v) in extra {
            config = config.env(*k, *v);
        }
        config
    }

    pub fn connect_endpoint(&self) -> String {
        self.emulator.endpoint_url()
    }

    pub fn sqs_endpoint(&self) -> String {
        self.moto.endpoint()
    }

    /// Takes every message off the dead-letter queue and returns their `ErrorClass`es.
    pub async fn drain_dead_letters(&self) -> Result<Vec<String>, String> {
        let messages = self
            .sqs
            .drain(&self.dlq.url)
            .await
            .map_err(|e| e.to_string())?;
        Ok(messages
            .iter()
            .map(|m| m.attr("ErrorClass").unwrap_or("?").to_owned())
            .collect())
    }

    /// Back to the seed, journal and quotas cleared.
    pub fn reset(&self) {
        self.emulator.reset();
    }

    pub fn calls(&self, operation: Operation) -> Vec<JournalEntry> {
        self.emulator.calls(operation)
    }
}

pub fn user_id(n: usize) -> String {
    format!("u-{n:04}")
}

pub fn username(n: usize) -> String {
    format!("agent{n:04}")
}

fn seed() -> Value {
    let users: Vec<Value> = (1..=USERS)
        .map(|n| {
            json!({
                "instanceId": INSTANCE,
                "id": user_id(n),
                "username": username(n),
                "identityInfo": {"FirstName": "Agent", "LastName": format!("{n:04}"),
                                 "Email": format!("{}@example.com", username(n))},
                "securityProfileIds": ["sp-agent"],
            })
        })
        .collect();
    json!({
        "instances": [{"id": INSTANCE, "identityManagementType": "CONNECT_MANAGED", "alias": "bench"}],
        "users": users,
    })
}

/// An EventBridge event from [`SOURCE`] carrying `detail`.
pub fn eventbridge(id: &str, detail: Value) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": "Identity User Updated",
        "source": SOURCE,
        "account": "123456789012",
        "time": "2026-11-29T09:15:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    })
}

/// A canonical change document for user `n`.
pub fn canonical(n: usize, identity: Value) -> Value {
    json!({"InstanceId": INSTANCE, "UserId": user_id(n), "IdentityInfo": identity})
}

/// A SCIM 2.0 User resource for user `n` (found by `userName`), with a mobile number
/// when `mobile` is given.
pub fn scim(n: usize, given: &str, family: &str, mobile: Option<&str>) -> Value {
    let mut user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": format!("scim-{n:04}"),
        "userName": username(n),
        "name": {"givenName": given, "familyName": family},
        "emails": [{"value": format!("{}@example.com", username(n)), "type": "work", "primary": true}],
        "active": true,
    });
    if let Some(mobile) = mobile {
        user["phoneNumbers"] = json!([{"value": mobile, "type": "mobile"}]);
    }
    user
}

/// One SQS record as Lambda hands it over.
pub struct SqsRecord {
    pub message_id: String,
    pub body: String,
    pub receive_count: u32,
}

impl SqsRecord {
    pub fn new(message_id: impl Into<String>, body: &Value) -> Self {
        Self {
            message_id: message_id.into(),
            body: body.to_string(),
            receive_count: 1,
        }
    }
}

/// A Lambda SQS event from [`QUEUE_ARN`].
pub fn sqs_event(records: &[SqsRecord]) -> Value {
    let sent = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "messageId": r.message_id,
                "receiptHandle": format!("AQEB{}-{}", r.message_id, r.receive_count),
                "body": r.body,
                "attributes": {
                    "ApproximateReceiveCount": r.receive_count.to_string(),
                    "SentTimestamp": sent.to_string(),
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": (sent + 5).to_string(),
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": QUEUE_ARN,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The `itemIdentifier`s of an SQS reply, or `None` when the reply is not a batch response.
pub fn batch_item_failures(reply: &Value) -> Option<usize> {
    reply
        .get("batchItemFailures")
        .and_then(Value::as_array)
        .map(Vec::len)
}

pub use harness::TlsFront;
