//! Chaos, end to end over the built binary: 500 changes through a real SQS queue
//! and Lambda's event source mapping while Connect throttles, fails with 5xx,
//! drops connections and answers slowly, and two dead-letter queues disappear for
//! part of the run. Some refused changes share their user with a good change, sent
//! next to it so that they mostly share a batch. Every change must end applied (or
//! unchanged) or dead-lettered under a class it may have; no good change lands in a
//! non-retryable queue; none is lost and the process never dies. With the staleness
//! guard on, pairs of changes to one user arrive in any order and are redelivered out
//! of order: an older one never overwrites the newer one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use harness::connect_emulator::{Fault, Operation};
use harness::fixtures::{self, FOREIGN_INSTANCE, INSTANCE, change};
use harness::{BatchOutcome, MappingReport, QueueSpec, Stack};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");
const RETRYABLE: [&str; 3] = [
    "ThrottlingException",
    "InternalServiceException",
    "UnknownError",
];

/// What a change is and what it may end as.
#[derive(Clone, Debug)]
struct Planned {
    kind: &'static str,
    body: String,
    /// The user and the FirstName it sets, for changes that may be applied.
    applies: Option<(String, String)>,
    /// The classes it may be dead-lettered under.
    classes: Vec<&'static str>,
}

fn plan() -> Vec<Planned> {
    let mut out = Vec::new();
    let mut user = 0_usize;
    let mut next_user = || {
        user += 1;
        format!("u-{user:04}")
    };
    let applies = |kind, u: String, name: String| Planned {
        kind,
        body: change(INSTANCE, &u, &json!({"FirstName": name})).to_string(),
        applies: Some((u, name)),
        classes: RETRYABLE.to_vec(),
    };
    for i in 0..240 {
        out.push(applies("apply", next_user(), format!("Chaos{i}")));
    }
    for i in 0..20 {
        // Two changes to one user, a second apart, in any order: the newer one's value
        // stands whenever it was applied; the older may end applied, unchanged
        // (superseded) or dead-lettered.
        let u = next_user();
        let timed = |name: String, at: &str| {
            let mut body = change(INSTANCE, &u, &json!({"FirstName": name}));
            body["OccurredAt"] = json!(at);
            body.to_string()
        };
        out.push(Planned {
            kind: "newer",
            body: timed(format!("Newer{i}"), "2026-03-01T10:00:02Z"),
            applies: Some((u.clone(), format!("Newer{i}"))),
            classes: RETRYABLE.to_vec(),
        });
        out.push(Planned {
            kind: "older",
            body: timed(format!("Older{i}"), "2026-03-01T10:00:01Z"),
            applies: None,
            classes: RETRYABLE.to_vec(),
        });
    }
    for i in 0..40 {
        // Sent twice: one applies, the other finds nothing to do.
        let p = applies("duplicate", next_user(), format!("Twice{i}"));
        out.push(p.clone());
        out.push(p);
    }
    for _ in 0..5 {
        let u = next_user();
        out.push(Planned {
            kind: "always-throttled",
            body: change(INSTANCE, &u, &json!({"LastName": "Throttled"})).to_string(),
            applies: None,
            classes: vec!["ThrottlingException"],
        });
    }
    for _ in 0..5 {
        let u = next_user();
        out.push(Planned {
            kind: "always-5xx",
            body: change(INSTANCE, &u, &json!({"LastName": "Broken"})).to_string(),
            applies: None,
            classes: vec!["InternalServiceException"],
        });
    }
    for _ in 0..40 {
        let u = next_user();
        out.push(Planned {
            kind: "invalid",
            body: change(INSTANCE, &u, &json!({"Mobile": "12ab"})).to_string(),
            applies: None,
            classes: vec!["ValidationError"],
        });
    }
    for i in 0..15 {
        out.push(Planned {
            kind: "foreign-instance",
            body: change(
                FOREIGN_INSTANCE,
                "u-foreign",
                &json!({"LastName": format!("F{i}")}),
            )
            .to_string(),
            applies: None,
            classes: vec!["PolicyViolation"],
        });
    }
    for i in 0..15 {
        let u = next_user();
        let mut classes = vec!["PolicyViolation"];
        classes.extend(RETRYABLE);
        out.push(Planned {
            kind: "foreign-domain",
            body: change(
                INSTANCE,
                &u,
                &json!({"Email": format!("taker{i}@evil.test")}),
            )
            .to_string(),
            applies: None,
            classes,
        });
    }
    for i in 0..10 {
        let mut classes = vec!["ResourceNotFoundException"];
        classes.extend(RETRYABLE);
        out.push(Planned {
            kind: "unknown-user",
            body: change(
                INSTANCE,
                &format!("u-ghost-{i}"),
                &json!({"LastName": "Ghost"}),
            )
            .to_string(),
            applies: None,
            classes,
        });
    }
    for i in 0..10 {
        out.push(Planned {
            kind: "malformed",
            body: format!("{{\"UserId\": \"u-0001\", \"broken\": {i}"),
            applies: None,
            classes: vec!["MalformedEvent"],
        });
    }
    // A fixed shuffle so batches mix every kind.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..out.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = usize::try_from(state % (i as u64 + 1)).unwrap();
        out.swap(i, j);
    }
    // Pairs kept side by side, spread through the run: a good change and a change
    // refused after the reads (an Email outside the allowlist) to the same user.
    for i in 0..20 {
        let u = next_user();
        let good = applies("shared-good", u.clone(), format!("Shared{i}"));
        let mut classes = vec!["PolicyViolation"];
        classes.extend(RETRYABLE);
        let refused = Planned {
            kind: "shared-refused",
            body: change(
                INSTANCE,
                &u,
                &json!({"Email": format!("shared{i}@evil.test")}),
            )
            .to_string(),
            applies: None,
            classes,
        };
        let at = (i * 23 + 7).min(out.len());
        if i % 2 == 0 {
            out.insert(at, refused);
            out.insert(at, good);
        } else {
            out.insert(at, good);
            out.insert(at, refused);
        }
    }
    out
}

/// The users `always-throttled` and `always-5xx` changes are for.
fn sticky_users(planned: &[Planned], kind: &str) -> Vec<String> {
    planned
        .iter()
        .filter(|p| p.kind == kind)
        .map(|p| {
            serde_json::from_str::<serde_json::Value>(&p.body).unwrap()["UserId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_changes_through_chaos_all_end_applied_or_dead_lettered_by_class() {
    let planned = plan();
    assert_eq!(planned.len(), 500);
    let stack: Stack = fixtures::stack(BIN, 480)
        .watermarks()
        .visibility_timeout(1)
        .source_max_receive_count(15)
        .function_timeout(Duration::from_secs(20))
        .env("CONNECT_RPS_UPDATE", "30")
        .start()
        .await
        .expect("stack starts");
    let emulator = &stack.emulator;
    for u in sticky_users(&planned, "always-throttled") {
        emulator.inject_fault(
            Fault::new(
                Operation::UpdateUserIdentityInfo,
                "ThrottlingException",
                10_000,
            )
            .for_user(u),
        );
    }
    for u in sticky_users(&planned, "always-5xx") {
        emulator.inject_fault(
            Fault::new(
                Operation::UpdateUserIdentityInfo,
                "InternalServiceException",
                10_000,
            )
            .for_user(u),
        );
    }
    // Connect's quota, below what the function's own limiter allows, and latency.
    emulator.set_quota(Operation::UpdateUserIdentityInfo, 20.0, 8);
    emulator.set_latency(Operation::DescribeUser, Duration::from_millis(15));
    emulator.set_latency(Operation::UpdateUserIdentityInfo, Duration::from_millis(25));

    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for chunk in planned.chunks(10).enumerate().map(|(c, p)| (c * 10, p)) {
        let (base, items) = chunk;
        for (k, p) in items.iter().enumerate() {
            let id = stack
                .sqs
                .send_body(&stack.source.url, &p.body)
                .await
                .unwrap();
            sent.insert(id, base + k);
        }
    }
    assert_eq!(sent.len(), 500);

    // Two dead-letter queues disappear from the 8th batch for 10 s (or 14 batches).
    let outage = ["ValidationError", "PolicyViolation"];
    let outage_length = Duration::from_secs(10);
    let mapping = stack.mapping();
    let mut report = MappingReport::default();
    let started = Instant::now();
    let limit = Duration::from_secs(240);
    let mut batch_no = 0_usize;
    let mut outage_since: Option<Instant> = None;
    let mut outage_done = false;
    let mut outage_handed_back = 0_usize;
    let mut injected = (0_u32, 0_u32);
    let mut saved: BTreeMap<String, Vec<harness::Message>> = BTreeMap::new();
    loop {
        let over = started.elapsed() >= limit;
        if !outage_done && outage_since.is_none() && batch_no >= 8 {
            // No invocation is in flight between polls: keep what the queues hold
            // (deleting a queue deletes its messages), then delete them.
            for class in outage {
                let url = &stack.dlq(class).url;
                let held = stack.sqs.drain(url).await.unwrap();
                saved.entry(class.to_owned()).or_default().extend(held);
                stack.sqs.delete_queue(url).await.unwrap();
            }
            outage_since = Some(Instant::now());
        }
        if let Some(since) = outage_since {
            if over || batch_no >= 22 || since.elapsed() >= outage_length {
                for class in outage {
                    let name = stack.dlq(class).name.clone();
                    let queue = stack.sqs.create_queue(&QueueSpec::new(name)).await.unwrap();
                    assert_eq!(queue.url, stack.dlq(class).url);
                }
                outage_since = None;
                outage_done = true;
            }
        }
        if over {
            break;
        }
        if batch_no % 4 == 1 {
            emulator.inject_fault(Fault::new(
                Operation::DescribeUser,
                "InternalServiceException",
                2,
            ));
            emulator.inject_fault(
                Fault::new(
                    Operation::UpdateUserIdentityInfo,
                    "InternalServiceException",
                    2,
                )
                .with_status(503),
            );
            injected.0 += 4;
        }
        if batch_no % 10 == 5 {
            emulator.inject_fault(Fault::new(
                Operation::UpdateUserIdentityInfo,
                "Disconnect",
                1,
            ));
            emulator.inject_fault(
                Fault::new(Operation::DescribeUser, "Timeout", 1).with_delay_ms(4_000),
            );
            injected.1 += 2;
        }
        if let Some(batch) = mapping.poll_once().await.unwrap() {
            if outage_since.is_some() {
                outage_handed_back += batch.handed_back().len();
            }
            batch_no += 1;
            let dead = stack.runtime.exited();
            report.batches.push(batch);
            assert!(
                dead.is_none(),
                "the function process died: {dead:?}\n{}",
                stack.function.logs()
            );
        } else if outage_since.is_some() {
            // Keep the outage schedule moving while the queue is momentarily empty.
            batch_no += 1;
        } else if stack.sqs.total_depth(&stack.source.url).await.unwrap() == 0 {
            report.drained = true;
            break;
        }
    }
    let elapsed = started.elapsed();

    // Collect every dead letter.
    let mut dead: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut duplicates = Vec::new();
    let mut letters_by_class = stack.dead_letters().await.unwrap();
    for (class, held) in saved {
        letters_by_class.entry(class).or_default().extend(held);
    }
    for (class, letters) in letters_by_class {
        for m in letters {
            assert_eq!(m.attr("ErrorClass"), Some(class.as_str()), "{m:?}");
            // A deferred record comes back as a fresh copy (a new messageId) carrying the
            // change's id, which for these documents is the first copy's messageId.
            let source_id = m
                .attr("EventId")
                .filter(|id| sent.contains_key(*id))
                .or(m.attr("SourceId"))
                .unwrap_or_default()
                .to_owned();
            if dead
                .insert(source_id.clone(), (class.clone(), m.body.clone()))
                .is_some()
            {
                duplicates.push(source_id);
            }
        }
    }
    let last_resort = stack.sqs.receive_all(&stack.source_dlq.url).await.unwrap();
    let deleted = report.deleted();

    // Judge every change.
    let mut tally: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut good_in_non_retryable = Vec::new();
    for (id, &index) in &sent {
        let p = &planned[index];
        let outcome = if let Some((class, body)) = dead.get(id) {
            if body != &p.body {
                problems.push(format!("{id} ({}): dead letter body differs", p.kind));
            }
            if p.applies.is_some() && !RETRYABLE.contains(&class.as_str()) {
                good_in_non_retryable.push(format!("{id} ({}): {class}", p.kind));
            }
            if !p.classes.contains(&class.as_str()) {
                problems.push(format!(
                    "{id} ({}): dead-lettered as {class}, expected one of {:?}",
                    p.kind, p.classes
                ));
            }
            format!("dead-lettered {class}")
        } else if deleted.contains(id) {
            match &p.applies {
                Some((user, name)) => {
                    let now = emulator
                        .user(INSTANCE, user)
                        .and_then(|u| u.identity_info.first_name);
                    if now.as_deref() != Some(name.as_str()) {
                        problems.push(format!(
                            "{id} ({}): acknowledged but {user} has FirstName {now:?}, not {name}",
                            p.kind
                        ));
                    }
                }
                // Applied before the newer one, or superseded by it.
                None if p.kind == "older" => {}
                None => problems.push(format!(
                    "{id} ({}): acknowledged without being dead-lettered",
                    p.kind
                )),
            }
            "applied or unchanged".to_owned()
        } else if last_resort
            .iter()
            .any(|m| &m.message_id == id || m.attr("EventId") == Some(id.as_str()))
        {
            problems.push(format!(
                "{id} ({}): reached the source queue's own dead-letter queue",
                p.kind
            ));
            "source redrive".to_owned()
        } else if !report.drained {
            problems.push(format!("{id} ({}): not settled by the time limit", p.kind));
            "not settled by the time limit".to_owned()
        } else {
            problems.push(format!("{id} ({}): lost", p.kind));
            "lost".to_owned()
        };
        *tally.entry((p.kind, outcome)).or_default() += 1;
    }
    let journal = emulator.journal();
    let count = |op: &str, status: u16| {
        journal
            .iter()
            .filter(|e| e.operation == op && e.status == status)
            .count()
    };
    let throttled = journal
        .iter()
        .filter(|e| e.error_type.as_deref() == Some("ThrottlingException"))
        .count();
    let failed_invocations: Vec<String> = report
        .failed_invocations()
        .iter()
        .map(|b| match &b.outcome {
            BatchOutcome::FunctionError {
                error_type,
                error_message,
            } => format!("error {error_type}: {error_message}"),
            BatchOutcome::NoReply(e) => format!("no reply: {e}"),
            BatchOutcome::InvalidReply(v) => format!("invalid reply {v}"),
            BatchOutcome::Reply { .. } => unreachable!(),
        })
        .collect();
    let handed_back: usize = report.batches.iter().map(|b| b.handed_back().len()).sum();
    // Hand-backs at or past MAX_RECEIVE_COUNT (3): not retryable failures (those are
    // dead-lettered there) but work cut by the deadline or a failed dead-letter send.
    let past_max: usize = report
        .handed_back()
        .values()
        .map(|counts| counts.iter().filter(|c| **c >= 3).count())
        .sum();
    let slowest = report
        .batches
        .iter()
        .map(|b| b.elapsed)
        .max()
        .unwrap_or_default();

    let mut text = String::new();
    let _ = writeln!(text, "chaos tally ({} changes, {elapsed:.1?}):", sent.len());
    for ((kind, outcome), n) in &tally {
        let _ = writeln!(text, "  {kind:<17} {outcome:<40} {n:>4}");
    }
    let _ = writeln!(
        text,
        "  invocations {}, deliveries {}, handed back {handed_back} ({outage_handed_back} during the dead-letter outage, {past_max} at receive count >= 3), slowest invocation {slowest:.1?}",
        report.invocations(),
        report.deliveries()
    );
    let _ = writeln!(
        text,
        "  Connect: {} updates ok, {} describe-user ok, {throttled} throttled answers, {} injected 5xx, {} injected disconnects/timeouts",
        count("UpdateUserIdentityInfo", 200),
        count("DescribeUser", 200),
        injected.0,
        injected.1
    );
    let _ = writeln!(
        text,
        "  dead letters {}, duplicates {}, source-queue redrive {}, failed invocations {}, good changes in a non-retryable queue {}",
        dead.len(),
        duplicates.len(),
        last_resort.len(),
        failed_invocations.len(),
        good_in_non_retryable.len()
    );
    println!("{text}");
    eprintln!("{text}");

    assert!(
        stack.function.is_running(),
        "the function process died\n{}",
        stack.function.logs()
    );
    assert!(
        report.drained,
        "the source queue did not drain within {limit:?}"
    );
    assert!(
        failed_invocations.is_empty(),
        "invocations failed: {failed_invocations:#?}"
    );
    assert!(
        good_in_non_retryable.is_empty(),
        "good changes dead-lettered as non-retryable: {good_in_non_retryable:?}"
    );
    assert!(
        duplicates.is_empty(),
        "dead-lettered more than once: {duplicates:?}"
    );
    assert!(
        problems.is_empty(),
        "{} problems (first 40):\n{}",
        problems.len(),
        problems[..problems.len().min(40)].join("\n")
    );
    assert!(
        outage_handed_back > 0,
        "the outage handed nothing back: it tested nothing"
    );
    let unexpected: BTreeSet<&String> = dead.keys().filter(|id| !sent.contains_key(*id)).collect();
    assert!(
        unexpected.is_empty(),
        "dead letters for unknown records: {unexpected:?}"
    );
}
