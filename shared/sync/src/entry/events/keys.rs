//! Checking the key a caller presents, in constant time: both sides are hashed first, so neither the content nor
//! the length of the expected key shows in the time a refusal takes.

use sha2::{Digest, Sha256};

use super::config::EventKeys;
use super::http::HttpRequest;

/// The HttpHeader a Dataverse service endpoint is registered with (`p2c events register`).
pub const WEBHOOK_HEADER: &str = "x-p2c-webhook-key";
/// The query parameter of Dataverse's WebhookKey authentication (PAD `register-web-hook.md`), also the one the
/// F&O business events endpoint URL carries.
pub const CODE_PARAM: &str = "code";

pub fn equal(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key the request presents: the header, else `?code=`.
pub fn presented(req: &HttpRequest) -> Option<String> {
    req.header(WEBHOOK_HEADER)
        .map(str::to_string)
        .or_else(|| req.query_param(CODE_PARAM))
        .filter(|k| !k.is_empty())
}

pub fn webhook_ok(keys: &EventKeys, req: &HttpRequest) -> bool {
    presented(req).is_some_and(|k| equal(&k, keys.webhook.expose()))
}

pub fn business_event_ok(keys: &EventKeys, req: &HttpRequest) -> bool {
    presented(req).is_some_and(|k| equal(&k, keys.business_events.expose()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_keys_only() {
        assert!(equal("0123456789abcdef", "0123456789abcdef"));
        assert!(!equal("0123456789abcdeF", "0123456789abcdef"));
        assert!(!equal("0123456789abcde", "0123456789abcdef"));
        assert!(!equal("", "0123456789abcdef"));
    }
}
