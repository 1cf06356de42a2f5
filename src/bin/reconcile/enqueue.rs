//! The corrections as canonical change documents on the function's source queue: one
//! per user that differs, carrying only the differing fields, `OccurredAt` the time of
//! the export, so that the function judges each one as any other change (policy,
//! validation, the staleness guard). Sent ten to a `SendMessageBatch`.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use chrono::{DateTime, SecondsFormat, Utc};
use connect_identity_sync::domain::identity::InstanceId;
use serde_json::{Map, Value, json};

use crate::compare::Correction;

/// A correction for one user.
pub struct Document {
    pub user_id: String,
    pub body: String,
    pub event_id: String,
}

/// The canonical document of a correction. Its `EventId` is the user and the export's
/// time, so the same correction queued twice is one change to the staleness guard.
pub fn document(
    instance: &InstanceId,
    user_id: &str,
    correction: &Correction,
    as_of: DateTime<Utc>,
) -> Document {
    let identity: Map<String, Value> = correction
        .iter()
        .map(|(field, value)| (field.as_str().to_owned(), json!(value)))
        .collect();
    let event_id = format!("reconcile:{}:{user_id}", as_of.timestamp_millis());
    let body = json!({
        "InstanceId": instance.as_str(),
        "UserId": user_id,
        "IdentityInfo": identity,
        "EventId": event_id,
        "OccurredAt": as_of.to_rfc3339_opts(SecondsFormat::Millis, true),
    })
    .to_string();
    Document {
        user_id: user_id.to_owned(),
        body,
        event_id,
    }
}

/// What a send did.
#[derive(Debug, Default)]
pub struct Sent {
    pub sent: Vec<String>,
    /// (user id, reason without values).
    pub failed: Vec<(String, String)>,
}

/// Sends the documents to `queue`; a FIFO queue gets the user id as the message group
/// (one user's corrections in order) and the event id as the deduplication id.
pub async fn send(client: &Client, queue: &str, documents: &[Document]) -> Sent {
    let fifo = queue.ends_with(".fifo");
    let mut out = Sent::default();
    for chunk in documents.chunks(10) {
        let entries: Result<Vec<_>, _> = chunk
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&d.body);
                let entry = if fifo {
                    entry
                        .message_group_id(&d.user_id)
                        .message_deduplication_id(dedup_id(&d.event_id))
                } else {
                    entry
                };
                entry.build()
            })
            .collect();
        let result = match entries {
            Ok(entries) => client
                .send_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sqs_error(&e)),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(reply) => {
                let mut failed = vec![false; chunk.len()];
                for f in reply.failed() {
                    if let Ok(i) = f.id().parse::<usize>()
                        && let Some(d) = chunk.get(i)
                    {
                        failed[i] = true;
                        out.failed.push((d.user_id.clone(), f.code().to_owned()));
                    }
                }
                out.sent.extend(
                    chunk
                        .iter()
                        .zip(failed)
                        .filter(|(_, failed)| !failed)
                        .map(|(d, _)| d.user_id.clone()),
                );
            }
            Err(reason) => out
                .failed
                .extend(chunk.iter().map(|d| (d.user_id.clone(), reason.clone()))),
        }
    }
    out
}

/// A deduplication id: at most 128 characters of the allowed set.
fn dedup_id(event_id: &str) -> String {
    event_id
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '-' })
        .take(128)
        .collect()
}

fn sqs_error<E: aws_sdk_sqs::error::ProvideErrorMetadata>(
    e: &aws_sdk_sqs::error::SdkError<E>,
) -> String {
    // The code only: a service message may echo what was sent.
    e.as_service_error()
        .and_then(aws_sdk_sqs::error::ProvideErrorMetadata::code)
        .map_or_else(
            || "SQS could not be reached".to_owned(),
            |c| format!("SQS refused the batch: {c}"),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use connect_identity_sync::domain::identity::Field;

    #[test]
    fn a_correction_carries_only_the_differing_fields_and_the_exports_time() {
        let instance = InstanceId::parse("11111111-2222-3333-4444-555555555555").unwrap();
        let as_of = DateTime::parse_from_rfc3339("2026-12-01T08:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let correction = vec![
            (Field::Mobile, Some("+14155550199".to_owned())),
            (Field::SecondaryEmail, None),
        ];
        let doc = document(&instance, "u-1", &correction, as_of);
        let body: Value = serde_json::from_str(&doc.body).unwrap();
        assert_eq!(
            body,
            json!({
                "InstanceId": "11111111-2222-3333-4444-555555555555",
                "UserId": "u-1",
                "IdentityInfo": {"Mobile": "+14155550199", "SecondaryEmail": null},
                "EventId": "reconcile:1796112000250:u-1",
                "OccurredAt": "2026-12-01T08:00:00.250Z",
            })
        );
        assert_eq!(doc.event_id, "reconcile:1796112000250:u-1");
    }
}
