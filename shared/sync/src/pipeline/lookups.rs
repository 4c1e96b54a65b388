//! Resolves lookup paths such as `transactioncurrencyid.isocurrencycode` from small Sales reference tables.
//! Change tracking refuses `$expand`, so lookups arrive as `_x_value` GUIDs and are resolved here, cached.

use std::collections::HashMap;

use p2c_dynamics::{Dataverse, DynamicsError, Record};
use p2c_mapping::{Source, Template};
use serde_json::Value;
use tokio::sync::Mutex;

/// Navigation property → (entity set, primary key) of the reference tables we resolve by caching them whole.
const REFERENCE_TABLES: &[(&str, &str, &str)] = &[
    (
        "transactioncurrencyid",
        "transactioncurrencies",
        "transactioncurrencyid",
    ),
    ("defaultuomid", "uoms", "uomid"),
    ("uomid", "uoms", "uomid"),
    ("defaultuomscheduleid", "uomschedules", "uomscheduleid"),
    ("pricelevelid", "pricelevels", "pricelevelid"),
];

#[derive(Default)]
pub struct Lookups {
    /// (entity set, column) → id → value
    cache: Mutex<HashMap<(String, String), HashMap<String, Value>>>,
}

/// The `nav.column` paths a template reads.
pub fn lookup_paths(t: &Template) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = t
        .fields
        .iter()
        .filter_map(|f| match &f.source {
            Source::Field(p) => p.split_once('.').map(|(a, b)| (a.to_string(), b.to_string())),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

impl Lookups {
    /// Adds `nav.column` values to each row, fetching a reference table once per process (again on a miss).
    pub async fn enrich(
        &self,
        sales: &Dataverse,
        paths: &[(String, String)],
        rows: &mut [Record],
    ) -> Result<(), DynamicsError> {
        for (nav, column) in paths {
            let Some((_, set, pk)) = REFERENCE_TABLES.iter().find(|(n, _, _)| n == nav) else {
                continue;
            };
            let id_field = format!("_{nav}_value");
            let path = format!("{nav}.{column}");
            let key = (set.to_string(), column.to_string());
            let mut cache = self.cache.lock().await;
            let missing = rows.iter().any(|r| {
                r.get(&id_field)
                    .and_then(Value::as_str)
                    .is_some_and(|id| !cache.get(&key).is_some_and(|m| m.contains_key(id)))
            });
            if missing {
                let select = vec![pk.to_string(), column.clone()];
                let all = sales.list(set, &select, None).await?;
                let map = all
                    .into_iter()
                    .filter_map(|r| Some((r.get(*pk)?.as_str()?.to_string(), r.get(column.as_str())?.clone())))
                    .collect();
                cache.insert(key.clone(), map);
            }
            let table = cache.get(&key);
            for r in rows.iter_mut() {
                let v = r
                    .get(&id_field)
                    .and_then(Value::as_str)
                    .and_then(|id| table.and_then(|m| m.get(id)))
                    .cloned();
                if let Some(v) = v {
                    r.insert(path.clone(), v);
                }
            }
        }
        Ok(())
    }
}
