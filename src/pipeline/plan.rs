//! Planning, pure and without ports: the values the invocation's parts hand on (each
//! record an `Entry` from admission to settlement), the lanes (admitted changes grouped
//! by user and FIFO lane), the order of each user's changes by `OccurredAt` (ties in
//! arrival order), and the judgement of each change on its own against the identity
//! the earlier accepted ones leave, the accepted ones merged into at most one update.

use std::borrow::Borrow;
use std::collections::HashMap;

use crate::domain::change::{ChangeRequest, IdentityInfo};
use crate::domain::error::Failure;
use crate::domain::identity::{Field, InstanceId, UserId};
use crate::domain::instance::{IdentityManagement, UpdatePlan};
use crate::domain::policy::Policy;
use crate::domain::ports::UserRecord;
use crate::domain::record::Record;

use super::outcome::Outcome;

/// The ids a record is known by, for its span, its log line and its dead letter.
#[derive(Debug, Clone, Default)]
pub(super) struct Ids {
    pub event_id: Option<String>,
    pub instance_id: Option<String>,
    pub user_id: Option<String>,
}

/// One record of the invocation, with its place in the batch (where its disposition
/// goes) and the ids it is known by so far. It travels with its change from admission
/// to settlement.
#[derive(Clone)]
pub(super) struct Entry<'r> {
    pub at: usize,
    pub record: &'r Record,
    pub ids: Ids,
}

/// A record once admitted: its change, or the outcome it already has.
pub(super) struct Admitted<'r> {
    pub entry: Entry<'r>,
    pub change: Result<ChangeRequest, Outcome>,
}

/// A record once its user is known: the change and its user, or the outcome it
/// already has.
pub(super) struct Targeted<'r> {
    pub entry: Entry<'r>,
    pub target: Result<Target, Outcome>,
}

/// An admitted change and the user it resolved to.
pub(super) struct Target {
    pub instance: InstanceId,
    pub user: UserId,
    pub request: ChangeRequest,
}

/// One record's change, on its way through one user's read-modify-write.
pub(super) struct Change<'r> {
    pub entry: Entry<'r>,
    pub request: ChangeRequest,
}

/// One user's changes, worked on together.
pub(super) struct UserWork<'r> {
    pub instance: InstanceId,
    pub user: UserId,
    pub changes: Vec<Change<'r>>,
}

/// Records worked on together: one user's changes, or a record whose outcome is
/// already known.
pub(super) enum Unit<'r> {
    Done(Entry<'r>, Outcome),
    Apply(UserWork<'r>),
}

impl<'r> Unit<'r> {
    /// The unit's records, in order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<'r>> {
        let (done, changes) = match self {
            Unit::Done(entry, _) => (Some(entry), &[][..]),
            Unit::Apply(work) => (None, &work.changes[..]),
        };
        done.into_iter().chain(changes.iter().map(|c| &c.entry))
    }
}

/// A record and what the work on it came to, handed to settlement.
pub(super) struct Applied<'r> {
    pub entry: Entry<'r>,
    pub outcome: Outcome,
}

/// Groups records into lanes run one after another inside, lanes side by side.
/// Outside FIFO every user is a lane, holding all of that user's changes of the
/// invocation; in FIFO every message group is a lane, and consecutive changes to the
/// same user within it form one unit. A user reached from several lanes is worked on
/// by one lane at a time (see `apply`).
pub(super) fn build_lanes(targeted: Vec<Targeted<'_>>, fifo: bool) -> Vec<Vec<Unit<'_>>> {
    #[derive(PartialEq, Eq, Hash)]
    enum LaneKey {
        Group(String),
        User(InstanceId, UserId),
    }
    let mut lanes: Vec<Vec<Unit<'_>>> = Vec::new();
    let mut lane_by_key: HashMap<LaneKey, usize> = HashMap::new();
    for Targeted { entry, target } in targeted {
        let key = if fifo {
            entry.record.group.clone().map(LaneKey::Group)
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
            Err(outcome) => lane.push(Unit::Done(entry, outcome)),
            Ok(target) => {
                let change = Change {
                    entry,
                    request: target.request,
                };
                match lane.last_mut() {
                    Some(Unit::Apply(work))
                        if work.instance == target.instance && work.user == target.user =>
                    {
                        work.changes.push(change);
                    }
                    _ => lane.push(Unit::Apply(UserWork {
                        instance: target.instance,
                        user: target.user,
                        changes: vec![change],
                    })),
                }
            }
        }
    }
    lanes
}

/// The positions of `changes` in `OccurredAt` order, ties (and changes without a
/// time) in arrival order.
pub fn order<C: Borrow<ChangeRequest>>(changes: &[C]) -> Vec<usize> {
    let mut positions: Vec<usize> = (0..changes.len()).collect();
    positions.sort_by_key(|i| (changes[*i].borrow().occurred_at, *i));
    positions
}

/// One change and what its judgement came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged<C> {
    pub change: C,
    /// Accepted, or refused with its own failure.
    pub verdict: Result<(), Failure>,
}

impl<C> Judged<C> {
    pub fn accepted(&self) -> bool {
        self.verdict.is_ok()
    }
}

impl<C: Borrow<ChangeRequest>> Borrow<ChangeRequest> for Judged<C> {
    fn borrow(&self) -> &ChangeRequest {
        self.change.borrow()
    }
}

/// What becomes of each of one user's changes, and the update they share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement<C> {
    /// Each change with its verdict, in the order given.
    pub judged: Vec<Judged<C>>,
    /// The one update the accepted changes share; `None` when they change nothing.
    pub update: Option<UpdatePlan>,
    /// The fields that update changes.
    pub changed: Vec<Field>,
}

/// Judges one user's changes after the reads (SPEC §2.3 step 4, §2.4): a protected
/// security profile refuses them all; otherwise each change, in `order`, is judged
/// by the Email-domain rule and the identity-mode rules against the identity as the
/// earlier accepted changes leave it, and the accepted ones are merged. Each change
/// comes back with its verdict.
pub fn judge<C: Borrow<ChangeRequest>>(
    current: &UserRecord,
    management: &IdentityManagement,
    policy: &Policy,
    changes: impl IntoIterator<Item = C>,
) -> Judgement<C> {
    let mut judged: Vec<Judged<C>> = changes
        .into_iter()
        .map(|change| Judged {
            change,
            verdict: Ok(()),
        })
        .collect();
    if let Err(refused) =
        policy.check_security_profiles(current.security_profile_ids.iter().map(String::as_str))
    {
        for j in &mut judged {
            j.verdict = Err(refused.clone());
        }
        return Judgement {
            judged,
            update: None,
            changed: Vec::new(),
        };
    }
    let mut state: IdentityInfo = current.info.clone();
    for i in order(&judged) {
        let j = &mut judged[i];
        match judge_one(&state, management, policy, j.change.borrow()) {
            Ok(next) => state = next,
            Err(refused) => j.verdict = Err(refused),
        }
    }
    let changed = current.info.changed_fields(&state);
    let update = (!changed.is_empty()).then_some(UpdatePlan {
        info: state,
        send_email: !matches!(management, IdentityManagement::Saml),
    });
    Judgement {
        judged,
        update,
        changed,
    }
}

/// The identity after `change`, or why `change` is refused there.
fn judge_one(
    state: &IdentityInfo,
    management: &IdentityManagement,
    policy: &Policy,
    change: &ChangeRequest,
) -> Result<IdentityInfo, Failure> {
    let next = change.change.apply_to(state);
    policy.check_email_change(state.email.as_deref(), next.email.as_deref())?;
    Ok(management.plan(state, next)?.info)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::domain::change::{FieldChange, IdentityChange};
    use crate::domain::error::ErrorClass;
    use crate::domain::identity::{E164, EmailAddress, PersonName, UserRef};
    use crate::domain::policy::EmailDomains;

    fn policy() -> Policy {
        Policy {
            allowed_instances: [instance()].into(),
            email_domains: EmailDomains::parse(Some("example.com")).unwrap(),
            secondary_email_domains: EmailDomains::Any,
            protected_profiles: ["sp-admin".to_owned()].into(),
            trusted_sources: None,
        }
    }

    fn instance() -> InstanceId {
        InstanceId::parse("11111111-2222-3333-4444-555555555555").unwrap()
    }

    fn user(profiles: &[&str]) -> UserRecord {
        UserRecord {
            info: IdentityInfo {
                first_name: Some("Jane".into()),
                last_name: Some("Doe".into()),
                email: Some("jane@example.com".into()),
                secondary_email: None,
                mobile: None,
            },
            security_profile_ids: profiles.iter().map(|p| (*p).to_owned()).collect(),
            username: None,
        }
    }

    fn at(s: &str) -> Option<DateTime<Utc>> {
        Some(s.parse().unwrap())
    }

    fn request(change: IdentityChange, occurred_at: Option<DateTime<Utc>>) -> ChangeRequest {
        ChangeRequest {
            instance: instance(),
            user: UserRef::Id(UserId::parse("u-1").unwrap()),
            change,
            event_id: None,
            occurred_at,
        }
    }

    fn first(name: &str) -> IdentityChange {
        IdentityChange {
            first_name: FieldChange::Set(
                PersonName::parse(Field::FirstName, name, 255)
                    .unwrap()
                    .unwrap(),
            ),
            ..Default::default()
        }
    }

    fn email(address: &str) -> IdentityChange {
        IdentityChange {
            email: FieldChange::Set(EmailAddress::parse(Field::Email, address).unwrap().unwrap()),
            ..Default::default()
        }
    }

    fn mobile(number: &str) -> IdentityChange {
        IdentityChange {
            mobile: FieldChange::Set(E164::parse(number, None).unwrap().unwrap()),
            ..Default::default()
        }
    }

    fn class<C>(j: &Judged<C>) -> Option<ErrorClass> {
        j.verdict.as_ref().err().map(|f| f.class)
    }

    #[test]
    fn changes_are_ordered_by_occurred_at_with_ties_in_arrival_order() {
        let changes = [
            request(first("C"), at("2026-11-29T10:00:02Z")),
            request(first("A"), at("2026-11-29T10:00:01Z")),
            request(first("B"), at("2026-11-29T10:00:02Z")),
        ];
        assert_eq!(order(&changes), vec![1, 0, 2]);
    }

    #[test]
    fn a_refused_email_is_refused_alone_and_the_other_changes_are_merged() {
        let changes = [
            request(mobile("+14155550123"), at("2026-11-29T10:00:00Z")),
            request(email("jane@evil.test"), at("2026-11-29T10:00:01Z")),
            request(first("Janet"), at("2026-11-29T10:00:02Z")),
        ];
        let j = judge(
            &user(&[]),
            &IdentityManagement::ConnectManaged,
            &policy(),
            &changes,
        );
        let classes: Vec<_> = j.judged.iter().map(class).collect();
        assert_eq!(classes, [None, Some(ErrorClass::PolicyViolation), None]);
        // Each verdict is its own change's, whatever the order of judgement.
        assert!(
            j.judged
                .iter()
                .zip(&changes)
                .all(|(judged, given)| std::ptr::eq(judged.change, given))
        );
        let plan = j.update.unwrap();
        assert_eq!(plan.info.email.as_deref(), Some("jane@example.com"));
        assert_eq!(plan.info.first_name.as_deref(), Some("Janet"));
        assert_eq!(plan.info.mobile.as_deref(), Some("+14155550123"));
        assert_eq!(j.changed, vec![Field::FirstName, Field::Mobile]);
    }

    #[test]
    fn each_change_is_judged_against_the_identity_the_earlier_accepted_ones_leave() {
        // On EXISTING_DIRECTORY a name that differs is refused; the earlier change was
        // refused, so the later one, which sets the current name, is no name change.
        let changes = [
            request(first("Eve"), at("2026-11-29T10:00:00Z")),
            request(first("Jane"), at("2026-11-29T10:00:01Z")),
        ];
        let j = judge(
            &user(&[]),
            &IdentityManagement::ExistingDirectory,
            &policy(),
            &changes,
        );
        let classes: Vec<_> = j.judged.iter().map(class).collect();
        assert_eq!(classes, [Some(ErrorClass::ValidationError), None]);
        assert_eq!(j.update, None, "nothing left to change");

        // An accepted Email change is the state the next change is judged against: the
        // same Email again is no Email change, so no domain rule applies to it.
        let changes = [
            request(email("new@example.com"), at("2026-11-29T10:00:00Z")),
            request(email("new@example.com"), at("2026-11-29T10:00:01Z")),
        ];
        let j = judge(
            &user(&[]),
            &IdentityManagement::ConnectManaged,
            &policy(),
            &changes,
        );
        assert!(j.judged.iter().all(Judged::accepted));
        assert_eq!(j.changed, vec![Field::Email]);
    }

    #[test]
    fn an_email_change_on_a_saml_instance_is_refused_alone_and_email_is_never_sent() {
        let changes = [
            request(email("new@example.com"), None),
            request(mobile("+14155550123"), None),
        ];
        let j = judge(&user(&[]), &IdentityManagement::Saml, &policy(), &changes);
        let classes: Vec<_> = j.judged.iter().map(class).collect();
        assert_eq!(classes, [Some(ErrorClass::ValidationError), None]);
        let plan = j.update.unwrap();
        assert!(!plan.send_email);
        assert_eq!(j.changed, vec![Field::Mobile]);
    }

    #[test]
    fn a_protected_security_profile_refuses_every_change() {
        let changes = [
            request(mobile("+14155550123"), None),
            request(first("Ann"), None),
        ];
        let j = judge(
            &user(&["sp-admin"]),
            &IdentityManagement::ConnectManaged,
            &policy(),
            &changes,
        );
        let classes: Vec<_> = j.judged.iter().map(class).collect();
        assert_eq!(classes, [Some(ErrorClass::PolicyViolation); 2]);
        assert_eq!(j.update, None);
    }

    #[test]
    fn changes_that_leave_the_user_as_they_are_need_no_update() {
        let changes = [request(first("Jane"), None)];
        let j = judge(
            &user(&[]),
            &IdentityManagement::ConnectManaged,
            &policy(),
            &changes,
        );
        let verdicts: Vec<_> = j.judged.iter().map(|j| j.verdict.clone()).collect();
        assert_eq!(verdicts, vec![Ok(())]);
        assert_eq!(j.update, None);
        assert!(j.changed.is_empty());
    }
}
