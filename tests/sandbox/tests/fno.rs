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
