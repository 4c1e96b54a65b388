//! `p2c bench --scenario latency`: how long a Sales change takes to reach F&O by events. Account changes are
//! made at a steady rate in the sandbox (each sets a distinct phone number); each fires the registered webhook,
//! the events ingress queues a message, a local trigger (1 s batching window, batches of 10, like the template's
//! SQS event source) runs the accounts-to-fno handler, which writes F&O. Latency = time of the F&O write that
//! carries the change minus time of the Sales write, both from the sandbox's write journal. A change that never
//! reaches F&O is lost; one overwritten in Sales by a later change to the same account before it was synced is
//! superseded (its successor's value is what F&O must end with).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use p2c_sandbox::Service;
use p2c_sync::{FlowName, RunOptions, run_flow};
use serde_json::{Value, json};

use crate::{
    bench::BenchArgs,
    events,
    trigger::{Trigger, TriggerOptions},
};

const FLOW: FlowName = FlowName::AccountsToFno;
/// How long to wait after the last change for the last writes.
const DRAIN: Duration = Duration::from_secs(60);
/// Accounts changed in turn (each change on a different account unless there are more changes).
const MAX_ACCOUNTS: usize = 5000;

struct Change {
    account_id: String,
    account_number: String,
    value: String,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub async fn run(a: &BenchArgs) -> Result<Value> {
    let changes_n = a.records.max(1);
    let accounts = changes_n.clamp(10, MAX_ACCOUNTS);
    let rig = crate::bench::rig(accounts, a).await?;
    let deps = Arc::new(rig.deps().await?);
    let primed = run_flow(&deps, FLOW, "usmf", &RunOptions::default()).await?;
    let aws = p2c_state::aws_config(Some(&rig.aws_endpoint)).await;
    let ev = events::local(&rig.sb, &deps, &aws, &[FLOW]).await?;
    let phone = deps.templates(FLOW)[0]
        .fields
        .iter()
        .find(|f| f.source.path() == Some("telephone1"))
        .map(|f| f.target.clone())
        .context("the accounts template maps no telephone1")?;
    let trigger = Trigger::start(deps.clone(), &[FLOW], TriggerOptions::default());
    rig.sb.record_writes(true);
    let rows: Vec<(String, String)> = rig
        .sb
        .sales_rows("accounts")
        .into_iter()
        .filter_map(|r| {
            Some((
                r["accountid"].as_str()?.to_string(),
                r["accountnumber"].as_str()?.to_string(),
            ))
        })
        .collect();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate.max(0.01)));
    let mut changes = Vec::with_capacity(changes_n);
    for i in 0..changes_n {
        tick.tick().await;
        let (id, number) = &rows[i % rows.len()];
        let value = format!("+1 555 {i:07}");
        rig.sb.sales_update("accounts", id, json!({"telephone1": value}));
        changes.push(Change {
            account_id: id.clone(),
            account_number: number.clone(),
            value,
        });
    }
    let changing_s = started.elapsed().as_secs_f64();
    let until = Instant::now() + DRAIN;
    let mut outcome = measure(&rig.sb.writes(), &changes, &phone);
    while outcome.missing > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        outcome = measure(&rig.sb.writes(), &changes, &phone);
    }
    let runs = trigger.stop().await;
    let deliveries = rig.sb.event_deliveries();
    let mut lat = outcome.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    let s = |ms: f64| (ms / 10.0).round() / 100.0;
    let (p50, p95, p99) = (
        s(percentile(&lat, 50.0)),
        s(percentile(&lat, 95.0)),
        s(percentile(&lat, 99.0)),
    );
    let max = s(lat.last().copied().unwrap_or(0.0));
    Ok(json!({
        "scenario": "change-to-target latency by events (Sales account -> webhook -> ingress -> SQS -> worker -> F&O)",
        "changes": changes_n, "rate_per_s": a.rate, "accounts": rows.len(), "changing_s": changing_s,
        "initial_load_written": primed.written,
        "latency_s": {"p50": p50, "p95": p95, "p99": p99, "max": max,
                      "mean": s(lat.iter().sum::<f64>() / lat.len().max(1) as f64)},
        "measured": lat.len(), "superseded": outcome.superseded, "lost": outcome.missing,
        "webhooks_sent": deliveries.len(),
        "webhooks_failed": deliveries.iter().filter(|d| !d.status.is_some_and(|s| (200..300).contains(&s))).count(),
        "ingress": ev.ingress.counts(),
        "worker_invocations": runs.len(),
        "records_written": runs.iter().map(|r| r.written).sum::<u64>(),
        "records_skipped": runs.iter().map(|r| r.skipped).sum::<u64>(),
        "fno_customer_writes": outcome.fno_writes,
        "trigger": {"batching_window_s": 1, "batch_size": 10, "pollers": 1},
        "target": "p99 <= 10 s, p50 <= 3 s, 0 lost",
        "met": p99 <= 10.0 && p50 <= 3.0 && outcome.missing == 0,
    }))
}

struct Outcome {
    latencies_ms: Vec<f64>,
    superseded: usize,
    missing: usize,
    fno_writes: usize,
}

/// Matches each change with the first F&O write of its customer that carries its value.
fn measure(writes: &[p2c_sandbox::WriteRecord], changes: &[Change], phone: &str) -> Outcome {
    let mut changed_at: HashMap<(&str, &str), f64> = HashMap::new();
    let mut written_at: HashMap<(String, String), f64> = HashMap::new();
    let mut fno_writes = 0;
    for w in writes {
        let Some(row) = &w.row else { continue };
        match (w.service, w.entity.as_str()) {
            (Service::Sales, "accounts") => {
                if let Some(v) = row["telephone1"].as_str() {
                    changed_at.entry((w.key.as_str(), v)).or_insert(w.at_ms);
                }
            }
            (Service::Fno, "CustomersV2") => {
                fno_writes += 1;
                if let (Some(acct), Some(v)) = (row["CustomerAccount"].as_str(), row[phone].as_str()) {
                    written_at
                        .entry((acct.to_ascii_lowercase(), v.to_string()))
                        .or_insert(w.at_ms);
                }
            }
            _ => {}
        }
    }
    // The last change of each account: what F&O must end with.
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        last.insert(c.account_id.as_str(), i);
    }
    let mut out = Outcome {
        latencies_ms: Vec::new(),
        superseded: 0,
        missing: 0,
        fno_writes,
    };
    for (i, c) in changes.iter().enumerate() {
        let at = changed_at.get(&(c.account_id.as_str(), c.value.as_str()));
        let w = written_at.get(&(c.account_number.to_ascii_lowercase(), c.value.clone()));
        match (at, w) {
            (Some(a), Some(w)) => out.latencies_ms.push((w - a).max(0.0)),
            _ if last.get(c.account_id.as_str()) != Some(&i) => out.superseded += 1,
            _ => out.missing += 1,
        }
    }
    out
}

pub fn print(r: &Value) {
    let l = &r["latency_s"];
    println!(
        "{} changes at {}/s over {} accounts ({:.1} s of changes); trigger: batching window {} s, batch {}",
        r["changes"],
        r["rate_per_s"],
        r["accounts"],
        r["changing_s"].as_f64().unwrap_or(0.0),
        r["trigger"]["batching_window_s"],
        r["trigger"]["batch_size"]
    );
    println!(
        "latency (s): p50 {}  p95 {}  p99 {}  max {}  mean {}",
        l["p50"], l["p95"], l["p99"], l["max"], l["mean"]
    );
    println!(
        "measured {}, superseded {}, lost {}; webhooks {} ({} failed); ingress {}; worker invocations {}, records \
         written {}, skipped {}; F&O customer writes {}",
        r["measured"],
        r["superseded"],
        r["lost"],
        r["webhooks_sent"],
        r["webhooks_failed"],
        r["ingress"],
        r["worker_invocations"],
        r["records_written"],
        r["records_skipped"],
        r["fno_customer_writes"]
    );
    println!(
        "target {}: {}",
        r["target"].as_str().unwrap_or(""),
        if r["met"] == true { "met" } else { "NOT met" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(
            (percentile(&v, 50.0), percentile(&v, 99.0), percentile(&v, 100.0)),
            (50.0, 99.0, 100.0)
        );
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
