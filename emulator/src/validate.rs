//! The checks Connect documents for identity fields and identity management types. They are
//! enforced here so that a client that would be refused by the real service is refused by the
//! emulator too, with the same error name.

use unicode_normalization::is_nfc;

use crate::error::ApiError;
use crate::model::{IdentityInfo, IdentityManagementType};

/// Longest FirstName Connect accepts, in characters.
pub const FIRST_NAME_MAX: usize = 255;
/// Longest LastName Connect accepts, in characters.
pub const LAST_NAME_MAX: usize = 300;
/// Longest Email or SecondaryEmail Connect accepts, in characters.
pub const EMAIL_MAX: usize = 265;

/// Field-level checks (`InvalidParameterException`): lengths, NFC names, E.164 mobile and
/// Connect's email pattern. Present-but-empty Mobile and emails fail their patterns, as they
/// would on the real service: a field is cleared by leaving it out.
pub fn check_fields(info: &IdentityInfo) -> Result<(), ApiError> {
    if let Some(name) = &info.first_name {
        check_name("FirstName", name, FIRST_NAME_MAX)?;
    }
    if let Some(name) = &info.last_name {
        check_name("LastName", name, LAST_NAME_MAX)?;
    }
    if let Some(email) = &info.email {
        check_email("Email", email)?;
    }
    if let Some(email) = &info.secondary_email {
        check_email("SecondaryEmail", email)?;
    }
    if let Some(mobile) = &info.mobile {
        if !is_e164(mobile) {
            return Err(ApiError::invalid_parameter(
                "Mobile must match pattern ^\\+[1-9]\\d{1,14}$",
            ));
        }
    }
    Ok(())
}

fn check_name(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::invalid_parameter(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if !is_nfc(value) {
        return Err(ApiError::invalid_parameter(format!(
            "{field} must be in Unicode Normalization Form C"
        )));
    }
    Ok(())
}

fn check_email(field: &str, value: &str) -> Result<(), ApiError> {
    if value.chars().count() > EMAIL_MAX || !is_email(value) {
        return Err(ApiError::invalid_parameter(format!(
            "{field} must match pattern (?=^.{{0,265}}$)[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{{2,63}}"
        )));
    }
    Ok(())
}

/// `^\+[1-9]\d{1,14}$`
pub fn is_e164(value: &str) -> bool {
    let Some(digits) = value.strip_prefix('+') else {
        return false;
    };
    let bytes = digits.as_bytes();
    (2..=15).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_digit) && bytes[0] != b'0'
}

/// `^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,63}$`. The top-level label cannot hold a
/// dot, so the only possible split is at the domain's last dot.
pub fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b));
    let domain_chars_ok = domain
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let Some((host, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    local_ok
        && domain_chars_ok
        && !host.is_empty()
        && (2..=63).contains(&tld.len())
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Applies an `UpdateUserIdentityInfo` request to the current identity and returns the new one.
///
/// The call is a full replace: a field left out of the request is cleared — except fields the
/// instance's identity source owns (Email on `SAML`; FirstName, LastName and Email on
/// `EXISTING_DIRECTORY`), which this call cannot change: a differing value is refused with
/// `InvalidRequestException` and an omitted one is kept. On `SAML` and `CONNECT_MANAGED`
/// instances the resulting names must not be empty (`InvalidParameterException`).
pub fn apply_update(
    mode: IdentityManagementType,
    current: &IdentityInfo,
    request: &IdentityInfo,
) -> Result<IdentityInfo, ApiError> {
    check_fields(request)?;
    let mut next = request.clone();
    match mode {
        IdentityManagementType::Saml => {
            owned_field("Email", &current.email, &mut next.email, mode)?;
        }
        IdentityManagementType::ExistingDirectory => {
            owned_field("FirstName", &current.first_name, &mut next.first_name, mode)?;
            owned_field("LastName", &current.last_name, &mut next.last_name, mode)?;
            owned_field("Email", &current.email, &mut next.email, mode)?;
        }
        IdentityManagementType::ConnectManaged => {}
    }
    if matches!(
        mode,
        IdentityManagementType::Saml | IdentityManagementType::ConnectManaged
    ) {
        for (field, value) in [
            ("FirstName", &next.first_name),
            ("LastName", &next.last_name),
        ] {
            if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                return Err(ApiError::invalid_parameter(format!(
                    "{field} is required for {} instances",
                    mode.as_str()
                )));
            }
        }
    }
    Ok(next)
}

fn owned_field(
    field: &str,
    current: &Option<String>,
    requested: &mut Option<String>,
    mode: IdentityManagementType,
) -> Result<(), ApiError> {
    match requested {
        None => {
            requested.clone_from(current);
            Ok(())
        }
        Some(value) if current.as_deref() == Some(value.as_str()) => Ok(()),
        Some(_) => Err(ApiError::invalid_request(format!(
            "{field} cannot be updated for {} instances",
            mode.as_str()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(first: &str, last: &str, email: Option<&str>) -> IdentityInfo {
        IdentityInfo {
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            email: email.map(Into::into),
            ..IdentityInfo::default()
        }
    }

    #[test]
    fn e164_accepts_connect_pattern_only() {
        assert!(is_e164("+14155550123"));
        assert!(is_e164("+12"));
        assert!(is_e164("+123456789012345"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("+0123"));
        assert!(!is_e164("14155550123"));
        assert!(!is_e164("+1"));
        assert!(!is_e164("+1 415 555"));
        assert!(!is_e164(""));
    }

    #[test]
    fn email_follows_connect_pattern() {
        assert!(is_email("jane.doe+x@example.com"));
        assert!(is_email("a@b.co"));
        assert!(is_email("a@sub.example.museum"));
        assert!(!is_email("a@b.c"));
        assert!(!is_email("a@.com"));
        assert!(
            is_email("a@..com"),
            "the pattern allows dots anywhere in the host"
        );
        assert!(!is_email("@example.com"));
        assert!(!is_email("a@example"));
        assert!(!is_email("a@b@example.com"));
        assert!(!is_email("a@example.c0m"));
        assert!(!is_email("jané@example.com"));
        assert!(!is_email(""));
    }

    #[test]
    fn overlong_email_is_refused() {
        let long = format!("{}@example.com", "a".repeat(260));
        let err = check_fields(&IdentityInfo {
            email: Some(long),
            ..IdentityInfo::default()
        })
        .unwrap_err();
        assert_eq!(err.error_type, "InvalidParameterException");
    }

    #[test]
    fn names_must_be_nfc_and_within_limits() {
        let decomposed = "Rene\u{301}";
        assert!(check_fields(&info(decomposed, "X", None)).is_err());
        assert!(check_fields(&info("Ren\u{e9}", "X", None)).is_ok());
        assert!(check_fields(&info(&"a".repeat(255), &"b".repeat(300), None)).is_ok());
        assert!(check_fields(&info(&"a".repeat(256), "b", None)).is_err());
        assert!(check_fields(&info("a", &"b".repeat(301), None)).is_err());
    }

    #[test]
    fn connect_managed_update_replaces_everything() {
        let current = IdentityInfo {
            mobile: Some("+14155550123".into()),
            ..info("Jane", "Doe", Some("jane@example.com"))
        };
        let next = apply_update(
            IdentityManagementType::ConnectManaged,
            &current,
            &info("Janet", "Doe", None),
        )
        .unwrap();
        assert_eq!(next, info("Janet", "Doe", None));
    }

    #[test]
    fn saml_keeps_omitted_email_and_refuses_a_new_one() {
        let current = info("Jane", "Doe", Some("jane@example.com"));
        let next = apply_update(
            IdentityManagementType::Saml,
            &current,
            &info("Janet", "Doe", None),
        )
        .unwrap();
        assert_eq!(next.email.as_deref(), Some("jane@example.com"));
        let err = apply_update(
            IdentityManagementType::Saml,
            &current,
            &info("Jane", "Doe", Some("other@example.com")),
        )
        .unwrap_err();
        assert_eq!(err.error_type, "InvalidRequestException");
    }

    #[test]
    fn empty_names_are_refused_where_connect_owns_them() {
        let current = info("Jane", "Doe", None);
        for mode in [
            IdentityManagementType::Saml,
            IdentityManagementType::ConnectManaged,
        ] {
            let err = apply_update(mode, &current, &info("", "Doe", None)).unwrap_err();
            assert_eq!(err.error_type, "InvalidParameterException");
            let mut no_last = info("Jane", "Doe", None);
            no_last.last_name = None;
            let err = apply_update(mode, &current, &no_last).unwrap_err();
            assert_eq!(err.error_type, "InvalidParameterException");
        }
    }

    #[test]
    fn existing_directory_refuses_changes_to_directory_fields() {
        let current = info("Jane", "Doe", Some("jane@example.com"));
        let mode = IdentityManagementType::ExistingDirectory;
        let same = IdentityInfo {
            mobile: Some("+14155550123".into()),
            ..current.clone()
        };
        assert_eq!(apply_update(mode, &current, &same).unwrap(), same);
        for changed in [
            info("Janet", "Doe", Some("jane@example.com")),
            info("Jane", "Smith", Some("jane@example.com")),
            info("Jane", "Doe", Some("janet@example.com")),
        ] {
            let err = apply_update(mode, &current, &changed).unwrap_err();
            assert_eq!(err.error_type, "InvalidRequestException");
        }
        let kept = apply_update(mode, &current, &IdentityInfo::default()).unwrap();
        assert_eq!(kept, current);
    }
}
