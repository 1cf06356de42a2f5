//! End to end over the built binary: SCIM PatchOp messages as Microsoft Entra ID sends
//! them (forwarded with the user named beside `Operations`), through the Lambda
//! Runtime API, against the Connect emulator and moto over real HTTP.

use harness::Stack;
use harness::connect_emulator::Operation;
use harness::fixtures::{
    self, Record, assert_no_dead_letters, batch_item_failures, eventbridge, identity, response,
};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

async fn stack() -> Stack {
    fixtures::stack(BIN, 0).start().await.expect("stack starts")
}

/// A PatchOp message for `user` (a `UserId`, or a `Username` when it has no `u-`).
fn patch(user: &str, operations: &Value) -> Value {
    let key = if user.starts_with("u-") {
        "UserId"
    } else {
        "Username"
    };
    json!({"schemas": [PATCH], key: user, "Operations": operations})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entra_patch_op_updates_the_fields_its_paths_name_in_one_complete_update() {
    let stack = stack().await;
    let message = patch(
        "bking",
        &json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value",
             "value": "bea.king-hale@example.com"},
            {"op": "Replace", "path": "name.familyName", "value": "King-Hale"},
            {"op": "Replace", "path": "title", "value": "Team Lead"},
            {"op": "Replace", "path": "active", "value": "True"},
            {"op": "Add",
             "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
             "value": "Support"}
        ]),
    );
    let reply = response(
        stack
            .invoke(&eventbridge("eb-entra", &message))
            .await
            .unwrap(),
        &stack,
    );
    assert_eq!(reply, json!({"outcome": "updated"}));
    let expected = json!({"FirstName": "Bea", "LastName": "King-Hale",
                          "Email": "bea.king-hale@example.com", "Mobile": "+14155550125"});
    assert_eq!(identity(&stack, "u-bking"), expected);
    let updates = stack.emulator.calls(Operation::UpdateUserIdentityInfo);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].request_body["IdentityInfo"], expected);
    assert_no_dead_letters(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entra_patch_op_without_a_path_in_an_sqs_body_sets_its_dotted_keys() {
    let stack = stack().await;
    let message = patch(
        "u-cwu",
        &json!([{"op": "add", "value": {
            "displayName": "Chen Wu-Li",
            "name.familyName": "Wu-Li",
            "phoneNumbers[type eq \"mobile\"].value": "(415) 555-0166",
            "active": "True"
        }}]),
    );
    let event = fixtures::sqs_event(&stack.source.arn, &[Record::json("m-dotted", &message)]);
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    assert_eq!(
        identity(&stack, "u-cwu"),
        json!({"FirstName": "Chen", "LastName": "Wu-Li", "Email": "chen.wu@example.com",
               "Mobile": "+14155550166"})
    );
    assert_no_dead_letters(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_op_remove_clears_the_fields_and_keeps_the_others() {
    let stack = stack().await;
    let message = patch(
        "u-jdoe",
        &json!([
            {"op": "Remove", "path": "emails[type eq \"home\"]"},
            {"op": "Remove", "path": "phoneNumbers[type eq \"mobile\"].value"}
        ]),
    );
    let reply = response(
        stack
            .invoke(&eventbridge("eb-remove", &message))
            .await
            .unwrap(),
        &stack,
    );
    assert_eq!(reply, json!({"outcome": "updated"}));
    assert_eq!(
        identity(&stack, "u-jdoe"),
        json!({"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@example.com"})
    );
    assert_eq!(
        stack
            .emulator
            .calls(Operation::UpdateUserIdentityInfo)
            .len(),
        1
    );
    assert_no_dead_letters(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_path_in_a_form_not_read_is_dead_lettered_as_malformed_without_a_call() {
    let stack = stack().await;
    let journal = stack.emulator.journal().len();
    let message = patch(
        "u-jdoe",
        &json!([
            {"op": "Replace", "path": "name.givenName", "value": "Janet"},
            {"op": "Replace", "path": "emails[value eq \"jane.doe@example.com\"].value",
             "value": "janet.doe@example.com"}
        ]),
    );
    let event = eventbridge("eb-unreadable", &message);
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(
        reply,
        json!({"outcome": "dead_lettered", "errorClass": "MalformedEvent"})
    );
    assert_eq!(
        stack.emulator.journal().len(),
        journal,
        "no Connect call for a message that cannot be read"
    );
    assert_eq!(identity(&stack, "u-jdoe")["FirstName"], "Jane");
    let letters = stack.dead_letters().await.unwrap();
    for (class, letters) in &letters {
        let expected = usize::from(class == "MalformedEvent");
        assert_eq!(letters.len(), expected, "{class}: {letters:#?}");
    }
    let letter = &letters["MalformedEvent"][0];
    let message = letter.attr("ErrorMessage").unwrap_or_default();
    assert!(
        message.contains("Operations[1]") && message.contains("emails[value eq …].value"),
        "{message}"
    );
    assert!(
        !message.contains("jane") && !message.contains("Janet"),
        "{message}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&letter.body).unwrap(),
        event,
        "the event as it came"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_only_message_ends_unchanged_without_a_call() {
    let stack = stack().await;
    let journal = stack.emulator.journal().len();
    for (n, value) in [json!("False"), json!(false)].into_iter().enumerate() {
        let message = patch(
            "u-dlee",
            &json!([{"op": "Replace", "path": "active", "value": value}]),
        );
        let reply = response(
            stack
                .invoke(&eventbridge(&format!("eb-disable-{n}"), &message))
                .await
                .unwrap(),
            &stack,
        );
        assert_eq!(reply, json!({"outcome": "unchanged"}), "{value}");
    }
    assert_eq!(stack.emulator.journal().len(), journal, "no Connect call");
    assert_no_dead_letters(&stack).await;
}
