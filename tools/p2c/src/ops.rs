//! Read-only operator views: `p2c status` and `p2c links`.

use anyhow::Result;
use p2c_state::{Queues, StateStore};
use p2c_sync::{Config, FlowName};
use serde_json::{Value, json};

/// The table, queues and companies named by the environment (no Dynamics settings needed).
pub struct Ops {
    pub state: StateStore,
    pub queues: Queues,
    /// Never empty.
    pub companies: Vec<String>,
}

impl Ops {
    pub async fn from_env() -> Result<Ops> {
        let cfg = aws_side_config()?;
        let aws = p2c_state::aws_config(None).await;
        Ok(Ops {
            state: StateStore::new(aws_sdk_dynamodb::Client::new(&aws), cfg.table),
            queues: Queues::new(aws_sdk_sqs::Client::new(&aws), cfg.queue_prefix),
            companies: cfg.companies.into_iter().map(|c| c.legal_entity).collect(),
        })
    }
}

/// [`Config`] (its defaults and checks) for the settings [`Ops`] uses: P2C_TABLE, P2C_QUEUE_PREFIX and
/// P2C_COMPANIES come from the environment; the Dynamics settings `Config` requires are stand-ins, as these
/// commands never call Dynamics. No other variable is read, so none can make them fail.
fn aws_side_config() -> Result<Config> {
    Ok(Config::from_lookup(|k| match k {
        "P2C_TABLE" | "P2C_QUEUE_PREFIX" | "P2C_COMPANIES" => std::env::var(k).ok().filter(|v| !v.trim().is_empty()),
        "P2C_SALES_URL" | "P2C_FNO_URL" => Some("https://not-used.invalid".into()),
        "P2C_TENANT_ID" | "P2C_CLIENT_ID" | "P2C_CLIENT_SECRET" => Some("not-used".into()),
        _ => None,
    })?)
}

/// The system a link's source key belongs to (the state table's `sales` / `fno`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    Sales,
    Fno,
}

impl System {
    pub fn as_str(self) -> &'static str {
        match self {
            System::Sales => "sales",
            System::Fno => "fno",
        }
    }
}

fn age(rfc3339: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok()?;
    Some((time::OffsetDateTime::now_utc() - t).whole_seconds())
}

fn human(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Per flow and company: watermark and lag, last runs, queue and DLQ depth, lease holder.
pub async fn status(ops: &Ops, flows: &[FlowName]) -> Result<Value> {
    let mut rows = Vec::new();
    for &f in flows {
        let queues = match ops.queues.urls(f.as_str()).await {
            Ok(pair) => {
                let q = ops.queues.depth(&pair.queue_url).await?;
                let d = ops.queues.depth(&pair.dlq_url).await?;
                json!({"queue_visible": q.0, "queue_in_flight": q.1, "dlq": d.0 + d.1})
            }
            Err(e) => json!({"error": e.to_string()}),
        };
        for c in &ops.companies {
            let wm = ops.state.watermark(f.as_str(), c).await?;
            let runs = ops.state.recent_runs(f.as_str(), c, 3).await?;
            let lease = ops.state.lease_holder(f.as_str(), c).await?;
            let paused = ops.state.pause_mark(f.as_str(), c).await?;
            rows.push(json!({
                "flow": f.as_str(),
                "company": c,
                "watermark": wm.as_ref().map(|w| json!({"version": w.version, "updated_at": w.updated_at, "lag_seconds": age(&w.updated_at)})),
                "runs": runs,
                "queues": queues,
                "lease_holder": lease.map(|l| json!({"owner": l.owner, "expires_at_epoch": l.expires_at_epoch})),
                "paused": paused,
            }));
        }
    }
    Ok(json!({ "flows": rows }))
}

pub fn print_status(v: &Value) {
    println!(
        "{:<18} {:<7} {:>6} {:>8} {:>6} {:>5}  {:<28} lease",
        "flow", "company", "lag", "queued", "dlq", "runs", "last run"
    );
    for r in v["flows"].as_array().into_iter().flatten() {
        let lag = r["watermark"]["lag_seconds"]
            .as_i64()
            .map(human)
            .unwrap_or_else(|| "never".into());
        let last = r["runs"].get(0).map(|run| {
            format!(
                "{} r{} w{} s{} f{} {}ms",
                run["started_at"].as_str().unwrap_or("").get(..19).unwrap_or(""),
                run["read"],
                run["written"],
                run["skipped"],
                run["failed"],
                run["duration_ms"]
            )
        });
        println!(
            "{:<18} {:<7} {:>6} {:>8} {:>6} {:>5}  {:<28} {}",
            r["flow"].as_str().unwrap_or(""),
            r["company"].as_str().unwrap_or(""),
            lag,
            r["queues"]["queue_visible"]
                .as_u64()
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            r["queues"]["dlq"]
                .as_u64()
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            r["runs"].as_array().map(Vec::len).unwrap_or(0),
            last.unwrap_or_else(|| "-".into()),
            r["lease_holder"]["owner"].as_str().unwrap_or("-"),
        );
        if let Some(since) = r["paused"]["since"].as_str() {
            println!(
                "    paused since {since} by {}: p2c resume {} --company {}",
                r["paused"]["by"].as_str().unwrap_or("?"),
                r["flow"].as_str().unwrap_or(""),
                r["company"].as_str().unwrap_or("")
            );
        }
        if let Some(skips) = r["runs"].get(0).and_then(|run| run["skipped_by_reason"].as_object()) {
            let list: Vec<String> = skips.iter().map(|(why, n)| format!("{why}: {n}")).collect();
            if !list.is_empty() {
                println!("    skipped by the last run: {}", list.join(", "));
            }
        }
        for run in r["runs"].as_array().into_iter().flatten() {
            for e in run["first_errors"].as_array().into_iter().flatten().take(3) {
                println!("    ! {}", e.as_str().unwrap_or(""));
            }
        }
    }
}

/// Both systems' keys, hashes and time of the last sync of one record, with its recent history.
pub async fn links(ops: &Ops, entity: &str, key: &str, company: &str, system: System) -> Result<Value> {
    let system = system.as_str();
    let link = ops
        .state
        .get_links(entity, company, system, &[key.to_string()])
        .await?
        .remove(key);
    let history = ops.state.history(entity, company, system, key, 20).await?;
    Ok(json!({"entity": entity, "company": company, "system": system, "key": key, "link": link, "history": history}))
}

pub fn print_links(v: &Value) {
    let l = &v["link"];
    if l.is_null() {
        println!(
            "no link for {} {} in {} ({})",
            v["entity"].as_str().unwrap_or(""),
            v["key"].as_str().unwrap_or(""),
            v["company"].as_str().unwrap_or(""),
            v["system"].as_str().unwrap_or("")
        );
    } else {
        println!(
            "{} {} ({}, {}) → {}",
            l["entity"].as_str().unwrap_or(""),
            l["source_key"].as_str().unwrap_or(""),
            l["company"].as_str().unwrap_or(""),
            l["system"].as_str().unwrap_or(""),
            l["target_key"].as_str().unwrap_or("")
        );
        println!(
            "  last sync {}  source version {}  target hash {}",
            l["synced_at"].as_str().unwrap_or(""),
            l["source_version"].as_str().unwrap_or("-"),
            l["target_hash"].as_str().unwrap_or("-")
        );
    }
    for h in v["history"].as_array().into_iter().flatten() {
        println!(
            "  {}  → {}  hash {}",
            h["synced_at"].as_str().unwrap_or(""),
            h["target_key"].as_str().unwrap_or(""),
            h["target_hash"].as_str().unwrap_or("-")
        );
    }
}
