//! Effects for one user: the read-modify-write, each Connect call under its
//! operation's limiter and the invocation deadline.

use std::future::Future;

use tokio::time::{Instant, timeout_at};
use tracing::warn;

use crate::domain::change::IdentityChange;
use crate::domain::error::Failure;
use crate::domain::identity::{Field, InstanceId, UserId};
use crate::domain::ports::{CallFailure, DeadLetterSink, Directory};

use super::Pipeline;

#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
    DescribeInstance,
    SearchUsers,
    DescribeUser,
    UpdateUserIdentityInfo,
}

/// How the work on one record (or on a group of coalesced records) ended.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
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

impl<D: Directory, S: DeadLetterSink> Pipeline<D, S> {
    /// Applies one user's coalesced change: read, check, merge, and update only when
    /// something changes.
    pub(super) async fn apply(
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
    pub(super) async fn call<T>(
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
}
