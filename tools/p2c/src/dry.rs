//! `p2c run --dry-run`: turn the writes a run would have made into per-record field changes (old → new),
//! by reading the target records as they are now.

use anyhow::Result;
use p2c_dynamics::PlannedWrite;
use p2c_sync::Deps;
use serde_json::{Value, json};

/// One planned write with the fields it would change.
pub async fn diff_planned(deps: &Deps, planned: Vec<PlannedWrite>) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(planned.len());
    for w in planned {
        let api = if w.service == "fno" {
            deps.fno.api()
        } else {
            deps.sales.api()
        };
        let body = w.body.clone().unwrap_or(Value::Null);
        let current = match w.method.as_str() {
            "PATCH" | "DELETE" => match api.get_json(&w.url, "dry-run", &[]).await {
                Ok(v) => Some(v),
                Err(e) if e.status() == Some(404) => None,
                Err(e) => return Err(e.into()),
            },
            _ => None,
        };
        let mut changes = Vec::new();
        if let Some(fields) = body.as_object() {
            for (k, new) in fields {
                if k.starts_with('@') {
                    continue;
                }
                let old = current.as_ref().map(|c| current_value(c, k)).unwrap_or(Value::Null);
                if !same(&old, new) {
                    changes.push(json!({"field": k, "old": old, "new": new}));
                }
            }
        }
        let action = match (w.method.as_str(), &current) {
            ("POST", _) => "create",
            ("PATCH", None) => "update (target missing)",
            ("PATCH", Some(_)) => "update",
            ("DELETE", _) => "delete",
            _ => "write",
        };
        out.push(json!({"service": w.service, "action": action, "method": w.method, "url": w.url, "changes": changes}));
    }
    Ok(out)
}

/// `x@odata.bind` is compared with the lookup's `_x_value`.
fn current_value(current: &Value, field: &str) -> Value {
    match field.strip_suffix("@odata.bind") {
        Some(nav) => {
            let nav = nav.split('_').next().unwrap_or(nav);
            current.get(format!("_{nav}_value")).cloned().unwrap_or(Value::Null)
        }
        None => current.get(field).cloned().unwrap_or(Value::Null),
    }
}

fn same(old: &Value, new: &Value) -> bool {
    match (old, new) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) if new.as_str().is_some_and(|s| s.starts_with('/')) => {
            b.contains(a.as_str())
        }
        _ => old == new,
    }
}

pub fn print(planned: &[Value]) {
    if planned.is_empty() {
        println!("dry run: nothing would be written");
        return;
    }
    println!("dry run: {} write(s) would be made; nothing was written", planned.len());
    for p in planned {
        println!(
            "  {} {} {}",
            p["action"].as_str().unwrap_or(""),
            p["service"].as_str().unwrap_or(""),
            p["url"].as_str().unwrap_or("")
        );
        for c in p["changes"].as_array().into_iter().flatten() {
            println!(
                "      {}: {} → {}",
                c["field"].as_str().unwrap_or(""),
                c["old"],
                c["new"]
            );
        }
    }
}
