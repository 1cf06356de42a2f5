//! End to end over the built binary: the CloudWatch Embedded Metric Format documents
//! it writes to stdout once per invocation add up to the invocation's records, by
//! outcome and by failure class, under the configured namespace.

use std::collections::BTreeMap;
use std::time::Duration;

use harness::connect_emulator::{Fault, Operation};
use harness::fixtures::{self, INSTANCE, Record, batch_item_failures, change};
use harness::{Invocation, Stack};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");

/// The EMF documents the function wrote so far.
fn emf_documents(stack: &Stack) -> Vec<Value> {
    fixtures::emf_documents(&stack.function.log_lines())
}

/// Waits until the function's output holds `n` totals documents (one per invocation).
async fn totals_documents(stack: &Stack, n: usize) -> Vec<Value> {
    for _ in 0..50 {
        let docs = emf_documents(stack);
        if docs.iter().filter(|d| dimensions(d) == json!([[]])).count() >= n {
            return docs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "fewer than {n} metrics documents:\n{}",
        stack.function.logs()
    );
}

fn dimensions(d: &Value) -> Value {
    d["_aws"]["CloudWatchMetrics"][0]["Dimensions"].clone()
}

/// The four-record batch: one updated, one unchanged, one malformed, one handed back.
async fn mixed_batch(stack: &Stack) -> Value {
    stack.emulator.inject_fault(
        Fault::new(
            Operation::UpdateUserIdentityInfo,
            "ThrottlingException",
            1000,
        )
        .for_user("u-bking"),
    );
    let event = fixtures::sqs_event(
        &stack.source.arn,
        &[
            Record::json(
                "m-updated",
                &change(INSTANCE, "u-jdoe", &json!({"LastName": "Doerr"})),
            ),
            Record::json(
                "m-unchanged",
                &change(INSTANCE, "u-asmith", &json!({"FirstName": "Alex"})),
            ),
            Record::new("m-malformed", "this is not json"),
            Record::json(
                "m-handed-back",
                &change(INSTANCE, "u-bking", &json!({"FirstName": "Beatrix"})),
            ),
        ],
    );
    match stack.invoke(&event).await.expect("a reply") {
        Invocation::Response(v) => v,
        other => panic!("{other:?}\n{}", stack.function.logs()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_of_a_batch_add_up_to_its_records_by_outcome_and_class() {
    let stack = fixtures::stack(BIN, 0)
        .env("METRICS_NAMESPACE", "IdentitySyncTest")
        .start()
        .await
        .expect("stack starts");
    let reply = mixed_batch(&stack).await;
    assert_eq!(batch_item_failures(&reply), vec!["m-handed-back"]);

    let docs = totals_documents(&stack, 1).await;
    let totals: Vec<&Value> = docs
        .iter()
        .filter(|d| dimensions(d) == json!([[]]))
        .collect();
    assert_eq!(
        totals.len(),
        1,
        "one totals document per invocation: {docs:#?}"
    );
    let t = totals[0];
    let count = |name: &str| t[name].as_u64().unwrap_or_else(|| panic!("{name} in {t}"));
    assert_eq!(
        [
            count("Updated"),
            count("Unchanged"),
            count("HandedBack"),
            count("DeadLettered")
        ],
        [1, 1, 1, 1],
        "{t}"
    );
    assert_eq!(count("Superseded"), 0);
    assert!(t["LimiterWait"].as_f64().is_some(), "{t}");
    for d in &docs {
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "IdentitySyncTest"
        );
        assert!(d["_aws"]["Timestamp"].as_u64().is_some());
    }
    let by_class: BTreeMap<String, u64> = docs
        .iter()
        .filter(|d| dimensions(d) == json!([["ErrorClass"]]))
        .map(|d| {
            (
                d["ErrorClass"].as_str().unwrap().to_owned(),
                d["DeadLettered"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_class, BTreeMap::from([("MalformedEvent".to_owned(), 1)]));
    assert_eq!(
        stack
            .sqs
            .total_depth(&stack.dlq("MalformedEvent").url)
            .await
            .unwrap(),
        1,
        "the metric agrees with the queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_payload_still_writes_one_document_with_no_records() {
    let stack = fixtures::stack(BIN, 0).start().await.expect("stack starts");
    let reply = stack.invoke_raw(b"{\"hello\": 1}").await.expect("a reply");
    assert!(matches!(reply, Invocation::Error { .. }), "{reply:?}");
    let docs = totals_documents(&stack, 1).await;
    assert_eq!(docs.len(), 1, "{docs:#?}");
    let d = &docs[0];
    assert_eq!(
        d["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "ConnectIdentitySync"
    );
    for name in ["Updated", "Unchanged", "HandedBack", "DeadLettered"] {
        assert_eq!(d[name], json!(0), "{name}");
    }
}

/// Connect calls and throttled answers by operation, as the emulator's journal saw them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_calls_and_throttles_by_operation_equal_the_emulators_journal() {
    let stack = fixtures::stack(BIN, 0).start().await.expect("stack starts");
    mixed_batch(&stack).await;
    let docs = totals_documents(&stack, 1).await;
    let mut journal: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for entry in stack.emulator.journal() {
        let e = journal.entry(entry.operation.clone()).or_default();
        e.0 += 1;
        if entry.error_type.as_deref() == Some("ThrottlingException") {
            e.1 += 1;
        }
    }
    let by_op: BTreeMap<String, (u64, u64)> = docs
        .iter()
        .filter(|d| dimensions(d) == json!([["Operation"]]))
        .map(|d| {
            (
                d["Operation"].as_str().unwrap().to_owned(),
                (
                    d["ConnectCalls"].as_u64().unwrap(),
                    d["ConnectThrottled"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert!(journal["UpdateUserIdentityInfo"].1 > 0, "{journal:?}");
    assert_eq!(by_op, journal);
}
