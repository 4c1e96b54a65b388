//! Where accepted events go: each flow's SQS queue (the Lambda is given the URLs; the CLI finds the queues by
//! name), or a list in memory for unit tests.

use std::{collections::HashMap, sync::Mutex};

use p2c_state::Queues;

use crate::flow_name::FlowName;

pub enum Sink {
    Sqs(SqsSink),
    Memory(MemorySink),
}

pub struct SqsSink {
    queues: Queues,
    urls: Mutex<HashMap<FlowName, String>>,
}

/// Messages sent so far, per flow; `fail` makes every send fail (a queue outage).
#[derive(Default)]
pub struct MemorySink {
    pub sent: Mutex<Vec<(FlowName, String)>>,
    pub fail: std::sync::atomic::AtomicBool,
}

impl SqsSink {
    pub fn new(queues: Queues, urls: &[(FlowName, String)]) -> SqsSink {
        SqsSink {
            queues,
            urls: Mutex::new(urls.iter().cloned().collect()),
        }
    }

    async fn url(&self, flow: FlowName) -> Result<String, String> {
        if let Some(u) = self.urls.lock().unwrap_or_else(|p| p.into_inner()).get(&flow) {
            return Ok(u.clone());
        }
        let pair = self.queues.urls(flow.as_str()).await.map_err(|e| e.to_string())?;
        self.urls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(flow, pair.queue_url.clone());
        Ok(pair.queue_url)
    }
}

impl Sink {
    pub async fn send(&self, flow: FlowName, bodies: &[String]) -> Result<(), String> {
        match self {
            Sink::Sqs(s) => {
                let url = s.url(flow).await?;
                s.queues.send(&url, bodies).await.map_err(|e| e.to_string())
            }
            Sink::Memory(m) => {
                if m.fail.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(format!("the queue of {flow} is unavailable (test)"));
                }
                let mut sent = m.sent.lock().unwrap_or_else(|p| p.into_inner());
                sent.extend(bodies.iter().map(|b| (flow, b.clone())));
                Ok(())
            }
        }
    }
}
