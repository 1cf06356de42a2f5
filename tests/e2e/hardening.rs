//! End to end over the built binary, the hardening of issue 22: nothing of a document is
//! echoed in a log line or an `ErrorMessage` at any level (SPEC §3.1), an `EventId` that
//! is not a plain token is known by its digest, and `SECONDARY_EMAIL_DOMAIN_ALLOWLIST`
//! refuses a SecondaryEmail at another domain before any call (SPEC §5).

use std::collections::BTreeMap;
use std::time::Duration;

use harness::connect_emulator::{Fault, Operation};
use harness::fixtures::{
    self, INSTANCE, Record, batch_item_failures, calls_for, identity, log_messages, response,
};
use harness::{Message, Stack};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Text a producer made up: a key, a filter attribute, a sub-attribute and an event id.
const MADE_UP: &str = "wilhelmina.quackenbush@example.com";
/// What must not appear anywhere the function writes, in any letter case.
const ECHOES: [&str; 2] = ["wilhelmina", "quackenbush"];

fn sha256_token(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn patch(user: &str, operations: &Value) -> Value {
    json!({"schemas": [PATCH], "UserId": user, "Operations": operations})
}

/// Dead letters by the `SourceId` (messageId) they carry: (class, message).
async fn letters(stack: &Stack) -> BTreeMap<String, (String, Message)> {
    let mut out = BTreeMap::new();
    for (class, messages) in stack.dead_letters().await.expect("dead-letter queues read") {
        for m in messages {
            let id = m.attr("SourceId").unwrap_or("<none>").to_owned();
            assert!(
                out.insert(id.clone(), (class.clone(), m)).is_none(),
                "{id} twice"
            );
        }
    }
    out
}

fn assert_not_echoed(what: &str, text: &str) {
    let lower = text.to_lowercase();
    for echo in ECHOES {
        assert!(!lower.contains(echo), "{what} repeats {echo:?}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_of_a_document_is_echoed_at_trace_level_and_a_free_text_event_id_is_digested() {
    let stack = fixtures::stack(BIN, 0)
        .env("RUST_LOG", "trace")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .start()
        .await
        .expect("stack starts");
    let digest = sha256_token(MADE_UP);
    let records = [
        // An unknown IdentityInfo key.
        Record::json(
            "m-unknown-key",
            &json!({"InstanceId": INSTANCE, "UserId": "u-jdoe",
                    "IdentityInfo": {MADE_UP: "x", "FirstName": "Janet"}}),
        ),
        // A PatchOp filter on an attribute that is not read.
        Record::json(
            "m-filter",
            &patch(
                "u-jdoe",
                &json!([{"op": "replace", "path": "emails[wilhelminaQuackenbush eq \"work\"].value",
                         "value": "x@example.com"}]),
            ),
        ),
        // A sub-attribute that is not read.
        Record::json(
            "m-sub",
            &patch(
                "u-jdoe",
                &json!([{"op": "replace", "path": "emails[type eq \"work\"].quackenbush",
                         "value": "x@example.com"}]),
            ),
        ),
        // A path that does not parse, after an identity attribute.
        Record::json(
            "m-unparsed",
            &patch(
                "u-jdoe",
                &json!([{"op": "add", "path": format!("emails[{MADE_UP}"), "value": "x"}]),
            ),
        ),
        // A free-text EventId on a change refused before any call...
        Record::json(
            "m-event-id-refused",
            &json!({"InstanceId": INSTANCE, "UserId": "u-asmith", "EventId": MADE_UP,
                    "IdentityInfo": {"Mobile": "not a phone number"}}),
        ),
        // ... and on one that is applied.
        Record::json(
            "m-event-id-applied",
            &json!({"InstanceId": INSTANCE, "UserId": "u-bking", "EventId": MADE_UP,
                    "IdentityInfo": {"FirstName": "Beatrix"}}),
        ),
    ];
    let event = fixtures::sqs_event(&stack.source.arn, &records);
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    assert_eq!(identity(&stack, "u-bking")["FirstName"], "Beatrix");

    let letters = letters(&stack).await;
    let expected = [
        ("m-unknown-key", "MalformedEvent"),
        ("m-filter", "MalformedEvent"),
        ("m-sub", "MalformedEvent"),
        ("m-unparsed", "MalformedEvent"),
        ("m-event-id-refused", "ValidationError"),
    ];
    assert_eq!(letters.len(), expected.len(), "{letters:#?}");
    for (id, class) in expected {
        let (queue, message) = letters
            .get(id)
            .unwrap_or_else(|| panic!("{id} not dead-lettered"));
        assert_eq!(queue, class, "{id}");
        let error_message = message.attr("ErrorMessage").expect("ErrorMessage");
        assert_not_echoed(&format!("{id}'s ErrorMessage"), error_message);
        for (name, value) in &message.message_attributes {
            if name != "EventId" {
                assert_not_echoed(&format!("{id}'s {name}"), &format!("{value:?}"));
            }
        }
    }
    assert!(
        letters["m-unknown-key"]
            .1
            .attr("ErrorMessage")
            .unwrap()
            .contains("IdentityInfo"),
        "the message still names where the problem is"
    );
    assert_eq!(
        letters["m-event-id-refused"].1.attr("EventId"),
        Some(digest.as_str()),
        "the EventId attribute is the digest of the free-text id"
    );

    let lines = stack
        .function
        .log_lines_once("record settled", 2, Duration::from_secs(5))
        .await;
    assert_not_echoed("the logs", &lines.join("\n"));
    let settled = log_messages(&lines, "record settled");
    for id in ["m-event-id-refused", "m-event-id-applied"] {
        let line = settled
            .iter()
            .find(|l| l["fields"]["message_id"] == id)
            .unwrap_or_else(|| panic!("no settled line for {id}:\n{}", lines.join("\n")));
        assert_eq!(line["fields"]["event_id"], digest.as_str(), "{id}: {line}");
    }
    assert!(stack.function.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_email_outside_its_allowlist_is_a_policy_violation_before_any_call() {
    let stack = fixtures::stack(BIN, 0)
        .env("SECONDARY_EMAIL_DOMAIN_ALLOWLIST", "example.com")
        .start()
        .await
        .expect("stack starts");
    let change = |user: &str, info: Value| json!({"InstanceId": INSTANCE, "UserId": user, "IdentityInfo": info});
    let records = [
        Record::json(
            "m-canonical-elsewhere",
            &change(
                "u-jdoe",
                json!({"SecondaryEmail": "jane.doe@evil.test", "FirstName": "Janet"}),
            ),
        ),
        Record::json(
            "m-patch-elsewhere",
            &patch(
                "u-bking",
                &json!([{"op": "add", "path": "emails[type eq \"home\"].value",
                         "value": "bea@Example.com.evil.test"}]),
            ),
        ),
        Record::json(
            "m-allowed",
            &change(
                "u-asmith",
                json!({"SecondaryEmail": "alex.home@EXAMPLE.com"}),
            ),
        ),
        Record::json(
            "m-cleared",
            &change(
                "u-dlee",
                json!({"SecondaryEmail": null, "FirstName": "Danielle"}),
            ),
        ),
    ];
    let event = fixtures::sqs_event(&stack.source.arn, &records);
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());

    let letters = letters(&stack).await;
    assert_eq!(letters.len(), 2, "{letters:#?}");
    for id in ["m-canonical-elsewhere", "m-patch-elsewhere"] {
        let (class, message) = &letters[id];
        assert_eq!(class, "PolicyViolation", "{id}");
        let error_message = message.attr("ErrorMessage").unwrap();
        assert!(
            error_message.contains("SECONDARY_EMAIL_DOMAIN_ALLOWLIST"),
            "{error_message}"
        );
        assert!(!error_message.contains("evil"), "{error_message}");
    }
    for user in ["u-jdoe", "u-bking"] {
        assert_eq!(
            calls_for(&stack, Operation::DescribeUser, user),
            0,
            "{user} was read"
        );
        assert_eq!(
            calls_for(&stack, Operation::UpdateUserIdentityInfo, user),
            0,
            "{user} was changed"
        );
    }
    assert_eq!(
        identity(&stack, "u-jdoe")["SecondaryEmail"],
        "jd@example.com"
    );
    assert_eq!(
        identity(&stack, "u-asmith")["SecondaryEmail"],
        "alex.home@EXAMPLE.com"
    );
    assert_eq!(identity(&stack, "u-dlee")["FirstName"], "Danielle");
    assert!(!stack.function.logs().contains("evil.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_no_identity_field_ends_unchanged_without_any_connect_call() {
    let stack = fixtures::stack(BIN, 0)
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .start()
        .await
        .expect("stack starts");
    // Entra's deactivation: an active-only PatchOp, for a username Connect does not know
    // and for one it knows; a canonical document of no field.
    let active_only = |user_key: &str, user: &str| {
        json!({"schemas": [PATCH], user_key: user, "Operations": [
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
             "value": "Offboarded"}]})
    };
    let records = [
        Record::json(
            "m-unknown-username",
            &active_only("Username", "left.the.company"),
        ),
        Record::json("m-known-username", &active_only("Username", "jdoe")),
        Record::json("m-user-id", &active_only("UserId", "u-asmith")),
        Record::json(
            "m-canonical",
            &json!({"InstanceId": INSTANCE, "UserId": "u-bking", "IdentityInfo": {}}),
        ),
    ];
    let event = fixtures::sqs_event(&stack.source.arn, &records);
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    let letters = letters(&stack).await;
    assert!(letters.is_empty(), "{letters:#?}");
    for op in [
        Operation::SearchUsers,
        Operation::ListUsers,
        Operation::DescribeInstance,
        Operation::DescribeUser,
        Operation::UpdateUserIdentityInfo,
    ] {
        assert!(
            stack.emulator.calls(op).is_empty(),
            "{op:?} was called: {:?}",
            stack.emulator.calls(op)
        );
    }
    let lines = stack
        .function
        .log_lines_once("record settled", records.len(), Duration::from_secs(5))
        .await;
    let settled = log_messages(&lines, "record settled");
    assert_eq!(settled.len(), records.len(), "{}", lines.join("\n"));
    for line in settled {
        assert_eq!(line["fields"]["outcome"], "unchanged", "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_record_settles_on_a_log_line_of_plain_documented_values() {
    let stack = fixtures::stack(BIN, 0)
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .start()
        .await
        .expect("stack starts");
    stack.emulator.inject_fault(
        Fault::new(
            Operation::UpdateUserIdentityInfo,
            "ThrottlingException",
            1000,
        )
        .for_user("u-bking"),
    );
    let change = |user: &str, info: Value| json!({"InstanceId": INSTANCE, "UserId": user, "IdentityInfo": info});
    let records = [
        Record::json(
            "m-updated",
            &change("u-jdoe", json!({"FirstName": "Janet"})),
        ),
        Record::json(
            "m-unchanged",
            &change("u-asmith", json!({"FirstName": "Alex"})),
        ),
        Record::json(
            "m-refused",
            &change("u-cwu", json!({"Mobile": "not a number"})),
        ),
        Record::json(
            "m-throttled",
            &change("u-bking", json!({"FirstName": "Beatrix"})),
        ),
    ];
    let event = fixtures::sqs_event(&stack.source.arn, &records);
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), vec!["m-throttled".to_owned()]);

    let lines = stack
        .function
        .log_lines_once("record settled", records.len(), Duration::from_secs(5))
        .await;
    let settled = log_messages(&lines, "record settled");
    let by_id: BTreeMap<String, &Value> = settled
        .iter()
        .map(|l| (l["fields"]["message_id"].as_str().unwrap().to_owned(), l))
        .collect();
    for (id, outcome, class, reason) in [
        ("m-updated", "updated", "", ""),
        ("m-unchanged", "unchanged", "", ""),
        ("m-refused", "dead_lettered", "ValidationError", ""),
        (
            "m-throttled",
            "handed_back",
            "ThrottlingException",
            "retryable_failure",
        ),
    ] {
        let f = &by_id.get(id).unwrap_or_else(|| panic!("no line for {id}"))["fields"];
        assert_eq!(
            (
                f["outcome"].as_str(),
                f["error_class"].as_str(),
                f["reason"].as_str()
            ),
            (Some(outcome), Some(class), Some(reason)),
            "{id}: {f}"
        );
    }
    // No Rust Debug rendering anywhere: Some(..), None, Retry(..), Duration's "1.5s"-style
    // values inside a sentence.
    let all = lines.join("\n");
    for debug in [
        "Some(",
        "None",
        "Retry(",
        "Deadline",
        "GroupOrder",
        "DeadLetterFailed(",
    ] {
        assert!(!all.contains(debug), "a log line renders {debug:?}:\n{all}");
    }
}
