//! Moving dead letters back to a queue once their cause is fixed (SPEC §7): select by
//! failure class, send each body byte for byte with its attributes (`OccurredAt` and
//! `EventId` among them, so that a replayed change keeps its time) under a rate limit,
//! delete it from the dead-letter queue only after the send succeeded, and leave every
//! other message where it was, visible again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageAttributeValue,
    MessageSystemAttributeName, QueueAttributeName,
};
use chrono::{DateTime, SecondsFormat, Utc};

use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::record::OCCURRED_AT_ATTRIBUTE;
use connect_identity_sync::limiter::Limiter;
use connect_identity_sync::outbound::dead_letter::{DEFAULT_GROUP, ERROR_CLASS_ATTRIBUTE};

/// The row of messages that carry no `ErrorClass` attribute (not written by this function).
pub const UNCLASSIFIED: &str = "(none)";

/// What to move, from where to where, how fast.
#[derive(Debug, Clone)]
pub struct Options {
    pub from: String,
    pub to: String,
    /// The classes to move; empty moves every message.
    pub classes: Vec<ErrorClass>,
    /// Moves at most this many messages.
    pub max: Option<u64>,
    /// Reads and counts, sends and deletes nothing.
    pub dry_run: bool,
    /// Messages sent per second at most.
    pub rate: f64,
}

impl Options {
    fn selects(&self, class: Option<ErrorClass>) -> bool {
        self.classes.is_empty() || class.is_some_and(|c| self.classes.contains(&c))
    }
}

/// A failure class by its attribute name.
#[must_use]
pub fn parse_class(name: &str) -> Option<ErrorClass> {
    ErrorClass::ALL.into_iter().find(|c| c.as_str() == name)
}

/// Counts of one class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Row {
    pub seen: u64,
    pub moved: u64,
    pub left: u64,
}

/// A message that was selected and could not be moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmoved {
    pub message_id: String,
    pub class: String,
    pub reason: String,
}

/// What a run did, by class.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub rows: BTreeMap<String, Row>,
    /// Messages a dry run would have moved.
    pub would_move: u64,
    pub unmoved: Vec<Unmoved>,
}

impl Tally {
    #[must_use]
    pub fn seen(&self) -> u64 {
        self.rows.values().map(|r| r.seen).sum()
    }

    #[must_use]
    pub fn moved(&self) -> u64 {
        self.rows.values().map(|r| r.moved).sum()
    }

    /// Whether every selected message within `--max` was moved.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.unmoved.is_empty()
    }

    fn row(&mut self, class: &str) -> &mut Row {
        self.rows.entry(class.to_owned()).or_default()
    }
}

impl fmt::Display for Tally {
    /// One row per class: seen, moved, left.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .rows
            .keys()
            .map(String::len)
            .chain([ERROR_CLASS_ATTRIBUTE.len()])
            .max()
            .unwrap_or(0);
        writeln!(
            f,
            "{:<width$}  {:>8}  {:>8}  {:>8}",
            ERROR_CLASS_ATTRIBUTE, "seen", "moved", "left"
        )?;
        for (class, row) in &self.rows {
            writeln!(
                f,
                "{class:<width$}  {:>8}  {:>8}  {:>8}",
                row.seen, row.moved, row.left
            )?;
        }
        Ok(())
    }
}

/// The run could not go on (the dead-letter queue could not be read); what it did
/// until then is in the tally.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct Aborted {
    pub reason: String,
    pub tally: Tally,
}

/// The SQS client of the standard AWS configuration (`AWS_ENDPOINT_URL_SQS`,
/// `AWS_REGION`, credentials), with the function's retry mode.
pub async fn sqs_client() -> Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
        .load()
        .await;
    Client::new(&shared)
}

/// The queue's approximate number of visible messages, for a progress bar.
pub async fn approximate_depth(client: &Client, url: &str) -> Option<u64> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .ok()?;
    out.attributes()?
        .get(&QueueAttributeName::ApproximateNumberOfMessages)?
        .parse()
        .ok()
}

fn sqs_error<E: ProvideErrorMetadata>(
    operation: &str,
    e: &aws_sdk_sqs::error::SdkError<E>,
) -> String {
    let code = e
        .as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .map_or_else(|| e.to_string(), str::to_owned);
    format!("SQS {operation} failed ({code})")
}

/// Moves the selected messages of `options.from` to `options.to`, calling `progress`
/// after each message looked at.
///
/// Messages not moved (other classes, beyond `--max`, failed sends, a dry run) are kept
/// hidden while the queue is read, so that each is counted once, and made visible
/// again at the end.
///
/// # Errors
/// `Aborted` when the dead-letter queue cannot be read; messages already moved stay
/// moved and the others are made visible again.
pub async fn redrive(
    client: &Client,
    options: &Options,
    mut progress: impl FnMut(&Tally),
) -> Result<Tally, Aborted> {
    let limiter = Limiter::per_second(options.rate);
    // Long enough for a full batch at the chosen rate; a message that reappears anyway
    // is recognised by its id.
    let hide_for = (10.0 / options.rate.max(0.001)).ceil() as i32 + 60;
    let hide_for = hide_for.min(43_200);
    let fifo_target = options.to.ends_with(".fifo");

    let mut tally = Tally::default();
    let mut looked_at: HashSet<String> = HashSet::new();
    let mut held: HashMap<String, String> = HashMap::new();
    let mut taken: u64 = 0;
    let mut abort = None;

    'receive: while options.max.is_none_or(|m| taken < m) {
        let received = client
            .receive_message()
            .queue_url(&options.from)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(hide_for)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                abort = Some(sqs_error("ReceiveMessage", &e));
                break;
            }
        };
        let mut new = 0;
        for message in messages {
            let (Some(id), Some(handle)) = (message.message_id(), message.receipt_handle()) else {
                continue;
            };
            let (id, handle) = (id.to_owned(), handle.to_owned());
            if !looked_at.insert(id.clone()) {
                // Seen before and still here: keep it hidden under its new handle.
                held.insert(id, handle);
                continue;
            }
            new += 1;
            let label = class_label(&message);
            let class = parse_class(&label);
            tally.row(&label).seen += 1;
            let selected = options.selects(class) && options.max.is_none_or(|m| taken < m);
            if !selected {
                tally.row(&label).left += 1;
                held.insert(id, handle);
            } else if options.dry_run {
                taken += 1;
                tally.would_move += 1;
                tally.row(&label).left += 1;
                held.insert(id, handle);
            } else {
                taken += 1;
                limiter.take().await;
                match move_one(client, options, &message, &handle, fifo_target).await {
                    Ok(()) => tally.row(&label).moved += 1,
                    Err((reason, still_there)) => {
                        tally.row(&label).left += 1;
                        if still_there {
                            held.insert(id.clone(), handle);
                        }
                        tally.unmoved.push(Unmoved {
                            message_id: id,
                            class: label.clone(),
                            reason,
                        });
                    }
                }
            }
            progress(&tally);
        }
        if new == 0 {
            break 'receive;
        }
    }
    release(client, &options.from, held).await;
    match abort {
        Some(reason) => Err(Aborted { reason, tally }),
        None => Ok(tally),
    }
}

fn class_label(message: &Message) -> String {
    message
        .message_attributes()
        .and_then(|a| a.get(ERROR_CLASS_ATTRIBUTE))
        .and_then(|v| v.string_value())
        .map_or_else(|| UNCLASSIFIED.to_owned(), str::to_owned)
}

/// Sends one message to the target and deletes it from the dead-letter queue. On
/// failure: why, and whether the message is still in the dead-letter queue.
async fn move_one(
    client: &Client,
    options: &Options,
    message: &Message,
    handle: &str,
    fifo_target: bool,
) -> Result<(), (String, bool)> {
    let mut send = client
        .send_message()
        .queue_url(&options.to)
        .message_body(message.body().unwrap_or_default())
        .set_message_attributes(replay_attributes(message));
    if fifo_target {
        let group = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .map_or(DEFAULT_GROUP, String::as_str);
        // The dead letter's own id: a redrive that is run again after a send whose
        // delete failed is deduplicated by the target within SQS's five minutes.
        send = send
            .message_group_id(group)
            .message_deduplication_id(message.message_id().unwrap_or_default());
    }
    send.send()
        .await
        .map_err(|e| (sqs_error("SendMessage", &e), true))?;
    client
        .delete_message()
        .queue_url(&options.from)
        .receipt_handle(handle)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            (
                format!(
                    "{}: sent, but still in the dead-letter queue; a second redrive sends it again",
                    sqs_error("DeleteMessage", &e)
                ),
                true,
            )
        })
}

/// SQS takes at most this many message attributes.
const MAX_ATTRIBUTES: usize = 10;

/// The attributes a moved message is sent with: its own, among them the `OccurredAt` and
/// `EventId` the function reads, so that a replayed change keeps its time and id rather
/// than look as new as its new `SentTimestamp`. A message without `OccurredAt` (one the
/// source queue's own redrive policy moved, or a dead letter whose change had no time)
/// gets its `SentTimestamp`: it happened no later than that.
fn replay_attributes(message: &Message) -> Option<HashMap<String, MessageAttributeValue>> {
    let mut attributes = message.message_attributes().cloned().unwrap_or_default();
    if !attributes.contains_key(OCCURRED_AT_ATTRIBUTE) && attributes.len() < MAX_ATTRIBUTES {
        let sent = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(DateTime::<Utc>::from_timestamp_millis);
        if let Some(sent) = sent
            && let Ok(value) = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(sent.to_rfc3339_opts(SecondsFormat::Millis, true))
                .build()
        {
            attributes.insert(OCCURRED_AT_ATTRIBUTE.to_owned(), value);
        }
    }
    (!attributes.is_empty()).then_some(attributes)
}

/// Makes every held message visible again at once.
async fn release(client: &Client, queue: &str, held: HashMap<String, String>) {
    let handles: Vec<String> = held.into_values().collect();
    for chunk in handles.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, handle)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        if let Err(e) = client
            .change_message_visibility_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
        {
            eprintln!(
                "{}: the messages not moved become visible again when their visibility timeout ends",
                sqs_error("ChangeMessageVisibilityBatch", &e)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(classes: &[ErrorClass]) -> Options {
        Options {
            from: "http://q/dlq".into(),
            to: "http://q/src".into(),
            classes: classes.to_vec(),
            max: None,
            dry_run: false,
            rate: 1.0,
        }
    }

    #[test]
    fn without_a_class_every_message_is_selected_even_an_unclassified_one() {
        let o = options(&[]);
        assert!(o.selects(Some(ErrorClass::ThrottlingException)));
        assert!(o.selects(None));
    }

    #[test]
    fn with_classes_only_those_are_selected() {
        let o = options(&[ErrorClass::ValidationError, ErrorClass::UnknownError]);
        assert!(o.selects(Some(ErrorClass::UnknownError)));
        assert!(!o.selects(Some(ErrorClass::MalformedEvent)));
        assert!(!o.selects(None));
    }

    #[test]
    fn every_class_name_parses_and_nothing_else_does() {
        for class in ErrorClass::ALL {
            assert_eq!(parse_class(class.as_str()), Some(class));
        }
        assert_eq!(parse_class("validationerror"), None);
        assert_eq!(parse_class(UNCLASSIFIED), None);
    }

    #[test]
    fn the_table_has_one_row_per_class_with_seen_moved_left() {
        let mut t = Tally::default();
        *t.row("ValidationError") = Row {
            seen: 3,
            moved: 2,
            left: 1,
        };
        *t.row("MalformedEvent") = Row {
            seen: 1,
            moved: 0,
            left: 1,
        };
        let text = t.to_string();
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines,
            vec![
                vec!["ErrorClass", "seen", "moved", "left"],
                vec!["MalformedEvent", "1", "0", "1"],
                vec!["ValidationError", "3", "2", "1"],
            ]
        );
        assert_eq!((t.seen(), t.moved()), (4, 2));
    }

    fn text(value: &str) -> MessageAttributeValue {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .unwrap()
    }

    fn stored(attributes: &[(&str, &str)]) -> Message {
        let mut m = Message::builder()
            .message_id("m-1")
            .body("{}")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1764403200123");
        for (name, value) in attributes {
            m = m.message_attributes(*name, text(value));
        }
        m.build()
    }

    #[test]
    fn a_dead_letter_is_sent_on_with_its_time_and_id() {
        let m = stored(&[
            ("ErrorClass", "ThrottlingException"),
            ("OccurredAt", "2026-11-29T07:59:58.5Z"),
            ("EventId", "m-original"),
        ]);
        let sent = replay_attributes(&m).unwrap();
        assert_eq!(sent["OccurredAt"], text("2026-11-29T07:59:58.5Z"));
        assert_eq!(sent["EventId"], text("m-original"));
    }

    #[test]
    fn a_message_without_occurred_at_is_sent_with_its_sent_timestamp() {
        let sent = replay_attributes(&stored(&[])).unwrap();
        assert_eq!(sent["OccurredAt"], text("2025-11-29T08:00:00.123Z"));
        let full: Vec<(String, String)> =
            (0..10).map(|i| (format!("A{i}"), "x".to_owned())).collect();
        let full: Vec<(&str, &str)> = full.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let sent = replay_attributes(&stored(&full)).unwrap();
        assert_eq!(sent.len(), 10, "SQS takes no eleventh attribute");
    }
}
