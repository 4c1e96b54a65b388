//! What the pipeline needs from the outside, as small traits: where watermarks and resume points live
//! (DynamoDB), and where failed records go (SQS). `Deps` implements them for production; the in-memory ones
//! let the loop, checkpoints and routing be unit-tested without AWS. A dry run is a wrapper in `Deps`
//! (its state and queue clients record instead of writing), not a flag the pipeline checks.

use std::{collections::HashMap, future::Future, sync::Mutex};

use p2c_state::Watermark;

use crate::{deps::Deps, error::SyncError, flow_name::FlowName, message::Message, report::Routed};

/// Saved positions of a flow per company: its watermark and its resume point, each a named item.
pub trait Checkpoints: Sync {
    fn get(&self, name: &str, company: &str) -> impl Future<Output = Result<Option<Watermark>, SyncError>> + Send;
    /// Writes `value` if the item is still at `expected` (optimistic locking: another run moved it otherwise).
    fn put(
        &self,
        name: &str,
        company: &str,
        value: &str,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<Watermark, SyncError>> + Send;
    fn delete(&self, name: &str, company: &str) -> impl Future<Output = Result<(), SyncError>> + Send;
}

/// The flow's retry queue and dead-letter queue.
pub trait FailureQueues: Sync {
    /// Attempts before a transient failure goes to the DLQ.
    fn max_attempts(&self) -> u32;
    /// Seconds the retries of a record span before it is dead-lettered (0: retry at once).
    fn retry_window(&self) -> u64;
    /// Sends message bodies, each with its delay in seconds (SQS caps a delay at 900).
    fn send(
        &self,
        flow: FlowName,
        to: Routed,
        bodies: &[(String, u32)],
    ) -> impl Future<Output = Result<(), SyncError>> + Send;
}

impl Checkpoints for Deps {
    async fn get(&self, name: &str, company: &str) -> Result<Option<Watermark>, SyncError> {
        Ok(self.state.watermark(name, company).await?)
    }
    async fn put(&self, name: &str, company: &str, value: &str, expected: Option<u64>) -> Result<Watermark, SyncError> {
        Ok(self.state.put_watermark(name, company, value, expected).await?)
    }
    async fn delete(&self, name: &str, company: &str) -> Result<(), SyncError> {
        Ok(self.state.delete_watermark(name, company).await?)
    }
}

impl FailureQueues for Deps {
    fn max_attempts(&self) -> u32 {
        self.cfg.max_attempts
    }
    fn retry_window(&self) -> u64 {
        self.cfg.retry_window.as_secs()
    }
    async fn send(&self, flow: FlowName, to: Routed, bodies: &[(String, u32)]) -> Result<(), SyncError> {
        if bodies.is_empty() {
            return Ok(());
        }
        let pair = self.queue_pair(flow).await?;
        let url = if to == Routed::Dlq {
            &pair.dlq_url
        } else {
            &pair.queue_url
        };
        Ok(self.queues.send_delayed(url, bodies).await?)
    }
}

/// In-memory checkpoints, with the same optimistic locking as DynamoDB's conditional writes.
#[derive(Default)]
pub struct MemoryCheckpoints {
    items: Mutex<HashMap<(String, String), Watermark>>,
}

impl MemoryCheckpoints {
    pub fn value(&self, name: &str, company: &str) -> Option<String> {
        self.lock().get(&(name.into(), company.into())).map(|w| w.value.clone())
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Watermark>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Checkpoints for MemoryCheckpoints {
    async fn get(&self, name: &str, company: &str) -> Result<Option<Watermark>, SyncError> {
        Ok(self.lock().get(&(name.into(), company.into())).cloned())
    }
    async fn put(&self, name: &str, company: &str, value: &str, expected: Option<u64>) -> Result<Watermark, SyncError> {
        let mut items = self.lock();
        let key = (name.to_string(), company.to_string());
        let current = items.get(&key).map(|w| w.version);
        if current != expected {
            return Err(SyncError::State(p2c_state::StateError::Conflict {
                what: "watermark",
                key: format!("{name}#{company}"),
                expected: format!("{expected:?}"),
                found: format!("{current:?}"),
            }));
        }
        let w = Watermark {
            value: value.to_string(),
            version: current.unwrap_or(0) + 1,
            updated_at: crate::pipeline::record::now(),
        };
        items.insert(key, w.clone());
        Ok(w)
    }
    async fn delete(&self, name: &str, company: &str) -> Result<(), SyncError> {
        self.lock().remove(&(name.into(), company.into()));
        Ok(())
    }
}

/// In-memory queues: what was sent where, with which delay.
pub struct MemoryQueues {
    max_attempts: u32,
    window: u64,
    sent: Mutex<Vec<(FlowName, Routed, Message, u32)>>,
}

impl MemoryQueues {
    pub fn new(max_attempts: u32, window: u64) -> MemoryQueues {
        MemoryQueues {
            max_attempts,
            window,
            sent: Mutex::default(),
        }
    }
    pub fn sent(&self) -> Vec<(FlowName, Routed, Message, u32)> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl FailureQueues for MemoryQueues {
    fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    fn retry_window(&self) -> u64 {
        self.window
    }
    async fn send(&self, flow: FlowName, to: Routed, bodies: &[(String, u32)]) -> Result<(), SyncError> {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        for (b, delay) in bodies {
            let m = Message::parse(Some(b)).map_err(|e| SyncError::BadEvent(e.to_string()))?;
            sent.push((flow, to, m, *delay));
        }
        Ok(())
    }
}
