//! A change to one user's identity: per field set, clear or keep; merging onto the
//! current identity, coalescing several changes, and telling a no-op apart.

use chrono::{DateTime, Utc};

use super::identity::{E164, EmailAddress, Field, InstanceId, PersonName, UserRef};

/// What a change does to one field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FieldChange<T> {
    /// Absent from the change: the field stays as it is in Connect.
    #[default]
    Keep,
    Set(T),
    Clear,
}

impl<T> FieldChange<T> {
    /// A set when there is a value, a clear when there is none.
    pub fn from_option(value: Option<T>) -> Self {
        value.map_or(FieldChange::Clear, FieldChange::Set)
    }

    fn is_keep(&self) -> bool {
        matches!(self, FieldChange::Keep)
    }

    /// The later change wins for a field it touches.
    fn then(self, later: Self) -> Self {
        if later.is_keep() { self } else { later }
    }
}

impl<T: AsRef<str>> FieldChange<T> {
    fn apply(&self, current: &Option<String>) -> Option<String> {
        match self {
            FieldChange::Keep => current.clone(),
            FieldChange::Set(v) => Some(v.as_ref().to_owned()),
            FieldChange::Clear => None,
        }
    }
}

impl AsRef<str> for PersonName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}
impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}
impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// A validated change to a user's identity fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentityChange {
    pub first_name: FieldChange<PersonName>,
    pub last_name: FieldChange<PersonName>,
    pub email: FieldChange<EmailAddress>,
    pub secondary_email: FieldChange<EmailAddress>,
    pub mobile: FieldChange<E164>,
}

impl IdentityChange {
    /// Whether the change touches no field at all.
    pub fn is_empty(&self) -> bool {
        self.first_name.is_keep()
            && self.last_name.is_keep()
            && self.email.is_keep()
            && self.secondary_email.is_keep()
            && self.mobile.is_keep()
    }

    /// The fields this change sets or clears.
    pub fn touched_fields(&self) -> Vec<Field> {
        [
            (Field::FirstName, self.first_name.is_keep()),
            (Field::LastName, self.last_name.is_keep()),
            (Field::Email, self.email.is_keep()),
            (Field::SecondaryEmail, self.secondary_email.is_keep()),
            (Field::Mobile, self.mobile.is_keep()),
        ]
        .into_iter()
        .filter(|(_, keep)| !keep)
        .map(|(field, _)| field)
        .collect()
    }

    /// What the change does to `field`, its value as the function would send it.
    pub fn get(&self, field: Field) -> FieldChange<&str> {
        fn view<T: AsRef<str>>(change: &FieldChange<T>) -> FieldChange<&str> {
            match change {
                FieldChange::Keep => FieldChange::Keep,
                FieldChange::Set(v) => FieldChange::Set(v.as_ref()),
                FieldChange::Clear => FieldChange::Clear,
            }
        }
        match field {
            Field::FirstName => view(&self.first_name),
            Field::LastName => view(&self.last_name),
            Field::Email => view(&self.email),
            Field::SecondaryEmail => view(&self.secondary_email),
            Field::Mobile => view(&self.mobile),
        }
    }

    /// This change followed by a later one: the later wins for each field it touches.
    #[must_use]
    pub fn then(self, later: IdentityChange) -> IdentityChange {
        IdentityChange {
            first_name: self.first_name.then(later.first_name),
            last_name: self.last_name.then(later.last_name),
            email: self.email.then(later.email),
            secondary_email: self.secondary_email.then(later.secondary_email),
            mobile: self.mobile.then(later.mobile),
        }
    }

    /// The identity a user has once this change is applied to `current`.
    pub fn apply_to(&self, current: &IdentityInfo) -> IdentityInfo {
        IdentityInfo {
            first_name: self.first_name.apply(&current.first_name),
            last_name: self.last_name.apply(&current.last_name),
            email: self.email.apply(&current.email),
            secondary_email: self.secondary_email.apply(&current.secondary_email),
            mobile: self.mobile.apply(&current.mobile),
        }
    }
}

/// A user's identity fields as Connect holds them; `None` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentityInfo {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub secondary_email: Option<String>,
    pub mobile: Option<String>,
}

impl IdentityInfo {
    pub fn get(&self, field: Field) -> Option<&str> {
        match field {
            Field::FirstName => self.first_name.as_deref(),
            Field::LastName => self.last_name.as_deref(),
            Field::Email => self.email.as_deref(),
            Field::SecondaryEmail => self.secondary_email.as_deref(),
            Field::Mobile => self.mobile.as_deref(),
        }
    }

    /// The fields whose values differ between `self` and `other`.
    pub fn changed_fields(&self, other: &IdentityInfo) -> Vec<Field> {
        Field::ALL
            .into_iter()
            .filter(|f| self.get(*f) != other.get(*f))
            .collect()
    }
}

/// A change that passed every check that needs no call: who, where, what, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRequest {
    pub instance: InstanceId,
    pub user: UserRef,
    pub change: IdentityChange,
    pub event_id: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// When a change happened and which change it is: what the guard orders it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp<'a> {
    pub at: Option<DateTime<Utc>>,
    pub event: Option<&'a str>,
}

impl<'a> Stamp<'a> {
    pub fn new(at: Option<DateTime<Utc>>, event: Option<&'a str>) -> Self {
        Stamp { at, event }
    }
}

impl ChangeRequest {
    /// When the change happened and which change it is, as the staleness guard
    /// orders it.
    pub fn stamp(&self) -> Stamp<'_> {
        Stamp::new(self.occurred_at, self.event_id.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> PersonName {
        PersonName::parse(Field::FirstName, s, 255)
            .unwrap()
            .unwrap()
    }

    fn current() -> IdentityInfo {
        IdentityInfo {
            first_name: Some("Jane".into()),
            last_name: Some("Doe".into()),
            email: Some("jane@example.com".into()),
            secondary_email: None,
            mobile: Some("+14155550123".into()),
        }
    }

    #[test]
    fn a_partial_change_keeps_the_fields_it_does_not_name() {
        let change = IdentityChange {
            last_name: FieldChange::Set(name("Smith")),
            ..Default::default()
        };
        let merged = change.apply_to(&current());
        assert_eq!(merged.last_name.as_deref(), Some("Smith"));
        assert_eq!(merged.first_name.as_deref(), Some("Jane"));
        assert_eq!(merged.email.as_deref(), Some("jane@example.com"));
        assert_eq!(merged.mobile.as_deref(), Some("+14155550123"));
        assert_eq!(merged.changed_fields(&current()), vec![Field::LastName]);
    }

    #[test]
    fn a_clear_empties_the_field() {
        let change = IdentityChange {
            mobile: FieldChange::Clear,
            ..Default::default()
        };
        let merged = change.apply_to(&current());
        assert_eq!(merged.mobile, None);
        assert_eq!(merged.changed_fields(&current()), vec![Field::Mobile]);
    }

    #[test]
    fn a_change_to_the_current_values_is_a_no_op() {
        let change = IdentityChange {
            first_name: FieldChange::Set(name("Jane")),
            secondary_email: FieldChange::Clear,
            ..Default::default()
        };
        assert!(
            change
                .apply_to(&current())
                .changed_fields(&current())
                .is_empty()
        );
    }

    #[test]
    fn a_later_change_wins_for_the_fields_it_touches() {
        let first = IdentityChange {
            first_name: FieldChange::Set(name("Janet")),
            mobile: FieldChange::Clear,
            ..Default::default()
        };
        let later = IdentityChange {
            first_name: FieldChange::Set(name("Janine")),
            ..Default::default()
        };
        let merged = first.then(later).apply_to(&current());
        assert_eq!(merged.first_name.as_deref(), Some("Janine"));
        assert_eq!(merged.mobile, None, "the earlier clear survives");
    }

    #[test]
    fn an_empty_change_touches_nothing() {
        assert!(IdentityChange::default().is_empty());
        let c = IdentityChange {
            email: FieldChange::Clear,
            ..Default::default()
        };
        assert!(!c.is_empty());
    }
}
