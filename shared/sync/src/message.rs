//! The SQS message: versioned JSON with keys only, never record payloads or secrets.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Bodies above this are refused before parsing (SQS allows 256 KiB; ours are a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;
/// Keys per message: enough for batching, small enough to replay one by one.
pub const MAX_KEYS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    Change,
    Retry,
    Replay,
    Backfill,
    /// A Dataverse webhook or an F&O business event named the record (`functions/events`).
    Event,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub v: u32,
    pub flow: String,
    pub company: String,
    pub keys: Vec<String>,
    pub reason: Reason,
    #[serde(default = "one")]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Unix time (seconds) before which a retry is not due: backoff beyond SQS's 900 s delay is kept here and the
    /// message delayed again until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Error, PartialEq)]
pub enum MessageError {
    #[error("the body is empty")]
    Empty,
    #[error("the body is {0} bytes; the limit is {MAX_BODY}")]
    TooLarge(usize),
    #[error("the body is not valid JSON for a p2c message: {0}")]
    Malformed(String),
    #[error("message version {0} is not supported (this build reads version 1)")]
    Version(u32),
    #[error("the message has no keys")]
    NoKeys,
    #[error("the message has {0} keys; the limit is {MAX_KEYS}")]
    TooManyKeys(usize),
    #[error("key {0:?} is empty or longer than 200 characters")]
    BadKey(String),
}

impl Message {
    pub fn new(flow: &str, company: &str, keys: Vec<String>, reason: Reason) -> Self {
        Message {
            v: 1,
            flow: flow.into(),
            company: company.into(),
            keys,
            reason,
            attempt: 1,
            last_error: None,
            not_before: None,
        }
    }

    /// Parses and validates a body. Flow and company are checked by the handler, which knows its own.
    pub fn parse(body: Option<&str>) -> Result<Message, MessageError> {
        let body = body.ok_or(MessageError::Empty)?;
        if body.trim().is_empty() {
            return Err(MessageError::Empty);
        }
        if body.len() > MAX_BODY {
            return Err(MessageError::TooLarge(body.len()));
        }
        // Check the version first so a newer producer's message says so instead of "unknown field".
        let raw: serde_json::Value = serde_json::from_str(body).map_err(|e| MessageError::Malformed(e.to_string()))?;
        if let Some(v) = raw.get("v").and_then(serde_json::Value::as_u64)
            && v != 1
        {
            return Err(MessageError::Version(v.min(u32::MAX as u64) as u32));
        }
        let m: Message = serde_json::from_value(raw).map_err(|e| MessageError::Malformed(e.to_string()))?;
        if m.keys.is_empty() {
            return Err(MessageError::NoKeys);
        }
        if m.keys.len() > MAX_KEYS {
            return Err(MessageError::TooManyKeys(m.keys.len()));
        }
        if let Some(k) = m.keys.iter().find(|k| k.trim().is_empty() || k.chars().count() > 200) {
            return Err(MessageError::BadKey(k.clone()));
        }
        Ok(m)
    }

    /// Seconds until this message is due (0: now).
    pub fn wait_seconds(&self, now_unix: u64) -> u64 {
        self.not_before.map_or(0, |t| t.saturating_sub(now_unix))
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a message always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Message::new("accounts-to-fno", "usmf", vec!["a".into()], Reason::Change);
        assert_eq!(Message::parse(Some(&m.to_body())).unwrap(), m);
    }

    #[test]
    fn event_reason_is_lowercase_on_the_wire() {
        let m = Message::new("orders-to-sales", "usmf", vec!["SO-1".into()], Reason::Event);
        let v: serde_json::Value = serde_json::from_str(&m.to_body()).unwrap();
        assert_eq!(v["reason"], "event");
        assert_eq!(Message::parse(Some(&m.to_body())).unwrap().reason, Reason::Event);
    }

    #[test]
    fn rejects_bad_bodies_with_reasons() {
        assert_eq!(Message::parse(None), Err(MessageError::Empty));
        assert!(matches!(
            Message::parse(Some("{not json")),
            Err(MessageError::Malformed(_))
        ));
        assert_eq!(
            Message::parse(Some(
                r#"{"v":2,"flow":"x","company":"usmf","keys":["a"],"reason":"change"}"#
            )),
            Err(MessageError::Version(2))
        );
        assert_eq!(
            Message::parse(Some(
                r#"{"v":1,"flow":"x","company":"usmf","keys":[],"reason":"change"}"#
            )),
            Err(MessageError::NoKeys)
        );
        assert!(matches!(
            Message::parse(Some(
                r#"{"v":1,"flow":"x","company":"usmf","keys":["a"],"reason":"change","payload":{}}"#
            )),
            Err(MessageError::Malformed(_))
        ));
        let big = format!(
            r#"{{"v":1,"flow":"x","company":"usmf","keys":["{}"],"reason":"change"}}"#,
            "a".repeat(MAX_BODY)
        );
        assert!(matches!(Message::parse(Some(&big)), Err(MessageError::TooLarge(_))));
    }
}
