//! The commands. Each returns Ok(true) when nothing failed, Ok(false) when some record failed.

use anyhow::{Result, bail};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use p2c_state::{Queues, StateStore};
use p2c_sync::{Config, Deps, FlowName, RunOptions, RunReport, handle_sqs_report, run_flow};
use serde_json::json;

use crate::{local, ops::Ops};

/// Receive limit before SQS moves a message to the DLQ, and the visibility timeout (≥ 6 × function timeout).
const MAX_RECEIVE: u32 = 5;
const VISIBILITY_SECS: u32 = 360;

pub async fn sandbox(port: u16, accounts: usize, tls: bool, events_url: Option<&str>) -> Result<bool> {
    let ports = (port != 0).then_some((port, port + 1, port + 2));
    let sb = local::start_sandbox_with(ports, accounts, tls).await?;
    let c = sb.config();
    if let Some(url) = events_url {
        let keys = p2c_sync::EventsConfig::from_env()?.keys;
        let p2c_sync::entry::events::KeySource::Value(k) = keys else {
            bail!("--events-url needs the key itself in P2C_EVENTS_SECRET");
        };
        sb.send_events_to(url, k.webhook.expose(), k.business_events.expose());
        println!("Events: every Sales change posts a webhook to {url}/dataverse, F&O business events go to {url}/fno");
    }
    if let Some(pem) = sb.tls_ca_pem() {
        let path = std::env::temp_dir().join(format!("p2c-sandbox-ca-{}.pem", std::process::id()));
        std::fs::write(&path, pem)?;
        println!("HTTPS: trust the sandbox CA in {}", path.display());
        println!(
            "export SSL_CERT_FILE={0} REQUESTS_CA_BUNDLE={0} NODE_EXTRA_CA_CERTS={0}",
            path.display()
        );
        println!();
    }
    println!("Sales (Dataverse)  {}/api/data/v9.2", sb.sales_url());
    println!("F&O                {}/data", sb.fno_url());
    println!(
        "Token endpoint     {}/{}/oauth2/v2.0/token",
        sb.authority_url(),
        c.tenant
    );
    println!();
    println!(
        "export P2C_SALES_URL={} P2C_FNO_URL={} P2C_AUTHORITY_URL={}",
        sb.sales_url(),
        sb.fno_url(),
        sb.authority_url()
    );
    println!(
        "export P2C_TENANT_ID={} P2C_CLIENT_ID={} P2C_CLIENT_SECRET={} P2C_COMPANIES=usmf=usmf",
        c.tenant, c.client_id, c.client_secret
    );
    println!();
    println!("Serving until Ctrl-C.");
    tokio::signal::ctrl_c().await?;
    Ok(true)
}

pub async fn ensure_all(state: &StateStore, queues: &Queues) -> Result<Vec<serde_json::Value>> {
    state.ensure_table().await?;
    let mut out = Vec::new();
    for f in FlowName::ALL {
        let pair = queues.ensure(f.as_str(), MAX_RECEIVE, VISIBILITY_SECS).await?;
        out.push(json!({"flow": f.as_str(), "queue_url": pair.queue_url, "dlq_url": pair.dlq_url}));
    }
    Ok(out)
}

pub async fn init(as_json: bool) -> Result<bool> {
    let ops = Ops::from_env().await?;
    let table = ops.state.table();
    let created = ensure_all(&ops.state, &ops.queues).await?;
    if as_json {
        println!("{}", json!({"table": table, "queues": created}));
    } else {
        println!("table {table}: ready");
        for q in created {
            println!(
                "{}: {} (DLQ {})",
                q["flow"].as_str().unwrap_or(""),
                q["queue_url"].as_str().unwrap_or(""),
                q["dlq_url"].as_str().unwrap_or("")
            );
        }
    }
    Ok(true)
}

async fn deps_from_env() -> Result<Deps> {
    deps_with(false).await
}

async fn deps_with(dry_run: bool) -> Result<Deps> {
    let mut cfg = Config::from_env()?;
    cfg.dry_run = dry_run;
    let aws = p2c_state::aws_config(None).await;
    Ok(Deps::new(cfg, &aws).await?)
}

pub async fn run(f: FlowName, company: Option<&str>, full_resync: bool, dry_run: bool, as_json: bool) -> Result<bool> {
    let deps = deps_with(dry_run).await?;
    let companies = deps.companies_or_all(company);
    let opts = RunOptions {
        full_resync,
        trigger: if dry_run { "dry-run" } else { "cli" }.into(),
        ..Default::default()
    };
    let mut reports = Vec::new();
    for c in companies {
        reports.push(run_flow(&deps, f, &c, &opts).await?);
    }
    if let Some(dry) = &deps.dry_run {
        let planned = crate::dry::diff_planned(&deps, dry.planned()).await?;
        if as_json {
            println!("{}", json!({ "dry_run": true, "runs": reports, "planned": planned }));
        } else {
            print_reports(&reports, false);
            crate::dry::print(&planned);
        }
        return Ok(reports.iter().all(|r| r.failed == 0));
    }
    print_reports(&reports, as_json);
    Ok(reports.iter().all(|r| r.failed == 0))
}

/// Receives until the queue is empty and hands each batch to the same handler the SQS trigger calls.
pub async fn drain_queue(deps: &Deps, f: FlowName) -> Result<Vec<RunReport>> {
    let pair = deps.queue_pair(f).await?;
    let mut reports = Vec::new();
    // Bounded: a message that keeps failing becomes invisible (visibility timeout) and is not seen again here.
    for _ in 0..10_000 {
        let got = deps.queues.receive(&pair.queue_url, 10, 0).await?;
        if got.is_empty() {
            break;
        }
        let mut event = SqsEvent::default();
        for m in &got {
            let mut msg = SqsMessage::default();
            msg.message_id = Some(m.message_id.clone());
            msg.receipt_handle = Some(m.receipt_handle.clone());
            msg.body = Some(m.body.clone());
            msg.attributes
                .insert("ApproximateReceiveCount".into(), m.receive_count.to_string());
            event.records.push(msg);
        }
        let (resp, mut r) = handle_sqs_report(deps, f, event).await;
        let failed: std::collections::HashSet<String> = resp
            .batch_item_failures
            .iter()
            .map(|b| b.item_identifier.clone())
            .collect();
        let done: Vec<String> = got
            .iter()
            .filter(|m| !failed.contains(&m.message_id))
            .map(|m| m.receipt_handle.clone())
            .collect();
        deps.queues.delete(&pair.queue_url, &done).await?;
        reports.append(&mut r);
    }
    Ok(reports)
}

pub async fn drain(f: FlowName, as_json: bool) -> Result<bool> {
    let deps = deps_from_env().await?;
    let reports = drain_queue(&deps, f).await?;
    print_reports(&reports, as_json);
    Ok(reports.iter().all(|r| r.failed == 0))
}

pub async fn replay(
    f: FlowName,
    company: Option<&str>,
    limit: Option<usize>,
    dry_run: bool,
    as_json: bool,
) -> Result<bool> {
    let queues = Ops::from_env().await?.queues;
    let pair = queues.urls(f.as_str()).await?;
    // A body that does not parse has no company: it moves only when no company was asked for.
    let company = company.map(str::to_ascii_lowercase);
    let keep = |body: &str| match &company {
        None => true,
        Some(c) => p2c_sync::Message::parse(Some(body)).is_ok_and(|m| m.company.eq_ignore_ascii_case(c)),
    };
    let moved = queues
        .move_messages_where(&pair.dlq_url, &pair.queue_url, limit, dry_run, keep)
        .await?;
    if as_json {
        println!(
            "{}",
            json!({"flow": f.as_str(), "dry_run": dry_run, "moved": moved.len(), "messages": moved})
        );
    } else {
        let verb = if dry_run { "would move" } else { "moved" };
        println!(
            "{}: {verb} {} message(s) from the DLQ back to the queue",
            f,
            moved.len()
        );
        for m in &moved {
            println!("  {m}");
        }
    }
    Ok(true)
}

/// `p2c pause` (enabled = false) and `p2c resume`: the flow's schedules in the stack P2C_STACK (default `p2c`).
pub async fn pause_resume(f: FlowName, company: Option<&str>, enabled: bool, as_json: bool) -> Result<bool> {
    let stack = std::env::var("P2C_STACK")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "p2c".into());
    let ops = Ops::from_env().await?;
    let aws = p2c_state::aws_config(None).await;
    let client = aws_sdk_scheduler::Client::new(&aws);
    let by = format!(
        "{} (p2c {})",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        if enabled { "resume" } else { "pause" }
    );
    let changes = crate::schedules::pause_or_resume(&client, &ops.state, &stack, f, company, enabled, &by).await?;
    let state = if enabled { "ENABLED" } else { "DISABLED" };
    if as_json {
        println!(
            "{}",
            json!({"flow": f.as_str(), "stack": stack, "state": state, "schedules": changes})
        );
        return Ok(true);
    }
    for c in &changes {
        println!("{f} {}: {} -> {} ({})", c.company, c.was, c.now, c.name);
    }
    if enabled {
        println!(
            "The next run of each reads every change since its watermark (a full re-read, unchanged records skipped, \
             if the pause outlived Dataverse's delta token)."
        );
    } else {
        println!(
            "Paused until p2c resume, across deploys. Queued retries still run. The company's lag alarm fires while \
             the flow stays paused."
        );
    }
    Ok(true)
}

/// The company the demo data belongs to.
const DEMO_COMPANY: &str = "usmf";

/// The prospect-to-cash story on the sandbox: customers and products first, then a quote and an order in Sales go
/// to F&O, F&O confirms the order (status and totals come back to Sales) and invoices it (the invoice comes to
/// Sales, the order becomes Invoiced). Every flow runs; the story stops early only when a flow it needs failed.
pub async fn demo(accounts: usize, events: bool, as_json: bool) -> Result<bool> {
    if events {
        return crate::demo_events::run(accounts, as_json).await;
    }
    let sb = local::start_sandbox(None, accounts).await?;
    let (aws, _moto) = local::aws().await?;
    let cfg = local::sandbox_config(&sb, "p2c-demo", "p2c-demo-")?;
    let deps = Deps::new(cfg, &aws).await?;
    ensure_all(&deps.state, &deps.queues).await?;
    let opts = RunOptions {
        trigger: "demo".into(),
        ..Default::default()
    };
    let say = |line: String| {
        if !as_json {
            println!("{line}");
        }
    };
    let mut reports: Vec<RunReport> = Vec::new();
    let mut story = serde_json::Map::new();
    // Runs the flows in turn; false when one failed (the story cannot go on without its records).
    let run_all = async |flows: &[FlowName], reports: &mut Vec<RunReport>| -> Result<bool> {
        for &f in flows {
            let r = run_flow(&deps, f, DEMO_COMPANY, &opts).await?;
            let failed = r.failed > 0;
            reports.push(r);
            if failed {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let complete = 'story: {
        say(format!(
            "Sales has {accounts} accounts and {} contacts, F&O {} products (company {DEMO_COMPANY}).",
            sb.sales_rows("contacts").len(),
            sb.fno_rows("SellableReleasedProducts").len()
        ));
        let parents = [
            FlowName::AccountsToFno,
            FlowName::ProductsToSales,
            FlowName::ContactsToFno,
        ];
        if !run_all(&parents, &mut reports).await? {
            break 'story false;
        }
        let s = sb.seed_story();
        say(format!(
            "Sales: quote {} and order {} for account {}.",
            s.quote_number, s.order_number, s.account_number
        ));
        story.insert("quote".into(), json!(s.quote_number));
        story.insert("order".into(), json!(s.order_number));
        if !run_all(&[FlowName::QuotesToFno, FlowName::OrdersToFno], &mut reports).await? {
            break 'story false;
        }
        sb.fno_confirm_order(DEMO_COMPANY, &s.order_number);
        say(format!("F&O: order {} confirmed, totals calculated.", s.order_number));
        if !run_all(&[FlowName::OrdersToSales], &mut reports).await? {
            break 'story false;
        }
        let invoice = sb.fno_invoice_order(DEMO_COMPANY, &s.order_number);
        say(format!("F&O: order {} invoiced as {invoice}.", s.order_number));
        story.insert("invoice".into(), json!(invoice));
        if !run_all(&[FlowName::InvoicesToSales], &mut reports).await? {
            break 'story false;
        }
        let order = sb.sales_get("salesorders", &s.order_id).unwrap_or_default();
        let invoiced = order["statecode"] == 4 && order["statuscode"] == 100_003;
        say(format!(
            "Sales: invoice {invoice} arrived; order {} is {}.",
            s.order_number,
            if invoiced { "Invoiced" } else { "not Invoiced" }
        ));
        story.insert("order_invoiced".into(), json!(invoiced));
        invoiced
    };
    story.insert("complete".into(), json!(complete));
    if as_json {
        println!("{}", json!({ "runs": reports, "story": story }));
    } else {
        println!();
        print_reports(&reports, false);
        if !complete {
            println!("The story stopped early: a flow it needs failed (see above).");
        }
    }
    if reports.iter().any(|r| !r.balanced()) {
        bail!("a run's counts do not add up (read != written + skipped + failed)");
    }
    Ok(complete && reports.iter().all(|r| r.failed == 0))
}

pub fn print_reports(reports: &[RunReport], as_json: bool) {
    if as_json {
        println!("{}", json!({ "runs": reports }));
        return;
    }
    println!(
        "{:<18} {:<7} {:>7} {:>8} {:>8} {:>7} {:>10}",
        "flow", "company", "read", "written", "skipped", "failed", "requests"
    );
    for r in reports {
        println!(
            "{:<18} {:<7} {:>7} {:>8} {:>8} {:>7} {:>10}",
            r.flow,
            r.company,
            r.read,
            r.written,
            r.skipped,
            r.failed,
            r.dynamics_requests.total()
        );
        if let Some(h) = &r.lease_held_by {
            println!("  another run holds the lease ({h}); nothing done");
        }
        for e in r.errors.iter().take(10) {
            println!("  {} [{}]: {}", e.key, e.routed, e.reason);
        }
    }
}

pub async fn status(f: Option<FlowName>, as_json: bool) -> Result<bool> {
    let flows = f.map_or(FlowName::ALL.to_vec(), |f| vec![f]);
    let ops = Ops::from_env().await?;
    let v = crate::ops::status(&ops, &flows).await?;
    if as_json {
        println!("{v}");
    } else {
        crate::ops::print_status(&v);
    }
    Ok(true)
}

pub async fn links(
    entity: &str,
    key: &str,
    company: Option<&str>,
    system: crate::ops::System,
    as_json: bool,
) -> Result<bool> {
    let ops = Ops::from_env().await?;
    let company = company.unwrap_or(&ops.companies[0]);
    let v = crate::ops::links(&ops, entity, key, company, system).await?;
    if as_json {
        println!("{v}");
    } else {
        crate::ops::print_links(&v);
    }
    Ok(!v["link"].is_null())
}

pub async fn backfill(f: FlowName, company: Option<&str>, as_json: bool) -> Result<bool> {
    let deps = deps_from_env().await?;
    let companies = deps.companies_or_all(company);
    let mut reports = Vec::new();
    for c in companies {
        // An estimate for the ETA; Sales counts the whole table (all business units), up to 5,000.
        let total = match f {
            FlowName::AccountsToFno => deps
                .sales
                .count(&deps.templates(f)[0].source_entity)
                .await
                .ok()
                .flatten(),
            _ => None,
        };
        let opts = RunOptions {
            full_resync: true,
            trigger: "backfill".into(),
            progress: Some(crate::progress::printer(f.as_str(), &c, total)),
            ..Default::default()
        };
        let r = run_flow(&deps, f, &c, &opts).await?;
        crate::progress::finish();
        reports.push(r);
    }
    print_reports(&reports, as_json);
    Ok(reports.iter().all(|r| r.failed == 0))
}

pub async fn reconcile(f: FlowName, company: Option<&str>, fix: bool, as_json: bool) -> Result<bool> {
    let deps = deps_from_env().await?;
    let companies = deps.companies_or_all(company);
    let mut all = Vec::new();
    for c in companies {
        all.push(p2c_sync::reconcile::reconcile(&deps, f, &c, fix).await?);
    }
    if as_json {
        println!("{}", json!({ "reconciliations": all }));
    } else {
        for r in &all {
            println!(
                "{} {}: {} in Sales, {} in F&O (owned by p2c), {} links",
                r.flow, r.company, r.source_count, r.target_count, r.link_count
            );
            let list = |name: &str, v: &[String]| {
                if !v.is_empty() {
                    println!(
                        "  {name} ({}): {}",
                        v.len(),
                        v.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            };
            list("missing in the target", &r.missing_in_target);
            list("missing in the source", &r.missing_in_source);
            list("orphan links", &r.orphan_links);
            list("cannot be mapped", &r.unmappable);
            for m in r.mismatches.iter().take(50) {
                println!("  {} {}: expected {} found {}", m.key, m.field, m.expected, m.actual);
            }
            if r.clean() {
                println!("  both systems agree");
            }
            if r.enqueued > 0 {
                println!(
                    "  {} record(s) queued for a resync; run `p2c drain {}` or let the queue trigger do it",
                    r.enqueued, r.flow
                );
            }
        }
    }
    Ok(all.iter().all(|r| r.clean() || r.enqueued > 0))
}

pub async fn bench(args: crate::bench::BenchArgs, as_json: bool) -> Result<bool> {
    let v = crate::bench::bench(&args).await?;
    if as_json {
        println!("{v}");
    } else {
        crate::bench::print(&v);
    }
    Ok(true)
}

pub async fn backfill_segments(f: FlowName, company: Option<&str>, keys: usize, as_json: bool) -> Result<bool> {
    let deps = deps_from_env().await?;
    let companies = deps.companies_or_all(company);
    let mut out = Vec::new();
    for c in companies {
        let n = p2c_sync::segments::enqueue_backfill(&deps, f, &c, keys).await?;
        out.push(json!({"flow": f.as_str(), "company": c, "records": n, "messages": n.div_ceil(keys.max(1))}));
    }
    if as_json {
        println!("{}", json!({ "enqueued": out }));
    } else {
        for o in &out {
            println!(
                "{} {}: {} records enqueued in {} messages; the queue trigger (or `p2c drain`) processes them",
                o["flow"].as_str().unwrap_or(""),
                o["company"].as_str().unwrap_or(""),
                o["records"],
                o["messages"]
            );
        }
    }
    Ok(true)
}
