//! Deferrals count against nothing (SPEC §2.4, §3): a record whose turn does not come in
//! the invocation is queued again as a fresh copy and acknowledged (standard queues), or
//! handed back (FIFO, or when the copy cannot be sent); a record's own failures are its
//! receives plus those its earlier copies carried; and a user whose update cannot get a
//! turn before the deadline is deferred before it is read.

use std::time::Duration;

use crate::common::*;
use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::record::{Disposition, HandBack};
use connect_identity_sync::pipeline::RateLimits;
use serde_json::{Value, json};
use tokio::time::Instant;

fn with_own_failures(mut record: Value, data_type: &str, value: &str) -> Value {
    record["messageAttributes"]["OwnFailures"] = json!({
        "stringValue": value, "stringListValues": [], "binaryListValues": [], "dataType": data_type
    });
    record
}

/// An update rate of one turn a minute: no turn but the first can come within a test's
/// deadline.
fn no_turn() -> RateLimits {
    RateLimits::new(1.0 / 60.0, 1000.0, 1000.0)
}

/// A deadline at which not even a read fits before the latest start (the tests' margin
/// is 100 ms and an attempt's budget 200 ms; a read is given 250 ms).
fn too_soon() -> Instant {
    Instant::now() + Duration::from_millis(500)
}

fn body() -> Value {
    change(
        "u-1",
        json!({"LastName": "Two"}),
        "2026-03-01T10:00:00.250Z",
    )
}

#[tokio::test]
async fn a_record_whose_turn_cannot_come_is_queued_again_unread_with_its_time_id_and_own_failures()
{
    let connect = one_user();
    let queues = FakeQueues::default();
    // Its second receive, after one failure of its own on an earlier copy.
    let record = with_own_failures(sqs_record("m-1", &body(), 2, None), "Number", "1");
    let payload = json!({"Records": [record]});
    let pipeline = pipeline_with(&connect, &queues, no_turn()).requeue_deferrals(true);
    let reply = connect_identity_sync::handler::handle(&pipeline, &raw(&payload), too_soon())
        .await
        .unwrap();
    assert_eq!(
        reply,
        json!({"batchItemFailures": []}),
        "the copy is queued: the record is acknowledged"
    );
    assert_eq!(connect.count("DescribeUser"), 0, "deferred before any read");
    let copies = queues.requeued.lock().unwrap().clone();
    assert_eq!(copies.len(), 1);
    let copy = &copies[0];
    assert_eq!(copy.queue_arn, "arn:aws:sqs:us-east-1:123456789012:changes");
    assert_eq!(copy.body, body().to_string(), "the body byte for byte");
    assert_eq!(
        copy.occurred_at.map(|t| t.to_rfc3339()),
        Some("2026-03-01T10:00:00.250+00:00".to_owned())
    );
    assert_eq!(
        copy.event_id.as_deref(),
        Some("m-1"),
        "the first copy's messageId stays the change's id"
    );
    assert_eq!(
        copy.own_failures, 2,
        "one carried, one on this copy's first receive"
    );
    assert!(
        (1..=900).contains(&copy.delay_seconds),
        "{}",
        copy.delay_seconds
    );
    assert!(queues.letters.lock().unwrap().is_empty());
}

/// `n` users, each with one change of `LastName`, run at 0.125 update turns a second
/// until `deadline`: the dispositions, and the delays of the copies queued again, in
/// order.
async fn at_one_turn_in_eight_seconds(n: usize, deadline: Instant) -> (Vec<Disposition>, Vec<u32>) {
    let ids: Vec<String> = (1..=n).map(|i| format!("u-{i}")).collect();
    let users: Vec<_> = ids
        .iter()
        .map(|id| {
            (
                id.as_str(),
                id.as_str(),
                info("A", "One", "a@example.com"),
                &[][..],
            )
        })
        .collect();
    let connect = FakeConnect::with_users(&users);
    let queues = FakeQueues::default();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (recs, fifo) = one_change_each(&ids, |_| json!({"LastName": "X"}));
    let d = pipeline_with(&connect, &queues, RateLimits::new(0.125, 1000.0, 1000.0))
        .requeue_deferrals(true)
        .run(&recs, fifo, deadline)
        .await
        .dispositions;
    let mut delays: Vec<u32> = queues
        .requeued
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.delay_seconds)
        .collect();
    delays.sort_unstable();
    (d, delays)
}

#[tokio::test(start_paused = true)]
async fn deferred_records_are_spread_over_the_turns_the_container_gets() {
    // A minute's invocation: the turns at 0, 8, … 56 s apply eight changes (the last
    // users whose turns the container's rate no longer promises are read once their
    // turn is theirs, so the turn at 56 s is not lost to a read that would not fit
    // after it); the other four are deferred, unread, each to come back after the turns
    // of those before it, at the rate the container measured.
    let (d, delays) =
        at_one_turn_in_eight_seconds(12, Instant::now() + Duration::from_secs(60)).await;
    let updated = d.iter().filter(|d| **d == Disposition::Updated).count();
    let deferred = d
        .iter()
        .filter(|d| **d == Disposition::Requeued(HandBack::FleetTurn))
        .count();
    assert_eq!((updated, deferred), (8, 4), "{d:?}");
    assert!(
        delays.windows(2).all(|w| w[1] >= w[0] + 6),
        "a turn apart (8 s, measured with the prior's at about 7, in whole seconds): {delays:?}"
    );
    assert!(
        *delays.last().unwrap() <= 60,
        "within an invocation: {delays:?}"
    );
}

#[tokio::test]
async fn a_deferred_record_comes_back_within_an_invocation_however_far_its_turn() {
    // Three deferred records would wait 8, 16 and 24 s for this container's turns; the
    // invocation lasted half a second, and the fleet's other containers (or this one,
    // in its next invocation) may reach them sooner.
    let (d, delays) = at_one_turn_in_eight_seconds(3, too_soon()).await;
    assert_eq!(d, vec![Disposition::Requeued(HandBack::FleetTurn); 3]);
    // Half a second, in SQS's whole seconds.
    assert_eq!(delays, vec![1, 1, 1]);
}

#[tokio::test]
async fn own_failures_carried_by_a_copy_count_with_its_receives() {
    for (carried, receive_count, expected) in [
        // 2 carried + this first receive = 3: MAX_RECEIVE_COUNT reached.
        (
            Some(("Number", "2")),
            1,
            Disposition::DeadLettered(ErrorClass::ThrottlingException),
        ),
        // Nothing carried: its first failure is handed back.
        (
            None,
            1,
            Disposition::HandedBack(HandBack::Retry(ErrorClass::ThrottlingException)),
        ),
        // An attribute of another type, or not a whole number, counts as none: a sender
        // can never lower a record's count with it.
        (
            Some(("String", "2")),
            1,
            Disposition::HandedBack(HandBack::Retry(ErrorClass::ThrottlingException)),
        ),
        (
            Some(("Number", "-4")),
            2,
            Disposition::HandedBack(HandBack::Retry(ErrorClass::ThrottlingException)),
        ),
        // A huge count only dead-letters sooner.
        (
            Some(("Number", "99999999999999")),
            1,
            Disposition::DeadLettered(ErrorClass::ThrottlingException),
        ),
    ] {
        let connect = one_user();
        connect.fail(
            "UpdateUserIdentityInfo",
            "u-1",
            &[ErrorClass::ThrottlingException; 3],
        );
        let queues = FakeQueues::default();
        let mut record = sqs_record("m-1", &body(), receive_count, None);
        if let Some((data_type, value)) = carried {
            record = with_own_failures(record, data_type, value);
        }
        let (recs, fifo) = records(&json!({"Records": [record]}));
        let d = pipeline(&connect, &queues)
            .requeue_deferrals(true)
            .run(&recs, fifo, Instant::now() + Duration::from_secs(5))
            .await
            .dispositions;
        assert_eq!(d, vec![expected.clone()], "{carried:?} at {receive_count}");
        if let Disposition::DeadLettered(_) = expected {
            let letters = queues.letters.lock().unwrap();
            let own = match carried {
                Some((_, "2")) => 3,
                _ => u32::MAX,
            };
            assert_eq!(
                letters[0].attempts, own,
                "Attempts: the record's own failures"
            );
        }
    }
}

#[tokio::test]
async fn a_fifo_record_whose_turn_cannot_come_is_handed_back_with_its_group() {
    let connect = one_user();
    let queues = FakeQueues::default();
    let (recs, fifo) = records(&json!({"Records": [
        sqs_record("m-1", &body(), 1, Some("g")),
        sqs_record("m-2", &change("u-1", json!({"FirstName": "B"}), "2026-03-01T10:00:01Z"), 1, Some("g")),
    ]}));
    let d = pipeline_with(&connect, &queues, no_turn())
        .requeue_deferrals(true)
        .run(&recs, fifo, too_soon())
        .await
        .dispositions;
    assert_eq!(
        d,
        vec![
            Disposition::HandedBack(HandBack::FleetTurn),
            Disposition::HandedBack(HandBack::GroupOrder)
        ],
        "a copy would go behind the group's later records"
    );
    assert!(queues.requeued.lock().unwrap().is_empty());
    assert_eq!(connect.count("DescribeUser"), 0);
}

#[tokio::test]
async fn a_copy_that_cannot_be_sent_leaves_the_record_handed_back() {
    let connect = one_user();
    let queues = FakeQueues::default();
    *queues.down.lock().unwrap() = true;
    let (recs, fifo) = records(&json!({"Records": [sqs_record("m-1", &body(), 1, None)]}));
    let d = pipeline_with(&connect, &queues, no_turn())
        .requeue_deferrals(true)
        .run(&recs, fifo, too_soon())
        .await
        .dispositions;
    assert_eq!(d, vec![Disposition::HandedBack(HandBack::FleetTurn)]);
}

#[tokio::test]
async fn a_user_whose_turn_the_schedule_already_puts_past_the_deadline_is_not_read() {
    // One turn a minute, the first free: the first user is read and updated; the next
    // turn is a minute away, past the deadline, so the others are not read.
    let connect = three_users();
    let queues = FakeQueues::default();
    let (recs, fifo) = one_change_each(&["u-1", "u-2", "u-3"], |_| json!({"LastName": "X"}));
    let pipeline = pipeline_in_one_lane(&connect, &queues, no_turn()).requeue_deferrals(true);
    let d = pipeline
        .run(&recs, fifo, Instant::now() + Duration::from_secs(1))
        .await
        .dispositions;
    assert_eq!(
        d,
        vec![
            Disposition::Updated,
            Disposition::Requeued(HandBack::FleetTurn),
            Disposition::Requeued(HandBack::FleetTurn),
        ]
    );
    assert_eq!(connect.count("DescribeUser"), 1);
}

#[tokio::test]
async fn a_user_is_read_only_while_its_turn_can_come() {
    // 1 update/s, a 3.5 s deadline less the margin and an attempt's budget: the
    // container counts on about three turns; the fifth user onwards is not read.
    let connect = numbered_users(6, "n", &info("A", "B", "a@example.com"));
    let queues = FakeQueues::default();
    let users: Vec<String> = (1..=6).map(|i| format!("u-{i}")).collect();
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    let (recs, fifo) = one_change_each(&users, |i| json!({"LastName": format!("L{i}")}));
    let report = pipeline_with(&connect, &queues, RateLimits::new(1.0, 1000.0, 1000.0))
        .requeue_deferrals(true)
        .run(&recs, fifo, Instant::now() + Duration::from_millis(3500))
        .await;
    let updated = report
        .dispositions
        .iter()
        .filter(|d| **d == Disposition::Updated)
        .count();
    let deferred = report
        .dispositions
        .iter()
        .filter(|d| matches!(d, Disposition::Requeued(_)))
        .count();
    assert_eq!(updated + deferred, 6, "{:?}", report.dispositions);
    assert!(updated >= 2, "{:?}", report.dispositions);
    assert_eq!(
        connect.count("DescribeUser"),
        updated,
        "every user read was updated: no read for a turn that never came"
    );
}
