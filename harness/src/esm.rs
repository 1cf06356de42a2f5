//! A poller that behaves as Lambda's SQS event source mapping with
//! `ReportBatchItemFailures`: it receives up to ten messages, builds the SQS event
//! exactly as Lambda does, invokes the function through the Runtime API, deletes
//! what succeeded and leaves the rest to reappear after the visibility timeout.
//! The queue's own redrive policy moves a message to its dead-letter queue after
//! `maxReceiveCount` receives, as in SQS.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::HarnessError;
use crate::runtime_api::{Invocation, RuntimeApi};
use crate::sqs::{Message, Queue, REGION, Sqs};

/// System attributes Lambda passes on in a record's `attributes`.
const SYSTEM_ATTRIBUTES: &[&str] = &[
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
];

/// Builds the Lambda SQS event for `messages` received from `queue_arn`.
#[must_use]
pub fn sqs_event(queue_arn: &str, messages: &[Message]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: Map<String, Value> = m
                .attributes
                .iter()
                .filter(|(k, _)| SYSTEM_ATTRIBUTES.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let message_attributes: Map<String, Value> = m
                .message_attributes
                .iter()
                .map(|(k, a)| {
                    let mut v = json!({
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": a.data_type,
                    });
                    if let Some(s) = &a.string_value {
                        v["stringValue"] = Value::String(s.clone());
                    }
                    if let Some(b) = &a.binary_value {
                        v["binaryValue"] =
                            Value::String(base64::engine::general_purpose::STANDARD.encode(b));
                    }
                    (k.clone(), v)
                })
                .collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// What became of one batch.
#[derive(Clone, Debug)]
pub enum BatchOutcome {
    /// The function replied; these message ids were reported as failures.
    Reply {
        /// `itemIdentifier`s of `batchItemFailures`.
        failures: Vec<String>,
    },
    /// The function replied with something Lambda reads as a failure of the whole
    /// batch (an empty, unknown or missing `itemIdentifier`, a reply that is not a
    /// batch response).
    InvalidReply(Value),
    /// The invocation failed (`POST …/error`): the whole batch is retried.
    FunctionError {
        /// `errorType`.
        error_type: String,
        /// `errorMessage`.
        error_message: String,
    },
    /// No reply: the process died or timed out. The whole batch is retried.
    NoReply(String),
}

/// One invocation of the mapping.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The event sent.
    pub event: Value,
    /// The messages in it.
    pub messages: Vec<Message>,
    /// What the function said.
    pub outcome: BatchOutcome,
    /// Message ids deleted afterwards.
    pub deleted: Vec<String>,
    /// How long the invocation took.
    pub elapsed: Duration,
}

impl Batch {
    /// Message ids left on the queue to be delivered again.
    #[must_use]
    pub fn handed_back(&self) -> Vec<String> {
        let deleted: BTreeSet<&String> = self.deleted.iter().collect();
        self.messages
            .iter()
            .map(|m| &m.message_id)
            .filter(|id| !deleted.contains(id))
            .cloned()
            .collect()
    }
}

/// Everything a run of the mapping did.
#[derive(Clone, Debug, Default)]
pub struct MappingReport {
    /// Each invocation, in order.
    pub batches: Vec<Batch>,
    /// Whether the run stopped because the queue was empty (else the time limit).
    pub drained: bool,
}

impl MappingReport {
    /// Number of invocations.
    #[must_use]
    pub fn invocations(&self) -> usize {
        self.batches.len()
    }

    /// Records delivered, redeliveries included.
    #[must_use]
    pub fn deliveries(&self) -> usize {
        self.batches.iter().map(|b| b.messages.len()).sum()
    }

    /// Message ids deleted after success.
    #[must_use]
    pub fn deleted(&self) -> BTreeSet<String> {
        self.batches
            .iter()
            .flat_map(|b| b.deleted.iter().cloned())
            .collect()
    }

    /// Invocations that ended in an invocation error, no reply or an invalid reply.
    #[must_use]
    pub fn failed_invocations(&self) -> Vec<&Batch> {
        self.batches
            .iter()
            .filter(|b| !matches!(b.outcome, BatchOutcome::Reply { .. }))
            .collect()
    }

    /// Per message id, the receive counts at which it was handed back.
    #[must_use]
    pub fn handed_back(&self) -> BTreeMap<String, Vec<u32>> {
        let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for b in &self.batches {
            for id in b.handed_back() {
                let count = b
                    .messages
                    .iter()
                    .find(|m| m.message_id == id)
                    .map_or(0, Message::receive_count);
                out.entry(id).or_default().push(count);
            }
        }
        out
    }

    /// Merges a later run's report into this one.
    pub fn extend(&mut self, other: MappingReport) {
        self.batches.extend(other.batches);
        self.drained = other.drained;
    }
}

/// The event source mapping from one queue to the function.
#[derive(Clone)]
pub struct EventSourceMapping {
    sqs: Sqs,
    queue: Queue,
    runtime: RuntimeApi,
    batch_size: i32,
    function_timeout: Duration,
    wait_seconds: i32,
}

impl EventSourceMapping {
    /// A mapping from `queue` to the function behind `runtime`, batch size 10,
    /// function timeout 30 s.
    #[must_use]
    pub fn new(sqs: Sqs, queue: Queue, runtime: RuntimeApi) -> Self {
        Self {
            sqs,
            queue,
            runtime,
            batch_size: 10,
            function_timeout: Duration::from_secs(30),
            wait_seconds: 1,
        }
    }

    /// Batch size (1–10).
    #[must_use]
    pub fn batch_size(mut self, size: i32) -> Self {
        self.batch_size = size.clamp(1, 10);
        self
    }

    /// The function's timeout, which sets each invocation's deadline.
    #[must_use]
    pub fn function_timeout(mut self, timeout: Duration) -> Self {
        self.function_timeout = timeout;
        self
    }

    /// The source queue.
    #[must_use]
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// One poll: receive up to a batch, invoke, delete what succeeded.
    /// `Ok(None)` when nothing was received.
    ///
    /// # Errors
    /// When SQS refuses the receive or a delete.
    pub async fn poll_once(&self) -> Result<Option<Batch>, HarnessError> {
        let messages = self
            .sqs
            .receive(&self.queue.url, self.batch_size, self.wait_seconds, None)
            .await?;
        if messages.is_empty() {
            return Ok(None);
        }
        let event = sqs_event(&self.queue.arn, &messages);
        let started = Instant::now();
        let outcome = match self
            .runtime
            .invoke_json(&event, self.function_timeout)
            .await
        {
            Ok(Invocation::Response(reply)) => read_reply(&reply, &messages),
            Ok(Invocation::Error {
                error_type,
                error_message,
                ..
            }) => BatchOutcome::FunctionError {
                error_type,
                error_message,
            },
            Err(e) => BatchOutcome::NoReply(e.to_string()),
        };
        let elapsed = started.elapsed();
        let to_delete: Vec<&Message> = match &outcome {
            BatchOutcome::Reply { failures } => messages
                .iter()
                .filter(|m| !failures.contains(&m.message_id))
                .collect(),
            _ => Vec::new(),
        };
        let mut deleted = Vec::new();
        for chunk in to_delete.chunks(10) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&m.receipt_handle)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            // A delete that fails after the client's retries leaves its messages to come
            // back after the visibility timeout, as Lambda's event source mapping does:
            // one failed request of the mapping's does not stop the run.
            let out = match self
                .sqs
                .client()
                .delete_message_batch()
                .queue_url(&self.queue.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    eprintln!(
                        "event source mapping: a delete failed, its messages come back: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    );
                    continue;
                }
            };
            for ok in out.successful() {
                if let Ok(i) = ok.id().parse::<usize>() {
                    deleted.push(chunk[i].message_id.clone());
                }
            }
        }
        Ok(Some(Batch {
            event,
            messages,
            outcome,
            deleted,
            elapsed,
        }))
    }

    /// Polls until the queue holds nothing, visible or in flight, or `limit`
    /// passes, or the function process ends.
    ///
    /// # Errors
    /// When SQS fails.
    pub async fn run(&self, limit: Duration) -> Result<MappingReport, HarnessError> {
        let deadline = Instant::now() + limit;
        let mut report = MappingReport::default();
        while Instant::now() < deadline {
            if let Some(batch) = self.poll_once().await? {
                report.batches.push(batch);
                if self.runtime.exited().is_some() {
                    break;
                }
                continue;
            }
            if self.sqs.total_depth(&self.queue.url).await? == 0 {
                report.drained = true;
                break;
            }
        }
        Ok(report)
    }
}

/// Runs several mappings at once (say, one per container on one queue, as Lambda
/// scales out), each until the queue is empty or `limit` passes; their reports in
/// the order given.
///
/// # Errors
/// When SQS fails for any of them.
pub async fn run_together(
    mappings: &[EventSourceMapping],
    limit: Duration,
) -> Result<Vec<MappingReport>, HarnessError> {
    let tasks: Vec<_> = mappings
        .iter()
        .cloned()
        .map(|m| tokio::spawn(async move { m.run(limit).await }))
        .collect();
    let mut reports = Vec::with_capacity(tasks.len());
    for task in tasks {
        let report = task
            .await
            .map_err(|e| HarnessError::Start(format!("a mapping task failed: {e}")))??;
        reports.push(report);
    }
    Ok(reports)
}

fn read_reply(reply: &Value, messages: &[Message]) -> BatchOutcome {
    let ids: BTreeSet<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
    match reply {
        Value::Null => BatchOutcome::Reply {
            failures: Vec::new(),
        },
        Value::Object(map) => match map.get("batchItemFailures") {
            None | Some(Value::Null) => BatchOutcome::Reply {
                failures: Vec::new(),
            },
            Some(Value::Array(items)) => {
                let mut failures = Vec::new();
                for item in items {
                    match item.get("itemIdentifier").and_then(Value::as_str) {
                        Some(id) if !id.is_empty() && ids.contains(id) => {
                            failures.push(id.to_owned());
                        }
                        _ => return BatchOutcome::InvalidReply(reply.clone()),
                    }
                }
                BatchOutcome::Reply { failures }
            }
            Some(_) => BatchOutcome::InvalidReply(reply.clone()),
        },
        _ => BatchOutcome::InvalidReply(reply.clone()),
    }
}
