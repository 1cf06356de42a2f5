//! The handler's operations side over in-memory ports: the dry-run directory sends no
//! update while everything else runs as usual, and the invocation summary adds up to
//! the records whatever they became.

use crate::common::*;
use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::policy::EmailDomains;
use connect_identity_sync::handler::{Handled, invoke};
use connect_identity_sync::outbound::dry_run::DryRunnable;
use connect_identity_sync::pipeline::{Pipeline, RateLimits};
use serde_json::json;

fn contact_centre() -> FakeConnect {
    FakeConnect::with_users(&[
        (
            "u-jdoe",
            "jdoe",
            info("Jane", "Doe", "jane@example.com"),
            &[],
        ),
        (
            "u-asmith",
            "asmith",
            info("Alex", "Smith", "alex@example.com"),
            &[],
        ),
    ])
}

fn dry<'a>(
    connect: &'a FakeConnect,
    queues: &'a FakeQueues,
    dry_run: bool,
) -> Pipeline<DryRunnable<&'a FakeConnect>, &'a FakeQueues> {
    Pipeline::new(
        DryRunnable::new(connect, dry_run),
        queues,
        admission(EmailDomains::parse(Some("example.com")).unwrap()),
        settings(),
        RateLimits::new(1000.0, 1000.0, 1000.0),
    )
}

fn eventbridge(detail: serde_json::Value) -> serde_json::Value {
    json!({"version": "0", "id": "eb-1", "detail-type": "Identity User Updated",
           "source": "com.example.idp", "account": "123456789012",
           "time": "2026-11-29T09:00:00Z", "region": "us-east-1", "resources": [], "detail": detail})
}

/// One change to u-jdoe's LastName through a directory with dry run on or off.
async fn change_last_name(dry_run: bool) -> (FakeConnect, Handled) {
    let connect = contact_centre();
    let queues = FakeQueues::default();
    let event = eventbridge(change(
        "u-jdoe",
        json!({"LastName": "Doerr"}),
        "2026-11-29T09:00:00Z",
    ));
    let handled = invoke(
        &dry(&connect, &queues, dry_run),
        &raw(&event),
        in_seconds(10),
        dry_run,
    )
    .await;
    (connect, handled)
}

#[tokio::test]
async fn a_dry_run_reads_and_checks_but_sends_no_update_and_its_reply_says_so() {
    let (connect, handled) = change_last_name(true).await;
    assert_eq!(
        handled.reply.unwrap(),
        json!({"outcome": "updated", "dryRun": true})
    );
    assert_eq!(connect.count("DescribeUser"), 1);
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 0);
    assert_eq!(connect.user("u-jdoe").last_name.as_deref(), Some("Doe"));
    assert_eq!((handled.summary.updated, handled.summary.records()), (1, 1));
    assert!(handled.summary.dry_run);
}

#[tokio::test]
async fn without_dry_run_the_same_directory_sends_the_update() {
    let (connect, handled) = change_last_name(false).await;
    assert_eq!(handled.reply.unwrap(), json!({"outcome": "updated"}));
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 1);
    assert_eq!(connect.user("u-jdoe").last_name.as_deref(), Some("Doerr"));
}

#[tokio::test]
async fn the_summary_of_a_batch_adds_up_to_its_records_by_outcome_and_class() {
    let connect = contact_centre();
    // Every attempt of the invocation fails: retryable, so m-4 is handed back.
    connect.fail(
        "UpdateUserIdentityInfo",
        "u-asmith",
        &[ErrorClass::InternalServiceException; 10],
    );
    let queues = FakeQueues::default();
    let payload = json!({"Records": [
        sqs_record("m-1", &change("u-jdoe", json!({"LastName": "Doerr"}), "2026-11-29T09:00:00Z"), 1, None),
        sqs_record("m-2", &change("u-jdoe", json!({"FirstName": "Jane"}), "2026-11-29T08:00:00Z"), 1, None),
        sqs_record("m-3", &json!({"UserId": 42}), 1, None),
        sqs_record("m-4", &change("u-asmith", json!({"LastName": "Smythe"}), "2026-11-29T09:00:00Z"), 1, None),
        sqs_record("m-5", &change("u-jdoe", json!({"Mobile": "nope"}), "2026-11-29T09:00:00Z"), 1, None),
    ]});
    let handled = invoke(
        &pipeline(&connect, &queues),
        &raw(&payload),
        in_seconds(10),
        false,
    )
    .await;
    let s = &handled.summary;
    assert_eq!(
        handled.reply.unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "m-4"}]})
    );
    // m-1 and m-2 share one update; m-3 is malformed; m-4 is handed back; m-5 is invalid.
    assert_eq!((s.updated, s.unchanged, s.handed_back), (2, 0, 1));
    assert_eq!(s.dead_lettered[&ErrorClass::MalformedEvent], 1);
    assert_eq!(s.dead_lettered[&ErrorClass::ValidationError], 1);
    assert_eq!(s.records(), 5);
    assert_eq!(queues.letters.lock().unwrap().len(), 2);
}
