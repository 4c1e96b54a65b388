//! Content hashes: the "skip unchanged" check compares the hash of what would be written with the hash kept on
//! the link, so the hash must not change with key order, annotations or number spelling.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::template::Record;

/// SHA-256 (64 hex digits) of the record's canonical JSON.
///
/// Canonical JSON: object keys sorted (by UTF-8 bytes) at every level; annotations left out, i.e. keys that
/// start with `@` (`@odata.etag`, `@odata.context`, ...) and property annotations `field@...` such as
/// `name@OData.Community.Display.V1.FormattedValue`, but *not* `field@odata.bind`, which is content (a lookup
/// being written); whole numbers written without a fraction (50000.0 and 50000 hash the same); no white space.
pub fn content_hash(rec: &Record) -> String {
    let mut s = String::new();
    write_object(rec, &mut s);
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The canonical JSON text that `content_hash` hashes (for debugging a hash mismatch).
pub fn canonical_json(rec: &Record) -> String {
    let mut s = String::new();
    write_object(rec, &mut s);
    s
}

fn is_annotation(key: &str) -> bool {
    match key.find('@') {
        Some(0) => true,
        Some(_) => !key.ends_with("@odata.bind"),
        None => false,
    }
}

fn write_object(m: &Record, out: &mut String) {
    let mut keys: Vec<&String> = m.keys().filter(|k| !is_annotation(k)).collect();
    keys.sort();
    out.push('{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(k, out);
        out.push(':');
        write_value(&m[k.as_str()], out);
    }
    out.push('}');
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's string escaping is deterministic; writing a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let whole = n
                .as_f64()
                .filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15);
            match whole {
                Some(f) => out.push_str(&(f as i64).to_string()),
                None => out.push_str(&n.to_string()),
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(m) => write_object(m, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn canonical_form() {
        let r = rec(
            json!({"b": 1.0, "a": {"y": [1, "x"], "x": null}, "@odata.etag": "W/\"1\"",
            "name@OData.Community.Display.V1.FormattedValue": "N", "p@odata.bind": "/x(1)", "c": 0.5}),
        );
        assert_eq!(
            canonical_json(&r),
            r#"{"a":{"x":null,"y":[1,"x"]},"b":1,"c":0.5,"p@odata.bind":"/x(1)"}"#
        );
    }
}
