//! Test harness: a sandbox with demo data, a moto_server of its own, and `Deps` wired to both.
//! Each test gets its own moto process and table/queue names, so tests run in parallel.

pub mod expect;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use p2c_sandbox::{Sandbox, SandboxConfig};
use p2c_state::LocalAws;
use p2c_sync::{Company, Config, Deps, FlowName, RunOptions, RunReport, config::SecretSource};
use serde_json::Value;

pub struct Env {
    pub sb: Sandbox,
    pub moto: LocalAws,
    pub aws: aws_config::SdkConfig,
    pub deps: Deps,
}

impl Env {
    /// A sandbox seeded with `accounts` demo accounts, moto, the table and every flow's queues.
    pub async fn start(accounts: usize) -> Env {
        Env::start_with(SandboxConfig::default(), accounts, |_| {}).await
    }

    pub async fn start_with(sb_cfg: SandboxConfig, accounts: usize, tweak: impl FnOnce(&mut Config)) -> Env {
        let sb = Sandbox::start(sb_cfg).await.expect("sandbox starts");
        sb.seed_demo(accounts);
        let moto = LocalAws::start()
            .await
            .expect("moto_server starts (pip install \"moto[server]\")");
        let aws = p2c_state::aws_config(Some(&moto.endpoint)).await;
        let mut cfg = config_for(&sb);
        tweak(&mut cfg);
        let deps = Deps::new(cfg, &aws).await.expect("deps");
        deps.state.ensure_table().await.expect("table");
        for f in FlowName::ALL {
            deps.queues.ensure(f.as_str(), 3, 30).await.expect("queues");
        }
        Env { sb, moto, aws, deps }
    }

    /// Builds a second, independent `Deps` on the same sandbox and moto (another Lambda instance).
    pub async fn another_instance(&self) -> Deps {
        Deps::new(self.deps.cfg.clone(), &self.aws).await.expect("deps")
    }

    /// F&O customers of a company.
    pub fn customers(&self, company: &str) -> Vec<Value> {
        self.sb
            .fno_rows("CustomersV2")
            .into_iter()
            .filter(|r| r["dataAreaId"] == company)
            .collect()
    }

    /// One scheduled run of `flow` for usmf; its counts must add up.
    pub async fn run(&self, flow: FlowName) -> RunReport {
        let r = p2c_sync::run_flow(&self.deps, flow, "usmf", &RunOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{flow}: {e}"));
        assert!(r.balanced(), "{flow}: read = written + skipped + failed: {r:?}");
        r
    }

    /// Processes the flow's queue until it is empty, as the SQS trigger would (the CLI's `drain`): each batch of
    /// received messages goes to `handle_sqs`, and the messages it did not fail are deleted. A record that fails
    /// again is re-queued and received again, until its attempts run out: drain parents first.
    pub async fn drain(&self, flow: FlowName) -> Vec<RunReport> {
        self.drain_passes(flow, 100).await
    }

    /// One delivery of what the flow's queue holds now (at most `passes` receives of up to 10 messages).
    pub async fn drain_passes(&self, flow: FlowName, passes: usize) -> Vec<RunReport> {
        let pair = self.deps.queue_pair(flow).await.expect("queues");
        let mut reports = Vec::new();
        for _ in 0..passes {
            let got = self.deps.queues.receive(&pair.queue_url, 10, 0).await.expect("receive");
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
            let (resp, mut r) = p2c_sync::handle_sqs_report(&self.deps, flow, event).await;
            let failed: Vec<String> = resp
                .batch_item_failures
                .into_iter()
                .map(|b| b.item_identifier)
                .collect();
            let done: Vec<String> = got
                .iter()
                .filter(|m| !failed.contains(&m.message_id))
                .map(|m| m.receipt_handle.clone())
                .collect();
            self.deps.queues.delete(&pair.queue_url, &done).await.expect("delete");
            reports.append(&mut r);
        }
        for r in &reports {
            assert!(r.balanced(), "{flow} (SQS): read = written + skipped + failed: {r:?}");
        }
        reports
    }

    /// Bodies waiting in the flow's queue and DLQ (received and left to become visible again).
    pub async fn queued(&self, flow: FlowName) -> (Vec<String>, Vec<String>) {
        let pair = self.deps.queue_pair(flow).await.expect("queues");
        let mut out = (Vec::new(), Vec::new());
        for (url, dst) in [(&pair.queue_url, &mut out.0), (&pair.dlq_url, &mut out.1)] {
            loop {
                let got = self.deps.queues.receive(url, 10, 0).await.expect("receive");
                if got.is_empty() {
                    break;
                }
                // Delete what we read so the loop ends; tests that need the messages again re-send them.
                let handles: Vec<String> = got.iter().map(|m| m.receipt_handle.clone()).collect();
                dst.extend(got.into_iter().map(|m| m.body));
                self.deps.queues.delete(url, &handles).await.expect("delete");
            }
        }
        out
    }
}

pub fn config_for(sb: &Sandbox) -> Config {
    let c = sb.config();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let mut cfg = Config::from_lookup(|k| match k {
        "P2C_SALES_URL" => Some(sb.sales_url()),
        "P2C_FNO_URL" => Some(sb.fno_url()),
        "P2C_AUTHORITY_URL" => Some(sb.authority_url()),
        "P2C_TENANT_ID" => Some(c.tenant.clone()),
        "P2C_CLIENT_ID" => Some(c.client_id.clone()),
        "P2C_CLIENT_SECRET" => Some(c.client_secret.clone()),
        "P2C_TABLE" => Some(format!("p2c-test-{suffix}")),
        "P2C_QUEUE_PREFIX" => Some(format!("t{}-", &suffix[..12])),
        // Retries at once: the tests drain the queue right after a run (backoff has tests of its own).
        "P2C_RETRY_WINDOW_SECONDS" => Some("0".into()),
        _ => None,
    })
    .expect("config");
    cfg.client_secret = SecretSource::Value(p2c_dynamics::Secret::new(c.client_secret.clone()));
    cfg.companies = vec![Company {
        legal_entity: "usmf".into(),
        business_unit: "usmf".into(),
        include_child_units: true,
    }];
    cfg
}

/// An SQS event carrying `bodies`, with message ids `m0`, `m1`, … (what the Lambda receives).
pub fn sqs_event(bodies: &[String]) -> aws_lambda_events::event::sqs::SqsEvent {
    let mut e = aws_lambda_events::event::sqs::SqsEvent::default();
    for (i, b) in bodies.iter().enumerate() {
        let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
        m.message_id = Some(format!("m{i}"));
        m.receipt_handle = Some(format!("r{i}"));
        m.body = Some(b.clone());
        e.records.push(m);
    }
    e
}
