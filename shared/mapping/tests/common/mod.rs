#![allow(dead_code)]

use std::path::PathBuf;

use p2c_mapping::Record;
use serde_json::Value;

/// A JSON object fixture from `tests/golden/`, keys in file order.
pub fn golden(name: &str) -> Record {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => m,
        other => panic!("{}: not a JSON object: {other:?}", path.display()),
    }
}

/// A record from a `json!` object.
pub fn rec(v: Value) -> Record {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// The full golden account with some fields changed (null removes nothing: it sets null).
pub fn account_with(changes: Value) -> Record {
    let mut a = golden("accounts-to-fno/account_full.json");
    for (k, v) in rec(changes) {
        a.insert(k, v);
    }
    a
}
