//! End to end over the built `connect-identity-sync-reconcile` against the Connect
//! emulator and moto: an export whose users mostly agree only once normalised, the
//! few that differ reported exactly, their corrections queued and applied by the built
//! function (or refused by it), a second run in step; JSON Lines and SCIM inputs; no
//! personal value in the output or the report.

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
    let report = dir.join("report.json");
    let _ = std::fs::remove_file(&report);
    let out = tokio::process::Command::new(RECONCILE)
        .args(["--instance", INSTANCE])
        .args(args)
        .arg("--report")
        .arg(&report)
        .env_clear()
        .env("AWS_ENDPOINT_URL_CONNECT", connect)
        .env("AWS_ENDPOINT_URL_SQS", stack.moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("DEFAULT_PHONE_REGION", "US")
        .output()
        .await
        .expect("the reconcile binary runs");
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
