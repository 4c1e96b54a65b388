//! The F&O business logic behind the P2C entities: defaulting and line amounts on order and quotation writes,
//! the "Calculate sales totals" batch (`Sandbox::fno_confirm_order`), invoice posting
//! (`Sandbox::fno_invoice_order`), orders entered in F&O (`Sandbox::fno_create_order`), and the fields the CDS
//! entities derive from other tables when read.
//!
//! Choices (documented in the README):
//! * Sales tax is a flat [`TAX_RATE`] (10 %) of each line amount; header-level charges are 0 and header-level tax
//!   is whatever `OrderHeaderTaxAmount` holds (0 unless written), added to `OrderTotalTaxAmount` by the totals
//!   batch and invoiced as `InvoiceHeaderTaxAmount` with the order's first invoice.
//! * A line's `TotalDiscountAmount` (what the Sales templates write) is the whole-line discount, split the F&O
//!   way: `LineDiscountAmount` = discount / quantity cut to cents, and the remainder becomes a negative line
//!   charge (`TotalChargesAmount`), so qty 3 and $10.00 give $3.33 per unit and a -$0.01 charge (spec/templates.md
//!   5.5 "Discount rounding"). A new discount or a new quantity splits it again (qty 4: $2.50, no charge); writing
//!   `LineDiscountAmount` instead sets the whole-line discount to quantity × per-unit discount.
//! * `LineAmount = (SalesPrice / SalesPriceQuantity - LineDiscountAmount) × quantity × (1 - LineDiscountPercentage
//!   / 100)`, recalculated on every line write, like F&O does at line level. Header totals are only updated by
//!   the totals batch: any later line write sets the header's `AreTotalsUpdated` and the lines'
//!   `AreSalesOrderTotalsUpdated` back to `No`.
//! * Header totals: `OrderTotalAmount = Σ LineAmount - TotalDiscountAmount + OrderTotalChargesAmount +
//!   OrderTotalTaxAmount`, where the header's `TotalDiscountAmount` is the order-level (end) discount (0 unless
//!   written), `OrderTotalDiscountAmount` = line discounts + end discount, charges and tax are the sums of the
//!   lines'.
//! * `OrderingCustomerIsExternallyMaintained` / `InvoiceCustomerIsExternallyMaintained` are read from the
//!   customers' `IsExternallyMaintained` whenever an order header or line is read (the entity joins CustTable).
//! * The `ExternallyMaintainedCustomerSalesInvoice*` entities only show invoices whose invoice customer is
//!   externally maintained, as their name says; other invoices exist but are invisible through them.
//! * Both rules need the customer row. Rows seeded with `fno_insert` for a customer F&O does not have (which
//!   OData validation would refuse) keep their stored flags and stay visible.
//! * Invoice numbers `CIV-000001`, vouchers `ARIN-000001`, per company; invoice date = today at 12:00:00Z.
//! * Partial invoices (`Sandbox::fno_invoice_order_lines`): a line's share is quantity × (price - per-unit
//!   discount) and its tax; the invoice completing a line takes the rest of its amounts and its charges. What
//!   earlier invoices took is read back from the invoice lines of the order; the order is PartiallyInvoiced until
//!   nothing is left, then Invoiced.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::fno_schema::{Entity, schema};
use crate::http::now_iso;
use crate::sales::round2;
use crate::store::{FnoStore, Key, KeyPart, Row};

use crate::FNO_SALES_TAX_RATE as TAX_RATE;

const ORDERS: &str = "CDSSalesOrderHeaders";
const ORDER_LINES: &str = "CDSSalesOrderLines";
const QUOTES: &str = "CDSSalesQuotationHeaders";
const QUOTE_LINES: &str = "CDSSalesQuotationLines";
const INVOICES: &str = "ExternallyMaintainedCustomerSalesInvoiceHeaders";
const INVOICE_LINES: &str = "ExternallyMaintainedCustomerSalesInvoiceLines";
const CUSTOMERS: &str = "CustomersV2";
const PRODUCTS: &str = "SellableReleasedProducts";
const EMPTY_DATE: &str = "1900-01-01T12:00:00Z";
const NAME_MAX: usize = 60;

fn s<'a>(data: &'a Row, k: &str) -> &'a str {
    data.get(k).and_then(Value::as_str).unwrap_or("")
}

fn n(data: &Row, k: &str) -> f64 {
    data.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

fn set(data: &mut Row, k: &str, v: Value) {
    data.insert(k.to_string(), v);
}

/// Cut towards zero to cents (the per-unit discount), with a nudge against binary representation error.
fn trunc2(x: f64) -> f64 {
    let y = x * 100.0;
    (y + y.signum() * y.abs().max(1.0) * 1e-9).trunc() / 100.0
}

fn key2(company: &str, v: &str) -> Key {
    vec![KeyPart::Str(company.to_lowercase()), KeyPart::Str(v.to_lowercase())]
}

fn customer<'a>(store: &'a FnoStore, company: &str, account: &str) -> Option<&'a Row> {
    (!account.is_empty())
        .then(|| store.get(CUSTOMERS, &key2(company, account)))
        .flatten()
        .map(|r| &r.data)
}

fn product<'a>(store: &'a FnoStore, company: &str, number: &str) -> Option<&'a Row> {
    store.get(PRODUCTS, &key2(company, number)).map(|r| &r.data)
}

fn new_version() -> i64 {
    rand::random_range(1..i64::from(i32::MAX))
}

fn today_noon() -> String {
    format!("{}T12:00:00Z", &now_iso()[..10])
}

/// The customer's `IsExternallyMaintained`, or `None` when F&O has no such customer. Through OData an order or
/// invoice cannot exist without its customer; rows seeded with `fno_insert` can, and then keep what they store.
fn externally_maintained(store: &FnoStore, company: &str, account: &str) -> Option<&'static str> {
    customer(store, company, account).map(|c| {
        if s(c, "IsExternallyMaintained") == "Yes" {
            "Yes"
        } else {
            "No"
        }
    })
}

fn header_of_line<'a>(store: &'a FnoStore, storage: &str, data: &Row) -> Option<&'a Row> {
    let company = s(data, "dataAreaId");
    match storage {
        ORDER_LINES => store.get(ORDERS, &key2(company, s(data, "SalesOrderNumber"))),
        QUOTE_LINES => store.get(QUOTES, &key2(company, s(data, "SalesQuotationNumber"))),
        _ => None,
    }
    .map(|r| &r.data)
}

// ------------------------------------------------------------------------------------------------
// Writes through OData
// ------------------------------------------------------------------------------------------------

/// Before an order/quotation row is validated and stored: F&O's defaulting (`create`) and line amounts.
/// `provided` lists the properties the client sent.
pub(crate) fn prepare(store: &FnoStore, e: &Entity, data: &mut Row, provided: &[String], create: bool) {
    match e.storage.as_str() {
        ORDERS | QUOTES if create => header_defaults(store, e, data),
        ORDER_LINES | QUOTE_LINES => {
            if create {
                line_defaults(store, e, data, provided);
            }
            line_amounts(e, data, provided);
            // A changed line leaves the totals stale until the totals batch runs again.
            set(data, "AreTotalsCalculated", json!("No"));
            if e.storage == ORDER_LINES {
                set(data, "AreSalesOrderTotalsUpdated", json!("No"));
            }
        }
        _ => {}
    }
}

fn header_defaults(store: &FnoStore, e: &Entity, data: &mut Row) {
    let company = s(data, "dataAreaId").to_string();
    let (cust_field, name_field) = if e.storage == ORDERS {
        ("OrderingCustomerAccountNumber", "SalesOrderName")
    } else {
        ("RequestingCustomerAccountNumber", "SalesQuotationName")
    };
    let account = s(data, cust_field).to_string();
    if let Some(c) = customer(store, &company, &account).cloned() {
        if s(data, "InvoiceCustomerAccountNumber").is_empty() {
            let inv = if s(&c, "InvoiceAccount").is_empty() {
                account.clone()
            } else {
                s(&c, "InvoiceAccount").to_string()
            };
            set(data, "InvoiceCustomerAccountNumber", json!(inv));
        }
        for (field, from) in [("CurrencyCode", "SalesCurrencyCode"), ("LanguageId", "LanguageId")] {
            if s(data, field).is_empty() && !s(&c, from).is_empty() {
                set(data, field, json!(s(&c, from)));
            }
        }
        if s(data, name_field).is_empty() {
            let name: String = s(&c, "OrganizationName").chars().take(NAME_MAX).collect();
            set(data, name_field, json!(name));
        }
    }
    if e.storage == ORDERS {
        if s(data, "SalesOrderStatus") == "None" {
            set(data, "SalesOrderStatus", json!("Backorder"));
        }
        if s(data, "OrderCreationDateTime") == EMPTY_DATE {
            set(data, "OrderCreationDateTime", json!(now_iso()));
        }
    }
}

fn line_defaults(store: &FnoStore, e: &Entity, data: &mut Row, provided: &[String]) {
    let company = s(data, "dataAreaId").to_string();
    if let Some(p) = product(store, &company, s(data, "ProductNumber")).cloned() {
        if s(data, "SalesUnitSymbol").is_empty() {
            set(data, "SalesUnitSymbol", json!(s(&p, "SalesUnitSymbol")));
        }
        if !provided.iter().any(|k| k == "SalesPrice") {
            set(data, "SalesPrice", json!(n(&p, "SalesPrice")));
        }
        if s(data, "ProductName").is_empty() {
            set(data, "ProductName", json!(s(&p, "ProductName")));
        }
    }
    if let Some(h) = header_of_line(store, &e.storage, data).cloned() {
        if s(data, "CurrencyCode").is_empty() {
            set(data, "CurrencyCode", json!(s(&h, "CurrencyCode")));
        }
        if e.storage == ORDER_LINES {
            set(
                data,
                "SalesOrderProcessingStatus",
                json!(s(&h, "SalesOrderProcessingStatus")),
            );
        }
    }
    if n(data, "SalesPriceQuantity") == 0.0 {
        set(data, "SalesPriceQuantity", json!(1));
    }
    if e.storage == ORDER_LINES && s(data, "SalesOrderLineStatus") == "None" {
        set(data, "SalesOrderLineStatus", json!("Backorder"));
    }
}

/// Discount split, line amount and tax of an order or quotation line.
fn line_amounts(e: &Entity, data: &mut Row, provided: &[String]) {
    let qty = n(
        data,
        if e.storage == ORDER_LINES {
            "OrderedSalesQuantity"
        } else {
            "RequestedSalesQuantity"
        },
    );
    let sent = |k: &str| provided.iter().any(|p| p == k);
    let qty_sent = sent("OrderedSalesQuantity") || sent("RequestedSalesQuantity");
    // The whole-line discount drives the split: a new discount or a new quantity splits it again.
    if sent("TotalDiscountAmount") || (qty_sent && !sent("LineDiscountAmount")) {
        let total = round2(n(data, "TotalDiscountAmount"));
        let per_unit = if qty > 0.0 { trunc2(total / qty) } else { 0.0 };
        let remainder = round2(total - round2(qty * per_unit));
        set(data, "TotalDiscountAmount", json!(total));
        set(data, "LineDiscountAmount", json!(per_unit));
        set(data, "TotalChargesAmount", json!(round2(-remainder)));
    } else if sent("LineDiscountAmount") {
        let total = round2(qty * n(data, "LineDiscountAmount"));
        set(data, "TotalDiscountAmount", json!(total));
    }
    let price_qty = match n(data, "SalesPriceQuantity") {
        q if q > 0.0 => q,
        _ => 1.0,
    };
    let unit = n(data, "SalesPrice") / price_qty - n(data, "LineDiscountAmount");
    let amount = round2(unit * qty * (1.0 - n(data, "LineDiscountPercentage") / 100.0));
    set(data, "LineAmount", json!(amount));
    set(data, "TotalTaxAmount", json!(round2(amount * TAX_RATE)));
}

/// After an order/quotation line was stored or deleted: its header's totals are stale.
pub(crate) fn after_write(store: &mut FnoStore, e: &Entity, data: &Row) {
    let company = s(data, "dataAreaId").to_string();
    match e.storage.as_str() {
        ORDER_LINES => {
            let number = s(data, "SalesOrderNumber").to_string();
            mark(store, ORDERS, &key2(&company, &number), "AreTotalsUpdated");
            let siblings: Vec<Key> = order_line_keys(store, &company, &number);
            for k in siblings {
                mark(store, ORDER_LINES, &k, "AreSalesOrderTotalsUpdated");
            }
        }
        QUOTE_LINES => {
            let number = s(data, "SalesQuotationNumber").to_string();
            mark(store, QUOTES, &key2(&company, &number), "AreTotalsCalculated");
        }
        _ => {}
    }
}

/// Set a NoYes flag to `No` (new record version) when it is `Yes`.
fn mark(store: &mut FnoStore, storage: &str, key: &Key, field: &str) {
    if let Some(r) = store.get(storage, key)
        && s(&r.data, field) == "Yes"
    {
        let mut r = r.clone();
        set(&mut r.data, field, json!("No"));
        r.recversion = new_version();
        store.put(storage, key.clone(), r);
    }
}

fn order_line_keys(store: &FnoStore, company: &str, number: &str) -> Vec<Key> {
    let mut lines: Vec<(i64, Key)> = store
        .rows(ORDER_LINES)
        .filter(|(_, r)| {
            s(&r.data, "dataAreaId").eq_ignore_ascii_case(company)
                && s(&r.data, "SalesOrderNumber").eq_ignore_ascii_case(number)
        })
        .map(|(k, r)| {
            let seq = r
                .data
                .get("LineCreationSequenceNumber")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            (seq, k.clone())
        })
        .collect();
    lines.sort();
    lines.into_iter().map(|(_, k)| k).collect()
}

// ------------------------------------------------------------------------------------------------
// Reads
// ------------------------------------------------------------------------------------------------

/// The row as the entity shows it: fields F&O derives from other tables on read.
pub(crate) fn view<'a>(store: &FnoStore, e: &Entity, data: &'a Row) -> Cow<'a, Row> {
    let header = match e.storage.as_str() {
        ORDERS => Some(data),
        ORDER_LINES => header_of_line(store, ORDER_LINES, data),
        _ => None,
    };
    let Some(h) = header else {
        return Cow::Borrowed(data);
    };
    let company = s(data, "dataAreaId");
    let ordering = s(h, "OrderingCustomerAccountNumber");
    let invoice = match s(h, "InvoiceCustomerAccountNumber") {
        "" => ordering,
        i => i,
    };
    let mut out = data.clone();
    for (field, account) in [
        ("OrderingCustomerIsExternallyMaintained", ordering),
        ("InvoiceCustomerIsExternallyMaintained", invoice),
    ] {
        if let Some(v) = externally_maintained(store, company, account) {
            set(&mut out, field, json!(v));
        }
    }
    if e.storage == ORDER_LINES {
        set(&mut out, "SalesOrderOriginType", json!(s(h, "SalesOrderOriginType")));
    }
    Cow::Owned(out)
}

/// Whether the entity shows the row at all (the externally-maintained invoice entities filter on the customer).
pub(crate) fn visible(store: &FnoStore, e: &Entity, data: &Row) -> bool {
    let company = s(data, "dataAreaId");
    match e.storage.as_str() {
        INVOICES => externally_maintained(store, company, s(data, "InvoiceCustomerAccountNumber")) != Some("No"),
        INVOICE_LINES => {
            // The header's key is the line's key without the line number.
            let key: Key = ["dataAreaId", "InvoiceNumber", "InvoiceDate", "LedgerVoucher"]
                .iter()
                .map(|k| KeyPart::Str(s(data, k).to_lowercase()))
                .collect();
            // A line without its header (seeded alone) stays visible, like a header without its customer.
            store.get(INVOICES, &key).is_none_or(|h| {
                externally_maintained(store, company, s(&h.data, "InvoiceCustomerAccountNumber")) != Some("No")
            })
        }
        _ => true,
    }
}

// ------------------------------------------------------------------------------------------------
// Business events of the Rust API
// ------------------------------------------------------------------------------------------------

fn entity(set: &str) -> &'static Entity {
    match schema().entity(set) {
        Some(e) => e,
        None => panic!("p2c-sandbox: the F&O schema has no entity set '{set}'"),
    }
}

/// Confirm the order and run "Calculate sales totals" for it.
pub(crate) fn confirm_order(store: &mut FnoStore, company: &str, number: &str) -> Result<(), String> {
    totals(store, company, number, "Confirmed")
}

/// Recalculate lines and header totals; move the processing status forward to `status` when it is still Active
/// (or to Invoiced when `status` is Invoiced).
fn totals(store: &mut FnoStore, company: &str, number: &str, status: &str) -> Result<(), String> {
    let hk = key2(company, number);
    let Some(mut h) = store.get(ORDERS, &hk).cloned() else {
        return Err(format!(
            "p2c-sandbox: F&O has no sales order '{number}' in company '{company}' (CDSSalesOrderHeaders)"
        ));
    };
    let new_status = match (s(&h.data, "SalesOrderProcessingStatus"), status) {
        (_, "Invoiced" | "PartiallyInvoiced") | ("Active", _) => status.to_string(),
        (current, _) => current.to_string(),
    };
    let line_entity = entity(ORDER_LINES);
    let (mut amount, mut tax, mut charges, mut discount) = (0.0, 0.0, 0.0, 0.0);
    for k in order_line_keys(store, company, number) {
        let Some(mut r) = store.get(ORDER_LINES, &k).cloned() else {
            continue;
        };
        line_amounts(line_entity, &mut r.data, &[]);
        amount += n(&r.data, "LineAmount");
        tax += n(&r.data, "TotalTaxAmount");
        charges += n(&r.data, "TotalChargesAmount");
        discount += n(&r.data, "TotalDiscountAmount");
        set(&mut r.data, "AreTotalsCalculated", json!("Yes"));
        set(&mut r.data, "AreSalesOrderTotalsUpdated", json!("Yes"));
        set(&mut r.data, "SalesOrderProcessingStatus", json!(new_status));
        let line_status = match (status, s(&r.data, "SalesOrderLineStatus")) {
            ("Invoiced", _) => "Invoiced",
            (_, "None") => "Backorder",
            (_, other) => other,
        }
        .to_string();
        set(&mut r.data, "SalesOrderLineStatus", json!(line_status));
        r.recversion = new_version();
        store.put(ORDER_LINES, k, r);
    }
    let d = &mut h.data;
    let end_discount = n(d, "TotalDiscountAmount");
    let tax = round2(tax + n(d, "OrderHeaderTaxAmount"));
    let charges = round2(charges);
    set(d, "OrderTotalChargesAmount", json!(charges));
    set(d, "OrderTotalTaxAmount", json!(tax));
    set(d, "OrderTotalDiscountAmount", json!(round2(discount + end_discount)));
    set(
        d,
        "OrderTotalAmount",
        json!(round2(amount - end_discount + charges + tax)),
    );
    set(d, "AreTotalsUpdated", json!("Yes"));
    set(d, "SalesOrderProcessingStatus", json!(new_status));
    let order_status = match (status, s(d, "SalesOrderStatus")) {
        ("Invoiced", _) => "Invoiced",
        (_, "None") => "Backorder",
        (_, other) => other,
    }
    .to_string();
    set(d, "SalesOrderStatus", json!(order_status));
    for (confirmed, requested) in [
        ("ConfirmedShippingDate", "RequestedShippingDate"),
        ("ConfirmedReceiptDate", "RequestedReceiptDate"),
    ] {
        if s(d, confirmed) == EMPTY_DATE {
            let v = match s(d, requested) {
                EMPTY_DATE | "" => today_noon(),
                r => r.to_string(),
            };
            set(d, confirmed, json!(v));
        }
    }
    h.recversion = new_version();
    store.put(ORDERS, hk, h);
    Ok(())
}

fn next_number(store: &mut FnoStore, company: &str, sequence: &str) -> u64 {
    let c = store
        .numseq
        .entry((company.to_lowercase(), sequence.to_string()))
        .or_insert(0);
    *c += 1;
    *c
}

fn insert(store: &mut FnoStore, set_name: &str, row: Value) -> Result<(), String> {
    crate::fno::direct_insert(store, entity(set_name), &row)
}

/// Post an invoice of the order: invoice header and lines, order Invoiced or PartiallyInvoiced (all or nothing).
/// `quantities`: (line number, quantity) to invoice; `None` invoices what is left of every line. Returns the
/// invoice number.
pub(crate) fn invoice_order(
    store: &mut FnoStore,
    company: &str,
    number: &str,
    quantities: Option<&[(i64, f64)]>,
) -> Result<String, String> {
    store.begin();
    let r = post_invoice(store, company, number, quantities);
    if r.is_ok() {
        store.commit();
    } else {
        store.rollback();
    }
    r
}

/// What earlier invoices of an order took from one order line.
#[derive(Default, Clone, Copy)]
struct Invoiced {
    qty: f64,
    amount: f64,
    tax: f64,
    discount: f64,
}

/// Per line number, what the order's earlier invoices took; and whether there were any.
fn invoiced_so_far(store: &FnoStore, company: &str, number: &str) -> (std::collections::HashMap<i64, Invoiced>, bool) {
    let numbers: Vec<String> = store
        .rows(INVOICES)
        .filter(|(_, r)| {
            s(&r.data, "dataAreaId").eq_ignore_ascii_case(company)
                && s(&r.data, "SalesOrderNumber").eq_ignore_ascii_case(number)
        })
        .map(|(_, r)| s(&r.data, "InvoiceNumber").to_lowercase())
        .collect();
    let mut out: std::collections::HashMap<i64, Invoiced> = std::collections::HashMap::new();
    for (_, r) in store.rows(INVOICE_LINES) {
        let d = &r.data;
        if !s(d, "dataAreaId").eq_ignore_ascii_case(company) || !numbers.contains(&s(d, "InvoiceNumber").to_lowercase())
        {
            continue;
        }
        let seq = d.get("LineCreationSequenceNumber").and_then(Value::as_i64).unwrap_or(0);
        let e = out.entry(seq).or_default();
        e.qty += n(d, "InvoicedQuantity");
        e.amount += n(d, "LineAmount");
        e.tax += n(d, "LineTotalTaxAmount");
        e.discount += n(d, "LineTotalDiscountAmount");
    }
    (out, !numbers.is_empty())
}

/// One order line's share of an invoice.
struct Share {
    qty: f64,
    amount: f64,
    tax: f64,
    discount: f64,
    charges: f64,
}

/// The invoice that completes a line takes what is left of its amounts (so the invoices add up to the order)
/// and its charges.
fn line_share(l: &Row, qty: f64, before: Invoiced) -> Share {
    let ordered = n(l, "OrderedSalesQuantity");
    if (before.qty + qty - ordered).abs() < 1e-9 {
        return Share {
            qty,
            amount: round2(n(l, "LineAmount") - before.amount),
            tax: round2(n(l, "TotalTaxAmount") - before.tax),
            discount: round2(n(l, "TotalDiscountAmount") - before.discount),
            charges: n(l, "TotalChargesAmount"),
        };
    }
    let price_qty = match n(l, "SalesPriceQuantity") {
        q if q > 0.0 => q,
        _ => 1.0,
    };
    let unit = n(l, "SalesPrice") / price_qty - n(l, "LineDiscountAmount");
    let amount = round2(unit * qty * (1.0 - n(l, "LineDiscountPercentage") / 100.0));
    Share {
        qty,
        amount,
        tax: round2(amount * TAX_RATE),
        discount: round2(n(l, "LineDiscountAmount") * qty),
        charges: 0.0,
    }
}

/// The quantity of each order line this invoice takes, checked against what is left to invoice.
fn quantities_to_invoice(
    lines: &[Row],
    before: &std::collections::HashMap<i64, Invoiced>,
    quantities: Option<&[(i64, f64)]>,
    number: &str,
) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for l in lines {
        let seq = l.get("LineCreationSequenceNumber").and_then(Value::as_i64).unwrap_or(0);
        let left = n(l, "OrderedSalesQuantity") - before.get(&seq).map_or(0.0, |b| b.qty);
        let want = match quantities {
            None => left,
            Some(q) => q.iter().find(|(s, _)| *s == seq).map_or(0.0, |(_, q)| *q),
        };
        if want < 0.0 || want > left + 1e-9 {
            return Err(format!(
                "p2c-sandbox: sales order '{number}' line {seq} has {left} left to invoice, not {want}"
            ));
        }
        out.push(want);
    }
    if let Some(q) = quantities
        && let Some((seq, _)) = q.iter().find(|(seq, _)| {
            !lines
                .iter()
                .any(|l| l.get("LineCreationSequenceNumber").and_then(Value::as_i64) == Some(*seq))
        })
    {
        return Err(format!("p2c-sandbox: sales order '{number}' has no line {seq}"));
    }
    Ok(out)
}

fn post_invoice(
    store: &mut FnoStore,
    company: &str,
    number: &str,
    quantities: Option<&[(i64, f64)]>,
) -> Result<String, String> {
    let hk = key2(company, number);
    let Some(h) = store.get(ORDERS, &hk) else {
        return Err(format!(
            "p2c-sandbox: F&O has no sales order '{number}' in company '{company}' (CDSSalesOrderHeaders)"
        ));
    };
    if s(&h.data, "SalesOrderProcessingStatus") == "Invoiced" {
        return Err(format!(
            "p2c-sandbox: sales order '{number}' in '{company}' is already invoiced"
        ));
    }
    let (before, earlier) = invoiced_so_far(store, company, number);
    let order_lines: Vec<Row> = order_line_keys(store, company, number)
        .into_iter()
        .filter_map(|k| store.get(ORDER_LINES, &k).map(|r| r.data.clone()))
        .collect();
    let qtys = quantities_to_invoice(&order_lines, &before, quantities, number)?;
    if qtys.iter().all(|q| *q <= 0.0) {
        return Err(format!("p2c-sandbox: nothing to invoice on sales order '{number}'"));
    }
    let complete = order_lines.iter().zip(&qtys).all(|(l, q)| {
        let seq = l.get("LineCreationSequenceNumber").and_then(Value::as_i64).unwrap_or(0);
        let done = before.get(&seq).map_or(0.0, |b| b.qty) + q;
        (done - n(l, "OrderedSalesQuantity")).abs() < 1e-9
    });
    totals(
        store,
        company,
        number,
        if complete { "Invoiced" } else { "PartiallyInvoiced" },
    )?;
    let Some(h) = store.get(ORDERS, &hk).map(|r| r.data.clone()) else {
        return Err(format!("p2c-sandbox: sales order '{number}' vanished"));
    };
    let company = s(&h, "dataAreaId").to_string();
    // Skip numbers a test already used for invoices it seeded itself.
    let invoice_number = loop {
        let n = format!("CIV-{:06}", next_number(store, &company, "CustInvoiceJour"));
        let taken = store.rows(INVOICES).any(|(_, r)| {
            s(&r.data, "dataAreaId").eq_ignore_ascii_case(&company)
                && s(&r.data, "InvoiceNumber").eq_ignore_ascii_case(&n)
        });
        if !taken {
            break n;
        }
    };
    let voucher = format!("ARIN-{:06}", next_number(store, &company, "LedgerVoucher"));
    let date = today_noon();
    let customer_account = match s(&h, "InvoiceCustomerAccountNumber") {
        "" => s(&h, "OrderingCustomerAccountNumber").to_string(),
        c => c.to_string(),
    };
    let cust = customer(store, &company, &customer_account)
        .cloned()
        .unwrap_or_default();
    // The order's invoice address when it has one, else the customer's primary address.
    let addr = |order_field: &str, customer_field: &str| -> String {
        match s(&h, order_field) {
            "" => s(&cust, customer_field).to_string(),
            v => v.to_string(),
        }
    };
    // The lines as recalculated by the totals batch, with this invoice's share of each.
    let lines: Vec<(Row, Share)> = order_line_keys(store, &company, number)
        .into_iter()
        .filter_map(|k| store.get(ORDER_LINES, &k).map(|r| r.data.clone()))
        .zip(&qtys)
        .filter(|(_, q)| **q > 0.0)
        .map(|(l, q)| {
            let seq = l.get("LineCreationSequenceNumber").and_then(Value::as_i64).unwrap_or(0);
            let share = line_share(&l, *q, before.get(&seq).copied().unwrap_or_default());
            (l, share)
        })
        .collect();
    let (mut amount, mut tax, mut charges) = (0.0, 0.0, 0.0);
    for (_, share) in &lines {
        amount += share.amount;
        tax += share.tax;
        charges += share.charges;
    }
    // The order's end discount and header tax go with its first invoice.
    let (end_discount, header_tax) = if earlier {
        (0.0, 0.0)
    } else {
        (n(&h, "TotalDiscountAmount"), n(&h, "OrderHeaderTaxAmount"))
    };
    let (tax, charges) = (round2(tax + header_tax), round2(charges));
    insert(
        store,
        INVOICES,
        json!({
            "dataAreaId": company, "InvoiceNumber": invoice_number, "InvoiceDate": date, "LedgerVoucher": voucher,
            "SalesOrderNumber": s(&h, "SalesOrderNumber"), "InvoiceCustomerAccountNumber": customer_account,
            "CurrencyCode": s(&h, "CurrencyCode"), "CustomersOrderReference": s(&h, "CustomersOrderReference"),
            "PaymentTermsName": s(&h, "PaymentTermsName"), "DeliveryModeCode": s(&h, "DeliveryModeCode"),
            "DeliveryTermsCode": s(&h, "DeliveryTermsCode"), "SalesOrderOriginType": s(&h, "SalesOrderOriginType"),
            "ContactPersonId": s(&h, "ContactPersonId"),
            "SalesOrderResponsiblePersonnelNumber": s(&h, "OrderResponsiblePersonnelNumber"),
            "InvoiceAddressStreet": addr("InvoiceAddressStreet", "AddressStreet"),
            "InvoiceAddressStreetNumber": s(&h, "InvoiceAddressStreetNumber"),
            "InvoiceAddressCity": addr("InvoiceAddressCity", "AddressCity"),
            "InvoiceAddressZipCode": addr("InvoiceAddressZipCode", "AddressZipCode"),
            "InvoiceAddressState": addr("InvoiceAddressStateId", "AddressState"),
            "InvoiceAddressCountryRegionId": addr("InvoiceAddressCountryRegionId", "AddressCountryRegionId"),
            "InvoiceAddressCountryRegionISOCode":
                addr("InvoiceAddressCountryRegionISOCode", "AddressCountryRegionISOCode"),
            "TotalInvoiceAmount": round2(amount - end_discount + charges + tax),
            "TotalTaxAmount": tax, "TotalChargeAmount": charges, "TotalDiscountAmount": end_discount,
            "TotalDiscountCustomerGroupCode": 0, "InvoiceHeaderTaxAmount": header_tax,
        }),
    )?;
    for (l, share) in &lines {
        let p = product(store, &company, s(l, "ProductNumber"))
            .cloned()
            .unwrap_or_default();
        let name = match s(l, "ProductName") {
            "" => s(&p, "ProductName"),
            v => v,
        };
        insert(
            store,
            INVOICE_LINES,
            json!({
                "dataAreaId": company, "InvoiceNumber": invoice_number, "InvoiceDate": date,
                "LedgerVoucher": voucher,
                "LineCreationSequenceNumber": l.get("LineCreationSequenceNumber").cloned().unwrap_or(json!(0)),
                "ProductNumber": s(l, "ProductNumber"), "ProductName": name,
                "ProductDescription": s(&p, "ProductDescription"), "SalesUnitSymbol": s(l, "SalesUnitSymbol"),
                "InvoicedQuantity": share.qty, "SalesPrice": n(l, "SalesPrice"),
                "LineAmount": share.amount, "LineTotalTaxAmount": share.tax,
                "LineTotalDiscountAmount": share.discount,
                "LineTotalChargeAmount": share.charges, "CurrencyCode": s(l, "CurrencyCode"),
                "ConfirmedShippingDate": match s(&h, "ConfirmedShippingDate") { "" => date.as_str(), d => d },
            }),
        )?;
    }
    if !complete {
        mark_invoiced_lines(store, &company, number, &before, &order_lines, &qtys);
    }
    Ok(invoice_number)
}

/// After a partial invoice: the lines it completed are Invoiced, the others keep their status.
fn mark_invoiced_lines(
    store: &mut FnoStore,
    company: &str,
    number: &str,
    before: &std::collections::HashMap<i64, Invoiced>,
    order_lines: &[Row],
    qtys: &[f64],
) {
    let keys = order_line_keys(store, company, number);
    for ((k, l), q) in keys.into_iter().zip(order_lines).zip(qtys) {
        let seq = l.get("LineCreationSequenceNumber").and_then(Value::as_i64).unwrap_or(0);
        let done = before.get(&seq).map_or(0.0, |b| b.qty) + q;
        let line_status = if (done - n(l, "OrderedSalesQuantity")).abs() < 1e-9 {
            "Invoiced"
        } else {
            "Backorder"
        };
        if let Some(mut r) = store.get(ORDER_LINES, &k).cloned() {
            set(&mut r.data, "SalesOrderLineStatus", json!(line_status));
            store.put(ORDER_LINES, k, r);
        }
    }
}

/// An order entered in F&O (it gets the F&O number sequence): header for the customer, one line per
/// (product, quantity) with the product's price and unit. Same validation as an OData create.
pub(crate) fn create_order(
    state: &crate::State,
    store: &mut FnoStore,
    company: &str,
    customer_account: &str,
    lines: &[(&str, f64)],
) -> Result<String, String> {
    let text = |r: crate::http::Resp| String::from_utf8_lossy(&r.body).into_owned();
    let header = entity(ORDERS);
    let vals = crate::fno::direct_vals(
        header,
        &json!({"dataAreaId": company, "OrderingCustomerAccountNumber": customer_account}),
    )?;
    store.begin();
    let key = match crate::fno::create_row(state, store, header, vals) {
        Ok(k) => k,
        Err(r) => {
            store.rollback();
            return Err(format!("p2c-sandbox: the F&O order was refused: {}", text(r)));
        }
    };
    let number = store
        .get(ORDERS, &key)
        .map(|r| s(&r.data, "SalesOrderNumber").to_string())
        .unwrap_or_default();
    let line_entity = entity(ORDER_LINES);
    for (i, (product_number, qty)) in lines.iter().enumerate() {
        let vals = crate::fno::direct_vals(
            line_entity,
            &json!({"dataAreaId": company, "SalesOrderNumber": number, "LineCreationSequenceNumber": i + 1,
                    "ProductNumber": product_number, "OrderedSalesQuantity": qty}),
        )?;
        if let Err(r) = crate::fno::create_row(state, store, line_entity, vals) {
            store.rollback();
            return Err(format!(
                "p2c-sandbox: the F&O order line {} was refused: {}",
                i + 1,
                text(r)
            ));
        }
    }
    store.commit();
    Ok(number)
}
