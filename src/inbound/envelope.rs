//! Envelope detection: an SQS event or a direct EventBridge event, told apart by shape and
//! read from the payload's JSON text into `aws_lambda_events`' types. Each SQS record is
//! deserialised on its own, from its own text, so one bad record never fails its
//! neighbours.

use std::fmt;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Carrier, read_document, read_time};
use crate::domain::document::ChangeDocument;
use crate::domain::error::Failure;
use crate::domain::event_id;
use crate::domain::record::{
    EVENT_ID_ATTRIBUTE, OCCURRED_AT_ATTRIBUTE, OWN_FAILURES_ATTRIBUTE, Record, SourceKind,
};

/// The records of one invocation.
#[derive(Debug)]
pub enum Invocation {
    Sqs { records: Vec<Record>, fifo: bool },
    EventBridge(Box<Record>),
}

/// Reads an invocation payload from its JSON text.
///
/// # Errors
/// `MalformedEvent` when the payload is neither an SQS event nor an EventBridge event;
/// nothing is dead-lettered for it.
pub fn read_invocation(payload: &RawValue) -> Result<Invocation, Failure> {
    let Ok(shape) = serde_json::from_str::<Shape<'_>>(payload.get()) else {
        return Err(Failure::malformed("the payload is not a JSON object"));
    };
    if let Some(RecordTexts(records)) = shape.records {
        let Some(records) = records else {
            return Err(Failure::malformed("Records is not an array"));
        };
        // One record at a time: a record whose fields are not of the types Lambda sends
        // is a malformed record, not a malformed batch.
        let messages: Vec<Message<'_>> = records.into_iter().map(Message::read).collect();
        if !messages
            .iter()
            .all(|m| m.text(|m| &m.event_source, "eventSource") == Some("aws:sqs"))
        {
            return Err(Failure::malformed(
                "Records holds a record whose eventSource is not aws:sqs",
            ));
        }
        let fifo = messages.iter().any(|m| {
            m.text(|m| &m.event_source_arn, "eventSourceARN")
                .is_some_and(|arn| arn.ends_with(".fifo"))
        });
        let records = messages
            .into_iter()
            .map(|m| match m.read {
                Ok(message) => sqs_record(m.raw, message, fifo),
                Err(fields) => unreadable_sqs_record(m.raw, &fields, fifo),
            })
            .collect();
        return Ok(Invocation::Sqs { records, fifo });
    }
    if let (true, Some(detail)) = (shape.detail_type, shape.detail) {
        return Ok(Invocation::EventBridge(Box::new(direct_eventbridge(
            payload, detail, shape.id,
        ))));
    }
    Err(Failure::malformed(
        "the payload is neither an SQS event nor an EventBridge event",
    ))
}

/// The top-level keys that tell a payload's shape, each kept as its JSON text (the last
/// one where a key repeats, as a JSON object keeps it); every other key is skipped
/// unread.
#[derive(Default)]
struct Shape<'a> {
    records: Option<RecordTexts<'a>>,
    detail_type: bool,
    detail: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum ShapeKey {
    Records,
    #[serde(rename = "detail-type")]
    DetailType,
    #[serde(rename = "detail")]
    Detail,
    #[serde(rename = "id")]
    Id,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for Shape<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ShapeVisitor;
        impl<'de> Visitor<'de> for ShapeVisitor {
            type Value = Shape<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape<'de>, A::Error> {
                let mut shape = Shape::default();
                while let Some(key) = map.next_key::<ShapeKey>()? {
                    match key {
                        ShapeKey::Records => shape.records = Some(map.next_value()?),
                        ShapeKey::Detail => shape.detail = Some(map.next_value()?),
                        ShapeKey::Id => shape.id = Some(map.next_value()?),
                        ShapeKey::DetailType => {
                            map.next_value::<IgnoredAny>()?;
                            shape.detail_type = true;
                        }
                        ShapeKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(shape)
            }
        }
        deserializer.deserialize_map(ShapeVisitor)
    }
}

/// `Records`: each record's JSON text when it is an array, else `None` (read in the
/// same pass as the payload's other keys, so that a payload is scanned once for its
/// shape).
struct RecordTexts<'a>(Option<Vec<&'a RawValue>>);

impl<'de> Deserialize<'de> for RecordTexts<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RecordsVisitor;
        impl<'de> Visitor<'de> for RecordsVisitor {
            type Value = RecordTexts<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(record) = seq.next_element()? {
                    records.push(record);
                }
                Ok(RecordTexts(Some(records)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(RecordTexts(None))
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(RecordTexts(None))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(RecordTexts(None))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(RecordTexts(None))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(RecordTexts(None))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(RecordTexts(None))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(RecordTexts(None))
            }
        }
        deserializer.deserialize_any(RecordsVisitor)
    }
}

/// One SQS record: its JSON text and what it read as. A record that does not read as
/// an SQS message is kept as a JSON tree, to still be told by its raw fields.
struct Message<'a> {
    raw: &'a RawValue,
    read: Result<SqsMessage, Value>,
}

impl<'a> Message<'a> {
    fn read(raw: &'a RawValue) -> Self {
        let read = serde_json::from_str::<SqsMessage>(raw.get())
            .map_err(|_| serde_json::from_str::<Value>(raw.get()).unwrap_or(Value::Null));
        Message { raw, read }
    }

    /// A string field: as read into the message, or from the raw record.
    fn text<'s>(
        &'s self,
        typed: impl Fn(&SqsMessage) -> &Option<String>,
        key: &str,
    ) -> Option<&'s str> {
        match &self.read {
            Ok(message) => typed(message).as_deref(),
            Err(fields) => fields.get(key).and_then(Value::as_str),
        }
    }
}

/// A direct EventBridge event: one record whose body is the whole event.
fn direct_eventbridge(payload: &RawValue, detail: &RawValue, id: Option<&RawValue>) -> Record {
    let id = id
        .and_then(|id| serde_json::from_str::<String>(id.get()).ok())
        .filter(|s| !s.is_empty());
    let event = serde_json::from_str::<EventBridgeEvent<Value>>(payload.get());
    // The detail's EventId when it is a non-empty string, else the event's id.
    let hint = |detail: &Value| text(detail, "EventId").or_else(|| id.clone());
    let event_id_hint = match &event {
        Ok(event) => hint(&event.detail),
        Err(_) => hint(&serde_json::from_str(detail.get()).unwrap_or(Value::Null)),
    }
    .map(|id| event_id::plain(&id));
    let document = event
        .map_err(|_| unreadable_eventbridge())
        .and_then(|event| eventbridge_document(event, Carrier::default()));
    Record {
        kind: SourceKind::EventBridge,
        source_id: id.map_or_else(|| "(no event id)".to_owned(), |id| event_id::plain(&id)),
        receive_count: 1,
        carried_failures: 0,
        queue_arn: None,
        group: None,
        body: sqs_safe_json(payload.get()),
        document,
        event_id_hint,
    }
}

fn is_eventbridge(map: &serde_json::Map<String, Value>) -> bool {
    map.contains_key("detail-type") && map.contains_key("detail")
}

/// An EventBridge event whose envelope fields are missing or not of EventBridge's types.
/// The message names no value: a value in the wrong place may be personal data.
fn unreadable_eventbridge() -> Failure {
    Failure::malformed(
        "the EventBridge event's source, detail-type, time or resources are missing or not of EventBridge's types",
    )
}

/// Reads the change document of an EventBridge event: its `id` and `time` are the
/// defaults for `EventId` and `OccurredAt`, its `source` is checked against
/// `TRUSTED_SOURCES`.
fn eventbridge_document(
    event: EventBridgeEvent<Value>,
    outer: Carrier,
) -> Result<ChangeDocument, Failure> {
    let Some(id) = event.id else {
        return Err(Failure::malformed("the EventBridge event has no string id"));
    };
    let carrier = Carrier {
        event_id: Some(event_id::plain(&id)).or(outer.event_id),
        occurred_at: event.time.or(outer.occurred_at),
        source: Some(event.source),
    };
    read_document(&event.detail, carrier)
}

/// JSON text as SQS takes it for a message body: the noncharacters U+FFFE and U+FFFF,
/// which SQS refuses and which can only stand inside JSON strings, are written as
/// escapes (the same JSON). Anything else JSON text holds outside its strings is
/// whitespace SQS accepts.
fn sqs_safe_json(text: &str) -> String {
    if text.contains(['\u{FFFE}', '\u{FFFF}']) {
        text.replace('\u{FFFE}', "\\ufffe")
            .replace('\u{FFFF}', "\\uffff")
    } else {
        text.to_owned()
    }
}

/// `key` of a JSON object when it is a non-empty string.
fn text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The best-effort event id of an SQS body whose document may not read: the document's
/// `EventId` when it is a non-empty string, else an EventBridge event's `id`, else
/// `outer` (the record's `EventId` message attribute, else its `messageId`).
fn event_id_hint(body: &Value, outer: Option<&str>) -> Option<String> {
    let eventbridge = matches!(body, Value::Object(map) if is_eventbridge(map));
    let document = if eventbridge {
        body.get("detail").unwrap_or(&Value::Null)
    } else {
        body
    };
    text(document, "EventId")
        .or_else(|| eventbridge.then(|| text(body, "id")).flatten())
        .or_else(|| outer.map(str::to_owned))
        .map(|id| event_id::plain(&id))
}

/// One SQS message as Lambda sends it.
fn sqs_record(raw: &RawValue, message: SqsMessage, fifo: bool) -> Record {
    let SqsMessage {
        message_id,
        body,
        attributes,
        message_attributes,
        event_source_arn,
        ..
    } = message;
    let message_id = message_id.filter(|s| !s.is_empty());
    let attribute = |key: &str| attributes.get(key).map(String::as_str);
    let receive_count = attribute("ApproximateReceiveCount")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    // A record without a messageId cannot be handed back on its own; outside any
    // message group, it never holds back a group's later records either.
    let group = if fifo && message_id.is_some() {
        attribute("MessageGroupId").map(str::to_owned)
    } else {
        None
    };
    let sent_at = attribute("SentTimestamp")
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    // A dead letter carries the change's time and id as message attributes, and the
    // redrive command keeps them: a replayed change keeps its original time (rather than
    // its new SentTimestamp) and its id.
    let text_attribute = |key: &str| {
        message_attributes.get(key).map(|a| {
            a.data_type
                .as_deref()
                .is_some_and(|t| t == "String" || t.starts_with("String."))
                .then_some(a.string_value.as_deref())
                .flatten()
        })
    };
    let stamped_at = match text_attribute(OCCURRED_AT_ATTRIBUTE) {
        None => Ok(None),
        Some(raw) => raw
            .and_then(|raw| read_time(OCCURRED_AT_ATTRIBUTE, raw).ok())
            .map(Some)
            .ok_or_else(|| {
                Failure::malformed("the OccurredAt message attribute is not an RFC 3339 time")
            }),
    };
    // Own failures of the record's earlier copies, as the function wrote them on the copy
    // it queued again. Anything but a whole number of type Number counts as none: a
    // sender can raise the count (and be dead-lettered sooner), never lower it.
    let carried_failures = message_attributes
        .get(OWN_FAILURES_ATTRIBUTE)
        .filter(|a| {
            a.data_type
                .as_deref()
                .is_some_and(|t| t == "Number" || t.starts_with("Number."))
        })
        .and_then(|a| a.string_value.as_deref())
        .and_then(|n| n.trim().parse::<u64>().ok())
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
    let stamped_id = text_attribute(EVENT_ID_ATTRIBUTE)
        .flatten()
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let outer_id = stamped_id.or_else(|| message_id.clone());
    let body = body.filter(|b| !b.is_empty());
    let parsed = body.as_deref().map(serde_json::from_str::<Value>);
    let event_id_hint = match &parsed {
        Some(Ok(value)) => event_id_hint(value, outer_id.as_deref()),
        _ => outer_id.as_deref().map(event_id::plain),
    };
    let document = match (&message_id, parsed, stamped_at) {
        (None, _, _) => Err(Failure::malformed("the SQS record has no messageId")),
        (Some(_), None, _) => Err(Failure::malformed("the SQS record has no string body")),
        (Some(_), Some(Err(_)), _) => Err(Failure::malformed("the SQS body is not JSON")),
        (Some(_), Some(Ok(_)), Err(unreadable)) => Err(unreadable),
        (Some(_), Some(Ok(value)), Ok(stamped_at)) => sqs_body_document(
            value,
            Carrier {
                event_id: outer_id.as_deref().map(event_id::plain),
                occurred_at: stamped_at.or(sent_at),
                source: None,
            },
        ),
    };
    Record {
        kind: SourceKind::Sqs,
        source_id: message_id.unwrap_or_default(),
        receive_count,
        carried_failures,
        queue_arn: event_source_arn.filter(|arn| !arn.is_empty()),
        group,
        // SQS takes no empty message body: a record without one is dead-lettered as
        // the whole record, the only thing there is to keep.
        body: body.unwrap_or_else(|| sqs_safe_json(raw.get())),
        document,
        event_id_hint,
    }
}

/// A record whose fields are not of the types Lambda sends (a `messageId`, `body` or
/// attribute that is not a string, ...): malformed, known by its `messageId` when that
/// is a string, with its body (or, without a string body, the whole record) kept for
/// its dead letter.
fn unreadable_sqs_record(raw: &RawValue, fields: &Value, fifo: bool) -> Record {
    fn text<'a>(v: Option<&'a Value>, key: &str) -> Option<&'a str> {
        v.and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
    let attributes = fields.get("attributes");
    let message_id = text(Some(fields), "messageId").map(str::to_owned);
    let body = text(Some(fields), "body");
    let group = if fifo && message_id.is_some() {
        text(attributes, "MessageGroupId").map(str::to_owned)
    } else {
        None
    };
    let receive_count = text(attributes, "ApproximateReceiveCount")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    let failure = match (&message_id, body) {
        (None, _) => "the SQS record has no messageId",
        (Some(_), None) => "the SQS record has no string body",
        (Some(_), Some(_)) => "the SQS record's fields are not of the types Lambda sends",
    };
    Record {
        kind: SourceKind::Sqs,
        source_id: message_id.clone().unwrap_or_default(),
        receive_count,
        carried_failures: 0,
        queue_arn: None,
        group,
        body: body.map_or_else(|| sqs_safe_json(raw.get()), str::to_owned),
        document: Err(Failure::malformed(failure)),
        event_id_hint: message_id.as_deref().map(event_id::plain),
    }
}

/// An SQS body holds a whole EventBridge event (a rule targeting the queue) or a bare
/// change document.
fn sqs_body_document(value: Value, carrier: Carrier) -> Result<ChangeDocument, Failure> {
    match &value {
        Value::Object(map) if is_eventbridge(map) => {
            // The event's own id and time win over the message's.
            let event = serde_json::from_value::<EventBridgeEvent<Value>>(value)
                .map_err(|_| unreadable_eventbridge())?;
            eventbridge_document(event, carrier)
        }
        _ => read_document(&value, carrier),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::document::RawUser;
    use crate::domain::error::ErrorClass;
    use serde_json::json;

    /// Reads a payload from its JSON text, as the runtime hands it over.
    fn read(payload: &Value) -> Result<Invocation, Failure> {
        read_invocation(&serde_json::value::to_raw_value(payload).unwrap())
    }

    fn read_text(payload: &str) -> Result<Invocation, Failure> {
        read_invocation(&serde_json::from_str::<Box<RawValue>>(payload).unwrap())
    }

    fn sqs(records: Vec<Value>) -> Value {
        json!({ "Records": records })
    }

    fn record(id: &str, body: &str) -> Value {
        json!({
            "messageId": id, "receiptHandle": "r", "body": body,
            "attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1764403200000"},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:identity-changes",
            "awsRegion": "us-east-1"
        })
    }

    fn eventbridge(detail: Value) -> Value {
        json!({
            "version": "0", "id": "ev-1", "detail-type": "UserUpdated", "source": "com.okta",
            "account": "123456789012", "time": "2026-11-29T08:00:00Z", "region": "us-east-1",
            "resources": [], "detail": detail
        })
    }

    #[test]
    fn each_sqs_record_is_read_on_its_own() {
        let good = json!({"UserId": "u-1", "IdentityInfo": {"FirstName": "A"}}).to_string();
        let payload = sqs(vec![
            record("m-1", &good),
            record("m-2", "{not json"),
            record("m-3", &good),
        ]);
        let Invocation::Sqs { records, fifo } = read(&payload).unwrap() else {
            panic!("expected SQS");
        };
        assert!(!fifo);
        assert_eq!(records.len(), 3);
        assert!(records[0].document.is_ok());
        assert_eq!(
            records[1].document.as_ref().unwrap_err().class,
            ErrorClass::MalformedEvent
        );
        assert!(records[2].document.is_ok());
        assert_eq!(
            records[1].body, "{not json",
            "the body is kept byte for byte"
        );
        assert_eq!(records[0].receive_count, 2);
        let doc = records[0].document.as_ref().unwrap();
        assert_eq!(
            doc.event_id.as_deref(),
            Some("m-1"),
            "messageId is the default EventId"
        );
        assert_eq!(
            doc.occurred_at.unwrap().timestamp_millis(),
            1_764_403_200_000,
            "SentTimestamp is the default OccurredAt"
        );
    }

    fn with_attribute(mut record: Value, name: &str, data_type: &str, value: &str) -> Value {
        record["messageAttributes"][name] = json!({
            "stringValue": value, "stringListValues": [], "binaryListValues": [],
            "dataType": data_type
        });
        record
    }

    fn only_document(payload: &Value) -> Result<ChangeDocument, Failure> {
        let Invocation::Sqs { mut records, .. } = read(payload).unwrap() else {
            panic!("expected SQS");
        };
        records.remove(0).document
    }

    #[test]
    fn a_replayed_bare_document_keeps_the_time_and_id_of_its_dead_letter() {
        let bare = json!({"UserId": "u-1", "IdentityInfo": {"FirstName": "A"}}).to_string();
        let replayed = with_attribute(
            with_attribute(
                record("m-new", &bare),
                "OccurredAt",
                "String",
                "2026-11-29T07:59:58.123456Z",
            ),
            "EventId",
            "String",
            "m-original",
        );
        let doc = only_document(&sqs(vec![replayed])).unwrap();
        assert_eq!(
            doc.occurred_at.unwrap().to_rfc3339(),
            "2026-11-29T07:59:58.123456+00:00",
            "the attribute, to the microsecond, not the new SentTimestamp"
        );
        assert_eq!(doc.event_id.as_deref(), Some("m-original"));
    }

    #[test]
    fn the_documents_own_time_and_eventbridges_time_come_before_the_attribute() {
        let own = json!({"UserId": "u-1", "IdentityInfo": {}, "OccurredAt": "2026-11-29T06:00:00Z", "EventId": "e-own"});
        let in_eventbridge = eventbridge(json!({"UserId": "u-1", "IdentityInfo": {}}));
        for (body, at, id) in [
            (own, "2026-11-29T06:00:00+00:00", "e-own"),
            (in_eventbridge, "2026-11-29T08:00:00+00:00", "ev-1"),
        ] {
            let r = with_attribute(
                with_attribute(
                    record("m-1", &body.to_string()),
                    "OccurredAt",
                    "String",
                    "2020-01-01T00:00:00Z",
                ),
                "EventId",
                "String",
                "m-0",
            );
            let doc = only_document(&sqs(vec![r])).unwrap();
            assert_eq!(doc.occurred_at.unwrap().to_rfc3339(), at);
            assert_eq!(doc.event_id.as_deref(), Some(id));
        }
    }

    #[test]
    fn an_occurred_at_attribute_that_is_not_an_rfc3339_string_is_malformed() {
        let bare = json!({"UserId": "u-1", "IdentityInfo": {}}).to_string();
        for (data_type, value) in [("String", "yesterday"), ("Number", "1764403200000")] {
            let r = with_attribute(record("m-1", &bare), "OccurredAt", data_type, value);
            let e = only_document(&sqs(vec![r])).unwrap_err();
            assert_eq!(e.class, ErrorClass::MalformedEvent, "{data_type}");
            assert!(!e.message.contains(value), "{}", e.message);
        }
        let custom = with_attribute(
            record("m-1", &bare),
            "OccurredAt",
            "String.rfc3339",
            "2026-11-29T00:00:00Z",
        );
        assert!(only_document(&sqs(vec![custom])).is_ok());
    }

    #[test]
    fn a_record_whose_fields_are_not_of_the_types_lambda_sends_fails_alone() {
        let good = json!({"UserId": "u-1", "IdentityInfo": {"FirstName": "A"}}).to_string();
        let mut odd = record("m-2", &good);
        odd["attributes"]["ApproximateReceiveCount"] = json!(2);
        let payload = sqs(vec![record("m-1", &good), odd, record("m-3", &good)]);
        let Invocation::Sqs { records, .. } = read(&payload).unwrap() else {
            panic!("expected SQS");
        };
        assert!(records[0].document.is_ok());
        assert!(records[2].document.is_ok());
        assert_eq!(
            records[1].document.as_ref().unwrap_err().class,
            ErrorClass::MalformedEvent
        );
        assert_eq!(records[1].source_id, "m-2", "still known by its messageId");
        assert_eq!(records[1].body, good, "the body is kept byte for byte");
    }

    #[test]
    fn an_eventbridge_event_with_an_unreadable_time_is_malformed_without_echoing_it() {
        let mut event = eventbridge(json!({"UserId": "u-1", "IdentityInfo": {}}));
        event["time"] = json!("jane.doe@example.com");
        let Invocation::EventBridge(rec) = read(&event).unwrap() else {
            panic!("expected EventBridge");
        };
        let failure = rec.document.unwrap_err();
        assert_eq!(failure.class, ErrorClass::MalformedEvent);
        assert!(!failure.message.contains("jane"), "{}", failure.message);
    }

    #[test]
    fn an_eventbridge_event_in_an_sqs_body_gives_its_id_time_and_source() {
        let body = eventbridge(json!({"Username": "jdoe", "IdentityInfo": {}})).to_string();
        let Invocation::Sqs { records, .. } = read(&sqs(vec![record("m-1", &body)])).unwrap()
        else {
            panic!("expected SQS");
        };
        let doc = records[0].document.as_ref().unwrap();
        assert_eq!(doc.event_id.as_deref(), Some("ev-1"));
        assert_eq!(doc.source.as_deref(), Some("com.okta"));
        assert_eq!(
            doc.occurred_at.unwrap().to_rfc3339(),
            "2026-11-29T08:00:00+00:00"
        );
        assert_eq!(doc.user, RawUser::Username("jdoe".into()));
    }

    #[test]
    fn a_direct_eventbridge_event_is_one_record_with_the_whole_event_as_body() {
        let event = eventbridge(json!({"UserId": "u-1", "IdentityInfo": {"Mobile": null}}));
        let Invocation::EventBridge(rec) = read(&event).unwrap() else {
            panic!("expected EventBridge");
        };
        assert_eq!(rec.source_id, "ev-1");
        assert_eq!(rec.kind, SourceKind::EventBridge);
        let body: Value = serde_json::from_str(&rec.body).unwrap();
        assert_eq!(body, event);
        assert!(rec.document.is_ok());
    }

    #[test]
    fn an_eventbridge_event_with_a_bad_detail_is_a_malformed_record_not_a_bad_payload() {
        let event = eventbridge(json!("not an object"));
        let Invocation::EventBridge(rec) = read(&event).unwrap() else {
            panic!("expected EventBridge");
        };
        assert_eq!(rec.document.unwrap_err().class, ErrorClass::MalformedEvent);
    }

    #[test]
    fn a_fifo_source_keeps_message_groups() {
        let mut r = record("m-1", "{}");
        r["eventSourceARN"] = json!("arn:aws:sqs:us-east-1:1:changes.fifo");
        r["attributes"]["MessageGroupId"] = json!("g-1");
        let Invocation::Sqs { records, fifo } = read(&sqs(vec![r])).unwrap() else {
            panic!("expected SQS");
        };
        assert!(fifo);
        assert_eq!(records[0].group.as_deref(), Some("g-1"));
    }

    #[test]
    fn a_record_without_message_id_is_malformed() {
        let mut r = record("m-1", "{}");
        r.as_object_mut().unwrap().remove("messageId");
        let Invocation::Sqs { records, .. } = read(&sqs(vec![r])).unwrap() else {
            panic!("expected SQS");
        };
        assert_eq!(records[0].source_id, "");
        assert_eq!(
            records[0].document.as_ref().unwrap_err().class,
            ErrorClass::MalformedEvent
        );
    }

    #[test]
    fn any_other_payload_is_malformed() {
        for bad in [
            json!(null),
            json!([1, 2]),
            json!({"hello": "world"}),
            json!({"Records": "x"}),
            json!({"Records": [{"eventSource": "aws:sns"}]}),
        ] {
            assert_eq!(
                read(&bad).unwrap_err().class,
                ErrorClass::MalformedEvent,
                "{bad}"
            );
        }
    }

    fn only_record(payload: &Value) -> Record {
        let Invocation::Sqs { mut records, .. } = read(payload).unwrap() else {
            panic!("expected SQS");
        };
        records.remove(0)
    }

    #[test]
    fn a_body_that_is_not_json_keeps_the_message_id_as_its_event_id() {
        let r = only_record(&sqs(vec![record("m-1", "{\"EventId\": \"e-1\"")]));
        assert!(r.document.is_err());
        assert_eq!(r.source_id, "m-1");
        assert_eq!(r.event_id_hint.as_deref(), Some("m-1"));
    }

    #[test]
    fn a_json_body_that_is_no_document_still_gives_its_event_id() {
        let body = json!({"EventId": "idp-42", "IdentityInfo": {"FirstName": "A"}}).to_string();
        let r = only_record(&sqs(vec![record("m-1", &body)]));
        assert!(r.document.is_err(), "no user reference");
        assert_eq!(r.event_id_hint.as_deref(), Some("idp-42"));
        let body = json!({"EventId": 42, "UserId": "u-1"}).to_string();
        let r = only_record(&sqs(vec![record("m-2", &body)]));
        assert!(r.document.is_err());
        assert_eq!(
            r.event_id_hint.as_deref(),
            Some("m-2"),
            "an EventId that is not a string is not an id"
        );
    }

    #[test]
    fn an_event_id_that_is_not_a_plain_token_is_known_by_its_digest_readable_or_not() {
        let free_text = "wilhelmina.quackenbush@example.com";
        let digest = crate::domain::event_id::plain(free_text);
        assert_ne!(digest, free_text);
        // Readable, unreadable, inside an EventBridge event, and an event's own id.
        let readable = json!({"EventId": free_text, "UserId": "u-1", "IdentityInfo": {}});
        let unreadable = json!({"EventId": free_text, "IdentityInfo": 3});
        for body in [
            readable.to_string(),
            unreadable.to_string(),
            eventbridge(readable.clone()).to_string(),
        ] {
            let r = only_record(&sqs(vec![record("m-1", &body)]));
            assert_eq!(r.event_id_hint.as_deref(), Some(digest.as_str()), "{body}");
            if let Ok(doc) = &r.document {
                assert_eq!(doc.event_id.as_deref(), Some(digest.as_str()), "{body}");
            }
        }
        let mut event = eventbridge(json!({"UserId": "u-1", "IdentityInfo": {}}));
        event["id"] = json!(free_text);
        let Invocation::EventBridge(direct) = read(&event).unwrap() else {
            panic!("expected EventBridge");
        };
        assert_eq!(direct.source_id, digest);
        assert_eq!(direct.event_id_hint.as_deref(), Some(digest.as_str()));
        assert_eq!(
            direct.document.unwrap().event_id.as_deref(),
            Some(digest.as_str())
        );
    }

    #[test]
    fn an_eventbridge_event_with_a_bad_detail_gives_its_detail_event_id_else_its_id() {
        let r = only_record(&sqs(vec![record(
            "m-1",
            &eventbridge(json!({"EventId": "idp-7", "IdentityInfo": 3})).to_string(),
        )]));
        assert!(r.document.is_err());
        assert_eq!(r.event_id_hint.as_deref(), Some("idp-7"));
        let Invocation::EventBridge(direct) = read(&eventbridge(json!("not an object"))).unwrap()
        else {
            panic!("expected EventBridge");
        };
        assert!(direct.document.is_err());
        assert_eq!(direct.source_id, "ev-1");
        assert_eq!(direct.event_id_hint.as_deref(), Some("ev-1"));
    }

    #[test]
    fn a_record_without_message_id_belongs_to_no_fifo_group() {
        let mut r = record("m-1", "{}");
        r["eventSourceARN"] = json!("arn:aws:sqs:us-east-1:1:changes.fifo");
        r["attributes"]["MessageGroupId"] = json!("g-1");
        for missing in [json!(null), json!(""), json!(7)] {
            let mut r = r.clone();
            r["messageId"] = missing.clone();
            let rec = only_record(&sqs(vec![r]));
            assert_eq!(rec.group, None, "messageId {missing}");
            assert_eq!(rec.source_id, "");
            assert_eq!(
                rec.document.as_ref().unwrap_err().class,
                ErrorClass::MalformedEvent
            );
        }
    }

    #[test]
    fn a_record_without_a_body_is_kept_whole_for_its_dead_letter() {
        for body in [json!(null), json!(""), json!({"UserId": "u-1"})] {
            let mut r = record("m-1", "x");
            r["body"] = body.clone();
            let rec = only_record(&sqs(vec![r.clone()]));
            assert_eq!(
                rec.document.as_ref().unwrap_err().class,
                ErrorClass::MalformedEvent
            );
            let kept: Value = serde_json::from_str(&rec.body).unwrap();
            assert_eq!(kept, r, "body {body}");
        }
    }

    #[test]
    fn noncharacters_in_a_direct_event_are_escaped_in_the_same_json() {
        let event = eventbridge(json!({"UserId": "u-\u{FFFE}\u{FFFF}", "IdentityInfo": {}}));
        let Invocation::EventBridge(rec) = read(&event).unwrap() else {
            panic!("expected EventBridge");
        };
        assert!(!rec.body.contains(['\u{FFFE}', '\u{FFFF}']), "{}", rec.body);
        let same: Value = serde_json::from_str(&rec.body).unwrap();
        assert_eq!(same, event);
    }

    #[test]
    fn a_record_whose_attributes_are_not_an_object_fails_alone_and_keeps_its_message_id() {
        let good = json!({"UserId": "u-1", "IdentityInfo": {"FirstName": "A"}}).to_string();
        let mut odd = record("m-2", &good);
        odd["attributes"] = json!(5);
        let payload = sqs(vec![record("m-1", &good), odd, record("m-3", &good)]);
        let Invocation::Sqs { records, .. } = read(&payload).unwrap() else {
            panic!("expected SQS");
        };
        assert_eq!(records.len(), 3);
        assert!(records[0].document.is_ok());
        assert!(records[2].document.is_ok());
        assert_eq!(
            records[1].document.as_ref().unwrap_err().class,
            ErrorClass::MalformedEvent
        );
        assert_eq!(records[1].source_id, "m-2");
        assert_eq!(records[1].body, good, "the body is kept byte for byte");
    }

    #[test]
    fn a_direct_event_is_kept_as_the_json_text_it_came_in() {
        let text = r#"{"detail-type": "UserUpdated", "id": "ev-1", "source": "com.okta",
            "time": "2026-11-29T08:00:00Z", "resources": [], "version": "0",
            "detail": {"UserId": "u-1", "IdentityInfo": {"LastName": "D\u00f6e"}}}"#;
        let Invocation::EventBridge(rec) = read_text(text).unwrap() else {
            panic!("expected EventBridge");
        };
        assert_eq!(rec.body, text, "the whole event, byte for byte");
        assert_eq!(rec.source_id, "ev-1");
        assert!(rec.document.is_ok());
    }

    #[test]
    fn top_level_keys_read_as_json_objects_read_them() {
        let good = json!({"UserId": "u-1", "IdentityInfo": {"FirstName": "A"}}).to_string();
        let records = json!([record("m-1", &good)]);
        // A key written with an escape is the same key; of a repeated key, the last one
        // counts.
        for text in [
            format!(r#"{{"Rec\u006frds": {records}}}"#),
            format!(r#"{{"Records": "x", "Records": {records}}}"#),
        ] {
            let Invocation::Sqs { records, .. } = read_text(&text).unwrap() else {
                panic!("expected SQS: {text}");
            };
            assert!(records[0].document.is_ok(), "{text}");
        }
        assert_eq!(
            read_text(r#"{"Records": [], "Records": null}"#)
                .unwrap_err()
                .class,
            ErrorClass::MalformedEvent
        );
    }
}
