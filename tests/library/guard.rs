//! The staleness guard in the pipeline over in-memory ports: a lease held elsewhere and a
//! failed watermark write hand the records back, a failed update moves no watermark, a
//! refused change moves none for its fields, and changes in one invocation are screened
//! against the stored watermarks while keeping their own order.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::common::*;
use chrono::{DateTime, Utc};
use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::identity::{Field, InstanceId, UserId};
use connect_identity_sync::domain::ports::{CallFailure, Lease, Leased, Reach, Watermarks};
use connect_identity_sync::domain::record::{Disposition, HandBack};
use connect_identity_sync::domain::watermark::FieldWatermarks;
use connect_identity_sync::outbound::watermarks::item_key;
use serde_json::json;
use tokio::time::{Duration, Instant};

/// Watermarks in memory; scripted to refuse leases or writes.
#[derive(Default)]
struct FakeTable {
    items: Mutex<HashMap<String, FieldWatermarks>>,
    held: Mutex<HashMap<String, String>>,
    refuse_leases: Mutex<bool>,
    /// Another invocation holds every lease until then.
    held_elsewhere_until: Mutex<Option<Instant>>,
    fail_writes: Mutex<bool>,
    /// The lease request lands (lease and intent written) but its reply never comes.
    lose_lease_replies: Mutex<bool>,
    acquires: Mutex<u32>,
    /// Each release: the lease key and what it wrote.
    releases: Mutex<Vec<(String, Option<FieldWatermarks>)>>,
    /// Per item, the intents of leases not released yet (owner, times).
    intents: Mutex<HashMap<String, Vec<(String, FieldWatermarks)>>>,
    /// Per SQS message, the receives noted as deferrals.
    notes: Mutex<HashMap<String, std::collections::BTreeSet<u32>>>,
    /// Notes are refused (a table throttling).
    fail_notes: Mutex<bool>,
    /// Reads of the notes made.
    note_reads: Mutex<u32>,
}

impl Watermarks for &FakeTable {
    async fn acquire(
        &self,
        instance: &InstanceId,
        user: &UserId,
        until: DateTime<Utc>,
        intent: &FieldWatermarks,
    ) -> Result<Option<Leased>, CallFailure> {
        *self.acquires.lock().unwrap() += 1;
        let key = item_key(instance, user);
        let held_elsewhere = self
            .held_elsewhere_until
            .lock()
            .unwrap()
            .is_some_and(|until| Instant::now() < until);
        if *self.refuse_leases.lock().unwrap()
            || held_elsewhere
            || self.held.lock().unwrap().contains_key(&key)
        {
            return Ok(None);
        }
        let owner = format!("lease-{}", self.acquires.lock().unwrap());
        self.held.lock().unwrap().insert(key.clone(), owner.clone());
        let watermarks = self
            .items
            .lock()
            .unwrap()
            .get(&key)
            .cloned()
            .unwrap_or_default();
        let mut intents = self.intents.lock().unwrap();
        let left = intents.entry(key.clone()).or_default();
        let unsettled = left.clone();
        left.push((owner.clone(), intent.clone()));
        if *self.lose_lease_replies.lock().unwrap() {
            return Err(CallFailure::new(
                ErrorClass::UnknownError,
                "staleness guard: taking the lease failed: a timeout",
            ));
        }
        let unsettled_marks = unsettled
            .iter()
            .fold(FieldWatermarks::default(), |all, (_, m)| all.max(m));
        Ok(Some(Leased {
            lease: Lease {
                key,
                owner,
                until,
                unsettled,
            },
            watermarks,
            unsettled: unsettled_marks,
        }))
    }

    async fn release(
        &self,
        lease: &Lease,
        advanced: Option<&FieldWatermarks>,
    ) -> Result<(), CallFailure> {
        self.releases
            .lock()
            .unwrap()
            .push((lease.key.clone(), advanced.cloned()));
        if *self.fail_writes.lock().unwrap() {
            return Err(CallFailure::new(
                ErrorClass::UnknownError,
                "staleness guard: writing the watermarks failed: DynamoDB throttled the request",
            ));
        }
        self.held.lock().unwrap().remove(&lease.key);
        if let Some(left) = self.intents.lock().unwrap().get_mut(&lease.key) {
            left.retain(|(owner, intent)| {
                *owner != lease.owner
                    && !advanced.is_some_and(|marks| {
                        Field::ALL.into_iter().all(|f| {
                            intent
                                .get(f)
                                .is_none_or(|at| marks.get(f).is_some_and(|m| m >= at))
                        })
                    })
            });
        }
        if let Some(marks) = advanced {
            let mut items = self.items.lock().unwrap();
            let entry = items.entry(lease.key.clone()).or_default();
            *entry = std::mem::take(entry).max(marks);
        }
        Ok(())
    }

    async fn note_deferral(&self, message_id: &str, receive: u32) -> Result<(), CallFailure> {
        if *self.fail_notes.lock().unwrap() {
            return Err(CallFailure::new(
                ErrorClass::UnknownError,
                "staleness guard: noting a deferral failed: DynamoDB throttled the request",
            ));
        }
        self.notes
            .lock()
            .unwrap()
            .entry(message_id.to_owned())
            .or_default()
            .insert(receive);
        Ok(())
    }

    async fn deferrals(&self, message_id: &str) -> Result<Vec<u32>, CallFailure> {
        *self.note_reads.lock().unwrap() += 1;
        Ok(self
            .notes
            .lock()
            .unwrap()
            .get(message_id)
            .map(|n| n.iter().copied().collect())
            .unwrap_or_default())
    }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn key(user: &str) -> String {
    format!("{INSTANCE}#{user}")
}

fn jane() -> FakeConnect {
    FakeConnect::with_users(&[("u-1", "jdoe", info("Jane", "Doe", "jane@example.com"), &[])])
}

// Paused time: the waits below are tokio's timer, advanced at once.
#[tokio::test(start_paused = true)]
async fn a_lease_held_elsewhere_is_waited_for_and_the_change_applied_once_it_is_free() {
    let connect = jane();
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    let start = Instant::now();
    *table.held_elsewhere_until.lock().unwrap() = Some(start + Duration::from_secs(4));
    let payload = json!({"Records": [
        sqs_record("m-1", &change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:01Z"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(report.dispositions, vec![Disposition::Updated]);
    assert!(start.elapsed() >= Duration::from_secs(4));
    let acquires = *table.acquires.lock().unwrap();
    assert!(acquires > 2, "asked for again while held: {acquires}");
    assert_eq!(connect.user("u-1").last_name.as_deref(), Some("Smith"));
}

#[tokio::test(start_paused = true)]
async fn a_lease_held_until_the_deadline_hands_the_records_back_whatever_their_receive_count() {
    let connect = jane();
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    *table.refuse_leases.lock().unwrap() = true;
    // At the last receive count (MAX_RECEIVE_COUNT = 3 in these settings): a lease held
    // elsewhere is no failure of the record's own, so it is not dead-lettered.
    let payload = json!({"Records": [
        sqs_record("m-1", &change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:01Z"), 3, None),
        sqs_record("m-2", &change("u-1", json!({"FirstName": "Janet"}), "2026-11-29T10:00:02Z"), 5, None),
    ]});
    let (recs, fifo) = records(&payload);
    let start = Instant::now();
    let deadline = in_seconds(10);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, deadline)
        .await;
    assert_eq!(
        report.dispositions,
        vec![Disposition::HandedBack(HandBack::LeaseHeld); 2]
    );
    assert!(
        queues.letters.lock().unwrap().is_empty(),
        "nothing dead-lettered"
    );
    // Asked for until the latest start (the deadline less the margin and one attempt).
    let settings = settings();
    let latest_start = deadline - settings.deadline_margin - settings.call_budget;
    assert!(Instant::now() >= latest_start, "{:?}", start.elapsed());
    assert!(Instant::now() < deadline);
    let acquires = *table.acquires.lock().unwrap();
    assert_eq!(report.watermark_requests, acquires);
    assert!(acquires > 5, "{acquires}");
    assert_eq!(connect.count("DescribeUser"), 0, "nothing read unguarded");
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 0);
}

#[tokio::test]
async fn watermarks_that_cannot_be_written_after_an_update_hand_the_record_back() {
    let connect = jane();
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    *table.fail_writes.lock().unwrap() = true;
    let payload = json!({"Records": [
        sqs_record("m-1", &change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:01Z"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(
        report.dispositions,
        vec![Disposition::HandedBack(HandBack::Retry(
            ErrorClass::UnknownError
        ))]
    );
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 1);
    assert_eq!(connect.user("u-1").last_name.as_deref(), Some("Smith"));

    // Delivered again once the table is back: no update, and the watermark is written.
    *table.fail_writes.lock().unwrap() = false;
    table.held.lock().unwrap().clear(); // the lease lapsed
    let again = json!({"Records": [
        sqs_record("m-1", &change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:01Z"), 2, None),
    ]});
    let (recs, fifo) = records(&again);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(report.dispositions, vec![Disposition::Unchanged]);
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 1);
    assert_eq!(
        table.items.lock().unwrap()[&key("u-1")].get(Field::LastName),
        Some(t("2026-11-29T10:00:01Z"))
    );
}

#[tokio::test]
async fn a_failed_update_moves_no_watermark_and_gives_the_lease_back() {
    let connect = jane();
    connect.fail(
        "UpdateUserIdentityInfo",
        "u-1",
        &[ErrorClass::InvalidParameterException],
    );
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    let payload = json!({"Records": [
        sqs_record("m-1", &change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:01Z"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(
        report.dispositions,
        vec![Disposition::DeadLettered(
            ErrorClass::InvalidParameterException
        )]
    );
    assert_eq!(
        *table.releases.lock().unwrap(),
        vec![(key("u-1"), None)],
        "released, nothing written"
    );
    assert!(table.held.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_update_of_unknown_outcome_keeps_the_lease_until_it_lapses() {
    let connect = jane();
    connect.fail_reaching(
        "UpdateUserIdentityInfo",
        "u-1",
        &[(ErrorClass::UnknownError, Reach::Unknown)],
    );
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    let payload = json!({"Records": [
        sqs_record("m-1", &change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:01Z"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let guarded = pipeline(&connect, &queues).with_watermarks(Some(&table));
    let report = guarded.run(&recs, fifo, in_seconds(10)).await;
    assert_eq!(
        report.dispositions,
        vec![Disposition::HandedBack(HandBack::Retry(
            ErrorClass::UnknownError
        ))],
        "never updated, never one of Connect's errors"
    );
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 1, "not sent again");
    assert!(
        table.releases.lock().unwrap().is_empty(),
        "the lease is not given back"
    );
    assert!(table.held.lock().unwrap().contains_key(&key("u-1")));
    assert!(table.items.lock().unwrap().is_empty(), "no watermark moves");

    // A newer change to the user is not applied while the request could still land.
    let newer = json!({"Records": [
        sqs_record("m-2", &change("u-1", json!({"LastName": "Newer"}), "2026-11-29T10:00:09Z"), 1, None),
    ]});
    let (recs, fifo) = records(&newer);
    let report = guarded.run(&recs, fifo, in_seconds(3)).await;
    assert_eq!(
        report.dispositions,
        vec![Disposition::HandedBack(HandBack::LeaseHeld)]
    );
    assert_eq!(
        report.watermark_requests, 0,
        "a lease this container keeps is not waited for"
    );
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 1);
}

#[tokio::test]
async fn a_refused_change_moves_no_watermark_for_its_fields() {
    let connect = jane();
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    let payload = json!({"Records": [
        sqs_record("m-email", &change("u-1", json!({"Email": "jane@evil.test"}), "2026-11-29T10:00:02Z"), 1, None),
        sqs_record("m-name", &change("u-1", json!({"FirstName": "Janet"}), "2026-11-29T10:00:01Z"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(
        report.dispositions,
        vec![
            Disposition::DeadLettered(ErrorClass::PolicyViolation),
            Disposition::Updated
        ]
    );
    let marks = table.items.lock().unwrap()[&key("u-1")].clone();
    assert_eq!(marks.get(Field::FirstName), Some(t("2026-11-29T10:00:01Z")));
    assert_eq!(
        marks.get(Field::Email),
        None,
        "a refused change is not applied"
    );
}

#[tokio::test]
async fn in_one_invocation_a_stale_change_is_dropped_and_a_newer_one_applies() {
    let connect = jane();
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    table.items.lock().unwrap().insert(
        key("u-1"),
        FieldWatermarks::default().with(Field::LastName, t("2026-11-29T10:00:05Z")),
    );
    let payload = json!({"Records": [
        sqs_record("m-stale", &change("u-1", json!({"LastName": "Old"}), "2026-11-29T10:00:01Z"), 1, None),
        sqs_record("m-new", &change("u-1", json!({"LastName": "New"}), "2026-11-29T10:00:09Z"), 1, None),
        sqs_record("m-part", &change("u-1", json!({"LastName": "Older", "FirstName": "Jo"}), "2026-11-29T10:00:02Z"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(
        report.dispositions,
        vec![
            Disposition::Unchanged,
            Disposition::Updated,
            Disposition::Updated
        ]
    );
    assert_eq!(report.superseded, 1);
    assert_eq!(report.watermark_requests, 2);
    let user = connect.user("u-1");
    assert_eq!(user.last_name.as_deref(), Some("New"));
    assert_eq!(user.first_name.as_deref(), Some("Jo"));
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 1);
    let marks = table.items.lock().unwrap()[&key("u-1")].clone();
    assert_eq!(marks.get(Field::LastName), Some(t("2026-11-29T10:00:09Z")));
    assert_eq!(marks.get(Field::FirstName), Some(t("2026-11-29T10:00:02Z")));
}

#[tokio::test]
async fn a_wholly_superseded_change_ends_unchanged_whatever_the_reads_of_a_fresh_one_come_to() {
    let connect = jane();
    connect.fail(
        "DescribeUser",
        "u-1",
        &[ErrorClass::InvalidRequestException],
    );
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    table.items.lock().unwrap().insert(
        key("u-1"),
        FieldWatermarks::default().with(Field::LastName, t("2026-11-29T10:00:05Z")),
    );
    let payload = json!({"Records": [
        sqs_record("m-stale", &change("u-1", json!({"LastName": "Old"}), "2026-11-29T10:00:01Z"), 1, None),
        sqs_record("m-fresh", &change("u-1", json!({"FirstName": "Jo"}), "2026-11-29T10:00:09Z"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    // The stale change was settled by the watermarks before the reads: it does not share
    // the fresh change's failed read, and `Superseded` counts only what ended unchanged.
    assert_eq!(
        report.dispositions,
        vec![
            Disposition::Unchanged,
            Disposition::DeadLettered(ErrorClass::InvalidRequestException)
        ]
    );
    assert_eq!(report.superseded, 1);
    let letters = queues.letters.lock().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].source_id, "m-fresh");
}

#[tokio::test]
async fn superseded_counts_no_record_that_ends_otherwise() {
    let connect = jane();
    connect.fail(
        "DescribeUser",
        "u-1",
        &[ErrorClass::InternalServiceException; 3],
    );
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    table.items.lock().unwrap().insert(
        key("u-1"),
        FieldWatermarks::default().with(Field::LastName, t("2026-11-29T10:00:05Z")),
    );
    // FIFO: the fresh change comes first in its group and is handed back (its read
    // failed); the stale change behind it is handed back with it, so it does not end
    // unchanged and is not counted.
    let payload = json!({"Records": [
        sqs_record("m-fresh", &change("u-1", json!({"FirstName": "Jo"}), "2026-11-29T10:00:09Z"), 1, Some("g")),
        sqs_record("m-stale", &change("u-1", json!({"LastName": "Old"}), "2026-11-29T10:00:01Z"), 1, Some("g")),
    ]});
    let (recs, fifo) = records(&payload);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(
        report.dispositions,
        vec![
            Disposition::HandedBack(HandBack::Retry(ErrorClass::InternalServiceException)),
            Disposition::HandedBack(HandBack::GroupOrder)
        ]
    );
    assert_eq!(report.superseded, 0);
}

#[tokio::test]
async fn after_an_update_whose_release_failed_an_older_change_does_not_overwrite_it() {
    let connect = jane();
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    *table.fail_writes.lock().unwrap() = true;
    let newer = json!({"Records": [
        sqs_record("m-new", &change("u-1", json!({"LastName": "New"}), "2026-11-29T10:00:09Z"), 1, None),
    ]});
    let (recs, fifo) = records(&newer);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(
        report.dispositions,
        vec![Disposition::HandedBack(HandBack::Retry(
            ErrorClass::UnknownError
        ))]
    );
    assert_eq!(connect.user("u-1").last_name.as_deref(), Some("New"));

    // The lease lapses; the table answers again; a delayed older change comes first.
    *table.fail_writes.lock().unwrap() = false;
    table.held.lock().unwrap().clear();
    let older = json!({"Records": [
        sqs_record("m-old", &change("u-1", json!({"LastName": "Old", "FirstName": "Janet"}), "2026-11-29T10:00:05Z"), 1, None),
    ]});
    let (recs, fifo) = records(&older);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    // Its LastName is older than what the unreleased lease may have applied: dropped;
    // its FirstName, which that lease did not touch, applies.
    assert_eq!(report.dispositions, vec![Disposition::Updated]);
    let user = connect.user("u-1");
    assert_eq!(user.last_name.as_deref(), Some("New"), "not overwritten");
    assert_eq!(user.first_name.as_deref(), Some("Janet"));

    // The newer change delivered again: found in place, its watermark written, and the
    // intent it left behind is gone.
    let again = json!({"Records": [
        sqs_record("m-new", &change("u-1", json!({"LastName": "New"}), "2026-11-29T10:00:09Z"), 2, None),
    ]});
    let (recs, fifo) = records(&again);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(report.dispositions, vec![Disposition::Unchanged]);
    assert_eq!(
        table.items.lock().unwrap()[&key("u-1")].get(Field::LastName),
        Some(t("2026-11-29T10:00:09Z"))
    );
    assert!(table.intents.lock().unwrap()[&key("u-1")].is_empty());
}

fn with_id(mut change: serde_json::Value, id: &str) -> serde_json::Value {
    change["EventId"] = json!(id);
    change
}

#[tokio::test]
async fn a_lease_left_unreleased_does_not_hold_off_the_changes_it_was_taken_for() {
    // Two changes of one field in one lease request that landed but whose reply was
    // lost: the lease and its intent (the newer change's time) stay behind.
    let connect = jane();
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    *table.lose_lease_replies.lock().unwrap() = true;
    let both = |count| {
        json!({"Records": [
            sqs_record("m-old", &with_id(change("u-1", json!({"LastName": "Older"}), "2026-11-29T10:00:05Z"), "e-old"), count, None),
            sqs_record("m-new", &with_id(change("u-1", json!({"LastName": "Newer", "FirstName": "Janet"}), "2026-11-29T10:00:09Z"), "e-new"), count, None),
        ]})
    };
    let payload = both(1);
    let (recs, fifo) = records(&payload);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(
        report.dispositions,
        vec![Disposition::HandedBack(HandBack::Retry(ErrorClass::UnknownError)); 2]
    );
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 0);

    // The lease lapses; both come again together: judged as if the intent were not
    // there, each on its own, coalesced in OccurredAt order (none superseded).
    *table.lose_lease_replies.lock().unwrap() = false;
    table.held.lock().unwrap().clear();
    let payload = both(2);
    let (recs, fifo) = records(&payload);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(
        report.dispositions,
        vec![Disposition::Updated, Disposition::Updated],
        "the older change is not superseded by its own lease's intent"
    );
    assert_eq!(report.superseded, 0);
    let user = connect.user("u-1");
    assert_eq!(user.last_name.as_deref(), Some("Newer"));
    assert_eq!(user.first_name.as_deref(), Some("Janet"));
    assert!(table.intents.lock().unwrap()[&key("u-1")].is_empty());
}

#[tokio::test]
async fn an_older_change_of_an_unreleased_lease_alone_does_not_overwrite_the_newer_one() {
    // One lease applied an older and a newer change of one field, then its release
    // failed: the older one, delivered again without the newer one, is held off.
    let connect = jane();
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    *table.fail_writes.lock().unwrap() = true;
    let payload = json!({"Records": [
        sqs_record("m-old", &with_id(change("u-1", json!({"LastName": "Older"}), "2026-11-29T10:00:05Z"), "e-old"), 1, None),
        sqs_record("m-new", &with_id(change("u-1", json!({"LastName": "Newer"}), "2026-11-29T10:00:09Z"), "e-new"), 1, None),
    ]});
    let (recs, fifo) = records(&payload);
    pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(connect.user("u-1").last_name.as_deref(), Some("Newer"));

    *table.fail_writes.lock().unwrap() = false;
    table.held.lock().unwrap().clear();
    let payload = json!({"Records": [
        sqs_record("m-old", &with_id(change("u-1", json!({"LastName": "Older"}), "2026-11-29T10:00:05Z"), "e-old"), 2, None),
    ]});
    let (recs, fifo) = records(&payload);
    let report = pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    assert_eq!(report.dispositions, vec![Disposition::Unchanged]);
    assert_eq!(report.superseded, 1);
    assert_eq!(connect.user("u-1").last_name.as_deref(), Some("Newer"));
}

#[tokio::test]
async fn a_refused_email_of_an_unreleased_lease_holds_off_no_older_change() {
    // Two Emails the allowlist refuses, in one lease request that landed but whose reply
    // was lost. They come back one at a time: each is refused and dead-lettered, none
    // ends superseded by the intent the lost lease left behind.
    let connect = jane();
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    *table.lose_lease_replies.lock().unwrap() = true;
    let older = |count| {
        sqs_record(
            "m-a",
            &with_id(
                change(
                    "u-1",
                    json!({"Email": "a@elsewhere.test"}),
                    "2026-11-29T10:00:05Z",
                ),
                "e-a",
            ),
            count,
            None,
        )
    };
    let newer = |count| {
        sqs_record(
            "m-b",
            &with_id(
                change(
                    "u-1",
                    json!({"Email": "b@elsewhere.test"}),
                    "2026-11-29T10:00:09Z",
                ),
                "e-b",
            ),
            count,
            None,
        )
    };
    let payload = json!({"Records": [older(1), newer(1)]});
    let (recs, fifo) = records(&payload);
    pipeline(&connect, &queues)
        .with_watermarks(Some(&table))
        .run(&recs, fifo, in_seconds(10))
        .await;
    *table.lose_lease_replies.lock().unwrap() = false;
    table.held.lock().unwrap().clear();
    for record in [older(2), newer(2)] {
        let payload = json!({"Records": [record]});
        let (recs, fifo) = records(&payload);
        let report = pipeline(&connect, &queues)
            .with_watermarks(Some(&table))
            .run(&recs, fifo, in_seconds(10))
            .await;
        assert_eq!(
            report.dispositions,
            vec![Disposition::DeadLettered(ErrorClass::PolicyViolation)]
        );
        assert_eq!(report.superseded, 0);
    }
    assert_eq!(queues.letters.lock().unwrap().len(), 2);
    assert_eq!(connect.count("UpdateUserIdentityInfo"), 0);
}

// Deferrals noted in the table (SPEC §2.4, §3): a deferred delivery handed back (FIFO, or
// its copy not sent) is noted under its messageId, and a later delivery counts its own
// failures as its receives less the noted ones.

const INTERNAL: ErrorClass = ErrorClass::InternalServiceException;

/// One delivery of `records` at the tests' deadline, the guard on, deferred records of
/// a standard queue queued again as copies.
async fn deliver(
    connect: &FakeConnect,
    queues: &FakeQueues,
    table: &FakeTable,
    records: Vec<serde_json::Value>,
) -> Vec<Disposition> {
    let payload = json!({ "Records": records });
    let (recs, fifo) = crate::common::records(&payload);
    pipeline(connect, queues)
        .requeue_deferrals(true)
        .with_watermarks(Some(table))
        .run(&recs, fifo, in_seconds(10))
        .await
        .dispositions
}

#[tokio::test(start_paused = true)]
async fn a_fifo_record_deferred_on_several_deliveries_is_dead_lettered_only_after_its_own_failures()
{
    let connect = jane();
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    let first = change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:01Z");
    let second = change("u-1", json!({"FirstName": "Janet"}), "2026-11-29T10:00:02Z");
    let batch = |receive: u32| {
        vec![
            sqs_record("m-1", &first, receive, Some("g-1")),
            sqs_record("m-2", &second, receive, Some("g-1")),
        ]
    };
    // Receives 1 and 2: the user's lease held by another container until the deadline.
    *table.refuse_leases.lock().unwrap() = true;
    for receive in 1..=2 {
        assert_eq!(
            deliver(&connect, &queues, &table, batch(receive)).await,
            [
                Disposition::HandedBack(HandBack::LeaseHeld),
                Disposition::HandedBack(HandBack::GroupOrder)
            ],
            "receive {receive}"
        );
    }
    assert_eq!(
        *table.note_reads.lock().unwrap(),
        0,
        "a deferral reads nothing on a FIFO source"
    );
    // Receives 3 to 5: the lease is free and every update fails on its own.
    *table.refuse_leases.lock().unwrap() = false;
    connect.fail("UpdateUserIdentityInfo", "u-1", &[INTERNAL; 9]);
    for receive in 3..=4 {
        assert_eq!(
            deliver(&connect, &queues, &table, batch(receive)).await,
            [
                Disposition::HandedBack(HandBack::Retry(INTERNAL)),
                Disposition::HandedBack(HandBack::GroupOrder)
            ],
            "receive {receive}: its own failures are {}",
            receive - 2
        );
    }
    assert!(queues.letters.lock().unwrap().is_empty());
    let fifth = deliver(&connect, &queues, &table, batch(5)).await;
    // m-1: three failures of its own. m-2 shared the failed update; its receives 1–4 were
    // deferrals behind m-1, so this is its first failure of its own.
    assert_eq!(
        fifth,
        [
            Disposition::DeadLettered(INTERNAL),
            Disposition::HandedBack(HandBack::Retry(INTERNAL))
        ]
    );
    let letters = queues.letters.lock().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].source_id, "m-1");
    assert_eq!(
        letters[0].attempts, 3,
        "Attempts are its own failures, not its receives"
    );
    assert_eq!(
        table.notes.lock().unwrap().get("m-2").map(|n| n.len()),
        Some(4),
        "every hand-back behind m-1 noted"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deferral_whose_copy_is_refused_is_noted_and_not_counted_as_an_own_failure() {
    let connect = jane();
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    let body = change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:01Z");
    *queues.refuse_copies.lock().unwrap() = true;
    *table.refuse_leases.lock().unwrap() = true;
    assert_eq!(
        deliver(
            &connect,
            &queues,
            &table,
            vec![sqs_record("m-1", &body, 1, None)]
        )
        .await,
        [Disposition::HandedBack(HandBack::LeaseHeld)]
    );
    assert_eq!(
        *table.note_reads.lock().unwrap(),
        0,
        "a first delivery reads no note"
    );
    assert!(queues.requeued.lock().unwrap().is_empty());
    assert_eq!(
        table.notes.lock().unwrap().get("m-1").map(|n| n.len()),
        Some(1)
    );
    // Receives 2 to 4 fail on their own: dead-lettered at the third of them, not the second.
    *table.refuse_leases.lock().unwrap() = false;
    connect.fail("UpdateUserIdentityInfo", "u-1", &[INTERNAL; 9]);
    for receive in 2..=3 {
        assert_eq!(
            deliver(
                &connect,
                &queues,
                &table,
                vec![sqs_record("m-1", &body, receive, None)]
            )
            .await,
            [Disposition::HandedBack(HandBack::Retry(INTERNAL))],
            "receive {receive}"
        );
    }
    assert_eq!(
        deliver(
            &connect,
            &queues,
            &table,
            vec![sqs_record("m-1", &body, 4, None)]
        )
        .await,
        [Disposition::DeadLettered(INTERNAL)]
    );
    assert_eq!(queues.letters.lock().unwrap()[0].attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn a_copy_of_a_redelivered_record_carries_its_own_failures_without_its_noted_deferrals() {
    let connect = jane();
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    let body = change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:01Z");
    // Receive 1: deferred, its copy refused (noted); receive 2: a failure of its own;
    // receive 3: deferred again, and its copy sent.
    *table.refuse_leases.lock().unwrap() = true;
    *queues.refuse_copies.lock().unwrap() = true;
    deliver(
        &connect,
        &queues,
        &table,
        vec![sqs_record("m-1", &body, 1, None)],
    )
    .await;
    *table.refuse_leases.lock().unwrap() = false;
    connect.fail("UpdateUserIdentityInfo", "u-1", &[INTERNAL; 3]);
    assert_eq!(
        deliver(
            &connect,
            &queues,
            &table,
            vec![sqs_record("m-1", &body, 2, None)]
        )
        .await,
        [Disposition::HandedBack(HandBack::Retry(INTERNAL))]
    );
    *table.refuse_leases.lock().unwrap() = true;
    *queues.refuse_copies.lock().unwrap() = false;
    assert_eq!(
        deliver(
            &connect,
            &queues,
            &table,
            vec![sqs_record("m-1", &body, 3, None)]
        )
        .await,
        [Disposition::Requeued(HandBack::LeaseHeld)]
    );
    let copies = queues.requeued.lock().unwrap();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].own_failures, 1, "receive 2 only");
}

#[tokio::test(start_paused = true)]
async fn a_deferral_that_cannot_be_noted_is_a_failure_of_the_table() {
    let connect = jane();
    let queues = FakeQueues::default();
    let table = FakeTable::default();
    let body = change("u-1", json!({"LastName": "Smith"}), "2026-11-29T10:00:01Z");
    *table.refuse_leases.lock().unwrap() = true;
    *table.fail_notes.lock().unwrap() = true;
    assert_eq!(
        deliver(
            &connect,
            &queues,
            &table,
            vec![sqs_record("m-1", &body, 1, Some("g-1"))]
        )
        .await,
        [Disposition::HandedBack(HandBack::Retry(
            ErrorClass::UnknownError
        ))]
    );
    // At the last of its own failures it is dead-lettered with the table's class.
    assert_eq!(
        deliver(
            &connect,
            &queues,
            &table,
            vec![sqs_record("m-1", &body, 3, Some("g-1"))]
        )
        .await,
        [Disposition::DeadLettered(ErrorClass::UnknownError)]
    );
    let letters = queues.letters.lock().unwrap();
    assert!(
        letters[0].message.contains("noting a deferral"),
        "{}",
        letters[0].message
    );
    assert_eq!(letters[0].attempts, 3);
}
