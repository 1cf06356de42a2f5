//! A change document as received (values not yet checked) and its admission: the
//! checks of SPEC §2.3 steps 1–3, in that order, none of which needs a call.

use chrono::{DateTime, TimeDelta, Utc};

use super::change::{ChangeRequest, FieldChange, IdentityChange};
use super::error::Failure;
use super::identity::{E164, EmailAddress, Field, InstanceId, PersonName, PhoneRegion, UserRef};
use super::policy::Policy;

/// One field of a received document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RawField {
    #[default]
    Keep,
    /// `null`.
    Clear,
    /// A string; one that is empty after trimming clears the field.
    Set(String),
}

/// The identity fields of a received document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawIdentity {
    pub first_name: RawField,
    pub last_name: RawField,
    pub email: RawField,
    pub secondary_email: RawField,
    pub mobile: RawField,
}

impl RawIdentity {
    /// One field as received.
    pub fn get(&self, field: Field) -> &RawField {
        match field {
            Field::FirstName => &self.first_name,
            Field::LastName => &self.last_name,
            Field::Email => &self.email,
            Field::SecondaryEmail => &self.secondary_email,
            Field::Mobile => &self.mobile,
        }
    }

    /// Sets what the document does to `field`.
    pub fn set(&mut self, field: Field, raw: RawField) {
        *match field {
            Field::FirstName => &mut self.first_name,
            Field::LastName => &mut self.last_name,
            Field::Email => &mut self.email,
            Field::SecondaryEmail => &mut self.secondary_email,
            Field::Mobile => &mut self.mobile,
        } = raw;
    }
}

/// How a document names its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawUser {
    /// A user id or a user ARN.
    UserId(String),
    Username(String),
}

/// A change document whose shape is right but whose values are unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeDocument {
    pub instance: Option<String>,
    pub user: RawUser,
    pub identity: RawIdentity,
    pub event_id: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    /// The EventBridge `source` when the document came in an EventBridge event.
    pub source: Option<String>,
}

impl ChangeDocument {
    /// The instance and user ids the document names, as far as they can be read,
    /// for dead-letter attributes and log fields.
    pub fn known_ids(
        &self,
        default_instance: Option<&InstanceId>,
    ) -> (Option<String>, Option<String>) {
        let user = match &self.user {
            RawUser::UserId(raw) => UserRef::parse_user_id(raw).ok(),
            RawUser::Username(_) => None,
        };
        let instance = self
            .instance
            .as_deref()
            .and_then(|i| InstanceId::parse(i).ok())
            .or_else(|| match &user {
                Some(UserRef::Arn { instance, .. }) => Some(instance.clone()),
                _ => None,
            })
            .or_else(|| default_instance.cloned());
        let user_id = match user {
            Some(UserRef::Id(id) | UserRef::Arn { user: id, .. }) => Some(id.to_string()),
            _ => None,
        };
        (instance.map(|i| i.to_string()), user_id)
    }
}

/// What admission needs: the rules and the defaults from the configuration.
#[derive(Debug, Clone)]
pub struct Admission {
    pub policy: Policy,
    pub default_instance: Option<InstanceId>,
    pub phone_region: Option<PhoneRegion>,
    /// How far ahead of the function's clock an `OccurredAt` may be
    /// (`MAX_CLOCK_SKEW_SECONDS`): a later one is refused, so that no publisher can
    /// pin a field with a time in the future.
    pub max_clock_skew: TimeDelta,
}

/// The default `MAX_CLOCK_SKEW_SECONDS`: five minutes, far more than the drift of
/// clocks kept by NTP (Lambda's and the identity providers'), far less than the time
/// between two edits of one user that anyone expects to see in order.
pub const DEFAULT_MAX_CLOCK_SKEW: TimeDelta = TimeDelta::seconds(300);

impl Admission {
    /// Admits a document: `MalformedEvent`, then `PolicyViolation`, then
    /// `ValidationError`, the first that applies deciding the class.
    ///
    /// # Errors
    /// The failure of the first check that refuses the document.
    pub fn admit(&self, doc: ChangeDocument) -> Result<ChangeRequest, Failure> {
        self.admit_at(doc, Utc::now())
    }

    /// Admits a document as `admit` does, with the function's clock reading `now`.
    ///
    /// # Errors
    /// As `admit`.
    pub fn admit_at(
        &self,
        doc: ChangeDocument,
        now: DateTime<Utc>,
    ) -> Result<ChangeRequest, Failure> {
        // 1. Shape: who and where.
        let user = match &doc.user {
            RawUser::UserId(raw) => UserRef::parse_user_id(raw)?,
            RawUser::Username(raw) => UserRef::username(raw)?,
        };
        let named_instance = doc.instance.as_deref().map(InstanceId::parse).transpose()?;
        let arn_instance = match &user {
            UserRef::Arn { instance, .. } => Some(instance.clone()),
            _ => None,
        };
        let instance = named_instance
            .clone()
            .or_else(|| arn_instance.clone())
            .or_else(|| self.default_instance.clone())
            .ok_or_else(|| {
                Failure::malformed(
                    "no InstanceId in the document and DEFAULT_INSTANCE_ID is not set",
                )
            })?;

        // 2. Policy.
        self.policy.check_source(doc.source.as_deref())?;
        self.policy.check_instance(&instance)?;
        if let Some(arn_instance) = &arn_instance {
            self.policy.check_instance(arn_instance)?;
        }
        if let RawField::Set(secondary) = &doc.identity.secondary_email {
            self.policy.check_secondary_email(Some(secondary))?;
        }

        // 3. Values.
        if let Some(arn_instance) = &arn_instance
            && *arn_instance != instance
        {
            return Err(Failure::validation(
                "the user ARN belongs to another instance than InstanceId",
            ));
        }
        let change = validate_identity(&doc.identity, self.phone_region)?;
        if let Some(at) = doc.occurred_at
            && now
                .checked_add_signed(self.max_clock_skew)
                .is_some_and(|latest| at > latest)
        {
            return Err(Failure::validation(format!(
                "OccurredAt is more than MAX_CLOCK_SKEW_SECONDS ({}) ahead of the function's clock",
                self.max_clock_skew.num_seconds()
            )));
        }
        Ok(ChangeRequest {
            instance,
            user,
            change,
            event_id: doc.event_id,
            occurred_at: doc.occurred_at,
        })
    }
}

/// The identity fields of a document read as admission reads them (SPEC §2.2): names
/// trimmed and in NFC, emails in Connect's pattern, a mobile in E.164 with a national
/// number read in `phone_region`. Also what the reconcile command compares with, so that
/// what it calls a difference is what the function would change.
///
/// # Errors
/// `ValidationError` for the first field whose value the function refuses.
pub fn validate_identity(
    raw: &RawIdentity,
    phone_region: Option<PhoneRegion>,
) -> Result<IdentityChange, Failure> {
    let name = |field, raw: &RawField, max| read(raw, |s| PersonName::parse(field, s, max));
    Ok(IdentityChange {
        first_name: name(
            Field::FirstName,
            &raw.first_name,
            PersonName::FIRST_NAME_MAX,
        )?,
        last_name: name(Field::LastName, &raw.last_name, PersonName::LAST_NAME_MAX)?,
        email: read(&raw.email, |s| EmailAddress::parse(Field::Email, s))?,
        secondary_email: read(&raw.secondary_email, |s| {
            EmailAddress::parse(Field::SecondaryEmail, s)
        })?,
        mobile: read(&raw.mobile, |s| E164::parse(s, phone_region))?,
    })
}

fn read<T>(
    raw: &RawField,
    parse: impl FnOnce(&str) -> Result<Option<T>, Failure>,
) -> Result<FieldChange<T>, Failure> {
    Ok(match raw {
        RawField::Keep => FieldChange::Keep,
        RawField::Clear => FieldChange::Clear,
        RawField::Set(s) => FieldChange::from_option(parse(s)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::ErrorClass;
    use crate::domain::policy::EmailDomains;

    const I1: &str = "11111111-2222-3333-4444-555555555555";
    const I2: &str = "99999999-2222-3333-4444-555555555555";

    fn admission() -> Admission {
        Admission {
            policy: Policy {
                allowed_instances: [
                    InstanceId::parse(I1).unwrap(),
                    InstanceId::parse(I2).unwrap(),
                ]
                .into(),
                email_domains: EmailDomains::Any,
                secondary_email_domains: EmailDomains::Any,
                protected_profiles: Default::default(),
                trusted_sources: Some(["com.okta".into()].into()),
            },
            default_instance: Some(InstanceId::parse(I1).unwrap()),
            phone_region: Some("US".parse().unwrap()),
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
        }
    }

    fn doc(user: &str) -> ChangeDocument {
        ChangeDocument {
            instance: None,
            user: RawUser::UserId(user.into()),
            identity: RawIdentity::default(),
            event_id: None,
            occurred_at: None,
            source: None,
        }
    }

    fn user_arn(instance: &str) -> String {
        format!("arn:aws:connect:us-east-1:123456789012:instance/{instance}/agent/u-1")
    }

    #[test]
    fn a_document_without_instance_uses_the_default_instance() {
        let req = admission().admit(doc("u-1")).unwrap();
        assert_eq!(req.instance.as_str(), I1);
    }

    #[test]
    fn a_document_without_any_instance_is_malformed() {
        let mut a = admission();
        a.default_instance = None;
        assert_eq!(
            a.admit(doc("u-1")).unwrap_err().class,
            ErrorClass::MalformedEvent
        );
    }

    #[test]
    fn a_user_arn_names_the_instance_when_instance_id_is_absent() {
        let req = admission().admit(doc(&user_arn(I2))).unwrap();
        assert_eq!(req.instance.as_str(), I2);
    }

    #[test]
    fn an_instance_outside_the_allowlist_is_a_policy_violation_even_with_bad_values() {
        let mut d = doc("u-1");
        d.instance = Some("00000000-0000-0000-0000-000000000000".into());
        d.identity.email = RawField::Set("not an email".into());
        assert_eq!(
            admission().admit(d).unwrap_err().class,
            ErrorClass::PolicyViolation
        );
    }

    #[test]
    fn a_secondary_email_outside_its_allowlist_is_a_policy_violation_before_any_value_check() {
        let mut a = admission();
        a.policy.secondary_email_domains =
            EmailDomains::parse_open_by_default(Some("example.com")).unwrap();
        let mut d = doc("u-1");
        d.identity.secondary_email = RawField::Set("jane@evil.test".into());
        d.identity.mobile = RawField::Set("not a number".into());
        assert_eq!(
            a.admit(d.clone()).unwrap_err().class,
            ErrorClass::PolicyViolation
        );
        d.identity.secondary_email = RawField::Set("jane@example.com".into());
        assert_eq!(
            a.admit(d.clone()).unwrap_err().class,
            ErrorClass::ValidationError,
            "an allowed domain passes on to the value checks"
        );
        d.identity.mobile = RawField::Keep;
        assert!(a.admit(d.clone()).is_ok());
        d.identity.secondary_email = RawField::Clear;
        assert!(a.admit(d).is_ok(), "clearing it is allowed");
    }

    #[test]
    fn a_user_arn_of_a_disallowed_instance_is_a_policy_violation() {
        let mut d = doc(&user_arn("00000000-0000-0000-0000-000000000000"));
        d.instance = Some(I1.into());
        assert_eq!(
            admission().admit(d).unwrap_err().class,
            ErrorClass::PolicyViolation
        );
    }

    #[test]
    fn a_user_arn_of_another_allowed_instance_than_instance_id_is_a_validation_error() {
        let mut d = doc(&user_arn(I2));
        d.instance = Some(I1.into());
        assert_eq!(
            admission().admit(d).unwrap_err().class,
            ErrorClass::ValidationError
        );
    }

    #[test]
    fn an_untrusted_source_is_refused_before_values_are_read() {
        let mut d = doc("u-1");
        d.source = Some("com.evil".into());
        d.identity.mobile = RawField::Set("garbage".into());
        assert_eq!(
            admission().admit(d).unwrap_err().class,
            ErrorClass::PolicyViolation
        );
    }

    #[test]
    fn a_blank_string_clears_and_null_clears() {
        let mut d = doc("u-1");
        d.identity.mobile = RawField::Set("   ".into());
        d.identity.secondary_email = RawField::Clear;
        let req = admission().admit(d).unwrap();
        assert_eq!(req.change.mobile, FieldChange::Clear);
        assert_eq!(req.change.secondary_email, FieldChange::Clear);
        assert_eq!(req.change.first_name, FieldChange::Keep);
    }

    #[test]
    fn a_bad_field_value_is_a_validation_error() {
        let mut d = doc("u-1");
        d.identity.mobile = RawField::Set("12".into());
        assert_eq!(
            admission().admit(d).unwrap_err().class,
            ErrorClass::ValidationError
        );
    }

    #[test]
    fn known_ids_come_from_the_document_its_arn_or_the_default() {
        let d = doc(&user_arn(I2));
        assert_eq!(d.known_ids(None), (Some(I2.into()), Some("u-1".into())));
        let d = ChangeDocument {
            user: RawUser::Username("jdoe".into()),
            ..doc("x")
        };
        let default = InstanceId::parse(I1).unwrap();
        assert_eq!(d.known_ids(Some(&default)), (Some(I1.into()), None));
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T06:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn an_occurred_at_beyond_the_clock_skew_is_a_validation_error() {
        let mut d = doc("u-1");
        d.occurred_at = Some(now() + TimeDelta::seconds(301));
        let e = admission().admit_at(d, now()).unwrap_err();
        assert_eq!(e.class, ErrorClass::ValidationError);
        assert!(
            e.message.contains("MAX_CLOCK_SKEW_SECONDS"),
            "{}",
            e.message
        );
        let mut far = doc("u-1");
        far.occurred_at = Some(DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            admission().admit_at(far, now()).unwrap_err().class,
            ErrorClass::ValidationError
        );
    }

    #[test]
    fn an_occurred_at_within_the_clock_skew_or_in_the_past_is_admitted() {
        for at in [
            now() + TimeDelta::seconds(300),
            now(),
            now() - TimeDelta::days(3650),
        ] {
            let mut d = doc("u-1");
            d.occurred_at = Some(at);
            assert!(admission().admit_at(d, now()).is_ok(), "{at}");
        }
    }

    #[test]
    fn a_future_time_from_an_untrusted_source_is_a_policy_violation_first() {
        let mut d = doc("u-1");
        d.source = Some("com.evil".into());
        d.occurred_at = Some(now() + TimeDelta::days(1));
        assert_eq!(
            admission().admit_at(d, now()).unwrap_err().class,
            ErrorClass::PolicyViolation
        );
    }
}
