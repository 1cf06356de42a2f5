//! One invocation end to end: read the payload, run the pipeline, build the reply
//! (SPEC §4) and the invocation's metrics summary (SPEC §7).

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsBatchResponse;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::Instrument;

use crate::clock::Clock;
use crate::domain::error::ErrorClass;
use crate::domain::ports::{DeadLetterSink, Directory, Watermarks};
use crate::domain::record::Disposition;
use crate::inbound::{Invocation, read_invocation};
use crate::metrics::Summary;
use crate::pipeline::{Pipeline, RunReport};

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

/// Turns the Runtime API's deadline (milliseconds since the epoch, read on `clock`) into
/// an instant.
pub fn deadline_from_epoch_ms(deadline_ms: u64, clock: &Clock) -> Instant {
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(clock.now_ms()))
}

/// Handles one invocation payload, given as its JSON text.
///
/// # Errors
/// `MalformedEvent` for a payload of no known shape; `DeadLetterUnavailable` when a
/// record that cannot be handed back could not be dead-lettered.
pub async fn handle<D: Directory, S: DeadLetterSink, W: Watermarks>(
    pipeline: &Pipeline<D, S, W>,
    payload: &RawValue,
    deadline: Instant,
) -> Result<Value, InvocationError> {
    invoke(pipeline, payload, deadline, false).await.reply
}

/// One invocation's reply and what it did.
#[derive(Debug)]
pub struct Handled {
    pub reply: Result<Value, InvocationError>,
    pub summary: Summary,
}

/// Handles one invocation payload, as [`handle`], and sums up its outcomes. With
/// `dry_run` (the directory then sends no update), every log line of the invocation
/// carries `dry_run` and an EventBridge reply adds `"dryRun": true`.
pub async fn invoke<D: Directory, S: DeadLetterSink, W: Watermarks>(
    pipeline: &Pipeline<D, S, W>,
    payload: &RawValue,
    deadline: Instant,
    dry_run: bool,
) -> Handled {
    let span = if dry_run {
        tracing::info_span!("invocation", dry_run = true)
    } else {
        tracing::Span::none()
    };
    let (reply, report) = run(pipeline, payload, deadline).instrument(span).await;
    let mut summary = Summary::of_report(&report);
    summary.dry_run = dry_run;
    let reply = match reply {
        Ok(mut v) if dry_run && v.get("outcome").is_some() => {
            v["dryRun"] = json!(true);
            Ok(v)
        }
        other => other,
    };
    Handled { reply, summary }
}

async fn run<D: Directory, S: DeadLetterSink, W: Watermarks>(
    pipeline: &Pipeline<D, S, W>,
    payload: &RawValue,
    deadline: Instant,
) -> (Result<Value, InvocationError>, RunReport) {
    let invocation = match read_invocation(payload) {
        Ok(invocation) => invocation,
        Err(f) => {
            tracing::warn!(error_class = %f.class, error_message = %f.message, "invocation refused");
            return (
                Err(InvocationError::MalformedEvent(f.message)),
                RunReport::default(),
            );
        }
    };
    match invocation {
        Invocation::EventBridge(record) => {
            let report = pipeline
                .run(std::slice::from_ref(&record), false, deadline)
                .await;
            let reply = eventbridge_reply(&report.dispositions[0]);
            (reply, report)
        }
        Invocation::Sqs { records, fifo } => {
            let report = pipeline.run(&records, fifo, deadline).await;
            // Settlement named the records to hand back; the reply only lists them.
            let mut reply = SqsBatchResponse::default();
            for id in &report.hand_back {
                reply.add_failure(id.clone());
            }
            (Ok(json!(reply)), report)
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
        Disposition::HandedBack(_) | Disposition::Requeued(_) => Err(
            InvocationError::DeadLetterUnavailable(ErrorClass::UnknownError),
        ),
    }
}
