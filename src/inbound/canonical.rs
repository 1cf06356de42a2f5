//! The canonical change document: the `UpdateUserIdentityInfo` request shape plus
//! `Username`, `EventId` and `OccurredAt`.

use serde_json::{Map, Value};

use super::{Carrier, read_time};
use crate::domain::document::{ChangeDocument, RawField, RawIdentity, RawUser};
use crate::domain::error::Failure;
use crate::domain::event_id;

const IDENTITY_FIELDS: [&str; 5] = ["FirstName", "LastName", "Email", "SecondaryEmail", "Mobile"];

pub(super) fn is_canonical(map: &Map<String, Value>) -> bool {
    ["IdentityInfo", "UserId", "Username"]
        .iter()
        .any(|k| map.contains_key(*k))
}

pub(super) fn read(map: &Map<String, Value>, carrier: Carrier) -> Result<ChangeDocument, Failure> {
    let user = read_user(map)?;
    let identity = match map.get("IdentityInfo") {
        Some(Value::Object(info)) => read_identity(info)?,
        Some(_) => return Err(Failure::malformed("IdentityInfo is not an object")),
        None => return Err(Failure::malformed("IdentityInfo is missing")),
    };
    with_metadata(map, user, identity, carrier)
}

/// `UserId`, else `Username`: the user a document names.
pub(super) fn read_user(map: &Map<String, Value>) -> Result<RawUser, Failure> {
    match (opt_str(map, "UserId")?, opt_str(map, "Username")?) {
        (Some(id), _) => Ok(RawUser::UserId(id.to_owned())),
        (None, Some(name)) => Ok(RawUser::Username(name.to_owned())),
        (None, None) => Err(Failure::malformed("neither UserId nor Username is given")),
    }
}

/// The document around `identity`: `InstanceId`, `EventId` and `OccurredAt` as the
/// canonical document has them, the carrier's defaults otherwise.
pub(super) fn with_metadata(
    map: &Map<String, Value>,
    user: RawUser,
    identity: RawIdentity,
    carrier: Carrier,
) -> Result<ChangeDocument, Failure> {
    let occurred_at = match opt_str(map, "OccurredAt")? {
        Some(raw) => Some(read_time("OccurredAt", raw)?),
        None => carrier.occurred_at,
    };
    Ok(ChangeDocument {
        instance: opt_str(map, "InstanceId")?.map(str::to_owned),
        user,
        identity,
        // An empty EventId names nothing: the carrier's id stands in for it.
        event_id: opt_str(map, "EventId")?
            .filter(|id| !id.is_empty())
            .map(event_id::plain)
            .or(carrier.event_id),
        occurred_at,
        source: carrier.source,
    })
}

fn read_identity(info: &Map<String, Value>) -> Result<RawIdentity, Failure> {
    // The key itself is not repeated: it is the document's text, and may be anything.
    if info.keys().any(|k| !IDENTITY_FIELDS.contains(&k.as_str())) {
        return Err(Failure::malformed(
            "IdentityInfo has a field other than FirstName, LastName, Email, SecondaryEmail and Mobile",
        ));
    }
    let field = |name: &str| -> Result<RawField, Failure> {
        match info.get(name) {
            None => Ok(RawField::Keep),
            Some(Value::Null) => Ok(RawField::Clear),
            Some(Value::String(s)) => Ok(RawField::Set(s.clone())),
            Some(_) => Err(Failure::malformed(format!(
                "IdentityInfo.{name} is not a string or null"
            ))),
        }
    };
    Ok(RawIdentity {
        first_name: field("FirstName")?,
        last_name: field("LastName")?,
        email: field("Email")?,
        secondary_email: field("SecondaryEmail")?,
        mobile: field("Mobile")?,
    })
}

/// An optional string member; `null` counts as absent.
fn opt_str<'a>(map: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Failure> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Failure::malformed(format!("{key} is not a string"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::ErrorClass;
    use serde_json::json;

    fn read_json(v: Value) -> Result<ChangeDocument, Failure> {
        crate::inbound::read_document(&v, Carrier::default())
    }

    #[test]
    fn a_string_sets_null_clears_and_absence_keeps() {
        let doc = read_json(json!({
            "UserId": "u-1",
            "IdentityInfo": {"FirstName": "Jane", "Mobile": null}
        }))
        .unwrap();
        assert_eq!(doc.identity.first_name, RawField::Set("Jane".into()));
        assert_eq!(doc.identity.mobile, RawField::Clear);
        assert_eq!(doc.identity.email, RawField::Keep);
    }

    #[test]
    fn a_username_is_an_alternative_to_a_user_id() {
        let doc = read_json(json!({"Username": "jdoe", "IdentityInfo": {}})).unwrap();
        assert_eq!(doc.user, RawUser::Username("jdoe".into()));
    }

    #[test]
    fn the_document_event_id_and_time_win_over_the_carriers() {
        let carrier = Carrier {
            event_id: Some("carrier".into()),
            occurred_at: Some(read_time("t", "2020-01-01T00:00:00Z").unwrap()),
            source: None,
        };
        let v = json!({"UserId": "u", "IdentityInfo": {}, "EventId": "e-1",
                       "OccurredAt": "2026-11-29T10:00:00+01:00"});
        let doc = crate::inbound::read_document(&v, carrier.clone()).unwrap();
        assert_eq!(doc.event_id.as_deref(), Some("e-1"));
        assert_eq!(
            doc.occurred_at.unwrap().to_rfc3339(),
            "2026-11-29T09:00:00+00:00"
        );
        let v = json!({"UserId": "u", "IdentityInfo": {}});
        let doc = crate::inbound::read_document(&v, carrier).unwrap();
        assert_eq!(doc.event_id.as_deref(), Some("carrier"));
        assert_eq!(
            doc.occurred_at.unwrap().to_rfc3339(),
            "2020-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn an_unknown_identity_field_is_refused_without_repeating_its_name() {
        let err = read_json(json!({"UserId": "u",
            "IdentityInfo": {"wilhelmina.quackenbush@example.com": "x"}}))
        .unwrap_err();
        assert_eq!(err.class, ErrorClass::MalformedEvent);
        assert!(err.message.contains("IdentityInfo"), "{}", err.message);
        let lower = err.message.to_lowercase();
        for echoed in ["wilhelmina", "quackenbush", "example"] {
            assert!(!lower.contains(echoed), "{}", err.message);
        }
    }

    #[test]
    fn an_event_id_that_is_not_a_plain_token_is_read_as_its_digest() {
        let doc = read_json(json!({"UserId": "u", "IdentityInfo": {},
            "EventId": "wilhelmina.quackenbush@example.com"}))
        .unwrap();
        let id = doc.event_id.unwrap();
        assert!(
            id.starts_with("sha256:") && !id.contains("wilhelmina"),
            "{id}"
        );
        let doc = read_json(json!({"UserId": "u", "IdentityInfo": {}, "EventId": "okta:e-1.2_3"}))
            .unwrap();
        assert_eq!(doc.event_id.as_deref(), Some("okta:e-1.2_3"));
        let carrier = Carrier {
            event_id: Some("m-1".into()),
            ..Carrier::default()
        };
        let v = json!({"UserId": "u", "IdentityInfo": {}, "EventId": ""});
        let doc = crate::inbound::read_document(&v, carrier).unwrap();
        assert_eq!(
            doc.event_id.as_deref(),
            Some("m-1"),
            "an empty EventId names nothing"
        );
    }

    #[test]
    fn a_document_missing_a_required_key_or_with_a_wrong_type_is_malformed() {
        for bad in [
            json!({"UserId": "u"}),
            json!({"IdentityInfo": {}}),
            json!({"UserId": 5, "IdentityInfo": {}}),
            json!({"UserId": "u", "IdentityInfo": []}),
            json!({"UserId": "u", "IdentityInfo": {"FirstName": 7}}),
            json!({"UserId": "u", "IdentityInfo": {"Phone": "+1"}}),
            json!({"UserId": "u", "IdentityInfo": {}, "OccurredAt": "yesterday"}),
            json!({"UserId": "u", "IdentityInfo": {}, "InstanceId": ["x"]}),
            json!({"something": "else"}),
            json!(["UserId"]),
            json!("text"),
        ] {
            let err = read_json(bad.clone()).unwrap_err();
            assert_eq!(err.class, ErrorClass::MalformedEvent, "{bad}");
        }
    }
}
