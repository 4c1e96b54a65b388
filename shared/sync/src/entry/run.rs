//! One scheduled run of a flow for one company: lease, read changes since the watermark, sync page by page,
//! commit links, then advance the watermark.

use std::{panic::AssertUnwindSafe, time::Instant};

use futures::FutureExt;
use tracing::Instrument;

use p2c_state::RunRecord;

use crate::{deps::Deps, error::SyncError, flow_name::FlowName, pipeline::RunOptions, report::RunReport};

/// Runs one flow for one company. Another run holding the lease is not an error: the report says so.
pub async fn run_flow(deps: &Deps, flow: FlowName, company: &str, opts: &RunOptions) -> Result<RunReport, SyncError> {
    let company = deps.legal_entity(company)?;
    let started = Instant::now();
    let run_id = uuid::Uuid::new_v4().to_string();
    let trigger = if opts.trigger.is_empty() {
        "schedule"
    } else {
        opts.trigger.as_str()
    };
    let mut report = RunReport::new(&run_id, flow.as_str(), &company, trigger);
    let ddb_before = deps.state.request_count();
    let units_before = deps.state.units();
    let stats_before = deps.dynamics_stats();
    let started_at = now_rfc3339();

    let Some(lease) = deps
        .state
        .acquire_lease(flow.as_str(), &company, &run_id, deps.cfg.lease_ttl)
        .await?
    else {
        let holder = deps
            .state
            .lease_holder(flow.as_str(), &company)
            .await?
            .map(|l| l.owner)
            .unwrap_or_default();
        tracing::info!(flow = %flow, company, holder, "another run holds the lease; nothing to do");
        report.lease_held_by = Some(holder);
        return Ok(report);
    };
    // Lag: how old the data this run starts from is (the watermark's last move).
    report.lag_seconds = match deps.state.watermark(flow.as_str(), &company).await {
        Ok(Some(w)) => age_seconds(&w.updated_at),
        _ => None,
    };
    // A panic inside the flow must not take the lease and the run record with it.
    // Every log line of the run carries its id (and the Lambda request id).
    let span = tracing::info_span!("run", run_id = %run_id, flow = %flow, company = %company, request_id = opts.request_id.as_deref().unwrap_or(""));
    let result = AssertUnwindSafe(crate::flows::run(deps, flow, &company, opts, &mut report, &lease))
        .catch_unwind()
        .instrument(span)
        .await
        .unwrap_or_else(|p| Err(SyncError::Panic(panic_text(&p))));
    if let Err(SyncError::SimulatedCrash(point)) = &result {
        // A process that died writes nothing more: the lease stays until it expires, no run record.
        tracing::warn!(flow = %flow, company, point = ?point, "simulated crash");
        return result.map(|_| report);
    }
    if let Err(e) = deps.state.release_lease(&lease).await {
        tracing::warn!(flow = %flow, company, error = %e, "could not release the lease; it will expire");
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    report.dynamodb_requests = deps.state.request_count() - ddb_before;
    let (rru, wru) = deps.state.units();
    report.dynamodb_read_units = rru - units_before.0;
    report.dynamodb_write_units = wru - units_before.1;
    report.dynamics_requests = diff(&deps.dynamics_stats(), &stats_before);
    let interrupted = matches!(result, Err(SyncError::Deadline { .. }));
    report.interrupted = interrupted;
    report.request_id = opts.request_id.clone();
    let failed = result.as_ref().err().filter(|_| !interrupted);
    record(deps, &report, started_at, failed).await;
    if interrupted {
        // Stopped before the deadline with everything committed: not an error; the next run continues.
        tracing::info!(flow = %flow, company, read = report.read, "stopped before the Lambda deadline");
        return Ok(report);
    }
    result?;
    tracing::info!(
        flow = %flow, company, read = report.read, written = report.written, skipped = report.skipped,
        failed = report.failed, duration_ms = report.duration_ms, "run finished"
    );
    Ok(report)
}

/// The run's record in the history (`p2c status`) and its metrics line: for scheduled runs and SQS groups alike.
pub(crate) async fn record(deps: &Deps, report: &RunReport, started_at: String, failed: Option<&SyncError>) {
    let record = RunRecord {
        run_id: report.run_id.clone(),
        flow: report.flow.clone(),
        company: report.company.clone(),
        trigger: report.trigger.clone(),
        started_at,
        duration_ms: report.duration_ms,
        read: report.read,
        written: report.written,
        skipped: report.skipped,
        failed: report.failed,
        skipped_by_reason: report
            .skipped_by_reason
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), *v))
            .collect(),
        first_errors: match failed {
            Some(e) => vec![format!("run failed: {e}")],
            None => report.first_errors(5),
        },
        interrupted: report.interrupted,
        request_id: report.request_id.clone(),
    };
    if let Err(e) = deps.state.put_run(&record).await {
        tracing::warn!(flow = %report.flow, company = %report.company, error = %e, "could not record the run");
    }
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() || std::env::var_os("P2C_EMF").is_some() {
        // One CloudWatch Embedded Metric Format line per run; the dashboard and alarms read these.
        println!(
            "{}",
            crate::entry::metrics::emf_line(report, failed.is_some(), &deps.cfg.stack)
        );
    }
}

/// Now, as run records keep it.
pub(crate) fn now_rfc3339() -> String {
    crate::pipeline::record::now()
}

fn diff(after: &p2c_dynamics::RequestStats, before: &p2c_dynamics::RequestStats) -> p2c_dynamics::RequestStats {
    let mut out = p2c_dynamics::RequestStats {
        throttled: after.throttled - before.throttled.min(after.throttled),
        retried: after.retried - before.retried.min(after.retried),
        ..Default::default()
    };
    for (k, v) in &after.by_endpoint {
        let d = v - before.by_endpoint.get(k).copied().unwrap_or(0).min(*v);
        if d > 0 {
            out.by_endpoint.insert(k.clone(), d);
        }
    }
    out
}

fn age_seconds(rfc3339: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok()?;
    let age = time::OffsetDateTime::now_utc() - t;
    Some(age.whole_seconds().max(0) as u64)
}

/// The message of a caught panic.
pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
