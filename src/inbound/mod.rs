//! What arrives: the invocation envelope (SQS or EventBridge), each record read on its
//! own, and the change documents inside (canonical, SCIM User, SCIM PatchOp), turned
//! into domain types. Nothing here calls an outside system.
//!
//! May touch: `domain` and serde. Never the SDKs, `pipeline` or `outbound`.

mod canonical;
mod envelope;
pub mod scim;

pub use envelope::{Invocation, read_invocation};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::document::ChangeDocument;
use crate::domain::error::Failure;

/// Defaults a document takes from what carried it (SPEC §2.1).
#[derive(Debug, Clone, Default)]
pub struct Carrier {
    pub event_id: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub source: Option<String>,
}

/// Reads a change document of any kind: a SCIM PatchOp (told apart first, as it names
/// its user as a canonical document does), a SCIM User, a canonical document.
///
/// # Errors
/// `MalformedEvent` when `value` is none of them, or one of them with a key missing or
/// of the wrong type.
pub fn read_document(value: &Value, carrier: Carrier) -> Result<ChangeDocument, Failure> {
    let Value::Object(map) = value else {
        return Err(Failure::malformed(
            "the change document is not a JSON object",
        ));
    };
    if scim::is_patch_op(map) {
        scim::read_patch(map, carrier)
    } else if scim::is_scim_user(map) {
        scim::read_resource(map, carrier)
    } else if canonical::is_canonical(map) {
        canonical::read(map, carrier)
    } else {
        Err(Failure::malformed(
            "not a recognised change document (canonical, SCIM User or SCIM PatchOp)",
        ))
    }
}

/// Reads an RFC 3339 time such as `OccurredAt` or an EventBridge `time`.
pub(crate) fn read_time(field: &str, raw: &str) -> Result<DateTime<Utc>, Failure> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| Failure::malformed(format!("{field} is not an RFC 3339 time")))
}
