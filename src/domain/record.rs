//! One received record, whatever carried it, and how it ended.

use super::document::ChangeDocument;
use super::error::{ErrorClass, Failure};

/// The SQS message attribute holding a change's `OccurredAt` (RFC 3339): set on every
/// dead letter, kept by the redrive command, read when the document has no time of its
/// own and no EventBridge `time` (SPEC §2.1), so that a replayed change keeps its time.
pub const OCCURRED_AT_ATTRIBUTE: &str = "OccurredAt";
/// The SQS message attribute holding a change's `EventId`: set and kept like
/// `OccurredAt`, and read before the `messageId` as the default id, so that a replayed
/// change keeps its id.
pub const EVENT_ID_ATTRIBUTE: &str = "EventId";
/// The SQS message attribute (Number) on a copy of a deferred record that the function
/// queued again: the record's own failures on its earlier copies. A fresh copy's
/// `ApproximateReceiveCount` starts again at 1, so the record's own failures are this
/// number plus the copy's receives (SPEC §3). A sender can only make its record
/// dead-lettered sooner with it, never later.
pub const OWN_FAILURES_ATTRIBUTE: &str = "OwnFailures";

/// What delivered the record (the `SourceType` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Sqs,
    EventBridge,
}

impl SourceKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            SourceKind::Sqs => "sqs",
            SourceKind::EventBridge => "eventbridge",
        }
    }
}

/// One record of an invocation, read far enough to know where it came from.
#[derive(Debug, Clone)]
pub struct Record {
    pub kind: SourceKind,
    /// SQS `messageId` or EventBridge event `id` (the `SourceId` attribute).
    pub source_id: String,
    /// SQS `ApproximateReceiveCount`; 1 for a direct EventBridge event.
    pub receive_count: u32,
    /// Own failures of the record's earlier copies (the `OwnFailures` attribute of a copy
    /// the function queued again); 0 otherwise.
    pub carried_failures: u32,
    /// The SQS queue the record came from (`eventSourceARN`); `None` for a direct event.
    pub queue_arn: Option<String>,
    /// The `MessageGroupId` of a record from a FIFO queue.
    pub group: Option<String>,
    /// What a dead-letter message carries: the SQS body byte for byte, or the whole
    /// EventBridge event.
    pub body: String,
    /// The change document, or why the body is not one.
    pub document: Result<ChangeDocument, Failure>,
    /// The event id as far as it could be read before the document failed (the
    /// document's `EventId` string, else the EventBridge `id`, else the SQS
    /// `messageId`), so that a record whose document is unreadable is still known by it.
    pub event_id_hint: Option<String>,
}

/// How a record ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The change was applied with one `UpdateUserIdentityInfo` call.
    Updated,
    /// The user already was as the change asks; no update call was made.
    Unchanged,
    /// Sent to the dead-letter queue of its class.
    DeadLettered(ErrorClass),
    /// Handed back for redelivery (SQS `batchItemFailures`).
    HandedBack(HandBack),
    /// Deferred, and queued again as a fresh copy (body, time, id and own failures so
    /// far), so the delivery is acknowledged and the deferral spends no receive.
    Requeued(HandBack),
    /// A direct EventBridge event that could not be dead-lettered either: the
    /// invocation fails so Lambda's own retry and on-failure destination take over.
    NotAcknowledged(ErrorClass),
}

/// Why a record was handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandBack {
    /// A retryable failure below `MAX_RECEIVE_COUNT`.
    Retry(ErrorClass),
    /// The invocation deadline came before the work could be done.
    Deadline,
    /// An earlier record of its FIFO message group must be delivered again.
    GroupOrder,
    /// Its user stayed leased by another invocation (the staleness guard) until the
    /// deadline.
    LeaseHeld,
    /// Its dead-letter message could not be sent.
    DeadLetterFailed(ErrorClass),
    /// The fleet's update schedule had no turn for it before the deadline: deferred
    /// before any read of its user.
    FleetTurn,
}

impl HandBack {
    /// The `reason` of a record's log line (docs/operations.md): a stable name an
    /// operator can query.
    pub const fn as_str(self) -> &'static str {
        match self {
            HandBack::Retry(_) => "retryable_failure",
            HandBack::Deadline => "deadline",
            HandBack::GroupOrder => "group_order",
            HandBack::LeaseHeld => "lease_held",
            HandBack::DeadLetterFailed(_) => "dead_letter_failed",
            HandBack::FleetTurn => "fleet_turn",
        }
    }

    /// A deferral: the record did not fail, its turn did not come (SPEC §2.4), so it
    /// counts against nothing.
    pub const fn is_deferral(self) -> bool {
        matches!(
            self,
            HandBack::Deadline | HandBack::GroupOrder | HandBack::LeaseHeld | HandBack::FleetTurn
        )
    }
}

impl Disposition {
    /// The `outcome` of a record's log line.
    pub fn outcome(&self) -> &'static str {
        match self {
            Disposition::Updated => "updated",
            Disposition::Unchanged => "unchanged",
            Disposition::DeadLettered(_) => "dead_lettered",
            Disposition::HandedBack(_) | Disposition::Requeued(_) => "handed_back",
            Disposition::NotAcknowledged(_) => "not_acknowledged",
        }
    }

    /// The `reason` of a record's log line: why it was handed back or not acknowledged,
    /// empty otherwise.
    pub fn reason(&self) -> &'static str {
        match self {
            Disposition::HandedBack(h) | Disposition::Requeued(h) => h.as_str(),
            Disposition::NotAcknowledged(_) => {
                HandBack::DeadLetterFailed(ErrorClass::UnknownError).as_str()
            }
            Disposition::Updated | Disposition::Unchanged | Disposition::DeadLettered(_) => "",
        }
    }

    pub fn class(&self) -> Option<ErrorClass> {
        match self {
            Disposition::DeadLettered(c)
            | Disposition::NotAcknowledged(c)
            | Disposition::HandedBack(HandBack::Retry(c) | HandBack::DeadLetterFailed(c)) => {
                Some(*c)
            }
            Disposition::HandedBack(HandBack::Deadline) => Some(ErrorClass::UnknownError),
            Disposition::Updated
            | Disposition::Unchanged
            | Disposition::HandedBack(_)
            | Disposition::Requeued(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_disposition_logs_a_plain_outcome_and_reason() {
        let all = [
            Disposition::Updated,
            Disposition::Unchanged,
            Disposition::DeadLettered(ErrorClass::ValidationError),
            Disposition::HandedBack(HandBack::Retry(ErrorClass::UnknownError)),
            Disposition::HandedBack(HandBack::Deadline),
            Disposition::HandedBack(HandBack::GroupOrder),
            Disposition::HandedBack(HandBack::LeaseHeld),
            Disposition::Requeued(HandBack::FleetTurn),
            Disposition::HandedBack(HandBack::DeadLetterFailed(ErrorClass::PolicyViolation)),
            Disposition::NotAcknowledged(ErrorClass::PolicyViolation),
        ];
        let plain = |s: &str| s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        for d in &all {
            assert!(plain(d.outcome()) && plain(d.reason()), "{d:?}");
        }
        let reasons: Vec<&str> = all.iter().map(Disposition::reason).collect();
        assert_eq!(
            reasons,
            [
                "",
                "",
                "",
                "retryable_failure",
                "deadline",
                "group_order",
                "lease_held",
                "fleet_turn",
                "dead_letter_failed",
                "dead_letter_failed"
            ]
        );
    }
}
