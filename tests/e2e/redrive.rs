//! End to end over the built `connect-identity-sync-redrive` against moto over HTTP:
//! which messages move, byte for byte, to standard and FIFO targets; nothing is lost
//! when the target refuses; `--dry-run` and `--max`; the table and the exit status.

use std::collections::BTreeMap;

use harness::{Attribute, Moto, Outgoing, Queue, QueueSpec, Sqs};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync-redrive");

pub(super) struct Run {
    pub(super) code: i32,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Run {
    /// The table's rows: class → (seen, moved, left).
    fn rows(&self) -> BTreeMap<String, (u64, u64, u64)> {
        self.stdout
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                match cells.as_slice() {
                    [class, seen, moved, left] => Some((
                        (*class).to_owned(),
                        (seen.parse().ok()?, moved.parse().ok()?, left.parse().ok()?),
                    )),
                    _ => None,
                }
            })
            .collect()
    }
}

/// Runs the redrive command against `moto` with `args` (and a high `--rate`).
pub(super) async fn redrive(moto: &Moto, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .args(["--rate", "200"])
        .env_clear()
        .env("AWS_ENDPOINT_URL_SQS", moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .expect("the redrive binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A dead letter as the function writes it.
fn letter(class: &str, body: &str) -> Outgoing {
    Outgoing::new(body)
        .attribute("ErrorClass", Attribute::string(class))
        .attribute(
            "ErrorMessage",
            Attribute::string(format!("{class} for test")),
        )
        .attribute("SourceType", Attribute::string("sqs"))
        .attribute("Attempts", Attribute::number(1))
}

/// Bodies a byte-for-byte copy must keep: whitespace, escapes, non-ASCII, not JSON.
const BODIES: [&str; 4] = [
    "{\"UserId\": \"u-jdoe\",  \"IdentityInfo\": {\"LastName\": \"Do\\u00e9\"}}\n",
    "  {\"UserId\":\"u-asmith\",\"IdentityInfo\":{\"FirstName\":\"Zoë 👩‍💼\"}}\t",
    "not json at all \r\n with CRLF",
    "{\"Username\":\"jdoe\",\"IdentityInfo\":{}} ",
];

struct Setup {
    moto: Moto,
    sqs: Sqs,
    dlq: Queue,
    target: Queue,
}

async fn setup(target: &str) -> Setup {
    let moto = Moto::start().await.expect("moto starts");
    let sqs = moto.sqs().await;
    let dlq = sqs.create_queue(&QueueSpec::new("dlq")).await.unwrap();
    let target = sqs.create_queue(&QueueSpec::new(target)).await.unwrap();
    Setup {
        moto,
        sqs,
        dlq,
        target,
    }
}

impl Setup {
    /// Dead letters of `class` with these bodies, in the dead-letter queue.
    async fn put(&self, class: &str, bodies: &[&str]) {
        for body in bodies {
            self.sqs
                .send(&self.dlq.url, &letter(class, body))
                .await
                .unwrap();
        }
    }

    /// A redrive from the dead-letter queue to the target with `extra` arguments.
    async fn redrive(&self, extra: &[&str]) -> Run {
        let mut args = vec!["--from", &self.dlq.url, "--to", &self.target.url];
        args.extend_from_slice(extra);
        redrive(&self.moto, &args).await
    }
}

fn sorted_bodies(messages: &[harness::Message]) -> Vec<String> {
    let mut bodies: Vec<String> = messages.iter().map(|m| m.body.clone()).collect();
    bodies.sort();
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_chosen_class_moves_byte_for_byte_and_the_others_stay_visible() {
    let s = setup("identity-changes").await;
    s.put("ValidationError", &BODIES).await;
    s.put("PolicyViolation", &["{\"a\":1}", "{\"b\":2}"]).await;
    s.sqs
        .send(&s.dlq.url, &Outgoing::new("no class attribute"))
        .await
        .unwrap();

    let run = s.redrive(&["--class", "ValidationError"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let rows = run.rows();
    assert_eq!(rows["ValidationError"], (4, 4, 0), "{}", run.stdout);
    assert_eq!(rows["PolicyViolation"], (2, 0, 2), "{}", run.stdout);
    assert_eq!(rows["(none)"], (1, 0, 1), "{}", run.stdout);

    let moved = s.sqs.receive_all(&s.target.url).await.unwrap();
    let mut expected: Vec<String> = BODIES.iter().map(|b| (*b).to_owned()).collect();
    expected.sort();
    assert_eq!(sorted_bodies(&moved), expected, "bodies byte for byte");
    for m in &moved {
        assert_eq!(m.attr("ErrorClass"), Some("ValidationError"));
    }
    // The others are visible again at once, not after a visibility timeout.
    let stayed = s.sqs.receive_all(&s.dlq.url).await.unwrap();
    assert_eq!(
        sorted_bodies(&stayed),
        vec!["no class attribute", "{\"a\":1}", "{\"b\":2}"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_target_gets_the_original_group_or_a_stable_one_and_a_deduplication_id() {
    let s = setup("identity-changes.fifo").await;
    // From a standard dead-letter queue: no group of its own.
    let plain_id = s
        .sqs
        .send(&s.dlq.url, &letter("UnknownError", BODIES[0]))
        .await
        .unwrap();
    let run = s.redrive(&[]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    // From a FIFO dead-letter queue: each message keeps its group.
    let fifo_dlq = s
        .sqs
        .create_queue(&QueueSpec::new("dlq.fifo"))
        .await
        .unwrap();
    for (i, group) in ["g-1", "g-2", "g-1"].iter().enumerate() {
        s.sqs
            .send(
                &fifo_dlq.url,
                &letter("ThrottlingException", BODIES[i + 1]).fifo(*group, format!("d-{i}")),
            )
            .await
            .unwrap();
    }
    let run = redrive(&s.moto, &["--from", &fifo_dlq.url, "--to", &s.target.url]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.rows()["ThrottlingException"], (3, 3, 0));

    let moved = s.sqs.receive_all(&s.target.url).await.unwrap();
    let by_body: BTreeMap<&str, &harness::Message> =
        moved.iter().map(|m| (m.body.as_str(), m)).collect();
    assert_eq!(by_body.len(), 4, "{moved:#?}");
    let group = |b: &str| by_body[b].attributes.get("MessageGroupId").cloned();
    assert_eq!(group(BODIES[0]).as_deref(), Some("connect-identity-sync"));
    assert_eq!(group(BODIES[1]).as_deref(), Some("g-1"));
    assert_eq!(group(BODIES[2]).as_deref(), Some("g-2"));
    assert_eq!(group(BODIES[3]).as_deref(), Some("g-1"));
    assert_eq!(
        by_body[BODIES[0]]
            .attributes
            .get("MessageDeduplicationId")
            .map(String::as_str),
        Some(plain_id.as_str()),
        "deduplicated by the dead letter's own id"
    );
    assert!(s.sqs.receive_all(&fifo_dlq.url).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_refuses_the_send_leaves_every_message_in_the_dead_letter_queue() {
    let s = setup("unused").await;
    s.put("ResourceNotFoundException", &BODIES).await;
    let missing = format!("{}/123456789012/no-such-queue", s.moto.endpoint());
    let run = redrive(&s.moto, &["--from", &s.dlq.url, "--to", &missing]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.rows()["ResourceNotFoundException"], (4, 0, 4));
    assert_eq!(
        run.stderr.matches("not moved:").count(),
        4,
        "each unmoved message is named: {}",
        run.stderr
    );
    let stayed = s.sqs.receive_all(&s.dlq.url).await.unwrap();
    let mut expected: Vec<String> = BODIES.iter().map(|b| (*b).to_owned()).collect();
    expected.sort();
    assert_eq!(sorted_bodies(&stayed), expected, "nothing lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_counts_what_would_move_and_moves_nothing() {
    let s = setup("identity-changes").await;
    s.put("InvalidParameterException", &BODIES).await;
    s.put("MalformedEvent", &["x"]).await;
    let run = s
        .redrive(&["--class", "InvalidParameterException", "--dry-run"])
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.rows()["InvalidParameterException"], (4, 0, 4));
    assert_eq!(run.rows()["MalformedEvent"], (1, 0, 1));
    assert!(
        run.stdout.contains("dry run: 4 message(s) would be moved"),
        "{}",
        run.stdout
    );
    assert!(s.sqs.receive_all(&s.target.url).await.unwrap().is_empty());
    assert_eq!(s.sqs.receive_all(&s.dlq.url).await.unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_stops_after_that_many_messages_and_the_rest_stay() {
    let s = setup("identity-changes").await;
    for i in 0..7 {
        s.sqs
            .send(
                &s.dlq.url,
                &letter("InternalServiceException", &format!("m{i}")),
            )
            .await
            .unwrap();
    }
    let run = redrive(
        &s.moto,
        &["--from", &s.dlq.url, "--to", &s.target.url, "--max", "3"],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let (seen, moved, left) = run.rows()["InternalServiceException"];
    assert_eq!((moved, left), (3, seen - 3), "{}", run.stdout);
    assert_eq!(s.sqs.receive_all(&s.target.url).await.unwrap().len(), 3);
    assert_eq!(s.sqs.receive_all(&s.dlq.url).await.unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_with_two_and_help_names_every_option() {
    let moto = Moto::start().await.expect("moto starts");
    let help = redrive(&moto, &["--help"]).await;
    assert_eq!(help.code, 0);
    for option in ["--from", "--to", "--class", "--max", "--dry-run", "--rate"] {
        assert!(help.stdout.contains(option), "{option}: {}", help.stdout);
    }
    let bad_class = redrive(
        &moto,
        &["--from", "http://a", "--to", "http://b", "--class", "Oops"],
    )
    .await;
    assert_eq!(bad_class.code, 2, "{}", bad_class.stderr);
    assert!(
        bad_class.stderr.contains("ValidationError"),
        "{}",
        bad_class.stderr
    );
    let same = redrive(&moto, &["--from", "http://a/q", "--to", "http://a/q"]).await;
    assert_eq!(same.code, 2, "{}", same.stderr);
    let missing_to = redrive(&moto, &["--from", "http://a/q"]).await;
    assert_eq!(missing_to.code, 2);
}
