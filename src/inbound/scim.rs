//! SCIM 2.0 User resources (RFC 7643) as change documents (SPEC §2.1).

use serde_json::{Map, Value};

use super::Carrier;
use crate::domain::document::ChangeDocument;
use crate::domain::error::Failure;

/// The schema URN that marks a SCIM core User resource.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

pub(super) fn is_scim_user(map: &Map<String, Value>) -> bool {
    map.get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(USER_SCHEMA)))
}

pub(super) fn read(
    _map: &Map<String, Value>,
    _carrier: Carrier,
) -> Result<ChangeDocument, Failure> {
    Err(Failure::malformed("SCIM User resources are not read yet"))
}
