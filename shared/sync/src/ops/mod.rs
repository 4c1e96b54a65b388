//! Operator tasks beside the scheduled runs: reconcile both systems, enqueue a segmented backfill.

pub mod reconcile;
pub mod segments;
