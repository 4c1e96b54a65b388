//! Client-credentials tokens (Entra ID v2 endpoint), cached per resource until shortly before expiry.

use std::{
    collections::HashMap,
    fmt,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Deserialize;

use crate::error::DynamicsError;

/// A secret that never prints itself.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Clone, Debug)]
pub struct Credentials {
    /// e.g. `https://login.microsoftonline.com` (the sandbox overrides it).
    pub authority_url: String,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: Secret,
}

/// Refresh this long before `expires_in` runs out, so a token never expires mid-request.
const EARLY_REFRESH: Duration = Duration::from_secs(300);

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// Tokens are per resource: a Sales token is not accepted by F&O, so the cache is keyed by scope.
pub struct TokenCache {
    http: reqwest::Client,
    creds: Credentials,
    cache: Mutex<HashMap<String, Cached>>,
    // Serialises fetches so a burst of requests after expiry asks the token endpoint once.
    fetch: tokio::sync::Mutex<()>,
    fetched: std::sync::atomic::AtomicU64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: serde_json::Value,
}

impl TokenCache {
    pub fn new(http: reqwest::Client, creds: Credentials) -> Self {
        TokenCache {
            http,
            creds,
            cache: Mutex::new(HashMap::new()),
            fetch: tokio::sync::Mutex::new(()),
            fetched: Default::default(),
        }
    }

    /// The application (client) id these tokens are issued to.
    pub fn client_id(&self) -> &str {
        &self.creds.client_id
    }

    /// Number of tokens fetched from the token endpoint so far.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn cached(&self, scope: &str) -> Option<Secret> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(scope)
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.token.clone())
    }

    /// A valid token for `scope`, from the cache or the token endpoint.
    pub async fn token(&self, service: &'static str, scope: &str) -> Result<Secret, DynamicsError> {
        if let Some(t) = self.cached(scope) {
            return Ok(t);
        }
        let _guard = self.fetch.lock().await;
        if let Some(t) = self.cached(scope) {
            return Ok(t);
        }
        let token = self.fetch_token(service, scope).await?;
        Ok(token)
    }

    /// Drops a token the service refused (401), unless another task already replaced it.
    pub fn invalidate(&self, scope: &str, token: &Secret) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.get(scope).is_some_and(|c| c.token.expose() == token.expose()) {
            cache.remove(scope);
        }
    }

    async fn fetch_token(&self, service: &'static str, scope: &str) -> Result<Secret, DynamicsError> {
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.creds.authority_url.trim_end_matches('/'),
            self.creds.tenant
        );
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.creds.client_id.as_str()),
            ("client_secret", self.creds.client_secret.expose()),
            ("scope", scope),
        ];
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.fetched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let resp = self.http.post(&url).form(&form).send().await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) if attempt < 5 => {
                    tracing::warn!(service, attempt, error = %crate::api::redact(&e), "token endpoint unreachable; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    continue;
                }
                Err(e) => {
                    return Err(DynamicsError::Transport {
                        service,
                        method: "POST".into(),
                        path: "/oauth2/v2.0/token".into(),
                        message: crate::api::redact(&e),
                    });
                }
            };
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            if (status == 429 || status >= 500) && attempt < 5 {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                continue;
            }
            if status != 200 {
                return Err(DynamicsError::Auth {
                    service,
                    status,
                    message: token_error_message(&body),
                });
            }
            let parsed: TokenResponse = serde_json::from_str(&body).map_err(|e| DynamicsError::Auth {
                service,
                status,
                message: format!("the token endpoint answered something that is not a token response ({e})"),
            })?;
            if parsed.access_token.is_empty() {
                return Err(DynamicsError::Auth {
                    service,
                    status,
                    message: "empty access_token".into(),
                });
            }
            // Entra sends expires_in as a number; some proxies send it as a string.
            let secs = match &parsed.expires_in {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .unwrap_or(300);
            let lifetime = Duration::from_secs(secs);
            let refresh_at = Instant::now() + lifetime.saturating_sub(EARLY_REFRESH.min(lifetime / 2));
            let token = Secret::new(parsed.access_token);
            self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
                scope.to_string(),
                Cached {
                    token: token.clone(),
                    refresh_at,
                },
            );
            return Ok(token);
        }
    }
}

/// Entra's error bodies carry `error` and `error_description`; never echo anything else (it could hold a secret).
fn token_error_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct E {
        error: Option<String>,
        error_description: Option<String>,
    }
    match serde_json::from_str::<E>(body) {
        Ok(E {
            error,
            error_description,
        }) => {
            let mut m = error.unwrap_or_else(|| "unknown_error".into());
            if let Some(d) = error_description {
                m.push_str(": ");
                m.push_str(d.lines().next().unwrap_or(""));
            }
            m
        }
        Err(_) => format!("unreadable answer ({} bytes)", body.len()),
    }
}
