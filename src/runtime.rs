//! The Lambda Runtime API glue: building the function from its configuration, logs,
//! init errors, and keeping a non-JSON payload from bypassing the handler.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{LambdaEvent, LambdaInvocation};
use serde_json::Value;

use crate::config::{Config, ConfigError};
use crate::handler::{deadline_from_epoch_ms, handle};
use crate::outbound::connect::{AttemptCounter, ConnectDirectory};
use crate::outbound::dead_letter::SqsDeadLetters;
use crate::pipeline::{Pipeline, RateLimits};

pub type App = Pipeline<ConnectDirectory, SqsDeadLetters>;

/// Builds the function: SDK clients from the standard AWS configuration
/// (`AWS_ENDPOINT_URL_*`, `AWS_REGION`, credentials), rate limits and caches.
pub async fn build(config: Config) -> App {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;

    // Connect: one attempt per SDK call. The pipeline makes the retries itself, so
    // that every attempt takes its operation's limiter token and starts only while it
    // can finish before the deadline; the SDK's retry loop can do neither.
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(1))
                .operation_attempt_timeout(config.attempt_timeout)
                .build(),
        )
        .load()
        .await;
    let connect_config = aws_sdk_connect::config::Builder::from(&shared)
        .interceptor(AttemptCounter)
        .build();
    let connect = aws_sdk_connect::Client::from_conf(connect_config);
    // Dead letters: the SDK's standard retries, the whole send (retries included)
    // bounded to half the deadline margin, so that a send started before the
    // deadline less the margin ends before the reply is due.
    let send_budget = config.settings.deadline_margin / 2;
    let sqs_config = aws_sdk_sqs::config::Builder::from(&shared)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(std::time::Duration::from_millis(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(send_budget)
                .operation_timeout(send_budget)
                .build(),
        )
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(sqs_config);
    Pipeline::new(
        ConnectDirectory::new(connect),
        SqsDeadLetters::new(sqs, config.dead_letter_queues),
        config.admission,
        config.settings,
        RateLimits::new(config.rps_update, config.rps_describe, config.rps_search)
            .with_list(config.rps_list),
    )
}

/// Serves invocations until the Runtime API goes away.
///
/// # Errors
/// When the Runtime API cannot be reached.
pub async fn serve(app: App) -> Result<(), lambda_runtime::Error> {
    let app = Arc::new(app);
    let handler = lambda_runtime::service_fn(move |event: LambdaEvent<Value>| {
        let app = Arc::clone(&app);
        async move {
            let deadline = deadline_from_epoch_ms(event.context.deadline);
            handle(&app, &event.payload, deadline).await
        }
    });
    lambda_runtime::Runtime::new(handler)
        .layer(NonJsonAsNull)
        .layer(lambda_runtime::layers::TracingLayer::new())
        .run()
        .await
}

/// Reports an invalid configuration to the Runtime API's `/init/error`, so Lambda
/// shows why the function did not start.
pub async fn report_init_error(error: &ConfigError) {
    use lambda_runtime_api_client::{PooledClient, body::Body, build_request};
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return;
    }
    let body = serde_json::json!({
        "errorType": "InvalidConfiguration",
        "errorMessage": error.to_string(),
    })
    .to_string();
    let request = build_request()
        .method("POST")
        .uri("/2018-06-01/runtime/init/error")
        .header("Lambda-Runtime-Function-Error-Type", "InvalidConfiguration")
        .header("Content-Type", "application/json")
        .body(Body::from(body));
    if let Ok(request) = request
        && let Err(e) = PooledClient::builder().build().call(request).await
    {
        eprintln!("could not report the init error to the Runtime API: {e}");
    }
}

/// Logs as `lambda_runtime` does (`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`,
/// `RUST_LOG`), except that the runtime's own trace of raw payloads, which carry
/// personal data, is never written.
pub fn init_logging() {
    use lambda_runtime::tracing::subscriber::{EnvFilter, fmt};
    let mut directives = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "INFO".into());
    if directives.to_ascii_lowercase().contains("trace") {
        // At TRACE these write raw payloads and request bodies.
        for target in PAYLOAD_TRACERS {
            directives.push_str(&format!(",{target}=debug"));
        }
    }
    let filter = EnvFilter::builder().parse_lossy(directives);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("JSON"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time();
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

const PAYLOAD_TRACERS: [&str; 8] = [
    "lambda_runtime",
    "lambda_runtime_api_client",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_sigv4",
    "hyper",
    "hyper_util",
    "h2",
];

/// A payload that is not JSON would be refused by the runtime before the handler
/// sees it, with an error type of the runtime's; read as `null` it reaches the handler
/// and gets the `MalformedEvent` reply like any other unknown payload.
#[derive(Clone, Copy)]
struct NonJsonAsNull;

impl<S> Layer<S> for NonJsonAsNull {
    type Service = NonJsonAsNullService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        NonJsonAsNullService(inner)
    }
}

#[derive(Clone)]
pub struct NonJsonAsNullService<S>(S);

impl<S> Service<LambdaInvocation> for NonJsonAsNullService<S>
where
    S: Service<LambdaInvocation>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> Self::Future {
        if serde_json::from_slice::<serde::de::IgnoredAny>(&invocation.body).is_err() {
            invocation.body = bytes::Bytes::from_static(b"null");
        }
        Box::pin(self.0.call(invocation))
    }
}
