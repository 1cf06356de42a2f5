//! The configuration, read once at start-up (SPEC §3, §5, §6). Any invalid value stops
//! the function before its first invocation, with a message naming the variable.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::domain::document::Admission;
use crate::domain::error::ErrorClass;
use crate::domain::identity::{InstanceId, PhoneRegion};
use crate::domain::policy::{EmailDomains, Policy};
use crate::pipeline::Settings;

/// A configuration value the function cannot start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {variable}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

fn err(variable: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: variable.to_owned(),
        problem: problem.into(),
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub admission: Admission,
    pub dead_letter_queues: BTreeMap<ErrorClass, String>,
    pub settings: Settings,
    pub rps_update: f64,
    pub rps_describe: f64,
    pub rps_search: f64,
    /// `ListUsers` requests per second for the username index; 0 never lists.
    pub rps_list: f64,
    /// The longest one attempt of a Connect call may take.
    pub attempt_timeout: Duration,
}

impl Config {
    /// # Errors
    /// The first variable that is missing where required or holds an invalid value.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration from any source of variables.
    ///
    /// # Errors
    /// As `from_env`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let default_instance = get("DEFAULT_INSTANCE_ID")
            .map(|v| {
                InstanceId::parse(&v)
                    .map_err(|_| err("DEFAULT_INSTANCE_ID", "not a Connect instance id or ARN"))
            })
            .transpose()?;
        let allowed_instances: HashSet<InstanceId> = match get("ALLOWED_INSTANCE_IDS") {
            Some(list) => split(&list)
                .map(|v| {
                    InstanceId::parse(v).map_err(|_| {
                        err(
                            "ALLOWED_INSTANCE_IDS",
                            format!("'{v}' is not a Connect instance id or ARN"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            None => default_instance.iter().cloned().collect(),
        };
        if allowed_instances.is_empty() {
            return Err(err(
                "ALLOWED_INSTANCE_IDS",
                "set ALLOWED_INSTANCE_IDS or DEFAULT_INSTANCE_ID: the function changes no instance it was not given",
            ));
        }
        let email_domains = EmailDomains::parse(get("EMAIL_DOMAIN_ALLOWLIST").as_deref())
            .map_err(|p| err("EMAIL_DOMAIN_ALLOWLIST", p))?;
        let protected_profiles = get("PROTECTED_SECURITY_PROFILE_IDS")
            .map(|l| split(&l).map(str::to_owned).collect())
            .unwrap_or_default();
        let trusted_sources =
            get("TRUSTED_SOURCES").map(|l| split(&l).map(str::to_owned).collect());
        let phone_region = get("DEFAULT_PHONE_REGION")
            .map(|v| {
                v.parse::<PhoneRegion>().map_err(|()| {
                    err(
                        "DEFAULT_PHONE_REGION",
                        format!("'{v}' is not an ISO 3166 alpha-2 region code with a telephone numbering plan (e.g. US, GB)"),
                    )
                })
            })
            .transpose()?;

        let fallback = get("DLQ_URL");
        let mut dead_letter_queues = BTreeMap::new();
        for class in ErrorClass::ALL {
            let var = class.queue_variable();
            let (url, from) = match get(var) {
                Some(url) => (url, var),
                None => match &fallback {
                    Some(url) => (url.clone(), "DLQ_URL"),
                    None => {
                        return Err(err(
                            var,
                            format!("no dead-letter queue for {class}: set {var} or DLQ_URL"),
                        ));
                    }
                },
            };
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(err(from, "not an SQS queue URL"));
            }
            dead_letter_queues.insert(class, url);
        }

        let max_receive_count = number(
            &get,
            "MAX_RECEIVE_COUNT",
            3u32,
            |n| *n >= 1,
            "a whole number of at least 1",
        )?;
        let positive = |n: &f64| n.is_finite() && *n > 0.0;
        let rps_update = number(
            &get,
            "CONNECT_RPS_UPDATE",
            2.0,
            positive,
            "a positive number",
        )?;
        let rps_describe = number(
            &get,
            "CONNECT_RPS_DESCRIBE",
            10.0,
            positive,
            "a positive number",
        )?;
        let rps_search = number(
            &get,
            "CONNECT_RPS_SEARCH",
            2.0,
            positive,
            "a positive number",
        )?;
        // Connect's default rate for ListUsers (the API's default, 2 rps); 0 turns the
        // username index off (every username is resolved with SearchUsers).
        let rps_list = number(
            &get,
            "CONNECT_RPS_LIST",
            2.0,
            |n: &f64| n.is_finite() && *n >= 0.0,
            "a number of at least 0",
        )?;
        let attempt_ms = number(
            &get,
            "CONNECT_ATTEMPT_TIMEOUT_MS",
            3000u64,
            |n| (100..=60_000).contains(n),
            "milliseconds from 100 to 60000",
        )?;
        let margin_ms = number(
            &get,
            "DEADLINE_MARGIN_MS",
            500u64,
            |n| *n <= 60_000,
            "milliseconds up to 60000",
        )?;
        let concurrency = number(
            &get,
            "MAX_CONCURRENT_USERS",
            4usize,
            |n| (1..=64).contains(n),
            "a whole number from 1 to 64",
        )?;

        // The SDK's HTTPS client reads its CA roots from SSL_CERT_FILE when it is set
        // (the template points it at the runtime image's bundle, which spares the scan
        // of the certificate directory at start-up). A path that is not a file would
        // leave it trusting no one and fail every call.
        if let Some(path) = get("SSL_CERT_FILE")
            && !std::path::Path::new(&path).is_file()
        {
            return Err(err(
                "SSL_CERT_FILE",
                "not a file: the HTTPS client would trust no certificate authority",
            ));
        }

        Ok(Config {
            admission: Admission {
                policy: Policy {
                    allowed_instances,
                    email_domains,
                    protected_profiles,
                    trusted_sources,
                },
                default_instance,
                phone_region,
            },
            dead_letter_queues,
            settings: Settings {
                max_receive_count,
                concurrency,
                deadline_margin: Duration::from_millis(margin_ms),
                call_budget: Duration::from_millis(attempt_ms),
            },
            rps_update,
            rps_describe,
            rps_search,
            rps_list,
            attempt_timeout: Duration::from_millis(attempt_ms),
        })
    }
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn number<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    var: &str,
    default: T,
    valid: impl Fn(&T) -> bool,
    expected: &str,
) -> Result<T, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<T>()
            .ok()
            .filter(|n| valid(n))
            .ok_or_else(|| err(var, format!("'{raw}' is not {expected}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTANCE: &str = "11111111-2222-3333-4444-555555555555";

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("DEFAULT_INSTANCE_ID", INSTANCE),
            ("DLQ_URL", "http://localhost:5000/123456789012/dlq"),
        ]
    }

    fn failing(extra: &[(&'static str, &'static str)]) -> ConfigError {
        let mut pairs = base();
        pairs.extend_from_slice(extra);
        Config::from_lookup(lookup(&pairs)).unwrap_err()
    }

    #[test]
    fn the_allowed_instances_default_to_the_default_instance() {
        let c = Config::from_lookup(lookup(&base())).unwrap();
        let allowed: Vec<_> = c
            .admission
            .policy
            .allowed_instances
            .iter()
            .map(|i| i.as_str().to_owned())
            .collect();
        assert_eq!(allowed, vec![INSTANCE.to_owned()]);
        assert_eq!(c.settings.max_receive_count, 3);
        assert_eq!(c.rps_update, 2.0);
        assert_eq!(c.rps_describe, 10.0);
        assert_eq!(c.rps_search, 2.0);
        assert_eq!(c.rps_list, 2.0);
        assert_eq!(c.admission.policy.email_domains, EmailDomains::NoneAllowed);
        assert!(c.admission.policy.trusted_sources.is_none());
    }

    #[test]
    fn without_allowed_or_default_instance_the_function_does_not_start() {
        let e = Config::from_lookup(lookup(&[("DLQ_URL", "http://q")])).unwrap_err();
        assert_eq!(e.variable, "ALLOWED_INSTANCE_IDS");
    }

    #[test]
    fn every_class_must_have_a_queue() {
        let e = Config::from_lookup(lookup(&[("DEFAULT_INSTANCE_ID", INSTANCE)])).unwrap_err();
        assert_eq!(e.variable, "DLQ_URL_MALFORMED_EVENT");
        let mut pairs: Vec<(&str, &str)> = vec![("DEFAULT_INSTANCE_ID", INSTANCE)];
        let vars: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.queue_variable()).collect();
        for v in &vars[..8] {
            pairs.push((v, "http://localhost/q"));
        }
        let e = Config::from_lookup(lookup(&pairs)).unwrap_err();
        assert_eq!(e.variable, "DLQ_URL_UNKNOWN");
    }

    #[test]
    fn a_class_queue_variable_wins_over_the_fallback() {
        let mut pairs = base();
        pairs.push(("DLQ_URL_THROTTLING", "http://localhost:5000/1/throttled"));
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(
            c.dead_letter_queues[&ErrorClass::ThrottlingException],
            "http://localhost:5000/1/throttled"
        );
        assert_eq!(
            c.dead_letter_queues[&ErrorClass::UnknownError],
            "http://localhost:5000/123456789012/dlq"
        );
    }

    #[test]
    fn an_invalid_value_names_its_variable() {
        for (var, value) in [
            ("MAX_RECEIVE_COUNT", "zero"),
            ("MAX_RECEIVE_COUNT", "0"),
            ("CONNECT_RPS_UPDATE", "-1"),
            ("CONNECT_RPS_DESCRIBE", "fast"),
            ("CONNECT_RPS_SEARCH", "NaN"),
            ("CONNECT_RPS_LIST", "-1"),
            ("DEFAULT_PHONE_REGION", "Narnia"),
            ("EMAIL_DOMAIN_ALLOWLIST", "*.example.com"),
            ("ALLOWED_INSTANCE_IDS", "arn:aws:sqs:us-east-1:1:q"),
            ("DLQ_URL_THROTTLING", "not-a-url"),
        ] {
            assert_eq!(failing(&[(var, value)]).variable, var, "{var}={value}");
        }
        let e = failing(&[("DEFAULT_INSTANCE_ID", "a/b")]);
        assert_eq!(e.variable, "DEFAULT_INSTANCE_ID");
        assert!(e.to_string().contains("DEFAULT_INSTANCE_ID"));
    }

    #[test]
    fn lists_are_comma_separated_and_trimmed() {
        let mut pairs = base();
        pairs.push(("TRUSTED_SOURCES", "com.okta, com.entra ,"));
        pairs.push(("PROTECTED_SECURITY_PROFILE_IDS", "sp-1,sp-2"));
        pairs.push((
            "ALLOWED_INSTANCE_IDS",
            "arn:aws:connect:us-east-1:1:instance/i-1, i-2",
        ));
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        let p = &c.admission.policy;
        assert_eq!(p.trusted_sources.as_ref().unwrap().len(), 2);
        assert!(p.protected_profiles.contains("sp-2"));
        assert!(
            p.allowed_instances
                .contains(&InstanceId::parse("i-1").unwrap())
        );
        assert!(
            !p.allowed_instances
                .contains(&InstanceId::parse(INSTANCE).unwrap())
        );
    }
}
