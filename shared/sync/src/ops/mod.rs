//! Operator tasks beside the scheduled runs: reconcile both systems, enqueue a segmented backfill, register the
//! Dataverse webhooks of the events function.

pub mod events;
pub mod reconcile;
pub mod segments;
