//! Failed records go to the flow's queue (transient, with attempt count) or straight to its DLQ (permanent, or
//! out of attempts), one key per message so each can be replayed on its own. Retries back off exponentially,
//! with jitter, so that a record's attempts span the configured window (P2C_RETRY_WINDOW_SECONDS) instead of a
//! minute: a parent not synced yet, or a throttled service, has time to come right.

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
    let max = queues.max_attempts();
    let plan = route_plan(flow, company, failures, attempt, max);
    let mut retry = Vec::new();
    let mut dead = Vec::new();
    let now = unix_now();
    for (f, to, m) in &plan {
        match (to, m) {
            (Routed::None, _) => {
                tracing::error!(flow = %flow, company, key = %f.key, reason = %f.reason, "record failed and cannot be queued")
            }
            (_, Some(m)) => {
                tracing::warn!(flow = %flow, company, key = %f.key, id = %f.id, transient = f.transient, attempt, to = %to, reason = %f.reason, "record failed");
                if *to == Routed::Dlq {
                    dead.push((m.to_body(), 0));
                } else {
                    let wait = jitter(backoff(m.attempt, max, queues.retry_window()), rand_u32());
                    let mut m = m.clone();
                    m.not_before = (wait > 0).then_some(now + wait);
                    retry.push((
                        m.to_body(),
                        wait.min(u64::from(p2c_state::queues::MAX_DELAY_SECONDS)) as u32,
                    ));
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

/// Seconds to wait before attempt `next_attempt` (2 = the first retry): doubling each time, from a base chosen
/// so that the retries of `max_attempts` together span `window` seconds (5 attempts, 1 hour: 4, 8, 16, 32 min).
pub fn backoff(next_attempt: u32, max_attempts: u32, window: u64) -> u64 {
    if next_attempt < 2 || max_attempts < 2 || window == 0 {
        return 0;
    }
    let retries = (max_attempts - 1).min(32);
    let base = window / ((1u64 << retries) - 1);
    base << (next_attempt - 2).min(31)
}

/// ±20 %, so records that failed together do not all come back at the same second.
pub fn jitter(delay: u64, random: u32) -> u64 {
    let span = delay / 5;
    delay - span + u64::from(random) % (2 * span + 1)
}

fn rand_u32() -> u32 {
    (uuid::Uuid::new_v4().as_u128() & 0xffff_ffff) as u32
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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

    #[test]
    fn retries_double_and_span_the_window() {
        let d: Vec<u64> = (2..=5).map(|a| backoff(a, 5, 3600)).collect();
        assert_eq!(d, vec![240, 480, 960, 1920]);
        assert_eq!(d.iter().sum::<u64>(), 3600);
        assert_eq!(backoff(2, 5, 0), 0, "no window: at once");
        assert_eq!(backoff(2, 1, 3600), 0, "one attempt: no retry");
        for r in [0, 1, 7, u32::MAX] {
            let j = jitter(1000, r);
            assert!((800..=1200).contains(&j), "{j}");
        }
    }

    #[tokio::test]
    async fn a_retry_beyond_sqs_delay_keeps_its_due_time_in_the_message() {
        let q = MemoryQueues::new(5, 3600);
        let mut report = RunReport::default();
        // The fourth try failed: the fifth waits 1,920 s ± 20 %, always beyond SQS's 900 s.
        route_failures(&q, FlowName::AccountsToFno, "usmf", vec![f("a", true)], 4, &mut report)
            .await
            .unwrap();
        let (_, to, m, delay) = &q.sent()[0];
        assert_eq!(
            (*to, m.attempt, *delay),
            (Routed::Retry, 5, 900),
            "SQS delays at most 900 s"
        );
        let wait = m.wait_seconds(unix_now());
        assert!((1535..=2304).contains(&wait), "1,920 s ± 20 %: {wait}");
    }

    #[tokio::test]
    async fn routed_failures_are_sent_then_counted() {
        let q = MemoryQueues::new(3, 0);
        let mut report = RunReport::default();
        let failures = vec![f("a", true), f("b", false), f("c", true)];
        route_failures(&q, FlowName::AccountsToFno, "usmf", failures, 1, &mut report)
            .await
            .unwrap();
        assert_eq!((report.failed, report.retry_queued, report.dead_lettered), (3, 2, 1));
        let sent = q.sent();
        assert_eq!(sent.iter().filter(|(_, to, _, _)| *to == Routed::Retry).count(), 2);
        let dead: Vec<&Message> = sent
            .iter()
            .filter(|(_, to, _, _)| *to == Routed::Dlq)
            .map(|(_, _, m, _)| m)
            .collect();
        assert_eq!(dead[0].keys, vec!["b".to_string()]);
        assert_eq!(dead[0].last_error.as_deref(), Some("K-b: why"));
    }
}
