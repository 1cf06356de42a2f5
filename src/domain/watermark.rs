//! The staleness guard's rules (SPEC §2.5): per-field watermarks (the `OccurredAt` of
//! the last applied change of each field, and the `EventId`s of the changes applied at
//! exactly that time), which field changes they supersede, and how they move forward
//! once an update succeeded or found nothing to change.
//!
//! Ties: EventBridge's `time` has one-second resolution, so two different changes to a
//! user can carry the same `OccurredAt`. A change as old as a field's watermark is
//! superseded only if it is one of the changes that set it (same `EventId`): the second
//! change of a second counts, its redelivery does not. A watermark that names no change
//! (written before the ids were kept) supersedes every change of its time.
//!
//! A change without any `OccurredAt` (no `OccurredAt` in the document, no EventBridge
//! `time`, no SQS attribute or `SentTimestamp`: only a hand-built invocation lacks them
//! all) cannot be placed in time. It is taken as older than every applied change: it is
//! superseded for each field that has a watermark, applies to the others, and moves no
//! watermark.

use chrono::{DateTime, Utc};

use super::change::{FieldChange, IdentityChange, Stamp};
use super::identity::Field;

/// How many `EventId`s one field's watermark keeps for its time: a burst of more
/// changes to one field of one user inside one tick of the publisher's clock is not
/// expected; past it, the oldest are forgotten (their redelivery would apply again,
/// as a read-modify-write of the same values).
pub const EVENTS_PER_MARK: usize = 32;

/// How a change's `EventId` is kept in a watermark: as it is when it is a plain token,
/// else as a digest of itself (`event_id::plain`), so that an item stays small whatever
/// a publisher writes, and holds no document text. Ids read from a document are plain
/// already; this holds for any other caller.
pub fn event_key(event_id: &str) -> String {
    super::event_id::plain(event_id)
}

/// One field's watermark: the time of the last change applied to it, and the ids of
/// the changes applied at exactly that time (as [`event_key`] keeps them), oldest
/// first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub at: DateTime<Utc>,
    pub events: Vec<String>,
}

impl Mark {
    /// A mark set by the change `event` (when it has an id) at `at`.
    pub fn new(at: DateTime<Utc>, event: Option<&str>) -> Self {
        Mark {
            at,
            events: event.into_iter().map(event_key).collect(),
        }
    }

    /// Whether a change made at `at` with id `event` is superseded by this mark: older,
    /// or of the same time and one of the changes that set it (or of the same time and
    /// not to be told apart from them: no id on either side).
    fn supersedes(&self, at: DateTime<Utc>, event: Option<&str>) -> bool {
        match at.cmp(&self.at) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => match event {
                None => true,
                Some(e) => self.events.is_empty() || self.events.contains(&event_key(e)),
            },
        }
    }

    /// The mark once the change `event` made at `at` is applied: a later time
    /// replaces it, the same time adds the id, an earlier one leaves it.
    #[must_use]
    fn then(mut self, at: DateTime<Utc>, event: Option<&str>) -> Self {
        match at.cmp(&self.at) {
            std::cmp::Ordering::Greater => Mark::new(at, event),
            std::cmp::Ordering::Less => self,
            std::cmp::Ordering::Equal => {
                if let Some(e) = event.map(event_key)
                    && !self.events.contains(&e)
                {
                    self.events.push(e);
                    let excess = self.events.len().saturating_sub(EVENTS_PER_MARK);
                    self.events.drain(..excess);
                }
                self
            }
        }
    }
}

/// Per field, the watermark of the last change applied to it; `None` where no change
/// has been applied under the guard yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldWatermarks {
    marks: [Option<Mark>; 5],
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
    /// The time of `field`'s watermark.
    pub fn get(&self, field: Field) -> Option<DateTime<Utc>> {
        self.marks[slot(field)].as_ref().map(|m| m.at)
    }

    /// `field`'s watermark, with the ids of the changes that set it.
    pub fn mark(&self, field: Field) -> Option<&Mark> {
        self.marks[slot(field)].as_ref()
    }

    /// The watermarks with `field` at `at`, set by a change of unknown id (or kept at
    /// the later time).
    #[must_use]
    pub fn with(self, field: Field, at: DateTime<Utc>) -> Self {
        self.with_change(field, Stamp::new(Some(at), None))
    }

    /// The watermarks once the change `stamp` of `field` is applied: the later time
    /// wins; at the same time the change's id is added. A change of unknown time moves
    /// nothing.
    #[must_use]
    pub fn with_change(mut self, field: Field, stamp: Stamp<'_>) -> Self {
        let Some(at) = stamp.at else {
            return self;
        };
        let mark = &mut self.marks[slot(field)];
        *mark = Some(match mark.take() {
            None => Mark::new(at, stamp.event),
            Some(m) => m.then(at, stamp.event),
        });
        self
    }

    /// The watermarks with `field`'s watermark replaced by `mark`, as stored.
    #[must_use]
    pub fn with_mark(mut self, field: Field, mark: Mark) -> Self {
        self.marks[slot(field)] = Some(mark);
        self
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.marks.iter().all(Option::is_none)
    }

    /// Whether a change of `field` stamped `stamp` is superseded: older than the
    /// field's watermark, or as old and one of the changes that set it (a change of
    /// unknown time is older than any watermark).
    pub fn supersedes(&self, field: Field, stamp: Stamp<'_>) -> bool {
        match (self.mark(field), stamp.at) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(mark), Some(at)) => mark.supersedes(at, stamp.event),
        }
    }

    /// Drops from `change` (stamped `stamp`) the field changes these watermarks
    /// supersede.
    pub fn screen(&self, change: IdentityChange, stamp: Stamp<'_>) -> Screened {
        screen_by(change, |field| self.supersedes(field, stamp))
    }

    /// Drops from `change` (stamped `stamp`) the field changes these marks hold off: the
    /// screen of the changes a lease that was never released may have applied
    /// (`Leased::unsettled`, each field's mark the newest time that lease brought, with
    /// the ids of its changes of that time). A change older than a field's mark is
    /// held off (a change of unknown time is older than any), since the value in place
    /// may be the mark's, with no watermark written for it; unless every change that
    /// set the mark is in `present` (the changes judged with this one, by `EventId`):
    /// they are judged again and, if accepted, applied after it in `OccurredAt` order,
    /// so the intent adds nothing, and a change of the same lease is not held off by
    /// the lease's own intent. A change of the mark's own time passes, so that the
    /// change that left it, delivered again, is applied (or found in place) and its
    /// watermark written. A mark without ids (stored before they were kept) holds off
    /// every older change.
    pub fn screen_unsettled(
        &self,
        change: IdentityChange,
        stamp: Stamp<'_>,
        present: &[Stamp<'_>],
    ) -> Screened {
        let here: Vec<String> = present
            .iter()
            .filter_map(|s| s.event)
            .map(event_key)
            .collect();
        screen_by(change, |field| match (self.mark(field), stamp.at) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(mark), Some(at)) => {
                at < mark.at
                    && (mark.events.is_empty() || !mark.events.iter().all(|e| here.contains(e)))
            }
        })
    }

    /// The watermarks once `applied` (what is left of each change after screening,
    /// with its stamp) has been applied, or found already in place: each field a
    /// change touched moves to that change's time if it is later, and takes its id at
    /// the same time. Never backwards.
    #[must_use]
    pub fn advanced<'a, 'b>(
        self,
        applied: impl IntoIterator<Item = (&'a IdentityChange, Stamp<'b>)>,
    ) -> Self {
        applied.into_iter().fold(self, |marks, (change, stamp)| {
            change
                .touched_fields()
                .into_iter()
                .fold(marks, |m, field| m.with_change(field, stamp))
        })
    }

    /// Per field, the later of `self` and `other` (at the same time, the ids of both).
    #[must_use]
    pub fn max(self, other: &FieldWatermarks) -> Self {
        Field::ALL
            .into_iter()
            .fold(self, |m, field| match other.mark(field) {
                Some(mark) if mark.events.is_empty() => {
                    m.with_change(field, Stamp::new(Some(mark.at), None))
                }
                Some(mark) => mark.events.iter().fold(m, |m, e| {
                    m.with_change(field, Stamp::new(Some(mark.at), Some(e)))
                }),
                None => m,
            })
    }
}

/// Drops from `change` the field changes of the fields `dropped` names.
fn screen_by(change: IdentityChange, dropped: impl Fn(Field) -> bool) -> Screened {
    let mut superseded = Vec::new();
    let mut keep = |field: Field, touched: bool| {
        let drop = touched && dropped(field);
        if drop {
            superseded.push(field);
        }
        !drop
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
pub fn screen_all<'a>(
    marks: &FieldWatermarks,
    changes: impl IntoIterator<Item = (IdentityChange, Stamp<'a>)>,
) -> Vec<Screened> {
    changes
        .into_iter()
        .map(|(change, stamp)| marks.screen(change, stamp))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identity::PersonName;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn at(s: &str) -> Stamp<'static> {
        Stamp::new(Some(t(s)), None)
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
    fn a_change_older_than_the_fields_watermark_is_superseded() {
        let marks = FieldWatermarks::default().with(Field::LastName, t("2026-01-01T10:00:05Z"));
        let s = marks.screen(last_name("Older"), at("2026-01-01T10:00:01Z"));
        assert!(s.is_superseded());
        assert_eq!(s.superseded, vec![Field::LastName]);
        assert!(s.change.is_empty());
    }

    #[test]
    fn a_change_as_old_as_the_watermark_is_superseded_a_newer_one_applies() {
        let marks = FieldWatermarks::default().with(Field::LastName, t("2026-01-01T10:00:05Z"));
        let same = marks.screen(last_name("Same"), at("2026-01-01T10:00:05Z"));
        assert!(same.is_superseded(), "a redelivered change is not newer");
        let newer = marks.screen(last_name("Newer"), at("2026-01-01T10:00:05.001Z"));
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
        let s = marks.screen(change, at("2026-01-01T10:00:01Z"));
        assert!(!s.is_superseded());
        assert_eq!(s.superseded, vec![Field::LastName]);
        assert_eq!(s.change.last_name, FieldChange::Keep);
        assert_eq!(s.change.first_name, FieldChange::Set(name("Jo")));
        assert_eq!(s.change.mobile, FieldChange::Clear);
    }

    #[test]
    fn a_field_without_a_watermark_is_never_superseded() {
        let marks = FieldWatermarks::default().with(Field::Email, t("2030-01-01T00:00:00Z"));
        let s = marks.screen(last_name("Any"), at("2000-01-01T00:00:00Z"));
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
        let s = marks.screen(change, Stamp::default());
        assert_eq!(s.superseded, vec![Field::LastName]);
        assert_eq!(s.change.first_name, FieldChange::Set(name("Jo")));
        assert_eq!(
            marks.clone().advanced([(&s.change, Stamp::default())]),
            marks
        );
    }

    #[test]
    fn an_empty_change_is_not_superseded() {
        let marks = FieldWatermarks::default().with(Field::LastName, t("2026-01-01T00:00:00Z"));
        let s = marks.screen(IdentityChange::default(), at("2025-01-01T00:00:00Z"));
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
            (&newer_last, at("2026-01-01T10:00:07Z")),
            (&both, at("2026-01-01T10:00:06Z")),
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
                (last_name("Old"), at("2026-01-01T10:00:01Z")),
                (last_name("New"), at("2026-01-01T10:00:09Z")),
            ],
        );
        assert!(out[0].is_superseded());
        assert!(!out[1].is_superseded());
        let after = marks.advanced(
            out.iter()
                .zip([t("2026-01-01T10:00:01Z"), t("2026-01-01T10:00:09Z")])
                .map(|(s, when)| (&s.change, Stamp::new(Some(when), None))),
        );
        assert_eq!(after.get(Field::LastName), Some(t("2026-01-01T10:00:09Z")));
    }

    fn event<'a>(s: &str, id: &'a str) -> Stamp<'a> {
        Stamp::new(Some(t(s)), Some(id))
    }

    #[test]
    fn a_second_change_in_the_same_second_applies_and_its_redelivery_is_superseded() {
        let second = "2026-01-01T10:00:05Z";
        let marks =
            FieldWatermarks::default().with_change(Field::LastName, event(second, "ev-remove"));
        let add = marks.screen(last_name("Added"), event(second, "ev-add"));
        assert!(
            add.superseded.is_empty(),
            "a different change of the same second counts"
        );
        let marks = marks.advanced([(&add.change, event(second, "ev-add"))]);
        for id in ["ev-add", "ev-remove"] {
            let again = marks.screen(last_name("Added"), event(second, id));
            assert!(again.is_superseded(), "{id} redelivered");
        }
        assert_eq!(
            marks.mark(Field::LastName).unwrap().events,
            vec!["ev-remove".to_owned(), "ev-add".to_owned()]
        );
    }

    #[test]
    fn a_tie_without_an_id_on_either_side_is_superseded() {
        let second = "2026-01-01T10:00:05Z";
        let without_ids = FieldWatermarks::default().with(Field::LastName, t(second));
        assert!(
            without_ids
                .screen(last_name("X"), event(second, "ev-1"))
                .is_superseded(),
            "a watermark that names no change may have been set by this one"
        );
        let with_id =
            FieldWatermarks::default().with_change(Field::LastName, event(second, "ev-0"));
        assert!(with_id.screen(last_name("X"), at(second)).is_superseded());
        assert!(
            !with_id
                .screen(last_name("X"), event(second, "ev-1"))
                .is_superseded()
        );
    }

    #[test]
    fn a_later_change_replaces_the_ids_an_older_one_leaves_them() {
        let marks = FieldWatermarks::default()
            .with_change(Field::Mobile, event("2026-01-01T10:00:05Z", "a"))
            .with_change(Field::Mobile, event("2026-01-01T10:00:04Z", "old"))
            .with_change(Field::Mobile, event("2026-01-01T10:00:05Z", "b"));
        assert_eq!(marks.mark(Field::Mobile).unwrap().events, vec!["a", "b"]);
        let later = marks.with_change(Field::Mobile, event("2026-01-01T10:00:05.5Z", "c"));
        assert_eq!(
            later.mark(Field::Mobile),
            Some(&Mark::new(t("2026-01-01T10:00:05.5Z"), Some("c")))
        );
        assert!(
            later
                .screen(
                    IdentityChange {
                        mobile: FieldChange::Clear,
                        ..Default::default()
                    },
                    event("2026-01-01T10:00:05Z", "d")
                )
                .is_superseded(),
            "sub-second precision orders it before the watermark"
        );
    }

    #[test]
    fn a_mark_keeps_the_latest_ids_of_its_time_up_to_its_bound() {
        let second = "2026-01-01T10:00:05Z";
        let ids: Vec<String> = (0..EVENTS_PER_MARK + 3)
            .map(|i| format!("ev-{i}"))
            .collect();
        let marks = ids.iter().fold(FieldWatermarks::default(), |m, id| {
            m.with_change(Field::Email, event(second, id))
        });
        let kept = &marks.mark(Field::Email).unwrap().events;
        assert_eq!(kept.len(), EVENTS_PER_MARK);
        assert_eq!(kept.first(), Some(&ids[3]));
        assert_eq!(kept.last(), ids.last());
    }

    #[test]
    fn the_maximum_of_two_marks_of_the_same_time_keeps_the_ids_of_both() {
        let second = "2026-01-01T10:00:05Z";
        let a = FieldWatermarks::default().with_change(Field::FirstName, event(second, "a"));
        let b = FieldWatermarks::default().with_change(Field::FirstName, event(second, "b"));
        assert_eq!(
            a.max(&b).mark(Field::FirstName).unwrap().events,
            vec!["a", "b"]
        );
    }

    #[test]
    fn a_plain_event_id_is_kept_as_it_is_any_other_as_a_digest() {
        assert_eq!(event_key("3f1c-9a:ev_1.2"), "3f1c-9a:ev_1.2");
        let long = "x".repeat(129);
        for odd in ["jane@example.com", "a b", "", long.as_str()] {
            let key = event_key(odd);
            assert!(key.starts_with("sha256:") && key.len() == 71, "{key}");
            assert_eq!(key, event_key(odd), "the same id, the same key");
        }
        let second = "2026-01-01T10:00:05Z";
        let marks = FieldWatermarks::default().with_change(Field::LastName, event(second, "a b"));
        assert!(
            marks
                .screen(last_name("X"), event(second, "a b"))
                .is_superseded()
        );
        assert!(
            !marks
                .screen(last_name("X"), event(second, "a c"))
                .is_superseded()
        );
    }

    #[test]
    fn an_unsettled_intent_holds_off_older_changes_unless_its_own_changes_are_judged_with_them() {
        let intent = FieldWatermarks::default()
            .with_change(Field::LastName, event("2026-01-01T10:00:05Z", "e-old"))
            .with_change(Field::LastName, event("2026-01-01T10:00:09Z", "e-new"));
        let old = event("2026-01-01T10:00:05Z", "e-old");
        let new = event("2026-01-01T10:00:09Z", "e-new");
        // Alone, the older change may be about to overwrite the intent's newer value.
        assert!(
            intent
                .screen_unsettled(last_name("Old"), old, &[old])
                .is_superseded()
        );
        // With the change that set the intent's time: judged as if it were not there.
        let s = intent.screen_unsettled(last_name("Old"), old, &[old, new]);
        assert!(s.superseded.is_empty());
        // The intent's own time passes, and a newer one.
        assert!(
            !intent
                .screen_unsettled(last_name("New"), new, &[new])
                .is_superseded()
        );
        // A change of another event, older, is held off while the newer one is absent.
        let other = event("2026-01-01T10:00:07Z", "e-other");
        assert!(
            intent
                .screen_unsettled(last_name("X"), other, &[other])
                .is_superseded()
        );
        // An intent without ids (stored before they were kept) holds off every older one.
        let bare = FieldWatermarks::default().with(Field::LastName, t("2026-01-01T10:00:09Z"));
        assert!(
            bare.screen_unsettled(last_name("Old"), old, &[old, new])
                .is_superseded()
        );
        // Unknown time: older than any.
        assert!(
            intent
                .screen_unsettled(last_name("X"), Stamp::default(), &[new])
                .is_superseded()
        );
    }
}
