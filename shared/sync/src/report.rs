//! What a run did: every record read ends written, skipped with a reason, or failed (queued or dead-lettered).

use std::collections::BTreeMap;

use p2c_dynamics::RequestStats;
use serde::Serialize;

/// At most this many failures are kept verbatim in a report (the counts stay exact).
const MAX_ERRORS: usize = 50;

#[derive(Clone, Debug, Serialize)]
pub struct RecordFailure {
    /// The source record's id (what a retry message carries).
    pub id: String,
    /// The record's business key when known (account number), else its id.
    pub key: String,
    pub reason: String,
    pub transient: bool,
    /// "retry" (queued), "dlq", or "none" (not routed: dry run, or the queue was unreachable).
    pub routed: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub flow: String,
    pub company: String,
    pub trigger: String,
    pub read: u64,
    pub written: u64,
    pub created: u64,
    pub updated: u64,
    /// Target records deleted (document lines deleted in the source); counted in `written` too.
    pub deleted: u64,
    pub skipped: u64,
    pub failed: u64,
    pub retry_queued: u64,
    pub dead_lettered: u64,
    pub skipped_by_reason: BTreeMap<String, u64>,
    pub errors: Vec<RecordFailure>,
    /// Set when another run held the lease and this one did nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_held_by: Option<String>,
    /// The delta link had expired or was refused: this run re-read everything.
    pub full_resync: bool,
    /// This run continued an interrupted full read instead of starting it over.
    pub resumed: bool,
    pub duration_ms: u64,
    /// Age of the watermark when the run started (how far behind the source this run began).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<u64>,
    pub dynamics_requests: RequestStats,
    pub dynamodb_requests: u64,
}

impl RunReport {
    pub fn new(run_id: &str, flow: &str, company: &str, trigger: &str) -> Self {
        RunReport {
            run_id: run_id.into(),
            flow: flow.into(),
            company: company.into(),
            trigger: trigger.into(),
            ..Default::default()
        }
    }

    pub fn skip(&mut self, reason: &str) {
        self.skipped += 1;
        *self.skipped_by_reason.entry(reason.to_string()).or_default() += 1;
    }

    pub fn wrote(&mut self, created: bool) {
        self.written += 1;
        if created {
            self.created += 1;
        } else {
            self.updated += 1;
        }
    }

    /// A delete in the target (a document line removed in the source).
    pub fn wrote_delete(&mut self) {
        self.written += 1;
        self.deleted += 1;
    }

    pub fn fail(&mut self, f: RecordFailure) {
        self.failed += 1;
        match f.routed.as_str() {
            "retry" => self.retry_queued += 1,
            "dlq" => self.dead_lettered += 1,
            _ => {}
        }
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(f);
        }
    }

    /// The books balance: nothing read was lost between the counters.
    pub fn balanced(&self) -> bool {
        self.read == self.written + self.skipped + self.failed
    }

    pub fn first_errors(&self, n: usize) -> Vec<String> {
        self.errors
            .iter()
            .take(n)
            .map(|e| format!("{}: {}", e.key, e.reason))
            .collect()
    }
}
