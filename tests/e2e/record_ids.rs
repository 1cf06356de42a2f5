//! End to end over the built binary: a record is known by its ids even when its
//! document does not read (its dead letter carries `SourceId` and, where the body
//! gives one, `EventId`), and a record without a `messageId` ends on its own —
//! dead-lettered as `MalformedEvent` — without ever making its neighbours deliver again.

use std::time::Duration;

use harness::connect_emulator::{Fault, Operation};
use harness::fixtures::{
    self, INSTANCE, Record, batch_item_failures, change, eventbridge, response, start,
};
use harness::{Message, Stack};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");
const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:identity-changes";
const FIFO_QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:identity-changes.fifo";

/// `event` with record `i`'s `messageId` set to `id` (`None`: taken out).
fn with_message_id(mut event: Value, i: usize, id: Option<Value>) -> Value {
    let record = event["Records"][i].as_object_mut().unwrap();
    match id {
        Some(id) => record.insert("messageId".into(), id),
        None => record.remove("messageId"),
    };
    event
}

fn first_name(stack: &Stack, user: &str) -> Option<String> {
    stack
        .emulator
        .user(INSTANCE, user)
        .unwrap()
        .identity_info
        .first_name
}

async fn malformed_letters(stack: &Stack) -> Vec<Message> {
    stack
        .sqs
        .drain(&stack.dlq("MalformedEvent").url)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_of_an_unreadable_record_carries_its_source_id_and_readable_event_id() {
    let stack = start(fixtures::stack(BIN, 0)).await;
    let bad_detail = eventbridge(
        "eb-inside",
        &json!({"EventId": "idp-10", "IdentityInfo": 5}),
    );
    let event = fixtures::sqs_event(
        QUEUE,
        &[
            Record::new("m-not-json", "{\"EventId\": \"idp-8\", \"UserId\": "),
            Record::json(
                "m-no-user",
                &json!({"EventId": "idp-9", "IdentityInfo": {"FirstName": "Q"}}),
            ),
            Record::json("m-bad-detail", &bad_detail),
            Record::json("m-no-event-id", &json!({"UserId": 5})),
        ],
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());

    let mut letters: Vec<(String, Option<String>)> = malformed_letters(&stack)
        .await
        .iter()
        .map(|m| {
            (
                m.attr("SourceId").unwrap_or("<none>").to_owned(),
                m.attr("EventId").map(str::to_owned),
            )
        })
        .collect();
    letters.sort();
    let want = |s: &str, e: &str| (s.to_owned(), Some(e.to_owned()));
    assert_eq!(
        letters,
        vec![
            want("m-bad-detail", "idp-10"),
            want("m-no-event-id", "m-no-event-id"),
            want("m-no-user", "idp-9"),
            // A body that is not JSON gives no EventId of its own.
            want("m-not-json", "m-not-json"),
        ]
    );

    let direct = eventbridge("eb-bad", &json!({"EventId": "idp-11", "UserId": 5}));
    assert_eq!(
        response(stack.invoke(&direct).await.unwrap(), &stack),
        json!({"outcome": "dead_lettered", "errorClass": "MalformedEvent"})
    );
    let direct_plain = eventbridge("eb-bad-plain", &json!("not a document"));
    response(stack.invoke(&direct_plain).await.unwrap(), &stack);
    let mut letters: Vec<(String, Option<String>)> = malformed_letters(&stack)
        .await
        .iter()
        .map(|m| {
            (
                m.attr("SourceId").unwrap_or("<none>").to_owned(),
                m.attr("EventId").map(str::to_owned),
            )
        })
        .collect();
    letters.sort();
    assert_eq!(
        letters,
        vec![
            want("eb-bad", "idp-11"),
            want("eb-bad-plain", "eb-bad-plain")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_without_a_message_id_are_dead_lettered_alone_while_their_neighbours_apply() {
    let stack = start(fixtures::stack(BIN, 0)).await;
    let event = fixtures::sqs_event(
        QUEUE,
        &[
            Record::json(
                "m-1",
                &change(INSTANCE, "u-jdoe", &json!({"FirstName": "Janet"})),
            ),
            Record::json(
                "lost-1",
                &change(INSTANCE, "u-bking", &json!({"FirstName": "Nobody"})),
            ),
            Record::new("lost-2", "not json at all"),
            Record::json(
                "lost-3",
                &change(INSTANCE, "u-cwu", &json!({"FirstName": "Nobody"})),
            ),
            Record::json(
                "m-2",
                &change(INSTANCE, "u-asmith", &json!({"FirstName": "Alexa"})),
            ),
        ],
    );
    let event = with_message_id(event, 1, None);
    let event = with_message_id(event, 2, Some(json!("")));
    let event = with_message_id(event, 3, Some(json!(7)));
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    assert_eq!(first_name(&stack, "u-jdoe").as_deref(), Some("Janet"));
    assert_eq!(first_name(&stack, "u-asmith").as_deref(), Some("Alexa"));
    assert_eq!(first_name(&stack, "u-bking").as_deref(), Some("Bea"));
    assert_eq!(first_name(&stack, "u-cwu").as_deref(), Some("Chen"));
    let letters = malformed_letters(&stack).await;
    let mut bodies: Vec<&str> = letters.iter().map(|m| m.body.as_str()).collect();
    bodies.sort_unstable();
    let mut want = vec![
        event["Records"][1]["body"].as_str().unwrap(),
        event["Records"][2]["body"].as_str().unwrap(),
        event["Records"][3]["body"].as_str().unwrap(),
    ];
    want.sort_unstable();
    assert_eq!(bodies, want, "each record without a messageId, alone");
    for m in &letters {
        assert_eq!(m.attr("ErrorClass"), Some("MalformedEvent"));
        assert_eq!(m.attr("SourceId"), None, "no empty SourceId");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_without_a_message_id_whose_dead_letter_fails_redelivers_no_neighbour() {
    let stack = start(fixtures::stack(BIN, 0).env(
        "DLQ_URL_MALFORMED_EVENT",
        "{sqs}/123456789012/no-such-queue",
    ))
    .await;
    let event = fixtures::sqs_event(
        QUEUE,
        &[
            Record::json(
                "m-1",
                &change(INSTANCE, "u-jdoe", &json!({"FirstName": "Janet"})),
            ),
            Record::new("lost", "{ not json"),
            Record::json(
                "m-2",
                &change(INSTANCE, "u-asmith", &json!({"FirstName": "Alexa"})),
            ),
        ],
    );
    let event = with_message_id(event, 1, None);
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(
        batch_item_failures(&reply),
        Vec::<String>::new(),
        "neither neighbour is delivered again"
    );
    assert_eq!(first_name(&stack, "u-jdoe").as_deref(), Some("Janet"));
    assert_eq!(first_name(&stack, "u-asmith").as_deref(), Some("Alexa"));
    let said = "a record without a messageId could not be dead-lettered";
    let logs = stack
        .function
        .logs_once_containing(said, Duration::from_secs(5))
        .await;
    assert!(logs.contains(said), "the loss is said:\n{logs}");
    assert!(stack.function.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_fifo_group_a_record_without_a_message_id_is_dead_lettered_not_held_back() {
    let stack = start(fixtures::stack(BIN, 0)).await;
    stack.emulator.inject_fault(
        Fault::new(
            Operation::UpdateUserIdentityInfo,
            "ThrottlingException",
            1000,
        )
        .for_user("u-bking"),
    );
    let event = fixtures::sqs_event(
        FIFO_QUEUE,
        &[
            Record::json(
                "m-1",
                &change(INSTANCE, "u-bking", &json!({"FirstName": "Beatrix"})),
            )
            .group("g-1"),
            Record::json(
                "lost",
                &change(INSTANCE, "u-cwu", &json!({"FirstName": "Nobody"})),
            )
            .group("g-1"),
            Record::json(
                "m-3",
                &change(INSTANCE, "u-asmith", &json!({"FirstName": "Alexa"})),
            )
            .group("g-1"),
        ],
    );
    let event = with_message_id(event, 1, None);
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    let mut handed_back = batch_item_failures(&reply);
    handed_back.sort();
    assert_eq!(handed_back, vec!["m-1".to_owned(), "m-3".to_owned()]);
    let letters = malformed_letters(&stack).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(
        letters[0].body,
        event["Records"][1]["body"].as_str().unwrap()
    );
    assert_eq!(first_name(&stack, "u-cwu").as_deref(), Some("Chen"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_kb_control_character_event_id_still_reaches_its_dead_letter_queue() {
    let stack = start(fixtures::stack(BIN, 0)).await;
    let huge = format!("evt\u{1}\u{b}{}", "x".repeat(200_000));
    let unreadable = json!({"EventId": huge, "UserId": 5}).to_string();
    let invalid = json!({"EventId": huge, "InstanceId": INSTANCE, "UserId": "u-jdoe",
                         "IdentityInfo": {"Mobile": "not a number"}})
    .to_string();
    let event = fixtures::sqs_event(
        QUEUE,
        &[
            Record::new("m-unreadable", unreadable.clone()),
            Record::new("m-invalid", invalid.clone()),
        ],
    );
    let reply = response(stack.invoke(&event).await.unwrap(), &stack);
    assert_eq!(
        batch_item_failures(&reply),
        Vec::<String>::new(),
        "both were dead-lettered, none handed back for a refused send"
    );
    let malformed = malformed_letters(&stack).await;
    let validation = stack
        .sqs
        .drain(&stack.dlq("ValidationError").url)
        .await
        .unwrap();
    for (letters, body, id) in [
        (&malformed, &unreadable, "m-unreadable"),
        (&validation, &invalid, "m-invalid"),
    ] {
        assert_eq!(letters.len(), 1, "{id}: {letters:#?}");
        let m = &letters[0];
        assert_eq!(&m.body, body, "{id}: the body is whole");
        assert_eq!(m.attr("SourceId"), Some(id));
        // Not a plain token: known by its digest (SPEC §3.1).
        let event_id = m.attr("EventId").expect("EventId, as its digest");
        assert!(
            event_id.starts_with("sha256:") && event_id.len() == 7 + 64,
            "{id}: {event_id:?}"
        );
    }
}
