//! End to end over the built binary with the staleness guard on (`WATERMARK_TABLE`, a
//! DynamoDB table in moto): an older change redelivered after a newer one never
//! overwrites it, a change whose every field is superseded costs no update, a missing
//! table hands records back without touching Connect, and two containers working one
//! queue of shuffled, redelivered changes leave every user with the newest value of
//! every field, never interleaving two read-modify-writes of one user.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use harness::connect_emulator::{JournalEntry, Operation};
use harness::fixtures::{
    self, INSTANCE, Record, assert_no_dead_letters, batch_item_failures, calls_for, eventbridge,
    identity, response,
};
use harness::{StackConfig, WATERMARK_TABLE};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");

fn guarded(extra: usize) -> StackConfig {
    fixtures::stack(BIN, extra)
        .watermarks()
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
}

fn at(user: &str, identity: &Value, occurred_at: &str) -> Value {
    json!({"InstanceId": INSTANCE, "UserId": user, "IdentityInfo": identity, "OccurredAt": occurred_at})
}

/// The per-invocation "staleness guard" log lines: (records, superseded, users under a
/// lease, watermark table requests).
fn guard_lines(logs: &[String]) -> Vec<(u64, u64, u64, u64)> {
    fixtures::log_messages(logs, "staleness guard")
        .iter()
        .map(|v| {
            let f = &v["fields"];
            let n = |k: &str| f[k].as_u64().unwrap_or(0);
            (
                n("records"),
                n("superseded"),
                n("guarded_users"),
                n("watermark_requests"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_change_redelivered_after_a_newer_one_keeps_the_newer_value_and_applies_its_other_fields()
 {
    let stack = guarded(0).start().await.expect("stack");
    let newer = at(
        "u-jdoe",
        &json!({"LastName": "Newer"}),
        "2026-03-01T10:00:05Z",
    );
    let reply = response(
        stack
            .invoke(&fixtures::sqs_event(
                &stack.source.arn,
                &[Record::json("m-newer", &newer)],
            ))
            .await
            .unwrap(),
        &stack,
    );
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());

    // Handed back minutes ago (throttled), it comes again: its LastName is stale, its
    // FirstName is not.
    let older = at(
        "u-jdoe",
        &json!({"LastName": "Older", "FirstName": "Janet"}),
        "2026-03-01T10:00:01Z",
    );
    let reply = response(
        stack
            .invoke(&fixtures::sqs_event(
                &stack.source.arn,
                &[Record::json("m-older", &older).received(2)],
            ))
            .await
            .unwrap(),
        &stack,
    );
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    let now = identity(&stack, "u-jdoe");
    assert_eq!(
        now["LastName"], "Newer",
        "the older change overwrote the newer"
    );
    assert_eq!(
        now["FirstName"], "Janet",
        "the older change's other field applies"
    );
    assert_eq!(
        calls_for(&stack, Operation::UpdateUserIdentityInfo, "u-jdoe"),
        2
    );

    let item = stack
        .dynamo
        .item(WATERMARK_TABLE, &format!("{INSTANCE}#u-jdoe"))
        .await
        .unwrap()
        .expect("the user's watermarks");
    let nanos = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
            .to_string()
    };
    assert_eq!(item["wm_LastName"], nanos("2026-03-01T10:00:05Z"));
    assert_eq!(item["wm_FirstName"], nanos("2026-03-01T10:00:01Z"));
    assert!(
        !item.contains_key("lease_owner"),
        "the lease was given back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_every_field_is_superseded_ends_unchanged_without_an_update_call() {
    let stack = guarded(0).start().await.expect("stack");
    let newer = at(
        "u-asmith",
        &json!({"LastName": "Smythe", "Mobile": "+14155550190"}),
        "2026-03-01T10:00:05Z",
    );
    let reply = response(
        stack
            .invoke(&eventbridge("eb-newer", &newer))
            .await
            .unwrap(),
        &stack,
    );
    assert_eq!(reply, json!({"outcome": "updated"}));
    let describes = calls_for(&stack, Operation::DescribeUser, "u-asmith");

    let stale = at(
        "u-asmith",
        &json!({"LastName": "Smith", "Mobile": null}),
        "2026-03-01T10:00:04.999Z",
    );
    let reply = response(
        stack
            .invoke(&eventbridge("eb-stale", &stale))
            .await
            .unwrap(),
        &stack,
    );
    assert_eq!(reply, json!({"outcome": "unchanged"}));
    assert_eq!(
        calls_for(&stack, Operation::UpdateUserIdentityInfo, "u-asmith"),
        1,
        "a superseded change made an update call"
    );
    assert_eq!(
        calls_for(&stack, Operation::DescribeUser, "u-asmith"),
        describes,
        "a superseded change needs no read either"
    );
    let now = identity(&stack, "u-asmith");
    assert_eq!(now["LastName"], "Smythe");
    assert_eq!(now["Mobile"], "+14155550190");
    // The log line of the second invocation may still be on its way from the process.
    let mut lines = guard_lines(&stack.function.log_lines());
    for _ in 0..100 {
        if lines.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        lines = guard_lines(&stack.function.log_lines());
    }
    assert_eq!(lines.last(), Some(&(1, 1, 1, 2)), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_watermark_table_hands_the_record_back_and_sends_nothing_to_connect() {
    let stack = guarded(0)
        .without_watermark_table()
        .start()
        .await
        .expect("stack");
    let body = at(
        "u-bking",
        &json!({"LastName": "Queen"}),
        "2026-03-01T10:00:05Z",
    );
    let reply = response(
        stack
            .invoke(&fixtures::sqs_event(
                &stack.source.arn,
                &[Record::json("m-1", &body)],
            ))
            .await
            .unwrap(),
        &stack,
    );
    assert_eq!(batch_item_failures(&reply), vec!["m-1".to_owned()]);
    let touched: Vec<JournalEntry> = stack
        .emulator
        .journal()
        .into_iter()
        .filter(|e| e.user_id.is_some())
        .collect();
    assert!(
        touched.is_empty(),
        "Connect was asked about users: {touched:?}"
    );
    assert_eq!(identity(&stack, "u-bking")["LastName"], "King");

    // At its last delivery it is dead-lettered as UnknownError, still unapplied.
    let reply = response(
        stack
            .invoke(&fixtures::sqs_event(
                &stack.source.arn,
                &[Record::json("m-1", &body).received(3)],
            ))
            .await
            .unwrap(),
        &stack,
    );
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    let letters = stack.dead_letters().await.unwrap();
    let unknown = &letters["UnknownError"];
    assert_eq!(unknown.len(), 1, "{letters:?}");
    let message = unknown[0].message_attributes["ErrorMessage"]
        .string_value
        .clone()
        .unwrap_or_default();
    assert!(message.contains("staleness guard"), "{message}");
    assert_eq!(
        calls_for(&stack, Operation::UpdateUserIdentityInfo, "u-bking"),
        0
    );
}

/// A small deterministic shuffle (xorshift), so a failure can be replayed.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// Per user, the calls of one container: a read-modify-write is its `DescribeUser`
/// and the `UpdateUserIdentityInfo` after it. Two overlap when another container's call
/// for the user falls between them.
fn interleavings(journal: &[JournalEntry]) -> Vec<String> {
    let mut by_user: BTreeMap<&str, Vec<&JournalEntry>> = BTreeMap::new();
    for e in journal {
        if let Some(user) = e.user_id.as_deref() {
            by_user.entry(user).or_default().push(e);
        }
    }
    let mut found = Vec::new();
    for (user, calls) in by_user {
        for (k, update) in calls.iter().enumerate() {
            if update.operation != "UpdateUserIdentityInfo" {
                continue;
            }
            let read = calls[..k]
                .iter()
                .rposition(|c| c.operation == "DescribeUser" && c.caller == update.caller);
            let Some(read) = read else {
                found.push(format!(
                    "{user}: update #{} with no read before it",
                    update.seq
                ));
                continue;
            };
            let read_at = calls[read].at;
            if let Some(other) = calls[read + 1..k]
                .iter()
                .find(|c| c.caller != update.caller)
            {
                found.push(format!(
                    "{user}: {} #{} of another container between read #{} and update #{}",
                    other.operation, other.seq, calls[read].seq, update.seq
                ));
            }
            // By the clock too: no other container's call for the user arrived while
            // this read-modify-write was under way.
            let done = update.finished_at.unwrap_or(u64::MAX);
            if let Some(other) = calls
                .iter()
                .find(|c| c.caller != update.caller && c.at > read_at && c.at < done)
            {
                found.push(format!(
                    "{user}: {} #{} arrived during read-modify-write #{}..#{}",
                    other.operation, other.seq, calls[read].seq, update.seq
                ));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_on_one_queue_leave_every_user_with_the_newest_value_of_every_field() {
    const USERS: usize = 50;
    let stack = guarded(USERS)
        .visibility_timeout(3)
        .start()
        .await
        .expect("stack");
    let replica = stack
        .start_replica("AKIAIOSFODNN7REPLICA")
        .await
        .expect("second container");

    // Per user four changes a second apart, each naming LastName and one other field;
    // every change is sent once, a third of them twice (a redelivery), all shuffled.
    let fields = ["FirstName", "SecondaryEmail", "Mobile"];
    let mut expected: BTreeMap<String, BTreeMap<&str, Value>> = BTreeMap::new();
    let mut bodies = Vec::new();
    for n in 1..=USERS {
        let user = format!("u-{n:04}");
        for v in 1..=4u32 {
            let other = fields[(n + v as usize) % fields.len()];
            let value = match other {
                "FirstName" => json!(format!("First{n}v{v}")),
                "SecondaryEmail" => json!(format!("alt{n}v{v}@example.com")),
                _ => json!(format!("+1415555{:04}", n * 10 + v as usize)),
            };
            let identity = json!({"LastName": format!("Last{n}v{v}"), other: value});
            let occurred = format!("2026-03-01T10:00:0{v}Z");
            let latest = expected.entry(user.clone()).or_default();
            latest.insert("LastName", identity["LastName"].clone());
            latest.insert(other, value);
            let body = at(&user, &identity, &occurred).to_string();
            if (n + v as usize) % 3 == 0 {
                bodies.push(body.clone());
            }
            bodies.push(body);
        }
    }
    shuffle(&mut bodies, 0x9e37_79b9_7f4a_7c15);
    for body in &bodies {
        stack
            .sqs
            .send_body(&stack.source.url, body)
            .await
            .expect("send");
    }

    let mappings = [stack.mapping(), stack.mapping_to(&replica.runtime)];
    let reports = harness::run_together(&mappings, Duration::from_secs(240))
        .await
        .expect("mappings");
    assert!(
        reports.iter().all(|r| r.drained),
        "the queue was not drained\n{}",
        stack.function.logs()
    );
    for r in &reports {
        assert!(
            r.failed_invocations().is_empty(),
            "{:?}",
            r.failed_invocations()
        );
    }
    assert_no_dead_letters(&stack).await;

    for (user, latest) in &expected {
        let now = identity(&stack, user);
        for (field, value) in latest {
            assert_eq!(&now[*field], value, "{user} {field}: {now}");
        }
    }

    let journal = stack.emulator.journal();
    let problems = interleavings(&journal);
    assert!(problems.is_empty(), "{problems:#?}");
    let callers: BTreeSet<_> = journal.iter().filter_map(|e| e.caller.clone()).collect();
    assert_eq!(
        callers.len(),
        2,
        "both containers called Connect: {callers:?}"
    );
    let shared_users = expected
        .keys()
        .filter(|u| {
            let by: BTreeSet<_> = journal
                .iter()
                .filter(|e| e.user_id.as_deref() == Some(u.as_str()))
                .filter_map(|e| e.caller.clone())
                .collect();
            by.len() == 2
        })
        .count();
    assert!(
        shared_users > 0,
        "no user was worked on by both containers: the test proves nothing"
    );

    // Let the last log lines arrive from the processes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut lines = guard_lines(&stack.function.log_lines());
    lines.extend(guard_lines(&replica.function.log_lines()));
    let (records, superseded, users, requests) = lines.iter().fold((0, 0, 0, 0), |a, l| {
        (a.0 + l.0, a.1 + l.1, a.2 + l.2, a.3 + l.3)
    });
    eprintln!(
        "{} invocations, {records} records, {superseded} superseded, {users} user leases, \
         {requests} watermark requests ({:.2} per user per invocation), {} users in both containers",
        lines.len(),
        requests as f64 / users.max(1) as f64,
        shared_users
    );
    assert!(
        superseded > 0,
        "shuffled redeliveries were never superseded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_dies_mid_apply_blocks_the_user_only_until_its_lease_lapses() {
    let timeout = Duration::from_secs(4);
    let mut stack = guarded(0)
        .function_timeout(timeout)
        .env("CONNECT_ATTEMPT_TIMEOUT_MS", "1500")
        .start()
        .await
        .expect("stack");
    let body = at(
        "u-cwu",
        &json!({"LastName": "Wu-Lin"}),
        "2026-03-01T10:00:05Z",
    );
    let event = fixtures::sqs_event(&stack.source.arn, &[Record::json("m-1", &body)]);
    // The update hangs in Connect; the container dies while it waits.
    stack
        .emulator
        .set_latency(Operation::UpdateUserIdentityInfo, Duration::from_secs(30));
    let runtime = stack.runtime.clone();
    let started = tokio::time::Instant::now();
    let pending = tokio::spawn(async move { runtime.invoke_json(&event, timeout).await });
    let until = started + Duration::from_secs(3);
    while calls_for(&stack, Operation::UpdateUserIdentityInfo, "u-cwu") == 0 {
        assert!(
            tokio::time::Instant::now() < until,
            "no update was attempted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stack.function.kill();
    // Its invocation never gets a reply.
    pending.abort();
    let next = stack
        .start_replica("AKIAIOSFODNN7NEXTONE")
        .await
        .expect("a new container");
    stack
        .emulator
        .set_latency(Operation::UpdateUserIdentityInfo, Duration::ZERO);

    // The new container meets the dead one's lease: the record is deferred, queued again
    // as a fresh copy and acknowledged (SPEC 2.4: the deferral spends no receive).
    let again = fixtures::sqs_event(&stack.source.arn, &[Record::json("m-1", &body).received(2)]);
    let reply = response(
        next.runtime.invoke_json(&again, timeout).await.unwrap(),
        &stack,
    );
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    let describes = calls_for(&stack, Operation::DescribeUser, "u-cwu");
    assert_eq!(describes, 1, "only the dead container read the user");
    let copies = stack
        .sqs
        .receive(&stack.source.url, 10, 5, Some(60))
        .await
        .expect("the source queue");
    assert_eq!(copies.len(), 1, "one copy of the deferred record");
    let copy = &copies[0];
    assert_eq!(copy.body, body.to_string(), "the body byte for byte");
    assert_eq!(
        copy.receive_count(),
        1,
        "the copy's receive count starts again"
    );
    let attribute = |name: &str| {
        copy.message_attributes.get(name).map(|a| {
            (
                a.data_type.clone(),
                a.string_value.clone().unwrap_or_default(),
            )
        })
    };
    assert_eq!(
        attribute("OwnFailures"),
        Some(("Number".to_owned(), "1".to_owned())),
        "its receive killed with its container counts as its own; the deferral does not"
    );
    assert_eq!(
        attribute("EventId"),
        Some(("String".to_owned(), "m-1".to_owned())),
        "the change keeps its id, not the copy's messageId"
    );
    assert_eq!(
        attribute("OccurredAt"),
        Some(("String".to_owned(), "2026-03-01T10:00:05Z".to_owned()))
    );

    // Once the lease has lapsed (its deadline + 2 s), the change applies.
    let lapsed = started + timeout + Duration::from_millis(2500);
    assert!(
        tokio::time::Instant::now() < lapsed,
        "the lease had lapsed before the new container asked for it"
    );
    tokio::time::sleep_until(lapsed).await;
    let reply = response(
        next.runtime.invoke_json(&again, timeout).await.unwrap(),
        &stack,
    );
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    assert_eq!(identity(&stack, "u-cwu")["LastName"], "Wu-Lin");
}
