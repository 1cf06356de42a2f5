//! One invocation: admit each record, resolve usernames, group changes by user (and by
//! FIFO message group), order and coalesce them, apply each group with at most one
//! update under the rate limits and the deadline, and decide per record whether it is
//! acknowledged, dead-lettered or handed back.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use chrono::Utc;
use futures::{FutureExt, StreamExt, stream};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::{Instant, timeout_at};
use tracing::{Instrument, info, info_span, warn};

use crate::domain::change::{ChangeRequest, IdentityChange};
use crate::domain::document::Admission;
use crate::domain::error::{ErrorClass, Failure};
use crate::domain::identity::{Field, InstanceId, UserId, UserRef};
use crate::domain::ports::{CallFailure, DeadLetter, DeadLetterSink, Directory};
use crate::domain::record::{Disposition, HandBack, Record, SourceKind};

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
    update: DefaultDirectRateLimiter,
    describe: DefaultDirectRateLimiter,
    search: DefaultDirectRateLimiter,
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

#[derive(Debug, Clone, Copy)]
enum Op {
    DescribeInstance,
    SearchUsers,
    DescribeUser,
    UpdateUserIdentityInfo,
}

/// How the work on one record (or on a group of coalesced records) ended.
#[derive(Debug, Clone)]
enum Outcome {
    Updated(Vec<Field>),
    Unchanged,
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

/// The ids a record is known by, for its span, its log line and its dead letter.
#[derive(Debug, Clone, Default)]
struct Ids {
    event_id: Option<String>,
    instance_id: Option<String>,
    user_id: Option<String>,
}

/// One user's changes, applied together.
struct Unit {
    members: Vec<usize>,
    work: Work,
}

enum Work {
    Done(Outcome),
    Apply {
        instance: InstanceId,
        user: UserId,
        changes: Vec<ChangeRequest>,
    },
}

/// An admitted change and the user it resolved to.
struct Target {
    instance: InstanceId,
    user: UserId,
    request: ChangeRequest,
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

    /// Applies one user's coalesced change: read, check, merge, and update only when
    /// something changes.
    async fn apply(
        &self,
        instance: &InstanceId,
        user: &UserId,
        change: IdentityChange,
        deadline: Instant,
    ) -> Outcome {
        if change.is_empty() {
            return Outcome::Unchanged;
        }
        let steps = async {
            let management = self
                .call(
                    Op::DescribeInstance,
                    deadline,
                    self.directory.identity_management(instance),
                )
                .await?;
            let current = self
                .call(
                    Op::DescribeUser,
                    deadline,
                    self.directory.describe_user(instance, user),
                )
                .await?;
            let policy = &self.admission.policy;
            policy
                .check_security_profiles(current.security_profile_ids.iter().map(String::as_str))?;
            let merged = change.apply_to(&current.info);
            policy.check_email_change(current.info.email.as_deref(), merged.email.as_deref())?;
            let plan = management.plan(&current.info, merged)?;
            let changed = current.info.changed_fields(&plan.info);
            if changed.is_empty() {
                return Ok(Outcome::Unchanged);
            }
            self.call(
                Op::UpdateUserIdentityInfo,
                deadline,
                self.directory.update_identity(instance, user, &plan),
            )
            .await?;
            Ok::<_, Outcome>(Outcome::Updated(changed))
        };
        steps.await.unwrap_or_else(|o| o)
    }

    /// Starts a Connect call only if it can finish before the deadline less the margin,
    /// after waiting for the operation's rate limit.
    async fn call<T>(
        &self,
        op: Op,
        deadline: Instant,
        call: impl Future<Output = Result<T, CallFailure>>,
    ) -> Result<T, Outcome> {
        let cutoff = deadline
            .checked_sub(self.settings.deadline_margin)
            .unwrap_or_else(Instant::now);
        let latest_start = cutoff
            .checked_sub(self.settings.call_budget)
            .unwrap_or_else(Instant::now);
        if Instant::now() > latest_start {
            return Err(Outcome::Deferred);
        }
        let limiter = match op {
            Op::UpdateUserIdentityInfo => Some(&self.limits.update),
            Op::DescribeUser => Some(&self.limits.describe),
            Op::SearchUsers => Some(&self.limits.search),
            // Cached for the life of the container: at most one call per instance.
            Op::DescribeInstance => None,
        };
        if let Some(limiter) = limiter {
            timeout_at(latest_start, limiter.until_ready())
                .await
                .map_err(|_| Outcome::Deferred)?;
        }
        match timeout_at(cutoff, call).await {
            Ok(result) => result.map_err(Outcome::from),
            Err(_) => {
                warn!(operation = ?op, "Connect call cut short by the invocation deadline");
                Err(Outcome::Deferred)
            }
        }
    }

    /// Decides what happens to one record given its outcome, dead-lettering it when
    /// it must be.
    async fn settle(
        &self,
        record: &Record,
        ids: &Ids,
        outcome: &Outcome,
        deadline: Instant,
    ) -> Disposition {
        let can_hand_back = record.kind == SourceKind::Sqs && !record.source_id.is_empty();
        let (failure, attempts) = match outcome {
            Outcome::Updated(fields) => {
                let d = Disposition::Updated;
                log_disposition(record, ids, &d, None, fields);
                return d;
            }
            Outcome::Unchanged => {
                let d = Disposition::Unchanged;
                log_disposition(record, ids, &d, None, &[]);
                return d;
            }
            Outcome::Deferred if can_hand_back => {
                let d = Disposition::HandedBack(HandBack::Deadline);
                log_disposition(record, ids, &d, None, &[]);
                return d;
            }
            Outcome::Deferred => (
                Failure::unknown("the invocation deadline came before the change could be applied"),
                0,
            ),
            Outcome::Failed(f, attempts) => (f.clone(), *attempts),
        };
        let class = failure.class;
        if class.is_retryable()
            && can_hand_back
            && record.receive_count < self.settings.max_receive_count
        {
            let d = Disposition::HandedBack(HandBack::Retry(class));
            log_disposition(record, ids, &d, Some(&failure), &[]);
            return d;
        }
        let letter = DeadLetter {
            class,
            message: failure.message.clone(),
            source: record.kind,
            source_id: record.source_id.clone(),
            failed_at: Utc::now(),
            event_id: ids.event_id.clone(),
            instance_id: ids.instance_id.clone(),
            user_id: ids.user_id.clone(),
            attempts: match record.kind {
                SourceKind::Sqs => record.receive_count,
                SourceKind::EventBridge => attempts.max(1),
            },
            body: record.body.clone(),
            group: record.group.clone(),
        };
        let send_by = deadline
            .checked_sub(self.settings.deadline_margin / 2)
            .unwrap_or_else(Instant::now);
        let sent = match timeout_at(send_by, self.sink.send(&letter)).await {
            Ok(result) => result,
            Err(_) => Err("the dead-letter send did not finish before the deadline".into()),
        };
        let d = match sent {
            Ok(()) => Disposition::DeadLettered(class),
            Err(reason) => {
                warn!(error_class = %class, reason = %reason, "dead-letter send failed; the record is not acknowledged");
                if can_hand_back {
                    Disposition::HandedBack(HandBack::DeadLetterFailed(class))
                } else {
                    Disposition::NotAcknowledged(class)
                }
            }
        };
        log_disposition(record, ids, &d, Some(&failure), &[]);
        d
    }
}

fn record_span(record: &Record, ids: &Ids) -> tracing::Span {
    info_span!(
        "record",
        source = record.kind.as_str(),
        message_id = %record.source_id,
        event_id = ids.event_id.as_deref().unwrap_or(""),
        instance_id = ids.instance_id.as_deref().unwrap_or(""),
        user_id = ids.user_id.as_deref().unwrap_or(""),
    )
}

/// One line per record outcome: ids, outcome, class and the names of the fields
/// changed; never a value.
fn log_disposition(
    record: &Record,
    ids: &Ids,
    d: &Disposition,
    failure: Option<&Failure>,
    fields: &[Field],
) {
    let fields: Vec<&str> = fields.iter().map(|f| f.as_str()).collect();
    info!(
        source = record.kind.as_str(),
        message_id = %record.source_id,
        event_id = ids.event_id.as_deref().unwrap_or(""),
        instance_id = ids.instance_id.as_deref().unwrap_or(""),
        user_id = ids.user_id.as_deref().unwrap_or(""),
        outcome = d.outcome(),
        error_class = d.class().map_or("", ErrorClass::as_str),
        reason = ?match d { Disposition::HandedBack(h) => Some(*h), _ => None },
        error_message = failure.map_or("", |f| f.message.as_str()),
        fields_changed = fields.join(","),
        "record settled"
    );
}

/// Groups records into lanes run one after another inside, lanes side by side.
/// Outside FIFO every user is a lane, holding all of that user's changes of the
/// invocation; in FIFO every message group is a lane, and consecutive changes to the
/// same user within it are coalesced.
fn build_lanes(
    records: &[Record],
    targets: Vec<Result<Target, Outcome>>,
    fifo: bool,
) -> Vec<Vec<Unit>> {
    #[derive(PartialEq, Eq, Hash)]
    enum LaneKey {
        Group(String),
        User(InstanceId, UserId),
    }
    let mut lanes: Vec<Vec<Unit>> = Vec::new();
    let mut lane_by_key: HashMap<LaneKey, usize> = HashMap::new();
    for (i, target) in targets.into_iter().enumerate() {
        let key = if fifo {
            records[i].group.clone().map(LaneKey::Group)
        } else {
            target
                .as_ref()
                .ok()
                .map(|t| LaneKey::User(t.instance.clone(), t.user.clone()))
        };
        let lane_index = match key {
            Some(key) => *lane_by_key.entry(key).or_insert_with(|| {
                lanes.push(Vec::new());
                lanes.len() - 1
            }),
            None => {
                lanes.push(Vec::new());
                lanes.len() - 1
            }
        };
        let lane = &mut lanes[lane_index];
        match target {
            Err(outcome) => lane.push(Unit {
                members: vec![i],
                work: Work::Done(outcome),
            }),
            Ok(target) => match lane.last_mut() {
                Some(Unit {
                    members,
                    work:
                        Work::Apply {
                            instance,
                            user,
                            changes,
                        },
                }) if *instance == target.instance && *user == target.user => {
                    members.push(i);
                    changes.push(target.request);
                }
                _ => lane.push(Unit {
                    members: vec![i],
                    work: Work::Apply {
                        instance: target.instance,
                        user: target.user,
                        changes: vec![target.request],
                    },
                }),
            },
        }
    }
    lanes
}

/// Several changes to one user, in `OccurredAt` order (ties in arrival order), as one.
fn coalesce(changes: Vec<ChangeRequest>) -> IdentityChange {
    let mut ordered: Vec<(usize, ChangeRequest)> = changes.into_iter().enumerate().collect();
    ordered.sort_by_key(|(arrival, req)| (req.occurred_at, *arrival));
    ordered
        .into_iter()
        .fold(IdentityChange::default(), |acc, (_, req)| {
            acc.then(req.change)
        })
}
