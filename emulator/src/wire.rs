//! Connect's REST-JSON wire protocol: routes each request to its operation the way the SDK's
//! request serialisers build it (method + URI template, labels percent-encoded), applies the
//! scripted behaviour (auth, latency, faults, quotas), and answers in the shapes the SDK's
//! response and error parsers read.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::control;
use crate::error::ApiError;
use crate::model::{IdentityInfo, JournalEntry, Operation};
use crate::store::{Store, instance_id_of, now_ms};

/// A complete HTTP reply.
pub type Reply = Response<Full<Bytes>>;

/// Returned to hyper to make it close the connection without replying (the `Disconnect`
/// fault).
#[derive(Debug)]
pub struct Disconnect;

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Disconnect {}

/// Options of the HTTP front end.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// Log one line per Connect call on stderr (ids and outcomes only, never identity data).
    pub log_requests: bool,
}

/// Answers one HTTP request: the control API under `/_emulator/`, Connect's API elsewhere.
pub async fn serve(
    store: Arc<Store>,
    options: ServeOptions,
    request: http::Request<Incoming>,
) -> Result<Reply, Disconnect> {
    let (parts, body) = request.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(Disconnect),
    };
    let segments = path_segments(parts.uri.path());
    if segments.first().map(String::as_str) == Some("_emulator") {
        return Ok(control::handle(
            &store,
            &parts.method,
            &segments[1..],
            &bytes,
        ));
    }
    connect_call(&store, options, &parts, &segments, &bytes).await
}

/// The operation a request names, with its path labels (instance, user).
#[derive(Clone)]
struct Route {
    operation: Option<Operation>,
    instance: Option<String>,
    user: Option<String>,
}

fn route(method: &Method, segments: &[String]) -> Route {
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (operation, instance, user) = match (method.as_str(), seg.as_slice()) {
        ("GET", ["instance", i]) => (Some(Operation::DescribeInstance), Some(*i), None),
        ("GET", ["users", i, u]) => (Some(Operation::DescribeUser), Some(*i), Some(*u)),
        ("POST", ["users", i, u, "identity-info"]) => {
            (Some(Operation::UpdateUserIdentityInfo), Some(*i), Some(*u))
        }
        ("POST", ["search-users"]) => (Some(Operation::SearchUsers), None, None),
        ("GET", ["users-summary", i]) => (Some(Operation::ListUsers), Some(*i), None),
        ("PUT", ["users", i]) => (Some(Operation::CreateUser), Some(*i), None),
        ("DELETE", ["users", i, u]) => (Some(Operation::DeleteUser), Some(*i), Some(*u)),
        _ => (None, None, None),
    };
    Route {
        operation,
        instance: instance.map(str::to_owned),
        user: user.map(str::to_owned),
    }
}

enum Outcome {
    Ok(Reply),
    Err(ApiError),
    Disconnect,
}

async fn connect_call(
    store: &Arc<Store>,
    options: ServeOptions,
    parts: &Parts,
    segments: &[String],
    bytes: &Bytes,
) -> Result<Reply, Disconnect> {
    let at = now_ms();
    let route = route(&parts.method, segments);
    let body = parse_body(bytes);
    let instance_ref = route.instance.clone().or_else(|| {
        body.as_ref()
            .ok()
            .and_then(|b| b.get("InstanceId"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let instance_id = instance_ref
        .as_deref()
        .map(|i| instance_id_of(i).to_owned());
    let operation_name = route
        .operation
        .map_or_else(|| "Unknown".to_owned(), |op| op.as_str().to_owned());
    let seq = store.record(JournalEntry {
        operation: operation_name.clone(),
        instance_id: instance_id.clone(),
        user_id: route.user.clone(),
        status: 0,
        error_type: None,
        request_body: match &body {
            Ok(v) => v.clone(),
            Err(raw) => Value::String(raw.clone()),
        },
        at,
        finished_at: None,
        seq: 0,
        caller: signing_key(parts),
    });

    let outcome = answer(store, parts, &route, instance_id.as_deref(), body).await;
    let (status, error_type) = match &outcome {
        Outcome::Ok(reply) => (reply.status().as_u16(), None),
        Outcome::Err(e) => (e.status, Some(e.error_type.clone())),
        Outcome::Disconnect => (0, Some("Disconnect".to_owned())),
    };
    store.finish(seq, status, error_type.clone());
    if options.log_requests {
        eprintln!(
            "{operation_name} instance={} user={} -> {status}{}",
            instance_id.as_deref().unwrap_or("-"),
            route.user.as_deref().unwrap_or("-"),
            error_type.map(|e| format!(" {e}")).unwrap_or_default()
        );
    }
    let request_id = store.new_id();
    let mut reply = match outcome {
        Outcome::Ok(reply) => reply,
        Outcome::Err(e) => error_reply(&e),
        Outcome::Disconnect => return Err(Disconnect),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        reply.headers_mut().insert("x-amzn-RequestId", value);
    }
    Ok(reply)
}

async fn answer(
    store: &Arc<Store>,
    parts: &Parts,
    route: &Route,
    instance_id: Option<&str>,
    body: Result<Value, String>,
) -> Outcome {
    let Some(operation) = route.operation else {
        return Outcome::Err(ApiError::named(
            "UnknownOperationException",
            format!("No operation matches {} {}", parts.method, parts.uri.path()),
        ));
    };
    if let Err(e) = check_auth(parts) {
        return Outcome::Err(e);
    }
    if let Some(delay) = store.latency(operation) {
        tokio::time::sleep(delay).await;
    }
    if let Some(fault) = store.take_fault(operation, instance_id, route.user.as_deref()) {
        match fault.error_type.as_str() {
            "Timeout" | "Hang" => {
                let delay = fault.delay_ms.unwrap_or(600_000);
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            "Disconnect" | "ConnectionReset" => return Outcome::Disconnect,
            "Late" => {
                // Carried out after the delay whether or not the caller still waits: a
                // request that lands after its caller gave up on it.
                let delay = std::time::Duration::from_millis(fault.delay_ms.unwrap_or(600_000));
                let (done, landed) = tokio::sync::oneshot::channel();
                let (store, uri, route) = (Arc::clone(store), parts.uri.clone(), route.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = done.send(perform(&store, &uri, &route, operation, body));
                });
                return landed.await.unwrap_or(Outcome::Disconnect);
            }
            name => {
                let mut error = ApiError::named(
                    name,
                    fault
                        .message
                        .clone()
                        .unwrap_or_else(|| format!("Injected {name}")),
                );
                if let Some(status) = fault.status {
                    error.status = status;
                }
                return Outcome::Err(error);
            }
        }
    }
    perform(store, &parts.uri, route, operation, body)
}

/// The quota, then the operation itself.
fn perform(
    store: &Store,
    uri: &http::Uri,
    route: &Route,
    operation: Operation,
    body: Result<Value, String>,
) -> Outcome {
    if !store.take_token(operation) {
        return Outcome::Err(ApiError::throttled());
    }
    let body = match body {
        Ok(body) => body,
        Err(_) => {
            return Outcome::Err(ApiError::invalid_request(
                "The request body is not valid JSON",
            ));
        }
    };
    match execute(store, uri, route, operation, &body) {
        Ok(reply) => Outcome::Ok(reply),
        Err(e) => Outcome::Err(e),
    }
}

fn execute(
    store: &Store,
    uri: &http::Uri,
    route: &Route,
    operation: Operation,
    body: &Value,
) -> Result<Reply, ApiError> {
    let instance = route.instance.as_deref().unwrap_or("");
    let user = route.user.as_deref().unwrap_or("");
    match operation {
        Operation::DescribeInstance => {
            let instance = store.describe_instance(instance)?;
            Ok(json_reply(StatusCode::OK, &json!({ "Instance": instance })))
        }
        Operation::DescribeUser => {
            let user = store.describe_user(instance, user)?;
            Ok(json_reply(StatusCode::OK, &json!({ "User": user })))
        }
        Operation::UpdateUserIdentityInfo => {
            let info = match body.get("IdentityInfo") {
                Some(v @ Value::Object(_)) => serde_json::from_value::<IdentityInfo>(v.clone())
                    .map_err(|e| {
                        ApiError::invalid_parameter(format!("IdentityInfo is malformed: {e}"))
                    })?,
                _ => return Err(ApiError::invalid_parameter("IdentityInfo is required")),
            };
            store.update_identity_info(instance, user, &info)?;
            Ok(empty_reply())
        }
        Operation::SearchUsers => Ok(json_reply(StatusCode::OK, &store.search_users(body)?)),
        Operation::ListUsers => {
            let query = query_pairs(uri.query().unwrap_or(""));
            let get = |key: &str| {
                query
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            };
            let reply = store.list_users(instance, get("nextToken"), get("maxResults"))?;
            Ok(json_reply(StatusCode::OK, &reply))
        }
        Operation::DeleteUser => {
            store.delete_user(instance, user)?;
            Ok(empty_reply())
        }
        Operation::CreateUser => {
            let (id, arn) = store.create_user(instance, body)?;
            Ok(json_reply(
                StatusCode::OK,
                &json!({ "UserId": id, "UserArn": arn }),
            ))
        }
    }
}

/// Requests must carry a SigV4 `Authorization` header; the signature itself is not checked.
fn check_auth(parts: &Parts) -> Result<(), ApiError> {
    let Some(header) = parts.headers.get(http::header::AUTHORIZATION) else {
        return Err(ApiError::named(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let header = header.to_str().unwrap_or("");
    if header.starts_with("AWS4-HMAC-SHA256 ") && header.contains("Credential=") {
        Ok(())
    } else {
        Err(ApiError::named(
            "IncompleteSignatureException",
            "Authorization header is not a valid AWS Signature Version 4 header",
        ))
    }
}

/// The access key id of a SigV4 `Authorization` header (`Credential=AKID/date/…`).
fn signing_key(parts: &Parts) -> Option<String> {
    let header = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let credential = header.split("Credential=").nth(1)?;
    credential
        .split('/')
        .next()
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

/// `Ok(Null)` for an empty body, `Ok(json)` for JSON, `Err(raw text)` otherwise.
fn parse_body(bytes: &Bytes) -> Result<Value, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|_| String::from_utf8_lossy(bytes).into_owned())
}

/// A JSON reply with `status`.
pub fn json_reply(status: StatusCode, value: &Value) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(value.to_string())));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    reply
}

fn empty_reply() -> Reply {
    let mut reply = Response::new(Full::new(Bytes::new()));
    reply.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    reply
}

/// An error reply the way Connect sends it: status, `x-amzn-ErrorType`, `{"Message": …}`.
pub fn error_reply(error: &ApiError) -> Reply {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut reply = json_reply(status, &json!({ "Message": error.message }));
    if let Ok(value) = HeaderValue::from_str(&error.error_type) {
        reply.headers_mut().insert("x-amzn-ErrorType", value);
    }
    reply
}

/// The path's segments, each percent-decoded (labels such as ARNs arrive encoded).
pub fn path_segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes; malformed escapes are kept as they are.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_percent_decoded() {
        let segments = path_segments(
            "/users/arn%3Aaws%3Aconnect%3Aus-east-1%3A123456789012%3Ainstance%2Fabc/u-1/identity-info",
        );
        assert_eq!(
            segments,
            [
                "users",
                "arn:aws:connect:us-east-1:123456789012:instance/abc",
                "u-1",
                "identity-info"
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn routes_follow_connect_uri_templates() {
        let r = |m: Method, p: &str| route(&m, &path_segments(p)).operation;
        assert_eq!(
            r(Method::GET, "/instance/i"),
            Some(Operation::DescribeInstance)
        );
        assert_eq!(r(Method::GET, "/users/i/u"), Some(Operation::DescribeUser));
        assert_eq!(
            r(Method::POST, "/users/i/u/identity-info"),
            Some(Operation::UpdateUserIdentityInfo)
        );
        assert_eq!(
            r(Method::POST, "/search-users"),
            Some(Operation::SearchUsers)
        );
        assert_eq!(
            r(Method::GET, "/users-summary/i"),
            Some(Operation::ListUsers)
        );
        assert_eq!(r(Method::PUT, "/users/i"), Some(Operation::CreateUser));
        assert_eq!(r(Method::DELETE, "/users/i/u"), Some(Operation::DeleteUser));
        assert_eq!(r(Method::DELETE, "/users/i"), None);
    }
}
