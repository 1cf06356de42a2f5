//! End to end over the built binary with `DRY_RUN=true`: every read, check and dead
//! letter as usual, no `UpdateUserIdentityInfo`; the reply, the logs and the metrics
//! say it was a dry run.

use std::time::Duration;

use harness::connect_emulator::Operation;
use harness::fixtures::{self, INSTANCE, change, eventbridge, response};
use harness::{Stack, WATERMARK_TABLE};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");

async fn stack() -> Stack {
    fixtures::stack(BIN, 0)
        .env("DRY_RUN", "true")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .start()
        .await
        .expect("stack starts")
}

/// The JSON log lines whose message is `message`, waiting briefly for them to arrive.
async fn log_lines(stack: &Stack, message: &str, at_least: usize) -> Vec<Value> {
    let lines = stack
        .function
        .log_lines_once(message, at_least, Duration::from_secs(5))
        .await;
    fixtures::log_messages(&lines, message)
}

fn in_dry_run_span(line: &Value) -> bool {
    line["spans"]
        .as_array()
        .is_some_and(|spans| spans.iter().any(|s| s["dry_run"] == json!(true)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reads_and_decides_but_sends_no_update_and_says_so() {
    let stack = stack().await;
    let before = stack.emulator.user(INSTANCE, "u-jdoe").expect("user");

    let event = eventbridge(
        "eb-dry",
        &change(INSTANCE, "u-jdoe", &json!({"LastName": "Doerr"})),
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(reply, json!({"outcome": "updated", "dryRun": true}));

    assert!(
        stack
            .emulator
            .calls(Operation::UpdateUserIdentityInfo)
            .is_empty(),
        "a dry run sent an update"
    );
    assert_eq!(
        stack.emulator.calls(Operation::DescribeUser).len(),
        1,
        "the user is read as usual"
    );
    assert_eq!(
        stack
            .emulator
            .user(INSTANCE, "u-jdoe")
            .unwrap()
            .identity_info,
        before.identity_info,
        "the user is unchanged in Connect"
    );

    let settled = log_lines(&stack, "record settled", 1).await;
    assert_eq!(settled.len(), 1, "{}", stack.function.logs());
    assert_eq!(settled[0]["fields"]["outcome"], "updated");
    assert!(in_dry_run_span(&settled[0]), "{}", settled[0]);

    // Checks and dead letters as usual.
    let refused = eventbridge(
        "eb-dry-bad",
        &change(INSTANCE, "u-jdoe", &json!({"Mobile": "not a phone"})),
    );
    let reply = response(stack.invoke(&refused).await.unwrap(), &stack);
    assert_eq!(
        reply,
        json!({"outcome": "dead_lettered", "errorClass": "ValidationError", "dryRun": true})
    );
    assert_eq!(
        stack
            .sqs
            .total_depth(&stack.dlq("ValidationError").url)
            .await
            .unwrap(),
        1
    );
    assert!(
        stack
            .emulator
            .calls(Operation::UpdateUserIdentityInfo)
            .is_empty()
    );

    let metrics: Vec<Value> = fixtures::emf_documents(&stack.function.log_lines())
        .into_iter()
        .filter(|v| v.get("Updated").is_some())
        .collect();
    assert!(!metrics.is_empty(), "{}", stack.function.logs());
    assert!(metrics.iter().all(|m| m["DryRun"] == json!(true)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_with_the_staleness_guard_moves_no_watermark() {
    let stack = fixtures::stack(BIN, 0)
        .watermarks()
        .env("DRY_RUN", "true")
        .start()
        .await
        .expect("stack starts");
    let mut detail = change(INSTANCE, "u-jdoe", &json!({"LastName": "Doerr"}));
    detail["OccurredAt"] = json!("2026-03-01T10:00:05Z");
    let reply = response(
        stack
            .invoke(&eventbridge("eb-dry-guarded", &detail))
            .await
            .unwrap(),
        &stack,
    );
    assert_eq!(reply, json!({"outcome": "updated", "dryRun": true}));
    assert!(
        stack
            .emulator
            .calls(Operation::UpdateUserIdentityInfo)
            .is_empty()
    );
    // The lease was taken and given up; no field's watermark was written.
    let item = stack
        .dynamo
        .item(WATERMARK_TABLE, &format!("{INSTANCE}#u-jdoe"))
        .await
        .unwrap()
        .unwrap_or_default();
    let written: Vec<&String> = item.keys().filter(|k| k.starts_with("wm_")).collect();
    assert!(written.is_empty(), "a dry run wrote watermarks: {item:?}");
}
