//! An in-process AWS Lambda Runtime API: the function process polls it for
//! invocations and posts replies, init errors and invocation errors to it, the way
//! it does to the Lambda service.
//!
//! Endpoints (all under `/2018-06-01/runtime`): `GET invocation/next`,
//! `POST invocation/{id}/response`, `POST invocation/{id}/error`, `POST init/error`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

use crate::HarnessError;

const PREFIX: &str = "/2018-06-01/runtime";

/// The function's reply to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// `POST …/invocation/{id}/response`; a body that is not JSON is kept as a JSON string.
    Response(Value),
    /// `POST …/invocation/{id}/error`.
    Error {
        /// `errorType` of the error document.
        error_type: String,
        /// `errorMessage` of the error document.
        error_message: String,
        /// The `Lambda-Runtime-Function-Error-Type` header, when sent.
        header_error_type: Option<String>,
    },
}

impl Invocation {
    /// The response document, if the invocation succeeded.
    #[must_use]
    pub fn response(&self) -> Option<&Value> {
        match self {
            Self::Response(v) => Some(v),
            Self::Error { .. } => None,
        }
    }

    /// The `errorType`, if the invocation failed.
    #[must_use]
    pub fn error_type(&self) -> Option<&str> {
        match self {
            Self::Response(_) => None,
            Self::Error { error_type, .. } => Some(error_type),
        }
    }
}

/// An init error the function reported through `POST /runtime/init/error`.
#[derive(Debug, Clone, PartialEq)]
pub struct InitError {
    /// `errorType` of the error document.
    pub error_type: String,
    /// `errorMessage` of the error document.
    pub error_message: String,
    /// The `Lambda-Runtime-Function-Error-Type` header, when sent.
    pub header_error_type: Option<String>,
}

/// One invocation to hand out.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// The event, as the bytes Lambda would send.
    pub payload: Vec<u8>,
    /// The invocation's deadline (`Lambda-Runtime-Deadline-Ms`), counted from when
    /// the function picks the invocation up, as Lambda does.
    pub timeout: Duration,
    /// How long to wait for the reply after the deadline before giving up
    /// (Lambda would have stopped the function by then).
    pub grace: Duration,
}

impl InvokeRequest {
    /// An invocation of `payload` with the given function timeout and a 5 s grace.
    pub fn new(payload: impl Into<Vec<u8>>, timeout: Duration) -> Self {
        Self {
            payload: payload.into(),
            timeout,
            grace: Duration::from_secs(5),
        }
    }
}

struct Pending {
    request_id: String,
    payload: Bytes,
    timeout: Duration,
    picked: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    waiting: HashMap<String, oneshot::Sender<Invocation>>,
    init_errors: Vec<InitError>,
    handed_out: u64,
}

struct Shared {
    state: Mutex<State>,
    queued: Notify,
    init_error: Notify,
    exited: watch::Sender<Option<String>>,
    counter: AtomicU64,
    function_arn: String,
}

/// A Lambda Runtime API on a loopback port. Cheap to clone; the server stops when
/// the last clone is dropped.
#[derive(Clone)]
pub struct RuntimeApi {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _server: Arc<ServerTask>,
}

struct ServerTask(JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RuntimeApi {
    /// Starts the API on a free loopback port.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start() -> Result<Self, HarnessError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (exited, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            queued: Notify::new(),
            init_error: Notify::new(),
            exited,
            counter: AtomicU64::new(0),
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:connect-identity-sync"
                .to_owned(),
        });
        let server_shared = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = Arc::clone(&server_shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, std::convert::Infallible>(route(&shared, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            shared,
            addr,
            _server: Arc::new(ServerTask(task)),
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API` (`host:port`, no scheme, as Lambda sets it).
    #[must_use]
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Invokes the function with `payload` and a deadline `timeout` after it picks
    /// the invocation up; waits for its reply.
    ///
    /// # Errors
    /// [`HarnessError::ProcessExited`] when the function process ends before replying,
    /// [`HarnessError::Timeout`] when no reply comes within the deadline plus 5 s.
    pub async fn invoke(
        &self,
        payload: impl Into<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Invocation, HarnessError> {
        self.invoke_with(InvokeRequest::new(payload, timeout)).await
    }

    /// Invokes the function with a JSON event.
    ///
    /// # Errors
    /// As [`RuntimeApi::invoke`].
    pub async fn invoke_json(
        &self,
        event: &Value,
        timeout: Duration,
    ) -> Result<Invocation, HarnessError> {
        self.invoke(serde_json::to_vec(event)?, timeout).await
    }

    /// Invokes the function as [`InvokeRequest`] says.
    ///
    /// # Errors
    /// As [`RuntimeApi::invoke`].
    pub async fn invoke_with(&self, request: InvokeRequest) -> Result<Invocation, HarnessError> {
        let n = self.shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let request_id = format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), n);
        let (reply_tx, reply_rx) = oneshot::channel();
        let (picked_tx, picked_rx) = oneshot::channel();
        {
            let mut state = self.shared.state.lock().expect("runtime api state");
            state.waiting.insert(request_id.clone(), reply_tx);
            state.queue.push_back(Pending {
                request_id: request_id.clone(),
                payload: Bytes::from(request.payload),
                timeout: request.timeout,
                picked: Some(picked_tx),
            });
        }
        self.shared.queued.notify_one();
        let mut exited = self.shared.exited.subscribe();
        let cleanup = |shared: &Shared| {
            let mut state = shared.state.lock().expect("runtime api state");
            state.waiting.remove(&request_id);
            state.queue.retain(|p| p.request_id != request_id);
        };
        // Wait until the function picks the invocation up (a cold start may take a
        // while), then until its deadline plus the grace.
        let pick_limit = Duration::from_secs(60);
        tokio::select! {
            picked = tokio::time::timeout(pick_limit, picked_rx) => {
                if picked.is_err() {
                    cleanup(&self.shared);
                    return Err(HarnessError::Timeout(format!(
                        "the function did not poll for invocation {request_id} within {pick_limit:?}"
                    )));
                }
            }
            status = wait_exit(&mut exited) => {
                cleanup(&self.shared);
                return Err(HarnessError::ProcessExited(status));
            }
        }
        let limit = request.timeout + request.grace;
        tokio::select! {
            reply = tokio::time::timeout(limit, reply_rx) => match reply {
                Ok(Ok(invocation)) => Ok(invocation),
                Ok(Err(_)) => Err(HarnessError::Timeout(format!("invocation {request_id} abandoned"))),
                Err(_) => {
                    cleanup(&self.shared);
                    Err(HarnessError::Timeout(format!(
                        "no reply to invocation {request_id} within {limit:?}"
                    )))
                }
            },
            status = wait_exit(&mut exited) => {
                cleanup(&self.shared);
                Err(HarnessError::ProcessExited(status))
            }
        }
    }

    /// Init errors reported so far.
    #[must_use]
    pub fn init_errors(&self) -> Vec<InitError> {
        self.shared
            .state
            .lock()
            .expect("runtime api state")
            .init_errors
            .clone()
    }

    /// Waits up to `limit` for an init error.
    pub async fn wait_init_error(&self, limit: Duration) -> Option<InitError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.init_error.notified();
            if let Some(e) = self.init_errors().first() {
                return Some(e.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.init_errors().first().cloned();
            }
        }
    }

    /// How many invocations the function has picked up.
    #[must_use]
    pub fn invocations_handed_out(&self) -> u64 {
        self.shared
            .state
            .lock()
            .expect("runtime api state")
            .handed_out
    }

    /// Records that the function process ended (called by [`crate::Function`]);
    /// pending and later invocations fail with [`HarnessError::ProcessExited`].
    pub fn mark_exited(&self, status: String) {
        self.shared.exited.send_replace(Some(status));
    }

    /// Clears an exit mark, for a function process started anew on this API.
    pub fn clear_exited(&self) {
        self.shared.exited.send_replace(None);
    }

    /// Whether the function process was seen to end, with its status.
    #[must_use]
    pub fn exited(&self) -> Option<String> {
        self.shared.exited.borrow().clone()
    }
}

async fn wait_exit(rx: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(status) = rx.borrow_and_update().clone() {
            return status;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response")
}

fn parse_error_document(body: &[u8]) -> (String, String) {
    match serde_json::from_slice::<Value>(body) {
        Ok(doc) => (
            doc.get("errorType")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            doc.get("errorMessage")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
        Err(_) => (String::new(), String::from_utf8_lossy(body).into_owned()),
    }
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let header_error_type = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return reply(StatusCode::NOT_FOUND, json!({"errorType": "NotFound"}));
    };
    if method == Method::GET && rest == "/invocation/next" {
        return next_invocation(shared).await;
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, json!({"errorType": "BadBody"})),
    };
    if method == Method::POST && rest == "/init/error" {
        let (error_type, error_message) = parse_error_document(&body);
        shared
            .state
            .lock()
            .expect("runtime api state")
            .init_errors
            .push(InitError {
                error_type,
                error_message,
                header_error_type,
            });
        shared.init_error.notify_waiters();
        return reply(StatusCode::ACCEPTED, json!({"status": "OK"}));
    }
    let Some(id_and_kind) = rest.strip_prefix("/invocation/") else {
        return reply(StatusCode::NOT_FOUND, json!({"errorType": "NotFound"}));
    };
    let (request_id, invocation) = if let Some(id) = id_and_kind.strip_suffix("/response") {
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (id, Invocation::Response(value))
    } else if let Some(id) = id_and_kind.strip_suffix("/error") {
        let (error_type, error_message) = parse_error_document(&body);
        (
            id,
            Invocation::Error {
                error_type,
                error_message,
                header_error_type,
            },
        )
    } else {
        return reply(StatusCode::NOT_FOUND, json!({"errorType": "NotFound"}));
    };
    if method != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, json!({}));
    }
    let waiter = shared
        .state
        .lock()
        .expect("runtime api state")
        .waiting
        .remove(request_id);
    match waiter {
        Some(tx) => {
            let _ = tx.send(invocation);
            reply(StatusCode::ACCEPTED, json!({"status": "OK"}))
        }
        None => reply(
            StatusCode::BAD_REQUEST,
            json!({"errorType": "InvalidRequestID", "errorMessage": "unknown or already answered request id"}),
        ),
    }
}

async fn next_invocation(shared: &Shared) -> Response<Full<Bytes>> {
    let mut pending = loop {
        let notified = shared.queued.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(p) = shared
            .state
            .lock()
            .expect("runtime api state")
            .queue
            .pop_front()
        {
            break p;
        }
        notified.await;
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let deadline_ms = now_ms + pending.timeout.as_millis();
    shared.state.lock().expect("runtime api state").handed_out += 1;
    if let Some(picked) = pending.picked.take() {
        let _ = picked.send(());
    }
    let trace = format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
        now_ms / 1000,
        shared.counter.load(Ordering::Relaxed),
        now_ms
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &pending.request_id)
        .header("lambda-runtime-deadline-ms", deadline_ms.to_string())
        .header(
            "lambda-runtime-invoked-function-arn",
            shared.function_arn.as_str(),
        )
        .header("lambda-runtime-trace-id", trace)
        .body(Full::new(pending.payload))
        .expect("next invocation response")
}
