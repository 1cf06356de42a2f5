//! Effects for one user: the read-modify-write (one per user at a time), and every
//! Connect call as attempts, each under its operation's limiter token, started only
//! while it can finish before the deadline, at most `MAX_ATTEMPTS` per call.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Mutex as TurnLock, OwnedMutexGuard};
use tokio::time::{Instant, sleep, timeout_at};
use tracing::warn;

use crate::domain::change::ChangeRequest;
use crate::domain::error::{ErrorClass, Failure};
use crate::domain::identity::{InstanceId, UserId};
use crate::domain::instance::IdentityManagement;
use crate::domain::ports::{CallFailure, DeadLetterSink, Directory, Reach, Watermarks};
use crate::domain::record::Disposition;

use super::plan::judge;
use super::resolve::Applied;
use super::{Outcome, PerOperation, Pipeline, RunReport};

/// Attempts per call at most (SPEC §3).
pub const MAX_ATTEMPTS: u32 = 3;

/// The pause before the second attempt; doubled before the third. Retries of a
/// throttled call are paced by the limiter as well, since each takes a token.
const BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    DescribeInstance,
    SearchUsers,
    DescribeUser,
    UpdateUserIdentityInfo,
    ListUsers,
}

impl Op {
    const fn name(self) -> &'static str {
        match self {
            Op::DescribeInstance => "DescribeInstance",
            Op::SearchUsers => "SearchUsers",
            Op::DescribeUser => "DescribeUser",
            Op::UpdateUserIdentityInfo => "UpdateUserIdentityInfo",
            Op::ListUsers => "ListUsers",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// What one invocation's calls cost, counted as they happen.
#[derive(Default)]
pub(super) struct Tally {
    calls: [AtomicU32; 5],
    throttled: [AtomicU32; 5],
    limiter_wait_us: AtomicU64,
    /// Changes the staleness guard found wholly superseded.
    pub(super) superseded: AtomicU32,
    /// Requests made to the watermark table.
    pub(super) watermark_requests: AtomicU32,
    /// Users whose lease was taken.
    pub(super) guarded_users: AtomicU32,
}

impl Tally {
    fn per_operation(counts: &[AtomicU32; 5]) -> PerOperation {
        let get = |op: Op| counts[op.index()].load(Ordering::Relaxed);
        PerOperation {
            describe_instance: get(Op::DescribeInstance),
            search_users: get(Op::SearchUsers),
            describe_user: get(Op::DescribeUser),
            update_user_identity_info: get(Op::UpdateUserIdentityInfo),
            list_users: get(Op::ListUsers),
        }
    }

    pub(super) fn report(&self, dispositions: Vec<Disposition>) -> RunReport {
        RunReport {
            dispositions,
            calls: Self::per_operation(&self.calls),
            throttled: Self::per_operation(&self.throttled),
            limiter_wait: Duration::from_micros(self.limiter_wait_us.load(Ordering::Relaxed)),
            superseded: self.superseded.load(Ordering::Relaxed),
            watermark_requests: self.watermark_requests.load(Ordering::Relaxed),
            guarded_users: self.guarded_users.load(Ordering::Relaxed),
        }
    }
}

/// One turn per user: a lane holds at most one user's turn at a time, from its
/// `DescribeUser` through its update, so lanes never wait on each other in a cycle.
#[derive(Default)]
pub(super) struct UserLocks {
    turns: Mutex<HashMap<UserKey, Arc<TurnLock<()>>>>,
}

type UserKey = (InstanceId, UserId);

impl UserLocks {
    async fn turn(&self, instance: &InstanceId, user: &UserId) -> OwnedMutexGuard<()> {
        let lock = Arc::clone(
            self.turns
                .lock()
                .expect("turn table lock")
                .entry((instance.clone(), user.clone()))
                .or_default(),
        );
        lock.lock_owned().await
    }
}

impl<D: Directory, S: DeadLetterSink, W: Watermarks> Pipeline<D, S, W> {
    /// One user's read-modify-write: read the instance's identity management and the
    /// user, judge each change (`plan::judge`), and make at most one update for the
    /// accepted ones. Returns one outcome per change, in the order given.
    /// `again`: the user is a second resolution of a Username, so a refusal decides.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn apply_user(
        &self,
        instance: &InstanceId,
        user: &UserId,
        changes: &[ChangeRequest],
        deadline: Instant,
        locks: &UserLocks,
        tally: &Tally,
        again: bool,
    ) -> Applied {
        let all = |o: Outcome| Applied::Outcomes(vec![o; changes.len()]);
        if changes.iter().all(|c| c.change.is_empty()) {
            return all(Outcome::Unchanged);
        }
        let management = match self.management(instance, deadline, tally).await {
            Ok(m) => m,
            Err(o) => return all(o),
        };
        // No other read-modify-write of this user runs until this one has ended, so no
        // update carries values read before another update to the user.
        let _turn = locks.turn(instance, user).await;
        // The staleness guard's lease keeps other containers out until the release
        // below; the field changes its watermarks supersede are dropped.
        let guarded = match self.guard(instance, user, changes, deadline, tally).await {
            Ok(guarded) => guarded,
            Err(o) => return all(o),
        };
        if guarded.nothing_left() {
            // No update and no watermark to move: only the lease is given back.
            let _ = self.release_guard(&guarded, None, deadline, tally).await;
            return all(Outcome::Unchanged);
        }
        let changes = guarded.changes.as_slice();
        let described = self
            .call(Op::DescribeUser, deadline, tally, || {
                self.directory.describe_user(instance, user)
            })
            .await;
        // A user found by Username is used only while DescribeUser returns that Username.
        if let Some(refused) = self.confirm_usernames(instance, user, changes, &described, again) {
            let _ = self.release_guard(&guarded, None, deadline, tally).await;
            return refused;
        }
        let current = match described {
            Ok(current) => current,
            Err(o) => {
                let _ = self.release_guard(&guarded, None, deadline, tally).await;
                return all(o);
            }
        };
        let judgement = judge(&current, &management, &self.admission.policy, changes);
        let shared = match &judgement.update {
            None => Outcome::Unchanged,
            Some(plan) => match self
                .call(Op::UpdateUserIdentityInfo, deadline, tally, || {
                    self.directory.update_identity(instance, user, plan)
                })
                .await
            {
                Ok(()) => Outcome::Updated(judgement.changed.clone()),
                Err(o) => o,
            },
        };
        // The watermarks move (after an update or a no-op) for the accepted changes only.
        let in_place = matches!(shared, Outcome::Updated(_) | Outcome::Unchanged);
        let accepted: Vec<&ChangeRequest> = changes
            .iter()
            .zip(&judgement.verdicts)
            .filter(|(_, v)| v.is_ok())
            .map(|(c, _)| c)
            .collect();
        let released = self
            .release_guard(&guarded, in_place.then_some(&accepted[..]), deadline, tally)
            .await;
        let shared = match released {
            Ok(()) => shared,
            Err(failure) => Outcome::from(failure),
        };
        Applied::Outcomes(
            judgement
                .verdicts
                .into_iter()
                .zip(&guarded.superseded)
                .map(|(v, superseded)| match v {
                    Err(refused) => Outcome::from(refused),
                    Ok(()) if *superseded => Outcome::Unchanged,
                    Ok(()) => shared.clone(),
                })
                .collect(),
        )
    }

    /// The instance's identity management: cached, or `DescribeInstance`.
    async fn management(
        &self,
        instance: &InstanceId,
        deadline: Instant,
        tally: &Tally,
    ) -> Result<IdentityManagement, Outcome> {
        if let Some(hit) = self.directory.cached_management(instance) {
            return Ok(hit);
        }
        self.call(Op::DescribeInstance, deadline, tally, || {
            self.directory.identity_management(instance)
        })
        .await
    }

    /// Makes one Connect call as up to `MAX_ATTEMPTS` attempts. Each attempt starts
    /// only if the attempt budget still fits before the deadline less the margin, and
    /// only once it holds a token of its operation's limiter; a back-off must fit
    /// too. A retryable failure is tried again; an update whose outcome is unknown
    /// is not. When time runs out the last failure stands, or `Deferred` when no
    /// attempt was made.
    pub(super) async fn call<T, F, Fut>(
        &self,
        op: Op,
        deadline: Instant,
        tally: &Tally,
        attempt: F,
    ) -> Result<T, Outcome>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CallFailure>>,
    {
        let budget = self.settings.call_budget;
        let (latest_start, cutoff) = self.settings.attempt_window(deadline);
        let mut made = 0;
        let mut last: Option<Failure> = None;
        while made < MAX_ATTEMPTS {
            if made > 0 {
                let backoff = BACKOFF * 2u32.pow(made - 1);
                if Instant::now() + backoff > latest_start {
                    break;
                }
                sleep(backoff).await;
            }
            if Instant::now() > latest_start || !self.take_token(op, latest_start, tally).await {
                break;
            }
            made += 1;
            tally.calls[op.index()].fetch_add(1, Ordering::Relaxed);
            // The SDK's own attempt timeout ends the attempt first; this bound holds
            // for any directory.
            let ends = (Instant::now() + budget).min(cutoff);
            let failure = match timeout_at(ends, attempt()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(failure)) => failure,
                Err(_) => {
                    warn!(
                        operation = op.name(),
                        "Connect attempt cut at its time budget"
                    );
                    CallFailure::new(
                        ErrorClass::UnknownError,
                        format!("Connect {} failed with a timeout", op.name()),
                        1,
                    )
                    .with_reach(Reach::Unknown)
                }
            };
            if failure.failure.class == ErrorClass::ThrottlingException {
                tally.throttled[op.index()].fetch_add(1, Ordering::Relaxed);
            }
            if op == Op::UpdateUserIdentityInfo && failure.reach == Reach::Unknown {
                return Err(Outcome::Failed(
                    Failure::unknown(format!(
                        "{} after the request was sent: the outcome is unknown",
                        failure.failure.message
                    )),
                    made,
                ));
            }
            let retryable = failure.failure.class.is_retryable();
            last = Some(failure.failure);
            if !retryable {
                break;
            }
        }
        Err(match last {
            Some(failure) => Outcome::Failed(failure, made),
            None => Outcome::Deferred,
        })
    }

    /// Waits for a token of `op`'s limiter, no later than `latest_start`; counts the
    /// wait. `DescribeInstance` has none: it is made at most once per instance for
    /// the life of the container.
    async fn take_token(&self, op: Op, latest_start: Instant, tally: &Tally) -> bool {
        let limiter = match op {
            Op::UpdateUserIdentityInfo => &self.limits.update,
            Op::DescribeUser => &self.limits.describe,
            Op::SearchUsers => &self.limits.search,
            // Only made when the index is on, which needs a rate.
            Op::ListUsers => match &self.limits.list {
                Some(list) => list,
                None => return false,
            },
            Op::DescribeInstance => return true,
        };
        let from = Instant::now();
        let ready = limiter.take_by(latest_start).await;
        let waited = u64::try_from(from.elapsed().as_micros()).unwrap_or(u64::MAX);
        tally.limiter_wait_us.fetch_add(waited, Ordering::Relaxed);
        ready
    }
}
