//! One invocation end to end: read the payload, run the pipeline, build the reply
//! (SPEC §4).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::domain::error::ErrorClass;
use crate::domain::ports::{DeadLetterSink, Directory};
use crate::domain::record::Disposition;
use crate::inbound::{Invocation, read_invocation};
use crate::pipeline::Pipeline;

/// An invocation that fails as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvocationError {
    /// The payload is neither an SQS event nor an EventBridge event.
    #[error("{0}")]
    MalformedEvent(String),
    /// A record that cannot be handed back could not be dead-lettered either.
    #[error(
        "a {0} record could not be dead-lettered; the invocation fails so that Lambda retries it"
    )]
    DeadLetterUnavailable(ErrorClass),
}

impl InvocationError {
    pub fn error_type(&self) -> &'static str {
        match self {
            InvocationError::MalformedEvent(_) => ErrorClass::MalformedEvent.as_str(),
            InvocationError::DeadLetterUnavailable(_) => "DeadLetterUnavailable",
        }
    }
}

impl From<InvocationError> for lambda_runtime::Diagnostic {
    fn from(e: InvocationError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// Turns the Runtime API's deadline (milliseconds since the epoch) into an instant.
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// Handles one invocation payload.
///
/// # Errors
/// `MalformedEvent` for a payload of no known shape; `DeadLetterUnavailable` when a
/// record that cannot be handed back could not be dead-lettered.
pub async fn handle<D: Directory, S: DeadLetterSink>(
    pipeline: &Pipeline<D, S>,
    payload: &Value,
    deadline: Instant,
) -> Result<Value, InvocationError> {
    let invocation = read_invocation(payload).map_err(|f| {
        tracing::warn!(error_class = %f.class, error_message = %f.message, "invocation refused");
        InvocationError::MalformedEvent(f.message)
    })?;
    match invocation {
        Invocation::EventBridge(record) => {
            let report = pipeline
                .run(std::slice::from_ref(&record), false, deadline)
                .await;
            eventbridge_reply(&report.dispositions[0])
        }
        Invocation::Sqs { records, fifo } => {
            let dispositions = pipeline.run(&records, fifo, deadline).await.dispositions;
            if let Some(Disposition::NotAcknowledged(class)) = dispositions
                .iter()
                .find(|d| matches!(d, Disposition::NotAcknowledged(_)))
            {
                return Err(InvocationError::DeadLetterUnavailable(*class));
            }
            let failures: Vec<Value> = records
                .iter()
                .zip(&dispositions)
                .filter(|(r, d)| matches!(d, Disposition::HandedBack(_)) && !r.source_id.is_empty())
                .map(|(r, _)| json!({ "itemIdentifier": r.source_id }))
                .collect();
            Ok(json!({ "batchItemFailures": failures }))
        }
    }
}

fn eventbridge_reply(d: &Disposition) -> Result<Value, InvocationError> {
    match d {
        Disposition::Updated => Ok(json!({"outcome": "updated"})),
        Disposition::Unchanged => Ok(json!({"outcome": "unchanged"})),
        Disposition::DeadLettered(class) => {
            Ok(json!({"outcome": "dead_lettered", "errorClass": class.as_str()}))
        }
        Disposition::NotAcknowledged(class)
        | Disposition::HandedBack(crate::domain::record::HandBack::DeadLetterFailed(class)) => {
            Err(InvocationError::DeadLetterUnavailable(*class))
        }
        // A direct event is never handed back; should it be, it must not be lost.
        Disposition::HandedBack(_) => Err(InvocationError::DeadLetterUnavailable(
            ErrorClass::UnknownError,
        )),
    }
}
