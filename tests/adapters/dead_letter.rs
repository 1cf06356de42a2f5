//! The dead-letter adapter (`SqsDeadLetters`) against a mocked SQS client
//! (`aws-smithy-mocks`): the body goes out byte for byte to the queue of the letter's
//! class, with the message attributes of SPEC §3.1, FIFO queues get a group and a
//! deduplication id, and a refused send is an error that names no personal data.
//!
//! The clients are built by hand rather than with `mock_client!`, which needs the SDK's
//! `test-util` feature; they are otherwise what that macro builds, with retries disabled
//! (each send is one attempt).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::error::ErrorMetadata;
use aws_sdk_sqs::operation::send_message::{SendMessageError, SendMessageInput, SendMessageOutput};
use aws_sdk_sqs::types::error::{InvalidMessageContents, QueueDoesNotExist};
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use chrono::{DateTime, TimeZone, Utc};
use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::ports::{DeadLetter, DeadLetterSink};
use connect_identity_sync::domain::record::SourceKind;
use connect_identity_sync::outbound::dead_letter::SqsDeadLetters;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

const INSTANCE: &str = "8d3c2b1a-1111-4a4a-9b9b-0123456789ab";
const USER: &str = "f0e1d2c3-3333-4b4b-8c8c-ba9876543210";
const MESSAGE_ID: &str = "059f36b4-87a3-44ab-83d2-661975830a7d";
const EVENT_ID: &str = "idp-evt-2025-03-04-000042";

const FIRST_NAME: &str = "Zoë";
const EMAIL: &str = "zoe.okonkwo@example.com";
const MOBILE: &str = "+447700900123";

/// A body that is not JSON, with odd whitespace (tabs, CR LF, a no-break space, trailing
/// blanks), a decomposed accent that NFC would change, an emoji and personal data.
const ODD_BODY: &str = "  \tFirstName=Zoe\u{0308}\r\n  Email = zoe.okonkwo@example.com ,\u{00A0}Mobile:+447700900123 \u{1F600}\n\n{ not json  ";

fn queue_url(class: ErrorClass) -> String {
    format!(
        "https://sqs.eu-west-2.amazonaws.com/111122223333/cis-dlq-{}",
        connect_identity_sync::config::queue_variable(class)
            .to_ascii_lowercase()
            .replace('_', "-")
    )
}

fn fifo_queue_url(class: ErrorClass) -> String {
    format!("{}.fifo", queue_url(class))
}

fn all_queues(url: fn(ErrorClass) -> String) -> BTreeMap<ErrorClass, String> {
    ErrorClass::ALL.into_iter().map(|c| (c, url(c))).collect()
}

fn failed_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap() + chrono::Duration::milliseconds(89)
}

/// When the change happened, to the nanosecond.
fn occurred_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 1).unwrap() + chrono::Duration::nanoseconds(123_456_789)
}

fn letter(class: ErrorClass) -> DeadLetter {
    DeadLetter {
        class,
        message: format!("Connect UpdateUserIdentityInfo failed with {class}"),
        source: SourceKind::Sqs,
        source_id: MESSAGE_ID.into(),
        failed_at: failed_at(),
        event_id: Some(EVENT_ID.into()),
        instance_id: Some(INSTANCE.into()),
        user_id: Some(USER.into()),
        occurred_at: Some(occurred_at()),
        attempts: 3,
        body: ODD_BODY.into(),
        group: None,
    }
}

// ---------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------

fn client(rules: &[&Rule]) -> Client {
    let mut mocks = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for rule in rules {
        mocks = mocks.with_rule(rule);
    }
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-2"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "tests"))
        .http_client(create_mock_http_client())
        .retry_config(RetryConfig::disabled())
        .interceptor(mocks)
        .build();
    Client::from_conf(config)
}

/// Sends `letter` through an SQS that accepts everything; returns every request it saw.
async fn sent_with(queues: BTreeMap<ErrorClass, String>, letter: &DeadLetter) -> SendMessageInput {
    let seen = Arc::new(Mutex::new(Vec::<SendMessageInput>::new()));
    let capture = Arc::clone(&seen);
    let rule = mock!(Client::send_message)
        .match_requests(move |req| {
            capture.lock().unwrap().push(req.clone());
            true
        })
        .then_output(|| {
            SendMessageOutput::builder()
                .message_id("5fea7756-0ea4-451a-a703-a558b933e274")
                .build()
        });
    let sink = SqsDeadLetters::new(client(&[&rule]), queues);
    sink.send(letter).await.expect("sent");
    assert_eq!(rule.num_calls(), 1, "one SendMessage per letter");
    let mut seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    seen.remove(0)
}

async fn sent(letter: &DeadLetter) -> SendMessageInput {
    sent_with(all_queues(queue_url), letter).await
}

/// The message attributes of a request: name → (data type, string value).
fn attributes(req: &SendMessageInput) -> BTreeMap<String, (String, String)> {
    req.message_attributes()
        .expect("message attributes")
        .iter()
        .map(|(name, value)| {
            assert!(value.binary_value().is_none(), "{name} is not binary");
            (
                name.clone(),
                (
                    value.data_type().to_owned(),
                    value.string_value().expect("a string value").to_owned(),
                ),
            )
        })
        .collect()
}

fn string_attribute(req: &SendMessageInput, name: &str) -> Option<String> {
    attributes(req).get(name).map(|(data_type, value)| {
        assert_eq!(data_type, "String", "{name} is a String attribute");
        value.clone()
    })
}

// ---------------------------------------------------------------------------------------
// Body and queue
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_sqs_body_that_is_not_json_is_sent_byte_for_byte() {
    let req = sent(&letter(ErrorClass::MalformedEvent)).await;
    assert_eq!(req.message_body(), Some(ODD_BODY));
}

#[tokio::test]
async fn an_eventbridge_event_is_sent_as_the_same_json() {
    let event = serde_json::json!({
        "version": "0",
        "id": EVENT_ID,
        "detail-type": "Identity Changed",
        "source": "com.example.idp",
        "account": "111122223333",
        "time": "2025-03-04T05:06:07Z",
        "region": "eu-west-2",
        "resources": [],
        "detail": {
            "InstanceId": INSTANCE,
            "UserId": USER,
            "IdentityInfo": { "FirstName": FIRST_NAME, "Email": EMAIL, "Mobile": MOBILE }
        }
    });
    let mut letter = letter(ErrorClass::ValidationError);
    letter.source = SourceKind::EventBridge;
    letter.source_id = EVENT_ID.into();
    letter.body = event.to_string();
    let req = sent(&letter).await;
    let body = req.message_body().expect("a body");
    assert_eq!(body, letter.body);
    let replayed: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(replayed, event);
    assert_eq!(
        string_attribute(&req, "SourceType").as_deref(),
        Some("eventbridge")
    );
    assert_eq!(
        string_attribute(&req, "SourceId").as_deref(),
        Some(EVENT_ID)
    );
}

#[tokio::test]
async fn each_letter_goes_to_the_queue_of_its_class() {
    for class in ErrorClass::ALL {
        let req = sent(&letter(class)).await;
        assert_eq!(req.queue_url(), Some(queue_url(class).as_str()), "{class}");
        assert_eq!(
            string_attribute(&req, "ErrorClass").as_deref(),
            Some(class.as_str())
        );
    }
}

#[tokio::test]
async fn a_class_without_a_queue_fails_the_send_without_a_request() {
    let mut queues = all_queues(queue_url);
    queues.remove(&ErrorClass::PolicyViolation);
    // No rule: a request would find no mock response and fail the test.
    let sink = SqsDeadLetters::new(client(&[]), queues);
    let err = sink
        .send(&letter(ErrorClass::PolicyViolation))
        .await
        .unwrap_err();
    assert!(err.contains("PolicyViolation"), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_letter_carries_every_attribute_of_the_spec_with_its_type() {
    let letter = letter(ErrorClass::InvalidParameterException);
    let req = sent(&letter).await;
    let attrs = attributes(&req);
    let expected: BTreeMap<String, (String, String)> = [
        ("ErrorClass", "String", "InvalidParameterException"),
        (
            "ErrorMessage",
            "String",
            "Connect UpdateUserIdentityInfo failed with InvalidParameterException",
        ),
        ("SourceType", "String", "sqs"),
        ("SourceId", "String", MESSAGE_ID),
        ("FailedAt", "String", "2025-03-04T05:06:07.089Z"),
        ("EventId", "String", EVENT_ID),
        ("InstanceId", "String", INSTANCE),
        ("UserId", "String", USER),
        ("OccurredAt", "String", "2025-03-04T05:06:01.123456789Z"),
        ("Attempts", "Number", "3"),
    ]
    .into_iter()
    .map(|(n, t, v)| (n.to_owned(), (t.to_owned(), v.to_owned())))
    .collect();
    assert_eq!(attrs, expected);
    assert!(attrs.len() <= 10, "SQS takes at most 10 message attributes");
}

#[tokio::test]
async fn failed_at_is_rfc3339_and_the_moment_of_failure() {
    let req = sent(&letter(ErrorClass::UnknownError)).await;
    let value = string_attribute(&req, "FailedAt").expect("FailedAt");
    let parsed = DateTime::parse_from_rfc3339(&value).expect("RFC 3339");
    assert_eq!(parsed.with_timezone(&Utc), failed_at());
}

#[tokio::test]
async fn occurred_at_is_the_changes_time_in_rfc3339_as_precise_as_it_came() {
    let mut letter = letter(ErrorClass::ThrottlingException);
    letter.occurred_at = Some(Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap());
    let req = sent(&letter).await;
    assert_eq!(
        string_attribute(&req, "OccurredAt").as_deref(),
        Some("2026-03-01T12:00:00Z")
    );
    letter.occurred_at = Some(occurred_at());
    let value = string_attribute(&sent(&letter).await, "OccurredAt").expect("OccurredAt");
    assert_eq!(
        DateTime::parse_from_rfc3339(&value)
            .unwrap()
            .with_timezone(&Utc),
        occurred_at()
    );
}

#[tokio::test]
async fn attempts_is_a_number_attribute() {
    for attempts in [1, 3, 17] {
        let mut letter = letter(ErrorClass::ThrottlingException);
        letter.attempts = attempts;
        let req = sent(&letter).await;
        let (data_type, value) = attributes(&req).remove("Attempts").expect("Attempts");
        assert_eq!(data_type, "Number");
        assert_eq!(value.parse::<u32>(), Ok(attempts));
    }
}

#[tokio::test]
async fn unknown_event_instance_and_user_are_left_out() {
    for unknown in [None, Some(String::new())] {
        let mut letter = letter(ErrorClass::MalformedEvent);
        letter.event_id = unknown.clone();
        letter.instance_id = unknown.clone();
        letter.user_id = unknown;
        letter.occurred_at = None;
        let req = sent(&letter).await;
        let names: BTreeSet<String> = attributes(&req).into_keys().collect();
        let expected: BTreeSet<String> = [
            "ErrorClass",
            "ErrorMessage",
            "SourceType",
            "SourceId",
            "FailedAt",
            "Attempts",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        assert_eq!(names, expected);
    }
}

#[tokio::test]
async fn each_known_identifier_is_sent_on_its_own() {
    let mut only_user = letter(ErrorClass::ResourceNotFoundException);
    only_user.event_id = None;
    only_user.instance_id = None;
    let req = sent(&only_user).await;
    assert_eq!(string_attribute(&req, "UserId").as_deref(), Some(USER));
    assert_eq!(string_attribute(&req, "EventId"), None);
    assert_eq!(string_attribute(&req, "InstanceId"), None);
}

#[tokio::test]
async fn a_long_error_message_is_cut_to_1024_bytes_at_a_char_boundary() {
    // 1023 ASCII bytes, then two-byte characters: the cut cannot split the first one.
    let mut letter = letter(ErrorClass::UnknownError);
    letter.message = format!("{}{}", "x".repeat(1023), "é".repeat(10));
    let req = sent(&letter).await;
    let message = string_attribute(&req, "ErrorMessage").expect("ErrorMessage");
    assert_eq!(message, "x".repeat(1023));

    // Four-byte characters only: 256 of them fill the 1024 bytes exactly.
    letter.message = "😀".repeat(300);
    let req = sent(&letter).await;
    let message = string_attribute(&req, "ErrorMessage").expect("ErrorMessage");
    assert_eq!(message.len(), 1024);
    assert_eq!(message, "😀".repeat(256));

    // Three-byte characters: 341 of them (1023 bytes), the 342nd would not fit.
    letter.message = "€".repeat(400);
    let req = sent(&letter).await;
    let message = string_attribute(&req, "ErrorMessage").expect("ErrorMessage");
    assert_eq!(message, "€".repeat(341));
}

#[tokio::test]
async fn an_error_message_of_exactly_1024_bytes_is_kept_whole() {
    let mut letter = letter(ErrorClass::UnknownError);
    letter.message = format!("{}é", "y".repeat(1022));
    assert_eq!(letter.message.len(), 1024);
    let req = sent(&letter).await;
    assert_eq!(
        string_attribute(&req, "ErrorMessage").as_deref(),
        Some(letter.message.as_str())
    );
}

// ---------------------------------------------------------------------------------------
// FIFO queues
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_fifo_queue_gets_the_records_message_group_and_a_deduplication_id() {
    let mut letter = letter(ErrorClass::InvalidRequestException);
    letter.group = Some("agents-eu".into());
    let req = sent_with(all_queues(fifo_queue_url), &letter).await;
    assert_eq!(
        req.queue_url(),
        Some(fifo_queue_url(ErrorClass::InvalidRequestException).as_str())
    );
    assert_eq!(req.message_group_id(), Some("agents-eu"));
    let dedup = req.message_deduplication_id().expect("a deduplication id");
    assert!(!dedup.is_empty() && dedup.len() <= 128, "{dedup:?}");
    assert!(
        dedup
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c.is_ascii_punctuation()),
        "{dedup:?} uses only the characters SQS allows"
    );
}

#[tokio::test]
async fn a_fifo_letter_without_a_group_still_gets_one() {
    let letter = letter(ErrorClass::MalformedEvent);
    assert_eq!(letter.group, None);
    let req = sent_with(all_queues(fifo_queue_url), &letter).await;
    let group = req.message_group_id().expect("a message group");
    assert!(!group.is_empty());
    assert!(req.message_deduplication_id().is_some());
}

#[tokio::test]
async fn the_deduplication_id_is_stable_for_a_record_and_differs_between_records() {
    let one = letter(ErrorClass::ThrottlingException);
    let mut other = letter(ErrorClass::ThrottlingException);
    other.source_id = "7b1d7e0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b".into();
    let queues = || all_queues(fifo_queue_url);
    let first = sent_with(queues(), &one).await;
    let again = sent_with(queues(), &one).await;
    let second = sent_with(queues(), &other).await;
    let id = |r: &SendMessageInput| {
        r.message_deduplication_id()
            .expect("a deduplication id")
            .to_owned()
    };
    assert_eq!(id(&first), id(&again));
    assert_ne!(id(&first), id(&second));
}

#[tokio::test]
async fn a_standard_queue_gets_no_message_group_or_deduplication_id() {
    let mut letter = letter(ErrorClass::InvalidRequestException);
    letter.group = Some("agents-eu".into());
    let req = sent(&letter).await;
    assert_eq!(req.message_group_id(), None);
    assert_eq!(req.message_deduplication_id(), None);
}

// ---------------------------------------------------------------------------------------
// A refused send
// ---------------------------------------------------------------------------------------

/// What SQS might say, echoing the body it refused.
fn echoed() -> String {
    format!("Message {FIRST_NAME} <{EMAIL}> {MOBILE} contains invalid characters")
}

fn meta(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message(echoed())
        .build()
}

fn assert_no_personal_data(message: &str) {
    assert!(!message.is_empty());
    for value in [
        FIRST_NAME, "Zoe", EMAIL, MOBILE, "okonkwo", "7700900", "@", INSTANCE, USER,
    ] {
        assert!(
            !message.contains(value),
            "send error {message:?} contains {value:?}"
        );
    }
}

#[tokio::test]
async fn an_sqs_error_fails_the_send_with_a_message_that_names_no_personal_data() {
    let errors: [fn() -> SendMessageError; 2] = [
        || {
            SendMessageError::QueueDoesNotExist(
                QueueDoesNotExist::builder()
                    .message(echoed())
                    .meta(meta("AWS.SimpleQueueService.NonExistentQueue"))
                    .build(),
            )
        },
        || {
            SendMessageError::InvalidMessageContents(
                InvalidMessageContents::builder()
                    .message(echoed())
                    .meta(meta("InvalidMessageContents"))
                    .build(),
            )
        },
    ];
    for error in errors {
        let rule = mock!(Client::send_message).then_error(error);
        let sink = SqsDeadLetters::new(client(&[&rule]), all_queues(queue_url));
        let err = sink
            .send(&letter(ErrorClass::ValidationError))
            .await
            .unwrap_err();
        assert_eq!(rule.num_calls(), 1);
        assert_no_personal_data(&err);
    }
}

#[tokio::test]
async fn an_unmodelled_sqs_error_fails_the_send_with_a_message_that_names_no_personal_data() {
    let rule = mock!(Client::send_message).then_http_response(|| {
        let body = serde_json::json!({ "message": echoed() }).to_string();
        let mut response = HttpResponse::new(StatusCode::try_from(403).unwrap(), body.into());
        response
            .headers_mut()
            .insert("x-amzn-ErrorType", "AccessDeniedException");
        response
            .headers_mut()
            .insert("content-type", "application/x-amz-json-1.0");
        response
    });
    let sink = SqsDeadLetters::new(client(&[&rule]), all_queues(queue_url));
    let err = sink
        .send(&letter(ErrorClass::UnknownError))
        .await
        .unwrap_err();
    assert_no_personal_data(&err);
}
