//! The "Freight Tax" line (spec/templates.md 4 and 6): Sales has no header tax, so F&O's header-level tax
//! (`OrderHeaderTaxAmount`, `InvoiceHeaderTaxAmount`, which the header templates map to the P2C column
//! `msdynce_misctax`) reaches Sales as a write-in line named "Freight Tax", flagged `msdynce_ismisctax`, with the
//! amount as its tax: Sales' own price calculation then adds up to F&O's total tax and total. The P2C plug-in
//! allows one such line per document.
//!
//! The line is a child the flow makes from its header ([`Part::derived`]): it has no F&O record and no F&O line
//! number, so it is found among the Sales lines by its flag, never by `sequencenumber` (which Sales numbers on
//! create), a line-number delete never touches it, and it is counted with its header. When the header tax goes
//! back to zero the line is deleted.

use p2c_dynamics::Record;
use p2c_mapping::money::decimal_from_json;
use serde_json::{Value, json};

use super::{spec::Spec, unit::Part};

/// The header column holding the header tax (a row of the header templates).
pub(crate) const HEADER_TAX: &str = "msdynce_misctax";
/// The P2C flag of the line.
pub(crate) const FLAG: &str = "msdynce_ismisctax";
/// The line's key under its header's key, in links: `<header key>/freight-tax`.
pub(crate) const KEY: &str = "freight-tax";
/// The write-in product's name (the P2C solution's).
pub(crate) const NAME: &str = "Freight Tax";
/// Sales columns of the line besides its lookups: read to compare with what p2c writes.
pub(crate) const COLUMNS: &[&str] = &[
    FLAG,
    "isproductoverridden",
    "productdescription",
    "quantity",
    "priceperunit",
    "ispriceoverridden",
    "tax",
];

/// The link key of a header's freight tax line.
pub(crate) fn key(unit_key: &str) -> String {
    format!("{unit_key}/{KEY}")
}

/// Whether a Sales line is a freight tax line.
pub(crate) fn is_freight(row: &Record) -> bool {
    row.get(FLAG).and_then(Value::as_bool) == Some(true)
}

/// The freight tax line of a mapped header, as the child template's targets: the header's lookup, currency and
/// the write-in values, the tax being the header tax. None when the header has none (zero or blank).
pub(super) fn part(spec: &Spec, unit_key: &str, header: &Record) -> Option<Part> {
    let (true, Some(pref), Some(ct)) = (spec.header_tax, &spec.parent_ref, &spec.child) else {
        return None;
    };
    let tax = header
        .get(HEADER_TAX)
        .filter(|v| decimal_from_json(v).is_some_and(|d| !d.is_zero()))?;
    let mut m = Record::new();
    m.insert(pref.path.clone(), header.get(&spec.natural_key)?.clone());
    let currency = "transactioncurrencyid.isocurrencycode";
    if let (Some(c), true) = (header.get(currency), ct.field(currency).is_some_and(|f| f.enabled)) {
        m.insert(currency.into(), c.clone());
    }
    m.insert("isproductoverridden".into(), json!(true));
    m.insert("productdescription".into(), json!(NAME));
    m.insert("quantity".into(), json!(1));
    m.insert("priceperunit".into(), json!(0));
    m.insert("ispriceoverridden".into(), json!(true));
    m.insert("tax".into(), tax.clone());
    m.insert(FLAG.into(), json!(true));
    let mut p = Part::mapped(key(unit_key), Ok(m));
    p.derived = true;
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_tax_makes_one_write_in_line() {
        let flows = |name| crate::flow_name::FlowName::parse(name).unwrap();
        let ts = p2c_mapping::templates_for("invoices-to-sales");
        let spec = Spec::of_templates(flows("invoices-to-sales"), ts).unwrap();
        let header = |tax: Value| -> Record {
            json!({"invoicenumber": "CIV-1", "transactioncurrencyid.isocurrencycode": "EUR", HEADER_TAX: tax})
                .as_object()
                .cloned()
                .unwrap()
        };
        assert!(spec.header_tax, "the invoice header template writes the header tax");
        let p = part(&spec, "CIV-1", &header(json!(4.5))).expect("a freight tax line");
        assert!(p.derived);
        assert_eq!(p.key, "CIV-1/freight-tax");
        assert_eq!(
            Value::Object(p.mapped.unwrap()),
            json!({"invoiceid.invoicenumber": "CIV-1", "transactioncurrencyid.isocurrencycode": "EUR",
                   "isproductoverridden": true, "productdescription": "Freight Tax", "quantity": 1,
                   "priceperunit": 0, "ispriceoverridden": true, "tax": 4.5, "msdynce_ismisctax": true})
        );
        assert!(part(&spec, "CIV-1", &header(json!(0.0))).is_none());
        assert!(part(&spec, "CIV-1", &header(Value::Null)).is_none());
    }
}
