//! The Sales (Dataverse) side of the templates: where each lookup points, how a dotted lookup path reads, and
//! the one create-time rule that shapes a payload (state columns).
//!
//! Lookup paths are the Data Integrator's: `transactioncurrencyid.isocurrencycode` (the `isocurrencycode` of
//! the currency the lookup points to), or, for a polymorphic Customer lookup,
//! `customerid.Account(accountnumber).Contact(msdynce_contactnumber)` (the account's `accountnumber` when the
//! customer is an account, the contact's `msdynce_contactnumber` when it is a contact).

use serde::Serialize;
use serde_json::Value;

use crate::template::Record;

/// One table a Sales lookup can point to, and the column p2c matches its records on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LookupTarget {
    /// Logical name of the related table, e.g. "account".
    pub logical_name: String,
    /// Its entity set, e.g. "accounts".
    pub entity_set: String,
    /// The column of the related record that holds the value, e.g. "accountnumber".
    pub column: String,
    /// The annotation that sets the lookup in a write: `<navigation>@odata.bind`, or for a polymorphic lookup the
    /// typed navigation property, e.g. `customerid_account@odata.bind` (value `/accounts(<guid>)`).
    pub bind_property: String,
}

impl LookupTarget {
    /// Whether the related records are synced by a p2c flow (customers, products, quotes, orders, invoices)
    /// rather than reference data set up by hand in Sales (currencies, units, unit groups, price lists). A value
    /// that matches nothing is then worth retrying after that flow has run.
    pub fn is_synced_data(&self) -> bool {
        matches!(
            self.entity_set.as_str(),
            "accounts" | "contacts" | "products" | "quotes" | "salesorders" | "invoices"
        )
    }
}

/// Lookup (navigation property) -> the tables it points to, as (logical name, entity set), in the order a
/// polymorphic value is tried. Only the lookups the templates use; a path through any other lookup is refused
/// by the override checks and has no targets.
const SALES_LOOKUPS: &[(&str, &[(&str, &str)])] = &[
    (
        "transactioncurrencyid",
        &[("transactioncurrency", "transactioncurrencies")],
    ),
    ("defaultuomid", &[("uom", "uoms")]),
    ("defaultuomscheduleid", &[("uomschedule", "uomschedules")]),
    ("uomid", &[("uom", "uoms")]),
    ("pricelevelid", &[("pricelevel", "pricelevels")]),
    ("productid", &[("product", "products")]),
    ("quoteid", &[("quote", "quotes")]),
    ("salesorderid", &[("salesorder", "salesorders")]),
    ("invoiceid", &[("invoice", "invoices")]),
    ("customerid", &[("account", "accounts"), ("contact", "contacts")]),
    ("parentcustomerid", &[("account", "accounts"), ("contact", "contacts")]),
    ("primarycontactid", &[("contact", "contacts")]),
    ("parentaccountid", &[("account", "accounts")]),
];

/// The Sales lookups p2c knows (navigation property names).
pub fn sales_lookup_names() -> impl Iterator<Item = &'static str> {
    SALES_LOOKUPS.iter().map(|(n, _)| *n)
}

/// The tables a lookup (navigation property) points to, as (logical name, entity set).
pub fn sales_lookup_tables(navigation: &str) -> Option<&'static [(&'static str, &'static str)]> {
    SALES_LOOKUPS.iter().find(|(n, _)| *n == navigation).map(|(_, t)| *t)
}

/// Split a lookup path into its navigation property and what to match on each related table.
///
/// `None` when `path` has no `.` (a plain column). The list is empty when p2c does not know the lookup, or the
/// path names a table the lookup cannot point to; the built-in templates never do (a unit test checks).
///
/// - `uomid.name`: navigation `uomid`; `uoms` by `name`, written as `uomid@odata.bind`.
/// - `customerid.Account(accountnumber).Contact(msdynce_contactnumber)`: navigation `customerid`; `accounts` by
///   `accountnumber` as `customerid_account@odata.bind`, then `contacts` by `msdynce_contactnumber` as
///   `customerid_contact@odata.bind`.
/// - `customerid.name`: both tables, matched on `name`.
pub fn lookup_targets(path: &str) -> Option<(String, Vec<LookupTarget>)> {
    let (nav, rest) = path.split_once('.')?;
    let Some(tables) = sales_lookup_tables(nav) else {
        return Some((nav.to_string(), Vec::new()));
    };
    let bind = |logical: &str| {
        if tables.len() > 1 {
            format!("{nav}_{logical}@odata.bind")
        } else {
            format!("{nav}@odata.bind")
        }
    };
    let target = |logical: &str, set: &str, column: &str| LookupTarget {
        logical_name: logical.to_string(),
        entity_set: set.to_string(),
        column: column.to_string(),
        bind_property: bind(logical),
    };
    let mut out = Vec::new();
    if !rest.contains('(') {
        if rest.is_empty() || rest.contains('.') {
            return Some((nav.to_string(), out));
        }
        out.extend(tables.iter().map(|(logical, set)| target(logical, set, rest)));
        return Some((nav.to_string(), out));
    }
    // Typed alternatives: Account(accountnumber).Contact(msdynce_contactnumber)
    for part in rest.split(").") {
        let part = part.strip_suffix(')').unwrap_or(part);
        let Some((ty, column)) = part.split_once('(') else {
            return Some((nav.to_string(), Vec::new()));
        };
        let logical = ty.to_ascii_lowercase();
        match tables.iter().find(|(l, _)| *l == logical) {
            Some((l, set)) if !column.is_empty() && !column.contains(['(', ')', '.']) => {
                out.push(target(l, set, column));
            }
            _ => return Some((nav.to_string(), Vec::new())),
        }
    }
    Some((nav.to_string(), out))
}

/// Dataverse refuses `statecode` on create ("create the record, then update statecode and statuscode"). Takes
/// `statecode` and `statuscode` out of a create body when it has a `statecode`, and returns them as the PATCH to
/// send right after the create. Update bodies keep both. A body without `statecode` is left alone: a
/// `statuscode` of the default state is valid on create.
pub fn split_state(body: &mut Record) -> Option<Record> {
    let state = body.remove("statecode")?;
    let mut patch = Record::new();
    patch.insert("statecode".to_string(), state);
    if let Some(status) = body.remove("statuscode") {
        patch.insert("statuscode".to_string(), status);
    }
    Some(patch)
}

/// The `@odata.bind` value for a record of `entity_set` with primary key `id`: `/uoms(<guid>)`.
pub fn bind_value(entity_set: &str, id: &str) -> Value {
    Value::from(format!("/{entity_set}({id})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn simple_and_polymorphic_paths() {
        assert_eq!(lookup_targets("name"), None);
        let (nav, t) = lookup_targets("uomid.name").unwrap();
        assert_eq!(nav, "uomid");
        assert_eq!(t.len(), 1);
        assert_eq!(
            (
                t[0].entity_set.as_str(),
                t[0].column.as_str(),
                t[0].bind_property.as_str()
            ),
            ("uoms", "name", "uomid@odata.bind")
        );
        let (nav, t) = lookup_targets("customerid.Account(accountnumber).Contact(msdynce_contactnumber)").unwrap();
        assert_eq!(nav, "customerid");
        let got: Vec<_> = t
            .iter()
            .map(|x| (x.entity_set.as_str(), x.column.as_str(), x.bind_property.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("accounts", "accountnumber", "customerid_account@odata.bind"),
                ("contacts", "msdynce_contactnumber", "customerid_contact@odata.bind")
            ]
        );
        assert!(t.iter().all(LookupTarget::is_synced_data));
        assert_eq!(lookup_targets("customerid.name").unwrap().1.len(), 2);
        assert!(lookup_targets("nosuchid.name").unwrap().1.is_empty());
        assert!(lookup_targets("customerid.Lead(x)").unwrap().1.is_empty());
        assert!(lookup_targets("customerid.Account(").unwrap().1.is_empty());
        assert!(lookup_targets("uomid.").unwrap().1.is_empty());
        assert!(!lookup_targets("uomid.name").unwrap().1[0].is_synced_data());
    }

    #[test]
    fn state_moves_out_of_a_create_body() {
        let mut body = match json!({"name": "x", "statecode": 0, "statuscode": 1}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let patch = split_state(&mut body).unwrap();
        assert_eq!(Value::Object(body.clone()), json!({"name": "x"}));
        assert_eq!(Value::Object(patch), json!({"statecode": 0, "statuscode": 1}));
        body.insert("statuscode".into(), json!(4));
        assert!(split_state(&mut body).is_none(), "statuscode alone is valid on create");
        assert_eq!(body["statuscode"], 4);
        assert_eq!(bind_value("uoms", "1-2"), json!("/uoms(1-2)"));
    }
}
