//! The pipeline over in-memory ports: grouping, ordering, coalescing, FIFO order,
//! deadline, retries and dead-lettering, record by record.

use std::time::Duration;

use crate::common::*;
use connect_identity_sync::domain::change::IdentityInfo;
use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::instance::IdentityManagement;
use connect_identity_sync::domain::ports::Reach;
use connect_identity_sync::domain::record::{Disposition, HandBack, Record};
use connect_identity_sync::pipeline::RateLimits;
use serde_json::{Value, json};
use tokio::time::Instant;

#[tokio::test]
async fn out_of_order_changes_to_one_user_are_coalesced_into_one_update_in_occurred_at_order() {
    let connect =
        FakeConnect::with_users(&[("u-1", "jdoe", info("Jane", "Doe", "jane@example.com"), &[])]);
    let queues = FakeQueues::default();
    let payload = json!({"Records": [
        sqs_record("m-late", &change("u-1", json!({"FirstName": "Janine"}), "2026-11-29T10:00:02Z"), 1, None),
        sqs_record("m-early", &change("u-1", json!({"FirstName": "Janet", "LastName": "Smith"}), "2026-11-29T10:00:01Z"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;

    assert_eq!(d, vec![Disposition::Updated, Disposition::Updated]);
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 1);
    assert_eq!(connect.count("DescribeUser"), 1);
    let user = connect.user("u-1");
    assert_eq!(
        user.first_name.as_deref(),
        Some("Janine"),
        "the later change wins"
    );
    assert_eq!(
        user.last_name.as_deref(),
        Some("Smith"),
        "the earlier change's other field survives"
    );
    assert_eq!(user.email.as_deref(), Some("jane@example.com"));
}

#[tokio::test]
async fn a_redelivered_duplicate_costs_no_update_call() {
    let connect =
        FakeConnect::with_users(&[("u-1", "jdoe", info("Jane", "Doe", "jane@example.com"), &[])]);
    let queues = FakeQueues::default();
    let payload = json!({"Records": [sqs_record("m-1", &change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:00Z"), 1, None)]});
    let (recs, fifo) = records(&payload);
    let p = pipeline(&connect, &queues);
    assert_eq!(
        p.run(&recs, fifo, in_seconds(5)).await.dispositions,
        vec![Disposition::Updated]
    );
    assert_eq!(
        p.run(&recs, fifo, in_seconds(5)).await.dispositions,
        vec![Disposition::Unchanged]
    );
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 1);
}

#[tokio::test]
async fn a_change_that_names_no_field_makes_no_call_at_all() {
    let connect =
        FakeConnect::with_users(&[("u-1", "jdoe", info("Jane", "Doe", "jane@example.com"), &[])]);
    let queues = FakeQueues::default();
    let payload = json!({"Records": [sqs_record("m-1", &json!({"UserId": "u-1", "IdentityInfo": {}}), 1, None)]});
    let (recs, fifo) = records(&payload);
    assert_eq!(
        pipeline(&connect, &queues)
            .run(&recs, fifo, in_seconds(5))
            .await
            .dispositions,
        vec![Disposition::Unchanged]
    );
    assert!(connect.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn each_record_ends_on_its_own_in_a_mixed_batch() {
    let connect = FakeConnect::with_users(&[
        ("u-1", "jdoe", info("Jane", "Doe", "jane@example.com"), &[]),
        (
            "u-2",
            "admin",
            info("Ada", "Admin", "ada@example.com"),
            &["sp-admin"],
        ),
    ]);
    let queues = FakeQueues::default();
    let payload = json!({"Records": [
        sqs_record("m-ok", &change("u-1", json!({"Mobile": "(415) 555-0123"}), "2026-11-29T10:00:00Z"), 1, None),
        {"messageId": "m-bad", "body": "{oops", "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:changes"},
        sqs_record("m-mobile", &change("u-1", json!({"Mobile": "12"}), "2026-11-29T10:00:00Z"), 1, None),
        sqs_record("m-ghost", &json!({"Username": "nobody", "IdentityInfo": {"FirstName": "X"}}), 1, None),
        sqs_record("m-protected", &change("u-2", json!({"FirstName": "Eve"}), "2026-11-29T10:00:00Z"), 1, None),
        sqs_record("m-email", &change("u-1", json!({"Email": "jane@evil.test"}), "2026-11-29T10:00:00Z"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(
        d[0],
        Disposition::Updated,
        "not sunk by m-email, refused on its own"
    );
    assert_eq!(d[1], Disposition::DeadLettered(ErrorClass::MalformedEvent));
    assert_eq!(d[2], Disposition::DeadLettered(ErrorClass::ValidationError));
    assert_eq!(
        d[3],
        Disposition::DeadLettered(ErrorClass::ResourceNotFoundException)
    );
    assert_eq!(d[4], Disposition::DeadLettered(ErrorClass::PolicyViolation));
    assert_eq!(d[5], Disposition::DeadLettered(ErrorClass::PolicyViolation));
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 1);
    assert_eq!(connect.user("u-1").mobile.as_deref(), Some("+14155550123"));
    let letters = queues.letters.lock().unwrap();
    let bad = letters.iter().find(|l| l.source_id == "m-bad").unwrap();
    assert_eq!(bad.body, "{oops");
    assert_eq!(bad.attempts, 1);
    let ghost = letters.iter().find(|l| l.source_id == "m-ghost").unwrap();
    assert_eq!(ghost.instance_id.as_deref(), Some(INSTANCE));
    assert_eq!(ghost.event_id.as_deref(), Some("m-ghost"));
    let protected = letters
        .iter()
        .find(|l| l.source_id == "m-protected")
        .unwrap();
    assert_eq!(protected.user_id.as_deref(), Some("u-2"));
}

#[tokio::test]
async fn changes_to_different_users_do_not_share_an_outcome() {
    let connect = FakeConnect::with_users(&[
        ("u-1", "a", info("A", "One", "a@example.com"), &[]),
        ("u-2", "b", info("B", "Two", "b@example.com"), &[]),
    ]);
    connect.fail(
        "UpdateUserIdentityInfo",
        "u-1",
        &[ErrorClass::InvalidParameterException],
    );
    let queues = FakeQueues::default();
    let payload = json!({"Records": [
        sqs_record("m-1", &change("u-1", json!({"LastName": "Uno"}), "2026-11-29T10:00:00Z"), 1, None),
        sqs_record("m-2", &change("u-2", json!({"LastName": "Dos"}), "2026-11-29T10:00:00Z"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(
        d,
        vec![
            Disposition::DeadLettered(ErrorClass::InvalidParameterException),
            Disposition::Updated
        ]
    );
}

#[tokio::test]
async fn a_retryable_failure_is_handed_back_below_max_receive_count_and_dead_lettered_at_it() {
    let connect = one_user();
    connect.fail(
        "UpdateUserIdentityInfo",
        "u-1",
        &[ErrorClass::ThrottlingException; 6],
    );
    let queues = FakeQueues::default();
    let p = pipeline(&connect, &queues);
    let body = change("u-1", json!({"LastName": "Uno"}), "2026-11-29T10:00:00Z");
    let (recs, _) = records(&json!({"Records": [sqs_record("m-1", &body, 2, None)]}));
    assert_eq!(
        p.run(&recs, false, in_seconds(5)).await.dispositions,
        vec![Disposition::HandedBack(HandBack::Retry(
            ErrorClass::ThrottlingException
        ))]
    );
    let (recs, _) = records(&json!({"Records": [sqs_record("m-1", &body, 3, None)]}));
    assert_eq!(
        p.run(&recs, false, in_seconds(5)).await.dispositions,
        vec![Disposition::DeadLettered(ErrorClass::ThrottlingException)]
    );
    assert_eq!(
        queues.letters.lock().unwrap()[0].attempts,
        3,
        "SQS attempts are the receive count"
    );
}

#[tokio::test]
async fn a_direct_eventbridge_event_is_dead_lettered_after_three_attempts() {
    let connect = one_user();
    connect.fail(
        "DescribeUser",
        "u-1",
        &[ErrorClass::InternalServiceException; 3],
    );
    let queues = FakeQueues::default();
    let event = json!({"version": "0", "id": "ev-9", "detail-type": "UserChanged", "source": "hr",
        "account": "1", "time": "2026-11-29T10:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"UserId": "u-1", "IdentityInfo": {"LastName": "Uno"}}});
    let (recs, _) = records(&event);
    let d = pipeline(&connect, &queues)
        .run(&recs, false, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(
        d,
        vec![Disposition::DeadLettered(
            ErrorClass::InternalServiceException
        )]
    );
    let letter = queues.letters.lock().unwrap()[0].clone();
    assert_eq!(
        letter.attempts, 3,
        "EventBridge attempts are the attempts made in the invocation"
    );
    assert_eq!(connect.count("DescribeUser"), 3);
    assert_eq!(letter.source_id, "ev-9");
    assert_eq!(serde_json::from_str::<Value>(&letter.body).unwrap(), event);
}

#[tokio::test]
async fn a_failed_dead_letter_send_keeps_the_record_for_redelivery() {
    let connect = FakeConnect::default();
    let queues = FakeQueues::default();
    *queues.down.lock().unwrap() = true;
    let (recs, _) =
        records(&json!({"Records": [sqs_record("m-1", &json!("not a document"), 1, None)]}));
    let d = pipeline(&connect, &queues)
        .run(&recs, false, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(
        d,
        vec![Disposition::HandedBack(HandBack::DeadLetterFailed(
            ErrorClass::MalformedEvent
        ))]
    );

    let event = json!({"id": "ev-1", "detail-type": "x", "source": "s", "detail": 5});
    let (recs, _) = records(&event);
    let d = pipeline(&connect, &queues)
        .run(&recs, false, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(
        d,
        vec![Disposition::NotAcknowledged(ErrorClass::MalformedEvent)]
    );
}

#[tokio::test]
async fn in_a_fifo_batch_a_failing_group_hands_back_its_later_records_while_other_groups_go_on() {
    let connect = three_users();
    connect.fail(
        "UpdateUserIdentityInfo",
        "u-1",
        &[ErrorClass::ThrottlingException; 3],
    );
    let queues = FakeQueues::default();
    let at = "2026-11-29T10:00:00Z";
    let payload = json!({"Records": [
        sqs_record("g1-1", &change("u-1", json!({"LastName": "Uno"}), at), 1, Some("g1")),
        sqs_record("g2-1", &change("u-2", json!({"LastName": "Dos"}), at), 1, Some("g2")),
        sqs_record("g1-2", &change("u-3", json!({"LastName": "Tres"}), at), 1, Some("g1")),
        sqs_record("g2-2", &change("u-3", json!({"FirstName": "Cee"}), at), 1, Some("g2")),
        sqs_record("g1-3", &json!("malformed"), 1, Some("g1")),
    ]});
    let (recs, fifo) = records(&payload);
    assert!(fifo);
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(
        d[0],
        Disposition::HandedBack(HandBack::Retry(ErrorClass::ThrottlingException))
    );
    assert_eq!(d[1], Disposition::Updated);
    assert_eq!(d[2], Disposition::HandedBack(HandBack::GroupOrder));
    assert_eq!(d[3], Disposition::Updated);
    assert_eq!(
        d[4],
        Disposition::HandedBack(HandBack::GroupOrder),
        "not even dead-lettered out of order"
    );
    assert!(queues.letters.lock().unwrap().is_empty());
    assert_eq!(connect.user("u-3").first_name.as_deref(), Some("Cee"));
    assert_eq!(
        connect.user("u-3").last_name.as_deref(),
        Some("Three"),
        "g1-2 was not applied"
    );
}

#[tokio::test]
async fn slow_calls_meet_the_deadline_with_every_record_applied_or_handed_back() {
    let users: Vec<(String, IdentityInfo)> = (0..12)
        .map(|i| (format!("u-{i}"), info("A", "B", "a@example.com")))
        .collect();
    let connect = FakeConnect::with_users(
        &users
            .iter()
            .map(|(id, i)| (id.as_str(), "x", i.clone(), &[][..]))
            .collect::<Vec<_>>(),
    );
    *connect.latency.lock().unwrap() = Duration::from_millis(150);
    let queues = FakeQueues::default();
    let recs: Vec<Value> = (0..12)
        .map(|i| {
            sqs_record(
                &format!("m-{i}"),
                &change(
                    &format!("u-{i}"),
                    json!({"LastName": "C"}),
                    "2026-11-29T10:00:00Z",
                ),
                1,
                None,
            )
        })
        .collect();
    let (recs, fifo) = records(&json!({ "Records": recs }));
    let deadline = Instant::now() + Duration::from_millis(1200);
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, deadline)
        .await
        .dispositions;
    assert!(
        Instant::now() < deadline,
        "the reply comes before the deadline"
    );
    let applied = d.iter().filter(|d| **d == Disposition::Updated).count();
    // Deferred: not reached before the deadline, or not read since its turn could not
    // come before it.
    let back = d
        .iter()
        .filter(|d| {
            matches!(
                d,
                Disposition::HandedBack(HandBack::Deadline | HandBack::FleetTurn)
            )
        })
        .count();
    assert_eq!(applied + back, 12, "{d:?}");
    assert!(applied > 0 && back > 0, "{d:?}");
    assert!(queues.letters.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_direct_event_past_the_deadline_is_dead_lettered_as_unknown_error() {
    let connect = one_user();
    let queues = FakeQueues::default();
    let event = json!({"id": "ev-1", "detail-type": "x", "source": "s", "time": "2026-11-29T10:00:00Z",
        "detail": {"UserId": "u-1", "IdentityInfo": {"LastName": "Uno"}}});
    let (recs, _) = records(&event);
    // Too late for a Connect attempt (200 ms before the 100 ms margin), not for a dead
    // letter (100 ms before half the margin).
    let d = pipeline(&connect, &queues)
        .run(&recs, false, Instant::now() + Duration::from_millis(250))
        .await
        .dispositions;
    assert_eq!(d, vec![Disposition::DeadLettered(ErrorClass::UnknownError)]);
    assert!(
        connect.calls.lock().unwrap().is_empty(),
        "no call started that could not finish"
    );
}

#[tokio::test]
async fn a_panic_while_applying_fails_only_that_users_records() {
    let connect = FakeConnect::with_users(&[
        ("u-1", "a", info("A", "One", "a@example.com"), &[]),
        ("u-2", "b", info("B", "Two", "b@example.com"), &[]),
    ]);
    *connect.panic_on.lock().unwrap() = Some("u-1".into());
    let queues = FakeQueues::default();
    let at = "2026-11-29T10:00:00Z";
    let (recs, fifo) = records(&json!({"Records": [
        sqs_record("m-1", &change("u-1", json!({"LastName": "Uno"}), at), 3, None),
        sqs_record("m-2", &change("u-2", json!({"LastName": "Dos"}), at), 1, None),
    ]}));
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(
        d,
        vec![
            Disposition::DeadLettered(ErrorClass::UnknownError),
            Disposition::Updated
        ]
    );
}

#[tokio::test]
async fn a_panic_while_resolving_a_username_fails_only_the_records_that_named_it() {
    let connect = FakeConnect::with_users(&[
        ("u-1", "a", info("A", "One", "a@example.com"), &[]),
        ("u-2", "b", info("B", "Two", "b@example.com"), &[]),
    ]);
    *connect.panic_on.lock().unwrap() = Some("a".into());
    let queues = FakeQueues::default();
    let at = "2026-11-29T10:00:00Z";
    let (recs, fifo) = records(&json!({"Records": [
        sqs_record("m-1", &json!({"Username": "a", "IdentityInfo": {"LastName": "Uno"}}), 3, None),
        sqs_record("m-2", &change("u-2", json!({"LastName": "Dos"}), at), 1, None),
        sqs_record("m-3", &json!({"Username": "a", "IdentityInfo": {"FirstName": "Ana"}}), 1, None),
    ]}));
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(
        d,
        vec![
            Disposition::DeadLettered(ErrorClass::UnknownError),
            Disposition::Updated,
            Disposition::HandedBack(HandBack::Retry(ErrorClass::UnknownError)),
        ]
    );
    assert_eq!(connect.user("u-1").last_name.as_deref(), Some("One"));
}

#[tokio::test]
async fn a_change_of_no_field_naming_a_username_ends_unchanged_without_a_look_up() {
    // Entra's active-only PatchOp for a username Connect does not know.
    let connect = one_user();
    let queues = FakeQueues::default();
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Username": "nobody.here", "Operations": [{"op": "Replace", "path": "active", "value": "False"}]});
    let (recs, fifo) = one_record("m-1", &patch, 1, None);
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(d, vec![Disposition::Unchanged]);
    assert!(
        connect.calls.lock().unwrap().is_empty(),
        "{:?}",
        connect.calls.lock().unwrap()
    );
    assert!(queues.letters.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_username_is_resolved_once_per_invocation_and_changes_to_it_coalesce() {
    let connect =
        FakeConnect::with_users(&[("u-1", "jdoe", info("Jane", "Doe", "jane@example.com"), &[])]);
    let queues = FakeQueues::default();
    let (recs, fifo) = records(&json!({"Records": [
        sqs_record("m-1", &json!({"Username": "jdoe", "IdentityInfo": {"FirstName": "J"}}), 1, None),
        sqs_record("m-2", &json!({"Username": "jdoe", "IdentityInfo": {"Mobile": "+14155550123"}}), 1, None),
        sqs_record("m-3", &change("u-1", json!({"SecondaryEmail": "j@example.org"}), "2026-11-29T10:00:00Z"), 1, None),
    ]}));
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(d, vec![Disposition::Updated; 3]);
    assert_eq!(connect.count("SearchUsers"), 1);
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 1);
    let u = connect.user("u-1");
    assert_eq!(u.first_name.as_deref(), Some("J"));
    assert_eq!(u.mobile.as_deref(), Some("+14155550123"));
    assert_eq!(u.secondary_email.as_deref(), Some("j@example.org"));
}

#[tokio::test]
async fn a_saml_instance_never_sends_email_and_refuses_to_change_it() {
    let connect = one_user();
    *connect.kind.lock().unwrap() = Some(IdentityManagement::Saml);
    let queues = FakeQueues::default();
    let p = pipeline(&connect, &queues);
    let (recs, _) = records(
        &json!({"Records": [sqs_record("m-1", &change("u-1", json!({"Mobile": "+14155550123"}), "2026-11-29T10:00:00Z"), 1, None)]}),
    );
    assert_eq!(
        p.run(&recs, false, in_seconds(5)).await.dispositions,
        vec![Disposition::Updated]
    );
    assert!(!connect.updates.lock().unwrap()[0].1.send_email);
    let (recs, _) = records(
        &json!({"Records": [sqs_record("m-2", &change("u-1", json!({"Email": "new@example.com"}), "2026-11-29T10:00:00Z"), 1, None)]}),
    );
    assert_eq!(
        p.run(&recs, false, in_seconds(5)).await.dispositions,
        vec![Disposition::DeadLettered(ErrorClass::ValidationError)]
    );
}

#[tokio::test]
async fn a_fully_updated_user_receives_the_complete_merged_identity() {
    let connect = one_user();
    let queues = FakeQueues::default();
    let (recs, _) = records(
        &json!({"Records": [sqs_record("m-1", &change("u-1", json!({"Mobile": "+442079460958"}), "2026-11-29T10:00:00Z"), 1, None)]}),
    );
    let d = pipeline(&connect, &queues)
        .run(&recs, false, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(d, vec![Disposition::Updated]);
    let sent = connect.updates.lock().unwrap()[0].1.info.clone();
    assert_eq!(
        sent,
        IdentityInfo {
            first_name: Some("A".into()),
            last_name: Some("One".into()),
            email: Some("a@example.com".into()),
            secondary_email: None,
            mobile: Some("+442079460958".into()),
        }
    );
}

// ---- each change judged on its own ----------------------------------------------------

#[tokio::test]
async fn a_refused_email_change_is_dead_lettered_alone_and_the_good_change_to_that_user_is_applied()
{
    let connect =
        FakeConnect::with_users(&[("u-1", "jdoe", info("Jane", "Doe", "jane@example.com"), &[])]);
    let queues = FakeQueues::default();
    let at = "2026-11-29T10:00:00Z";
    let (recs, fifo) = records(&json!({"Records": [
        sqs_record("m-mobile", &change("u-1", json!({"Mobile": "+14155550123"}), at), 1, None),
        sqs_record("m-email", &change("u-1", json!({"Email": "jane@evil.test"}), "2026-11-29T10:00:01Z"), 1, None),
        sqs_record("m-name", &change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:02Z"), 1, None),
    ]}));
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(
        d,
        vec![
            Disposition::Updated,
            Disposition::DeadLettered(ErrorClass::PolicyViolation),
            Disposition::Updated
        ]
    );
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 1);
    let u = connect.user("u-1");
    assert_eq!(u.mobile.as_deref(), Some("+14155550123"));
    assert_eq!(u.last_name.as_deref(), Some("Smith"));
    assert_eq!(u.email.as_deref(), Some("jane@example.com"));
    let letters = queues.letters.lock().unwrap();
    assert_eq!(letters.len(), 1, "only the refused change is dead-lettered");
    assert_eq!(letters[0].source_id, "m-email");
}

#[tokio::test]
async fn on_an_existing_directory_instance_a_name_change_is_refused_alone_and_a_mobile_change_applied()
 {
    let connect = one_user();
    *connect.kind.lock().unwrap() = Some(IdentityManagement::ExistingDirectory);
    let queues = FakeQueues::default();
    let at = "2026-11-29T10:00:00Z";
    let (recs, fifo) = records(&json!({"Records": [
        sqs_record("m-name", &change("u-1", json!({"FirstName": "Eve"}), at), 1, None),
        sqs_record("m-mobile", &change("u-1", json!({"Mobile": "+14155550123"}), at), 1, None),
    ]}));
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(
        d,
        vec![
            Disposition::DeadLettered(ErrorClass::ValidationError),
            Disposition::Updated
        ]
    );
    let u = connect.user("u-1");
    assert_eq!(u.first_name.as_deref(), Some("A"));
    assert_eq!(u.mobile.as_deref(), Some("+14155550123"));
}

#[tokio::test]
async fn a_protected_security_profile_refuses_every_change_to_that_user() {
    let connect = FakeConnect::with_users(&[(
        "u-2",
        "admin",
        info("Ada", "Admin", "ada@example.com"),
        &["sp-admin"],
    )]);
    let queues = FakeQueues::default();
    let at = "2026-11-29T10:00:00Z";
    let (recs, fifo) = records(&json!({"Records": [
        sqs_record("m-1", &change("u-2", json!({"Mobile": "+14155550123"}), at), 1, None),
        sqs_record("m-2", &change("u-2", json!({"Email": "eve@evil.test"}), at), 1, None),
    ]}));
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(
        d,
        vec![Disposition::DeadLettered(ErrorClass::PolicyViolation); 2]
    );
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 0);
}

// ---- one read-modify-write per user at a time ---------------------------------------

#[tokio::test]
async fn one_user_reached_through_two_fifo_groups_keeps_both_changes() {
    let connect = one_user();
    *connect.latency.lock().unwrap() = Duration::from_millis(40);
    let queues = FakeQueues::default();
    let at = "2026-11-29T10:00:00Z";
    let (recs, fifo) = records(&json!({"Records": [
        sqs_record("g1-1", &change("u-1", json!({"LastName": "Uno"}), at), 1, Some("g1")),
        sqs_record("g2-1", &change("u-1", json!({"Mobile": "+14155550123"}), at), 1, Some("g2")),
    ]}));
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(d, vec![Disposition::Updated; 2]);
    let u = connect.user("u-1");
    assert_eq!(u.last_name.as_deref(), Some("Uno"), "not reverted by g2");
    assert_eq!(u.mobile.as_deref(), Some("+14155550123"));
    let calls = connect.calls.lock().unwrap().clone();
    let ops: Vec<&str> = calls
        .iter()
        .map(|(op, _)| *op)
        .filter(|op| *op != "DescribeInstance")
        .collect();
    assert_eq!(
        ops,
        [
            "DescribeUser",
            "UpdateUserIdentityInfo",
            "DescribeUser",
            "UpdateUserIdentityInfo"
        ],
        "each read-modify-write reads after the other's update"
    );
}

// ---- attempts meet the limiter and the deadline ---------------------------------------

#[tokio::test]
async fn every_attempt_of_a_retried_update_waits_for_a_limiter_token() {
    let connect = one_user();
    connect.fail(
        "UpdateUserIdentityInfo",
        "u-1",
        &[ErrorClass::InternalServiceException; 3],
    );
    let queues = FakeQueues::default();
    let at = "2026-11-29T10:00:00Z";
    let (recs, fifo) = one_record(
        "m-1",
        &change("u-1", json!({"LastName": "Uno"}), at),
        1,
        None,
    );
    // Five updates a second: one token every 200 ms.
    let d = pipeline_with(&connect, &queues, RateLimits::new(5.0, 1000.0, 1000.0))
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(
        d,
        vec![Disposition::HandedBack(HandBack::Retry(
            ErrorClass::InternalServiceException
        ))]
    );
    let starts = connect.starts_of("UpdateUserIdentityInfo");
    assert_eq!(starts.len(), 3, "three attempts, each a call of the port");
    for pair in starts.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(190),
            "attempts {:?} apart",
            pair[1] - pair[0]
        );
    }
}

#[tokio::test]
async fn no_attempt_starts_that_cannot_finish_before_the_deadline() {
    let connect = one_user();
    connect.fail(
        "UpdateUserIdentityInfo",
        "u-1",
        &[ErrorClass::InternalServiceException; 3],
    );
    connect
        .op_latency
        .lock()
        .unwrap()
        .insert("UpdateUserIdentityInfo", Duration::from_millis(150));
    let queues = FakeQueues::default();
    let at = "2026-11-29T10:00:00Z";
    let (recs, fifo) = one_record(
        "m-1",
        &change("u-1", json!({"LastName": "Uno"}), at),
        1,
        None,
    );
    let deadline = Instant::now() + Duration::from_millis(700);
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, deadline)
        .await
        .dispositions;
    assert!(Instant::now() < deadline);
    assert_eq!(
        d,
        vec![Disposition::HandedBack(HandBack::Retry(
            ErrorClass::InternalServiceException
        ))]
    );
    let s = settings();
    let latest_start = deadline - s.deadline_margin - s.call_budget;
    let starts = connect.starts_of("UpdateUserIdentityInfo");
    assert!(starts.len() >= 2, "retried while time allowed: {starts:?}");
    assert!(starts.len() < 3, "the third attempt would not fit");
    assert!(starts.iter().all(|at| *at <= latest_start));
}

// ---- unknown outcomes ---------------------------------------------------------------

#[tokio::test]
async fn an_update_cut_off_after_it_was_sent_is_an_unknown_outcome_and_not_retried() {
    let connect = one_user();
    connect
        .op_latency
        .lock()
        .unwrap()
        .insert("UpdateUserIdentityInfo", Duration::from_millis(400));
    let queues = FakeQueues::default();
    let event = json!({"id": "ev-1", "detail-type": "x", "source": "s", "time": "2026-11-29T10:00:00Z",
        "detail": {"UserId": "u-1", "IdentityInfo": {"LastName": "Uno"}}});
    let (recs, _) = records(&event);
    let d = pipeline(&connect, &queues)
        .run(&recs, false, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(d, vec![Disposition::DeadLettered(ErrorClass::UnknownError)]);
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 1, "never blindly");
    let letter = queues.letters.lock().unwrap()[0].clone();
    assert!(
        letter.message.contains("outcome is unknown"),
        "{}",
        letter.message
    );

    let (recs, fifo) = one_record(
        "m-1",
        &change("u-1", json!({"FirstName": "Ay"}), "2026-11-29T10:00:00Z"),
        1,
        None,
    );
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(
        d,
        vec![Disposition::HandedBack(HandBack::Retry(
            ErrorClass::UnknownError
        ))]
    );
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 2);
}

// ---- FIFO order per record ------------------------------------------------------------

#[tokio::test]
async fn after_a_handed_back_record_the_later_records_of_its_group_are_handed_back_even_if_coalesced()
 {
    let connect = one_user();
    connect.fail(
        "UpdateUserIdentityInfo",
        "u-1",
        &[ErrorClass::ThrottlingException; 3],
    );
    let queues = FakeQueues::default();
    let at = "2026-11-29T10:00:00Z";
    let (recs, fifo) = records(&json!({"Records": [
        sqs_record("g1-1", &change("u-1", json!({"LastName": "Uno"}), at), 1, Some("g1")),
        sqs_record("g1-2", &change("u-1", json!({"FirstName": "Ay"}), at), 3, Some("g1")),
    ]}));
    let d = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await
        .dispositions;
    assert_eq!(
        d,
        vec![
            Disposition::HandedBack(HandBack::Retry(ErrorClass::ThrottlingException)),
            Disposition::HandedBack(HandBack::GroupOrder)
        ]
    );
    assert!(queues.letters.lock().unwrap().is_empty());
}

// ---- dead letters that always send ----------------------------------------------------

#[tokio::test]
async fn a_dead_letter_send_that_started_is_never_cut_short() {
    let connect = FakeConnect::default();
    let queues = FakeQueues::default();
    // Longer than the send budget, as a send whose SQS client stalls: it still runs to
    // its end, since SQS may have taken the message.
    *queues.latency.lock().unwrap() = Duration::from_millis(560);
    let (recs, _) =
        records(&json!({"Records": [sqs_record("m-1", &json!("not a document"), 1, None)]}));
    let d = pipeline(&connect, &queues)
        .run(&recs, false, Instant::now() + Duration::from_millis(600))
        .await
        .dispositions;
    assert_eq!(
        *queues.started.lock().unwrap(),
        *queues.finished.lock().unwrap(),
        "a send SQS may have taken was dropped midway"
    );
    assert_eq!(
        d,
        vec![Disposition::DeadLettered(ErrorClass::MalformedEvent)]
    );
}

#[tokio::test]
async fn a_dead_letter_send_that_cannot_finish_is_not_started_and_the_record_is_handed_back() {
    let connect = FakeConnect::default();
    let queues = FakeQueues::default();
    let (recs, _) =
        records(&json!({"Records": [sqs_record("m-1", &json!("not a document"), 1, None)]}));
    let d = pipeline(&connect, &queues)
        .run(&recs, false, Instant::now() + Duration::from_millis(90))
        .await
        .dispositions;
    assert_eq!(*queues.started.lock().unwrap(), 0);
    assert_eq!(d, vec![Disposition::HandedBack(HandBack::Deadline)]);
}

#[tokio::test]
async fn the_run_report_counts_attempts_throttles_and_limiter_wait_per_operation() {
    let connect = one_user();
    connect.fail(
        "UpdateUserIdentityInfo",
        "u-1",
        &[ErrorClass::ThrottlingException; 2],
    );
    let queues = FakeQueues::default();
    let (recs, fifo) = one_record(
        "m-1",
        &json!({"Username": "a", "IdentityInfo": {"LastName": "Uno"}}),
        1,
        None,
    );
    let report = pipeline_with(&connect, &queues, RateLimits::new(5.0, 1000.0, 1000.0))
        .run(&recs, fifo, in_seconds(5))
        .await;
    assert_eq!(report.dispositions, vec![Disposition::Updated]);
    assert_eq!(report.calls.update_user_identity_info, 3);
    assert_eq!(report.calls.describe_user, 1);
    assert_eq!(report.calls.search_users, 1);
    assert_eq!(report.calls.describe_instance, 1);
    assert_eq!(report.throttled.update_user_identity_info, 2);
    assert_eq!(report.throttled.describe_user, 0);
    assert!(
        report.limiter_wait >= Duration::from_millis(50),
        "{:?}",
        report.limiter_wait
    );
}

#[tokio::test]
async fn a_connection_refused_before_sending_is_retried_like_any_retryable_failure() {
    let connect = one_user();
    connect.fail_reaching(
        "UpdateUserIdentityInfo",
        "u-1",
        &[(ErrorClass::UnknownError, Reach::NotSent)],
    );
    let queues = FakeQueues::default();
    let (recs, fifo) = one_record(
        "m-1",
        &change("u-1", json!({"LastName": "Uno"}), "2026-11-29T10:00:00Z"),
        1,
        None,
    );
    let report = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await;
    assert_eq!(report.dispositions, vec![Disposition::Updated]);
    assert_eq!(report.calls.update_user_identity_info, 2);
    assert_eq!(connect.user("u-1").last_name.as_deref(), Some("Uno"));
}

#[tokio::test]
async fn an_update_whose_connection_broke_after_sending_is_not_retried_but_a_read_is() {
    let connect = one_user();
    connect.fail_reaching(
        "DescribeUser",
        "u-1",
        &[(ErrorClass::UnknownError, Reach::Unknown)],
    );
    connect.fail_reaching(
        "UpdateUserIdentityInfo",
        "u-1",
        &[(ErrorClass::UnknownError, Reach::Unknown)],
    );
    let queues = FakeQueues::default();
    let (recs, fifo) = one_record(
        "m-1",
        &change("u-1", json!({"LastName": "Uno"}), "2026-11-29T10:00:00Z"),
        3,
        None,
    );
    let report = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await;
    assert_eq!(
        report.dispositions,
        vec![Disposition::DeadLettered(ErrorClass::UnknownError)]
    );
    assert_eq!(report.calls.describe_user, 2, "the read was tried again");
    assert_eq!(report.calls.update_user_identity_info, 1, "never blindly");
    let letter = queues.letters.lock().unwrap()[0].clone();
    assert!(
        letter.message.contains("the outcome is unknown"),
        "{}",
        letter.message
    );
}

// ---- usernames ------------------------------------------------------------------------

fn three_named_users() -> FakeConnect {
    FakeConnect::with_users(&[
        ("u-1", "ana", info("Ana", "One", "ana@example.com"), &[]),
        ("u-2", "ben", info("Ben", "Two", "ben@example.com"), &[]),
        ("u-3", "cy", info("Cy", "Three", "cy@example.com"), &[]),
    ])
}

fn by_username(names: &[&str]) -> (Vec<connect_identity_sync::domain::record::Record>, bool) {
    let recs: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            sqs_record(
                &format!("m-{i}"),
                &json!({"Username": n, "IdentityInfo": {"LastName": "Renamed"}}),
                1,
                None,
            )
        })
        .collect();
    records(&json!({ "Records": recs }))
}

#[tokio::test]
async fn a_batch_of_usernames_is_resolved_from_one_listing_under_the_list_limiter() {
    let connect = three_named_users();
    let queues = FakeQueues::default();
    let (recs, fifo) = by_username(&["ana", "ben", "cy"]);
    let limits = RateLimits::new(1000.0, 1000.0, 1000.0).with_list(1000.0);
    let report = pipeline_with(&connect, &queues, limits)
        .run(&recs, fifo, in_seconds(5))
        .await;
    assert_eq!(report.dispositions, vec![Disposition::Updated; 3]);
    assert_eq!(connect.count("ListUsers"), 1);
    assert_eq!(connect.count("SearchUsers"), 0);
    assert_eq!(report.calls.list_users, 1);
    assert_eq!(connect.user("u-2").last_name.as_deref(), Some("Renamed"));
}

#[tokio::test]
async fn without_a_list_rate_every_username_is_searched() {
    let connect = three_named_users();
    let queues = FakeQueues::default();
    let (recs, fifo) = by_username(&["ana", "ben", "cy"]);
    let report = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(5))
        .await;
    assert_eq!(report.dispositions, vec![Disposition::Updated; 3]);
    assert_eq!(connect.count("ListUsers"), 0);
    assert_eq!(connect.count("SearchUsers"), 3);
}

#[tokio::test]
async fn a_listing_page_that_cannot_finish_before_the_deadline_is_not_started() {
    let connect = three_named_users();
    let queues = FakeQueues::default();
    let (recs, fifo) = by_username(&["ana", "ben", "cy"]);
    let limits = RateLimits::new(1000.0, 1000.0, 1000.0).with_list(1000.0);
    // Less than the margin plus one attempt's budget is left.
    let s = settings();
    let deadline = Instant::now() + s.deadline_margin + s.call_budget / 2;
    let report = pipeline_with(&connect, &queues, limits)
        .run(&recs, fifo, deadline)
        .await;
    assert_eq!(
        report.dispositions,
        vec![Disposition::HandedBack(HandBack::Deadline); 3]
    );
    assert_eq!(connect.count("ListUsers"), 0);
    assert_eq!(connect.count("SearchUsers"), 0);
}

// ---- the fleet: every call paced, a throttle slows the operation down ------------------

fn four_users() -> FakeConnect {
    numbered_users(4, "user", &info("Ann", "Old", "ann@example.com"))
}

fn four_changes() -> (Vec<Record>, bool) {
    let recs: Vec<Value> = (1..=4)
        .map(|i| {
            sqs_record(
                &format!("m-{i}"),
                &change(
                    &format!("u-{i}"),
                    json!({"LastName": "New"}),
                    "2026-11-29T10:00:00Z",
                ),
                1,
                None,
            )
        })
        .collect();
    records(&json!({ "Records": recs }))
}

#[tokio::test(start_paused = true)]
async fn a_cold_container_asks_for_the_instance_once_however_many_users_need_it_at_once() {
    let connect = four_users();
    *connect.latency.lock().unwrap() = Duration::from_millis(20);
    let queues = FakeQueues::default();
    let (recs, fifo) = four_changes();
    let report = pipeline(&connect, &queues)
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(report.dispositions, vec![Disposition::Updated; 4]);
    assert_eq!(connect.count("DescribeInstance"), 1);
    assert_eq!(report.calls.describe_instance, 1);
}

#[tokio::test(start_paused = true)]
async fn describe_instance_is_paced_and_a_failure_is_shared_by_the_users_that_asked() {
    let connect = four_users();
    *connect.latency.lock().unwrap() = Duration::from_millis(20);
    connect.fail(
        "DescribeInstance",
        "",
        &[ErrorClass::InternalServiceException; 3],
    );
    let queues = FakeQueues::default();
    let (recs, fifo) = four_changes();
    // DescribeInstance at the SearchUsers share: 2/s.
    let report = pipeline_with(&connect, &queues, RateLimits::new(1000.0, 1000.0, 2.0))
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(
        report.dispositions,
        vec![Disposition::HandedBack(HandBack::Retry(ErrorClass::InternalServiceException)); 4]
    );
    // Three attempts for the four users together, each on a token of 2/s.
    let starts = connect.starts_of("DescribeInstance");
    assert_eq!(starts.len(), 3);
    assert!(starts[2] - starts[1] >= Duration::from_millis(500));
    assert!(report.limiter_wait > Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_throttle_slows_the_operation_down_and_is_counted() {
    let connect = four_users();
    connect.fail(
        "UpdateUserIdentityInfo",
        "u-1",
        &[ErrorClass::ThrottlingException],
    );
    let queues = FakeQueues::default();
    let (recs, fifo) = four_changes();
    let report = pipeline_with(&connect, &queues, RateLimits::new(2.0, 1000.0, 1000.0))
        .run(&recs, fifo, in_seconds(20))
        .await;
    assert_eq!(report.dispositions, vec![Disposition::Updated; 4]);
    assert_eq!(report.throttled.update_user_identity_info, 1);
    assert_eq!(report.calls.update_user_identity_info, 5);
    // The first update is throttled: the others, and its retry, come further apart
    // than the 0.5 s of 2/s (the rate dropped to 0.7 of it and climbs back slowly).
    let starts = connect.starts_of("UpdateUserIdentityInfo");
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g > Duration::from_millis(650)),
        "{gaps:?}"
    );
}

#[tokio::test]
async fn a_record_handed_back_for_the_deadline_at_its_last_receive_is_not_dead_lettered() {
    let connect = one_user();
    let queues = FakeQueues::default();
    // MAX_RECEIVE_COUNT is 3 in these settings; no time is left for any call.
    let (recs, fifo) = one_record(
        "m-1",
        &change("u-1", json!({"LastName": "Uno"}), "2026-11-29T10:00:00Z"),
        3,
        None,
    );
    let report = pipeline(&connect, &queues)
        .run(&recs, fifo, Instant::now() + Duration::from_millis(150))
        .await;
    assert_eq!(
        report.dispositions,
        vec![Disposition::HandedBack(HandBack::Deadline)]
    );
    assert!(queues.letters.lock().unwrap().is_empty());
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 0);
}
