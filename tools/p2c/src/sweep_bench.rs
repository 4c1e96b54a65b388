//! `p2c bench --scenario sweep`: the F&O → Sales sweeps at scale. --records orders of 3 lines (nine in ten of
//! them Invoiced long ago, as an F&O company's order book is) and --records products are written straight into
//! the sandbox's store; then the initial sweep, a sweep with 1 % of the records changed, and one with nothing
//! changed are measured: F&O and Sales requests, DynamoDB requests and units, wall time, peak RSS, records
//! written, AWS cost. Unless --no-naive, the same on a second rig in the naive mode: every sweep reads every
//! document and every record's link (p2c before issue 15).

use anyhow::Result;
use p2c_sync::FlowName;
use serde_json::{Map, Value, json};

use crate::bench::{BenchArgs, Rig, rig};

/// Every sweep a full one in pages of 1,000, no digests: p2c's sweeps before they learnt to cost what changed.
pub const NAIVE_SWEEP: &[(&str, &str)] = &[
    ("P2C_SWEEP_DIGESTS", "false"),
    ("P2C_FULL_SWEEP_HOURS", "0"),
    ("P2C_SWEEP_PAGE_SIZE", "1000"),
];

/// An order line as F&O numbers them.
const LINES: [&str; 3] = ["1", "2", "3"];

pub async fn run(a: &BenchArgs) -> Result<Value> {
    let mut out = Vec::new();
    let flows = [FlowName::OrdersToSales, FlowName::ProductsToSales];
    for flow in flows.into_iter().filter(|f| a.flow.is_none_or(|only| only == *f)) {
        let mut modes = vec![("p2c", &[][..])];
        if a.naive {
            modes.push(("naive", NAIVE_SWEEP));
        }
        for (mode, env) in modes {
            let scenario = format!("sweep {}: {} {}, {mode}", flow.as_str(), a.records, noun(flow));
            // A flow that fails does not hide the other's figures.
            match sweeps(a, flow, env).await {
                Ok((measures, changed)) => out.push(json!({
                    "scenario": scenario,
                    "sweep": measures,
                    "changed_records": changed,
                })),
                Err(e) => out.push(json!({"scenario": scenario, "sweep": [], "error": format!("{e:#}")})),
            }
        }
    }
    Ok(json!({"scenario": "sweep", "sweeps": out}))
}

/// The initial sweep, 1 % changed, nothing changed; and how many records were changed.
async fn sweeps(a: &BenchArgs, flow: FlowName, env: &[(&str, &str)]) -> Result<(Vec<Value>, u64)> {
    let (rig, records) = seeded(a, flow).await?;
    let args = ["run", flow.as_str()];
    let initial = rig.measure("initial", &args, env, 1, records).await?;
    let changed = change(&rig, flow, a.records);
    let one_pct = rig.measure("1% changed", &args, env, 1, records).await?;
    let none = rig.measure("none changed", &args, env, 1, records).await?;
    Ok((vec![json!(initial), json!(one_pct), json!(none)], changed))
}

fn noun(flow: FlowName) -> &'static str {
    if flow == FlowName::OrdersToSales {
        "orders of 3 lines"
    } else {
        "products"
    }
}

/// A rig with customers and the demo products in Sales, and --records orders (with lines) or products in F&O.
/// Returns the rig and the number of F&O records a full sweep reads.
async fn seeded(a: &BenchArgs, flow: FlowName) -> Result<(Rig, u64)> {
    let rig = rig(20, a).await?;
    rig.measure("prime", &["run", "accounts-to-fno"], &[], 1, 20).await?;
    rig.measure("prime", &["run", "products-to-sales"], &[], 1, 5).await?;
    let n = a.records.max(1);
    if flow == FlowName::ProductsToSales {
        rig.sb.fno_copies(
            "SellableReleasedProducts",
            &[("dataAreaId", "usmf"), ("ProductNumber", "D0001")],
            n,
            |i, r| {
                r.insert("ProductNumber".into(), json!(product_number(i)));
                r.insert("ProductName".into(), json!(format!("Bench product {i}")));
            },
        );
        return Ok((rig, n as u64));
    }
    let customer = rig.sb.sales_rows("accounts")[0]["accountnumber"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let so = rig
        .sb
        .fno_create_order("usmf", &customer, &[("D0001", 1.0), ("D0002", 2.0), ("D0003", 3.0)]);
    rig.sb.fno_confirm_order("usmf", &so);
    let number = |i: usize| format!("BO-{i:07}");
    // Nine in ten are old and Invoiced: they can no longer change.
    let closed = |i: usize, r: &mut Map<String, Value>, header: bool| {
        if !i.is_multiple_of(10) {
            r.insert("SalesOrderProcessingStatus".into(), json!("Invoiced"));
            if header {
                r.insert("SalesOrderStatus".into(), json!("Invoiced"));
                r.insert("OrderCreationDateTime".into(), json!("2021-03-01T12:00:00Z"));
            } else {
                r.insert("SalesOrderLineStatus".into(), json!("Invoiced"));
            }
        }
    };
    rig.sb.fno_copies(
        "CDSSalesOrderHeaders",
        &[("dataAreaId", "usmf"), ("SalesOrderNumber", &so)],
        n,
        |i, r| {
            r.insert("SalesOrderNumber".into(), json!(number(i)));
            closed(i, r, true);
        },
    );
    for line in LINES {
        rig.sb.fno_copies(
            "CDSSalesOrderLines",
            &[
                ("dataAreaId", "usmf"),
                ("SalesOrderNumber", &so),
                ("LineCreationSequenceNumber", line),
            ],
            n,
            |i, r| {
                r.insert("SalesOrderNumber".into(), json!(number(i)));
                closed(i, r, false);
            },
        );
    }
    Ok((rig, (n * (1 + LINES.len())) as u64))
}

fn product_number(i: usize) -> String {
    format!("BP-{i:07}")
}

/// Changes 1 % of the records, spread over the key range: products' names, orders' customer reference (of the
/// open orders: an Invoiced order does not change). Returns how many.
fn change(rig: &Rig, flow: FlowName, n: usize) -> u64 {
    let count = (n / 100).max(1);
    let mut changed = 0;
    for c in 0..count {
        if flow == FlowName::ProductsToSales {
            let i = c * 100 + 37;
            if i < n {
                let key = product_number(i);
                rig.sb.fno_update(
                    "SellableReleasedProducts",
                    &[("dataAreaId", "usmf"), ("ProductNumber", &key)],
                    json!({"ProductName": format!("Bench product {i}, renamed")}),
                );
                changed += 1;
            }
        } else {
            // Open orders are every tenth; each changed one is ten open orders apart.
            let i = (c * 10 + 3) * 10 % n.max(1);
            let key = format!("BO-{i:07}");
            rig.sb.fno_update(
                "CDSSalesOrderHeaders",
                &[("dataAreaId", "usmf"), ("SalesOrderNumber", &key)],
                json!({"CustomersOrderReference": format!("PO {c}")}),
            );
            changed += 1;
        }
    }
    changed
}

pub fn print(r: &Value, line: &dyn Fn(&Value) -> String) {
    for s in r["sweeps"].as_array().into_iter().flatten() {
        println!(
            "\n== {} ({} changed)",
            s["scenario"].as_str().unwrap_or(""),
            s["changed_records"]
        );
        for m in s["sweep"].as_array().into_iter().flatten() {
            println!("{}", line(m));
        }
    }
}
