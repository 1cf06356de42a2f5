//! The configuration, read once at start-up (SPEC §3, §5, §6). Any invalid value stops
//! the function before its first invocation, with a message naming the variable.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::domain::document::{Admission, DEFAULT_MAX_CLOCK_SKEW};
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
    /// `CONNECT_FLEET_RPS_UPDATE`: the stack's share of `UpdateUserIdentityInfo`'s quota,
    /// kept by the whole fleet as one adaptive rate in the watermark table; `None`: each
    /// container keeps to `rps_update` on its own.
    pub fleet_rps_update: Option<f64>,
    /// The longest one attempt of a Connect call may take.
    pub attempt_timeout: Duration,
    /// `CONNECT_RECOVERY_MS`: how long a rate throttled at its ceiling takes to climb
    /// back near it (the container's own rates and the fleet's shared one).
    pub recovery: Duration,
    /// The staleness guard's table (`WATERMARK_TABLE`); `None`: no guard.
    pub watermarks: Option<WatermarkSettings>,
    /// Dry run and metrics (SPEC §7).
    pub operations: Operations,
    /// `SSL_CERT_FILE`: the CA bundle the HTTPS client trusts instead of the compiled-in
    /// roots (a TLS-inspecting proxy, a private CA); checked to be a file here, read by the
    /// SDK's client.
    pub ca_bundle: Option<std::path::PathBuf>,
}

/// Where the staleness guard keeps its watermarks and how long they last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkSettings {
    pub table: String,
    /// How long an item outlives its last write (`WATERMARK_TTL_DAYS`): at least as
    /// long as a message can still come back, through the source queue's retention and
    /// then a dead-letter queue's before a replay.
    pub retention: Duration,
}

/// The default `WATERMARK_TTL_DAYS`: SQS's longest retention (14 days) in the source
/// queue, then as long again in a dead-letter queue before a replay.
pub const DEFAULT_WATERMARK_TTL_DAYS: u64 = 28;

/// `WATERMARK_TTL_DAYS`: never shorter than a message can still come back (the
/// longest retention SQS allows, in the source queue and then in a dead-letter queue:
/// the function cannot read the queues' own settings, so it assumes the longest),
/// at most ten years.
pub const WATERMARK_TTLS_DAYS: std::ops::RangeInclusive<u64> = DEFAULT_WATERMARK_TTL_DAYS..=3650;

/// The environment variable naming `class`'s dead-letter queue.
#[must_use]
pub const fn queue_variable(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::MalformedEvent => "DLQ_URL_MALFORMED_EVENT",
        ErrorClass::ValidationError => "DLQ_URL_VALIDATION_ERROR",
        ErrorClass::PolicyViolation => "DLQ_URL_POLICY_VIOLATION",
        ErrorClass::InvalidRequestException => "DLQ_URL_INVALID_REQUEST",
        ErrorClass::InvalidParameterException => "DLQ_URL_INVALID_PARAMETER",
        ErrorClass::ResourceNotFoundException => "DLQ_URL_RESOURCE_NOT_FOUND",
        ErrorClass::ThrottlingException => "DLQ_URL_THROTTLING",
        ErrorClass::InternalServiceException => "DLQ_URL_INTERNAL_SERVICE",
        ErrorClass::UnknownError => "DLQ_URL_UNKNOWN",
    }
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
        let get = trimmed(get);

        let admission = admission_from_lookup(&get)?;

        let fallback = get("DLQ_URL");
        let mut dead_letter_queues = BTreeMap::new();
        for class in ErrorClass::ALL {
            let var = queue_variable(class);
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
            |n| RECEIVE_COUNTS.contains(n),
            "a whole number from 1 to 999 (it must stay below the source queue's redrive maxReceiveCount, at most 1000)",
        )?;
        let rate = |var: &str, default: f64| {
            share(
                &get,
                var,
                default,
                |n: &f64| RATES.contains(n),
                "requests per second from 0.01 to 1000, or quota/containers giving one",
            )
        };
        let rps_update = rate("CONNECT_RPS_UPDATE", 2.0)?;
        let rps_describe = rate("CONNECT_RPS_DESCRIBE", 10.0)?;
        let rps_search = rate("CONNECT_RPS_SEARCH", 2.0)?;
        // Connect's default rate for ListUsers (the API's default, 2 rps); 0 turns the
        // username index off (every username is resolved with SearchUsers).
        let rps_list = share(
            &get,
            "CONNECT_RPS_LIST",
            2.0,
            |n: &f64| *n == 0.0 || RATES.contains(n),
            "0 (never list) or requests per second from 0.01 to 1000, or quota/containers giving one",
        )?;
        let fleet_rps_update = get("CONNECT_FLEET_RPS_UPDATE")
            .map(|_| {
                share(
                    &get,
                    "CONNECT_FLEET_RPS_UPDATE",
                    0.0,
                    |n: &f64| RATES.contains(n),
                    "requests per second from 0.01 to 1000 (the stack's share of the quota)",
                )
            })
            .transpose()?;
        let attempt_ms = number(
            &get,
            "CONNECT_ATTEMPT_TIMEOUT_MS",
            3000u64,
            |n| ATTEMPT_TIMEOUTS_MS.contains(n),
            "milliseconds from 100 to 60000",
        )?;
        let recovery_ms = number(
            &get,
            "CONNECT_RECOVERY_MS",
            u64::try_from(crate::limiter::RECOVERY.as_millis()).unwrap_or(120_000),
            |n| RECOVERIES_MS.contains(n),
            "milliseconds from 1000 to 3600000 (how long a throttled rate takes to climb back)",
        )?;
        let margin_ms = number(
            &get,
            "DEADLINE_MARGIN_MS",
            500u64,
            |n| DEADLINE_MARGINS_MS.contains(n),
            "milliseconds from 0 to 60000",
        )?;
        let concurrency = number(
            &get,
            "MAX_CONCURRENT_USERS",
            4usize,
            |n| CONCURRENT_USERS.contains(n),
            "a whole number from 1 to 64",
        )?;

        // The SDK's HTTPS client reads its CA roots from SSL_CERT_FILE when it is set
        // (the template points it at the runtime image's bundle, which spares the scan
        // of the certificate directory at start-up). A path that is not a file would
        // leave it trusting no one and fail every call.
        let ca_bundle = get("SSL_CERT_FILE").map(std::path::PathBuf::from);
        if ca_bundle.as_ref().is_some_and(|path| !path.is_file()) {
            return Err(err(
                "SSL_CERT_FILE",
                "not a file: the HTTPS client would trust no certificate authority",
            ));
        }

        let watermark_ttl_days = number(
            &get,
            "WATERMARK_TTL_DAYS",
            DEFAULT_WATERMARK_TTL_DAYS,
            |n| WATERMARK_TTLS_DAYS.contains(n),
            "a whole number of days from 28 to 3650: a change can come back for up to 14 days from the source queue, then 14 more from a dead-letter queue before its replay, and the watermarks must outlive it",
        )?;
        let watermarks = get("WATERMARK_TABLE")
            .map(|table| {
                // A table name (3-255 of a-z A-Z 0-9 _ - .) or a table ARN.
                let name_ok = |n: &str| {
                    (3..=255).contains(&n.len())
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                };
                let valid = match table.strip_prefix("arn:") {
                    Some(_) => table
                        .split_once(":table/")
                        .is_some_and(|(_, name)| name_ok(name)),
                    None => name_ok(&table),
                };
                if valid {
                    Ok(WatermarkSettings {
                        table,
                        retention: Duration::from_secs(watermark_ttl_days * 86_400),
                    })
                } else {
                    Err(err(
                        "WATERMARK_TABLE",
                        "not a DynamoDB table name or table ARN",
                    ))
                }
            })
            .transpose()?;
        if fleet_rps_update.is_some() && watermarks.is_none() {
            return Err(err(
                "CONNECT_FLEET_RPS_UPDATE",
                "needs WATERMARK_TABLE: the fleet's shared rate is kept in its table",
            ));
        }

        Ok(Config {
            admission,
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
            fleet_rps_update,
            attempt_timeout: Duration::from_millis(attempt_ms),
            recovery: Duration::from_millis(recovery_ms),
            watermarks,
            operations: Operations::from_lookup(&get)?,
            ca_bundle,
        })
    }
}

/// Reads what admission and the security rules need (SPEC §5, `DEFAULT_INSTANCE_ID`,
/// `DEFAULT_PHONE_REGION`, `MAX_CLOCK_SKEW_SECONDS`): the function's and the SCIM
/// endpoint's, read by this one function so that both judge a change alike. `get`
/// returns trimmed, non-empty values.
///
/// # Errors
/// The first variable that is missing where required or holds an invalid value.
pub fn admission_from_lookup(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Admission, ConfigError> {
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
    let secondary_email_domains =
        EmailDomains::parse_open_by_default(get("SECONDARY_EMAIL_DOMAIN_ALLOWLIST").as_deref())
            .map_err(|p| err("SECONDARY_EMAIL_DOMAIN_ALLOWLIST", p))?;
    let protected_profiles = get("PROTECTED_SECURITY_PROFILE_IDS")
        .map(|l| split(&l).map(str::to_owned).collect())
        .unwrap_or_default();
    let trusted_sources = get("TRUSTED_SOURCES").map(|l| split(&l).map(str::to_owned).collect());
    let phone_region = phone_region_of(get)?;
    let max_clock_skew = max_clock_skew_of(get)?;

    Ok(Admission {
        policy: Policy {
            allowed_instances,
            email_domains,
            secondary_email_domains,
            protected_profiles,
            trusted_sources,
        },
        default_instance,
        phone_region,
        max_clock_skew,
    })
}

/// Reads a `CONNECT_RPS_*` share as the function reads it: requests per second (0.01 to
/// 1000) or `quota/containers`, `default` when unset.
///
/// # Errors
/// When the value is neither.
pub fn rate_from_lookup(
    get: &impl Fn(&str) -> Option<String>,
    var: &str,
    default: f64,
) -> Result<f64, ConfigError> {
    share(
        get,
        var,
        default,
        |n: &f64| RATES.contains(n),
        "requests per second from 0.01 to 1000, or quota/containers giving one",
    )
}

// ---- Operations (SPEC §7): DRY_RUN, METRICS_NAMESPACE ----

/// How the function reports and whether it writes to Connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operations {
    /// `DRY_RUN=true`: everything but `UpdateUserIdentityInfo` (and the watermark write).
    pub dry_run: bool,
    /// The CloudWatch namespace of the metrics.
    pub metrics_namespace: String,
}

impl Operations {
    /// Reads `DRY_RUN` and `METRICS_NAMESPACE` (the SCIM endpoint reads the namespace too).
    ///
    /// # Errors
    /// A value that is not valid, naming its variable.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let dry_run = match get("DRY_RUN") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => return Err(err("DRY_RUN", format!("'{v}' is not true or false"))),
        };
        let metrics_namespace = match get("METRICS_NAMESPACE") {
            None => crate::metrics::DEFAULT_NAMESPACE.to_owned(),
            Some(ns) => {
                // CloudWatch's rules for a namespace.
                let allowed = |c: char| c.is_ascii_alphanumeric() || " .-_/#:".contains(c);
                if ns.len() > 255 || !ns.chars().all(allowed) || ns.starts_with("AWS/") {
                    return Err(err(
                        "METRICS_NAMESPACE",
                        format!(
                            "'{ns}' is not a CloudWatch namespace (at most 255 of A-Z a-z 0-9 . - _ / # : and space, not starting with AWS/)"
                        ),
                    ));
                }
                ns
            }
        };
        Ok(Operations {
            dry_run,
            metrics_namespace,
        })
    }
}

/// `DEFAULT_PHONE_REGION` as the function reads it, for the operator commands that
/// normalise values as the function does: unset or blank is no region.
///
/// # Errors
/// The variable named, when it is not a region with a telephone numbering plan.
pub fn phone_region(
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<PhoneRegion>, ConfigError> {
    phone_region_of(&trimmed(get))
}

/// `MAX_CLOCK_SKEW_SECONDS` as the function reads it (default 300 s), for the operator
/// commands that date changes the function will judge.
///
/// # Errors
/// The variable named, when it is not a whole number of seconds in range.
pub fn max_clock_skew(
    get: impl Fn(&str) -> Option<String>,
) -> Result<chrono::TimeDelta, ConfigError> {
    max_clock_skew_of(&trimmed(get))
}

/// A lookup whose values are trimmed, a blank value counting as unset.
fn trimmed(get: impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> {
    move |k: &str| {
        get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }
}

fn phone_region_of(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<PhoneRegion>, ConfigError> {
    get("DEFAULT_PHONE_REGION")
        .map(|v| {
            v.parse::<PhoneRegion>().map_err(|()| {
                err(
                    "DEFAULT_PHONE_REGION",
                    format!("'{v}' is not an ISO 3166 alpha-2 region code with a telephone numbering plan (e.g. US, GB)"),
                )
            })
        })
        .transpose()
}

fn max_clock_skew_of(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<chrono::TimeDelta, ConfigError> {
    number(
        get,
        "MAX_CLOCK_SKEW_SECONDS",
        DEFAULT_MAX_CLOCK_SKEW.num_seconds(),
        |n| CLOCK_SKEWS_SECONDS.contains(n),
        "a whole number of seconds from 1 to 86400",
    )
    .map(chrono::TimeDelta::seconds)
}

/// `MAX_RECEIVE_COUNT`: SQS allows a redrive `maxReceiveCount` of at most 1000, and this
/// must stay below it.
pub const RECEIVE_COUNTS: std::ops::RangeInclusive<u32> = 1..=999;
/// `CONNECT_RPS_*`: one call per 100 s up to far above any Connect quota; the limiter's
/// period (1 / rate) stays a whole number of nanoseconds well inside `Duration`.
pub const RATES: std::ops::RangeInclusive<f64> = 0.01..=1000.0;
/// `CONNECT_RECOVERY_MS`: a second at least (a rate that climbs back faster is no
/// rate after a throttle), an hour at most.
pub const RECOVERIES_MS: std::ops::RangeInclusive<u64> = 1000..=3_600_000;

/// `CONNECT_ATTEMPT_TIMEOUT_MS`: one attempt of one Connect call.
pub const ATTEMPT_TIMEOUTS_MS: std::ops::RangeInclusive<u64> = 100..=60_000;
/// `DEADLINE_MARGIN_MS`: time kept free before the invocation's deadline.
pub const DEADLINE_MARGINS_MS: std::ops::RangeInclusive<u64> = 0..=60_000;
/// `MAX_CLOCK_SKEW_SECONDS`: how far ahead of the function's clock an `OccurredAt` may
/// be; at least a second (clocks are never exactly in step), at most a day.
pub const CLOCK_SKEWS_SECONDS: std::ops::RangeInclusive<i64> = 1..=86_400;
/// `MAX_CONCURRENT_USERS`.
pub const CONCURRENT_USERS: std::ops::RangeInclusive<usize> = 1..=64;

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
            .ok_or_else(|| err(var, format!("'{}' is not {expected}", shown(&raw)))),
    }
}

/// A rate in requests per second, written as a number (`0.4`) or as a quota shared by a
/// number of containers (`2/5`, the form the template writes: the account's quota, or this
/// stack's share of it, over `MaximumConcurrency`), so that the shares of every container
/// add up to the quota whatever the concurrency. The containers may be written as a sum
/// (`10/2+1`: the function's `MaximumConcurrency` and the SCIM endpoint's containers).
fn share(
    get: &impl Fn(&str) -> Option<String>,
    var: &str,
    default: f64,
    valid: impl Fn(&f64) -> bool,
    expected: &str,
) -> Result<f64, ConfigError> {
    let Some(raw) = get(var) else {
        return Ok(default);
    };
    let positive = |s: &str| s.trim().parse::<f64>().ok().filter(|n| n.is_finite());
    // The containers may be a sum (`10/2+1`): the template divides a quota among the
    // function's containers and the SCIM endpoint's.
    let containers = |s: &str| s.split('+').map(positive).sum::<Option<f64>>();
    let value = match raw.split_once('/') {
        Some((quota, count)) => positive(quota)
            .zip(containers(count).filter(|n| *n >= 1.0))
            .map(|(q, n)| q / n),
        None => raw.parse::<f64>().ok(),
    };
    value
        .filter(|n| valid(n))
        .ok_or_else(|| err(var, format!("'{}' is not {expected}", shown(&raw))))
}

/// A refused value as the init error quotes it: at most 64 characters.
fn shown(raw: &str) -> String {
    match raw.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &raw[..end]),
        None => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_its_own_queue_variable() {
        let mut vars: Vec<_> = ErrorClass::ALL.iter().map(|c| queue_variable(*c)).collect();
        vars.sort();
        vars.dedup();
        assert_eq!(vars.len(), ErrorClass::ALL.len());
        assert!(vars.iter().all(|v| v.starts_with("DLQ_URL_")));
    }

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
        assert_eq!(
            c.admission.policy.secondary_email_domains,
            EmailDomains::Any,
            "unset, SECONDARY_EMAIL_DOMAIN_ALLOWLIST allows any domain"
        );
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
        let vars: Vec<&str> = ErrorClass::ALL.iter().map(|c| queue_variable(*c)).collect();
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
            ("SECONDARY_EMAIL_DOMAIN_ALLOWLIST", "example"),
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
    fn dry_run_is_off_and_the_namespace_is_the_default_unless_set() {
        let c = Config::from_lookup(lookup(&base())).unwrap();
        assert_eq!(
            c.operations,
            Operations {
                dry_run: false,
                metrics_namespace: "ConnectIdentitySync".into()
            }
        );
        let mut pairs = base();
        pairs.extend([
            ("DRY_RUN", "TRUE"),
            ("METRICS_NAMESPACE", "Shadow/Identity Sync"),
        ]);
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        assert!(c.operations.dry_run);
        assert_eq!(c.operations.metrics_namespace, "Shadow/Identity Sync");
    }

    #[test]
    fn a_dry_run_or_namespace_that_cannot_be_read_stops_the_start() {
        for (var, value) in [
            ("DRY_RUN", "yes"),
            ("DRY_RUN", "1"),
            ("METRICS_NAMESPACE", "AWS/Lambda"),
            ("METRICS_NAMESPACE", "naïve"),
        ] {
            assert_eq!(failing(&[(var, value)]).variable, var, "{var}={value}");
        }
    }

    #[test]
    fn without_a_watermark_table_there_is_no_guard() {
        let c = Config::from_lookup(lookup(&base())).unwrap();
        assert_eq!(c.watermarks, None);
    }

    #[test]
    fn a_watermark_table_keeps_its_items_28_days_unless_told_otherwise() {
        let mut pairs = base();
        pairs.push(("WATERMARK_TABLE", "identity-watermarks"));
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        let w = c.watermarks.unwrap();
        assert_eq!(w.table, "identity-watermarks");
        assert_eq!(w.retention, Duration::from_secs(28 * 86_400));
        pairs.push(("WATERMARK_TTL_DAYS", "40"));
        let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/identity-watermarks";
        pairs.push(("WATERMARK_TABLE", arn));
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        let w = c.watermarks.unwrap();
        assert_eq!(w.table, arn);
        assert_eq!(w.retention, Duration::from_secs(40 * 86_400));
    }

    #[test]
    fn an_invalid_watermark_setting_names_its_variable() {
        for (var, value) in [
            ("WATERMARK_TABLE", "a"),
            ("WATERMARK_TABLE", "no spaces"),
            ("WATERMARK_TABLE", "arn:aws:sqs:us-east-1:1:queue"),
        ] {
            assert_eq!(failing(&[(var, value)]).variable, var, "{var}={value}");
        }
        for value in ["0", "-3", "two weeks", "3651", "14", "27"] {
            let e = failing(&[
                ("WATERMARK_TABLE", "identity-watermarks"),
                ("WATERMARK_TTL_DAYS", value),
            ]);
            assert_eq!(e.variable, "WATERMARK_TTL_DAYS", "{value}");
        }
    }

    #[test]
    fn a_fleet_update_rate_is_kept_in_the_watermark_table_and_needs_it() {
        let c = Config::from_lookup(lookup(&base())).unwrap();
        assert_eq!(
            c.fleet_rps_update, None,
            "each container on its own by default"
        );
        let mut pairs = base();
        pairs.push(("WATERMARK_TABLE", "identity-watermarks"));
        pairs.push(("CONNECT_FLEET_RPS_UPDATE", "1.5"));
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(c.fleet_rps_update, Some(1.5));
        let e = failing(&[("CONNECT_FLEET_RPS_UPDATE", "2")]);
        assert_eq!(e.variable, "CONNECT_FLEET_RPS_UPDATE");
        assert!(e.to_string().contains("WATERMARK_TABLE"), "{e}");
        for value in ["0", "-1", "fast", "5000"] {
            let e = failing(&[
                ("WATERMARK_TABLE", "identity-watermarks"),
                ("CONNECT_FLEET_RPS_UPDATE", value),
            ]);
            assert_eq!(e.variable, "CONNECT_FLEET_RPS_UPDATE", "{value}");
        }
    }

    #[test]
    fn watermarks_that_would_expire_before_a_message_can_come_back_do_not_start() {
        let e = failing(&[
            ("WATERMARK_TABLE", "identity-watermarks"),
            ("WATERMARK_TTL_DAYS", "14"),
        ]);
        assert_eq!(e.variable, "WATERMARK_TTL_DAYS");
        assert!(e.problem.contains("dead-letter queue"), "{}", e.problem);
        let mut pairs = base();
        pairs.push(("WATERMARK_TABLE", "identity-watermarks"));
        pairs.push(("WATERMARK_TTL_DAYS", "28"));
        assert!(Config::from_lookup(lookup(&pairs)).is_ok());
    }

    #[test]
    fn the_clock_skew_is_five_minutes_unless_set_and_is_checked() {
        let c = Config::from_lookup(lookup(&base())).unwrap();
        assert_eq!(c.admission.max_clock_skew, chrono::TimeDelta::seconds(300));
        let mut pairs = base();
        pairs.push(("MAX_CLOCK_SKEW_SECONDS", "60"));
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(c.admission.max_clock_skew, chrono::TimeDelta::seconds(60));
        for value in ["0", "-1", "86401", "5m", "1.5"] {
            assert_eq!(
                failing(&[("MAX_CLOCK_SKEW_SECONDS", value)]).variable,
                "MAX_CLOCK_SKEW_SECONDS",
                "{value}"
            );
        }
    }

    #[test]
    fn the_operator_commands_read_the_skew_and_the_region_as_the_function_does() {
        let none = |_: &str| None;
        assert_eq!(max_clock_skew(none), Ok(chrono::TimeDelta::seconds(300)));
        assert_eq!(phone_region(none), Ok(None));
        let set = |k: &str| match k {
            "MAX_CLOCK_SKEW_SECONDS" => Some(" 3600 ".to_owned()),
            "DEFAULT_PHONE_REGION" => Some("gb".to_owned()),
            _ => None,
        };
        assert_eq!(max_clock_skew(set), Ok(chrono::TimeDelta::seconds(3600)));
        assert!(phone_region(set).unwrap().is_some());
        let bad = |_: &str| Some("5m".to_owned());
        assert_eq!(
            max_clock_skew(bad).unwrap_err().variable,
            "MAX_CLOCK_SKEW_SECONDS"
        );
        assert_eq!(
            phone_region(bad).unwrap_err().variable,
            "DEFAULT_PHONE_REGION"
        );
        let blank = |_: &str| Some("  ".to_owned());
        assert_eq!(max_clock_skew(blank), Ok(chrono::TimeDelta::seconds(300)));
    }

    #[test]
    fn lists_are_comma_separated_and_trimmed() {
        let mut pairs = base();
        pairs.push(("TRUSTED_SOURCES", "com.okta, com.entra ,"));
        pairs.push(("PROTECTED_SECURITY_PROFILE_IDS", "sp-1,sp-2"));
        pairs.push((
            "SECONDARY_EMAIL_DOMAIN_ALLOWLIST",
            " example.com, Example.org ,",
        ));
        pairs.push((
            "ALLOWED_INSTANCE_IDS",
            "arn:aws:connect:us-east-1:1:instance/i-1, i-2",
        ));
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        let p = &c.admission.policy;
        assert_eq!(p.trusted_sources.as_ref().unwrap().len(), 2);
        assert!(p.protected_profiles.contains("sp-2"));
        assert_eq!(
            p.secondary_email_domains,
            EmailDomains::Only(["example.com".into(), "example.org".into()].into())
        );
        assert!(
            p.allowed_instances
                .contains(&InstanceId::parse("i-1").unwrap())
        );
        assert!(
            !p.allowed_instances
                .contains(&InstanceId::parse(INSTANCE).unwrap())
        );
    }

    const NUMERIC: [&str; 9] = [
        "MAX_RECEIVE_COUNT",
        "MAX_CLOCK_SKEW_SECONDS",
        "WATERMARK_TTL_DAYS",
        "CONNECT_RPS_UPDATE",
        "CONNECT_RPS_DESCRIBE",
        "CONNECT_RPS_SEARCH",
        "CONNECT_ATTEMPT_TIMEOUT_MS",
        "DEADLINE_MARGIN_MS",
        "MAX_CONCURRENT_USERS",
    ];

    /// What start-up does with a configuration: nothing downstream may panic on it.
    fn start_with(c: &Config) {
        let _limits = crate::pipeline::RateLimits::new(c.rps_update, c.rps_describe, c.rps_search);
        let later = tokio::time::Instant::now() + Duration::from_secs(900);
        let _ = later.checked_sub(c.settings.deadline_margin + c.settings.call_budget);
        let _ = c.settings.deadline_margin / 2;
    }

    #[test]
    fn a_rate_out_of_range_names_its_variable_instead_of_panicking() {
        for var in [
            "CONNECT_RPS_UPDATE",
            "CONNECT_RPS_DESCRIBE",
            "CONNECT_RPS_SEARCH",
        ] {
            for value in [
                "1e10", "1e300", "inf", "-inf", "infinity", "NaN", "0", "-0", "0.0", "-0.0",
                "0.009", "1000.5", "1e-320", "-2",
            ] {
                let e = failing(&[(var, value)]);
                assert_eq!(e.variable, var, "{var}={value}");
                assert!(e.to_string().contains(var), "{e}");
            }
        }
    }

    #[test]
    fn a_rate_may_be_a_quota_over_a_number_of_containers() {
        for (value, rate) in [
            ("2/5", 0.4),
            ("10/2", 5.0),
            ("2/200", 0.01),
            (" 1.5 / 3 ", 0.5),
            // The function's containers and the SCIM endpoint's.
            ("10/2+1", 10.0 / 3.0),
            ("6/ 4 + 2 ", 1.0),
        ] {
            let mut pairs = base();
            pairs.push(("CONNECT_RPS_UPDATE", value));
            let c = Config::from_lookup(lookup(&pairs)).expect(value);
            assert!(
                (c.rps_update - rate).abs() < 1e-12,
                "{value}: {}",
                c.rps_update
            );
            start_with(&c);
        }
        let mut pairs = base();
        pairs.push(("CONNECT_RPS_LIST", "0/4"));
        let c = Config::from_lookup(lookup(&pairs)).expect("0/4");
        assert_eq!(c.rps_list, 0.0);
        for value in [
            "2/0",
            "2/0.5",
            "2/",
            "/2",
            "2/201",
            "a/2",
            "2/inf",
            "1/2/3",
            "-2/2",
            "2/-2",
            "2/2+",
            "2/+2",
            "2/1+x",
            "2/0.25+0.25",
        ] {
            let e = failing(&[("CONNECT_RPS_UPDATE", value)]);
            assert_eq!(e.variable, "CONNECT_RPS_UPDATE", "{value}");
        }
    }

    #[test]
    fn rates_at_the_ends_of_the_range_start() {
        for value in ["0.01", "1000", "1e3", "0.5", "2"] {
            let mut pairs = base();
            pairs.push(("CONNECT_RPS_UPDATE", value));
            let c = Config::from_lookup(lookup(&pairs)).expect(value);
            start_with(&c);
        }
    }

    #[test]
    fn a_receive_count_of_zero_or_above_what_sqs_redrive_allows_names_its_variable() {
        for value in ["0", "-0", "-1", "1000", "1001", "4294967296", "1.5", "3 "] {
            let mut pairs = base();
            pairs.push(("MAX_RECEIVE_COUNT", value));
            match Config::from_lookup(lookup(&pairs)) {
                // A value trimmed to "3" is fine.
                Ok(c) => assert_eq!((value, c.settings.max_receive_count), ("3 ", 3)),
                Err(e) => assert_eq!(e.variable, "MAX_RECEIVE_COUNT", "{value}"),
            }
        }
        let mut pairs = base();
        pairs.push(("MAX_RECEIVE_COUNT", "999"));
        assert_eq!(
            Config::from_lookup(lookup(&pairs))
                .unwrap()
                .settings
                .max_receive_count,
            999
        );
    }

    #[test]
    fn huge_or_overflowing_durations_name_their_variable() {
        for var in ["CONNECT_ATTEMPT_TIMEOUT_MS", "DEADLINE_MARGIN_MS"] {
            for value in [
                "60001",
                "86400000",
                "18446744073709551615",
                "18446744073709551616",
                "99999999999999999999999",
                "-1",
                "1e3",
            ] {
                assert_eq!(failing(&[(var, value)]).variable, var, "{var}={value}");
            }
        }
        assert_eq!(
            failing(&[("CONNECT_ATTEMPT_TIMEOUT_MS", "0")]).variable,
            "CONNECT_ATTEMPT_TIMEOUT_MS"
        );
    }

    #[test]
    fn the_recovery_after_a_throttle_is_two_minutes_unless_set_within_a_second_and_an_hour() {
        let c = Config::from_lookup(lookup(&base())).unwrap();
        assert_eq!(c.recovery, Duration::from_secs(120));
        let mut pairs = base();
        pairs.push(("CONNECT_RECOVERY_MS", "30000"));
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(c.recovery, Duration::from_secs(30));
        for value in ["0", "999", "3600001", "-1", "30s", "1e4"] {
            assert_eq!(
                failing(&[("CONNECT_RECOVERY_MS", value)]).variable,
                "CONNECT_RECOVERY_MS",
                "{value}"
            );
        }
    }

    #[test]
    fn a_concurrency_out_of_range_names_its_variable() {
        for value in ["0", "65", "18446744073709551616", "-4"] {
            assert_eq!(
                failing(&[("MAX_CONCURRENT_USERS", value)]).variable,
                "MAX_CONCURRENT_USERS"
            );
        }
    }

    #[test]
    fn a_huge_refused_value_is_quoted_shortened() {
        let value = "9".repeat(100_000);
        let mut pairs = base();
        pairs.push(("CONNECT_RPS_UPDATE", &value));
        let e = Config::from_lookup(lookup(&pairs)).unwrap_err();
        assert_eq!(e.variable, "CONNECT_RPS_UPDATE");
        assert!(e.to_string().len() < 300, "{}", e.to_string().len());
    }

    fn numeric_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::string::string_regex(".{0,24}").unwrap(),
            proptest::string::string_regex(
                "[-+]?[0-9]{0,25}([.][0-9]{0,6})?([eE][-+]?[0-9]{1,4})?"
            )
            .unwrap(),
            any::<f64>().prop_map(|f| f.to_string()),
            any::<i128>().prop_map(|n| n.to_string()),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn any_string_in_a_numeric_variable_starts_or_names_the_variable(
            var in proptest::sample::select(NUMERIC.to_vec()),
            value in numeric_text(),
        ) {
            let mut pairs: Vec<(&str, &str)> = base();
            pairs.push((var, &value));
            match std::panic::catch_unwind(|| Config::from_lookup(lookup(&pairs))) {
                Err(_) => proptest::prop_assert!(false, "{var}={value:?} panicked"),
                Ok(Ok(c)) => {
                    let started = std::panic::catch_unwind(|| start_with(&c));
                    proptest::prop_assert!(started.is_ok(), "{var}={value:?} panicked downstream");
                }
                Ok(Err(e)) => proptest::prop_assert_eq!(e.variable, var),
            }
        }
    }
}
