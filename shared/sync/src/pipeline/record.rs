//! Small helpers every flow uses on a record read from either system.

use p2c_dynamics::Record;
use serde_json::Value;

use crate::report::Failure;

/// Now, as Dataverse and links write time (RFC 3339, UTC).
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A non-empty string field.
pub fn str_of<'a>(r: &'a Record, k: &str) -> Option<&'a str> {
    r.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Dataverse's row version (`versionnumber`) as text, when the row has one.
pub fn version_of(row: &Record) -> Option<String> {
    row.get("versionnumber")
        .map(|v| v.to_string().trim_matches('"').to_string())
}

/// Non-GUID keys would never match a Dataverse id: they fail on their own, not the whole message batch.
pub fn split_guids(keys: Vec<String>, noun: &str) -> (Vec<String>, Vec<Failure>) {
    let (good, bad): (Vec<String>, Vec<String>) = keys.into_iter().partition(|k| p2c_dynamics::odata::is_guid(k));
    let failures = bad
        .into_iter()
        .map(|k| {
            let reason = format!("{k:?} is not a {noun} id (a GUID); the message cannot be processed");
            Failure::new("", &k, reason, false)
        })
        .collect();
    (good, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_guid_keys_fail_alone_and_permanently() {
        let good = "9a3c5a3e-0f5c-4c44-9a43-0a6a2a0d7b11".to_string();
        let (ok, bad) = split_guids(vec![good.clone(), "ACC-1".into()], "contact");
        assert_eq!(ok, vec![good]);
        assert_eq!(bad.len(), 1);
        assert_eq!((bad[0].key.as_str(), bad[0].transient), ("ACC-1", false));
        assert!(bad[0].reason.contains("not a contact id"));
    }
}
