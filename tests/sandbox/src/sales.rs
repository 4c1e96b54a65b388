//! What Dynamics 365 Sales adds on top of plain Dataverse tables for quotes, orders and invoices: which states
//! may be edited, price lists of the record's currency, system pricing (the P2C solution requires "Use system
//! pricing calculation = Yes" and "Discount calculation method = Line item", spec/templates.md section 4), and
//! the P2C solution's one rule on its "Freight Tax" lines.
//!
//! **Editing rules** (spec/protocols.md A.10): a quote is editable only in Draft (statecode 0), a sales order
//! only while Active (0), an invoice only while Active (0). A record in any other state accepts a state change
//! (`statecode`/`statuscode`) and nothing else; a PATCH that changes the state *and* other columns is accepted
//! when the record is editable before or after the change (activate-and-edit, reopen-and-edit). Lines follow
//! their header: creating, updating or deleting a line of a read-only header is refused. The refusal is 400
//! `0x8004022e` (CannotUpdateBecauseItIsReadOnly) "The object cannot be updated because it is read-only.", the
//! platform's documented error for the case. The P2C solution keeps orders that come from F&O Active, so they
//! stay editable.
//!
//! **Price list and currency**: a quote, order or invoice whose price list is in another currency than the
//! record is refused, on create and on an update that sets either: 400 `0x80048cf6` (RecordAndPricelistCurrency
//! NotEqual) "The currency of the record does not match the currency of the price list." (the platform's error
//! list, PAD `reference/web-service-error-codes`).
//!
//! **System pricing** runs on every write path (Web API, `$batch` and the Rust API), like the platform, while
//! the organization's "Use system pricing calculation" (`organizations.oobpricecalculationenabled`, PAD/Sales
//! "Use custom pricing for products") is Yes, as it is by default:
//! * Line: `priceperunit` comes from the price list item (header price list, product, unit) unless the line has
//!   `ispriceoverridden` or is a write-in product; a header with `ispricelocked` keeps existing lines' prices.
//!   When no price list item matches, the line keeps the price it has (the Web API refuses such a line first:
//!   `catalog.rs`; the Rust API can seed one). `baseamount = quantity × (priceperunit -
//!   volumediscountamount)`, `extendedamount = baseamount - manualdiscountamount + tax` (tax is never
//!   calculated by Sales).
//! * Header: `totallineitemamount = Σ(extendedamount - tax)`, `totallineitemdiscountamount =
//!   Σ manualdiscountamount`, `totaltax = Σ tax`, `totaldiscountamount = totallineitemdiscountamount +
//!   discountamount + discountpercentage% × totallineitemamount`, `totalamountlessfreight =
//!   totallineitemamount - (totaldiscountamount - totallineitemdiscountamount)`, `totalamount =
//!   totalamountlessfreight + freightamount + totaltax`. Money is rounded to 2 decimals (half away from zero).
//! * These computed columns are `IsValidForCreate = false` and valid for update in the real metadata: a create
//!   ignores them, an update is accepted, and either way the calculation overwrites them, so a written value
//!   never sticks.
//! * With the setting at No ("custom pricing": the org's own `CalculatePrice` plug-in would price, and the
//!   sandbox has none) nothing is calculated: values written by an update stay as written. A create still
//!   ignores the computed columns (their metadata does not change).
//! * `ispricelocked` of orders and invoices is `IsValidForCreate = false` too (DCE `salesorder.md`,
//!   `invoice.md`): a create ignores it; an update sets it.
//! * New lines inherit the header's currency (and its owner, see `owner.rs`), and get the next `sequencenumber`
//!   of their header when the body has none.
//!
//! **Freight Tax** (the P2C plug-in on order and invoice lines, spec/templates.md 4): F&O's header tax arrives as
//! a write-in line flagged `msdynce_ismisctax`; a second such line on one document is refused with 400
//! `0x80040265` (ISV code aborted the operation, how a plug-in's refusal reaches the Web API) and the plug-in's
//! text "Sales order can not contain more than one Freight tax" (invoices: "Invoice can not contain more than one
//! Freight tax", the sandbox's wording; the spec quotes only the order's).
//!
//! Not emulated: volume discounts (price list discount lists), percentage pricing methods, re-pricing lines
//! when a header's price list changes, and the other P2C plug-ins (externally-maintained flags, order ->
//! Invoiced on invoice arrival, automatic price list items for products).

use serde_json::{Value, json};

use crate::dataverse::err;
use crate::dv_schema::{self, Table};
use crate::http::{Resp, now_iso};
use crate::store::{DvStore, Row};

/// A header table, its line table and the line's lookup to the header.
pub(crate) struct Doc {
    pub header: &'static str,
    pub line: &'static str,
    pub lookup: &'static str,
}

pub(crate) const DOCS: [Doc; 3] = [
    Doc {
        header: "quotes",
        line: "quotedetails",
        lookup: "quoteid",
    },
    Doc {
        header: "salesorders",
        line: "salesorderdetails",
        lookup: "salesorderid",
    },
    Doc {
        header: "invoices",
        line: "invoicedetails",
        lookup: "invoiceid",
    },
];

impl Doc {
    fn header_col(&self) -> String {
        format!("_{}_value", self.lookup)
    }

    /// Editable states of the header.
    fn editable(&self, state: i64) -> bool {
        // Quotes: Draft; orders: Active; invoices: Active. The other states are read-only.
        state == 0
    }
}

pub(crate) fn doc_of_header(set: &str) -> Option<&'static Doc> {
    DOCS.iter().find(|d| d.header == set)
}

pub(crate) fn doc_of_line(set: &str) -> Option<&'static Doc> {
    DOCS.iter().find(|d| d.line == set)
}

fn read_only() -> Resp {
    err(
        400,
        "0x8004022e",
        "The object cannot be updated because it is read-only.",
    )
}

fn currency_mismatch() -> Resp {
    err(
        400,
        "0x80048cf6",
        "The currency of the record does not match the currency of the price list.",
    )
}

fn second_freight_tax(doc: &Doc) -> Resp {
    let what = if doc.header == "invoices" {
        "Invoice"
    } else {
        "Sales order"
    };
    err(
        400,
        "0x80040265",
        format!("{what} can not contain more than one Freight tax"),
    )
}

fn state_of(row: &Row) -> i64 {
    row.get("statecode").and_then(Value::as_i64).unwrap_or(0)
}

fn id_of<'a>(row: &'a Row, col: &str) -> Option<&'a str> {
    row.get(col).and_then(Value::as_str)
}

/// The editing rules for a create (`existing` = None) or an update of a row of `t` with validated values `vals`.
pub(crate) fn check_write(store: &DvStore, t: &Table, existing: Option<&Row>, vals: &Row) -> Result<(), Resp> {
    crate::registration::check_write(store, t, existing, vals)?;
    crate::catalog::check_write(store, t, existing, vals)?;
    if let Some(doc) = doc_of_header(t.set) {
        check_price_list_currency(store, existing, vals)?;
        let Some(ex) = existing else { return Ok(()) };
        let edits = vals.keys().any(|k| k != "statecode" && k != "statuscode");
        if !edits {
            return Ok(());
        }
        let before = state_of(ex);
        let after = vals.get("statecode").and_then(Value::as_i64).unwrap_or(before);
        return if doc.editable(before) || doc.editable(after) {
            Ok(())
        } else {
            Err(read_only())
        };
    }
    if let Some(doc) = doc_of_line(t.set) {
        let col = doc.header_col();
        let mut headers: Vec<&str> = Vec::new();
        if let Some(h) = id_of(vals, &col) {
            headers.push(h);
        }
        if let Some(h) = existing.and_then(|e| id_of(e, &col))
            && !headers.contains(&h)
        {
            headers.push(h);
        }
        for h in &headers {
            if let Some(hr) = store.get(doc.header, h)
                && !doc.editable(state_of(hr))
            {
                return Err(read_only());
            }
        }
        check_freight_tax(store, t, doc, existing, vals)?;
    }
    Ok(())
}

/// A value of the row after the write: from `vals`, else as it was.
fn after<'a>(existing: Option<&'a Row>, vals: &'a Row, col: &str) -> Option<&'a Value> {
    vals.get(col)
        .or_else(|| existing.and_then(|e| e.get(col)))
        .filter(|v| !v.is_null())
}

/// A document's price list must be in the document's currency (checked when either is written).
fn check_price_list_currency(store: &DvStore, existing: Option<&Row>, vals: &Row) -> Result<(), Resp> {
    let (cur, pl) = ("_transactioncurrencyid_value", "_pricelevelid_value");
    if existing.is_some() && !vals.contains_key(cur) && !vals.contains_key(pl) {
        return Ok(());
    }
    let (Some(currency), Some(list)) = (
        after(existing, vals, cur).and_then(Value::as_str),
        after(existing, vals, pl).and_then(Value::as_str),
    ) else {
        return Ok(());
    };
    match store.get("pricelevels", list).and_then(|r| id_of(r, cur)) {
        Some(c) if !c.eq_ignore_ascii_case(currency) => Err(currency_mismatch()),
        _ => Ok(()),
    }
}

/// The P2C solution's flag of a "Freight Tax" line.
const FREIGHT_FLAG: &str = "msdynce_ismisctax";

/// The P2C plug-in: one "Freight Tax" line (`msdynce_ismisctax`) per document at most.
fn check_freight_tax(store: &DvStore, t: &Table, doc: &Doc, existing: Option<&Row>, vals: &Row) -> Result<(), Resp> {
    if !vals.contains_key(FREIGHT_FLAG) && !vals.contains_key(&doc.header_col()) {
        return Ok(());
    }
    if !after(existing, vals, FREIGHT_FLAG)
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let Some(header) = after(existing, vals, &doc.header_col()).and_then(Value::as_str) else {
        return Ok(());
    };
    let me = existing.and_then(|e| id_of(e, &t.pk));
    let other = store.table(doc.line).is_some_and(|lines| {
        lines
            .referencing(&doc.header_col(), header)
            .any(|r| flag(r, FREIGHT_FLAG) && id_of(r, &t.pk) != me)
    });
    if other { Err(second_freight_tax(doc)) } else { Ok(()) }
}

/// The editing rules for deleting `row` of `t`: a line of a read-only header cannot be removed.
pub(crate) fn check_delete(store: &DvStore, t: &Table, row: &Row) -> Result<(), Resp> {
    crate::registration::check_delete(store, t, row)?;
    if let Some(doc) = doc_of_line(t.set)
        && let Some(h) = id_of(row, &doc.header_col())
        && let Some(hr) = store.get(doc.header, h)
        && !doc.editable(state_of(hr))
    {
        return Err(read_only());
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// System pricing
// ------------------------------------------------------------------------------------------------

/// Money rounding: 2 decimals, half away from zero (a tiny nudge absorbs binary representation error).
pub(crate) fn round2(x: f64) -> f64 {
    let y = x * 100.0;
    let r = (y + y.signum() * y.abs().max(1.0) * 1e-12).round() / 100.0;
    if r == 0.0 { 0.0 } else { r }
}

fn num(row: &Row, col: &str) -> f64 {
    row.get(col).and_then(Value::as_f64).unwrap_or(0.0)
}

fn flag(row: &Row, col: &str) -> bool {
    row.get(col).and_then(Value::as_bool).unwrap_or(false)
}

fn is_blank(row: &Row, col: &str) -> bool {
    row.get(col).is_none_or(Value::is_null)
}

/// Set `col` to `v` and report whether it changed (numbers compared as numbers).
fn set_num(row: &mut Row, col: &str, v: f64) -> bool {
    let same = row.get(col).and_then(Value::as_f64).is_some_and(|old| old == v);
    if !same {
        row.insert(col.to_string(), json!(v));
    }
    !same
}

/// The amount of the price list item for (price list, product, unit), currency-amount pricing.
fn price_list_amount(store: &DvStore, pricelevel: &str, product: &str, uom: &str) -> Option<f64> {
    store.table("productpricelevels")?.rows().values().find_map(|r| {
        let hit = id_of(r, "_pricelevelid_value") == Some(pricelevel)
            && id_of(r, "_productid_value") == Some(product)
            && id_of(r, "_uomid_value") == Some(uom);
        if hit {
            r.get("amount").and_then(Value::as_f64)
        } else {
            None
        }
    })
}

/// The organization's "Use system pricing calculation" (`oobpricecalculationenabled`; Yes unless set to No).
pub(crate) fn system_pricing(store: &DvStore) -> bool {
    store
        .table("organizations")
        .and_then(|t| t.rows().values().next())
        .and_then(|r| r.get("oobpricecalculationenabled"))
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// Defaults and prices of a line about to be stored (`new`: a create).
fn prepare_line(store: &DvStore, doc: &Doc, row: &mut Row, new: bool) {
    let header = id_of(row, &doc.header_col()).and_then(|h| store.get(doc.header, h));
    if new && let Some(h) = header {
        let col = "_transactioncurrencyid_value";
        if is_blank(row, col)
            && let Some(v) = h.get(col).filter(|v| !v.is_null())
        {
            row.insert(col.to_string(), v.clone());
        }
        if is_blank(row, "sequencenumber") {
            let hid = id_of(row, &doc.header_col()).unwrap_or("");
            let max = store
                .table(doc.line)
                .map(|t| {
                    t.rows()
                        .values()
                        .filter(|r| id_of(r, &doc.header_col()) == Some(hid))
                        .filter_map(|r| r.get("sequencenumber").and_then(Value::as_i64))
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0);
            row.insert("sequencenumber".into(), json!(max + 1));
        }
    }
    if !system_pricing(store) {
        return;
    }
    let overridden = flag(row, "ispriceoverridden") || flag(row, "isproductoverridden");
    let locked = header.is_some_and(|h| flag(h, "ispricelocked"));
    if !overridden
        && (new || !locked)
        && let Some(h) = header
        && let (Some(pl), Some(p), Some(u)) = (
            id_of(h, "_pricelevelid_value"),
            id_of(row, "_productid_value"),
            id_of(row, "_uomid_value"),
        )
        && let Some(amount) = price_list_amount(store, pl, p, u)
    {
        set_num(row, "priceperunit", amount);
    }
    let base = round2(num(row, "quantity") * (num(row, "priceperunit") - num(row, "volumediscountamount")));
    let ext = round2(base - num(row, "manualdiscountamount") + num(row, "tax"));
    set_num(row, "baseamount", base);
    set_num(row, "extendedamount", ext);
}

/// The header totals of `header` (its own id `hid`) from the lines in the store; true when a value changed.
/// Nothing is calculated without system pricing.
fn header_totals(store: &DvStore, doc: &Doc, hid: &str, header: &mut Row) -> bool {
    if !system_pricing(store) {
        return false;
    }
    let (mut lines, mut line_disc, mut tax) = (0.0, 0.0, 0.0);
    if let Some(t) = store.table(doc.line) {
        for r in t.referencing(&doc.header_col(), hid) {
            lines += num(r, "extendedamount") - num(r, "tax");
            line_disc += num(r, "manualdiscountamount");
            tax += num(r, "tax");
        }
    }
    let lines = round2(lines);
    let line_disc = round2(line_disc);
    let tax = round2(tax);
    let header_disc = round2(num(header, "discountamount") + lines * num(header, "discountpercentage") / 100.0);
    let less_freight = round2(lines - header_disc);
    let total = round2(less_freight + num(header, "freightamount") + tax);
    let mut changed = false;
    for (col, v) in [
        ("totallineitemamount", lines),
        ("totallineitemdiscountamount", line_disc),
        ("totaltax", tax),
        ("totaldiscountamount", round2(line_disc + header_disc)),
        ("totalamountlessfreight", less_freight),
        ("totalamount", total),
    ] {
        changed |= set_num(header, col, v);
    }
    changed
}

/// Before a row of `t` is stored: line defaults and prices, header totals.
pub(crate) fn prepare(store: &DvStore, t: &Table, row: &mut Row, new: bool) {
    if let Some(doc) = doc_of_line(t.set) {
        prepare_line(store, doc, row, new);
    } else if let Some(doc) = doc_of_header(t.set) {
        let hid = id_of(row, &t.pk).unwrap_or("").to_string();
        header_totals(store, doc, &hid, row);
    }
}

/// Recalculate a header's totals and store it (new version) when they changed.
fn recalc_header(store: &mut DvStore, doc: &Doc, hid: &str) {
    let Some(mut h) = store.get(doc.header, hid).cloned() else {
        return;
    };
    if header_totals(store, doc, hid, &mut h) {
        h.insert("modifiedon".into(), Value::String(now_iso()));
        let v = store.next_version();
        h.insert("versionnumber".into(), json!(v));
        store.put(doc.header, hid, h);
    }
}

/// After a row of `t` was stored or deleted (`row` = its values): the header of a line recalculates.
pub(crate) fn after_change(store: &mut DvStore, t: &Table, row: &Row) {
    if let Some(doc) = doc_of_line(t.set)
        && let Some(h) = id_of(row, &doc.header_col()).map(str::to_string)
    {
        recalc_header(store, doc, &h);
    }
}

/// The header the line `row` belonged to before an update moved it (re-parenting), to recalculate it too.
pub(crate) fn previous_header(t: &Table, before: &Row, after: &Row) -> Option<String> {
    let doc = doc_of_line(t.set)?;
    let col = doc.header_col();
    let old = id_of(before, &col)?;
    (id_of(after, &col) != Some(old)).then(|| old.to_string())
}

/// Recalculate one header by id (used after re-parenting a line).
pub(crate) fn recalc_header_of_line_table(store: &mut DvStore, t: &Table, hid: &str) {
    if let Some(doc) = doc_of_line(t.set) {
        recalc_header(store, doc, hid);
    }
}

/// Whether a body column is not valid for create (calculated by the platform, or `ispricelocked`): a create
/// ignores it.
pub(crate) fn ignored_on_create(t: &Table, col: &str) -> bool {
    t.computed.contains(&col) || t.not_valid_for_create.contains(&col)
}

/// The error for a statecode/statuscode pair the table's state model does not allow.
pub(crate) fn invalid_status(t: &Table, state: i64, status: i64, id: Option<&str>) -> Resp {
    let on = match id {
        Some(id) => format!("{} with Id {id}", t.logical),
        None => t.logical.to_string(),
    };
    err(
        400,
        "0x80040203",
        format!(
            "{status} is not a valid status code for state code {} on {on}.",
            dv_schema::state_label(t, state)
        ),
    )
}
