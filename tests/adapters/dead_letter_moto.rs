//! The dead-letter adapter (`SqsDeadLetters`) against SQS as moto serves it over HTTP:
//! whatever a record holds — a huge or control-character `EventId`, ids with
//! characters SQS refuses, a body at the size limit, no source id — the letter is
//! sent, its body byte for byte, and its attributes hold only what SQS accepts within
//! the size SQS takes.
//!
//! moto checks only the body's length against the queue's `MaximumMessageSize`, not
//! the characters of attribute values nor their share of the size, so those are
//! checked here on what the queue received, by SQS's own rules.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{TimeZone, Utc};
use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::ports::{DeadLetter, DeadLetterSink};
use connect_identity_sync::domain::record::SourceKind;
use connect_identity_sync::outbound::dead_letter::SqsDeadLetters;
use harness::{Message, Moto, Sqs};

const KIB: usize = 1024;

struct Sqsd {
    _moto: Moto,
    sqs: Sqs,
}

async fn moto() -> Sqsd {
    let moto = Moto::start().await.expect("moto starts");
    let sqs = moto.sqs().await;
    Sqsd { _moto: moto, sqs }
}

/// A queue of `max_size` bytes (SQS's `MaximumMessageSize`).
async fn queue(sqs: &Sqs, name: &str, max_size: usize) -> String {
    let mut request = sqs
        .client()
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::MaximumMessageSize, max_size.to_string());
    if name.ends_with(".fifo") {
        request = request.attributes(QueueAttributeName::FifoQueue, "true");
    }
    request
        .send()
        .await
        .expect("queue created")
        .queue_url()
        .unwrap()
        .to_owned()
}

fn sink(sqs: &Sqs, url: &str) -> SqsDeadLetters {
    let queues: BTreeMap<ErrorClass, String> = ErrorClass::ALL
        .into_iter()
        .map(|c| (c, url.to_owned()))
        .collect();
    SqsDeadLetters::new(sqs.client().clone(), queues)
}

fn letter(body: impl Into<String>) -> DeadLetter {
    DeadLetter {
        class: ErrorClass::MalformedEvent,
        message: "the SQS body is not JSON".into(),
        source: SourceKind::Sqs,
        source_id: "059f36b4-87a3-44ab-83d2-661975830a7d".into(),
        failed_at: Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap(),
        event_id: Some("evt-1".into()),
        instance_id: Some("11111111-2222-3333-4444-555555555555".into()),
        user_id: Some("u-jdoe".into()),
        occurred_at: Some(Utc.with_ymd_and_hms(2026, 12, 1, 8, 59, 58).unwrap()),
        attempts: 3,
        body: body.into(),
        group: None,
    }
}

/// What SQS accepts in a message attribute value.
fn sqs_accepts(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The size SQS counts: the body plus each attribute's name, type and value.
fn size(m: &Message) -> usize {
    m.body.len()
        + m.message_attributes
            .iter()
            .map(|(name, a)| {
                name.len()
                    + a.data_type.len()
                    + a.string_value.as_deref().map_or(0, str::len)
                    + a.binary_value.as_ref().map_or(0, Vec::len)
            })
            .sum::<usize>()
}

/// Every attribute holds only characters SQS accepts and none is empty.
fn assert_acceptable(m: &Message) {
    for (name, a) in &m.message_attributes {
        let v = a.string_value.as_deref().unwrap_or_default();
        assert!(!v.is_empty(), "{name} is empty");
        assert!(
            v.chars().all(sqs_accepts),
            "{name} holds characters SQS refuses: {:?}",
            v.chars().filter(|c| !sqs_accepts(*c)).collect::<Vec<_>>()
        );
    }
}

async fn send_and_receive(sqs: &Sqs, url: &str, letter: &DeadLetter) -> Message {
    sink(sqs, url)
        .send(letter)
        .await
        .expect("the letter is sent");
    let mut got = sqs.drain(url).await.unwrap();
    assert_eq!(got.len(), 1, "{got:#?}");
    let m = got.remove(0);
    assert_eq!(m.body, letter.body, "the body is sent byte for byte");
    assert_acceptable(&m);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_kb_control_character_event_id_is_sent_cut_and_cleaned() {
    let s = moto().await;
    let url = queue(&s.sqs, "dlq-huge-id", 1024 * KIB).await;
    let mut l = letter("{\"EventId\": \"...\"}");
    l.event_id = Some(format!("\u{0}\u{1}\u{1b}evt{}", "x".repeat(200 * 1000)));
    let m = send_and_receive(&s.sqs, &url, &l).await;
    let event_id = m.attr("EventId").expect("EventId is kept, cut");
    assert!(event_id.len() <= 512, "{}", event_id.len());
    assert!(
        event_id.starts_with("\u{FFFD}\u{FFFD}\u{FFFD}evtxxx"),
        "{event_id:?}"
    );
    assert_eq!(m.attr("ErrorClass"), Some("MalformedEvent"));
    assert_eq!(m.attr("UserId"), Some("u-jdoe"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_with_characters_sqs_refuses_are_sent_with_those_replaced() {
    let s = moto().await;
    let url = queue(&s.sqs, "dlq-odd-ids", 1024 * KIB).await;
    let mut l = letter("{}");
    l.source_id = "m-\u{FFFE}-1".into();
    l.event_id = Some("evt\u{b}\u{c}\u{FFFF}".into());
    l.instance_id = Some("i-\u{7}".into());
    l.user_id = Some("u-\u{0}\u{1F600}\t".into());
    l.message = "bad \u{0} value\u{1f}".into();
    let m = send_and_receive(&s.sqs, &url, &l).await;
    assert_eq!(m.attr("SourceId"), Some("m-\u{FFFD}-1"));
    assert_eq!(m.attr("EventId"), Some("evt\u{FFFD}\u{FFFD}\u{FFFD}"));
    assert_eq!(m.attr("InstanceId"), Some("i-\u{FFFD}"));
    assert_eq!(m.attr("UserId"), Some("u-\u{FFFD}\u{1F600}\t"));
    assert_eq!(m.attr("ErrorMessage"), Some("bad \u{FFFD} value\u{FFFD}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_just_under_256_kib_keeps_the_class_and_drops_optional_ids_to_fit() {
    let s = moto().await;
    let url = queue(&s.sqs, "dlq-256", 256 * KIB).await;
    let body = "b".repeat(256 * KIB - 120);
    let m = send_and_receive(&s.sqs, &url, &letter(body)).await;
    assert!(size(&m) <= 256 * KIB, "{} bytes", size(&m));
    assert_eq!(m.attr("ErrorClass"), Some("MalformedEvent"));
    assert_eq!(
        m.attr("SourceId"),
        Some("059f36b4-87a3-44ab-83d2-661975830a7d")
    );
    for optional in ["EventId", "InstanceId", "UserId"] {
        assert_eq!(m.attr(optional), None, "{optional} went first");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_leaves_little_room_gets_a_shortened_error_message() {
    let s = moto().await;
    let url = queue(&s.sqs, "dlq-256-msg", 256 * KIB).await;
    // Room for the required attributes and part of the message.
    let required = "ErrorClassStringMalformedEvent".len()
        + "SourceIdString059f36b4-87a3-44ab-83d2-661975830a7d".len()
        + "SourceTypeStringsqs".len()
        + "FailedAtString2026-12-01T09:00:00.000Z".len()
        + "AttemptsNumber3".len()
        + "ErrorMessageString".len();
    let body = "b".repeat(256 * KIB - required - 10);
    let mut l = letter(body);
    l.message = "é".repeat(600);
    let m = send_and_receive(&s.sqs, &url, &l).await;
    assert!(size(&m) <= 256 * KIB, "{} bytes", size(&m));
    let message = m.attr("ErrorMessage").expect("a shortened message");
    assert_eq!(
        message,
        "é".repeat(5),
        "cut at a char boundary to the room left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_exactly_at_256_kib_is_sent_whole_without_attributes() {
    let s = moto().await;
    let url = queue(&s.sqs, "dlq-256-full", 256 * KIB).await;
    let m = send_and_receive(&s.sqs, &url, &letter("b".repeat(256 * KIB))).await;
    assert_eq!(size(&m), 256 * KIB);
    assert!(
        m.message_attributes.is_empty(),
        "{:?}",
        m.message_attributes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_256_kib_goes_to_a_1_mib_queue_with_every_attribute() {
    let s = moto().await;
    let url = queue(&s.sqs, "dlq-1mib", 1024 * KIB).await;
    let m = send_and_receive(&s.sqs, &url, &letter("b".repeat(300 * KIB))).await;
    assert!(size(&m) <= 1024 * KIB);
    for name in [
        "ErrorClass",
        "ErrorMessage",
        "SourceType",
        "SourceId",
        "FailedAt",
        "Attempts",
        "EventId",
        "InstanceId",
        "UserId",
    ] {
        assert!(m.attr(name).is_some(), "{name} is missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_multibyte_error_message_is_cut_to_1024_bytes_at_a_char_boundary() {
    let s = moto().await;
    let url = queue(&s.sqs, "dlq-msg", 1024 * KIB).await;
    let mut l = letter("{}");
    l.message = "€".repeat(500);
    let m = send_and_receive(&s.sqs, &url, &l).await;
    assert_eq!(m.attr("ErrorMessage"), Some("€".repeat(341).as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letters_without_a_source_id_on_a_fifo_queue_are_not_taken_for_duplicates() {
    let s = moto().await;
    let url = queue(&s.sqs, "dlq-ids.fifo", 1024 * KIB).await;
    let sink = sink(&s.sqs, &url);
    for body in ["{\"a\": 1", "{\"b\": 2", "{\"c\": 3"] {
        let mut l = letter(body);
        l.source_id = String::new();
        l.group = Some("g\u{1}/é".into());
        sink.send(&l).await.expect("sent");
    }
    let got = s.sqs.drain(&url).await.unwrap();
    let mut bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["{\"a\": 1", "{\"b\": 2", "{\"c\": 3"]);
    for m in &got {
        assert_eq!(m.attr("SourceId"), None);
        assert_acceptable(m);
    }
}
