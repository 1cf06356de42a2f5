//! The whole SCIM 2.0 User resource (RFC 7643) as a change document (SPEC §2.1), read
//! as a change to the Connect user whose Username is its `userName`. The mapping is in
//! the table of [`super`]; the instance is always `DEFAULT_INSTANCE_ID` (the resource
//! names none), the event id and the source come from what carried the resource. The
//! mapping of `emails` and `phoneNumbers` is shared with the PatchOp reader, which
//! reads those arrays as a resource does.
//!
//! # A SCIM resource never clears a field
//! An attribute that is absent, `null`, an empty array or a string that is blank after
//! trimming keeps the Connect field as it is. RFC 7643 §2.5 makes unassigned, `null`
//! and empty values equivalent, and IdPs leave attributes out of a resource for many
//! reasons (attribute mapping, scoping, partial pushes), so an absence says nothing
//! about the value the user should have. Only a value that is there sets a field.
//!
//! # Edge cases, as decided
//! - **`userName`** missing, `null` or blank: `MalformedEvent` (no user to change). Not a
//!   string: `MalformedEvent`. `id` and `externalId` are the IdP's own ids, never a
//!   Connect user id, so they are not read.
//! - **An empty resource** (only `schemas`): `MalformedEvent`, as it has no `userName`.
//! - **`name`** missing or `null`: both names kept. Only one part given: that part is
//!   set, the other kept. **`name.formatted` only**: both names kept; `formatted` is
//!   never split into parts, because where a full name divides into given and family
//!   name depends on the culture and the person ("Mary Anne de la Cruz", family-name
//!   first orders), and a wrong guess would overwrite correct parts in Connect with
//!   wrong ones. `middleName`, honorifics, `displayName` and `nickName` are not read.
//! - **Emails.** An entry whose `value` is missing, `null` or blank is unassigned and
//!   ignored altogether (also for choosing the primary). Of the others:
//!   - Email is the entry with `primary` true, whatever its `type` (a primary `home`
//!     address is still the primary one); without a primary, the first entry whose
//!     `type` is `work` (case-insensitively, as `type` is not case-exact in RFC 7643).
//!   - Without a primary or a `work` entry, Email is kept: Email is where Connect
//!     sends password resets, the very field an account takeover goes for (SPEC §5),
//!     so only an address the IdP marked primary or work may become it.
//!   - SecondaryEmail is the first entry, in the order given, other than the one that
//!     became Email and with another address than it (case-insensitively): with two
//!     `work` addresses and no primary, the first is Email and the second
//!     SecondaryEmail; with a lone untyped address, it is SecondaryEmail.
//!   - More than one primary entry: `MalformedEvent`. RFC 7643 allows at most one, and
//!     picking one of several would be a guess about the Email field.
//!   - `primary` may be a boolean or the string `"true"`/`"false"` (any case, as some
//!     IdPs send booleans as strings); anything else is `MalformedEvent`.
//! - **Phone numbers.** Only entries of `type` `mobile` (case-insensitively) are read;
//!   `work`, `home`, untyped and other numbers are not the agent's mobile. The primary
//!   mobile wins, else the first one. The value is passed as it is, national formats
//!   and `tel:` URIs included: admission reads it in `DEFAULT_PHONE_REGION` and makes
//!   it E.164 or refuses it as a `ValidationError`. Unassigned entries and several
//!   primaries are handled as for emails.
//! - **Wrong types** (`emails` or `phoneNumbers` not an array, an entry neither an
//!   object nor `null`, `name` not an object, `givenName`, `value` or `type` neither a
//!   string nor `null`): `MalformedEvent`, with a message naming the attribute (and the
//!   entry's index) but never a value, so no personal data reaches a log or a
//!   dead-letter attribute. A `null` entry in an array is unassigned and ignored.
//! - **Extension schemas** (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`
//!   and any other) and every other attribute (`addresses`, `groups`, `roles`, `title`…)
//!   are ignored: Connect's identity has no place for them.
//! - **`active: false`** is not read, and the identity fields present are applied as
//!   for any other resource. A deactivation is not an identity change: IdPs send it
//!   with the whole resource (often on the way to deleting the user), and what a
//!   departed agent may still do in Connect is a matter of the user's lifecycle
//!   (security profiles, deletion), which this function is neither meant nor allowed
//!   to touch. Refusing it would fill the `MalformedEvent` queue with ordinary IdP
//!   traffic and raise its alarm for nothing; clearing fields would break the rule
//!   that a SCIM resource never clears. An identity still in step costs no call
//!   (outcome `unchanged`).
//! - **`meta.lastModified`**, when it is an RFC 3339 time, is the document's
//!   `OccurredAt`: it is when the resource changed at the IdP, which orders changes to
//!   one user better than when the event was published or queued. It is read-only
//!   metadata of the IdP's and `xsd:dateTime` allows forms without an offset, so when it
//!   is missing or unreadable the carrier's time is used instead of refusing the
//!   resource (unlike a canonical `OccurredAt`, which the sender chose to write).

use serde_json::{Map, Value};

use super::get_ci;
use crate::domain::document::{ChangeDocument, RawField, RawIdentity, RawUser};
use crate::domain::error::Failure;
use crate::inbound::{Carrier, read_time};

/// Reads a SCIM User resource as described in the module documentation.
pub(crate) fn read(map: &Map<String, Value>, carrier: Carrier) -> Result<ChangeDocument, Failure> {
    let user = match get_ci(map, "userName") {
        Some(Value::String(name)) if !is_blank(name) => RawUser::Username(name.clone()),
        None | Some(Value::Null | Value::String(_)) => {
            return Err(Failure::malformed("userName is missing or blank"));
        }
        Some(_) => return Err(Failure::malformed("userName is not a string")),
    };
    Ok(ChangeDocument {
        instance: None,
        user,
        identity: read_identity(map)?,
        event_id: carrier.event_id,
        occurred_at: last_modified(map).or(carrier.occurred_at),
        source: carrier.source,
    })
}

/// The identity fields a User resource sets (its user is named elsewhere: by its
/// `userName` on the queue, by the URL at the SCIM endpoint).
///
/// # Errors
/// `MalformedEvent` for an attribute of the wrong type or several primary entries.
pub(crate) fn read_identity(map: &Map<String, Value>) -> Result<RawIdentity, Failure> {
    let (first_name, last_name) = read_name(get_ci(map, "name"))?;
    let (email, secondary_email) = read_emails(get_ci(map, "emails"))?;
    let mobile = read_mobile(get_ci(map, "phoneNumbers"))?;
    Ok(RawIdentity {
        first_name,
        last_name,
        email,
        secondary_email,
        mobile,
    })
}

fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// A string that sets a field; anything unassigned keeps it.
fn set_or_keep(value: Option<&str>) -> RawField {
    match value {
        Some(s) if !is_blank(s) => RawField::Set(s.to_owned()),
        _ => RawField::Keep,
    }
}

/// An optional string attribute: `Ok(None)` when absent or `null`.
fn opt_str<'a>(
    value: Option<&'a Value>,
    path: &dyn Fn() -> String,
) -> Result<Option<&'a str>, Failure> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Failure::malformed(format!("{} is not a string", path()))),
    }
}

pub(super) fn read_name(name: Option<&Value>) -> Result<(RawField, RawField), Failure> {
    let name = match name {
        None | Some(Value::Null) => return Ok((RawField::Keep, RawField::Keep)),
        Some(Value::Object(name)) => name,
        Some(_) => return Err(Failure::malformed("name is not an object")),
    };
    let given = opt_str(get_ci(name, "givenName"), &|| "name.givenName".into())?;
    let family = opt_str(get_ci(name, "familyName"), &|| "name.familyName".into())?;
    Ok((set_or_keep(given), set_or_keep(family)))
}

/// One assigned entry of a multi-valued attribute (`emails`, `phoneNumbers`).
struct Entry<'a> {
    value: &'a str,
    /// `type`, trimmed and in lower case.
    kind: Option<String>,
    primary: bool,
}

/// Reads the entries of a multi-valued attribute that carry a value, checking the
/// types of every entry and that at most one is primary.
fn entries<'a>(attribute: &str, list: Option<&'a Value>) -> Result<Vec<Entry<'a>>, Failure> {
    let list = match list {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(Failure::malformed(format!("{attribute} is not an array"))),
    };
    let mut read = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let entry = match entry {
            Value::Null => continue,
            Value::Object(entry) => entry,
            _ => {
                return Err(Failure::malformed(format!(
                    "{attribute}[{i}] is not an object"
                )));
            }
        };
        let value = opt_str(get_ci(entry, "value"), &|| {
            format!("{attribute}[{i}].value")
        })?;
        let kind = opt_str(get_ci(entry, "type"), &|| format!("{attribute}[{i}].type"))?
            .map(|k| k.trim().to_lowercase());
        let primary = match get_ci(entry, "primary") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => false,
            Some(_) => {
                return Err(Failure::malformed(format!(
                    "{attribute}[{i}].primary is not a boolean"
                )));
            }
        };
        if let Some(value) = value.filter(|v| !is_blank(v)) {
            read.push(Entry {
                value,
                kind,
                primary,
            });
        }
    }
    if read.iter().filter(|e| e.primary).count() > 1 {
        return Err(Failure::malformed(format!(
            "{attribute} has more than one primary entry"
        )));
    }
    Ok(read)
}

pub(super) fn read_emails(emails: Option<&Value>) -> Result<(RawField, RawField), Failure> {
    let emails = entries("emails", emails)?;
    let chosen = emails.iter().position(|e| e.primary).or_else(|| {
        emails
            .iter()
            .position(|e| e.kind.as_deref() == Some("work"))
    });
    let email = chosen.map(|i| emails[i].value);
    let same_as_email =
        |value: &str| email.is_some_and(|e| e.trim().eq_ignore_ascii_case(value.trim()));
    let secondary = emails
        .iter()
        .enumerate()
        .find(|(i, e)| Some(*i) != chosen && !same_as_email(e.value))
        .map(|(_, e)| e.value);
    Ok((set_or_keep(email), set_or_keep(secondary)))
}

pub(super) fn read_mobile(phones: Option<&Value>) -> Result<RawField, Failure> {
    let phones = entries("phoneNumbers", phones)?;
    let mut mobiles = phones
        .iter()
        .filter(|p| p.kind.as_deref() == Some("mobile"));
    let mobile = mobiles
        .clone()
        .find(|p| p.primary)
        .or_else(|| mobiles.next())
        .map(|p| p.value);
    Ok(set_or_keep(mobile))
}

/// `meta.lastModified` when it is an RFC 3339 time.
fn last_modified(map: &Map<String, Value>) -> Option<chrono::DateTime<chrono::Utc>> {
    let meta = get_ci(map, "meta")?.as_object()?;
    let raw = get_ci(meta, "lastModified")?.as_str()?;
    read_time("meta.lastModified", raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::ErrorClass;
    use crate::inbound::scim::USER_SCHEMA;
    use serde_json::json;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    /// A User resource with `attributes` added to `schemas` and `userName`.
    fn user(attributes: Value) -> Value {
        let mut resource = json!({"schemas": [USER_SCHEMA], "userName": "jdoe@example.com"});
        for (k, v) in attributes.as_object().unwrap() {
            resource[k] = v.clone();
        }
        resource
    }

    fn read_json(v: &Value) -> Result<ChangeDocument, Failure> {
        crate::inbound::read_document(v, Carrier::default())
    }

    fn identity(attributes: Value) -> RawIdentity {
        read_json(&user(attributes)).unwrap().identity
    }

    fn set(s: &str) -> RawField {
        RawField::Set(s.into())
    }

    /// Asserts a `MalformedEvent` whose message names `attribute` and repeats none of
    /// the personal data in the resource.
    fn assert_malformed(resource: &Value, attribute: &str) {
        let err = read_json(resource).unwrap_err();
        assert_eq!(err.class, ErrorClass::MalformedEvent, "{resource}");
        assert!(
            err.message.contains(attribute),
            "message {:?} does not name {attribute}",
            err.message
        );
        for personal in ["jdoe", "Jane", "Doe", "example", "555", "@"] {
            assert!(
                !err.message.contains(personal),
                "message {:?} repeats personal data",
                err.message
            );
        }
    }

    #[test]
    fn a_full_resource_maps_every_field() {
        let doc = read_json(&user(json!({
            "name": {"givenName": "Jane", "familyName": "Doe", "formatted": "Jane Doe"},
            "emails": [
                {"value": "jane.doe@example.com", "type": "work", "primary": true},
                {"value": "jane@home.example", "type": "home"}
            ],
            "phoneNumbers": [
                {"value": "+1 206 555 0100", "type": "work"},
                {"value": "+1 206 555 0199", "type": "mobile"}
            ]
        })))
        .unwrap();
        assert_eq!(doc.user, RawUser::Username("jdoe@example.com".into()));
        assert_eq!(doc.instance, None, "the instance is DEFAULT_INSTANCE_ID");
        assert_eq!(
            doc.identity,
            RawIdentity {
                first_name: set("Jane"),
                last_name: set("Doe"),
                email: set("jane.doe@example.com"),
                secondary_email: set("jane@home.example"),
                mobile: set("+1 206 555 0199"),
            }
        );
    }

    #[test]
    fn the_carrier_gives_event_id_source_and_time() {
        let carrier = Carrier {
            event_id: Some("ev-9".into()),
            occurred_at: Some(read_time("t", "2026-01-02T03:04:05Z").unwrap()),
            source: Some("com.okta".into()),
        };
        let doc = crate::inbound::read_document(&user(json!({})), carrier).unwrap();
        assert_eq!(doc.event_id.as_deref(), Some("ev-9"));
        assert_eq!(doc.source.as_deref(), Some("com.okta"));
        assert_eq!(
            doc.occurred_at.unwrap().to_rfc3339(),
            "2026-01-02T03:04:05+00:00"
        );
    }

    #[test]
    fn a_readable_last_modified_is_the_time_of_the_change() {
        let carrier = Carrier {
            occurred_at: Some(read_time("t", "2026-01-02T03:04:05Z").unwrap()),
            ..Carrier::default()
        };
        let v = user(json!({"meta": {"lastModified": "2026-01-01T10:00:00+02:00"}}));
        let doc = crate::inbound::read_document(&v, carrier.clone()).unwrap();
        assert_eq!(
            doc.occurred_at.unwrap().to_rfc3339(),
            "2026-01-01T08:00:00+00:00"
        );
        for unreadable in [
            json!({"meta": {"lastModified": "2026-01-01T10:00:00"}}),
            json!({"meta": {"lastModified": 5}}),
            json!({"meta": "x"}),
        ] {
            let doc = crate::inbound::read_document(&user(unreadable), carrier.clone()).unwrap();
            assert_eq!(
                doc.occurred_at.unwrap().to_rfc3339(),
                "2026-01-02T03:04:05+00:00",
                "an unreadable lastModified falls back to the carrier's time"
            );
        }
    }

    #[test]
    fn absent_null_and_blank_attributes_keep_every_field() {
        for attributes in [
            json!({}),
            json!({"name": null, "emails": null, "phoneNumbers": null}),
            json!({"name": {}, "emails": [], "phoneNumbers": []}),
            json!({"name": {"givenName": null, "familyName": "  "}}),
            json!({"emails": [{"value": "", "primary": true}, {"value": null, "type": "home"}]}),
            json!({"phoneNumbers": [{"value": " ", "type": "mobile"}, null]}),
        ] {
            assert_eq!(
                identity(attributes.clone()),
                RawIdentity::default(),
                "{attributes}"
            );
        }
    }

    #[test]
    fn a_resource_without_user_name_is_malformed() {
        assert_malformed(&json!({"schemas": [USER_SCHEMA]}), "userName");
        assert_malformed(
            &json!({"schemas": [USER_SCHEMA], "userName": null, "name": {"givenName": "Jane"}}),
            "userName",
        );
        assert_malformed(
            &json!({"schemas": [USER_SCHEMA], "userName": "  "}),
            "userName",
        );
        assert_malformed(
            &json!({"schemas": [USER_SCHEMA], "userName": 42}),
            "userName",
        );
    }

    #[test]
    fn only_one_name_part_sets_that_part_and_keeps_the_other() {
        let only_given = identity(json!({"name": {"givenName": "Jane"}}));
        assert_eq!(only_given.first_name, set("Jane"));
        assert_eq!(only_given.last_name, RawField::Keep);
        let only_family = identity(json!({"name": {"familyName": "Doe"}}));
        assert_eq!(only_family.first_name, RawField::Keep);
        assert_eq!(only_family.last_name, set("Doe"));
    }

    #[test]
    fn a_formatted_name_alone_is_not_split_into_parts() {
        let id = identity(json!({"name": {"formatted": "Mary Anne de la Cruz"}}));
        assert_eq!(id.first_name, RawField::Keep);
        assert_eq!(id.last_name, RawField::Keep);
    }

    #[test]
    fn the_primary_email_wins_over_a_work_email() {
        let id = identity(json!({"emails": [
            {"value": "jane@work.example", "type": "work"},
            {"value": "jane@primary.example", "type": "work", "primary": true}
        ]}));
        assert_eq!(id.email, set("jane@primary.example"));
        assert_eq!(id.secondary_email, set("jane@work.example"));
    }

    #[test]
    fn a_primary_home_email_is_still_the_email() {
        let id = identity(json!({"emails": [
            {"value": "jane@work.example", "type": "work"},
            {"value": "jane@home.example", "type": "home", "primary": true}
        ]}));
        assert_eq!(id.email, set("jane@home.example"));
        assert_eq!(id.secondary_email, set("jane@work.example"));
    }

    #[test]
    fn a_work_email_is_used_when_none_is_primary() {
        let id = identity(json!({"emails": [
            {"value": "jane@home.example", "type": "home"},
            {"value": "jane@work.example", "type": "Work", "primary": false}
        ]}));
        assert_eq!(id.email, set("jane@work.example"));
        assert_eq!(id.secondary_email, set("jane@home.example"));
    }

    #[test]
    fn of_two_work_emails_the_first_is_the_email_and_the_second_the_secondary() {
        let id = identity(json!({"emails": [
            {"value": "a@work.example", "type": "work"},
            {"value": "b@work.example", "type": "work"}
        ]}));
        assert_eq!(id.email, set("a@work.example"));
        assert_eq!(id.secondary_email, set("b@work.example"));
    }

    #[test]
    fn without_a_primary_or_work_email_email_is_kept_and_the_first_goes_to_secondary() {
        let id = identity(json!({"emails": [
            {"value": "jane@home.example", "type": "home"},
            {"value": "jane@other.example"}
        ]}));
        assert_eq!(id.email, RawField::Keep);
        assert_eq!(id.secondary_email, set("jane@home.example"));
    }

    #[test]
    fn a_lone_primary_email_keeps_the_secondary() {
        let id = identity(json!({"emails": [
            {"value": "jane@work.example", "type": "work", "primary": true}
        ]}));
        assert_eq!(id.email, set("jane@work.example"));
        assert_eq!(id.secondary_email, RawField::Keep);
    }

    #[test]
    fn a_repeat_of_the_email_address_is_not_the_secondary() {
        let id = identity(json!({"emails": [
            {"value": "Jane@Work.example", "type": "work", "primary": true},
            {"value": "jane@work.example ", "type": "home"},
            {"value": "jane@home.example", "type": "other"}
        ]}));
        assert_eq!(id.email, set("Jane@Work.example"));
        assert_eq!(id.secondary_email, set("jane@home.example"));
    }

    #[test]
    fn primary_given_as_a_string_is_read_as_a_boolean() {
        let id = identity(json!({"emails": [
            {"value": "jane@work.example", "type": "work", "primary": "False"},
            {"value": "jane@home.example", "type": "home", "primary": "true"}
        ]}));
        assert_eq!(id.email, set("jane@home.example"));
        assert_eq!(id.secondary_email, set("jane@work.example"));
    }

    #[test]
    fn an_email_without_a_value_is_ignored() {
        let id = identity(json!({"emails": [
            {"type": "work", "primary": true},
            {"value": "jane@work.example", "type": "work"}
        ]}));
        assert_eq!(id.email, set("jane@work.example"));
        assert_eq!(id.secondary_email, RawField::Keep);
    }

    #[test]
    fn more_than_one_primary_email_is_malformed() {
        assert_malformed(
            &user(json!({"emails": [
                {"value": "jane@work.example", "primary": true},
                {"value": "jane@home.example", "primary": "true"}
            ]})),
            "emails",
        );
    }

    #[test]
    fn more_than_one_primary_phone_number_is_malformed() {
        assert_malformed(
            &user(json!({"phoneNumbers": [
                {"value": "+1 206 555 0100", "type": "work", "primary": true},
                {"value": "+1 206 555 0199", "type": "mobile", "primary": true}
            ]})),
            "phoneNumbers",
        );
    }

    #[test]
    fn emails_that_are_not_objects_are_malformed_but_null_entries_are_ignored() {
        assert_malformed(&user(json!({"emails": ["jane@work.example"]})), "emails[0]");
        assert_malformed(
            &user(json!({"emails": [null, {"value": "jane@work.example"}, 7]})),
            "emails[2]",
        );
        let id = identity(json!({"emails": [null, {"value": "a@work.example", "type": "work"}]}));
        assert_eq!(id.email, set("a@work.example"));
    }

    #[test]
    fn the_mobile_number_is_passed_as_it_is_in_national_format() {
        let id = identity(json!({"phoneNumbers": [
            {"value": "(206) 555-0100", "type": "home"},
            {"value": "(206) 555-0199", "type": "MOBILE"}
        ]}));
        assert_eq!(id.mobile, set("(206) 555-0199"));
    }

    #[test]
    fn the_primary_mobile_wins_over_the_first_and_other_types_are_not_mobile() {
        let id = identity(json!({"phoneNumbers": [
            {"value": "+1 206 555 0100", "type": "mobile"},
            {"value": "+1 206 555 0199", "type": "mobile", "primary": true}
        ]}));
        assert_eq!(id.mobile, set("+1 206 555 0199"));
        let id = identity(json!({"phoneNumbers": [
            {"value": "+1 206 555 0100", "type": "work", "primary": true},
            {"value": "+1 206 555 0101"}
        ]}));
        assert_eq!(id.mobile, RawField::Keep);
    }

    #[test]
    fn extension_attributes_are_ignored() {
        let v = json!({
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "userName": "jdoe",
            "name": {"givenName": "Jane"},
            ENTERPRISE: {"employeeNumber": "701984", "manager": {"value": "26118915"}},
            "urn:example:custom": {"Email": "x@y.example", "FirstName": 5},
            "title": "Agent",
            "addresses": [{"type": "work"}]
        });
        let id = read_json(&v).unwrap().identity;
        assert_eq!(
            id,
            RawIdentity {
                first_name: set("Jane"),
                ..RawIdentity::default()
            }
        );
    }

    #[test]
    fn an_inactive_user_still_has_its_identity_applied_and_nothing_cleared() {
        for active in [json!(false), json!("False")] {
            let id = identity(json!({
                "active": active,
                "name": {"givenName": "Jane", "familyName": "Doe"}
            }));
            assert_eq!(id.first_name, set("Jane"));
            assert_eq!(id.last_name, set("Doe"));
            assert_eq!(id.email, RawField::Keep);
            assert_eq!(id.mobile, RawField::Keep);
        }
    }

    #[test]
    fn wrong_types_are_malformed_and_name_the_attribute_without_its_value() {
        for (attributes, attribute) in [
            (json!({"name": "Jane Doe"}), "name"),
            (json!({"name": {"givenName": 5}}), "name.givenName"),
            (json!({"name": {"familyName": ["Doe"]}}), "name.familyName"),
            (json!({"emails": {"value": "jane@example.com"}}), "emails"),
            (json!({"emails": [{"value": 555}]}), "emails[0].value"),
            (
                json!({"emails": [{"value": "jane@example.com", "type": 1}]}),
                "emails[0].type",
            ),
            (
                json!({"emails": [{"value": "jane@example.com", "primary": "yes"}]}),
                "emails[0].primary",
            ),
            (json!({"phoneNumbers": "+1 206 555 0100"}), "phoneNumbers"),
            (
                json!({"phoneNumbers": [{"value": 2065550100_u64}]}),
                "phoneNumbers[0].value",
            ),
            (
                json!({"phoneNumbers": [{"value": "+1 206 555 0100", "primary": 1}]}),
                "phoneNumbers[0].primary",
            ),
        ] {
            assert_malformed(&user(attributes), attribute);
        }
    }

    #[test]
    fn attribute_names_are_read_case_insensitively() {
        let id = identity(json!({
            "Name": {"GIVENNAME": "Jane", "familyname": "Doe"},
            "Emails": [{"Value": "jane@work.example", "Type": "work", "Primary": "True"}],
            "PhoneNumbers": [{"VALUE": "+1 206 555 0199", "TYPE": "mobile"}]
        }));
        assert_eq!(
            id,
            RawIdentity {
                first_name: set("Jane"),
                last_name: set("Doe"),
                email: set("jane@work.example"),
                secondary_email: RawField::Keep,
                mobile: set("+1 206 555 0199"),
            }
        );
    }

    #[test]
    fn an_okta_full_resource_update_maps_the_okta_shape() {
        // The body Okta sends with PUT /Users/{id} when a profile changes.
        let v = json!({
            "schemas": [USER_SCHEMA],
            "id": "23a35c27-23d3-4c03-b4c5-6443c09e7173",
            "userName": "test.user@okta.local",
            "name": {"givenName": "Another", "familyName": "User"},
            "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work",
                        "display": "test.user@okta.local"}],
            "active": true,
            "groups": [],
            "meta": {"resourceType": "User"}
        });
        let doc = read_json(&v).unwrap();
        assert_eq!(doc.user, RawUser::Username("test.user@okta.local".into()));
        assert_eq!(
            doc.identity,
            RawIdentity {
                first_name: set("Another"),
                last_name: set("User"),
                email: set("test.user@okta.local"),
                ..RawIdentity::default()
            }
        );
    }

    #[test]
    fn a_resource_of_another_scim_schema_is_not_a_user() {
        let v = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                       "userName": "jdoe"});
        assert_eq!(read_json(&v).unwrap_err().class, ErrorClass::MalformedEvent);
    }
}
