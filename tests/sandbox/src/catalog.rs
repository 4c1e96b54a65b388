//! The Sales product catalog's rules on the Web API: the product lifecycle and what a document line needs.
//!
//! **Products are created in Draft** (statecode 2, statuscode 0) unless the organization's
//! `createproductswithoutparentinactivestate` ("Create products without parent in active state", Sales settings) is
//! on: it is off (0) for a fresh installation of Dynamics 365 Sales, on only for organizations upgraded from before
//! the product catalog. Publishing an individual product is `SetState` to Active, i.e. a PATCH of `statecode` 0 and
//! `statuscode` 1; `PublishProductHierarchy` is for product families only. Source: Microsoft Learn, "Publish,
//! revise, revert, retire, and activate products (product lifecycle)"
//! (<https://learn.microsoft.com/dynamics365/sales/developer/publish-revise-revert-retire-activate-products>).
//! The Rust API (`Sandbox::sales_insert`) seeds a product Active unless the row says otherwise: it stands for
//! products that are already in use.
//!
//! **State changes** of a product follow the documented transitions (Draft → Active by publish, Active → Under
//! Revision → Active, Active or Under Revision → Retired, Retired → Active only for a product that was active); the
//! refusals carry the platform's codes and texts (PAD `reference/web-service-error-codes`:
//! ProductFromDraftToDraftState `0x8004F981`, ProductFromActiveToActiveState `0x8004F982`,
//! ProductFromActiveToDraftState `0x8004F912`, ProductFromDraftToRetiredState `0x8004F978`,
//! ProductFromDraftToRevisedState `0x8004F913`, ProductFromRetiredToDraftState `0x8004F979`,
//! ProductFromRetiredToRetiredState `0x8004F980`).
//!
//! **A line** (`quotedetail`, `salesorderdetail`, `invoicedetail`) with an existing product (not write-in) needs:
//! * an active product (Active or Under Revision): spec/templates.md 5.2 "Draft products must be activated before
//!   they can be used on quotes or orders"; the platform's code for it is not in the error list, so the sandbox
//!   answers 400 `0x80040203` (InvalidArgument) with its own text naming the product and its state;
//! * a unit (`uomid`) of the product's unit group (`defaultuomscheduleid`): 400 ProductInvalidUnit `0x80043b14`
//!   "The specified unit is not valid for this product." (error list);
//! * unless its price is overridden (`ispriceoverridden`), a price list item of that product and unit in the
//!   document's price list, which system pricing reads the price from: 400 `0x80040203` with the sandbox's text
//!   (no documented code).
//!
//! These rules run on the Web API's writes (single, `$batch`, CreateMultiple/UpsertMultiple), on a create and on an
//! update that sets the product, the unit, the price override or the header.

use serde_json::{Value, json};

use crate::dataverse::err;
use crate::dv_schema::Table;
use crate::http::Resp;
use crate::sales::doc_of_line;
use crate::store::{DvStore, Row};

/// Product states (DCE `product.md`): 0 Active, 1 Retired, 2 Draft, 3 Under Revision.
const ACTIVE: i64 = 0;
const RETIRED: i64 = 1;
const DRAFT: i64 = 2;
const UNDER_REVISION: i64 = 3;

/// The organization column of "Create products without parent in active state".
pub(crate) const CREATE_ACTIVE: &str = "createproductswithoutparentinactivestate";

/// Whether the organization creates products Active (the setting; off when the row does not say).
fn creates_active(store: &DvStore) -> bool {
    store
        .table("organizations")
        .and_then(|t| t.rows().values().next())
        .and_then(|r| r.get(CREATE_ACTIVE))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The state a product created through the Web API starts in: Draft unless the organization creates them Active.
pub(crate) fn create_defaults(store: &DvStore, t: &Table, vals: &mut Row) {
    if t.set == "products" && !creates_active(store) {
        vals.insert("statecode".into(), json!(DRAFT));
        vals.insert("statuscode".into(), json!(0));
    }
}

fn state_of(row: &Row) -> i64 {
    row.get("statecode").and_then(Value::as_i64).unwrap_or(ACTIVE)
}

fn text<'a>(row: &'a Row, col: &str) -> Option<&'a str> {
    row.get(col).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A value after the write: from `vals`, else as it was.
fn after<'a>(existing: Option<&'a Row>, vals: &'a Row, col: &str) -> Option<&'a Value> {
    match vals.get(col) {
        Some(v) => Some(v).filter(|v| !v.is_null()),
        None => existing.and_then(|e| e.get(col)).filter(|v| !v.is_null()),
    }
}

/// The catalog's rules for a Web API write of a row of `t` (`existing` = None: a create).
pub(crate) fn check_write(store: &DvStore, t: &Table, existing: Option<&Row>, vals: &Row) -> Result<(), Resp> {
    if t.set == "products"
        && let (Some(ex), Some(to)) = (existing, vals.get("statecode").and_then(Value::as_i64))
    {
        return check_transition(state_of(ex), to);
    }
    if doc_of_line(t.set).is_some() {
        return check_line(store, t, existing, vals);
    }
    Ok(())
}

/// A product's state change `from` → `to`.
fn check_transition(from: i64, to: i64) -> Result<(), Resp> {
    let refuse = |code: &str, msg: &str| Err(err(400, code, msg));
    match (from, to) {
        (DRAFT, DRAFT) => refuse("0x8004F981", "Product is already in Draft State."),
        (ACTIVE, ACTIVE) => refuse("0x8004F982", "Product is already in Active State."),
        (RETIRED, RETIRED) => refuse("0x8004F980", "Product is already in Retired State."),
        (ACTIVE | UNDER_REVISION, DRAFT) => {
            refuse("0x8004F912", "You can't set a published product to the draft state.")
        }
        (DRAFT, RETIRED) => refuse(
            "0x8004F978",
            "You can't retire this product because it is in draft state. A product should be in Active/ Under \
             Revision state for retiring.",
        ),
        (DRAFT | RETIRED, UNDER_REVISION) => refuse("0x8004F913", "You can't revise a draft or a retired product."),
        (RETIRED, DRAFT) => refuse(
            "0x8004F979",
            "It is not possible to move product from Retired to Draft State.",
        ),
        _ => Ok(()),
    }
}

fn invalid(msg: String) -> Resp {
    err(400, "0x80040203", msg)
}

/// A line's product, unit and price list item (see the module docs).
fn check_line(store: &DvStore, t: &Table, existing: Option<&Row>, vals: &Row) -> Result<(), Resp> {
    let Some(doc) = doc_of_line(t.set) else { return Ok(()) };
    let header_col = format!("_{}_value", doc.lookup);
    let touched = [
        "_productid_value",
        "_uomid_value",
        "ispriceoverridden",
        "isproductoverridden",
        &header_col,
    ];
    if existing.is_some() && !touched.iter().any(|c| vals.contains_key(*c)) {
        return Ok(());
    }
    let write_in = after(existing, vals, "isproductoverridden").and_then(Value::as_bool) == Some(true);
    let Some(pid) = after(existing, vals, "_productid_value").and_then(Value::as_str) else {
        return Ok(());
    };
    if write_in {
        return Ok(());
    }
    let Some(product) = store.get("products", pid) else {
        return Err(err(400, "0x80043b24", "The product does not exist."));
    };
    let name = text(product, "productnumber")
        .or_else(|| text(product, "name"))
        .unwrap_or(pid);
    let state = state_of(product);
    if state != ACTIVE && state != UNDER_REVISION {
        let label = if state == DRAFT { "Draft" } else { "Retired" };
        return Err(invalid(format!(
            "The product {name} is in {label} state and cannot be added to a {}: publish (activate) it first.",
            t.logical
        )));
    }
    let uom = after(existing, vals, "_uomid_value").and_then(Value::as_str);
    let group = text(product, "_defaultuomscheduleid_value");
    let in_group = uom
        .and_then(|u| store.get("uoms", u))
        .and_then(|u| text(u, "_uomscheduleid_value"))
        .is_some_and(|g| group.is_some_and(|pg| pg.eq_ignore_ascii_case(g)));
    if !in_group {
        return Err(err(
            400,
            "0x80043b14",
            "The specified unit is not valid for this product.",
        ));
    }
    let overridden = after(existing, vals, "ispriceoverridden").and_then(Value::as_bool) == Some(true);
    if overridden {
        return Ok(());
    }
    let header = after(existing, vals, &header_col)
        .and_then(Value::as_str)
        .and_then(|h| store.get(doc.header, h));
    let list = header.and_then(|h| text(h, "_pricelevelid_value"));
    let (Some(list), Some(uom)) = (list, uom) else {
        return Err(invalid(format!(
            "The {} for product {name} has no price list to price it from: set the price list of its header, or \
             set ispriceoverridden and a priceperunit.",
            t.logical
        )));
    };
    if has_price_list_item(store, list, pid, uom) {
        return Ok(());
    }
    Err(invalid(format!(
        "The product {name} with this unit is not in the price list of the {}: add a price list item for it, or \
         set ispriceoverridden and a priceperunit.",
        doc.header.trim_end_matches('s')
    )))
}

fn has_price_list_item(store: &DvStore, list: &str, product: &str, uom: &str) -> bool {
    store.table("productpricelevels").is_some_and(|t| {
        t.rows().values().any(|r| {
            let is = |c: &str, v: &str| text(r, c).is_some_and(|x| x.eq_ignore_ascii_case(v));
            is("_pricelevelid_value", list) && is("_productid_value", product) && is("_uomid_value", uom)
        })
    })
}
