//! `p2c backfill <flow>` interrupted half-way (as Ctrl-C between pages leaves it) resumes from the last
//! committed page for every flow, and every record ends in the target exactly once.

mod common;

use std::collections::HashSet;

use common::{p2c, p2c_raw, p2c_with};
use p2c_e2e::Env;
use serde_json::{Value, json};

/// Backfills `flow` in pages of `page`, stopped once `stop_after` records are done, then again to the end.
/// Asserts the first stopped with the interruption message and the second resumed; returns the second's report.
fn interrupted_then_resumed(env: &Env, flow: &str, page: &str, stop_after: &str) -> Value {
    let out = p2c_raw(
        env,
        &["backfill", flow],
        &[("P2C_PAGE_SIZE", page), ("P2C_STOP_AFTER", stop_after)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{flow}: {stderr}");
    assert!(stderr.contains("interrupted after"), "{flow}: {stderr}");
    let resume = format!("{flow}.resume");
    let (code, v) = p2c_with(env, &["backfill", flow], &[("P2C_PAGE_SIZE", page)]);
    assert_eq!(code, 0, "{flow}: {v}");
    let r = v["runs"][0].clone();
    assert_eq!(r["resumed"], true, "{flow}: {r}");
    assert_eq!(r["failed"], 0, "{flow}: {r}");
    let rt = tokio::runtime::Handle::current();
    let left = tokio::task::block_in_place(|| rt.block_on(env.deps.state.watermark(&resume, "usmf")));
    assert!(
        left.unwrap().is_none(),
        "{flow}: the resume point is cleared at the end"
    );
    r
}

/// How many rows there are, asserting no two share a `field` value.
fn once(rows: &[Value], field: &str, what: &str) -> usize {
    let keys: Vec<String> = rows.iter().map(|r| r[field].to_string().to_lowercase()).collect();
    let distinct: HashSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "{what}: a {field} is there twice: {keys:?}");
    keys.len()
}

fn run_ok(env: &Env, flow: &str) {
    let (code, v) = p2c(env, &["run", flow]);
    assert_eq!((code, &v["runs"][0]["failed"]), (0, &json!(0)), "{flow}: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_backfill_resumes() {
    let env = Env::start(3).await;
    run_ok(&env, "accounts-to-fno");
    let bu = env.sb.business_unit_id("usmf").unwrap();
    for n in 0..20 {
        env.sb.sales_insert(
            "contacts",
            json!({"firstname": "Backfill", "lastname": format!("Contact {n}"),
                   "msdynce_contactnumber": format!("CON-B-{n:03}"), "msdynce_isactivecustomer": true,
                   "_owningbusinessunit_value": bu}),
        );
    }
    let r = interrupted_then_resumed(&env, "contacts-to-fno", "5", "10");
    assert!(
        r["read"].as_u64().unwrap() < 26,
        "the second run starts after the committed pages: {r}"
    );
    let customers: Vec<Value> = env
        .customers("usmf")
        .into_iter()
        .filter(|c| c["CustomerAccount"].as_str().unwrap().starts_with("CON-B-"))
        .collect();
    assert_eq!(once(&customers, "CustomerAccount", "contact customers"), 20);
    let persons = env.sb.fno_rows("CDSContactPersons");
    assert_eq!(once(&persons, "ContactPersonPartyNumber", "contact persons"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_backfill_resumes() {
    let env = Env::start(1).await;
    for n in 6..=25 {
        env.sb.fno_insert(
            "SellableReleasedProducts",
            json!({"dataAreaId": "usmf", "ProductNumber": format!("D{n:04}"), "ProductName": format!("Speaker {n}"),
                   "ProductType": "Item", "SalesUnitSymbol": "ea", "InventoryUnitSymbol": "ea",
                   "SalesPrice": 100.0 + n as f64, "UnitCost": 50.0, "CurrencyCode": "USD", "IsSalesStopped": "No"}),
        );
    }
    let r = interrupted_then_resumed(&env, "products-to-sales", "4", "8");
    assert!(
        r["read"].as_u64().unwrap() <= 17,
        "it continues after the committed pages: {r}"
    );
    let products = env.sb.sales_rows("products");
    assert_eq!(once(&products, "productnumber", "products"), 25);
    let items = env.sb.sales_rows("productpricelevels");
    assert_eq!(once(&items, "_productid_value", "price list items"), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_backfill_resumes() {
    let env = Env::start(3).await;
    run_ok(&env, "accounts-to-fno");
    run_ok(&env, "products-to-sales");
    let lines = env.sb.seed_quotes(12, 2);
    let r = interrupted_then_resumed(&env, "quotes-to-fno", "5", "5");
    assert!(r["written"].as_u64().unwrap() < (12 + lines) as u64, "{r}");
    let headers = env.sb.fno_rows("CDSSalesQuotationHeaders");
    assert_eq!(once(&headers, "SalesQuotationNumber", "quotes"), 12);
    let rows = env.sb.fno_rows("CDSSalesQuotationLines");
    let keys: Vec<Value> = rows
        .iter()
        .map(|l| {
            json!(format!(
                "{}/{}",
                l["SalesQuotationNumber"], l["LineCreationSequenceNumber"]
            ))
        })
        .collect();
    let keyed: Vec<Value> = keys.into_iter().map(|k| json!({ "k": k })).collect();
    assert_eq!(once(&keyed, "k", "quote lines"), lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_to_fno_backfill_resumes() {
    let env = Env::start(2).await;
    run_ok(&env, "accounts-to-fno");
    run_ok(&env, "products-to-sales");
    for _ in 0..6 {
        env.sb.seed_story();
    }
    let r = interrupted_then_resumed(&env, "orders-to-fno", "2", "2");
    assert!(r["written"].as_u64().unwrap() < 18, "{r}");
    let headers = env.sb.fno_rows("CDSSalesOrderHeaders");
    assert_eq!(once(&headers, "SalesOrderNumber", "orders"), 6);
    assert_eq!(env.sb.fno_rows("CDSSalesOrderLines").len(), 12);
}

/// F&O orders of the first synced customer, confirmed: `n` of them, one line each.
fn fno_orders(env: &Env, n: usize) -> Vec<String> {
    let customer = env.customers("usmf")[0]["CustomerAccount"]
        .as_str()
        .unwrap()
        .to_string();
    (0..n)
        .map(|i| {
            let so = env.sb.fno_create_order("usmf", &customer, &[("D0001", 1.0 + i as f64)]);
            env.sb.fno_confirm_order("usmf", &so);
            so
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_to_sales_backfill_resumes() {
    let env = Env::start(1).await;
    run_ok(&env, "accounts-to-fno");
    run_ok(&env, "products-to-sales");
    fno_orders(&env, 7);
    let r = interrupted_then_resumed(&env, "orders-to-sales", "2", "4");
    assert!(r["read"].as_u64().unwrap() < 14, "{r}");
    let orders = env.sb.sales_rows("salesorders");
    assert_eq!(once(&orders, "ordernumber", "orders"), 7);
    assert_eq!(env.sb.sales_rows("salesorderdetails").len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_backfill_resumes() {
    let env = Env::start(1).await;
    run_ok(&env, "accounts-to-fno");
    run_ok(&env, "products-to-sales");
    let orders = fno_orders(&env, 7);
    run_ok(&env, "orders-to-sales");
    for so in &orders {
        env.sb.fno_invoice_order("usmf", so);
    }
    let r = interrupted_then_resumed(&env, "invoices-to-sales", "2", "4");
    assert!(r["read"].as_u64().unwrap() < 14, "{r}");
    let invoices = env.sb.sales_rows("invoices");
    assert_eq!(once(&invoices, "invoicenumber", "invoices"), 7);
    assert_eq!(env.sb.sales_rows("invoicedetails").len(), 7);
}
