//! Settling, the last part of an invocation: per record, acknowledge, dead-letter with
//! its class, queue again or hand back (in FIFO, every record behind a handed-back one
//! in its group too), and the one log line each record ends with;
//! and, from the dispositions, the records the reply names (`hand_backs`): the one
//! place that turns outcomes into the reply. A dead-letter send starts only while it
//! can finish before the reply is due, and once started it is never cut short: SQS
//! may already have taken the message. `Settler` holds the dead-letter sink, the
//! clock, the invocation's `Budget`, and the container's rates (for a deferred copy's
//! delay); nothing else.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use crate::clock::Clock;
use crate::domain::error::{ErrorClass, Failure};
use crate::domain::identity::Field;
use crate::domain::ports::{DeadLetter, DeadLetterSink, Requeue};
use crate::domain::record::{Disposition, HandBack, Record, SourceKind};

use super::budget::Budget;
use super::calls::RateLimits;
use super::outcome::Outcome;
use super::plan::{Applied, Entry, Ids};

/// A record's disposition, with its place in the batch.
pub(super) struct Settled {
    pub at: usize,
    pub disposition: Disposition,
}

/// Settling: what becomes of each record.
pub(super) struct Settler<'a, S> {
    pub sink: &'a S,
    /// Retryable SQS records are handed back while their own failures are below this.
    pub max_receive_count: u32,
    pub clock: &'a Clock,
    pub budget: &'a Budget,
    /// Whether a deferred record of a standard queue is queued again as a fresh copy.
    pub requeue: bool,
    /// The container's rates, for how long a deferred copy waits.
    pub limits: &'a RateLimits,
    /// Deferred records queued again so far, for their delays.
    pub deferrals: AtomicU32,
    /// Records that ended `unchanged` because the staleness guard superseded them.
    pub superseded: AtomicU32,
}

/// Whether a record can be named in the reply's `batchItemFailures`: an SQS record
/// with a `messageId` (one made by hand without one cannot be named on its own).
fn can_hand_back(record: &Record) -> bool {
    record.kind == SourceKind::Sqs && !record.source_id.is_empty()
}

/// The `messageId`s the reply names in `batchItemFailures`, in order: every record
/// handed back or not acknowledged that can be named. One that cannot ends here, said
/// at ERROR with its class: failing the invocation would deliver every neighbour again.
pub(super) fn hand_backs(records: &[Record], dispositions: &[Disposition]) -> Vec<String> {
    let mut named = Vec::new();
    for (record, d) in records.iter().zip(dispositions) {
        // A direct event's reply is its disposition (`handler`): nothing to name.
        if record.kind != SourceKind::Sqs
            || !matches!(
                d,
                Disposition::HandedBack(_) | Disposition::NotAcknowledged(_)
            )
        {
            continue;
        }
        if can_hand_back(record) {
            named.push(record.source_id.clone());
        } else {
            // SQS gives every record a messageId, so this one was made by hand. It
            // cannot be named in batchItemFailures (an empty identifier fails the whole
            // batch), and failing the invocation would deliver every neighbour again.
            tracing::error!(
                source = record.kind.as_str(),
                outcome = d.outcome(),
                error_class = d.class().map_or("", ErrorClass::as_str),
                "a record without a messageId could not be dead-lettered and cannot be handed back on its own; it is dropped"
            );
        }
    }
    named
}

/// One lane's records settled in order. In FIFO, once a record is handed back every
/// later record of the lane is handed back too (`HandBack::GroupOrder`), record by
/// record, even one that shared the handed-back record's update, and nothing more of
/// the lane is applied.
pub(super) struct LaneSettlement<'s, 'a, S> {
    settler: &'s Settler<'a, S>,
    fifo: bool,
    blocked: bool,
}

impl<S: DeadLetterSink> LaneSettlement<'_, '_, S> {
    /// Whether the lane's later records are handed back without being applied.
    pub(super) fn blocked(&self) -> bool {
        self.blocked
    }

    /// Settles records the lane does not apply: behind a handed-back one.
    pub(super) fn behind<'e>(
        &self,
        entries: impl Iterator<Item = &'e Entry<'e>>,
    ) -> impl Iterator<Item = Settled> {
        entries.map(|e| self.settler.behind_in_group(e))
    }

    /// Settles what one unit of the lane came to, in order.
    pub(super) async fn settle(&mut self, applied: Vec<Applied<'_>>) -> Vec<Settled> {
        let mut settled = Vec::with_capacity(applied.len());
        for applied in applied {
            if self.blocked {
                settled.push(self.settler.behind_in_group(&applied.entry));
                continue;
            }
            let s = self.settler.settle(applied).await;
            self.blocked |= self.fifo && matches!(s.disposition, Disposition::HandedBack(_));
            settled.push(s);
        }
        settled
    }
}

impl<'a, S: DeadLetterSink> Settler<'a, S> {
    /// Decides what happens to one record given what the work on it came to,
    /// dead-lettering it when it must be; in the record's span.
    async fn settle(&self, applied: Applied<'_>) -> Settled {
        let Applied { entry, outcome } = applied;
        let (record, ids) = (entry.record, &entry.ids);
        let disposition = self
            .settle_record(record, ids, &outcome)
            .instrument(record_span(record, ids))
            .await;
        if matches!(outcome, Outcome::Superseded) && disposition == Disposition::Unchanged {
            self.superseded.fetch_add(1, Ordering::Relaxed);
        }
        Settled {
            at: entry.at,
            disposition,
        }
    }

    /// The settlement of one lane, whose records come in order.
    pub(super) fn lane(&self, fifo: bool) -> LaneSettlement<'_, 'a, S> {
        LaneSettlement {
            settler: self,
            fifo,
            blocked: false,
        }
    }

    /// Hands back a FIFO record whose group has an earlier record handed back.
    fn behind_in_group(&self, entry: &Entry<'_>) -> Settled {
        let d = Disposition::HandedBack(HandBack::GroupOrder);
        log_disposition(entry.record, &entry.ids, &d, None, &[]);
        Settled {
            at: entry.at,
            disposition: d,
        }
    }

    async fn settle_record(&self, record: &Record, ids: &Ids, outcome: &Outcome) -> Disposition {
        let can_hand_back = can_hand_back(record);
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
                return self.defer(record, ids, HandBack::Deadline).await;
            }
            Outcome::Deferred => (
                Failure::unknown("the invocation deadline came before the change could be applied"),
                0,
            ),
            Outcome::LeaseHeld if can_hand_back => {
                return self.defer(record, ids, HandBack::LeaseHeld).await;
            }
            Outcome::LeaseHeld => (
                Failure::unknown(
                    "staleness guard: the user stayed leased by another invocation until the deadline",
                ),
                0,
            ),
            Outcome::NoTurn if can_hand_back => {
                return self.defer(record, ids, HandBack::FleetTurn).await;
            }
            Outcome::NoTurn => (
                Failure::unknown(
                    "the update schedule had no turn for the change before the deadline",
                ),
                0,
            ),
            Outcome::Failed(f, attempts) | Outcome::Unknown(f, attempts) => (f.clone(), *attempts),
        };
        let class = failure.class;
        // The record's own failures, this one included (SPEC §3): the receives of this
        // copy (every earlier one ended in a failure of its own, or the invocation died:
        // a deferral is queued again as a fresh copy, not handed back) and those its
        // earlier copies carried.
        let own_failures = own_failures(record);
        if class.is_retryable() && can_hand_back && own_failures < self.max_receive_count {
            let d = Disposition::HandedBack(HandBack::Retry(class));
            log_disposition(record, ids, &d, Some(&failure), &[]);
            return d;
        }
        let letter = DeadLetter {
            class,
            message: failure.message.clone(),
            source: record.kind,
            source_id: record.source_id.clone(),
            failed_at: self.clock.now(),
            event_id: ids.event_id.clone(),
            instance_id: ids.instance_id.clone(),
            user_id: ids.user_id.clone(),
            occurred_at: record.document.as_ref().ok().and_then(|d| d.occurred_at),
            attempts: match record.kind {
                SourceKind::Sqs => own_failures,
                SourceKind::EventBridge => attempts.max(1),
            },
            body: record.body.clone(),
            group: record.group.clone(),
        };
        // The dead-letter client bounds a send (its retries included) to this budget;
        // half the margin is kept for the reply.
        let send_budget = self.budget.dead_letter_send;
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
        let sent = self.sink.send(&letter).await;
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

    /// Settles a deferred SQS record (SPEC §2.4: its turn did not come; it did not
    /// fail). A record of a standard queue is queued again as a fresh copy and
    /// acknowledged, so the deferral spends none of its receives; the copy is delayed by
    /// the time this container needs for as many turns as it deferred records so far in
    /// this invocation (at the rate it measured), and by how far ahead the fleet's schedule
    /// is booked, so it is not received again before it can be reached. A FIFO record,
    /// whose copy would go behind the later records of its group, is handed back; so is
    /// a record whose copy cannot be sent (or not in time).
    async fn defer(&self, record: &Record, ids: &Ids, why: HandBack) -> Disposition {
        let fifo = record.group.is_some()
            || record
                .queue_arn
                .as_deref()
                .is_none_or(|arn| arn.ends_with(".fifo"));
        let document = record.document.as_ref().ok();
        let (Some(queue_arn), false, true) = (record.queue_arn.as_ref(), fifo, self.requeue) else {
            let d = Disposition::HandedBack(why);
            log_disposition(record, ids, &d, None, &[]);
            return d;
        };
        if Instant::now() > self.budget.dead_letter_by {
            let d = Disposition::HandedBack(why);
            log_disposition(record, ids, &d, None, &[]);
            return d;
        }
        let nth = self.deferrals.fetch_add(1, Ordering::Relaxed) + 1;
        let (booked_ahead, _) = self.limits.update_outlook();
        let own_turns = f64::from(nth) / self.limits.turns().rate();
        let delay = (booked_ahead.as_secs_f64() + own_turns).ceil().min(900.0);
        let copy = Requeue {
            queue_arn: queue_arn.clone(),
            body: record.body.clone(),
            occurred_at: document.and_then(|d| d.occurred_at),
            event_id: ids.event_id.clone(),
            // Its receives before this one: each ended in a failure of its own.
            own_failures: record
                .carried_failures
                .saturating_add(record.receive_count - 1),
            delay_seconds: delay as u32,
        };
        let d = match self.sink.requeue(&copy).await {
            Ok(()) => Disposition::Requeued(why),
            Err(reason) => {
                warn!(error = %reason, "a deferred record could not be queued again; it is handed back");
                Disposition::HandedBack(why)
            }
        };
        log_disposition(record, ids, &d, None, &[]);
        d
    }
}

/// A record's own failures once this delivery failed: the receives of this copy and the
/// failures its earlier copies carried.
fn own_failures(record: &Record) -> u32 {
    record.carried_failures.saturating_add(record.receive_count)
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
        requeued = matches!(d, Disposition::Requeued(_)),
        error_message = failure.map_or("", |f| f.message.as_str()),
        fields_changed = fields.join(","),
        "record settled"
    );
}
