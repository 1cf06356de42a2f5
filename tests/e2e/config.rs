//! End to end over the built binary: configuration the function cannot run with
//! stops it at start-up, with a Runtime API init error naming the variable and a
//! non-zero exit; it never takes an invocation.

use std::time::Duration;

use harness::fixtures::{ALLOWED_DOMAIN, INSTANCE};
use harness::{ERROR_CLASSES, Function, FunctionConfig, RuntimeApi};

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");
const QUEUE: &str = "http://127.0.0.1:9/123456789012/dlq";

/// A configuration the function starts with.
fn valid() -> FunctionConfig {
    let mut config = FunctionConfig::new(BIN)
        .env("DEFAULT_INSTANCE_ID", INSTANCE)
        .env("EMAIL_DOMAIN_ALLOWLIST", ALLOWED_DOMAIN);
    for (_, var) in ERROR_CLASSES {
        config = config.env(var, QUEUE);
    }
    config
}

async fn refused(config: FunctionConfig, variable: &str) {
    refused_naming_any(config, &[variable]).await;
}

/// Refused with a message that names one of `variables`.
async fn refused_naming_any(config: FunctionConfig, variables: &[&str]) {
    let variable = variables.join(" or ");
    let variable = variable.as_str();
    let names = |text: &str| variables.iter().any(|v| text.contains(v));
    let runtime = RuntimeApi::start().await.unwrap();
    let function = Function::start(
        &config,
        &runtime,
        Some("http://127.0.0.1:9"),
        Some("http://127.0.0.1:9"),
    )
    .expect("the binary starts");
    let status = function
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("{variable}: the function kept running\n{}", function.logs()));
    assert!(!status.success(), "{variable}: exit status {status}");
    let init = runtime
        .wait_init_error(Duration::from_secs(1))
        .await
        .unwrap_or_else(|| panic!("{variable}: no init error reported\n{}", function.logs()));
    assert!(
        names(&init.error_message),
        "{variable}: the init error does not name it: {init:?}"
    );
    assert_eq!(runtime.invocations_handed_out(), 0);
    assert!(
        names(&function.logs()),
        "{variable}: the log does not name it:\n{}",
        function.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_configuration_starts_and_serves() {
    let runtime = RuntimeApi::start().await.unwrap();
    let function = Function::start(
        &valid(),
        &runtime,
        Some("http://127.0.0.1:9"),
        Some("http://127.0.0.1:9"),
    )
    .unwrap();
    let reply = runtime
        .invoke(b"not json".to_vec(), Duration::from_secs(10))
        .await
        .expect("a reply");
    assert_eq!(reply.error_type(), Some("MalformedEvent"));
    assert!(runtime.init_errors().is_empty());
    assert!(function.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_receive_count_that_is_not_a_number_stops_the_function() {
    refused(
        valid().env("MAX_RECEIVE_COUNT", "three"),
        "MAX_RECEIVE_COUNT",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_without_a_queue_stops_the_function() {
    refused(valid().without("DLQ_URL_THROTTLING"), "DLQ_URL_THROTTLING").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_dlq_url_covers_classes_without_their_own() {
    let mut config = FunctionConfig::new(BIN)
        .env("DEFAULT_INSTANCE_ID", INSTANCE)
        .env("DLQ_URL", QUEUE);
    config = config.env("DLQ_URL_THROTTLING", QUEUE);
    let runtime = RuntimeApi::start().await.unwrap();
    let function = Function::start(
        &config,
        &runtime,
        Some("http://127.0.0.1:9"),
        Some("http://127.0.0.1:9"),
    )
    .unwrap();
    let reply = runtime
        .invoke(b"[]".to_vec(), Duration::from_secs(10))
        .await
        .expect("a reply");
    assert_eq!(reply.error_type(), Some("MalformedEvent"));
    assert!(function.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_allowed_instance_stops_the_function() {
    refused_naming_any(
        valid()
            .without("DEFAULT_INSTANCE_ID")
            .without("ALLOWED_INSTANCE_IDS"),
        &["ALLOWED_INSTANCE_IDS", "DEFAULT_INSTANCE_ID"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_phone_region_stops_the_function() {
    refused(
        valid().env("DEFAULT_PHONE_REGION", "Narnia"),
        "DEFAULT_PHONE_REGION",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_letters_that_name_no_numbering_plan_stop_the_function() {
    refused(
        valid().env("DEFAULT_PHONE_REGION", "XX"),
        "DEFAULT_PHONE_REGION",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_bundle_that_is_not_a_file_stops_the_function() {
    refused(
        valid().env("SSL_CERT_FILE", "/nonexistent/ca-bundle.crt"),
        "SSL_CERT_FILE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_rate_stops_the_function() {
    refused(
        valid().env("CONNECT_RPS_UPDATE", "-1"),
        "CONNECT_RPS_UPDATE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_url_that_is_not_a_url_stops_the_function() {
    refused(
        valid().env("DLQ_URL_MALFORMED_EVENT", "my-queue"),
        "DLQ_URL_MALFORMED_EVENT",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_watermark_table_the_function_warns_at_start_up_and_serves() {
    let runtime = RuntimeApi::start().await.unwrap();
    let function = Function::start(
        &valid().without("WATERMARK_TABLE"),
        &runtime,
        Some("http://127.0.0.1:9"),
        Some("http://127.0.0.1:9"),
    )
    .unwrap();
    let reply = runtime
        .invoke(b"[]".to_vec(), Duration::from_secs(10))
        .await
        .expect("a reply");
    assert_eq!(reply.error_type(), Some("MalformedEvent"));
    let warning = function
        .log_lines()
        .into_iter()
        .find(|l| l.contains("WATERMARK_TABLE is not set"));
    let warning = warning.unwrap_or_else(|| panic!("no warning:\n{}", function.logs()));
    assert!(warning.contains("WARN"), "{warning}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watermark_retention_that_is_not_days_stops_the_function() {
    refused(
        valid()
            .env("WATERMARK_TABLE", "identity-watermarks")
            .env("WATERMARK_TTL_DAYS", "0"),
        "WATERMARK_TTL_DAYS",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_that_would_expire_before_a_dead_letter_can_be_replayed_stop_the_function() {
    // 14 days covers the source queue's retention, not a dead-letter queue's after it.
    refused(
        valid()
            .env("WATERMARK_TABLE", "identity-watermarks")
            .env("WATERMARK_TTL_DAYS", "14"),
        "WATERMARK_TTL_DAYS",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_skew_that_is_not_whole_seconds_from_1_to_86400_stops_the_function() {
    refused(
        valid().env("MAX_CLOCK_SKEW_SECONDS", "0"),
        "MAX_CLOCK_SKEW_SECONDS",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_too_high_for_the_limiter_stops_the_function_instead_of_panicking() {
    refused(
        valid().env("CONNECT_RPS_UPDATE", "1e10"),
        "CONNECT_RPS_UPDATE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_rate_stops_the_function() {
    refused(
        valid().env("CONNECT_RPS_DESCRIBE", "inf"),
        "CONNECT_RPS_DESCRIBE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_of_zero_or_minus_zero_stops_the_function() {
    refused(valid().env("CONNECT_RPS_SEARCH", "0"), "CONNECT_RPS_SEARCH").await;
    refused(
        valid().env("CONNECT_RPS_SEARCH", "-0"),
        "CONNECT_RPS_SEARCH",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_receive_count_of_zero_stops_the_function() {
    refused(valid().env("MAX_RECEIVE_COUNT", "0"), "MAX_RECEIVE_COUNT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_receive_count_sqs_redrive_cannot_stay_above_stops_the_function() {
    refused(
        valid().env("MAX_RECEIVE_COUNT", "1000"),
        "MAX_RECEIVE_COUNT",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_attempt_timeout_stops_the_function() {
    refused(
        valid().env("CONNECT_ATTEMPT_TIMEOUT_MS", "86400000"),
        "CONNECT_ATTEMPT_TIMEOUT_MS",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_under_a_second_stops_the_function() {
    refused(
        valid().env("CONNECT_RECOVERY_MS", "999"),
        "CONNECT_RECOVERY_MS",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_margin_that_overflows_a_duration_stops_the_function() {
    refused(
        valid().env("DEADLINE_MARGIN_MS", "18446744073709551616"),
        "DEADLINE_MARGIN_MS",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_of_zero_stops_the_function() {
    refused(
        valid().env("MAX_CONCURRENT_USERS", "0"),
        "MAX_CONCURRENT_USERS",
    )
    .await;
}
