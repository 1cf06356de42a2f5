//! Usernames in the pipeline: a batch's names resolved by `crate::usernames` (cache, index
//! or `SearchUsers`) through the pipeline's attempts, limiters and deadline; and, after
//! `DescribeUser`, a resolution used only while the user still has that `Username`,
//! otherwise resolved once more before the change is decided.

use std::collections::HashMap;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::domain::change::ChangeRequest;
use crate::domain::identity::{InstanceId, UserId, UserRef};
use crate::domain::ports::{CallFailure, DeadLetterSink, Directory, Reach, UserRecord, Watermarks};
use crate::usernames::{Attempt, Confirmation, Gate, Halt, Lookup, Resolved, Source};

use super::apply::{Op, Tally, UserLocks};
use super::{Outcome, Pipeline};

/// What one user's read-modify-write came to.
pub(super) enum Applied {
    /// One outcome per change, in the order given.
    Outcomes(Vec<Outcome>),
    /// `DescribeUser` refused a resolution by Username: resolve it once more.
    ResolveAgain,
}

/// The pipeline's calls, seen by the resolver.
struct PipelineGate<'a, D, S, W> {
    pipeline: &'a Pipeline<D, S, W>,
    deadline: Instant,
    tally: &'a Tally,
}

impl<D: Directory, S: DeadLetterSink, W: Watermarks> Gate for PipelineGate<'_, D, S, W> {
    fn call<'a, T: Send + 'a>(
        &'a self,
        op: Lookup,
        attempt: Attempt<'a, T>,
    ) -> BoxFuture<'a, Result<T, Halt>> {
        let op = match op {
            Lookup::SearchUsers => Op::SearchUsers,
            Lookup::ListUsers => Op::ListUsers,
        };
        async move {
            self.pipeline
                .call(op, self.deadline, self.tally, attempt)
                .await
                .map_err(|o| match o {
                    Outcome::Failed(failure, attempts) => Halt::Failed(CallFailure {
                        failure,
                        attempts,
                        reach: Reach::Answered,
                    }),
                    _ => Halt::Deferred,
                })
        }
        .boxed()
    }
}

fn outcome_of(halt: Halt) -> Outcome {
    match halt {
        Halt::Failed(f) => Outcome::from(f),
        Halt::Deferred => Outcome::Deferred,
    }
}

fn username_of(change: &ChangeRequest) -> Option<&str> {
    match &change.user {
        UserRef::Username(name) => Some(name),
        _ => None,
    }
}

impl<D: Directory, S: DeadLetterSink, W: Watermarks> Pipeline<D, S, W> {
    /// Resolves a batch's distinct usernames: cached ones without a call or a token.
    pub(super) async fn resolve_names(
        &self,
        names: &[(InstanceId, String)],
        deadline: Instant,
        tally: &Tally,
    ) -> HashMap<(InstanceId, String), Result<UserId, Outcome>> {
        let gate = PipelineGate {
            pipeline: self,
            deadline,
            tally,
        };
        let (found, _) = self.usernames.resolve(&self.directory, &gate, names).await;
        names
            .iter()
            .map(|key| {
                let result = match found.get(key).cloned() {
                    Some(Ok(resolved)) => Ok(resolved.user),
                    Some(Err(halt)) => Err(outcome_of(halt)),
                    None => Err(Outcome::Deferred),
                };
                (key.clone(), result)
            })
            .collect()
    }

    /// Judges `DescribeUser`'s answer for the changes that named the user by Username:
    /// `None` to go on, or what the changes come to instead.
    pub(super) fn confirm_usernames(
        &self,
        instance: &InstanceId,
        user: &UserId,
        changes: &[ChangeRequest],
        described: &Result<UserRecord, Outcome>,
        again: bool,
    ) -> Option<Applied> {
        let mut names: Vec<&str> = changes.iter().filter_map(username_of).collect();
        names.sort_unstable();
        names.dedup();
        let failure;
        let described = match described {
            Ok(record) => Ok(record),
            Err(Outcome::Failed(f, attempts)) => {
                failure = CallFailure::new(f.class, f.message.clone(), *attempts);
                Err(&failure)
            }
            // Not read at all: nothing to confirm, the outcome decides.
            Err(_) => return None,
        };
        let mut refused = None;
        let resolved = Resolved {
            user: user.clone(),
            source: Source::Cache,
        };
        for name in names {
            match self.usernames.confirm(
                &self.directory,
                instance,
                name,
                &resolved,
                described,
                again,
            ) {
                Confirmation::Confirmed => {}
                Confirmation::ResolveAgain => return Some(Applied::ResolveAgain),
                Confirmation::Refused(f) => refused = Some(f),
            }
        }
        let refused = refused?;
        // A failed read decides by itself. Otherwise this is a second pass, which holds
        // one Username's changes only: they are refused.
        if described.is_err() {
            return None;
        }
        Some(Applied::Outcomes(
            changes
                .iter()
                .map(|c| match username_of(c) {
                    Some(_) => Outcome::from(refused.clone()),
                    None => Outcome::Deferred,
                })
                .collect(),
        ))
    }

    /// One user's read-modify-write, resolving a refused Username once more: the changes
    /// by id go on with `user`, each Username's changes with the user it resolves to now.
    pub(super) async fn apply_resolved(
        &self,
        instance: &InstanceId,
        user: &UserId,
        changes: &[ChangeRequest],
        deadline: Instant,
        locks: &UserLocks,
        tally: &Tally,
    ) -> Vec<Outcome> {
        match self
            .apply_user(instance, user, changes, deadline, locks, tally, false)
            .await
        {
            Applied::Outcomes(outcomes) => return outcomes,
            Applied::ResolveAgain => {}
        }
        let gate = PipelineGate {
            pipeline: self,
            deadline,
            tally,
        };
        // Group the changes: by id (kept with `user`), and per Username.
        let mut groups: Vec<(Option<&str>, Vec<usize>)> = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            let name = username_of(c);
            match groups.iter_mut().find(|(n, _)| *n == name) {
                Some((_, members)) => members.push(i),
                None => groups.push((name, vec![i])),
            }
        }
        let mut outcomes: Vec<Option<Outcome>> = vec![None; changes.len()];
        for (name, members) in groups {
            let subset: Vec<ChangeRequest> = members.iter().map(|&i| changes[i].clone()).collect();
            let result = match name {
                None => match self
                    .apply_user(instance, user, &subset, deadline, locks, tally, true)
                    .await
                {
                    Applied::Outcomes(o) => o,
                    Applied::ResolveAgain => unreachable!("a second pass decides"),
                },
                Some(name) => {
                    match self
                        .usernames
                        .resolve_again(&self.directory, &gate, instance, name)
                        .await
                    {
                        Ok(again) => match self
                            .apply_user(
                                instance,
                                &again.user,
                                &subset,
                                deadline,
                                locks,
                                tally,
                                true,
                            )
                            .await
                        {
                            Applied::Outcomes(o) => o,
                            Applied::ResolveAgain => unreachable!("a second pass decides"),
                        },
                        Err(halt) => vec![outcome_of(halt); subset.len()],
                    }
                }
            };
            for (k, i) in members.into_iter().enumerate() {
                outcomes[i] = result.get(k).cloned();
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Deferred))
            .collect()
    }
}
