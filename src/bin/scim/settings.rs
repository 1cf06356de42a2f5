//! The endpoint's variables (SPEC §6, §8), read once at start-up with the function's own
//! readers, so that both judge a change by the same rules: `DEFAULT_INSTANCE_ID` (the one
//! instance it serves), the policy variables of §5, `DEFAULT_PHONE_REGION`,
//! `SOURCE_QUEUE_URL`, `SCIM_TOKEN_SECRET_ARN`, the endpoint's own `CONNECT_RPS_*`
//! shares, `CONNECT_ATTEMPT_TIMEOUT_MS` and `METRICS_NAMESPACE`.

use std::time::Duration;

use aws_config::SdkConfig;
use connect_identity_sync::config::{self, ConfigError, Operations};
use connect_identity_sync::domain::document::Admission;
use connect_identity_sync::domain::identity::InstanceId;

pub struct Settings {
    pub admission: Admission,
    pub instance: InstanceId,
    pub source_queue: String,
    pub token_secret: String,
    /// `DescribeUser`, requests per second.
    pub rps_describe: f64,
    /// `SearchUsers` (and `DescribeInstance`, whose quota is the same).
    pub rps_search: f64,
    /// `ListUsers`; `None`: never list (usernames by `SearchUsers` only).
    pub rps_list: Option<f64>,
    pub attempt_timeout: Duration,
    pub operations: Operations,
    ca_bundle: bool,
}

fn problem(variable: &str, problem: &str) -> ConfigError {
    ConfigError {
        variable: variable.to_owned(),
        problem: problem.to_owned(),
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(raw: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            raw(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let admission = config::admission_from_lookup(&get)?;
        let instance = admission.default_instance.clone().ok_or_else(|| {
            problem(
                "DEFAULT_INSTANCE_ID",
                "not set: the SCIM endpoint serves the users of this one instance",
            )
        })?;
        let source_queue = get("SOURCE_QUEUE_URL").ok_or_else(|| {
            problem(
                "SOURCE_QUEUE_URL",
                "not set: accepted changes are queued to the function's source queue",
            )
        })?;
        if !(source_queue.starts_with("https://") || source_queue.starts_with("http://")) {
            return Err(problem("SOURCE_QUEUE_URL", "not an SQS queue URL"));
        }
        let token_secret = get("SCIM_TOKEN_SECRET_ARN").ok_or_else(|| {
            problem(
                "SCIM_TOKEN_SECRET_ARN",
                "not set: the endpoint accepts no request without its bearer tokens",
            )
        })?;
        let rps_describe = config::rate_from_lookup(&get, "CONNECT_RPS_DESCRIBE", 10.0)?;
        let rps_search = config::rate_from_lookup(&get, "CONNECT_RPS_SEARCH", 2.0)?;
        let rps_list = match get("CONNECT_RPS_LIST").as_deref() {
            Some("0") => None,
            _ => Some(config::rate_from_lookup(&get, "CONNECT_RPS_LIST", 2.0)?),
        };
        let attempt_ms = match get("CONNECT_ATTEMPT_TIMEOUT_MS") {
            None => 3000,
            Some(raw) => raw
                .parse::<u64>()
                .ok()
                .filter(|n| config::ATTEMPT_TIMEOUTS_MS.contains(n))
                .ok_or_else(|| {
                    problem(
                        "CONNECT_ATTEMPT_TIMEOUT_MS",
                        "not milliseconds from 100 to 60000",
                    )
                })?,
        };
        let ca_bundle = match get("SSL_CERT_FILE") {
            Some(path) if !std::path::Path::new(&path).is_file() => {
                return Err(problem(
                    "SSL_CERT_FILE",
                    "not a file: the HTTPS client would trust no certificate authority",
                ));
            }
            Some(_) => true,
            None => false,
        };
        Ok(Settings {
            admission,
            instance,
            source_queue,
            token_secret,
            rps_describe,
            rps_search,
            rps_list,
            attempt_timeout: Duration::from_millis(attempt_ms),
            operations: Operations::from_lookup(&get)?,
            ca_bundle,
        })
    }

    /// The SDK configuration every client shares, as the function builds it: one attempt
    /// per call (the endpoint answers 429 or 503 itself, and the identity provider
    /// retries), the attempt timeout, and Amazon Trust Services' roots unless
    /// `SSL_CERT_FILE` names others.
    pub async fn sdk_config(&self) -> SdkConfig {
        use aws_config::retry::RetryConfig;
        use aws_config::timeout::TimeoutConfig;
        let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(1))
                    .operation_attempt_timeout(self.attempt_timeout)
                    .build(),
            );
        let loader = if self.ca_bundle {
            loader
        } else {
            loader.http_client(connect_identity_sync::outbound::https::amazon_roots_client())
        };
        loader.load().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTANCE: &str = "11111111-2222-3333-4444-555555555555";

    fn lookup(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let pairs = pairs.to_vec();
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("DEFAULT_INSTANCE_ID", INSTANCE),
            ("SOURCE_QUEUE_URL", "http://localhost:5000/123456789012/src"),
            (
                "SCIM_TOKEN_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:scim",
            ),
        ]
    }

    #[test]
    fn each_required_variable_is_named_when_missing() {
        for missing in [
            "DEFAULT_INSTANCE_ID",
            "SOURCE_QUEUE_URL",
            "SCIM_TOKEN_SECRET_ARN",
        ] {
            let pairs: Vec<_> = base().into_iter().filter(|(k, _)| *k != missing).collect();
            let error = Settings::from_lookup(lookup(&pairs)).err().unwrap();
            // Without DEFAULT_INSTANCE_ID the policy names the allowed instances first.
            assert!(
                error.variable == missing
                    || (missing == "DEFAULT_INSTANCE_ID"
                        && error.variable == "ALLOWED_INSTANCE_IDS"),
                "{missing}: {error}"
            );
        }
    }

    #[test]
    fn the_shares_are_read_as_the_function_reads_them() {
        let mut pairs = base();
        pairs.extend([
            // As the template writes it: the quota over both functions' containers.
            ("CONNECT_RPS_DESCRIBE", "10/2+2"),
            ("CONNECT_RPS_SEARCH", "0.5"),
            ("CONNECT_RPS_LIST", "0"),
        ]);
        let s = Settings::from_lookup(lookup(&pairs)).ok().unwrap();
        assert!((s.rps_describe - 2.5).abs() < 1e-9);
        assert!((s.rps_search - 0.5).abs() < 1e-9);
        assert_eq!(s.rps_list, None);
        let mut pairs = base();
        pairs.push(("CONNECT_RPS_DESCRIBE", "fast"));
        let error = Settings::from_lookup(lookup(&pairs)).err().unwrap();
        assert_eq!(error.variable, "CONNECT_RPS_DESCRIBE");
    }
}
