//! The fleet's schedule adapter (`DynamoSchedules`) against moto's DynamoDB over HTTP:
//! the first write creates the item, a write at the version it expects moves it on, a
//! lost race returns the schedule as it stands (so a container needs no read), and a
//! missing table is a failure that names no value.

use connect_identity_sync::limiter::fleet::{Schedules, SharedSchedule, Swap, Throttle};
use connect_identity_sync::outbound::schedules::DynamoSchedules;
use harness::{Moto, WATERMARK_TABLE};

use super::watermarks::{RETENTION, client, moto_with_table};

const KEY: &str = "fleet-rate#UpdateUserIdentityInfo";

fn schedule(version: u64, throttle: Option<Throttle>) -> SharedSchedule {
    SharedSchedule {
        next_us: 1_765_000_000_000_000 + i64::try_from(version).unwrap() * 500_000,
        epoch: u64::from(throttle.is_some()),
        throttle,
        version,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_move_the_schedule_on_by_version_and_a_lost_race_returns_it() {
    let moto = moto_with_table().await;
    let a = DynamoSchedules::new(client(&moto.endpoint()), WATERMARK_TABLE, RETENTION);
    let b = DynamoSchedules::new(client(&moto.endpoint()), WATERMARK_TABLE, RETENTION);

    let first = schedule(1, None);
    assert_eq!(a.write(KEY, None, &first).await, Ok(Swap::Done));
    // b, knowing no schedule yet, loses and learns a's.
    assert_eq!(
        b.write(KEY, None, &schedule(1, None)).await,
        Ok(Swap::Lost(Some(first.clone())))
    );
    let throttled = schedule(
        2,
        Some(Throttle {
            at_us: 1_765_000_000_250_000,
            from: 1.4,
        }),
    );
    assert_eq!(b.write(KEY, Some(1), &throttled).await, Ok(Swap::Done));
    // a still expects version 1: it loses and learns the drop, throttle included.
    assert_eq!(
        a.write(KEY, Some(1), &schedule(2, None)).await,
        Ok(Swap::Lost(Some(throttled.clone())))
    );
    let third = SharedSchedule {
        next_us: throttled.next_us + 714_286,
        version: 3,
        ..throttled.clone()
    };
    assert_eq!(a.write(KEY, Some(2), &third).await, Ok(Swap::Done));
    assert_eq!(
        b.write(KEY, Some(2), &schedule(3, None)).await,
        Ok(Swap::Lost(Some(third)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_a_failure_that_names_no_value() {
    let moto = Moto::start().await.expect("moto");
    let store = DynamoSchedules::new(client(&moto.endpoint()), "no-such-table", RETENTION);
    let err = store
        .write(KEY, None, &schedule(1, None))
        .await
        .expect_err("no table");
    assert!(err.contains("the table does not exist"), "{err}");
    assert!(!err.contains("1765"), "{err}");
}

/// The table's fault proxy in front of moto, as the fleet tests use it: its answers are
/// read by the real SDK as DynamoDB's, per item; faults on the schedule's item leave the
/// users' items alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tables_fault_proxy_answers_as_a_throttled_failing_slow_or_lossy_table_per_item() {
    use harness::{TableFault, TableFaultKind, TableFaultProxy};
    use std::time::{Duration, Instant};

    let moto = moto_with_table().await;
    let proxy = TableFaultProxy::start(moto.endpoint().trim_start_matches("http://"))
        .await
        .expect("proxy");
    // No SDK retries: each write is one request, so each fault is seen as it is.
    let store = DynamoSchedules::new(client(&proxy.endpoint()), WATERMARK_TABLE, RETENTION);
    for (kind, says) in [
        (
            TableFaultKind::ProvisionedThroughputExceeded,
            "DynamoDB throttled the request",
        ),
        (TableFaultKind::Throttling, "DynamoDB throttled the request"),
        (TableFaultKind::Failing, "DynamoDB failed internally"),
    ] {
        proxy.add(TableFault::times("fleet-rate#", kind, 1));
        let failed = store.write(KEY, None, &schedule(1, None)).await;
        assert!(
            failed.as_ref().is_err_and(|e| e.contains(says)),
            "{failed:?}"
        );
    }
    // A fault on the schedule's item only: another item's request passes.
    proxy.add(TableFault::times("fleet-rate#", TableFaultKind::Failing, 1));
    assert_eq!(
        store.write("other#item", None, &schedule(1, None)).await,
        Ok(Swap::Done)
    );
    proxy.clear();
    // Held 1.5 s, then carried out.
    proxy.add(TableFault::times(
        "fleet-rate#",
        TableFaultKind::Slow(Duration::from_millis(1500)),
        1,
    ));
    let start = Instant::now();
    assert_eq!(
        store.write(KEY, None, &schedule(1, None)).await,
        Ok(Swap::Done)
    );
    assert!(start.elapsed() >= Duration::from_millis(1500));
    // Carried out, and the reply lost: the client sees a failure, the table the write.
    proxy.add(TableFault::times(
        "fleet-rate#",
        TableFaultKind::LoseReply,
        1,
    ));
    assert!(store.write(KEY, Some(1), &schedule(2, None)).await.is_err());
    assert_eq!(
        store.write(KEY, Some(1), &schedule(2, None)).await,
        Ok(Swap::Lost(Some(schedule(2, None)))),
        "the lost write landed"
    );
    // Three answered, one held, one lost; the other item's request and the last passed.
    let counts = proxy.counts();
    assert_eq!((counts.faulted, counts.passed), (5, 2), "{counts:?}");
}
