//! End to end over the built SCIM endpoint (`connect-identity-sync-scim`): API Gateway
//! HTTP API events (payload format 2.0) through its Runtime API, against the Connect
//! emulator, moto's SQS and Secrets Manager, and the function binary applying what the
//! endpoint queued.

use std::time::Duration;

use harness::fixtures::{self, INSTANCE, identity};
use harness::scim::{self, NEXT_TOKEN, Request, ScimEndpoint, TOKEN};
use harness::{Function, RuntimeApi, Stack};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");
const SCIM_BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync-scim");
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

struct Setup {
    stack: Stack,
    scim: ScimEndpoint,
}

async fn setup_with(extra: &[(&str, &str)], tokens: &[&str]) -> Setup {
    let stack = fixtures::stack(BIN, 0).start().await.expect("stack starts");
    let arn = scim::create_token_secret(
        &stack.moto.endpoint(),
        "scim-tokens",
        &json!({ "tokens": tokens }),
    )
    .await
    .expect("secret");
    let mut config = scim::config(SCIM_BIN, &stack, &arn);
    for (k, v) in extra {
        config = config.env(*k, *v);
    }
    let scim = ScimEndpoint::start(&stack, config)
        .await
        .expect("endpoint starts");
    Setup { stack, scim }
}

async fn setup() -> Setup {
    setup_with(&[], &[TOKEN]).await
}

impl Setup {
    async fn send(&self, request: Request) -> scim::Reply {
        self.scim
            .send(&request)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.scim.function.logs()))
    }

    /// What the source queue holds, left visible.
    async fn queued(&self) -> Vec<Value> {
        let messages = self
            .stack
            .sqs
            .receive(&self.stack.source.url, 10, 0, Some(0))
            .await
            .expect("receive");
        messages
            .iter()
            .map(|m| serde_json::from_str(&m.body).expect("a JSON body"))
            .collect()
    }

    async fn queue_depth(&self) -> u64 {
        let (visible, in_flight) = self.stack.sqs.depth(&self.stack.source.url).await.unwrap();
        visible + in_flight
    }

    /// Runs the function over the source queue until it is empty.
    async fn apply(&self) {
        let report = self
            .stack
            .mapping()
            .run(Duration::from_secs(30))
            .await
            .expect("mapping");
        assert!(report.drained, "{}", self.stack.function.logs());
        fixtures::assert_no_dead_letters(&self.stack).await;
    }
}

/// Asserts a SCIM error with `status` and `scim_type`, whose `detail` names `names`.
fn assert_error(reply: &scim::Reply, status: u16, scim_type: Option<&str>, names: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(
        reply.body["schemas"],
        json!([ERROR_SCHEMA]),
        "{}",
        reply.text
    );
    assert_eq!(reply.body["status"], json!(status.to_string()));
    assert_eq!(
        reply.body.get("scimType").and_then(Value::as_str),
        scim_type,
        "{}",
        reply.text
    );
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(names),
        "detail {detail:?} does not name {names}"
    );
}

/// Asserts that `text` repeats none of `values`.
fn assert_free_of(text: &str, values: &[&str]) {
    for value in values {
        assert!(
            !text.to_lowercase().contains(&value.to_lowercase()),
            "{value:?} appears in:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_answers_what_the_endpoint_supports_and_the_rest_is_501_or_404() {
    let s = setup().await;
    let spc = s.send(Request::get("/ServiceProviderConfig")).await;
    assert_eq!(spc.status, 200, "{}", spc.text);
    assert_eq!(spc.header("content-type"), Some("application/scim+json"));
    assert_eq!(spc.body["patch"]["supported"], true);
    assert_eq!(
        spc.body["filter"],
        json!({"supported": true, "maxResults": 100})
    );
    for unsupported in ["bulk", "sort", "etag", "changePassword"] {
        assert_eq!(spc.body[unsupported]["supported"], false, "{unsupported}");
    }
    assert_eq!(
        spc.body["authenticationSchemes"][0]["type"],
        "oauthbearertoken"
    );
    let types = s.send(Request::get("/ResourceTypes")).await;
    assert_eq!(types.body["schemas"], json!([LIST_SCHEMA]));
    assert_eq!(types.body["totalResults"], 1);
    assert_eq!(types.body["Resources"][0]["id"], "User");
    assert_eq!(types.body["Resources"][0]["schema"], USER_SCHEMA);
    let user_type = s.send(Request::get("/ResourceTypes/User")).await;
    assert_eq!(user_type.body["endpoint"], "/Users");
    let schemas = s.send(Request::get("/Schemas")).await;
    assert_eq!(schemas.body["Resources"][0]["id"], USER_SCHEMA);
    let schema = s
        .send(Request::get(&format!("/Schemas/{USER_SCHEMA}")))
        .await;
    assert_eq!(schema.status, 200);
    assert_error(
        &s.send(Request::get("/ResourceTypes/Group")).await,
        404,
        None,
        "",
    );

    let post = s
        .send(
            Request::new("POST", "/Users")
                .json(&json!({"schemas": [USER_SCHEMA], "userName": "new"})),
        )
        .await;
    assert_error(&post, 501, None, "created in Amazon Connect");
    let delete = s.send(Request::new("DELETE", "/Users/u-jdoe")).await;
    assert_error(&delete, 501, None, "removed in Amazon Connect");
    assert_error(&s.send(Request::get("/Groups")).await, 404, None, "groups");
    assert_error(
        &s.send(Request::get("/Groups").query("filter", "displayName eq \"x\""))
            .await,
        404,
        None,
        "",
    );
    assert_error(
        &s.send(Request::new("POST", "/Bulk").json(&json!({}))).await,
        501,
        None,
        "bulk",
    );
    assert_error(&s.send(Request::get("/Me")).await, 404, None, "route");
    assert_error(
        &s.send(Request::get("/Users/u-jdoe/manager")).await,
        404,
        None,
        "route",
    );
    assert_eq!(s.queue_depth().await, 0);
    // The user still exists: DELETE changed nothing.
    assert_eq!(identity(&s.stack, "u-jdoe")["FirstName"], "Jane");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_tokens_of_a_rotation_are_accepted_and_a_wrong_or_missing_one_gets_the_same_401() {
    let s = setup_with(&[], &[TOKEN, NEXT_TOKEN]).await;
    for token in [TOKEN, NEXT_TOKEN] {
        let reply = s
            .send(Request::get("/ServiceProviderConfig").token(Some(token)))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let wrong = s
        .send(Request::get("/Users/u-jdoe").token(Some("scim-current-7d0c4f2e9b1a4c55a1e4")))
        .await;
    let prefix = s
        .send(Request::get("/Users/u-jdoe").token(Some(&TOKEN[..TOKEN.len() - 1])))
        .await;
    let missing = s.send(Request::get("/Users/u-jdoe").token(None)).await;
    for reply in [&wrong, &prefix, &missing] {
        assert_error(reply, 401, None, "bearer token");
        assert_eq!(reply.text, missing.text, "the same body either way");
    }
    // Nothing was read for an unauthenticated request.
    assert!(
        s.stack
            .emulator
            .calls(harness::connect_emulator::Operation::DescribeUser)
            .is_empty()
    );
    // Each refusal's metric line is written before its reply; it may still be in the pipe.
    let logs = s
        .scim
        .function
        .logs_once_holding("\"ScimAuthFailures\":1", 3, Duration::from_secs(5))
        .await;
    assert_free_of(
        &logs,
        &[TOKEN, NEXT_TOKEN, "scim-current-7d0c4f2e9b1a4c55a1e4"],
    );
    let failures = logs
        .lines()
        .filter(|l| l.contains("\"ScimAuthFailures\":1"))
        .count();
    assert_eq!(failures, 3, "{logs}");
    assert!(logs.contains("\"Status\":\"401\""), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_secret_or_a_token_in_it_the_endpoint_does_not_start() {
    let stack = fixtures::stack(BIN, 0).start().await.expect("stack starts");
    let empty = scim::create_token_secret(&stack.moto.endpoint(), "empty", &json!({"tokens": []}))
        .await
        .unwrap();
    let base = scim::config(SCIM_BIN, &stack, &empty);
    for (what, config) in [
        ("unset", base.clone().without("SCIM_TOKEN_SECRET_ARN")),
        ("no token", base.clone()),
        (
            "no such secret",
            base.clone().env(
                "SCIM_TOKEN_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:nothing-AbCdEf",
            ),
        ),
    ] {
        let runtime = RuntimeApi::start().await.unwrap();
        let function = Function::start(
            &config,
            &runtime,
            Some(&stack.emulator.endpoint_url()),
            Some(&stack.moto.endpoint()),
        )
        .unwrap();
        let status = function
            .wait_exit(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("{what}: kept running\n{}", function.logs()));
        assert!(!status.success(), "{what}");
        let init = runtime
            .wait_init_error(Duration::from_secs(1))
            .await
            .unwrap_or_else(|| panic!("{what}: no init error\n{}", function.logs()));
        assert!(
            init.error_message.contains("SCIM_TOKEN_SECRET_ARN"),
            "{what}: {init:?}"
        );
        assert_eq!(runtime.invocations_handed_out(), 0, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_looked_up_by_username_read_by_id_and_the_instance_is_paged() {
    let s = setup().await;
    let found = s.send(Request::lookup("jdoe")).await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert_eq!(found.body["schemas"], json!([LIST_SCHEMA]));
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(found.body["itemsPerPage"], 1);
    let user = &found.body["Resources"][0];
    assert_eq!(
        *user,
        json!({
            "schemas": [USER_SCHEMA],
            "id": "u-jdoe",
            "userName": "jdoe",
            "active": true,
            "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"value": "jane.doe@example.com", "type": "work", "primary": true},
                       {"value": "jd@example.com", "type": "other"}],
            "phoneNumbers": [{"value": "+14155550123", "type": "mobile"}],
            "meta": {"resourceType": "User",
                     "location": format!("https://{}/scim/v2/Users/u-jdoe", scim::HOST)},
        })
    );
    // The username as Connect holds it: another case is another user (none here).
    for absent in ["JDOE", "nobody", "fmeyer"] {
        let none = s.send(Request::lookup(absent)).await;
        assert_eq!(none.status, 200);
        assert_eq!(none.body["totalResults"], 0, "{absent}");
        assert_eq!(none.body["Resources"], json!([]), "{absent}");
    }
    let later_page = s
        .send(
            Request::lookup("jdoe")
                .query("startIndex", "2")
                .query("count", "10"),
        )
        .await;
    assert_eq!(later_page.body["totalResults"], 1);
    assert_eq!(later_page.body["startIndex"], 2);
    assert_eq!(later_page.body["Resources"], json!([]));
    let no_count = s.send(Request::lookup("jdoe").query("count", "0")).await;
    assert_eq!(no_count.body["Resources"], json!([]));
    assert_error(
        &s.send(Request::lookup("jdoe").query("count", "many")).await,
        400,
        Some("invalidValue"),
        "count",
    );

    for filter in [
        "emails[type eq \"work\"].value eq \"jane.doe@example.com\"",
        "userName sw \"jd\"",
        "userName eq \"jdoe\" or userName eq \"asmith\"",
        "displayName eq \"Jane Doe\"",
        "userName eq",
        "externalId eq \"00u1\"",
    ] {
        let refused = s.send(Request::get("/Users").query("filter", filter)).await;
        assert_error(&refused, 400, Some("invalidFilter"), "userName eq");
        assert_free_of(&refused.text, &["jane", "Jane Doe", "00u1", "asmith"]);
    }

    let by_id = s.send(Request::get("/Users/u-asmith")).await;
    assert_eq!(by_id.status, 200);
    assert_eq!(by_id.body["userName"], "asmith");
    assert!(by_id.body["emails"][0]["value"] == "alex.smith@example.com");
    // Another instance's user does not exist for the endpoint; nor does a made-up id.
    for id in ["u-foreign", "u-saml", "no-such-user", "x%2Fy"] {
        assert_error(
            &s.send(Request::get(&format!("/Users/{id}"))).await,
            404,
            None,
            "",
        );
    }

    let first = s
        .send(
            Request::get("/Users")
                .query("startIndex", "1")
                .query("count", "2"),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(
        first.body["totalResults"], 6,
        "the default instance's six users"
    );
    assert_eq!(first.body["itemsPerPage"], 2);
    let mut names = Vec::new();
    let mut start = 1;
    loop {
        let page = s
            .send(
                Request::get("/Users")
                    .query("startIndex", &start.to_string())
                    .query("count", "4"),
            )
            .await;
        let resources = page.body["Resources"].as_array().unwrap().clone();
        if resources.is_empty() {
            break;
        }
        start += resources.len();
        names.extend(
            resources
                .iter()
                .map(|r| r["userName"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(names, ["asmith", "bking", "cwu", "dlee", "jdoe", "padmin"]);
    assert_eq!(s.queue_depth().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_are_answered_at_once_naming_fields_and_rules_and_nothing_is_queued() {
    let s = setup().await;
    let patch = |user: &str, ops: Value| Request::patch(user, &ops);
    let cases: Vec<(&str, Request, u16, Option<&str>, &str)> = vec![
        (
            "invalid mobile",
            patch(
                "u-jdoe",
                json!([{"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "call me maybe 555"}]),
            ),
            400,
            Some("invalidValue"),
            "Mobile",
        ),
        (
            "invalid email",
            patch(
                "u-jdoe",
                json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "jane.doe-at-example"}]),
            ),
            400,
            Some("invalidValue"),
            "Email",
        ),
        (
            "email outside the allowed domains",
            patch(
                "u-jdoe",
                json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "jane.doe@evil.example.net"}]),
            ),
            403,
            None,
            "EMAIL_DOMAIN_ALLOWLIST",
        ),
        (
            "protected agent",
            patch(
                "u-protected",
                json!([{"op": "Replace", "path": "name.familyName", "value": "Natarajan-Rao"}]),
            ),
            403,
            None,
            "protected security profile",
        ),
        (
            "a path of an identity attribute in a form not read",
            patch(
                "u-jdoe",
                json!([{"op": "Replace", "path": "emails[value co \"x\"].value", "value": "jane@example.com"}]),
            ),
            400,
            Some("invalidPath"),
            "emails",
        ),
        (
            "a value of the wrong type",
            patch(
                "u-jdoe",
                json!([{"op": "Replace", "path": "name.givenName", "value": ["Janet"]}]),
            ),
            400,
            Some("invalidValue"),
            "name.givenName",
        ),
        (
            "no Operations",
            Request::new("PATCH", "/Users/u-jdoe")
                .json(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]})),
            400,
            Some("invalidSyntax"),
            "Operations",
        ),
        (
            "not a PatchOp",
            Request::new("PATCH", "/Users/u-jdoe").json(&json!({"Operations": []})),
            400,
            Some("invalidSyntax"),
            "PatchOp",
        ),
        (
            "a body that is not JSON",
            Request::new("PATCH", "/Users/u-jdoe").raw_body("{\"Operations\": [ Jane"),
            400,
            Some("invalidSyntax"),
            "not JSON",
        ),
        (
            "a body over 64 KiB",
            patch(
                "u-jdoe",
                json!([{"op": "Replace", "path": "title", "value": "Jane ".repeat(14_000)}]),
            ),
            400,
            Some("invalidSyntax"),
            "64 KiB",
        ),
        (
            "a PUT that renames the user",
            Request::put(
                "u-jdoe",
                &json!({"schemas": [USER_SCHEMA], "userName": "jane.doe", "name": {"givenName": "Janet"}}),
            ),
            400,
            Some("mutability"),
            "userName",
        ),
        (
            "a PUT whose emails are not an array",
            Request::put(
                "u-jdoe",
                &json!({"schemas": [USER_SCHEMA], "userName": "jdoe", "emails": "jane@example.com"}),
            ),
            400,
            Some("invalidValue"),
            "emails",
        ),
        (
            "a PUT that is not a User",
            Request::put("u-jdoe", &json!({"userName": "jdoe"})),
            400,
            Some("invalidSyntax"),
            "User schema",
        ),
    ];
    for (what, request, status, scim_type, names) in cases {
        let reply = s.send(request).await;
        assert_error(&reply, status, scim_type, names);
        assert_free_of(
            &reply.text,
            &[
                "call me",
                "555",
                "jane.doe",
                "evil",
                "Natarajan",
                "Janet",
                "Jane ",
            ],
        );
        assert_eq!(s.queue_depth().await, 0, "{what}: something was queued");
    }
    // An unknown user: 404, after the body was read and admitted.
    let unknown = s
        .send(patch(
            "u-nobody",
            json!([{"op": "Replace", "path": "name.givenName", "value": "Nobody"}]),
        ))
        .await;
    assert_error(&unknown, 404, None, "no such user");
    // Identity-mode rules of the instance: none here refuses a name, but clearing one does
    // (CONNECT_MANAGED names cannot be empty).
    let cleared = s
        .send(patch(
            "u-jdoe",
            json!([{"op": "Remove", "path": "name.familyName"}]),
        ))
        .await;
    assert_error(&cleared, 400, Some("mutability"), "LastName");
    assert_eq!(s.queue_depth().await, 0);
    assert_eq!(identity(&s.stack, "u-jdoe")["LastName"], "Doe");
    assert!(
        s.stack
            .emulator
            .calls(harness::connect_emulator::Operation::UpdateUserIdentityInfo)
            .is_empty(),
        "the endpoint never writes to Connect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entra_active_only_patch_is_answered_204_and_queues_nothing() {
    let s = setup().await;
    for value in [json!("False"), json!(false), json!("True")] {
        let reply = s
            .send(Request::patch(
                "u-bking",
                &json!([{"op": "Replace", "path": "active", "value": value}]),
            ))
            .await;
        assert_eq!(reply.status, 204, "{}", reply.text);
        assert_eq!(reply.body, Value::Null);
    }
    // Okta's deactivation without a path, and a PUT that changes nothing.
    let okta = s
        .send(Request::patch(
            "u-bking",
            &json!([{"op": "replace", "value": {"active": false}}]),
        ))
        .await;
    assert_eq!(okta.status, 204);
    let same = s
        .send(Request::put(
            "u-bking",
            &json!({"schemas": [USER_SCHEMA], "userName": "bking", "active": false,
                    "name": {"givenName": "Bea", "familyName": "King"}}),
        ))
        .await;
    assert_eq!(same.status, 200, "{}", same.text);
    assert_eq!(same.body["name"]["familyName"], "King");
    assert_eq!(s.queue_depth().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_unreachable_is_503_with_retry_after_and_nothing_accepted() {
    let stack_setup = setup_with(
        // SQS at a port where nothing listens.
        &[("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:9")],
        &[TOKEN],
    )
    .await;
    let reply = stack_setup
        .send(Request::patch(
            "u-cwu",
            &json!([{"op": "Replace", "path": "name.familyName", "value": "Wu-Li"}]),
        ))
        .await;
    assert_error(&reply, 503, None, "not accepted");
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert_eq!(stack_setup.queue_depth().await, 0);
    let logs = stack_setup
        .scim
        .function
        .logs_once_containing("\"Status\":\"503\"", Duration::from_secs(5))
        .await;
    assert!(logs.contains("\"Status\":\"503\""), "{logs}");
    assert_free_of(&logs, &["Wu-Li"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_the_share_cannot_give_in_time_is_429_with_retry_after() {
    // One DescribeUser every 100 s: the first read takes the only token.
    let s = setup_with(&[("CONNECT_RPS_DESCRIBE", "0.01")], &[TOKEN]).await;
    let first = s.send(Request::get("/Users/u-jdoe")).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let second = s.send(Request::get("/Users/u-asmith")).await;
    assert_error(&second, 429, None, "Retry-After");
    assert_eq!(second.header("retry-after"), Some("100"));
    let patch = s
        .send(Request::patch(
            "u-asmith",
            &json!([{"op": "Replace", "path": "name.givenName", "value": "Alexis"}]),
        ))
        .await;
    assert_eq!(patch.status, 429);
    assert_eq!(s.queue_depth().await, 0);
    assert_eq!(
        s.stack
            .emulator
            .calls(harness::connect_emulator::Operation::DescribeUser)
            .len(),
        1
    );
}

/// Microsoft Entra ID's update, as its provisioning service sends it: a look-up by
/// `userName`, then a PATCH with capitalised ops, string booleans and filtered paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_ids_update_sequence_is_queued_applied_by_the_function_and_read_back() {
    let s = setup().await;
    let lookup = s
        .send(Request::lookup("bking").request_id("entra-lookup-1"))
        .await;
    assert_eq!(lookup.body["totalResults"], 1, "{}", lookup.text);
    let id = lookup.body["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(id, "u-bking");
    let patch = s
        .send(
            Request::patch(
                &id,
                &json!([
                    {"op": "Replace", "path": "emails[type eq \"work\"].value",
                     "value": "bea.king-hale@example.com"},
                    {"op": "Replace", "path": "name.familyName", "value": "King-Hale"},
                    {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value",
                     "value": "(415) 555-0199"},
                    {"op": "Replace", "path": "emails[primary eq \"True\"].value",
                     "value": "bea.king-hale@example.com"},
                    {"op": "Replace", "path": "active", "value": "True"},
                    {"op": "Replace", "path": "displayName", "value": "Bea King-Hale"},
                    {"op": "Add",
                     "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                     "value": "Support"}
                ]),
            )
            .request_id("JKJaXmPLvHcESHA="),
        )
        .await;
    assert_eq!(patch.status, 204, "{}", patch.text);
    let queued = s.queued().await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    let doc = &queued[0];
    assert_eq!(doc["UserId"], "u-bking");
    assert_eq!(doc["InstanceId"], INSTANCE);
    assert_eq!(doc["EventId"], "scim-JKJaXmPLvHcESHA=");
    assert_eq!(
        doc["IdentityInfo"],
        json!({"LastName": "King-Hale", "Email": "bea.king-hale@example.com",
               "Mobile": "+14155550199"}),
        "the changed fields only, as the function will read them"
    );
    let occurred = chrono::DateTime::parse_from_rfc3339(doc["OccurredAt"].as_str().unwrap())
        .expect("an RFC 3339 OccurredAt");
    let age = chrono::Utc::now() - occurred.with_timezone(&chrono::Utc);
    assert!(age >= chrono::TimeDelta::zero() && age < chrono::TimeDelta::seconds(60));
    // Nothing reached Connect before the function ran.
    assert_eq!(identity(&s.stack, "u-bking")["LastName"], "King");

    s.apply().await;
    assert_eq!(
        identity(&s.stack, "u-bking"),
        json!({"FirstName": "Bea", "LastName": "King-Hale",
               "Email": "bea.king-hale@example.com", "Mobile": "+14155550199"})
    );
    let after = s.send(Request::lookup("bking")).await;
    let user = &after.body["Resources"][0];
    assert_eq!(user["name"]["familyName"], "King-Hale");
    assert_eq!(user["emails"][0]["value"], "bea.king-hale@example.com");
    assert_eq!(user["phoneNumbers"][0]["value"], "+14155550199");
    // Entra's next sync finds the user in step: the same PATCH queues nothing.
    let again = s
        .send(Request::patch(
            &id,
            &json!([{"op": "Replace", "path": "name.familyName", "value": "King-Hale"}]),
        ))
        .await;
    assert_eq!(again.status, 204);
    assert_eq!(s.queue_depth().await, 0);
}

/// Okta's update: a look-up with `startIndex` and `count`, then a PUT of the whole user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oktas_update_sequence_is_queued_applied_by_the_function_and_read_back() {
    let s = setup().await;
    let lookup = s
        .send(
            Request::lookup("dlee")
                .query("startIndex", "1")
                .query("count", "100")
                .user_agent("Okta SCIM Client 1.0.0"),
        )
        .await;
    assert_eq!(lookup.body["totalResults"], 1, "{}", lookup.text);
    let mut resource = lookup.body["Resources"][0].clone();
    let id = resource["id"].as_str().unwrap().to_owned();
    resource["name"] = json!({"givenName": "Dana", "familyName": "Lee-Park",
                              "formatted": "Dana Lee-Park"});
    resource["emails"] = json!([{"value": "dana.lee@example.com", "type": "work", "primary": true},
                                {"value": "dana@home.example.org", "type": "home"}]);
    resource["phoneNumbers"] = json!([{"value": "415-555-0177", "type": "mobile"}]);
    resource["displayName"] = json!("Dana Lee-Park");
    resource["active"] = json!(true);
    resource["schemas"] = json!([USER_SCHEMA]);
    let put = s
        .send(Request::put(&id, &resource).user_agent("Okta SCIM Client 1.0.0"))
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(
        put.body["name"],
        json!({"givenName": "Dana", "familyName": "Lee-Park"})
    );
    assert_eq!(put.body["phoneNumbers"][0]["value"], "+14155550177");
    assert_eq!(put.body["emails"][1]["value"], "dana@home.example.org");
    let queued = s.queued().await;
    assert_eq!(
        queued[0]["IdentityInfo"],
        json!({"LastName": "Lee-Park", "SecondaryEmail": "dana@home.example.org",
               "Mobile": "+14155550177"})
    );
    s.apply().await;
    assert_eq!(
        identity(&s.stack, "u-dlee"),
        json!({"FirstName": "Dana", "LastName": "Lee-Park", "Email": "dana.lee@example.com",
               "SecondaryEmail": "dana@home.example.org", "Mobile": "+14155550177"})
    );
    let read = s.send(Request::get(&format!("/Users/{id}"))).await;
    assert_eq!(
        read.body, put.body,
        "the resource reads as the PUT said it would"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_no_value_filter_text_or_token_at_any_level() {
    for level in [
        "TRACE",
        "5",
        "trace,lambda_http=trace,aws_smithy_runtime=trace,hyper=trace",
    ] {
        let s = setup_with(
            &[
                ("AWS_LAMBDA_LOG_LEVEL", level),
                ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ],
            &[TOKEN, NEXT_TOKEN],
        )
        .await;
        s.send(Request::lookup("jdoe")).await;
        s.send(Request::lookup("asmith").query("startIndex", "1"))
            .await;
        s.send(Request::get("/Users").query("filter", "emails eq \"alex.smith@example.com\""))
            .await;
        s.send(Request::get("/Users/u-jdoe").token(Some("wrong-token-Zq81")))
            .await;
        let ok = s
            .send(Request::patch(
                "u-jdoe",
                &json!([{"op": "Replace", "path": "name.givenName", "value": "Janine"},
                        {"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value",
                         "value": "+1 (415) 555-0142"}]),
            ))
            .await;
        assert_eq!(ok.status, 204, "{}", ok.text);
        s.send(Request::patch(
            "u-jdoe",
            &json!([{"op": "Replace", "path": "emails[type eq \"work\"].value",
                     "value": "janine@evil.example.net"}]),
        ))
        .await;
        s.send(Request::put(
            "u-asmith",
            &json!({"schemas": [USER_SCHEMA], "userName": "asmith",
                    "name": {"givenName": "Alexandra"}}),
        ))
        .await;
        let logs = s.scim.function.logs();
        assert!(logs.contains("SCIM request answered"), "{level}: {logs}");
        assert!(logs.contains("u-jdoe"), "{level}: ids are logged");
        assert_free_of(
            &logs,
            &[
                TOKEN,
                NEXT_TOKEN,
                "wrong-token-Zq81",
                "\"jdoe",
                "\"asmith",
                "Jane",
                "Janine",
                "Alexandra",
                "alex.smith",
                "jane.doe",
                "evil",
                "555-0142",
                "14155550142",
                "14155550123",
            ],
        );
    }
}
