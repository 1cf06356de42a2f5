//! CloudWatch Embedded Metric Format (SPEC §8): one document per request on stdout,
//! `ScimRequests` with the dimensions `Method`, `Route` (the route template) and
//! `Status`, and `ScimAuthFailures` when the token was missing or wrong.

use std::io::Write;

use serde_json::json;

pub fn document(
    namespace: &str,
    method: &str,
    route: &str,
    status: u16,
    auth_failure: bool,
    now_ms: u64,
) -> String {
    let mut metrics = vec![json!({"Name": "ScimRequests", "Unit": "Count"})];
    let mut doc = json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Method", "Route", "Status"]],
                "Metrics": metrics.clone(),
            }],
        },
        "Method": method,
        "Route": route,
        "Status": status.to_string(),
        "ScimRequests": 1,
    });
    if auth_failure {
        metrics = vec![json!({"Name": "ScimAuthFailures", "Unit": "Count"})];
        doc["_aws"]["CloudWatchMetrics"]
            .as_array_mut()
            .expect("an array")
            .push(json!({"Namespace": namespace, "Dimensions": [[]], "Metrics": metrics}));
        doc["ScimAuthFailures"] = json!(1);
    }
    doc.to_string()
}

pub fn write(namespace: &str, method: &str, route: &str, status: u16, auth_failure: bool) {
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let line = document(namespace, method, route, status, auth_failure, now_ms);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_counts_under_its_method_route_and_status_and_an_auth_failure_apart() {
        let v: serde_json::Value =
            serde_json::from_str(&document("NS", "GET", "/Users", 401, true, 5)).unwrap();
        assert_eq!(v["Route"], "/Users");
        assert_eq!(v["Status"], "401");
        assert_eq!(v["ScimRequests"], 1);
        assert_eq!(v["ScimAuthFailures"], 1);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][1]["Metrics"][0]["Name"],
            "ScimAuthFailures"
        );
        let v: serde_json::Value =
            serde_json::from_str(&document("NS", "GET", "/Users", 200, false, 5)).unwrap();
        assert!(v.get("ScimAuthFailures").is_none());
    }
}
