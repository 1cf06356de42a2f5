//! Envelope detection: an SQS event or a direct EventBridge event, told apart by shape.
//! Each SQS record is read on its own, so one bad body never fails its neighbours.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{Carrier, read_document, read_time};
use crate::domain::document::ChangeDocument;
use crate::domain::error::Failure;
use crate::domain::record::{Record, SourceKind};

/// The records of one invocation.
#[derive(Debug)]
pub enum Invocation {
    Sqs { records: Vec<Record>, fifo: bool },
    EventBridge(Box<Record>),
}

/// Reads an invocation payload.
///
/// # Errors
/// `MalformedEvent` when the payload is neither an SQS event nor an EventBridge event;
/// nothing is dead-lettered for it.
pub fn read_invocation(payload: &Value) -> Result<Invocation, Failure> {
    let Value::Object(map) = payload else {
        return Err(Failure::malformed("the payload is not a JSON object"));
    };
    if let Some(records) = map.get("Records") {
        let Value::Array(records) = records else {
            return Err(Failure::malformed("Records is not an array"));
        };
        let from_sqs = |r: &Value| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs");
        if !records.iter().all(from_sqs) {
            return Err(Failure::malformed(
                "Records holds a record whose eventSource is not aws:sqs",
            ));
        }
        let fifo = records.iter().any(|r| {
            r.get("eventSourceARN")
                .and_then(Value::as_str)
                .is_some_and(|arn| arn.ends_with(".fifo"))
        });
        let records = records.iter().map(|r| sqs_record(r, fifo)).collect();
        return Ok(Invocation::Sqs { records, fifo });
    }
    if is_eventbridge(map) {
        let id = map
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("(no event id)")
            .to_owned();
        return Ok(Invocation::EventBridge(Box::new(Record {
            kind: SourceKind::EventBridge,
            source_id: id,
            receive_count: 1,
            group: None,
            body: sqs_safe_json(payload),
            document: eventbridge_document(map, Carrier::default()),
            event_id_hint: event_id_hint(payload, None),
        })));
    }
    Err(Failure::malformed(
        "the payload is neither an SQS event nor an EventBridge event",
    ))
}

fn is_eventbridge(map: &Map<String, Value>) -> bool {
    map.contains_key("detail-type") && map.contains_key("detail")
}

/// Reads the change document of an EventBridge event: its `id` and `time` are the
/// defaults for `EventId` and `OccurredAt`, its `source` is checked against
/// `TRUSTED_SOURCES`.
fn eventbridge_document(
    map: &Map<String, Value>,
    outer: Carrier,
) -> Result<ChangeDocument, Failure> {
    let text = |key: &str| match map.get(key) {
        Some(Value::String(s)) => Ok(s.as_str()),
        _ => Err(Failure::malformed(format!(
            "the EventBridge event has no string {key}"
        ))),
    };
    let id = text("id")?;
    let source = text("source")?;
    text("detail-type")?;
    let time = match map.get("time") {
        Some(Value::String(t)) => Some(read_time("time", t)?),
        None | Some(Value::Null) => None,
        Some(_) => return Err(Failure::malformed("the EventBridge time is not a string")),
    };
    let carrier = Carrier {
        event_id: Some(id.to_owned()).or(outer.event_id),
        occurred_at: time.or(outer.occurred_at),
        source: Some(source.to_owned()),
    };
    read_document(&map["detail"], carrier)
}

/// The whole event as JSON text that SQS takes as a message body: the noncharacters
/// U+FFFE and U+FFFF, which SQS refuses and which can only stand inside JSON strings,
/// are written as escapes (the same JSON).
fn sqs_safe_json(value: &Value) -> String {
    let text = value.to_string();
    if text.contains(['\u{FFFE}', '\u{FFFF}']) {
        text.replace('\u{FFFE}', "\\ufffe")
            .replace('\u{FFFF}', "\\uffff")
    } else {
        text
    }
}

/// The best-effort event id of a record whose document may not read: the document's
/// `EventId` when it is a non-empty string, else an EventBridge event's `id`, else
/// `outer` (the SQS `messageId`).
fn event_id_hint(value: &Value, outer: Option<&str>) -> Option<String> {
    let text = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let eventbridge = matches!(value, Value::Object(map) if is_eventbridge(map));
    let document = if eventbridge {
        value.get("detail").unwrap_or(&Value::Null)
    } else {
        value
    };
    text(document, "EventId")
        .or_else(|| eventbridge.then(|| text(value, "id")).flatten())
        .or_else(|| outer.map(str::to_owned))
}

fn sqs_record(raw: &Value, fifo: bool) -> Record {
    let message_id = raw
        .get("messageId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let attribute = |key: &str| {
        raw.get("attributes")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    };
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
    let body = raw
        .get("body")
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty());
    let parsed = body.map(serde_json::from_str::<Value>);
    let event_id_hint = match &parsed {
        Some(Ok(value)) => event_id_hint(value, message_id.as_deref()),
        _ => message_id.clone(),
    };
    let document = match (&message_id, parsed) {
        (None, _) => Err(Failure::malformed("the SQS record has no messageId")),
        (Some(_), None) => Err(Failure::malformed("the SQS record has no string body")),
        (Some(_), Some(Err(_))) => Err(Failure::malformed("the SQS body is not JSON")),
        (Some(id), Some(Ok(value))) => sqs_body_document(
            &value,
            Carrier {
                event_id: Some(id.clone()),
                occurred_at: sent_at,
                source: None,
            },
        ),
    };
    Record {
        kind: SourceKind::Sqs,
        source_id: message_id.unwrap_or_default(),
        receive_count,
        group,
        // SQS takes no empty message body: a record without one is dead-lettered as
        // the whole record, the only thing there is to keep.
        body: body.map_or_else(|| sqs_safe_json(raw), str::to_owned),
        document,
        event_id_hint,
    }
}

/// An SQS body holds a whole EventBridge event (a rule targeting the queue) or a bare
/// change document.
fn sqs_body_document(value: &Value, carrier: Carrier) -> Result<ChangeDocument, Failure> {
    match value {
        Value::Object(map) if is_eventbridge(map) => {
            // The event's own id and time win over the message's.
            eventbridge_document(map, carrier)
        }
        _ => read_document(value, carrier),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::document::RawUser;
    use crate::domain::error::ErrorClass;
    use serde_json::json;

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
        let Invocation::Sqs { records, fifo } = read_invocation(&payload).unwrap() else {
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

    #[test]
    fn an_eventbridge_event_in_an_sqs_body_gives_its_id_time_and_source() {
        let body = eventbridge(json!({"Username": "jdoe", "IdentityInfo": {}})).to_string();
        let Invocation::Sqs { records, .. } =
            read_invocation(&sqs(vec![record("m-1", &body)])).unwrap()
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
        let Invocation::EventBridge(rec) = read_invocation(&event).unwrap() else {
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
        let Invocation::EventBridge(rec) = read_invocation(&event).unwrap() else {
            panic!("expected EventBridge");
        };
        assert_eq!(rec.document.unwrap_err().class, ErrorClass::MalformedEvent);
    }

    #[test]
    fn a_fifo_source_keeps_message_groups() {
        let mut r = record("m-1", "{}");
        r["eventSourceARN"] = json!("arn:aws:sqs:us-east-1:1:changes.fifo");
        r["attributes"]["MessageGroupId"] = json!("g-1");
        let Invocation::Sqs { records, fifo } = read_invocation(&sqs(vec![r])).unwrap() else {
            panic!("expected SQS");
        };
        assert!(fifo);
        assert_eq!(records[0].group.as_deref(), Some("g-1"));
    }

    #[test]
    fn a_record_without_message_id_is_malformed() {
        let mut r = record("m-1", "{}");
        r.as_object_mut().unwrap().remove("messageId");
        let Invocation::Sqs { records, .. } = read_invocation(&sqs(vec![r])).unwrap() else {
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
                read_invocation(&bad).unwrap_err().class,
                ErrorClass::MalformedEvent,
                "{bad}"
            );
        }
    }

    fn only_record(payload: &Value) -> Record {
        let Invocation::Sqs { mut records, .. } = read_invocation(payload).unwrap() else {
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
    fn an_eventbridge_event_with_a_bad_detail_gives_its_detail_event_id_else_its_id() {
        let r = only_record(&sqs(vec![record(
            "m-1",
            &eventbridge(json!({"EventId": "idp-7", "IdentityInfo": 3})).to_string(),
        )]));
        assert!(r.document.is_err());
        assert_eq!(r.event_id_hint.as_deref(), Some("idp-7"));
        let Invocation::EventBridge(direct) =
            read_invocation(&eventbridge(json!("not an object"))).unwrap()
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
        let Invocation::EventBridge(rec) = read_invocation(&event).unwrap() else {
            panic!("expected EventBridge");
        };
        assert!(!rec.body.contains(['\u{FFFE}', '\u{FFFF}']), "{}", rec.body);
        let same: Value = serde_json::from_str(&rec.body).unwrap();
        assert_eq!(same, event);
    }
}
