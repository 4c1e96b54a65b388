//! The edge: Lambda events (a schedule input or an SQS batch), one run of a flow for one company (lease, run
//! record, metrics), and the SQS batch handling; and the events ingress (Dataverse webhooks and F&O business events
//! to the flows' queues). Imports flows and the pipeline; nothing imports it.

pub mod events;
pub mod handler;
pub mod metrics;
pub mod run;
