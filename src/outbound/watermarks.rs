//! The staleness guard's watermarks in Amazon DynamoDB behind the `Watermarks` port:
//! one item per user (`pk` = `<instance id>#<user id>`), a lease taken and the
//! watermarks read in one conditional `UpdateItem`, the watermarks written and the lease
//! given up in another.
//!
//! Item attributes: `lease_owner` (S) and `lease_until` (N, epoch milliseconds) while a
//! lease is held; `lease_released` (S, the owner of the lease given up last);
//! `wm_FirstName` … `wm_Mobile` (N, epoch nanoseconds of the field's last applied
//! `OccurredAt`) and `wmid_FirstName` … `wmid_Mobile` (L of S, the `EventId`s of the
//! changes applied at that time); `intent_<lease owner>` (M of field name → M of `at`, N,
//! epoch nanoseconds, and `ids`, L of S: per field the newest time among the changes the
//! lease may apply and the `EventId`s of its changes of that time, written with the lease and
//! removed with its release, so that one left behind names a lease never released);
//! `expires_at` (N, epoch seconds, the table's TTL attribute), pushed forward by every
//! request.
//!
//! Both requests may be sent twice by the SDK's retries when a reply is lost; each is
//! written so that its second sending finds its own first one and succeeds: a lease
//! request also succeeds on the lease it holds itself, a release also on the lease it
//! gave up itself while nobody has taken the user since.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};

use crate::domain::error::ErrorClass;
use crate::domain::identity::{Field, InstanceId, UserId};
use crate::domain::ports::{CallFailure, Lease, Leased, Watermarks};
use crate::domain::watermark::{FieldWatermarks, Mark};

/// The key of a user's watermarks: `<instance id>#<user id>` (ids, never ARNs), the
/// table's partition key `pk`.
#[must_use]
pub fn item_key(instance: &InstanceId, user: &UserId) -> String {
    format!("{}#{}", instance.as_str(), user.as_str())
}

/// The key of the deferral notes of the SQS message `message_id`: a prefix no user's
/// `<instance id>#<user id>` can have (an instance id holds no `.`).
#[must_use]
pub fn deferrals_key(message_id: &str) -> String {
    format!("{DEFERRALS_PREFIX}{message_id}")
}

/// The prefix of every deferral note's `pk`.
pub const DEFERRALS_PREFIX: &str = "deferrals.sqs#";
/// In a deferral note: the receives (NS) that only deferred the message.
pub const DEFERRED_RECEIVES: &str = "deferred_receives";

/// The partition key attribute (SPEC §2.5).
pub const KEY: &str = "pk";
/// The item's TTL attribute.
pub const EXPIRY: &str = "expires_at";
const LEASE_OWNER: &str = "lease_owner";
const LEASE_UNTIL: &str = "lease_until";
const LEASE_RELEASED: &str = "lease_released";
const INTENT_PREFIX: &str = "intent_";

/// The attribute holding the intent of the lease `owner`.
fn intent_attribute(owner: &str) -> String {
    format!("{INTENT_PREFIX}{owner}")
}

/// In a stored intent's field: the time (N, nanoseconds) and the `EventId`s of the
/// lease's changes of that time (L of S).
const INTENT_AT: &str = "at";
const INTENT_IDS: &str = "ids";

/// The intent as stored: per field a map of its time and the ids of the changes of that
/// time, so that those changes, judged again together, are not held off by it.
fn intent_value(intent: &FieldWatermarks) -> AttributeValue {
    AttributeValue::M(
        Field::ALL
            .into_iter()
            .filter_map(|f| {
                let mark = intent.mark(f)?;
                let ids = mark.events.iter().cloned().map(AttributeValue::S).collect();
                Some((
                    f.as_str().to_owned(),
                    AttributeValue::M(HashMap::from([
                        (
                            INTENT_AT.to_owned(),
                            AttributeValue::N(nanos(mark.at).to_string()),
                        ),
                        (INTENT_IDS.to_owned(), AttributeValue::L(ids)),
                    ])),
                ))
            })
            .collect(),
    )
}

/// One field of a stored intent: a map of time and ids, or (as stored before the ids
/// were kept) the bare time, which names no change.
fn intent_mark(value: &AttributeValue) -> Option<Mark> {
    let whole = |v: &AttributeValue| v.as_n().ok().and_then(|n| n.parse::<i64>().ok());
    if let Ok(map) = value.as_m() {
        let at = whole(map.get(INTENT_AT)?)?;
        let events = match map.get(INTENT_IDS) {
            None => Vec::new(),
            Some(ids) => ids
                .as_l()
                .ok()?
                .iter()
                .map(|v| v.as_s().ok().cloned())
                .collect::<Option<Vec<_>>>()?,
        };
        return Some(Mark {
            at: DateTime::from_timestamp_nanos(at),
            events,
        });
    }
    Some(Mark {
        at: DateTime::from_timestamp_nanos(whole(value)?),
        events: Vec::new(),
    })
}

/// The intents in `item` other than `own`'s: leases that were never released.
fn read_unsettled(
    item: &HashMap<String, AttributeValue>,
    own: &str,
) -> Result<Vec<(String, FieldWatermarks)>, String> {
    let mut out = Vec::new();
    for (name, value) in item {
        let Some(owner) = name.strip_prefix(INTENT_PREFIX) else {
            continue;
        };
        if owner == own {
            continue;
        }
        let map = value
            .as_m()
            .map_err(|_| "a lease intent in the watermark item is not a map".to_owned())?;
        let mut marks = FieldWatermarks::default();
        for field in Field::ALL {
            let Some(n) = map.get(field.as_str()) else {
                continue;
            };
            let mark = intent_mark(n).ok_or_else(|| {
                "a lease intent in the watermark item holds a field that is not a time with ids"
                    .to_owned()
            })?;
            marks = marks.with_mark(field, mark);
        }
        out.push((owner.to_owned(), marks));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Whether `marks` hold every field of `intent` at or past its time.
fn covers(marks: &FieldWatermarks, intent: &FieldWatermarks) -> bool {
    Field::ALL.into_iter().all(|f| match intent.get(f) {
        None => true,
        Some(at) => marks.get(f).is_some_and(|m| m >= at),
    })
}

/// The attribute holding a field's watermark.
pub fn watermark_attribute(field: Field) -> String {
    format!("wm_{}", field.as_str())
}

/// The attribute holding the `EventId`s of the changes that set a field's watermark.
pub fn watermark_events_attribute(field: Field) -> String {
    format!("wmid_{}", field.as_str())
}

pub struct DynamoWatermarks {
    client: Client,
    table: String,
    /// How long an item outlives its last request.
    retention: Duration,
    /// Unique to this container; each lease adds a counter to it.
    container: String,
    leases: AtomicU64,
}

impl DynamoWatermarks {
    /// Watermarks in `table`, each item kept `retention` after its last request.
    pub fn new(client: Client, table: impl Into<String>, retention: Duration) -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        DynamoWatermarks {
            client,
            table: table.into(),
            retention,
            container: format!("{:x}-{started:x}", std::process::id()),
            leases: AtomicU64::new(0),
        }
    }

    fn expiry(&self, now: DateTime<Utc>) -> AttributeValue {
        let secs = now
            .timestamp()
            .saturating_add(self.retention.as_secs() as i64);
        AttributeValue::N(secs.to_string())
    }
}

fn millis(at: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(at.timestamp_millis().to_string())
}

/// Epoch nanoseconds, saturating outside 1677–2262 (no real `OccurredAt` is there).
fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() > 0 {
        i64::MAX
    } else {
        i64::MIN
    })
}

fn read_watermarks(item: &HashMap<String, AttributeValue>) -> Result<FieldWatermarks, String> {
    let mut marks = FieldWatermarks::default();
    for field in Field::ALL {
        let name = watermark_attribute(field);
        let Some(value) = item.get(&name) else {
            continue;
        };
        let n = value
            .as_n()
            .ok()
            .and_then(|n| n.parse::<i64>().ok())
            .ok_or_else(|| format!("the watermark item's {name} is not a whole number"))?;
        let events_name = watermark_events_attribute(field);
        let events = match item.get(&events_name) {
            None => Vec::new(),
            Some(value) => value
                .as_l()
                .ok()
                .and_then(|l| {
                    l.iter()
                        .map(|v| v.as_s().ok().cloned())
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| {
                    format!("the watermark item's {events_name} is not a list of strings")
                })?,
        };
        marks = marks.with_mark(
            field,
            Mark {
                at: DateTime::from_timestamp_nanos(n),
                events,
            },
        );
    }
    Ok(marks)
}

/// Every failure of the guard is `UnknownError`: retryable, and never a reason to
/// apply a change unguarded. The message says which kind, without the item's contents.
fn failure(
    operation: &'static str,
    err: &SdkError<UpdateItemError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> CallFailure {
    let what = what_failed(err);
    let step = match operation {
        "acquire" => "taking the lease",
        "note" => "noting a deferral",
        "read notes" => "reading the deferral notes",
        _ => "writing the watermarks",
    };
    CallFailure::new(
        ErrorClass::UnknownError,
        format!("staleness guard: {step} failed: {what}"),
    )
}

/// Which kind of failure an `UpdateItem` on the table met, without the item's contents.
pub(super) fn what_failed(
    err: &SdkError<UpdateItemError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> &'static str {
    match err {
        SdkError::ServiceError(service) => match service.err() {
            UpdateItemError::ConditionalCheckFailedException(_) => {
                "the lease was no longer held, or a watermark would have moved back"
            }
            UpdateItemError::ResourceNotFoundException(_) => "the table does not exist",
            UpdateItemError::ProvisionedThroughputExceededException(_)
            | UpdateItemError::RequestLimitExceeded(_)
            | UpdateItemError::ThrottlingException(_) => "DynamoDB throttled the request",
            UpdateItemError::InternalServerError(_) => "DynamoDB failed internally",
            UpdateItemError::TransactionConflictException(_)
            | UpdateItemError::ReplicatedWriteConflictException(_) => {
                "a conflicting write to the item"
            }
            // `Unhandled` and variants added in later SDK versions.
            e => match e.code() {
                Some("ThrottlingException" | "ProvisionedThroughputExceededException") => {
                    "DynamoDB throttled the request"
                }
                _ => "an error this function does not model",
            },
        },
        SdkError::TimeoutError(_) => "a timeout",
        SdkError::DispatchFailure(_) => "a connection failure",
        SdkError::ResponseError(_) => "an unreadable response",
        SdkError::ConstructionFailure(_) => "a request that could not be built",
        _ => "an unknown SDK error",
    }
}

impl Watermarks for DynamoWatermarks {
    async fn acquire(
        &self,
        instance: &InstanceId,
        user: &UserId,
        until: DateTime<Utc>,
        intent: &FieldWatermarks,
    ) -> Result<Option<Leased>, CallFailure> {
        let now = Utc::now();
        let mut lease = Lease {
            key: item_key(instance, user),
            owner: format!(
                "{}-{}",
                self.container,
                self.leases.fetch_add(1, Ordering::Relaxed)
            ),
            until,
            unsettled: Vec::new(),
        };
        let mut update = "SET #owner = :me, #until = :until, #exp = :exp".to_owned();
        let mut request = self.client.update_item();
        if !intent.is_empty() {
            update.push_str(", #intent = :intent");
            request = request
                .expression_attribute_names("#intent", intent_attribute(&lease.owner))
                .expression_attribute_values(":intent", intent_value(intent));
        }
        let sent = request
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(lease.key.clone()))
            .update_expression(update)
            // `#owner = :me`: this very request, sent again by the SDK after its reply
            // was lost, finds the lease it took.
            .condition_expression("attribute_not_exists(#until) OR #until < :now OR #owner = :me")
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_names("#exp", EXPIRY)
            .expression_attribute_values(":me", AttributeValue::S(lease.owner.clone()))
            .expression_attribute_values(":until", millis(until))
            .expression_attribute_values(":now", millis(now))
            .expression_attribute_values(":exp", self.expiry(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(failure("acquire", &e)),
        };
        let item = out.attributes().cloned().unwrap_or_default();
        let read = read_watermarks(&item)
            .and_then(|marks| Ok((marks, read_unsettled(&item, &lease.owner)?)));
        let (watermarks, unsettled) = match read {
            Ok(read) => read,
            Err(problem) => {
                // The lease is held: give it up before failing.
                let _ = self.release(&lease, None).await;
                return Err(CallFailure::new(
                    ErrorClass::UnknownError,
                    format!("staleness guard: {problem}"),
                ));
            }
        };
        let unsettled_marks = unsettled
            .iter()
            .fold(FieldWatermarks::default(), |all, (_, m)| all.max(m));
        lease.unsettled = unsettled;
        Ok(Some(Leased {
            lease,
            watermarks,
            unsettled: unsettled_marks,
        }))
    }

    async fn release(
        &self,
        lease: &Lease,
        advanced: Option<&FieldWatermarks>,
    ) -> Result<(), CallFailure> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(lease.key.clone()))
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_names("#exp", EXPIRY)
            .expression_attribute_names("#released", LEASE_RELEASED)
            .expression_attribute_values(":me", AttributeValue::S(lease.owner.clone()))
            .expression_attribute_values(":exp", self.expiry(Utc::now()));
        let mut sets = vec!["#exp = :exp".to_owned(), "#released = :me".to_owned()];
        // This lease's intent goes with it, and so does every unsettled intent the
        // watermarks now cover.
        let mut removes = vec![
            "#owner".to_owned(),
            "#until".to_owned(),
            "#intent".to_owned(),
        ];
        request = request.expression_attribute_names("#intent", intent_attribute(&lease.owner));
        if let Some(advanced) = advanced {
            for (i, (owner, intent)) in lease.unsettled.iter().enumerate() {
                if covers(advanced, intent) {
                    let name = format!("#u{i}");
                    request = request.expression_attribute_names(&name, intent_attribute(owner));
                    removes.push(name);
                }
            }
        }
        // Held, or given up by this very request sent again after its reply was lost
        // (nobody has taken the user since).
        let mut conditions =
            vec!["(#owner = :me OR (attribute_not_exists(#owner) AND #released = :me))".to_owned()];
        for (i, field) in Field::ALL.into_iter().enumerate() {
            let Some(mark) = advanced.and_then(|m| m.mark(field)) else {
                continue;
            };
            let (name, value) = (format!("#w{i}"), format!(":w{i}"));
            let (ids_name, ids_value) = (format!("#e{i}"), format!(":e{i}"));
            sets.push(format!("{name} = {value}"));
            sets.push(format!("{ids_name} = {ids_value}"));
            // Forward only, even should the lease logic ever be wrong.
            conditions.push(format!(
                "(attribute_not_exists({name}) OR {name} <= {value})"
            ));
            let ids = mark.events.iter().cloned().map(AttributeValue::S).collect();
            request = request
                .expression_attribute_names(&name, watermark_attribute(field))
                .expression_attribute_values(&value, AttributeValue::N(nanos(mark.at).to_string()))
                .expression_attribute_names(&ids_name, watermark_events_attribute(field))
                .expression_attribute_values(&ids_value, AttributeValue::L(ids));
        }
        request
            .update_expression(format!(
                "SET {} REMOVE {}",
                sets.join(", "),
                removes.join(", ")
            ))
            .condition_expression(conditions.join(" AND "))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("release", &e))
    }

    async fn note_deferral(&self, message_id: &str, receive: u32) -> Result<(), CallFailure> {
        // `ADD` to a number set: the same receive noted twice (a request sent again
        // after its reply was lost) is noted once.
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(deferrals_key(message_id)))
            .update_expression("ADD #r :r SET #exp = :exp")
            .expression_attribute_names("#r", DEFERRED_RECEIVES)
            .expression_attribute_names("#exp", EXPIRY)
            .expression_attribute_values(":r", AttributeValue::Ns(vec![receive.to_string()]))
            .expression_attribute_values(":exp", self.expiry(Utc::now()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("note", &e))
    }

    async fn deferrals(&self, message_id: &str) -> Result<Vec<u32>, CallFailure> {
        // Read with the guard's one permission, `dynamodb:UpdateItem`: a write of nothing
        // new on an item that exists returns it; none is there when nothing was noted.
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(deferrals_key(message_id)))
            .update_expression("SET #exp = :exp")
            .condition_expression("attribute_exists(#r)")
            .expression_attribute_names("#r", DEFERRED_RECEIVES)
            .expression_attribute_names("#exp", EXPIRY)
            .expression_attribute_values(":exp", self.expiry(Utc::now()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            // Nothing noted; and a table that does not exist holds no notes (every guarded
            // change fails on its lease meanwhile, and counts each of its receives).
            Err(SdkError::ServiceError(e))
                if matches!(
                    e.err(),
                    UpdateItemError::ConditionalCheckFailedException(_)
                        | UpdateItemError::ResourceNotFoundException(_)
                ) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(failure("read notes", &e)),
        };
        let noted = out
            .attributes()
            .and_then(|item| item.get(DEFERRED_RECEIVES))
            .and_then(|v| v.as_ns().ok())
            .map(|ns| {
                ns.iter()
                    .map(|n| n.parse::<u32>())
                    .collect::<Result<Vec<_>, _>>()
            });
        match noted {
            Some(Ok(receives)) => Ok(receives),
            _ => Err(CallFailure::new(
                ErrorClass::UnknownError,
                "staleness guard: a deferral note is not a set of receive counts",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_item_key_is_the_instance_id_and_the_user_id() {
        let key = item_key(
            &InstanceId::parse("arn:aws:connect:us-east-1:123456789012:instance/i-1").unwrap(),
            &UserId::parse("u-1").unwrap(),
        );
        assert_eq!(key, "i-1#u-1");
    }
}
