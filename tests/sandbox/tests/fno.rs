//! F&O OData wire behaviour.

mod common;

use common::*;
use serde_json::{Value, json};

fn customer(company: &str, account: &str) -> Value {
    json!({"dataAreaId": company, "CustomerAccount": account, "CustomerGroupId": "10", "OrganizationName": account})
}

fn values(v: &Value) -> &Vec<Value> {
    v["value"].as_array().unwrap()
}

#[tokio::test]
async fn reads_are_scoped_to_the_default_company_unless_cross_company() {
    let sb = sandbox().await;
    sb.fno_insert("CustomersV2", customer("usmf", "US-001"));
    sb.fno_insert("CustomersV2", customer("usmf", "US-002"));
    sb.fno_insert("CustomersV2", customer("dat", "DAT-001"));
    let api = Api::fno(&sb).await;

    let v = json(api.get("CustomersV2").send().await.unwrap()).await;
    assert_eq!(values(&v).len(), 1, "default company dat only");
    assert_eq!(values(&v)[0]["dataAreaId"], "dat");

    let v = json(
        api.get("CustomersV2?cross-company=true&$filter=dataAreaId eq 'usmf'")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(values(&v).len(), 2);

    // Key reads of another company need cross-company too.
    let key = "CustomersV2(dataAreaId='usmf',CustomerAccount='US-001')";
    assert_eq!(api.get(key).send().await.unwrap().status(), 404);
    let r = api.get(&format!("{key}?cross-company=true")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v = json(r).await;
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#CustomersV2/$entity")
    );
    assert_eq!(v["CustomerAccount"], "US-001");

    // Keys are case-insensitive like SQL, names are not.
    assert_eq!(
        api.get("CustomersV2(dataAreaId='USMF',CustomerAccount='us-001')?cross-company=true")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(api.get("customersv2").send().await.unwrap().status(), 404);
    assert_eq!(
        api.get("CustomersV2?$select=customeraccount")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    // Every key part is required.
    assert_eq!(
        api.get("CustomersV2(CustomerAccount='US-001')?cross-company=true")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

    // V3 reads the same table.
    let v = json(
        api.get("CustomersV3?cross-company=true&$select=CustomerAccount")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(values(&v).len(), 3);
}

#[tokio::test]
async fn creates_with_defaults_and_refuses_duplicates_and_missing_updates() {
    let sb = sandbox().await;
    let api = Api::fno(&sb).await;
    let r = api.post("CustomersV2", &customer("usmf", "C-1")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("CustomersV2(dataAreaId='usmf',CustomerAccount='C-1')")
    );
    let v = json(r).await;
    assert!(v["@odata.etag"].as_str().unwrap().starts_with("W/\""));
    assert_eq!(v["CreditLimit"], 0);
    assert_eq!(v["SalesCurrencyCode"], "");
    assert_eq!(v["OnHoldStatus"], "No");
    assert_eq!(v["IsExternallyMaintained"], "No");

    // No upsert: a second POST of the key is a 500 write failure.
    let r = api.post("CustomersV2", &customer("usmf", "C-1")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let v = json(r).await;
    assert_eq!(v["error"]["message"], "An error has occurred.");
    assert_eq!(
        v["error"]["innererror"]["type"],
        "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"
    );
    assert!(
        v["error"]["innererror"]["message"]
            .as_str()
            .unwrap()
            .contains("The record already exists.")
    );

    // PATCH of a missing key is 404; of an existing one 204.
    let r = api
        .patch(
            "CustomersV2(dataAreaId='usmf',CustomerAccount='C-404')?cross-company=true",
            &json!({"CreditLimit": 5}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = api
        .patch(
            "CustomersV2(dataAreaId='usmf',CustomerAccount='C-1')?cross-company=true",
            &json!({"CreditLimit": 2500.5, "IsExternallyMaintained": "Yes"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let row = sb
        .fno_get("CustomersV2", &[("dataAreaId", "usmf"), ("CustomerAccount", "C-1")])
        .unwrap();
    assert_eq!(row["CreditLimit"], 2500.5);

    // Validation failures.
    let mut bad_group = customer("usmf", "C-2");
    bad_group["CustomerGroupId"] = json!("Local");
    let r = api.post("CustomersV2", &bad_group).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let msg = json(r).await["error"]["innererror"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains(
            "The value 'Local' in field 'Customer group' is not found in the related table 'Customer groups'."
        ),
        "{msg}"
    );
    let r = api
        .post("CustomersV2", &customer("usmf", &"X".repeat(21)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let r = api
        .post(
            "CustomersV2",
            &json!({"dataAreaId": "usmf", "CustomerAccount": "C-3", "CustomerGroupId": "10", "Bogus": 1}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = api
        .post(
            "CustomersV2",
            &json!({"dataAreaId": "usmf", "CustomerAccount": "C-3", "CustomerGroupId": "10", "OnHoldStatus": "Maybe"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // F&O fields are never null: null is refused even where `$metadata` says Nullable (text, enums), with the
    // empty value to send instead; a non-nullable number is refused by the OData layer. "" and 0 clear.
    let key = "CustomersV2(dataAreaId='usmf',CustomerAccount='C-1')?cross-company=true";
    api.patch(
        key,
        &json!({"PrimaryContactFax": "+1 555 0100", "OrganizationNumberOfEmployees": 40}),
    )
    .send()
    .await
    .unwrap();
    for (field, empty) in [("PrimaryContactFax", "\"\""), ("IsExternallyMaintained", "\"No\"")] {
        let r = api.patch(key, &json!({ field: null })).send().await.unwrap();
        assert_eq!(r.status(), 500, "{field}");
        let msg = json(r).await["error"]["innererror"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            msg.contains(&format!("The value null is not valid for field '{field}'")) && msg.contains(empty),
            "{msg}"
        );
    }
    let r = api
        .patch(key, &json!({"OrganizationNumberOfEmployees": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let row = sb
        .fno_get("CustomersV2", &[("dataAreaId", "usmf"), ("CustomerAccount", "C-1")])
        .unwrap();
    assert_eq!(
        (
            &row["PrimaryContactFax"],
            &row["OrganizationNumberOfEmployees"],
            &row["IsExternallyMaintained"]
        ),
        (&json!("+1 555 0100"), &json!(40), &json!("Yes")),
        "a refused write changes nothing"
    );
    let r = api
        .patch(
            key,
            &json!({"PrimaryContactFax": "", "OrganizationNumberOfEmployees": 0}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let row = sb
        .fno_get("CustomersV2", &[("dataAreaId", "usmf"), ("CustomerAccount", "C-1")])
        .unwrap();
    assert_eq!(
        (&row["PrimaryContactFax"], &row["OrganizationNumberOfEmployees"]),
        (&json!(""), &json!(0))
    );

    // DELETE.
    let r = api
        .delete("CustomersV2(dataAreaId='usmf',CustomerAccount='C-1')?cross-company=true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(sb.fno_rows("CustomersV2").is_empty());
}

#[tokio::test]
async fn filters_enums_wildcards_and_refuses_in() {
    let sb = sandbox().await;
    sb.fno_insert("CustomersV2", json!({"dataAreaId": "usmf", "CustomerAccount": "A", "OrganizationName": "Big Retail Store", "IsExternallyMaintained": "Yes"}));
    sb.fno_insert(
        "CustomersV2",
        json!({"dataAreaId": "usmf", "CustomerAccount": "B", "OrganizationName": "O'Brien Ltd"}),
    );
    let api = Api::fno(&sb).await;
    let get = |f: &str| {
        api.get(&format!(
            "CustomersV2?cross-company=true&$select=CustomerAccount&$filter={f}"
        ))
    };

    let v = json(
        get("IsExternallyMaintained eq Microsoft.Dynamics.DataEntities.NoYes'Yes'")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(values(&v).len(), 1);
    assert_eq!(values(&v)[0]["CustomerAccount"], "A");
    let v = json(get("OrganizationName eq '*retail*'").send().await.unwrap()).await;
    assert_eq!(values(&v).len(), 1);
    let v = json(get("OrganizationName eq 'o''brien ltd'").send().await.unwrap()).await;
    assert_eq!(values(&v)[0]["CustomerAccount"], "B");
    let v = json(
        get("CustomerAccount eq 'A' or CustomerAccount eq 'B'")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(values(&v).len(), 2);

    assert_eq!(get("CustomerAccount in ('A','B')").send().await.unwrap().status(), 400);
    assert_eq!(
        get("IsExternallyMaintained eq 'Yes'").send().await.unwrap().status(),
        400
    );
    assert_eq!(
        get("IsExternallyMaintained gt Microsoft.Dynamics.DataEntities.NoYes'No'")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        get("contains(OrganizationName,'x')").send().await.unwrap().status(),
        400
    );

    let v = json(
        api.get("CustomersV2?cross-company=true&$orderby=CustomerAccount desc&$top=1&$skip=0&$count=true")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["@odata.count"], 2);
    assert_eq!(values(&v)[0]["CustomerAccount"], "B");
}

#[tokio::test]
async fn server_paging_uses_skip_links() {
    let sb = sandbox().await;
    for i in 0..10_001 {
        sb.fno_insert(
            "SellableReleasedProducts",
            json!({"dataAreaId": "dat", "ProductNumber": format!("P{i:05}")}),
        );
    }
    let api = Api::fno(&sb).await;
    let v = json(
        api.get("SellableReleasedProducts?$select=ProductNumber")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(values(&v).len(), 10_000);
    let next = v["@odata.nextLink"].as_str().unwrap();
    assert!(next.contains("$skip=10000"), "{next}");
    let v = json(api.get(next).send().await.unwrap()).await;
    assert_eq!(values(&v).len(), 1);
    assert!(v.get("@odata.nextLink").is_none());
}

#[tokio::test]
async fn batch_change_set_failure_rolls_back_only_that_change_set() {
    let sb = sandbox().await;
    let api = Api::fno(&sb).await;
    let base = format!("{}/data", sb.fno_url());
    let op = |id: u32, body: &Value| {
        format!(
            "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {id}\r\n\r\n\
             POST {base}/CustomersV2 HTTP/1.1\r\nOData-Version: 4.0\r\n\
             Content-Type: application/json;odata.metadata=minimal;charset=UTF-8\r\n\r\n{body}\r\n"
        )
    };
    let mut bad = customer("usmf", "B-2");
    bad["CustomerGroupId"] = json!("99");
    let body = format!(
        "--batch_a\r\nContent-Type: multipart/mixed; boundary=changeset_a\r\n\r\n\
         --changeset_a\r\n{}--changeset_a\r\n{}--changeset_a--\r\n\
         --batch_a\r\nContent-Type: multipart/mixed; boundary=changeset_b\r\n\r\n\
         --changeset_b\r\n{}--changeset_b\r\n{}--changeset_b--\r\n--batch_a--\r\n",
        op(1, &customer("usmf", "A-1")),
        op(2, &customer("usmf", "A-2")),
        op(3, &customer("usmf", "B-1")),
        op(4, &bad),
    );
    let r = api.batch("batch_a", body).send().await.unwrap();
    assert_eq!(r.status(), 200, "F&O batches are 200 even when a change set failed");
    let text = r.text().await.unwrap();
    assert_eq!(text.matches("HTTP/1.1 201 Created").count(), 2);
    assert_eq!(text.matches("HTTP/1.1 500 Internal Server Error").count(), 1);
    assert!(text.contains("Content-ID: 4"));
    assert!(text.contains("AxODataWriteException"));
    let accounts: Vec<String> = sb
        .fno_rows("CustomersV2")
        .iter()
        .map(|r| r["CustomerAccount"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(accounts, vec!["A-1", "A-2"], "B-1 was rolled back with its change set");
    assert_eq!(sb.requests().get("fno POST $batch"), Some(&1));
}

/// The Infolog text of a refused write (500 `AxODataWriteException`), or a panic naming what came instead.
async fn write_failure(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 500);
    let v = json(r).await;
    assert_eq!(v["error"]["message"], "An error has occurred.");
    assert_eq!(
        v["error"]["innererror"]["type"],
        "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"
    );
    v["error"]["innererror"]["message"].as_str().unwrap().to_string()
}

fn related(value: &str, field: &str, table: &str) -> String {
    format!("Warning: The value '{value}' in field '{field}' is not found in the related table '{table}'.")
}

/// A customer with every reference field p2c writes, all from the seeded tables.
fn full_customer(company: &str, account: &str) -> Value {
    json!({"dataAreaId": company, "CustomerAccount": account, "CustomerGroupId": "10", "OrganizationName": account,
           "SalesCurrencyCode": "EUR", "LanguageId": "en-us", "SiteId": "1", "WarehouseId": "13",
           "PaymentTerms": "Net30", "DeliveryTerms": "FOB", "DeliveryMode": "10",
           "AddressCountryRegionISOCode": "US", "AddressState": "WA",
           "DeliveryAddressCountryRegionISOCode": "DE", "DeliveryAddressState": "BY"})
}

#[tokio::test]
async fn reference_data_is_validated_with_the_related_table_text() {
    let sb = sandbox().await;
    let api = Api::fno(&sb).await;
    assert_eq!(
        api.post("CustomersV2", &full_customer("usmf", "REF-OK"))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    // Each field with a value its related table does not hold: (field, value, field label, table label).
    let cases = [
        ("CustomerGroupId", "99", "Customer group", "Customer groups"),
        ("SalesCurrencyCode", "ZZZ", "Currency", "Currency"),
        ("LanguageId", "xx-yy", "Language", "Languages"),
        ("SiteId", "9", "Site", "Sites"),
        ("WarehouseId", "99", "Warehouse", "Warehouses"),
        ("PaymentTerms", "Net99", "Terms of payment", "Terms of payment"),
        ("DeliveryTerms", "XYZ", "Delivery terms", "Terms of delivery"),
        ("DeliveryMode", "99", "Mode of delivery", "Modes of delivery"),
        ("AddressCountryRegionISOCode", "QQ", "Country/region", "Country/region"),
        // A state of another country: states are validated within the address's country.
        ("AddressState", "BY", "State", "States"),
        ("DeliveryAddressState", "WA", "State", "States"),
    ];
    for (i, (field, value, label, table)) in cases.iter().enumerate() {
        let account = format!("REF-{i}");
        let mut body = full_customer("usmf", &account);
        body[*field] = json!(value);
        let msg = write_failure(api.post("CustomersV2", &body).send().await.unwrap()).await;
        assert!(msg.contains(&related(value, label, table)), "{field}: {msg}");
        assert!(
            msg.contains(&format!("validateField failed on field 'CustCustomerV2Entity.{field}'")),
            "{msg}"
        );
        assert!(
            sb.fno_get("CustomersV2", &[("dataAreaId", "usmf"), ("CustomerAccount", &account)])
                .is_none()
        );
    }
    // An update is validated the same way and changes nothing.
    let key = "CustomersV2(dataAreaId='usmf',CustomerAccount='REF-OK')?cross-company=true";
    let msg = write_failure(
        api.patch(key, &json!({"SalesCurrencyCode": "ZZZ"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(msg.contains(&related("ZZZ", "Currency", "Currency")), "{msg}");
    let row = sb
        .fno_get("CustomersV2", &[("dataAreaId", "usmf"), ("CustomerAccount", "REF-OK")])
        .unwrap();
    assert_eq!(row["SalesCurrencyCode"], "EUR");
    // Empty is no value: not looked up (F&O fills its own defaults).
    assert_eq!(
        api.patch(key, &json!({"WarehouseId": "", "AddressState": ""}))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
}

#[tokio::test]
async fn sites_and_warehouses_are_per_company_units_and_currencies_global() {
    let sb = sandbox().await;
    let api = Api::fno(&sb).await;
    // A legal entity set up after the sandbox started has no customer groups, sites or warehouses of its own.
    sb.fno_insert(
        "SellableReleasedProducts",
        json!({"dataAreaId": "demf", "ProductNumber": "P-1", "SalesUnitSymbol": "ea"}),
    );
    let msg = write_failure(
        api.post("CustomersV2", &full_customer("demf", "D-1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        msg.contains(&related("10", "Customer group", "Customer groups")),
        "{msg}"
    );
    sb.fno_add_reference("CustomerGroups", "demf", "10");
    let msg = write_failure(
        api.post("CustomersV2", &full_customer("demf", "D-1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(msg.contains(&related("1", "Site", "Sites")), "{msg}");
    sb.fno_add_reference("InventSite", "demf", "1");
    let msg = write_failure(
        api.post("CustomersV2", &full_customer("demf", "D-1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(msg.contains(&related("13", "Warehouse", "Warehouses")), "{msg}");
    sb.fno_add_reference("InventLocation", "demf", "13");
    for (table, value) in [("PaymTerm", "Net30"), ("DlvTerm", "FOB"), ("DlvMode", "10")] {
        sb.fno_add_reference(table, "demf", value);
    }
    // Currency, language, countries and states were there all along: they are shared by every company.
    assert_eq!(
        api.post("CustomersV2", &full_customer("demf", "D-1"))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );

    // Order lines: the unit must be a unit of measure F&O has (global), e.g. "ea", not the Sales unit name "Each".
    let order = json!({"dataAreaId": "usmf", "SalesOrderNumber": "SO-REF", "OrderingCustomerAccountNumber": "C-REF",
                       "CurrencyCode": "USD", "DeliveryAddressCountryRegionISOCode": "US", "DeliveryAddressStateId": "TX"});
    sb.fno_insert("CustomersV2", customer("usmf", "C-REF"));
    sb.fno_insert(
        "SellableReleasedProducts",
        json!({"dataAreaId": "usmf", "ProductNumber": "D0001", "SalesUnitSymbol": "ea"}),
    );
    assert_eq!(
        api.post("CDSSalesOrderHeaders", &order).send().await.unwrap().status(),
        201
    );
    let line = |unit: &str, seq: i64| {
        json!({"dataAreaId": "usmf", "SalesOrderNumber": "SO-REF", "LineCreationSequenceNumber": seq,
               "ProductNumber": "D0001", "OrderedSalesQuantity": 1, "SalesUnitSymbol": unit})
    };
    let msg = write_failure(api.post("CDSSalesOrderLines", &line("Each", 1)).send().await.unwrap()).await;
    assert!(msg.contains(&related("Each", "Unit", "Units")), "{msg}");
    assert!(msg.contains("SalesOrderLineCDSEntity.SalesUnitSymbol"), "{msg}");
    for (seq, unit) in [(1, "ea"), (2, "pcs"), (3, "kg")] {
        assert_eq!(
            api.post("CDSSalesOrderLines", &line(unit, seq))
                .send()
                .await
                .unwrap()
                .status(),
            201,
            "{unit}"
        );
    }
    let mut bad_currency = order.clone();
    bad_currency["SalesOrderNumber"] = json!("SO-REF-2");
    bad_currency["CurrencyCode"] = json!("XYZ");
    let msg = write_failure(api.post("CDSSalesOrderHeaders", &bad_currency).send().await.unwrap()).await;
    assert!(msg.contains(&related("XYZ", "Currency", "Currency")), "{msg}");
}

#[tokio::test]
async fn string_lengths_follow_the_extended_data_types() {
    let sb = sandbox().await;
    let api = Api::fno(&sb).await;
    // (field, EDT length): the longest value passes, one more character is refused with validateField's text.
    let cases = [
        ("OrganizationName", 100),
        ("AddressStreet", 250),
        ("AddressCity", 60),
        ("AddressZipCode", 10),
        ("PrimaryContactPhone", 255),
        ("PrimaryContactEmail", 255),
        ("PersonFirstName", 25),
    ];
    for (i, (field, max)) in cases.iter().enumerate() {
        let mut ok = customer("usmf", &format!("LEN-{i}"));
        ok[*field] = json!("x".repeat(*max));
        assert_eq!(
            api.post("CustomersV2", &ok).send().await.unwrap().status(),
            201,
            "{field}"
        );
        let mut long = customer("usmf", &format!("LONG-{i}"));
        long[*field] = json!("x".repeat(max + 1));
        let msg = write_failure(api.post("CustomersV2", &long).send().await.unwrap()).await;
        assert!(
            msg.contains(&format!("is too long: {} characters; the maximum is {max}.", max + 1))
                && msg.contains(&format!("validateField failed on field 'CustCustomerV2Entity.{field}'")),
            "{field}: {msg}"
        );
    }
    // The account number (CustAccount, 20).
    let msg = write_failure(
        api.post("CustomersV2", &customer("usmf", &"A".repeat(21)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        msg.contains("(CustomerAccount) is too long: 21 characters; the maximum is 20."),
        "{msg}"
    );
    // F&O counts UTF-16 code units like nvarchar: an emoji takes two of the ten of a ZIP code.
    let mut zip = customer("usmf", "LEN-UTF16");
    zip["AddressZipCode"] = json!("123456789\u{1F600}");
    let msg = write_failure(api.post("CustomersV2", &zip).send().await.unwrap()).await;
    assert!(msg.contains("is too long: 11 characters; the maximum is 10."), "{msg}");
    zip["AddressZipCode"] = json!("12345678\u{1F600}");
    assert_eq!(api.post("CustomersV2", &zip).send().await.unwrap().status(), 201);
    // Order headers: the customer requisition (CustPurchaseOrder, 20); a field no EDT row names is not checked.
    sb.fno_insert("CustomersV2", customer("usmf", "C-LEN"));
    let header = |n: &str, req: &str| {
        json!({"dataAreaId": "usmf", "SalesOrderNumber": n, "OrderingCustomerAccountNumber": "C-LEN",
               "CustomerRequisitionNumber": req})
    };
    assert_eq!(
        api.post("CDSSalesOrderHeaders", &header("SO-L1", &"R".repeat(20)))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let msg = write_failure(
        api.post("CDSSalesOrderHeaders", &header("SO-L2", &"R".repeat(21)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        msg.contains("SalesOrderHeaderCDSEntity.CustomerRequisitionNumber"),
        "{msg}"
    );
}

#[tokio::test]
async fn date_only_fields_come_back_at_noon_utc() {
    let sb = sandbox().await;
    let api = Api::fno(&sb).await;
    sb.fno_insert("CustomersV2", customer("usmf", "C-DATE"));
    let r = api
        .post(
            "CDSSalesOrderHeaders",
            &json!({"dataAreaId": "usmf", "SalesOrderNumber": "SO-D", "OrderingCustomerAccountNumber": "C-DATE",
                    "RequestedReceiptDate": "2026-07-30T08:58:53Z", "RequestedShippingDate": "2026-07-29T23:30:00-05:00"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v = json(r).await;
    // The date is kept (in UTC: 23:30 at -05:00 is the next day), the time is F&O's noon.
    assert_eq!(v["RequestedReceiptDate"], "2026-07-30T12:00:00Z");
    assert_eq!(v["RequestedShippingDate"], "2026-07-30T12:00:00Z");
    // A date-time field keeps its time; an unset date is F&O's empty date.
    assert_ne!(&v["OrderCreationDateTime"].as_str().unwrap()[11..], "12:00:00Z");
    assert_eq!(v["ConfirmedShippingDate"], "1900-01-01T12:00:00Z");
    let key = "CDSSalesOrderHeaders(dataAreaId='usmf',SalesOrderNumber='SO-D')?cross-company=true";
    assert_eq!(
        api.patch(key, &json!({"RequestedReceiptDate": "2026-08-01T00:00:01Z"}))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let v = json(api.get(key).send().await.unwrap()).await;
    assert_eq!(v["RequestedReceiptDate"], "2026-08-01T12:00:00Z");
    let found = json(
        api.get("CDSSalesOrderHeaders?cross-company=true&$filter=RequestedReceiptDate eq 2026-08-01T12:00:00Z")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(values(&found).len(), 1);
    // A bare date is no Edm.DateTimeOffset literal: the OData layer refuses it.
    let r = api
        .patch(key, &json!({"RequestedReceiptDate": "2026-08-01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn creates_inside_a_change_set_answer_201_with_location_and_body() {
    let sb = sandbox().await;
    let api = Api::fno(&sb).await;
    let base = format!("{}/data", sb.fno_url());
    let op = |id: u32, prefer: &str, body: &Value| {
        format!(
            "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {id}\r\n\r\n\
             POST {base}/CustomersV2 HTTP/1.1\r\nOData-Version: 4.0\r\n{prefer}\
             Content-Type: application/json;odata.metadata=minimal;charset=UTF-8\r\n\r\n{body}\r\n"
        )
    };
    let body = format!(
        "--batch_l\r\nContent-Type: multipart/mixed; boundary=changeset_l\r\n\r\n\
         --changeset_l\r\n{}--changeset_l\r\n{}--changeset_l--\r\n--batch_l--\r\n",
        op(1, "", &customer("usmf", "LOC-1")),
        op(2, "Prefer: return=minimal\r\n", &customer("usmf", "LOC-2")),
    );
    let r = api.batch("batch_l", body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let parts: Vec<&str> = text.split("--changesetresponse_").skip(1).collect();
    // The full create: 201, Location of the new row, its ETag and the entity with its defaults.
    let first = parts.iter().find(|p| p.contains("Content-ID: 1")).unwrap();
    assert!(first.contains("HTTP/1.1 201 Created"), "{first}");
    assert!(
        first.contains(&format!(
            "Location: {base}/CustomersV2(dataAreaId='usmf',CustomerAccount='LOC-1')"
        )),
        "{first}"
    );
    assert!(first.contains("ETag: W/"), "{first}");
    assert!(
        first.contains("\"CustomerAccount\":\"LOC-1\"") && first.contains("\"CreditLimit\":0"),
        "{first}"
    );
    // return=minimal: 204 with the same Location and OData-EntityId, no body.
    let second = parts.iter().find(|p| p.contains("Content-ID: 2")).unwrap();
    assert!(second.contains("HTTP/1.1 204 No Content"), "{second}");
    assert!(
        second.contains(&format!(
            "Location: {base}/CustomersV2(dataAreaId='usmf',CustomerAccount='LOC-2')"
        )),
        "{second}"
    );
    assert_eq!(sb.fno_rows("CustomersV2").len(), 2);
}
