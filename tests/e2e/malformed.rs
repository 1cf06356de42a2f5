//! End to end over the built binary: a payload that is neither an SQS nor an
//! EventBridge event is answered with a `MalformedEvent` error, nothing is
//! dead-lettered for it, and the process goes on serving.

use harness::fixtures::{self, INSTANCE, assert_no_dead_letters, change, eventbridge};
use harness::{Invocation, Stack};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");

async fn stack() -> Stack {
    fixtures::stack(BIN, 0).start().await.expect("stack starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_of_no_known_shape_get_a_malformed_event_error_and_the_process_keeps_serving() {
    let stack = stack().await;
    let payloads: [&[u8]; 7] = [
        b"this is not json",
        b"{\"Records\": [",
        b"{\"hello\": \"world\"}",
        b"[]",
        b"42",
        b"{\"Records\": [{\"eventSource\": \"aws:kinesis\", \"kinesis\": {}}]}",
        b"{\"version\": \"0\", \"id\": \"x\", \"source\": \"com.example.idp\"}",
    ];
    for payload in payloads {
        let reply = stack.invoke_raw(payload).await.expect("a reply");
        let shown = String::from_utf8_lossy(payload);
        match &reply {
            Invocation::Error { error_type, .. } => {
                assert_eq!(error_type, "MalformedEvent", "{shown}");
            }
            Invocation::Response(v) => panic!("{shown}: expected a MalformedEvent error, got {v}"),
        }
        assert!(stack.function.is_running(), "{shown}: the process ended");
    }
    assert_no_dead_letters(&stack).await;
    // Still serving.
    let event = eventbridge(
        "eb-after",
        &change(INSTANCE, "u-jdoe", &json!({"LastName": "Doerr"})),
    );
    let reply = stack.invoke(&event).await.expect("a reply");
    assert_eq!(reply, Invocation::Response(json!({"outcome": "updated"})));
}
