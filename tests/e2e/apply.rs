//! End to end over the built binary: how changes are applied to Amazon Connect —
//! read-modify-write of the complete identity, duplicates that cost nothing,
//! coalescing and ordering per user, FIFO groups, the document formats.

use harness::Stack;
use harness::connect_emulator::{Fault, Operation};
use harness::fixtures::{
    self, INSTANCE, Record, assert_no_dead_letters, batch_item_failures, change, eventbridge,
    identity, requests_for, response, user_arn,
};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");

async fn stack() -> Stack {
    fixtures::stack(BIN, 0).start().await.expect("stack starts")
}

fn updates_for(stack: &Stack, user: &str) -> Vec<Value> {
    requests_for(stack, Operation::UpdateUserIdentityInfo, user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_change_keeps_the_other_fields_and_sends_the_complete_identity() {
    let stack = stack().await;
    let event = eventbridge(
        "eb-partial",
        &change(INSTANCE, "u-jdoe", &json!({"Mobile": "(415) 555-0199"})),
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(reply, json!({"outcome": "updated"}));
    assert_eq!(
        identity(&stack, "u-jdoe"),
        json!({"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@example.com",
               "SecondaryEmail": "jd@example.com", "Mobile": "+14155550199"})
    );
    let updates = updates_for(&stack, "u-jdoe");
    assert_eq!(updates.len(), 1);
    assert_eq!(
        updates[0]["IdentityInfo"],
        json!({"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@example.com",
               "SecondaryEmail": "jd@example.com", "Mobile": "+14155550199"}),
        "the update carries the complete merged identity"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_clears_a_field_and_an_absent_one_stays() {
    let stack = stack().await;
    let event = eventbridge(
        "eb-clear",
        &change(
            INSTANCE,
            "u-jdoe",
            &json!({"SecondaryEmail": null, "Mobile": "  "}),
        ),
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(reply, json!({"outcome": "updated"}));
    assert_eq!(
        identity(&stack, "u-jdoe"),
        json!({"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@example.com"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_costs_no_update_call() {
    let stack = stack().await;
    let body = change(INSTANCE, "u-asmith", &json!({"LastName": "Smythe"})).to_string();
    let first = fixtures::sqs_event(&stack.source.arn, &[Record::new("m-1", body.clone())]);
    let reply = response(stack.invoke(&first).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    assert_eq!(updates_for(&stack, "u-asmith").len(), 1);

    // Redelivered, and sent again under another message id: nothing to do.
    let again = fixtures::sqs_event(
        &stack.source.arn,
        &[
            Record::new("m-1", body.clone()).received(2),
            Record::new("m-2", body),
        ],
    );
    let reply = response(stack.invoke(&again).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    assert_eq!(
        updates_for(&stack, "u-asmith").len(),
        1,
        "a duplicate made an update call"
    );

    let event = eventbridge(
        "eb-dup",
        &change(INSTANCE, "u-asmith", &json!({"LastName": "Smythe"})),
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(reply, json!({"outcome": "unchanged"}));
    assert_eq!(updates_for(&stack, "u-asmith").len(), 1);
    assert_no_dead_letters(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_to_one_user_in_a_batch_are_applied_in_occurrence_order_as_one_update() {
    let stack = stack().await;
    let later = json!({"InstanceId": INSTANCE, "UserId": "u-asmith", "OccurredAt": "2026-03-01T10:00:02Z",
                       "IdentityInfo": {"FirstName": "Alexa"}});
    let earlier = json!({"InstanceId": INSTANCE, "UserId": "u-asmith", "OccurredAt": "2026-03-01T10:00:01Z",
                         "IdentityInfo": {"FirstName": "Alexis", "LastName": "Smyth"}});
    let other = change(INSTANCE, "u-bking", &json!({"LastName": "Kingsley"}));
    let event = fixtures::sqs_event(
        &stack.source.arn,
        &[
            Record::json("m-later", &later),
            Record::json("m-other", &other),
            Record::json("m-earlier", &earlier),
        ],
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    let user = identity(&stack, "u-asmith");
    assert_eq!(user["FirstName"], "Alexa", "the later change wins");
    assert_eq!(user["LastName"], "Smyth");
    assert_eq!(
        updates_for(&stack, "u-asmith").len(),
        1,
        "coalesced into one update"
    );
    assert_eq!(identity(&stack, "u-bking")["LastName"], "Kingsley");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_fifo_group_the_records_after_a_retry_are_handed_back_unprocessed() {
    let stack = stack().await;
    stack.emulator.inject_fault(
        Fault::new(
            Operation::UpdateUserIdentityInfo,
            "ThrottlingException",
            1000,
        )
        .for_user("u-bking"),
    );
    let records = [
        Record::json(
            "f-1",
            &change(INSTANCE, "u-bking", &json!({"LastName": "Kingsley"})),
        )
        .group("g1"),
        Record::json(
            "f-2",
            &change(INSTANCE, "u-dlee", &json!({"LastName": "Leigh"})),
        )
        .group("g1"),
        Record::json(
            "f-3",
            &change(INSTANCE, "u-cwu", &json!({"LastName": "Wood"})),
        )
        .group("g2"),
    ];
    let event = fixtures::sqs_event(&stack.fifo_source.arn, &records);
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    let mut failures = batch_item_failures(&reply);
    failures.sort();
    assert_eq!(failures, vec!["f-1", "f-2"]);
    assert!(
        updates_for(&stack, "u-dlee").is_empty(),
        "f-2 was processed out of order"
    );
    assert_eq!(identity(&stack, "u-dlee")["LastName"], "Lee");
    assert_eq!(identity(&stack, "u-cwu")["LastName"], "Wood");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_found_by_arn_and_by_username_and_names_are_normalised() {
    let stack = stack().await;
    // A user ARN, no InstanceId (the default instance), a decomposed accent.
    let by_arn = eventbridge(
        "eb-arn",
        &json!({"UserId": user_arn(INSTANCE, "u-cwu"), "IdentityInfo": {"FirstName": "  Zoe\u{301} "}}),
    );
    let reply = response(stack.invoke(&by_arn).await.unwrap(), &stack);
    assert_eq!(reply, json!({"outcome": "updated"}));
    assert_eq!(identity(&stack, "u-cwu")["FirstName"], "Zo\u{e9}");

    let by_username = eventbridge(
        "eb-username",
        &json!({"InstanceId": INSTANCE, "Username": "dlee", "IdentityInfo": {"LastName": "Leigh"}}),
    );
    let reply = response(stack.invoke(&by_username).await.unwrap(), &stack);
    assert_eq!(reply, json!({"outcome": "updated"}));
    assert_eq!(identity(&stack, "u-dlee")["LastName"], "Leigh");
    assert!(!stack.emulator.calls(Operation::SearchUsers).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scim_user_resource_in_an_sqs_body_is_applied_without_clearing_anything() {
    let stack = stack().await;
    let scim = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "userName": "bking",
        "name": {"givenName": "Beatrice"},
        "emails": [
            {"value": "bea.k@example.com", "type": "home"},
            {"value": "bea.king@example.com", "type": "work", "primary": true}
        ],
        "phoneNumbers": [{"value": "(415) 555-0142", "type": "mobile"}]
    });
    let event = fixtures::sqs_event(&stack.source.arn, &[Record::json("m-scim", &scim)]);
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    assert_no_dead_letters(&stack).await;
    assert_eq!(
        identity(&stack, "u-bking"),
        json!({"FirstName": "Beatrice", "LastName": "King", "Email": "bea.king@example.com",
               "SecondaryEmail": "bea.k@example.com", "Mobile": "+14155550142"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventbridge_event_inside_an_sqs_body_is_read_as_one() {
    let stack = stack().await;
    let inner = eventbridge(
        "eb-inner",
        &change(INSTANCE, "u-jdoe", &json!({"LastName": "Dorn"})),
    );
    let event = fixtures::sqs_event(&stack.source.arn, &[Record::json("m-wrapped", &inner)]);
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    assert_eq!(identity(&stack, "u-jdoe")["LastName"], "Dorn");
}
