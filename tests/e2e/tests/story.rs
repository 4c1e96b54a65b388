//! The whole prospect-to-cash story, every flow in turn, against the sandbox and moto: every mapped field
//! asserted on both sides of every synced record, the links in DynamoDB, and what the story costs in requests.

use p2c_e2e::Env;
use p2c_e2e::expect::{
    Covered, assert_account, assert_contact, assert_document_to_fno, assert_document_to_sales, assert_product,
    assert_sales_pricing, fno_find, num, sales_find,
};
use p2c_sync::{FlowName, RunReport};
use serde_json::{Value, json};

/// Runs a flow, keeps its report, and checks nothing failed.
async fn step(env: &Env, flow: FlowName, reports: &mut Vec<RunReport>) -> RunReport {
    let r = env.run(flow).await;
    assert_eq!(r.failed, 0, "{flow}: {:?}", r.errors);
    println!(
        "{:<18} read {:>3}  written {:>3}  skipped {:>3}  failed {}  {:?}",
        flow.as_str(),
        r.read,
        r.written,
        r.skipped,
        r.failed,
        r.skipped_by_reason
    );
    reports.push(r.clone());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prospect_to_cash_every_mapped_field_on_both_sides() {
    let env = Env::start(3).await;
    env.sb.reset_counters();
    let mut reports = Vec::new();
    let mut covered = Covered::default();

    // 1. Products are F&O's: products-to-sales brings D0001..D0005 and their price list items into Sales.
    let r = step(&env, FlowName::ProductsToSales, &mut reports).await;
    assert_eq!((r.read, r.written, r.created), (5, 5, 5));
    let products: Vec<String> = env
        .sb
        .fno_rows("SellableReleasedProducts")
        .into_iter()
        .filter(|p| p["dataAreaId"] == "usmf")
        .map(|p| p["ProductNumber"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(products.len(), 5);
    for p in &products {
        covered += assert_product(&env, p).await;
    }

    // 2. Customers are Sales': accounts become F&O customers, contacts customers or contact persons.
    let r = step(&env, FlowName::AccountsToFno, &mut reports).await;
    assert_eq!((r.read, r.written, r.created), (3, 3, 3));
    for a in env.sb.sales_rows("accounts") {
        covered += assert_account(&env, &a).await;
    }
    let r = step(&env, FlowName::ContactsToFno, &mut reports).await;
    assert_eq!((r.read, r.written, r.created, r.skipped), (6, 5, 5, 1), "{r:?}");
    let mut contacts = 0;
    for c in env.sb.sales_rows("contacts") {
        let got = assert_contact(&env, &c).await;
        contacts += got.records;
        covered += got;
    }
    assert_eq!(contacts, 5, "two customers and three contact persons");

    // 3. A quote in Sales reaches F&O.
    let story = env.sb.seed_story();
    covered.rows += assert_sales_pricing(&env.sb, "quotes", &story.quote_id);
    let r = step(&env, FlowName::QuotesToFno, &mut reports).await;
    assert_eq!((r.read, r.written, r.created), (1, 1, 1), "{r:?}");
    covered += assert_document_to_fno(&env, FlowName::QuotesToFno, &story.quote_id).await;

    // 4. An order in Sales reaches F&O.
    covered.rows += assert_sales_pricing(&env.sb, "salesorders", &story.order_id);
    let r = step(&env, FlowName::OrdersToFno, &mut reports).await;
    assert_eq!((r.read, r.written, r.created), (1, 1, 1), "{r:?}");
    covered += assert_document_to_fno(&env, FlowName::OrdersToFno, &story.order_id).await;

    // 5. F&O confirms the order and calculates its totals; status and totals come back to the same Sales order.
    env.sb.fno_confirm_order("usmf", &story.order_number);
    let mut before = vec![env.sb.sales_get("salesorders", &story.order_id).unwrap()];
    before.extend(
        env.sb
            .sales_rows("salesorderdetails")
            .into_iter()
            .filter(|l| l["_salesorderid_value"] == story.order_id.as_str()),
    );
    let r = step(&env, FlowName::OrdersToSales, &mut reports).await;
    assert_eq!(
        (r.read, r.written, r.created),
        (3, 3, 0),
        "updates of the Sales order: {r:?}"
    );
    let (c, order) = assert_document_to_sales(&env, FlowName::OrdersToSales, &story.order_number, &before).await;
    covered += c;
    assert_eq!(
        order["salesorderid"],
        story.order_id.as_str(),
        "the order that came from Sales"
    );
    assert_eq!(env.sb.sales_rows("salesorders").len(), 1);
    assert_eq!(order["msdynce_processingstatus"], 647_390_001, "Confirmed");
    let fno_order = fno_find(
        &env.sb,
        "CDSSalesOrderHeaders",
        &[("SalesOrderNumber", json!(story.order_number))],
    )
    .unwrap();
    assert_eq!(
        num(&order["totalamount"]),
        num(&fno_order["OrderTotalAmount"]),
        "Sales' own total agrees with F&O's"
    );

    // 6. F&O invoices the order: the invoice arrives in Sales, linked to the order, which becomes Invoiced.
    let invoice = env.sb.fno_invoice_order("usmf", &story.order_number);
    let r = step(&env, FlowName::InvoicesToSales, &mut reports).await;
    assert_eq!((r.read, r.written, r.created), (3, 3, 3), "{r:?}");
    let (c, inv) = assert_document_to_sales(&env, FlowName::InvoicesToSales, &invoice, &[]).await;
    covered += c;
    assert_eq!(inv["_salesorderid_value"], story.order_id.as_str());
    let fno_invoice = fno_find(
        &env.sb,
        "ExternallyMaintainedCustomerSalesInvoiceHeaders",
        &[("InvoiceNumber", json!(invoice))],
    )
    .unwrap();
    assert_eq!(num(&inv["totalamount"]), num(&fno_invoice["TotalInvoiceAmount"]));
    let order: Value = env.sb.sales_get("salesorders", &story.order_id).unwrap();
    assert_eq!(
        (order["statecode"].as_i64(), order["statuscode"].as_i64()),
        (Some(4), Some(100_003)),
        "Invoiced"
    );
    assert_eq!(
        order["msdynce_processingstatus"].as_i64(),
        Some(647_390_003),
        "P2C processing status Invoiced"
    );

    // What the story cost.
    let requests = env.sb.requests();
    let dynamodb: u64 = reports.iter().map(|r| r.dynamodb_requests).sum();
    println!(
        "covered: {} records, {} fields, {} links",
        covered.records, covered.rows, covered.links
    );
    println!("Dynamics requests of the whole story, by endpoint:");
    for (k, v) in &requests {
        println!("  {v:>4}  {k}");
    }
    let (sales, fno, token) = (
        env.sb.total_requests("sales"),
        env.sb.total_requests("fno"),
        env.sb.total_requests("token"),
    );
    println!("  total: sales {sales}, fno {fno}, token {token}; DynamoDB {dynamodb}");
    // One $batch per table written: customers, contact records, the quote, the order (each document in one
    // change set); products and their price list items, order headers and lines, invoice headers, lines and the
    // order's state. Reads: a page or a lookup each, reference tables cached.
    assert_eq!(requests.get("fno POST $batch"), Some(&4), "{requests:?}");
    assert_eq!(requests.get("sales POST $batch"), Some(&7), "{requests:?}");
    // (+1: products-to-sales reads the Sales product numbers once when F&O's product key set changed.)
    assert!(sales <= 51, "{requests:?}");
    assert!(fno <= 20, "{requests:?}");
    assert_eq!(token, 2, "one token per service: {requests:?}");
    // Links, watermarks, leases, run records, resume points, and the shared request budget (a read and a
    // conditional write per 20 Dynamics requests).
    assert!(dynamodb <= 100, "{dynamodb}");

    // 7. Users clear fields on both sides: the clears cross, and then nothing more is written.
    let account = &env.sb.sales_rows("accounts")[0];
    let number = account["accountnumber"].as_str().unwrap().to_string();
    env.sb.sales_update(
        "accounts",
        account["accountid"].as_str().unwrap(),
        json!({"fax": "+1 425 555 0199"}),
    );
    step(&env, FlowName::AccountsToFno, &mut reports).await;
    env.sb
        .sales_update("accounts", account["accountid"].as_str().unwrap(), json!({"fax": null}));
    let r = step(&env, FlowName::AccountsToFno, &mut reports).await;
    assert_eq!(r.written, 1, "{r:?}");
    let customer = fno_find(&env.sb, "CustomersV2", &[("CustomerAccount", json!(number))]).unwrap();
    assert_eq!(
        customer["PrimaryContactFax"], "",
        "a fax cleared in Sales is cleared in F&O"
    );
    env.sb.fno_update(
        "SellableReleasedProducts",
        &[("dataAreaId", "usmf"), ("ProductNumber", "D0002")],
        json!({"ProductDescription": ""}),
    );
    let r = step(&env, FlowName::ProductsToSales, &mut reports).await;
    assert_eq!(r.written, 1, "{r:?}");
    let product = sales_find(&env.sb, "products", "productnumber", &json!("D0002")).unwrap();
    assert!(
        product["description"].is_null(),
        "a description cleared in F&O is cleared in Sales: {product}"
    );
    for flow in [FlowName::AccountsToFno, FlowName::ProductsToSales] {
        let r = step(&env, flow, &mut reports).await;
        assert_eq!(r.written, 0, "{flow}: a clear crosses once: {r:?}");
    }

    // 8. An order entered in F&O for a Sales customer arrives in Sales once confirmed, for that account.
    let so = env
        .sb
        .fno_create_order("usmf", &number, &[("D0001", 2.0), ("D0003", 1.0)]);
    env.sb.fno_confirm_order("usmf", &so);
    let r = step(&env, FlowName::OrdersToSales, &mut reports).await;
    assert_eq!(r.created, 3, "the header and its two lines: {r:?}");
    let order = sales_find(&env.sb, "salesorders", "ordernumber", &json!(so)).unwrap();
    assert_eq!(order["_customerid_value"], account["accountid"]);
    let lines = env
        .sb
        .sales_rows("salesorderdetails")
        .into_iter()
        .filter(|l| l["_salesorderid_value"] == order["salesorderid"])
        .count();
    assert_eq!(lines, 2);

    // 9. F&O reprices that order after it reached Sales: the new totals arrive. Then two invoices, the first
    //    partial: both link to the order, which becomes Invoiced only with the second.
    env.sb.fno_update(
        "CDSSalesOrderLines",
        &[
            ("dataAreaId", "usmf"),
            ("SalesOrderNumber", so.as_str()),
            ("LineCreationSequenceNumber", "1"),
        ],
        json!({"SalesPrice": 275.0}),
    );
    env.sb.fno_confirm_order("usmf", &so);
    let r = step(&env, FlowName::OrdersToSales, &mut reports).await;
    assert!(r.written >= 1, "{r:?}");
    let fno_order = fno_find(&env.sb, "CDSSalesOrderHeaders", &[("SalesOrderNumber", json!(so))]).unwrap();
    let order = sales_find(&env.sb, "salesorders", "ordernumber", &json!(so)).unwrap();
    assert_eq!(
        num(&order["totalamount"]),
        num(&fno_order["OrderTotalAmount"]),
        "repriced totals arrive"
    );
    let first = env.sb.fno_invoice_order_lines("usmf", &so, &[(1, 1.0)]);
    step(&env, FlowName::InvoicesToSales, &mut reports).await;
    step(&env, FlowName::OrdersToSales, &mut reports).await;
    let order_id = order["salesorderid"].clone();
    let state = |env: &Env| env.sb.sales_get("salesorders", order_id.as_str().unwrap()).unwrap()["statecode"].clone();
    assert_eq!(state(&env), 0, "partly invoiced: still open to F&O");
    let second = env.sb.fno_invoice_order("usmf", &so);
    step(&env, FlowName::InvoicesToSales, &mut reports).await;
    step(&env, FlowName::OrdersToSales, &mut reports).await;
    for n in [&first, &second] {
        let inv = sales_find(&env.sb, "invoices", "invoicenumber", &json!(n)).unwrap();
        assert_eq!(inv["_salesorderid_value"], order_id, "invoice {n} links to its order");
    }
    assert_eq!(state(&env), 4, "Invoiced once F&O invoiced it all");

    // 10. An order in euros, invoiced: the invoice lands with the euro price list.
    env.sb.fno_insert(
        "CDSSalesOrderHeaders",
        json!({"dataAreaId": "usmf", "SalesOrderNumber": "SO-STORY-EUR", "SalesOrderName": "Order in euros",
               "OrderingCustomerAccountNumber": number, "InvoiceCustomerAccountNumber": number,
               "SalesOrderProcessingStatus": "Active", "SalesOrderStatus": "Backorder",
               "SalesOrderOriginType": "NotSpecified", "CurrencyCode": "EUR",
               "DeliveryAddressCountryRegionISOCode": "DE"}),
    );
    env.sb.fno_insert(
        "CDSSalesOrderLines",
        json!({"dataAreaId": "usmf", "SalesOrderNumber": "SO-STORY-EUR", "LineCreationSequenceNumber": 1,
               "ProductNumber": "D0001", "ProductName": "D0001 name", "OrderedSalesQuantity": 2.0,
               "SalesUnitSymbol": "ea", "SalesPrice": 230.0, "SalesPriceQuantity": 1, "CurrencyCode": "EUR",
               "SalesOrderProcessingStatus": "Active", "SalesOrderOriginType": "NotSpecified"}),
    );
    env.sb.fno_confirm_order("usmf", "SO-STORY-EUR");
    step(&env, FlowName::OrdersToSales, &mut reports).await;
    let eur = env.sb.fno_invoice_order("usmf", "SO-STORY-EUR");
    step(&env, FlowName::InvoicesToSales, &mut reports).await;
    let inv = sales_find(&env.sb, "invoices", "invoicenumber", &json!(eur)).unwrap();
    let list = env
        .sb
        .sales_get("pricelevels", inv["_pricelevelid_value"].as_str().unwrap())
        .unwrap();
    assert_eq!(list["name"], "Europe Sales (EUR)");
    let currency = env
        .sb
        .sales_get(
            "transactioncurrencies",
            inv["_transactioncurrencyid_value"].as_str().unwrap(),
        )
        .unwrap();
    assert_eq!(currency["isocurrencycode"], "EUR");
}
