//! `p2c demo --events`: the initial load by scheduled runs, then the documents travel by events only. Sales
//! writes fire the webhooks registered in the sandbox's Dataverse, F&O's confirmation and invoice posting send
//! business events; the local events ingress puts flow messages on the queues and local triggers (1 s batching
//! window) run the same handler as the Lambdas. No scheduled run moves the documents.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use p2c_sandbox::{EventKind, Sandbox};
use p2c_sync::{Deps, FlowName, RunOptions, RunReport, run_flow};
use serde_json::{Value, json};

use crate::{
    events, local,
    trigger::{Trigger, TriggerOptions},
};

const COMPANY: &str = "usmf";
const WAIT: Duration = Duration::from_secs(60);

/// Polls `done` until it holds; the seconds it took, or an error naming `what`.
async fn wait_for(what: &str, started: Instant, mut done: impl AsyncFnMut() -> bool) -> Result<f64> {
    while started.elapsed() < WAIT {
        if done().await {
            return Ok(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{what}: not there after {} s", WAIT.as_secs())
}

async fn linked(deps: &Deps, entity: &str, id: &str) -> Option<String> {
    let links = deps
        .state
        .get_links(entity, COMPANY, "sales", &[id.to_string()])
        .await
        .ok()?;
    links.get(id).map(|l| l.target_key.clone())
}

fn sales_order(sb: &Sandbox, id: &str) -> Value {
    sb.sales_get("salesorders", id).unwrap_or_default()
}

pub async fn run(accounts: usize, as_json: bool) -> Result<bool> {
    let sb = local::start_sandbox(None, accounts).await?;
    let (aws, _moto) = local::aws().await?;
    let cfg = local::sandbox_config(&sb, "p2c-demo", "p2c-demo-")?;
    let deps = Arc::new(Deps::new(cfg, &aws).await?);
    crate::commands::ensure_all(&deps.state, &deps.queues).await?;
    let say = |line: String| {
        if !as_json {
            println!("{line}");
        }
    };
    let opts = RunOptions {
        trigger: "demo".into(),
        ..Default::default()
    };
    let mut reports: Vec<RunReport> = Vec::new();
    for f in [
        FlowName::AccountsToFno,
        FlowName::ProductsToSales,
        FlowName::ContactsToFno,
    ] {
        reports.push(run_flow(&deps, f, COMPANY, &opts).await?);
    }
    say(format!(
        "Initial load by scheduled runs: {} customers, {} products.",
        sb.fno_rows("CustomersV2").len(),
        sb.sales_rows("products").len()
    ));
    let ev = events::local(&sb, &deps, &aws, &FlowName::ALL).await?;
    say(format!(
        "Events: ingress {} ; {} webhook steps registered in Dataverse; F&O business events activated.",
        ev.url,
        ev.registration.steps.len()
    ));
    let trigger = Trigger::start(deps.clone(), &FlowName::ALL, TriggerOptions::default());
    let timings = story(&sb, &deps, &say).await;
    reports.extend(trigger.stop().await);
    sb.settle_events(Duration::from_secs(10)).await;
    let deliveries = sb.event_deliveries();
    let webhooks = deliveries.iter().filter(|d| d.kind == EventKind::Webhook).count();
    let business = deliveries.len() - webhooks;
    let counts = ev.ingress.counts();
    let complete = timings.is_ok();
    if as_json {
        println!(
            "{}",
            json!({"runs": reports, "events": {"webhooks": webhooks, "business_events": business, "ingress": counts},
                   "story": match &timings { Ok(v) => v.clone(), Err(e) => json!({"error": e.to_string()}) }})
        );
    } else {
        if let Err(e) = &timings {
            println!("The story stopped: {e:#}");
        }
        println!(
            "\n{webhooks} webhooks and {business} business events sent; the ingress accepted {}, ignored {}, refused {} \
             and queued {} messages.\n",
            counts.accepted, counts.ignored, counts.rejected, counts.messages
        );
        crate::commands::print_reports(&reports, false);
    }
    Ok(complete && reports.iter().all(|r| r.failed == 0))
}

/// The documents' journey, each step timed from the change that starts it.
async fn story(sb: &Sandbox, deps: &Deps, say: &impl Fn(String)) -> Result<Value> {
    let t = Instant::now();
    let s = sb.seed_story();
    say(format!(
        "Sales: quote {} and order {} activated.",
        s.quote_number, s.order_number
    ));
    let quote = wait_for("the quote in F&O", t, async || {
        linked(deps, "quote", &s.quote_id).await.is_some()
    })
    .await?;
    say(format!("  F&O has quote {} after {quote:.2} s", s.quote_number));
    let order = wait_for("the order in F&O", t, async || {
        linked(deps, "salesorder", &s.order_id).await.is_some()
    })
    .await?;
    let number = linked(deps, "salesorder", &s.order_id).await.unwrap_or_default();
    say(format!("  F&O has order {number} after {order:.2} s"));
    let t = Instant::now();
    sb.fno_confirm_order(COMPANY, &number);
    say(format!("F&O: order {number} confirmed."));
    let confirmed = wait_for("the confirmation in Sales", t, async || {
        sales_order(sb, &s.order_id)["msdynce_processingstatus"] == 647_390_001
    })
    .await?;
    say(format!(
        "  Sales shows it Confirmed, with F&O's totals, after {confirmed:.2} s"
    ));
    let t = Instant::now();
    let invoice = sb.fno_invoice_order(COMPANY, &number);
    say(format!("F&O: order {number} invoiced as {invoice}."));
    let invoiced = wait_for("the invoice in Sales", t, async || {
        sales_order(sb, &s.order_id)["statecode"] == 4
    })
    .await?;
    say(format!(
        "  Sales has invoice {invoice} and the order is Invoiced after {invoiced:.2} s"
    ));
    Ok(
        json!({"quote_in_fno_s": quote, "order_in_fno_s": order, "confirmation_in_sales_s": confirmed,
              "invoice_in_sales_s": invoiced, "quote": s.quote_number, "order": number, "invoice": invoice}),
    )
}
