//! Usernames in the pipeline, steps of `Run`: a batch's names resolved by
//! `Usernames` (cache, index or `SearchUsers`) through `Run::calls` (attempts,
//! limiters and deadline); and, after `DescribeUser`, a resolution used only while the
//! user still has that `Username`, otherwise resolved once more before the change is
//! decided.

use std::collections::HashMap;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Attempt, Confirmation, Gate, Resolved, Source};
use crate::domain::change::ChangeRequest;
use crate::domain::identity::{InstanceId, UserId, UserRef};
use crate::domain::ports::{CallFailure, DeadLetterSink, Directory, UserRecord, Watermarks};
use crate::pipeline::Outcome;
use crate::pipeline::calls::{Calls, Op};
use crate::pipeline::run::Run;

/// What `DescribeUser`'s answer means for the changes that named the user by Username.
pub(in crate::pipeline) enum Confirmed {
    /// Go on with the read-modify-write.
    Go,
    /// `DescribeUser` refused a resolution: resolve it once more.
    ResolveAgain,
    /// What the changes come to instead, one outcome per change.
    Refused(Vec<Outcome>),
}

/// The invocation's calls, seen by the resolver.
impl Gate for Calls<'_> {
    fn call<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        attempt: Attempt<'a, T>,
    ) -> BoxFuture<'a, Result<T, Outcome>> {
        Calls::call(self, op, attempt).boxed()
    }
}

pub(in crate::pipeline) fn username_of(change: &ChangeRequest) -> Option<&str> {
    match &change.user {
        UserRef::Username(name) => Some(name),
        _ => None,
    }
}

impl<D: Directory, S: DeadLetterSink, W: Watermarks> Run<'_, D, S, W> {
    /// Resolves a batch's distinct usernames: cached ones without a call or a token.
    pub(in crate::pipeline) async fn resolve_names(
        &self,
        names: &[(InstanceId, String)],
    ) -> HashMap<(InstanceId, String), Result<UserId, Outcome>> {
        let pipeline = self.pipeline;
        let (found, _) = pipeline
            .usernames
            .resolve(&pipeline.directory, &self.calls, names)
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
        let pipeline = self.pipeline;
        pipeline
            .usernames
            .resolve_again(&pipeline.directory, &self.calls, instance, name)
            .await
            .map(|again| again.user)
    }

    /// Judges `DescribeUser`'s answer for the changes that named the user by Username:
    /// go on, resolve again, or what the changes come to instead.
    pub(in crate::pipeline) fn confirm_usernames(
        &self,
        instance: &InstanceId,
        user: &UserId,
        changes: &[ChangeRequest],
        described: &Result<UserRecord, Outcome>,
        again: bool,
    ) -> Confirmed {
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
            Err(_) => return Confirmed::Go,
        };
        let mut refused = None;
        let resolved = Resolved {
            user: user.clone(),
            source: Source::Cache,
        };
        for name in names {
            match self
                .pipeline
                .usernames
                .confirm(instance, name, &resolved, described, again)
            {
                Confirmation::Confirmed => {}
                Confirmation::ResolveAgain => return Confirmed::ResolveAgain,
                Confirmation::Refused(f) => refused = Some(f),
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
        Confirmed::Refused(
            changes
                .iter()
                .map(|c| match username_of(c) {
                    Some(_) => Outcome::from(refused.clone()),
                    None => Outcome::Deferred,
                })
                .collect(),
        )
    }
}
