//! Applying, the third part of an invocation: one user's read-modify-write. The
//! instance's identity management, the user's turn, a read slot (`backpressure`), the
//! user's lease (the `Guard`), `DescribeUser` (after the update's turn is claimed when
//! the container's turns do not promise one), the judgement of each change
//! (`plan::judge`) and at most one update, every call through the invocation's one
//! attempt loop (`Calls`); and, when `DescribeUser` no longer confirms a Username's
//! resolution, the same once more with the user the `Resolver` finds now. `Applier`
//! holds the directory, the container's instance cells and read slots, the policy, the
//! invocation's `Budget`, calls, guard and resolver, and the users' turns.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio::sync::{Mutex as TurnLock, OnceCell, OwnedMutexGuard, OwnedSemaphorePermit};
use tokio::time::timeout_at;

use crate::domain::change::ChangeRequest;
use crate::domain::error::Failure;
use crate::domain::identity::{InstanceId, UserId};
use crate::domain::instance::IdentityManagement;
use crate::domain::policy::Policy;
use crate::domain::ports::{Directory, UserRecord, Watermarks};
use crate::limiter::Turn;

use super::InstanceCells;
use super::backpressure::ReadSlots;
use super::budget::Budget;
use super::calls::{Calls, Op, RateLimits};
use super::guard::Guard;
use super::outcome::Outcome;
use super::plan::{Applied, Change, UserWork, judge};
use super::usernames::{Confirmed, ResolveAgain, Resolver, username_of};

/// One turn per user: a lane holds at most one user's turn at a time, from its
/// `DescribeUser` through its update, so lanes never wait on each other in a cycle.
#[derive(Default)]
pub(super) struct UserTurns {
    turns: Mutex<HashMap<UserKey, Arc<TurnLock<()>>>>,
}

type UserKey = (InstanceId, UserId);

impl UserTurns {
    async fn turn(&self, instance: &InstanceId, user: &UserId) -> OwnedMutexGuard<()> {
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

/// A user's place before its read: its read slot, held through its update, and which
/// comes first.
struct ReadPlace {
    _slot: OwnedSemaphorePermit,
    order: Order,
}

/// Which comes first for a user: its read, or its update's turn.
enum Order {
    /// Read now; the turn is waited for by the update.
    ReadFirst,
    /// The turn is claimed unread, and the user read before the turn's point; the
    /// container's one place for that (`ReadSlots::hold_by`) is held through the update.
    TurnFirst { _holder: OwnedSemaphorePermit },
}

/// Applying: one user's changes read, judged and applied.
pub(super) struct Applier<'a, D, W> {
    pub directory: &'a D,
    pub policy: &'a Policy,
    pub budget: &'a Budget,
    pub calls: &'a Calls<'a>,
    /// The container's rates, for the backpressure before the reads.
    pub limits: &'a RateLimits,
    /// Users holding a read while they wait for their update's turn.
    pub read_slots: &'a ReadSlots,
    /// Each instance's identity management, asked for once per container.
    pub instances: &'a InstanceCells,
    pub resolver: &'a Resolver<'a, D>,
    pub guard: &'a Guard<'a, W>,
    /// One read-modify-write per user at a time.
    pub turns: UserTurns,
    /// Instances whose `DescribeInstance` failed in this invocation, and how.
    pub instance_failures: Mutex<HashMap<InstanceId, Outcome>>,
}

impl<D: Directory, W: Watermarks> Applier<'_, D, W> {
    /// Applies one user's changes: what each came to, in the order given. A panic
    /// fails them all with `UnknownError`.
    pub(super) async fn apply<'r>(&self, work: UserWork<'r>) -> Vec<Applied<'r>> {
        let entries: Vec<_> = work.changes.iter().map(|c| c.entry.clone()).collect();
        AssertUnwindSafe(self.apply_work(work))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                let failed =
                    Outcome::from(Failure::unknown("internal error while applying the change"));
                entries
                    .into_iter()
                    .map(|entry| Applied {
                        entry,
                        outcome: failed.clone(),
                    })
                    .collect()
            })
    }

    /// One user's read-modify-write, resolving a refused Username once more.
    async fn apply_work<'r>(&self, work: UserWork<'r>) -> Vec<Applied<'r>> {
        let UserWork {
            instance,
            user,
            changes,
        } = work;
        let confirm = |described: &Result<UserRecord, Outcome>| {
            self.resolver.confirm(&instance, &user, &changes, described)
        };
        match self.apply_user(&instance, &user, &changes, confirm).await {
            Ok(outcomes) => applied(changes, outcomes),
            Err(ResolveAgain) => self.apply_again(&instance, &user, changes).await,
        }
    }

    /// The second pass, after `DescribeUser` refused a resolution by Username: the
    /// changes by id go on with `user`, each Username's changes with the user it
    /// resolves to now; a refusal now decides.
    async fn apply_again<'r>(
        &self,
        instance: &InstanceId,
        user: &UserId,
        changes: Vec<Change<'r>>,
    ) -> Vec<Applied<'r>> {
        // Group the changes: by id (kept with `user`), and per Username.
        let mut groups: Vec<(Option<String>, Vec<Change<'r>>)> = Vec::new();
        for change in changes {
            let name = username_of(&change.request).map(str::to_owned);
            match groups.iter_mut().find(|(n, _)| *n == name) {
                Some((_, members)) => members.push(change),
                None => groups.push((name, vec![change])),
            }
        }
        let mut done = Vec::new();
        for (name, subset) in groups {
            let again = match &name {
                None => Ok(user.clone()),
                Some(name) => self.resolver.resolve_again(instance, name).await,
            };
            let outcomes = match again {
                Ok(again) => {
                    let confirm = |described: &Result<UserRecord, Outcome>| {
                        self.resolver
                            .confirm_again(instance, &again, &subset, described)
                    };
                    let Ok(outcomes) = self.apply_user(instance, &again, &subset, confirm).await;
                    outcomes
                }
                Err(outcome) => vec![outcome; subset.len()],
            };
            done.extend(applied(subset, outcomes));
        }
        // Settled in the order the records came, as the first pass would be.
        done.sort_by_key(|a| a.entry.at);
        done
    }

    /// One user's read-modify-write: read the instance's identity management and the
    /// user, judge each change (`plan::judge`), and make at most one update for the
    /// accepted ones. Returns one outcome per change, in the order given, or what a
    /// stale Username resolution leads to (`confirm` says).
    async fn apply_user<X>(
        &self,
        instance: &InstanceId,
        user: &UserId,
        changes: &[Change<'_>],
        confirm: impl Fn(&Result<UserRecord, Outcome>) -> Confirmed<X>,
    ) -> Result<Vec<Outcome>, X> {
        let all = |o: Outcome| Ok(vec![o; changes.len()]);
        if changes.iter().all(|c| c.request.change.is_empty()) {
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
        let Some(place) = self.read_slot().await else {
            return all(Outcome::NoTurn);
        };
        // The staleness guard's lease keeps other containers out until the release
        // below; the field changes its watermarks supersede are dropped.
        let guarded = match self.guard.lease(instance, user, changes).await {
            Ok(guarded) => guarded,
            Err(o) => return all(o),
        };
        let guard = self.guard;
        if guarded.nothing_left() {
            // No update and no watermark to move: only the lease is given back.
            let _ = guard.release(&guarded, None).await;
            return Ok(guarded.screened(|_| Outcome::Unchanged));
        }
        // A user whose turn the container's measured rate does not promise is read
        // once its turn is claimed, before the turn's point: a read for a turn that
        // never comes would cost its redelivery a second read.
        let (read, mut turn) = match place.order {
            Order::ReadFirst => (None, None),
            Order::TurnFirst { .. } => match self.turn_first().await {
                Some((read, turn)) => (Some(read), Some(turn)),
                None => {
                    guard.release_unread(&guarded).await;
                    return Ok(guarded.screened(|_| Outcome::NoTurn));
                }
            },
        };
        // A turn claimed for a user that turns out to need no update goes to the next
        // user that does.
        let spare = |turn: &mut Option<Turn>| {
            if let Some(turn) = turn.take() {
                self.limits.spare_turn(turn);
            }
        };
        let directory = self.directory;
        let described = self
            .calls
            .call_in_turn(Op::DescribeUser, None, read, || {
                directory.describe_user(instance, user)
            })
            .await;
        // A user found by Username is used only while DescribeUser returns that Username.
        match confirm(&described) {
            Confirmed::Go => {}
            Confirmed::Stale(again) => {
                spare(&mut turn);
                let _ = guard.release(&guarded, None).await;
                return Err(again);
            }
            Confirmed::Refused(refusal) => {
                spare(&mut turn);
                let _ = guard.release(&guarded, None).await;
                return Ok(guarded.screened(|c| refusal.of(&c.request)));
            }
        }
        let current = match described {
            Ok(current) => current,
            Err(o) => {
                spare(&mut turn);
                let _ = guard.release(&guarded, None).await;
                return Ok(guarded.screened(|_| o.clone()));
            }
        };
        let judgement = judge(&current, &management, self.policy, &guarded.changes);
        self.limits.turns().read(judgement.update.is_some());
        if judgement.update.is_none() {
            spare(&mut turn);
        }
        let shared = match &judgement.update {
            None => Outcome::Unchanged,
            Some(plan) => match self
                .calls
                .call_in_turn(
                    Op::UpdateUserIdentityInfo,
                    Some(&format!("{}#{}", instance.as_str(), user.as_str())),
                    turn,
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
        let accepted: Vec<&ChangeRequest> = judgement
            .judged
            .iter()
            .filter(|j| j.accepted())
            .map(|j| &j.change.request)
            .collect();
        let released = if matches!(shared, Outcome::Unknown(..)) {
            // The request may still land: the lease is kept until it lapses, so that no
            // newer change to the user is applied (by any container) before then.
            guard.keep(instance, user, &guarded);
            Ok(())
        } else {
            guard
                .release(&guarded, in_place.then_some(&accepted[..]))
                .await
        };
        let shared = match released {
            Ok(()) => shared,
            Err(failure) => Outcome::from(failure),
        };
        Ok(judgement
            .judged
            .into_iter()
            .map(|j| {
                j.change.screen(match j.verdict {
                    Err(refused) => Outcome::from(refused),
                    Ok(()) => shared.clone(),
                })
            })
            .collect())
    }

    /// A read slot (`backpressure`), if the update of the user it is for can still get a
    /// turn before the latest start, counting the turns of the users read before it. The
    /// first in line always gets one while a read fits: the container keeps one request
    /// waiting for the schedule, so its turns are measured and it keeps its place in the
    /// fleet even when its measured rate says little can come; when the rate does not
    /// promise its turn (and most reads need an update), it is read once its turn is
    /// claimed (`Order::TurnFirst`).
    async fn read_slot(&self) -> Option<ReadPlace> {
        let latest_start = self.budget.last_attempt;
        let slots = self.read_slots;
        let (slot, ahead) = slots.take_by(latest_start).await?;
        let limits = self.limits;
        // The schedule's next free instant, as known: no read for a turn it already
        // puts past the latest start.
        let (booked_ahead, _) = limits.update_outlook();
        let by = latest_start.checked_sub(booked_ahead)?;
        let turns = limits.turns();
        let read_first = Some(ReadPlace {
            _slot: slot,
            order: Order::ReadFirst,
        });
        if !turns.mostly_updates() {
            // Most users read need no update: reading first keeps the turns for those
            // that do, and the first in line is read while a read fits.
            let ahead = if ahead == 0 { 0 } else { ahead + 1 };
            return read_first.filter(|_| turns.reaches(ahead, by));
        }
        // Most need one: a user is read first only when the turns promise it one with a
        // turn to spare; the others wait for a turn unread, one at a time.
        if turns.reaches(ahead + 2, by) {
            return read_first;
        }
        drop(read_first);
        if !turns.reaches(0, by) {
            return None;
        }
        // Stood by no later than the turn can still be claimed (an attempt's time for the
        // read before the last start), so that a user the place never reaches is deferred
        // with the time left to queue or note its deferral.
        let claim_by = by.checked_sub(self.budget.attempt)?;
        let holder = slots.hold_by(claim_by).await?;
        let (slot, _) = slots.take_by(claim_by).await?;
        Some(ReadPlace {
            _slot: slot,
            order: Order::TurnFirst { _holder: holder },
        })
    }

    /// The turns of a user read after its update's turn was claimed: its read's first
    /// (the container's `DescribeUser` rate may make it wait), then its update's, claimed
    /// ahead of its point, early enough for the read to be made before the point and
    /// before the last attempt start.
    async fn turn_first(&self) -> Option<(Turn, Turn)> {
        let budget = self.budget;
        let by = budget.last_attempt.checked_sub(budget.attempt)?;
        let read = self.calls.turn(Op::DescribeUser, by).await?;
        let update = self.calls.claim(Op::UpdateUserIdentityInfo, by).await?;
        Some((read, update))
    }

    /// The instance's identity management: cached for the container, or one
    /// `DescribeInstance` however many users ask at once (single flight); a failure is
    /// shared by every user of the invocation that asks, and the next invocation asks
    /// again.
    async fn management(&self, instance: &InstanceId) -> Result<IdentityManagement, Outcome> {
        let cell = self.instance_cell(instance);
        let directory = self.directory;
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

    /// Where `instance`'s identity management is kept once known.
    fn instance_cell(&self, instance: &InstanceId) -> Arc<OnceCell<IdentityManagement>> {
        Arc::clone(
            self.instances
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(instance.clone())
                .or_default(),
        )
    }

    /// How `DescribeInstance` of `instance` failed in this invocation, if it did.
    fn instance_failure(&self, instance: &InstanceId) -> Option<Outcome> {
        self.instance_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance)
            .cloned()
    }

    fn instance_failed(&self, instance: &InstanceId, outcome: Outcome) {
        self.instance_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(instance.clone(), outcome);
    }
}

/// Each change's record with what it came to; `outcomes` holds one per change, in the
/// order given.
fn applied<'r>(changes: Vec<Change<'r>>, outcomes: Vec<Outcome>) -> Vec<Applied<'r>> {
    debug_assert_eq!(changes.len(), outcomes.len(), "one outcome per change");
    changes
        .into_iter()
        .zip(outcomes)
        .map(|(c, outcome)| Applied {
            entry: c.entry,
            outcome,
        })
        .collect()
}
