use thiserror::Error;

/// Run-level failures: the run stops, the watermark stays where it was, and the next run redoes the tail.
/// Per-record problems never become a `SyncError`; they are counted and routed in the report.
#[derive(Debug, Error)]
pub enum SyncError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("mapping configuration: {0}")]
    Mapping(String),
    #[error("state (DynamoDB/SQS): {0}")]
    State(#[from] p2c_state::StateError),
    #[error("{0}")]
    Dynamics(#[from] p2c_dynamics::DynamicsError),
    #[error("unknown flow {0:?}; known flows: {1}")]
    UnknownFlow(String, String),
    #[error("company {0:?} is not in P2C_COMPANIES ({1}); add it there or fix the schedule's input")]
    UnknownCompany(String, String),
    #[error("business unit {bu:?} of company {company} was not found in Sales; fix P2C_COMPANIES")]
    BusinessUnit { company: String, bu: String },
    #[error(
        "business unit {bu} of company {company} has no default team in Sales (Dataverse creates one with every \
         business unit, and p2c's records are owned by it); check that p2c's application user may read teams"
    )]
    DefaultTeam { company: String, bu: String },
    #[error("this function runs flow {expected}, but the event asks for {got}")]
    WrongFlow { expected: String, got: String },
    #[error("interrupted after {done} records; run the same command again to resume where it stopped")]
    Interrupted { done: u64 },
    /// The invocation's deadline is near: the run stops cleanly and the next one continues.
    #[error("stopped after {done} records before the Lambda deadline; the next run continues from there")]
    Deadline { done: u64 },
    #[error("a bug stopped the run: {0}; nothing after the last commit was lost — please report it")]
    Panic(String),
    /// Test hook: the process "died" at this point (see `faults::CrashPoint`).
    #[error("simulated crash at {0:?}")]
    SimulatedCrash(crate::faults::CrashPoint),
    #[error("{0}")]
    Unsupported(String),
    #[error("the lease of {flow}/{company} was lost mid-run (it expired or was taken); the next run redoes the rest")]
    LeaseLost { flow: String, company: String },
    #[error("the event is neither an SQS batch nor a schedule input: {0}")]
    BadEvent(String),
    /// The flow reads a Sales table through change tracking, which is off for it.
    #[error(
        "Sales table {table} has change tracking off, and this flow reads the table's changes through change \
         tracking: turn on \"Track changes\" for the table (Power Apps > Tables > {table} > Properties > Advanced \
         options), then run the flow again (its first run reads the whole table)"
    )]
    ChangeTrackingOff { table: String },
}

impl From<crate::faults::CrashPoint> for SyncError {
    fn from(p: crate::faults::CrashPoint) -> Self {
        SyncError::SimulatedCrash(p)
    }
}

impl SyncError {
    /// Whether running again later can succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::State(e) => e.is_transient(),
            SyncError::Dynamics(e) => e.is_transient(),
            SyncError::LeaseLost { .. } | SyncError::SimulatedCrash(_) => true,
            _ => false,
        }
    }
}

impl From<SyncError> for lambda_runtime::Diagnostic {
    fn from(e: SyncError) -> Self {
        let kind = if e.is_transient() { "Retryable" } else { "NeedsOperator" };
        lambda_runtime::Diagnostic {
            error_type: kind.into(),
            error_message: e.to_string(),
        }
    }
}
