//! The guard, the second part of an invocation, around one user's read-modify-write
//! (SPEC §2.5): take the user's lease and read the watermarks before the reads, drop
//! the field changes they supersede, and once the update succeeded (or found nothing to
//! change) write the watermarks forward and give the lease up. Without a table
//! configured it passes the changes through untouched. `Guard` holds the watermark
//! table, the container's kept leases, the clock, the policy's Email rule (for the
//! lease's intent), the invocation's `Budget` and its own counts; nothing else.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::{Instant, sleep_until, timeout_at};
use tracing::warn;

use crate::clock::Clock;
use crate::domain::change::{ChangeRequest, FieldChange, IdentityChange};
use crate::domain::error::Failure;
use crate::domain::identity::{InstanceId, UserId};
use crate::domain::policy::Policy;
use crate::domain::ports::{CallFailure, Lease, Leased, Watermarks};
use crate::domain::watermark::{FieldWatermarks, Screened};

use super::budget::Budget;
use super::outcome::Outcome;
use super::plan::Change;

/// The pause before a lease held by another invocation is asked for again; doubled
/// after each try, up to `LEASE_BACKOFF_MAX`.
const LEASE_BACKOFF: Duration = Duration::from_millis(100);
const LEASE_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The leases this container keeps after an update of unknown outcome (user → when the
/// lease lapses). They are not given back before they lapse, so waiting for one is
/// pointless: the user's records are handed back at once, without asking the table.
pub(super) type KeptLeases =
    std::sync::Mutex<std::collections::HashMap<(InstanceId, UserId), DateTime<Utc>>>;

/// The guard of no table: never built, so never called.
pub enum NoWatermarks {}

impl Watermarks for NoWatermarks {
    async fn acquire(
        &self,
        _: &InstanceId,
        _: &UserId,
        _: chrono::DateTime<Utc>,
        _: &FieldWatermarks,
    ) -> Result<Option<Leased>, CallFailure> {
        match *self {}
    }

    async fn release(&self, _: &Lease, _: Option<&FieldWatermarks>) -> Result<(), CallFailure> {
        match *self {}
    }

    async fn note_deferral(&self, _: &str, _: u32) -> Result<(), CallFailure> {
        match *self {}
    }

    async fn deferrals(&self, _: &str) -> Result<Vec<u32>, CallFailure> {
        match *self {}
    }
}

/// What the staleness guard did in this invocation.
#[derive(Default)]
pub(super) struct GuardCounts {
    /// Requests made to the watermark table.
    pub watermark_requests: AtomicU32,
    /// Users whose lease was taken.
    pub guarded_users: AtomicU32,
}

/// One change as the guard left it.
pub(super) struct GuardedChange {
    /// The change with its superseded field changes dropped.
    pub request: ChangeRequest,
    /// Every field it touched was superseded, so it ends `unchanged`
    /// (`Outcome::Superseded`) whatever the reads and the update of the others come to.
    pub superseded: bool,
}

impl GuardedChange {
    /// `outcome`, or `Superseded` when the change was wholly superseded: decided by the
    /// watermarks before the reads, it does not share what the reads or the update of
    /// the other changes came to.
    pub fn screen(&self, outcome: Outcome) -> Outcome {
        if self.superseded {
            Outcome::Superseded
        } else {
            outcome
        }
    }
}

/// Judged where the guard keeps it (`plan::judge` hands each change back with its
/// verdict).
impl std::borrow::Borrow<ChangeRequest> for &GuardedChange {
    fn borrow(&self) -> &ChangeRequest {
        &self.request
    }
}

/// One user's changes as the guard left them, in the order given, and the lease to
/// give back.
pub(super) struct Guarded {
    pub changes: Vec<GuardedChange>,
    held: Option<Leased>,
}

impl Guarded {
    /// Whether nothing is left to apply.
    pub fn nothing_left(&self) -> bool {
        self.changes.iter().all(|c| c.request.change.is_empty())
    }

    /// Each change's outcome, `outcome_of` it, screened (`GuardedChange::screen`), in
    /// the order given.
    pub fn screened(&self, outcome_of: impl Fn(&GuardedChange) -> Outcome) -> Vec<Outcome> {
        self.changes
            .iter()
            .map(|c| c.screen(outcome_of(c)))
            .collect()
    }
}

/// The staleness guard of one invocation.
pub(super) struct Guard<'a, W> {
    /// The watermark table; `None`: no guard.
    pub table: Option<&'a W>,
    /// The leases this container keeps after an update of unknown outcome.
    pub kept: &'a KeptLeases,
    /// The wall clock the table and the other containers share.
    pub clock: &'a Clock,
    /// The Email allowlist, to leave out of a lease's intent what it always refuses.
    pub policy: &'a Policy,
    pub budget: &'a Budget,
    pub counts: GuardCounts,
}

impl<W: Watermarks> Guard<'_, W> {
    /// Takes the user's lease and screens `changes` against the watermarks it read.
    /// A lease held by another invocation is waited for (asked for again with a
    /// growing pause) until the latest start of the invocation; still held then, the
    /// changes are handed back (`LeaseHeld`, whatever their receive count). A failure
    /// of the table fails them with `UnknownError`: none is applied unguarded.
    pub(super) async fn lease(
        &self,
        instance: &InstanceId,
        user: &UserId,
        changes: &[Change<'_>],
    ) -> Result<Guarded, Outcome> {
        let tally = &self.counts;
        let budget = self.budget;
        let Some(table) = self.table else {
            return Ok(Guarded {
                changes: changes
                    .iter()
                    .map(|c| GuardedChange {
                        request: c.request.clone(),
                        superseded: false,
                    })
                    .collect(),
                held: None,
            });
        };
        let changes: Vec<&ChangeRequest> = changes.iter().map(|c| &c.request).collect();
        if self.kept_here(instance, user) {
            return Err(Outcome::LeaseHeld);
        }
        let latest_start = budget.last_attempt;
        let until = budget.lease_horizon(self.clock);
        // What this lease may apply, kept with it until the release. An Email the
        // allowlist refuses whatever the user holds can never be applied: it is left
        // out, so that it holds off no older change should the lease never be released.
        let policy = self.policy;
        let may_apply: Vec<IdentityChange> = changes
            .iter()
            .map(|c| {
                let mut change = c.change.clone();
                let email = match &change.email {
                    FieldChange::Keep => None,
                    FieldChange::Set(e) => Some(Some(e.as_str())),
                    FieldChange::Clear => Some(None),
                };
                if email.is_some_and(|next| policy.refuses_email(next)) {
                    change.email = FieldChange::Keep;
                }
                change
            })
            .collect();
        let intent = FieldWatermarks::default()
            .advanced(may_apply.iter().zip(&changes).map(|(m, c)| (m, c.stamp())));
        let mut backoff = LEASE_BACKOFF;
        let mut tries = 0;
        let leased = loop {
            if Instant::now() > latest_start {
                // Asked for and still held: handed back whatever the receive count.
                return Err(if tries == 0 {
                    Outcome::Deferred
                } else {
                    Outcome::LeaseHeld
                });
            }
            tries += 1;
            tally.watermark_requests.fetch_add(1, Ordering::Relaxed);
            let ends = budget.request_ends(budget.cutoff);
            match timeout_at(ends, table.acquire(instance, user, until, &intent)).await {
                Ok(Ok(Some(leased))) => break leased,
                Ok(Ok(None)) => {}
                // One request to the table: one attempt.
                Ok(Err(failure)) => return Err(Outcome::Failed(failure.failure, 1)),
                // Cut by the cutoff: the invocation's time is up.
                Err(_) if ends >= budget.cutoff => return Err(Outcome::Deferred),
                // No answer within an attempt's budget: the table is unreachable.
                Err(_) => {
                    return Err(Outcome::from(Failure::unknown(
                        "staleness guard: the table did not answer within an attempt's budget",
                    )));
                }
            }
            // Held by another invocation: wait for it within the deadline, asking
            // once more at the latest start.
            let now = Instant::now();
            if now >= latest_start {
                return Err(Outcome::LeaseHeld);
            }
            sleep_until((now + backoff).min(latest_start)).await;
            backoff = (backoff * 2).min(LEASE_BACKOFF_MAX);
        };
        tally.guarded_users.fetch_add(1, Ordering::Relaxed);
        let present: Vec<_> = changes.iter().map(|c| c.stamp()).collect();
        let changes = changes
            .iter()
            .map(|c| {
                let Screened {
                    change,
                    superseded: mut fields,
                } = leased.watermarks.screen(c.change.clone(), c.stamp());
                // Older than what a lease never released may have applied, and the
                // changes that applied it are not here to be judged again: dropped too.
                let older = leased
                    .unsettled
                    .screen_unsettled(change, c.stamp(), &present);
                let change = older.change;
                fields.extend(older.superseded);
                let all = !fields.is_empty() && change.is_empty();
                GuardedChange {
                    request: ChangeRequest {
                        change,
                        ..(*c).clone()
                    },
                    superseded: all,
                }
            })
            .collect();
        Ok(Guarded {
            changes,
            held: Some(leased),
        })
    }

    /// Keeps the lease after an update of unknown outcome: it lapses on its own at the
    /// end of this invocation's time (and the margin), by when the request has landed
    /// or never will. Nothing is written.
    pub(super) fn keep(&self, instance: &InstanceId, user: &UserId, guarded: &Guarded) {
        if let Some(held) = &guarded.held {
            self.kept
                .lock()
                .expect("kept leases")
                .insert((instance.clone(), user.clone()), held.lease.until);
            warn!(
                lease_until = %held.lease.until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "staleness guard: the update's outcome is unknown; the user's lease is kept until it lapses"
            );
        }
    }

    /// Whether this container keeps the user's lease after an update of unknown outcome
    /// and it has not lapsed yet; lapsed ones are forgotten.
    fn kept_here(&self, instance: &InstanceId, user: &UserId) -> bool {
        let now = self.clock.now();
        let mut kept = self.kept.lock().expect("kept leases");
        kept.retain(|_, until| *until > now);
        kept.contains_key(&(instance.clone(), user.clone()))
    }

    /// Gives the lease back. `applied` are the changes now in place in Connect (the
    /// update succeeded, or found nothing to change): their fields' watermarks move to
    /// their times. `None`: the apply failed, nothing moves.
    ///
    /// # Errors
    /// The table's failure when the watermarks could not be written: the changes must
    /// come again, so that they are written.
    pub(super) async fn release(
        &self,
        guarded: &Guarded,
        applied: Option<&[&ChangeRequest]>,
    ) -> Result<(), Failure> {
        let (Some(_), Some(held)) = (self.table, &guarded.held) else {
            return Ok(());
        };
        let advanced = applied.map(|applied| {
            held.watermarks
                .clone()
                .advanced(applied.iter().map(|c| (&c.change, c.stamp())))
        });
        let advanced = advanced.filter(|a| *a != held.watermarks);
        self.give_back(
            held,
            advanced.as_ref(),
            applied.is_some(),
            self.budget.release_by,
        )
        .await
    }

    /// Gives the lease of a user whose update's turn did not come back within one
    /// attempt's budget, so that the deferral is settled in time to be queued again or
    /// noted; a lease not given back by then lapses on its own.
    pub(super) async fn release_unread(&self, guarded: &Guarded) {
        let (Some(_), Some(held)) = (self.table, &guarded.held) else {
            return;
        };
        let by = self.budget.request_ends(self.budget.release_by);
        let _ = self.give_back(held, None, false, by).await;
    }

    /// The release's request, by `send_by`: the watermarks `advanced` written with it.
    /// Its failure matters only when changes were `applied`.
    async fn give_back(
        &self,
        held: &Leased,
        advanced: Option<&FieldWatermarks>,
        applied: bool,
        send_by: Instant,
    ) -> Result<(), Failure> {
        let Some(table) = self.table else {
            return Ok(());
        };
        let tally = &self.counts;
        tally.watermark_requests.fetch_add(1, Ordering::Relaxed);
        let result = match timeout_at(send_by, table.release(&held.lease, advanced)).await {
            Ok(result) => result.map_err(|f| f.failure),
            Err(_) => Err(Failure::unknown(
                "staleness guard: writing the watermarks did not finish before the deadline",
            )),
        };
        if let Err(failure) = &result {
            warn!(error_message = %failure.message, "the lease lapses on its own");
        }
        if applied {
            result
        } else {
            // Nothing was to be written: the lease lapses by itself.
            Ok(())
        }
    }
}
