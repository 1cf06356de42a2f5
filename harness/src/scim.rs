//! The SCIM endpoint binary (`connect-identity-sync-scim`) beside a [`Stack`]: its own
//! Runtime API and process, its token secret in moto's Secrets Manager, and requests
//! fed to it as Amazon API Gateway HTTP API events (payload format 2.0), as API Gateway
//! would deliver them.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::function::{Function, FunctionConfig};
use crate::local_aws::sdk_config;
use crate::runtime_api::{Invocation, RuntimeApi};
use crate::stack::Stack;
use crate::{HarnessError, fixtures};

/// The token the identity provider is configured with.
pub const TOKEN: &str = "scim-current-7d0c4f2e9b1a4c55a1e3";
/// The token being rotated in (the secret holds both during a rotation).
pub const NEXT_TOKEN: &str = "scim-next-4b8e61d07f2c4e90b5aa";
/// The API's host, as API Gateway names it.
pub const HOST: &str = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com";

/// The policy and rate variables the endpoint reads as the function does.
const SHARED_VARIABLES: [&str; 10] = [
    "DEFAULT_INSTANCE_ID",
    "ALLOWED_INSTANCE_IDS",
    "EMAIL_DOMAIN_ALLOWLIST",
    "SECONDARY_EMAIL_DOMAIN_ALLOWLIST",
    "PROTECTED_SECURITY_PROFILE_IDS",
    "DEFAULT_PHONE_REGION",
    "CONNECT_RPS_DESCRIBE",
    "CONNECT_RPS_SEARCH",
    "CONNECT_RPS_LIST",
    "METRICS_NAMESPACE",
];

/// Creates the token secret in moto (`{"tokens": [...]}`) and returns its ARN.
///
/// # Errors
/// When Secrets Manager refuses it.
pub async fn create_token_secret(
    moto_endpoint: &str,
    name: &str,
    secret: &Value,
) -> Result<String, HarnessError> {
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config(moto_endpoint).await);
    let out = client
        .create_secret()
        .name(name)
        .secret_string(secret.to_string())
        .send()
        .await
        .map_err(|e| HarnessError::Start(format!("CreateSecret: {e:?}")))?;
    Ok(out.arn().unwrap_or(name).to_owned())
}

/// Replaces the token secret's value (a rotation).
///
/// # Errors
/// When Secrets Manager refuses it.
pub async fn put_token_secret(
    moto_endpoint: &str,
    arn: &str,
    secret: &Value,
) -> Result<(), HarnessError> {
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config(moto_endpoint).await);
    client
        .put_secret_value()
        .secret_id(arn)
        .secret_string(secret.to_string())
        .send()
        .await
        .map_err(|e| HarnessError::Start(format!("PutSecretValue: {e:?}")))?;
    Ok(())
}

/// The endpoint's configuration beside `stack`: the function's policy and rate
/// variables, the stack's standard source queue, moto's Secrets Manager and
/// `secret_arn`.
#[must_use]
pub fn config(binary: impl Into<PathBuf>, stack: &Stack, secret_arn: &str) -> FunctionConfig {
    let mut config = FunctionConfig::new(binary)
        .env("AWS_LAMBDA_FUNCTION_NAME", "connect-identity-sync-scim")
        .env("SOURCE_QUEUE_URL", &stack.source.url)
        .env("SCIM_TOKEN_SECRET_ARN", secret_arn)
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", stack.moto.endpoint());
    for name in SHARED_VARIABLES {
        if let Some(value) = stack.function_config.vars().get(name) {
            config = config.env(name, value);
        }
    }
    config
}

/// A running endpoint.
pub struct ScimEndpoint {
    pub runtime: RuntimeApi,
    pub function: Function,
    pub config: FunctionConfig,
}

impl ScimEndpoint {
    /// Starts the endpoint with `config`, against the stack's emulator and moto.
    ///
    /// # Errors
    /// When the Runtime API or the process cannot be started.
    pub async fn start(stack: &Stack, config: FunctionConfig) -> Result<Self, HarnessError> {
        let runtime = RuntimeApi::start().await?;
        let connect = stack.emulator.endpoint_url();
        let sqs = stack.moto.endpoint();
        let function = Function::start(&config, &runtime, Some(&connect), Some(&sqs))?;
        Ok(ScimEndpoint {
            runtime,
            function,
            config,
        })
    }

    /// Sends one request and reads the endpoint's answer.
    ///
    /// # Errors
    /// When the invocation fails or its reply is not an HTTP response.
    pub async fn send(&self, request: &Request) -> Result<Reply, HarnessError> {
        let event = request.event();
        match self
            .runtime
            .invoke_json(&event, Duration::from_secs(30))
            .await?
        {
            Invocation::Response(v) => Reply::read(&v),
            Invocation::Error {
                error_type,
                error_message,
                ..
            } => Err(HarnessError::Start(format!(
                "the endpoint failed the invocation: {error_type}: {error_message}"
            ))),
        }
    }
}

/// A request as an identity provider sends it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Under `/scim/v2`, e.g. `/Users`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub token: Option<String>,
    pub body: Option<Vec<u8>>,
    pub request_id: String,
    pub user_agent: String,
}

impl Request {
    /// `method` on `path` (under `/scim/v2`) with the current token.
    #[must_use]
    pub fn new(method: &str, path: &str) -> Self {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            query: Vec::new(),
            token: Some(TOKEN.to_owned()),
            body: None,
            request_id: next_request_id(),
            user_agent: "Microsoft.Identity.Provisioning".into(),
        }
    }

    #[must_use]
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// `GET /Users?filter=userName eq "name"`.
    #[must_use]
    pub fn lookup(username: &str) -> Self {
        Self::get("/Users").query("filter", &format!("userName eq \"{username}\""))
    }

    #[must_use]
    pub fn patch(user: &str, operations: &Value) -> Self {
        Self::new("PATCH", &format!("/Users/{user}")).json(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": operations,
        }))
    }

    #[must_use]
    pub fn put(user: &str, resource: &Value) -> Self {
        Self::new("PUT", &format!("/Users/{user}")).json(resource)
    }

    #[must_use]
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    #[must_use]
    pub fn token(mut self, token: Option<&str>) -> Self {
        self.token = token.map(str::to_owned);
        self
    }

    #[must_use]
    pub fn json(mut self, body: &Value) -> Self {
        self.body = Some(body.to_string().into_bytes());
        self
    }

    #[must_use]
    pub fn raw_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    #[must_use]
    pub fn request_id(mut self, id: &str) -> Self {
        self.request_id = id.to_owned();
        self
    }

    #[must_use]
    pub fn user_agent(mut self, agent: &str) -> Self {
        self.user_agent = agent.to_owned();
        self
    }

    /// The API Gateway HTTP API event (payload format 2.0) for this request.
    #[must_use]
    pub fn event(&self) -> Value {
        let raw_path = format!("/scim/v2{}", self.path);
        let raw_query = self
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers = Map::new();
        headers.insert("host".into(), json!(HOST));
        headers.insert("user-agent".into(), json!(self.user_agent));
        headers.insert("content-type".into(), json!("application/scim+json"));
        if let Some(token) = &self.token {
            headers.insert("authorization".into(), json!(format!("Bearer {token}")));
        }
        let mut event = json!({
            "version": "2.0",
            "routeKey": "ANY /scim/v2/{proxy+}",
            "rawPath": raw_path,
            "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": {
                "accountId": fixtures::ACCOUNT,
                "apiId": "a1b2c3d4e5",
                "domainName": HOST,
                "domainPrefix": "a1b2c3d4e5",
                "http": {"method": self.method, "path": raw_path, "protocol": "HTTP/1.1",
                         "sourceIp": "203.0.113.10", "userAgent": self.user_agent},
                "requestId": self.request_id,
                "routeKey": "ANY /scim/v2/{proxy+}",
                "stage": "$default",
                "time": "07/Dec/2026:00:00:00 +0000",
                "timeEpoch": 1_796_601_600_000_i64,
            },
            "isBase64Encoded": false,
        });
        if !self.query.is_empty() {
            let params: Map<String, Value> = self
                .query
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            event["queryStringParameters"] = Value::Object(params);
        }
        if let Some(body) = &self.body {
            match std::str::from_utf8(body) {
                Ok(text) => event["body"] = json!(text),
                Err(_) => {
                    use base64::Engine as _;
                    event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
                    event["isBase64Encoded"] = json!(true);
                }
            }
        }
        event
    }
}

/// A request id as API Gateway's are unique: `req-` and a counter of the process.
fn next_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("req-{:06}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Percent-encodes a query component.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The endpoint's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Map<String, Value>,
    /// The body as JSON (`Null` when empty).
    pub body: Value,
    pub text: String,
}

impl Reply {
    fn read(v: &Value) -> Result<Self, HarnessError> {
        let status = v
            .get("statusCode")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| HarnessError::Start(format!("not an HTTP response: {v}")))?;
        let headers: Map<String, Value> = v
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let text = v
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        Ok(Reply {
            status,
            headers,
            body,
            text,
        })
    }

    /// A header's value.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }
}

/// `make demo`'s last act: an Entra-style round trip through the SCIM endpoint beside
/// `stack` — a look-up of `username`, a PATCH of its mobile number, the queued change
/// applied by the function (the stack's event source mapping), and the new value read
/// back through the endpoint. Prints each step; `Err` says which step failed.
///
/// # Errors
/// When a step does not answer as it should.
pub async fn demo_round_trip(
    stack: &Stack,
    binary: &std::path::Path,
    username: &str,
) -> Result<(), String> {
    let err = |e: HarnessError| e.to_string();
    println!("\nSCIM: Microsoft Entra ID's update through connect-identity-sync-scim");
    let arn = create_token_secret(
        &stack.moto.endpoint(),
        "demo-scim-tokens",
        &json!({"tokens": [TOKEN]}),
    )
    .await
    .map_err(err)?;
    let endpoint = ScimEndpoint::start(stack, config(binary, stack, &arn))
        .await
        .map_err(err)?;
    let found = endpoint
        .send(&Request::lookup(username))
        .await
        .map_err(err)?;
    let id = found.body["Resources"][0]["id"]
        .as_str()
        .ok_or_else(|| {
            format!(
                "GET /Users?filter=userName eq … found no user: {}",
                found.text
            )
        })?
        .to_owned();
    println!(
        "  GET   /scim/v2/Users?filter=userName eq \"{username}\"   {}  id {id}",
        found.status
    );
    let mobile = "+1 206 555 0142";
    let patch = endpoint
        .send(&Request::patch(
            &id,
            &json!([
                {"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": mobile},
                {"op": "Replace", "path": "active", "value": "True"}
            ]),
        ))
        .await
        .map_err(err)?;
    println!(
        "  PATCH /scim/v2/Users/{id}   {}  (Replace phoneNumbers[type eq \"mobile\"].value, active \"True\")",
        patch.status
    );
    if patch.status != 204 {
        return Err(format!(
            "the PATCH was answered {}: {}",
            patch.status, patch.text
        ));
    }
    let report = stack
        .mapping()
        .run(Duration::from_secs(30))
        .await
        .map_err(err)?;
    println!(
        "  the function applied the queued change ({} invocation{})",
        report.invocations(),
        if report.invocations() == 1 { "" } else { "s" }
    );
    let read = endpoint
        .send(&Request::get(&format!("/Users/{id}")))
        .await
        .map_err(err)?;
    let now = read.body["phoneNumbers"][0]["value"].as_str().unwrap_or("");
    println!(
        "  GET   /scim/v2/Users/{id}   {}  mobile {now}",
        read.status
    );
    if now != "+12065550142" {
        return Err(format!(
            "the mobile read back is not the one sent: {}\n{}",
            read.text,
            stack.function.logs()
        ));
    }
    Ok(())
}
