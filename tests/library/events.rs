//! The sample events in `events/` through the handler, with the replies of SPEC §4.

use crate::common::*;
use connect_identity_sync::domain::change::IdentityInfo;
use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::handler::{InvocationError, handle};
use serde_json::value::RawValue;
use serde_json::{Value, json};

fn sample_text(name: &str) -> String {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap()
}

fn sample(name: &str) -> Value {
    serde_json::from_str(&sample_text(name)).unwrap()
}

/// A sample as the runtime hands it over: the file's JSON text as it is.
fn sample_raw(name: &str) -> Box<RawValue> {
    serde_json::from_str(&sample_text(name)).unwrap()
}

fn person(first: &str, last: &str, email: &str, mobile: Option<&str>) -> IdentityInfo {
    IdentityInfo {
        first_name: Some(first.into()),
        last_name: Some(last.into()),
        email: Some(email.into()),
        secondary_email: None,
        mobile: mobile.map(Into::into),
    }
}

/// The demo contact centre, as far as the samples touch it.
fn contact_centre() -> FakeConnect {
    let mut asmith = person(
        "Alex",
        "Smith",
        "alex.smith@example.com",
        Some("+14155550124"),
    );
    asmith.secondary_email = Some("a.smith@example.com".into());
    let mut hsato = person(
        "Hiro",
        "Sato",
        "hiro.sato@example.com",
        Some("+14155550143"),
    );
    hsato.secondary_email = Some("h.sato@example.com".into());
    FakeConnect::with_users(&[
        (
            "u-jdoe",
            "jdoe",
            person("Jane", "Doe", "jane.doe@example.com", Some("+14155550123")),
            &["sp-agent"],
        ),
        ("u-asmith", "asmith", asmith, &["sp-agent"]),
        (
            "u-mgarcia",
            "mgarcia",
            person(
                "María José",
                "García López",
                "maria.garcia@example.com",
                Some("+34910000123"),
            ),
            &["sp-agent"],
        ),
        (
            "u-kobrien",
            "kobrien",
            person("Kieran", "O'Brien", "kieran.obrien@example.com", None),
            &["sp-agent"],
        ),
        (
            "u-protected",
            "padmin",
            person("Priya", "Natarajan", "priya.natarajan@example.com", None),
            &["sp-admin"],
        ),
        (
            "u-tnguyen",
            "tnguyen",
            person(
                "Thanh",
                "Nguyen",
                "thanh.nguyen@example.com",
                Some("+14155550140"),
            ),
            &["sp-agent"],
        ),
        (
            "u-rokafor",
            "rokafor",
            person(
                "Rita",
                "Okafor",
                "rita.okafor@example.com",
                Some("+14155550141"),
            ),
            &["sp-agent"],
        ),
        (
            "u-lmorales",
            "lmorales",
            person("Lucía", "Morales", "lucia.morales@example.com", None),
            &["sp-agent"],
        ),
        ("u-hsato", "hsato", hsato, &["sp-agent"]),
        (
            "u-kmensah",
            "kmensah",
            person("Kwame", "Mensah", "kwame.mensah@example.com", None),
            &["sp-agent"],
        ),
    ])
}

async fn run(name: &str) -> (FakeConnect, FakeQueues, Result<Value, InvocationError>) {
    let connect = contact_centre();
    let queues = FakeQueues::default();
    let reply = handle(
        &pipeline(&connect, &queues),
        &sample_raw(name),
        in_seconds(10),
    )
    .await;
    (connect, queues, reply)
}

#[tokio::test]
async fn a_full_eventbridge_update_sets_every_field() {
    let (connect, _, reply) = run("eventbridge-full-update.json").await;
    assert_eq!(reply.unwrap(), json!({"outcome": "updated"}));
    let u = connect.user("u-jdoe");
    assert_eq!(u.last_name.as_deref(), Some("Doe-Carter"));
    assert_eq!(u.email.as_deref(), Some("jane.carter@example.com"));
    assert_eq!(
        u.secondary_email.as_deref(),
        Some("jane.personal@example.com")
    );
    assert_eq!(u.mobile.as_deref(), Some("+14155550100"));
}

#[tokio::test]
async fn a_partial_eventbridge_update_keeps_the_fields_it_does_not_name() {
    let (connect, _, reply) = run("eventbridge-partial-update.json").await;
    assert_eq!(reply.unwrap(), json!({"outcome": "updated"}));
    let u = connect.user("u-asmith");
    assert_eq!(
        u.mobile.as_deref(),
        Some("+14155550177"),
        "national number read in US"
    );
    assert_eq!(u.secondary_email, None, "null clears");
    assert_eq!(u.first_name.as_deref(), Some("Alex"));
    assert_eq!(u.email.as_deref(), Some("alex.smith@example.com"));
}

#[tokio::test]
async fn a_change_to_a_protected_user_is_dead_lettered_as_a_policy_violation() {
    let (connect, queues, reply) = run("eventbridge-protected-user.json").await;
    assert_eq!(
        reply.unwrap(),
        json!({"outcome": "dead_lettered", "errorClass": "PolicyViolation"})
    );
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 0);
    let letters = queues.letters.lock().unwrap();
    assert_eq!(letters[0].user_id.as_deref(), Some("u-protected"));
    assert_eq!(
        serde_json::from_str::<Value>(&letters[0].body).unwrap(),
        sample("eventbridge-protected-user.json")
    );
}

#[tokio::test]
async fn a_scim_user_resource_updates_by_username() {
    let (connect, _, reply) = run("eventbridge-scim-user.json").await;
    assert_eq!(reply.unwrap(), json!({"outcome": "updated"}));
    let u = connect.user("u-mgarcia");
    assert_eq!(u.last_name.as_deref(), Some("García-López"));
    assert_eq!(u.mobile.as_deref(), Some("+34910000124"));
}

fn updates_of(connect: &FakeConnect, user: &str) -> usize {
    connect
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(op, u)| *op == "UpdateUserIdentityInfo" && u == user)
        .count()
}

#[tokio::test]
async fn an_entra_patch_op_sets_the_fields_its_paths_name_and_ignores_the_rest() {
    let (connect, queues, reply) = run("eventbridge-entra-patch.json").await;
    assert_eq!(reply.unwrap(), json!({"outcome": "updated"}));
    assert_eq!(
        connect.user("u-tnguyen"),
        person(
            "Thanh",
            "Tran",
            "thanh.tran@example.com",
            Some("+14155550150")
        ),
        "title and the enterprise department are not identity fields"
    );
    assert_eq!(updates_of(&connect, "u-tnguyen"), 1);
    assert!(queues.letters.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_entra_patch_op_without_a_path_sets_the_fields_its_dotted_keys_name() {
    let (connect, _, reply) = run("eventbridge-entra-patch-no-path.json").await;
    assert_eq!(reply.unwrap(), json!({"outcome": "updated"}));
    assert_eq!(
        connect.user("u-rokafor"),
        person(
            "Rita",
            "Okafor-Bello",
            "rita.okafor@example.com",
            Some("+14155550141")
        )
    );
}

#[tokio::test]
async fn an_entra_disable_changes_no_field_and_makes_no_call() {
    let (connect, queues, reply) = run("eventbridge-entra-disable.json").await;
    assert_eq!(reply.unwrap(), json!({"outcome": "unchanged"}));
    assert_eq!(*connect.calls.lock().unwrap(), vec![], "no call at all");
    assert!(queues.letters.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_okta_full_resource_update_sets_what_it_holds_and_clears_nothing() {
    let (connect, _, reply) = run("eventbridge-okta-user-update.json").await;
    assert_eq!(reply.unwrap(), json!({"outcome": "updated"}));
    assert_eq!(
        connect.user("u-lmorales"),
        person(
            "Lucía",
            "Morales Vega",
            "lucia.morales@example.com",
            Some("+14155550152")
        )
    );
}

#[tokio::test]
async fn a_batch_of_scim_shapes_ends_record_by_record() {
    let (connect, queues, reply) = run("sqs-scim-batch.json").await;
    assert_eq!(reply.unwrap(), json!({"batchItemFailures": []}));
    let mut hsato = person(
        "Hiro",
        "Sato-Kim",
        "hiro.sato-kim@example.com",
        Some("+14155550143"),
    );
    hsato.secondary_email = None;
    assert_eq!(
        connect.user("u-hsato"),
        hsato,
        "paths by Username; remove of the other email"
    );
    assert_eq!(
        connect.user("u-mgarcia").mobile.as_deref(),
        Some("+34910000125"),
        "the dotted form inside an EventBridge event in an SQS body"
    );
    assert_eq!(updates_of(&connect, "u-kobrien"), 0, "active only: no call");
    assert_eq!(
        connect.user("u-kmensah"),
        person(
            "Kwame",
            "Mensah-Owusu",
            "kwame.mensah@example.com",
            Some("+14155550154")
        ),
        "an Okta resource as a bare body"
    );
    assert_eq!(connect.user("u-asmith").mobile, None, "remove clears");
    assert_eq!(
        connect.user("u-jdoe"),
        person("Jane", "Doe", "jane.doe@example.com", Some("+14155550123")),
        "an unreadable identity path changes nothing"
    );
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 4);
    let letters = queues.letters.lock().unwrap();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let letter = &letters[0];
    assert_eq!(letter.class, ErrorClass::MalformedEvent);
    assert_eq!(letter.source_id, "7c3e9b10-5555-4a2f-9d61-000000000005");
    assert!(
        letter.message.contains("emails[value eq …].value"),
        "{}",
        letter.message
    );
    assert!(!letter.message.contains("jane"), "{}", letter.message);
    let original = sample("sqs-scim-batch.json");
    assert_eq!(
        letter.body,
        original["Records"][4]["body"].as_str().unwrap(),
        "byte for byte"
    );
}

/// The message ids of `sqs-mixed-batch.json`, in order.
const MIXED: [&str; 5] = [
    "0f8a1c52-1111-4d7e-8a55-000000000001",
    "0f8a1c52-2222-4d7e-8a55-000000000002",
    "0f8a1c52-3333-4d7e-8a55-000000000003",
    "0f8a1c52-4444-4d7e-8a55-000000000004",
    "0f8a1c52-5555-4d7e-8a55-000000000005",
];

/// Each record of the mixed batch was dead-lettered with its class (`None`: it was
/// not), and nothing else was.
fn assert_mixed_letters(queues: &FakeQueues, classes: [Option<ErrorClass>; 5]) {
    let letters = queues.letters.lock().unwrap();
    for (id, class) in MIXED.iter().zip(classes) {
        let got = letters.iter().find(|l| l.source_id == *id).map(|l| l.class);
        assert_eq!(got, class, "{id}");
    }
    assert_eq!(letters.len(), classes.iter().flatten().count());
}

#[tokio::test]
async fn a_mixed_sqs_batch_ends_record_by_record() {
    let (connect, queues, reply) = run("sqs-mixed-batch.json").await;
    assert_eq!(reply.unwrap(), json!({"batchItemFailures": []}));
    assert_eq!(
        connect.user("u-kobrien").last_name.as_deref(),
        Some("O'Brien-Walsh")
    );
    assert_eq!(
        connect.count("UpdateUserIdentityInfo"),
        1,
        "the EventBridge-in-SQS change is a no-op"
    );
    assert_mixed_letters(
        &queues,
        [
            None,
            Some(ErrorClass::MalformedEvent),
            Some(ErrorClass::ValidationError),
            Some(ErrorClass::ResourceNotFoundException),
            None,
        ],
    );
    let letters = queues.letters.lock().unwrap();
    let original = sample("sqs-mixed-batch.json");
    let malformed = letters
        .iter()
        .find(|l| l.class == ErrorClass::MalformedEvent)
        .unwrap();
    assert_eq!(
        malformed.body,
        original["Records"][1]["body"].as_str().unwrap(),
        "byte for byte"
    );
}

#[tokio::test]
async fn a_record_with_a_field_of_another_type_is_malformed_alone_and_its_neighbours_end_as_before()
{
    let mut batch = sample("sqs-mixed-batch.json");
    batch["Records"][2]["attributes"] = json!(5);
    let connect = contact_centre();
    let queues = FakeQueues::default();
    let reply = handle(&pipeline(&connect, &queues), &raw(&batch), in_seconds(10)).await;
    assert_eq!(reply.unwrap(), json!({"batchItemFailures": []}));
    assert_eq!(
        connect.user("u-kobrien").last_name.as_deref(),
        Some("O'Brien-Walsh")
    );
    assert_eq!(
        connect.user("u-asmith").mobile.as_deref(),
        Some("+14155550124"),
        "the odd record changed nothing"
    );
    // Attributes that are not an object make a malformed record, and only that one.
    assert_mixed_letters(
        &queues,
        [
            None,
            Some(ErrorClass::MalformedEvent),
            Some(ErrorClass::MalformedEvent),
            Some(ErrorClass::ResourceNotFoundException),
            None,
        ],
    );
    let letters = queues.letters.lock().unwrap();
    let odd = letters.iter().find(|l| l.source_id == MIXED[2]).unwrap();
    assert_eq!(
        odd.body,
        batch["Records"][2]["body"].as_str().unwrap(),
        "byte for byte"
    );
}

#[tokio::test]
async fn a_retryable_sqs_failure_is_reported_in_batch_item_failures() {
    let connect = contact_centre();
    connect.fail(
        "DescribeUser",
        "u-kobrien",
        &[connect_identity_sync::domain::error::ErrorClass::ThrottlingException; 3],
    );
    let queues = FakeQueues::default();
    let reply = handle(
        &pipeline(&connect, &queues),
        &sample_raw("sqs-mixed-batch.json"),
        in_seconds(10),
    )
    .await;
    assert_eq!(
        reply.unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": MIXED[0]}]})
    );
}

#[tokio::test]
async fn any_other_payload_gets_a_malformed_event_error_and_nothing_is_dead_lettered() {
    let connect = contact_centre();
    let queues = FakeQueues::default();
    let p = pipeline(&connect, &queues);
    for payload in [
        json!(null),
        json!({"hello": "world"}),
        json!({"Records": [{"eventSource": "aws:s3"}]}),
    ] {
        let err = handle(&p, &raw(&payload), in_seconds(10))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "MalformedEvent", "{payload}");
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "MalformedEvent");
    }
    assert!(queues.letters.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_direct_event_that_cannot_be_dead_lettered_fails_the_invocation() {
    let connect = contact_centre();
    let queues = FakeQueues::default();
    *queues.down.lock().unwrap() = true;
    let err = handle(
        &pipeline(&connect, &queues),
        &sample_raw("eventbridge-protected-user.json"),
        in_seconds(10),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        InvocationError::DeadLetterUnavailable(ErrorClass::PolicyViolation)
    );
}
