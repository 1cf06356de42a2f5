//! End to end over the built binary: however the log level is spelled — a number, a
//! word in any case, `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`, per-target directives that
//! open the runtime's, the SDK's or the HTTP stack's own traces — no name, email
//! address, phone number or username reaches stdout or stderr, whether it came in a
//! canonical document, a SCIM resource or PatchOp, a Connect response, or a Connect
//! error that echoes request values.

use harness::connect_emulator::{Fault, Operation};
use harness::fixtures::{self, INSTANCE, Record, change, eventbridge, response};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");

const USER: &str = "u-pd";
const USERNAME: &str = "wilhelmina.vantastic";

/// Every value below is personal data: the user's current identity (in `DescribeUser`
/// responses), the values of the changes (in payloads and requests), usernames (in
/// `SearchUsers` requests) and what Connect's error echoes back.
const PERSONAL: &[&str] = &[
    // Current identity in Connect.
    "Wilhelmina",
    "Vantastic-Okoro",
    "wilhelmina.vantastic@example.com",
    "w.v.home@example.com",
    "+14155550177",
    USERNAME,
    // Canonical change.
    "Ottoline",
    "Featherstonehaugh",
    "ottoline.f@example.com",
    "ottie.private@example.com",
    "555-0199",
    "4155550199",
    // SCIM resource.
    "Persephone",
    "Blackwood-Ngata",
    "persephone.b@example.com",
    "persie.home@example.com",
    "4155550166",
    // SCIM PatchOp (read, or refused as not a document: its values are in the payload).
    "Theodora",
    "Quenneville",
    "theodora.q@example.com",
    "4155550155",
    // Refused, malformed, unknown username, Connect's echo.
    "Bartholomew",
    "bart.leaked@example.com",
    "ghost.login.name",
    "Ünïcödé",
    "echoed.secret@example.com",
    "Ignatius",
];

fn seed() -> Value {
    let mut seed = fixtures::seed(1);
    seed["users"].as_array_mut().unwrap().push(json!({
        "instanceId": INSTANCE, "id": USER, "username": USERNAME,
        "identityInfo": {"FirstName": "Wilhelmina", "LastName": "Vantastic-Okoro",
                         "Email": "wilhelmina.vantastic@example.com",
                         "SecondaryEmail": "w.v.home@example.com", "Mobile": "+14155550177"},
        "securityProfileIds": ["sp-agent"],
    }));
    seed
}

fn scim_resource() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": USERNAME,
        "name": {"givenName": "Persephone", "familyName": "Blackwood-Ngata"},
        "emails": [
            {"value": "persephone.b@example.com", "type": "work", "primary": true},
            {"value": "persie.home@example.com", "type": "home"}
        ],
        "phoneNumbers": [{"value": "(415) 555-0166", "type": "mobile"}]
    })
}

fn scim_patch() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Username": USERNAME,
        "Operations": [
            {"op": "replace", "path": "name.givenName", "value": "Theodora"},
            {"op": "Replace", "path": "name.familyName", "value": "Quenneville"},
            {"op": "add", "path": "emails[type eq \"work\"].value", "value": "theodora.q@example.com"},
            {"op": "replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "415-555-0155"}
        ]
    })
}

/// Runs every kind of record through a function logging with `vars`, then checks its
/// whole output.
async fn nothing_personal_is_logged_with(vars: &[(&str, &str)]) {
    nothing_personal_is_logged(vars, true).await;
}

/// As above; `outcomes` says whether the directives let the function's own outcome
/// lines through (a lone per-target directive switches every other target off).
async fn nothing_personal_is_logged(vars: &[(&str, &str)], outcomes: bool) {
    let mut config = fixtures::stack(BIN, 0).seed(seed());
    for (k, v) in vars {
        config = config.env(*k, *v);
    }
    let stack = config.start().await.expect("stack starts");

    let canonical = json!({"FirstName": "Ottoline", "LastName": "Featherstonehaugh",
        "Email": "ottoline.f@example.com", "SecondaryEmail": "ottie.private@example.com",
        "Mobile": "(415) 555-0199"});
    let applied = response(
        stack
            .invoke(&eventbridge(
                "eb-canonical",
                &change(INSTANCE, USER, &canonical),
            ))
            .await
            .unwrap(),
        &stack,
    );
    assert_eq!(
        applied,
        json!({"outcome": "updated"}),
        "{}",
        stack.function.logs()
    );

    let scim = response(
        stack
            .invoke(&eventbridge("eb-scim", &scim_resource()))
            .await
            .unwrap(),
        &stack,
    );
    assert_eq!(
        scim,
        json!({"outcome": "updated"}),
        "{}",
        stack.function.logs()
    );

    let batch = fixtures::sqs_event(
        "arn:aws:sqs:us-east-1:123456789012:changes",
        &[
            Record::json("m-patch", &scim_patch()),
            Record::json(
                "m-invalid",
                &change(
                    INSTANCE,
                    "u-0001",
                    &json!({"FirstName": "Bartholomew", "Email": "bart.leaked@example.com@"}),
                ),
            ),
            Record::new(
                "m-malformed",
                "{\"FirstName\": \"Ünïcödé\", \"Email\": \"bart.leaked@example.com\"",
            ),
            Record::json(
                "m-ghost",
                &json!({"Username": "ghost.login.name", "IdentityInfo": {"FirstName": "Ignatius"}}),
            ),
        ],
    );
    response(stack.invoke(&batch).await.unwrap(), &stack);

    // Connect refuses the update with a message that echoes what it was sent.
    stack.emulator.inject_fault(
        Fault::new(
            Operation::UpdateUserIdentityInfo,
            "InvalidParameterException",
            1,
        )
        .for_user(USER)
        .with_message("Invalid Email echoed.secret@example.com for Ignatius Featherstonehaugh"),
    );
    let refused = response(
        stack
            .invoke(&eventbridge("eb-echo", &change(INSTANCE, USER, &canonical)))
            .await
            .unwrap(),
        &stack,
    );
    assert_eq!(
        refused,
        json!({"outcome": "dead_lettered", "errorClass": "InvalidParameterException"})
    );

    let logs = stack.function.logs();
    if outcomes {
        assert!(
            logs.contains("record settled") && logs.contains("m-ghost"),
            "the function logged its outcomes:\n{logs}"
        );
    }
    for value in PERSONAL {
        assert!(
            !logs.contains(value),
            "{value:?} appears in the logs with {vars:?}:\n{logs}"
        );
    }
    assert!(stack.function.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_5_writes_no_personal_data() {
    nothing_personal_is_logged_with(&[("RUST_LOG", "5")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_trace_writes_no_personal_data() {
    nothing_personal_is_logged_with(&[("RUST_LOG", "trace")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_log_level_trace_in_json_writes_no_personal_data() {
    nothing_personal_is_logged_with(&[
        ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtimes_own_trace_directive_writes_no_payload() {
    nothing_personal_is_logged_with(&[("RUST_LOG", "info,lambda_runtime=trace")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_runtime_trace_directive_writes_no_payload() {
    nothing_personal_is_logged(&[("AWS_LAMBDA_LOG_LEVEL", "lambda_runtime=trace")], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_clients_trace_directive_writes_no_payload() {
    nothing_personal_is_logged(&[("RUST_LOG", "lambda_runtime_api_client=trace")], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_trace_directive_writes_no_request_response_or_error_message() {
    nothing_personal_is_logged_with(&[("RUST_LOG", "info,aws_smithy_runtime=trace")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_stacks_trace_directives_write_no_body() {
    nothing_personal_is_logged_with(&[("RUST_LOG", "info,hyper=trace,hyper_util=trace,h2=trace")])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_at_trace_at_once_writes_no_personal_data() {
    nothing_personal_is_logged_with(&[(
        "RUST_LOG",
        "TRACE,lambda_runtime=TRACE,lambda_runtime_api_client=trace,aws_smithy_runtime=5,\
         aws_smithy_runtime_api=trace,aws_sdk_connect=trace,aws_sdk_sqs=trace,aws_config=trace,\
         hyper=trace,connect_identity_sync=trace",
    )])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_target_levels_given_as_numbers_write_no_personal_data() {
    nothing_personal_is_logged_with(&[(
        "RUST_LOG",
        "info,lambda_runtime=5,aws_smithy_runtime=5,hyper=5",
    )])
    .await;
}
