//! How an instance manages identities (SPEC §2.2) and what that allows an update to do.

use super::change::IdentityInfo;
use super::error::Failure;
use super::identity::Field;

/// An instance's `IdentityManagementType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityManagement {
    Saml,
    ConnectManaged,
    ExistingDirectory,
    /// A type this version does not know: the strictest rules apply (SPEC §5), those of
    /// every known type at once.
    Other(String),
}

impl IdentityManagement {
    pub fn from_wire(value: &str) -> Self {
        match value {
            "SAML" => IdentityManagement::Saml,
            "CONNECT_MANAGED" => IdentityManagement::ConnectManaged,
            "EXISTING_DIRECTORY" => IdentityManagement::ExistingDirectory,
            other => IdentityManagement::Other(other.to_owned()),
        }
    }

    /// Turns the merged identity into the update to send, or refuses it.
    ///
    /// # Errors
    /// `ValidationError` when the instance's identity management forbids the change.
    pub fn plan(
        &self,
        current: &IdentityInfo,
        merged: IdentityInfo,
    ) -> Result<UpdatePlan, Failure> {
        let differs = |f: Field| current.get(f) != merged.get(f);
        match self {
            IdentityManagement::Saml if differs(Field::Email) => {
                return Err(Failure::validation(
                    "Email cannot be changed on a SAML instance",
                ));
            }
            IdentityManagement::ExistingDirectory | IdentityManagement::Other(_) => {
                if let Some(f) = [Field::FirstName, Field::LastName, Field::Email]
                    .into_iter()
                    .find(|f| differs(*f))
                {
                    let kind = match self {
                        IdentityManagement::ExistingDirectory => "an EXISTING_DIRECTORY instance",
                        _ => "an instance whose identity management type is not known",
                    };
                    return Err(Failure::validation(format!(
                        "{f} cannot be changed on {kind}"
                    )));
                }
            }
            _ => {}
        }
        if matches!(
            self,
            IdentityManagement::Saml
                | IdentityManagement::ConnectManaged
                | IdentityManagement::Other(_)
        ) {
            if let Some(f) = [Field::FirstName, Field::LastName]
                .into_iter()
                .find(|f| merged.get(*f).is_none())
            {
                return Err(Failure::validation(format!(
                    "{f} cannot be empty on this instance"
                )));
            }
        }
        Ok(UpdatePlan {
            info: merged,
            send_email: !matches!(self, IdentityManagement::Saml),
        })
    }
}

/// The complete identity to send in one `UpdateUserIdentityInfo` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatePlan {
    pub info: IdentityInfo,
    /// `false` on SAML instances, where Email is never sent.
    pub send_email: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::ErrorClass;

    fn current() -> IdentityInfo {
        IdentityInfo {
            first_name: Some("Jane".into()),
            last_name: Some("Doe".into()),
            email: Some("jane@example.com".into()),
            secondary_email: None,
            mobile: None,
        }
    }

    #[test]
    fn a_saml_instance_refuses_an_email_change_and_never_sends_email() {
        let saml = IdentityManagement::from_wire("SAML");
        let mut merged = current();
        merged.email = Some("new@example.com".into());
        assert_eq!(
            saml.plan(&current(), merged).unwrap_err().class,
            ErrorClass::ValidationError
        );
        let mut merged = current();
        merged.mobile = Some("+14155550123".into());
        let plan = saml.plan(&current(), merged).unwrap();
        assert!(!plan.send_email);
    }

    #[test]
    fn saml_and_connect_managed_instances_need_both_names() {
        for kind in ["SAML", "CONNECT_MANAGED"] {
            let mut merged = current();
            merged.last_name = None;
            let err = IdentityManagement::from_wire(kind)
                .plan(&current(), merged)
                .unwrap_err();
            assert_eq!(err.class, ErrorClass::ValidationError, "{kind}");
            assert!(err.message.contains("LastName"));
        }
    }

    #[test]
    fn an_existing_directory_instance_refuses_name_and_email_changes_but_not_mobile() {
        let dir = IdentityManagement::from_wire("EXISTING_DIRECTORY");
        let mut merged = current();
        merged.first_name = Some("Janet".into());
        assert_eq!(
            dir.plan(&current(), merged).unwrap_err().class,
            ErrorClass::ValidationError
        );
        let mut merged = current();
        merged.mobile = Some("+14155550123".into());
        let plan = dir.plan(&current(), merged.clone()).unwrap();
        assert_eq!(plan.info, merged, "current names are sent back unchanged");
        assert!(plan.send_email);
    }

    #[test]
    fn an_instance_of_an_unknown_type_allows_no_name_or_email_change() {
        let unknown = IdentityManagement::from_wire("SOME_FUTURE_TYPE");
        for (field, value) in [
            (Field::FirstName, Some("Janet")),
            (Field::LastName, None),
            (Field::Email, Some("new@example.com")),
            (Field::Email, None),
        ] {
            let mut merged = current();
            match field {
                Field::FirstName => merged.first_name = value.map(Into::into),
                Field::LastName => merged.last_name = value.map(Into::into),
                _ => merged.email = value.map(Into::into),
            }
            let err = unknown.plan(&current(), merged).unwrap_err();
            assert_eq!(err.class, ErrorClass::ValidationError, "{field}");
            assert!(err.message.contains(field.as_str()), "{}", err.message);
            assert!(!err.message.contains("FUTURE"), "{}", err.message);
        }
        let mut merged = current();
        merged.mobile = Some("+14155550123".into());
        merged.secondary_email = Some("jd@example.com".into());
        let plan = unknown.plan(&current(), merged.clone()).unwrap();
        assert_eq!(plan.info, merged, "current names and Email are sent back");
    }

    #[test]
    fn a_connect_managed_instance_allows_an_email_change() {
        let mut merged = current();
        merged.email = Some("new@example.com".into());
        let plan = IdentityManagement::ConnectManaged
            .plan(&current(), merged)
            .unwrap();
        assert_eq!(plan.info.email.as_deref(), Some("new@example.com"));
        assert!(plan.send_email);
    }
}
