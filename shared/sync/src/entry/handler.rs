//! Lambda event handling: one handler for a schedule input and for an SQS batch.

use std::{collections::BTreeMap, panic::AssertUnwindSafe};

use futures::FutureExt;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    deps::Deps,
    entry::run::run_flow,
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

/// Entry point for a function that runs `flow`: dispatches on the shape of the event.
pub async fn handle_event(deps: &Deps, flow: FlowName, event: Value) -> Result<Value, SyncError> {
    if event.get("Records").is_some() {
        let sqs: SqsEvent = serde_json::from_value(event).map_err(|e| SyncError::BadEvent(e.to_string()))?;
        let resp = handle_sqs(deps, flow, sqs).await;
        return serde_json::to_value(resp).map_err(|e| SyncError::BadEvent(e.to_string()));
    }
    // A classic EventBridge rule wraps the input in an envelope; Scheduler does not.
    let input = match event.get("detail-type") {
        Some(_) => event.get("detail").cloned().unwrap_or(Value::Null),
        None => event,
    };
    let run: ScheduledRun = serde_json::from_value(input).map_err(|e| SyncError::BadEvent(e.to_string()))?;
    let reports = handle_schedule(deps, flow, &run).await?;
    Ok(json!({ "runs": reports }))
}

/// Runs the flow for the requested company, or for each configured company in turn.
pub async fn handle_schedule(deps: &Deps, flow: FlowName, run: &ScheduledRun) -> Result<Vec<RunReport>, SyncError> {
    if run.flow != flow.as_str() {
        return Err(SyncError::WrongFlow {
            expected: flow.as_str().into(),
            got: run.flow.clone(),
        });
    }
    let companies = deps.companies_or_all(run.company.as_deref());
    let opts = RunOptions {
        full_resync: run.full_resync,
        trigger: "schedule".into(),
        progress: None,
    };
    let mut out = Vec::new();
    for c in companies {
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
        let mut report = RunReport::new(&uuid::Uuid::new_v4().to_string(), flow.as_str(), &company, "sqs");
        let ids: Vec<String> = msgs.iter().map(|(id, _)| id.clone()).collect();
        let (ddb_before, started) = (deps.state.request_count(), std::time::Instant::now());
        // A panic while processing these messages fails them (SQS redelivers), never the rest of the batch.
        let outcome = AssertUnwindSafe(process_messages(deps, flow, &company, attempt, &msgs, &mut report))
            .catch_unwind()
            .await
            .unwrap_or_else(|p| Err(SyncError::Panic(crate::entry::run::panic_text(&p))));
        match outcome {
            Ok(()) => {}
            Err(e) => {
                tracing::error!(flow = %flow, company, error = %e, messages = ids.len(), "messages failed; SQS will redeliver them");
                for id in ids {
                    resp.add_failure(id);
                }
            }
        }
        report.dynamodb_requests = deps.state.request_count() - ddb_before;
        report.duration_ms = started.elapsed().as_millis() as u64;
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
