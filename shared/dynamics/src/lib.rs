//! Clients for the two Dynamics APIs: Dataverse Web API (Dynamics 365 Sales) and the F&O OData service.
//!
//! Both share one HTTP core ([`api::Api`]): client-credentials tokens cached per resource, 401 → refresh once,
//! 429 honoured with `Retry-After`, 5xx/timeouts retried with capped exponential backoff and jitter, and a
//! request counter per endpoint so runs can report what they cost.

pub mod api;
pub mod auth;
pub mod batch;
pub mod dataverse;
pub mod error;
pub mod fno;
pub mod odata;
pub mod raw;
pub mod users;

pub use api::{Api, DryRun, Limiter, PlannedWrite, RequestStats, RetryPolicy};
pub use auth::{Credentials, Secret, TokenCache};
pub use batch::{BatchOp, BatchResult, SetResult, WriteMethod};
pub use dataverse::{ChangePage, Dataverse};
pub use error::{DynamicsError, ErrorKind};
pub use fno::Fno;
pub use raw::RawRows;
pub use users::{AppUser, Budget, Users};

/// A record as both APIs put it on the wire: a JSON object.
pub type Record = serde_json::Map<String, serde_json::Value>;

/// Builds the shared reqwest client: one connection pool for both services.
pub fn http_client(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(std::time::Duration::from_secs(10))
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("reqwest client with static settings")
}

/// Non-loopback endpoints must use https: tokens must never cross a network in clear text.
pub fn check_endpoint(name: &str, url: &str) -> Result<(), DynamicsError> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    let loopback = ["http://127.", "http://localhost", "http://[::1]"];
    if loopback.iter().any(|p| lower.starts_with(p)) {
        return Ok(());
    }
    Err(DynamicsError::Config(format!(
        "{name} = {url:?} must be an https:// URL (plain http is only allowed on loopback)"
    )))
}
