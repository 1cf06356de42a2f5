//! End to end over the built binary: retryable failures are handed back until
//! `MAX_RECEIVE_COUNT`, then dead-lettered; a dead-letter queue that cannot be
//! written keeps the record for redelivery.

use std::time::Duration;

use harness::connect_emulator::{Fault, Operation};
use harness::fixtures::{
    self, INSTANCE, Record, batch_item_failures, change, eventbridge, response,
};
use harness::{Invocation, Outgoing, Stack};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");

async fn stack() -> Stack {
    fixtures::stack(BIN, 2).start().await.expect("stack starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_record_is_handed_back_below_max_receive_count_and_dead_lettered_at_it() {
    let stack = stack().await;
    stack.emulator.inject_fault(
        Fault::new(
            Operation::UpdateUserIdentityInfo,
            "ThrottlingException",
            1000,
        )
        .for_user("u-bking"),
    );
    let body = change(INSTANCE, "u-bking", &json!({"FirstName": "Beatrix"})).to_string();
    let fine = change(INSTANCE, "u-asmith", &json!({"FirstName": "Alexandra"})).to_string();

    for receive_count in [1, 2] {
        let event = fixtures::sqs_event(
            &stack.source.arn,
            &[
                Record::new("m-throttled", body.clone()).received(receive_count),
                Record::new(format!("m-fine-{receive_count}"), fine.clone()),
            ],
        );
        let reply = response(stack.invoke(&event).await.unwrap(), &stack);
        assert_eq!(
            batch_item_failures(&reply),
            vec!["m-throttled"],
            "receive {receive_count}: only the throttled record is handed back"
        );
        assert_eq!(
            stack
                .sqs
                .total_depth(&stack.dlq("ThrottlingException").url)
                .await
                .unwrap(),
            0,
            "receive {receive_count}: nothing is dead-lettered below MAX_RECEIVE_COUNT"
        );
    }
    // Each invocation tried the update again before handing the record back.
    let attempts = stack
        .emulator
        .calls(Operation::UpdateUserIdentityInfo)
        .iter()
        .filter(|c| c.user_id.as_deref() == Some("u-bking"))
        .count();
    assert!(
        attempts >= 4,
        "expected retries inside each invocation, saw {attempts} update attempts"
    );

    let event = fixtures::sqs_event(
        &stack.source.arn,
        &[Record::new("m-throttled", body.clone()).received(3)],
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    let letters = stack
        .sqs
        .receive_all(&stack.dlq("ThrottlingException").url)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].body, body);
    assert_eq!(letters[0].attr("Attempts"), Some("3"));
    assert_eq!(letters[0].attr("ErrorClass"), Some("ThrottlingException"));
    assert_eq!(
        stack
            .emulator
            .user(INSTANCE, "u-asmith")
            .unwrap()
            .identity_info
            .first_name
            .as_deref(),
        Some("Alexandra")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_real_queue_a_throttled_change_is_redelivered_then_dead_lettered_by_the_function()
{
    let stack = stack().await;
    stack.emulator.inject_fault(
        Fault::new(
            Operation::UpdateUserIdentityInfo,
            "ThrottlingException",
            1000,
        )
        .for_user("u-bking"),
    );
    // Failing for one invocation's worth of attempts, then accepted.
    stack.emulator.inject_fault(
        Fault::new(
            Operation::UpdateUserIdentityInfo,
            "InternalServiceException",
            3,
        )
        .for_user("u-cwu"),
    );
    let throttled = change(INSTANCE, "u-bking", &json!({"LastName": "Kingsley"})).to_string();
    let flaky = change(INSTANCE, "u-cwu", &json!({"LastName": "Wood"})).to_string();
    let fine = change(INSTANCE, "u-dlee", &json!({"LastName": "Leigh"})).to_string();
    let throttled_id = stack
        .sqs
        .send_body(&stack.source.url, &throttled)
        .await
        .unwrap();
    let flaky_id = stack
        .sqs
        .send_body(&stack.source.url, &flaky)
        .await
        .unwrap();
    let fine_id = stack.sqs.send_body(&stack.source.url, &fine).await.unwrap();

    let report = stack.mapping().run(Duration::from_secs(60)).await.unwrap();
    assert!(report.drained, "the source queue did not drain");
    assert!(
        report.failed_invocations().is_empty(),
        "{:#?}",
        report.failed_invocations()
    );
    let handed_back = report.handed_back();
    assert_eq!(
        handed_back.get(&throttled_id),
        Some(&vec![1, 2]),
        "{handed_back:?}"
    );
    assert_eq!(
        handed_back.get(&flaky_id),
        Some(&vec![1]),
        "{handed_back:?}"
    );
    assert_eq!(handed_back.get(&fine_id), None, "{handed_back:?}");

    let letters = stack
        .sqs
        .receive_all(&stack.dlq("ThrottlingException").url)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].body, throttled);
    assert_eq!(letters[0].attr("SourceId"), Some(throttled_id.as_str()));
    assert_eq!(letters[0].attr("Attempts"), Some("3"));
    assert_eq!(
        stack.sqs.total_depth(&stack.source_dlq.url).await.unwrap(),
        0,
        "the function, not the queue's redrive policy, dead-letters"
    );
    let last_name = |u: &str| {
        stack
            .emulator
            .user(INSTANCE, u)
            .unwrap()
            .identity_info
            .last_name
    };
    assert_eq!(last_name("u-cwu").as_deref(), Some("Wood"));
    assert_eq!(last_name("u-dlee").as_deref(), Some("Leigh"));
    assert_eq!(last_name("u-bking").as_deref(), Some("King"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventbridge_change_is_retried_inside_the_invocation() {
    let stack = stack().await;
    stack.emulator.inject_fault(
        Fault::new(Operation::UpdateUserIdentityInfo, "ThrottlingException", 2).for_user("u-jdoe"),
    );
    let event = eventbridge(
        "eb-retried",
        &change(INSTANCE, "u-jdoe", &json!({"LastName": "Dough"})),
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(reply, json!({"outcome": "updated"}));
    assert_eq!(
        stack
            .emulator
            .user(INSTANCE, "u-jdoe")
            .unwrap()
            .identity_info
            .last_name
            .as_deref(),
        Some("Dough")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_queue_that_does_not_exist_keeps_the_record_for_redelivery() {
    let missing = "validation-queue-not-there-yet";
    // The ValidationError queue is one that does not exist (yet) on moto.
    let stack = fixtures::stack(BIN, 0)
        .env(
            "DLQ_URL_VALIDATION_ERROR",
            format!("{{sqs}}/123456789012/{missing}"),
        )
        .start()
        .await
        .expect("stack starts");
    let url = format!("{}/123456789012/{missing}", stack.moto.endpoint());

    let invalid = change(INSTANCE, "u-jdoe", &json!({"Mobile": "not a number"})).to_string();
    let fine = change(INSTANCE, "u-asmith", &json!({"LastName": "Smythe"})).to_string();

    // SQS: the record is handed back, not acknowledged.
    let event = fixtures::sqs_event(
        &stack.source.arn,
        &[
            Record::new("m-invalid", invalid.clone()),
            Record::new("m-fine", fine),
        ],
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), vec!["m-invalid"]);
    assert_eq!(
        stack
            .emulator
            .user(INSTANCE, "u-asmith")
            .unwrap()
            .identity_info
            .last_name
            .as_deref(),
        Some("Smythe")
    );

    // EventBridge: the invocation fails so Lambda's own retry takes over.
    let event = eventbridge(
        "eb-invalid",
        &change(INSTANCE, "u-jdoe", &json!({"Mobile": "not a number"})),
    );
    let reply = stack.invoke(&event).await.unwrap();
    assert!(
        matches!(reply, Invocation::Error { .. }),
        "expected an invocation error, got {reply:?}"
    );

    // Once the queue exists, the redelivered record is dead-lettered.
    let queue = stack
        .sqs
        .create_queue(&harness::QueueSpec::new(missing))
        .await
        .unwrap();
    assert_eq!(queue.url, url);
    let event = fixtures::sqs_event(
        &stack.source.arn,
        &[Record::new("m-invalid", invalid.clone()).received(2)],
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    let letters = stack.sqs.receive_all(&url).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].body, invalid);
    assert_eq!(letters[0].attr("ErrorClass"), Some("ValidationError"));
    assert_eq!(letters[0].attr("Attempts"), Some("2"));
    assert!(stack.function.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_real_queue_a_dead_letter_outage_delays_but_loses_nothing() {
    let stack = stack().await;
    let dlq = stack.dlq("ValidationError").clone();
    stack.sqs.delete_queue(&dlq.url).await.unwrap();
    let invalid = change(INSTANCE, "u-jdoe", &json!({"Email": "nope"})).to_string();
    let id = stack
        .sqs
        .send(&stack.source.url, &Outgoing::new(invalid.clone()))
        .await
        .unwrap();

    // While the queue is gone the record keeps coming back.
    let first = stack.mapping().poll_once().await.unwrap().expect("a batch");
    assert_eq!(first.handed_back(), vec![id.clone()]);

    let recreated = stack
        .sqs
        .create_queue(&harness::QueueSpec::new(dlq.name.clone()))
        .await
        .unwrap();
    assert_eq!(recreated.url, dlq.url);
    let report = stack.mapping().run(Duration::from_secs(30)).await.unwrap();
    assert!(report.drained);
    let letters = stack.sqs.receive_all(&dlq.url).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].body, invalid);
    assert_eq!(letters[0].attr("SourceId"), Some(id.as_str()));
    assert_eq!(letters[0].attr("Attempts"), Some("2"));
}
