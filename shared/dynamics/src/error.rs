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

impl DynamicsError {
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
