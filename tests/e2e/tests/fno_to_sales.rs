//! F&O → Sales (products, orders, invoices), end to end through the handler, against the sandbox and moto.

use aws_sdk_dynamodb::types::AttributeValue;
use p2c_e2e::{Env, sqs_event};
use p2c_sync::{FlowName, Message, Reason, RunOptions, RunReport, Skip, handle_sqs, run_flow};
use serde_json::{Value, json};

const PRODUCTS: FlowName = FlowName::ProductsToSales;
const ORDERS: FlowName = FlowName::OrdersToSales;
const INVOICES: FlowName = FlowName::InvoicesToSales;

fn message(flow: FlowName, keys: &[&str]) -> String {
    Message::new(
        flow.as_str(),
        "usmf",
        keys.iter().map(|k| k.to_string()).collect(),
        Reason::Change,
    )
    .to_body()
}

/// The Sales row of `set` whose `col` is `value`.
fn row(env: &Env, set: &str, col: &str, value: &str) -> Option<Value> {
    env.sb.sales_rows(set).into_iter().find(|r| r[col] == value)
}

fn id(env: &Env, set: &str, col: &str, value: &str) -> String {
    let logical = match set.strip_suffix("ies") {
        Some(stem) => format!("{stem}y"),
        None => set.strip_suffix('s').unwrap_or(set).to_string(),
    };
    let pk = format!("{logical}id");
    row(env, set, col, value).unwrap_or_else(|| panic!("{set} with {col} = {value}"))[&pk]
        .as_str()
        .unwrap()
        .to_string()
}

/// Requests that change Sales (anything but GET).
fn sales_writes(env: &Env) -> u64 {
    env.sb
        .requests()
        .iter()
        .filter(|(k, _)| k.starts_with("sales ") && !k.starts_with("sales GET"))
        .map(|(_, v)| v)
        .sum()
}

/// Deletes a link item, as if the run that created the Sales record had crashed before committing it.
async fn forget_link(env: &Env, entity: &str, key: &str) {
    let client = aws_sdk_dynamodb::Client::new(&env.aws);
    client
        .delete_item()
        .table_name(env.deps.state.table())
        .key(
            "pk",
            AttributeValue::S(p2c_state::store::link_pk(entity, "usmf", "fno", key)),
        )
        .key("sk", AttributeValue::S("LINK".into()))
        .send()
        .await
        .expect("delete link");
}

const ADDRESS: &[(&str, &str)] = &[
    ("Street", "1 Microsoft Way"),
    ("City", "Redmond"),
    ("StateId", "WA"),
    ("ZipCode", "98052"),
];

/// A confirmed F&O order of `customer` with calculated totals.
fn order(number: &str, customer: &str, status: &str) -> Value {
    let mut h = json!({
        "dataAreaId": "usmf", "SalesOrderNumber": number, "SalesOrderName": format!("Speakers {number}"),
        "CustomersOrderReference": "PO 4471",
        "OrderingCustomerAccountNumber": customer, "InvoiceCustomerAccountNumber": customer,
        "OrderingCustomerIsExternallyMaintained": "Yes", "InvoiceCustomerIsExternallyMaintained": "Yes",
        "SalesOrderProcessingStatus": status, "SalesOrderStatus": "Backorder",
        "SalesOrderOriginType": "NotSpecified", "AreTotalsUpdated": "Yes", "CurrencyCode": "USD",
        "OrderTotalAmount": 1264.5, "TotalDiscountAmount": 10.0, "OrderTotalTaxAmount": 80.5,
        "OrderTotalChargesAmount": 25.0, "DeliveryAddressCountryRegionISOCode": "US",
        "InvoiceAddressCountryRegionId": "USA",
    });
    for (k, v) in ADDRESS {
        h[format!("DeliveryAddress{k}")] = json!(v);
        h[format!("InvoiceAddress{k}")] = json!(v);
    }
    h
}

/// An order line: `qty` × `product` at `price`, with F&O's per-unit discount and charge.
fn line(number: &str, seq: i64, product: &str, qty: f64, price: f64, per_unit: f64, charge: f64) -> Value {
    json!({
        "dataAreaId": "usmf", "SalesOrderNumber": number, "LineCreationSequenceNumber": seq,
        "ProductNumber": product, "ProductName": format!("{product} name"), "OrderedSalesQuantity": qty,
        "SalesUnitSymbol": "ea", "SalesPrice": price, "LineDiscountAmount": per_unit,
        "TotalChargesAmount": charge, "TotalDiscountAmount": per_unit * qty,
        "LineAmount": qty * price - per_unit * qty, "TotalTaxAmount": 8.25, "CurrencyCode": "USD",
        "SalesOrderProcessingStatus": "Confirmed", "OrderingCustomerIsExternallyMaintained": "Yes",
        "InvoiceCustomerIsExternallyMaintained": "Yes", "AreSalesOrderTotalsUpdated": "Yes",
        "SalesOrderOriginType": "NotSpecified", "DeliveryAddressCity": "Redmond",
        "DeliveryAddressCountryRegionISOCode": "US",
    })
}

fn invoice(number: &str, order: &str, customer: &str) -> Value {
    json!({
        "dataAreaId": "usmf", "InvoiceNumber": number, "InvoiceDate": "2026-03-05T12:00:00Z",
        "LedgerVoucher": format!("ARI-{number}"), "InvoiceCustomerAccountNumber": customer,
        "SalesOrderNumber": order, "CurrencyCode": "USD", "CustomersOrderReference": "PO 4471",
        "InvoiceAddressStreet": "1 Microsoft Way", "InvoiceAddressCity": "Redmond",
        "InvoiceAddressState": "WA", "InvoiceAddressZipCode": "98052",
        "InvoiceAddressCountryRegionISOCode": "US", "TotalInvoiceAmount": 1264.5, "TotalTaxAmount": 80.5,
        "TotalDiscountAmount": 10.0, "TotalChargeAmount": 25.0, "TotalDiscountCustomerGroupCode": 0.0,
    })
}

fn invoice_line(number: &str, seq: i64, product: &str, qty: f64, price: f64) -> Value {
    json!({
        "dataAreaId": "usmf", "InvoiceNumber": number, "InvoiceDate": "2026-03-05T12:00:00Z",
        "LedgerVoucher": format!("ARI-{number}"), "LineCreationSequenceNumber": seq,
        "ProductNumber": product, "ProductName": format!("{product} name"), "InvoicedQuantity": qty,
        "SalesUnitSymbol": "ea", "SalesPrice": price, "CurrencyCode": "USD",
        "LineTotalDiscountAmount": 10.0, "LineAmount": qty * price - 10.0, "LineTotalTaxAmount": 8.25,
    })
}

fn key<'a>(parts: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    parts.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_sweep_creates_products_and_price_list_items_then_writes_only_changes() {
    let env = Env::start(0).await;
    let fno = env.sb.fno_rows("SellableReleasedProducts");
    assert_eq!(fno.len(), 5);
    env.sb.reset_counters();

    let r = env.run(PRODUCTS).await;
    assert_eq!((r.read, r.written, r.created, r.failed), (5, 5, 5, 0), "{:?}", r.errors);
    println!("first products sweep: sandbox requests {:?}", env.sb.requests());
    println!("first products sweep: DynamoDB requests {}", r.dynamodb_requests);
    let usd = id(&env, "transactioncurrencies", "isocurrencycode", "USD");
    let ea = id(&env, "uoms", "name", "ea");
    let group = id(&env, "uomschedules", "name", "Default unit");
    let list = id(&env, "pricelevels", "name", "CRM Service USA (sample)");
    let products = env.sb.sales_rows("products");
    let items = env.sb.sales_rows("productpricelevels");
    assert_eq!((products.len(), items.len()), (5, 5));
    for f in &fno {
        let p = products
            .iter()
            .find(|p| p["productnumber"] == f["ProductNumber"])
            .unwrap_or_else(|| panic!("product {}", f["ProductNumber"]));
        assert_eq!(p["name"], f["ProductName"]);
        assert_eq!(p["description"], f["ProductDescription"]);
        assert_eq!(p["price"].as_f64(), f["SalesPrice"].as_f64());
        assert_eq!(p["currentcost"].as_f64(), f["UnitCost"].as_f64());
        assert_eq!(p["isstockitem"], true);
        assert_eq!(p["producttypecode"], 1);
        assert_eq!(p["quantitydecimal"], 0);
        assert_eq!(p["msdynce_ismaintainedexternally"], true);
        assert_eq!(p["_transactioncurrencyid_value"], usd.as_str());
        assert_eq!(p["_defaultuomid_value"], ea.as_str());
        assert_eq!(p["_defaultuomscheduleid_value"], group.as_str());
        assert_eq!(p["_pricelevelid_value"], list.as_str());
        // Created in Draft (the organization's default), published after its price list item.
        assert_eq!((&p["statecode"], &p["statuscode"]), (&json!(0), &json!(1)));
        let item = items
            .iter()
            .find(|i| i["_productid_value"] == p["productid"])
            .expect("a price list item per product");
        assert_eq!(item["_pricelevelid_value"], list.as_str());
        assert_eq!(item["_uomid_value"], ea.as_str());
        assert_eq!(item["amount"].as_f64(), f["SalesPrice"].as_f64());
        assert_eq!(item["pricingmethodcode"], 1);
        assert_eq!(item["quantitysellingcode"], 1);
    }
    // The sweep: one F&O read; Sales: the natural-key lookup, the reference tables, one batch per table, the
    // organization's publish setting, and (the key set changed) one read of the product numbers for the gone check.
    assert_eq!(env.sb.requests().get("fno GET SellableReleasedProducts"), Some(&1));
    assert_eq!(env.sb.requests().get("sales POST $batch"), Some(&2));
    assert!(env.sb.total_requests("sales") <= 9, "{:?}", env.sb.requests());
    let links = env
        .deps
        .state
        .get_links("product", "usmf", "fno", &["D0001".to_string()])
        .await
        .unwrap();
    assert_eq!(
        links["D0001"].target_key,
        id(&env, "products", "productnumber", "D0001")
    );
    let wm = env
        .deps
        .state
        .watermark("products-to-sales", "usmf")
        .await
        .unwrap()
        .unwrap();
    assert!(
        wm.value.contains("\"after\":null"),
        "a finished sweep clears the cursor: {}",
        wm.value
    );

    // A second sweep reads F&O once and writes nothing.
    env.sb.reset_counters();
    let r = env.run(PRODUCTS).await;
    assert_eq!((r.read, r.written, r.skipped), (5, 0, 5));
    assert_eq!(r.skipped_by_reason.get(&Skip::Unchanged), Some(&5));
    assert_eq!(env.sb.total_requests("sales"), 0, "{:?}", env.sb.requests());
    assert_eq!(env.sb.total_requests("fno"), 1, "{:?}", env.sb.requests());

    // Two products change in F&O: exactly those two are written, only their changed fields.
    env.sb.fno_update(
        "SellableReleasedProducts",
        &key(&[("dataAreaId", "usmf"), ("ProductNumber", "D0002")]),
        json!({"SalesPrice": 199.0}),
    );
    env.sb.fno_update(
        "SellableReleasedProducts",
        &key(&[("dataAreaId", "usmf"), ("ProductNumber", "D0004")]),
        json!({"ProductName": "HighEndSpeaker Mk II"}),
    );
    env.sb.reset_counters();
    let r = env.run(PRODUCTS).await;
    assert_eq!(
        (r.read, r.written, r.updated, r.skipped),
        (5, 2, 2, 3),
        "{:?}",
        r.errors
    );
    let d2 = row(&env, "products", "productnumber", "D0002").unwrap();
    assert_eq!(d2["price"].as_f64(), Some(199.0));
    let d2_item = env
        .sb
        .sales_rows("productpricelevels")
        .into_iter()
        .find(|i| i["_productid_value"] == d2["productid"])
        .unwrap();
    assert_eq!(d2_item["amount"].as_f64(), Some(199.0));
    assert_eq!(
        row(&env, "products", "productnumber", "D0004").unwrap()["name"],
        "HighEndSpeaker Mk II"
    );
    assert_eq!(env.sb.sales_rows("products").len(), 5);
    assert_eq!(env.sb.sales_rows("productpricelevels").len(), 5);
    // The products batch and the one price list item whose amount changed.
    assert_eq!(sales_writes(&env), 2, "{:?}", env.sb.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_whose_currency_has_no_price_list_fails_alone_and_goes_through_once_there_is_one() {
    let env = Env::start(0).await;
    env.sb.fno_insert(
        "SellableReleasedProducts",
        json!({"dataAreaId": "usmf", "ProductNumber": "E0001", "ProductName": "Euro speaker",
               "ProductType": "Item", "SalesUnitSymbol": "ea", "SalesPrice": 99.0, "UnitCost": 40.0,
               "CurrencyCode": "JPY", "IsStockedProduct": "Yes"}),
    );
    let r = env.run(PRODUCTS).await;
    assert_eq!(
        (r.read, r.written, r.failed, r.dead_lettered),
        (6, 5, 1, 1),
        "{:?}",
        r.errors
    );
    let e = &r.errors[0];
    assert_eq!(e.id, "E0001");
    assert!(
        e.reason.contains("E0001") && e.reason.contains("JPY") && e.reason.contains("price list"),
        "{}",
        e.reason
    );
    assert!(
        row(&env, "products", "productnumber", "E0001").is_none(),
        "nothing is written without a price list"
    );
    let (queued, dead) = env.queued(PRODUCTS).await;
    assert!(queued.is_empty());
    assert_eq!(dead.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&dead[0]).unwrap()["keys"],
        json!(["E0001"])
    );

    // The next sweep leaves it to the DLQ: no second message while its F&O record is the same.
    let r = env.run(PRODUCTS).await;
    assert_eq!((r.failed, r.skipped_by_reason.get(&Skip::FailedEarlier)), (0, Some(&1)));
    assert_eq!(env.queued(PRODUCTS).await, (vec![], vec![]));

    // Someone adds the currency and two price lists in Sales; replaying the message syncs the product into the
    // first of them by name.
    let jpy = env.sb.sales_insert(
        "transactioncurrencies",
        json!({"currencyname": "Yen", "isocurrencycode": "JPY", "currencysymbol": "¥", "exchangerate": 150.0,
               "currencyprecision": 0}),
    );
    env.sb.sales_insert(
        "pricelevels",
        json!({"name": "Tokyo list", "_transactioncurrencyid_value": jpy}),
    );
    let eu_list = env.sb.sales_insert(
        "pricelevels",
        json!({"name": "Japan list", "_transactioncurrencyid_value": jpy}),
    );
    let resp = handle_sqs(&env.deps, PRODUCTS, sqs_event(&[message(PRODUCTS, &["E0001"])])).await;
    assert!(resp.batch_item_failures.is_empty());
    let p = row(&env, "products", "productnumber", "E0001").expect("created on replay");
    assert_eq!(
        p["_pricelevelid_value"],
        eu_list.as_str(),
        "the first JPY price list by name"
    );
    let item = env
        .sb
        .sales_rows("productpricelevels")
        .into_iter()
        .find(|i| i["_productid_value"] == p["productid"])
        .unwrap();
    assert_eq!(item["_pricelevelid_value"], eu_list.as_str());
    assert_eq!(item["amount"].as_f64(), Some(99.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_order_reaches_sales_with_status_totals_and_discount_rounding() {
    let env = Env::start(3).await;
    let account = env.sb.sales_rows("accounts")[0].clone();
    let customer = account["accountnumber"].as_str().unwrap();
    // The customers come from Sales (F&O derives the orders' "externally maintained" flags from them).
    env.run(FlowName::AccountsToFno).await;
    env.run(PRODUCTS).await;
    env.sb
        .fno_insert("CDSSalesOrderHeaders", order("SO-1", customer, "Confirmed"));
    // Qty 3 at $3.33 off each, -$0.01 charge: Sales gets 3 × 3.33 + 0.01 = $10.00 off.
    env.sb
        .fno_insert("CDSSalesOrderLines", line("SO-1", 1, "D0001", 3.0, 250.0, 3.33, -0.01));
    env.sb
        .fno_insert("CDSSalesOrderLines", line("SO-1", 2, "D0003", 2.0, 220.0, 0.0, 0.0));
    // Still Active (not confirmed) in F&O: filtered, with its line.
    env.sb
        .fno_insert("CDSSalesOrderHeaders", order("SO-2", customer, "Active"));
    env.sb
        .fno_insert("CDSSalesOrderLines", line("SO-2", 1, "D0001", 1.0, 250.0, 0.0, 0.0));
    env.sb.reset_counters();

    let r = env.run(ORDERS).await;
    assert_eq!((r.read, r.written, r.created, r.failed), (5, 3, 3, 0), "{r:?}");
    assert_eq!(r.skipped_by_reason.get(&Skip::Filtered), Some(&2));
    println!("first orders sweep: sandbox requests {:?}", env.sb.requests());
    let orders = env.sb.sales_rows("salesorders");
    assert_eq!(orders.len(), 1, "the unconfirmed order stays out of Sales");
    let o = &orders[0];
    assert_eq!(o["ordernumber"], "SO-1");
    assert_eq!(o["name"], "Speakers SO-1");
    assert_eq!(o["description"], "PO 4471");
    assert_eq!(o["msdynce_processingstatus"], 647_390_001, "Confirmed");
    // F&O's order discount and charges; Sales calculates the totals itself from the lines (system pricing).
    assert_eq!(o["discountamount"].as_f64(), Some(10.0));
    assert_eq!(o["freightamount"].as_f64(), Some(25.0));
    assert_eq!(o["totaltax"].as_f64(), Some(16.5), "the lines' F&O tax");
    assert_eq!((o["statecode"].as_i64(), o["statuscode"].as_i64()), (Some(0), Some(1)));
    assert_eq!(o["msdynce_ismaintainedexternally"], true);
    assert_eq!(o["billto_country"], "US");
    assert_eq!(o["shipto_city"], "Redmond");
    assert_eq!(o["_customerid_value"], account["accountid"]);
    assert_eq!(
        o["_owningbusinessunit_value"],
        env.sb.business_unit_id("usmf").unwrap().as_str()
    );
    assert_eq!(
        o["_pricelevelid_value"],
        id(&env, "pricelevels", "name", "CRM Service USA (sample)").as_str()
    );
    let mut lines: Vec<Value> = env.sb.sales_rows("salesorderdetails");
    lines.sort_by_key(|l| l["sequencenumber"].as_i64());
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["_salesorderid_value"] == o["salesorderid"]));
    assert_eq!(
        lines[0]["manualdiscountamount"].as_f64(),
        Some(10.0),
        "discount rounding"
    );
    assert_eq!(lines[0]["quantity"].as_f64(), Some(3.0));
    assert_eq!(lines[0]["priceperunit"].as_f64(), Some(250.0));
    assert_eq!(lines[0]["ispriceoverridden"], true);
    assert_eq!(lines[0]["msdynce_ordernumber"], "SO-1");
    assert_eq!(
        lines[0]["_productid_value"],
        id(&env, "products", "productnumber", "D0001").as_str()
    );
    assert_eq!(lines[0]["_uomid_value"], id(&env, "uoms", "name", "ea").as_str());
    assert_eq!(lines[1]["manualdiscountamount"].as_f64(), Some(0.0));
    assert_eq!(
        lines[1]["_productid_value"],
        id(&env, "products", "productnumber", "D0003").as_str()
    );

    // Nothing changed: nothing read in Sales, nothing written.
    env.sb.reset_counters();
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.skipped_by_reason.get(&Skip::Unchanged)), (0, Some(&3)));
    assert_eq!(env.sb.total_requests("sales"), 0, "{:?}", env.sb.requests());

    // The echo rule: orders-to-fno wrote a Sales change to F&O; it comes back identical and is not written.
    let order_id = o["salesorderid"].as_str().unwrap();
    env.sb
        .sales_update("salesorders", order_id, json!({"description": "PO 9000"}));
    env.sb.fno_update(
        "CDSSalesOrderHeaders",
        &key(&[("dataAreaId", "usmf"), ("SalesOrderNumber", "SO-1")]),
        json!({"CustomersOrderReference": "PO 9000"}),
    );
    env.sb.reset_counters();
    let r = env.run(ORDERS).await;
    assert_eq!(
        (r.written, r.skipped_by_reason.get(&Skip::Echo)),
        (0, Some(&1)),
        "{r:?}"
    );
    assert_eq!(sales_writes(&env), 0, "{:?}", env.sb.requests());
    let r = env.run(ORDERS).await;
    assert_eq!(
        r.skipped_by_reason.get(&Skip::Unchanged),
        Some(&3),
        "the echo's hash is kept"
    );

    // F&O deletes line 2 and adds line 3; F&O's processing status moves on.
    env.sb.fno_delete(
        "CDSSalesOrderLines",
        &key(&[
            ("dataAreaId", "usmf"),
            ("SalesOrderNumber", "SO-1"),
            ("LineCreationSequenceNumber", "2"),
        ]),
    );
    env.sb
        .fno_insert("CDSSalesOrderLines", line("SO-1", 3, "D0002", 4.0, 180.0, 1.5, 0.0));
    env.sb.fno_update(
        "CDSSalesOrderHeaders",
        &key(&[("dataAreaId", "usmf"), ("SalesOrderNumber", "SO-1")]),
        json!({"SalesOrderProcessingStatus": "Delivered"}),
    );
    let r = env.run(ORDERS).await;
    assert_eq!(
        (r.written, r.created, r.updated, r.deleted, r.failed),
        (3, 1, 1, 1, 0),
        "{:?}",
        r.errors
    );
    let mut lines: Vec<Value> = env.sb.sales_rows("salesorderdetails");
    lines.sort_by_key(|l| l["sequencenumber"].as_i64());
    let seqs: Vec<i64> = lines.iter().filter_map(|l| l["sequencenumber"].as_i64()).collect();
    assert_eq!(seqs, vec![1, 3], "line 2 is gone, line 3 is new");
    assert_eq!(lines[1]["manualdiscountamount"].as_f64(), Some(6.0));
    let o = row(&env, "salesorders", "ordernumber", "SO-1").unwrap();
    assert_eq!(o["msdynce_processingstatus"], 647_390_007, "Shipped");
    assert_eq!(o["description"], "PO 9000");
    assert_eq!(env.sb.sales_rows("salesorders").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_links_to_its_order_and_the_order_becomes_invoiced() {
    let env = Env::start(2).await;
    let customer = env.sb.sales_rows("accounts")[0]["accountnumber"]
        .as_str()
        .unwrap()
        .to_string();
    env.run(FlowName::AccountsToFno).await;
    env.run(PRODUCTS).await;
    // An order entered and confirmed in F&O (totals calculated by F&O), synced to Sales.
    let so = env
        .sb
        .fno_create_order("usmf", &customer, &[("D0001", 3.0), ("D0003", 2.0)]);
    env.sb.fno_confirm_order("usmf", &so);
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.failed), (3, 0), "{:?}", r.errors);
    let order_id = id(&env, "salesorders", "ordernumber", &so);

    // F&O posts the invoice (the order becomes Invoiced in F&O too); an invoice of an order that is not in
    // Sales waits for it, named. The flows run in their usual order: orders, then invoices.
    let number = env.sb.fno_invoice_order("usmf", &so);
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.failed), (1, 0), "{:?}", r.errors);
    let o = row(&env, "salesorders", "ordernumber", &so).unwrap();
    assert_eq!(o["msdynce_processingstatus"], 647_390_003, "F&O says Invoiced");
    env.sb.fno_insert(
        "ExternallyMaintainedCustomerSalesInvoiceHeaders",
        invoice("INV-9", "SO-404", &customer),
    );
    env.sb.fno_insert(
        "ExternallyMaintainedCustomerSalesInvoiceLines",
        invoice_line("INV-9", 1, "D0001", 1.0, 250.0),
    );
    let fno_invoice = env
        .sb
        .fno_rows("ExternallyMaintainedCustomerSalesInvoiceHeaders")
        .into_iter()
        .find(|i| i["InvoiceNumber"] == number.as_str())
        .unwrap();
    let r = env.run(INVOICES).await;
    assert_eq!(
        (r.read, r.written, r.failed, r.retry_queued),
        (5, 3, 2, 2),
        "{:?}",
        r.errors
    );
    let e = r
        .errors
        .iter()
        .find(|e| e.key == "INV-9")
        .expect("the invoice of the missing order");
    assert!(
        e.transient && e.reason.contains("SO-404") && e.reason.contains("sales order"),
        "{}",
        e.reason
    );
    assert!(row(&env, "invoices", "invoicenumber", "INV-9").is_none());
    let (queued, _) = env.queued(INVOICES).await;
    assert_eq!(queued.len(), 1, "one message for the invoice, not one per line");
    assert_eq!(
        serde_json::from_str::<Value>(&queued[0]).unwrap()["keys"],
        json!(["INV-9"])
    );

    let inv = row(&env, "invoices", "invoicenumber", &number).expect("invoice in Sales");
    assert_eq!(inv["_salesorderid_value"], order_id.as_str());
    assert_eq!(inv["name"], number.as_str());
    assert_eq!(inv["totalamount"].as_f64(), fno_invoice["TotalInvoiceAmount"].as_f64());
    assert_eq!(inv["totaltax"].as_f64(), fno_invoice["TotalTaxAmount"].as_f64());
    assert_eq!(inv["msdynce_invoicedate"], fno_invoice["InvoiceDate"]);
    assert_eq!(inv["ispricelocked"], true);
    assert_eq!(inv["statuscode"], 4);
    assert_eq!(
        inv["_owningbusinessunit_value"],
        env.sb.business_unit_id("usmf").unwrap().as_str()
    );
    let mut lines: Vec<Value> = env
        .sb
        .sales_rows("invoicedetails")
        .into_iter()
        .filter(|l| l["_invoiceid_value"] == inv["invoiceid"])
        .collect();
    lines.sort_by_key(|l| l["sequencenumber"].as_i64());
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["quantity"].as_f64(), Some(3.0));
    assert_eq!(
        lines[0]["_productid_value"],
        id(&env, "products", "productnumber", "D0001").as_str()
    );
    assert_eq!(lines[1]["quantity"].as_f64(), Some(2.0));
    assert_eq!(lines[0]["msdynce_invoicenumber"], number.as_str());
    let o = row(&env, "salesorders", "ordernumber", &so).unwrap();
    assert_eq!(
        (o["statecode"].as_i64(), o["statuscode"].as_i64()),
        (Some(4), Some(100_003)),
        "Invoiced"
    );

    // Idempotent: the next sweeps write nothing. A later F&O change to the invoiced order still arrives: the
    // order is reopened for it and Invoiced again after it; later sweeps leave it alone.
    env.sb.reset_counters();
    let r = env.run(INVOICES).await;
    assert_eq!((r.written, r.failed), (0, 0), "{:?}", r.errors);
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.failed), (0, 0), "{:?}", r.errors);
    assert_eq!(sales_writes(&env), 0, "{:?}", env.sb.requests());
    env.sb.fno_update(
        "CDSSalesOrderHeaders",
        &key(&[("dataAreaId", "usmf"), ("SalesOrderNumber", &so)]),
        json!({"CustomersOrderReference": "PO after invoicing"}),
    );
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.updated, r.failed), (1, 1, 0), "{r:?}");
    let o = row(&env, "salesorders", "ordernumber", &so).unwrap();
    assert_eq!(o["description"], "PO after invoicing");
    assert_eq!(
        (o["statecode"].as_i64(), o["statuscode"].as_i64()),
        (Some(4), Some(100_003)),
        "Invoiced again"
    );
    env.sb.reset_counters();
    let r = env.run(ORDERS).await;
    assert_eq!(
        (r.written, r.skipped_by_reason.get(&Skip::Unchanged)),
        (0, Some(&3)),
        "{r:?}"
    );
    assert_eq!(env.sb.total_requests("sales"), 0, "{:?}", env.sb.requests());
    assert_eq!(env.sb.sales_rows("salesorders").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_messages_and_lost_links_never_duplicate_and_a_sweep_resumes() {
    let env = Env::start(2).await;
    let customer = env.sb.sales_rows("accounts")[0]["accountnumber"]
        .as_str()
        .unwrap()
        .to_string();
    env.run(FlowName::AccountsToFno).await;

    // The same SQS message twice in one batch, and again later: one product each.
    let body = message(PRODUCTS, &["D0001", "D0002"]);
    let resp = handle_sqs(&env.deps, PRODUCTS, sqs_event(&[body.clone(), body.clone()])).await;
    assert!(resp.batch_item_failures.is_empty());
    let resp = handle_sqs(&env.deps, PRODUCTS, sqs_event(&[body])).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(env.sb.sales_rows("products").len(), 2);
    assert_eq!(env.sb.sales_rows("productpricelevels").len(), 2);

    // A customer missing in Sales: the order waits in the retry queue, named, and nothing is written.
    env.sb.fno_insert(
        "CustomersV2",
        json!({"dataAreaId": "usmf", "CustomerAccount": "ACC-NOT-IN-SALES", "CustomerGroupId": "10",
               "OrganizationName": "Gone Ltd", "IsExternallyMaintained": "Yes"}),
    );
    env.sb
        .fno_insert("CDSSalesOrderHeaders", order("SO-X", "ACC-NOT-IN-SALES", "Confirmed"));
    let r = env.run(ORDERS).await;
    assert_eq!((r.failed, r.retry_queued), (1, 1), "{:?}", r.errors);
    assert!(r.errors[0].reason.contains("ACC-NOT-IN-SALES") && r.errors[0].reason.contains("customer"));
    assert!(env.sb.sales_rows("salesorders").is_empty());
    env.queued(ORDERS).await;

    // An order message delivered twice.
    env.sb
        .fno_insert("CDSSalesOrderHeaders", order("SO-3", &customer, "Confirmed"));
    env.sb
        .fno_insert("CDSSalesOrderLines", line("SO-3", 1, "D0001", 2.0, 250.0, 0.0, 0.0));
    env.sb
        .fno_insert("CDSSalesOrderLines", line("SO-3", 2, "D0002", 1.0, 180.0, 0.0, 0.0));
    let body = message(ORDERS, &["SO-3"]);
    for _ in 0..2 {
        let resp = handle_sqs(&env.deps, ORDERS, sqs_event(std::slice::from_ref(&body))).await;
        assert!(resp.batch_item_failures.is_empty());
    }
    assert_eq!(env.sb.sales_rows("salesorders").len(), 1);
    assert_eq!(env.sb.sales_rows("salesorderdetails").len(), 2);

    // Crash between create and link commit: the links are gone, the records are found by natural key.
    env.run(PRODUCTS).await;
    forget_link(&env, "product", "D0001").await;
    forget_link(&env, "productpricelevel", "D0001").await;
    env.sb.fno_update(
        "SellableReleasedProducts",
        &key(&[("dataAreaId", "usmf"), ("ProductNumber", "D0001")]),
        json!({"SalesPrice": 260.0}),
    );
    let r = env.run(PRODUCTS).await;
    assert_eq!((r.written, r.created, r.updated), (1, 0, 1), "{:?}", r.errors);
    assert_eq!(env.sb.sales_rows("products").len(), 5);
    assert_eq!(env.sb.sales_rows("productpricelevels").len(), 5);
    assert_eq!(
        row(&env, "products", "productnumber", "D0001").unwrap()["price"].as_f64(),
        Some(260.0)
    );
    forget_link(&env, "salesorder", "SO-3").await;
    forget_link(&env, "salesorderdetail", "SO-3/1").await;
    forget_link(&env, "salesorderdetail", "SO-3/2").await;
    let r = env.run(ORDERS).await;
    assert_eq!(
        (r.written, r.skipped_by_reason.get(&Skip::Echo)),
        (0, Some(&3)),
        "{r:?}"
    );
    assert_eq!(env.sb.sales_rows("salesorders").len(), 1);
    assert_eq!(env.sb.sales_rows("salesorderdetails").len(), 2);

    // A sweep that crashed after D0002 resumes after it, and the sweep after that starts from the top.
    let wm = env
        .deps
        .state
        .watermark("products-to-sales", "usmf")
        .await
        .unwrap()
        .map(|w| w.version);
    env.deps
        .state
        .put_watermark("products-to-sales", "usmf", r#"{"after":"D0002"}"#, wm)
        .await
        .unwrap();
    let r = env.run(PRODUCTS).await;
    assert_eq!(r.read, 3, "D0003..D0005");
    let r = env.run(PRODUCTS).await;
    assert_eq!(r.read, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_pages_by_key_and_an_interrupted_sweep_resumes_after_its_last_page() {
    let env = Env::start_with(p2c_sandbox::SandboxConfig::default(), 2, |c| {
        c.page_size = 2;
        c.sweep_page_size = 2;
        c.sweep_document_page_size = 2;
    })
    .await;
    env.run(FlowName::AccountsToFno).await;
    let customer = env.sb.sales_rows("accounts")[0]["accountnumber"]
        .as_str()
        .unwrap()
        .to_string();

    // Stopped after its first page (a Lambda timeout, a crash): the cursor holds the page's last key.
    let stop = RunOptions {
        progress: Some(std::sync::Arc::new(|_: &RunReport| false)),
        ..Default::default()
    };
    let err = run_flow(&env.deps, PRODUCTS, "usmf", &stop).await.unwrap_err();
    assert!(matches!(err, p2c_sync::SyncError::Interrupted { .. }), "{err}");
    let wm = env
        .deps
        .state
        .watermark("products-to-sales", "usmf")
        .await
        .unwrap()
        .unwrap();
    let cursor: serde_json::Value = serde_json::from_str(&wm.value).unwrap();
    assert_eq!(cursor["after"], "D0002", "{}", wm.value);
    assert_eq!(env.sb.sales_rows("products").len(), 2);
    env.sb.reset_counters();
    let r = env.run(PRODUCTS).await;
    assert!(r.resumed);
    assert_eq!((r.read, r.written), (3, 3), "{:?}", r.errors);
    // Pages of two: D0003-D0004, D0005 (a short page ends the sweep).
    assert_eq!(env.sb.requests().get("fno GET SellableReleasedProducts"), Some(&2));
    assert_eq!(env.sb.sales_rows("products").len(), 5);
    let r = env.run(PRODUCTS).await;
    assert_eq!((r.read, r.skipped, r.resumed), (5, 5, false));

    // Orders: each page of headers brings its lines in one range read.
    for n in 1..=3 {
        let so = format!("SO-{n}");
        env.sb
            .fno_insert("CDSSalesOrderHeaders", order(&so, &customer, "Confirmed"));
        for seq in 1..=2 {
            env.sb
                .fno_insert("CDSSalesOrderLines", line(&so, seq, "D0001", 1.0, 250.0, 0.0, 0.0));
        }
    }
    env.sb.reset_counters();
    let r = env.run(ORDERS).await;
    assert_eq!((r.read, r.written, r.failed), (9, 9, 0), "{:?}", r.errors);
    assert_eq!(env.sb.requests().get("fno GET CDSSalesOrderHeaders"), Some(&2));
    assert_eq!(env.sb.requests().get("fno GET CDSSalesOrderLines"), Some(&2));
    assert_eq!(env.sb.sales_rows("salesorderdetails").len(), 6);
}

/// Issue 12, F&O → Sales: a product description cleared in F&O (F&O sends "") clears the Sales product's
/// description (null), once; the next sweep finds every product unchanged and writes nothing to Sales.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_description_cleared_in_fno_clears_the_sales_product_then_sweeps_are_quiet() {
    let env = Env::start(0).await;
    let r = env.run(PRODUCTS).await;
    assert_eq!((r.read, r.created, r.failed), (5, 5, 0), "{:?}", r.errors);
    let before = row(&env, "products", "productnumber", "D0001").unwrap();
    assert!(
        before["description"].as_str().is_some_and(|d| !d.is_empty()),
        "{before}"
    );

    env.sb.fno_update(
        "SellableReleasedProducts",
        &key(&[("dataAreaId", "usmf"), ("ProductNumber", "D0001")]),
        json!({"ProductDescription": ""}),
    );
    env.sb.reset_counters();
    let r = env.run(PRODUCTS).await;
    assert_eq!(
        (r.read, r.written, r.updated, r.skipped),
        (5, 1, 1, 4),
        "{:?}",
        r.errors
    );
    let after = row(&env, "products", "productnumber", "D0001").unwrap();
    assert_eq!(after["description"], Value::Null, "cleared: Sales' no value is null");
    assert_eq!(after["name"], before["name"], "nothing else changed");
    assert_eq!(after["price"], before["price"]);
    assert_eq!(sales_writes(&env), 1, "the product only: {:?}", env.sb.requests());

    env.sb.reset_counters();
    let r = env.run(PRODUCTS).await;
    assert_eq!((r.read, r.written, r.skipped), (5, 0, 5), "{:?}", r.errors);
    assert_eq!(r.skipped_by_reason.get(&Skip::Unchanged), Some(&5));
    assert_eq!(env.sb.total_requests("sales"), 0, "{:?}", env.sb.requests());
    assert_eq!(
        row(&env, "products", "productnumber", "D0001").unwrap()["description"],
        Value::Null
    );

    // Sales typed a description back, and a product's unit was changed by hand: reconcile compares every mapped
    // field, the cleared one and the lookups (by the unit's name) included.
    let pid = id(&env, "products", "productnumber", "D0001");
    let pcs = id(&env, "uoms", "name", "pcs");
    env.sb.sales_update(
        "products",
        &pid,
        json!({"description": "Typed in Sales", "_defaultuomid_value": pcs}),
    );
    let rec = p2c_sync::ops::reconcile::reconcile(&env.deps, PRODUCTS, "usmf", false)
        .await
        .unwrap();
    let mut m: Vec<(&str, &str, &Value, &Value)> = rec
        .mismatches
        .iter()
        .map(|m| (m.key.as_str(), m.field.as_str(), &m.expected, &m.actual))
        .collect();
    m.sort_by_key(|x| x.1);
    assert_eq!(
        m,
        [
            ("D0001", "defaultuomid.name", &json!("ea"), &json!("pcs")),
            ("D0001", "description", &Value::Null, &json!("Typed in Sales")),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_moved_to_another_price_list_leaves_no_item_behind() {
    let env = Env::start(1).await;
    assert_eq!(env.run(PRODUCTS).await.failed, 0);
    let product = env
        .sb
        .sales_rows("products")
        .into_iter()
        .find(|p| p["productnumber"] == "D0002")
        .unwrap();
    let items_of = |env: &Env| -> Vec<Value> {
        env.sb
            .sales_rows("productpricelevels")
            .into_iter()
            .filter(|i| i["_productid_value"] == product["productid"])
            .collect()
    };
    let list_name = |env: &Env, item: &Value| {
        env.sb
            .sales_get("pricelevels", item["_pricelevelid_value"].as_str().unwrap())
            .unwrap()["name"]
            .clone()
    };
    let before = items_of(&env);
    assert_eq!(before.len(), 1);
    // F&O now sells D0002 in euros: its price list item moves to the euro list, and the dollar one goes.
    env.sb.fno_update(
        "SellableReleasedProducts",
        &[("dataAreaId", "usmf"), ("ProductNumber", "D0002")],
        json!({"CurrencyCode": "EUR"}),
    );
    let r = env.run(PRODUCTS).await;
    assert_eq!(r.failed, 0, "{:?}", r.errors);
    let after = items_of(&env);
    assert_eq!(after.len(), 1, "one item, not one per list it ever had: {after:?}");
    assert_eq!(list_name(&env, &after[0]), "Europe Sales (EUR)");
    assert_ne!(after[0]["productpricelevelid"], before[0]["productpricelevelid"]);
    assert_eq!(env.run(PRODUCTS).await.written, 0, "then quiet");
    // A change that keeps the list leaves the item where it is.
    env.sb.fno_update(
        "SellableReleasedProducts",
        &[("dataAreaId", "usmf"), ("ProductNumber", "D0002")],
        json!({"ProductName": "Cabinet, oak"}),
    );
    let r = env.run(PRODUCTS).await;
    assert_eq!(r.written, 1, "{r:?}");
    assert_eq!(
        items_of(&env)[0]["productpricelevelid"],
        after[0]["productpricelevelid"]
    );
}

/// Products start in Draft in a fresh Sales organization and only Active products go on lines: p2c publishes what
/// it creates, and a product it finds still in Draft (created by a run that stopped before publishing it); with
/// "Create products without parent in active state" on, the new products are Active already and nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_are_published_whatever_state_the_organization_creates_them_in() {
    let env = Env::start(0).await;
    let group = id(&env, "uomschedules", "name", "Default unit");
    let draft = env.sb.sales_insert(
        "products",
        json!({"name": "left in Draft", "productnumber": "D0001", "statecode": 2, "statuscode": 0,
               "_defaultuomscheduleid_value": group}),
    );
    let r = env.run(PRODUCTS).await;
    assert_eq!((r.read, r.written, r.created, r.failed), (5, 5, 4, 0), "{:?}", r.errors);
    for p in env.sb.sales_rows("products") {
        assert_eq!((&p["statecode"], &p["statuscode"]), (&json!(0), &json!(1)), "{p}");
    }
    assert_eq!(
        id(&env, "products", "productnumber", "D0001"),
        draft,
        "found, updated and published"
    );
    assert_eq!(env.sb.sales_rows("products").len(), 5);

    let cfg = p2c_sandbox::SandboxConfig {
        create_products_in_active_state: true,
        ..Default::default()
    };
    let env = Env::start_with(cfg, 0, |_| {}).await;
    let r = env.run(PRODUCTS).await;
    assert_eq!((r.read, r.written, r.created, r.failed), (5, 5, 5, 0), "{:?}", r.errors);
    for p in env.sb.sales_rows("products") {
        assert_eq!((&p["statecode"], &p["statuscode"]), (&json!(0), &json!(1)), "{p}");
    }
}
/// A product that leaves F&O's sweep (SellableReleasedProducts no longer has it; F&O publishes no deletes) is
/// reported once and its link marked; with products-to-sales in P2C_DEACTIVATE_TARGETS its Sales product is also
/// retired (statecode 1, statuscode 2). Back in F&O, it loses its mark and a retired product is Active again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_gone_from_fno_is_reported_and_retired_in_sales_only_when_asked() {
    for retire in [false, true] {
        let env = Env::start_with(Default::default(), 1, |c| {
            if retire {
                c.deactivate_targets = vec![PRODUCTS];
            }
        })
        .await;
        assert_eq!(env.run(PRODUCTS).await.failed, 0);
        let fno_product = env
            .sb
            .fno_rows("SellableReleasedProducts")
            .into_iter()
            .find(|p| p["dataAreaId"] == "usmf")
            .unwrap();
        let number = fno_product["ProductNumber"].as_str().unwrap().to_string();
        let product_id = id(&env, "products", "productnumber", &number);
        let key = [("dataAreaId", "usmf"), ("ProductNumber", number.as_str())];
        env.sb.fno_delete("SellableReleasedProducts", &key);

        let r = env.run(PRODUCTS).await;
        assert_eq!(r.failed, 0, "{r:?}");
        let product = env.sb.sales_get("products", &product_id).unwrap();
        if retire {
            assert_eq!(
                (r.written, r.updated, r.created),
                (1, 1, 0),
                "the retirement is the run's one write: {r:?}"
            );
            assert_eq!(
                (&product["statecode"], &product["statuscode"]),
                (&json!(1), &json!(2)),
                "retired"
            );
            assert_eq!(product_mark(&env, &number).await.as_deref(), Some("gone:retired"));
        } else {
            assert_eq!(r.written, 0, "{r:?}");
            assert_eq!(r.skipped_by_reason.get(&Skip::GoneFromFno), Some(&1), "reported: {r:?}");
            assert_eq!(product["statecode"], json!(0), "left active without the opt-in");
            assert_eq!(product_mark(&env, &number).await.as_deref(), Some("gone:deleted"));
        }
        let other = env
            .sb
            .sales_rows("products")
            .into_iter()
            .filter(|p| p["productid"] != product_id.as_str())
            .all(|p| p["statecode"] == json!(0));
        assert!(other, "no other product was touched");

        let again = env.run(PRODUCTS).await;
        assert_eq!(again.written, 0, "once: {again:?}");
        assert_eq!(
            again.skipped_by_reason.get(&Skip::GoneFromFno),
            None,
            "reported once: {again:?}"
        );

        // Released again in F&O: the mark goes, and the product p2c retired is Active again.
        env.sb.fno_insert("SellableReleasedProducts", fno_product.clone());
        let back = env.run(PRODUCTS).await;
        assert_eq!(back.failed, 0, "{back:?}");
        let product = env.sb.sales_get("products", &product_id).unwrap();
        assert_eq!(
            (&product["statecode"], &product["statuscode"]),
            (&json!(0), &json!(1)),
            "active again"
        );
        assert_eq!(product_mark(&env, &number).await, None, "the mark is gone");
    }
}

/// The `source_version` mark on a product's link.
async fn product_mark(env: &Env, number: &str) -> Option<String> {
    let links = env
        .deps
        .state
        .get_links("product", "usmf", "fno", &[number.to_string()])
        .await
        .unwrap();
    links[number].source_version.clone()
}

/// A Sales product serves every company: with retiring on, a product that left one company's sweep while another
/// configured company still sells it is only reported and marked for the first; it is retired when it has left
/// the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_another_company_still_sells_is_not_retired() {
    let env = Env::start_with(Default::default(), 0, |c| {
        c.deactivate_targets = vec![PRODUCTS];
        c.companies.push(p2c_sync::Company {
            legal_entity: "dat".into(),
            business_unit: "dat".into(),
            include_child_units: true,
        });
    })
    .await;
    let key = |c: &'static str| [("dataAreaId", c), ("ProductNumber", "D0001")];
    let mut in_dat = env.sb.fno_get("SellableReleasedProducts", &key("usmf")).unwrap();
    in_dat["dataAreaId"] = json!("dat");
    env.sb.fno_insert("SellableReleasedProducts", in_dat);
    let run = |company: &'static str| {
        let deps = &env.deps;
        async move {
            let r = run_flow(deps, PRODUCTS, company, &RunOptions::default()).await.unwrap();
            assert_eq!(r.failed, 0, "{company}: {r:?}");
            r
        }
    };
    run("usmf").await;
    run("dat").await;
    let product_id = id(&env, "products", "productnumber", "D0001");

    env.sb.fno_delete("SellableReleasedProducts", &key("usmf"));
    let r = run("usmf").await;
    assert_eq!(r.skipped_by_reason.get(&Skip::GoneFromFno), Some(&1), "{r:?}");
    assert_eq!(
        env.sb.sales_get("products", &product_id).unwrap()["statecode"],
        json!(0),
        "dat still sells it"
    );
    assert_eq!(product_mark(&env, "D0001").await.as_deref(), Some("gone:deleted"));

    env.sb.fno_delete("SellableReleasedProducts", &key("dat"));
    let r = run("dat").await;
    assert_eq!(r.written, 1, "{r:?}");
    let product = env.sb.sales_get("products", &product_id).unwrap();
    assert_eq!(
        (&product["statecode"], &product["statuscode"]),
        (&json!(1), &json!(2)),
        "retired with the last"
    );
}
