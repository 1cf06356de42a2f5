//! The dead-letter queues behind the `DeadLetterSink` port: one SQS queue per failure
//! class, the message format of SPEC §3.1.

use std::collections::BTreeMap;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::operation::send_message::builders::SendMessageFluentBuilder;
use aws_sdk_sqs::types::MessageAttributeValue;
use chrono::SecondsFormat;

use crate::domain::error::ErrorClass;
use crate::domain::ports::{DeadLetter, DeadLetterSink, Requeue};
use crate::domain::record::{EVENT_ID_ATTRIBUTE, OCCURRED_AT_ATTRIBUTE, OWN_FAILURES_ATTRIBUTE};

/// The SPEC caps `ErrorMessage` at 1024 bytes.
const ERROR_MESSAGE_MAX: usize = 1024;
/// An id attribute (`SourceId`, `EventId`, `InstanceId`, `UserId`) is cut to this many
/// bytes: Connect's and SQS's ids are far shorter, and the body keeps the whole value.
const ID_MAX: usize = 512;
/// The message group of a dead letter without one, on a FIFO dead-letter queue (and
/// of a redriven message without one, on a FIFO target).
pub const DEFAULT_GROUP: &str = "connect-identity-sync";
/// The message attribute that names a dead letter's failure class.
pub const ERROR_CLASS_ATTRIBUTE: &str = "ErrorClass";
/// SQS message sizes (body and every attribute's name, type and value): 256 KiB, the
/// limit of every queue until 2025 and still a common `MaximumMessageSize`, and 1 MiB,
/// the limit since. A dead letter fits the smallest of them that holds its body, so a
/// dead-letter queue configured like its source queue takes every letter.
const MESSAGE_SIZES: [usize; 2] = [256 * 1024, 1024 * 1024];

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

/// The URL of the SQS queue `arn` (`arn:<partition>:sqs:<region>:<account>:<name>`).
/// SQS names the queue by this URL whichever endpoint the client sends to (a configured
/// `AWS_ENDPOINT_URL_SQS`, a VPC endpoint), so no look-up and no `sqs:GetQueueUrl`.
pub fn queue_url(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("sqs"), Some(region), Some(account), Some(name)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    };
    if ![partition, region, account, name].into_iter().all(plain) {
        return None;
    }
    let domain = match partition {
        "aws-cn" => "amazonaws.com.cn",
        _ => "amazonaws.com",
    };
    Some(format!("https://sqs.{region}.{domain}/{account}/{name}"))
}

/// The message attributes of a re-queued copy: (name, data type, value). Ids and time
/// as a dead letter carries them, so the copy is the same change.
pub fn requeue_attributes(copy: &Requeue) -> Vec<(&'static str, &'static str, String)> {
    let mut attrs = vec![(
        OWN_FAILURES_ATTRIBUTE,
        "Number",
        copy.own_failures.to_string(),
    )];
    if let Some(at) = copy.occurred_at {
        attrs.push((
            OCCURRED_AT_ATTRIBUTE,
            "String",
            at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        ));
    }
    if let Some(id) = copy.event_id.as_deref().map(|id| bounded(id, ID_MAX)) {
        if !id.is_empty() {
            attrs.push((EVENT_ID_ATTRIBUTE, "String", id));
        }
    }
    attrs
}

/// The message attributes of a dead letter: (name, data type, value).
///
/// Every value holds only characters SQS accepts (others become U+FFFD), ids are cut to
/// 512 bytes and `ErrorMessage` to 1024, each on a character boundary. `OccurredAt`
/// keeps the change's time to the nanosecond it was given with, so that a replay is
/// ordered as the change was. Body and attributes together fit [`message_size_for`]
/// the body: when they would not, the optional ids go first (`EventId`, `UserId`,
/// `InstanceId`), then `ErrorMessage` is cut shorter, then the other attributes go,
/// `ErrorClass` last. The body is never changed.
pub fn attributes(letter: &DeadLetter) -> Vec<(&'static str, &'static str, String)> {
    let id = |v: &str| Some(bounded(v, ID_MAX)).filter(|v| !v.is_empty());
    let message = Some(bounded(&letter.message, ERROR_MESSAGE_MAX))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "(no message)".to_owned());
    // Most needed first: what is kept when the body leaves little room.
    let wanted: [(&'static str, &'static str, Option<String>); 10] = [
        (
            ERROR_CLASS_ATTRIBUTE,
            "String",
            Some(letter.class.as_str().to_owned()),
        ),
        ("SourceId", "String", id(&letter.source_id)),
        (
            "SourceType",
            "String",
            Some(letter.source.as_str().to_owned()),
        ),
        (
            "FailedAt",
            "String",
            Some(
                letter
                    .failed_at
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
            ),
        ),
        ("Attempts", "Number", Some(letter.attempts.to_string())),
        (
            OCCURRED_AT_ATTRIBUTE,
            "String",
            letter
                .occurred_at
                .map(|at| at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        ),
        ("ErrorMessage", "String", Some(message)),
        (
            "InstanceId",
            "String",
            letter.instance_id.as_deref().and_then(id),
        ),
        ("UserId", "String", letter.user_id.as_deref().and_then(id)),
        (
            EVENT_ID_ATTRIBUTE,
            "String",
            letter.event_id.as_deref().and_then(id),
        ),
    ];
    let mut room = message_size_for(letter.body.len()).saturating_sub(letter.body.len());
    let mut attrs = Vec::new();
    for (name, data_type, value) in wanted {
        let Some(mut value) = value else { continue };
        let overhead = name.len() + data_type.len();
        if overhead + value.len() > room {
            if name != "ErrorMessage" || overhead >= room {
                continue;
            }
            value = cut(&value, room - overhead).to_owned();
            if value.is_empty() {
                continue;
            }
        }
        room -= overhead + value.len();
        attrs.push((name, data_type, value));
    }
    attrs
}

/// The largest message SQS is asked to take with a body of `body_len` bytes.
pub fn message_size_for(body_len: usize) -> usize {
    MESSAGE_SIZES
        .into_iter()
        .find(|&size| body_len <= size)
        .unwrap_or(body_len)
}

/// Characters SQS accepts in a message body or attribute value.
fn sqs_accepts(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `s` with every character SQS refuses replaced by U+FFFD, cut to `max` bytes.
fn bounded(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if sqs_accepts(c) { c } else { '\u{FFFD}' })
        .collect();
    cut(&clean, max).to_owned()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Characters SQS allows in message group and deduplication ids.
fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".contains(c)
}

/// SQS message deduplication ids allow at most 128 of [`id_char`]. A record without a
/// source id is told apart from others by its body.
fn dedup_id(letter: &DeadLetter) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let source: String = letter.source_id.chars().filter(|c| id_char(*c)).collect();
    let source = if source.is_empty() {
        let mut hasher = DefaultHasher::new();
        letter.body.hash(&mut hasher);
        format!("body-{:016x}", hasher.finish())
    } else {
        source
    };
    format!("{}-{source}", letter.class.as_str())
        .chars()
        .take(128)
        .collect()
}

/// The record's message group, kept to what SQS accepts in one.
fn group_id(letter: &DeadLetter) -> String {
    let group: String = letter
        .group
        .as_deref()
        .unwrap_or_default()
        .chars()
        .filter(|c| id_char(*c))
        .take(128)
        .collect();
    if group.is_empty() {
        DEFAULT_GROUP.to_owned()
    } else {
        group
    }
}

impl DeadLetterSink for SqsDeadLetters {
    async fn requeue(&self, copy: &Requeue) -> Result<(), String> {
        let Some(url) = queue_url(&copy.queue_arn) else {
            return Err("the source queue's ARN is not an SQS queue ARN".to_owned());
        };
        if url.ends_with(".fifo") {
            return Err("a FIFO queue's record is not queued again".to_owned());
        }
        let request = self
            .client
            .send_message()
            .queue_url(url)
            .message_body(copy.body.clone())
            .delay_seconds(i32::try_from(copy.delay_seconds.min(900)).unwrap_or(900));
        let what = "of a deferred record to its source queue";
        // A copy may take until the invocation's dead-letter-by instant, not only a dead
        // letter's budget: under load SQS answers late, and a copy not sent costs the
        // record a note of its deferral instead.
        let timeouts = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
            .connect_timeout(copy.within)
            .operation_timeout(copy.within)
            .build();
        with_attributes(request, requeue_attributes(copy))?
            .customize()
            .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(timeouts))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| refusal(&e, what))
    }

    async fn send(&self, letter: &DeadLetter) -> Result<(), String> {
        let Some(url) = self.queues.get(&letter.class) else {
            return Err(format!("no dead-letter queue for {}", letter.class));
        };
        let mut request = self
            .client
            .send_message()
            .queue_url(url)
            .message_body(letter.body.clone());
        if url.ends_with(".fifo") {
            request = request
                .message_group_id(group_id(letter))
                .message_deduplication_id(dedup_id(letter));
        }
        let to = format!("to the {} queue", letter.class);
        send_with_attributes(request, attributes(letter), &to).await
    }
}

/// Sends `request` with its String and Number `attributes`; a refusal names the request
/// (`what`) and SQS's error code, never the message.
async fn send_with_attributes(
    request: SendMessageFluentBuilder,
    attributes: Vec<(&'static str, &'static str, String)>,
    what: &str,
) -> Result<(), String> {
    with_attributes(request, attributes)?
        .send()
        .await
        .map(|_| ())
        .map_err(|e| refusal(&e, what))
}

/// `request` with its String and Number `attributes`.
fn with_attributes(
    mut request: SendMessageFluentBuilder,
    attributes: Vec<(&'static str, &'static str, String)>,
) -> Result<SendMessageFluentBuilder, String> {
    for (name, data_type, value) in attributes {
        let value = MessageAttributeValue::builder()
            .data_type(data_type)
            .string_value(value)
            .build()
            .map_err(|_| format!("the {name} attribute could not be built"))?;
        request = request.message_attributes(name, value);
    }
    Ok(request)
}

/// A failed send, named by the request (`what`: what was sent, and where) and SQS's
/// error code, never the message.
pub fn refusal<E: aws_sdk_sqs::error::ProvideErrorMetadata, R>(
    e: &aws_sdk_sqs::error::SdkError<E, R>,
    what: &str,
) -> String {
    let code = e
        .as_service_error()
        .and_then(aws_sdk_sqs::error::ProvideErrorMetadata::code)
        .unwrap_or("no service error code");
    format!("SQS SendMessage {what} failed ({code})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_arn_names_its_url_on_the_regions_endpoint() {
        assert_eq!(
            queue_url("arn:aws:sqs:eu-west-1:123456789012:identity-changes").as_deref(),
            Some("https://sqs.eu-west-1.amazonaws.com/123456789012/identity-changes")
        );
        assert_eq!(
            queue_url("arn:aws-cn:sqs:cn-north-1:123456789012:q").as_deref(),
            Some("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q")
        );
        for bad in [
            "",
            "arn:aws:sns:eu-west-1:123456789012:topic",
            "arn:aws:sqs:eu-west-1:123456789012",
            "arn:aws:sqs:eu-west-1:123456789012:a/b",
            "arn:aws:sqs:eu-west-1::q",
        ] {
            assert_eq!(queue_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_copy_carries_its_own_failures_time_and_id() {
        let copy = Requeue {
            queue_arn: "arn:aws:sqs:us-east-1:1:q".to_owned(),
            body: "{}".to_owned(),
            occurred_at: chrono::DateTime::parse_from_rfc3339("2026-03-01T10:00:00.123456Z")
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc)),
            event_id: Some("ev-1".to_owned()),
            own_failures: 2,
            delay_seconds: 5,
            within: std::time::Duration::from_millis(250),
        };
        assert_eq!(
            requeue_attributes(&copy),
            vec![
                ("OwnFailures", "Number", "2".to_owned()),
                (
                    "OccurredAt",
                    "String",
                    "2026-03-01T10:00:00.123456Z".to_owned()
                ),
                ("EventId", "String", "ev-1".to_owned()),
            ]
        );
        let bare = Requeue {
            occurred_at: None,
            event_id: None,
            own_failures: 0,
            ..copy
        };
        assert_eq!(
            requeue_attributes(&bare),
            vec![("OwnFailures", "Number", "0".to_owned())]
        );
    }
}
