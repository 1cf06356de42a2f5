//! The first part of an invocation: `Resolver` pairs each admitted change with its user.
//! A batch's usernames are resolved once each by `Usernames` (cache, index or
//! `SearchUsers`) through the invocation's `Calls` (attempts, limiters and deadline);
//! and, after `DescribeUser`, the applying part asks it whether a resolution still
//! holds (`confirm`) and, when not, to resolve the name once more (`resolve_again`).
//! Holds the directory, the container's `Usernames` and the invocation's calls; no
//! other port.

use std::collections::HashMap;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use super::{Confirmation, Usernames};
use crate::domain::change::ChangeRequest;
use crate::domain::error::Failure;
use crate::domain::identity::{InstanceId, UserId, UserRef};
use crate::domain::ports::{Directory, UserRecord};
use crate::pipeline::calls::Calls;
use crate::pipeline::outcome::Outcome;
use crate::pipeline::plan::{Admitted, Change, Target, Targeted};

/// What `DescribeUser`'s answer means for the changes that named the user by Username.
/// `X` is what a stale resolution leads to: `ResolveAgain` on the batch's resolution;
/// nothing (`Infallible`) on a name already resolved once more, where it decides.
pub(in crate::pipeline) enum Confirmed<X> {
    /// Go on with the read-modify-write.
    Go,
    /// A resolution is stale: resolve it once more.
    Stale(X),
    /// What the changes come to instead (`Refusal::of`).
    Refused(Refusal),
}

/// A second resolution `DescribeUser` does not confirm: the changes that named the user
/// by that Username are refused with this outcome; any other change of the user is
/// deferred, to be applied once the name no longer holds it up.
pub(in crate::pipeline) struct Refusal(Outcome);

impl Refusal {
    /// What `change` comes to.
    pub(in crate::pipeline) fn of(&self, change: &ChangeRequest) -> Outcome {
        match username_of(change) {
            Some(_) => self.0.clone(),
            None => Outcome::Deferred,
        }
    }
}

/// A Username's resolution `DescribeUser` no longer confirms, on the batch's
/// resolution: the name is resolved once more before its changes are decided.
pub(in crate::pipeline) struct ResolveAgain;

pub(in crate::pipeline) fn username_of(change: &ChangeRequest) -> Option<&str> {
    match &change.user {
        UserRef::Username(name) => Some(name),
        _ => None,
    }
}

/// Resolving users: the part that turns each change's `UserRef` into a user id.
pub(in crate::pipeline) struct Resolver<'a, D> {
    pub directory: &'a D,
    pub usernames: &'a Usernames,
    pub calls: &'a Calls<'a>,
}

impl<D: Directory> Resolver<'_, D> {
    /// Resolves every distinct username once (cached by the directory), and pairs each
    /// admitted change with its user; a resolved record's ids name its user from here
    /// on. A change of no identity field ends `unchanged` here, without a call: it
    /// needs neither its user nor its instance (SPEC §2.1), so an Entra `active`-only
    /// PatchOp spends no look-up. A panic while resolving fails the changes that named
    /// a Username (`UnknownError`) and no other.
    pub(in crate::pipeline) async fn resolve<'r>(
        &self,
        admitted: Vec<Admitted<'r>>,
    ) -> Vec<Targeted<'r>> {
        let admitted: Vec<Admitted<'r>> = admitted
            .into_iter()
            .map(|a| match a.change {
                Ok(request) if request.change.is_empty() => Admitted {
                    entry: a.entry,
                    change: Err(Outcome::Unchanged),
                },
                change => Admitted {
                    entry: a.entry,
                    change,
                },
            })
            .collect();
        let mut names: Vec<(InstanceId, String)> = admitted
            .iter()
            .filter_map(|a| match &a.change {
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
            .map(|Admitted { mut entry, change }| {
                let target = change.and_then(|request| {
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
                });
                if let Ok(t) = &target {
                    entry.ids.instance_id = Some(t.instance.to_string());
                    entry.ids.user_id = Some(t.user.to_string());
                }
                Targeted { entry, target }
            })
            .collect()
    }

    /// Resolves a batch's distinct usernames: cached ones without a call or a token.
    async fn resolve_names(
        &self,
        names: &[(InstanceId, String)],
    ) -> HashMap<(InstanceId, String), Result<UserId, Outcome>> {
        let (found, _) = self
            .usernames
            .resolve(self.directory, self.calls, names)
            .await;
        names
            .iter()
            .map(|key| {
                let result = match found.get(key).cloned() {
                    Some(Ok(resolved)) => Ok(resolved.user),
                    Some(Err(outcome)) => Err(outcome),
                    None => Err(Outcome::Deferred),
                };
                (key.clone(), result)
            })
            .collect()
    }

    /// Resolves `name` once more, past the cache: its resolution was refused.
    pub(in crate::pipeline) async fn resolve_again(
        &self,
        instance: &InstanceId,
        name: &str,
    ) -> Result<UserId, Outcome> {
        self.usernames
            .resolve_again(self.directory, self.calls, instance, name)
            .await
            .map(|again| again.user)
    }

    /// Judges `DescribeUser`'s answer for the changes that named `user` by Username,
    /// on the batch's resolution: go on, resolve again, or what the changes come to.
    pub(in crate::pipeline) fn confirm(
        &self,
        instance: &InstanceId,
        user: &UserId,
        changes: &[Change<'_>],
        described: &Result<UserRecord, Outcome>,
    ) -> Confirmed<ResolveAgain> {
        self.confirmation(instance, user, changes, described, || Some(ResolveAgain))
    }

    /// `confirm`, on a name resolved once more: a stale resolution decides.
    pub(in crate::pipeline) fn confirm_again(
        &self,
        instance: &InstanceId,
        user: &UserId,
        changes: &[Change<'_>],
        described: &Result<UserRecord, Outcome>,
    ) -> Confirmed<Infallible> {
        self.confirmation(instance, user, changes, described, || None)
    }

    /// `confirm`: `stale` says whether a stale resolution is resolved again (and with
    /// what), or decides.
    fn confirmation<X>(
        &self,
        instance: &InstanceId,
        user: &UserId,
        changes: &[Change<'_>],
        described: &Result<UserRecord, Outcome>,
        stale: impl Fn() -> Option<X>,
    ) -> Confirmed<X> {
        let mut names: Vec<&str> = changes
            .iter()
            .filter_map(|c| username_of(&c.request))
            .collect();
        names.sort_unstable();
        names.dedup();
        let described = match described {
            Ok(record) => Ok(record),
            Err(failed @ Outcome::Failed(..)) => Err(failed),
            // Not read at all: nothing to confirm, the outcome decides.
            Err(_) => return Confirmed::Go,
        };
        let mut refused = None;
        for name in names {
            match self.usernames.confirm(instance, name, user, described) {
                Confirmation::Confirmed => {}
                Confirmation::Stale(outcome) => match stale() {
                    Some(again) => return Confirmed::Stale(again),
                    None => refused = Some(outcome),
                },
                Confirmation::Refused(outcome) => refused = Some(outcome),
            }
        }
        let Some(refused) = refused else {
            return Confirmed::Go;
        };
        // A failed read decides by itself. Otherwise this is a second pass, which holds
        // one Username's changes only: they are refused.
        if described.is_err() {
            return Confirmed::Go;
        }
        Confirmed::Refused(Refusal(refused))
    }
}
