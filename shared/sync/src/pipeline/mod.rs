//! The pipeline every flow runs, and the parts it is made of. It knows no flow: a flow is a [`Flow`] (its
//! source, and what it does with a page), and the loop is the same for all seven:
//!
//! read a page (delta link or F&O keyset sweep) → the flow maps, decides (skip unchanged / echo / filtered,
//! with a [`Skip`](crate::report::Skip) reason), writes and commits links → route its failures → renew the
//! lease → save the resume point → … → advance the watermark. SQS is "re-read these keys, then the same steps"
//! ([`Flow::sync_keys`]).

pub mod checkpoint;
pub mod failures;
pub mod links;
pub mod lookups;
pub mod ports;
pub mod record;
pub mod retire;
pub mod sink;
pub mod source;

use std::future::Future;

use p2c_state::Lease;

use crate::{
    deps::Deps,
    error::SyncError,
    faults::CrashPoint,
    flow_name::FlowName,
    report::{Failure, RunReport},
};
use checkpoint::Checkpoint;
use failures::route_failures;
use source::{Page, Source, SourceSpec};

/// Called after each page with the counts so far; returning false interrupts the run (it resumes next time).
pub type Progress = std::sync::Arc<dyn Fn(&RunReport) -> bool + Send + Sync>;

#[derive(Clone, Default)]
pub struct RunOptions {
    /// Ignore the watermark and re-read everything (links still prevent duplicates and rewrites).
    pub full_resync: bool,
    pub trigger: String,
    pub progress: Option<Progress>,
    /// Stop cleanly after the page under way once this time has come (resume point saved, lease released):
    /// the Lambda deadline less `Config::deadline_margin`.
    pub stop_by: Option<std::time::Instant>,
    /// The Lambda request id, kept on the run record.
    pub request_id: Option<String>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("full_resync", &self.full_resync)
            .field("trigger", &self.trigger)
            .field("progress", &self.progress.is_some())
            .field("stop_by", &self.stop_by)
            .finish()
    }
}

impl RunOptions {
    /// Reports progress; an error when the caller asked to stop, or when the deadline is near.
    pub fn tick(&self, report: &RunReport) -> Result<(), SyncError> {
        if self.stop_by.is_some_and(|t| std::time::Instant::now() >= t) {
            return Err(SyncError::Deadline { done: report.read });
        }
        match &self.progress {
            Some(p) if !p(report) => Err(SyncError::Interrupted { done: report.read }),
            _ => Ok(()),
        }
    }
}

/// What differs between flows. One value is opened per run for one company.
pub trait Flow: Send {
    fn name(&self) -> FlowName;
    /// What the flow reads.
    fn source(&self) -> SourceSpec;
    /// Syncs one page: map, decide, write, commit links. Returns the records that failed (the loop routes them).
    fn sync_page(
        &mut self,
        deps: &Deps,
        page: Page,
        report: &mut RunReport,
    ) -> impl Future<Output = Result<Vec<Failure>, SyncError>> + Send;
    /// Syncs records named by key (SQS: changes, retries, replays): re-read them, then the same steps.
    fn sync_keys(
        &mut self,
        deps: &Deps,
        keys: Vec<String>,
        report: &mut RunReport,
    ) -> impl Future<Output = Result<Vec<Failure>, SyncError>> + Send;
    /// After the last page of a scheduled read, before the watermark moves: what only a whole read can tell
    /// (products-to-sales: the products the sweep no longer found). Returns the records that failed.
    fn after_last_page(
        &mut self,
        _deps: &Deps,
        _report: &mut RunReport,
    ) -> impl Future<Output = Result<Vec<Failure>, SyncError>> + Send {
        async { Ok(Vec::new()) }
    }
}

/// A scheduled run's work for one company: page by page from the checkpoint, then the watermark.
pub async fn run_changes(
    deps: &Deps,
    flow: &mut impl Flow,
    company: &str,
    opts: &RunOptions,
    report: &mut RunReport,
    lease: &Lease,
) -> Result<(), SyncError> {
    let name = flow.name();
    let spec = flow.source();
    let full = opts.full_resync;
    let mut cp = Checkpoint::open(deps, name, company, full, spec.position_is_watermark(), report).await?;
    let mut source = Source::open(deps, &spec, company, cp.start(), report);
    while let Some(page) = source.next(deps, report).await? {
        let failures = flow.sync_page(deps, page, report).await?;
        route_failures(deps, name, company, failures, 1, report).await?;
        renew(deps, lease, name, company).await?;
        if let Some(position) = source.position() {
            cp.save(deps, &position).await?;
            // Only after the position moved past this page may the caller stop the run.
            opts.tick(report)?;
        }
    }
    let failures = flow.after_last_page(deps, report).await?;
    route_failures(deps, name, company, failures, 1, report).await?;
    // Links are committed page by page above; only now may the watermark move.
    deps.crashes.check(CrashPoint::BeforeWatermark)?;
    cp.finish(deps, &source.watermark()).await
}

/// Keeps the run's lease between pages; a lost lease stops the run before the watermark moves.
async fn renew(deps: &Deps, lease: &Lease, flow: FlowName, company: &str) -> Result<(), SyncError> {
    if deps.state.renew_lease(lease, deps.cfg.lease_ttl).await? {
        Ok(())
    } else {
        Err(SyncError::LeaseLost {
            flow: flow.as_str().into(),
            company: company.into(),
        })
    }
}
