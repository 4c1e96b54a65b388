//! F&O's totals, invoices and currencies in Sales (issue 12, items 3-5), end to end through the handler against
//! the sandbox and moto. Every test asserts field values in both systems, not p2c's report alone:
//! - a repriced and re-taxed F&O order reaches the totals of the Sales order that started in Sales, then the
//!   flows are quiet both ways; without system pricing F&O's totals are written as they are;
//! - two invoices of one order (one partial) both arrive linked to it, the order ends Invoiced and stays open
//!   to later F&O changes;
//! - invoices in euros and pounds get their currency's price list, and an invoice's header tax its "Freight
//!   Tax" line.

use p2c_e2e::Env;
use p2c_e2e::expect::{assert_document_to_sales, assert_sales_pricing, first_price_list, fno_find, num, round2};
use p2c_sync::{FlowName, Skip};
use serde_json::{Value, json};

const PRODUCTS: FlowName = FlowName::ProductsToSales;
const ACCOUNTS: FlowName = FlowName::AccountsToFno;
const ORDERS: FlowName = FlowName::OrdersToSales;
const ORDERS_TO_FNO: FlowName = FlowName::OrdersToFno;
const INVOICES: FlowName = FlowName::InvoicesToSales;

/// The Sales row of `set` whose `col` is `value`.
fn row(env: &Env, set: &str, col: &str, value: &str) -> Value {
    env.sb
        .sales_rows(set)
        .into_iter()
        .find(|r| r[col] == value)
        .unwrap_or_else(|| panic!("no Sales {set} with {col} = {value}"))
}

/// The Sales lines of a header (`parent_col` = `_salesorderid_value` / `_invoiceid_value`), by sequence number.
fn lines_of(env: &Env, set: &str, parent_col: &str, header_id: &Value) -> Vec<Value> {
    let mut v: Vec<Value> = env
        .sb
        .sales_rows(set)
        .into_iter()
        .filter(|l| &l[parent_col] == header_id)
        .collect();
    v.sort_by_key(|l| (l["msdynce_ismisctax"] == true, l["sequencenumber"].as_i64()));
    v
}

fn freight_tax_lines(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["msdynce_ismisctax"] == true).collect()
}

fn fno_order(env: &Env, number: &str) -> Value {
    fno_find(&env.sb, "CDSSalesOrderHeaders", &[("SalesOrderNumber", json!(number))])
        .unwrap_or_else(|| panic!("F&O order {number}"))
}

fn fno_line(env: &Env, number: &str, seq: i64) -> Value {
    fno_find(
        &env.sb,
        "CDSSalesOrderLines",
        &[
            ("SalesOrderNumber", json!(number)),
            ("LineCreationSequenceNumber", json!(seq)),
        ],
    )
    .unwrap_or_else(|| panic!("F&O order {number} line {seq}"))
}

fn fno_invoice(env: &Env, number: &str) -> Value {
    fno_find(
        &env.sb,
        "ExternallyMaintainedCustomerSalesInvoiceHeaders",
        &[("InvoiceNumber", json!(number))],
    )
    .unwrap_or_else(|| panic!("F&O invoice {number}"))
}

fn order_key(number: &str) -> [(&str, &str); 2] {
    [("dataAreaId", "usmf"), ("SalesOrderNumber", number)]
}

/// Requests that change a service (anything but GET), e.g. `"sales"` or `"fno"`.
fn writes(env: &Env, service: &str) -> u64 {
    env.sb
        .requests()
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{service} ")) && !k.starts_with(&format!("{service} GET")))
        .map(|(_, v)| v)
        .sum()
}

/// Sales' order totals are F&O's: total, tax, and each line's price and tax (Sales' extended amount being F&O's
/// line amount plus its tax: Sales counts tax in it).
fn assert_order_totals_are_fnos(env: &Env, number: &str) -> Value {
    let f = fno_order(env, number);
    let o = row(env, "salesorders", "ordernumber", number);
    assert_eq!(num(&o["totalamount"]), num(&f["OrderTotalAmount"]), "{number}: total");
    assert_eq!(num(&o["totaltax"]), num(&f["OrderTotalTaxAmount"]), "{number}: tax");
    for l in lines_of(env, "salesorderdetails", "_salesorderid_value", &o["salesorderid"]) {
        if l["msdynce_ismisctax"] == true {
            continue;
        }
        let fl = fno_line(env, number, l["sequencenumber"].as_i64().unwrap());
        let what = format!("{number} line {}", l["sequencenumber"]);
        assert_eq!(num(&l["priceperunit"]), num(&fl["SalesPrice"]), "{what}: price");
        assert_eq!(num(&l["tax"]), num(&fl["TotalTaxAmount"]), "{what}: tax");
        assert_eq!(
            num(&l["extendedamount"]),
            round2(num(&fl["LineAmount"]) + num(&fl["TotalTaxAmount"])),
            "{what}: extended amount"
        );
    }
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repriced_and_retaxed_fno_order_reaches_the_sales_totals_then_both_ways_are_quiet() {
    let env = Env::start(2).await;
    env.run(PRODUCTS).await;
    env.run(ACCOUNTS).await;
    // The order starts in Sales, goes to F&O, is confirmed there and comes back: p2c updates it.
    let story = env.sb.seed_story();
    let number = story.order_number.clone();
    assert_eq!(env.run(ORDERS_TO_FNO).await.written, 1);
    env.sb.fno_confirm_order("usmf", &number);
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.created, r.failed), (3, 0, 0), "{:?}", r.errors);
    assert_order_totals_are_fnos(&env, &number);

    // F&O reprices line 1 and adds header tax (a charge's tax); its "Calculate sales totals" batch runs.
    let line1 = [
        ("dataAreaId", "usmf"),
        ("SalesOrderNumber", number.as_str()),
        ("LineCreationSequenceNumber", "1"),
    ];
    env.sb
        .fno_update("CDSSalesOrderLines", &line1, json!({"SalesPrice": 333.0}));
    env.sb.fno_update(
        "CDSSalesOrderHeaders",
        &order_key(&number),
        json!({"OrderHeaderTaxAmount": 12.34}),
    );
    env.sb.fno_confirm_order("usmf", &number);
    let before: Vec<Value> = std::iter::once(env.sb.sales_get("salesorders", &story.order_id).unwrap())
        .chain(lines_of(
            &env,
            "salesorderdetails",
            "_salesorderid_value",
            &json!(story.order_id),
        ))
        .collect();
    let r = env.run(ORDERS).await;
    assert_eq!(
        (r.written, r.updated, r.failed),
        (2, 2, 0),
        "the header and line 1: {:?}",
        r.errors
    );
    let o = assert_order_totals_are_fnos(&env, &number);
    assert_eq!(
        o["salesorderid"],
        story.order_id.as_str(),
        "the order that came from Sales"
    );
    let f = fno_order(&env, &number);
    assert_eq!(
        num(&f["OrderTotalTaxAmount"]),
        round2(
            num(&fno_line(&env, &number, 1)["TotalTaxAmount"])
                + num(&fno_line(&env, &number, 2)["TotalTaxAmount"])
                + 12.34
        )
    );
    assert_eq!(num(&o["msdynce_misctax"]), 12.34);
    let lines = lines_of(&env, "salesorderdetails", "_salesorderid_value", &o["salesorderid"]);
    let freight = freight_tax_lines(&lines);
    assert_eq!(freight.len(), 1, "the header tax as the Freight Tax line");
    assert_eq!(
        (freight[0]["productdescription"].clone(), num(&freight[0]["tax"])),
        (json!("Freight Tax"), 12.34)
    );
    assert_eq!(num(&lines[0]["priceperunit"]), 333.0);
    assert_eq!(lines[0]["ispriceoverridden"], true, "Sales keeps F&O's price");
    assert_document_to_sales(&env, ORDERS, &number, &before).await;

    // Quiet: nothing read or written in Sales; orders-to-fno does not send the change back; still quiet.
    env.sb.reset_counters();
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.skipped_by_reason.get(&Skip::Unchanged)), (0, Some(&3)));
    assert_eq!(env.sb.total_requests("sales"), 0, "{:?}", env.sb.requests());
    let r = env.run(ORDERS_TO_FNO).await;
    assert_eq!((r.written, r.failed), (0, 0), "{r:?}");
    assert_eq!(writes(&env, "fno"), 0, "no ping-pong: {:?}", env.sb.requests());
    let r = env.run(ORDERS).await;
    assert_eq!(r.written, 0, "{r:?}");
    assert_eq!(writes(&env, "sales"), 0, "{:?}", env.sb.requests());

    // The header tax goes away in F&O: so does the Freight Tax line, and the totals follow.
    env.sb.fno_update(
        "CDSSalesOrderHeaders",
        &order_key(&number),
        json!({"OrderHeaderTaxAmount": 0.0}),
    );
    env.sb.fno_confirm_order("usmf", &number);
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.failed), (1, 0), "{:?}", r.errors);
    let o = assert_order_totals_are_fnos(&env, &number);
    let lines = lines_of(&env, "salesorderdetails", "_salesorderid_value", &o["salesorderid"]);
    assert!(freight_tax_lines(&lines).is_empty(), "{lines:?}");
    assert_eq!(lines.len(), 2);
    assert_sales_pricing(&env.sb, "salesorders", &story.order_id);
    env.sb.reset_counters();
    assert_eq!(env.run(ORDERS).await.written, 0);
    assert_eq!(env.sb.total_requests("sales"), 0);
    // The same tax again later is written again (the deleted line left no stale link behind).
    env.sb.fno_update(
        "CDSSalesOrderHeaders",
        &order_key(&number),
        json!({"OrderHeaderTaxAmount": 12.34}),
    );
    env.sb.fno_confirm_order("usmf", &number);
    assert_eq!(env.run(ORDERS).await.failed, 0);
    let o = assert_order_totals_are_fnos(&env, &number);
    let lines = lines_of(&env, "salesorderdetails", "_salesorderid_value", &o["salesorderid"]);
    assert_eq!(freight_tax_lines(&lines).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_system_pricing_fno_totals_are_written_on_create_and_on_every_update() {
    let env = Env::start(1).await;
    // The organization turns "Use system pricing calculation" off: Sales calculates nothing.
    let org = env.sb.sales_rows("organizations")[0]["organizationid"]
        .as_str()
        .unwrap()
        .to_string();
    env.sb
        .sales_update("organizations", &org, json!({"oobpricecalculationenabled": false}));
    env.run(PRODUCTS).await;
    env.run(ACCOUNTS).await;
    let customer = env.sb.sales_rows("accounts")[0]["accountnumber"]
        .as_str()
        .unwrap()
        .to_string();
    let number = env
        .sb
        .fno_create_order("usmf", &customer, &[("D0001", 3.0), ("D0003", 2.0)]);
    env.sb.fno_confirm_order("usmf", &number);
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.created, r.failed), (3, 3, 0), "{:?}", r.errors);
    let check = |env: &Env| {
        let f = fno_order(env, &number);
        let o = row(env, "salesorders", "ordernumber", &number);
        assert_eq!(
            [num(&o["totalamount"]), num(&o["totaltax"])],
            [num(&f["OrderTotalAmount"]), num(&f["OrderTotalTaxAmount"])],
            "F&O's totals, as the template writes them"
        );
        for l in lines_of(env, "salesorderdetails", "_salesorderid_value", &o["salesorderid"]) {
            let fl = fno_line(env, &number, l["sequencenumber"].as_i64().unwrap());
            assert_eq!(
                num(&l["extendedamount"]),
                num(&fl["LineAmount"]),
                "the template's copy of LineAmount"
            );
        }
    };
    check(&env);

    // Repriced in F&O: the totals are updated as they are.
    let line2 = [
        ("dataAreaId", "usmf"),
        ("SalesOrderNumber", number.as_str()),
        ("LineCreationSequenceNumber", "2"),
    ];
    env.sb
        .fno_update("CDSSalesOrderLines", &line2, json!({"SalesPrice": 199.99}));
    env.sb.fno_confirm_order("usmf", &number);
    let before = num(&row(&env, "salesorders", "ordernumber", &number)["totalamount"]);
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.updated, r.failed), (2, 2, 0), "{:?}", r.errors);
    check(&env);
    assert_ne!(
        num(&row(&env, "salesorders", "ordernumber", &number)["totalamount"]),
        before
    );
    env.sb.reset_counters();
    assert_eq!(env.run(ORDERS).await.written, 0);
    assert_eq!(env.sb.total_requests("sales"), 0, "quiet: {:?}", env.sb.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_invoices_of_one_order_link_to_it_and_the_order_ends_invoiced_yet_open_to_fno() {
    let env = Env::start(1).await;
    env.run(PRODUCTS).await;
    env.run(ACCOUNTS).await;
    let customer = env.sb.sales_rows("accounts")[0]["accountnumber"]
        .as_str()
        .unwrap()
        .to_string();
    let number = env
        .sb
        .fno_create_order("usmf", &customer, &[("D0001", 3.0), ("D0003", 2.0)]);
    env.sb.fno_confirm_order("usmf", &number);
    assert_eq!(env.run(ORDERS).await.written, 3);
    let order_id = row(&env, "salesorders", "ordernumber", &number)["salesorderid"].clone();

    // A partial invoice: one of three D0001. The order stays open, Partially Invoiced.
    let first = env.sb.fno_invoice_order_lines("usmf", &number, &[(1, 1.0)]);
    assert_eq!(
        fno_order(&env, &number)["SalesOrderProcessingStatus"],
        "PartiallyInvoiced"
    );
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.failed), (1, 0), "{:?}", r.errors);
    let r = env.run(INVOICES).await;
    assert_eq!((r.written, r.created, r.failed), (2, 2, 0), "{:?}", r.errors);
    let inv1 = row(&env, "invoices", "invoicenumber", &first);
    assert_eq!(inv1["_salesorderid_value"], order_id);
    assert_eq!(
        num(&inv1["totalamount"]),
        num(&fno_invoice(&env, &first)["TotalInvoiceAmount"])
    );
    let o = row(&env, "salesorders", "ordernumber", &number);
    assert_eq!(o["msdynce_processingstatus"], 647_390_009, "Partially Invoiced");
    assert_eq!(o["statecode"], 0, "still open");

    // F&O changes an open line before the rest is invoiced: it arrives.
    let line2 = [
        ("dataAreaId", "usmf"),
        ("SalesOrderNumber", number.as_str()),
        ("LineCreationSequenceNumber", "2"),
    ];
    env.sb
        .fno_update("CDSSalesOrderLines", &line2, json!({"OrderedSalesQuantity": 4.0}));
    env.sb.fno_confirm_order("usmf", &number);
    let r = env.run(ORDERS).await;
    // The line; the header's new totals are Sales' own calculation from it (an echo under system pricing).
    assert_eq!((r.written, r.failed), (1, 0), "{:?}", r.errors);
    let lines = lines_of(&env, "salesorderdetails", "_salesorderid_value", &order_id);
    assert_eq!(num(&lines[1]["quantity"]), 4.0);
    assert_order_totals_are_fnos(&env, &number);

    // The rest: a second invoice, the order Invoiced in F&O; in Sales both invoices link to it and it ends Invoiced.
    let second = env.sb.fno_invoice_order("usmf", &number);
    assert_eq!(fno_order(&env, &number)["SalesOrderProcessingStatus"], "Invoiced");
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.failed), (1, 0), "{:?}", r.errors);
    let r = env.run(INVOICES).await;
    assert_eq!((r.written, r.created, r.failed), (3, 3, 0), "{:?}", r.errors);
    for n in [&first, &second] {
        let inv = row(&env, "invoices", "invoicenumber", n);
        let f = fno_invoice(&env, n);
        assert_eq!(inv["_salesorderid_value"], order_id, "{n} links to the order");
        assert_eq!(num(&inv["totalamount"]), num(&f["TotalInvoiceAmount"]), "{n}");
        assert_eq!(num(&inv["totaltax"]), num(&f["TotalTaxAmount"]), "{n}");
        assert_document_to_sales(&env, INVOICES, n, &[]).await;
    }
    let quantities = |n: &str| -> Vec<f64> {
        let inv = row(&env, "invoices", "invoicenumber", n);
        lines_of(&env, "invoicedetails", "_invoiceid_value", &inv["invoiceid"])
            .iter()
            .map(|l| num(&l["quantity"]))
            .collect()
    };
    assert_eq!(quantities(&first), vec![1.0]);
    assert_eq!(quantities(&second), vec![2.0, 4.0]);
    let o = row(&env, "salesorders", "ordernumber", &number);
    assert_eq!(
        (
            o["statecode"].as_i64(),
            o["statuscode"].as_i64(),
            o["msdynce_processingstatus"].as_i64()
        ),
        (Some(4), Some(100_003), Some(647_390_003)),
        "Invoiced"
    );
    let total: f64 = [&first, &second]
        .iter()
        .map(|n| num(&fno_invoice(&env, n)["TotalInvoiceAmount"]))
        .sum();
    assert_eq!(
        round2(total),
        num(&fno_order(&env, &number)["OrderTotalAmount"]),
        "the invoices add up"
    );

    // A later F&O change to the invoiced order (the customer's reference, a line's description) still arrives;
    // the order is Invoiced again after it, and the flows are quiet afterwards.
    env.sb.fno_update(
        "CDSSalesOrderHeaders",
        &order_key(&number),
        json!({"CustomersOrderReference": "PO 88, reissued"}),
    );
    env.sb
        .fno_update("CDSSalesOrderLines", &line2, json!({"ProductName": "Speaker, walnut"}));
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.updated, r.failed), (2, 2, 0), "{:?}", r.errors);
    let o = row(&env, "salesorders", "ordernumber", &number);
    assert_eq!(o["description"], "PO 88, reissued");
    assert_eq!(
        (o["statecode"].as_i64(), o["statuscode"].as_i64()),
        (Some(4), Some(100_003))
    );
    let lines = lines_of(&env, "salesorderdetails", "_salesorderid_value", &order_id);
    assert_eq!(lines[1]["description"], "Speaker, walnut");
    env.sb.reset_counters();
    assert_eq!(env.run(ORDERS).await.written, 0);
    assert_eq!(env.run(INVOICES).await.written, 0);
    assert_eq!(writes(&env, "sales"), 0, "{:?}", env.sb.requests());
    assert_eq!(env.sb.sales_rows("invoices").len(), 2);

    // An order a Sales user cancelled is still left alone: closed in Sales.
    env.sb.sales_update(
        "salesorders",
        order_id.as_str().unwrap(),
        json!({"statecode": 2, "statuscode": 4}),
    );
    env.sb.fno_update(
        "CDSSalesOrderHeaders",
        &order_key(&number),
        json!({"CustomersOrderReference": "PO 89"}),
    );
    let r = env.run(ORDERS).await;
    assert_eq!(
        (r.written, r.skipped_by_reason.get(&Skip::ClosedInSales)),
        (0, Some(&1)),
        "{r:?}"
    );
    assert_eq!(
        row(&env, "salesorders", "ordernumber", &number)["description"],
        "PO 88, reissued"
    );
}

/// A confirmed F&O order of `customer` in `currency` (lines D0001 ×2 at 250, D0003 ×1 at 220) with header tax, as
/// F&O would hold it before the totals batch; confirm it to calculate.
fn fno_order_in(env: &Env, number: &str, customer: &str, currency: &str, header_tax: f64) {
    env.sb.fno_insert(
        "CDSSalesOrderHeaders",
        json!({"dataAreaId": "usmf", "SalesOrderNumber": number, "SalesOrderName": format!("Order {number}"),
               "OrderingCustomerAccountNumber": customer, "InvoiceCustomerAccountNumber": customer,
               "SalesOrderProcessingStatus": "Active", "SalesOrderStatus": "Backorder",
               "SalesOrderOriginType": "NotSpecified", "CurrencyCode": currency,
               "OrderHeaderTaxAmount": header_tax, "DeliveryAddressCountryRegionISOCode": "DE"}),
    );
    for (seq, product, qty, price) in [(1, "D0001", 2.0, 250.0), (2, "D0003", 1.0, 220.0)] {
        env.sb.fno_insert(
            "CDSSalesOrderLines",
            json!({"dataAreaId": "usmf", "SalesOrderNumber": number, "LineCreationSequenceNumber": seq,
                   "ProductNumber": product, "ProductName": format!("{product} name"), "OrderedSalesQuantity": qty,
                   "SalesUnitSymbol": "ea", "SalesPrice": price, "SalesPriceQuantity": 1, "CurrencyCode": currency,
                   "SalesOrderProcessingStatus": "Active", "SalesOrderOriginType": "NotSpecified"}),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_in_euros_and_pounds_get_their_price_lists_and_header_tax_a_freight_tax_line() {
    let env = Env::start(1).await;
    env.run(PRODUCTS).await;
    env.run(ACCOUNTS).await;
    let customer = env.sb.sales_rows("accounts")[0]["accountnumber"]
        .as_str()
        .unwrap()
        .to_string();
    fno_order_in(&env, "SO-EUR", &customer, "EUR", 7.5);
    fno_order_in(&env, "SO-GBP", &customer, "GBP", 0.0);
    for so in ["SO-EUR", "SO-GBP"] {
        env.sb.fno_confirm_order("usmf", so);
    }
    let r = env.run(ORDERS).await;
    assert_eq!((r.written, r.created, r.failed), (6, 6, 0), "{:?}", r.errors);
    let eur = env.sb.fno_invoice_order("usmf", "SO-EUR");
    let gbp = env.sb.fno_invoice_order("usmf", "SO-GBP");
    assert_eq!(num(&fno_invoice(&env, &eur)["InvoiceHeaderTaxAmount"]), 7.5);
    assert_eq!(env.run(ORDERS).await.failed, 0);
    let r = env.run(INVOICES).await;
    assert_eq!((r.written, r.created, r.failed), (6, 6, 0), "{:?}", r.errors);

    for (number, so, iso, list) in [
        (&eur, "SO-EUR", "EUR", "Europe Sales (EUR)"),
        (&gbp, "SO-GBP", "GBP", "UK Sales (GBP)"),
    ] {
        assert_eq!(first_price_list(&env.sb, iso).as_deref(), Some(list));
        let inv = row(&env, "invoices", "invoicenumber", number);
        let f = fno_invoice(&env, number);
        let currency = row(&env, "transactioncurrencies", "isocurrencycode", iso);
        let price_list = row(&env, "pricelevels", "name", list);
        assert_eq!(
            inv["_transactioncurrencyid_value"], currency["transactioncurrencyid"],
            "{number}"
        );
        assert_eq!(
            inv["_pricelevelid_value"], price_list["pricelevelid"],
            "{number}: {list}"
        );
        assert_eq!(
            inv["ispricelocked"], true,
            "{number}: locked by the update after its create"
        );
        assert_eq!(num(&inv["totalamount"]), num(&f["TotalInvoiceAmount"]), "{number}");
        assert_eq!(num(&inv["totaltax"]), num(&f["TotalTaxAmount"]), "{number}");
        let order = row(&env, "salesorders", "ordernumber", so);
        assert_eq!(inv["_salesorderid_value"], order["salesorderid"]);
        assert_eq!(order["_pricelevelid_value"], price_list["pricelevelid"], "{so}: {list}");
        assert_eq!(order["statecode"], 4, "{so}: Invoiced");
        assert_document_to_sales(&env, INVOICES, number, &[]).await;
    }
    // The euro invoice's header tax is its Freight Tax line; the pound invoice has none.
    let inv = row(&env, "invoices", "invoicenumber", &eur);
    let lines = lines_of(&env, "invoicedetails", "_invoiceid_value", &inv["invoiceid"]);
    let freight = freight_tax_lines(&lines);
    assert_eq!(freight.len(), 1);
    assert_eq!(freight[0]["productdescription"], "Freight Tax");
    assert_eq!(freight[0]["isproductoverridden"], true);
    assert_eq!(num(&freight[0]["tax"]), 7.5);
    assert_eq!(num(&inv["msdynce_misctax"]), 7.5);
    let inv = row(&env, "invoices", "invoicenumber", &gbp);
    assert!(freight_tax_lines(&lines_of(&env, "invoicedetails", "_invoiceid_value", &inv["invoiceid"])).is_empty());

    env.sb.reset_counters();
    assert_eq!(env.run(INVOICES).await.written, 0);
    assert_eq!(env.run(ORDERS).await.written, 0);
    assert_eq!(writes(&env, "sales"), 0, "quiet: {:?}", env.sb.requests());
}
