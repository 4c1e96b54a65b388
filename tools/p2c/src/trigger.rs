//! A local stand-in for the SQS event source: one poller per flow receives from the flow's queue, gathers a
//! batch for up to the batching window (Lambda's `MaximumBatchingWindowInSeconds`) or until the batch is full,
//! hands it to the same handler the Lambda runs, and deletes what did not fail. For `p2c demo --events` and
//! `p2c bench --scenario latency`.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use p2c_state::Received;
use p2c_sync::{Deps, FlowName, RunReport, handle_sqs_report};
use tokio::task::JoinHandle;

pub struct Trigger {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Vec<RunReport>>>,
}

#[derive(Clone, Copy)]
pub struct TriggerOptions {
    /// Longest wait for a batch to fill once its first message arrived.
    pub window: Duration,
    /// Most messages per invocation.
    pub batch: usize,
}

impl Default for TriggerOptions {
    fn default() -> Self {
        TriggerOptions {
            window: Duration::from_secs(1),
            batch: 10,
        }
    }
}

impl Trigger {
    pub fn start(deps: Arc<Deps>, flows: &[FlowName], opts: TriggerOptions) -> Trigger {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = flows
            .iter()
            .map(|&f| tokio::spawn(poll(deps.clone(), f, opts, stop.clone())))
            .collect();
        Trigger { stop, tasks }
    }

    /// Stops the pollers after the batch under way; returns every run they made.
    pub async fn stop(self) -> Vec<RunReport> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in self.tasks {
            out.extend(t.await.unwrap_or_default());
        }
        out
    }
}

async fn poll(deps: Arc<Deps>, flow: FlowName, opts: TriggerOptions, stop: Arc<AtomicBool>) -> Vec<RunReport> {
    let mut reports = Vec::new();
    let Ok(pair) = deps.queue_pair(flow).await else {
        tracing::error!(flow = %flow, "no queue for the flow; its trigger does not run");
        return reports;
    };
    while !stop.load(Ordering::Relaxed) {
        // Long polling, like the event source; a short wait so a stop is noticed.
        let mut got = match deps.queues.receive(&pair.queue_url, 10, 1).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(flow = %flow, error = %e, "receive failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if got.is_empty() {
            continue;
        }
        let until = Instant::now() + opts.window;
        while got.len() < opts.batch && Instant::now() < until {
            match deps
                .queues
                .receive(&pair.queue_url, 10.min((opts.batch - got.len()) as i32), 0)
                .await
            {
                Ok(more) if !more.is_empty() => got.extend(more),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let (resp, r) = handle_sqs_report(&deps, flow, event_of(&got)).await;
        reports.extend(r);
        let failed: HashSet<String> = resp
            .batch_item_failures
            .into_iter()
            .map(|b| b.item_identifier)
            .collect();
        let done: Vec<String> = got
            .iter()
            .filter(|m| !failed.contains(&m.message_id))
            .map(|m| m.receipt_handle.clone())
            .collect();
        if let Err(e) = deps.queues.delete(&pair.queue_url, &done).await {
            tracing::warn!(flow = %flow, error = %e, "delete failed; the messages come back after their visibility timeout");
        }
    }
    reports
}

fn event_of(got: &[Received]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for m in got {
        let mut msg = SqsMessage::default();
        msg.message_id = Some(m.message_id.clone());
        msg.receipt_handle = Some(m.receipt_handle.clone());
        msg.body = Some(m.body.clone());
        msg.attributes
            .insert("ApproximateReceiveCount".into(), m.receive_count.to_string());
        event.records.push(msg);
    }
    event
}
