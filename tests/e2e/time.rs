//! End to end over the built binary with the staleness guard on (moto's DynamoDB): the
//! times the function trusts. A change dated in the future is refused and pins nothing; a
//! dead-lettered change redriven after a newer one keeps its own time and is superseded;
//! two EventBridge events of one second both count and a redelivery does not; an update
//! whose reply never came, and that lands late, is not overtaken by a newer change.

use std::time::{Duration, Instant};

use harness::connect_emulator::{Fault, Operation};
use harness::fixtures::{
    self, INSTANCE, Record, batch_item_failures, calls_for, eventbridge, identity, response,
};
use harness::{Outgoing, Stack, StackConfig, WATERMARK_TABLE};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");

fn guarded() -> StackConfig {
    fixtures::stack(BIN, 0)
        .watermarks()
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
}

fn at(user: &str, identity: &Value, occurred_at: &str) -> Value {
    json!({"InstanceId": INSTANCE, "UserId": user, "IdentityInfo": identity, "OccurredAt": occurred_at})
}

async fn invoke(stack: &Stack, event: &Value) -> Value {
    response(stack.invoke(event).await.unwrap(), stack)
}

async fn invoke_sqs(stack: &Stack, records: &[Record]) -> Vec<String> {
    batch_item_failures(&invoke(stack, &fixtures::sqs_event(&stack.source.arn, records)).await)
}

/// The `record settled` log lines' `error_message`s, waiting a little for lines still on
/// their way from the process.
async fn settled_messages(stack: &Stack, at_least: usize) -> Vec<String> {
    let read = || {
        fixtures::log_messages(&stack.function.log_lines(), "record settled")
            .iter()
            .map(|v| {
                v["fields"]["error_message"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect::<Vec<_>>()
    };
    for _ in 0..100 {
        if read().len() >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    read()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_dated_far_in_the_future_is_a_validation_error_and_the_field_stays_changeable() {
    let stack = guarded().start().await.expect("stack");
    let pin = eventbridge(
        "ev-pin",
        &at(
            "u-jdoe",
            &json!({"LastName": "Pinned"}),
            "9999-01-01T00:00:00Z",
        ),
    );
    assert_eq!(
        invoke(&stack, &pin).await,
        json!({"outcome": "dead_lettered", "errorClass": "ValidationError"})
    );
    assert_eq!(
        calls_for(&stack, Operation::UpdateUserIdentityInfo, "u-jdoe"),
        0
    );
    let letters = stack.dead_letters().await.unwrap();
    let refused = &letters["ValidationError"];
    assert_eq!(refused.len(), 1, "{letters:?}");
    let message = refused[0].attr("ErrorMessage").unwrap_or_default();
    assert!(message.contains("MAX_CLOCK_SKEW_SECONDS"), "{message}");
    assert_eq!(refused[0].attr("OccurredAt"), Some("9999-01-01T00:00:00Z"));
    assert!(
        stack
            .dynamo
            .item(WATERMARK_TABLE, &format!("{INSTANCE}#u-jdoe"))
            .await
            .unwrap()
            .is_none(),
        "no watermark was set"
    );

    // A real change afterwards, and one a little later, both apply.
    for (id, name, when) in [
        ("ev-real", "Real", "2026-03-01T12:00:00Z"),
        ("ev-later", "Later", "2026-03-01T12:00:01Z"),
    ] {
        let change = eventbridge(id, &at("u-jdoe", &json!({"LastName": name}), when));
        assert_eq!(
            invoke(&stack, &change).await,
            json!({"outcome": "updated"}),
            "{id}"
        );
        assert_eq!(identity(&stack, "u-jdoe")["LastName"], name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_change_redriven_after_a_newer_one_leaves_the_newer_value() {
    // Dead-lettered at its first failed receive, so the test need not wait for visibility
    // timeouts.
    let stack = guarded()
        .env("MAX_RECEIVE_COUNT", "1")
        .start()
        .await
        .expect("stack");
    let mapping = stack.mapping();
    // A bare document: its time is its SentTimestamp.
    let older =
        json!({"InstanceId": INSTANCE, "UserId": "u-jdoe", "IdentityInfo": {"LastName": "Older"}});
    stack.emulator.inject_fault(
        Fault::new(Operation::UpdateUserIdentityInfo, "ThrottlingException", 3).for_user("u-jdoe"),
    );
    stack
        .sqs
        .send(&stack.source.url, &Outgoing::new(older.to_string()))
        .await
        .unwrap();
    let first = mapping.run(Duration::from_secs(20)).await.unwrap();
    assert!(first.drained, "{first:?}");
    let throttled = stack
        .sqs
        .receive(&stack.dlq("ThrottlingException").url, 10, 1, Some(0))
        .await
        .unwrap();
    assert_eq!(throttled.len(), 1, "dead-lettered as ThrottlingException");
    let stamped = throttled[0]
        .attr("OccurredAt")
        .expect("OccurredAt on the dead letter");
    let sent_ms: i64 = throttled[0].attributes["SentTimestamp"].parse().unwrap();
    let stamped_ms = chrono::DateTime::parse_from_rfc3339(stamped)
        .unwrap()
        .timestamp_millis();
    assert!(
        stamped_ms < sent_ms,
        "the change's time, not the dead letter's"
    );

    // A newer change is applied meanwhile.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let newer =
        json!({"InstanceId": INSTANCE, "UserId": "u-jdoe", "IdentityInfo": {"LastName": "Newer"}});
    stack
        .sqs
        .send(&stack.source.url, &Outgoing::new(newer.to_string()))
        .await
        .unwrap();
    mapping.run(Duration::from_secs(20)).await.unwrap();
    assert_eq!(identity(&stack, "u-jdoe")["LastName"], "Newer");

    // The runbook: redrive the throttled changes once Connect's quota allows.
    let run = super::redrive::redrive(
        &stack.moto,
        &[
            "--from",
            &stack.dlq("ThrottlingException").url,
            "--to",
            &stack.source.url,
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let updates = calls_for(&stack, Operation::UpdateUserIdentityInfo, "u-jdoe");
    let replay = mapping.run(Duration::from_secs(20)).await.unwrap();
    assert_eq!(replay.deliveries(), 1, "{replay:?}");
    assert_eq!(replay.handed_back().len(), 0, "{replay:?}");
    assert_eq!(
        identity(&stack, "u-jdoe")["LastName"],
        "Newer",
        "the replayed change wrote the older value back"
    );
    assert_eq!(
        calls_for(&stack, Operation::UpdateUserIdentityInfo, "u-jdoe"),
        updates,
        "superseded: no update"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_eventbridge_events_of_one_second_both_apply_and_a_redelivery_changes_nothing() {
    let stack = guarded().start().await.expect("stack");
    // Both carry the EventBridge time 2026-03-01T12:00:00Z and no OccurredAt of their own:
    // a typo and its fix in the same second.
    let typo = eventbridge(
        "ev-typo",
        &json!({"InstanceId": INSTANCE, "UserId": "u-jdoe", "IdentityInfo": {"LastName": "Deo"}}),
    );
    let fix = eventbridge(
        "ev-fix",
        &json!({"InstanceId": INSTANCE, "UserId": "u-jdoe", "IdentityInfo": {"LastName": "Dough"}}),
    );
    assert_eq!(invoke(&stack, &typo).await, json!({"outcome": "updated"}));
    assert_eq!(
        invoke(&stack, &fix).await,
        json!({"outcome": "updated"}),
        "the second change of the second was dropped"
    );
    assert_eq!(identity(&stack, "u-jdoe")["LastName"], "Dough");
    for again in [&fix, &typo] {
        assert_eq!(invoke(&stack, again).await, json!({"outcome": "unchanged"}));
        assert_eq!(identity(&stack, "u-jdoe")["LastName"], "Dough");
    }
    assert_eq!(
        calls_for(&stack, Operation::UpdateUserIdentityInfo, "u-jdoe"),
        2
    );
    let item = stack
        .dynamo
        .item(WATERMARK_TABLE, &format!("{INSTANCE}#u-jdoe"))
        .await
        .unwrap()
        .expect("the user's watermarks");
    let ids = &item["wmid_LastName"];
    assert!(ids.contains("ev-typo") && ids.contains("ev-fix"), "{ids}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_lands_late_is_not_overtaken_by_a_newer_change() {
    let timeout = Duration::from_secs(4);
    let stack = guarded()
        .env("CONNECT_ATTEMPT_TIMEOUT_MS", "500")
        .function_timeout(timeout)
        .start()
        .await
        .expect("stack");
    // The update is sent, its reply never comes in time, and Connect applies it 2 s later.
    let late_by = Duration::from_secs(2);
    stack.emulator.inject_fault(
        Fault::new(Operation::UpdateUserIdentityInfo, "Late", 1)
            .for_user("u-jdoe")
            .with_delay_ms(late_by.as_millis() as u64),
    );
    let older = Record::json(
        "m-older",
        &at(
            "u-jdoe",
            &json!({"LastName": "Older"}),
            "2026-03-01T10:00:01Z",
        ),
    );
    let newer = Record::json(
        "m-newer",
        &at(
            "u-jdoe",
            &json!({"LastName": "Newer"}),
            "2026-03-01T10:00:05Z",
        ),
    );
    let started = Instant::now();
    assert_eq!(
        invoke_sqs(&stack, std::slice::from_ref(&older)).await,
        vec!["m-older"],
        "an update of unknown outcome is handed back"
    );
    let messages = settled_messages(&stack, 1).await;
    assert!(
        messages[0].contains("the outcome is unknown"),
        "{messages:?}"
    );
    // SQS delivers the newer change at once, while the older request is still on its way.
    assert_eq!(
        identity(&stack, "u-jdoe")["LastName"],
        "Doe",
        "landed already"
    );
    assert!(started.elapsed() < late_by, "too slow to show anything");
    let mut pending = vec![newer];
    let handed_back = invoke_sqs(&stack, &pending).await;
    // Deferred for the kept lease: queued again on the source queue as a fresh copy (and
    // acknowledged), delayed past the lease, or handed back when the copy cannot be sent.
    let requeued = handed_back.is_empty();

    // By the time anything comes again the lease has lapsed and the late request landed.
    let lapsed = timeout + Duration::from_secs(3);
    tokio::time::sleep(lapsed.saturating_sub(started.elapsed())).await;
    pending.retain(|r| handed_back.contains(&r.message_id));
    pending.push(older);
    for round in 2..=3 {
        if pending.is_empty() {
            break;
        }
        let records: Vec<Record> = pending.iter().map(|r| r.clone().received(round)).collect();
        let again = invoke_sqs(&stack, &records).await;
        pending.retain(|r| again.contains(&r.message_id));
    }
    assert!(pending.is_empty(), "still handed back: {pending:?}");
    if requeued {
        // The copy, once its delay has passed, through the event source mapping.
        let report = stack
            .mapping()
            .function_timeout(timeout)
            .run(Duration::from_secs(60))
            .await
            .expect("the queue is polled");
        assert!(report.drained, "the copy was not applied: {report:?}");
        assert_eq!(report.deliveries(), 1, "one copy of the newer change");
    }
    assert_eq!(
        identity(&stack, "u-jdoe")["LastName"],
        "Newer",
        "the late request overwrote the newer change"
    );
}
