//! End to end over the built binary: batch semantics. A refused change sinks no
//! other change to its user; one user reached through two FIFO groups keeps both
//! changes; retried attempts near a short deadline never start unless they can finish.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::connect_emulator::{Fault, Operation};
use harness::fixtures::{
    self, INSTANCE, Record, assert_no_dead_letters, batch_item_failures, change, response, start,
};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");
const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:changes";
const FIFO_QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:changes.fifo";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_and_a_good_change_to_one_user_end_on_their_own() {
    let stack = start(fixtures::stack(BIN, 0)).await;
    let event = fixtures::sqs_event(
        QUEUE,
        &[
            Record::json(
                "m-good",
                &change(INSTANCE, "u-jdoe", &json!({"Mobile": "+14155550999"})),
            ),
            Record::json(
                "m-refused",
                &change(INSTANCE, "u-jdoe", &json!({"Email": "jane@evil.test"})),
            ),
        ],
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    let user = stack.emulator.user(INSTANCE, "u-jdoe").unwrap();
    assert_eq!(
        user.identity_info.mobile.as_deref(),
        Some("+14155550999"),
        "the good change is applied"
    );
    assert_eq!(
        user.identity_info.email.as_deref(),
        Some("jane.doe@example.com")
    );
    let letters = stack.dead_letters().await.unwrap();
    let all: Vec<(&String, &harness::sqs::Message)> = letters
        .iter()
        .flat_map(|(class, ms)| ms.iter().map(move |m| (class, m)))
        .collect();
    assert_eq!(all.len(), 1, "only the refused change: {letters:?}");
    let (class, letter) = all[0];
    assert_eq!(class, "PolicyViolation");
    assert_eq!(letter.attr("SourceId"), Some("m-refused"));
    assert_eq!(letter.attr("ErrorClass"), Some("PolicyViolation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_reached_through_two_fifo_groups_with_slow_updates_keeps_both_changes() {
    let stack = start(fixtures::stack(BIN, 0)).await;
    stack
        .emulator
        .set_latency(Operation::DescribeUser, Duration::from_millis(150));
    stack.emulator.set_latency(
        Operation::UpdateUserIdentityInfo,
        Duration::from_millis(250),
    );
    let event = fixtures::sqs_event(
        FIFO_QUEUE,
        &[
            Record::json(
                "g1-1",
                &change(INSTANCE, "u-asmith", &json!({"LastName": "Smythe"})),
            )
            .group("g1"),
            Record::json(
                "g2-1",
                &change(INSTANCE, "u-asmith", &json!({"FirstName": "Alexandra"})),
            )
            .group("g2"),
        ],
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    let user = stack.emulator.user(INSTANCE, "u-asmith").unwrap();
    assert_eq!(user.identity_info.last_name.as_deref(), Some("Smythe"));
    assert_eq!(user.identity_info.first_name.as_deref(), Some("Alexandra"));
    let updates = stack.emulator.calls(Operation::UpdateUserIdentityInfo);
    assert_eq!(updates.len(), 2);
    let reads = stack.emulator.calls(Operation::DescribeUser);
    let first_update_done = updates[0].finished_at.expect("the first update ended");
    assert!(
        reads[1].at >= first_update_done,
        "the second read-modify-write read after the first update: {reads:?} {updates:?}"
    );
}

/// Update attempts that each take 1 s and fail, for one record, with attempts of at
/// most 1.5 s and a 0.3 s margin before a deadline `timeout_ms` away. Asserts from the
/// emulator's journal that every attempt started no later than the latest start and
/// ran to its end before the deadline less the margin; returns how many were made.
async fn slow_failing_attempts(timeout_ms: u64) -> usize {
    const ATTEMPT_MS: u64 = 1500;
    const MARGIN_MS: u64 = 300;
    let stack = start(
        fixtures::stack(BIN, 0)
            .function_timeout(Duration::from_millis(timeout_ms))
            .env("CONNECT_ATTEMPT_TIMEOUT_MS", ATTEMPT_MS.to_string())
            .env("DEADLINE_MARGIN_MS", MARGIN_MS.to_string()),
    )
    .await;
    stack.emulator.set_latency(
        Operation::UpdateUserIdentityInfo,
        Duration::from_millis(1000),
    );
    stack.emulator.inject_fault(
        Fault::new(
            Operation::UpdateUserIdentityInfo,
            "InternalServiceException",
            1000,
        )
        .for_user("u-bking"),
    );
    let event = fixtures::sqs_event(
        QUEUE,
        &[Record::json(
            "m-slow",
            &change(INSTANCE, "u-bking", &json!({"LastName": "Kingsley"})),
        )],
    );
    let sent = now_ms();
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    let replied = now_ms();
    assert!(
        replied - sent < timeout_ms,
        "the reply came before the deadline"
    );
    assert_eq!(batch_item_failures(&reply), vec!["m-slow"]);
    // The deadline is at least `sent + timeout_ms`; a little later for the delivery.
    let latest_start = sent + timeout_ms - MARGIN_MS - ATTEMPT_MS;
    let attempts = stack.emulator.calls(Operation::UpdateUserIdentityInfo);
    assert!(attempts.len() <= 3, "at most three attempts: {attempts:?}");
    for a in &attempts {
        assert!(
            a.at <= latest_start + 50,
            "an attempt started at +{} ms, after the latest start +{} ms",
            a.at - sent,
            latest_start - sent
        );
        let finished = a.finished_at.unwrap_or_else(|| {
            panic!("an attempt was cut short: {a:?}\n{}", stack.function.logs())
        });
        assert!(finished <= sent + timeout_ms - MARGIN_MS + 50);
    }
    assert_no_dead_letters(&stack).await;
    attempts.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_failing_update_attempts_near_a_short_deadline_never_start_unless_they_can_finish() {
    // The first attempt ends after the latest start (2.6 s - 0.3 s - 1.5 s = 0.8 s): no
    // second one may start, though the deadline is 1.5 s away.
    assert_eq!(slow_failing_attempts(2600).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_failing_update_attempts_are_retried_while_another_attempt_fits() {
    // Latest start 4 s - 0.3 s - 1.5 s = 2.2 s: the second attempt (about 1.1 s) fits,
    // the third (about 2.3 s) does not, though the deadline is 1.7 s away.
    assert_eq!(slow_failing_attempts(4000).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_cut_off_after_it_was_sent_is_an_unknown_outcome_tried_once() {
    let stack = start(fixtures::stack(BIN, 0).env("CONNECT_ATTEMPT_TIMEOUT_MS", "400")).await;
    // The connection drops once the request is in.
    stack.emulator.inject_fault(
        Fault::new(Operation::UpdateUserIdentityInfo, "Disconnect", 1).for_user("u-cwu"),
    );
    let event = fixtures::eventbridge(
        "ev-dropped",
        &change(INSTANCE, "u-cwu", &json!({"LastName": "Wood"})),
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(
        reply,
        json!({"outcome": "dead_lettered", "errorClass": "UnknownError"})
    );
    let letters = stack
        .sqs
        .receive_all(&stack.dlq("UnknownError").url)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    let message = letters[0].attr("ErrorMessage").unwrap_or_default();
    assert!(message.contains("the outcome is unknown"), "{message}");

    // Slower than an attempt may take: the SDK's attempt timeout ends it.
    stack.emulator.set_latency(
        Operation::UpdateUserIdentityInfo,
        Duration::from_millis(900),
    );
    let event = fixtures::sqs_event(
        QUEUE,
        &[Record::json(
            "m-slow",
            &change(INSTANCE, "u-dlee", &json!({"LastName": "Leigh"})),
        )],
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), vec!["m-slow"]);
    let updates = stack.emulator.calls(Operation::UpdateUserIdentityInfo);
    let per_user = |u: &str| {
        updates
            .iter()
            .filter(|c| c.user_id.as_deref() == Some(u))
            .count()
    };
    assert_eq!(per_user("u-cwu"), 1, "not tried again blindly");
    assert_eq!(per_user("u-dlee"), 1, "not tried again blindly");
    let logs = stack
        .function
        .logs_once_containing("the outcome is unknown", Duration::from_secs(5))
        .await;
    assert!(logs.contains("the outcome is unknown"), "{logs}");
}
