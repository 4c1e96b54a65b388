//! `p2c bench`: measures a flow against the sandbox with per-request latency and the service-protection limits
//! on, in p2c's normal mode and in the naive one-request-per-record mode, and prints both and their ratio.
//! Each run is a child `p2c` process, so its CPU time and peak RSS are its own (not the sandbox's).

use std::{collections::BTreeMap, fs::File, path::PathBuf, process::Command, time::Instant};

use anyhow::{Context, Result, bail};
use p2c_sandbox::{Sandbox, SandboxConfig, ServiceLimits};
use p2c_state::LocalAws;
use p2c_sync::{Deps, FlowName};
use serde_json::{Value, json};

use crate::cost::{Cost, Function, US_EAST_1, Usage, cost};

/// What `p2c bench` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Accounts to F&O, every account changed.
    Changed,
    /// Accounts to F&O, nothing changed (a full re-read).
    Unchanged,
    /// Quotes of 5 lines to F&O.
    Quotes,
    /// The initial load of accounts: one run, then segments drained by 1 and by --workers workers.
    Initial,
    /// All of the above (not latency).
    All,
    /// Change-to-target latency with events: --records account changes in Sales at --rate per second, each
    /// through webhook → events ingress → queue → worker (local SQS trigger, 1 s batching window) → F&O; the
    /// time from the Sales write to the F&O write, both from the sandbox's write journal.
    Latency,
    /// The monthly AWS cost of the seven flows for one company on 5-minute schedules with nothing changing.
    Idle,
    /// F&O → Sales sweeps at scale: --records orders of 3 lines and --records products seeded straight into the
    /// sandbox; the initial sweep, 1 % changed, nothing changed; p2c and (unless --no-naive) the naive sweep.
    Sweep,
}

pub struct BenchArgs {
    pub scenario: Scenario,
    pub records: usize,
    pub latency_ms: u64,
    pub op_ms: u64,
    pub workers: usize,
    /// Also run the naive mode (slow by design: one request per record at the API's rate).
    pub naive: bool,
    /// Scenario latency: changes per second.
    pub rate: f64,
    /// Scenario sweep: only this flow.
    pub flow: Option<p2c_sync::FlowName>,
}

/// One measured run (or set of concurrent worker runs).
#[derive(Debug, Default, serde::Serialize)]
pub struct Measure {
    pub mode: String,
    pub records: u64,
    pub written: u64,
    pub wall_s: f64,
    pub records_per_s: f64,
    pub dynamics_per_1000: BTreeMap<String, f64>,
    pub dynamics_total_per_1000: f64,
    pub dynamodb_per_1000: f64,
    pub cpu_s_per_1000: f64,
    pub peak_rss_mb: f64,
    pub throttled_share: f64,
    pub dynamodb_requests: u64,
    /// What the runs used on AWS, and its cost scaled to 1,000,000 records.
    pub usage: Usage,
    pub cost_per_million: Cost,
}

pub struct Rig {
    pub sb: Sandbox,
    pub aws_endpoint: String,
    table: String,
    prefix: String,
    _moto: Option<LocalAws>,
}

pub(crate) async fn rig(records: usize, a: &BenchArgs) -> Result<Rig> {
    let sb = Sandbox::start(SandboxConfig {
        latency: std::time::Duration::from_millis(a.latency_ms),
        op_time: std::time::Duration::from_millis(a.op_ms),
        limits: Some(ServiceLimits::default()),
        ..Default::default()
    })
    .await?;
    sb.seed_demo(records);
    let (endpoint, moto) = match std::env::var("AWS_ENDPOINT_URL").ok().filter(|v| !v.is_empty()) {
        Some(e) => (e, None),
        None => {
            let m = LocalAws::start().await?;
            (m.endpoint.clone(), Some(m))
        }
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let rig = Rig {
        sb,
        aws_endpoint: endpoint,
        table: format!("p2c-bench-{id}"),
        prefix: format!("b{}-", &id[..10]),
        _moto: moto,
    };
    let deps = rig.deps().await?;
    crate::commands::ensure_all(&deps.state, &deps.queues).await?;
    Ok(rig)
}

/// A rig with customers, products and `quotes` quotes of 5 lines ready to go to F&O.
async fn rig_quotes(a: &BenchArgs, quotes: usize) -> Result<Rig> {
    let rig = rig(100, a).await?;
    rig.measure("prime", &["run", "accounts-to-fno"], &[], 1, 100).await?;
    rig.measure("prime", &["run", "products-to-sales"], &[], 1, 5).await?;
    rig.sb.seed_quotes(quotes, 5);
    Ok(rig)
}

impl Rig {
    fn env(&self) -> Vec<(String, String)> {
        let c = self.sb.config();
        [
            ("AWS_ENDPOINT_URL", self.aws_endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("P2C_SALES_URL", self.sb.sales_url()),
            ("P2C_FNO_URL", self.sb.fno_url()),
            ("P2C_AUTHORITY_URL", self.sb.authority_url()),
            ("P2C_TENANT_ID", c.tenant.clone()),
            ("P2C_CLIENT_ID", c.client_id.clone()),
            ("P2C_CLIENT_SECRET", c.client_secret.clone()),
            ("P2C_TABLE", self.table.clone()),
            ("P2C_QUEUE_PREFIX", self.prefix.clone()),
            ("P2C_COMPANIES", "usmf=usmf".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub async fn deps(&self) -> Result<Deps> {
        let env = self.env();
        let cfg = p2c_sync::Config::from_lookup(|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))?;
        let aws = p2c_state::aws_config(Some(&self.aws_endpoint)).await;
        Ok(Deps::new(cfg, &aws).await?)
    }

    /// Runs `workers` child processes of `p2c <args>` at once and measures them together.
    pub(crate) async fn measure(
        &self,
        mode: &str,
        args: &[&str],
        extra: &[(&str, &str)],
        workers: usize,
        records: u64,
    ) -> Result<Measure> {
        let before = self.sb.requests();
        let started = Instant::now();
        let mut children = Vec::new();
        for w in 0..workers.max(1) {
            let out: PathBuf =
                std::env::temp_dir().join(format!("p2c-bench-{}-{w}.json", uuid::Uuid::new_v4().simple()));
            let err = out.with_extension("err");
            let child = Command::new(std::env::current_exe()?)
                .args(args)
                .arg("--json")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(self.env())
                .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                .stdout(File::create(&out)?)
                .env("P2C_REPORT_PEAK_RSS", "1")
                .stderr(File::create(&err)?)
                .spawn()
                .context("starting a p2c child")?;
            children.push((child.id() as libc::pid_t, out, err));
        }
        let mut cpu = 0.0;
        let mut rss_kb = 0i64;
        let mut reports: Vec<Value> = Vec::new();
        for (pid, out, err) in children {
            let (status, ru) = tokio::task::spawn_blocking(move || wait4(pid)).await??;
            cpu += ru.0;
            let err_text = std::fs::read_to_string(&err).unwrap_or_default();
            let peak = Some(err_text.as_str()).and_then(|e| {
                e.lines().find_map(|l| {
                    l.strip_prefix("p2c-peak-rss-kb ")
                        .and_then(|n| n.trim().parse::<i64>().ok())
                })
            });
            let _ = std::fs::remove_file(&err);
            rss_kb = rss_kb.max(peak.unwrap_or(0));
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            let _ = std::fs::remove_file(&out);
            if status != 0 && status != 1 {
                let tail: String = err_text.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                bail!("p2c {args:?} exited with {status}: {text} {tail}");
            }
            let v: Value = serde_json::from_str(text.trim()).with_context(|| format!("p2c {args:?} output: {text}"))?;
            reports.extend(v["runs"].as_array().cloned().unwrap_or_default());
        }
        let wall = started.elapsed().as_secs_f64();
        let after = self.sb.requests();
        let per_k = |n: f64| if records == 0 { 0.0 } else { n * 1000.0 / records as f64 };
        let mut by = BTreeMap::new();
        for (k, v) in &after {
            let d = v - before.get(k).copied().unwrap_or(0);
            if d > 0 && !k.starts_with("token") {
                by.insert(k.clone(), per_k(d as f64));
            }
        }
        let total: f64 = by.values().sum();
        let sum = |f: &dyn Fn(&Value) -> u64| reports.iter().map(f).sum::<u64>();
        let requests = sum(&|r| {
            r["dynamics_requests"]["by_endpoint"]
                .as_object()
                .map(|m| m.values().filter_map(Value::as_u64).sum())
                .unwrap_or(0)
        });
        let throttled = sum(&|r| r["dynamics_requests"]["throttled"].as_u64().unwrap_or(0));
        let usage = usage_of(&reports, args.first() == Some(&"run"));
        let per_million = if records == 0 { 0.0 } else { 1e6 / records as f64 };
        Ok(Measure {
            mode: mode.into(),
            records,
            written: sum(&|r| r["written"].as_u64().unwrap_or(0)),
            wall_s: wall,
            records_per_s: records as f64 / wall.max(1e-9),
            dynamics_per_1000: by,
            dynamics_total_per_1000: total,
            dynamodb_per_1000: per_k(sum(&|r| r["dynamodb_requests"].as_u64().unwrap_or(0)) as f64),
            cpu_s_per_1000: per_k(cpu),
            peak_rss_mb: rss_kb as f64 / 1024.0,
            throttled_share: if requests == 0 {
                0.0
            } else {
                throttled as f64 / requests as f64
            },
            dynamodb_requests: sum(&|r| r["dynamodb_requests"].as_u64().unwrap_or(0)),
            cost_per_million: cost(&usage.scaled(per_million), &Function::default_deployment(), &US_EAST_1),
            usage,
        })
    }

    fn touch_all(&self, tag: &str) {
        for a in self.sb.sales_rows("accounts") {
            if let Some(id) = a["accountid"].as_str() {
                self.sb
                    .sales_update("accounts", id, json!({"telephone1": format!("+1 555 {tag}")}));
            }
        }
    }
}

/// What the runs of a measure used on AWS: one Lambda invocation per run billed for the run's duration, the
/// DynamoDB units each counted, and for a scheduled run its Scheduler invocation; a queue worker's run is one
/// SQS receive and one batch delete.
fn usage_of(reports: &[Value], scheduled: bool) -> Usage {
    let f = |k: &str| reports.iter().map(|r| r[k].as_f64().unwrap_or(0.0)).sum::<f64>();
    let runs = reports.len() as f64;
    Usage {
        invocations: runs,
        seconds: f("duration_ms") / 1000.0,
        dynamodb_rru: f("dynamodb_read_units"),
        dynamodb_wru: f("dynamodb_write_units"),
        sqs_requests: if scheduled { 0.0 } else { 2.0 * runs },
        scheduler_invocations: if scheduled { runs } else { 0.0 },
    }
}

/// The child's exit status and CPU seconds (user + system). (Its `ru_maxrss` is not used: after vfork+exec Linux
/// reports the parent's high-water mark there; the child reports its own VmHWM instead.)
fn wait4(pid: libc::pid_t) -> Result<(i32, (f64, i64))> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if r < 0 {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((code, (secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_maxrss)))
}

const NAIVE: &[(&str, &str)] = &[
    ("P2C_BATCH_SIZE", "1"),
    ("P2C_WRITE_CONCURRENCY", "1"),
    ("P2C_SKIP_UNCHANGED", "false"),
];

fn pair(name: &str, p2c: Measure, naive: Option<Measure>) -> Value {
    let Some(naive) = naive else {
        return json!({"scenario": name, "p2c": p2c});
    };
    json!({
        "scenario": name,
        "p2c": p2c,
        "naive": naive,
        "ratio": {
            "requests_fewer": naive.dynamics_total_per_1000 / p2c.dynamics_total_per_1000.max(1e-9),
            "records_per_s_faster": p2c.records_per_s / naive.records_per_s.max(1e-9),
        }
    })
}

pub async fn bench(a: &BenchArgs) -> Result<Value> {
    let mut out = Vec::new();
    let n = a.records as u64;
    let run = ["run", "accounts-to-fno"];
    let s = a.scenario;
    if matches!(s, Scenario::All | Scenario::Changed | Scenario::Unchanged) {
        let rig = rig(a.records, a).await?;
        rig.measure("prime", &run, &[], 1, n).await?;
        if s != Scenario::Unchanged {
            rig.touch_all("0100");
            let p = rig.measure("p2c", &run, &[], 1, n).await?;
            rig.touch_all("0200");
            let naive = if a.naive {
                Some(rig.measure("naive", &run, NAIVE, 1, n).await?)
            } else {
                None
            };
            out.push(pair("accounts, every record changed", p, naive));
        }
        if s != Scenario::Changed {
            let full = ["run", "accounts-to-fno", "--full-resync"];
            let p = rig.measure("p2c", &full, &[], 1, n).await?;
            let naive = if a.naive {
                Some(rig.measure("naive", &full, NAIVE, 1, n).await?)
            } else {
                None
            };
            out.push(pair("accounts, nothing changed (full re-read)", p, naive));
        }
    }
    if matches!(s, Scenario::All | Scenario::Quotes) {
        // Quotes of 5 lines: customers and products synced first, then the quotes go to F&O.
        let rig = rig(100, a).await?;
        rig.measure("prime", &run, &[], 1, 100).await?;
        rig.measure("prime", &["run", "products-to-sales"], &[], 1, 5).await?;
        let quotes = (a.records / 5).max(1);
        let lines = rig.sb.seed_quotes(quotes, 5) as u64;
        let p = rig.measure("p2c", &["run", "quotes-to-fno"], &[], 1, lines).await?;
        // The naive way: the same quotes again, one request per record.
        let naive = if a.naive {
            let rig2 = rig_quotes(a, quotes).await?;
            Some(
                rig2.measure("naive", &["run", "quotes-to-fno"], NAIVE, 1, lines)
                    .await?,
            )
        } else {
            None
        };
        out.push(pair("quotes of 5 lines (per 1000 lines)", p, naive));
    }
    if s == Scenario::Latency {
        out.push(crate::latency::run(a).await?);
    }
    if s == Scenario::Idle {
        out.push(crate::idle::run(a).await?);
    }
    if s == Scenario::Sweep {
        out.push(crate::sweep_bench::run(a).await?);
    }
    if matches!(s, Scenario::All | Scenario::Initial) {
        // One scheduled run doing the whole initial load (streaming, pages of 5,000).
        let rig1 = rig(a.records, a).await?;
        let single = rig1.measure("one run", &run, &[], 1, n).await?;
        drop(rig1);
        // The same load split into segments on the queue, drained by 1 and by W workers.
        let mut scale = Vec::new();
        for w in [1, a.workers] {
            let rig = rig(a.records, a).await?;
            let deps = rig.deps().await?;
            let queued = p2c_sync::segments::enqueue_backfill(&deps, FlowName::AccountsToFno, "usmf", 100).await?;
            let m = rig
                .measure(
                    &format!("{w} worker(s)"),
                    &["drain", "accounts-to-fno"],
                    &[],
                    w,
                    queued as u64,
                )
                .await?;
            let customers = rig.sb.fno_rows("CustomersV2").len();
            scale.push(json!({"workers": w, "measure": m, "customers_in_fno": customers, "lost": queued.saturating_sub(customers)}));
        }
        let speedup = scale[0]["measure"]["wall_s"].as_f64().unwrap_or(0.0)
            / scale[1]["measure"]["wall_s"].as_f64().unwrap_or(1.0).max(1e-9);
        out.push(json!({"scenario": "initial load", "single_run": single, "segments": scale, "speedup": speedup}));
    }
    Ok(
        json!({"records": a.records, "latency_ms": a.latency_ms, "op_ms": a.op_ms, "limits": "6000 requests and 1200 s of execution / 300 s, 52 concurrent", "results": out}),
    )
}

pub fn print(v: &Value) {
    println!(
        "p2c bench: {} records, {} ms per request + {} ms per operation, service protection {}",
        v["records"],
        v["latency_ms"],
        v["op_ms"],
        v["limits"].as_str().unwrap_or("")
    );
    let line = |m: &Value| {
        let c = &m["cost_per_million"];
        let u = &m["usage"];
        let cost_line = format!(
            "{:14}AWS cost per 1,000,000 records: ${:.4} (Lambda ${:.4}, DynamoDB ${:.4}, SQS ${:.4}, Scheduler ${:.4}); measured: {:.1} RRU, {} WRU, {} DynamoDB requests, {:.2} s billed",
            "",
            c["total"].as_f64().unwrap_or(0.0),
            c["lambda"].as_f64().unwrap_or(0.0),
            c["dynamodb"].as_f64().unwrap_or(0.0),
            c["sqs"].as_f64().unwrap_or(0.0),
            c["scheduler"].as_f64().unwrap_or(0.0),
            u["dynamodb_rru"].as_f64().unwrap_or(0.0),
            u["dynamodb_wru"].as_f64().unwrap_or(0.0),
            m["dynamodb_requests"],
            u["seconds"].as_f64().unwrap_or(0.0),
        );
        let text = format!(
            "{:<12} records {:>7}  written {:>6}  wall {:>7.2}s  {:>8.1} rec/s  dynamics {:>7.2}/1000  dynamodb {:>6.2}/1000  cpu {:>6.3}s/1000  rss {:>5.1} MB  429 {:.2}%\n{:14}by endpoint per 1000: {}",
            m["mode"].as_str().unwrap_or(""),
            m["records"],
            m["written"],
            m["wall_s"].as_f64().unwrap_or(0.0),
            m["records_per_s"].as_f64().unwrap_or(0.0),
            m["dynamics_total_per_1000"].as_f64().unwrap_or(0.0),
            m["dynamodb_per_1000"].as_f64().unwrap_or(0.0),
            m["cpu_s_per_1000"].as_f64().unwrap_or(0.0),
            m["peak_rss_mb"].as_f64().unwrap_or(0.0),
            m["throttled_share"].as_f64().unwrap_or(0.0) * 100.0,
            "",
            m["dynamics_per_1000"]
                .as_object()
                .map(|o| o
                    .iter()
                    .map(|(k, v)| format!("{k} {:.2}", v.as_f64().unwrap_or(0.0)))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
        format!("{text}\n{cost_line}")
    };
    for r in v["results"].as_array().into_iter().flatten() {
        println!("\n== {}", r["scenario"].as_str().unwrap_or(""));
        if r.get("latency_s").is_some() {
            crate::latency::print(r);
        } else if r.get("idle").is_some() {
            crate::idle::print(r);
        } else if r.get("sweeps").is_some() {
            crate::sweep_bench::print(r, &line);
        } else if r.get("p2c").is_some() && r.get("naive").is_none() {
            println!("{}", line(&r["p2c"]));
        } else if r.get("p2c").is_some() {
            println!("{}", line(&r["p2c"]));
            println!("{}", line(&r["naive"]));
            println!(
                "ratio: {:.1}x fewer Dynamics requests, {:.1}x the records/s",
                r["ratio"]["requests_fewer"].as_f64().unwrap_or(0.0),
                r["ratio"]["records_per_s_faster"].as_f64().unwrap_or(0.0)
            );
        } else {
            println!("{}", line(&r["single_run"]));
            for s in r["segments"].as_array().into_iter().flatten() {
                println!(
                    "{}  (customers in F&O {}, lost {})",
                    line(&s["measure"]),
                    s["customers_in_fno"],
                    s["lost"]
                );
            }
            println!(
                "speed-up with more workers: {:.1}x",
                r["speedup"].as_f64().unwrap_or(0.0)
            );
        }
    }
}
