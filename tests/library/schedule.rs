//! The fleet's shared update schedule in the pipeline, over an in-memory table that can
//! hold a request without answering or refuse a write: every request to it ends by the
//! invocation's instants, an update whose turn came too late is not started, and a
//! throttle whose drop cannot be written lowers the container's own rate instead.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::ports::PortFuture;
use connect_identity_sync::domain::record::{Disposition, HandBack};
use connect_identity_sync::limiter::fleet::{Schedules, SharedSchedule, Swap};
use connect_identity_sync::pipeline::RateLimits;
use serde_json::json;
use tokio::time::Instant;

/// How the table answers a write.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// As DynamoDB does.
    Answer,
    /// Holds every request and never answers (a throttled or unreachable table, as the
    /// client sees it).
    Hold,
    /// Answers claims, fails every write that drops the rate.
    FailDrops,
}

struct Table {
    mode: Mode,
    item: Mutex<Option<SharedSchedule>>,
    writes: Mutex<u32>,
}

impl Table {
    fn new(mode: Mode) -> Arc<Self> {
        Arc::new(Table {
            mode,
            item: Mutex::new(None),
            writes: Mutex::new(0),
        })
    }
}

impl Schedules for Table {
    fn write<'a>(
        &'a self,
        _key: &'a str,
        expected: Option<u64>,
        schedule: &'a SharedSchedule,
    ) -> PortFuture<'a, Result<Swap, String>> {
        Box::pin(async move {
            *self.writes.lock().unwrap() += 1;
            match self.mode {
                Mode::Hold => std::future::pending::<()>().await,
                Mode::FailDrops if schedule.epoch > 0 => {
                    return Err("ProvisionedThroughputExceededException".to_owned());
                }
                _ => {}
            }
            let mut item = self.item.lock().unwrap();
            Ok(Swap::conditional(&mut item, expected, schedule))
        })
    }
}

fn two_users() -> FakeConnect {
    FakeConnect::with_users(&[
        ("u-1", "a", info("A", "One", "a@example.com"), &[]),
        ("u-2", "b", info("B", "Two", "b@example.com"), &[]),
    ])
}

#[tokio::test]
async fn a_table_that_holds_every_schedule_request_leaves_the_reply_before_the_deadline() {
    let connect = two_users();
    let queues = FakeQueues::default();
    let table = Table::new(Mode::Hold);
    let limits = RateLimits::new(1000.0, 1000.0, 1000.0).with_fleet_update(table.clone(), 2.0);
    let payload = json!({"Records": [
        sqs_record("m-1", &change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:01Z"), 1, None),
        sqs_record("m-2", &change("u-2", json!({"LastName": "Jones"}), "2026-11-29T10:00:01Z"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(2);
    let settings = settings();
    let pipeline = pipeline_with(&connect, &queues, limits);
    let report = tokio::time::timeout(Duration::from_secs(10), pipeline.run(&recs, fifo, deadline))
        .await
        .expect("the run ends: no request to the table outlasts the invocation");
    let took = start.elapsed();
    // The release half of the margin is the reply's.
    assert!(
        Instant::now() <= deadline - settings.deadline_margin / 2,
        "replied {took:?} after the start of a 2 s invocation"
    );
    // The schedule was asked three times in a row (a busy table's one late answer is
    // written again), each within one attempt budget, then left alone: both updates
    // were paced on the container's own limiter and made.
    assert_eq!(*table.writes.lock().unwrap(), 3);
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(
        report.dispositions,
        vec![Disposition::Updated, Disposition::Updated]
    );
    // No update attempt started after the last attempt start.
    let last_attempt = deadline - settings.deadline_margin - settings.call_budget;
    for at in connect.starts_of("UpdateUserIdentityInfo") {
        assert!(at <= last_attempt);
    }
}

#[tokio::test]
async fn a_throttle_whose_drop_cannot_be_written_lowers_the_containers_own_rate() {
    let connect = two_users();
    connect.fail(
        "UpdateUserIdentityInfo",
        "u-1",
        &[ErrorClass::ThrottlingException],
    );
    let queues = FakeQueues::default();
    let table = Table::new(Mode::FailDrops);
    // The container's own share: 1/s. Its next token is due at once until a throttle
    // drops it (to 0.7/s, and the next request waits one period: about 1.4 s).
    let limits = RateLimits::new(1.0, 1000.0, 1000.0).with_fleet_update(table.clone(), 100.0);
    let payload = json!({"Records": [
        sqs_record("m-1", &change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:01Z"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let report = pipeline_with(&connect, &queues, limits)
        .run(&recs, fifo, in_seconds(5))
        .await;
    assert_eq!(report.dispositions, vec![Disposition::Updated]);
    let starts = connect.starts_of("UpdateUserIdentityInfo");
    assert_eq!(starts.len(), 2, "the throttled attempt and its retry");
    let gap = starts[1] - starts[0];
    // Unlowered, the retry would start after its 100 ms back-off.
    assert!(
        gap >= Duration::from_millis(1300),
        "the retry came {gap:?} after the throttle: the container's own rate was not lowered"
    );
    assert!(
        table.item.lock().unwrap().as_ref().unwrap().epoch == 0,
        "the drop was not written"
    );
}

fn now_us() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_schedule_instant_a_minute_ahead_is_a_clock_error_and_the_update_is_made() {
    let connect = two_users();
    let queues = FakeQueues::default();
    let table = Table::new(Mode::Answer);
    // Written by a container whose clock runs a minute ahead. The longest wait the
    // schedule asks for at 2/s is the respite after a drop at its lowest rate (0.1/s):
    // 20 s.
    *table.item.lock().unwrap() = Some(SharedSchedule {
        next_us: now_us() + 60_000_000,
        epoch: 3,
        throttle: None,
        version: 41,
    });
    let limits = RateLimits::new(1000.0, 1000.0, 1000.0).with_fleet_update(table.clone(), 2.0);
    let payload = json!({"Records": [
        sqs_record("m-1", &change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:01Z"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let report = pipeline_with(&connect, &queues, limits)
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(report.dispositions, vec![Disposition::Updated]);
    let stored = table.item.lock().unwrap().clone().unwrap();
    assert!(stored.version > 41, "the schedule started again from now");
    assert!(stored.next_us < now_us() + 2_000_000, "{stored:?}");
}

/// A pipeline on a fleet schedule in `table` of `fleet_rps`, the container's share a
/// twentieth of it (its turns are not promised within a few seconds), its users one at
/// a time.
fn one_lane_on_the_fleet<'a>(
    connect: &'a FakeConnect,
    queues: &'a FakeQueues,
    table: &Arc<Table>,
    fleet_rps: f64,
) -> connect_identity_sync::pipeline::Pipeline<&'a FakeConnect, &'a FakeQueues> {
    let limits = RateLimits::new(fleet_rps / 20.0, 1000.0, 1000.0)
        .with_fleet_update(table.clone(), fleet_rps);
    pipeline_in_one_lane(connect, queues, limits)
}

/// The fleet's next instant, `ahead` from now, as another container left it.
fn next_instant_in(table: &Table, ahead: Duration) {
    *table.item.lock().unwrap() = Some(SharedSchedule {
        next_us: now_us() + i64::try_from(ahead.as_micros()).unwrap(),
        epoch: 0,
        throttle: None,
        version: 7,
    });
}

#[tokio::test]
async fn a_user_whose_turn_the_fleet_does_not_give_in_time_is_not_read_even_first_in_line() {
    // The fleet's next instant is 5 s away and the invocation lasts 2 s: the container's
    // turns promise nothing, so its first user claims its turn before its read, gets
    // none and is deferred unread (read first, it would be read again when it comes
    // back).
    let connect = two_users();
    let queues = FakeQueues::default();
    let table = Table::new(Mode::Answer);
    next_instant_in(&table, Duration::from_secs(5));
    let payload = json!({"Records": [
        sqs_record("m-1", &change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:01Z"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let report = one_lane_on_the_fleet(&connect, &queues, &table, 2.0)
        .run(&recs, fifo, in_seconds(2))
        .await;
    assert!(
        matches!(
            report.dispositions[..],
            [Disposition::HandedBack(HandBack::FleetTurn)]
        ),
        "{:?}",
        report.dispositions
    );
    assert_eq!(connect.count("DescribeUser"), 0, "deferred before its read");
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 0);
}

#[tokio::test]
async fn a_turn_claimed_for_a_user_that_needs_no_update_goes_to_the_next_user() {
    // Three users, the second's change already applied. Each is read after its turn is
    // claimed (ahead of the turn's point: the fleet's next instant is a second away);
    // the second finds nothing to update and its turn goes to the third: two turns
    // claimed for two updates, each user read once.
    let connect = three_users();
    let queues = FakeQueues::default();
    let table = Table::new(Mode::Answer);
    next_instant_in(&table, Duration::from_secs(1));
    let at = "2026-11-29T10:00:01Z";
    let payload = json!({"Records": [
        sqs_record("m-1", &change("u-1", json!({"LastName": "Smith"}), at), 1, None),
        sqs_record("m-2", &change("u-2", json!({"LastName": "Two"}), at), 1, None),
        sqs_record("m-3", &change("u-3", json!({"LastName": "Jones"}), at), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let report = one_lane_on_the_fleet(&connect, &queues, &table, 1.0)
        .run(&recs, fifo, in_seconds(6))
        .await;
    assert_eq!(
        report.dispositions,
        vec![
            Disposition::Updated,
            Disposition::Unchanged,
            Disposition::Updated
        ]
    );
    assert_eq!(connect.count("DescribeUser"), 3);
    // Two claims on the schedule left at version 7 (the container's first write, which
    // knew no schedule, lost and learned it).
    let stored = table.item.lock().unwrap().clone().unwrap();
    assert_eq!(
        stored.version, 9,
        "the second user's turn was not given to the third"
    );
}
