//! `p2c bench --scenario idle`: what p2c costs a month when nothing changes. Every flow of one company runs once
//! to sync the demo data (accounts, products, a quote, an order confirmed and invoiced in F&O); then one more run
//! of each flow, with nothing changed, is measured (its DynamoDB units, its duration at the function's memory,
//! its Lambda and Scheduler invocation) and multiplied by the runs of a month on a 5-minute schedule.

use anyhow::Result;
use p2c_sync::FlowName;
use serde_json::{Value, json};

use crate::bench::{BenchArgs, rig};
use crate::cost::{Function, US_EAST_1, Usage, cost, describe};

/// 30 days of runs every 5 minutes.
pub const RUNS_PER_MONTH: f64 = 30.0 * 24.0 * 12.0;

pub async fn run(a: &BenchArgs) -> Result<Value> {
    let rig = rig(20, a).await?;
    let flows = FlowName::ALL;
    for f in [FlowName::AccountsToFno, FlowName::ProductsToSales] {
        rig.measure("prime", &["run", f.as_str()], &[], 1, 1).await?;
    }
    let story = rig.sb.seed_story();
    for f in flows {
        rig.measure("prime", &["run", f.as_str()], &[], 1, 1).await?;
    }
    rig.sb.fno_confirm_order("usmf", &story.order_number);
    rig.sb.fno_invoice_order("usmf", &story.order_number);
    // Twice: the invoice arrives, then the order follows what the invoice did.
    for _ in 0..2 {
        for f in flows {
            rig.measure("prime", &["run", f.as_str()], &[], 1, 1).await?;
        }
    }
    let function = Function::default_deployment();
    let mut month = Usage::default();
    let mut rows = Vec::new();
    for f in flows {
        let m = rig.measure(f.as_str(), &["run", f.as_str()], &[], 1, 1).await?;
        let monthly = m.usage.scaled(RUNS_PER_MONTH);
        month.add(&monthly);
        rows.push(json!({
            "flow": f.as_str(),
            "written": m.written,
            "per_run": m.usage,
            "dynamodb_requests": m.dynamodb_requests,
            "dynamics_requests": m.dynamics_total_per_1000 / 1000.0,
            "monthly": cost(&monthly, &function, &US_EAST_1),
        }));
    }
    let total = cost(&month, &function, &US_EAST_1);
    Ok(json!({
        "scenario": "idle: seven flows, one company, every 5 minutes, nothing changed",
        "idle": rows,
        "runs_per_month": RUNS_PER_MONTH,
        "function": function,
        "prices": US_EAST_1,
        "monthly_usage": month,
        "monthly_cost": total,
        "monthly_line": describe(&total, &month),
    }))
}

pub fn print(r: &Value) {
    for f in r["idle"].as_array().into_iter().flatten() {
        let u = &f["per_run"];
        println!(
            "{:<18} per run: {:.3} s, {} DynamoDB requests ({:.1} RRU, {} WRU), {} Dynamics requests, {} written  → ${:.4}/month",
            f["flow"].as_str().unwrap_or(""),
            u["seconds"].as_f64().unwrap_or(0.0),
            f["dynamodb_requests"],
            u["dynamodb_rru"].as_f64().unwrap_or(0.0),
            u["dynamodb_wru"].as_f64().unwrap_or(0.0),
            f["dynamics_requests"].as_f64().unwrap_or(0.0).round(),
            f["written"],
            f["monthly"]["total"].as_f64().unwrap_or(0.0),
        );
    }
    println!(
        "monthly ({} runs per flow, {} MB {}): {}",
        r["runs_per_month"],
        r["function"]["memory_mb"],
        r["function"]["architecture"].as_str().unwrap_or(""),
        r["monthly_line"].as_str().unwrap_or("")
    );
}
