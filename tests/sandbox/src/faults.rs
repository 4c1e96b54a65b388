//! Injected faults and service-protection limits.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::http::Resp;
use crate::{Fault, FaultKind, Service, ServiceLimits};

#[derive(Default)]
pub(crate) struct FaultQueue {
    items: Vec<Fault>,
}

impl FaultQueue {
    pub fn push(&mut self, f: Fault) {
        if f.times > 0 {
            self.items.push(f);
        }
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// The first queued fault matching this request, consuming one of its `times`. `targets` are the raw and
    /// the decoded path+query, so `path_contains` may be written either way.
    pub fn take(&mut self, svc: Service, targets: &[&str]) -> Option<FaultKind> {
        let idx = self.items.iter().position(|f| {
            (f.service == Service::Any || f.service == svc)
                && f.path_contains
                    .as_deref()
                    .is_none_or(|p| targets.iter().any(|t| t.contains(p)))
        })?;
        let f = &mut self.items[idx];
        let kind = f.kind.clone();
        f.times -= 1;
        if f.times == 0 {
            self.items.remove(idx);
        }
        Some(kind)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Throttle {
    Requests,
    ExecutionTime,
    Concurrency,
}

/// Finished requests' execution times in the window, and their sum.
type Executions = (VecDeque<(Instant, Duration)>, Duration);

/// Per service and client: sliding windows of request instants and of execution times, and an in-flight count.
#[derive(Default)]
pub(crate) struct Limiter {
    windows: HashMap<(Service, String), VecDeque<Instant>>,
    executions: HashMap<(Service, String), Executions>,
    inflight: HashMap<(Service, String), u32>,
}

impl Limiter {
    /// Admits a request, or says why not and how long until it would be admitted: the real Retry-After varies
    /// with the window (the oldest counted request or execution leaving it), it is not a constant.
    pub fn acquire(&mut self, svc: Service, client: &str, limits: &ServiceLimits) -> Result<(), (Throttle, Duration)> {
        let key = key_of(svc, client);
        let now = Instant::now();
        let inflight = self.inflight.entry(key.clone()).or_default();
        // The concurrency limit errors immediately (spec A.9).
        if *inflight >= limits.max_concurrent {
            return Err((Throttle::Concurrency, Duration::from_secs(1)));
        }
        let w = self.windows.entry(key.clone()).or_default();
        while w.front().is_some_and(|t| now.duration_since(*t) >= limits.window) {
            w.pop_front();
        }
        if w.len() as u64 >= u64::from(limits.requests_per_window) {
            let oldest = w.front().map_or(now, |t| *t);
            return Err((
                Throttle::Requests,
                limits.window.saturating_sub(now.duration_since(oldest)),
            ));
        }
        let (done, total) = self.executions.entry(key).or_default();
        while let Some(&(at, took)) = done.front() {
            if now.duration_since(at) < limits.window {
                break;
            }
            done.pop_front();
            *total = total.saturating_sub(took);
        }
        if *total >= limits.execution_per_window {
            let oldest = done.front().map_or(now, |(at, _)| *at);
            return Err((
                Throttle::ExecutionTime,
                limits.window.saturating_sub(now.duration_since(oldest)),
            ));
        }
        w.push_back(now);
        *inflight += 1;
        Ok(())
    }

    /// Counts a finished request's execution time toward the client's budget.
    pub fn executed(&mut self, svc: Service, client: &str, took: Duration) {
        if took.is_zero() {
            return;
        }
        let (e, total) = self.executions.entry(key_of(svc, client)).or_default();
        e.push_back((Instant::now(), took));
        *total += took;
    }

    pub fn release(&mut self, svc: Service, client: &str) {
        if let Some(n) = self.inflight.get_mut(&(svc, client.to_string())) {
            *n = n.saturating_sub(1);
        }
    }
}

fn key_of(svc: Service, client: &str) -> (Service, String) {
    (svc, client.to_string())
}

/// The 429 each service sends. Dataverse codes and texts are the documented ones (spec A.9); F&O uses the
/// resource-based throttling text (user-based limits are off by default since 2023, spec B.5).
pub(crate) fn too_many(svc: Service, why: Option<Throttle>, limits: Option<&ServiceLimits>, retry_after: u64) -> Resp {
    let resp = match svc {
        Service::Sales => {
            let (code, msg) = match (why, limits) {
                (Some(Throttle::Concurrency), Some(l)) => (
                    "0x80072326",
                    format!(
                        "Number of concurrent requests exceeded the limit of {}.",
                        l.max_concurrent
                    ),
                ),
                (Some(Throttle::ExecutionTime), Some(l)) => (
                    "0x80072321",
                    format!(
                        "Combined execution time of incoming requests exceeded limit of {} milliseconds over time \
                         window of {} seconds. Decrease number of concurrent requests or reduce the duration of \
                         requests and try again later.",
                        thousands(l.execution_per_window.as_millis()),
                        l.window.as_secs()
                    ),
                ),
                (_, Some(l)) => (
                    "0x80072322",
                    format!(
                        "Number of requests exceeded the limit of {} over time window of {} seconds.",
                        l.requests_per_window,
                        l.window.as_secs()
                    ),
                ),
                (_, None) => (
                    "0x80072322",
                    "Number of requests exceeded the limit of 6000 over time window of 300 seconds.".into(),
                ),
            };
            Resp::odata_json(429, &json!({"error": {"code": code, "message": msg}}))
        }
        Service::Fno => Resp::odata_json(
            429,
            &json!({"error": {"code": "", "message": format!(
                "This request could not be processed at this time due to system experiencing high resource \
                 utilization. Retry the request after {retry_after} seconds"
            )}}),
        ),
        _ => Resp::plain_json(
            429,
            &json!({
                "error": "temporarily_unavailable",
                "error_description": "AADSTS50196: The server terminated an operation because it encountered a \
                                      client request loop or too many requests. Retry later.",
                "error_codes": [50196]
            }),
        ),
    };
    resp.header("Retry-After", retry_after.to_string())
}

/// The 500 an injected `ServerError` produces.
pub(crate) fn server_error(svc: Service) -> Resp {
    match svc {
        Service::Sales => Resp::odata_json(
            500,
            &json!({"error": {"code": "0x80040216", "message": "An unexpected error occurred."}}),
        ),
        Service::Fno => Resp::odata_json(
            500,
            &json!({"error": {"code": "", "message": "An error has occurred.", "innererror": {
                "message": "An unexpected error occurred while processing the request.",
                "type": "System.Exception", "stacktrace": ""}}}),
        ),
        _ => Resp::plain_json(
            500,
            &json!({
                "error": "server_error",
                "error_description": "AADSTS50000: There was an error issuing a token or an issue with our sign-in \
                                      service.",
                "error_codes": [50000]
            }),
        ),
    }
}

/// `1200000` → `1,200,000`, as the service writes it.
fn thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
