//! The Lambda Runtime API glue: building the function from its configuration, logs,
//! init errors, and keeping a non-JSON payload from bypassing the handler.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{LambdaEvent, LambdaInvocation};
use serde_json::value::RawValue;

use crate::config::{Config, ConfigError, Operations};
use crate::handler::{deadline_from_epoch_ms, invoke};
use crate::outbound::connect::ConnectDirectory;
use crate::outbound::dead_letter::SqsDeadLetters;
use crate::outbound::dry_run::DryRunnable;
use crate::outbound::https;
use crate::outbound::schedules::DynamoSchedules;
use crate::outbound::watermarks::DynamoWatermarks;
use crate::pipeline::{Pipeline, RateLimits};

pub type App =
    Pipeline<DryRunnable<ConnectDirectory>, SqsDeadLetters, DryRunnable<DynamoWatermarks>>;

/// The function: its pipeline, and how it reports (metrics) and whether it writes.
pub struct Function {
    pub app: App,
    pub operations: Operations,
}

/// Builds the function: SDK clients from the standard AWS configuration
/// (`AWS_ENDPOINT_URL_*`, `AWS_REGION`, credentials), rate limits and caches.
pub async fn build(config: Config) -> Function {
    use aws_config::retry::RetryConfig;
    use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
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
        // The attempt timeout bounds a response that stalls; the stall monitor would
        // add a throughput check (a timer and its polls) to every response body.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    // Without SSL_CERT_FILE, Amazon Trust Services' roots, compiled in: no CA bundle to
    // read at start-up (`outbound::https`).
    let shared = if config.ca_bundle.is_none() {
        shared.http_client(https::amazon_roots_client())
    } else {
        shared
    }
    .load()
    .await;
    if config.watermarks.is_none() {
        tracing::warn!(
            "WATERMARK_TABLE is not set: no staleness guard, so a change redelivered after a newer change to the same field overwrites it"
        );
    }
    let connect = aws_sdk_connect::Client::new(&shared);
    // Dead letters: the SDK's standard retries, the whole send (retries included)
    // bounded by the pipeline's dead-letter budget, which it starts a send only
    // within, so that a send ends before the reply is due.
    let send_budget = config.settings.dead_letter_budget();
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
    // The watermark table: the SDK's standard retries absorb a brief throttle; the
    // pipeline bounds each request by the deadline.
    let dynamodb = config.watermarks.as_ref().map(|_| {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&shared)
                .retry_config(
                    RetryConfig::standard()
                        .with_max_attempts(3)
                        .with_initial_backoff(std::time::Duration::from_millis(20)),
                )
                .build(),
        )
    });
    let mut limits = RateLimits::new(config.rps_update, config.rps_describe, config.rps_search)
        .with_list(config.rps_list)
        .recovering_in(config.recovery);
    // A dry run sends no update, so it takes nothing from the fleet's shared rate.
    if let (Some(client), Some(w), Some(rps), false) = (
        &dynamodb,
        &config.watermarks,
        config.fleet_rps_update,
        config.operations.dry_run,
    ) {
        let store = DynamoSchedules::new(client.clone(), w.table.clone(), w.retention);
        limits = limits.with_fleet_update(Arc::new(store), rps);
    }
    let watermarks = config.watermarks.zip(dynamodb).map(|(w, client)| {
        DryRunnable::new(
            DynamoWatermarks::new(client, w.table, w.retention),
            config.operations.dry_run,
        )
    });
    if config.operations.dry_run {
        tracing::warn!(
            dry_run = true,
            "DRY_RUN is on: changes are read, checked and dead-lettered; no UpdateUserIdentityInfo is sent and no watermark moves"
        );
    }
    let app = Pipeline::new(
        DryRunnable::new(ConnectDirectory::new(connect), config.operations.dry_run),
        SqsDeadLetters::new(sqs, config.dead_letter_queues),
        config.admission,
        config.settings,
        limits,
    )
    .with_watermarks(watermarks)
    .requeue_deferrals(true);
    Function {
        app,
        operations: config.operations,
    }
}

/// Serves invocations until the Runtime API goes away; writes each invocation's
/// metrics before its reply.
///
/// # Errors
/// When the Runtime API cannot be reached.
pub async fn serve(function: Function) -> Result<(), lambda_runtime::Error> {
    let function = Arc::new(function);
    let handler = lambda_runtime::service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let function = Arc::clone(&function);
        async move {
            let deadline = deadline_from_epoch_ms(event.context.deadline, function.app.clock());
            let ops = &function.operations;
            let handled = invoke(&function.app, &event.payload, deadline, ops.dry_run).await;
            handled.summary.write(&ops.metrics_namespace);
            handled.reply
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

/// Logs as `lambda_runtime` does (`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`, else
/// `RUST_LOG`, else `INFO`), under a second filter that no directive can open: the
/// libraries that write payloads, request and response bodies or service error
/// messages (which echo request values) at their lower levels are capped above those
/// levels, whatever the level or per-target directive asks.
pub fn init_logging() {
    use lambda_runtime::tracing::subscriber::filter::{EnvFilter, LevelFilter};
    use lambda_runtime::tracing::subscriber::layer::SubscriberExt;
    use lambda_runtime::tracing::subscriber::util::SubscriberInitExt;
    use lambda_runtime::tracing::subscriber::{fmt, registry};

    let directives = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "INFO".into());
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(directives);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("JSON"));
    let layer = fmt::layer().with_target(false).without_time();
    let subscriber = registry().with(filter).with(payload_cap());
    if json {
        subscriber.with(layer.json()).init();
    } else {
        subscriber.with(layer).init();
    }
}

/// The most each library that can log personal data may write. A global filter: an
/// event passes only if both this and the directives of `init_logging` let it.
pub fn payload_cap() -> lambda_runtime::tracing::subscriber::filter::Targets {
    use lambda_runtime::tracing::subscriber::filter::{LevelFilter, Targets};
    PAYLOAD_CAPS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, (target, level)| t.with_target(*target, *level),
    )
}

/// Targets and the level they are capped at, with what the level below would write.
const PAYLOAD_CAPS: [(&str, lambda_runtime::tracing::level_filters::LevelFilter); 19] = {
    use lambda_runtime::tracing::level_filters::LevelFilter;
    [
        // TRACE: every raw invocation payload ("raw JSON event received from Lambda").
        ("lambda_runtime", LevelFilter::DEBUG),
        ("lambda_runtime_api_client", LevelFilter::DEBUG),
        // The SCIM endpoint's HTTP adapter: requests, their headers (the bearer token)
        // and bodies below INFO.
        ("lambda_http", LevelFilter::INFO),
        // DEBUG: orchestrator errors, with the service's error message (Connect's echo
        // request values); TRACE: whole requests, responses and outputs.
        ("aws_smithy_runtime", LevelFilter::INFO),
        ("aws_smithy_runtime_api", LevelFilter::INFO),
        ("aws_smithy_http_client", LevelFilter::INFO),
        ("aws_smithy_http", LevelFilter::INFO),
        ("aws_smithy_types", LevelFilter::INFO),
        ("aws_smithy_json", LevelFilter::INFO),
        ("aws_sigv4", LevelFilter::INFO),
        ("aws_runtime", LevelFilter::INFO),
        ("aws_config", LevelFilter::INFO),
        ("aws_sdk_connect", LevelFilter::INFO),
        ("aws_sdk_sqs", LevelFilter::INFO),
        ("aws_sdk_secretsmanager", LevelFilter::INFO),
        // TRACE: frames, headers and buffers of the HTTP connections.
        ("hyper", LevelFilter::DEBUG),
        ("hyper_util", LevelFilter::DEBUG),
        ("h2", LevelFilter::DEBUG),
        ("rustls", LevelFilter::DEBUG),
    ]
};

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

#[cfg(test)]
mod tests {
    use lambda_runtime::tracing::Level;

    #[test]
    fn the_payload_cap_stops_library_traces_whatever_the_directives_say() {
        let cap = super::payload_cap();
        for target in [
            "lambda_runtime::layers::api_response",
            "lambda_runtime_api_client",
            "hyper::proto::h1::io",
        ] {
            assert!(!cap.would_enable(target, &Level::TRACE), "{target}");
            assert!(cap.would_enable(target, &Level::DEBUG), "{target}");
        }
        for target in [
            "aws_smithy_runtime::client::orchestrator",
            "aws_sdk_connect::operation",
            "aws_config::meta",
        ] {
            assert!(!cap.would_enable(target, &Level::DEBUG), "{target}");
            assert!(cap.would_enable(target, &Level::INFO), "{target}");
        }
        assert!(cap.would_enable("connect_identity_sync::pipeline", &Level::TRACE));
    }
}
