//! The SCIM 2.0 PatchOp message (RFC 7644 §3.5.2) as a change document (SPEC §2.1):
//! what Microsoft Entra ID sends for an update, and Okta for a deactivation, forwarded
//! by a SCIM bridge that names the Connect user beside `Operations` (`UserId` or
//! `Username`, and `InstanceId`, `EventId`, `OccurredAt` as in a canonical document).
//!
//! # What each operation does
//! `op` is `add`, `replace` or `remove` in any letter case. `add` and `replace` set the
//! fields their path names, `remove` clears them; operations apply in order, a later
//! one overriding an earlier one on the same field.
//!
//! | path | value | field |
//! |---|---|---|
//! | `name.givenName` / `name.familyName` | string or `null` | FirstName / LastName |
//! | `name` | object with `givenName`, `familyName` | both (an absent part is kept) |
//! | `emails[type eq "work"].value`, `emails[primary eq true].value` | string or `null` | Email |
//! | `emails[type eq "<other type>"].value` | string or `null` | SecondaryEmail |
//! | `emails` | array, read as in a whole resource | Email, SecondaryEmail |
//! | `phoneNumbers[type eq "mobile"].value` | string or `null` | Mobile |
//! | `phoneNumbers` | array, read as in a whole resource | Mobile |
//! | none | object whose keys are paths, dotted (`"name.givenName"`) or nested | as each key |
//!
//! A `remove` takes the same paths, and also a filter without `.value`
//! (`emails[type eq "work"]`); `remove` of `emails` clears Email and SecondaryEmail, of
//! `phoneNumbers` Mobile, of `name` both names. A `null` or blank value clears as
//! `remove` does (RFC 7643 §2.5: unassigned and `null` are the same).
//!
//! # Filters
//! One comparison with `eq`: `type` compares case-insensitively and after trimming
//! (`type` is not case-exact in RFC 7643), `primary` with `true` (also Entra's string
//! `"True"`, any case). `type` of a phone number other than `mobile` is not the agent's
//! mobile and is ignored, as a work or fax number is.
//!
//! # Ignored
//! Every attribute that is not an identity field: `active` (as `false`, `"False"` or
//! anything), `userName` (the user is named beside `Operations`; a Connect username is
//! not an identity field), `displayName`, `title`, `name.formatted` and the other parts
//! of `name`, `addresses`, any extension schema's attributes
//! (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:…`). A message of only
//! those changes no field and ends `unchanged` without a call.
//!
//! # Malformed
//! `MalformedEvent` for: no `Operations` array; an operation that is not an object, or
//! whose `op` is not one of the three; a `remove` without `path`; a path or key naming
//! `name`, `emails` or `phoneNumbers` in a form not in the table (another filter
//! attribute or operator, `primary eq false`, a filter on `name`, `emails.value`, a
//! sub-attribute other than `value`, `phoneNumbers[primary eq true]`, an unreadable
//! filter); a path that does not start with an attribute name; a value of the wrong
//! type for its path. The message names the operation's index and the path as parsed,
//! with a filter's value left out, and never a value (no personal data reaches a log
//! or a dead-letter attribute).

use serde_json::{Map, Value};

use super::path::{self, Filter, Literal, Path, Schema};
use super::{Fault, Refusal, get_ci, resource};
use crate::domain::document::{ChangeDocument, RawField, RawIdentity};
use crate::domain::error::Failure;
use crate::inbound::{Carrier, canonical};

/// Reads a PatchOp message as described in the module documentation.
pub(crate) fn read(map: &Map<String, Value>, carrier: Carrier) -> Result<ChangeDocument, Failure> {
    let user = canonical::read_user(map)?;
    let identity = read_operations(map).map_err(|r| r.failure)?;
    canonical::with_metadata(map, user, identity, carrier)
}

/// What a PatchOp's `Operations` do to the identity fields, in order; the user is named
/// elsewhere (beside `Operations` in a queued message, in the URL at the SCIM endpoint).
///
/// # Errors
/// A `MalformedEvent` refusal, with the kind of fault RFC 7644 §3.12 would name.
pub(crate) fn read_operations(map: &Map<String, Value>) -> Result<RawIdentity, Refusal> {
    let operations = match get_ci(map, "Operations") {
        Some(Value::Array(operations)) => operations,
        Some(_) => {
            return Err(Refusal::malformed(
                Fault::Syntax,
                "Operations is not an array",
            ));
        }
        None => return Err(Refusal::malformed(Fault::Syntax, "Operations is missing")),
    };
    let mut identity = RawIdentity::default();
    for (i, operation) in operations.iter().enumerate() {
        Operation::read(i, operation)?.apply(&mut identity)?;
    }
    Ok(identity)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `add` or `replace`.
    Set,
    Remove,
}

/// One member of `Operations`.
struct Operation<'a> {
    index: usize,
    op: Op,
    path: Option<&'a str>,
    value: Option<&'a Value>,
}

/// The field (or fields) a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    FirstName,
    LastName,
    /// `name` as a whole.
    Name,
    Email,
    SecondaryEmail,
    /// `emails` as a whole.
    Emails,
    Mobile,
    /// `phoneNumbers` as a whole.
    Phones,
    /// The whole resource: a value object whose keys are paths.
    Resource,
    Ignored,
}

fn is_identity(attr: &str) -> bool {
    matches!(attr, "name" | "emails" | "phonenumbers")
}

impl<'a> Operation<'a> {
    fn read(index: usize, raw: &'a Value) -> Result<Self, Refusal> {
        let Value::Object(raw) = raw else {
            return Err(Refusal::malformed(
                Fault::Syntax,
                format!("Operations[{index}] is not an object"),
            ));
        };
        let op = match get_ci(raw, "op") {
            Some(Value::String(op)) if is(op, "add") || is(op, "replace") => Op::Set,
            Some(Value::String(op)) if is(op, "remove") => Op::Remove,
            _ => {
                return Err(Refusal::malformed(
                    Fault::Syntax,
                    format!("Operations[{index}].op is not add, replace or remove"),
                ));
            }
        };
        let path = match get_ci(raw, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(path)) => Some(path.as_str()),
            Some(_) => {
                return Err(Refusal::malformed(
                    Fault::Path,
                    format!("Operations[{index}].path is not a string"),
                ));
            }
        };
        Ok(Self {
            index,
            op,
            path,
            value: get_ci(raw, "value"),
        })
    }

    fn apply(&self, identity: &mut RawIdentity) -> Result<(), Refusal> {
        match (self.path, self.op) {
            (Some(path), _) => self.apply_path(identity, path, self.value, "path"),
            (None, Op::Set) => self.apply_object(identity, self.value),
            (None, Op::Remove) => Err(self.malformed(Fault::Path, "is a remove without a path")),
        }
    }

    /// An operation without a path, or on the core schema as a whole: each key of the
    /// value object is a path, dotted or holding a nested object.
    fn apply_object(
        &self,
        identity: &mut RawIdentity,
        value: Option<&Value>,
    ) -> Result<(), Refusal> {
        match value {
            Some(Value::Object(members)) => {
                for (key, value) in members {
                    self.apply_path(identity, key, Some(value), "value key")?;
                }
                Ok(())
            }
            None => Err(self.malformed(Fault::Value, "has no value")),
            Some(_) => Err(self.malformed(
                Fault::Value,
                "has no path and a value that is not an object",
            )),
        }
    }

    fn apply_path(
        &self,
        identity: &mut RawIdentity,
        text: &str,
        value: Option<&Value>,
        what: &str,
    ) -> Result<(), Refusal> {
        let path = match path::parse(text) {
            Ok(path) => path,
            Err(e) => {
                return match e.attr {
                    Some(attr) if !is_identity(&attr) => Ok(()),
                    Some(attr) => Err(self.malformed(
                        Fault::Path,
                        &format!("{what} {}… {}", path::attribute_name(&attr), e.reason),
                    )),
                    None => Err(self.malformed(Fault::Path, &format!("{what} {}", e.reason))),
                };
            }
        };
        let shown = || format!("{what} {}", path.shown());
        let target = target(&path, self.op)
            .map_err(|reason| self.malformed(Fault::Path, &format!("{}: {reason}", shown())))?;
        if target == Target::Ignored {
            return Ok(());
        }
        if self.op == Op::Remove {
            clear(identity, target);
            return Ok(());
        }
        let Some(value) = value else {
            return Err(self.malformed(Fault::Value, &format!("{} has no value", shown())));
        };
        if target == Target::Resource {
            return self.apply_object(identity, Some(value));
        }
        if value.is_null() {
            clear(identity, target);
            return Ok(());
        }
        let wrong_type = |expected: &str| {
            self.malformed(
                Fault::Value,
                &format!("{} has a value that is not {expected}", shown()),
            )
        };
        let nested =
            |e: Failure| self.malformed(Fault::Value, &format!("{}: {}", shown(), e.message));
        match target {
            Target::FirstName
            | Target::LastName
            | Target::Email
            | Target::SecondaryEmail
            | Target::Mobile => {
                let Value::String(s) = value else {
                    return Err(wrong_type("a string"));
                };
                set(identity, target, RawField::Set(s.clone()));
            }
            Target::Name => {
                let Value::Object(name) = value else {
                    return Err(wrong_type("an object"));
                };
                for (part, target) in [
                    ("givenName", Target::FirstName),
                    ("familyName", Target::LastName),
                ] {
                    match get_ci(name, part) {
                        None => {}
                        Some(Value::Null) => clear(identity, target),
                        Some(Value::String(s)) => set(identity, target, RawField::Set(s.clone())),
                        Some(_) => {
                            return Err(self.malformed(
                                Fault::Value,
                                &format!("{} has a {part} that is not a string", shown()),
                            ));
                        }
                    }
                }
            }
            Target::Emails => {
                if !value.is_array() {
                    return Err(wrong_type("an array"));
                }
                let (email, secondary) = resource::read_emails(Some(value)).map_err(nested)?;
                set(identity, Target::Email, email);
                set(identity, Target::SecondaryEmail, secondary);
            }
            Target::Phones => {
                if !value.is_array() {
                    return Err(wrong_type("an array"));
                }
                let mobile = resource::read_mobile(Some(value)).map_err(nested)?;
                set(identity, Target::Mobile, mobile);
            }
            Target::Resource | Target::Ignored => {}
        }
        Ok(())
    }

    fn malformed(&self, fault: Fault, what: &str) -> Refusal {
        Refusal::malformed(fault, format!("Operations[{}] {what}", self.index))
    }
}

fn is(op: &str, name: &str) -> bool {
    op.trim().eq_ignore_ascii_case(name)
}

/// The field a path names, or why its form is not one that is read.
fn target(path: &Path, op: Op) -> Result<Target, &'static str> {
    match path.schema {
        Schema::Extension => return Ok(Target::Ignored),
        Schema::CoreResource if op == Op::Remove => {
            return Err("removes the whole resource");
        }
        Schema::CoreResource => return Ok(Target::Resource),
        Schema::Core => {}
    }
    let attr = path.attr.as_str();
    if !is_identity(attr) {
        return Ok(Target::Ignored);
    }
    match (attr, &path.filter, path.sub.as_deref()) {
        ("name", Some(_), _) => Err("filters name, which is not multi-valued"),
        ("name", None, None) => Ok(Target::Name),
        ("name", None, Some("givenname")) => Ok(Target::FirstName),
        ("name", None, Some("familyname")) => Ok(Target::LastName),
        // formatted, middleName, honorifics: no Connect field.
        ("name", None, Some(_)) => Ok(Target::Ignored),
        (_, None, None) if attr == "emails" => Ok(Target::Emails),
        (_, None, None) => Ok(Target::Phones),
        (_, None, Some(_)) => Err("names a sub-attribute without a filter"),
        (_, Some(_), Some(sub)) if sub != "value" => Err("names a sub-attribute other than value"),
        (_, Some(_), None) if op == Op::Set => Err("sets a filtered entry without .value"),
        (_, Some(filter), _) if attr == "emails" => email_slot(filter),
        (_, Some(filter), _) => phone_slot(filter),
    }
}

fn email_slot(filter: &Filter) -> Result<Target, &'static str> {
    match filter_on(filter)? {
        Selector::Type(kind) if kind.eq_ignore_ascii_case("work") => Ok(Target::Email),
        Selector::Type(_) => Ok(Target::SecondaryEmail),
        Selector::Primary => Ok(Target::Email),
    }
}

fn phone_slot(filter: &Filter) -> Result<Target, &'static str> {
    match filter_on(filter)? {
        Selector::Type(kind) if kind.eq_ignore_ascii_case("mobile") => Ok(Target::Mobile),
        Selector::Type(_) => Ok(Target::Ignored),
        Selector::Primary => Err("selects the primary phone number, whose type is unknown"),
    }
}

/// What a filter of a multi-valued attribute selects.
enum Selector<'a> {
    /// `type eq "…"`, trimmed.
    Type(&'a str),
    /// `primary eq true`.
    Primary,
}

fn filter_on(filter: &Filter) -> Result<Selector<'_>, &'static str> {
    if filter.op != "eq" {
        return Err("has a filter whose operator is not eq");
    }
    match (filter.attr.as_str(), &filter.value) {
        ("type", Literal::Str(kind)) => Ok(Selector::Type(kind.trim())),
        ("type", _) => Err("has a type filter whose value is not a string"),
        ("primary", Literal::Bool(true)) => Ok(Selector::Primary),
        ("primary", Literal::Str(s)) if s.trim().eq_ignore_ascii_case("true") => {
            Ok(Selector::Primary)
        }
        ("primary", Literal::Bool(false)) => Err("selects the entries that are not primary"),
        ("primary", Literal::Str(s)) if s.trim().eq_ignore_ascii_case("false") => {
            Err("selects the entries that are not primary")
        }
        ("primary", _) => Err("has a primary filter whose value is not a boolean"),
        _ => Err("filters on an attribute other than type or primary"),
    }
}

fn slot(identity: &mut RawIdentity, target: Target) -> Option<&mut RawField> {
    match target {
        Target::FirstName => Some(&mut identity.first_name),
        Target::LastName => Some(&mut identity.last_name),
        Target::Email => Some(&mut identity.email),
        Target::SecondaryEmail => Some(&mut identity.secondary_email),
        Target::Mobile => Some(&mut identity.mobile),
        _ => None,
    }
}

/// Sets one field; [`RawField::Keep`] leaves what an earlier operation did.
fn set(identity: &mut RawIdentity, target: Target, value: RawField) {
    if value == RawField::Keep {
        return;
    }
    if let Some(field) = slot(identity, target) {
        *field = value;
    }
}

fn clear(identity: &mut RawIdentity, target: Target) {
    let fields: &[Target] = match target {
        Target::Name => &[Target::FirstName, Target::LastName],
        Target::Emails => &[Target::Email, Target::SecondaryEmail],
        Target::Phones => &[Target::Mobile],
        _ => &[target],
    };
    for field in fields {
        set(identity, *field, RawField::Clear);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::document::RawUser;
    use crate::domain::error::ErrorClass;
    use crate::inbound::scim::PATCH_SCHEMA;
    use serde_json::json;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    /// A PatchOp message for user `u-1` with `operations`.
    fn patch(operations: Value) -> Value {
        json!({"schemas": [PATCH_SCHEMA], "UserId": "u-1", "Operations": operations})
    }

    fn read_json(v: &Value) -> Result<ChangeDocument, Failure> {
        crate::inbound::read_document(v, Carrier::default())
    }

    fn identity(operations: Value) -> RawIdentity {
        read_json(&patch(operations)).unwrap().identity
    }

    fn set(s: &str) -> RawField {
        RawField::Set(s.into())
    }

    /// Asserts a `MalformedEvent` whose message names `names` and repeats no value.
    fn assert_malformed(message: &Value, names: &str) {
        let err = read_json(message).unwrap_err();
        assert_eq!(err.class, ErrorClass::MalformedEvent, "{message}");
        assert!(
            err.message.contains(names),
            "message {:?} does not name {names}",
            err.message
        );
        for personal in ["jane", "Jane", "Doe", "example", "555", "@"] {
            assert!(
                !err.message.contains(personal),
                "message {:?} repeats a value",
                err.message
            );
        }
    }

    #[test]
    fn entra_replace_of_the_work_email_and_family_name_sets_both() {
        // Entra ID's "Update User [Multi-valued properties]" request.
        let id = identity(json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value",
             "value": "jane.doe@example.com"},
            {"op": "Replace", "path": "name.familyName", "value": "Doe-Carter"}
        ]));
        assert_eq!(
            id,
            RawIdentity {
                email: set("jane.doe@example.com"),
                last_name: set("Doe-Carter"),
                ..RawIdentity::default()
            }
        );
    }

    #[test]
    fn entra_add_of_a_work_email_beside_a_title_sets_only_the_email() {
        // Entra sends Add, not Replace, for an attribute it has not sent before.
        let id = identity(json!([
            {"op": "Replace", "path": "title", "value": "tester"},
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "jane@example.com"}
        ]));
        assert_eq!(
            id,
            RawIdentity {
                email: set("jane@example.com"),
                ..RawIdentity::default()
            }
        );
    }

    #[test]
    fn op_is_read_in_any_letter_case() {
        for op in ["add", "Add", "ADD", "replace", "Replace", "rEpLaCe"] {
            let id = identity(json!([{"op": op, "path": "name.givenName", "value": "Jane"}]));
            assert_eq!(id.first_name, set("Jane"), "{op}");
        }
        for op in ["remove", "Remove", "REMOVE"] {
            let id = identity(json!([{"op": op, "path": "name.givenName"}]));
            assert_eq!(id.first_name, RawField::Clear, "{op}");
        }
    }

    #[test]
    fn entra_disable_with_active_as_a_string_or_boolean_changes_no_field() {
        // Entra ID's "Disable User": "False" as a string without aadOptscim062020,
        // false with it.
        for value in [json!("False"), json!(false), json!("True"), json!(1)] {
            let id = identity(json!([{"op": "Replace", "path": "active", "value": value}]));
            assert_eq!(id, RawIdentity::default(), "{value}");
        }
    }

    #[test]
    fn okta_deactivate_without_a_path_changes_no_field() {
        // Okta's PATCH /Users/{id} for a deactivation.
        let id = identity(json!([{"op": "replace", "value": {"active": false}}]));
        assert_eq!(id, RawIdentity::default());
    }

    #[test]
    fn entra_no_path_dotted_keys_set_each_field_they_name() {
        // What Entra ID sends with its aadOptscim062020 flag: one operation, no path,
        // the value's keys are paths.
        let id = identity(json!([{"op": "add", "value": {
            "displayName": "Jane Doe",
            "name.givenName": "Jane",
            "name.familyName": "Doe",
            "emails[type eq \"work\"].value": "jane.doe@example.com",
            "phoneNumbers[type eq \"mobile\"].value": "+1 206 555 0199",
            "phoneNumbers[type eq \"work\"].value": "+1 206 555 0100",
            "active": "True",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "701984"
        }}]));
        assert_eq!(
            id,
            RawIdentity {
                first_name: set("Jane"),
                last_name: set("Doe"),
                email: set("jane.doe@example.com"),
                secondary_email: RawField::Keep,
                mobile: set("+1 206 555 0199"),
            }
        );
    }

    #[test]
    fn a_no_path_nested_object_sets_the_name_and_ignores_an_extension_object() {
        // RFC 7644 §3.5.2.1's form: the value holds attributes as a resource does.
        let id = identity(json!([{"op": "add", "value": {
            "name": {"givenName": "Jane", "familyName": "Doe", "formatted": "Jane Doe"},
            ENTERPRISE: {"department": "Support", "manager": {"value": "26118915"}}
        }}]));
        assert_eq!(
            id,
            RawIdentity {
                first_name: set("Jane"),
                last_name: set("Doe"),
                ..RawIdentity::default()
            }
        );
    }

    #[test]
    fn a_primary_filter_selects_the_email_also_with_entras_string_boolean() {
        for path in [
            "emails[primary eq true].value",
            "emails[primary eq True].value",
            "emails[primary eq \"True\"].value",
            "emails[primary eq \"true\"].value",
        ] {
            let id =
                identity(json!([{"op": "Replace", "path": path, "value": "jane@example.com"}]));
            assert_eq!(id.email, set("jane@example.com"), "{path}");
            assert_eq!(id.secondary_email, RawField::Keep, "{path}");
        }
    }

    #[test]
    fn a_type_filter_compares_case_insensitively_and_another_type_is_the_secondary() {
        let id = identity(json!([
            {"op": "replace", "path": "emails[type eq \"Work\"].value", "value": "a@example.com"},
            {"op": "replace", "path": "emails[type eq \"home\"].value", "value": "b@example.com"}
        ]));
        assert_eq!(id.email, set("a@example.com"));
        assert_eq!(id.secondary_email, set("b@example.com"));
    }

    #[test]
    fn a_mobile_filter_sets_the_mobile_and_other_phone_types_are_ignored() {
        let id = identity(json!([
            {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "(206) 555-0199"},
            {"op": "Add", "path": "phoneNumbers[type eq \"work\"].value", "value": "(206) 555-0100"},
            {"op": "Add", "path": "phoneNumbers[type eq \"fax\"].value", "value": "(206) 555-0101"}
        ]));
        assert_eq!(
            id,
            RawIdentity {
                mobile: set("(206) 555-0199"),
                ..RawIdentity::default()
            }
        );
    }

    #[test]
    fn multi_valued_arrays_are_read_as_in_a_whole_resource() {
        let id = identity(json!([
            {"op": "replace", "path": "emails", "value": [
                {"value": "jane@home.example", "type": "home"},
                {"value": "jane@example.com", "type": "work", "primary": "True"}
            ]},
            {"op": "add", "path": "phoneNumbers", "value": [
                {"value": "+1 206 555 0100", "type": "work"},
                {"value": "+1 206 555 0199", "type": "mobile"}
            ]}
        ]));
        assert_eq!(
            id,
            RawIdentity {
                email: set("jane@example.com"),
                secondary_email: set("jane@home.example"),
                mobile: set("+1 206 555 0199"),
                ..RawIdentity::default()
            }
        );
    }

    #[test]
    fn an_array_without_a_work_or_primary_email_keeps_the_email() {
        let id = identity(json!([{"op": "add", "path": "emails", "value": [
            {"value": "jane@home.example", "type": "home"}
        ]}]));
        assert_eq!(id.email, RawField::Keep);
        assert_eq!(id.secondary_email, set("jane@home.example"));
    }

    #[test]
    fn name_with_an_object_value_sets_its_parts_and_keeps_an_absent_one() {
        let id = identity(json!([{"op": "replace", "path": "name",
                                  "value": {"givenName": "Jane"}}]));
        assert_eq!(id.first_name, set("Jane"));
        assert_eq!(id.last_name, RawField::Keep);
        let id = identity(json!([{"op": "replace", "path": "name",
                                  "value": {"GivenName": "Jane", "familyName": null}}]));
        assert_eq!(id.first_name, set("Jane"));
        assert_eq!(id.last_name, RawField::Clear);
    }

    #[test]
    fn remove_with_a_filter_clears_the_field_it_selects() {
        let id = identity(json!([
            {"op": "Remove", "path": "emails[type eq \"work\"]"},
            {"op": "Remove", "path": "emails[type eq \"home\"].value"},
            {"op": "Remove", "path": "phoneNumbers[type eq \"mobile\"].value"},
            {"op": "Remove", "path": "phoneNumbers[type eq \"work\"]"}
        ]));
        assert_eq!(
            id,
            RawIdentity {
                email: RawField::Clear,
                secondary_email: RawField::Clear,
                mobile: RawField::Clear,
                ..RawIdentity::default()
            }
        );
        let id = identity(json!([{"op": "remove", "path": "emails[primary eq true].value"}]));
        assert_eq!(id.email, RawField::Clear);
        assert_eq!(id.secondary_email, RawField::Keep);
    }

    #[test]
    fn remove_without_a_filter_clears_the_whole_attribute() {
        let id = identity(json!([
            {"op": "remove", "path": "emails"},
            {"op": "remove", "path": "name"}
        ]));
        assert_eq!(
            id,
            RawIdentity {
                first_name: RawField::Clear,
                last_name: RawField::Clear,
                email: RawField::Clear,
                secondary_email: RawField::Clear,
                mobile: RawField::Keep,
            }
        );
        let id = identity(json!([
            {"op": "remove", "path": "phoneNumbers"},
            {"op": "remove", "path": "name.familyName", "value": "ignored"}
        ]));
        assert_eq!(id.mobile, RawField::Clear);
        assert_eq!(id.last_name, RawField::Clear);
        assert_eq!(id.first_name, RawField::Keep);
    }

    #[test]
    fn a_null_or_blank_value_clears_as_remove_does() {
        let id = identity(json!([
            {"op": "replace", "path": "name.givenName", "value": null},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": ""}
        ]));
        assert_eq!(id.first_name, RawField::Clear);
        assert_eq!(
            id.email,
            set(""),
            "admission reads a blank string as a clear"
        );
    }

    #[test]
    fn operations_apply_in_order() {
        let id = identity(json!([
            {"op": "replace", "path": "name.givenName", "value": "Jane"},
            {"op": "remove", "path": "name.givenName"},
            {"op": "remove", "path": "name.familyName"},
            {"op": "add", "path": "name.familyName", "value": "Doe"},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "a@example.com"},
            {"op": "replace", "path": "emails", "value": [{"value": "b@example.com", "type": "home"}]}
        ]));
        assert_eq!(id.first_name, RawField::Clear);
        assert_eq!(id.last_name, set("Doe"));
        assert_eq!(
            id.email,
            set("a@example.com"),
            "an array without a work email keeps what came before"
        );
        assert_eq!(id.secondary_email, set("b@example.com"));
    }

    #[test]
    fn attribute_names_in_paths_and_keys_compare_case_insensitively() {
        let id = identity(json!([
            {"OP": "Replace", "Path": "Name.GivenName", "Value": "Jane"},
            {"op": "Replace", "path": "EMAILS[TYPE EQ \"WORK\"].VALUE", "value": "jane@example.com"},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:phonenumbers[type eq \"Mobile\"].value",
             "value": "+1 206 555 0199"},
            {"op": "add", "value": {"NAME.FAMILYNAME": "Doe"}}
        ]));
        assert_eq!(
            id,
            RawIdentity {
                first_name: set("Jane"),
                last_name: set("Doe"),
                email: set("jane@example.com"),
                secondary_email: RawField::Keep,
                mobile: set("+1 206 555 0199"),
            }
        );
    }

    #[test]
    fn non_identity_attributes_and_extensions_are_ignored() {
        let id = identity(json!([
            {"op": "Replace", "path": "displayName", "value": "Jane Doe"},
            {"op": "Replace", "path": "title", "value": "Agent"},
            {"op": "Replace", "path": "userName", "value": "jane@example.com"},
            {"op": "Replace", "path": "name.formatted", "value": "Jane Doe"},
            {"op": "Add", "path": "addresses[type eq \"work\"].formatted", "value": "Columbus"},
            {"op": "Remove", "path": "members[value eq \"2819c223\" and display co \"x\"]"},
            {"op": "Add", "path": format!("{ENTERPRISE}:employeeNumber"), "value": "701984"},
            {"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": "26118915"},
            {"op": "Remove", "path": format!("{ENTERPRISE}:department")},
            {"op": "Add", "path": "externalId", "value": 5}
        ]));
        assert_eq!(id, RawIdentity::default());
    }

    #[test]
    fn the_user_and_metadata_are_read_beside_operations() {
        let carrier = Carrier {
            event_id: Some("carrier".into()),
            ..Carrier::default()
        };
        let v = json!({
            "schemas": [PATCH_SCHEMA], "Username": "jdoe",
            "InstanceId": "11111111-2222-3333-4444-555555555555",
            "EventId": "scim-1", "OccurredAt": "2026-11-29T10:00:00+01:00",
            "Operations": []
        });
        let doc = crate::inbound::read_document(&v, carrier.clone()).unwrap();
        assert_eq!(doc.user, RawUser::Username("jdoe".into()));
        assert_eq!(
            doc.instance.as_deref(),
            Some("11111111-2222-3333-4444-555555555555")
        );
        assert_eq!(doc.event_id.as_deref(), Some("scim-1"));
        assert_eq!(
            doc.occurred_at.unwrap().to_rfc3339(),
            "2026-11-29T09:00:00+00:00"
        );
        let doc = crate::inbound::read_document(&patch(json!([])), carrier).unwrap();
        assert_eq!(doc.user, RawUser::UserId("u-1".into()));
        assert_eq!(doc.event_id.as_deref(), Some("carrier"));
        assert_malformed(
            &json!({"schemas": [PATCH_SCHEMA], "Operations": []}),
            "UserId",
        );
        assert_malformed(
            &json!({"schemas": [PATCH_SCHEMA], "UserId": "u-1", "OccurredAt": "soon",
                    "Operations": []}),
            "OccurredAt",
        );
    }

    #[test]
    fn a_message_without_an_operations_array_is_malformed() {
        assert_malformed(
            &json!({"schemas": [PATCH_SCHEMA], "UserId": "u-1"}),
            "Operations",
        );
        assert_malformed(&patch(json!({"op": "add"})), "Operations");
        assert_malformed(&patch(json!(null)), "Operations");
    }

    #[test]
    fn operations_that_cannot_be_read_are_malformed_and_named_by_index() {
        for (operations, names) in [
            (json!(["add"]), "Operations[0]"),
            (
                json!([{"path": "name.givenName", "value": "Jane"}]),
                "Operations[0].op",
            ),
            (
                json!([{}, {"op": "delete", "path": "name"}]),
                "Operations[0].op",
            ),
            (json!([{"op": "copy", "path": "name"}]), "Operations[0].op"),
            (
                json!([{"op": "add", "path": 5, "value": "Jane"}]),
                "Operations[0].path",
            ),
            (json!([{"op": "remove"}]), "remove without a path"),
            (json!([{"op": "add"}]), "has no value"),
            (
                json!([{"op": "add", "path": "name.givenName"}]),
                "name.givenName",
            ),
        ] {
            assert_malformed(&patch(operations), names);
        }
    }

    #[test]
    fn identity_paths_in_a_form_not_read_are_malformed_and_named_without_their_value() {
        for path in [
            "emails[value eq \"jane@example.com\"].value",
            "emails[type ne \"work\"].value",
            "emails[type eq \"work\" and primary eq true].value",
            "emails[primary eq false].value",
            "emails[primary eq \"False\"].value",
            "emails[primary eq \"yes\"].value",
            "emails[type eq true].value",
            "emails[type eq \"work\"].primary",
            "emails[type eq \"work\"",
            "emails.value",
            "name[givenName eq \"Jane\"]",
            "phoneNumbers[primary eq true].value",
            "phoneNumbers[type eq mobile].value",
        ] {
            assert_malformed(
                &patch(json!([{"op": "replace", "path": path, "value": "jane@example.com"}])),
                "Operations[0] path",
            );
        }
        assert_malformed(
            &patch(json!([{"op": "replace", "path": "emails[type eq \"work\"]",
                           "value": {"value": "jane@example.com"}}])),
            "emails[type eq …]",
        );
        assert_malformed(
            &patch(json!([{"op": "add", "value": {"emails[value eq \"jane\"].value": "x"}}])),
            "Operations[0] value key emails[value eq …].value",
        );
        assert_malformed(
            &patch(json!([{"op": "add", "path": "", "value": "x"}])),
            "path",
        );
        assert_malformed(
            &patch(json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:core:2.0:User"}])),
            "whole resource",
        );
    }

    #[test]
    fn names_the_document_made_up_are_not_repeated() {
        // SPEC §3.1: a filter's attribute, a sub-attribute or a key is the document's
        // text, and may be an address.
        for (operation, names) in [
            (
                json!({"op": "replace", "path": "emails[wilhelmina eq \"work\"].value", "value": "x"}),
                "emails[(another attribute) eq …].value",
            ),
            (
                json!({"op": "replace", "path": "emails[type eq \"work\"].quackenbush", "value": "x"}),
                "emails[type eq …].(another sub-attribute)",
            ),
            (
                json!({"op": "replace", "path": "phoneNumbers[wilhelmina-quackenbush eq true].value", "value": "x"}),
                "phoneNumbers[(another attribute) eq …].value",
            ),
            (
                json!({"op": "add", "value": {"emails[quackenbush eq \"x\"].value": "x"}}),
                "value key emails[(another attribute) eq …].value",
            ),
            (
                json!({"op": "add", "path": "emails[wilhelmina.quackenbush@example.com", "value": "x"}),
                "Operations[0] path emails…",
            ),
        ] {
            let err = read_json(&patch(json!([operation]))).unwrap_err();
            assert_eq!(err.class, ErrorClass::MalformedEvent);
            assert!(
                err.message.contains(names),
                "{:?} does not name {names}",
                err.message
            );
            for echoed in ["wilhelmina", "quackenbush", "example"] {
                assert!(
                    !err.message.to_lowercase().contains(echoed),
                    "{:?}",
                    err.message
                );
            }
        }
    }

    #[test]
    fn values_of_the_wrong_type_are_malformed_and_name_the_path() {
        for (operation, names) in [
            (
                json!({"op": "add", "path": "name.givenName", "value": 5}),
                "name.givenName",
            ),
            (
                json!({"op": "add", "path": "name", "value": "Jane Doe"}),
                "name",
            ),
            (
                json!({"op": "add", "path": "name", "value": {"familyName": ["Doe"]}}),
                "familyName",
            ),
            (
                json!({"op": "add", "path": "emails", "value": {"value": "jane@example.com"}}),
                "emails",
            ),
            (
                json!({"op": "add", "path": "emails", "value": [{"value": 555}]}),
                "emails[0].value",
            ),
            (
                json!({"op": "add", "path": "emails[type eq \"work\"].value", "value": ["jane@example.com"]}),
                "emails[type eq …].value",
            ),
            (
                json!({"op": "add", "path": "phoneNumbers", "value": "+1 206 555 0199"}),
                "phoneNumbers",
            ),
            (json!({"op": "add", "value": "Jane"}), "not an object"),
            (
                json!({"op": "add", "path": "urn:ietf:params:scim:schemas:core:2.0:User", "value": null}),
                "not an object",
            ),
            (
                json!({"op": "add", "value": {"name": {"givenName": true}}}),
                "givenName",
            ),
        ] {
            assert_malformed(&patch(json!([operation])), names);
        }
    }

    #[test]
    fn a_path_naming_the_core_schema_takes_an_object_of_attributes() {
        let id = identity(json!([{"op": "replace",
            "path": "urn:ietf:params:scim:schemas:core:2.0:User",
            "value": {"name": {"familyName": "Doe"}, "active": false}}]));
        assert_eq!(
            id,
            RawIdentity {
                last_name: set("Doe"),
                ..RawIdentity::default()
            }
        );
    }

    #[test]
    fn a_patch_op_is_told_apart_by_its_schema_in_any_case() {
        let v = json!({"schemas": ["URN:IETF:PARAMS:SCIM:API:MESSAGES:2.0:PATCHOP"],
                       "UserId": "u-1",
                       "Operations": [{"op": "add", "path": "name.givenName", "value": "Jane"}]});
        assert_eq!(read_json(&v).unwrap().identity.first_name, set("Jane"));
    }
}
