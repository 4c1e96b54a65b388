use thiserror::Error;

/// Everything that can go wrong talking to Dynamics. `is_transient` decides retry vs dead-letter.
#[derive(Debug, Error)]
pub enum DynamicsError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(
        "{service}: the token endpoint refused the client credentials ({status}): {message}. Check P2C_TENANT_ID, P2C_CLIENT_ID and the client secret"
    )]
    Auth {
        service: &'static str,
        status: u16,
        message: String,
    },
    #[error("{service}: {method} {path} answered {status}{code}: {message}", code = code_suffix(code))]
    Http {
        service: &'static str,
        method: String,
        path: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{service}: {method} {path} failed to connect or timed out: {message}")]
    Transport {
        service: &'static str,
        method: String,
        path: String,
        message: String,
    },
    #[error("{service}: gave up after {attempts} attempts: {last}")]
    Exhausted {
        service: &'static str,
        attempts: u32,
        last: Box<DynamicsError>,
    },
    #[error("{service}: could not read the response of {what}: {message}")]
    Decode {
        service: &'static str,
        what: String,
        message: String,
    },
}

fn code_suffix(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" ({code})")
    }
}

/// What kind of failure an error is, decided in one place (status, service error code, and for F&O's
/// validation answers its message) so callers never search message text themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The key is taken: a create found the record there (F&O "already exists", Dataverse 0x80040237 / 412).
    Duplicate,
    /// No record with that key (404).
    NotFound,
    /// Service protection (429) or busy (503): wait and retry.
    Throttled,
    /// The credentials or the token were refused.
    Auth,
    /// The service refused the data (validation, 400, F&O write failures): fix the record.
    Invalid,
    /// Connection, timeout, or a server error that may pass.
    Unavailable,
    /// Configuration or an answer p2c could not read.
    Other,
    /// A change-tracking read of a table whose change tracking is off: Dataverse's ChangeTrackingNotEnabledForEntity
    /// `0x80072491` "Entity {0} isn't enabled for change tracking." (PAD `reference/web-service-error-codes`). Someone
    /// has to turn it on for the table; retrying changes nothing.
    ChangeTrackingOff,
    /// A state change to the state the record is in already: Dataverse's ProductFromDraftToDraftState
    /// `0x8004F981`, ProductFromActiveToActiveState `0x8004F982`, ProductFromRetiredToRetiredState `0x8004F980`
    /// ("Product is already in ... State."; PAD `reference/web-service-error-codes`). What was asked is done.
    AlreadyInState,
}

impl DynamicsError {
    /// The kind of this failure (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            DynamicsError::Auth { .. } => ErrorKind::Auth,
            DynamicsError::Transport { .. } => ErrorKind::Unavailable,
            DynamicsError::Exhausted { last, .. } => last.kind(),
            DynamicsError::Config(_) | DynamicsError::Decode { .. } => ErrorKind::Other,
            DynamicsError::Http {
                status, code, message, ..
            } => http_kind(*status, code, message),
        }
    }

    /// Transient errors may succeed when retried later; the rest need someone to fix data or configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            DynamicsError::Config(_) | DynamicsError::Auth { .. } | DynamicsError::Decode { .. } => false,
            DynamicsError::Transport { .. } | DynamicsError::Exhausted { .. } => true,
            DynamicsError::Http { status, message, .. } => is_transient_status(*status, message),
        }
    }

    /// HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            DynamicsError::Http { status, .. } | DynamicsError::Auth { status, .. } => Some(*status),
            DynamicsError::Exhausted { last, .. } => last.status(),
            _ => None,
        }
    }
}

fn http_kind(status: u16, code: &str, message: &str) -> ErrorKind {
    if code.eq_ignore_ascii_case(CHANGE_TRACKING_OFF) {
        return ErrorKind::ChangeTrackingOff;
    }
    if ALREADY_IN_STATE.iter().any(|c| code.eq_ignore_ascii_case(c)) {
        return ErrorKind::AlreadyInState;
    }
    let duplicate_code = code.eq_ignore_ascii_case("0x80040237") || message.contains("0x80040237");
    match status {
        412 => ErrorKind::Duplicate,
        _ if duplicate_code || message.contains("already exists") => ErrorKind::Duplicate,
        401 | 403 => ErrorKind::Auth,
        404 => ErrorKind::NotFound,
        429 | 503 => ErrorKind::Throttled,
        _ if is_transient_status(status, message) => ErrorKind::Unavailable,
        _ => ErrorKind::Invalid,
    }
}

/// Dataverse's code for a change-tracking read of a table without change tracking.
const CHANGE_TRACKING_OFF: &str = "0x80072491";

/// Dataverse's codes for a product state change to the state it is in.
const ALREADY_IN_STATE: [&str; 3] = ["0x8004F981", "0x8004F982", "0x8004F980"];

/// F&O reports validation failures as HTTP 500 with an `AxODataWriteException`: those are permanent.
pub(crate) fn is_transient_status(status: u16, message: &str) -> bool {
    match status {
        408 | 429 | 502 | 503 | 504 => true,
        500 => !is_write_validation(message),
        _ => false,
    }
}

pub(crate) fn is_write_validation(message: &str) -> bool {
    message.contains("Write failed") || message.contains("AxODataWriteException") || message.contains("already exists")
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    fn http(status: u16, code: &str, message: &str) -> DynamicsError {
        DynamicsError::Http {
            service: "fno",
            method: "POST".into(),
            path: "CustomersV2".into(),
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn kinds_come_from_status_and_code() {
        assert_eq!(http(412, "", "").kind(), ErrorKind::Duplicate);
        assert_eq!(
            http(400, "0x80040237", "Cannot insert duplicate key.").kind(),
            ErrorKind::Duplicate
        );
        let fno = "Write failed for table row of type 'CustCustomerV3Entity'. The record already exists.";
        assert_eq!(http(500, "", fno).kind(), ErrorKind::Duplicate);
        assert_eq!(http(404, "", "").kind(), ErrorKind::NotFound);
        assert_eq!(http(429, "0x80072322", "").kind(), ErrorKind::Throttled);
        assert_eq!(http(500, "", "Write failed: field too long").kind(), ErrorKind::Invalid);
        assert_eq!(http(502, "", "").kind(), ErrorKind::Unavailable);
        assert_eq!(http(400, "", "bad value").kind(), ErrorKind::Invalid);
        let off = http(400, "0x80072491", "Entity account isn't enabled for change tracking.");
        assert_eq!(off.kind(), ErrorKind::ChangeTrackingOff);
        assert!(!off.is_transient());
        let done = http(400, "0x8004F982", "Product is already in Active State.");
        assert_eq!(done.kind(), ErrorKind::AlreadyInState);
        let gave_up = DynamicsError::Exhausted {
            service: "fno",
            attempts: 3,
            last: Box::new(http(429, "", "")),
        };
        assert_eq!(gave_up.kind(), ErrorKind::Throttled);
    }
}
