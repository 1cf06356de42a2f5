//! One invocation's counts and their CloudWatch Embedded Metric Format documents
//! (SPEC §7), written to stdout once per invocation.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::domain::error::ErrorClass;
use crate::domain::record::Disposition;
use crate::pipeline::{PerOperation, RunReport};

/// The namespace when `METRICS_NAMESPACE` is unset.
pub const DEFAULT_NAMESPACE: &str = "ConnectIdentitySync";

/// What one invocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub updated: u64,
    pub unchanged: u64,
    pub handed_back: u64,
    pub dead_lettered: BTreeMap<ErrorClass, u64>,
    /// Of `unchanged`, those whose every field the staleness guard dropped.
    pub superseded: u64,
    /// Connect calls (attempts) by operation name.
    pub connect_calls: BTreeMap<&'static str, u64>,
    /// Throttled answers by operation name.
    pub connect_throttled: BTreeMap<&'static str, u64>,
    /// Time spent waiting for the per-operation rate limiters.
    pub limiter_wait: Duration,
    /// Whether the function ran with `DRY_RUN=true`.
    pub dry_run: bool,
}

impl Summary {
    /// The outcome counts of an invocation's records. A record that is not
    /// acknowledged counts as handed back: it is delivered again (SQS, or Lambda's own
    /// retry of a direct event).
    #[must_use]
    pub fn of_dispositions(dispositions: &[Disposition]) -> Self {
        let mut s = Summary::default();
        for d in dispositions {
            match d {
                Disposition::Updated => s.updated += 1,
                Disposition::Unchanged => s.unchanged += 1,
                Disposition::DeadLettered(class) => {
                    *s.dead_lettered.entry(*class).or_default() += 1;
                }
                Disposition::HandedBack(_)
                | Disposition::Requeued(_)
                | Disposition::NotAcknowledged(_) => {
                    s.handed_back += 1;
                }
            }
        }
        s
    }

    /// The summary of a pipeline run: its outcomes and what it cost in Connect calls,
    /// throttles and limiter wait. Operations without calls or throttles are left out.
    #[must_use]
    pub fn of_report(report: &RunReport) -> Self {
        let mut s = Summary::of_dispositions(&report.dispositions);
        s.connect_calls = by_operation(&report.calls);
        s.connect_throttled = by_operation(&report.throttled);
        s.limiter_wait = report.limiter_wait;
        s.superseded = u64::from(report.superseded);
        s
    }

    /// All dead letters, whatever their class.
    #[must_use]
    pub fn dead_lettered_total(&self) -> u64 {
        self.dead_lettered.values().sum()
    }

    /// `Updated + Unchanged + HandedBack + DeadLettered`: the invocation's records.
    #[must_use]
    pub fn records(&self) -> u64 {
        self.updated + self.unchanged + self.handed_back + self.dead_lettered_total()
    }

    /// The EMF documents, one JSON object a line: the outcome totals and the limiter
    /// wait without dimensions, then one document per failure class with dead letters
    /// and one per Connect operation called.
    #[must_use]
    pub fn documents(&self, namespace: &str, timestamp_ms: u64) -> String {
        let doc = |dimensions: &'static [&'static str],
                   metrics: &[(&'static str, &'static str)]| Aws {
            timestamp: timestamp_ms,
            cloud_watch_metrics: [Directive {
                namespace: namespace.to_owned(),
                dimensions: [dimensions],
                metrics: metrics
                    .iter()
                    .map(|(name, unit)| MetricDefinition { name, unit })
                    .collect(),
            }],
        };
        let mut out = String::new();
        push_line(
            &mut out,
            &Totals {
                aws: doc(
                    &[],
                    &[
                        ("Updated", COUNT),
                        ("Unchanged", COUNT),
                        ("HandedBack", COUNT),
                        ("DeadLettered", COUNT),
                        ("Superseded", COUNT),
                        ("LimiterWait", MILLISECONDS),
                    ],
                ),
                updated: self.updated,
                unchanged: self.unchanged,
                handed_back: self.handed_back,
                dead_lettered: self.dead_lettered_total(),
                superseded: self.superseded,
                limiter_wait: self.limiter_wait.as_secs_f64() * 1000.0,
                dry_run: self.dry_run.then_some(true),
            },
        );
        for (class, n) in self.dead_lettered.iter().filter(|(_, n)| **n > 0) {
            push_line(
                &mut out,
                &ByClass {
                    aws: doc(&["ErrorClass"], &[("DeadLettered", COUNT)]),
                    error_class: class.as_str(),
                    dead_lettered: *n,
                },
            );
        }
        let operations: std::collections::BTreeSet<&str> = self
            .connect_calls
            .keys()
            .chain(self.connect_throttled.keys())
            .copied()
            .collect();
        for op in operations {
            push_line(
                &mut out,
                &ByOperation {
                    aws: doc(
                        &["Operation"],
                        &[("ConnectCalls", COUNT), ("ConnectThrottled", COUNT)],
                    ),
                    operation: op,
                    connect_calls: self.connect_calls.get(op).copied().unwrap_or(0),
                    connect_throttled: self.connect_throttled.get(op).copied().unwrap_or(0),
                },
            );
        }
        out
    }

    /// Writes the documents to stdout in one write, so that no log line falls between
    /// them.
    pub fn write(&self, namespace: &str) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let text = self.documents(namespace, now_ms);
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            tracing::warn!(error = %e, "the metrics could not be written");
        }
    }
}

/// The non-zero counts by Connect operation name (the `Operation` dimension).
fn by_operation(p: &PerOperation) -> BTreeMap<&'static str, u64> {
    [
        ("DescribeInstance", p.describe_instance),
        ("SearchUsers", p.search_users),
        ("DescribeUser", p.describe_user),
        ("UpdateUserIdentityInfo", p.update_user_identity_info),
        ("ListUsers", p.list_users),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(op, n)| (op, u64::from(n)))
    .collect()
}

const COUNT: &str = "Count";
const MILLISECONDS: &str = "Milliseconds";

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Aws<'a> {
    timestamp: u64,
    cloud_watch_metrics: [Directive<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    namespace: String,
    dimensions: [&'a [&'a str]; 1],
    metrics: Vec<MetricDefinition<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDefinition<'a> {
    name: &'a str,
    unit: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Totals<'a> {
    #[serde(rename = "_aws")]
    aws: Aws<'a>,
    updated: u64,
    unchanged: u64,
    handed_back: u64,
    dead_lettered: u64,
    superseded: u64,
    limiter_wait: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dry_run: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ByClass<'a> {
    #[serde(rename = "_aws")]
    aws: Aws<'a>,
    error_class: &'a str,
    dead_lettered: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ByOperation<'a> {
    #[serde(rename = "_aws")]
    aws: Aws<'a>,
    operation: &'a str,
    connect_calls: u64,
    connect_throttled: u64,
}

/// Appends one document as a JSON line. These structs hold only strings and numbers:
/// serialising them cannot fail.
fn push_line(out: &mut String, document: &impl Serialize) {
    if let Ok(json) = serde_json::to_string(document) {
        out.push_str(&json);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::record::HandBack;

    fn parse(text: &str) -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON document"))
            .collect()
    }

    #[test]
    fn the_outcome_counts_add_up_to_the_records() {
        let dispositions = [
            Disposition::Updated,
            Disposition::Unchanged,
            Disposition::Unchanged,
            Disposition::DeadLettered(ErrorClass::MalformedEvent),
            Disposition::DeadLettered(ErrorClass::ValidationError),
            Disposition::DeadLettered(ErrorClass::MalformedEvent),
            Disposition::HandedBack(HandBack::Retry(ErrorClass::ThrottlingException)),
            Disposition::HandedBack(HandBack::GroupOrder),
            Disposition::NotAcknowledged(ErrorClass::UnknownError),
        ];
        let s = Summary::of_dispositions(&dispositions);
        assert_eq!(
            (
                s.updated,
                s.unchanged,
                s.handed_back,
                s.dead_lettered_total()
            ),
            (1, 2, 3, 3)
        );
        assert_eq!(s.dead_lettered[&ErrorClass::MalformedEvent], 2);
        assert_eq!(s.records(), dispositions.len() as u64);
    }

    #[test]
    fn a_run_report_gives_the_calls_throttles_and_wait_of_the_operations_used() {
        let report = RunReport {
            dispositions: vec![Disposition::Updated, Disposition::Unchanged],
            calls: PerOperation {
                describe_user: 2,
                update_user_identity_info: 3,
                ..PerOperation::default()
            },
            throttled: PerOperation {
                update_user_identity_info: 2,
                ..PerOperation::default()
            },
            limiter_wait: Duration::from_millis(40),
            superseded: 1,
            ..RunReport::default()
        };
        let s = Summary::of_report(&report);
        assert_eq!((s.updated, s.unchanged), (1, 1));
        assert_eq!(
            s.connect_calls,
            BTreeMap::from([("DescribeUser", 2), ("UpdateUserIdentityInfo", 3)])
        );
        assert_eq!(
            s.connect_throttled,
            BTreeMap::from([("UpdateUserIdentityInfo", 2)])
        );
        assert_eq!(s.limiter_wait, Duration::from_millis(40));
        assert_eq!(s.superseded, 1);
    }

    #[test]
    fn list_users_is_counted_in_connect_calls_and_connect_throttled() {
        let report = RunReport {
            dispositions: vec![Disposition::Unchanged],
            calls: PerOperation {
                list_users: 4,
                search_users: 1,
                ..PerOperation::default()
            },
            throttled: PerOperation {
                list_users: 1,
                ..PerOperation::default()
            },
            ..RunReport::default()
        };
        let s = Summary::of_report(&report);
        assert_eq!(s.connect_calls.get("ListUsers"), Some(&4));
        assert_eq!(s.connect_throttled.get("ListUsers"), Some(&1));
        let docs = parse(&s.documents("NS", 1));
        let list = docs
            .iter()
            .find(|d| d["Operation"] == "ListUsers")
            .expect("a ListUsers document");
        assert_eq!(
            (
                list["ConnectCalls"].as_u64(),
                list["ConnectThrottled"].as_u64()
            ),
            (Some(4), Some(1))
        );
    }

    #[test]
    fn the_totals_document_declares_every_outcome_and_the_limiter_wait_in_milliseconds() {
        let s = Summary {
            updated: 2,
            unchanged: 1,
            limiter_wait: Duration::from_micros(1500),
            ..Summary::default()
        };
        let docs = parse(&s.documents("Shadow", 1_764_403_200_000));
        assert_eq!(
            docs.len(),
            1,
            "no class or operation documents without counts"
        );
        let d = &docs[0];
        assert_eq!(d["_aws"]["Timestamp"], json!(1_764_403_200_000_u64));
        let directive = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Shadow");
        assert_eq!(directive["Dimensions"], json!([[]]));
        assert_eq!(
            directive["Metrics"],
            json!([
                {"Name": "Updated", "Unit": "Count"},
                {"Name": "Unchanged", "Unit": "Count"},
                {"Name": "HandedBack", "Unit": "Count"},
                {"Name": "DeadLettered", "Unit": "Count"},
                {"Name": "Superseded", "Unit": "Count"},
                {"Name": "LimiterWait", "Unit": "Milliseconds"},
            ])
        );
        assert_eq!(
            (
                &d["Updated"],
                &d["Unchanged"],
                &d["HandedBack"],
                &d["DeadLettered"]
            ),
            (&json!(2), &json!(1), &json!(0), &json!(0))
        );
        assert_eq!(d["LimiterWait"], json!(1.5));
        assert!(d.get("DryRun").is_none());
    }

    #[test]
    fn dead_letters_are_counted_again_by_class_and_calls_by_operation() {
        let mut s = Summary::of_dispositions(&[
            Disposition::DeadLettered(ErrorClass::PolicyViolation),
            Disposition::DeadLettered(ErrorClass::PolicyViolation),
            Disposition::DeadLettered(ErrorClass::UnknownError),
        ]);
        s.connect_calls.insert("DescribeUser", 4);
        s.connect_throttled.insert("DescribeUser", 1);
        s.connect_throttled.insert("UpdateUserIdentityInfo", 2);
        s.dry_run = true;
        let docs = parse(&s.documents(DEFAULT_NAMESPACE, 0));
        assert_eq!(docs[0]["DeadLettered"], json!(3));
        assert_eq!(docs[0]["DryRun"], json!(true));
        let by_class: Vec<(&str, u64)> = docs
            .iter()
            .filter(|d| d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == json!([["ErrorClass"]]))
            .map(|d| {
                (
                    d["ErrorClass"].as_str().unwrap(),
                    d["DeadLettered"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(by_class, vec![("PolicyViolation", 2), ("UnknownError", 1)]);
        let by_op: Vec<(&str, u64, u64)> = docs
            .iter()
            .filter(|d| d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == json!([["Operation"]]))
            .map(|d| {
                (
                    d["Operation"].as_str().unwrap(),
                    d["ConnectCalls"].as_u64().unwrap(),
                    d["ConnectThrottled"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            by_op,
            vec![("DescribeUser", 4, 1), ("UpdateUserIdentityInfo", 0, 2)]
        );
        for d in &docs {
            assert_eq!(
                d["_aws"]["CloudWatchMetrics"][0]["Namespace"],
                DEFAULT_NAMESPACE
            );
        }
    }
}
