//! The pipeline every flow runs and the Lambda event handling (schedule + SQS).
//!
//! Three layers, each importing only the ones below it:
//! - `entry`: Lambda events, one run (lease, run record, metrics), SQS batches.
//! - `flows`: the seven flows, one module each; a flow is a [`pipeline::Flow`] (its source and what it does with
//!   a page). No flow imports another.
//! - `pipeline`: one page loop for every flow (read → map → decide → write → commit links → route failures →
//!   renew the lease → save the resume point → advance the watermark), its sources (Dataverse change tracking,
//!   F&O keyset sweep), sinks (F&O, Sales), checkpoints, links, lookups, and ports (traits for DynamoDB and SQS
//!   with in-memory twins). It imports no flow.
//!
//! `ops` (reconcile, segmented backfill) sits beside `entry`. Shared types: [`Config`], [`Deps`], [`SyncError`],
//! [`FlowName`], [`RunReport`], [`Message`].

pub mod budget;
pub mod config;
pub mod deps;
pub mod entry;
pub mod error;
pub mod faults;
pub mod flow_name;
pub mod flows;
pub mod message;
pub mod ops;
pub mod ownership;
pub mod pipeline;
pub mod report;

pub use config::{Company, Config};
pub use deps::Deps;
pub use entry::events::{EventsConfig, Ingress};
pub use entry::handler::{
    Invocation, ScheduledRun, handle_event, handle_invocation, handle_lambda, handle_schedule, handle_sqs,
    handle_sqs_report,
};
pub use entry::run::run_flow;
pub use error::SyncError;
pub use flow_name::FlowName;
pub use message::{Message, Reason};
pub use ops::{reconcile, segments};
pub use pipeline::{Progress, RunOptions};
pub use report::{Failure, RecordFailure, Routed, RunReport, Skip};

/// `p2c_sync::run::{RunOptions, Progress, run_flow}` as callers name them.
pub mod run {
    pub use crate::entry::run::run_flow;
    pub use crate::pipeline::{Progress, RunOptions};
}
