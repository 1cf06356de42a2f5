//! One invocation: admit each record, resolve usernames, plan the work per user and
//! FIFO lane (`plan`), apply each user's changes (`apply`), and settle every record
//! (`settle`).

mod apply;
mod guard;
mod plan;
mod resolve;
mod settle;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::{FutureExt, StreamExt, stream};
use tokio::time::Instant;
use tracing::Instrument;

use crate::domain::change::ChangeRequest;
use crate::domain::document::Admission;
use crate::domain::error::Failure;
use crate::domain::identity::{Field, InstanceId, UserRef};
use crate::domain::ports::{CallFailure, DeadLetterSink, Directory, Watermarks};
use crate::domain::record::{Disposition, HandBack, Record};
use crate::limiter::Limiter;
use crate::usernames::Usernames;

use apply::{Tally, UserLocks};
use plan::{Target, Unit, Work, build_lanes};
use settle::{Ids, log_disposition, record_span};

pub use apply::MAX_ATTEMPTS;
pub use guard::NoWatermarks;
pub use plan::{Judgement, judge, order};

/// How the pipeline paces itself.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Retryable SQS records are handed back while their receive count is below this.
    pub max_receive_count: u32,
    /// Users worked on at once.
    pub concurrency: usize,
    /// Time kept free before the deadline to send the reply.
    pub deadline_margin: Duration,
    /// The longest one attempt of a Connect call may take; no attempt starts with less
    /// time than this left before the deadline less the margin.
    pub call_budget: Duration,
}

impl Settings {
    /// The longest a dead-letter send may take, its retries included: half the margin
    /// (the other half is kept for the reply), and never less than 100 ms, so that a
    /// margin of zero does not make every send time out.
    pub fn dead_letter_budget(&self) -> Duration {
        (self.deadline_margin / 2).max(Duration::from_millis(100))
    }

    /// When a request under `deadline` may start at the latest (an attempt budget
    /// before the cutoff), and the cutoff itself (the deadline less the margin).
    pub(crate) fn attempt_window(&self, deadline: Instant) -> (Instant, Instant) {
        let cutoff = deadline
            .checked_sub(self.deadline_margin)
            .unwrap_or_else(Instant::now);
        let latest_start = cutoff
            .checked_sub(self.call_budget)
            .unwrap_or_else(Instant::now);
        (latest_start, cutoff)
    }
}

/// How the work on one record (or on a group of coalesced records) ended.
#[derive(Debug, Clone)]
enum Outcome {
    Updated(Vec<Field>),
    Unchanged,
    /// Failed, after this many attempts of the failing call.
    Failed(Failure, u32),
    /// Not done before the deadline.
    Deferred,
}

impl From<Failure> for Outcome {
    fn from(f: Failure) -> Self {
        Outcome::Failed(f, 0)
    }
}

impl From<CallFailure> for Outcome {
    fn from(f: CallFailure) -> Self {
        Outcome::Failed(f.failure, f.attempts)
    }
}

/// Counts per Connect operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerOperation {
    pub describe_instance: u32,
    pub search_users: u32,
    pub describe_user: u32,
    pub update_user_identity_info: u32,
    pub list_users: u32,
}

/// What one invocation did: how each record ended, in order, and what it cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    pub dispositions: Vec<Disposition>,
    /// Connect calls made, each attempt counted (cached answers are no call).
    pub calls: PerOperation,
    /// Attempts Connect answered with a throttle.
    pub throttled: PerOperation,
    /// Time spent waiting for limiter tokens, summed over every attempt.
    pub limiter_wait: Duration,
    /// Records that ended `unchanged` because the staleness guard found every field
    /// they touched superseded.
    pub superseded: u32,
    /// Requests made to the watermark table (each lease try and each release).
    pub watermark_requests: u32,
    /// Users whose read-modify-write ran under a lease.
    pub guarded_users: u32,
}

/// Client-side rate limits per Connect operation, shared by every task of the container.
pub struct RateLimits {
    pub(super) update: Limiter,
    pub(super) describe: Limiter,
    pub(super) search: Limiter,
    /// `ListUsers`, for the username index; `None` never lists.
    pub(super) list: Option<Limiter>,
}

impl RateLimits {
    /// Requests per second for `UpdateUserIdentityInfo`, `DescribeUser` (and
    /// `DescribeInstance`) and `SearchUsers`. A burst of one keeps every second under
    /// the rate however the calls fall.
    pub fn new(update_rps: f64, describe_rps: f64, search_rps: f64) -> Self {
        RateLimits {
            update: Limiter::per_second(update_rps),
            describe: Limiter::per_second(describe_rps),
            search: Limiter::per_second(search_rps),
            list: None,
        }
    }

    /// `ListUsers` requests per second for the username index; 0 (or less) never lists,
    /// and every username is resolved with `SearchUsers`.
    #[must_use]
    pub fn with_list(mut self, list_rps: f64) -> Self {
        self.list = (list_rps > 0.0).then(|| Limiter::per_second(list_rps));
        self
    }
}

pub struct Pipeline<D, S, W = NoWatermarks> {
    directory: D,
    sink: S,
    admission: Admission,
    settings: Settings,
    limits: RateLimits,
    /// The staleness guard's table; `None`: no guard.
    watermarks: Option<W>,
    usernames: Usernames,
}

impl<D: Directory, S: DeadLetterSink> Pipeline<D, S> {
    pub fn new(
        directory: D,
        sink: S,
        admission: Admission,
        settings: Settings,
        limits: RateLimits,
    ) -> Self {
        let usernames = Usernames::new(limits.list.is_some(), settings.concurrency);
        Pipeline {
            directory,
            sink,
            admission,
            settings,
            limits,
            watermarks: None,
            usernames,
        }
    }

    /// The same pipeline with the staleness guard keeping its watermarks in
    /// `watermarks` (`None`: no guard).
    pub fn with_watermarks<W: Watermarks>(self, watermarks: Option<W>) -> Pipeline<D, S, W> {
        Pipeline {
            directory: self.directory,
            sink: self.sink,
            admission: self.admission,
            settings: self.settings,
            limits: self.limits,
            watermarks,
            usernames: self.usernames,
        }
    }
}

impl<D: Directory, S: DeadLetterSink, W: Watermarks> Pipeline<D, S, W> {
    /// Handles the records of one invocation: how each ended, in order, and what the
    /// invocation cost in Connect calls.
    pub async fn run(&self, records: &[Record], fifo: bool, deadline: Instant) -> RunReport {
        let tally = Tally::default();
        let default_instance = self.admission.default_instance.as_ref();
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
                std::panic::catch_unwind(AssertUnwindSafe(|| self.admission.admit(doc)))
                    .unwrap_or_else(|_| {
                        Err(Failure::unknown("internal error while reading the change"))
                    })
            })
            .collect();

        let targets = self.resolve_users(admitted, deadline, &tally).await;
        for (i, target) in targets.iter().enumerate() {
            if let Ok(t) = target {
                ids[i].instance_id = Some(t.instance.to_string());
                ids[i].user_id = Some(t.user.to_string());
            }
        }
        let lanes = build_lanes(records, targets, fifo);
        let locks = UserLocks::default();

        let mut dispositions: Vec<Option<Disposition>> = vec![None; records.len()];
        let settled: Vec<Vec<(usize, Disposition)>> = stream::iter(lanes)
            .map(|lane| self.run_lane(lane, records, &ids, fifo, deadline, &locks, &tally))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for (i, d) in settled.into_iter().flatten() {
            dispositions[i] = Some(d);
        }
        let dispositions = dispositions
            .into_iter()
            .map(|d| d.expect("every record belongs to exactly one lane"))
            .collect();
        let report = tally.report(dispositions);
        if self.watermarks.is_some() {
            tracing::info!(
                records = records.len(),
                superseded = report.superseded,
                guarded_users = report.guarded_users,
                watermark_requests = report.watermark_requests,
                "staleness guard"
            );
        }
        report
    }

    /// Resolves every distinct username once (cached by the directory).
    async fn resolve_users(
        &self,
        admitted: Vec<Result<ChangeRequest, Failure>>,
        deadline: Instant,
        tally: &Tally,
    ) -> Vec<Result<Target, Outcome>> {
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
        let found = self.resolve_names(&names, deadline, tally).await;
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
    #[allow(clippy::too_many_arguments)]
    async fn run_lane(
        &self,
        lane: Vec<Unit>,
        records: &[Record],
        ids: &[Ids],
        fifo: bool,
        deadline: Instant,
        locks: &UserLocks,
        tally: &Tally,
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
                    } => AssertUnwindSafe(
                        self.apply_resolved(&instance, &user, &changes, deadline, locks, tally),
                    )
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
                    let d = Disposition::HandedBack(HandBack::GroupOrder);
                    log_disposition(&records[i], &ids[i], &d, None, &[]);
                    out.push((i, d));
                    continue;
                }
                let span = record_span(&records[i], &ids[i]);
                let d = self
                    .settle(&records[i], &ids[i], &outcomes[k], deadline)
                    .instrument(span)
                    .await;
                blocked |= fifo && matches!(d, Disposition::HandedBack(_));
                out.push((i, d));
            }
        }
        out
    }
}
