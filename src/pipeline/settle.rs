//! Settling, the last part of an invocation: per record, acknowledge, dead-letter with
//! its class, queue again or hand back (in FIFO, every record behind a handed-back one
//! in its group too), and the one log line each record ends with;
//! and, from the dispositions, the records the reply names (`hand_backs`): the one
//! place that turns outcomes into the reply. A dead-letter send starts only while it
//! can finish before the reply is due, and once started it is never cut short: SQS
//! may already have taken the message. `Settler` holds the dead-letter sink, the
//! staleness guard's table (for the notes of deferrals handed back), the clock, the
//! invocation's `Budget`, and the container's rates (for a deferred copy's delay);
//! nothing else.
//!
//! A deferral counts against nothing (SPEC §2.4, §3). A deferred record of a standard
//! queue is queued again as a fresh copy carrying its own failures so far
//! (`OwnFailures`); one that is handed back instead (FIFO, or its copy not sent in time)
//! is noted in the guard's table under its `messageId` with the receive count it was
//! deferred at, so that a later delivery counts its own failures as its receives less
//! the noted ones, plus what its earlier copies carried. The notes are read only when
//! the count matters (a redelivered record that failed, or is copied), never on a first
//! delivery.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::time::{Instant, timeout_at};
use tracing::{Instrument, info, info_span, warn};

use crate::clock::Clock;
use crate::domain::error::{ErrorClass, Failure};
use crate::domain::identity::Field;
use crate::domain::ports::{DeadLetter, DeadLetterSink, Requeue, Watermarks};
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
pub(super) struct Settler<'a, S, W> {
    pub sink: &'a S,
    /// The staleness guard's table, where a deferral handed back is noted; `None`
    /// without a guard (a deferral handed back then counts as a receive).
    pub notes: Option<&'a W>,
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
pub(super) struct LaneSettlement<'s, 'a, S, W> {
    settler: &'s Settler<'a, S, W>,
    fifo: bool,
    blocked: bool,
}

impl<S: DeadLetterSink, W: Watermarks> LaneSettlement<'_, '_, S, W> {
    /// Whether the lane's later records are handed back without being applied.
    pub(super) fn blocked(&self) -> bool {
        self.blocked
    }

    /// Settles records the lane does not apply: behind a handed-back one.
    pub(super) async fn behind<'e>(
        &self,
        entries: impl Iterator<Item = &'e Entry<'e>>,
    ) -> Vec<Settled> {
        let mut settled = Vec::new();
        for e in entries {
            settled.push(self.settler.behind_in_group(e).await);
        }
        settled
    }

    /// Settles what one unit of the lane came to, in order.
    pub(super) async fn settle(&mut self, applied: Vec<Applied<'_>>) -> Vec<Settled> {
        let mut settled = Vec::with_capacity(applied.len());
        for applied in applied {
            if self.blocked {
                settled.push(self.settler.behind_in_group(&applied.entry).await);
                continue;
            }
            let s = self.settler.settle(applied).await;
            self.blocked |= self.fifo && matches!(s.disposition, Disposition::HandedBack(_));
            settled.push(s);
        }
        settled
    }
}

impl<'a, S: DeadLetterSink, W: Watermarks> Settler<'a, S, W> {
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
    pub(super) fn lane(&self, fifo: bool) -> LaneSettlement<'_, 'a, S, W> {
        LaneSettlement {
            settler: self,
            fifo,
            blocked: false,
        }
    }

    /// Hands back a FIFO record whose group has an earlier record handed back: a
    /// deferral, noted as such. It is handed back even when the note cannot be written
    /// (nothing behind a handed-back record may be dead-lettered before it); that
    /// receive then counts as a failure of its own, the table's (`UnknownError`).
    async fn behind_in_group(&self, entry: &Entry<'_>) -> Settled {
        let (record, ids) = (entry.record, &entry.ids);
        let d = Disposition::HandedBack(HandBack::GroupOrder);
        if let Err(failure) = self.note(record).instrument(record_span(record, ids)).await {
            warn!(error_class = failure.class.as_str(), error = %failure.message, "a deferral could not be noted; the receive counts as a failure of the record's own");
        }
        log_disposition(record, ids, &d, None, &[]);
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
                match self.defer(record, ids, HandBack::Deadline).await {
                    Ok(d) => return d,
                    Err(failure) => (failure, 0),
                }
            }
            Outcome::Deferred => (
                Failure::unknown("the invocation deadline came before the change could be applied"),
                0,
            ),
            Outcome::LeaseHeld if can_hand_back => {
                match self.defer(record, ids, HandBack::LeaseHeld).await {
                    Ok(d) => return d,
                    Err(failure) => (failure, 0),
                }
            }
            Outcome::LeaseHeld => (
                Failure::unknown(
                    "staleness guard: the user stayed leased by another invocation until the deadline",
                ),
                0,
            ),
            Outcome::NoTurn if can_hand_back => {
                match self.defer(record, ids, HandBack::FleetTurn).await {
                    Ok(d) => return d,
                    Err(failure) => (failure, 0),
                }
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
        // copy less those noted as deferrals, and those its earlier copies carried.
        let own_failures = self.own_failures(record).await;
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
            // A record refused for good that the deadline kept from its queue did not
            // fail again on its own: its receive is the deadline's, noted as a deferral.
            // (A retryable failure stays counted: it was one of the record's own.)
            if can_hand_back && !class.is_retryable() {
                if let Err(f) = self.note(record).await {
                    warn!(error_class = f.class.as_str(), error = %f.message, "a deferral could not be noted; the receive counts as a failure of the record's own");
                }
            }
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
    /// is booked, so it is not received again before it can be reached; by an
    /// invocation's length at most. The copy may take
    /// until the budget's dead-letter-by instant (and is not sent with less than a dead
    /// letter's budget left before it), which leaves the note of a record handed back
    /// instead the time to the note-by instant. A FIFO record, whose copy would go
    /// behind the later records of its group, is handed back; so is a record whose copy
    /// is not sent in time: each with its deferral noted. A note that cannot be written is
    /// the table's failure (`UnknownError`), settled as any failure of the record's own.
    async fn defer(
        &self,
        record: &Record,
        ids: &Ids,
        why: HandBack,
    ) -> Result<Disposition, Failure> {
        let fifo = record.group.is_some()
            || record
                .queue_arn
                .as_deref()
                .is_none_or(|arn| arn.ends_with(".fifo"));
        let queue_arn = record.queue_arn.as_ref().filter(|_| !fifo && self.requeue);
        if let Some(queue_arn) = queue_arn {
            // A copy ends by the dead-letter-by instant, so that a note still fits after
            // it; one that could not have a dead letter's budget before then is not sent.
            if Instant::now() + self.budget.dead_letter_send <= self.budget.dead_letter_by {
                match self.copy(record, ids, queue_arn).await {
                    Ok(()) => {
                        let d = Disposition::Requeued(why);
                        log_disposition(record, ids, &d, None, &[]);
                        return Ok(d);
                    }
                    Err(reason) => {
                        warn!(error = %reason, "a deferred record could not be queued again; it is handed back with its deferral noted");
                    }
                }
            }
        }
        self.note(record).await?;
        let d = Disposition::HandedBack(why);
        log_disposition(record, ids, &d, None, &[]);
        Ok(d)
    }

    /// Queues a deferred record again as a fresh copy with its own failures so far,
    /// by the budget's dead-letter-by instant.
    async fn copy(&self, record: &Record, ids: &Ids, queue_arn: &str) -> Result<(), String> {
        // Its receives before this one, less those that were deferrals.
        let noted = self.noted_deferrals(record).await.map_err(|f| f.message)?;
        let own_before = record.receive_count.saturating_sub(1).saturating_sub(noted);
        let now = Instant::now();
        let ends = self.budget.dead_letter_by;
        if now + self.budget.dead_letter_send > ends {
            return Err("no time left for a deferred record's copy".to_owned());
        }
        let nth = self.deferrals.fetch_add(1, Ordering::Relaxed) + 1;
        let (booked_ahead, _) = self.limits.update_outlook();
        let own_turns = f64::from(nth) / self.limits.turns().rate();
        // No longer than an invocation: this container's share is what it measured
        // while the others were busy too, and as a backlog drains they are not. A copy
        // held for all of its turns at that share came back after the others had
        // nothing left, and the quota sat idle (measured, ten containers with another
        // caller: up to 28 s, the run's last 20 s applied 4 updates where 64 were free).
        let delay = (booked_ahead.as_secs_f64() + own_turns)
            .min(self.budget.length().as_secs_f64())
            .ceil()
            .min(900.0);
        let copy = Requeue {
            queue_arn: queue_arn.to_owned(),
            body: record.body.clone(),
            occurred_at: record.document.as_ref().ok().and_then(|d| d.occurred_at),
            event_id: ids.event_id.clone(),
            own_failures: record.carried_failures.saturating_add(own_before),
            delay_seconds: delay as u32,
            within: ends.saturating_duration_since(now),
        };
        match timeout_at(ends, self.sink.requeue(&copy)).await {
            Ok(sent) => sent,
            Err(_) => Err("SQS SendMessage of a deferred record gave no answer in time".to_owned()),
        }
    }

    /// Notes this delivery of `record` as a deferral, so that its next delivery does not
    /// count it (without a guard's table there is nowhere to note it: the receive then
    /// counts, a known limit). The request ends by the budget's note-by instant.
    async fn note(&self, record: &Record) -> Result<(), Failure> {
        let Some(table) = self.notes else {
            return Ok(());
        };
        if !can_hand_back(record) {
            return Ok(());
        }
        let limit = self.budget.note_by;
        if Instant::now() >= limit {
            return Err(Failure::unknown(
                "staleness guard: no time left to note a deferral",
            ));
        }
        let noted = timeout_at(
            self.budget.request_ends(limit),
            table.note_deferral(&record.source_id, record.receive_count),
        )
        .await;
        match noted {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failure)) => Err(failure.failure),
            Err(_) => Err(Failure::unknown(
                "staleness guard: noting a deferral failed: a timeout",
            )),
        }
    }

    /// How many of `record`'s receives before this one were noted as deferrals: 0 on a
    /// first delivery, without a table, or when nothing was noted (no request is made
    /// for a first delivery).
    async fn noted_deferrals(&self, record: &Record) -> Result<u32, Failure> {
        let Some(table) = self.notes else {
            return Ok(0);
        };
        if record.receive_count <= 1 || !can_hand_back(record) {
            return Ok(0);
        }
        let read = timeout_at(
            self.budget.request_ends(self.budget.release_by),
            table.deferrals(&record.source_id),
        )
        .await;
        let receives = match read {
            Ok(Ok(receives)) => receives,
            Ok(Err(failure)) => return Err(failure.failure),
            Err(_) => {
                return Err(Failure::unknown(
                    "staleness guard: reading the deferral notes failed: a timeout",
                ));
            }
        };
        let earlier: std::collections::BTreeSet<u32> = receives
            .into_iter()
            .filter(|r| (1..record.receive_count).contains(r))
            .collect();
        Ok(u32::try_from(earlier.len()).unwrap_or(u32::MAX))
    }

    /// The record's own failures once this delivery failed (SPEC §3): its receives less
    /// those noted as deferrals, and what its earlier copies carried. When the notes
    /// cannot be read (the table throttles, fails or does not answer in time), only what
    /// is known for certain counts: this delivery's failure and what the copies carried;
    /// the record is handed back rather than dead-lettered on a count the table could not
    /// confirm. (A table that does not exist holds no notes: its adapter reads none.)
    async fn own_failures(&self, record: &Record) -> u32 {
        let receives = record.receive_count.max(1);
        let noted = match self.noted_deferrals(record).await {
            Ok(noted) => noted,
            Err(failure) => {
                warn!(error = %failure.message, "the deferral notes could not be read; only this delivery's failure is counted");
                receives - 1
            }
        };
        record
            .carried_failures
            .saturating_add(receives.saturating_sub(noted))
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
        requeued = matches!(d, Disposition::Requeued(_)),
        error_message = failure.map_or("", |f| f.message.as_str()),
        fields_changed = fields.join(","),
        "record settled"
    );
}
