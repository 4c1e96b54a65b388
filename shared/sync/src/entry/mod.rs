//! The edge: Lambda events (a schedule input or an SQS batch), one run of a flow for one company (lease, run
//! record, metrics), and the SQS batch handling. Imports flows and the pipeline; nothing imports it.

pub mod handler;
pub mod metrics;
pub mod run;
