//! Resolves the Sales lookups a template writes (`defaultuomid.name`, `customerid.Account(accountnumber)...`)
//! to record ids, with caches that live for one run.
//!
//! - Reference data (currencies, units, unit groups, price lists) is small: each table is read whole, once per
//!   run and only when a changed record needs it, so a sweep that finds nothing changed reads nothing in Sales.
//! - Synced data (customers, products, orders, invoices) is read by natural key in `Microsoft.Dynamics.CRM.In`
//!   chunks, for every value a page needs at once; misses are cached too. Sales is the truth here, not the
//!   links: a record found in Sales is used whoever created it, and a record deleted in Sales is not bound to.
//! - Units are matched within the unit group of the product they belong to (a unit name is unique only within
//!   its group).

use std::collections::HashMap;

use p2c_dynamics::{DynamicsError, Record, odata};
use p2c_mapping::LookupTarget;
use serde_json::Value;

use crate::deps::Deps;

/// Values per `In(...)` read (URL length; a value costs up to ~100 characters encoded).
const VALUES_PER_READ: usize = 100;

/// Reference tables read whole, with the columns p2c needs besides the matched one.
const REFERENCE: &[(&str, &str, &[&str])] = &[
    (
        "transactioncurrencies",
        "transactioncurrencyid",
        &["isocurrencycode", "currencyprecision"],
    ),
    ("uoms", "uomid", &["name", "_uomscheduleid_value"]),
    ("uomschedules", "uomscheduleid", &["name"]),
    (
        "pricelevels",
        "pricelevelid",
        &[
            "name",
            "_transactioncurrencyid_value",
            "statecode",
            "begindate",
            "enddate",
        ],
    ),
];

/// Extra columns read with synced records: a product's unit group (to pick its unit), an order's state (to
/// invoice it once) and owner (its invoices' owner, `crate::ownership::Owner::of_row`).
fn synced_extras(entity_set: &str) -> &'static [&'static str] {
    match entity_set {
        "products" => &["_defaultuomscheduleid_value"],
        "salesorders" => &["statecode", "statuscode", "_owningteam_value", "_owninguser_value"],
        _ => &[],
    }
}

fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

fn text(r: &Record, col: &str) -> Option<String> {
    match r.get(col) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    }
}

/// A synced record found in Sales (or known to be missing: `None` in the cache).
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub id: String,
    pub row: Record,
}

#[derive(Default)]
pub(crate) struct Resolver {
    /// entity set → every row (with the columns read so far).
    reference: HashMap<String, (Vec<String>, Vec<Record>)>,
    /// (entity set, column) → normalised value → the record, or None when Sales has none.
    synced: HashMap<(String, String), HashMap<String, Option<Found>>>,
}

pub(crate) fn is_reference(entity_set: &str) -> bool {
    REFERENCE.iter().any(|(s, _, _)| *s == entity_set)
}

fn pk_of(t: &LookupTarget) -> String {
    format!("{}id", t.logical_name)
}

impl Resolver {
    /// Reads whatever `needs` (lookup alternatives, value) require and the caches lack. Alternatives are tried
    /// in order: a customer number is looked for among contacts only when no account has it.
    pub async fn prepare(&mut self, deps: &Deps, needs: &[(Vec<LookupTarget>, String)]) -> Result<(), DynamicsError> {
        let tiers = needs.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
        for tier in 0..tiers {
            let mut wanted: HashMap<(String, String), (LookupTarget, Vec<String>)> = HashMap::new();
            for (targets, value) in needs {
                let Some(t) = targets.get(tier) else { continue };
                if targets[..tier]
                    .iter()
                    .any(|earlier| self.lookup(earlier, value, None).is_some())
                {
                    continue;
                }
                if is_reference(&t.entity_set) {
                    self.load_reference(deps, &t.entity_set, &t.column).await?;
                    continue;
                }
                let cached = self
                    .synced
                    .get(&(t.entity_set.clone(), t.column.clone()))
                    .is_some_and(|m| m.contains_key(&norm(value)));
                if !cached {
                    wanted
                        .entry((t.entity_set.clone(), t.column.clone()))
                        .or_insert_with(|| (t.clone(), Vec::new()))
                        .1
                        .push(value.clone());
                }
            }
            for (_, (t, mut values)) in wanted {
                values.sort_by_key(|v| norm(v));
                values.dedup_by_key(|v| norm(v));
                self.load_synced(deps, &t, &values).await?;
            }
        }
        Ok(())
    }

    async fn load_reference(&mut self, deps: &Deps, entity_set: &str, column: &str) -> Result<(), DynamicsError> {
        if self
            .reference
            .get(entity_set)
            .is_some_and(|(cols, _)| cols.iter().any(|c| c == column))
        {
            return Ok(());
        }
        let Some((_, pk, extra)) = REFERENCE.iter().find(|(s, _, _)| *s == entity_set) else {
            return Ok(());
        };
        let mut cols: Vec<String> = std::iter::once(*pk)
            .chain(extra.iter().copied())
            .map(String::from)
            .collect();
        if !cols.iter().any(|c| c == column) {
            cols.push(column.to_string());
        }
        let rows = deps.sales.list(entity_set, &cols, None).await?;
        self.reference.insert(entity_set.to_string(), (cols, rows));
        Ok(())
    }

    async fn load_synced(&mut self, deps: &Deps, t: &LookupTarget, values: &[String]) -> Result<(), DynamicsError> {
        let pk = pk_of(t);
        let mut select = vec![pk.clone(), t.column.clone()];
        select.extend(synced_extras(&t.entity_set).iter().map(|c| c.to_string()));
        let rows = read_in(deps, &t.entity_set, &t.column, values, &select, None).await?;
        let cache = self.synced.entry((t.entity_set.clone(), t.column.clone())).or_default();
        for v in values {
            cache.entry(norm(v)).or_insert(None);
        }
        for row in rows {
            let (Some(id), Some(v)) = (text(&row, &pk), text(&row, &t.column)) else {
                continue;
            };
            let slot = cache.entry(norm(&v)).or_insert(None);
            // Two Sales records with one natural key: keep the first, the natural key is meant to be unique.
            if slot.is_none() {
                *slot = Some(Found { id, row });
            } else {
                tracing::warn!(set = %t.entity_set, column = %t.column, value = %v, "several Sales records share this natural key; using the first");
            }
        }
        Ok(())
    }

    /// Records that `entity_set.column = value` is the record `id` (a header written in this run).
    pub fn seed(&mut self, entity_set: &str, column: &str, value: &str, id: &str) {
        self.synced
            .entry((entity_set.to_string(), column.to_string()))
            .or_default()
            .insert(
                norm(value),
                Some(Found {
                    id: id.to_string(),
                    row: Record::new(),
                }),
            );
    }

    /// The synced record with this natural key, as read (e.g. an order with its state).
    pub fn found(&self, entity_set: &str, column: &str, value: &str) -> Option<&Found> {
        self.synced
            .get(&(entity_set.to_string(), column.to_string()))?
            .get(&norm(value))?
            .as_ref()
    }

    pub fn found_mut(&mut self, entity_set: &str, column: &str, value: &str) -> Option<&mut Found> {
        self.synced
            .get_mut(&(entity_set.to_string(), column.to_string()))?
            .get_mut(&norm(value))?
            .as_mut()
    }

    fn reference_rows(&self, entity_set: &str) -> &[Record] {
        self.reference.get(entity_set).map(|(_, r)| r.as_slice()).unwrap_or(&[])
    }

    /// The id of the record `t` points to for `value`. `unit_group` narrows units to one unit group.
    pub fn lookup(&self, t: &LookupTarget, value: &str, unit_group: Option<&str>) -> Option<String> {
        let want = norm(value);
        if !is_reference(&t.entity_set) {
            return self.found(&t.entity_set, &t.column, value).map(|f| f.id.clone());
        }
        let pk = pk_of(t);
        let mut hits = self
            .reference_rows(&t.entity_set)
            .iter()
            .filter(|r| text(r, &t.column).is_some_and(|v| norm(&v) == want));
        if t.entity_set == "uoms"
            && let Some(group) = unit_group
        {
            return hits
                .find(|r| text(r, "_uomscheduleid_value").is_some_and(|g| g.eq_ignore_ascii_case(group)))
                .and_then(|r| text(r, &pk));
        }
        hits.next().and_then(|r| text(r, &pk))
    }

    /// The unit group (id) named `name`.
    pub fn unit_group(&self, name: &str) -> Option<String> {
        let want = norm(name);
        self.reference_rows("uomschedules")
            .iter()
            .find(|r| text(r, "name").is_some_and(|n| norm(&n) == want))
            .and_then(|r| text(r, "uomscheduleid"))
    }

    /// The P2C plug-in's rule: the first valid price list, by name, whose currency is `currency` (ISO code).
    /// Valid: active (statecode 0) and, where dates are set, begun and not ended.
    pub async fn first_price_list(&mut self, deps: &Deps, currency: &str) -> Result<Option<String>, DynamicsError> {
        self.load_reference(deps, "transactioncurrencies", "isocurrencycode")
            .await?;
        self.load_reference(deps, "pricelevels", "name").await?;
        let want = norm(currency);
        let Some(currency_id) = self
            .reference_rows("transactioncurrencies")
            .iter()
            .find(|r| text(r, "isocurrencycode").is_some_and(|c| norm(&c) == want))
            .and_then(|r| text(r, "transactioncurrencyid"))
        else {
            return Ok(None);
        };
        let now = time::OffsetDateTime::now_utc();
        let date = |r: &Record, col: &str| {
            text(r, col)
                .and_then(|s| time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).ok())
        };
        let mut names: Vec<String> = self
            .reference_rows("pricelevels")
            .iter()
            .filter(|r| {
                text(r, "_transactioncurrencyid_value").is_some_and(|c| c.eq_ignore_ascii_case(&currency_id))
                    && r.get("statecode").and_then(Value::as_i64).unwrap_or(0) == 0
                    && date(r, "begindate").is_none_or(|d| d <= now)
                    && date(r, "enddate").is_none_or(|d| d >= now)
            })
            .filter_map(|r| text(r, "name"))
            .collect();
        names.sort_by(|a, b| a.to_lowercase().cmp(&b.to_lowercase()).then_with(|| a.cmp(b)));
        Ok(names.into_iter().next())
    }
}

/// Rows of `entity_set` whose `column` is one of `values`, in chunks, optionally narrowed by `extra` (an OData
/// filter such as the owning business unit).
pub(crate) async fn read_in(
    deps: &Deps,
    entity_set: &str,
    column: &str,
    values: &[String],
    select: &[String],
    extra: Option<&str>,
) -> Result<Vec<Record>, DynamicsError> {
    let mut out = Vec::new();
    for chunk in values.chunks(VALUES_PER_READ) {
        let quoted: Vec<String> = chunk.iter().map(|v| odata::json_string(v)).collect();
        let mut filter = format!(
            "Microsoft.Dynamics.CRM.In(PropertyName={},PropertyValues=[{}])",
            odata::string_literal(column),
            quoted.join(",")
        );
        if let Some(x) = extra {
            filter = format!("{filter} and {x}");
        }
        out.extend(deps.sales.list(entity_set, select, Some(&filter)).await?);
    }
    Ok(out)
}
