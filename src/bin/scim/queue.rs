//! The accepted change as a canonical document on the function's source queue (SPEC §8):
//! `InstanceId`, `UserId`, the changed fields only (a cleared one as `null`), `OccurredAt`
//! when the request arrived and `EventId` `scim-` and API Gateway's request id. A FIFO
//! source queue gets the user id as the message group, so one user's changes keep
//! their order, and the event id as the deduplication id.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use chrono::{DateTime, SecondsFormat, Utc};
use connect_identity_sync::domain::change::IdentityInfo;
use connect_identity_sync::domain::identity::{Field, InstanceId, UserId};
use connect_identity_sync::outbound::dead_letter::refusal;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub struct SourceQueue {
    client: Client,
    url: String,
}

/// One change to queue.
pub struct Change<'a> {
    pub instance: &'a InstanceId,
    pub user: &'a UserId,
    /// The identity once applied, and the fields that differ from now.
    pub info: &'a IdentityInfo,
    pub changed: &'a [Field],
    pub occurred_at: DateTime<Utc>,
    pub event_id: &'a str,
}

pub fn document(change: &Change<'_>) -> String {
    let identity: Map<String, Value> = change
        .changed
        .iter()
        .map(|f| (f.as_str().to_owned(), json!(change.info.get(*f))))
        .collect();
    json!({
        "InstanceId": change.instance.as_str(),
        "UserId": change.user.as_str(),
        "IdentityInfo": identity,
        "EventId": change.event_id,
        "OccurredAt": change.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
    })
    .to_string()
}

impl SourceQueue {
    pub fn new(shared: &SdkConfig, url: String) -> Self {
        use aws_config::retry::RetryConfig;
        use aws_config::timeout::TimeoutConfig;
        // A short, bounded send: the identity provider is waiting, and a 503 with
        // Retry-After is better than an answer it gave up on.
        let config = aws_sdk_sqs::config::Builder::from(shared)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(2)
                    .with_initial_backoff(Duration::from_millis(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(1))
                    .operation_timeout(Duration::from_secs(3))
                    .build(),
            )
            .build();
        SourceQueue {
            client: Client::from_conf(config),
            url,
        }
    }

    /// Sends the change; `Err` (without values) when the queue did not take it.
    pub async fn send(&self, change: &Change<'_>) -> Result<(), String> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(document(change));
        if self.url.ends_with(".fifo") {
            let dedup = hex(&Sha256::digest(change.event_id.as_bytes()));
            request = request
                .message_group_id(change.user.as_str())
                .message_deduplication_id(dedup);
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|e| refusal(&e, "of a change to the source queue"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_carries_only_the_changed_fields_and_a_clear_as_null() {
        let instance = InstanceId::parse("11111111-2222-3333-4444-555555555555").unwrap();
        let user = UserId::parse("u-1").unwrap();
        let info = IdentityInfo {
            first_name: Some("Ana".into()),
            last_name: Some("Lee".into()),
            ..IdentityInfo::default()
        };
        let at = DateTime::parse_from_rfc3339("2026-12-07T01:02:03.456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let body = document(&Change {
            instance: &instance,
            user: &user,
            info: &info,
            changed: &[Field::LastName, Field::Mobile],
            occurred_at: at,
            event_id: "scim-abc",
        });
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["IdentityInfo"],
            json!({"LastName": "Lee", "Mobile": null})
        );
        assert_eq!(v["UserId"], "u-1");
        assert_eq!(v["EventId"], "scim-abc");
        assert_eq!(v["OccurredAt"], "2026-12-07T01:02:03.456789Z");
    }
}
