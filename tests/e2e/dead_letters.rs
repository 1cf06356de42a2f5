//! End to end over the built binary: every failure class reaches its own
//! dead-letter queue with the original body and the attributes of SPEC §3.1,
//! from SQS records and from direct EventBridge events alike.

use std::collections::BTreeMap;

use harness::connect_emulator::{Fault, Operation};
use harness::fixtures::{
    self, DIRECTORY_INSTANCE, Expected, FOREIGN_INSTANCE, INSTANCE, Record, SAML_INSTANCE,
    assert_no_dead_letters, batch_item_failures, change, dead_letter_problems, eventbridge,
    eventbridge_from,
};
use harness::{Invocation, Message, Stack};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");

/// Personal data used in the changes below: none of it may reach a log line or an
/// `ErrorMessage`.
const SECRETS: &[&str] = &[
    "Zephyrine",
    "Quillfeather",
    "zephyrine.q@example.com",
    "zq@evil.test",
    "+14155559876",
    "4155559876",
    "Natarajan",
    "jane.doe@example.com",
];

async fn stack() -> Stack {
    fixtures::stack(BIN, 3).start().await.expect("stack starts")
}

/// One change per class, each with what its dead letter must say.
struct Case {
    id: &'static str,
    class: &'static str,
    body: String,
    instance: Option<&'static str>,
    user: Option<&'static str>,
    event_id: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    let zephyrine = json!({"FirstName": "Zephyrine", "LastName": "Quillfeather"});
    let doc = |instance: &str, user: &str, info: &Value| change(instance, user, info).to_string();
    vec![
        Case {
            id: "m-malformed",
            class: "MalformedEvent",
            body: r#"{"UserId": "u-jdoe", "IdentityInfo": {"FirstName": "Zephyrine""#.to_owned(),
            instance: None,
            user: None,
            event_id: None,
        },
        Case {
            id: "m-malformed-no-user",
            class: "MalformedEvent",
            body: json!({"InstanceId": INSTANCE, "IdentityInfo": zephyrine}).to_string(),
            instance: None,
            user: None,
            event_id: None,
        },
        Case {
            id: "m-validation-mobile",
            class: "ValidationError",
            body: doc(INSTANCE, "u-jdoe", &json!({"Mobile": "call me maybe"})),
            instance: Some(INSTANCE),
            user: Some("u-jdoe"),
            event_id: None,
        },
        Case {
            id: "m-validation-email",
            class: "ValidationError",
            body: json!({"InstanceId": INSTANCE, "UserId": "u-jdoe", "EventId": "evt-validation-email",
                         "IdentityInfo": {"Email": "zephyrine.q@@example"}})
            .to_string(),
            instance: Some(INSTANCE),
            user: Some("u-jdoe"),
            event_id: Some("evt-validation-email"),
        },
        Case {
            id: "m-policy-instance",
            class: "PolicyViolation",
            body: doc(FOREIGN_INSTANCE, "u-foreign", &zephyrine),
            instance: Some(FOREIGN_INSTANCE),
            user: Some("u-foreign"),
            event_id: None,
        },
        Case {
            id: "m-policy-protected",
            class: "PolicyViolation",
            body: doc(INSTANCE, "u-protected", &zephyrine),
            instance: Some(INSTANCE),
            user: Some("u-protected"),
            event_id: None,
        },
        Case {
            id: "m-policy-domain",
            class: "PolicyViolation",
            body: doc(INSTANCE, "u-0001", &json!({"Email": "zq@evil.test"})),
            instance: Some(INSTANCE),
            user: Some("u-0001"),
            event_id: None,
        },
        Case {
            id: "m-invalid-request",
            class: "InvalidRequestException",
            body: doc(INSTANCE, "u-asmith", &zephyrine),
            instance: Some(INSTANCE),
            user: Some("u-asmith"),
            event_id: None,
        },
        Case {
            id: "m-invalid-parameter",
            class: "InvalidParameterException",
            body: doc(INSTANCE, "u-cwu", &zephyrine),
            instance: Some(INSTANCE),
            user: Some("u-cwu"),
            event_id: None,
        },
        Case {
            id: "m-not-found",
            class: "ResourceNotFoundException",
            body: doc(INSTANCE, "u-nobody", &zephyrine),
            instance: Some(INSTANCE),
            user: Some("u-nobody"),
            event_id: None,
        },
        Case {
            id: "m-not-found-username",
            class: "ResourceNotFoundException",
            body: json!({"InstanceId": INSTANCE, "Username": "ghost", "IdentityInfo": zephyrine})
                .to_string(),
            instance: Some(INSTANCE),
            user: None,
            event_id: None,
        },
        Case {
            id: "m-throttling",
            class: "ThrottlingException",
            body: doc(INSTANCE, "u-bking", &json!({"Mobile": "+14155559876"})),
            instance: Some(INSTANCE),
            user: Some("u-bking"),
            event_id: None,
        },
        Case {
            id: "m-internal",
            class: "InternalServiceException",
            body: doc(INSTANCE, "u-dlee", &zephyrine),
            instance: Some(INSTANCE),
            user: Some("u-dlee"),
            event_id: None,
        },
        Case {
            id: "m-unknown",
            class: "UnknownError",
            body: doc(INSTANCE, "u-0002", &zephyrine),
            instance: Some(INSTANCE),
            user: Some("u-0002"),
            event_id: None,
        },
    ]
}

/// Faults that give each Connect-side case its class.
fn inject_faults(stack: &Stack) {
    let e = &stack.emulator;
    let update = Operation::UpdateUserIdentityInfo;
    e.inject_fault(Fault::new(update, "InvalidRequestException", 1000).for_user("u-asmith"));
    e.inject_fault(Fault::new(update, "InvalidParameterException", 1000).for_user("u-cwu"));
    e.inject_fault(Fault::new(update, "ThrottlingException", 1000).for_user("u-bking"));
    e.inject_fault(Fault::new(update, "InternalServiceException", 1000).for_user("u-dlee"));
    e.inject_fault(
        Fault::new(update, "EmulatorUnmodelledException", 1000)
            .for_user("u-0002")
            .with_status(400),
    );
}

fn by_source_id(letters: &BTreeMap<String, Vec<Message>>) -> BTreeMap<String, (String, Message)> {
    let mut out = BTreeMap::new();
    for (class, messages) in letters {
        for m in messages {
            let id = m.attr("SourceId").unwrap_or("<no SourceId>").to_owned();
            let previous = out.insert(id.clone(), (class.clone(), m.clone()));
            assert!(previous.is_none(), "{id} was dead-lettered twice");
        }
    }
    out
}

fn assert_no_personal_data_in_logs(stack: &Stack) {
    let logs = stack.function.logs();
    for secret in SECRETS {
        assert!(
            !logs.contains(secret),
            "the function logged personal data {secret:?}:\n{logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_class_of_an_sqs_record_reaches_its_own_queue_with_the_body_byte_for_byte() {
    let stack = stack().await;
    inject_faults(&stack);
    let cases = cases();
    // Received for the third time (= MAX_RECEIVE_COUNT): retryable classes are
    // dead-lettered too.
    let records: Vec<Record> = cases
        .iter()
        .map(|c| Record::new(c.id, c.body.clone()).received(3))
        .collect();
    let event = fixtures::sqs_event(&stack.source.arn, &records);

    let reply = stack.invoke(&event).await.expect("a reply");
    let Invocation::Response(reply) = reply else {
        panic!(
            "the invocation failed: {reply:?}\n{}",
            stack.function.logs()
        );
    };
    assert_eq!(
        batch_item_failures(&reply),
        Vec::<String>::new(),
        "every record was dead-lettered, none is to be delivered again"
    );

    let letters = by_source_id(&stack.dead_letters().await.unwrap());
    for case in &cases {
        let (queue_class, message) = letters
            .get(case.id)
            .unwrap_or_else(|| panic!("{} ({}) reached no dead-letter queue", case.id, case.class));
        assert_eq!(
            queue_class, case.class,
            "{} went to the wrong queue",
            case.id
        );
        assert_eq!(message.body, case.body, "{}: body changed", case.id);
        let problems = dead_letter_problems(
            message,
            &Expected {
                class: case.class,
                source_type: "sqs",
                source_id: case.id,
                event_id: Some(case.event_id.unwrap_or(case.id))
                    .filter(|_| case.instance.is_some()),
                instance_id: case.instance,
                user_id: case.user,
                attempts: Some(3),
                secrets: SECRETS,
            },
        );
        assert!(problems.is_empty(), "{}: {problems:#?}", case.id);
        if let Some(event_id) = message.attr("EventId") {
            assert_eq!(
                event_id,
                case.event_id.unwrap_or(case.id),
                "{}: EventId",
                case.id
            );
        }
    }
    assert_eq!(
        letters.len(),
        cases.len(),
        "unexpected dead letters: {letters:#?}"
    );
    assert_eq!(
        stack.sqs.total_depth(&stack.source_dlq.url).await.unwrap(),
        0
    );

    // None of the refused changes reached a user.
    for user in [
        "u-jdoe",
        "u-protected",
        "u-asmith",
        "u-cwu",
        "u-bking",
        "u-dlee",
        "u-0001",
        "u-0002",
    ] {
        let u = stack.emulator.user(INSTANCE, user).expect("user exists");
        assert_ne!(
            u.identity_info.first_name.as_deref(),
            Some("Zephyrine"),
            "{user} changed"
        );
        assert_ne!(
            u.identity_info.mobile.as_deref(),
            Some("+14155559876"),
            "{user} changed"
        );
    }
    assert_no_personal_data_in_logs(&stack);
    assert!(stack.function.is_running());
}

/// An event, its class, and the `InstanceId`, `UserId` and `Attempts` its dead letter carries.
type EventBridgeCase = (
    Value,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<u32>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_class_of_a_direct_eventbridge_event_reaches_its_own_queue_with_the_whole_event()
 {
    let stack = stack().await;
    inject_faults(&stack);
    let zephyrine = json!({"FirstName": "Zephyrine", "LastName": "Quillfeather"});
    // (event, class, instance, user, attempts)
    let cases: Vec<EventBridgeCase> = vec![
        (
            eventbridge(
                "eb-malformed",
                &json!({"InstanceId": INSTANCE, "IdentityInfo": zephyrine}),
            ),
            "MalformedEvent",
            None,
            None,
            Some(1),
        ),
        (
            eventbridge(
                "eb-validation",
                &change(INSTANCE, "u-jdoe", &json!({"Mobile": "12"})),
            ),
            "ValidationError",
            Some(INSTANCE),
            Some("u-jdoe"),
            Some(1),
        ),
        (
            eventbridge_from(
                "eb-untrusted",
                "com.example.rogue",
                &change(INSTANCE, "u-jdoe", &zephyrine),
            ),
            "PolicyViolation",
            None,
            None,
            Some(1),
        ),
        (
            eventbridge("eb-policy", &change(INSTANCE, "u-protected", &zephyrine)),
            "PolicyViolation",
            Some(INSTANCE),
            Some("u-protected"),
            Some(1),
        ),
        (
            eventbridge(
                "eb-invalid-request",
                &change(INSTANCE, "u-asmith", &zephyrine),
            ),
            "InvalidRequestException",
            Some(INSTANCE),
            Some("u-asmith"),
            Some(1),
        ),
        (
            eventbridge(
                "eb-invalid-parameter",
                &change(INSTANCE, "u-cwu", &zephyrine),
            ),
            "InvalidParameterException",
            Some(INSTANCE),
            Some("u-cwu"),
            Some(1),
        ),
        (
            eventbridge("eb-not-found", &change(INSTANCE, "u-nobody", &zephyrine)),
            "ResourceNotFoundException",
            Some(INSTANCE),
            Some("u-nobody"),
            Some(1),
        ),
        (
            eventbridge("eb-internal", &change(INSTANCE, "u-dlee", &zephyrine)),
            "InternalServiceException",
            Some(INSTANCE),
            Some("u-dlee"),
            Some(3),
        ),
        (
            eventbridge("eb-unknown", &change(INSTANCE, "u-0002", &zephyrine)),
            "UnknownError",
            Some(INSTANCE),
            Some("u-0002"),
            None,
        ),
        // Last: the client-side rate limiter a throttle may switch on must not
        // slow the cases above.
        (
            eventbridge("eb-throttling", &change(INSTANCE, "u-bking", &zephyrine)),
            "ThrottlingException",
            Some(INSTANCE),
            Some("u-bking"),
            Some(3),
        ),
    ];
    for (event, class, instance, user, attempts) in &cases {
        let id = event["id"].as_str().unwrap();
        let reply = stack.invoke(event).await.expect("a reply");
        assert_eq!(
            reply,
            Invocation::Response(json!({"outcome": "dead_lettered", "errorClass": class})),
            "{id}"
        );
        let mut letters = stack.sqs.drain(&stack.dlq(class).url).await.unwrap();
        assert_eq!(letters.len(), 1, "{id}: {letters:#?}");
        let letter = letters.remove(0);
        let body: Value = serde_json::from_str(&letter.body).expect("the body is JSON");
        assert_eq!(&body, event, "{id}: the dead letter is not the whole event");
        let problems = dead_letter_problems(
            &letter,
            &Expected {
                class,
                source_type: "eventbridge",
                source_id: id,
                event_id: Some(id).filter(|_| instance.is_some()),
                instance_id: *instance,
                user_id: *user,
                attempts: *attempts,
                secrets: SECRETS,
            },
        );
        assert!(problems.is_empty(), "{id}: {problems:#?}");
    }
    assert_no_dead_letters(&stack).await;
    assert_no_personal_data_in_logs(&stack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_mode_rules_are_validation_errors() {
    let stack = stack().await;
    let cases = [
        // SAML: an Email change is refused.
        (
            "eb-saml-email",
            change(
                SAML_INSTANCE,
                "u-saml",
                &json!({"Email": "zephyrine.q@example.com"}),
            ),
        ),
        // SAML: the merged names cannot be empty.
        (
            "eb-saml-name",
            change(SAML_INSTANCE, "u-saml", &json!({"FirstName": null})),
        ),
        // CONNECT_MANAGED: the merged names cannot be empty.
        (
            "eb-managed-name",
            change(INSTANCE, "u-jdoe", &json!({"LastName": "   "})),
        ),
        // EXISTING_DIRECTORY: a name that differs from the directory is refused.
        (
            "eb-directory-name",
            change(
                DIRECTORY_INSTANCE,
                "u-dir",
                &json!({"FirstName": "Zephyrine"}),
            ),
        ),
    ];
    for (id, detail) in &cases {
        let event = eventbridge(id, detail);
        let reply = stack.invoke(&event).await.expect("a reply");
        assert_eq!(
            reply,
            Invocation::Response(
                json!({"outcome": "dead_lettered", "errorClass": "ValidationError"})
            ),
            "{id}"
        );
    }
    let letters = stack
        .sqs
        .receive_all(&stack.dlq("ValidationError").url)
        .await
        .unwrap();
    let mut ids: Vec<&str> = letters.iter().filter_map(|m| m.attr("SourceId")).collect();
    ids.sort_unstable();
    let mut want: Vec<&str> = cases.iter().map(|(id, _)| *id).collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    assert!(
        stack
            .emulator
            .calls(Operation::UpdateUserIdentityInfo)
            .is_empty()
    );
}
