//! The Sales side of a template: which columns hold what the template writes, the echo rule (compare what
//! would be written with what Sales holds), and `$batch` writes.

use std::collections::HashMap;

use p2c_dynamics::{BatchOp, DynamicsError, ErrorKind, Record, WriteMethod, dataverse::id_from_entity_url};
use p2c_mapping::{Template, lookup_targets, money::decimal_from_json};
use serde_json::Value;

use crate::{deps::Deps, pipeline::links::LinkEntity};

/// What p2c needs to know about one Sales table a template writes.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    /// Entity set, e.g. "salesorders".
    pub set: String,
    /// The entity of its link items (the table's logical name; `Spec::new` refuses a table without one).
    pub link: LinkEntity,
    /// Primary key column, e.g. "salesorderid".
    pub pk: String,
    /// Columns to read to compare a record with what the template would write.
    pub select: Vec<String>,
    /// `<bind property>` → the lookup's value column (`customerid_account@odata.bind` → `_customerid_value`).
    pub bind_cols: HashMap<String, String>,
    /// The template writes state (statecode/statuscode): the record can be closed in Sales.
    pub writes_state: bool,
}

/// Columns Sales calculates itself under system pricing (the org's "Use system pricing calculation" =
/// `organization.oobpricecalculationenabled`, which P2C requires; Microsoft, "Use custom pricing for products").
/// Their metadata says `IsValidForCreate = false` (DCE `salesorder.md`, `salesorderdetail.md`, `invoice.md`): a
/// create ignores them. Under system pricing an update is accepted and then recalculated from the lines, so
/// their values reach Sales only through what Sales calculates them from, and they are never compared. Without
/// system pricing nothing calculates: they are written right after a create and compared like any column.
pub(crate) const CALCULATED: &[&str] = &[
    "totalamount",
    "totalamountlessfreight",
    "totallineitemamount",
    "totallineitemdiscountamount",
    "totaltax",
    "totaldiscountamount",
    "baseamount",
    "extendedamount",
];

/// Other columns the templates write that are `IsValidForCreate = false` (a create ignores them): the price lock
/// of orders and invoices (DCE `salesorder.md`, `invoice.md`). They are set by an update right after the create.
pub(crate) const NOT_VALID_FOR_CREATE: &[&str] = &["ispricelocked"];

/// How the organization prices quotes, orders and invoices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pricing {
    /// "Use system pricing calculation" = Yes: Sales calculates the [`CALCULATED`] columns.
    System,
    /// = No (custom pricing): nothing calculates them unless the org has its own `CalculatePrice` plug-in.
    Manual,
}

impl Pricing {
    /// Reads the organization's setting (`organizations.oobpricecalculationenabled`; Yes when absent).
    pub async fn of_org(deps: &Deps) -> Result<Pricing, DynamicsError> {
        let cols = ["organizationid".to_string(), "oobpricecalculationenabled".to_string()];
        let rows = deps.sales.list("organizations", &cols, None).await?;
        let on = rows
            .first()
            .and_then(|r| r.get("oobpricecalculationenabled"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        Ok(if on { Pricing::System } else { Pricing::Manual })
    }

    /// Whether a column is compared and updated like any other (Sales does not calculate it).
    pub fn compared(self, col: &str) -> bool {
        self == Pricing::Manual || !CALCULATED.contains(&col)
    }
}

/// Takes out of a create body what a create ignores: returns the columns to set by an update right after it
/// ([`NOT_VALID_FOR_CREATE`]; the [`CALCULATED`] ones only without system pricing, where nothing else sets them).
pub(crate) fn split_not_valid_for_create(body: &mut Record, pricing: Pricing) -> Record {
    let mut after = Record::new();
    for col in NOT_VALID_FOR_CREATE.iter().chain(CALCULATED) {
        if let Some(v) = body.remove(*col)
            && (pricing == Pricing::Manual || !CALCULATED.contains(col))
        {
            after.insert(col.to_string(), v);
        }
    }
    after
}

impl Table {
    pub fn of(t: &Template) -> Table {
        let set = t.target_entity.clone();
        let logical = set.strip_suffix('s').unwrap_or(&set).to_string();
        let pk = format!("{logical}id");
        let mut select = vec![pk.clone()];
        let mut push = |c: String| {
            if !select.contains(&c) {
                select.push(c);
            }
        };
        for f in t.fields.iter().filter(|f| f.enabled) {
            match lookup_targets(&f.target) {
                Some((nav, _)) => push(format!("_{nav}_value")),
                None => push(f.target.clone()),
            }
        }
        let writes_state = t
            .fields
            .iter()
            .any(|f| f.enabled && (f.target == "statecode" || f.target == "statuscode"));
        if writes_state {
            push("statecode".into());
            push("statuscode".into());
        }
        let mut bind_cols = HashMap::new();
        for b in t.binds() {
            for target in &b.targets {
                bind_cols.insert(target.bind_property.clone(), format!("_{}_value", b.navigation));
            }
        }
        Table {
            link: LinkEntity::of_sales_set(&set).unwrap_or(LinkEntity::Product),
            set,
            pk,
            select,
            bind_cols,
            writes_state,
        }
    }

    pub fn url(&self, deps: &Deps, id: &str) -> String {
        format!("{}({id})", deps.sales.set_url(&self.set))
    }

    /// A create leaves the clears (nulls) out: a new record is blank there anyway.
    pub fn create_op(&self, deps: &Deps, mut body: Record) -> BatchOp {
        body.retain(|_, v| !v.is_null());
        BatchOp {
            method: WriteMethod::Post,
            url: deps.sales.set_url(&self.set),
            body: Some(Value::Object(body)),
            headers: vec![],
        }
    }

    /// `If-Match: *`: an update never creates a record by accident (a deleted record answers 404).
    pub fn update_op(&self, deps: &Deps, id: &str, body: Record) -> BatchOp {
        BatchOp {
            method: WriteMethod::Patch,
            url: self.url(deps, id),
            body: Some(Value::Object(body)),
            headers: vec![("If-Match", "*".into())],
        }
    }

    pub fn delete_op(&self, deps: &Deps, id: &str) -> BatchOp {
        BatchOp {
            method: WriteMethod::Delete,
            url: self.url(deps, id),
            body: None,
            headers: vec![],
        }
    }
}

/// The GUID in a bind value `/salesorders(<guid>)`.
pub(crate) fn bound_id(v: &Value) -> Option<&str> {
    let s = v.as_str()?;
    let open = s.rfind('(')?;
    let close = s.rfind(')')?;
    s.get(open + 1..close)
}

/// Whether a value p2c would write equals the value Sales holds: numbers by exact decimal value (250 = 250.0),
/// date-times by instant, GUIDs and everything else as JSON; absent, null and empty text are all "no value", which
/// a clear (null) holds.
pub(crate) fn same(want: &Value, have: Option<&Value>) -> bool {
    let have = have.unwrap_or(&Value::Null);
    match (want, have) {
        (Value::Null, Value::String(s)) => s.is_empty(),
        (Value::Number(_), Value::Number(_)) => decimal_from_json(want) == decimal_from_json(have),
        (Value::String(a), Value::String(b)) => {
            if a == b {
                return true;
            }
            let rfc = &time::format_description::well_known::Rfc3339;
            match (time::OffsetDateTime::parse(a, rfc), time::OffsetDateTime::parse(b, rfc)) {
                (Ok(x), Ok(y)) => x == y,
                _ => p2c_dynamics::odata::is_guid(a) && a.eq_ignore_ascii_case(b),
            }
        }
        _ => want == have,
    }
}

/// The echo rule: the fields of `body` whose value differs from the Sales record `current`. Empty means Sales
/// already holds everything the template would write (the update came back from the other direction, or
/// nothing that matters changed), so nothing is written. Columns Sales calculates ([`CALCULATED`], under system
/// pricing) are left out.
pub(crate) fn changed_fields(t: &Table, body: &Record, current: &Record, pricing: Pricing) -> Record {
    let mut out = Record::new();
    for (k, v) in body {
        if !pricing.compared(k) {
            continue;
        }
        let equal = match t.bind_cols.get(k) {
            Some(col) => match (bound_id(v), current.get(col).and_then(Value::as_str)) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                // A cleared lookup (`@odata.bind: null`) holds when Sales links nothing.
                (None, None) => v.is_null(),
                _ => false,
            },
            None => same(v, current.get(k)),
        };
        if !equal {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// What became of one write.
#[derive(Clone, Debug)]
pub(crate) enum Written {
    /// Done; for a create, the new record's id.
    Ok(Option<String>),
    Failed {
        status: Option<u16>,
        kind: ErrorKind,
        reason: String,
        transient: bool,
    },
}

/// Sends `ops` to Sales in `$batch` requests of the configured size, each operation its own change set
/// (continue-on-error: one bad record does not stop its neighbours). One result per operation, in order.
pub(crate) async fn send(deps: &Deps, ops: &[BatchOp]) -> Vec<Written> {
    let mut out = Vec::with_capacity(ops.len());
    for chunk in ops.chunks(deps.cfg.batch_size.max(1)) {
        match deps.sales.batch(chunk).await {
            Ok(parts) => {
                for (part, op) in parts.iter().zip(chunk) {
                    if part.is_success() {
                        let id = part
                            .header("OData-EntityId")
                            .or_else(|| part.header("Location"))
                            .and_then(id_from_entity_url);
                        out.push(Written::Ok(id));
                    } else {
                        let e = part.error("sales", op);
                        out.push(Written::Failed {
                            status: Some(part.status),
                            kind: e.kind(),
                            reason: e.to_string(),
                            transient: e.is_transient(),
                        });
                    }
                }
            }
            Err(e) => out.extend(chunk.iter().map(|_| failed_batch(&e))),
        }
    }
    out
}

fn failed_batch(e: &DynamicsError) -> Written {
    Written::Failed {
        status: None,
        kind: e.kind(),
        reason: format!("the Sales $batch request failed: {e}"),
        transient: e.is_transient(),
    }
}

/// A record closed in Sales (statecode other than 0: an order its invoice set to Invoiced, a paid invoice) is
/// read-only there: Sales refuses changes to it and to its lines. p2c never reopens one.
pub(crate) fn is_closed(t: &Table, current: &Record) -> bool {
    t.writes_state && current.get("statecode").and_then(Value::as_i64).is_some_and(|s| s != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn echo_rule_compares_values_not_spelling() {
        let t = Table::of(&p2c_mapping::order_headers_to_sales());
        let body = rec(json!({
            "totalamount": 250.0, "name": "X", "msdynce_invoicedate": "2026-03-05T12:00:00Z",
            "transactioncurrencyid@odata.bind": "/transactioncurrencies(AB000000-0000-0000-0000-000000000001)",
            "statecode": 0, "statuscode": 1
        }));
        let current = rec(json!({
            "totalamount": 260, "name": "X", "msdynce_invoicedate": "2026-03-05T12:00:00.000Z",
            "_transactioncurrencyid_value": "ab000000-0000-0000-0000-000000000001", "statecode": 0, "statuscode": 1
        }));
        assert!(
            changed_fields(&t, &body, &current, Pricing::System).is_empty(),
            "Sales calculates totalamount itself"
        );
        assert_eq!(
            Value::Object(changed_fields(&t, &body, &current, Pricing::Manual)),
            json!({"totalamount": 250.0}),
            "without system pricing it is compared"
        );
        assert!(!is_closed(&t, &current));
        let mut other = current.clone();
        other.insert("statecode".into(), json!(4));
        other.insert("statuscode".into(), json!(100003));
        other.insert("name".into(), json!("Y"));
        assert!(is_closed(&t, &other));
        let diff = changed_fields(&t, &body, &other, Pricing::System);
        assert_eq!(
            Value::Object(diff),
            json!({"name": "X", "statecode": 0, "statuscode": 1})
        );
        // A clear (null) holds where Sales has no value, lookups included; anything else is written.
        let p = Table::of(&p2c_mapping::products_to_sales());
        let body = rec(json!({"description": null, "transactioncurrencyid@odata.bind": null, "name": "N"}));
        let blank = rec(json!({"name": "N", "description": "", "_transactioncurrencyid_value": null}));
        assert!(changed_fields(&p, &body, &blank, Pricing::System).is_empty());
        let held = rec(
            json!({"name": "N", "description": "Old", "_transactioncurrencyid_value": "ab000000-0000-0000-0000-000000000001"}),
        );
        assert_eq!(
            Value::Object(changed_fields(&p, &body, &held, Pricing::System)),
            json!({"description": null, "transactioncurrencyid@odata.bind": null})
        );
        // Products have no state the template writes: never "closed".
        assert!(!is_closed(&p, &rec(json!({"statecode": 1}))));
    }

    #[test]
    fn creates_leave_out_what_a_create_ignores() {
        let body = || rec(json!({"name": "X", "ispricelocked": true, "totalamount": 10, "extendedamount": 4}));
        let mut b = body();
        let after = split_not_valid_for_create(&mut b, Pricing::System);
        assert_eq!(Value::Object(b), json!({"name": "X"}));
        assert_eq!(
            Value::Object(after),
            json!({"ispricelocked": true}),
            "Sales calculates the totals"
        );
        let mut b = body();
        let after = split_not_valid_for_create(&mut b, Pricing::Manual);
        assert_eq!(Value::Object(b), json!({"name": "X"}));
        assert_eq!(
            Value::Object(after),
            json!({"ispricelocked": true, "totalamount": 10, "extendedamount": 4})
        );
    }
}
