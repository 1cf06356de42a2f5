//! One invocation: admit each record, resolve usernames, plan the work per user and
//! FIFO lane (`plan`), apply each user's changes (`apply`), and settle every record
//! (`settle`).

mod apply;
mod plan;
mod settle;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::{FutureExt, StreamExt, stream};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;
use tracing::Instrument;

use crate::domain::change::ChangeRequest;
use crate::domain::document::Admission;
use crate::domain::error::Failure;
use crate::domain::identity::{InstanceId, UserId, UserRef};
use crate::domain::ports::{DeadLetterSink, Directory};
use crate::domain::record::{Disposition, HandBack, Record};

use apply::{Op, Outcome};
use plan::{Target, Unit, Work, build_lanes, coalesce};
use settle::{Ids, log_disposition, record_span};

/// How the pipeline paces itself.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Retryable SQS records are handed back while their receive count is below this.
    pub max_receive_count: u32,
    /// Users worked on at once.
    pub concurrency: usize,
    /// Time kept free before the deadline to send the reply.
    pub deadline_margin: Duration,
    /// The longest one Connect call may take (one attempt); no call starts with less
    /// time than this left before the deadline less the margin.
    pub call_budget: Duration,
}

/// Client-side rate limits per Connect operation, shared by every task of the container.
pub struct RateLimits {
    pub(super) update: DefaultDirectRateLimiter,
    pub(super) describe: DefaultDirectRateLimiter,
    pub(super) search: DefaultDirectRateLimiter,
}

impl RateLimits {
    /// Requests per second for `UpdateUserIdentityInfo`, `DescribeUser` (and
    /// `DescribeInstance`) and `SearchUsers`. A burst of one keeps every second under
    /// the rate however the calls fall.
    pub fn new(update_rps: f64, describe_rps: f64, search_rps: f64) -> Self {
        let limiter = |rps: f64| {
            let period = Duration::from_secs_f64(1.0 / rps.max(0.001));
            let quota = Quota::with_period(period)
                .expect("a positive rate gives a non-zero period")
                .allow_burst(NonZeroU32::MIN);
            RateLimiter::direct(quota)
        };
        RateLimits {
            update: limiter(update_rps),
            describe: limiter(describe_rps),
            search: limiter(search_rps),
        }
    }
}

pub struct Pipeline<D, S> {
    directory: D,
    sink: S,
    admission: Admission,
    settings: Settings,
    limits: RateLimits,
}

impl<D: Directory, S: DeadLetterSink> Pipeline<D, S> {
    pub fn new(
        directory: D,
        sink: S,
        admission: Admission,
        settings: Settings,
        limits: RateLimits,
    ) -> Self {
        Pipeline {
            directory,
            sink,
            admission,
            settings,
            limits,
        }
    }

    /// Handles the records of one invocation and returns how each ended, in order.
    pub async fn run(&self, records: &[Record], fifo: bool, deadline: Instant) -> Vec<Disposition> {
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
                Err(_) => Ids::default(),
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

        let targets = self.resolve_users(admitted, deadline).await;
        for (i, target) in targets.iter().enumerate() {
            if let Ok(t) = target {
                ids[i].instance_id = Some(t.instance.to_string());
                ids[i].user_id = Some(t.user.to_string());
            }
        }
        let lanes = build_lanes(records, targets, fifo);

        let mut dispositions: Vec<Option<Disposition>> = vec![None; records.len()];
        let settled: Vec<Vec<(usize, Disposition)>> = stream::iter(lanes)
            .map(|lane| self.run_lane(lane, records, &ids, fifo, deadline))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for (i, d) in settled.into_iter().flatten() {
            dispositions[i] = Some(d);
        }
        dispositions
            .into_iter()
            .map(|d| d.expect("every record belongs to exactly one lane"))
            .collect()
    }

    /// Resolves every distinct username once (cached by the directory).
    async fn resolve_users(
        &self,
        admitted: Vec<Result<ChangeRequest, Failure>>,
        deadline: Instant,
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
        let found: HashMap<(InstanceId, String), Result<UserId, Outcome>> = stream::iter(names)
            .map(|key| async move {
                let result = self
                    .call(
                        Op::SearchUsers,
                        deadline,
                        self.directory.find_user(&key.0, &key.1),
                    )
                    .await;
                (key, result)
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
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

    async fn run_lane(
        &self,
        lane: Vec<Unit>,
        records: &[Record],
        ids: &[Ids],
        fifo: bool,
        deadline: Instant,
    ) -> Vec<(usize, Disposition)> {
        let mut out = Vec::new();
        let mut blocked = false;
        for unit in lane {
            if blocked {
                for i in unit.members {
                    let d = Disposition::HandedBack(HandBack::GroupOrder);
                    log_disposition(&records[i], &ids[i], &d, None, &[]);
                    out.push((i, d));
                }
                continue;
            }
            let outcome = match unit.work {
                Work::Done(outcome) => outcome,
                Work::Apply {
                    instance,
                    user,
                    changes,
                } => AssertUnwindSafe(self.apply(&instance, &user, coalesce(changes), deadline))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        Outcome::from(Failure::unknown("internal error while applying the change"))
                    }),
            };
            for i in unit.members {
                let span = record_span(&records[i], &ids[i]);
                let d = self
                    .settle(&records[i], &ids[i], &outcome, deadline)
                    .instrument(span)
                    .await;
                blocked |= fifo && matches!(d, Disposition::HandedBack(_));
                out.push((i, d));
            }
        }
        out
    }
}
