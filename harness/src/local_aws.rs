//! The SDK configuration every harness client shares: the local region, static
//! credentials, short timeouts and patient retries, pointed at a local endpoint (moto).
//!
//! Retries: moto, loaded by ten containers' requests on a small machine, now and then
//! answers one request with HTTP 500 or drops a connection. The harness's own requests
//! (sending the backlog, the event source mapping's receives and deletes, the counts at
//! the end) are tried up to `ATTEMPTS` times with backoff, so that one such answer does
//! not end a run whose figures are the function's, not moto's.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sqs::config::{Credentials, Region};

use crate::sqs::REGION;

/// Attempts per harness request (the SDK's standard mode: a server error, a throttle or
/// a broken connection is tried again after an exponential backoff with jitter).
pub const ATTEMPTS: u32 = 8;

/// SDK configuration for the AWS service served at `endpoint`: region [`REGION`],
/// static example credentials, a 2 s connect timeout, a 25 s attempt timeout, and up to
/// [`ATTEMPTS`] attempts a request.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "harness",
        ))
        .endpoint_url(endpoint)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(5)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(25))
                .build(),
        )
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server that answers every request as moto does when it fails: HTTP 500 with
    /// an HTML page; counts the requests.
    async fn failing_server() -> (String, Arc<AtomicU32>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicU32::new(0));
        let count = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let _ = conn.read(&mut buf).await;
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = "<!doctype html>\n<title>500 Internal Server Error</title>\n";
                    let reply = format!(
                        "HTTP/1.1 500 INTERNAL SERVER ERROR\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        (endpoint, seen)
    }

    #[tokio::test]
    async fn a_request_answered_with_http_500_is_tried_again() {
        let (endpoint, seen) = failing_server().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk_config(&endpoint).await);
        let out = sqs
            .get_queue_attributes()
            .queue_url(format!("{endpoint}/000000000000/q"))
            .send()
            .await;
        assert!(out.is_err());
        assert_eq!(seen.load(Ordering::SeqCst), ATTEMPTS);
    }
}
