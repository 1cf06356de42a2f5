//! The security rules of SPEC §5. Whoever can call `UpdateUserIdentityInfo` can take
//! over an agent's account, so every rule refuses unless it was opened deliberately.

use std::collections::HashSet;

use super::error::Failure;
use super::identity::InstanceId;

/// Which domains an Email may change to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailDomains {
    /// `EMAIL_DOMAIN_ALLOWLIST` unset: every Email change, clearing included, is refused.
    NoneAllowed,
    /// `*`: any domain.
    Any,
    /// Exact, case-insensitive matches; a subdomain must be listed itself.
    Only(HashSet<String>),
}

impl EmailDomains {
    /// Reads `EMAIL_DOMAIN_ALLOWLIST`.
    ///
    /// # Errors
    /// A message naming the first entry that is not a domain.
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        let Some(raw) = raw else {
            return Ok(EmailDomains::NoneAllowed);
        };
        let entries: Vec<&str> = raw
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.is_empty() {
            return Ok(EmailDomains::NoneAllowed);
        }
        if entries == ["*"] {
            return Ok(EmailDomains::Any);
        }
        let mut domains = HashSet::new();
        for entry in entries {
            let valid = entry.contains('.')
                && !entry.starts_with('.')
                && !entry.ends_with('.')
                && !entry.contains("..")
                && entry
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !valid {
                return Err(format!(
                    "'{entry}' is not a domain (list domains such as example.com, or * alone)"
                ));
            }
            domains.insert(entry.to_ascii_lowercase());
        }
        Ok(EmailDomains::Only(domains))
    }

    /// Reads `SECONDARY_EMAIL_DOMAIN_ALLOWLIST`: as `EMAIL_DOMAIN_ALLOWLIST`, except that
    /// unset (or empty) allows any domain.
    ///
    /// # Errors
    /// As [`EmailDomains::parse`].
    pub fn parse_open_by_default(raw: Option<&str>) -> Result<Self, String> {
        match Self::parse(raw)? {
            EmailDomains::NoneAllowed => Ok(EmailDomains::Any),
            domains => Ok(domains),
        }
    }

    /// Whether an address at `domain` (as written after its `@`) may be set.
    fn allows(&self, domain: &str) -> bool {
        match self {
            EmailDomains::Any => true,
            EmailDomains::NoneAllowed => false,
            EmailDomains::Only(domains) => domains.contains(&domain.to_ascii_lowercase()),
        }
    }
}

/// The part of an address after its last `@`; empty without one.
fn domain_of(address: &str) -> &str {
    address.trim().rsplit_once('@').map_or("", |(_, d)| d)
}

/// The rules, read once from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub allowed_instances: HashSet<InstanceId>,
    pub email_domains: EmailDomains,
    /// `SECONDARY_EMAIL_DOMAIN_ALLOWLIST`: the domains a SecondaryEmail may be set to.
    pub secondary_email_domains: EmailDomains,
    pub protected_profiles: HashSet<String>,
    /// `None`: no restriction on EventBridge `source`.
    pub trusted_sources: Option<HashSet<String>>,
}

impl Policy {
    /// # Errors
    /// `PolicyViolation` when the event came through EventBridge from a source that is
    /// not trusted. Documents that did not come through EventBridge carry no source.
    pub fn check_source(&self, source: Option<&str>) -> Result<(), Failure> {
        match (&self.trusted_sources, source) {
            (Some(trusted), Some(source)) if !trusted.contains(source) => Err(Failure::policy(
                "the EventBridge source is not in TRUSTED_SOURCES",
            )),
            _ => Ok(()),
        }
    }

    /// # Errors
    /// `PolicyViolation` when the instance is not in `ALLOWED_INSTANCE_IDS`.
    pub fn check_instance(&self, instance: &InstanceId) -> Result<(), Failure> {
        if self.allowed_instances.contains(instance) {
            Ok(())
        } else {
            Err(Failure::policy(format!(
                "instance {instance} is not in ALLOWED_INSTANCE_IDS"
            )))
        }
    }

    /// # Errors
    /// `PolicyViolation` when the user holds a protected security profile.
    pub fn check_security_profiles<'a>(
        &self,
        held: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Failure> {
        match held
            .into_iter()
            .find(|p| self.protected_profiles.contains(*p))
        {
            Some(p) => Err(Failure::policy(format!(
                "the user holds protected security profile {p}"
            ))),
            None => Ok(()),
        }
    }

    /// Whether `EMAIL_DOMAIN_ALLOWLIST` refuses the Email `next` (a clear is `None`)
    /// whatever the user holds: such a change can never move the user's Email (it is
    /// refused, or it is no change at all).
    pub fn refuses_email(&self, next: Option<&str>) -> bool {
        match (&self.email_domains, next) {
            (EmailDomains::Any, _) | (EmailDomains::Only(_), None) => false,
            (EmailDomains::NoneAllowed, _) => true,
            (domains @ EmailDomains::Only(_), Some(next)) => !domains.allows(domain_of(next)),
        }
    }

    /// Checks an Email change: `next` differs from `current` (a clear is `None`).
    ///
    /// # Errors
    /// `PolicyViolation` when the change is not allowed by `EMAIL_DOMAIN_ALLOWLIST`.
    pub fn check_email_change(
        &self,
        current: Option<&str>,
        next: Option<&str>,
    ) -> Result<(), Failure> {
        if current == next {
            return Ok(());
        }
        match (&self.email_domains, next) {
            (EmailDomains::Any, _) => Ok(()),
            (EmailDomains::NoneAllowed, _) => Err(Failure::policy(
                "Email changes are refused: EMAIL_DOMAIN_ALLOWLIST is not set",
            )),
            (EmailDomains::Only(_), None) => Ok(()),
            (domains @ EmailDomains::Only(_), Some(next)) => {
                if domains.allows(domain_of(next)) {
                    Ok(())
                } else {
                    Err(Failure::policy(
                        "the new Email's domain is not in EMAIL_DOMAIN_ALLOWLIST",
                    ))
                }
            }
        }
    }

    /// Checks the SecondaryEmail a document sets, as written (`None`: it keeps or clears
    /// it). SecondaryEmail receives every notification but password resets, so setting
    /// it is judged on the document alone, before any call, whatever the user holds now.
    ///
    /// # Errors
    /// `PolicyViolation` when its domain is not in `SECONDARY_EMAIL_DOMAIN_ALLOWLIST`.
    pub fn check_secondary_email(&self, set_to: Option<&str>) -> Result<(), Failure> {
        match set_to.map(str::trim).filter(|s| !s.is_empty()) {
            Some(address) if !self.secondary_email_domains.allows(domain_of(address)) => {
                Err(Failure::policy(
                    "the SecondaryEmail's domain is not in SECONDARY_EMAIL_DOMAIN_ALLOWLIST",
                ))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::ErrorClass;

    fn policy(domains: EmailDomains) -> Policy {
        Policy {
            allowed_instances: [InstanceId::parse("i-1").unwrap()].into(),
            email_domains: domains,
            secondary_email_domains: EmailDomains::Any,
            protected_profiles: ["sp-admin".to_owned()].into(),
            trusted_sources: Some(["com.okta".to_owned()].into()),
        }
    }

    fn only(list: &str) -> EmailDomains {
        EmailDomains::parse(Some(list)).unwrap()
    }

    #[test]
    fn an_email_refused_whatever_the_user_holds_is_told_before_the_reads() {
        let limited = policy(only("example.com"));
        assert!(limited.refuses_email(Some("a@elsewhere.test")));
        assert!(!limited.refuses_email(Some("a@example.com")));
        assert!(!limited.refuses_email(None), "a clear is allowed");
        let none = policy(EmailDomains::NoneAllowed);
        assert!(none.refuses_email(None) && none.refuses_email(Some("a@example.com")));
        assert!(!policy(EmailDomains::Any).refuses_email(Some("a@elsewhere.test")));
    }

    #[test]
    fn an_unset_allowlist_refuses_every_email_change_clearing_included() {
        let p = policy(EmailDomains::parse(None).unwrap());
        for next in [Some("a@example.com"), None] {
            let err = p
                .check_email_change(Some("old@example.com"), next)
                .unwrap_err();
            assert_eq!(err.class, ErrorClass::PolicyViolation);
        }
        assert!(
            p.check_email_change(Some("same@example.com"), Some("same@example.com"))
                .is_ok()
        );
    }

    #[test]
    fn an_allowlisted_domain_matches_exactly_and_case_insensitively() {
        let p = policy(only("Example.com, corp.example.org"));
        assert!(p.check_email_change(None, Some("a@EXAMPLE.COM")).is_ok());
        assert!(
            p.check_email_change(None, Some("a@corp.example.org"))
                .is_ok()
        );
        for evasion in [
            "a@example.com.evil.test",
            "a@sub.example.com",
            "a@evil-example.com",
            "a@example.org",
            "a@example.co",
        ] {
            let err = p.check_email_change(None, Some(evasion)).unwrap_err();
            assert_eq!(err.class, ErrorClass::PolicyViolation, "{evasion}");
        }
    }

    #[test]
    fn a_star_allows_every_domain() {
        let p = policy(only("*"));
        assert!(
            p.check_email_change(Some("a@x.com"), Some("b@anything.test"))
                .is_ok()
        );
    }

    #[test]
    fn clearing_an_email_is_allowed_with_a_domain_list() {
        let p = policy(only("example.com"));
        assert!(p.check_email_change(Some("a@example.com"), None).is_ok());
    }

    #[test]
    fn an_allowlist_entry_that_is_not_a_domain_is_refused() {
        for bad in [
            "*.example.com",
            "@example.com",
            "example",
            "example.com.",
            "a b.com",
        ] {
            assert!(EmailDomains::parse(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            EmailDomains::parse(Some(" , ")).unwrap(),
            EmailDomains::NoneAllowed
        );
    }

    #[test]
    fn a_secondary_email_is_set_only_to_an_allowlisted_domain_and_any_when_unset() {
        let open = policy(EmailDomains::Any);
        assert_eq!(
            EmailDomains::parse_open_by_default(None).unwrap(),
            EmailDomains::Any
        );
        assert!(open.check_secondary_email(Some("x@anything.test")).is_ok());
        let p = Policy {
            secondary_email_domains: EmailDomains::parse_open_by_default(Some(
                "example.com, Partner.example.org",
            ))
            .unwrap(),
            ..open
        };
        for allowed in [
            Some("a@example.com"),
            Some(" a@EXAMPLE.com "),
            Some("b@partner.example.org"),
            None,
            Some("   "),
        ] {
            assert!(p.check_secondary_email(allowed).is_ok(), "{allowed:?}");
        }
        for refused in [
            "a@evil.test",
            "a@example.com.evil.test",
            "a@sub.example.com",
            "a@example.com@evil.test",
            "no-at-sign",
        ] {
            let err = p.check_secondary_email(Some(refused)).unwrap_err();
            assert_eq!(err.class, ErrorClass::PolicyViolation, "{refused}");
            assert!(!err.message.contains(refused), "{}", err.message);
        }
        assert_eq!(
            EmailDomains::parse_open_by_default(Some("*")).unwrap(),
            EmailDomains::Any
        );
        assert!(EmailDomains::parse_open_by_default(Some("*.example.com")).is_err());
    }

    #[test]
    fn an_instance_outside_the_allowlist_is_refused() {
        let p = policy(EmailDomains::Any);
        assert!(p.check_instance(&InstanceId::parse("i-1").unwrap()).is_ok());
        let err = p
            .check_instance(&InstanceId::parse("i-2").unwrap())
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::PolicyViolation);
    }

    #[test]
    fn a_user_with_a_protected_profile_is_refused() {
        let p = policy(EmailDomains::Any);
        assert!(p.check_security_profiles(["sp-agent"]).is_ok());
        let err = p
            .check_security_profiles(["sp-agent", "sp-admin"])
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::PolicyViolation);
    }

    #[test]
    fn an_untrusted_source_is_refused_and_a_bare_document_has_none() {
        let p = policy(EmailDomains::Any);
        assert!(p.check_source(Some("com.okta")).is_ok());
        assert!(p.check_source(None).is_ok());
        assert_eq!(
            p.check_source(Some("com.evil")).unwrap_err().class,
            ErrorClass::PolicyViolation
        );
        let open = Policy {
            trusted_sources: None,
            ..p
        };
        assert!(open.check_source(Some("anything")).is_ok());
    }
}
