//! The HTTP core both clients share: auth headers, retries, throttling, request counting.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use rand::Rng;
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::{
    auth::TokenCache,
    error::DynamicsError,
    raw::{PageOf, RawRows},
    users::Users,
};

/// How hard to try before a request is handed back as failed (and the record goes to the retry queue).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts for 5xx, timeouts and dropped connections.
    pub max_attempts: u32,
    /// Attempts for 429: throttling is expected under load, so these get more patience.
    pub max_throttled_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` above this is capped (a Lambda has a deadline; the record will be retried later).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            max_throttled_attempts: 20,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Capped exponential backoff with full jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.min(16));
        let cap = exp.min(self.max_delay);
        let ms = cap.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
    }
}

/// Requests made, by `"<service> <METHOD> <entity set>"`, plus retries and throttles seen.
#[derive(Default, Debug, Clone, serde::Serialize)]
pub struct RequestStats {
    pub by_endpoint: BTreeMap<String, u64>,
    pub throttled: u64,
    pub retried: u64,
}

impl RequestStats {
    pub fn total(&self) -> u64 {
        self.by_endpoint.values().sum()
    }
    pub fn merge(&mut self, other: &RequestStats) {
        for (k, v) in &other.by_endpoint {
            *self.by_endpoint.entry(k.clone()).or_default() += v;
        }
        self.throttled += other.throttled;
        self.retried += other.retried;
    }
}

/// One service endpoint (Sales or F&O) with its token scope.
#[derive(Clone)]
pub struct Api {
    pub(crate) service: &'static str,
    pub(crate) http: reqwest::Client,
    /// The application users requests go as (one unless the deployment shards its load over several).
    pub(crate) users: Arc<Users>,
    pub(crate) base_url: String,
    pub(crate) scope: String,
    pub(crate) retry: RetryPolicy,
    pub(crate) stats: Arc<Mutex<RequestStats>>,
    pub(crate) dry_run: Option<Arc<DryRun>>,
    pub(crate) limiter: Arc<Limiter>,
}

/// Client-side limits per service: requests in flight, requests per second, and one shared pause after a 429
/// so that a throttled service sees the whole client back off at once instead of a storm of retries. The
/// budget shared with every other process of the deployment is per application user ([`Users`]).
pub struct Limiter {
    permits: tokio::sync::Semaphore,
    min_interval: Option<Duration>,
    next_slot: Mutex<std::time::Instant>,
    paused_until: Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("min_interval", &self.min_interval)
            .finish()
    }
}

impl Limiter {
    /// `max_concurrent` requests at once; `per_second` 0 = no rate limit.
    pub fn new(max_concurrent: usize, per_second: f64) -> Limiter {
        Limiter {
            permits: tokio::sync::Semaphore::new(max_concurrent.max(1)),
            min_interval: (per_second > 0.0).then(|| Duration::from_secs_f64(1.0 / per_second)),
            next_slot: Mutex::new(std::time::Instant::now()),
            paused_until: Mutex::new(None),
        }
    }

    async fn acquire(&self) -> tokio::sync::SemaphorePermit<'_> {
        let pause = *self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = pause {
            tokio::time::sleep_until(until.into()).await;
        }
        if let Some(step) = self.min_interval {
            let slot = {
                let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
                let now = std::time::Instant::now();
                let slot = (*next).max(now);
                *next = slot + step;
                slot
            };
            tokio::time::sleep_until(slot.into()).await;
        }
        self.permits.acquire().await.expect("the semaphore is never closed")
    }

    /// Every request of this service waits until `wait` has passed.
    fn pause(&self, wait: Duration) {
        let until = std::time::Instant::now() + wait;
        let mut p = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_none_or(|cur| cur < until) {
            *p = Some(until);
        }
    }
}

impl Default for Limiter {
    /// 16 in flight (Dataverse allows 52 per user), 20 requests/s (Dataverse: 6,000 per 5 minutes).
    fn default() -> Self {
        Limiter::new(16, 20.0)
    }
}

/// A write that a dry run recorded instead of sending.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PlannedWrite {
    pub service: &'static str,
    pub method: String,
    pub url: String,
    pub body: Option<serde_json::Value>,
}

/// Dry-run mode: reads go to the service, writes are recorded here and answered as if they succeeded.
#[derive(Default, Debug)]
pub struct DryRun {
    planned: Mutex<Vec<PlannedWrite>>,
}

impl DryRun {
    pub fn record(&self, w: PlannedWrite) {
        self.planned.lock().unwrap_or_else(|p| p.into_inner()).push(w);
    }
    pub fn planned(&self) -> Vec<PlannedWrite> {
        self.planned.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// reqwest errors print the URL; our URLs carry no secrets, but keep the text short and stable.
pub(crate) fn redact(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "connection dropped while reading the body"
    } else {
        "request failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({detail})")
    }
}

impl Api {
    pub fn new(service: &'static str, http: reqwest::Client, tokens: Arc<TokenCache>, base_url: &str) -> Self {
        let base_url = base_url.trim_end_matches('/').to_string();
        // Scope is the resource root + /.default (F&O: no trailing slash).
        let scope = format!("{base_url}/.default");
        Api {
            service,
            http,
            users: Arc::new(Users::one(tokens)),
            base_url,
            scope,
            retry: RetryPolicy::default(),
            stats: Default::default(),
            dry_run: None,
            limiter: Arc::new(Limiter::default()),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Makes requests as these application users (each with its own tokens and budget for this service).
    pub fn with_users(mut self, users: Arc<Users>) -> Self {
        self.users = users;
        self
    }

    /// Replaces the client-side limiter (one per service).
    pub fn with_limiter(mut self, limiter: Arc<Limiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Records writes in `dry` instead of sending them.
    pub fn with_dry_run(mut self, dry: Arc<DryRun>) -> Self {
        self.dry_run = Some(dry);
        self
    }

    pub fn dry_run(&self) -> Option<&Arc<DryRun>> {
        self.dry_run.as_ref()
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn stats(&self) -> RequestStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reset_stats(&self) {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = RequestStats::default();
    }

    fn count(&self, method: &Method, endpoint: &str) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        *s.by_endpoint
            .entry(format!("{} {} {}", self.service, method, endpoint))
            .or_default() += 1;
    }

    fn note(&self, throttled: bool) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        if throttled {
            s.throttled += 1;
        } else {
            s.retried += 1;
        }
    }

    /// Sends a request built by `build` (called again for every attempt) and returns a 2xx response.
    /// `endpoint` names the entity set for counting and errors; `path` is for error messages.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        endpoint: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, DynamicsError> {
        let path = url.strip_prefix(&self.base_url).unwrap_or(url).to_string();
        if let (Some(dry), true) = (&self.dry_run, method != Method::GET) {
            return Ok(self.plan(dry, method, url, build));
        }
        let mut attempts = 0u32;
        let mut throttled = 0u32;
        let mut refreshed = false;
        loop {
            attempts += 1;
            let user = self.users.take().await;
            let tokens = &self.users.get(user).tokens;
            let token = tokens.token(self.service, &self.scope).await?;
            let req = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token.expose())
                .header("Accept", "application/json")
                .header("OData-MaxVersion", "4.0")
                .header("OData-Version", "4.0");
            let permit = self.limiter.acquire().await;
            self.count(&method, endpoint);
            let result = build(req).send().await;
            drop(permit);
            let err = match result {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(&resp);
                    let body = resp.text().await.unwrap_or_default();
                    let (code, message) = error_text(&body);
                    let err = DynamicsError::Http {
                        service: self.service,
                        method: method.to_string(),
                        path: path.clone(),
                        status: status.as_u16(),
                        code,
                        message,
                    };
                    if status == StatusCode::UNAUTHORIZED && !refreshed {
                        // The token expired or was revoked early: fetch a new one once.
                        refreshed = true;
                        tokens.invalidate(&self.scope, &token);
                        tracing::info!(service = self.service, "token refused (401); fetching a new one");
                        continue;
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        throttled += 1;
                        if throttled >= self.retry.max_throttled_attempts {
                            return Err(DynamicsError::Exhausted {
                                service: self.service,
                                attempts,
                                last: Box::new(err),
                            });
                        }
                        let wait = retry_after
                            .map(|d| d.min(self.retry.max_retry_after))
                            .unwrap_or_else(|| self.retry.backoff(throttled));
                        self.note(true);
                        tracing::info!(
                            service = self.service,
                            wait_ms = wait.as_millis() as u64,
                            "throttled (429)"
                        );
                        if self.users.len() > 1 {
                            // Service protection counts per user: only this one backs off, the others go on.
                            self.users.throttled(user, wait).await;
                        } else {
                            self.limiter.pause(wait);
                        }
                        tokio::time::sleep(wait).await;
                        attempts -= 1; // throttling has its own budget
                        continue;
                    }
                    if !err.is_transient() {
                        return Err(err);
                    }
                    err
                }
                Err(e) => DynamicsError::Transport {
                    service: self.service,
                    method: method.to_string(),
                    path: path.clone(),
                    message: redact(&e),
                },
            };
            if attempts >= self.retry.max_attempts {
                return Err(DynamicsError::Exhausted {
                    service: self.service,
                    attempts,
                    last: Box::new(err),
                });
            }
            self.note(false);
            let wait = self.retry.backoff(attempts);
            tracing::info!(service = self.service, attempt = attempts, wait_ms = wait.as_millis() as u64, error = %err, "transient failure; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Records a write and answers it as the service would on success (a new id for a Dataverse create).
    fn plan(
        &self,
        dry: &DryRun,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Response {
        let body = build(self.http.request(method.clone(), url))
            .build()
            .ok()
            .and_then(|r| r.body().and_then(|b| b.as_bytes()).map(<[u8]>::to_vec))
            .and_then(|b| serde_json::from_slice(&b).ok());
        dry.record(PlannedWrite {
            service: self.service,
            method: method.to_string(),
            url: url.to_string(),
            body: body.clone(),
        });
        let mut resp = http::Response::builder().status(if method == Method::POST { 201 } else { 204 });
        if method == Method::POST {
            resp = resp.header("OData-EntityId", format!("{url}({})", uuid::Uuid::new_v4()));
        }
        let text = if method == Method::POST {
            body.map(|b| b.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Response::from(resp.body(text).unwrap_or_default())
    }

    /// GET returning JSON.
    pub async fn get_json(
        &self,
        url: &str,
        endpoint: &str,
        headers: &[(&str, &str)],
    ) -> Result<serde_json::Value, DynamicsError> {
        let resp = self
            .send(Method::GET, url, endpoint, |mut r| {
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                r
            })
            .await?;
        self.read_json(resp, endpoint).await
    }

    /// A collection read whose rows stay JSON text ([`RawRows`]), and its next link.
    pub async fn get_rows(&self, url: &str, endpoint: &str) -> Result<(RawRows, Option<String>), DynamicsError> {
        let (rows, next) = self.get_page::<Box<serde_json::value::RawValue>>(url, endpoint).await?;
        Ok((rows.into(), next))
    }

    /// One answer of a collection read: its rows as `T`, and its next link.
    pub(crate) async fn get_page<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        endpoint: &str,
    ) -> Result<(Vec<T>, Option<String>), DynamicsError> {
        let resp = self.send(Method::GET, url, endpoint, |r| r).await?;
        let page: PageOf<T> = self.read_json(resp, endpoint).await?;
        Ok((page.value, page.next))
    }

    pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        resp: Response,
        what: &str,
    ) -> Result<T, DynamicsError> {
        let bytes = resp.bytes().await.map_err(|e| DynamicsError::Decode {
            service: self.service,
            what: what.to_string(),
            message: redact(&e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| DynamicsError::Decode {
            service: self.service,
            what: what.to_string(),
            message: e.to_string(),
        })
    }
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Pulls the actionable text out of an OData error body. F&O hides it in `error.innererror.message`.
pub(crate) fn error_text(body: &str) -> (String, String) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        let trimmed: String = body.chars().take(300).collect();
        return (
            String::new(),
            if trimmed.is_empty() {
                "no error body".into()
            } else {
                trimmed
            },
        );
    };
    let err = &v["error"];
    let code = err["code"].as_str().unwrap_or_default().to_string();
    let inner = err["innererror"]["message"].as_str().filter(|s| !s.is_empty());
    let message = inner
        .or_else(|| err["message"].as_str())
        .or_else(|| v["error_description"].as_str())
        .unwrap_or("no error message")
        .to_string();
    (code, message)
}
