//! The staleness guard's rules (SPEC §2.5): per-field watermarks (the `OccurredAt` of
//! the last applied change of each field), which field changes they supersede, and how
//! they move forward once an update succeeded or found nothing to change.
//!
//! A change without any `OccurredAt` (no `OccurredAt` in the document, no EventBridge
//! `time`, no SQS `SentTimestamp`: only a hand-built invocation lacks all three) cannot
//! be placed in time. It is taken as older than every applied change: it is superseded
//! for each field that has a watermark, applies to the others, and moves no watermark.

use chrono::{DateTime, Utc};

use super::change::{FieldChange, IdentityChange};
use super::identity::{Field, InstanceId, UserId};

/// The key of a user's watermarks: `<instance id>#<user id>` (ids, never ARNs).
pub fn item_key(instance: &InstanceId, user: &UserId) -> String {
    format!("{}#{}", instance.as_str(), user.as_str())
}

/// Per field, the `OccurredAt` of the last change applied to it; `None` where no
/// change has been applied under the guard yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldWatermarks {
    marks: [Option<DateTime<Utc>>; 5],
}

fn slot(field: Field) -> usize {
    match field {
        Field::FirstName => 0,
        Field::LastName => 1,
        Field::Email => 2,
        Field::SecondaryEmail => 3,
        Field::Mobile => 4,
    }
}

/// One change after the guard looked at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screened {
    /// What is left of the change: the field changes newer than their watermarks.
    pub change: IdentityChange,
    /// The fields the change touched that were dropped as superseded.
    pub superseded: Vec<Field>,
}

impl Screened {
    /// The change touched fields and every one of them was superseded: it ends
    /// `unchanged` and costs no update.
    pub fn is_superseded(&self) -> bool {
        !self.superseded.is_empty() && self.change.is_empty()
    }
}

impl FieldWatermarks {
    pub fn get(&self, field: Field) -> Option<DateTime<Utc>> {
        self.marks[slot(field)]
    }

    /// The watermarks with `field` at `at`, or at the later of the two.
    #[must_use]
    pub fn with(mut self, field: Field, at: DateTime<Utc>) -> Self {
        let mark = &mut self.marks[slot(field)];
        *mark = Some(mark.map_or(at, |m| m.max(at)));
        self
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.marks.iter().all(Option::is_none)
    }

    /// Whether a change of `field` made at `at` is superseded: not newer than the
    /// field's watermark (a change of unknown time is older than any watermark).
    pub fn supersedes(&self, field: Field, at: Option<DateTime<Utc>>) -> bool {
        match (self.get(field), at) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(mark), Some(at)) => at <= mark,
        }
    }

    /// Drops from `change` (made at `at`) the field changes these watermarks supersede.
    pub fn screen(&self, change: IdentityChange, at: Option<DateTime<Utc>>) -> Screened {
        let mut superseded = Vec::new();
        let mut keep = |field: Field, touched: bool| {
            let dropped = touched && self.supersedes(field, at);
            if dropped {
                superseded.push(field);
            }
            !dropped
        };
        let IdentityChange {
            first_name,
            last_name,
            email,
            secondary_email,
            mobile,
        } = change;
        let change = IdentityChange {
            first_name: filter(first_name, |t| keep(Field::FirstName, t)),
            last_name: filter(last_name, |t| keep(Field::LastName, t)),
            email: filter(email, |t| keep(Field::Email, t)),
            secondary_email: filter(secondary_email, |t| keep(Field::SecondaryEmail, t)),
            mobile: filter(mobile, |t| keep(Field::Mobile, t)),
        };
        Screened { change, superseded }
    }

    /// The watermarks once `applied` (what is left of each change after screening,
    /// with its time) has been applied, or found already in place: each field a change
    /// touched moves to that change's time if it is later. Never backwards.
    #[must_use]
    pub fn advanced<'a>(
        self,
        applied: impl IntoIterator<Item = (&'a IdentityChange, Option<DateTime<Utc>>)>,
    ) -> Self {
        applied
            .into_iter()
            .filter_map(|(change, at)| at.map(|at| (change, at)))
            .fold(self, |marks, (change, at)| {
                change
                    .touched_fields()
                    .into_iter()
                    .fold(marks, |m, field| m.with(field, at))
            })
    }

    /// Per field, the later of `self` and `other`.
    #[must_use]
    pub fn max(self, other: &FieldWatermarks) -> Self {
        Field::ALL
            .into_iter()
            .fold(self, |m, field| match other.get(field) {
                Some(at) => m.with(field, at),
                None => m,
            })
    }
}

fn filter<T>(change: FieldChange<T>, keep: impl FnOnce(bool) -> bool) -> FieldChange<T> {
    let touched = !matches!(change, FieldChange::Keep);
    if keep(touched) {
        change
    } else {
        FieldChange::Keep
    }
}

/// One user's changes of an invocation, screened in order: what is left of each, and
/// which end `unchanged` because every field they touched was superseded.
///
/// Each change is screened against the stored watermarks only, not against the other
/// changes of the invocation: their relative order is kept by coalescing them in
/// `OccurredAt` order.
pub fn screen_all(
    marks: &FieldWatermarks,
    changes: impl IntoIterator<Item = (IdentityChange, Option<DateTime<Utc>>)>,
) -> Vec<Screened> {
    changes
        .into_iter()
        .map(|(change, at)| marks.screen(change, at))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identity::PersonName;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn name(s: &str) -> PersonName {
        PersonName::parse(Field::LastName, s, 300).unwrap().unwrap()
    }

    fn last_name(s: &str) -> IdentityChange {
        IdentityChange {
            last_name: FieldChange::Set(name(s)),
            ..Default::default()
        }
    }

    #[test]
    fn the_item_key_is_the_instance_id_and_the_user_id() {
        let key = item_key(
            &InstanceId::parse("arn:aws:connect:us-east-1:123456789012:instance/i-1").unwrap(),
            &UserId::parse("u-1").unwrap(),
        );
        assert_eq!(key, "i-1#u-1");
    }

    #[test]
    fn a_change_older_than_the_fields_watermark_is_superseded() {
        let marks = FieldWatermarks::default().with(Field::LastName, t("2026-01-01T10:00:05Z"));
        let s = marks.screen(last_name("Older"), Some(t("2026-01-01T10:00:01Z")));
        assert!(s.is_superseded());
        assert_eq!(s.superseded, vec![Field::LastName]);
        assert!(s.change.is_empty());
    }

    #[test]
    fn a_change_as_old_as_the_watermark_is_superseded_a_newer_one_applies() {
        let marks = FieldWatermarks::default().with(Field::LastName, t("2026-01-01T10:00:05Z"));
        let same = marks.screen(last_name("Same"), Some(t("2026-01-01T10:00:05Z")));
        assert!(same.is_superseded(), "a redelivered change is not newer");
        let newer = marks.screen(last_name("Newer"), Some(t("2026-01-01T10:00:05.001Z")));
        assert!(!newer.is_superseded());
        assert!(newer.superseded.is_empty());
        assert_eq!(newer.change, last_name("Newer"));
    }

    #[test]
    fn the_other_fields_of_a_partly_stale_change_still_apply() {
        let marks = FieldWatermarks::default().with(Field::LastName, t("2026-01-01T10:00:05Z"));
        let change = IdentityChange {
            first_name: FieldChange::Set(name("Jo")),
            last_name: FieldChange::Set(name("Older")),
            mobile: FieldChange::Clear,
            ..Default::default()
        };
        let s = marks.screen(change, Some(t("2026-01-01T10:00:01Z")));
        assert!(!s.is_superseded());
        assert_eq!(s.superseded, vec![Field::LastName]);
        assert_eq!(s.change.last_name, FieldChange::Keep);
        assert_eq!(s.change.first_name, FieldChange::Set(name("Jo")));
        assert_eq!(s.change.mobile, FieldChange::Clear);
    }

    #[test]
    fn a_field_without_a_watermark_is_never_superseded() {
        let marks = FieldWatermarks::default().with(Field::Email, t("2030-01-01T00:00:00Z"));
        let s = marks.screen(last_name("Any"), Some(t("2000-01-01T00:00:00Z")));
        assert!(s.superseded.is_empty());
        assert_eq!(s.change, last_name("Any"));
    }

    #[test]
    fn a_change_of_unknown_time_is_older_than_any_watermark_and_moves_none() {
        let marks = FieldWatermarks::default().with(Field::LastName, t("2000-01-01T00:00:00Z"));
        let change = IdentityChange {
            first_name: FieldChange::Set(name("Jo")),
            last_name: FieldChange::Set(name("X")),
            ..Default::default()
        };
        let s = marks.screen(change, None);
        assert_eq!(s.superseded, vec![Field::LastName]);
        assert_eq!(s.change.first_name, FieldChange::Set(name("Jo")));
        assert_eq!(marks.advanced([(&s.change, None)]), marks);
    }

    #[test]
    fn an_empty_change_is_not_superseded() {
        let marks = FieldWatermarks::default().with(Field::LastName, t("2026-01-01T00:00:00Z"));
        let s = marks.screen(IdentityChange::default(), Some(t("2025-01-01T00:00:00Z")));
        assert!(!s.is_superseded(), "it ends unchanged for naming no field");
    }

    #[test]
    fn watermarks_move_forward_to_the_latest_applied_change_of_each_field() {
        let start = FieldWatermarks::default()
            .with(Field::LastName, t("2026-01-01T10:00:05Z"))
            .with(Field::Email, t("2026-01-01T10:00:09Z"));
        let newer_last = last_name("A");
        let both = IdentityChange {
            last_name: FieldChange::Set(name("B")),
            email: FieldChange::Clear,
            ..Default::default()
        };
        let after = start.advanced([
            (&newer_last, Some(t("2026-01-01T10:00:07Z"))),
            (&both, Some(t("2026-01-01T10:00:06Z"))),
        ]);
        assert_eq!(after.get(Field::LastName), Some(t("2026-01-01T10:00:07Z")));
        assert_eq!(
            after.get(Field::Email),
            Some(t("2026-01-01T10:00:09Z")),
            "an older applied change does not move a watermark back"
        );
        assert_eq!(after.get(Field::FirstName), None, "untouched fields stay");
    }

    #[test]
    fn the_maximum_of_two_sets_of_watermarks_is_taken_per_field() {
        let a = FieldWatermarks::default()
            .with(Field::FirstName, t("2026-01-01T00:00:02Z"))
            .with(Field::Mobile, t("2026-01-01T00:00:01Z"));
        let b = FieldWatermarks::default()
            .with(Field::FirstName, t("2026-01-01T00:00:01Z"))
            .with(Field::Mobile, t("2026-01-01T00:00:03Z"));
        let m = a.max(&b);
        assert_eq!(m.get(Field::FirstName), Some(t("2026-01-01T00:00:02Z")));
        assert_eq!(m.get(Field::Mobile), Some(t("2026-01-01T00:00:03Z")));
        assert!(!m.is_empty());
        assert!(FieldWatermarks::default().is_empty());
    }

    #[test]
    fn screening_a_users_changes_marks_each_superseded_one() {
        let marks = FieldWatermarks::default().with(Field::LastName, t("2026-01-01T10:00:05Z"));
        let out = screen_all(
            &marks,
            [
                (last_name("Old"), Some(t("2026-01-01T10:00:01Z"))),
                (last_name("New"), Some(t("2026-01-01T10:00:09Z"))),
            ],
        );
        assert!(out[0].is_superseded());
        assert!(!out[1].is_superseded());
        let after = marks.advanced(
            out.iter()
                .zip([t("2026-01-01T10:00:01Z"), t("2026-01-01T10:00:09Z")])
                .map(|(s, at)| (&s.change, Some(at))),
        );
        assert_eq!(after.get(Field::LastName), Some(t("2026-01-01T10:00:09Z")));
    }
}
