//! What a run did: every record read ends written, skipped with a reason, or failed (queued or dead-lettered).

use std::collections::BTreeMap;

use p2c_dynamics::RequestStats;
use serde::Serialize;

/// At most this many failures are kept verbatim in a report (the counts stay exact).
const MAX_ERRORS: usize = 50;

/// A record that did not make it, and whether trying again later can help. The one per-record failure type:
/// every flow returns these and the pipeline routes them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failure {
    /// The source record's id (what a retry message carries); empty when the record has none.
    pub id: String,
    /// The record's business key when known (account number), else its id.
    pub key: String,
    pub reason: String,
    pub transient: bool,
}

impl Failure {
    pub fn new(id: &str, key: &str, reason: impl Into<String>, transient: bool) -> Failure {
        Failure {
            id: id.to_string(),
            key: key.to_string(),
            reason: reason.into(),
            transient,
        }
    }
}

/// Where a failed record went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Routed {
    /// Queued for another try.
    Retry,
    Dlq,
    /// Not routed: it has no id to queue.
    None,
}

impl Routed {
    pub fn as_str(self) -> &'static str {
        match self {
            Routed::Retry => "retry",
            Routed::Dlq => "dlq",
            Routed::None => "none",
        }
    }
}

impl std::fmt::Display for Routed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RecordFailure {
    #[serde(flatten)]
    pub failure: Failure,
    pub routed: Routed,
}

impl std::ops::Deref for RecordFailure {
    type Target = Failure;
    fn deref(&self) -> &Failure {
        &self.failure
    }
}

/// Why a record read was not written. The report counts each by its label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    /// The mapped content equals what was last written.
    Unchanged,
    /// The target already holds every mapped value (the change came from the target in the first place).
    Echo,
    Filtered,
    /// contacts-to-fno: neither an active customer nor a contact of an account.
    NotCustomerNorPerson,
    LineFiltered,
    WriteInProduct,
    ProductNotInFno,
    OtherBusinessUnit,
    DeletedInSales,
    DocumentDeletedInSales,
    DeletedWithDocument,
    AlreadyDeletedInFno,
    GoneFromSales,
    GoneFromFno,
    /// Failed before and unchanged since: the queue and DLQ own it.
    FailedEarlier,
    ClosedInSales,
    /// Deactivated in Sales (statecode Inactive): reported; the target is retired only where configured.
    Inactive,
    /// An account or contact without its number (the key F&O needs): the Data Integrator's "not synced".
    NoNumber,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Unchanged => "unchanged",
            Skip::Echo => "echo",
            Skip::Filtered => "filtered by the template",
            Skip::NotCustomerNorPerson => {
                "filtered by the template (neither an active customer nor a contact of an account)"
            }
            Skip::LineFiltered => "filtered by the line template",
            Skip::WriteInProduct => {
                "filtered: a line has a write-in product (only externally maintained products go to F&O)"
            }
            Skip::ProductNotInFno => "filtered: a line's product is not maintained in F&O",
            Skip::OtherBusinessUnit => "owned by another business unit",
            Skip::DeletedInSales => "deleted in Sales (F&O records are never deleted by p2c)",
            Skip::DocumentDeletedInSales => "deleted in Sales (F&O documents are never deleted by p2c)",
            Skip::DeletedWithDocument => "deleted with its document (F&O documents are never deleted by p2c)",
            Skip::AlreadyDeletedInFno => "already deleted in F&O",
            Skip::GoneFromSales => "no longer in Sales",
            Skip::GoneFromFno => "no longer in F&O",
            Skip::FailedEarlier => "failed earlier, unchanged",
            Skip::ClosedInSales => "closed in Sales",
            Skip::Inactive => "deactivated in Sales (reported; see P2C_DEACTIVATE_TARGETS)",
            Skip::NoNumber => "not synced: no number (give it an account or contact number in Sales)",
        }
    }
}

impl Serialize for Skip {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub skipped_by_reason: BTreeMap<Skip, u64>,
    pub errors: Vec<RecordFailure>,
    /// Set when another run held the lease and this one did nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_held_by: Option<String>,
    /// The delta link had expired or was refused: this run re-read everything.
    pub full_resync: bool,
    /// This run continued an interrupted read instead of starting it over.
    pub resumed: bool,
    /// This run stopped before its deadline; the next one continues from its resume point.
    pub interrupted: bool,
    /// The Lambda request id of the invocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub duration_ms: u64,
    /// Age of the watermark when the run started (how far behind the source this run began).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<u64>,
    pub dynamics_requests: RequestStats,
    pub dynamodb_requests: u64,
    /// DynamoDB read request units (strongly consistent reads count whole units) and write request units the run
    /// consumed, estimated from item sizes as on-demand bills them.
    pub dynamodb_read_units: f64,
    pub dynamodb_write_units: u64,
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

    pub fn skip(&mut self, reason: Skip) {
        self.skipped += 1;
        *self.skipped_by_reason.entry(reason).or_default() += 1;
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
        match f.routed {
            Routed::Retry => self.retry_queued += 1,
            Routed::Dlq => self.dead_lettered += 1,
            Routed::None => {}
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
