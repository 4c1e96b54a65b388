//! The Lambda Function URL event (payload format 2.0) to the ingress and back. Headers arrive lower-cased
//! (several values of one header comma-joined); a body Lambda judged binary arrives base64-encoded.

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{HttpRequest, HttpResponse, Ingress};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UrlEvent {
    #[serde(default)]
    raw_path: Option<String>,
    #[serde(default)]
    raw_query_string: Option<String>,
    #[serde(default)]
    headers: std::collections::HashMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: bool,
    #[serde(default)]
    request_context: Option<UrlContext>,
}

#[derive(Deserialize)]
struct UrlContext {
    #[serde(default)]
    http: Option<UrlHttp>,
}

#[derive(Deserialize)]
struct UrlHttp {
    #[serde(default)]
    method: Option<String>,
}

/// The request a Function URL event describes; `None` when the event is not one.
pub fn request_of(event: Value) -> Option<HttpRequest> {
    let e: UrlEvent = serde_json::from_value(event).ok()?;
    let body = match (e.body, e.is_base64_encoded) {
        (None, _) => Vec::new(),
        (Some(b), false) => b.into_bytes(),
        (Some(b), true) => base64::engine::general_purpose::STANDARD.decode(b.as_bytes()).ok()?,
    };
    Some(HttpRequest {
        method: e.request_context?.http?.method?,
        path: e.raw_path.unwrap_or_else(|| "/".into()),
        query: e.raw_query_string.unwrap_or_default(),
        headers: e
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        body,
    })
}

/// The Function URL response: status, JSON body.
pub fn response_of(r: &HttpResponse) -> Value {
    json!({
        "statusCode": r.status,
        "headers": {"content-type": "application/json"},
        "body": r.body.to_string(),
        "isBase64Encoded": false,
    })
}

/// What the events function's `main` hands each invocation to.
pub async fn handle_function_url(ingress: &Ingress, event: Value) -> Value {
    match request_of(event) {
        Some(req) => response_of(&ingress.handle(&req).await),
        None => {
            tracing::warn!("the invocation is not a Function URL request; refused");
            response_of(&HttpResponse {
                status: 400,
                body: json!({"status": "refused", "error": "not a Lambda Function URL request"}),
            })
        }
    }
}
