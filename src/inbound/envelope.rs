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
            body: payload.to_string(),
            document: eventbridge_document(map, Carrier::default()),
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
    let group = if fifo {
        attribute("MessageGroupId").map(str::to_owned)
    } else {
        None
    };
    let sent_at = attribute("SentTimestamp")
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    let body = raw.get("body").and_then(Value::as_str);
    let document = match (&message_id, body) {
        (None, _) => Err(Failure::malformed("the SQS record has no messageId")),
        (Some(_), None) => Err(Failure::malformed("the SQS record has no string body")),
        (Some(id), Some(body)) => sqs_body_document(
            body,
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
        body: body.unwrap_or_default().to_owned(),
        document,
    }
}

/// An SQS body holds a whole EventBridge event (a rule targeting the queue) or a bare
/// change document.
fn sqs_body_document(body: &str, carrier: Carrier) -> Result<ChangeDocument, Failure> {
    let value: Value =
        serde_json::from_str(body).map_err(|_| Failure::malformed("the SQS body is not JSON"))?;
    match &value {
        Value::Object(map) if is_eventbridge(map) => {
            // The event's own id and time win over the message's.
            eventbridge_document(map, carrier)
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
}
