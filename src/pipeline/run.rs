//! One invocation: `Run` holds what belongs to it alone (its deadline, its calls and
//! their counts, the users' turns, the staleness guard's counts) beside the container's
//! `Pipeline`, and its methods are the steps: admit and resolve here, then per lane
//! `apply` (one user's read-modify-write, `apply.rs`), `guard` (`guard.rs`) and
//! `settle` (`settle.rs`). Nothing of an invocation is threaded by hand.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use futures::{FutureExt, StreamExt, stream};
use tokio::sync::{Mutex as TurnLock, OwnedMutexGuard};
use tokio::time::Instant;

use crate::domain::change::ChangeRequest;
use crate::domain::error::Failure;
use crate::domain::identity::{InstanceId, UserId, UserRef};
use crate::domain::record::{Disposition, Record};

use super::budget::Budget;
use super::calls::Calls;
use super::plan::{Target, Unit, Work, build_lanes};
use super::{Outcome, Pipeline, RunReport};

/// The ids a record is known by, for its span, its log line and its dead letter.
#[derive(Debug, Clone, Default)]
pub(super) struct Ids {
    pub event_id: Option<String>,
    pub instance_id: Option<String>,
    pub user_id: Option<String>,
}

/// What the staleness guard did in this invocation.
#[derive(Default)]
pub(super) struct GuardCounts {
    /// Changes the staleness guard found wholly superseded.
    pub superseded: AtomicU32,
    /// Requests made to the watermark table.
    pub watermark_requests: AtomicU32,
    /// Users whose lease was taken.
    pub guarded_users: AtomicU32,
}

/// One turn per user: a lane holds at most one user's turn at a time, from its
/// `DescribeUser` through its update, so lanes never wait on each other in a cycle.
#[derive(Default)]
pub(super) struct UserTurns {
    turns: Mutex<HashMap<UserKey, Arc<TurnLock<()>>>>,
}

type UserKey = (InstanceId, UserId);

impl UserTurns {
    pub(super) async fn turn(&self, instance: &InstanceId, user: &UserId) -> OwnedMutexGuard<()> {
        let lock = Arc::clone(
            self.turns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry((instance.clone(), user.clone()))
                .or_default(),
        );
        lock.lock_owned().await
    }
}

/// One invocation of the pipeline.
pub(super) struct Run<'p, D, S, W> {
    /// The container's ports, limits and caches.
    pub pipeline: &'p Pipeline<D, S, W>,
    /// When the reply is due, and the instants before it that every step asks.
    pub budget: Budget,
    /// Every Connect call of this invocation, paced and counted.
    pub calls: Calls<'p>,
    /// One read-modify-write per user at a time.
    pub turns: UserTurns,
    pub guard_counts: GuardCounts,
    /// Instances whose `DescribeInstance` failed in this invocation, and how.
    instance_failures: Mutex<HashMap<InstanceId, Outcome>>,
    /// Deferred records queued again so far, for their delays.
    pub deferrals: AtomicU32,
}

impl<'p, D, S, W> Run<'p, D, S, W>
where
    D: crate::domain::ports::Directory,
    S: crate::domain::ports::DeadLetterSink,
    W: crate::domain::ports::Watermarks,
{
    pub(super) fn new(pipeline: &'p Pipeline<D, S, W>, deadline: Instant) -> Self {
        Run {
            pipeline,
            budget: Budget::new(&pipeline.settings, deadline),
            calls: Calls::new(&pipeline.limits, Budget::new(&pipeline.settings, deadline)),
            turns: UserTurns::default(),
            guard_counts: GuardCounts::default(),
            instance_failures: Mutex::default(),
            deferrals: AtomicU32::new(0),
        }
    }

    /// How `DescribeInstance` of `instance` failed in this invocation, if it did.
    pub(super) fn instance_failure(&self, instance: &InstanceId) -> Option<Outcome> {
        self.instance_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance)
            .cloned()
    }

    pub(super) fn instance_failed(&self, instance: &InstanceId, outcome: Outcome) {
        self.instance_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(instance.clone(), outcome);
    }

    /// Handles the records of one invocation: how each ended, in order, and what the
    /// invocation cost in Connect calls.
    pub(super) async fn records(self, records: &[Record], fifo: bool) -> RunReport {
        let admission = &self.pipeline.admission;
        let default_instance = admission.default_instance.as_ref();
        let mut ids: Vec<Ids> = records
            .iter()
            .map(|r| match &r.document {
                Ok(doc) => {
                    let (instance_id, user_id) = doc.known_ids(default_instance);
                    Ids {
                        event_id: doc.event_id.clone(),
                        instance_id,
                        user_id,
                    }
                }
                Err(_) => Ids {
                    event_id: r.event_id_hint.clone(),
                    ..Ids::default()
                },
            })
            .collect();
        let admitted: Vec<Result<ChangeRequest, Failure>> = records
            .iter()
            .map(|r| {
                let doc = r.document.clone()?;
                let now = self.pipeline.clock.now();
                std::panic::catch_unwind(AssertUnwindSafe(|| admission.admit_at(doc, now)))
                    .unwrap_or_else(|_| {
                        Err(Failure::unknown("internal error while reading the change"))
                    })
            })
            .collect();

        let targets = self.resolve_users(admitted).await;
        for (i, target) in targets.iter().enumerate() {
            if let Ok(t) = target {
                ids[i].instance_id = Some(t.instance.to_string());
                ids[i].user_id = Some(t.user.to_string());
            }
        }
        let lanes = build_lanes(records, targets, fifo);

        let mut dispositions: Vec<Option<Disposition>> = vec![None; records.len()];
        let settled: Vec<Vec<(usize, Disposition)>> = stream::iter(lanes)
            .map(|lane| self.lane(lane, records, &ids, fifo))
            .buffer_unordered(self.pipeline.settings.concurrency.max(1))
            .collect()
            .await;
        for (i, d) in settled.into_iter().flatten() {
            dispositions[i] = Some(d);
        }
        let dispositions = dispositions
            .into_iter()
            .map(|d| d.expect("every record belongs to exactly one lane"))
            .collect();
        let report = self.report(dispositions);
        if self.pipeline.watermarks.is_some() {
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

    fn report(&self, dispositions: Vec<Disposition>) -> RunReport {
        RunReport {
            dispositions,
            calls: self.calls.made(),
            throttled: self.calls.throttled(),
            limiter_wait: self.calls.limiter_wait(),
            superseded: self.guard_counts.superseded.load(Ordering::Relaxed),
            watermark_requests: self.guard_counts.watermark_requests.load(Ordering::Relaxed),
            schedule_requests: self.calls.schedule_writes(),
            guarded_users: self.guard_counts.guarded_users.load(Ordering::Relaxed),
        }
    }

    /// Resolves every distinct username once (cached by the directory), and pairs each
    /// admitted change with its user. A change of no identity field ends `unchanged`
    /// here, without a call: it needs neither its user nor its instance (SPEC §2.1), so
    /// an Entra `active`-only PatchOp spends no look-up. A panic while resolving fails
    /// the changes that named a Username (`UnknownError`) and no other.
    async fn resolve_users(
        &self,
        admitted: Vec<Result<ChangeRequest, Failure>>,
    ) -> Vec<Result<Target, Outcome>> {
        let admitted: Vec<Result<ChangeRequest, Outcome>> = admitted
            .into_iter()
            .map(|r| match r {
                Ok(request) if request.change.is_empty() => Err(Outcome::Unchanged),
                Ok(request) => Ok(request),
                Err(failure) => Err(Outcome::from(failure)),
            })
            .collect();
        let mut names: Vec<(InstanceId, String)> = admitted
            .iter()
            .filter_map(|r| match r {
                Ok(ChangeRequest {
                    instance,
                    user: UserRef::Username(name),
                    ..
                }) => Some((instance.clone(), name.clone())),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        let found = AssertUnwindSafe(self.resolve_names(&names))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                let failure = Failure::unknown("internal error while resolving the Username");
                names
                    .iter()
                    .map(|key| (key.clone(), Err(Outcome::from(failure.clone()))))
                    .collect()
            });
        admitted
            .into_iter()
            .map(|r| {
                let request = r?;
                let user = match &request.user {
                    UserRef::Id(id) | UserRef::Arn { user: id, .. } => id.clone(),
                    UserRef::Username(name) => {
                        found[&(request.instance.clone(), name.clone())].clone()?
                    }
                };
                Ok(Target {
                    instance: request.instance.clone(),
                    user,
                    request,
                })
            })
            .collect()
    }

    /// Works through one lane's units in order. In FIFO, once a record is handed back
    /// every later record of the lane is handed back too, record by record, even one
    /// that shared the handed-back record's update.
    async fn lane(
        &self,
        lane: Vec<Unit>,
        records: &[Record],
        ids: &[Ids],
        fifo: bool,
    ) -> Vec<(usize, Disposition)> {
        let mut out = Vec::new();
        let mut blocked = false;
        for unit in lane {
            let n = unit.members.len();
            let outcomes: Vec<Outcome> = if blocked {
                Vec::new()
            } else {
                match unit.work {
                    Work::Done(outcome) => vec![outcome],
                    Work::Apply {
                        instance,
                        user,
                        changes,
                    } => AssertUnwindSafe(self.apply_resolved(&instance, &user, &changes))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| {
                            vec![
                                Outcome::from(Failure::unknown(
                                    "internal error while applying the change"
                                ));
                                n
                            ]
                        }),
                }
            };
            for (k, i) in unit.members.into_iter().enumerate() {
                if blocked {
                    out.push((i, self.behind_in_group(&records[i], &ids[i])));
                    continue;
                }
                let d = self.settle(&records[i], &ids[i], &outcomes[k]).await;
                if matches!(outcomes[k], Outcome::Superseded) && d == Disposition::Unchanged {
                    self.guard_counts.superseded.fetch_add(1, Ordering::Relaxed);
                }
                blocked |= fifo && matches!(d, Disposition::HandedBack(_));
                out.push((i, d));
            }
        }
        out
    }
}
