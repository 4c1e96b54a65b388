//! The crate's error type: every variant names what failed, for which key, and what to do next.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Errors from the state store, the queues and the local emulator.
///
/// [`StateError::is_transient`] tells whether repeating the same call unchanged may succeed (throttling,
/// timeouts, 5xx); everything else needs a change first (re-read, create the table, fix permissions).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A conditional write lost: someone else changed the item since it was read.
    #[error(
        "{what} `{key}` was changed concurrently (expected {expected}, found {found}); re-read it and \
         retry — another run of this flow and company may be active"
    )]
    Conflict {
        what: &'static str,
        key: String,
        expected: String,
        found: String,
    },

    /// The DynamoDB table does not exist.
    #[error("DynamoDB table `{table}` does not exist (during {op}); run `p2c init` or deploy the stack to create it")]
    TableMissing { op: &'static str, table: String },

    /// The SQS queue does not exist.
    #[error("SQS queue `{queue}` does not exist (during {op}); run `p2c init` to create the flow's queue and DLQ")]
    QueueMissing { op: &'static str, queue: String },

    /// A DynamoDB call failed.
    #[error("DynamoDB {op} on table `{table}` for `{key}` failed: {message}; {}", action_for(*transient))]
    Dynamo {
        op: &'static str,
        table: String,
        key: String,
        code: Option<String>,
        message: String,
        transient: bool,
    },

    /// An SQS call failed.
    #[error("SQS {op} on `{queue}` failed: {message}; {}", action_for(*transient))]
    Sqs {
        op: &'static str,
        queue: String,
        code: Option<String>,
        message: String,
        transient: bool,
    },

    /// A batch call kept returning unprocessed items after bounded retries (throttling).
    #[error(
        "DynamoDB {op} on table `{table}` left {remaining} item(s) unprocessed after {attempts} attempts \
         (first: `{first_key}`); the table is being throttled — retry the run later"
    )]
    Unprocessed {
        op: &'static str,
        table: String,
        remaining: usize,
        attempts: u32,
        first_key: String,
    },

    /// One entry of an SQS batch call failed (after one retry where that makes sense).
    #[error(
        "SQS {op} on `{queue}`: entry {entry} failed with {code}: {message}; {}",
        if *sender_fault { "the request is invalid — fix the message or handle, retrying will not help" }
        else { "SQS-side failure — retry later" }
    )]
    BatchEntry {
        op: &'static str,
        queue: String,
        entry: String,
        code: String,
        message: String,
        sender_fault: bool,
    },

    /// An item in the table does not have the shape this crate writes.
    #[error(
        "item `{key}` in table `{table}` is malformed: {detail}; it was not written by this version of p2c — fix or delete it"
    )]
    Corrupt { table: String, key: String, detail: String },

    /// The caller passed something that cannot be stored.
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },

    /// Waiting for a resource (table ACTIVE, emulator up) took too long.
    #[error("timed out after {secs}s waiting for {what}; {action}")]
    Timeout {
        what: String,
        secs: u64,
        action: &'static str,
    },

    /// The local AWS emulator (moto_server) could not be started.
    #[error("local AWS emulator: {0}")]
    Local(String),
}

impl StateError {
    /// True when repeating the same call unchanged may succeed (throttling, timeouts, network, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            StateError::Dynamo { transient, .. } | StateError::Sqs { transient, .. } => *transient,
            StateError::Unprocessed { .. } | StateError::Timeout { .. } => true,
            StateError::BatchEntry { sender_fault, .. } => !sender_fault,
            StateError::Conflict { .. }
            | StateError::TableMissing { .. }
            | StateError::QueueMissing { .. }
            | StateError::Corrupt { .. }
            | StateError::Invalid { .. }
            | StateError::Local(_) => false,
        }
    }

    /// True for a lost conditional write (see [`StateError::Conflict`]).
    pub fn is_conflict(&self) -> bool {
        matches!(self, StateError::Conflict { .. })
    }
}

/// What we learn from any SDK error: the service code, a readable message, and whether it is worth retrying.
pub(crate) struct Classified {
    pub code: Option<String>,
    pub message: String,
    pub transient: bool,
}

// Both SDKs alias the same smithy `SdkError`, so one classifier serves DynamoDB and SQS.
pub(crate) fn classify<E>(err: &SdkError<E>) -> Classified
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().map(str::to_owned);
            let status = se.raw().status().as_u16();
            let transient = status >= 500
                || status == 429
                || matches!(
                    code.as_deref(),
                    Some(
                        "ThrottlingException"
                            | "Throttling"
                            | "ProvisionedThroughputExceededException"
                            | "RequestLimitExceeded"
                            | "InternalServerError"
                            | "ServiceUnavailable"
                            | "TransactionConflictException"
                            | "RequestThrottled"
                            | "AWS.SimpleQueueService.RequestThrottled"
                            | "KmsThrottled"
                    )
                );
            let message = match (&code, se.err().message()) {
                (Some(c), Some(m)) => format!("{c}: {m} (HTTP {status})"),
                (Some(c), None) => format!("{c} (HTTP {status})"),
                _ => format!("{} (HTTP {status})", DisplayErrorContext(err)),
            };
            Classified {
                code,
                message,
                transient,
            }
        }
        // Timeouts, connection failures and unreadable responses are network trouble: retry.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Classified {
            code: None,
            message: DisplayErrorContext(err).to_string(),
            transient: true,
        },
        _ => Classified {
            code: None,
            message: DisplayErrorContext(err).to_string(),
            transient: false,
        },
    }
}

pub(crate) fn action_for(transient: bool) -> &'static str {
    if transient {
        "this is transient (throttling, network or a service-side error) — retry later"
    } else {
        "this will not go away by retrying — check the endpoint, region, credentials/IAM permissions and the table/queue configuration"
    }
}

pub(crate) fn dynamo_err<E>(op: &'static str, table: &str, key: impl Into<String>, err: SdkError<E>) -> StateError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let c = classify(&err);
    if c.code.as_deref() == Some("ResourceNotFoundException") {
        return StateError::TableMissing {
            op,
            table: table.to_owned(),
        };
    }
    StateError::Dynamo {
        op,
        table: table.to_owned(),
        key: key.into(),
        code: c.code,
        message: c.message,
        transient: c.transient,
    }
}

pub(crate) fn sqs_err<E>(op: &'static str, queue: &str, err: SdkError<E>) -> StateError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let c = classify(&err);
    if matches!(
        c.code.as_deref(),
        Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist" | "NonExistentQueue")
    ) {
        return StateError::QueueMissing {
            op,
            queue: queue.to_owned(),
        };
    }
    StateError::Sqs {
        op,
        queue: queue.to_owned(),
        code: c.code,
        message: c.message,
        transient: c.transient,
    }
}
