//! End to end over the built binary: what it must never do — write personal data to
//! its logs or dead-letter attributes, meet Connect's quota, or miss its deadline.

use std::time::{Duration, Instant};

use harness::connect_emulator::Operation;
use harness::fixtures::{
    self, INSTANCE, Record, assert_no_dead_letters, batch_item_failures, change, eventbridge,
    response, start,
};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");

/// Values that must never reach a log line or an `ErrorMessage`.
const PERSONAL: [&str; 12] = [
    "Zelda",
    "Quixote-Marlowe",
    "zelda.quixote@example.com",
    "zq.private@example.com",
    "zelda@evil.test",
    "+14155550188",
    "4155550188",
    "555-0188",
    "Bartholomew",
    "bart.leaked@example.com",
    "Ünïcödé",
    "+4420794609",
];

async fn assert_no_personal_data(level: &str) {
    let stack = start(
        fixtures::stack(BIN, 0)
            .env("AWS_LAMBDA_LOG_LEVEL", level)
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON"),
    )
    .await;
    let full = json!({"FirstName": "Zelda", "LastName": "Quixote-Marlowe",
        "Email": "zelda.quixote@example.com", "SecondaryEmail": "zq.private@example.com",
        "Mobile": "(415) 555-0188"});
    let events = [
        // Applied, through SQS and through EventBridge.
        eventbridge("eb-full", &change(INSTANCE, "u-jdoe", &full)),
        fixtures::sqs_event(
            "arn:aws:sqs:us-east-1:123456789012:changes",
            &[
                Record::json("m-ok", &change(INSTANCE, "u-asmith", &full)),
                // Refused by policy: a domain outside the allowlist.
                Record::json(
                    "m-policy",
                    &change(INSTANCE, "u-bking", &json!({"Email": "zelda@evil.test"})),
                ),
                // Refused by validation, values echoed nowhere.
                Record::json(
                    "m-invalid",
                    &change(
                        INSTANCE,
                        "u-cwu",
                        &json!({"FirstName": "Bartholomew", "Email": "bart.leaked@example.com@", "Mobile": "+4420794609"}),
                    ),
                ),
                // Malformed: a body full of personal data that is not a document.
                Record::new(
                    "m-malformed",
                    "{\"FirstName\": \"Ünïcödé\", \"Email\": \"bart.leaked@example.com\"",
                ),
                // Unknown user by username.
                Record::json(
                    "m-ghost",
                    &json!({"Username": "zelda.quixote@example.com", "IdentityInfo": {"FirstName": "Zelda"}}),
                ),
                // Protected user.
                Record::json(
                    "m-protected",
                    &change(
                        INSTANCE,
                        "u-protected",
                        &json!({"LastName": "Quixote-Marlowe"}),
                    ),
                ),
            ],
        ),
    ];
    for event in &events {
        response(stack.invoke(event).await.unwrap(), &stack);
    }
    // A throttled update passes Connect's error message (which could echo values) nowhere.
    stack.emulator.inject_fault(
        harness::connect_emulator::Fault::new(
            Operation::UpdateUserIdentityInfo,
            "InvalidParameterException",
            1,
        )
        .with_message("Invalid Email zelda.quixote@example.com for Zelda"),
    );
    response(
        stack
            .invoke(&eventbridge("eb-echo", &change(INSTANCE, "u-dlee", &full)))
            .await
            .unwrap(),
        &stack,
    );

    let logs = stack
        .function
        .logs_once_containing("record settled", Duration::from_secs(5))
        .await;
    assert!(
        logs.contains("record settled"),
        "the function logged its outcomes:\n{logs}"
    );
    for value in PERSONAL {
        assert!(
            !logs.contains(value),
            "{value:?} appears in the {level} logs:\n{logs}"
        );
    }
    let letters = stack.dead_letters().await.unwrap();
    let messages: Vec<_> = letters.values().flatten().collect();
    assert!(messages.len() >= 5, "{letters:?}");
    for m in messages {
        let text = m.attr("ErrorMessage").unwrap_or_default();
        for value in PERSONAL {
            assert!(
                !text.contains(value),
                "{value:?} appears in ErrorMessage {text:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_name_email_or_phone_number_reaches_the_logs_at_debug_level() {
    assert_no_personal_data("debug").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_name_email_or_phone_number_reaches_the_logs_even_at_trace_level() {
    assert_no_personal_data("trace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_an_emulated_quota_the_function_never_meets_throttling() {
    let stack = start(
        fixtures::stack(BIN, 24)
            .env("CONNECT_RPS_UPDATE", "8")
            .env("CONNECT_RPS_DESCRIBE", "100"),
    )
    .await;
    // Connect's buckets allow a small burst; two calls' worth absorbs network jitter
    // between the function's paced calls and their arrival.
    stack
        .emulator
        .set_quota(Operation::UpdateUserIdentityInfo, 8.0, 2);
    let mut applied = 0;
    for batch in 0..3 {
        let records: Vec<Record> = (1..=8)
            .map(|k| {
                let n = batch * 8 + k;
                Record::json(
                    format!("m-{n}"),
                    &change(
                        INSTANCE,
                        &format!("u-{n:04}"),
                        &json!({"LastName": format!("Renamed {n}")}),
                    ),
                )
            })
            .collect();
        let reply = response(
            stack
                .invoke(&fixtures::sqs_event(
                    "arn:aws:sqs:us-east-1:123456789012:changes",
                    &records,
                ))
                .await
                .unwrap(),
            &stack,
        );
        assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
        applied += records.len();
    }
    let updates = stack.emulator.calls(Operation::UpdateUserIdentityInfo);
    assert_eq!(updates.len(), applied);
    let throttled = updates.iter().filter(|c| c.status == 429).count();
    assert_eq!(throttled, 0, "{updates:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connect_calls_meet_a_short_deadline_with_every_record_applied_or_handed_back() {
    let stack = start(
        fixtures::stack(BIN, 12)
            .function_timeout(Duration::from_millis(2500))
            .env("CONNECT_ATTEMPT_TIMEOUT_MS", "600")
            .env("DEADLINE_MARGIN_MS", "300"),
    )
    .await;
    stack
        .emulator
        .set_latency(Operation::DescribeUser, Duration::from_millis(350));
    stack.emulator.set_latency(
        Operation::UpdateUserIdentityInfo,
        Duration::from_millis(350),
    );
    let records: Vec<Record> = (1..=12)
        .map(|n| {
            Record::json(
                format!("m-{n}"),
                &change(
                    INSTANCE,
                    &format!("u-{n:04}"),
                    &json!({"LastName": format!("Slow {n}")}),
                ),
            )
        })
        .collect();
    let started = Instant::now();
    let reply = response(
        stack
            .invoke(&fixtures::sqs_event(
                "arn:aws:sqs:us-east-1:123456789012:changes",
                &records,
            ))
            .await
            .unwrap(),
        &stack,
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "the reply came after the deadline: {took:?}"
    );
    let handed_back = batch_item_failures(&reply);
    let updated: Vec<String> = stack
        .emulator
        .calls(Operation::UpdateUserIdentityInfo)
        .into_iter()
        .filter(|c| c.status == 200)
        .filter_map(|c| c.user_id)
        .collect();
    assert!(
        !handed_back.is_empty(),
        "the deadline was short enough to hand some back"
    );
    assert!(!updated.is_empty(), "some were applied");
    for n in 1..=12 {
        let applied = updated.contains(&format!("u-{n:04}"));
        let back = handed_back.contains(&format!("m-{n}"));
        assert!(
            applied ^ back,
            "m-{n}: applied {applied}, handed back {back}"
        );
    }
    assert_no_dead_letters(&stack).await;
}
