//! Failed records go to the flow's queue (transient, with attempt count) or straight to its DLQ (permanent, or
//! out of attempts), one key per message so each can be replayed on its own.

use crate::{
    deps::Deps,
    error::SyncError,
    flows::FlowName,
    message::{Message, Reason},
    report::{RecordFailure, RunReport},
    sales_to_fno::Failure,
};

/// Routes `failures` of records that were on their `attempt`-th try. Nothing is counted as routed unless
/// SQS accepted it; if SQS refuses, the error stops the run so the watermark does not move past the records.
pub async fn route_failures(
    deps: &Deps,
    flow: FlowName,
    company: &str,
    failures: Vec<Failure>,
    attempt: u32,
    report: &mut RunReport,
) -> Result<(), SyncError> {
    if failures.is_empty() {
        return Ok(());
    }
    let pair = deps.queue_pair(flow).await?;
    let mut retry = Vec::new();
    let mut dead = Vec::new();
    let mut routed = Vec::new();
    // Several records of one document (its lines) fail under one id: the document is queued once.
    let mut queued: std::collections::HashMap<String, &'static str> = std::collections::HashMap::new();
    for f in failures {
        if let Some(&to) = queued.get(&f.id) {
            routed.push((f, to));
            continue;
        }
        if f.id.is_empty() {
            tracing::error!(flow = %flow, company, key = %f.key, reason = %f.reason, "record failed and cannot be queued");
            routed.push((f, "none"));
            continue;
        }
        let to_dlq = !f.transient || attempt >= deps.cfg.max_attempts;
        let mut m = Message::new(flow.as_str(), company, vec![f.id.clone()], Reason::Retry);
        m.attempt = if to_dlq { attempt } else { attempt + 1 };
        m.last_error = Some(format!("{}: {}", f.key, truncate(&f.reason, 1000)));
        tracing::warn!(flow = %flow, company, key = %f.key, id = %f.id, transient = f.transient, attempt, to_dlq, reason = %f.reason, "record failed");
        if to_dlq {
            dead.push(m.to_body());
            queued.insert(f.id.clone(), "dlq");
            routed.push((f, "dlq"));
        } else {
            retry.push(m.to_body());
            queued.insert(f.id.clone(), "retry");
            routed.push((f, "retry"));
        }
    }
    deps.queues.send(&pair.queue_url, &retry).await?;
    deps.queues.send(&pair.dlq_url, &dead).await?;
    for (f, to) in routed {
        report.fail(RecordFailure {
            id: f.id,
            key: f.key,
            reason: f.reason,
            transient: f.transient,
            routed: to.into(),
        });
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
