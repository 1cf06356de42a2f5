//! The dead-letter queues behind the `DeadLetterSink` port: one SQS queue per failure
//! class, the message format of SPEC §3.1.

use std::collections::BTreeMap;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageAttributeValue;
use chrono::SecondsFormat;

use crate::domain::error::ErrorClass;
use crate::domain::ports::{DeadLetter, DeadLetterSink};

/// SQS allows attribute values this long; the SPEC caps `ErrorMessage` at 1024 bytes.
const ERROR_MESSAGE_MAX: usize = 1024;
/// The message group of a dead letter without one, on a FIFO dead-letter queue (and
/// of a redriven message without one, on a FIFO target).
pub const DEFAULT_GROUP: &str = "connect-identity-sync";
/// The message attribute that names a dead letter's failure class.
pub const ERROR_CLASS_ATTRIBUTE: &str = "ErrorClass";

pub struct SqsDeadLetters {
    client: Client,
    queues: BTreeMap<ErrorClass, String>,
}

impl SqsDeadLetters {
    /// `queues` holds a URL for every class (the configuration guarantees it).
    pub fn new(client: Client, queues: BTreeMap<ErrorClass, String>) -> Self {
        SqsDeadLetters { client, queues }
    }
}

/// The message attributes of a dead letter, by name.
pub fn attributes(letter: &DeadLetter) -> Vec<(&'static str, &'static str, String)> {
    let mut attrs = vec![
        (
            ERROR_CLASS_ATTRIBUTE,
            "String",
            letter.class.as_str().to_owned(),
        ),
        (
            "ErrorMessage",
            "String",
            truncate(&letter.message, ERROR_MESSAGE_MAX),
        ),
        ("SourceType", "String", letter.source.as_str().to_owned()),
        (
            "FailedAt",
            "String",
            letter
                .failed_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
        ("Attempts", "Number", letter.attempts.to_string()),
    ];
    let optional = [
        (
            "SourceId",
            Some(&letter.source_id).filter(|s| !s.is_empty()),
        ),
        ("EventId", letter.event_id.as_ref()),
        ("InstanceId", letter.instance_id.as_ref()),
        ("UserId", letter.user_id.as_ref()),
    ];
    for (name, value) in optional {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            attrs.push((name, "String", v.clone()));
        }
    }
    attrs
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// SQS message deduplication ids allow at most 128 of these characters.
fn dedup_id(letter: &DeadLetter) -> String {
    format!("{}-{}", letter.class.as_str(), letter.source_id)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".contains(*c))
        .take(128)
        .collect()
}

impl DeadLetterSink for SqsDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<(), String> {
        let Some(url) = self.queues.get(&letter.class) else {
            return Err(format!("no dead-letter queue for {}", letter.class));
        };
        let mut request = self
            .client
            .send_message()
            .queue_url(url)
            .message_body(letter.body.clone());
        for (name, data_type, value) in attributes(letter) {
            let value = MessageAttributeValue::builder()
                .data_type(data_type)
                .string_value(value)
                .build()
                .map_err(|_| format!("the {name} attribute could not be built"))?;
            request = request.message_attributes(name, value);
        }
        if url.ends_with(".fifo") {
            request = request
                .message_group_id(letter.group.as_deref().unwrap_or(DEFAULT_GROUP))
                .message_deduplication_id(dedup_id(letter));
        }
        request.send().await.map(|_| ()).map_err(|e| {
            let code = e
                .as_service_error()
                .and_then(|s| aws_sdk_sqs::error::ProvideErrorMetadata::code(s))
                .unwrap_or("no service error code");
            format!(
                "SQS SendMessage to the {} queue failed ({code})",
                letter.class
            )
        })
    }
}
