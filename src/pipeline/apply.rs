//! One user's read-modify-write, a step of `Run`: the instance's identity management,
//! the user's turn and lease (`guard`), `DescribeUser`, the judgement of each change
//! (`plan::judge`) and at most one update; and, when `DescribeUser` no longer confirms
//! a Username's resolution, the same once more with the user it resolves to now.
//! Every call goes through `Run::calls`.

use crate::domain::change::ChangeRequest;
use crate::domain::identity::{InstanceId, UserId};
use crate::domain::instance::IdentityManagement;
use crate::domain::ports::{DeadLetterSink, Directory, Watermarks};

use tokio::time::timeout_at;

use super::Outcome;
use super::calls::Op;
use super::plan::judge;
use super::run::Run;
use super::usernames::{Confirmed, username_of};

/// What one user's read-modify-write came to.
enum Applied {
    /// One outcome per change, in the order given.
    Outcomes(Vec<Outcome>),
    /// `DescribeUser` refused a resolution by Username: resolve it once more.
    ResolveAgain,
}

impl<D: Directory, S: DeadLetterSink, W: Watermarks> Run<'_, D, S, W> {
    /// One user's read-modify-write, resolving a refused Username once more: the changes
    /// by id go on with `user`, each Username's changes with the user it resolves to now.
    pub(super) async fn apply_resolved(
        &self,
        instance: &InstanceId,
        user: &UserId,
        changes: &[ChangeRequest],
    ) -> Vec<Outcome> {
        match self.apply_user(instance, user, changes, false).await {
            Applied::Outcomes(outcomes) => return outcomes,
            Applied::ResolveAgain => {}
        }
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
                None => self.apply_again(instance, user, &subset).await,
                Some(name) => match self.resolve_again(instance, name).await {
                    Ok(again) => self.apply_again(instance, &again, &subset).await,
                    Err(outcome) => vec![outcome; subset.len()],
                },
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

    /// The second pass of a read-modify-write, which decides.
    async fn apply_again(
        &self,
        instance: &InstanceId,
        user: &UserId,
        changes: &[ChangeRequest],
    ) -> Vec<Outcome> {
        match self.apply_user(instance, user, changes, true).await {
            Applied::Outcomes(o) => o,
            Applied::ResolveAgain => unreachable!("a second pass decides"),
        }
    }

    /// One user's read-modify-write: read the instance's identity management and the
    /// user, judge each change (`plan::judge`), and make at most one update for the
    /// accepted ones. Returns one outcome per change, in the order given.
    /// `again`: the user is a second resolution of a Username, so a refusal decides.
    async fn apply_user(
        &self,
        instance: &InstanceId,
        user: &UserId,
        changes: &[ChangeRequest],
        again: bool,
    ) -> Applied {
        let all = |o: Outcome| Applied::Outcomes(vec![o; changes.len()]);
        if changes.iter().all(|c| c.change.is_empty()) {
            return all(Outcome::Unchanged);
        }
        let management = match self.management(instance).await {
            Ok(m) => m,
            Err(o) => return all(o),
        };
        // No other read-modify-write of this user runs until this one has ended, so no
        // update carries values read before another update to the user.
        // The wait for the turn ends by the last attempt start, as every wait does.
        let Ok(_turn) = timeout_at(self.budget.last_attempt, self.turns.turn(instance, user)).await
        else {
            return all(Outcome::Deferred);
        };
        // Backpressure: the user is read only when its update can still get a turn in
        // this invocation; otherwise it is deferred before its lease and its reads.
        let Some(_slot) = self.read_slot().await else {
            return all(Outcome::NoTurn);
        };
        // The staleness guard's lease keeps other containers out until the release
        // below; the field changes its watermarks supersede are dropped.
        let guarded = match self.guard(instance, user, changes).await {
            Ok(guarded) => guarded,
            Err(o) => return all(o),
        };
        if guarded.nothing_left() {
            // No update and no watermark to move: only the lease is given back.
            let _ = self.release_guard(&guarded, None).await;
            return Applied::Outcomes(guarded.screened(vec![Outcome::Unchanged; changes.len()]));
        }
        let screened = |o: Outcome| Applied::Outcomes(guarded.screened(vec![o; changes.len()]));
        let changes = guarded.changes.as_slice();
        let directory = &self.pipeline.directory;
        let described = self
            .calls
            .call(Op::DescribeUser, || directory.describe_user(instance, user))
            .await;
        // A user found by Username is used only while DescribeUser returns that Username.
        match self.confirm_usernames(instance, user, changes, &described, again) {
            Confirmed::Go => {}
            Confirmed::ResolveAgain => {
                let _ = self.release_guard(&guarded, None).await;
                return Applied::ResolveAgain;
            }
            Confirmed::Refused(outcomes) => {
                let _ = self.release_guard(&guarded, None).await;
                return Applied::Outcomes(guarded.screened(outcomes));
            }
        }
        let current = match described {
            Ok(current) => current,
            Err(o) => {
                let _ = self.release_guard(&guarded, None).await;
                return screened(o);
            }
        };
        let judgement = judge(
            &current,
            &management,
            &self.pipeline.admission.policy,
            changes,
        );
        let shared = match &judgement.update {
            None => Outcome::Unchanged,
            Some(plan) => match self
                .calls
                .call_for(
                    Op::UpdateUserIdentityInfo,
                    Some(&format!("{}#{}", instance.as_str(), user.as_str())),
                    || directory.update_identity(instance, user, plan),
                )
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
        let released = if matches!(shared, Outcome::Unknown(..)) {
            // The request may still land: the lease is kept until it lapses, so that no
            // newer change to the user is applied (by any container) before then.
            self.keep_guard(instance, user, &guarded);
            Ok(())
        } else {
            self.release_guard(&guarded, in_place.then_some(&accepted[..]))
                .await
        };
        let shared = match released {
            Ok(()) => shared,
            Err(failure) => Outcome::from(failure),
        };
        Applied::Outcomes(
            guarded.screened(
                judgement
                    .verdicts
                    .into_iter()
                    .map(|v| match v {
                        Err(refused) => Outcome::from(refused),
                        Ok(()) => shared.clone(),
                    })
                    .collect(),
            ),
        )
    }

    /// A read slot (`backpressure`), if the update of the user it is for can still get a
    /// turn before the latest start, counting the turns of the users read before it. The
    /// first in line is always read while a read fits: the container keeps one request
    /// waiting for the schedule, so its turns are measured and it keeps its place in the
    /// fleet even when its measured rate says little can come.
    async fn read_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let latest_start = self.budget.last_attempt;
        let (slot, ahead) = self.pipeline.read_slots.take_by(latest_start).await?;
        let limits = &self.pipeline.limits;
        // The schedule's next free instant, as known: no read for a turn it already
        // puts past the latest start.
        let (booked_ahead, _) = limits.update_outlook();
        let by = latest_start.checked_sub(booked_ahead)?;
        let turns = limits.turns();
        let admitted = if ahead == 0 {
            turns.reaches(0, by)
        } else {
            turns.reaches(ahead + 1, by)
        };
        admitted.then_some(slot)
    }

    /// The instance's identity management: cached for the container, or one
    /// `DescribeInstance` however many users ask at once (single flight); a failure is
    /// shared by every user of the invocation that asks, and the next invocation asks
    /// again.
    async fn management(&self, instance: &InstanceId) -> Result<IdentityManagement, Outcome> {
        let cell = self.pipeline.instance_cell(instance);
        let directory = &self.pipeline.directory;
        cell.get_or_try_init(|| async {
            if let Some(failed) = self.instance_failure(instance) {
                return Err(failed);
            }
            let found = self
                .calls
                .call(Op::DescribeInstance, || {
                    directory.identity_management(instance)
                })
                .await;
            if let Err(failed) = &found {
                self.instance_failed(instance, failed.clone());
            }
            found
        })
        .await
        .cloned()
    }
}
