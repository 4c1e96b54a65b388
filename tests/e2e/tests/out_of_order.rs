//! Documents that arrive before their parents wait for them, write nothing dangling, and end exactly where the
//! same documents end when everything arrives in order.
//!
//! What is out of order, per direction:
//! - **Sales → F&O** (quotes-to-fno, orders-to-fno): a quote and an order of a Sales account run before
//!   accounts-to-fno has made the account an F&O customer, and before products-to-sales has linked their
//!   products (the products are in Sales, entered as the P2C plug-in would, with their price list items, but
//!   products-to-sales has not synced them: no `LINK#product` to an F&O product number).
//! - **F&O → Sales** (orders-to-sales, invoices-to-sales): an order entered, confirmed and invoiced in F&O runs
//!   before products-to-sales has brought its products (D0004, D0005) into Sales, and its invoice before
//!   orders-to-sales has brought the order. Its customer is a Sales account, which Sales always has; F&O itself
//!   needs the customer before it accepts the order, so accounts-to-fno runs before the order is entered.

use p2c_e2e::Env;
use p2c_e2e::expect::{
    assert_document_to_fno, assert_document_to_sales, assert_no_dangling, assert_same_state, fno_find, sales_find,
    snapshot,
};
use p2c_sync::{FlowName, RunReport};
use serde_json::{Value, json};

const QUOTE: &str = "QUO-OOO-0001";
const ORDER: &str = "ORD-OOO-0001";
/// P2C processing status Active: activated in Sales, not yet confirmed in F&O.
const P2C_ACTIVE: i64 = 647_390_000;

/// The documents of the scenario.
struct Docs {
    quote_id: String,
    order_id: String,
    /// The order entered in F&O and its invoice.
    fno_order: String,
    invoice: String,
}

fn id_of(env: &Env, set: &str, col: &str, value: &str) -> String {
    let pk = match set {
        "transactioncurrencies" => "transactioncurrencyid".to_string(),
        s => format!("{}id", s.trim_end_matches('s')),
    };
    sales_find(&env.sb, set, col, &json!(value)).unwrap_or_else(|| panic!("{set} {col} = {value}"))[&pk]
        .as_str()
        .unwrap()
        .to_string()
}

/// Demo accounts by number: the first is the customer of the Sales documents, the second of the F&O order.
fn accounts(env: &Env) -> Vec<Value> {
    let mut a = env.sb.sales_rows("accounts");
    a.sort_by(|x, y| x["accountnumber"].as_str().cmp(&y["accountnumber"].as_str()));
    a
}

/// Sales products D0001..D0003 as a user would enter them before the sync is switched on, each with its price
/// list item as the P2C plug-in adds it, but not synced by products-to-sales (no link).
fn products_entered_in_sales(env: &Env) {
    let sb = &env.sb;
    let (ea, usd) = (
        id_of(env, "uoms", "name", "ea"),
        id_of(env, "transactioncurrencies", "isocurrencycode", "USD"),
    );
    let group = id_of(env, "uomschedules", "name", "Default unit");
    let list = id_of(env, "pricelevels", "name", "CRM Service USA (sample)");
    for number in ["D0001", "D0002", "D0003"] {
        let f = fno_find(sb, "SellableReleasedProducts", &[("ProductNumber", json!(number))]).unwrap();
        let id = sb.sales_insert(
            "products",
            json!({"productnumber": number, "name": f["ProductName"], "price": f["SalesPrice"],
                   "_defaultuomid_value": ea, "_defaultuomscheduleid_value": group,
                   "_transactioncurrencyid_value": usd, "_pricelevelid_value": list,
                   "msdynce_ismaintainedexternally": true}),
        );
        sb.sales_insert(
            "productpricelevels",
            json!({"_pricelevelid_value": list, "_productid_value": id, "_uomid_value": ea,
                   "amount": f["SalesPrice"], "pricingmethodcode": 1}),
        );
    }
}

/// An active quote and an activated order for the first account, on D0001..D0003, with the P2C flags.
fn sales_documents(env: &Env) -> (String, String) {
    let sb = &env.sb;
    let account = &accounts(env)[0];
    let ea = id_of(env, "uoms", "name", "ea");
    let header = |number_col: &str, number: &str, name: &str| {
        json!({
            number_col: number, "name": name,
            "_customerid_value": account["accountid"],
            "_pricelevelid_value": id_of(env, "pricelevels", "name", "CRM Service USA (sample)"),
            "_transactioncurrencyid_value": id_of(env, "transactioncurrencies", "isocurrencycode", "USD"),
            "_owningbusinessunit_value": sb.business_unit_id("usmf").unwrap(),
            "msdynce_hasexternallymaintainedproductsonly": true,
            "shipto_name": account["address2_name"], "shipto_line1": account["address2_line1"],
            "shipto_city": account["address2_city"], "shipto_postalcode": account["address2_postalcode"],
            "shipto_stateorprovince": account["address2_stateorprovince"],
            "shipto_country": account["address2_country"],
        })
    };
    let line = |parent: &str, id: &str, flag: &str, product: &str, qty: f64, discount: f64| {
        let p = sales_find(sb, "products", "productnumber", &json!(product)).unwrap();
        json!({
            format!("_{parent}_value"): id, "_productid_value": p["productid"], "_uomid_value": ea,
            "quantity": qty, "manualdiscountamount": discount, "priceperunit": p["price"],
            flag: true, "msdynce_ismaintainedexternally": true,
        })
    };
    let quote = sb.sales_insert("quotes", header("quotenumber", QUOTE, "Speakers"));
    for (product, qty, discount) in [("D0001", 2.0, 0.0), ("D0002", 1.0, 0.0), ("D0003", 3.0, 10.0)] {
        let flag = "msdynce_quotehasexternalmaintainedproductsonly";
        sb.sales_insert("quotedetails", line("quoteid", &quote, flag, product, qty, discount));
    }
    sb.sales_update("quotes", &quote, json!({"statecode": 1, "statuscode": 2}));
    let mut h = header("ordernumber", ORDER, "Cabinets");
    h["msdynce_processingstatus"] = json!(P2C_ACTIVE);
    let order = sb.sales_insert("salesorders", h);
    for (product, qty) in [("D0002", 4.0), ("D0003", 1.0)] {
        let flag = "msdynce_orderhasexternalmaintainedproductsonly";
        sb.sales_insert(
            "salesorderdetails",
            line("salesorderid", &order, flag, product, qty, 0.0),
        );
    }
    (quote, order)
}

/// An order entered in F&O for the second account on D0004 and D0005, confirmed and invoiced.
fn fno_documents(env: &Env) -> (String, String) {
    let customer = accounts(env)[1]["accountnumber"].as_str().unwrap().to_string();
    let so = env
        .sb
        .fno_create_order("usmf", &customer, &[("D0004", 2.0), ("D0005", 1.0)]);
    env.sb.fno_confirm_order("usmf", &so);
    let invoice = env.sb.fno_invoice_order("usmf", &so);
    (so, invoice)
}

async fn ok(env: &Env, flow: FlowName) -> RunReport {
    let r = env.run(flow).await;
    assert_eq!(r.failed, 0, "{flow}: {:?}", r.errors);
    r
}

/// The flow ran first: its records failed transiently and were queued for retry, nothing was written, and the
/// document's own failure names the missing `parent` (its lines' failures name the document).
fn deferred(r: &RunReport, parent: &str, docs: u64) {
    assert_eq!(r.written, 0, "{}: nothing written {r:?}", r.flow);
    assert!(r.failed >= docs && r.retry_queued >= docs, "{}: {r:?}", r.flow);
    for e in &r.errors {
        assert!(e.transient && e.routed == p2c_sync::Routed::Retry, "{}: {e:?}", r.flow);
    }
    assert!(
        r.errors.iter().any(|e| e.reason.contains(parent)),
        "{}: a reason names {parent}: {:?}",
        r.flow,
        r.errors
    );
}

fn deferred_sqs(reports: &[RunReport], parent: &str) {
    let failed: u64 = reports.iter().map(|r| r.failed).sum();
    assert!(failed >= 1, "{reports:?}");
    for r in reports {
        deferred(r, parent, 0);
    }
}

async fn in_order(env: &Env) -> Docs {
    for f in [
        FlowName::AccountsToFno,
        FlowName::ProductsToSales,
        FlowName::ContactsToFno,
    ] {
        ok(env, f).await;
    }
    let (quote_id, order_id) = sales_documents(env);
    let (fno_order, invoice) = fno_documents(env);
    for f in [
        FlowName::QuotesToFno,
        FlowName::OrdersToFno,
        FlowName::OrdersToSales,
        FlowName::InvoicesToSales,
    ] {
        let r = ok(env, f).await;
        assert!(r.written >= 1, "{r:?}");
    }
    Docs {
        quote_id,
        order_id,
        fno_order,
        invoice,
    }
}

async fn out_of_order(env: &Env) -> Docs {
    let sb = &env.sb;
    products_entered_in_sales(env);
    let (quote_id, order_id) = sales_documents(env);
    let customer = accounts(env)[0]["accountnumber"].as_str().unwrap().to_string();

    // The Sales documents before their customer: both wait, naming it; F&O gets nothing.
    deferred(&env.run(FlowName::QuotesToFno).await, &customer, 1);
    deferred(&env.run(FlowName::OrdersToFno).await, &customer, 1);
    for set in [
        "CDSSalesQuotationHeaders",
        "CDSSalesQuotationLines",
        "CDSSalesOrderHeaders",
        "CDSSalesOrderLines",
    ] {
        assert!(
            sb.fno_rows(set).iter().all(|r| r["dataAreaId"] != "usmf"),
            "nothing of the documents in F&O {set}"
        );
    }
    assert_no_dangling(sb);

    // The customer arrives; the retries now wait for the product link, naming the product.
    ok(env, FlowName::AccountsToFno).await;
    deferred_sqs(
        &env.drain_passes(FlowName::QuotesToFno, 1).await,
        "no products-to-sales link",
    );
    deferred_sqs(
        &env.drain_passes(FlowName::OrdersToFno, 1).await,
        "no products-to-sales link",
    );
    assert!(
        fno_find(
            sb,
            "CDSSalesQuotationHeaders",
            &[("SalesQuotationNumber", json!(QUOTE))]
        )
        .is_none()
    );
    assert!(fno_find(sb, "CDSSalesOrderHeaders", &[("SalesOrderNumber", json!(ORDER))]).is_none());

    // F&O's order and invoice before their products and their order are in Sales.
    let (fno_order, invoice) = fno_documents(env);
    deferred(
        &env.run(FlowName::OrdersToSales).await,
        "its product D0004 is not in Sales yet",
        1,
    );
    let parent = format!("its sales order {fno_order} is not in Sales yet");
    deferred(&env.run(FlowName::InvoicesToSales).await, &parent, 1);
    assert!(
        sales_find(sb, "invoices", "invoicenumber", &json!(invoice)).is_none(),
        "no invoice without order"
    );
    assert!(sb.sales_rows("invoicedetails").is_empty());
    // The order goes whole or not at all: no header without the lines F&O has.
    assert!(sales_find(sb, "salesorders", "ordernumber", &json!(fno_order)).is_none());
    assert!(
        sb.sales_rows("salesorderdetails")
            .iter()
            .all(|l| l["_salesorderid_value"] == order_id.as_str()),
        "no line of the F&O order without its products"
    );
    assert_no_dangling(sb);

    // The parents arrive; the queues are drained (parents first, as their triggers would have run long since),
    // then every flow runs again and finds nothing left to do.
    ok(env, FlowName::ProductsToSales).await;
    ok(env, FlowName::ContactsToFno).await;
    for f in [
        FlowName::QuotesToFno,
        FlowName::OrdersToFno,
        FlowName::OrdersToSales,
        FlowName::InvoicesToSales,
    ] {
        let reports = env.drain(f).await;
        let (written, failed): (u64, u64) = reports.iter().fold((0, 0), |(w, f), r| (w + r.written, f + r.failed));
        assert_eq!(failed, 0, "{f}: {reports:?}");
        assert!(written >= 1, "{f}: the retry writes the document: {reports:?}");
    }
    for f in FlowName::ALL {
        let r = ok(env, f).await;
        assert_eq!(r.written, 0, "{f}: nothing left: {r:?}");
        let (queued, dead) = env.queued(f).await;
        assert!(queued.is_empty() && dead.is_empty(), "{f}: {queued:?} {dead:?}");
    }
    Docs {
        quote_id,
        order_id,
        fno_order,
        invoice,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_before_their_customer_and_product_wait_and_end_as_in_order() {
    let (a, b) = tokio::join!(Env::start(3), Env::start(3));
    let want = in_order(&a).await;
    let got = out_of_order(&b).await;
    assert_eq!((&want.fno_order, &want.invoice), (&got.fno_order, &got.invoice));

    // Both ways, every mapped field of every document is where it belongs, links included, and nothing dangles.
    for (env, docs) in [(&a, &want), (&b, &got)] {
        assert_document_to_fno(env, FlowName::QuotesToFno, &docs.quote_id).await;
        assert_document_to_fno(env, FlowName::OrdersToFno, &docs.order_id).await;
        assert_document_to_sales(env, FlowName::InvoicesToSales, &docs.invoice, &[]).await;
        let order = sales_find(&env.sb, "salesorders", "ordernumber", &json!(docs.fno_order)).unwrap();
        assert_eq!(
            (order["statecode"].as_i64(), order["statuscode"].as_i64()),
            (Some(4), Some(100_003)),
            "the F&O order is Invoiced in Sales"
        );
        assert_no_dangling(&env.sb);
    }

    // And the end state is the in-order end state, record by record, field by field.
    let fields = assert_same_state(&snapshot(&a.sb), &snapshot(&b.sb));
    println!("end states equal: {fields} fields compared");
}
