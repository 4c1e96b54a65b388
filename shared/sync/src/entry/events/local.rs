//! The ingress on a local port (the CLI's demo and bench, and the tests): every request goes to
//! [`Ingress::handle`], as a Lambda Function URL would hand it over. Bodies above 6 MB (the Function URL's own
//! limit) are refused before they reach it.

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::IntoResponse,
};

use super::{HttpRequest, Ingress};

/// Lambda Function URLs take requests up to 6 MB.
const FUNCTION_URL_LIMIT: usize = 6 * 1024 * 1024;

async fn any(
    State(ingress): State<Arc<Ingress>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let req = HttpRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let r = ingress.handle(&req).await;
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", "application/json")], r.body.to_string())
}

/// Serves the ingress on `listener` until the task is dropped.
pub async fn serve(ingress: Arc<Ingress>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = Router::new()
        .fallback(any)
        .layer(DefaultBodyLimit::max(FUNCTION_URL_LIMIT))
        .with_state(ingress);
    axum::serve(listener, app).await
}

/// Binds 127.0.0.1 on a free port, serves in the background, returns the base URL (`http://127.0.0.1:<port>`).
pub async fn start(ingress: Arc<Ingress>) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
    tokio::spawn(async move {
        if let Err(e) = serve(ingress, listener).await {
            tracing::error!(error = %e, "the local events ingress stopped");
        }
    });
    Ok(url)
}
