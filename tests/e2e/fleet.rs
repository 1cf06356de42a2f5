//! The fleet (issue 20, SPEC §2.4): several long-lived containers of the built binary
//! polling one moto queue through the event source mapping, each with its share of
//! Connect's quota (`CONNECT_RPS_*` = quota/containers) and, as the template sets it, one
//! update rate for the fleet (`CONNECT_FLEET_RPS_UPDATE`), the quotas emulated account-wide
//! (one bucket per operation, shared by every caller), the staleness guard on, another
//! caller drawing on the same `UpdateUserIdentityInfo` bucket at 1.2 updates/s, and
//! containers killed mid-invocation and replaced. Asserted per record and per field: every
//! field ends at its newest change, no good change lands in any dead-letter queue or the
//! source queue's catch-all, and the source queue ends empty.
//!
//! Time is scaled so that a run fits in CI: the visibility timeout just outlasts the
//! function's (the template's is six times it, which only delays redeliveries), and the
//! changes are few enough to apply in about two minutes at Connect's own pace. Quotas can be
//! sped up with `FLEET_SCALE` for a quick look, at the cost of hiding losses (see `SCALE`).

use std::time::Duration;

use harness::connect_emulator::{Fault, Operation};
use harness::{SQS_COPY, Scenario, ScenarioOutcome, TableFault, TableFaultKind};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");

/// Quotas and the other caller run this many times faster than Connect's (`FLEET_SCALE`
/// overrides it). 1, Connect's own pace: the function's back-offs are in real time, and
/// against a faster bucket its retries find tokens that Connect would not have, which hides
/// the very losses this test is for (measured: at 2× and 4× today's main lost nothing, at
/// 1× it dead-lettered good changes).
const SCALE: f64 = 1.0;
/// The other caller's rate before scaling (issue 20: 1.2 of the 2 updates/s).
const OTHER_RATE: f64 = 1.2;

fn scale() -> f64 {
    std::env::var("FLEET_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SCALE)
}

fn scenario(users: usize, changes: usize) -> Scenario {
    let scale = scale();
    // The template's 30 s deadline, scaled; the visibility timeout just outlasts it (the
    // template's is 6 deadlines: that only delays redeliveries).
    let timeout = Duration::from_secs_f64(30.0 / scale);
    Scenario::new(BIN, users, changes)
        .containers(2)
        .scale(scale)
        .other_caller(OTHER_RATE)
        .timeouts(timeout, (timeout.as_secs_f64() * 1.25).ceil() as u32)
        .limit(Duration::from_secs_f64(300.0 / scale.min(2.0)))
}

/// Every assertion of the fleet, each with the run's account.
fn assert_nothing_lost(outcome: &ScenarioOutcome) {
    assert_every_change_applied(outcome);
    assert_quota_shared(outcome);
}

/// Every invocation replied, every field at its newest value, nothing dead-lettered or
/// in the catch-all, the queue drained by every container.
fn assert_every_change_applied(outcome: &ScenarioOutcome) {
    let summary = outcome.summary();
    eprintln!("{summary}");
    let failed = outcome.fleet.failed_invocations();
    assert!(
        failed.is_empty(),
        "invocations failed without being killed: {failed:#?}\n{summary}"
    );
    assert!(
        outcome.stale_fields.is_empty(),
        "{} of {} fields not at their newest change:\n{}\n{summary}",
        outcome.stale_fields.len(),
        outcome.fields,
        outcome.stale_fields.join("\n")
    );
    let classes: Vec<String> = outcome
        .dead_letters
        .iter()
        .map(|(class, m)| format!("{class}: {}", m.len()))
        .collect();
    // Each letter's message and attempts say which path dead-lettered it.
    let letters: Vec<String> = outcome
        .dead_letters
        .values()
        .flatten()
        .map(|m| {
            let attr = |name: &str| {
                m.message_attributes
                    .get(name)
                    .and_then(|a| a.string_value.clone())
                    .unwrap_or_default()
            };
            format!(
                "{} {} attempts {}: {}",
                attr("SourceId"),
                attr("ErrorClass"),
                attr("Attempts"),
                attr("ErrorMessage")
            )
        })
        .collect();
    assert!(
        outcome.dead_letters.is_empty(),
        "good changes dead-lettered by class: {classes:?}\n{}\n{summary}",
        letters.join("\n")
    );
    assert!(
        outcome.catch_all.is_empty(),
        "{} good changes in the source queue's catch-all\n{summary}",
        outcome.catch_all.len()
    );
    assert_eq!(
        outcome.source_depth, 0,
        "the source queue is not empty\n{summary}"
    );
    assert!(
        outcome.fleet.drained,
        "the fleet did not drain the queue\n{summary}"
    );
    assert!(
        outcome
            .fleet
            .slots
            .iter()
            .all(|s| !s.mapping.batches.is_empty()),
        "a container never got a batch\n{summary}"
    );
}

/// The other caller worked and both it and the containers stayed under the throttle
/// bounds.
fn assert_quota_shared(outcome: &ScenarioOutcome) {
    let summary = outcome.summary();
    // The run proves something only if the other caller worked.
    let other = outcome.other.expect("another caller ran");
    assert_eq!(
        other.errors, 0,
        "the other caller's calls failed: {other:?}"
    );
    assert!(other.calls > 0);
    // Sharing, loosely: a bound against regressions, not issue 20's 2 % targets (the bench
    // measures those). Measured here with the fleet's one update rate: the other caller
    // 0–2.7 %, the containers 0.7–1.1 %; with a rate per container, the other caller
    // 6.4–11.5 %, the containers 2.2–3.6 %; before any adaptive rate, 12–30 % and 16–26 %.
    assert!(
        other.throttled_share() <= 0.08,
        "the other caller, alone under the quota, was throttled on {:.1} % of its calls\n{summary}",
        100.0 * other.throttled_share()
    );
    let own = outcome.function_total();
    assert!(
        own.throttled_share() <= 0.08,
        "the containers were throttled on {:.1} % of their calls\n{summary}",
        100.0 * own.throttled_share()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_sharing_the_quota_with_another_caller_leave_every_field_at_its_newest_change()
 {
    let outcome = scenario(25, 8)
        .seed(0x2545_f491_4f6c_dd1d)
        .run()
        .await
        .expect("the stack runs");
    assert_nothing_lost(&outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_killed_mid_invocation_and_replaced_lose_no_change() {
    let outcome = scenario(30, 4)
        .seed(0x9e37_79b9_7f4a_7c15)
        // Killed at different points: early in a batch (reads under way), later (updates
        // under way, leases held), and a replacement killed in its turn.
        .kill(0, 2, Duration::from_millis(300))
        .kill(1, 3, Duration::from_millis(1200))
        .kill(0, 5, Duration::from_millis(2500))
        .run()
        .await
        .expect("the stack runs");
    assert!(
        outcome.fleet.kills() >= 2,
        "fewer kills than planned happened: the test proves less than it says\n{}",
        outcome.summary()
    );
    assert_nothing_lost(&outcome);
}

/// A table that holds every request for the fleet's schedule item (as a throttled or
/// unreachable table looks to the client) for 3 s, three attempt budgets: in 4 s
/// invocations with an attempt budget of 1 s, every reply comes before its deadline,
/// and every change is applied (paced on each container's own share while the schedule
/// is out of reach).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_table_leaves_every_reply_before_its_deadline_and_loses_nothing() {
    let timeout = Duration::from_secs(4);
    let outcome = Scenario::new(BIN, 10, 2)
        .containers(2)
        .timeouts(timeout, 5)
        .limit(Duration::from_secs(150))
        .env("CONNECT_ATTEMPT_TIMEOUT_MS", "1000")
        .table_fault(TableFault::always(
            "fleet-rate#",
            TableFaultKind::Slow(Duration::from_secs(3)),
        ))
        .seed(0x5eed_0001)
        .run()
        .await
        .expect("the stack runs");
    let faults = outcome.table_faults.clone().expect("the proxy ran");
    assert!(
        faults.faulted > 0,
        "no request met the slow table: the test proves nothing\n{}",
        outcome.summary()
    );
    assert_every_change_applied(&outcome);
    // The deadline less the half of the default margin (500 ms) kept for the reply.
    let slowest = outcome.fleet.slowest_reply();
    assert!(
        slowest <= timeout - Duration::from_millis(250),
        "an invocation replied after {slowest:?} of its {timeout:?}\n{}",
        outcome.summary()
    );
}

/// The fleet's schedule item seeded a minute ahead, as a container whose clock runs
/// ahead leaves it: a correct container takes it for a clock error and starts the
/// schedule again from now, instead of handing its records back until it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_instant_a_minute_ahead_does_not_stall_the_fleet() {
    let timeout = Duration::from_secs(10);
    let outcome = Scenario::new(BIN, 10, 3)
        .containers(2)
        .timeouts(timeout, 13)
        .limit(Duration::from_secs(120))
        .schedule_ahead(Duration::from_secs(60))
        .seed(0x5eed_0002)
        .run()
        .await
        .expect("the stack runs");
    assert_every_change_applied(&outcome);
    // The changes are a few per user: a stalled schedule hands back every record of
    // every batch; a working one hands back only what its deadline or a lease left.
    let handed_back = outcome.fleet.handed_back();
    let deliveries = outcome.fleet.deliveries();
    assert!(
        handed_back * 4 <= deliveries,
        "{handed_back} of {deliveries} deliveries handed back\n{}",
        outcome.summary()
    );
}

/// The worst case of a run of throttles: one user whose every update Connect throttles
/// (the emulator's fault for that user), among others, in the fleet. Each of that user's
/// calls drops the fleet's one rate; the bound (docs/decisions.md) is that its records
/// are dead-lettered as `ThrottlingException` after `MAX_RECEIVE_COUNT` deliveries of
/// their own, so the drops they cause are bounded too, and every other change is
/// applied with nothing in the catch-all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_whose_every_update_is_throttled_holds_the_fleet_back_only_so_long() {
    const BAD: &str = "u-0001";
    let timeout = Duration::from_secs(10);
    let outcome = Scenario::new(BIN, 10, 3)
        .containers(2)
        .timeouts(timeout, 13)
        .limit(Duration::from_secs(300))
        .connect_fault(
            Fault::new(
                Operation::UpdateUserIdentityInfo,
                "ThrottlingException",
                10_000,
            )
            .for_user(BAD),
        )
        .seed(0x5eed_0003)
        .run()
        .await
        .expect("the stack runs");
    let summary = outcome.summary();
    eprintln!("{summary}");
    let mut hand_backs: std::collections::BTreeMap<String, usize> = Default::default();
    for id in outcome
        .fleet
        .batches()
        .flat_map(harness::Batch::handed_back)
    {
        *hand_backs.entry(id).or_default() += 1;
    }
    let per_record = hand_backs.values().copied().max().unwrap_or(0);
    eprintln!(
        "worst case: {} fleet rate drops, at most {per_record} hand-backs of one record, drained in {:.1} s",
        outcome.schedule_drops.unwrap_or(0),
        outcome.fleet.elapsed.as_secs_f64()
    );
    // The bound: a user's throttle drops the fleet's rate once per container in the
    // time the rate takes to climb back (two containers here; one more for a throttle
    // of the account's own quota, which the run can meet). Measured in three runs: 2
    // drops, at most 2–3 hand-backs of one record, drained in 38–54 s; before the bound,
    // 5 drops (each delivery of each of the user's records), 4–5 hand-backs, 55–75 s.
    let drops = outcome.schedule_drops.unwrap_or(0);
    assert!(drops <= 3, "{drops} drops of the fleet's rate\n{summary}");
    let stale: Vec<&String> = outcome
        .stale_fields
        .iter()
        .filter(|f| !f.starts_with(&format!("{BAD} ")))
        .collect();
    assert!(stale.is_empty(), "{stale:?}\n{summary}");
    assert!(
        outcome.catch_all.is_empty(),
        "{} records in the catch-all\n{summary}",
        outcome.catch_all.len()
    );
    let classes: Vec<&String> = outcome.dead_letters.keys().collect();
    assert!(
        classes.iter().all(|c| *c == "ThrottlingException"),
        "{classes:?}\n{summary}"
    );
    let throttled = outcome
        .dead_letters
        .get("ThrottlingException")
        .map_or(0, Vec::len);
    assert!(
        throttled > 0,
        "the throttled user's changes were dead-lettered\n{summary}"
    );
    assert_eq!(outcome.source_depth, 0, "{summary}");
    assert!(outcome.fleet.drained, "{summary}");
}

/// Five containers and another caller under a backlog queued at once, which takes the fleet
/// several visibility timeouts to drain (SPEC §2.4: a deferral counts against nothing). The
/// template's receive limits (`MAX_RECEIVE_COUNT` 3, the source queue's `maxReceiveCount` 6)
/// and shares (`CONNECT_RPS_*` = quota/5, one fleet rate); time scaled ×4 (quotas and the
/// other caller four times Connect's, a 7.5 s deadline, a 750 ms attempt timeout, a 30 s
/// climb back after a throttle and a 10 s visibility timeout) so that
/// the run stays within CI's budget. Most records cannot be reached in the invocation that
/// receives them: none of them may reach the catch-all or a dead-letter queue for that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_containers_drain_a_backlog_of_several_visibility_timeouts_without_spending_receives()
{
    let scale = 4.0;
    let timeout = Duration::from_secs_f64(30.0 / scale);
    let outcome = Scenario::new(BIN, 100, 4)
        .containers(5)
        .scale(scale)
        .other_caller(OTHER_RATE)
        .timeouts(timeout, 10)
        // The attempt timeout scaled with the deadline (3 s of 30 s by default), so that
        // an invocation's window for attempts keeps its share of the deadline.
        .env("CONNECT_ATTEMPT_TIMEOUT_MS", "750")
        // The limiters' climb back after a throttle scaled as well (120 s at Connect's
        // pace), so that a drop costs the run the share of its time it would at
        // Connect's pace and the throttle bounds are met at that pace.
        .env("CONNECT_RECOVERY_MS", "30000")
        .seed(0x51_7cc1_b727_220a)
        .limit(Duration::from_secs(420))
        .run()
        .await
        .expect("the stack runs");
    // The backlog must outlast several visibility timeouts, or it proves nothing.
    assert!(
        outcome.fleet.elapsed > Duration::from_secs(40),
        "the backlog drained within four visibility timeouts\n{}",
        outcome.summary()
    );
    assert_nothing_lost(&outcome);
}

/// A deferral never counts as one of a record's own failures, whatever becomes of its copy
/// (SPEC §2.4, §3). Two containers with the fleet's one update rate and another caller,
/// and a backlog that leaves most records of each batch deferred (a 3 s deadline at four
/// times Connect's pace); every copy of a deferred record SQS is asked to take answers
/// 700 ms late (past a dead letter's 250 ms budget, as moto answered under load), and the
/// first fifty are refused. A copy may take until the invocation's dead-letter-by instant;
/// one refused, or not answered by then, leaves its record handed back with its deferral
/// noted in the guard's table. No good change may be dead-lettered or reach the catch-all
/// for it, and every field ends at its newest value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferrals_whose_copies_are_slow_or_refused_spend_none_of_a_records_own_failures() {
    let timeout = Duration::from_secs(3);
    let outcome = Scenario::new(BIN, 60, 3)
        .containers(2)
        .scale(4.0)
        .other_caller(OTHER_RATE)
        .timeouts(timeout, 4)
        .env("CONNECT_ATTEMPT_TIMEOUT_MS", "750")
        // The SDK makes three attempts of a refused send: fifty copies refused.
        .copy_fault(TableFault::times(SQS_COPY, TableFaultKind::Failing, 150))
        .copy_fault(TableFault::always(
            SQS_COPY,
            TableFaultKind::Slow(Duration::from_millis(700)),
        ))
        .seed(0xdefe_2a15_0001)
        .limit(Duration::from_secs(360))
        .run()
        .await
        .expect("the stack runs");
    let summary = outcome.summary();
    let copies = outcome.copy_faults.clone().expect("the proxy ran");
    assert!(
        copies.faulted > 150,
        "only {} copies met a fault: the test proves little\n{summary}",
        copies.faulted
    );
    assert!(
        outcome.fleet.handed_back() > 0,
        "no deferred record was handed back: the test proves nothing\n{summary}"
    );
    assert_every_change_applied(&outcome);
}
