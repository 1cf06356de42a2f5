//! The SDK configuration every harness client shares: the local region, static
//! credentials and short timeouts, pointed at a local endpoint (moto).

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sqs::config::{Credentials, Region};

use crate::sqs::REGION;

/// SDK configuration for the AWS service served at `endpoint`: region [`REGION`],
/// static example credentials, a 2 s connect timeout and a 25 s attempt timeout.
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
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(25))
                .build(),
        )
        .load()
        .await
}
