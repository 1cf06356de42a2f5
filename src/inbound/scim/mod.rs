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

pub(super) use patch::read as read_patch;
pub(super) use resource::read as read_resource;

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
