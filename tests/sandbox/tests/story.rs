//! The prospect-to-cash story: Sales state rules and system pricing, the F&O business events (confirm with the
//! totals batch, invoice, orders entered in F&O), the F&O validations the flows hit, and the demo data.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::*;
use p2c_sandbox::{FNO_SALES_TAX_RATE, Sandbox};
use reqwest::Response;
use serde_json::{Value, json};

// ------------------------------------------------------------------------------------------------ helpers

fn find(sb: &Sandbox, set: &str, col: &str, value: &str) -> Value {
    sb.sales_rows(set)
        .into_iter()
        .find(|r| r[col] == value)
        .unwrap_or_else(|| panic!("no {set} row with {col} = {value}"))
}

fn id(sb: &Sandbox, set: &str, col: &str, value: &str) -> String {
    let pk = match set {
        "transactioncurrencies" => "transactioncurrencyid".to_string(),
        _ => format!("{}id", set.trim_end_matches('s')),
    };
    find(sb, set, col, value)[&pk].as_str().unwrap().to_string()
}

fn created_id(r: &Response) -> String {
    let e = r.headers()["odata-entityid"].to_str().unwrap();
    e.rsplit('(').next().unwrap().trim_end_matches(')').to_string()
}

/// (status, error code, error message) of a Dataverse error response.
async fn dv_error(r: Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v = json(r).await;
    (
        status,
        v["error"]["code"].as_str().unwrap_or("").to_string(),
        v["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

/// (status, innererror message) of an F&O error response.
async fn fno_error(r: Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v = json(r).await;
    assert_eq!(
        v["error"]["innererror"]["type"],
        "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException",
        "{v}"
    );
    (
        status,
        v["error"]["innererror"]["message"].as_str().unwrap().to_string(),
    )
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The F&O products of usmf in Sales, as the products-to-sales flow leaves them: the product (externally
/// maintained, unit `ea`, price list "CRM Service USA (sample)") and its price list item.
fn products_in_sales(sb: &Sandbox) {
    let ea = id(sb, "uoms", "name", "ea");
    let usd = id(sb, "transactioncurrencies", "isocurrencycode", "USD");
    let pl = id(sb, "pricelevels", "name", "CRM Service USA (sample)");
    let sched = find(sb, "uomschedules", "name", "Default unit")["uomscheduleid"].clone();
    for p in sb.fno_rows("SellableReleasedProducts") {
        let pid = sb.sales_insert(
            "products",
            json!({"name": p["ProductName"], "productnumber": p["ProductNumber"], "price": p["SalesPrice"],
                   "currentcost": p["UnitCost"], "_defaultuomid_value": ea, "_defaultuomscheduleid_value": sched,
                   "_transactioncurrencyid_value": usd, "_pricelevelid_value": pl,
                   "msdynce_ismaintainedexternally": true}),
        );
        sb.sales_insert(
            "productpricelevels",
            json!({"_pricelevelid_value": pl, "_productid_value": pid, "_uomid_value": ea,
                   "amount": p["SalesPrice"], "pricingmethodcode": 1, "_transactioncurrencyid_value": usd}),
        );
    }
}

struct Refs {
    account: String,
    pl: String,
    usd: String,
    ea: String,
}

fn refs(sb: &Sandbox) -> Refs {
    Refs {
        account: sb.sales_rows("accounts")[0]["accountid"].as_str().unwrap().to_string(),
        pl: id(sb, "pricelevels", "name", "CRM Service USA (sample)"),
        usd: id(sb, "transactioncurrencies", "isocurrencycode", "USD"),
        ea: id(sb, "uoms", "name", "ea"),
    }
}

fn header_body(r: &Refs, name: &str) -> Value {
    json!({"name": name, "customerid_account@odata.bind": format!("/accounts({})", r.account),
           "pricelevelid@odata.bind": format!("/pricelevels({})", r.pl),
           "transactioncurrencyid@odata.bind": format!("/transactioncurrencies({})", r.usd)})
}

fn line_body(sb: &Sandbox, r: &Refs, header: (&str, &str), product: &str, qty: f64) -> Value {
    let p = id(sb, "products", "productnumber", product);
    json!({format!("{}@odata.bind", header.0): header.1, "productid@odata.bind": format!("/products({p})"),
           "uomid@odata.bind": format!("/uoms({})", r.ea), "quantity": qty})
}

async fn post_id(api: &Api, set: &str, body: &Value) -> String {
    let r = api.post(set, body).send().await.unwrap();
    assert_eq!(r.status(), 204, "POST {set} {body}");
    created_id(&r)
}

async fn patch_status(api: &Api, path: &str, body: Value) -> u16 {
    api.patch(path, &body).send().await.unwrap().status().as_u16()
}

fn part(method: &str, url: &str, body: Option<&Value>, content_id: Option<u32>) -> String {
    let mut s = String::from("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
    if let Some(id) = content_id {
        s.push_str(&format!("Content-ID: {id}\r\n"));
    }
    s.push_str(&format!("\r\n{method} {url} HTTP/1.1\r\n"));
    match body {
        Some(b) => s.push_str(&format!("Content-Type: application/json\r\n\r\n{b}\r\n")),
        None => s.push_str("\r\n"),
    }
    s
}

fn customer(account: &str, external: bool) -> Value {
    json!({"dataAreaId": "usmf", "CustomerAccount": account, "OrganizationName": format!("Customer {account}"),
           "CustomerGroupId": "10", "IsExternallyMaintained": if external { "Yes" } else { "No" },
           "SalesCurrencyCode": "USD", "LanguageId": "en-us", "AddressStreet": "1 Main St",
           "AddressCity": "Seattle", "AddressZipCode": "98101", "AddressState": "WA",
           "AddressCountryRegionId": "USA", "AddressCountryRegionISOCode": "US"})
}

const ORDER_KEY: &str = "CDSSalesOrderHeaders(dataAreaId='usmf',SalesOrderNumber='ORD-1')?cross-company=true";

/// An F&O order `ORD-1` for `account` written the way the orders-to-fno flow writes it: D0001 ×2, and D0003 ×3
/// with a whole-line discount of 10.00.
async fn fno_order(api: &Api, account: &str) {
    let r = api
        .post(
            "CDSSalesOrderHeaders",
            &json!({"dataAreaId": "usmf", "SalesOrderNumber": "ORD-1", "OrderingCustomerAccountNumber": account,
                    "CustomersOrderReference": "Speakers", "CurrencyCode": "USD"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for (seq, product, qty, discount, price) in [(1, "D0001", 2.0, 0.0, 250.0), (2, "D0003", 3.0, 10.0, 220.0)] {
        let r = api
            .post(
                "CDSSalesOrderLines",
                &json!({"dataAreaId": "usmf", "SalesOrderNumber": "ORD-1", "LineCreationSequenceNumber": seq,
                        "ProductNumber": product, "OrderedSalesQuantity": qty, "SalesUnitSymbol": "ea",
                        "SalesPrice": price, "TotalDiscountAmount": discount}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "line {seq}");
    }
}

fn fno_line(sb: &Sandbox, seq: &str) -> Value {
    sb.fno_get(
        "CDSSalesOrderLines",
        &[
            ("dataAreaId", "usmf"),
            ("SalesOrderNumber", "ORD-1"),
            ("LineCreationSequenceNumber", seq),
        ],
    )
    .unwrap()
}

fn fno_header(sb: &Sandbox, number: &str) -> Value {
    sb.fno_get(
        "CDSSalesOrderHeaders",
        &[("dataAreaId", "usmf"), ("SalesOrderNumber", number)],
    )
    .unwrap()
}

// ------------------------------------------------------------------------------------------------ Sales

#[tokio::test]
async fn quotes_are_editable_only_in_draft_and_state_pairs_are_checked() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    products_in_sales(&sb);
    let api = Api::sales(&sb).await;
    let r = refs(&sb);

    // statecode is not valid on create.
    let mut with_state = header_body(&r, "Q0");
    with_state["statecode"] = json!(1);
    let (status, code, _) = dv_error(api.post("quotes", &with_state).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "0x80040203"));

    let q = post_id(&api, "quotes", &header_body(&r, "Q1")).await;
    let qpath = format!("quotes({q})");
    let bind = format!("/quotes({q})");
    let line = post_id(
        &api,
        "quotedetails",
        &line_body(&sb, &r, ("quoteid", &bind), "D0001", 2.0),
    )
    .await;
    let row = sb.sales_get("quotes", &q).unwrap();
    assert_eq!(
        (row["statecode"].clone(), row["statuscode"].clone()),
        (json!(0), json!(1))
    );

    // A status that does not belong to the state: 400 with the platform's wording.
    let bad = api
        .patch(&qpath, &json!({"statecode": 1, "statuscode": 4}))
        .send()
        .await
        .unwrap();
    let (status, code, msg) = dv_error(bad).await;
    assert_eq!((status, code.as_str()), (400, "0x80040203"));
    assert_eq!(
        msg,
        format!("4 is not a valid status code for state code QuoteState.Active on quote with Id {q}.")
    );
    assert_eq!(sb.sales_get("quotes", &q).unwrap()["statecode"], 0, "nothing changed");

    // Activate: the state change itself is always allowed.
    assert_eq!(
        patch_status(&api, &qpath, json!({"statecode": 1, "statuscode": 2})).await,
        204
    );

    // An active quote and its lines are read-only.
    let read_only = |r: (u16, String, String)| {
        assert_eq!(
            r,
            (
                400,
                "0x8004022e".to_string(),
                "The object cannot be updated because it is read-only.".to_string()
            )
        )
    };
    read_only(dv_error(api.patch(&qpath, &json!({"name": "changed"})).send().await.unwrap()).await);
    read_only(
        dv_error(
            api.post("quotedetails", &line_body(&sb, &r, ("quoteid", &bind), "D0002", 1.0))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    read_only(
        dv_error(
            api.patch(&format!("quotedetails({line})"), &json!({"quantity": 5}))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    read_only(dv_error(api.delete(&format!("quotedetails({line})")).send().await.unwrap()).await);
    read_only(
        dv_error(
            api.client
                .put(format!("{}/{qpath}/name", api.base))
                .bearer_auth(&api.token)
                .json(&json!({"value": "x"}))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    assert_eq!(sb.sales_get("quotes", &q).unwrap()["name"], "Q1");
    assert_eq!(sb.sales_rows("quotedetails").len(), 1);

    // Won and Closed are read-only too; a state change between closed states is still a state change.
    assert_eq!(
        patch_status(&api, &qpath, json!({"statecode": 3, "statuscode": 6})).await,
        204
    );
    assert_eq!(patch_status(&api, &qpath, json!({"statuscode": 5})).await, 204);
    assert_eq!(patch_status(&api, &qpath, json!({"description": "x"})).await, 400);

    // Reopen and edit in one PATCH; activate and edit in one PATCH.
    assert_eq!(
        patch_status(
            &api,
            &qpath,
            json!({"statecode": 0, "statuscode": 1, "name": "Revised"})
        )
        .await,
        204
    );
    assert_eq!(
        patch_status(
            &api,
            &qpath,
            json!({"statecode": 1, "statuscode": 2, "description": "sent"})
        )
        .await,
        204
    );
    let row = sb.sales_get("quotes", &q).unwrap();
    assert_eq!(
        (row["name"].clone(), row["description"].clone()),
        (json!("Revised"), json!("sent"))
    );
    assert_eq!(
        (row["statecode"].clone(), row["statuscode"].clone()),
        (json!(1), json!(2))
    );
}

#[tokio::test]
async fn the_rules_hold_inside_batch_change_sets() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    products_in_sales(&sb);
    let api = Api::sales(&sb).await;
    let r = refs(&sb);
    let draft = post_id(&api, "quotes", &header_body(&r, "Draft")).await;
    let active = post_id(&api, "quotes", &header_body(&r, "Active")).await;
    assert_eq!(
        patch_status(
            &api,
            &format!("quotes({active})"),
            json!({"statecode": 1, "statuscode": 2})
        )
        .await,
        204
    );
    let body = format!(
        "--batch_1\r\nContent-Type: multipart/mixed; boundary=cs_1\r\n\r\n\
         --cs_1\r\n{}--cs_1\r\n{}--cs_1--\r\n\
         --batch_1\r\n{}--batch_1--\r\n",
        part(
            "PATCH",
            &format!("/api/data/v9.2/quotes({draft})"),
            Some(&json!({"name": "renamed in batch"})),
            Some(1)
        ),
        part(
            "POST",
            "/api/data/v9.2/quotedetails",
            Some(&line_body(
                &sb,
                &r,
                ("quoteid", &format!("/quotes({active})")),
                "D0001",
                1.0
            )),
            Some(2)
        ),
        part(
            "PATCH",
            &format!("/api/data/v9.2/quotes({active})"),
            Some(&json!({"name": "nope"})),
            None
        ),
    );
    let resp = api.batch("batch_1", body.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 400, "the batch takes the status of its first failure");
    let text = resp.text().await.unwrap();
    assert!(text.contains("0x8004022e"), "{text}");
    assert_eq!(
        sb.sales_get("quotes", &draft).unwrap()["name"],
        "Draft",
        "the change set was rolled back"
    );
    assert!(sb.sales_rows("quotedetails").is_empty());

    // With continue-on-error every part answers; the independent PATCH of the active quote fails on its own.
    let resp = api
        .batch("batch_1", body)
        .header("Prefer", "odata.continue-on-error")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_eq!(text.matches("0x8004022e").count(), 2, "{text}");
    assert_eq!(sb.sales_get("quotes", &active).unwrap()["name"], "Active");
}

#[tokio::test]
async fn orders_stay_editable_while_active_and_invoices_lock_when_paid() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    products_in_sales(&sb);
    let api = Api::sales(&sb).await;
    let r = refs(&sb);

    // An order from F&O: Active, and the flow keeps writing to it.
    let o = post_id(&api, "salesorders", &header_body(&r, "From F&O")).await;
    let opath = format!("salesorders({o})");
    let obind = format!("/salesorders({o})");
    post_id(
        &api,
        "salesorderdetails",
        &line_body(&sb, &r, ("salesorderid", &obind), "D0001", 1.0),
    )
    .await;
    assert_eq!(
        patch_status(
            &api,
            &opath,
            json!({"msdynce_processingstatus": 647_390_001, "statecode": 0, "statuscode": 1})
        )
        .await,
        204
    );
    assert_eq!(
        patch_status(&api, &opath, json!({"msdynce_processingstatus": 647_390_007})).await,
        204
    );
    post_id(
        &api,
        "salesorderdetails",
        &line_body(&sb, &r, ("salesorderid", &obind), "D0002", 1.0),
    )
    .await;

    // Fulfilled, Canceled and Invoiced orders are read-only; a state change takes them back.
    for (state, status) in [(3, 100_001), (2, 4), (4, 100_003)] {
        assert_eq!(
            patch_status(&api, &opath, json!({"statecode": state, "statuscode": status})).await,
            204
        );
        let (st, code, _) = dv_error(
            api.patch(&opath, &json!({"msdynce_processingstatus": 647_390_003}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((st, code.as_str()), (400, "0x8004022e"), "state {state}");
        let (st, _, _) = dv_error(
            api.post(
                "salesorderdetails",
                &line_body(&sb, &r, ("salesorderid", &obind), "D0003", 1.0),
            )
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(st, 400);
        assert_eq!(
            patch_status(&api, &opath, json!({"statecode": 0, "statuscode": 1})).await,
            204
        );
    }
    assert_eq!(sb.sales_rows("salesorderdetails").len(), 2);
    // Submitted (1) with an Active-only status is refused.
    assert_eq!(
        patch_status(&api, &opath, json!({"statecode": 1, "statuscode": 1})).await,
        400
    );

    // Invoices: Billed (Active) is editable; Paid and Canceled are read-only.
    let mut inv = header_body(&r, "INV");
    inv["statuscode"] = json!(4);
    inv["ispricelocked"] = json!(true);
    let i = post_id(&api, "invoices", &inv).await;
    assert_eq!(sb.sales_get("invoices", &i).unwrap()["statuscode"], 4);
    let ipath = format!("invoices({i})");
    let ibind = format!("/invoices({i})");
    post_id(
        &api,
        "invoicedetails",
        &line_body(&sb, &r, ("invoiceid", &ibind), "D0001", 1.0),
    )
    .await;
    assert_eq!(patch_status(&api, &ipath, json!({"description": "ok"})).await, 204);
    assert_eq!(
        patch_status(&api, &ipath, json!({"statecode": 2, "statuscode": 100_001})).await,
        204
    );
    assert_eq!(patch_status(&api, &ipath, json!({"description": "paid"})).await, 400);
    let (st, code, _) = dv_error(
        api.post(
            "invoicedetails",
            &line_body(&sb, &r, ("invoiceid", &ibind), "D0002", 1.0),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((st, code.as_str()), (400, "0x8004022e"));
    assert_eq!(
        patch_status(&api, &ipath, json!({"statecode": 3, "statuscode": 100_003})).await,
        204
    );
    assert_eq!(patch_status(&api, &ipath, json!({"name": "canceled"})).await, 400);

    // The Rust API is trusted test set-up: no editing rules.
    sb.sales_update("invoices", &i, json!({"description": "fixed by a test"}));
}

#[tokio::test]
async fn system_pricing_computes_lines_and_header_totals() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    products_in_sales(&sb);
    let api = Api::sales(&sb).await;
    let r = refs(&sb);
    let usmf = sb.business_unit_id("usmf").unwrap();

    let mut head = header_body(&r, "Priced");
    let team = sb.default_team_id(&usmf).unwrap();
    head["ownerid@odata.bind"] = json!(format!("/teams({team})"));
    head["totalamount"] = json!(99999); // not valid for create: ignored
    let q = post_id(&api, "quotes", &head).await;
    assert_eq!(sb.sales_get("quotes", &q).unwrap()["totalamount"], 0.0);
    let bind = format!("/quotes({q})");

    // Price from the price list item; computed columns in a create are ignored.
    let mut l1 = line_body(&sb, &r, ("quoteid", &bind), "D0001", 2.0);
    l1["priceperunit"] = json!(1);
    l1["extendedamount"] = json!(1);
    l1["baseamount"] = json!(1);
    let l1 = post_id(&api, "quotedetails", &l1).await;
    let row = sb.sales_get("quotedetails", &l1).unwrap();
    assert_eq!(num(&row["priceperunit"]), 250.0, "Use Default: the price list's price");
    assert_eq!(num(&row["baseamount"]), 500.0);
    assert_eq!(num(&row["extendedamount"]), 500.0);
    assert_eq!(row["sequencenumber"], 1, "the next sequence number of the quote");
    assert_eq!(
        row["_transactioncurrencyid_value"],
        json!(r.usd),
        "the quote's currency"
    );
    assert_eq!(
        row["_owningbusinessunit_value"],
        json!(usmf),
        "the quote's business unit"
    );
    assert_eq!(row["_ownerid_value"], json!(team), "the quote's owner");

    // Override price: kept; line-item discount and tax: extended = qty × price - discount + tax.
    let mut l2 = line_body(&sb, &r, ("quoteid", &bind), "D0003", 3.0);
    l2["ispriceoverridden"] = json!(true);
    l2["priceperunit"] = json!(200.5);
    l2["manualdiscountamount"] = json!(10);
    l2["tax"] = json!(59.15);
    let l2 = post_id(&api, "quotedetails", &l2).await;
    let row = sb.sales_get("quotedetails", &l2).unwrap();
    assert_eq!(num(&row["priceperunit"]), 200.5);
    assert_eq!(num(&row["baseamount"]), 601.5);
    assert_eq!(num(&row["extendedamount"]), 650.65);
    assert_eq!(row["sequencenumber"], 2);

    // A written sequence number is kept.
    let mut l3 = line_body(&sb, &r, ("quoteid", &bind), "D0002", 1.0);
    l3["sequencenumber"] = json!(7);
    let l3 = post_id(&api, "quotedetails", &l3).await;
    assert_eq!(sb.sales_get("quotedetails", &l3).unwrap()["sequencenumber"], 7);

    let totals = |sb: &Sandbox| {
        let h = sb.sales_get("quotes", &q).unwrap();
        [
            "totallineitemamount",
            "totallineitemdiscountamount",
            "totaltax",
            "totaldiscountamount",
            "totalamountlessfreight",
            "totalamount",
        ]
        .map(|c| num(&h[c]))
    };
    // Detail amount excludes tax: (500) + (650.65 - 59.15) + (180) = 1271.5.
    assert_eq!(totals(&sb), [1271.5, 10.0, 59.15, 10.0, 1271.5, 1330.65]);

    // Header discount (amount and percent) and freight.
    assert_eq!(
        patch_status(
            &api,
            &format!("quotes({q})"),
            json!({"discountamount": 21.5, "discountpercentage": 10, "freightamount": 15})
        )
        .await,
        204
    );
    // Header discount = 21.5 + 127.15 = 148.65; pre-freight 1122.85; total 1122.85 + 15 + 59.15.
    assert_eq!(totals(&sb), [1271.5, 10.0, 59.15, 158.65, 1122.85, 1197.0]);

    // Writing a computed column in an update is accepted, and recalculated.
    let p = format!("quotedetails({l1})");
    assert_eq!(
        patch_status(&api, &p, json!({"extendedamount": 1, "baseamount": 2})).await,
        204
    );
    let row = sb.sales_get("quotedetails", &l1).unwrap();
    assert_eq!((num(&row["baseamount"]), num(&row["extendedamount"])), (500.0, 500.0));
    assert_eq!(
        patch_status(&api, &format!("quotes({q})"), json!({"totalamount": 1})).await,
        204
    );
    assert_eq!(totals(&sb)[5], 1197.0);

    // Quantity change and line delete recalculate the header; each recalculation is a new version.
    let before = sb.sales_get("quotes", &q).unwrap()["versionnumber"].clone();
    assert_eq!(patch_status(&api, &p, json!({"quantity": 4})).await, 204);
    assert_eq!(
        num(&sb.sales_get("quotedetails", &l1).unwrap()["extendedamount"]),
        1000.0
    );
    assert_eq!(totals(&sb)[0], 1771.5);
    assert_ne!(sb.sales_get("quotes", &q).unwrap()["versionnumber"], before);
    let r204 = api.delete(&format!("quotedetails({l3})")).send().await.unwrap();
    assert_eq!(r204.status(), 204);
    assert_eq!(totals(&sb)[0], 1591.5);

    // F&O's line amounts arrive as an order line with a fixed price: extended amount = LineAmount + tax.
    let o = post_id(&api, "salesorders", &header_body(&r, "From F&O")).await;
    let mut ol = line_body(&sb, &r, ("salesorderid", &format!("/salesorders({o})")), "D0003", 3.0);
    for (k, v) in [
        ("ispriceoverridden", json!(true)),
        ("priceperunit", json!(220)),
        ("manualdiscountamount", json!(10)),
        ("tax", json!(65)),
        ("extendedamount", json!(650.01)),
        ("sequencenumber", json!(2)),
    ] {
        ol[k] = v;
    }
    let ol = post_id(&api, "salesorderdetails", &ol).await;
    let row = sb.sales_get("salesorderdetails", &ol).unwrap();
    assert_eq!((num(&row["priceperunit"]), num(&row["extendedamount"])), (220.0, 715.0));
    let h = sb.sales_get("salesorders", &o).unwrap();
    assert_eq!((num(&h["totalamount"]), num(&h["totaltax"])), (715.0, 65.0));

    // The Rust API runs the same calculation.
    sb.sales_update("salesorderdetails", &ol, json!({"quantity": 1}));
    assert_eq!(num(&sb.sales_get("salesorders", &o).unwrap()["totalamount"]), 275.0);
    sb.sales_delete("salesorderdetails", &ol);
    assert_eq!(num(&sb.sales_get("salesorders", &o).unwrap()["totalamount"]), 0.0);
}

/// The organization row and its "Use system pricing calculation" setting.
fn organization(sb: &Sandbox) -> (String, bool) {
    let rows = sb.sales_rows("organizations");
    assert_eq!(rows.len(), 1, "one organization");
    (
        rows[0]["organizationid"].as_str().unwrap().to_string(),
        rows[0]["oobpricecalculationenabled"].as_bool().unwrap(),
    )
}

#[tokio::test]
async fn totals_follow_system_pricing_and_stick_only_when_the_org_turns_it_off() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    products_in_sales(&sb);
    let api = Api::sales(&sb).await;
    let r = refs(&sb);
    let (org, system) = organization(&sb);
    assert!(system, "Use system pricing calculation = Yes, as P2C requires");
    let read = json(
        api.get("organizations?$select=oobpricecalculationenabled")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(read["value"][0]["oobpricecalculationenabled"], true);

    // An order from F&O: fixed price, F&O's tax. Totals in the create are not valid for create: ignored.
    let mut head = header_body(&r, "Repriced");
    head["totalamount"] = json!(9999);
    head["totaltax"] = json!(999);
    let o = post_id(&api, "salesorders", &head).await;
    let mut line = line_body(&sb, &r, ("salesorderid", &format!("/salesorders({o})")), "D0001", 2.0);
    for (k, v) in [
        ("ispriceoverridden", json!(true)),
        ("priceperunit", json!(240)),
        ("tax", json!(48)),
        ("extendedamount", json!(1)),
    ] {
        line[k] = v;
    }
    let l = post_id(&api, "salesorderdetails", &line).await;
    let totals = |sb: &Sandbox| {
        let h = sb.sales_get("salesorders", &o).unwrap();
        let l = sb.sales_get("salesorderdetails", &l).unwrap();
        [num(&h["totalamount"]), num(&h["totaltax"]), num(&l["extendedamount"])]
    };
    assert_eq!(totals(&sb), [528.0, 48.0, 528.0], "Sales' own figures");

    // System pricing: writing a total is accepted (204) and recalculated; the way to move it is its inputs.
    let order = format!("salesorders({o})");
    let detail = format!("salesorderdetails({l})");
    assert_eq!(
        patch_status(&api, &order, json!({"totalamount": 1, "totaltax": 2})).await,
        204
    );
    assert_eq!(patch_status(&api, &detail, json!({"extendedamount": 3})).await, 204);
    assert_eq!(totals(&sb), [528.0, 48.0, 528.0]);
    assert_eq!(
        patch_status(&api, &detail, json!({"priceperunit": 250, "tax": 50})).await,
        204
    );
    assert_eq!(
        totals(&sb),
        [550.0, 50.0, 550.0],
        "a repriced, re-taxed line moves them"
    );

    // The org turns system pricing off ("custom pricing"): nothing calculates, written values stay.
    assert_eq!(
        patch_status(
            &api,
            &format!("organizations({org})"),
            json!({"oobpricecalculationenabled": false})
        )
        .await,
        204
    );
    assert!(!organization(&sb).1);
    assert_eq!(
        patch_status(&api, &order, json!({"totalamount": 1264.5, "totaltax": 80.5})).await,
        204
    );
    assert_eq!(
        patch_status(&api, &detail, json!({"extendedamount": 500, "quantity": 3})).await,
        204
    );
    assert_eq!(totals(&sb), [1264.5, 80.5, 500.0], "as written");
    // A create still ignores them (not valid for create, whatever the setting).
    let mut head = header_body(&r, "Manual");
    head["totalamount"] = json!(77);
    let o2 = post_id(&api, "salesorders", &head).await;
    assert!(
        sb.sales_get("salesorders", &o2).unwrap()["totalamount"].is_null(),
        "nothing calculated, nothing taken from the create"
    );
    assert_eq!(
        patch_status(&api, &format!("salesorders({o2})"), json!({"totalamount": 77})).await,
        204
    );
    assert_eq!(num(&sb.sales_get("salesorders", &o2).unwrap()["totalamount"]), 77.0);
}

#[tokio::test]
async fn price_lock_is_not_valid_for_create_and_an_update_sets_it() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    let api = Api::sales(&sb).await;
    let r = refs(&sb);
    for set in ["salesorders", "invoices"] {
        let mut head = header_body(&r, "Locked");
        head["ispricelocked"] = json!(true);
        let id = post_id(&api, set, &head).await;
        assert_eq!(
            sb.sales_get(set, &id).unwrap()["ispricelocked"],
            Value::Null,
            "{set}: IsValidForCreate = false, the create ignores it"
        );
        assert_eq!(
            patch_status(&api, &format!("{set}({id})"), json!({"ispricelocked": true})).await,
            204
        );
        assert_eq!(sb.sales_get(set, &id).unwrap()["ispricelocked"], true, "{set}");
    }
}

#[tokio::test]
async fn a_documents_price_list_must_be_in_its_currency() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    let api = Api::sales(&sb).await;
    let r = refs(&sb);
    let eur = id(&sb, "transactioncurrencies", "isocurrencycode", "EUR");
    let eur_list = id(&sb, "pricelevels", "name", "Europe Sales (EUR)");
    let want = (
        400,
        "0x80048cf6".to_string(),
        "The currency of the record does not match the currency of the price list.".to_string(),
    );
    for set in ["quotes", "salesorders", "invoices"] {
        // EUR with the USD list: refused on create.
        let mut head = header_body(&r, "Euro");
        head["transactioncurrencyid@odata.bind"] = json!(format!("/transactioncurrencies({eur})"));
        assert_eq!(
            dv_error(api.post(set, &head).send().await.unwrap()).await,
            want,
            "{set}"
        );
        // With its own currency's list: fine; moving either one alone is refused.
        head["pricelevelid@odata.bind"] = json!(format!("/pricelevels({eur_list})"));
        let id = post_id(&api, set, &head).await;
        let path = format!("{set}({id})");
        let usd_list = json!({"pricelevelid@odata.bind": format!("/pricelevels({})", r.pl)});
        assert_eq!(
            dv_error(api.patch(&path, &usd_list).send().await.unwrap()).await,
            want,
            "{set}"
        );
        let usd = json!({"transactioncurrencyid@odata.bind": format!("/transactioncurrencies({})", r.usd)});
        assert_eq!(
            dv_error(api.patch(&path, &usd).send().await.unwrap()).await,
            want,
            "{set}"
        );
        // Both together, or neither: fine.
        let both = json!({"pricelevelid@odata.bind": format!("/pricelevels({})", r.pl),
                          "transactioncurrencyid@odata.bind": format!("/transactioncurrencies({})", r.usd)});
        assert_eq!(patch_status(&api, &path, both).await, 204, "{set}");
        assert_eq!(patch_status(&api, &path, json!({"description": "x"})).await, 204);
    }
}

#[tokio::test]
async fn a_document_has_one_freight_tax_line_at_most() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    products_in_sales(&sb);
    let api = Api::sales(&sb).await;
    let r = refs(&sb);
    for (set, lines, nav, text) in [
        (
            "salesorders",
            "salesorderdetails",
            "salesorderid",
            "Sales order can not contain more than one Freight tax",
        ),
        (
            "invoices",
            "invoicedetails",
            "invoiceid",
            "Invoice can not contain more than one Freight tax",
        ),
    ] {
        let h = post_id(&api, set, &header_body(&r, "Freight")).await;
        let bind = format!("/{set}({h})");
        // F&O's header tax as a write-in line: tax only, so the totals add up under system pricing.
        let freight = json!({format!("{nav}@odata.bind"): bind, "isproductoverridden": true,
                             "productdescription": "Freight Tax", "quantity": 1, "priceperunit": 0,
                             "ispriceoverridden": true, "tax": 7.5, "msdynce_ismisctax": true});
        let first = post_id(&api, lines, &freight).await;
        let row = sb.sales_get(lines, &first).unwrap();
        assert_eq!((num(&row["extendedamount"]), num(&row["tax"])), (7.5, 7.5));
        let header = sb.sales_get(set, &h).unwrap();
        assert_eq!(
            (num(&header["totaltax"]), num(&header["totalamount"])),
            (7.5, 7.5),
            "{set}"
        );
        // A second one is refused by the P2C plug-in; so is flagging another line.
        assert_eq!(
            dv_error(api.post(lines, &freight).send().await.unwrap()).await,
            (400, "0x80040265".to_string(), text.to_string()),
            "{set}"
        );
        let other = post_id(&api, lines, &line_body(&sb, &r, (nav, &bind), "D0001", 1.0)).await;
        assert_eq!(
            dv_error(
                api.patch(&format!("{lines}({other})"), &json!({"msdynce_ismisctax": true}))
                    .send()
                    .await
                    .unwrap()
            )
            .await
            .2,
            text,
            "{set}"
        );
        // The one there is can change; once it is gone, a new one is fine.
        assert_eq!(
            patch_status(&api, &format!("{lines}({first})"), json!({"tax": 9.25})).await,
            204
        );
        assert_eq!(num(&sb.sales_get(set, &h).unwrap()["totaltax"]), 9.25);
        let gone = api.delete(&format!("{lines}({first})")).send().await.unwrap();
        assert_eq!(gone.status(), 204);
        post_id(&api, lines, &freight).await;
    }
}

// ------------------------------------------------------------------------------------------------ F&O

#[tokio::test]
async fn f_and_o_defaults_order_lines_and_confirm_runs_the_totals_batch() {
    let sb = sandbox().await;
    sb.seed_demo(0);
    sb.fno_insert("CustomersV2", customer("US-001", true));
    let api = Api::fno(&sb).await;
    fno_order(&api, "US-001").await;

    // Defaults from the customer; the customers' origin is read through the entity.
    let h = json(api.get(ORDER_KEY).send().await.unwrap()).await;
    assert_eq!(h["InvoiceCustomerAccountNumber"], "US-001");
    assert_eq!(h["SalesOrderName"], "Customer US-001");
    assert_eq!(h["SalesOrderProcessingStatus"], "Active");
    assert_eq!(h["SalesOrderStatus"], "Backorder");
    assert_eq!(h["OrderingCustomerIsExternallyMaintained"], "Yes");
    assert_eq!(h["InvoiceCustomerIsExternallyMaintained"], "Yes");
    assert_eq!(h["AreTotalsUpdated"], "No");
    assert_eq!(h["OrderTotalAmount"], 0);

    // Line amounts at once: the $10.00 discount on 3 units splits into 3.33 per unit and a -0.01 charge.
    let l2 = fno_line(&sb, "2");
    assert_eq!(num(&l2["LineDiscountAmount"]), 3.33);
    assert_eq!(num(&l2["TotalChargesAmount"]), -0.01);
    assert_eq!(num(&l2["TotalDiscountAmount"]), 10.0);
    assert_eq!(num(&l2["LineAmount"]), 650.01);
    assert_eq!(num(&l2["TotalTaxAmount"]), 65.0);
    assert_eq!(l2["ProductName"], "StandardSpeaker");
    assert_eq!(l2["CurrencyCode"], "USD");
    assert_eq!(l2["AreSalesOrderTotalsUpdated"], "No");
    assert_eq!(l2["OrderingCustomerIsExternallyMaintained"], "Yes");
    let etag = l2["@odata.etag"].clone();

    // The F&O -> Sales filter does not see the order until it is confirmed with totals.
    let filter = "CDSSalesOrderHeaders?cross-company=true&$filter=SalesOrderProcessingStatus ne \
                  Microsoft.Dynamics.DataEntities.SalesOrderProcessingStatus'Active' and AreTotalsUpdated eq \
                  Microsoft.Dynamics.DataEntities.NoYes'Yes' and OrderingCustomerIsExternallyMaintained eq \
                  Microsoft.Dynamics.DataEntities.NoYes'Yes'";
    assert!(
        json(api.get(filter).send().await.unwrap()).await["value"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    sb.fno_confirm_order("usmf", "ORD-1");
    let h = fno_header(&sb, "ORD-1");
    assert_eq!(h["SalesOrderProcessingStatus"], "Confirmed");
    assert_eq!(h["AreTotalsUpdated"], "Yes");
    assert_eq!(num(&h["OrderTotalTaxAmount"]), 115.0);
    assert_eq!(num(&h["OrderTotalChargesAmount"]), -0.01);
    assert_eq!(num(&h["OrderTotalDiscountAmount"]), 10.0);
    assert_eq!(num(&h["TotalDiscountAmount"]), 0.0);
    // 500 + 650.01 - 0.01 + 115.00 (10 % tax).
    assert_eq!(num(&h["OrderTotalAmount"]), 1265.0);
    assert_eq!(
        num(&h["OrderTotalTaxAmount"]),
        ((500.0 + 650.01) * FNO_SALES_TAX_RATE * 100.0_f64).round() / 100.0
    );
    for seq in ["1", "2"] {
        let l = fno_line(&sb, seq);
        assert_eq!(
            (
                l["AreTotalsCalculated"].clone(),
                l["AreSalesOrderTotalsUpdated"].clone()
            ),
            (json!("Yes"), json!("Yes"))
        );
        assert_eq!(l["SalesOrderProcessingStatus"], "Confirmed");
    }
    assert_ne!(
        fno_line(&sb, "2")["@odata.etag"],
        etag,
        "a content change is a new version"
    );
    let v = json(api.get(filter).send().await.unwrap()).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1);

    // A later line change leaves the totals stale until the batch runs again.
    let r = api
        .patch(
            "CDSSalesOrderLines(dataAreaId='usmf',SalesOrderNumber='ORD-1',LineCreationSequenceNumber=1)?cross-company=true",
            &json!({"OrderedSalesQuantity": 4}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(num(&fno_line(&sb, "1")["LineAmount"]), 1000.0);
    assert_eq!(fno_header(&sb, "ORD-1")["AreTotalsUpdated"], "No");
    assert_eq!(fno_line(&sb, "2")["AreSalesOrderTotalsUpdated"], "No");
    sb.fno_confirm_order("usmf", "ORD-1");
    let h = fno_header(&sb, "ORD-1");
    assert_eq!(
        (h["AreTotalsUpdated"].clone(), num(&h["OrderTotalAmount"])),
        (json!("Yes"), 1815.0)
    );

    // The whole-line discount drives the split: 10.00 over 4 units is 2.50 each, nothing left for a charge.
    let r = api
        .patch(
            "CDSSalesOrderLines(dataAreaId='usmf',SalesOrderNumber='ORD-1',LineCreationSequenceNumber=2)?cross-company=true",
            &json!({"OrderedSalesQuantity": 4}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let l2 = fno_line(&sb, "2");
    assert_eq!(
        [
            &l2["TotalDiscountAmount"],
            &l2["LineDiscountAmount"],
            &l2["TotalChargesAmount"],
            &l2["LineAmount"]
        ]
        .map(num),
        [10.0, 2.5, 0.0, 870.0]
    );

    // A customer that did not come from Sales: the entity says so.
    sb.fno_update(
        "CustomersV2",
        &[("dataAreaId", "usmf"), ("CustomerAccount", "US-001")],
        json!({"IsExternallyMaintained": "No"}),
    );
    assert_eq!(fno_header(&sb, "ORD-1")["OrderingCustomerIsExternallyMaintained"], "No");
    assert!(
        json(api.get(filter).send().await.unwrap()).await["value"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let missing = catch_unwind(AssertUnwindSafe(|| sb.fno_confirm_order("usmf", "NOPE")));
    assert!(missing.is_err());

    // A fixture seeded for a customer F&O does not have keeps the flags it stores.
    sb.fno_insert(
        "CDSSalesOrderHeaders",
        json!({"dataAreaId": "usmf", "SalesOrderNumber": "RAW-1", "OrderingCustomerAccountNumber": "NOT-IN-FNO",
               "OrderingCustomerIsExternallyMaintained": "Yes", "InvoiceCustomerIsExternallyMaintained": "Yes"}),
    );
    assert_eq!(
        fno_header(&sb, "RAW-1")["OrderingCustomerIsExternallyMaintained"],
        "Yes"
    );
}

#[tokio::test]
async fn invoicing_posts_an_invoice_that_only_externally_maintained_customers_show() {
    let sb = sandbox().await;
    sb.seed_demo(0);
    sb.fno_insert("CustomersV2", customer("US-001", true));
    sb.fno_insert("CustomersV2", customer("LOCAL-1", false));
    let api = Api::fno(&sb).await;
    fno_order(&api, "US-001").await;
    sb.fno_confirm_order("usmf", "ORD-1");

    let number = sb.fno_invoice_order("usmf", "ORD-1");
    assert_eq!(number, "CIV-000001");
    let v = json(
        api.get("ExternallyMaintainedCustomerSalesInvoiceHeaders?cross-company=true")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let headers = v["value"].as_array().unwrap();
    assert_eq!(headers.len(), 1);
    let h = &headers[0];
    assert_eq!(h["InvoiceNumber"], "CIV-000001");
    assert_eq!(h["LedgerVoucher"], "ARIN-000001");
    assert!(h["InvoiceDate"].as_str().unwrap().ends_with("T12:00:00Z"));
    assert_eq!(h["SalesOrderNumber"], "ORD-1");
    assert_eq!(h["InvoiceCustomerAccountNumber"], "US-001");
    assert_eq!(h["CurrencyCode"], "USD");
    assert_eq!(h["InvoiceAddressCity"], "Seattle");
    assert_eq!(h["CustomersOrderReference"], "Speakers");
    assert_eq!(
        [
            &h["TotalInvoiceAmount"],
            &h["TotalTaxAmount"],
            &h["TotalChargeAmount"],
            &h["TotalDiscountAmount"]
        ]
        .map(num),
        [1265.0, 115.0, -0.01, 0.0]
    );
    let lines = json(
        api.get("ExternallyMaintainedCustomerSalesInvoiceLines?cross-company=true&$orderby=LineCreationSequenceNumber")
            .send()
            .await
            .unwrap(),
    )
    .await["value"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["LineCreationSequenceNumber"], 2);
    assert_eq!(lines[1]["ProductNumber"], "D0003");
    assert_eq!(lines[1]["ProductName"], "StandardSpeaker");
    assert_eq!(
        [
            &lines[1]["InvoicedQuantity"],
            &lines[1]["SalesPrice"],
            &lines[1]["LineAmount"],
            &lines[1]["LineTotalTaxAmount"],
            &lines[1]["LineTotalDiscountAmount"],
            &lines[1]["LineTotalChargeAmount"]
        ]
        .map(num),
        [3.0, 220.0, 650.01, 65.0, 10.0, -0.01]
    );
    assert_eq!(lines[1]["InvoiceNumber"], "CIV-000001");
    assert_eq!(lines[1]["InvoiceDate"], h["InvoiceDate"]);

    // Key access with every key part, the date as a DateTimeOffset literal.
    let key = format!(
        "ExternallyMaintainedCustomerSalesInvoiceHeaders(dataAreaId='usmf',InvoiceNumber='CIV-000001',InvoiceDate={},LedgerVoucher='ARIN-000001')?cross-company=true",
        h["InvoiceDate"].as_str().unwrap()
    );
    assert_eq!(api.get(&key).send().await.unwrap().status(), 200);

    // The order is invoiced; invoicing it again is refused.
    let o = fno_header(&sb, "ORD-1");
    assert_eq!(
        (o["SalesOrderProcessingStatus"].clone(), o["SalesOrderStatus"].clone()),
        (json!("Invoiced"), json!("Invoiced"))
    );
    assert_eq!(fno_line(&sb, "1")["SalesOrderLineStatus"], "Invoiced");
    assert!(catch_unwind(AssertUnwindSafe(|| sb.fno_invoice_order("usmf", "ORD-1"))).is_err());

    // An order of a customer that did not come from Sales: invoiced, but the entity does not show it.
    let local = sb.fno_create_order("usmf", "LOCAL-1", &[("D0002", 1.0)]);
    let n2 = sb.fno_invoice_order("usmf", &local);
    assert_eq!(n2, "CIV-000002");
    assert_eq!(sb.fno_rows("ExternallyMaintainedCustomerSalesInvoiceHeaders").len(), 1);
    assert_eq!(sb.fno_rows("ExternallyMaintainedCustomerSalesInvoiceLines").len(), 2);
    let count = api
        .get("ExternallyMaintainedCustomerSalesInvoiceHeaders/$count?cross-company=true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(count, "1");
    sb.fno_update(
        "CustomersV2",
        &[("dataAreaId", "usmf"), ("CustomerAccount", "LOCAL-1")],
        json!({"IsExternallyMaintained": "Yes"}),
    );
    assert_eq!(sb.fno_rows("ExternallyMaintainedCustomerSalesInvoiceHeaders").len(), 2);
    assert_eq!(sb.fno_rows("ExternallyMaintainedCustomerSalesInvoiceLinesV2").len(), 3);

    // Invoice numbers a test seeded itself are skipped.
    sb.fno_insert(
        "ExternallyMaintainedCustomerSalesInvoiceHeaders",
        json!({"dataAreaId": "usmf", "InvoiceNumber": "CIV-000003", "InvoiceDate": "2026-03-05T12:00:00Z",
               "LedgerVoucher": "V-3", "InvoiceCustomerAccountNumber": "US-001"}),
    );
    let third = sb.fno_create_order("usmf", "US-001", &[("D0005", 1.0)]);
    assert_eq!(sb.fno_invoice_order("usmf", &third), "CIV-000004");

    // A fixture seeded for a customer F&O does not have stays visible.
    sb.fno_insert(
        "ExternallyMaintainedCustomerSalesInvoiceHeaders",
        json!({"dataAreaId": "usmf", "InvoiceNumber": "RAW-1", "InvoiceDate": "2026-03-05T12:00:00Z",
               "LedgerVoucher": "V-1", "InvoiceCustomerAccountNumber": "NOT-IN-FNO"}),
    );
    assert_eq!(sb.fno_rows("ExternallyMaintainedCustomerSalesInvoiceHeaders").len(), 5);
}

#[tokio::test]
async fn partial_invoices_add_up_to_the_order_and_carry_its_header_tax_once() {
    let sb = sandbox().await;
    sb.seed_demo(0);
    sb.fno_insert("CustomersV2", customer("US-001", true));
    let api = Api::fno(&sb).await;
    fno_order(&api, "US-001").await;
    let key = [("dataAreaId", "usmf"), ("SalesOrderNumber", "ORD-1")];
    sb.fno_update("CDSSalesOrderHeaders", &key, json!({"OrderHeaderTaxAmount": 4.5}));
    sb.fno_confirm_order("usmf", "ORD-1");
    let o = fno_header(&sb, "ORD-1");
    // Lines 500.00 + 650.01, tax 50 + 65 + 4.50 header tax, charge -0.01.
    assert_eq!(
        [&o["OrderTotalAmount"], &o["OrderTotalTaxAmount"]].map(num),
        [1269.5, 119.5]
    );

    // One of two D0001 and one of three D0003: PartiallyInvoiced, with the header tax.
    let first = sb.fno_invoice_order_lines("usmf", "ORD-1", &[(1, 1.0), (2, 1.0)]);
    let inv = |n: &str| {
        sb.fno_rows("ExternallyMaintainedCustomerSalesInvoiceHeaders")
            .into_iter()
            .find(|h| h["InvoiceNumber"] == n)
            .unwrap()
    };
    let lines_of = |n: &str| {
        let mut v: Vec<Value> = sb
            .fno_rows("ExternallyMaintainedCustomerSalesInvoiceLines")
            .into_iter()
            .filter(|l| l["InvoiceNumber"] == n)
            .collect();
        v.sort_by_key(|l| l["LineCreationSequenceNumber"].as_i64());
        v
    };
    let h1 = inv(&first);
    // 250 + (220 - 3.33) = 466.67; tax 25 + 21.67 + 4.50.
    assert_eq!(
        [
            &h1["TotalInvoiceAmount"],
            &h1["TotalTaxAmount"],
            &h1["InvoiceHeaderTaxAmount"],
            &h1["TotalChargeAmount"]
        ]
        .map(num),
        [517.84, 51.17, 4.5, 0.0]
    );
    let l1 = lines_of(&first);
    assert_eq!(
        l1.iter().map(|l| num(&l["InvoicedQuantity"])).collect::<Vec<_>>(),
        vec![1.0, 1.0]
    );
    assert_eq!(num(&l1[1]["LineAmount"]), 216.67);
    assert_eq!(num(&l1[1]["LineTotalDiscountAmount"]), 3.33);
    let o = fno_header(&sb, "ORD-1");
    assert_eq!(o["SalesOrderProcessingStatus"], "PartiallyInvoiced");
    assert_ne!(o["SalesOrderStatus"], "Invoiced");
    assert_eq!(fno_line(&sb, "1")["SalesOrderLineStatus"], "Backorder");

    // More than is left is refused; the rest completes the order, and the invoices add up to it.
    assert!(
        catch_unwind(AssertUnwindSafe(|| sb.fno_invoice_order_lines(
            "usmf",
            "ORD-1",
            &[(1, 2.0)]
        )))
        .is_err()
    );
    assert!(
        catch_unwind(AssertUnwindSafe(|| sb.fno_invoice_order_lines(
            "usmf",
            "ORD-1",
            &[(9, 1.0)]
        )))
        .is_err()
    );
    let second = sb.fno_invoice_order("usmf", "ORD-1");
    let h2 = inv(&second);
    assert_eq!(
        num(&h2["InvoiceHeaderTaxAmount"]),
        0.0,
        "the header tax went with the first invoice"
    );
    assert_eq!(
        num(&h2["TotalChargeAmount"]),
        -0.01,
        "the completing invoice takes the line's charge"
    );
    let l2 = lines_of(&second);
    assert_eq!(
        l2.iter().map(|l| num(&l["InvoicedQuantity"])).collect::<Vec<_>>(),
        vec![1.0, 2.0]
    );
    assert_eq!(num(&l2[1]["LineAmount"]), 433.34, "650.01 - 216.67");
    assert_eq!(num(&l2[1]["LineTotalDiscountAmount"]), 6.67, "10.00 - 3.33");
    let sum = |k: &str| ((num(&h1[k]) + num(&h2[k])) * 100.0).round() / 100.0;
    assert_eq!(
        (sum("TotalInvoiceAmount"), sum("TotalTaxAmount")),
        (1269.5, 119.5),
        "the order's totals"
    );
    let o = fno_header(&sb, "ORD-1");
    assert_eq!(
        (o["SalesOrderProcessingStatus"].clone(), o["SalesOrderStatus"].clone()),
        (json!("Invoiced"), json!("Invoiced"))
    );
    assert_eq!(fno_line(&sb, "2")["SalesOrderLineStatus"], "Invoiced");
    assert!(catch_unwind(AssertUnwindSafe(|| sb.fno_invoice_order("usmf", "ORD-1"))).is_err());
}

#[tokio::test]
async fn f_and_o_refuses_what_the_flows_must_not_write() {
    let sb = sandbox().await;
    sb.seed_demo(0);
    sb.fno_insert("CustomersV2", customer("US-001", true));
    let api = Api::fno(&sb).await;

    // Order header of a customer F&O does not know.
    let r = api
        .post(
            "CDSSalesOrderHeaders",
            &json!({"dataAreaId": "usmf", "SalesOrderNumber": "ORD-9", "OrderingCustomerAccountNumber": "ACC-404"}),
        )
        .send()
        .await
        .unwrap();
    let (status, msg) = fno_error(r).await;
    assert_eq!(status, 500);
    assert!(
        msg.contains("The value 'ACC-404' in field 'Customer account' is not found"),
        "{msg}"
    );

    // Quotation header of an unknown customer, and without a number (the quotation sequence is Manual).
    let r = api
        .post(
            "CDSSalesQuotationHeaders",
            &json!({"dataAreaId": "usmf", "SalesQuotationNumber": "QUO-9", "RequestingCustomerAccountNumber": "ACC-404"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(fno_error(r).await.0, 500);
    let r = api
        .post(
            "CDSSalesQuotationHeaders",
            &json!({"dataAreaId": "usmf", "RequestingCustomerAccountNumber": "US-001"}),
        )
        .send()
        .await
        .unwrap();
    let (status, msg) = fno_error(r).await;
    assert_eq!(status, 500);
    assert!(msg.contains("Field 'Quotation' must be filled in."), "{msg}");

    // A quotation with the Sales number, and a line priced at once.
    let r = api
        .post(
            "CDSSalesQuotationHeaders",
            &json!({"dataAreaId": "usmf", "SalesQuotationNumber": "QUO-01001-ABCDEF", "RequestingCustomerAccountNumber": "US-001"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v = json(r).await;
    assert_eq!(v["SalesQuotationNumber"], "QUO-01001-ABCDEF");
    assert_eq!(v["InvoiceCustomerAccountNumber"], "US-001");
    let r = api
        .post(
            "CDSSalesQuotationLines",
            &json!({"dataAreaId": "usmf", "SalesQuotationNumber": "QUO-01001-ABCDEF", "LineCreationSequenceNumber": 1,
                    "ProductNumber": "D0004", "RequestedSalesQuantity": 2, "SalesPrice": 1500}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v = json(r).await;
    assert_eq!(
        (num(&v["LineAmount"]), v["SalesUnitSymbol"].clone()),
        (3000.0, json!("ea"))
    );

    // Lines whose quotation or order does not exist, or whose product the company does not sell.
    for (set, body, expect) in [
        (
            "CDSSalesQuotationLines",
            json!({"dataAreaId": "usmf", "SalesQuotationNumber": "QUO-404", "LineCreationSequenceNumber": 1, "ProductNumber": "D0001"}),
            "The value 'QUO-404' in field 'Quotation' is not found",
        ),
        (
            "CDSSalesOrderLines",
            json!({"dataAreaId": "usmf", "SalesOrderNumber": "ORD-404", "LineCreationSequenceNumber": 1, "ProductNumber": "D0001"}),
            "The value 'ORD-404' in field 'Sales order' is not found",
        ),
        (
            "CDSSalesQuotationLines",
            json!({"dataAreaId": "usmf", "SalesQuotationNumber": "QUO-01001-ABCDEF", "LineCreationSequenceNumber": 2, "ProductNumber": "X-404"}),
            "The value 'X-404' in field 'Item number' is not found",
        ),
    ] {
        let (status, msg) = fno_error(api.post(set, &body).send().await.unwrap()).await;
        assert_eq!(status, 500, "{set}");
        assert!(msg.contains(expect), "{msg}");
    }
    // Products exist per company: usmf's D0001 is unknown in dat.
    sb.fno_insert(
        "CustomersV2",
        json!({"dataAreaId": "dat", "CustomerAccount": "US-001", "CustomerGroupId": "10"}),
    );
    let r = api
        .post(
            "CDSSalesOrderHeaders",
            &json!({"dataAreaId": "dat", "SalesOrderNumber": "ORD-D", "OrderingCustomerAccountNumber": "US-001"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = api
        .post(
            "CDSSalesOrderLines",
            &json!({"dataAreaId": "dat", "SalesOrderNumber": "ORD-D", "LineCreationSequenceNumber": 1, "ProductNumber": "D0001"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(fno_error(r).await.0, 500);

    // Orders entered in F&O get the F&O number sequence and the products' prices.
    let n = sb.fno_create_order("usmf", "US-001", &[("D0001", 2.0), ("D0004", 1.0)]);
    let h = fno_header(&sb, &n);
    assert_eq!(
        (h["SalesOrderProcessingStatus"].clone(), h["AreTotalsUpdated"].clone()),
        (json!("Active"), json!("No"))
    );
    let line = sb
        .fno_get(
            "CDSSalesOrderLines",
            &[
                ("dataAreaId", "usmf"),
                ("SalesOrderNumber", n.as_str()),
                ("LineCreationSequenceNumber", "2"),
            ],
        )
        .unwrap();
    assert_eq!(
        (
            line["ProductNumber"].clone(),
            num(&line["SalesPrice"]),
            num(&line["LineAmount"])
        ),
        (json!("D0004"), 1500.0, 1500.0)
    );
    sb.fno_confirm_order("usmf", &n);
    assert_eq!(num(&fno_header(&sb, &n)["OrderTotalAmount"]), 2200.0);

    // A refused F&O order leaves nothing behind.
    let before = sb.fno_rows("CDSSalesOrderHeaders").len();
    assert!(
        catch_unwind(AssertUnwindSafe(|| sb.fno_create_order(
            "usmf",
            "US-001",
            &[("X-404", 1.0)]
        )))
        .is_err()
    );
    assert!(
        catch_unwind(AssertUnwindSafe(|| sb.fno_create_order(
            "usmf",
            "NOBODY",
            &[("D0001", 1.0)]
        )))
        .is_err()
    );
    assert_eq!(sb.fno_rows("CDSSalesOrderHeaders").len(), before);
}

// ------------------------------------------------------------------------------------------------ demo data

#[tokio::test]
async fn demo_data_has_contacts_price_lists_and_units() {
    let sb = sandbox().await;
    sb.seed_demo(0);
    let contacts = sb.sales_rows("contacts");
    assert_eq!(contacts.len(), 6);
    assert!(
        contacts.iter().all(|c| c["_parentcustomerid_value"].is_null()),
        "no accounts yet"
    );
    sb.seed_demo(3);
    sb.seed_demo(0);
    assert_eq!(sb.sales_rows("contacts").len(), 6, "idempotent");
    assert_eq!(sb.sales_rows("accounts").len(), 3);

    let mut accounts = sb.sales_rows("accounts");
    accounts.sort_by(|a, b| a["accountnumber"].as_str().cmp(&b["accountnumber"].as_str()));
    let usmf = sb.business_unit_id("usmf").unwrap();
    let c = find(&sb, "contacts", "msdynce_contactnumber", "CON-01000-BVRCPS");
    assert_eq!(c["fullname"], "Nancy Davolio");
    assert_eq!(
        (
            c["msdynce_isactivecustomer"].clone(),
            c["_parentcustomerid_value"].clone()
        ),
        (json!(true), Value::Null)
    );
    let c = find(&sb, "contacts", "msdynce_contactnumber", "CON-01002-MJDHRA");
    assert_eq!(c["msdynce_iscompanyanaccount"], true);
    assert_eq!(c["msdynce_isactivecustomer"], false);
    assert_eq!(c["_parentcustomerid_value"], accounts[0]["accountid"]);
    assert_eq!(c["_owningbusinessunit_value"], json!(usmf));
    let active = sb
        .sales_rows("contacts")
        .into_iter()
        .filter(|c| c["msdynce_isactivecustomer"] == true)
        .count();
    assert_eq!(active, 2);
    let of_accounts = sb
        .sales_rows("contacts")
        .into_iter()
        .filter(|c| c["msdynce_isactivecustomer"] == false && c["msdynce_iscompanyanaccount"] == true)
        .count();
    assert_eq!(of_accounts, 3);

    // Contacts are readable through the alternate key, with the polymorphic lookup's target.
    let api = Api::sales(&sb).await;
    let v = json(
        api.get("contacts(msdynce_contactnumber='CON-01003-PLNBEU')?$select=fullname,_parentcustomerid_value")
            .header("Prefer", "odata.include-annotations=\"*\"")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        v["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"],
        "account"
    );

    // One price list per currency; the first USD list by name is the template's.
    let lists = sb.sales_rows("pricelevels");
    let currency = |iso: &str| id(&sb, "transactioncurrencies", "isocurrencycode", iso);
    let mut usd: Vec<String> = lists
        .iter()
        .filter(|p| p["_transactioncurrencyid_value"] == json!(currency("USD")))
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    usd.sort_by_key(|n| n.to_lowercase());
    assert_eq!(usd, ["CRM Service USA (sample)", "Wholesale USA"]);
    for iso in ["EUR", "GBP"] {
        assert_eq!(
            lists
                .iter()
                .filter(|p| p["_transactioncurrencyid_value"] == json!(currency(iso)))
                .count(),
            1,
            "{iso}"
        );
    }
    // Every F&O sales unit exists in Sales, in the unit group "Default unit".
    let sched = find(&sb, "uomschedules", "name", "Default unit")["uomscheduleid"].clone();
    for p in sb.fno_rows("SellableReleasedProducts") {
        let unit = find(&sb, "uoms", "name", p["SalesUnitSymbol"].as_str().unwrap());
        assert_eq!(unit["_uomscheduleid_value"], sched);
        assert_eq!(p["CurrencyCode"], "USD");
    }
    for u in ["ea", "pcs", "hr", "Each"] {
        find(&sb, "uoms", "name", u);
    }
}

#[tokio::test]
async fn the_story_from_quote_to_invoice() {
    let sb = sandbox().await;
    sb.seed_demo(2);

    // Without the products in Sales the story cannot start, and says why.
    let err = catch_unwind(AssertUnwindSafe(|| sb.seed_story())).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("products-to-sales") && msg.contains("D0001"), "{msg}");
    assert!(sb.sales_rows("quotes").is_empty());

    products_in_sales(&sb);
    let story = sb.seed_story();
    let mut accounts = sb.sales_rows("accounts");
    accounts.sort_by(|a, b| a["accountnumber"].as_str().cmp(&b["accountnumber"].as_str()));
    assert_eq!(json!(story.account_id), accounts[0]["accountid"]);
    assert_eq!(json!(story.account_number), accounts[0]["accountnumber"]);
    let usmf = sb.business_unit_id("usmf").unwrap();

    let q = sb.sales_get("quotes", &story.quote_id).unwrap();
    assert_eq!(q["quotenumber"], json!(story.quote_number));
    assert_eq!((q["statecode"].clone(), q["statuscode"].clone()), (json!(1), json!(2)));
    assert_eq!(q["msdynce_hasexternallymaintainedproductsonly"], true);
    assert_eq!(q["_owningbusinessunit_value"], json!(usmf));
    assert_eq!(q["_customerid_value"], json!(story.account_id));
    // 2 × 250 + 1 × 180 + (3 × 220 - 10).
    assert_eq!(num(&q["totalamount"]), 1330.0);
    let lines: Vec<Value> = sb
        .sales_rows("quotedetails")
        .into_iter()
        .filter(|l| l["_quoteid_value"] == json!(story.quote_id))
        .collect();
    assert_eq!(lines.len(), 3);
    let mut seqs: Vec<i64> = lines.iter().map(|l| l["sequencenumber"].as_i64().unwrap()).collect();
    seqs.sort();
    assert_eq!(seqs, [1, 2, 3]);
    assert!(
        lines
            .iter()
            .all(|l| l["msdynce_quotehasexternalmaintainedproductsonly"] == true
                && l["msdynce_ismaintainedexternally"] == true
                && l["_owningbusinessunit_value"] == json!(usmf))
    );

    let o = sb.sales_get("salesorders", &story.order_id).unwrap();
    assert_eq!(o["ordernumber"], json!(story.order_number));
    assert_eq!(
        (o["statecode"].clone(), o["msdynce_processingstatus"].clone()),
        (json!(0), json!(647_390_000))
    );
    assert_eq!(o["msdynce_hasexternallymaintainedproductsonly"], true);
    assert_eq!(num(&o["totalamount"]), 6200.0);
    let order_lines: Vec<Value> = sb
        .sales_rows("salesorderdetails")
        .into_iter()
        .filter(|l| l["_salesorderid_value"] == json!(story.order_id))
        .collect();
    assert_eq!(order_lines.len(), 2);
    assert!(
        order_lines
            .iter()
            .all(|l| l["msdynce_orderhasexternalmaintainedproductsonly"] == true)
    );

    // The quote is read-only now; the order is not.
    let api = Api::sales(&sb).await;
    assert_eq!(
        patch_status(&api, &format!("quotes({})", story.quote_id), json!({"name": "x"})).await,
        400
    );

    // The rest of the story in F&O, as the flows would drive it: the customer and the order arrive from Sales,
    // F&O confirms, the confirmation travels back, F&O invoices.
    sb.fno_insert("CustomersV2", customer(&story.account_number, true));
    let fno = Api::fno(&sb).await;
    let r = fno
        .post(
            "CDSSalesOrderHeaders",
            &json!({"dataAreaId": "usmf", "SalesOrderNumber": story.order_number,
                    "OrderingCustomerAccountNumber": story.account_number, "OrderTotalAmount": 6200}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for l in &order_lines {
        let product = sb
            .sales_get("products", l["_productid_value"].as_str().unwrap())
            .unwrap();
        let r = fno
            .post(
                "CDSSalesOrderLines",
                &json!({"dataAreaId": "usmf", "SalesOrderNumber": story.order_number,
                        "LineCreationSequenceNumber": l["sequencenumber"], "ProductNumber": product["productnumber"],
                        "OrderedSalesQuantity": l["quantity"], "SalesPrice": l["priceperunit"],
                        "SalesUnitSymbol": "ea", "TotalDiscountAmount": l["manualdiscountamount"]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    sb.fno_confirm_order("usmf", &story.order_number);
    let h = fno_header(&sb, &story.order_number);
    assert_eq!(num(&h["OrderTotalAmount"]), 6820.0, "6200 + 10 % tax");

    // Back in Sales the order stays Active and takes F&O's status and totals (recalculated by Sales).
    let opath = format!("salesorders({})", story.order_id);
    assert_eq!(
        patch_status(
            &api,
            &opath,
            json!({"msdynce_processingstatus": 647_390_001, "totalamount": 6820, "totaltax": 620, "statecode": 0, "statuscode": 1})
        )
        .await,
        204
    );
    let o = sb.sales_get("salesorders", &story.order_id).unwrap();
    assert_eq!(
        (o["msdynce_processingstatus"].clone(), num(&o["totalamount"])),
        (json!(647_390_001), 6200.0)
    );

    let invoice = sb.fno_invoice_order("usmf", &story.order_number);
    let inv = sb.fno_rows("ExternallyMaintainedCustomerSalesInvoiceHeaders");
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0]["InvoiceNumber"], json!(invoice));
    assert_eq!(inv[0]["SalesOrderNumber"], json!(story.order_number));
    assert_eq!(inv[0]["InvoiceCustomerAccountNumber"], json!(story.account_number));
    assert_eq!(num(&inv[0]["TotalInvoiceAmount"]), 6820.0);

    // A second story is a second set of documents.
    let again = sb.seed_story();
    assert_ne!(again.quote_id, story.quote_id);
    assert_eq!(again.account_id, story.account_id);
}
