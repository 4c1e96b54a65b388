//! CloudWatch Embedded Metric Format: one JSON line per run that CloudWatch turns into metrics, so the
//! dashboard and alarms need no agent and no extra API calls.

use serde_json::{Value, json};

use crate::report::RunReport;

pub const NAMESPACE: &str = "p2c";

/// The EMF document for a finished run (dimensions Stack, Flow and Company).
pub fn emf_line(r: &RunReport, run_failed: bool, stack: &str) -> String {
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let count = |n: &str| json!({"Name": n, "Unit": "Count"});
    let mut metrics = vec![
        count("Read"),
        count("Written"),
        count("Skipped"),
        count("Failed"),
        count("DeadLettered"),
        count("RunFailed"),
        count("DynamicsRequests"),
        count("Throttled"),
        json!({"Name": "Duration", "Unit": "Milliseconds"}),
    ];
    let mut doc = json!({
        "Stack": stack,
        "Flow": r.flow,
        "Company": r.company,
        "Trigger": r.trigger,
        "RunId": r.run_id,
        "Read": r.read,
        "Written": r.written,
        "Skipped": r.skipped,
        "Failed": r.failed,
        "DeadLettered": r.dead_lettered,
        "RunFailed": u64::from(run_failed),
        "DynamicsRequests": r.dynamics_requests.total(),
        "Throttled": r.dynamics_requests.throttled,
        "Duration": r.duration_ms,
    });
    if let Some(lag) = r.lag_seconds {
        metrics.push(json!({"Name": "Lag", "Unit": "Seconds"}));
        doc["Lag"] = Value::from(lag);
    }
    doc["_aws"] = json!({
        "Timestamp": now_ms,
        "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["Stack", "Flow", "Company"]], "Metrics": metrics}],
    });
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_declares_every_metric_it_carries() {
        let mut r = RunReport::new("r1", "accounts-to-fno", "usmf", "schedule");
        r.read = 10;
        r.written = 7;
        r.skipped = 2;
        r.failed = 1;
        r.lag_seconds = Some(300);
        let v: Value = serde_json::from_str(&emf_line(&r, false, "p2c-prod")).unwrap();
        let decl = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(decl["Namespace"], "p2c");
        assert_eq!(decl["Dimensions"], json!([["Stack", "Flow", "Company"]]));
        assert_eq!(v["Stack"], "p2c-prod");
        for m in decl["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(v[name].is_number(), "metric {name} has a value");
        }
        assert_eq!(
            (v["Read"].as_u64(), v["Written"].as_u64(), v["Lag"].as_u64()),
            (Some(10), Some(7), Some(300))
        );
        assert_eq!(v["Flow"], "accounts-to-fno");
    }
}
