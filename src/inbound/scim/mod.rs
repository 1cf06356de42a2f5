//! SCIM 2.0 change documents (SPEC §2.1): the whole User resource (RFC 7643,
//! [`resource`]) and the PatchOp message (RFC 7644 §3.5.2, [`patch`]) with its path
//! and filter grammar ([`path`]).
//!
//! | SCIM attribute | Connect field |
//! |---|---|
//! | `userName` (resource only) | Username, resolved with `SearchUsers` |
//! | `name.givenName` | FirstName |
//! | `name.familyName` | LastName |
//! | the `primary` email, else the first of `type` `work` | Email |
//! | the first other email | SecondaryEmail |
//! | the `primary` phone number of `type` `mobile`, else the first mobile one | Mobile |
//!
//! Attribute names compare case-insensitively (RFC 7643 §2.1), and so do the schema
//! URNs that tell the two documents apart.

mod patch;
mod path;
mod resource;

use serde_json::{Map, Value};

use crate::domain::document::RawIdentity;
use crate::domain::error::Failure;

pub(super) use patch::read as read_patch;
pub use path::{Filter, Literal};
pub(super) use resource::read as read_resource;

/// The kind of fault in a SCIM message that cannot be read, as RFC 7644 §3.12's
/// `scimType` tells them apart: the SCIM endpoint answers with it, the queue's reader
/// classes them all `MalformedEvent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Not the message's structure (`invalidSyntax`).
    Syntax,
    /// A path that is not one this function reads (`invalidPath`).
    Path,
    /// A value of the wrong type for its path (`invalidValue`).
    Value,
}

/// A message refused before any value is checked: its `MalformedEvent` failure and the
/// kind of fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub failure: Failure,
    pub fault: Fault,
}

impl Refusal {
    fn malformed(fault: Fault, message: impl Into<String>) -> Self {
        Refusal {
            failure: Failure::malformed(message),
            fault,
        }
    }
}

/// What a PatchOp message's `Operations` do to the identity fields, read as the queue's
/// reader reads them (SPEC §2.1): the SCIM endpoint's `PATCH /Users/{id}`.
///
/// # Errors
/// As the queue's reader refuses them, with the kind of fault.
pub fn read_patch_operations(map: &Map<String, Value>) -> Result<RawIdentity, Refusal> {
    patch::read_operations(map)
}

/// The identity fields a whole User resource sets, read as the queue's reader reads
/// them (SPEC §2.1; a resource never clears): the SCIM endpoint's `PUT /Users/{id}`.
///
/// # Errors
/// `MalformedEvent` for an attribute of the wrong type or several primary entries.
pub fn read_resource_identity(map: &Map<String, Value>) -> Result<RawIdentity, Failure> {
    resource::read_identity(map)
}

/// Parses a `filter` query parameter of one comparison (`userName eq "jdoe"`), with the
/// grammar of a PatchOp path's filter.
///
/// # Errors
/// Why it is not one comparison (a fixed phrase, never the text).
pub fn parse_filter(text: &str) -> Result<Filter, &'static str> {
    path::parse_comparison(text)
}

/// Whether a message carries the PatchOp schema URN.
pub fn is_patch_message(map: &Map<String, Value>) -> bool {
    is_patch_op(map)
}

/// Whether a resource carries the core User schema URN.
pub fn is_user_resource(map: &Map<String, Value>) -> bool {
    is_scim_user(map)
}

/// The schema URN that marks a SCIM core User resource.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// The schema URN that marks a SCIM PatchOp message.
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn has_schema(map: &Map<String, Value>, schema: &str) -> bool {
    get_ci(map, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .any(|v| v.trim().eq_ignore_ascii_case(schema))
        })
}

pub(super) fn is_scim_user(map: &Map<String, Value>) -> bool {
    has_schema(map, USER_SCHEMA)
}

pub(super) fn is_patch_op(map: &Map<String, Value>) -> bool {
    has_schema(map, PATCH_SCHEMA)
}

/// A member by its attribute name, compared case-insensitively; an exact match wins.
fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}
