//! End to end over the built binary: users named by `Username`. A resolution is used only
//! while `DescribeUser` returns that Username, so a username that moved to another account,
//! or a user deleted and created again, reaches the account that holds the username now; a
//! cached resolution costs no call and no `SearchUsers` token; a batch of many new usernames
//! is resolved from one `ListUsers` listing instead of one search each.

use std::time::Duration;

use harness::Stack;
use harness::connect_emulator::Operation;
use harness::fixtures::{
    self, INSTANCE, Record, batch_item_failures, calls_for, eventbridge, response, start,
};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");

fn by_username(username: &str, identity: &Value) -> Value {
    json!({"InstanceId": INSTANCE, "Username": username, "IdentityInfo": identity})
}

fn last_name(stack: &Stack, user: &str) -> Option<String> {
    stack
        .emulator
        .user(INSTANCE, user)
        .expect("user")
        .identity_info
        .last_name
}

fn updates_for(stack: &Stack, user: &str) -> usize {
    calls_for(stack, Operation::UpdateUserIdentityInfo, user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_moved_to_another_account_changes_the_new_holder_and_not_the_old() {
    let stack = start(fixtures::stack(BIN, 0)).await;
    let first = eventbridge("eb-1", &by_username("jdoe", &json!({"LastName": "First"})));
    assert_eq!(
        response(stack.invoke(&first).await.unwrap(), &stack),
        json!({"outcome": "updated"})
    );
    assert_eq!(last_name(&stack, "u-jdoe").as_deref(), Some("First"));

    // jdoe is renamed jdoe.old, and jdoe given to a new account.
    stack
        .emulator
        .seed_json(json!({"users": [
            {"instanceId": INSTANCE, "id": "u-jdoe", "username": "jdoe.old",
             "identityInfo": {"FirstName": "Jane", "LastName": "First",
                              "Email": "jane.doe@example.com"}},
            {"instanceId": INSTANCE, "id": "u-jdoe-new", "username": "jdoe",
             "identityInfo": {"FirstName": "John", "LastName": "Doe"}}
        ]}))
        .unwrap();
    let second = eventbridge("eb-2", &by_username("jdoe", &json!({"LastName": "Second"})));
    assert_eq!(
        response(stack.invoke(&second).await.unwrap(), &stack),
        json!({"outcome": "updated"})
    );
    assert_eq!(last_name(&stack, "u-jdoe-new").as_deref(), Some("Second"));
    assert_eq!(last_name(&stack, "u-jdoe").as_deref(), Some("First"));
    assert_eq!(
        updates_for(&stack, "u-jdoe"),
        1,
        "the old account was changed again"
    );
    assert_eq!(updates_for(&stack, "u-jdoe-new"), 1);
    // The cached id was refused by DescribeUser and the username searched once more.
    assert_eq!(stack.emulator.calls(Operation::SearchUsers).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_deleted_and_created_again_under_the_same_username_resolves_to_the_new_id() {
    let stack = start(fixtures::stack(BIN, 0)).await;
    let first = eventbridge(
        "eb-1",
        &by_username("asmith", &json!({"LastName": "Before"})),
    );
    assert_eq!(
        response(stack.invoke(&first).await.unwrap(), &stack),
        json!({"outcome": "updated"})
    );
    stack.emulator.delete_user(INSTANCE, "u-asmith").unwrap();
    stack
        .emulator
        .seed_json(json!({"users": [
            {"instanceId": INSTANCE, "id": "u-asmith-2", "username": "asmith",
             "identityInfo": {"FirstName": "Alex", "LastName": "Smith"}}
        ]}))
        .unwrap();
    // Two changes in a row: the first finds the cached id gone, the second reuses the
    // new resolution.
    for (id, last) in [("eb-2", "After"), ("eb-3", "Later")] {
        let change = eventbridge(id, &by_username("asmith", &json!({"LastName": last})));
        assert_eq!(
            response(stack.invoke(&change).await.unwrap(), &stack),
            json!({"outcome": "updated"}),
            "{id}\n{}",
            stack.function.logs()
        );
        assert_eq!(last_name(&stack, "u-asmith-2").as_deref(), Some(last));
    }
    assert_eq!(stack.emulator.calls(Operation::SearchUsers).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_records_for_two_cached_usernames_take_no_search_token() {
    // One search a second, and a deadline that leaves half a second to start a call: a
    // batch that had to wait for a search token would hand its records back.
    let config = fixtures::stack(BIN, 0)
        .env("CONNECT_RPS_SEARCH", "1")
        .env("CONNECT_ATTEMPT_TIMEOUT_MS", "1000")
        .env("DEADLINE_MARGIN_MS", "500")
        .function_timeout(Duration::from_secs(2));
    let stack = start(config).await;
    let source = stack.source.arn.clone();
    let one = |id: &str, name: &str| {
        fixtures::sqs_event(
            &source,
            &[Record::new(
                id,
                by_username(name, &json!({"FirstName": "Warm"})).to_string(),
            )],
        )
    };
    // Cache both: the second waits for its token across invocations if it must (deferred,
    // it is queued again or handed back; here it is simply sent again until applied).
    for (id, name, user) in [("m-a", "jdoe", "u-jdoe"), ("m-b", "asmith", "u-asmith")] {
        response(stack.invoke(&one(id, name)).await.unwrap(), &stack);
        while fixtures::identity(&stack, user)["FirstName"] != "Warm" {
            tokio::time::sleep(Duration::from_millis(500)).await;
            response(stack.invoke(&one(id, name)).await.unwrap(), &stack);
        }
    }
    let searches = stack.emulator.calls(Operation::SearchUsers).len();
    assert_eq!(searches, 2);

    // Straight away: no search token is free now.
    let records: Vec<Record> = (0..10)
        .map(|i| {
            let name = if i % 2 == 0 { "jdoe" } else { "asmith" };
            let body = by_username(name, &json!({"LastName": format!("Batch{i}")}));
            Record::new(format!("m-{i}"), body.to_string())
        })
        .collect();
    let event = fixtures::sqs_event(&source, &records);
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(
        batch_item_failures(&reply),
        Vec::<String>::new(),
        "{}",
        stack.function.logs()
    );
    assert_eq!(stack.emulator.calls(Operation::SearchUsers).len(), searches);
    assert_eq!(last_name(&stack, "u-jdoe").as_deref(), Some("Batch8"));
    assert_eq!(last_name(&stack, "u-asmith").as_deref(), Some("Batch9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_more_new_usernames_than_the_instance_has_pages_is_resolved_from_one_listing() {
    let stack = start(fixtures::stack(BIN, 30)).await;
    let records: Vec<Record> = (1..=12)
        .map(|n| {
            let body = by_username(&format!("agent{n:04}"), &json!({"LastName": "Listed"}));
            Record::new(format!("m-{n}"), body.to_string())
        })
        .collect();
    let event = fixtures::sqs_event(&stack.source.arn, &records);
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    assert_eq!(stack.emulator.calls(Operation::ListUsers).len(), 1);
    assert_eq!(stack.emulator.calls(Operation::SearchUsers).len(), 0);
    assert_eq!(
        stack
            .emulator
            .calls(Operation::UpdateUserIdentityInfo)
            .len(),
        12
    );

    // A username the listing did not hold is searched; the fresh listing is not repeated.
    stack
        .emulator
        .seed_json(json!({"users": [
            {"instanceId": INSTANCE, "id": "u-new", "username": "newcomer",
             "identityInfo": {"FirstName": "New", "LastName": "Comer"}}
        ]}))
        .unwrap();
    let event = eventbridge(
        "eb-new",
        &by_username("newcomer", &json!({"LastName": "Here"})),
    );
    assert_eq!(
        response(stack.invoke(&event).await.unwrap(), &stack),
        json!({"outcome": "updated"})
    );
    assert_eq!(stack.emulator.calls(Operation::ListUsers).len(), 1);
    assert_eq!(stack.emulator.calls(Operation::SearchUsers).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_listing_off_every_new_username_is_searched() {
    let stack = start(fixtures::stack(BIN, 30).env("CONNECT_RPS_LIST", "0")).await;
    let records: Vec<Record> = (1..=12)
        .map(|n| {
            let body = by_username(&format!("agent{n:04}"), &json!({"LastName": "Searched"}));
            Record::new(format!("m-{n}"), body.to_string())
        })
        .collect();
    let event = fixtures::sqs_event(&stack.source.arn, &records);
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    assert_eq!(stack.emulator.calls(Operation::ListUsers).len(), 0);
    assert_eq!(stack.emulator.calls(Operation::SearchUsers).len(), 12);
}
