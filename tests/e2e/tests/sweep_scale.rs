//! Sweeps that cost what changed (issue 15): per-range digests spare the link reads of unchanged ranges, and
//! regular sweeps leave settled documents out of the F&O query, with a full sweep catching stragglers. Each test
//! asserts what reaches Sales and what the runs cost in requests.

use p2c_e2e::Env;
use p2c_sync::FlowName;
use serde_json::{Value, json};

const PRODUCTS: FlowName = FlowName::ProductsToSales;
const ORDERS: FlowName = FlowName::OrdersToSales;

fn row(env: &Env, set: &str, col: &str, value: &str) -> Option<Value> {
    env.sb.sales_rows(set).into_iter().find(|r| r[col] == value)
}

/// 300 more products in F&O, copies of D0001 (BP-00000...).
fn seed_products(env: &Env, n: usize) {
    env.sb.fno_copies(
        "SellableReleasedProducts",
        &[("dataAreaId", "usmf"), ("ProductNumber", "D0001")],
        n,
        |i, r| {
            r.insert("ProductNumber".into(), json!(format!("BP-{i:05}")));
            r.insert("ProductName".into(), json!(format!("Bench product {i}")));
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_sweep_reads_digests_not_links_and_a_change_still_arrives() {
    let env = Env::start(2).await;
    seed_products(&env, 300);
    let first = env.run(PRODUCTS).await;
    assert_eq!((first.written, first.failed), (305, 0), "{:?}", first.errors);

    // Nothing changed: the digests match, no link is read (305 products and their price list items would be
    // 8 BatchGetItem requests), nothing is written.
    let quiet = env.run(PRODUCTS).await;
    assert_eq!((quiet.read, quiet.written, quiet.failed), (305, 0, 0), "{quiet:?}");
    assert!(
        quiet.dynamodb_requests <= 8,
        "{} DynamoDB requests",
        quiet.dynamodb_requests
    );

    // One product renamed in F&O: its range's digest differs, its links are read, it is written, and only it.
    env.sb.fno_update(
        "SellableReleasedProducts",
        &[("dataAreaId", "usmf"), ("ProductNumber", "BP-00150")],
        json!({"ProductName": "Renamed in F&O"}),
    );
    let changed = env.run(PRODUCTS).await;
    assert_eq!((changed.written, changed.failed), (1, 0), "{:?}", changed.errors);
    assert_eq!(
        row(&env, "products", "productnumber", "BP-00150").unwrap()["name"],
        "Renamed in F&O"
    );
    assert!(changed.dynamodb_requests < quiet.dynamodb_requests + 8, "{changed:?}");
    // And quiet again: the new digest was written after the links.
    let again = env.run(PRODUCTS).await;
    assert_eq!((again.written, again.failed), (0, 0), "{again:?}");
    assert_eq!(env.sb.sales_rows("products").len(), 305);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_digest_or_link_never_hides_a_change() {
    let env = Env::start(2).await;
    seed_products(&env, 40);
    env.run(PRODUCTS).await;
    // Every digest gone (as after a table restore): the sweep compares links one by one and writes nothing.
    let digests = env.deps.state.digests("products-to-sales.full", "usmf").await.unwrap();
    assert!(!digests.is_empty());
    for first in digests.keys() {
        let key = std::collections::HashMap::from([
            (
                "pk".to_string(),
                aws_sdk_dynamodb::types::AttributeValue::S("DIGEST#products-to-sales.full#usmf".into()),
            ),
            (
                "sk".to_string(),
                aws_sdk_dynamodb::types::AttributeValue::S(first.clone()),
            ),
        ]);
        aws_sdk_dynamodb::Client::new(&env.aws)
            .delete_item()
            .table_name(env.deps.state.table())
            .set_key(Some(key))
            .send()
            .await
            .unwrap();
    }
    let r = env.run(PRODUCTS).await;
    assert_eq!((r.read, r.written), (45, 0), "{r:?}");
    // A product changed twice, back to what it was: the digest of the old content never vouches for it.
    for name in ["Second name", "Bench product 7"] {
        env.sb.fno_update(
            "SellableReleasedProducts",
            &[("dataAreaId", "usmf"), ("ProductNumber", "BP-00007")],
            json!({"ProductName": name}),
        );
        let r = env.run(PRODUCTS).await;
        assert_eq!(r.written, 1, "{r:?}");
        assert_eq!(
            row(&env, "products", "productnumber", "BP-00007").unwrap()["name"],
            name
        );
    }
}

/// An order in F&O for the first account, confirmed; returns its number.
fn confirmed_order(env: &Env) -> String {
    let customer = env.sb.sales_rows("accounts")[0]["accountnumber"]
        .as_str()
        .unwrap()
        .to_string();
    let so = env
        .sb
        .fno_create_order("usmf", &customer, &[("D0001", 1.0), ("D0002", 2.0)]);
    env.sb.fno_confirm_order("usmf", &so);
    so
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regular_sweeps_leave_settled_orders_out_and_the_full_sweep_catches_stragglers() {
    let env = Env::start(2).await;
    env.run(FlowName::AccountsToFno).await;
    env.run(PRODUCTS).await;
    let settled = confirmed_order(&env);
    let recent = confirmed_order(&env);
    // The first is Invoiced and was created long ago: it has settled. The second was invoiced just now.
    env.sb.fno_invoice_order("usmf", &settled);
    env.sb.fno_invoice_order("usmf", &recent);
    env.sb.fno_update(
        "CDSSalesOrderHeaders",
        &[("dataAreaId", "usmf"), ("SalesOrderNumber", settled.as_str())],
        json!({"OrderCreationDateTime": "2020-01-01T00:00:00Z"}),
    );
    // The first sweep is full: both orders arrive, Invoiced, with their lines.
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.failed), (6, 0), "{:?}", r.errors);

    // A later change to each: the regular sweep reads the recent order (and its lines, by key: the range read
    // leaves final orders' lines out) but not the settled one.
    for so in [&settled, &recent] {
        env.sb.fno_update(
            "CDSSalesOrderHeaders",
            &[("dataAreaId", "usmf"), ("SalesOrderNumber", so.as_str())],
            json!({"CustomersOrderReference": "late change"}),
        );
    }
    let r = env.run(ORDERS).await;
    assert_eq!((r.read, r.written, r.failed), (3, 1, 0), "{r:?}");
    assert_eq!(
        row(&env, "salesorders", "ordernumber", &recent).unwrap()["description"],
        "late change"
    );
    assert_ne!(
        row(&env, "salesorders", "ordernumber", &settled).unwrap()["description"],
        "late change"
    );
    assert_eq!(env.sb.sales_rows("salesorderdetails").len(), 4, "no line lost");

    // Once the last full sweep is a day old, the next sweep is full and the straggler arrives.
    let wm = env
        .deps
        .state
        .watermark("orders-to-sales", "usmf")
        .await
        .unwrap()
        .unwrap();
    env.deps
        .state
        .put_watermark(
            "orders-to-sales",
            "usmf",
            r#"{"after":null,"full_at":"2020-01-01T00:00:00Z"}"#,
            Some(wm.version),
        )
        .await
        .unwrap();
    let r = env.run(ORDERS).await;
    assert_eq!((r.read, r.written, r.failed), (6, 1, 0), "{r:?}");
    assert_eq!(
        row(&env, "salesorders", "ordernumber", &settled).unwrap()["description"],
        "late change"
    );
}
