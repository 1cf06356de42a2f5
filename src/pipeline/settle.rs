//! Settlement per record: acknowledge, dead-letter with its class, or hand back, and
//! the one log line each record ends with. A dead-letter send starts only while it
//! can finish before the reply is due, and once started it is never cut short: SQS
//! may already have taken the message. Steps of `Run`; touch the dead-letter sink only.

use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use crate::domain::error::{ErrorClass, Failure};
use crate::domain::identity::Field;
use crate::domain::ports::{DeadLetter, DeadLetterSink, Directory, Watermarks};
use crate::domain::record::{Disposition, HandBack, Record, SourceKind};

use super::Outcome;
use super::run::{Ids, Run};

impl<D: Directory, S: DeadLetterSink, W: Watermarks> Run<'_, D, S, W> {
    /// Decides what happens to one record given its outcome, dead-lettering it when
    /// it must be; in the record's span.
    pub(super) async fn settle(
        &self,
        record: &Record,
        ids: &Ids,
        outcome: &Outcome,
    ) -> Disposition {
        self.settle_record(record, ids, outcome)
            .instrument(record_span(record, ids))
            .await
    }

    /// Hands back a FIFO record whose group has an earlier record handed back.
    pub(super) fn behind_in_group(&self, record: &Record, ids: &Ids) -> Disposition {
        let d = Disposition::HandedBack(HandBack::GroupOrder);
        log_disposition(record, ids, &d, None, &[]);
        d
    }

    async fn settle_record(&self, record: &Record, ids: &Ids, outcome: &Outcome) -> Disposition {
        let settings = &self.pipeline.settings;
        let can_hand_back = record.kind == SourceKind::Sqs && !record.source_id.is_empty();
        let (failure, attempts) = match outcome {
            Outcome::Updated(fields) => {
                let d = Disposition::Updated;
                log_disposition(record, ids, &d, None, fields);
                return d;
            }
            Outcome::Unchanged | Outcome::Superseded => {
                let d = Disposition::Unchanged;
                log_disposition(record, ids, &d, None, &[]);
                return d;
            }
            Outcome::Deferred if can_hand_back => {
                let d = Disposition::HandedBack(HandBack::Deadline);
                log_disposition(record, ids, &d, None, &[]);
                return d;
            }
            Outcome::Deferred => (
                Failure::unknown("the invocation deadline came before the change could be applied"),
                0,
            ),
            Outcome::LeaseHeld if can_hand_back => {
                let d = Disposition::HandedBack(HandBack::LeaseHeld);
                log_disposition(record, ids, &d, None, &[]);
                return d;
            }
            Outcome::LeaseHeld => (
                Failure::unknown(
                    "staleness guard: the user stayed leased by another invocation until the deadline",
                ),
                0,
            ),
            Outcome::Failed(f, attempts) | Outcome::Unknown(f, attempts) => (f.clone(), *attempts),
        };
        let class = failure.class;
        if class.is_retryable()
            && can_hand_back
            && record.receive_count < settings.max_receive_count
        {
            let d = Disposition::HandedBack(HandBack::Retry(class));
            log_disposition(record, ids, &d, Some(&failure), &[]);
            return d;
        }
        let letter = DeadLetter {
            class,
            message: failure.message.clone(),
            source: record.kind,
            source_id: record.source_id.clone(),
            failed_at: self.pipeline.clock.now(),
            event_id: ids.event_id.clone(),
            instance_id: ids.instance_id.clone(),
            user_id: ids.user_id.clone(),
            occurred_at: record.document.as_ref().ok().and_then(|d| d.occurred_at),
            attempts: match record.kind {
                SourceKind::Sqs => record.receive_count,
                SourceKind::EventBridge => attempts.max(1),
            },
            body: record.body.clone(),
            group: record.group.clone(),
        };
        // The dead-letter client bounds a send (its retries included) to this budget;
        // half the margin is kept for the reply.
        let send_budget = settings.dead_letter_budget();
        if Instant::now() > self.budget.dead_letter_by {
            let d = if can_hand_back {
                Disposition::HandedBack(HandBack::Deadline)
            } else {
                Disposition::NotAcknowledged(class)
            };
            warn!(
                error_class = class.as_str(),
                send_budget_ms = u64::try_from(send_budget.as_millis()).unwrap_or(u64::MAX),
                "no time left for a dead-letter send; the record is not acknowledged"
            );
            log_disposition(record, ids, &d, Some(&failure), &[]);
            return d;
        }
        let sent = self.pipeline.sink.send(&letter).await;
        let d = match sent {
            Ok(()) => Disposition::DeadLettered(class),
            Err(reason) => {
                warn!(error_class = class.as_str(), error = %reason, "dead-letter send failed; the record is not acknowledged");
                if can_hand_back {
                    Disposition::HandedBack(HandBack::DeadLetterFailed(class))
                } else {
                    Disposition::NotAcknowledged(class)
                }
            }
        };
        log_disposition(record, ids, &d, Some(&failure), &[]);
        d
    }
}

fn record_span(record: &Record, ids: &Ids) -> tracing::Span {
    info_span!(
        "record",
        source = record.kind.as_str(),
        message_id = %record.source_id,
        event_id = ids.event_id.as_deref().unwrap_or(""),
        instance_id = ids.instance_id.as_deref().unwrap_or(""),
        user_id = ids.user_id.as_deref().unwrap_or(""),
    )
}

/// One line per record outcome: ids, outcome, class and the names of the fields
/// changed; never a value.
fn log_disposition(
    record: &Record,
    ids: &Ids,
    d: &Disposition,
    failure: Option<&Failure>,
    fields: &[Field],
) {
    let fields: Vec<&str> = fields.iter().map(|f| f.as_str()).collect();
    info!(
        source = record.kind.as_str(),
        message_id = %record.source_id,
        event_id = ids.event_id.as_deref().unwrap_or(""),
        instance_id = ids.instance_id.as_deref().unwrap_or(""),
        user_id = ids.user_id.as_deref().unwrap_or(""),
        outcome = d.outcome(),
        error_class = d.class().map_or("", ErrorClass::as_str),
        reason = d.reason(),
        error_message = failure.map_or("", |f| f.message.as_str()),
        fields_changed = fields.join(","),
        "record settled"
    );
}
