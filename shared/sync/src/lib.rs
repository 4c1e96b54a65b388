//! The pipeline every flow runs and the Lambda event handling (schedule + SQS).
//!
//! Source → transform → sink: a flow reads changes from one system, maps them with a template from
//! `p2c-mapping`, skips what is unchanged, writes in batches to the other system, commits links, and only then
//! advances its watermark. Per-record failures are routed to the flow's queue or DLQ, never dropped.

pub mod config;
pub mod contacts;
pub mod deps;
mod dispatch;
pub mod documents;
pub mod error;
pub mod faults;
pub mod flows;
pub mod fno_to_sales;
pub mod handler;
pub mod lookups;
pub mod message;
pub mod metrics;
pub mod reconcile;
pub mod report;
pub mod route;
pub mod run;
pub mod sales_to_fno;
pub mod segments;
mod to_fno;

pub use config::{Company, Config};
pub use deps::Deps;
pub use error::SyncError;
pub use flows::FlowName;
pub use handler::{ScheduledRun, handle_event, handle_schedule, handle_sqs, handle_sqs_report};
pub use message::{Message, Reason};
pub use report::RunReport;
pub use run::{RunOptions, run_flow};
