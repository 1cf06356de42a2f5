//! The routes of SPEC §8 under `/scim/v2`, after the bearer token:
//!
//! | route | answer |
//! |---|---|
//! | `GET /ServiceProviderConfig`, `/ResourceTypes[/User]`, `/Schemas[/{urn}]` | discovery |
//! | `GET /Users?filter=userName eq "…"` | a `ListResponse` of zero or one user |
//! | `GET /Users` | the instance's users, a page at a time |
//! | `GET /Users/{id}` | the user, or 404 |
//! | `PATCH /Users/{id}` (a PatchOp), `PUT /Users/{id}` (a whole User) | checked, queued; 204 / 200 |
//! | `POST /Users`, `DELETE /Users/{id}`, `/Bulk` | 501 |
//! | `/Groups`, anything else | 404 |
//!
//! A write is read by the library's SCIM readers, admitted by the function's admission
//! (SPEC §2.3 steps 1–3), and judged with the user's current identity by the function's
//! `judge` (protected profile, Email domains, identity-mode rules), in that order. The
//! refusal classes map to SCIM errors: `MalformedEvent` → 400 `invalidSyntax`,
//! `invalidPath` or `invalidValue` (by the kind of fault), `ValidationError` of a value →
//! 400 `invalidValue`, of an identity-mode rule → 400 `mutability`, `PolicyViolation` →
//! 403. Every `detail` is the refusal's own message: field names and rules, no values.

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use connect_identity_sync::domain::change::{ChangeRequest, IdentityInfo};
use connect_identity_sync::domain::document::{ChangeDocument, RawIdentity, RawUser};
use connect_identity_sync::domain::error::{ErrorClass, Failure};
use connect_identity_sync::domain::identity::UserId;
use connect_identity_sync::domain::ports::UserRecord;
use connect_identity_sync::inbound::scim::{self as readers, Fault, Literal};
use connect_identity_sync::outbound::connect::ConnectDirectory;
use connect_identity_sync::pipeline::judge;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::directory::{LIST_BUDGET, ReadError, Reads};
use crate::queue::{Change, SourceQueue};
use crate::settings::Settings;
use crate::tokens::Tokens;
use crate::{metrics, wire};

/// The base path every route is under.
pub const BASE_PATH: &str = "/scim/v2";
/// The largest body read (SPEC §8).
pub const MAX_BODY: usize = 64 * 1024;
/// `Retry-After` when the source queue did not take a change.
const QUEUE_RETRY_AFTER: u64 = 5;

pub struct Endpoint {
    settings: Settings,
    tokens: Tokens,
    reads: Reads,
    queue: SourceQueue,
}

/// An answer, before it is written.
struct Reply {
    status: u16,
    body: Option<Value>,
    retry_after: Option<u64>,
    /// The user the request was about, for the log line.
    user: Option<String>,
    /// Why a request was refused (no values), for the log line.
    refusal: Option<String>,
}

impl Reply {
    fn ok(status: u16, body: Value) -> Self {
        Reply {
            status,
            body: Some(body),
            retry_after: None,
            user: None,
            refusal: None,
        }
    }

    fn no_content() -> Self {
        Reply {
            status: 204,
            body: None,
            retry_after: None,
            user: None,
            refusal: None,
        }
    }

    fn error(status: u16, scim_type: Option<&str>, detail: &str) -> Self {
        Reply {
            status,
            body: Some(wire::error(status, scim_type, detail)),
            retry_after: None,
            user: None,
            refusal: Some(detail.to_owned()),
        }
    }

    fn retry(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    fn about(mut self, user: &UserId) -> Self {
        self.user = Some(user.as_str().to_owned());
        self
    }

    fn refused(failure: &Failure, fault: Option<Fault>, identity_rule: bool) -> Self {
        let (status, scim_type) = match failure.class {
            ErrorClass::PolicyViolation => (403, None),
            ErrorClass::ValidationError if identity_rule => (400, Some("mutability")),
            ErrorClass::ValidationError => (400, Some("invalidValue")),
            _ => (
                400,
                Some(match fault {
                    Some(Fault::Path) => "invalidPath",
                    Some(Fault::Value) => "invalidValue",
                    Some(Fault::Syntax) | None => "invalidSyntax",
                }),
            ),
        };
        Reply::error(status, scim_type, &failure.message)
    }

    fn of_read(error: ReadError) -> Self {
        match error {
            ReadError::Busy(seconds) => Reply::error(
                429,
                None,
                "the endpoint's share of Connect's read quota is in use; try again after Retry-After",
            )
            .retry(seconds),
            ReadError::NotFound => Reply::error(404, None, "no such user in this instance"),
            ReadError::Failed(failure)
                if failure.failure.class == ErrorClass::InvalidParameterException =>
            {
                Reply::error(404, None, "no such user in this instance")
            }
            ReadError::Failed(failure) => {
                Reply::error(503, None, &failure.failure.message).retry(1)
            }
        }
    }
}

/// The route a request takes, as its template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    ServiceProviderConfig,
    ResourceTypes,
    ResourceType(String),
    Schemas,
    Schema(String),
    Users,
    User(String),
    Groups,
    Bulk,
    Unknown,
}

impl Route {
    fn of(path: &str) -> Self {
        let rest = match path.find(BASE_PATH) {
            Some(i) => &path[i + BASE_PATH.len()..],
            None => return Route::Unknown,
        };
        let rest = rest.trim_end_matches('/');
        let segments: Vec<&str> = rest.split('/').skip(1).collect();
        if rest.is_empty() || !rest.starts_with('/') {
            return Route::Unknown;
        }
        match segments.as_slice() {
            ["ServiceProviderConfig"] => Route::ServiceProviderConfig,
            ["ResourceTypes"] => Route::ResourceTypes,
            ["ResourceTypes", id] => Route::ResourceType((*id).to_owned()),
            ["Schemas"] => Route::Schemas,
            ["Schemas", id] => Route::Schema((*id).to_owned()),
            ["Users"] => Route::Users,
            ["Users", id] if !id.is_empty() => Route::User((*id).to_owned()),
            ["Groups", ..] => Route::Groups,
            ["Bulk"] => Route::Bulk,
            _ => Route::Unknown,
        }
    }

    fn template(&self) -> &'static str {
        match self {
            Route::ServiceProviderConfig => "/ServiceProviderConfig",
            Route::ResourceTypes => "/ResourceTypes",
            Route::ResourceType(_) => "/ResourceTypes/{id}",
            Route::Schemas => "/Schemas",
            Route::Schema(_) => "/Schemas/{id}",
            Route::Users => "/Users",
            Route::User(_) => "/Users/{id}",
            Route::Groups => "/Groups",
            Route::Bulk => "/Bulk",
            Route::Unknown => "unknown",
        }
    }
}

/// What the request carries that the routes read.
struct Incoming<'a> {
    method: &'a str,
    route: Route,
    base: String,
    request_id: String,
    arrived: DateTime<Utc>,
    query: lambda_http::aws_lambda_events::query_map::QueryMap,
    body: &'a [u8],
}

impl Endpoint {
    pub fn new(shared: &SdkConfig, settings: Settings, tokens: Tokens) -> Self {
        let reads = Reads::new(
            ConnectDirectory::new(aws_sdk_connect::Client::new(shared)),
            settings.instance.clone(),
            settings.rps_describe,
            settings.rps_search,
            settings.rps_list,
        );
        let queue = SourceQueue::new(shared, settings.source_queue.clone());
        Endpoint {
            settings,
            tokens,
            reads,
            queue,
        }
    }

    pub async fn serve(&self, request: Request) -> Response<Body> {
        let started = Instant::now();
        let arrived = Utc::now();
        let context = request.request_context_ref();
        let (request_id, domain) = match context {
            Some(RequestContext::ApiGatewayV2(c)) => (c.request_id.clone(), c.domain_name.clone()),
            _ => (None, None),
        };
        let request_id = request_id
            .or_else(|| request.lambda_context_ref().map(|c| c.request_id.clone()))
            .unwrap_or_default();
        let host = request
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or(domain)
            .unwrap_or_else(|| "localhost".into());
        let route = Route::of(request.raw_http_path());
        let body: &[u8] = request.body().as_ref();
        let incoming = Incoming {
            method: request.method().as_str(),
            base: format!("https://{host}{BASE_PATH}"),
            request_id,
            arrived,
            query: request.query_string_parameters(),
            route,
            body,
        };
        let authorized = match bearer(&request) {
            Some(token) => self.tokens.accepts(token).await,
            None => false,
        };
        let reply = if authorized {
            self.route(&incoming).await
        } else {
            Reply::error(401, None, "a valid bearer token is required")
        };
        let template = incoming.route.template();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            method = incoming.method,
            route = template,
            status = reply.status,
            latency_ms = format!("{latency_ms:.1}"),
            request_id = incoming.request_id.as_str(),
            user_id = reply.user.as_deref(),
            refusal = reply.refusal.as_deref(),
            "SCIM request answered"
        );
        metrics::write(
            &self.settings.operations.metrics_namespace,
            incoming.method,
            template,
            reply.status,
            !authorized,
        );
        respond(reply, !authorized)
    }

    async fn route(&self, incoming: &Incoming<'_>) -> Reply {
        let base = incoming.base.as_str();
        let get = incoming.method == "GET";
        match (&incoming.route, incoming.method) {
            (Route::ServiceProviderConfig, "GET") => {
                Reply::ok(200, wire::service_provider_config(base))
            }
            (Route::ResourceTypes, "GET") => {
                Reply::ok(200, wire::list(1, 1, vec![wire::user_resource_type(base)]))
            }
            (Route::ResourceType(id), "GET") if id == "User" => {
                Reply::ok(200, wire::user_resource_type(base))
            }
            (Route::Schemas, "GET") => {
                Reply::ok(200, wire::list(1, 1, vec![wire::user_schema(base)]))
            }
            (Route::Schema(id), "GET") if id == wire::USER_SCHEMA => {
                Reply::ok(200, wire::user_schema(base))
            }
            (Route::ResourceType(_) | Route::Schema(_), "GET") => {
                Reply::error(404, None, "no such resource type or schema")
            }
            (Route::Users, "GET") => self.list_users(incoming).await,
            (Route::Users, "POST") => Reply::error(
                501,
                None,
                "agents are created in Amazon Connect, not through this endpoint: set the identity provider's provisioning to update users only",
            ),
            (Route::User(id), "GET") => self.get_user(id, base).await,
            (Route::User(id), "PATCH") => self.write(id, incoming, Write::Patch).await,
            (Route::User(id), "PUT") => self.write(id, incoming, Write::Put).await,
            (Route::User(_), "DELETE") => Reply::error(
                501,
                None,
                "agents are removed in Amazon Connect, not through this endpoint: set the identity provider's provisioning to update users only",
            ),
            (Route::Bulk, _) => Reply::error(501, None, "bulk operations are not supported"),
            (Route::Groups, _) => Reply::error(404, None, "groups are not served by this endpoint"),
            (Route::Unknown, _) => Reply::error(404, None, "no such route"),
            _ if get => Reply::error(404, None, "no such route"),
            _ => Reply::error(405, None, "this method is not served on this route"),
        }
    }

    async fn get_user(&self, id: &str, base: &str) -> Reply {
        let Ok(id) = UserId::parse(id) else {
            return Reply::error(404, None, "no such user in this instance");
        };
        match self.reads.user(&id).await {
            Ok(record) => Reply::ok(200, resource(base, &id, &record, &record.info)),
            Err(e) => Reply::of_read(e),
        }
        .about(&id)
    }

    async fn list_users(&self, incoming: &Incoming<'_>) -> Reply {
        let number = |name: &str, default: usize| -> Result<usize, Box<Reply>> {
            match incoming.query.first(name) {
                None => Ok(default),
                Some(raw) => raw
                    .trim()
                    .parse::<i64>()
                    .map(|n| usize::try_from(n.max(0)).unwrap_or(0))
                    .map_err(|_| {
                        Box::new(Reply::error(
                            400,
                            Some("invalidValue"),
                            &format!("{name} is not an integer"),
                        ))
                    }),
            }
        };
        let start = match number("startIndex", 1) {
            Ok(n) => n.max(1),
            Err(reply) => return *reply,
        };
        let count = match number("count", wire::MAX_RESULTS) {
            Ok(n) => n.min(wire::MAX_RESULTS),
            Err(reply) => return *reply,
        };
        let base = incoming.base.as_str();
        if let Some(text) = incoming.query.first("filter") {
            return self.find(text, start, count, base).await;
        }
        let listing = match self.reads.listing_by(Instant::now() + LIST_BUDGET).await {
            Ok(listing) => listing,
            Err(e) => return Reply::of_read(e),
        };
        let page: Vec<(String, String)> = listing
            .iter()
            .skip(start - 1)
            .take(count)
            .cloned()
            .collect();
        if page.is_empty() {
            return Reply::ok(200, wire::list(listing.len(), start, Vec::new()));
        }
        // As many users as the share lets be described in time: RFC 7644 §3.4.2.4
        // lets a page hold fewer than `count`, and the client pages on.
        match self
            .reads
            .users_by(&page, Instant::now() + LIST_BUDGET)
            .await
        {
            Ok(users) => {
                let resources = users
                    .iter()
                    .map(|(id, record)| resource(base, id, record, &record.info))
                    .collect();
                Reply::ok(200, wire::list(listing.len(), start, resources))
            }
            Err(e) => Reply::of_read(e),
        }
    }

    async fn find(&self, text: &str, start: usize, count: usize, base: &str) -> Reply {
        let filter = match readers::parse_filter(text) {
            Ok(filter) => filter,
            Err(reason) => {
                return Reply::error(
                    400,
                    Some("invalidFilter"),
                    &format!("the filter {reason}; only userName eq \"…\" is supported"),
                );
            }
        };
        let username = match (filter.attr.as_str(), filter.op.as_str(), &filter.value) {
            ("username", "eq", Literal::Str(name)) => name,
            _ => {
                return Reply::error(
                    400,
                    Some("invalidFilter"),
                    "only userName eq \"…\" is supported",
                );
            }
        };
        match self.reads.find(username).await {
            Ok(found) => {
                let total = usize::from(found.is_some());
                let resources = found.filter(|_| start == 1 && count > 0).map(|f| {
                    let id = f.id.clone();
                    (resource(base, &id, &f.record, &f.record.info), id)
                });
                let user = resources.as_ref().map(|(_, id)| id.clone());
                let reply = Reply::ok(
                    200,
                    wire::list(
                        total,
                        start,
                        resources.into_iter().map(|(r, _)| r).collect(),
                    ),
                );
                match user {
                    Some(id) => reply.about(&id),
                    None => reply,
                }
            }
            Err(e) => Reply::of_read(e),
        }
    }

    async fn write(&self, raw_id: &str, incoming: &Incoming<'_>, kind: Write) -> Reply {
        let Ok(id) = UserId::parse(raw_id) else {
            return Reply::error(404, None, "no such user in this instance");
        };
        self.write_user(&id, incoming, kind).await.about(&id)
    }

    async fn write_user(&self, id: &UserId, incoming: &Incoming<'_>, kind: Write) -> Reply {
        let map = match read_body(incoming.body) {
            Ok(map) => map,
            Err(reply) => return *reply,
        };
        let (identity, user_name) = match read_change(&map, kind) {
            Ok(read) => read,
            Err(reply) => return *reply,
        };
        let admission = &self.settings.admission;
        let event_id = format!("scim-{}", incoming.request_id);
        let document = ChangeDocument {
            instance: None,
            user: RawUser::UserId(id.as_str().to_owned()),
            identity,
            event_id: Some(event_id.clone()),
            occurred_at: Some(incoming.arrived),
            source: None,
        };
        let request: ChangeRequest = match admission.admit_at(document, incoming.arrived) {
            Ok(request) => request,
            Err(failure) => return Reply::refused(&failure, None, false),
        };
        let management = match self.reads.management().await {
            Ok(m) => m,
            Err(e) => return Reply::of_read(e),
        };
        let current = match self.reads.user(id).await {
            Ok(record) => record,
            Err(e) => return Reply::of_read(e),
        };
        if let Some(name) = user_name
            && current.username.as_deref() != Some(name.as_str())
        {
            return Reply::error(
                400,
                Some("mutability"),
                "userName is the Connect Username, which this endpoint does not change",
            );
        }
        let judgement = judge(&current, &management, &admission.policy, [&request]);
        if let Some(Err(failure)) = judgement.judged.first().map(|j| &j.verdict) {
            return Reply::refused(failure, None, true);
        }
        let after = match &judgement.update {
            Some(plan) => {
                let change = Change {
                    instance: &self.settings.instance,
                    user: id,
                    info: &plan.info,
                    changed: &judgement.changed,
                    occurred_at: incoming.arrived,
                    event_id: &event_id,
                };
                if let Err(reason) = self.queue.send(&change).await {
                    tracing::warn!(user_id = id.as_str(), "the change was not queued: {reason}");
                    return Reply::error(
                        503,
                        None,
                        "the change could not be queued and was not accepted; try again after Retry-After",
                    )
                    .retry(QUEUE_RETRY_AFTER);
                }
                plan.info.clone()
            }
            None => current.info.clone(),
        };
        match kind {
            Write::Patch => Reply::no_content(),
            Write::Put => Reply::ok(200, resource(&incoming.base, id, &current, &after)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Patch,
    Put,
}

fn read_body(body: &[u8]) -> Result<Map<String, Value>, Box<Reply>> {
    if body.len() > MAX_BODY {
        return Err(Box::new(Reply::error(
            400,
            Some("invalidSyntax"),
            "the body is larger than 64 KiB",
        )));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Box::new(Reply::error(
            400,
            Some("invalidSyntax"),
            "the body is not a JSON object",
        ))),
        Err(_) => Err(Box::new(Reply::error(
            400,
            Some("invalidSyntax"),
            "the body is not JSON",
        ))),
    }
}

/// The identity fields a write sets, with the library's readers, and a PUT's `userName`.
fn read_change(
    map: &Map<String, Value>,
    kind: Write,
) -> Result<(RawIdentity, Option<String>), Box<Reply>> {
    match kind {
        Write::Patch => {
            if !readers::is_patch_message(map) {
                return Err(Box::new(Reply::error(
                    400,
                    Some("invalidSyntax"),
                    "the body's schemas do not name the PatchOp message",
                )));
            }
            readers::read_patch_operations(map)
                .map(|identity| (identity, None))
                .map_err(|r| Box::new(Reply::refused(&r.failure, Some(r.fault), false)))
        }
        Write::Put => {
            if !readers::is_user_resource(map) {
                return Err(Box::new(Reply::error(
                    400,
                    Some("invalidSyntax"),
                    "the body's schemas do not name the core User schema",
                )));
            }
            let user_name = match map
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("userName"))
                .map(|(_, v)| v)
            {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    return Err(Box::new(Reply::error(
                        400,
                        Some("invalidValue"),
                        "userName is not a string",
                    )));
                }
            };
            readers::read_resource_identity(map)
                .map(|identity| (identity, user_name))
                .map_err(|f| Box::new(Reply::refused(&f, Some(Fault::Value), false)))
        }
    }
}

fn resource(base: &str, id: &UserId, record: &UserRecord, info: &IdentityInfo) -> Value {
    wire::user(base, id.as_str(), record.username.as_deref(), info)
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(request: &Request) -> Option<&[u8]> {
    let value = request.headers().get("authorization")?.as_bytes();
    let (scheme, token) = value.split_at(value.iter().position(|b| *b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| token.trim_ascii())
        .filter(|t| !t.is_empty())
}

fn respond(reply: Reply, challenge: bool) -> Response<Body> {
    let mut builder = Response::builder().status(reply.status);
    if let Some(seconds) = reply.retry_after {
        builder = builder.header("Retry-After", seconds.to_string());
    }
    if challenge {
        builder = builder.header("WWW-Authenticate", "Bearer realm=\"scim\"");
    }
    let body = match reply.body {
        Some(body) => {
            builder = builder.header("Content-Type", "application/scim+json");
            Body::Text(body.to_string())
        }
        None => Body::Empty,
    };
    builder.body(body).unwrap_or_else(|_| {
        let mut fallback = Response::new(Body::Empty);
        *fallback.status_mut() = lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_read_under_the_base_path_whatever_the_stage() {
        assert_eq!(Route::of("/scim/v2/Users"), Route::Users);
        assert_eq!(
            Route::of("/prod/scim/v2/Users/u-1"),
            Route::User("u-1".into())
        );
        assert_eq!(Route::of("/scim/v2/Users/"), Route::Users);
        assert_eq!(Route::of("/scim/v2/Groups/g-1"), Route::Groups);
        assert_eq!(Route::of("/scim/v2/Bulk"), Route::Bulk);
        assert_eq!(Route::of("/scim/v2"), Route::Unknown);
        assert_eq!(Route::of("/scim/v2/Users/u-1/x"), Route::Unknown);
        assert_eq!(Route::of("/other/Users"), Route::Unknown);
    }
}
