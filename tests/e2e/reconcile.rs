//! End to end over the built `connect-identity-sync-reconcile` against the Connect
//! emulator and moto: an export whose users mostly agree only once normalised, the
//! few that differ reported exactly, their corrections queued and applied by the built
//! function (or refused by it), a second run in step; JSON Lines and SCIM inputs; no
//! personal value in the output or the report. Every option and variable that
//! docs/reconcile.md and the README name has a run here that fails if it broke; a row
//! naming two agents is never compared nor queued.

use std::path::PathBuf;
use std::time::Duration;

use harness::Stack;
use harness::connect_emulator::{Fault, Operation};
use harness::fixtures::{self, INSTANCE, assert_no_dead_letters, identity};
use serde_json::{Value, json};

const RECONCILE: &str = env!("CARGO_BIN_EXE_connect-identity-sync-reconcile");
const FUNCTION: &str = env!("CARGO_BIN_EXE_connect-identity-sync");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    report: Value,
}

impl Run {
    /// A row of the table: its label and count.
    fn count(&self, label: &str) -> u64 {
        self.stdout
            .lines()
            .find_map(|l| {
                let (name, n) = l.trim_end().rsplit_once(' ')?;
                (name.trim() == label).then(|| n.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no row {label} in\n{}", self.stdout))
    }

    /// The report's users with this result: (line, user id, fields).
    fn users(&self, result: &str) -> Vec<(Option<u64>, Option<String>, Vec<String>)> {
        self.report["users"]
            .as_array()
            .expect("users")
            .iter()
            .filter(|u| u["result"] == result)
            .map(|u| {
                (
                    u["line"].as_u64().or_else(|| u["resource"].as_u64()),
                    u["userId"].as_str().map(str::to_owned),
                    u["fields"]
                        .as_array()
                        .map(|f| {
                            f.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Asserts that none of `values` appears in stdout, stderr or the report.
    fn assert_no_value_of(&self, values: &[&str]) {
        let report = self.report.to_string();
        for v in values {
            for (name, text) in [
                ("stdout", &self.stdout),
                ("stderr", &self.stderr),
                ("report", &report),
            ] {
                assert!(!text.contains(v), "{name} holds the value {v:?}:\n{text}");
            }
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reconcile-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

async fn reconcile(stack: &Stack, connect: &str, dir: &std::path::Path, args: &[&str]) -> Run {
    reconcile_with(connect, &stack.moto.endpoint(), dir, args, &[]).await
}

/// The command with the test's environment, `env` added over it (`None` removes a
/// variable).
async fn reconcile_with(
    connect: &str,
    sqs: &str,
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, Option<&str>)],
) -> Run {
    let report = dir.join("report.json");
    let _ = std::fs::remove_file(&report);
    let mut command = tokio::process::Command::new(RECONCILE);
    if !args.contains(&"--instance") {
        command.args(["--instance", INSTANCE]);
    }
    command
        .args(args)
        .arg("--report")
        .arg(&report)
        .env_clear()
        .env("AWS_ENDPOINT_URL_CONNECT", connect)
        .env("AWS_ENDPOINT_URL_SQS", sqs)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("DEFAULT_PHONE_REGION", "US");
    for (name, value) in env {
        match value {
            Some(v) => command.env(name, v),
            None => command.env_remove(name),
        };
    }
    let out = command.output().await.expect("the reconcile binary runs");
    let report = std::fs::read_to_string(&report)
        .ok()
        .map_or(Value::Null, |t| {
            serde_json::from_str(&t).expect("the report is JSON")
        });
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    }
}

/// The fixtures' contact centre plus agents whose names carry accents, one with a
/// London mobile and one with a SecondaryEmail; the function with the staleness guard.
async fn stack() -> Stack {
    let stack = fixtures::stack(FUNCTION, 0)
        .watermarks()
        .start()
        .await
        .expect("stack starts");
    stack
        .emulator
        .seed_json(json!({"users": [
            {"instanceId": INSTANCE, "id": "u-jgarcia", "username": "jgarcia",
             "identityInfo": {"FirstName": "José", "LastName": "García",
                              "Email": "jose.garcia@example.com", "Mobile": "+442079460958"},
             "securityProfileIds": ["sp-agent"]},
            {"instanceId": INSTANCE, "id": "u-zmuller", "username": "zmuller",
             "identityInfo": {"FirstName": "Zoë", "LastName": "Müller",
                              "Email": "zoe.muller@example.com", "Mobile": "+14155550126"},
             "securityProfileIds": ["sp-agent"]},
            {"instanceId": INSTANCE, "id": "u-hkim", "username": "hkim",
             "identityInfo": {"FirstName": "Hana", "LastName": "Kim",
                              "Email": "hana.kim@example.com", "SecondaryEmail": "hk@example.com",
                              "Mobile": "+14155550127"},
             "securityProfileIds": ["sp-agent"]},
        ]}))
        .expect("seeded");
    stack
}

/// An Okta export: most rows agree only once normalised (padded and decomposed names,
/// national and spaced mobiles), two differ, one is a user Connect does not have.
const OKTA_EXPORT: &str = "\
login,firstName,lastName,email,secondEmail,mobilePhone,title,status
jdoe,\"  Jane \",Doe,jane.doe@example.com,jd@example.com,(415) 555-0123,Agent,ACTIVE
asmith,Alex,Smith ,alex.smith@example.com,,415.555.0124,Agent,ACTIVE
bking,Bea,King,bea.king@example.com,,+1 415 555 0125,Agent,ACTIVE
cwu,Chen,Wu,chen.wu@example.com,,,Agent,ACTIVE
jgarcia,Jose\u{301},Garci\u{301}a,jose.garcia@example.com,,+44 20 7946 0958,Agent,ACTIVE
zmuller,Zoe\u{308},Mu\u{308}ller, zoe.muller@example.com ,,(415) 555 0126,Agent,ACTIVE
dlee,Dana,Lee-Park,dana.lee@example.com,,(415) 555-0142,Agent,ACTIVE
hkim,Hanna,Kim,hana.kim@example.com,,(415) 555-0127,Agent,ACTIVE
nhire,Noor,Hire,noor.hire@example.com,,,Agent,STAGED
";

/// Every value of the export and of Connect's users that a line could leak.
const VALUES: [&str; 30] = [
    "Jane",
    "Doe",
    "jane.doe@example.com",
    "jd@example.com",
    "(415) 555-0123",
    "+14155550123",
    "Smith",
    "alex.smith",
    "415.555.0124",
    "bea.king",
    "chen.wu",
    "José",
    "Jose\u{301}",
    "García",
    "jose.garcia",
    "+44 20 7946 0958",
    "+442079460958",
    "Müller",
    "zoe.muller",
    "Lee-Park",
    "dana.lee",
    "(415) 555-0142",
    "+14155550142",
    "Hanna",
    "hana.kim",
    "hk@example.com",
    "Noor",
    "noor.hire",
    "Natarajan",
    "priya",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_that_agrees_once_normalised_reports_exactly_the_users_that_differ_and_their_corrections_are_applied()
 {
    let stack = stack().await;
    let dir = scratch("okta");
    let file = dir.join("okta.csv");
    std::fs::write(&file, OKTA_EXPORT).unwrap();
    let file = file.to_str().unwrap();
    let connect = stack.emulator.endpoint_url();

    let run = reconcile(
        &stack,
        &connect,
        &dir,
        &[
            "--users",
            file,
            "--preset",
            "okta",
            "--enqueue",
            &stack.source.url,
            "--as-of",
            "2026-12-01T08:00:00Z",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.count("in both"), 8, "{}", run.stdout);
    assert_eq!(run.count("agree"), 6);
    assert_eq!(run.count("differ"), 2);
    assert_eq!(run.count("only in the file"), 1);
    // padmin, not in the export.
    assert_eq!(run.count("only in Connect"), 1);
    for (field, n) in [
        ("FirstName", 1),
        ("LastName", 1),
        ("Email", 0),
        ("SecondaryEmail", 1),
        ("Mobile", 1),
    ] {
        assert_eq!(run.count(field), n, "{field}\n{}", run.stdout);
    }
    assert_eq!(
        run.users("differs"),
        vec![
            (
                Some(8),
                Some("u-dlee".to_owned()),
                vec!["LastName".to_owned(), "Mobile".to_owned()]
            ),
            (
                Some(9),
                Some("u-hkim".to_owned()),
                vec!["FirstName".to_owned(), "SecondaryEmail".to_owned()]
            ),
        ]
    );
    let agree: Vec<_> = run
        .users("agrees")
        .into_iter()
        .filter_map(|(_, id, _)| id)
        .collect();
    assert_eq!(
        agree,
        [
            "u-jdoe",
            "u-asmith",
            "u-bking",
            "u-cwu",
            "u-jgarcia",
            "u-zmuller"
        ]
    );
    assert_eq!(run.users("onlyInFile"), vec![(Some(10), None, vec![])]);
    assert_eq!(
        run.users("onlyInConnect"),
        vec![(None, Some("u-protected".to_owned()), vec![])]
    );
    assert_eq!(
        run.report["enqueued"]["sent"],
        json!(["u-dlee", "u-hkim"]),
        "{}",
        run.report
    );
    run.assert_no_value_of(&VALUES);
    // One listing, one DescribeUser per user found on both sides.
    assert_eq!(stack.emulator.calls(Operation::ListUsers).len(), 1);
    assert_eq!(stack.emulator.calls(Operation::DescribeUser).len(), 8);
    assert_eq!(run.report["connectCalls"]["DescribeUser"], 8);
    // Within the default rate (10/s for both operations together): nine calls span at
    // least eight periods of 100 ms, less a period for the jitter of their arrival.
    let mut arrivals: Vec<u64> = stack
        .emulator
        .journal()
        .iter()
        .filter(|e| e.operation == "ListUsers" || e.operation == "DescribeUser")
        .map(|e| e.at)
        .collect();
    assert_eq!(arrivals.len(), 9);
    arrivals.sort_unstable();
    let span = arrivals.last().unwrap() - arrivals.first().unwrap();
    assert!(span >= 700, "9 calls within {span} ms");

    // The function applies the two corrections, and nothing else.
    let report = stack
        .mapping()
        .run(Duration::from_secs(30))
        .await
        .expect("the queue drains");
    assert_eq!(report.deleted().len(), 2);
    assert_no_dead_letters(&stack).await;
    let dlee = identity(&stack, "u-dlee");
    assert_eq!(dlee["LastName"], "Lee-Park");
    assert_eq!(dlee["Mobile"], "+14155550142");
    assert_eq!(
        dlee["FirstName"], "Dana",
        "a field not in the correction stays"
    );
    let hkim = identity(&stack, "u-hkim");
    assert_eq!(hkim["FirstName"], "Hanna");
    assert_eq!(hkim.get("SecondaryEmail"), None, "cleared");
    // Two users' corrections are applied side by side, in either order.
    let mut updated: Vec<String> = stack
        .emulator
        .calls(Operation::UpdateUserIdentityInfo)
        .into_iter()
        .filter_map(|c| c.user_id)
        .collect();
    updated.sort_unstable();
    assert_eq!(updated, ["u-dlee", "u-hkim"]);

    // In step.
    let again = reconcile(
        &stack,
        &connect,
        &dir,
        &["--users", file, "--preset", "okta"],
    )
    .await;
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(again.count("agree"), 8);
    assert_eq!(again.count("differ"), 0);
    again.assert_no_value_of(&VALUES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_is_judged_by_the_function_a_newer_change_stays_and_a_foreign_email_is_refused()
 {
    let stack = stack().await;
    // A rename that reached Connect after the export was taken.
    let newer = json!({"InstanceId": INSTANCE, "UserId": "u-dlee", "EventId": "idp-77",
                       "OccurredAt": "2026-12-01T09:00:00Z", "IdentityInfo": {"LastName": "Lee-Newer"}});
    stack
        .sqs
        .send_body(&stack.source.url, &newer.to_string())
        .await
        .unwrap();
    stack.mapping().run(Duration::from_secs(30)).await.unwrap();
    assert_eq!(identity(&stack, "u-dlee")["LastName"], "Lee-Newer");

    let dir = scratch("judged");
    let file = dir.join("users.csv");
    std::fs::write(
        &file,
        "Username,LastName,Email\ndlee,Lee-Park,dana.lee@example.com\nbking,King,bea@elsewhere.test\n",
    )
    .unwrap();
    let run = reconcile(
        &stack,
        &stack.emulator.endpoint_url(),
        &dir,
        &[
            "--users",
            file.to_str().unwrap(),
            "--enqueue",
            &stack.source.url,
            "--as-of",
            "2026-12-01T08:00:00Z",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.count("LastName"), 1);
    assert_eq!(run.count("Email"), 1);
    assert_eq!(run.report["enqueued"]["sent"], json!(["u-dlee", "u-bking"]));

    let before = stack
        .emulator
        .calls(Operation::UpdateUserIdentityInfo)
        .len();
    stack.mapping().run(Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        identity(&stack, "u-dlee")["LastName"],
        "Lee-Newer",
        "the older export does not overwrite a newer change"
    );
    assert_eq!(identity(&stack, "u-bking")["Email"], "bea.king@example.com");
    assert_eq!(
        stack
            .emulator
            .calls(Operation::UpdateUserIdentityInfo)
            .len(),
        before,
        "neither correction was applied"
    );
    let letters = stack.dead_letters().await.unwrap();
    let refused = &letters["PolicyViolation"];
    assert_eq!(refused.len(), 1, "{letters:#?}");
    assert_eq!(refused[0].attr("UserId"), Some("u-bking"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_of_canonical_documents_are_compared_and_a_refused_value_is_not_compared() {
    let stack = stack().await;
    let dir = scratch("jsonl");
    let file = dir.join("users.jsonl");
    let lines = [
        json!({"Username": "jdoe", "IdentityInfo": {"FirstName": " Jane", "Mobile": "415-555-0123"}}),
        json!({"UserId": "u-asmith", "IdentityInfo": {"LastName": "Smythe"}}),
        json!({"Username": "bking", "IdentityInfo": {"SecondaryEmail": null}}),
        json!({"Username": "cwu", "IdentityInfo": {"Mobile": "12"}}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let run = reconcile(
        &stack,
        &stack.emulator.endpoint_url(),
        &dir,
        &[
            "--users",
            file.to_str().unwrap(),
            "--enqueue",
            &stack.source.url,
            "--as-of",
            "2026-12-01T08:00:00.5+01:00",
        ],
    )
    .await;
    assert_eq!(
        run.code, 2,
        "a refused value: {}\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(run.count("agree"), 2);
    assert_eq!(run.count("could not compare"), 1);
    assert_eq!(
        run.users("differs"),
        vec![(
            Some(2),
            Some("u-asmith".to_owned()),
            vec!["LastName".to_owned()]
        )]
    );
    let broken = run.users("couldNotCompare");
    assert_eq!(broken.len(), 1);
    assert_eq!(broken[0].1.as_deref(), Some("u-cwu"));
    assert!(run.stderr.contains("line 4: u-cwu: "), "{}", run.stderr);
    run.assert_no_value_of(&["Smythe", "jane.doe", "415-555-0123", "bea.king"]);

    let queued = stack.sqs.receive_all(&stack.source.url).await.unwrap();
    let bodies: Vec<Value> = queued
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect();
    assert_eq!(
        bodies,
        vec![json!({
            "InstanceId": INSTANCE, "UserId": "u-asmith",
            "IdentityInfo": {"LastName": "Smythe"},
            "EventId": "reconcile:1796108400500:u-asmith",
            "OccurredAt": "2026-12-01T07:00:00.500Z",
        })]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scim_list_response_is_compared_resource_by_resource() {
    let stack = stack().await;
    let dir = scratch("scim");
    let file = dir.join("users.json");
    let list = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 3, "itemsPerPage": 3, "startIndex": 1,
        "Resources": [
            {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "okta-1", "userName": "jdoe",
             "name": {"givenName": "Jane", "familyName": "Doe"},
             "emails": [{"value": "jane.doe@example.com", "primary": true, "type": "work"}],
             "phoneNumbers": [{"value": "(415) 555-0123", "type": "mobile"}], "active": true},
            {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "okta-2", "userName": "asmith",
             "phoneNumbers": [{"value": "tel:+1-415-555-0199", "type": "mobile"}]},
            {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "okta-3", "userName": "gone"},
        ]
    });
    std::fs::write(&file, list.to_string()).unwrap();
    let run = reconcile(
        &stack,
        &stack.emulator.endpoint_url(),
        &dir,
        &["--users", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.count("agree"), 1);
    assert_eq!(
        run.users("differs"),
        vec![(
            Some(2),
            Some("u-asmith".to_owned()),
            vec!["Mobile".to_owned()]
        )]
    );
    assert_eq!(run.users("onlyInFile"), vec![(Some(3), None, vec![])]);
    run.assert_no_value_of(&["jane.doe", "415-555-0199", "+14155550199"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_read_is_tried_again_and_an_unreachable_connect_is_no_comparison() {
    let stack = stack().await;
    let dir = scratch("throttled");
    let file = dir.join("users.csv");
    std::fs::write(&file, "Username,FirstName\njdoe,Jane\nasmith,Alex\n").unwrap();
    stack.emulator.inject_fault(Fault::new(
        Operation::DescribeUser,
        "ThrottlingException",
        2,
    ));
    let run = reconcile(
        &stack,
        &stack.emulator.endpoint_url(),
        &dir,
        &["--users", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.report["connectCalls"]["throttled"], 2);
    assert_eq!(run.report["connectCalls"]["DescribeUser"], 4);
    assert_eq!(stack.emulator.calls(Operation::DescribeUser).len(), 4);

    let run = reconcile(
        &stack,
        "http://127.0.0.1:9",
        &dir,
        &["--users", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("could not compare: Connect's users could not be listed"),
        "{}",
        run.stderr
    );
}

/// The queued corrections not seen before: (UserId, body).
async fn queued(stack: &Stack) -> Vec<Value> {
    stack
        .sqs
        .receive_all(&stack.source.url)
        .await
        .unwrap()
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect()
}

fn queued_users(bodies: &[Value]) -> Vec<&str> {
    let mut users: Vec<&str> = bodies.iter().filter_map(|b| b["UserId"].as_str()).collect();
    users.sort_unstable();
    users
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_user_id_and_username_name_two_agents_and_a_user_named_twice_are_not_compared_nor_queued()
 {
    let stack = stack().await;
    let dir = scratch("conflict");
    let connect = stack.emulator.endpoint_url();
    let file = dir.join("users.csv");
    // Line 2: asmith's id beside bking's username, with bking's values (a takeover of
    // asmith's account if compared with asmith). Line 3 names bking again. Line 4 names
    // jdoe both ways and differs. Lines 5 and 7 name cwu twice, by id and by username.
    std::fs::write(
        &file,
        "UserId,Username,FirstName,LastName,Email\n\
         u-asmith,bking,Bea,King,bea.king@example.com\n\
         u-bking,bking,Bea,King,bea.king@example.com\n\
         u-jdoe,jdoe,Janet,Doe,jane.doe@example.com\n\
         u-cwu,,Chen,Wu,chen.wu@example.com\n\
         ,dlee,Dana,Lee,dana.lee@example.com\n\
         ,cwu,Chen,Woo,chen.wu@example.com\n\
         u-hkim,nobody-has-this,Hana,Kim,hana.kim@example.com\n",
    )
    .unwrap();
    let run = reconcile(
        &stack,
        &connect,
        &dir,
        &[
            "--users",
            file.to_str().unwrap(),
            "--enqueue",
            &stack.source.url,
            "--as-of",
            "2026-12-01T08:00:00Z",
        ],
    )
    .await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.users("unreadable"),
        vec![
            (Some(2), Some("u-asmith".to_owned()), vec![]),
            (Some(3), Some("u-bking".to_owned()), vec![]),
            (Some(5), Some("u-cwu".to_owned()), vec![]),
            (Some(7), Some("u-cwu".to_owned()), vec![]),
            (Some(8), Some("u-hkim".to_owned()), vec![]),
        ],
        "{}",
        run.report
    );
    assert_eq!(
        run.users("differs"),
        vec![(
            Some(4),
            Some("u-jdoe".to_owned()),
            vec!["FirstName".to_owned()]
        )]
    );
    assert_eq!(run.users("agrees").len(), 1, "dlee");
    assert!(
        run.stderr.contains(
            "line 2: u-asmith: its UserId and Username name two different Connect users (u-asmith, u-bking)"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("line 8: u-hkim: its Username is not the Connect username of its UserId"),
        "{}",
        run.stderr
    );
    run.assert_no_value_of(&["Bea", "bea.king", "Janet", "Woo", "nobody-has-this"]);
    // Only the row that names one agent both ways, once, is queued.
    let bodies = queued(&stack).await;
    assert_eq!(queued_users(&bodies), ["u-jdoe"], "{bodies:?}");
    assert_eq!(run.report["enqueued"]["sent"], json!(["u-jdoe"]));

    // A JSON Lines document that names both, two users.
    let file = dir.join("users.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n",
            json!({"UserId": "u-asmith", "Username": "bking", "IdentityInfo": {"Email": "bea.king@example.com"}}),
            json!({"UserId": "u-dlee", "Username": "dlee", "IdentityInfo": {"LastName": "Lee-Park"}}),
        ),
    )
    .unwrap();
    let run = reconcile(
        &stack,
        &connect,
        &dir,
        &[
            "--users",
            file.to_str().unwrap(),
            "--enqueue",
            &stack.source.url,
            "--as-of",
            "2026-12-01T08:00:00Z",
        ],
    )
    .await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.users("unreadable"),
        vec![(Some(1), Some("u-asmith".to_owned()), vec![])]
    );
    assert_eq!(queued_users(&queued(&stack).await), ["u-dlee"]);
    assert_eq!(
        identity(&stack, "u-asmith")["Email"],
        "alex.smith@example.com"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_presets_and_formats_say_how_the_file_is_read() {
    let stack = stack().await;
    let dir = scratch("columns");
    let connect = stack.emulator.endpoint_url();
    let users = |name: &str, text: &str| {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        file.to_str().unwrap().to_owned()
    };

    // An export with headers of its own: --columns maps them; given twice, both count.
    let own = users(
        "own.csv",
        "Login,Given,Family,Work mail,Cell,Personal\n\
         jdoe,Jane,Doe,jane.doe@example.com,(415) 555-0123,jd@example.com\n\
         asmith,Alex,Smythe,alex.smith@example.com,(415) 555-0124,\n\
         bking,Bea,King,bea.king@example.com,+1 415 555 0199,\n",
    );
    let run = reconcile(
        &stack,
        &connect,
        &dir,
        &[
            "--users",
            &own,
            "--columns",
            "Username=Login,FirstName=Given,LastName=Family,Email=Work mail,Mobile=Cell",
            "--columns",
            "SecondaryEmail=Personal",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.count("agree"), 1);
    assert_eq!(
        run.users("differs"),
        vec![
            (
                Some(3),
                Some("u-asmith".to_owned()),
                vec!["LastName".to_owned()]
            ),
            (
                Some(4),
                Some("u-bking".to_owned()),
                vec!["Mobile".to_owned()]
            ),
        ]
    );
    assert!(!run.stderr.contains("not compared"), "{}", run.stderr);
    run.assert_no_value_of(&["Smythe", "555 0199", "+14155550199"]);

    // FIELD= leaves a field out: bking's mobile is no longer compared.
    let run = reconcile(
        &stack,
        &connect,
        &dir,
        &[
            "--users",
            &own,
            "--columns",
            "Username=Login,FirstName=Given,LastName=Family,Email=Work mail,Mobile=",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.users("differs"),
        vec![(
            Some(3),
            Some("u-asmith".to_owned()),
            vec!["LastName".to_owned()]
        )]
    );
    assert!(
        run.stderr
            .contains("not compared (no column in the file): SecondaryEmail, Mobile"),
        "{}",
        run.stderr
    );

    // Refused before anything is read: an unknown field, a column the header lacks,
    // --columns on a file that is not CSV.
    for (args, says) in [
        (vec!["--columns", "Phone=Cell"], "'Phone' is not one of"),
        (
            vec!["--columns", "Username=Handle"],
            "--columns maps Username to a column the header row does not have",
        ),
        (
            vec!["--format", "jsonl", "--columns", "Username=Login"],
            "--preset and --columns apply to a CSV file",
        ),
    ] {
        let mut all = vec!["--users", own.as_str()];
        all.extend(args);
        let run = reconcile(&stack, &connect, &dir, &all).await;
        assert_eq!(run.code, 2, "{all:?}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(says), "{all:?}: {}", run.stderr);
    }

    // --preset entra: Microsoft Entra ID's download, version line and all.
    let entra = users(
        "entra.csv",
        "version:v1.0\n\
         userPrincipalName,displayName,givenName,surname,mail,mobilePhone,alternateEmailAddress\n\
         jdoe,Jane Doe,Jane,Doe,jane.doe@example.com,+1 (415) 555-0123,jane@home.example\n\
         cwu,Chen Wu,Chen,Wu,chen.wu@example.com,(415) 555-0177,\n",
    );
    let run = reconcile(
        &stack,
        &connect,
        &dir,
        &["--users", &entra, "--preset", "entra"],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.count("agree"), 1);
    assert_eq!(
        run.users("differs"),
        vec![(Some(4), Some("u-cwu".to_owned()), vec!["Mobile".to_owned()])]
    );
    assert!(
        run.stderr
            .contains("not compared (no column in the file): SecondaryEmail"),
        "{}",
        run.stderr
    );
    run.assert_no_value_of(&["jane@home.example", "555-0177", "+14155550177"]);

    // --format: JSON Lines and a SCIM ListResponse under names that do not say so.
    let jsonl = users(
        "export.txt",
        &format!(
            "{}\n",
            json!({"Username": "asmith", "IdentityInfo": {"LastName": "Smythe"}})
        ),
    );
    let run = reconcile(&stack, &connect, &dir, &["--users", &jsonl]).await;
    assert_eq!(run.code, 2, "read as CSV by its name: {}", run.stderr);
    let run = reconcile(
        &stack,
        &connect,
        &dir,
        &["--users", &jsonl, "--format", "jsonl"],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.users("differs"),
        vec![(
            Some(1),
            Some("u-asmith".to_owned()),
            vec!["LastName".to_owned()]
        )]
    );
    let scim = users(
        "export.scim",
        &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "Resources": [{"userName": "bking", "name": {"givenName": "Beatrice"}}]})
        .to_string(),
    );
    let run = reconcile(
        &stack,
        &connect,
        &dir,
        &["--users", &scim, "--format", "scim"],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.users("differs"),
        vec![(
            Some(1),
            Some("u-bking".to_owned()),
            vec!["FirstName".to_owned()]
        )]
    );
    // --preset and --columns read a file as CSV whatever its name.
    let named_json = users("okta.json", "login,firstName\njdoe,Jane\n");
    for how in [["--preset", "okta"], ["--columns", "Username=login"]] {
        let mut args = vec!["--users", named_json.as_str()];
        args.extend(how);
        let run = reconcile(&stack, &connect, &dir, &args).await;
        assert_eq!(run.code, 0, "{how:?}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(run.count("agree"), 1, "{how:?}");
    }
    // --format csv over a name that says JSON; .ndjson read as JSON Lines by its name.
    let csv = users("export.json", "Username,FirstName\njdoe,Jane\n");
    let run = reconcile(
        &stack,
        &connect,
        &dir,
        &["--users", &csv, "--format", "csv"],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.count("agree"), 1);
    let ndjson = users(
        "export.ndjson",
        &format!(
            "{}\n",
            json!({"Username": "jdoe", "IdentityInfo": {"FirstName": "Jane"}})
        ),
    );
    let run = reconcile(&stack, &connect, &dir, &["--users", &ndjson]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.count("agree"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_bounds_the_connect_requests_a_second() {
    let stack = stack().await;
    let dir = scratch("rate");
    let file = dir.join("users.csv");
    std::fs::write(
        &file,
        "Username,FirstName\njdoe,Jane\nasmith,Alex\nbking,Bea\n",
    )
    .unwrap();
    let run = reconcile(
        &stack,
        &stack.emulator.endpoint_url(),
        &dir,
        &["--users", file.to_str().unwrap(), "--rate", "2"],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("at most 2/s"), "{}", run.stdout);
    let mut arrivals: Vec<u64> = stack
        .emulator
        .journal()
        .iter()
        .filter(|e| e.operation == "ListUsers" || e.operation == "DescribeUser")
        .map(|e| e.at)
        .collect();
    assert_eq!(arrivals.len(), 4, "1 ListUsers, 3 DescribeUser");
    arrivals.sort_unstable();
    // Four calls at 2/s span three periods of 500 ms; allow one period for the jitter of
    // their arrival (at the default 10/s they would span about 300 ms).
    let span = arrivals.last().unwrap() - arrivals.first().unwrap();
    assert!(span >= 1000, "4 calls within {span} ms at --rate 2");

    for rate in ["0", "fast", "1001"] {
        let run = reconcile(
            &stack,
            &stack.emulator.endpoint_url(),
            &dir,
            &["--users", file.to_str().unwrap(), "--rate", rate],
        )
        .await;
        assert_eq!(run.code, 2, "--rate {rate}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("a number of requests per second from 0.01 to 1000"),
            "{}",
            run.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_defaults_to_the_files_time_and_may_be_ahead_by_max_clock_skew_seconds_as_the_function_allows()
 {
    let stack = stack().await;
    let dir = scratch("as-of");
    let connect = stack.emulator.endpoint_url();
    let sqs = stack.moto.endpoint();
    let file = dir.join("users.csv");
    std::fs::write(&file, "Username,LastName\nasmith,Smythe\n").unwrap();
    let users = file.to_str().unwrap();
    let enqueue = |as_of: Option<String>| {
        let mut args = vec![
            "--users".to_owned(),
            users.to_owned(),
            "--enqueue".to_owned(),
            stack.source.url.clone(),
        ];
        if let Some(t) = as_of {
            args.extend(["--as-of".to_owned(), t]);
        }
        args
    };
    let run_with = |args: Vec<String>, env: Vec<(&'static str, Option<&'static str>)>| {
        let dir = dir.clone();
        let connect = connect.clone();
        let sqs = sqs.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            reconcile_with(&connect, &sqs, &dir, &args, &env).await
        }
    };

    // Without --as-of: the file's modification time, the time the export was taken.
    let taken = std::time::UNIX_EPOCH + Duration::from_secs(1_796_032_800); // 2026-11-30T10:00:00Z
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(taken)
        .unwrap();
    let run = run_with(enqueue(None), vec![]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.report["asOf"], "2026-11-30T10:00:00.000Z");
    let bodies = queued(&stack).await;
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["OccurredAt"], "2026-11-30T10:00:00.000Z");
    assert_eq!(bodies[0]["EventId"], "reconcile:1796032800000:u-asmith");

    let ahead = |minutes: i64| {
        (chrono::Utc::now() + chrono::Duration::minutes(minutes))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    // Half an hour ahead: within MAX_CLOCK_SKEW_SECONDS=3600, so queued.
    let run = run_with(
        enqueue(Some(ahead(30))),
        vec![("MAX_CLOCK_SKEW_SECONDS", Some("3600"))],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(queued_users(&queued(&stack).await), ["u-asmith"]);
    // Refused, nothing queued: two hours ahead of 3600 s; ten minutes ahead of the
    // default 300 s; a variable the function would not start with.
    for (as_of, skew, says) in [
        (
            ahead(120),
            Some("3600"),
            "--as-of is more than MAX_CLOCK_SKEW_SECONDS (3600 s) ahead",
        ),
        (
            ahead(10),
            None,
            "--as-of is more than MAX_CLOCK_SKEW_SECONDS (300 s) ahead",
        ),
        (
            ahead(0),
            Some("soon"),
            "MAX_CLOCK_SKEW_SECONDS: 'soon' is not a whole number of seconds from 1 to 86400",
        ),
        (
            ahead(0),
            Some("0"),
            "MAX_CLOCK_SKEW_SECONDS: '0' is not a whole number",
        ),
    ] {
        let run = run_with(
            enqueue(Some(as_of.clone())),
            vec![("MAX_CLOCK_SKEW_SECONDS", skew)],
        )
        .await;
        assert_eq!(
            run.code, 2,
            "{as_of} {skew:?}: {}\n{}",
            run.stdout, run.stderr
        );
        assert!(run.stderr.contains(says), "{skew:?}: {}", run.stderr);
    }
    assert!(queued(&stack).await.is_empty(), "nothing queued");

    // DEFAULT_PHONE_REGION, as the function reads it: unset, a national mobile cannot be
    // compared; a region without a numbering plan stops the command, naming it.
    std::fs::write(&file, "Username,Mobile\nasmith,(415) 555-0124\n").unwrap();
    let plain = vec!["--users".to_owned(), users.to_owned()];
    let run = run_with(plain.clone(), vec![]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let run = run_with(plain.clone(), vec![("DEFAULT_PHONE_REGION", None)]).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("DEFAULT_PHONE_REGION is not set"),
        "{}",
        run.stderr
    );
    assert_eq!(run.users("couldNotCompare").len(), 1);
    let run = run_with(plain, vec![("DEFAULT_PHONE_REGION", Some("UK"))]).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("DEFAULT_PHONE_REGION: 'UK'"),
        "{}",
        run.stderr
    );

    // A FIFO queue: the user id as message group, the event id as deduplication id.
    std::fs::write(&file, "Username,LastName\nasmith,Smythe\n").unwrap();
    let fifo = stack
        .sqs
        .create_queue(&harness::sqs::QueueSpec::new("corrections.fifo"))
        .await
        .unwrap();
    let run = run_with(
        vec![
            "--users".to_owned(),
            users.to_owned(),
            "--enqueue".to_owned(),
            fifo.url.clone(),
            "--as-of".to_owned(),
            "2026-12-01T08:00:00Z".to_owned(),
        ],
        vec![],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let sent = stack.sqs.receive_all(&fifo.url).await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].attributes.get("MessageGroupId").map(String::as_str),
        Some("u-asmith")
    );
    assert_eq!(
        sent[0]
            .attributes
            .get("MessageDeduplicationId")
            .map(String::as_str),
        Some("reconcile:1796112000000:u-asmith")
    );

    // --instance that is not an instance.
    let run = reconcile_with(
        &connect,
        &sqs,
        &dir,
        &[
            "--instance",
            "arn:aws:sqs:us-east-1:123456789012:identity-changes",
            "--users",
            users,
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("--instance is not a Connect instance id or ARN"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_cert_file_decides_which_ca_may_vouch_for_connect() {
    let stack = stack().await;
    let dir = scratch("tls");
    let front = harness::TlsFront::start(&stack.emulator.endpoint_url()).expect("TLS front");
    let file = dir.join("users.csv");
    std::fs::write(&file, "Username,FirstName\njdoe,Jane\n").unwrap();
    let args = ["--users", file.to_str().unwrap()];
    let sqs = stack.moto.endpoint();
    let run = reconcile_with(&front.endpoint, &sqs, &dir, &args, &[]).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("Connect's users could not be listed"),
        "{}",
        run.stderr
    );
    assert!(stack.emulator.journal().is_empty());
    let bundle = front.bundle.to_string_lossy().into_owned();
    let run = reconcile_with(
        &front.endpoint,
        &sqs,
        &dir,
        &args,
        &[("SSL_CERT_FILE", Some(bundle.as_str()))],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.count("agree"), 1);
}
