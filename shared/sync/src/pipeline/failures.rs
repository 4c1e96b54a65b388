//! Failed records go to the flow's queue (transient, with attempt count) or straight to its DLQ (permanent, or
//! out of attempts), one key per message so each can be replayed on its own.

use std::collections::HashMap;

use crate::{
    error::SyncError,
    flow_name::FlowName,
    message::{Message, Reason},
    pipeline::ports::FailureQueues,
    report::{Failure, RecordFailure, Routed, RunReport},
};

/// Where each failure goes, and the message to send for it (`None`: already queued under the same id, or it
/// has no id to queue). A decision as data: routing is unit-tested without SQS.
pub fn route_plan(
    flow: FlowName,
    company: &str,
    failures: Vec<Failure>,
    attempt: u32,
    max_attempts: u32,
) -> Vec<(Failure, Routed, Option<Message>)> {
    // Several records of one document (its lines) fail under one id: the document is queued once.
    let mut queued: HashMap<String, Routed> = HashMap::new();
    let mut out = Vec::with_capacity(failures.len());
    for f in failures {
        if let Some(&to) = queued.get(&f.id) {
            out.push((f, to, None));
            continue;
        }
        if f.id.is_empty() {
            out.push((f, Routed::None, None));
            continue;
        }
        let to = if !f.transient || attempt >= max_attempts {
            Routed::Dlq
        } else {
            Routed::Retry
        };
        let mut m = Message::new(flow.as_str(), company, vec![f.id.clone()], Reason::Retry);
        m.attempt = if to == Routed::Dlq { attempt } else { attempt + 1 };
        m.last_error = Some(format!("{}: {}", f.key, truncate(&f.reason, 1000)));
        queued.insert(f.id.clone(), to);
        out.push((f, to, Some(m)));
    }
    out
}

/// Routes `failures` of records that were on their `attempt`-th try. Nothing is counted as routed unless
/// the queue accepted it; if it refuses, the error stops the run so the watermark does not move past them.
pub async fn route_failures(
    queues: &impl FailureQueues,
    flow: FlowName,
    company: &str,
    failures: Vec<Failure>,
    attempt: u32,
    report: &mut RunReport,
) -> Result<(), SyncError> {
    if failures.is_empty() {
        return Ok(());
    }
    let plan = route_plan(flow, company, failures, attempt, queues.max_attempts());
    let mut retry = Vec::new();
    let mut dead = Vec::new();
    for (f, to, m) in &plan {
        match (to, m) {
            (Routed::None, _) => {
                tracing::error!(flow = %flow, company, key = %f.key, reason = %f.reason, "record failed and cannot be queued")
            }
            (_, Some(m)) => {
                tracing::warn!(flow = %flow, company, key = %f.key, id = %f.id, transient = f.transient, attempt, to = %to, reason = %f.reason, "record failed");
                if *to == Routed::Dlq {
                    dead.push(m.to_body());
                } else {
                    retry.push(m.to_body());
                }
            }
            _ => {}
        }
    }
    queues.send(flow, Routed::Retry, &retry).await?;
    queues.send(flow, Routed::Dlq, &dead).await?;
    for (failure, routed, _) in plan {
        report.fail(RecordFailure { failure, routed });
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ports::MemoryQueues;

    fn f(id: &str, transient: bool) -> Failure {
        Failure::new(id, &format!("K-{id}"), "why", transient)
    }

    #[test]
    fn transient_retries_permanent_and_exhausted_go_to_the_dlq() {
        let plan = route_plan(FlowName::AccountsToFno, "usmf", vec![f("a", true), f("b", false)], 1, 3);
        assert_eq!((plan[0].1, plan[1].1), (Routed::Retry, Routed::Dlq));
        assert_eq!(plan[0].2.as_ref().unwrap().attempt, 2);
        assert_eq!(plan[1].2.as_ref().unwrap().attempt, 1);
        let plan = route_plan(FlowName::AccountsToFno, "usmf", vec![f("a", true)], 3, 3);
        assert_eq!(plan[0].1, Routed::Dlq, "out of attempts");
    }

    #[test]
    fn one_message_per_id_and_none_without_an_id() {
        let plan = route_plan(
            FlowName::QuotesToFno,
            "usmf",
            vec![f("d", true), f("d", false), f("", true)],
            1,
            3,
        );
        assert_eq!(plan.iter().filter(|p| p.2.is_some()).count(), 1);
        assert_eq!(
            plan[1].1,
            Routed::Retry,
            "a second line of a queued document follows it"
        );
        assert_eq!(plan[2].1, Routed::None);
    }

    #[tokio::test]
    async fn routed_failures_are_sent_then_counted() {
        let q = MemoryQueues::new(3);
        let mut report = RunReport::default();
        let failures = vec![f("a", true), f("b", false), f("c", true)];
        route_failures(&q, FlowName::AccountsToFno, "usmf", failures, 1, &mut report)
            .await
            .unwrap();
        assert_eq!((report.failed, report.retry_queued, report.dead_lettered), (3, 2, 1));
        let sent = q.sent();
        assert_eq!(sent.iter().filter(|(_, to, _)| *to == Routed::Retry).count(), 2);
        let dead: Vec<&Message> = sent
            .iter()
            .filter(|(_, to, _)| *to == Routed::Dlq)
            .map(|(_, _, m)| m)
            .collect();
        assert_eq!(dead[0].keys, vec!["b".to_string()]);
        assert_eq!(dead[0].last_error.as_deref(), Some("K-b: why"));
    }
}
