//! Lambda event handling: one handler for a schedule input and for an SQS batch.

use std::{collections::BTreeMap, panic::AssertUnwindSafe};

use futures::FutureExt;
use tracing::Instrument;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    deps::Deps,
    entry::run::{now_rfc3339, record, run_flow},
    error::SyncError,
    flow_name::FlowName,
    message::Message,
    pipeline::{
        RunOptions,
        failures::{route_failures, unix_now},
        ports::FailureQueues,
    },
    report::{Routed, RunReport},
};
use p2c_state::queues::MAX_DELAY_SECONDS;

/// The schedule's `Input` (EventBridge Scheduler delivers it as-is).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledRun {
    pub flow: String,
    /// One company, or every configured company when absent.
    #[serde(default)]
    pub company: Option<String>,
    #[serde(default)]
    pub full_resync: bool,
}

/// What the Lambda runtime says about one invocation: its request id and its deadline.
#[derive(Clone, Debug, Default)]
pub struct Invocation {
    pub request_id: Option<String>,
    pub deadline: Option<std::time::Instant>,
}

impl Invocation {
    /// From the runtime's context (`deadline` is milliseconds since the Unix epoch).
    pub fn of(ctx: &lambda_runtime::Context) -> Invocation {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let left = std::time::Duration::from_millis(ctx.deadline.saturating_sub(now_ms));
        Invocation {
            request_id: Some(ctx.request_id.clone()),
            deadline: (ctx.deadline > 0).then(|| std::time::Instant::now() + left),
        }
    }

    fn options(&self, deps: &Deps, full_resync: bool, trigger: &str) -> RunOptions {
        RunOptions {
            full_resync,
            trigger: trigger.into(),
            progress: None,
            stop_by: self
                .deadline
                .map(|d| d.checked_sub(deps.cfg.deadline_margin).unwrap_or(d)),
            request_id: self.request_id.clone(),
        }
    }
}

/// What a function's `main` hands each invocation to.
pub async fn handle_lambda(
    deps: &Deps,
    flow: FlowName,
    ev: lambda_runtime::LambdaEvent<Value>,
) -> Result<Value, SyncError> {
    handle_invocation(deps, flow, ev.payload, &Invocation::of(&ev.context)).await
}

/// Entry point for a function that runs `flow`: dispatches on the shape of the event.
pub async fn handle_event(deps: &Deps, flow: FlowName, event: Value) -> Result<Value, SyncError> {
    handle_invocation(deps, flow, event, &Invocation::default()).await
}

/// As [`handle_event`], within an invocation's deadline.
pub async fn handle_invocation(
    deps: &Deps,
    flow: FlowName,
    event: Value,
    inv: &Invocation,
) -> Result<Value, SyncError> {
    if event.get("Records").is_some() {
        let sqs: SqsEvent = serde_json::from_value(event).map_err(|e| SyncError::BadEvent(e.to_string()))?;
        let (resp, _) = sqs_batch(deps, flow, sqs, inv).await;
        return serde_json::to_value(resp).map_err(|e| SyncError::BadEvent(e.to_string()));
    }
    // A classic EventBridge rule wraps the input in an envelope; Scheduler does not.
    let input = match event.get("detail-type") {
        Some(_) => event.get("detail").cloned().unwrap_or(Value::Null),
        None => event,
    };
    let run: ScheduledRun = serde_json::from_value(input).map_err(|e| SyncError::BadEvent(e.to_string()))?;
    let reports = schedule(deps, flow, &run, inv).await?;
    Ok(json!({ "runs": reports }))
}

/// Runs the flow for the requested company, or for each configured company in turn.
pub async fn handle_schedule(deps: &Deps, flow: FlowName, run: &ScheduledRun) -> Result<Vec<RunReport>, SyncError> {
    schedule(deps, flow, run, &Invocation::default()).await
}

async fn schedule(
    deps: &Deps,
    flow: FlowName,
    run: &ScheduledRun,
    inv: &Invocation,
) -> Result<Vec<RunReport>, SyncError> {
    if run.flow != flow.as_str() {
        return Err(SyncError::WrongFlow {
            expected: flow.as_str().into(),
            got: run.flow.clone(),
        });
    }
    let companies = deps.companies_or_all(run.company.as_deref());
    let opts = inv.options(deps, run.full_resync, "schedule");
    let mut out = Vec::new();
    for c in companies {
        // `p2c pause` leaves a mark besides turning the schedule off, so a deploy that turns it on again runs
        // nothing until `p2c resume`.
        let le = deps.legal_entity(&c)?;
        if let Some(mark) = deps.state.pause_mark(flow.as_str(), &le).await? {
            tracing::info!(flow = %flow, company = %le, since = %mark.since, by = %mark.by,
                "paused (p2c pause); nothing to do until p2c resume");
            continue;
        }
        out.push(run_flow(deps, flow, &c, &opts).await?);
    }
    Ok(out)
}

/// Processes an SQS batch. Each message succeeds or fails on its own: a body that does not parse fails only
/// itself; records that fail are re-queued (or dead-lettered) as messages of their own, so the message that
/// carried them succeeds. A message fails only when its records could not be processed or re-queued at all.
pub async fn handle_sqs(deps: &Deps, flow: FlowName, event: SqsEvent) -> SqsBatchResponse {
    let (resp, _) = handle_sqs_report(deps, flow, event).await;
    resp
}

/// As [`handle_sqs`], also returning what happened per company (for the CLI's `drain`).
pub async fn handle_sqs_report(deps: &Deps, flow: FlowName, event: SqsEvent) -> (SqsBatchResponse, Vec<RunReport>) {
    sqs_batch(deps, flow, event, &Invocation::default()).await
}

/// An SQS batch within an invocation: each (company, attempt) group is a run of its own in the history and the
/// metrics, like a scheduled run.
async fn sqs_batch(
    deps: &Deps,
    flow: FlowName,
    event: SqsEvent,
    inv: &Invocation,
) -> (SqsBatchResponse, Vec<RunReport>) {
    let mut resp = SqsBatchResponse::default();
    // company → (attempt → message ids and keys)
    let mut groups: BTreeMap<(String, u32), Vec<(String, Message)>> = BTreeMap::new();
    let mut not_due: Vec<(String, Message)> = Vec::new();
    let now = unix_now();
    for rec in event.records {
        let id = rec.message_id.clone().unwrap_or_default();
        match validate(deps, flow, rec.body.as_deref()) {
            Ok(m) if m.wait_seconds(now) > 0 => not_due.push((id, m)),
            Ok(m) => groups.entry((m.company.clone(), m.attempt)).or_default().push((id, m)),
            Err(why) => {
                tracing::warn!(message_id = %id, flow = %flow, reason = %why, "message rejected; it will be retried and then dead-lettered intact");
                resp.add_failure(id);
            }
        }
    }
    for id in delay_again(deps, flow, not_due, now).await {
        resp.add_failure(id);
    }
    let mut reports = Vec::new();
    for ((company, attempt), msgs) in groups {
        let run_id = uuid::Uuid::new_v4().to_string();
        let mut report = RunReport::new(&run_id, flow.as_str(), &company, "sqs");
        report.request_id = inv.request_id.clone();
        let ids: Vec<String> = msgs.iter().map(|(id, _)| id.clone()).collect();
        let (ddb_before, started, started_at) = (deps.state.request_count(), std::time::Instant::now(), now_rfc3339());
        let units_before = deps.state.units();
        let span = tracing::info_span!("run", run_id = %run_id, flow = %flow, company = %company, trigger = "sqs");
        // A panic while processing these messages fails them (SQS redelivers), never the rest of the batch.
        let outcome = AssertUnwindSafe(process_messages(deps, flow, &company, attempt, &msgs, &mut report))
            .catch_unwind()
            .instrument(span)
            .await
            .unwrap_or_else(|p| Err(SyncError::Panic(crate::entry::run::panic_text(&p))));
        if let Err(e) = &outcome {
            tracing::error!(flow = %flow, company, error = %e, messages = ids.len(), "messages failed; SQS will redeliver them");
            for id in ids {
                resp.add_failure(id);
            }
        }
        report.dynamodb_requests = deps.state.request_count() - ddb_before;
        let (rru, wru) = deps.state.units();
        report.dynamodb_read_units = rru - units_before.0;
        report.dynamodb_write_units = wru - units_before.1;
        report.duration_ms = started.elapsed().as_millis() as u64;
        record(deps, &report, started_at, outcome.as_ref().err()).await;
        reports.push(report);
    }
    (resp, reports)
}

/// Retries that are not due yet (their backoff is longer than SQS's 900 s delay) go back to the queue with the
/// rest of their wait; no attempt is spent. Returns the ids that could not be re-sent (SQS redelivers those).
async fn delay_again(deps: &Deps, flow: FlowName, msgs: Vec<(String, Message)>, now: u64) -> Vec<String> {
    if msgs.is_empty() {
        return Vec::new();
    }
    let bodies: Vec<(String, u32)> = msgs
        .iter()
        .map(|(_, m)| {
            (
                m.to_body(),
                m.wait_seconds(now).min(u64::from(MAX_DELAY_SECONDS)) as u32,
            )
        })
        .collect();
    match deps.send(flow, Routed::Retry, &bodies).await {
        Ok(()) => Vec::new(),
        Err(e) => {
            tracing::warn!(flow = %flow, error = %e, "could not delay messages again; SQS will redeliver them");
            msgs.into_iter().map(|(id, _)| id).collect()
        }
    }
}

fn validate(deps: &Deps, flow: FlowName, body: Option<&str>) -> Result<Message, String> {
    let m = Message::parse(body).map_err(|e| e.to_string())?;
    if m.flow != flow.as_str() {
        return Err(format!(
            "the message is for flow {:?}, this function runs {flow}",
            m.flow
        ));
    }
    if deps.cfg.company(&m.company).is_none() {
        return Err(format!(
            "company {:?} is not in P2C_COMPANIES ({})",
            m.company,
            deps.companies_list()
        ));
    }
    Ok(m)
}

async fn process_messages(
    deps: &Deps,
    flow: FlowName,
    company: &str,
    attempt: u32,
    msgs: &[(String, Message)],
    report: &mut RunReport,
) -> Result<(), SyncError> {
    let company = deps.legal_entity(company)?;
    // The same key in two messages (a duplicate delivery) is read and written once.
    let mut keys: Vec<String> = msgs.iter().flat_map(|(_, m)| m.keys.iter().cloned()).collect();
    keys.sort();
    keys.dedup();
    let failures = crate::flows::sync_keys(deps, flow, &company, keys, report).await?;
    route_failures(deps, flow, &company, failures, attempt, report).await
}
