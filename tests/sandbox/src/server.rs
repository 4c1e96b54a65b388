//! Listeners and the per-request pipeline every service shares:
//! count → injected fault → bearer check → service-protection limits → handler → latency.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::{Req, Resp, decode_path};
use crate::{FaultKind, Service, State, dataverse, faults, fno, lock, token};

/// Returned by the service to make hyper close the connection without writing a response.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
struct DropConnection;

pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

pub(crate) async fn serve(listener: TcpListener, state: Arc<State>, svc: Service, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut shutdown) => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let rx = shutdown.clone();
        tokio::spawn(async move {
            match state.tls.as_ref().map(|t| t.acceptor.clone()) {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        serve_conn(tls, state, svc, rx).await;
                    }
                }
                None => serve_conn(stream, state, svc, rx).await,
            }
        });
    }
}

async fn serve_conn<S>(stream: S, state: Arc<State>, svc: Service, mut rx: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc_fn = service_fn(move |req| {
        let state = state.clone();
        async move { handle_hyper(state, svc, req).await }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc_fn);
    tokio::select! {
        _ = conn => {},
        _ = stopped(&mut rx) => {},
    }
}

async fn handle_hyper(
    state: Arc<State>,
    svc: Service,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, DropConnection> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(DropConnection),
    };
    let req = Req {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    match process(state, svc, req).await {
        None => Err(DropConnection),
        Some(resp) => Ok(to_hyper(resp)),
    }
}

fn to_hyper(resp: Resp) -> hyper::Response<Full<Bytes>> {
    let mut b = hyper::Response::builder().status(resp.status);
    for (k, v) in &resp.headers {
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            b = b.header(n, v);
        }
    }
    b.body(Full::new(Bytes::from(resp.body))).unwrap_or_else(|_| {
        let mut r = hyper::Response::new(Full::new(Bytes::new()));
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// `"sales GET accounts"`, `"fno POST $batch"`, `"token POST"`.
pub(crate) fn counter_key(svc: Service, req: &Req) -> String {
    let (name, root) = match svc {
        Service::Sales => ("sales", "/api/data/v9.2"),
        Service::Fno => ("fno", "/data"),
        _ => return format!("token {}", req.method),
    };
    let path = decode_path(&req.path);
    let target = match path.strip_prefix(root) {
        Some(rest) => {
            let seg = rest.trim_start_matches('/').split('/').next().unwrap_or("");
            let seg = seg.split('(').next().unwrap_or("");
            if seg.is_empty() {
                "/".to_string()
            } else {
                seg.to_string()
            }
        }
        None => path,
    };
    format!("{name} {} {target}", req.method)
}

/// Releases the concurrency slot when the request finishes (also when the client goes away mid-request).
struct InflightGuard {
    state: Arc<State>,
    svc: Service,
    client: String,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        lock(&self.state.limiter).release(self.svc, &self.client);
    }
}

/// Run one request through the pipeline. `None` = drop the connection.
pub(crate) async fn process(state: Arc<State>, svc: Service, req: Req) -> Option<Resp> {
    *lock(&state.counters).entry(counter_key(svc, &req)).or_insert(0) += 1;

    let target = format!("{}?{}", req.path, req.query);
    let decoded = format!(
        "{}?{}",
        decode_path(&req.path),
        crate::http::decode_query_part(&req.query)
    );
    let fault = lock(&state.faults).take(svc, &[&target, &decoded]);
    let mut guard = None;
    let mut handled = false;
    let resp = 'resp: {
        match fault {
            Some(FaultKind::Drop) => return None,
            Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
            Some(FaultKind::TooManyRequests { retry_after_secs }) => {
                break 'resp faults::too_many(svc, None, state.cfg.limits.as_ref(), retry_after_secs);
            }
            Some(FaultKind::ServerError) => break 'resp faults::server_error(svc),
            None => {}
        }
        if svc == Service::Token {
            break 'resp token::handle(&state, &req);
        }
        let client = match token::authenticate(&state, &req, svc) {
            Ok(c) => c,
            Err(e) => break 'resp token::unauthorized(&state, svc, e),
        };
        count_client(&state, svc, &client, |c| {
            c.requests += 1;
            c.writes += u64::from(req.method != "GET");
        });
        if let Some(limits) = &state.cfg.limits {
            let acquired = lock(&state.limiter).acquire(svc, &client, limits);
            count_client(&state, svc, &client, |c| c.throttled += u64::from(acquired.is_err()));
            match acquired {
                Ok(()) => {
                    guard = Some(InflightGuard {
                        state: state.clone(),
                        svc,
                        client: client.clone(),
                    })
                }
                // Whole seconds, rounded up, at least the configured floor (never 0: a client would spin).
                Err((why, wait)) => {
                    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                    break 'resp faults::too_many(
                        svc,
                        Some(why),
                        Some(limits),
                        secs.max(limits.retry_after_secs).max(1),
                    );
                }
            }
        }
        handled = true;
        match svc {
            Service::Sales => {
                let resp = dataverse::handle(&state, &req);
                // Asynchronous steps run once the request's changes are committed.
                crate::events::flush_dataverse(&state);
                resp
            }
            _ => fno::handle(&state, &req),
        }
    };
    // The service runs the operations of a `$batch` one after another; each takes `op_time`. A refused request
    // (fault, 401, 429) ran nothing.
    let execution = if handled {
        state.cfg.op_time * operations(&req)
    } else {
        std::time::Duration::ZERO
    };
    if let Some(g) = &guard {
        lock(&state.limiter).executed(svc, &g.client, execution);
    }
    let wait = state.cfg.latency + execution;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    drop(guard);
    Some(resp)
}

/// Adds to the per-client counts of `svc` (see [`crate::ClientCount`]).
fn count_client(state: &State, svc: Service, client: &str, add: impl FnOnce(&mut crate::ClientCount)) {
    let name = if svc == Service::Sales { "sales" } else { "fno" };
    add(lock(&state.by_client).entry(format!("{name} {client}")).or_default());
}

/// Operations in a request: one, or for `$batch` one per embedded request (`Content-Type: application/http`).
fn operations(req: &Req) -> u32 {
    if !decode_path(&req.path).ends_with("$batch") {
        return 1;
    }
    let marker = b"application/http";
    let n = req
        .body
        .windows(marker.len())
        .filter(|w| w.eq_ignore_ascii_case(marker))
        .count();
    (n as u32).max(1)
}
