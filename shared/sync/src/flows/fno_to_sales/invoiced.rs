//! Invoiced orders. The spec says both that the P2C solution sets an order Invoiced when its invoice arrives
//! (spec/templates.md 4, 6) and that the orders template keeps the order Active "so later updates from F&O can
//! still be written" (5.5c). p2c does both:
//! - invoices-to-sales sets the order Invoiced (statecode 4, statuscode 100003, P2C processing status Invoiced)
//!   once an invoice of it is in Sales with all its lines and F&O has invoiced the order in full (its processing
//!   status is Invoiced, read from F&O for the orders of the page). After a partial invoice the order stays
//!   Active, its processing status Partially Invoiced (as orders-to-sales mirrors it), and every later invoice
//!   links to it all the same.
//! - orders-to-sales writes F&O's later changes to an order it finds Invoiced: one PATCH reopens it with the
//!   template's state (Active) and the fields that differ, its lines follow, and a last PATCH after them sets it
//!   Invoiced again while F&O's processing status is still Invoiced ([`super::write`]). When nothing but the
//!   state differs the change is already in Sales: an echo, and the order stays Invoiced.
//!
//! Other closed records (an order a user fulfilled or cancelled, a paid invoice) stay read-only: p2c skips them
//! as "closed in Sales".

use std::collections::HashMap;

use p2c_dynamics::{BatchOp, Record};
use p2c_mapping::LookupTarget;
use serde_json::{Value, json};

use super::{
    resolve::Resolver,
    spec::Spec,
    unit::{Outcome, Work, text},
};
use crate::{
    deps::Deps,
    error::SyncError,
    pipeline::sink::sales::{self, Written},
};

/// The order number an invoice links to.
pub(super) const ORDER_OF_INVOICE: &str = "salesorderid.ordernumber";
/// Sales order `statecode` Invoiced, and its status reason (spec/protocols.md A.10).
const INVOICED: i64 = 4;
const INVOICED_STATUS: i64 = 100_003;
/// The P2C processing status Invoiced (`msdynce_processingstatus`, spec/templates.md 4).
const PROCESSING_STATUS: &str = "msdynce_processingstatus";
const PROCESSING_INVOICED: i64 = 647_390_003;
/// F&O's processing status of an order fully invoiced.
const FNO_INVOICED: &str = "Invoiced";

/// The state an order is set back to after F&O's changes were written to it.
pub(super) fn invoiced_state() -> Record {
    let mut r = Record::new();
    r.insert("statecode".into(), json!(INVOICED));
    r.insert("statuscode".into(), json!(INVOICED_STATUS));
    r
}

/// An order Invoiced in Sales, which orders-to-sales reopens to write F&O's changes.
pub(super) fn reopenable(spec: &Spec, current: &Record) -> bool {
    spec.parent_table.set == "salesorders" && current.get("statecode").and_then(Value::as_i64) == Some(INVOICED)
}

/// F&O's processing status of the order, as mapped, is Invoiced.
pub(super) fn invoiced_in_fno(w: &Work) -> bool {
    let mapped = w.parent.mapped.as_ref().and_then(|m| m.get(PROCESSING_STATUS));
    mapped.and_then(Value::as_i64) == Some(PROCESSING_INVOICED)
}

/// Invoices: once an invoice and its lines are in Sales, its order becomes Invoiced if F&O has invoiced it in full
/// (and Sales does not show it Invoiced already).
pub(super) async fn invoice_orders(
    deps: &Deps,
    spec: &Spec,
    company: &str,
    works: &mut [Work],
    resolver: &mut Resolver,
) -> Result<(), SyncError> {
    let Some(targets) = p2c_mapping::lookup_targets(ORDER_OF_INVOICE).map(|(_, t)| t) else {
        return Ok(());
    };
    let orders: Vec<String> = works.iter().filter_map(order_to_invoice).collect();
    if orders.is_empty() {
        return Ok(());
    }
    let needs: Vec<(Vec<LookupTarget>, String)> = orders.iter().map(|o| (targets.clone(), o.clone())).collect();
    resolver.prepare(deps, &needs).await?;
    let invoiced = fully_invoiced_in_fno(deps, company, orders).await?;
    let patches = OrderPatches::plan(deps, works, resolver, &invoiced);
    let results = sales::send(deps, &patches.ops).await;
    patches.settle(spec, works, resolver, &results);
    Ok(())
}

/// The order of an invoice that is done (written with all its lines) and touched in this run.
fn order_to_invoice(w: &Work) -> Option<String> {
    let done = w.touched && w.parent.outcome.ok() && !w.child_trouble;
    w.parent.mapped_text(ORDER_OF_INVOICE).filter(|_| done)
}

/// Of these order numbers, the (lowercase) ones F&O shows fully invoiced, read in one go from the orders entity
/// the orders flow reads.
async fn fully_invoiced_in_fno(
    deps: &Deps,
    company: &str,
    mut orders: Vec<String>,
) -> Result<std::collections::HashSet<String>, SyncError> {
    let t = p2c_mapping::order_headers_to_sales();
    orders.sort_by_key(|o| o.to_lowercase());
    orders.dedup_by_key(|o| o.to_lowercase());
    let select = vec![t.source_key.clone(), "SalesOrderProcessingStatus".to_string()];
    let rows = deps
        .fno
        .find_by_keys(&t.source_entity, company, &t.source_key, &orders, &select)
        .await?;
    Ok(rows
        .iter()
        .filter(|r| r.get("SalesOrderProcessingStatus").and_then(Value::as_str) == Some(FNO_INVOICED))
        .filter_map(|r| text(r, &t.source_key))
        .map(|o| o.to_lowercase())
        .collect())
}

/// One PATCH per order, however many of its invoices are in the page.
struct OrderPatches {
    ops: Vec<BatchOp>,
    /// Lowercase order id → its op.
    op_of: HashMap<String, usize>,
    /// (unit, order number, lowercase order id).
    whose: Vec<(usize, String, String)>,
}

impl OrderPatches {
    fn plan(
        deps: &Deps,
        works: &[Work],
        resolver: &Resolver,
        invoiced: &std::collections::HashSet<String>,
    ) -> OrderPatches {
        let mut p = OrderPatches {
            ops: Vec::new(),
            op_of: HashMap::new(),
            whose: Vec::new(),
        };
        for (i, w) in works.iter().enumerate() {
            let Some(order) = order_to_invoice(w) else { continue };
            if !invoiced.contains(&order.to_lowercase()) {
                continue; // partly invoiced: the order stays open
            }
            let Some(found) = resolver.found("salesorders", "ordernumber", &order) else {
                continue;
            };
            if found.row.get("statecode").and_then(Value::as_i64) == Some(INVOICED) {
                continue;
            }
            let id = found.id.to_lowercase();
            if !p.op_of.contains_key(&id) {
                p.op_of.insert(id.clone(), p.ops.len());
                let mut body = invoiced_state();
                // The P2C processing status follows.
                body.insert(PROCESSING_STATUS.into(), json!(PROCESSING_INVOICED));
                p.ops.push(BatchOp {
                    method: p2c_dynamics::WriteMethod::Patch,
                    url: format!("{}({})", deps.sales.set_url("salesorders"), found.id),
                    body: Some(Value::Object(body)),
                    headers: vec![("If-Match", "*".into())],
                });
            }
            p.whose.push((i, order, id));
        }
        p
    }

    /// An order set Invoiced is remembered as such; an invoice whose order could not be set fails (and is
    /// retried) until it is: it is in Sales but not done.
    fn settle(self, spec: &Spec, works: &mut [Work], resolver: &mut Resolver, results: &[Written]) {
        for (i, order, id) in self.whose {
            match self.op_of.get(&id).and_then(|&k| results.get(k)) {
                Some(Written::Ok(_)) => {
                    if let Some(f) = resolver.found_mut("salesorders", "ordernumber", &order) {
                        f.row.extend(invoiced_state());
                    }
                }
                Some(Written::Failed { reason, transient, .. }) => {
                    let why = format!(
                        "{} {}: written, but its sales order {order} could not be set to Invoiced: {reason}",
                        spec.parent.record_noun(),
                        works[i].key
                    );
                    works[i].parent.outcome = Outcome::fail(why.clone(), *transient);
                    works[i].post_trouble = Some((why, *transient));
                }
                None => {}
            }
        }
    }
}
