//! Identity value types whose constructors validate (SPEC §2.2): once a value is a
//! `PersonName`, an `EmailAddress` or an `E164`, nobody checks it again.

use std::fmt;
use std::str::FromStr;

use unicode_normalization::UnicodeNormalization;

use super::error::Failure;

/// The one identity field of a user, named as Connect names it. Used in log lines
/// and messages, which may carry field names but never values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    FirstName,
    LastName,
    Email,
    SecondaryEmail,
    Mobile,
}

impl Field {
    pub const ALL: [Field; 5] = [
        Field::FirstName,
        Field::LastName,
        Field::Email,
        Field::SecondaryEmail,
        Field::Mobile,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Field::FirstName => "FirstName",
            Field::LastName => "LastName",
            Field::Email => "Email",
            Field::SecondaryEmail => "SecondaryEmail",
            Field::Mobile => "Mobile",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A first or last name: trimmed, in Unicode NFC, non-empty and within Connect's length.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PersonName(String);

impl PersonName {
    /// Connect's limit for `FirstName`.
    pub const FIRST_NAME_MAX: usize = 255;
    /// Connect's limit for `LastName`.
    pub const LAST_NAME_MAX: usize = 300;

    /// Reads a name for `field`; `None` when it is empty after trimming (a clear).
    ///
    /// # Errors
    /// `ValidationError` when the name is longer than `max` characters or holds a
    /// control character.
    pub fn parse(field: Field, raw: &str, max: usize) -> Result<Option<Self>, Failure> {
        let name: String = raw.trim().nfc().collect();
        if name.is_empty() {
            return Ok(None);
        }
        let len = name.chars().count();
        if len > max {
            return Err(Failure::validation(format!(
                "{field} is {len} characters long; at most {max} are allowed"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Failure::validation(format!(
                "{field} contains a control character"
            )));
        }
        Ok(Some(PersonName(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address in the shape Connect accepts:
/// `(?=^.{0,265}$)[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,63}`, matched whole.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub const MAX_LEN: usize = 265;

    /// Reads an address for `field`; `None` when it is empty after trimming (a clear).
    ///
    /// # Errors
    /// `ValidationError` when the address does not match Connect's pattern.
    pub fn parse(field: Field, raw: &str) -> Result<Option<Self>, Failure> {
        let email = raw.trim();
        if email.is_empty() {
            return Ok(None);
        }
        if email.len() <= Self::MAX_LEN && matches_connect_email_pattern(email) {
            Ok(Some(EmailAddress(email.to_owned())))
        } else {
            Err(Failure::validation(format!(
                "{field} is not an email address Connect accepts"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`, as written.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

/// The whole-string form of Connect's email pattern. The domain part is
/// `[a-zA-Z0-9.-]+` followed by `.` and 2–63 letters; since the letters-only top-level
/// label holds no dot, splitting at the last dot is the only way it can match.
fn matches_connect_email_pattern(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b));
    let Some((host, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let tld_ok = (2..=63).contains(&tld.len()) && tld.bytes().all(|b| b.is_ascii_alphabetic());
    local_ok && host_ok && tld_ok
}

/// A phone number in E.164 form, matching Connect's `\+[1-9]\d{1,14}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct E164(String);

/// The region national numbers are read in (`DEFAULT_PHONE_REGION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneRegion(rlibphonenumber::enums::Region);

/// The regions the phone-number metadata has a numbering plan for: ISO 3166 alpha-2
/// codes, and `AC`, `TA` and `XK`. The metadata takes a few milliseconds of CPU to
/// load, which the function leaves to its first `Mobile` rather than spend at
/// start-up just to check `DEFAULT_PHONE_REGION`; a test keeps this list equal to the
/// metadata's.
const NUMBERING_PLAN_REGIONS: &str = "\
    AC AD AE AF AG AI AL AM AO AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ \
    BR BS BT BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO \
    DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GT GU \
    GW GY HK HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW \
    KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT \
    MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PR PS PT \
    PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TA \
    TC TD TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG US UY UZ VA VC VE VG VI VN VU WF WS XK \
    YE YT ZA ZM ZW";

/// A region code with a numbering plan, in either case (`us`, `GB`).
impl FromStr for PhoneRegion {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let code = s.trim().to_ascii_uppercase();
        if code.len() != 2
            || !NUMBERING_PLAN_REGIONS
                .split_ascii_whitespace()
                .any(|r| r == code)
        {
            return Err(());
        }
        rlibphonenumber::enums::Region::from_str(&code)
            .map(PhoneRegion)
            .map_err(|_| ())
    }
}

impl E164 {
    /// Reads a mobile number; `None` when it is empty after trimming (a clear). An
    /// international number (`+…` or `00…`) stands on its own; a national one is read
    /// in `region`.
    ///
    /// # Errors
    /// `ValidationError` when the number cannot be made a valid E.164 number.
    pub fn parse(raw: &str, region: Option<PhoneRegion>) -> Result<Option<Self>, Failure> {
        let text = raw.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let invalid = || Failure::validation("Mobile is not a valid E.164 phone number");
        // An RFC 3966 `tel:` URI (as SCIM providers send) is a number like any other.
        let number_part = text
            .get(..4)
            .filter(|p| p.eq_ignore_ascii_case("tel:"))
            .map_or(text, |_| text[4..].trim_start());
        let international = number_part.starts_with('+') || number_part.starts_with("00");
        if !international && region.is_none() {
            return Err(Failure::validation(
                "Mobile is a national number and DEFAULT_PHONE_REGION is not set",
            ));
        }
        let util = &*rlibphonenumber::PHONE_NUMBER_UTIL;
        let number = util
            .parse(number_part, region.map(|r| r.0))
            .map_err(|_| invalid())?;
        if !util.is_valid_number(&number) {
            return Err(invalid());
        }
        let e164 = util.format(&number, rlibphonenumber::PhoneNumberFormat::E164);
        if is_e164(&e164) {
            Ok(Some(E164(e164.into_owned())))
        } else {
            Err(invalid())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// A Connect instance id (the last part of an instance ARN).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(String);

impl InstanceId {
    /// Reads an instance id or an instance ARN
    /// (`arn:<partition>:connect:<region>:<account>:instance/<id>`).
    ///
    /// # Errors
    /// `MalformedEvent` when the value is empty or an ARN that is not an instance ARN.
    pub fn parse(raw: &str) -> Result<Self, Failure> {
        let raw = raw.trim();
        if raw.starts_with("arn:") {
            return match parse_connect_arn(raw) {
                Some((instance, None)) => Ok(instance),
                _ => Err(Failure::malformed(
                    "InstanceId is not a Connect instance ARN",
                )),
            };
        }
        if is_resource_id(raw) {
            Ok(InstanceId(raw.to_owned()))
        } else {
            Err(Failure::malformed(
                "InstanceId is not a Connect instance id",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Connect user id (the last part of a user ARN).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// # Errors
    /// `MalformedEvent` when the value is not a resource id.
    pub fn parse(raw: &str) -> Result<Self, Failure> {
        let raw = raw.trim();
        if is_resource_id(raw) {
            Ok(UserId(raw.to_owned()))
        } else {
            Err(Failure::malformed("UserId is not a Connect user id"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a change is for, as the document names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Id(UserId),
    /// A user ARN carries the instance it belongs to.
    Arn {
        instance: InstanceId,
        user: UserId,
    },
    /// Resolved with `SearchUsers`.
    Username(String),
}

impl UserRef {
    /// Reads a `UserId` value: a user id or a user ARN
    /// (`arn:<partition>:connect:<region>:<account>:instance/<id>/agent/<user>`).
    ///
    /// # Errors
    /// `MalformedEvent` when the value is neither.
    pub fn parse_user_id(raw: &str) -> Result<Self, Failure> {
        let raw = raw.trim();
        if raw.starts_with("arn:") {
            return match parse_connect_arn(raw) {
                Some((instance, Some(user))) => Ok(UserRef::Arn { instance, user }),
                _ => Err(Failure::malformed("UserId is not a Connect user ARN")),
            };
        }
        UserId::parse(raw).map(UserRef::Id)
    }

    /// # Errors
    /// `MalformedEvent` when the username is empty or too long for Connect.
    pub fn username(raw: &str) -> Result<Self, Failure> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Failure::malformed("Username is empty or longer than 100"));
        }
        Ok(UserRef::Username(name.to_owned()))
    }
}

/// Resource ids are uuids in practice; anything printable without separators is
/// accepted so a new id format does not break the function.
fn is_resource_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Splits a Connect ARN into its instance and, for a user ARN, its user.
fn parse_connect_arn(arn: &str) -> Option<(InstanceId, Option<UserId>)> {
    let mut parts = arn.splitn(6, ':');
    let (arn_lit, _partition, service, _region, _account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if arn_lit != "arn" || service != "connect" {
        return None;
    }
    let segments: Vec<&str> = resource.split('/').collect();
    match segments.as_slice() {
        ["instance", id] if is_resource_id(id) => Some((InstanceId((*id).to_owned()), None)),
        ["instance", id, "agent", user] if is_resource_id(id) && is_resource_id(user) => Some((
            InstanceId((*id).to_owned()),
            Some(UserId((*user).to_owned())),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::ErrorClass;

    const INSTANCE: &str = "11111111-2222-3333-4444-555555555555";

    #[test]
    fn a_name_is_trimmed_and_normalised_to_nfc() {
        let decomposed = "  Jose\u{301}  ";
        let name = PersonName::parse(Field::FirstName, decomposed, 255)
            .unwrap()
            .unwrap();
        assert_eq!(name.as_str(), "Jos\u{e9}");
    }

    #[test]
    fn a_blank_name_is_a_clear() {
        assert_eq!(
            PersonName::parse(Field::LastName, "   ", 300).unwrap(),
            None
        );
    }

    #[test]
    fn a_name_over_the_limit_is_a_validation_error() {
        let long = "a".repeat(256);
        let err =
            PersonName::parse(Field::FirstName, &long, PersonName::FIRST_NAME_MAX).unwrap_err();
        assert_eq!(err.class, ErrorClass::ValidationError);
        assert!(!err.message.contains("aaaa"), "no value in messages");
        let ok = "é".repeat(255);
        assert!(
            PersonName::parse(Field::FirstName, &ok, PersonName::FIRST_NAME_MAX).is_ok(),
            "the limit counts characters, not bytes"
        );
    }

    #[test]
    fn an_email_matching_connects_pattern_is_accepted() {
        for ok in [
            "jane.doe@example.com",
            "a+b_c%d-e@mail.example.co.uk",
            "X@Y.IO",
        ] {
            assert!(
                EmailAddress::parse(Field::Email, ok).unwrap().is_some(),
                "{ok}"
            );
        }
    }

    #[test]
    fn an_email_outside_connects_pattern_is_a_validation_error() {
        for bad in [
            "no-at-sign",
            "@example.com",
            "jane@",
            "jane@example",
            "jane@example.c",
            "jane@example.com.",
            "jane@exam_ple.com",
            "\"jane@example.com\"@evil.test",
            "jane@ex\u{430}mple.com",
            "jane doe@example.com",
            "jane@example.c0m",
            "a@b@example.com",
        ] {
            let err = EmailAddress::parse(Field::Email, bad).unwrap_err();
            assert_eq!(err.class, ErrorClass::ValidationError, "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(260));
        assert!(EmailAddress::parse(Field::Email, &long).is_err());
    }

    #[test]
    fn an_email_domain_is_what_follows_the_at_sign() {
        let e = EmailAddress::parse(Field::Email, "a@Mail.Example.com")
            .unwrap()
            .unwrap();
        assert_eq!(e.domain(), "Mail.Example.com");
    }

    #[test]
    fn a_mobile_in_international_format_is_normalised_to_e164() {
        let m = E164::parse("+44 20 7946 0958", None).unwrap().unwrap();
        assert_eq!(m.as_str(), "+442079460958");
    }

    #[test]
    fn a_mobile_in_national_format_is_read_in_the_default_region() {
        let us: PhoneRegion = "us".parse().unwrap();
        let m = E164::parse("(415) 555-0123", Some(us)).unwrap().unwrap();
        assert_eq!(m.as_str(), "+14155550123");
    }

    #[test]
    fn a_tel_uri_is_read_as_the_number_it_holds() {
        let m = E164::parse("tel:+1-415-555-0123", None).unwrap().unwrap();
        assert_eq!(m.as_str(), "+14155550123");
    }

    #[test]
    fn a_national_mobile_without_a_default_region_is_a_validation_error() {
        let err = E164::parse("(415) 555-0123", None).unwrap_err();
        assert_eq!(err.class, ErrorClass::ValidationError);
    }

    #[test]
    fn a_mobile_that_cannot_be_made_e164_is_a_validation_error() {
        let us: PhoneRegion = "US".parse().unwrap();
        for bad in ["not a phone", "12", "+0123456", "+1 415 555 0123 4567 89"] {
            let err = E164::parse(bad, Some(us)).unwrap_err();
            assert_eq!(err.class, ErrorClass::ValidationError, "{bad}");
        }
    }

    #[test]
    fn a_phone_region_is_an_iso_alpha_2_code_with_a_numbering_plan() {
        assert!("GB".parse::<PhoneRegion>().is_ok());
        assert!(" us ".parse::<PhoneRegion>().is_ok());
        for not_one in ["XX", "UK", "AQ", "USA", "U", "1A", "", "001"] {
            assert!(not_one.parse::<PhoneRegion>().is_err(), "{not_one}");
        }
    }

    #[test]
    fn the_numbering_plan_regions_are_those_of_the_phone_number_metadata() {
        let mut metadata: Vec<String> = rlibphonenumber::PHONE_NUMBER_UTIL
            .get_supported_regions()
            .map(|r| r.to_string())
            .collect();
        metadata.sort();
        let listed: Vec<&str> = NUMBERING_PLAN_REGIONS.split_ascii_whitespace().collect();
        assert_eq!(listed, metadata);
    }

    #[test]
    fn an_instance_is_read_from_an_id_or_an_instance_arn() {
        let arn = format!("arn:aws:connect:us-east-1:123456789012:instance/{INSTANCE}");
        assert_eq!(InstanceId::parse(&arn).unwrap().as_str(), INSTANCE);
        assert_eq!(InstanceId::parse(INSTANCE).unwrap().as_str(), INSTANCE);
        let user_arn = format!("{arn}/agent/u-1");
        assert_eq!(
            InstanceId::parse(&user_arn).unwrap_err().class,
            ErrorClass::MalformedEvent
        );
        assert!(InstanceId::parse("arn:aws:sqs:us-east-1:1:queue").is_err());
        assert!(InstanceId::parse("").is_err());
    }

    #[test]
    fn a_user_arn_carries_its_instance() {
        let arn = format!("arn:aws-us-gov:connect:us-gov-west-1:1:instance/{INSTANCE}/agent/u-42");
        match UserRef::parse_user_id(&arn).unwrap() {
            UserRef::Arn { instance, user } => {
                assert_eq!(instance.as_str(), INSTANCE);
                assert_eq!(user.as_str(), "u-42");
            }
            other => panic!("expected an ARN, got {other:?}"),
        }
        assert_eq!(
            UserRef::parse_user_id("u-42").unwrap(),
            UserRef::Id(UserId::parse("u-42").unwrap())
        );
        assert!(UserRef::parse_user_id("arn:aws:connect:r:a:instance/x/queue/q").is_err());
        assert!(UserRef::parse_user_id("a/b").is_err());
    }
}
