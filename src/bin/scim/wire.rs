//! SCIM 2.0 on the wire (RFC 7643, RFC 7644): a Connect user as a User resource, list
//! responses, errors, and the discovery documents. Written with `serde_json` over the
//! few shapes the endpoint answers with; what it reads is read by the library's own
//! SCIM readers (`inbound::scim`), which the queue's documents go through too.

use connect_identity_sync::domain::change::IdentityInfo;
use serde_json::{Value, json};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// The most resources one list response holds.
pub const MAX_RESULTS: usize = 100;

/// A Connect user as a SCIM User (SPEC §8): absent fields are absent.
pub fn user(base: &str, id: &str, username: Option<&str>, info: &IdentityInfo) -> Value {
    let mut resource = json!({
        "schemas": [USER_SCHEMA],
        "id": id,
        "active": true,
        "meta": {"resourceType": "User", "location": format!("{base}/Users/{id}")},
    });
    if let Some(name) = username {
        resource["userName"] = json!(name);
    }
    let mut name = serde_json::Map::new();
    if let Some(v) = &info.first_name {
        name.insert("givenName".into(), json!(v));
    }
    if let Some(v) = &info.last_name {
        name.insert("familyName".into(), json!(v));
    }
    if !name.is_empty() {
        resource["name"] = Value::Object(name);
    }
    let mut emails = Vec::new();
    if let Some(v) = &info.email {
        emails.push(json!({"value": v, "type": "work", "primary": true}));
    }
    if let Some(v) = &info.secondary_email {
        emails.push(json!({"value": v, "type": "other"}));
    }
    if !emails.is_empty() {
        resource["emails"] = Value::Array(emails);
    }
    if let Some(v) = &info.mobile {
        resource["phoneNumbers"] = json!([{"value": v, "type": "mobile"}]);
    }
    resource
}

pub fn list(total: usize, start_index: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// The SCIM error body: `status` as a string, `scimType` where RFC 7644 defines one.
pub fn error(status: u16, scim_type: Option<&str>, detail: &str) -> Value {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.to_string(),
        "detail": detail,
    });
    if let Some(t) = scim_type {
        body["scimType"] = json!(t);
    }
    body
}

pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "documentationUri": "https://github.com/connect-identity-sync/connect-identity-sync#scim-endpoint",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A bearer token from the stack's token secret, in the Authorization header",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig",
                 "location": format!("{base}/ServiceProviderConfig")},
    })
}

pub fn user_resource_type(base: &str) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "An Amazon Connect agent's identity",
        "schema": USER_SCHEMA,
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
    })
}

fn attribute(name: &str, mutability: &str, sub: Option<Value>, multi: bool) -> Value {
    let mut a = json!({
        "name": name,
        "type": if sub.is_some() { "complex" } else { "string" },
        "multiValued": multi,
        "required": name == "userName",
        "caseExact": false,
        "mutability": mutability,
        "returned": "default",
        "uniqueness": if name == "userName" { "server" } else { "none" },
    });
    if let Some(sub) = sub {
        a["subAttributes"] = sub;
    }
    a
}

fn multi_sub() -> Value {
    json!([
        {"name": "value", "type": "string", "multiValued": false, "required": false,
         "caseExact": false, "mutability": "readWrite", "returned": "default", "uniqueness": "none"},
        {"name": "type", "type": "string", "multiValued": false, "required": false,
         "caseExact": false, "mutability": "readWrite", "returned": "default", "uniqueness": "none"},
        {"name": "primary", "type": "boolean", "multiValued": false, "required": false,
         "mutability": "readWrite", "returned": "default"}
    ])
}

pub fn user_schema(base: &str) -> Value {
    let name_sub = json!([
        {"name": "givenName", "type": "string", "multiValued": false, "required": false,
         "caseExact": false, "mutability": "readWrite", "returned": "default", "uniqueness": "none"},
        {"name": "familyName", "type": "string", "multiValued": false, "required": false,
         "caseExact": false, "mutability": "readWrite", "returned": "default", "uniqueness": "none"}
    ]);
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "An Amazon Connect agent: Username and the five identity fields",
        "attributes": [
            attribute("userName", "immutable", None, false),
            attribute("name", "readWrite", Some(name_sub), false),
            attribute("emails", "readWrite", Some(multi_sub()), true),
            attribute("phoneNumbers", "readWrite", Some(multi_sub()), true),
            {"name": "active", "type": "boolean", "multiValued": false, "required": false,
             "mutability": "readOnly", "returned": "default"},
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{USER_SCHEMA}")},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_shows_the_fields_it_has_and_leaves_the_others_out() {
        let info = IdentityInfo {
            first_name: Some("Ana".into()),
            email: Some("ana@example.com".into()),
            mobile: Some("+14155550100".into()),
            ..IdentityInfo::default()
        };
        let u = user("https://h/scim/v2", "u-1", Some("ana"), &info);
        assert_eq!(u["name"], json!({"givenName": "Ana"}));
        assert_eq!(
            u["emails"],
            json!([{"value": "ana@example.com", "type": "work", "primary": true}])
        );
        assert_eq!(u["phoneNumbers"][0]["type"], "mobile");
        assert_eq!(u["meta"]["location"], "https://h/scim/v2/Users/u-1");
        let bare = user("b", "u-2", None, &IdentityInfo::default());
        for absent in ["userName", "name", "emails", "phoneNumbers"] {
            assert!(bare.get(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn an_error_has_its_status_as_a_string() {
        let e = error(400, Some("invalidFilter"), "d");
        assert_eq!(e["status"], "400");
        assert_eq!(e["scimType"], "invalidFilter");
        assert!(error(404, None, "d").get("scimType").is_none());
    }
}
