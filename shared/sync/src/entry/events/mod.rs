//! The events ingress (`functions/events`): Dataverse webhooks and F&O business events become flow messages on
//! the flows' queues within a second, so a change syncs in seconds instead of at the next schedule. Schedules
//! stay the safety net: an event that never arrives is picked up by the next scheduled run.
//!
//! One call, in this order (the table in the README):
//! 1. path: `/dataverse` (webhooks) or `/fno` (business events), else 404; method POST, else 405;
//! 2. key: Dataverse's `x-p2c-webhook-key` header (HttpHeader) or `?code=` (WebhookKey); F&O's `?code=` in the
//!    endpoint URL; compared in constant time; missing or wrong → 401;
//! 3. size: over `P2C_EVENTS_MAX_BYTES` → 413;
//! 4. body: not the documented payload → 400;
//! 5. route: a table, message, business event or company p2c does not sync is acknowledged (202 "ignored") and
//!    counted, not an error (the sender must not retry it);
//! 6. one message `{"v":1,"flow","company","keys","reason":"event"}` per flow and company goes to the flow's queue
//!    (202); if a queue cannot be reached → 503, which Dataverse and F&O retry.
//!
//! Refused calls enqueue nothing. Messages carry keys only: the worker re-reads the record, so a duplicated or late
//! event is harmless (it writes only what changed), and a storm of events for one record collapses in the worker
//! (keys are de-duplicated per batch; unchanged content is not written).

pub mod config;
pub mod http;
pub mod keys;
pub mod lambda;
#[cfg(feature = "local-server")]
pub mod local;
pub mod payload;
pub mod register;
pub mod sink;

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use serde_json::{Value, json};

use crate::{
    config::Company,
    error::SyncError,
    flow_name::FlowName,
    flows::{WatchedTable, watched_tables},
    message::{Message, Reason},
};
pub use config::{BusinessEventRoute, EventKeys, EventsConfig, KeySource};
pub use http::{HttpRequest, HttpResponse};
use payload::{BusinessEvent, DataverseEvent};
pub use sink::{MemorySink, Sink, SqsSink};

/// Who is calling, by path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Dataverse,
    Fno,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Dataverse => "dataverse",
            Source::Fno => "fno",
        }
    }
}

/// What became of one call.
#[derive(Debug)]
enum Outcome {
    Accepted(Vec<(FlowName, String, Vec<String>)>),
    Ignored(String),
    Rejected(u16, String),
    /// The queue could not be reached: the sender should retry.
    Unavailable(String),
}

/// Calls by outcome since start (for tests, the bench and the metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IngressCounts {
    pub accepted: u64,
    pub ignored: u64,
    pub rejected: u64,
    pub unavailable: u64,
    /// Messages sent to queues.
    pub messages: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    ignored: AtomicU64,
    rejected: AtomicU64,
    unavailable: AtomicU64,
    messages: AtomicU64,
}

pub struct Ingress {
    cfg: EventsConfig,
    keys: EventKeys,
    tables: Vec<WatchedTable>,
    sink: Sink,
    counters: Counters,
}

impl Ingress {
    /// What the Lambda's `main` calls: configuration and keys from the environment (and Secrets Manager), the
    /// flows' queues through the default AWS configuration.
    pub async fn from_env() -> Result<Ingress, SyncError> {
        let cfg = EventsConfig::from_env()?;
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ingress::new(cfg, &aws).await
    }

    pub async fn new(cfg: EventsConfig, aws: &aws_config::SdkConfig) -> Result<Ingress, SyncError> {
        let keys = load_keys(&cfg.keys, aws).await?;
        let queues = p2c_state::Queues::new(aws_sdk_sqs::Client::new(aws), cfg.queue_prefix.clone());
        let sink = Sink::Sqs(SqsSink::new(queues, &cfg.queue_urls));
        Ok(Ingress::with_sink(cfg, keys, sink))
    }

    pub fn with_sink(cfg: EventsConfig, keys: EventKeys, sink: Sink) -> Ingress {
        let tables = cfg
            .flows
            .iter()
            .flat_map(|f| watched_tables(*f, &p2c_mapping::templates_for(f.as_str())))
            .collect();
        Ingress {
            cfg,
            keys,
            tables,
            sink,
            counters: Counters::default(),
        }
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    pub fn counts(&self) -> IngressCounts {
        let c = &self.counters;
        IngressCounts {
            accepted: c.accepted.load(Ordering::Relaxed),
            ignored: c.ignored.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            unavailable: c.unavailable.load(Ordering::Relaxed),
            messages: c.messages.load(Ordering::Relaxed),
        }
    }

    /// One call: see the module documentation for the order of the checks.
    pub async fn handle(&self, req: &HttpRequest) -> HttpResponse {
        let source = source_of(&req.path);
        let outcome = match source {
            Some(s) => self.process(s, req).await,
            None => Outcome::Rejected(
                404,
                "unknown path: Dataverse webhooks go to /dataverse, F&O business events to /fno".into(),
            ),
        };
        self.count(source, &outcome);
        response(outcome)
    }

    async fn process(&self, source: Source, req: &HttpRequest) -> Outcome {
        if !req.method.eq_ignore_ascii_case("POST") {
            return Outcome::Rejected(405, format!("{} is not allowed; events are POSTed", req.method));
        }
        let authentic = match source {
            Source::Dataverse => keys::webhook_ok(&self.keys, req),
            Source::Fno => keys::business_event_ok(&self.keys, req),
        };
        if !authentic {
            return Outcome::Rejected(401, "missing or wrong key".into());
        }
        if req.body.len() > self.cfg.max_bytes {
            let why = format!(
                "the body is {} bytes; the limit is {}",
                req.body.len(),
                self.cfg.max_bytes
            );
            return Outcome::Rejected(413, why);
        }
        let routed = match source {
            Source::Dataverse => payload::dataverse(&req.body).map(|e| self.route_dataverse(&e)),
            Source::Fno => payload::business_event(&req.body).map(|e| self.route_business_event(&e)),
        };
        match routed {
            Err(why) => Outcome::Rejected(400, why),
            Ok(Err(o)) => o,
            Ok(Ok(work)) => self.enqueue(work).await,
        }
    }

    /// (flow, company, key) for a webhook, or why it is ignored.
    fn route_dataverse(&self, e: &DataverseEvent) -> Result<Vec<(FlowName, String, String)>, Outcome> {
        let tables: Vec<&WatchedTable> = self.tables.iter().filter(|w| w.logical == e.entity).collect();
        if tables.is_empty() {
            return Err(Outcome::Ignored(format!("no enabled flow syncs table {}", e.entity)));
        }
        let wanted: Vec<&&WatchedTable> = tables
            .iter()
            .filter(|w| match e.message.as_str() {
                "Create" | "Update" => true,
                "Delete" => w.deletes,
                _ => false,
            })
            .collect();
        if wanted.is_empty() {
            return Err(Outcome::Ignored(format!(
                "{} of {} is not synced by events (the scheduled run picks it up)",
                e.message, e.entity
            )));
        }
        let companies = self.companies_of(e.owner_bu.as_deref());
        Ok(wanted
            .iter()
            .flat_map(|w| companies.iter().map(|c| (w.flow, c.legal_entity.clone(), e.id.clone())))
            .collect())
    }

    /// The company that owns a Sales record: the only one configured, the one whose business unit (as a GUID) owns
    /// it, or else every company (each worker re-reads the record and skips it when another business unit owns it).
    fn companies_of(&self, owner_bu: Option<&str>) -> Vec<&Company> {
        let all: Vec<&Company> = self.cfg.companies.iter().collect();
        if all.len() == 1 {
            return all;
        }
        match owner_bu.and_then(|bu| all.iter().find(|c| c.business_unit.eq_ignore_ascii_case(bu))) {
            Some(c) => vec![*c],
            None => all,
        }
    }

    fn route_business_event(&self, e: &BusinessEvent) -> Result<Vec<(FlowName, String, String)>, Outcome> {
        let routes: Vec<&BusinessEventRoute> = self
            .cfg
            .business_events
            .iter()
            .filter(|r| r.event_id == e.id && self.cfg.flows.contains(&r.flow))
            .collect();
        if routes.is_empty() {
            return Err(Outcome::Ignored(format!(
                "business event {} is not one p2c syncs",
                e.id
            )));
        }
        let Some(company) = self.cfg.company(&e.legal_entity) else {
            return Err(Outcome::Ignored(format!(
                "legal entity {} is not in P2C_COMPANIES",
                e.legal_entity
            )));
        };
        let mut out = Vec::new();
        for r in routes {
            let key = e.key(&r.field).ok_or_else(|| {
                Outcome::Rejected(400, format!("business event {} has no {} to sync by", e.id, r.field))
            })?;
            out.push((r.flow, company.legal_entity.clone(), key));
        }
        Ok(out)
    }

    /// One message per flow and company, to the flow's queue.
    async fn enqueue(&self, work: Vec<(FlowName, String, String)>) -> Outcome {
        let mut grouped: BTreeMap<(FlowName, String), Vec<String>> = BTreeMap::new();
        for (flow, company, key) in work {
            let keys = grouped.entry((flow, company)).or_default();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let mut done = Vec::new();
        for ((flow, company), keys) in grouped {
            let body = Message::new(flow.as_str(), &company, keys.clone(), Reason::Event).to_body();
            if let Err(e) = self.sink.send(flow, &[body]).await {
                return Outcome::Unavailable(format!("could not queue for {flow}: {e}"));
            }
            self.counters.messages.fetch_add(1, Ordering::Relaxed);
            done.push((flow, company, keys));
        }
        Outcome::Accepted(done)
    }

    fn count(&self, source: Option<Source>, o: &Outcome) {
        let src = source.map_or("unknown", Source::as_str);
        let c = &self.counters;
        let (counter, name) = match o {
            Outcome::Accepted(work) => {
                let flows: Vec<&str> = work.iter().map(|(f, _, _)| f.as_str()).collect();
                tracing::info!(source = src, flows = ?flows, "event accepted");
                (&c.accepted, "Accepted")
            }
            Outcome::Ignored(why) => {
                tracing::info!(source = src, reason = %why, "event acknowledged and ignored");
                (&c.ignored, "Ignored")
            }
            Outcome::Rejected(status, why) => {
                tracing::warn!(source = src, status, reason = %why, "call refused");
                (&c.rejected, "Rejected")
            }
            Outcome::Unavailable(why) => {
                tracing::error!(source = src, reason = %why, "event not queued; the sender will retry");
                (&c.unavailable, "Unavailable")
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() || std::env::var_os("P2C_EMF").is_some() {
            let messages = match o {
                Outcome::Accepted(w) => w.len(),
                _ => 0,
            };
            println!("{}", emf_line(src, name, messages));
        }
    }
}

fn source_of(path: &str) -> Option<Source> {
    match path.trim_end_matches('/') {
        "/dataverse" => Some(Source::Dataverse),
        "/fno" => Some(Source::Fno),
        _ => None,
    }
}

fn response(o: Outcome) -> HttpResponse {
    match o {
        Outcome::Accepted(work) => HttpResponse {
            status: 202,
            body: json!({"status": "accepted", "messages": work.iter().map(|(f, c, k)| json!({"flow": f, "company": c, "keys": k})).collect::<Vec<_>>()}),
        },
        Outcome::Ignored(why) => HttpResponse {
            status: 202,
            body: json!({"status": "ignored", "reason": why}),
        },
        Outcome::Rejected(status, why) => HttpResponse {
            status,
            body: json!({"status": "refused", "error": why}),
        },
        Outcome::Unavailable(_) => HttpResponse {
            status: 503,
            body: json!({"status": "unavailable", "error": "the event could not be queued; retry"}),
        },
    }
}

/// One Embedded Metric Format line per call: `Accepted`/`Ignored`/`Rejected`/`Unavailable` (1) and `Enqueued`,
/// dimension `FunctionName` (the alarm on rejected calls reads `Rejected`).
fn emf_line(source: &str, outcome: &str, enqueued: usize) -> String {
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "events".into());
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let mut doc = json!({
        "FunctionName": function,
        "Source": source,
        "Enqueued": enqueued,
        "_aws": {"Timestamp": now_ms, "CloudWatchMetrics": [{
            "Namespace": crate::entry::metrics::NAMESPACE,
            "Dimensions": [["FunctionName"]],
            "Metrics": [{"Name": outcome, "Unit": "Count"}, {"Name": "Enqueued", "Unit": "Count"}],
        }]},
    });
    doc[outcome] = Value::from(1);
    doc.to_string()
}

/// The keys, from the configuration or from Secrets Manager.
pub async fn load_keys(src: &KeySource, aws: &aws_config::SdkConfig) -> Result<EventKeys, SyncError> {
    let arn = match src {
        KeySource::Value(k) => return Ok(k.clone()),
        KeySource::SecretsManager(arn) => arn,
    };
    let secret_error = |why: String| crate::config::ConfigError::Secret { arn: arn.clone(), why };
    let client = aws_sdk_secretsmanager::Client::new(aws);
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| secret_error(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
    let s = out
        .secret_string()
        .ok_or_else(|| secret_error("the secret has no string value".into()))?;
    Ok(EventKeys::parse("P2C_EVENTS_SECRET_ARN", s)?)
}

#[cfg(test)]
mod tests;
