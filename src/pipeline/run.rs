//! One invocation, as four parts that hand typed values on: admission (here), the
//! `Resolver` (`usernames/resolver.rs`: each change paired with its user), the lanes
//! (`plan`: per user, or per FIFO group), and per unit of a lane the `Applier`
//! (`apply.rs`: one user's read-modify-write, under the `Guard` of `guard.rs`) and the
//! `Settler` (`settle.rs`: each record's disposition). Every record travels as an
//! `Entry` (its place in the batch and its ids) from admission to its `Settled`
//! disposition. The invocation's one `Budget` is made here and lent to every part.

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::{StreamExt, stream};
use tokio::time::Instant;

use crate::clock::Clock;
use crate::domain::document::Admission;
use crate::domain::error::Failure;
use crate::domain::ports::{DeadLetterSink, Directory, Watermarks};
use crate::domain::record::{Disposition, Record};

use super::apply::{Applier, UserTurns};
use super::budget::Budget;
use super::calls::Calls;
use super::guard::{Guard, GuardCounts};
use super::outcome::Outcome;
use super::plan::{Admitted, Applied, Entry, Ids, Unit, build_lanes};
use super::settle::{Settled, Settler, hand_backs};
use super::usernames::Resolver;
use super::{Pipeline, RunReport};

/// Handles the records of one invocation: how each ended, in order, and what the
/// invocation cost.
pub(super) async fn run<D: Directory, S: DeadLetterSink, W: Watermarks>(
    pipeline: &Pipeline<D, S, W>,
    records: &[Record],
    fifo: bool,
    deadline: Instant,
) -> RunReport {
    let budget = Budget::new(&pipeline.settings, deadline);
    let calls = Calls::new(&pipeline.limits, &budget);
    let resolver = pipeline.resolver(&calls);
    let guard = pipeline.guard(&budget);
    let applier = pipeline.applier(&budget, &calls, &resolver, &guard);
    let settler = pipeline.settler(&budget);

    let admitted = admit(records, &pipeline.admission, &pipeline.clock);
    let targeted = resolver.resolve(admitted).await;
    let lanes = build_lanes(targeted, fifo);
    let lanes: Vec<_> = lanes
        .into_iter()
        .map(|lane| work_lane(&applier, &settler, lane, fifo))
        .collect();
    let mut settled: Vec<Settled> = stream::iter(lanes)
        .buffer_unordered(pipeline.settings.concurrency.max(1))
        .flat_map(stream::iter)
        .collect()
        .await;
    settled.sort_by_key(|s| s.at);
    debug_assert!(
        settled.iter().enumerate().all(|(i, s)| s.at == i),
        "every record settles once"
    );
    let dispositions: Vec<Disposition> = settled.into_iter().map(|s| s.disposition).collect();

    let counts = &guard.counts;
    let report = RunReport {
        hand_back: hand_backs(records, &dispositions),
        dispositions,
        calls: calls.made(),
        throttled: calls.throttled(),
        limiter_wait: calls.limiter_wait(),
        superseded: settler.superseded.load(Ordering::Relaxed),
        watermark_requests: counts.watermark_requests.load(Ordering::Relaxed),
        schedule_requests: calls.schedule_writes(),
        guarded_users: counts.guarded_users.load(Ordering::Relaxed),
    };
    if pipeline.watermarks.is_some() {
        tracing::info!(
            records = records.len(),
            superseded = report.superseded,
            guarded_users = report.guarded_users,
            watermark_requests = report.watermark_requests,
            schedule_requests = report.schedule_requests,
            "staleness guard"
        );
    }
    report
}

/// The parts of one invocation, each given only what it uses of the container's
/// `Pipeline` and the invocation's `Budget` and `Calls`.
impl<D: Directory, S: DeadLetterSink, W: Watermarks> Pipeline<D, S, W> {
    fn resolver<'a>(&'a self, calls: &'a Calls<'a>) -> Resolver<'a, D> {
        Resolver {
            directory: &self.directory,
            usernames: &self.usernames,
            calls,
        }
    }

    fn guard<'a>(&'a self, budget: &'a Budget) -> Guard<'a, W> {
        Guard {
            table: self.watermarks.as_ref(),
            kept: &self.kept_leases,
            clock: &self.clock,
            policy: &self.admission.policy,
            budget,
            counts: GuardCounts::default(),
        }
    }

    fn applier<'a>(
        &'a self,
        budget: &'a Budget,
        calls: &'a Calls<'a>,
        resolver: &'a Resolver<'a, D>,
        guard: &'a Guard<'a, W>,
    ) -> Applier<'a, D, W> {
        Applier {
            directory: &self.directory,
            policy: &self.admission.policy,
            budget,
            calls,
            limits: &self.limits,
            read_slots: &self.read_slots,
            instances: &self.instances,
            resolver,
            guard,
            turns: UserTurns::default(),
            instance_failures: Mutex::default(),
        }
    }

    fn settler<'a>(&'a self, budget: &'a Budget) -> Settler<'a, S, W> {
        Settler {
            sink: &self.sink,
            notes: self.watermarks.as_ref(),
            max_receive_count: self.settings.max_receive_count,
            clock: &self.clock,
            budget,
            requeue: self.requeue,
            limits: &self.limits,
            deferrals: AtomicU32::new(0),
            superseded: AtomicU32::new(0),
        }
    }
}

/// Admission: each record's ids as far as they are known, and its change read and
/// admitted (SPEC §2.2), or why not. A panic while admitting fails that record alone.
fn admit<'r>(records: &'r [Record], admission: &Admission, clock: &Clock) -> Vec<Admitted<'r>> {
    let default_instance = admission.default_instance.as_ref();
    records
        .iter()
        .enumerate()
        .map(|(at, record)| {
            let ids = match &record.document {
                Ok(doc) => {
                    let (instance_id, user_id) = doc.known_ids(default_instance);
                    Ids {
                        event_id: doc.event_id.clone(),
                        instance_id,
                        user_id,
                    }
                }
                Err(_) => Ids {
                    event_id: record.event_id_hint.clone(),
                    ..Ids::default()
                },
            };
            let change = record.document.clone().and_then(|doc| {
                let now = clock.now();
                std::panic::catch_unwind(AssertUnwindSafe(|| admission.admit_at(doc, now)))
                    .unwrap_or_else(|_| {
                        Err(Failure::unknown("internal error while reading the change"))
                    })
            });
            Admitted {
                entry: Entry { at, record, ids },
                change: change.map_err(Outcome::from),
            }
        })
        .collect()
}

/// Works through one lane's units in order: each unit applied, then its records
/// settled; in FIFO, the settlement says when the rest of the lane is only handed back.
async fn work_lane<D: Directory, S: DeadLetterSink, W: Watermarks>(
    applier: &Applier<'_, D, W>,
    settler: &Settler<'_, S, W>,
    lane: Vec<Unit<'_>>,
    fifo: bool,
) -> Vec<Settled> {
    let mut settling = settler.lane(fifo);
    let mut settled = Vec::new();
    for unit in lane {
        if settling.blocked() {
            settled.extend(settling.behind(unit.entries()).await);
            continue;
        }
        let applied = match unit {
            Unit::Done(entry, outcome) => vec![Applied { entry, outcome }],
            Unit::Apply(work) => applier.apply(work).await,
        };
        settled.extend(settling.settle(applied).await);
    }
    settled
}
