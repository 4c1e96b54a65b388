//! Dataverse Web API wire behaviour.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::{Value, json};

fn ids(v: &Value, pk: &str) -> Vec<String> {
    v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[pk].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn pages_with_maxpagesize_and_next_links() {
    let sb = sandbox().await;
    sb.seed_demo(12);
    let api = Api::sales(&sb).await;

    let mut seen = HashSet::new();
    let mut url = "accounts?$select=name,accountnumber".to_string();
    let mut pages = 0;
    loop {
        let r = api
            .get(&url)
            .header("Prefer", "odata.maxpagesize=5")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["preference-applied"], "odata.maxpagesize=5");
        assert_eq!(r.headers()["odata-version"], "4.0");
        assert_eq!(r.headers()["content-type"], "application/json; odata.metadata=minimal");
        let v = json(r).await;
        assert!(
            v["@odata.context"]
                .as_str()
                .unwrap()
                .ends_with("$metadata#accounts(name,accountnumber)")
        );
        for row in v["value"].as_array().unwrap() {
            assert!(row["@odata.etag"].as_str().unwrap().starts_with("W/\""));
            assert!(row["accountid"].is_string(), "primary key always returned");
            assert!(row.get("telephone1").is_none(), "$select limits the columns");
            assert!(
                seen.insert(row["accountid"].as_str().unwrap().to_string()),
                "no row twice"
            );
        }
        pages += 1;
        match v["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&sb.sales_url()), "absolute link");
                assert!(next.contains("$skiptoken="));
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 12);
}

#[tokio::test]
async fn rejects_skip_unknown_columns_and_bad_entity_sets() {
    let sb = sandbox().await;
    let api = Api::sales(&sb).await;
    let r = api.get("accounts?$top=2&$skip=2").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(json(r).await["error"]["message"].as_str().unwrap().contains("$skip"));

    let r = api.get("accounts?$select=name,nosuchcolumn").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let msg = json(r).await["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("Could not find a property named 'nosuchcolumn'"), "{msg}");

    let r = api.get("Accounts").send().await.unwrap();
    assert_eq!(r.status(), 404);

    let missing = uuid_like();
    let r = api.get(&format!("accounts({missing})")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v = json(r).await;
    assert_eq!(v["error"]["code"], "0x80040217");
    assert_eq!(
        v["error"]["message"],
        format!("account With Id = {missing} Does Not Exist")
    );
}

fn uuid_like() -> String {
    "6f1c1a3e-0000-4000-8000-000000000001".to_string()
}

#[tokio::test]
async fn filters_escape_quotes_and_support_in() {
    let sb = sandbox().await;
    let a = sb.sales_insert("accounts", json!({"name": "Margie's Travel", "accountnumber": "ACC-1"}));
    sb.sales_insert(
        "accounts",
        json!({"name": "Contoso", "accountnumber": "ACC-2", "creditlimit": 5000}),
    );
    sb.sales_insert(
        "accounts",
        json!({"name": "Fabrikam", "accountnumber": "ACC-3", "creditlimit": 100}),
    );
    let api = Api::sales(&sb).await;

    let q = |f: &str| format!("accounts?$select=name&$filter={}", urlencode(f));
    let v = json(api.get(&q("name eq 'margie''s travel'")).send().await.unwrap()).await;
    assert_eq!(
        ids(&v, "accountid"),
        vec![a.clone()],
        "case-insensitive, '' escapes a quote"
    );

    let r = api.get(&q("name eq 'Margie's Travel'")).send().await.unwrap();
    assert_eq!(r.status(), 400, "an unescaped quote is a syntax error");

    let v = json(
        api.get(&q(
            r#"Microsoft.Dynamics.CRM.In(PropertyName='accountnumber',PropertyValues=["ACC-2","ACC-3"])"#,
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 2);

    let v = json(
        api.get(&q("creditlimit gt 1000 or contains(name,'BRIK')"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 2);

    let v = json(
        api.get(&format!("accounts?$filter=accountid eq {a}&$count=true"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["@odata.count"], 1);

    let r = api.get(&q("name eq 5")).send().await.unwrap();
    assert_eq!(r.status(), 400, "type mismatch");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn change_tracking_full_set_then_deltas_with_deletes() {
    let sb = sandbox().await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(sb.sales_insert(
            "accounts",
            json!({"name": format!("A{i}"), "accountnumber": format!("N{i}")}),
        ));
    }
    let api = Api::sales(&sb).await;
    let prefer = "odata.track-changes,odata.maxpagesize=3";

    // Filters are refused with change tracking.
    let r = api
        .get("accounts?$filter=name eq 'x'")
        .header("Prefer", "odata.track-changes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        json(r).await["error"]["message"],
        "The \"$filter\" query parameter isn't supported when Change Tracking is enabled."
    );

    // Initial sync: the whole set, paged; the delta link comes on the last page only.
    let mut url = "accounts?$select=name,accountnumber".to_string();
    let mut all = Vec::new();
    let delta = loop {
        let r = api.get(&url).header("Prefer", prefer).send().await.unwrap();
        let applied: Vec<String> = r
            .headers()
            .get_all("preference-applied")
            .iter()
            .map(|h| h.to_str().unwrap().to_string())
            .collect();
        assert!(applied.contains(&"odata.track-changes".to_string()), "{applied:?}");
        let v = json(r).await;
        all.extend(ids(&v, "accountid"));
        if let Some(n) = v["@odata.nextLink"].as_str() {
            assert!(v.get("@odata.deltaLink").is_none());
            url = n.to_string();
        } else {
            break v["@odata.deltaLink"]
                .as_str()
                .expect("deltaLink on last page")
                .to_string();
        }
    };
    assert_eq!(all.len(), 7);
    assert!(delta.contains("$deltatoken="));
    assert!(delta.contains("$select=name,accountnumber"));

    // Nothing changed: empty delta with a fresh link.
    let v = json(api.get(&delta).header("Prefer", prefer).send().await.unwrap()).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 0);
    assert!(v["@odata.context"].as_str().unwrap().ends_with("/$delta"));

    // Changes: one update, one create, one delete (API) and one delete (direct).
    sb.sales_update("accounts", &created[2], json!({"name": "A2 renamed"}));
    let r = api.post("accounts", &json!({"name": "A7"})).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = api.delete(&format!("accounts({})", created[0])).send().await.unwrap();
    assert_eq!(r.status(), 204);
    sb.sales_delete("accounts", &created[1]);

    let mut url = delta.clone();
    let mut changed = Vec::new();
    let mut deleted = Vec::new();
    let next_delta = loop {
        let v = json(api.get(&url).header("Prefer", prefer).send().await.unwrap()).await;
        for row in v["value"].as_array().unwrap() {
            if row["reason"] == "deleted" {
                assert!(
                    row["@odata.context"]
                        .as_str()
                        .unwrap()
                        .ends_with("$metadata#accounts/$deletedEntity")
                );
                deleted.push(row["id"].as_str().unwrap().to_string());
            } else {
                assert!(deleted.is_empty(), "changed rows come before deletions");
                changed.push(row["name"].as_str().unwrap().to_string());
            }
        }
        match v["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => break v["@odata.deltaLink"].as_str().unwrap().to_string(),
        }
    };
    assert_eq!(changed, vec!["A2 renamed", "A7"], "ordered by version");
    assert_eq!(deleted, vec![created[0].clone(), created[1].clone()]);

    // The new link reports nothing until the next change.
    let v = json(api.get(&next_delta).header("Prefer", prefer).send().await.unwrap()).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 0);

    // Expired tokens make the client fall back to a full sync.
    sb.expire_delta_tokens();
    let r = api.get(&next_delta).header("Prefer", prefer).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["error"]["code"], "0x80044352");
}

#[tokio::test]
async fn creates_updates_and_conditional_writes() {
    let sb = sandbox().await;
    sb.seed_demo(0);
    let api = Api::sales(&sb).await;
    let usd = sb
        .sales_rows("transactioncurrencies")
        .into_iter()
        .find(|c| c["isocurrencycode"] == "USD")
        .unwrap()["transactioncurrencyid"]
        .as_str()
        .unwrap()
        .to_string();

    // POST: 204 + OData-EntityId; lookups through @odata.bind.
    let r = api
        .post(
            "accounts",
            &json!({"name": "Bound", "transactioncurrencyid@odata.bind": format!("/transactioncurrencies({usd})")}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let entity = r.headers()["odata-entityid"].to_str().unwrap().to_string();
    let id = entity.rsplit('(').next().unwrap().trim_end_matches(')').to_string();
    let row = sb.sales_get("accounts", &id).unwrap();
    assert_eq!(row["_transactioncurrencyid_value"], usd);
    assert_eq!(row["statecode"], 0);

    // return=representation: 201 with the row.
    let r = api
        .post("accounts?$select=name", &json!({"name": "Rep"}))
        .header("Prefer", "return=representation")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v = json(r).await;
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#accounts(name)/$entity")
    );
    assert_eq!(v["name"], "Rep");

    // statecode cannot be set on create; lookup values cannot be written directly.
    let r = api
        .post("accounts", &json!({"name": "S", "statecode": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = api
        .post("accounts", &json!({"name": "S", "_transactioncurrencyid_value": usd}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = api
        .post("accounts", &json!({"name": "S", "nosuch": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = api
        .post("accounts", &json!({"accountnumber": "X".repeat(21)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["error"]["code"], "0x80044331");

    // PATCH with If-Match: * never creates.
    let missing = "0c7f3a11-1111-4111-8111-111111111111";
    let r = api
        .patch(&format!("accounts({missing})"), &json!({"name": "x"}))
        .header("If-Match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Plain PATCH upserts.
    let r = api
        .patch(&format!("accounts({missing})"), &json!({"name": "upserted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(sb.sales_get("accounts", missing).unwrap()["name"], "upserted");
    // If-None-Match: * never updates.
    let r = api
        .patch(&format!("accounts({missing})"), &json!({"name": "again"}))
        .header("If-None-Match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);

    // Optimistic concurrency on the ETag.
    let etag = sb.sales_get("accounts", &id).unwrap()["@odata.etag"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api
        .patch(&format!("accounts({id})"), &json!({"name": "v2"}))
        .header("If-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = api
        .patch(&format!("accounts({id})"), &json!({"name": "v3"}))
        .header("If-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    assert_eq!(json(r).await["error"]["code"], "0x80060882");

    // Alternate key on contacts (the P2C solution's contact number).
    let r = api
        .patch(
            "contacts(msdynce_contactnumber='CON-01000-AAAAAA')",
            &json!({"lastname": "O'Neil"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let v = json(
        api.get("contacts(msdynce_contactnumber='CON-01000-AAAAAA')?$select=fullname")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["fullname"], "O'Neil");
    let r = api.get("accounts(accountnumber='ACC-1')").send().await.unwrap();
    assert_eq!(r.status(), 400, "accountnumber is not an alternate key in this org");
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

#[tokio::test]
async fn batch_change_sets_are_atomic_and_stop_at_first_error() {
    let sb = sandbox().await;
    let api = Api::sales(&sb).await;
    let ok = json!({"name": "in batch"});
    let bad = json!({"name": "bad", "nosuchcolumn": 1});
    let body = format!(
        "--batch_1\r\nContent-Type: multipart/mixed; boundary=cs_1\r\n\r\n\
         --cs_1\r\n{}--cs_1\r\n{}--cs_1--\r\n\
         --batch_1\r\nContent-Type: multipart/mixed; boundary=cs_2\r\n\r\n\
         --cs_2\r\n{}--cs_2\r\n{}--cs_2--\r\n\
         --batch_1\r\n{}--batch_1--\r\n",
        part("POST", "/api/data/v9.2/accounts", Some(&ok), Some(1)),
        part(
            "POST",
            "/api/data/v9.2/contacts",
            Some(&json!({"lastname": "L", "parentcustomerid_account@odata.bind": "$1"})),
            Some(2)
        ),
        part("POST", "/api/data/v9.2/accounts", Some(&ok), Some(3)),
        part("POST", "/api/data/v9.2/accounts", Some(&bad), Some(4)),
        part("GET", "/api/data/v9.2/accounts?$select=name", None, None),
    );
    let r = api.batch("batch_1", body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 400, "the batch takes the status of its first failure");
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("multipart/mixed; boundary=batchresponse_"));
    let text = r.text().await.unwrap();
    assert!(text.contains("changesetresponse_"), "first change set succeeded");
    assert!(text.contains("HTTP/1.1 400 Bad Request"));
    assert!(
        !text.contains("HTTP/1.1 200 OK"),
        "the GET after the failure did not run"
    );
    // First change set committed (account + contact bound to it), second rolled back entirely.
    assert_eq!(sb.sales_rows("accounts").len(), 1);
    let contact = &sb.sales_rows("contacts")[0];
    assert_eq!(
        contact["_parentcustomerid_value"],
        sb.sales_rows("accounts")[0]["accountid"]
    );

    // With continue-on-error the batch is 200 and later parts run.
    let r = api
        .batch("batch_1", body)
        .header("Prefer", "odata.continue-on-error")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("HTTP/1.1 200 OK"));
    assert_eq!(sb.sales_rows("accounts").len(), 2);
    assert_eq!(sb.requests().get("sales POST $batch"), Some(&2));
}

#[tokio::test]
async fn a_get_url_over_32_kb_is_414_and_a_write_that_is_not_json_is_415() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    let api = Api::sales(&sb).await;
    // 32 KB is Dataverse's GET URL limit (spec/protocols.md, "URL length limitations").
    let ors: Vec<String> = (0..700)
        .map(|i| format!("accountid eq 00000000-0000-0000-0000-{i:012}"))
        .collect();
    let long = format!("accounts?$select=name&$filter={}", ors.join(" or "));
    let r = api.get(&long).send().await.unwrap();
    assert_eq!(r.status(), 414);
    let v = json(r).await;
    assert!(v["error"]["message"].as_str().unwrap().contains("32768"), "{v}");
    let ok = format!("accounts?$select=name&$filter={}", ors[..200].join(" or "));
    assert_eq!(
        api.get(&ok).send().await.unwrap().status(),
        200,
        "p2c reads 200 ids at a time"
    );

    let r = api
        .client
        .post(format!("{}/accounts", api.base))
        .bearer_auth(&api.token)
        .header("Content-Type", "text/plain")
        .body(r#"{"name": "Plain Text Ltd"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert!(!sb.sales_rows("accounts").iter().any(|a| a["name"] == "Plain Text Ltd"));
}

// ------------------------------------------------------------------------------------------------
// What Dataverse refuses (issue 13, Dataverse half)
// ------------------------------------------------------------------------------------------------

/// (status, error code, error message) of a Dataverse error response.
async fn dv_error(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v = json(r).await;
    (
        status,
        v["error"]["code"].as_str().unwrap_or("").to_string(),
        v["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

fn created(r: &reqwest::Response) -> String {
    let e = r.headers()["odata-entityid"].to_str().unwrap();
    e.rsplit('(').next().unwrap().trim_end_matches(')').to_string()
}

fn row_id(sb: &p2c_sandbox::Sandbox, set: &str, pk: &str, col: &str, value: &str) -> String {
    let rows = sb.sales_rows(set);
    let r = rows
        .iter()
        .find(|r| r[col] == value)
        .unwrap_or_else(|| panic!("{set} {value}"));
    r[pk].as_str().unwrap().to_string()
}

async fn post(api: &Api, set: &str, body: Value) -> reqwest::Response {
    api.post(set, &body).send().await.unwrap()
}

#[tokio::test]
async fn products_start_draft_and_lines_need_an_active_product_a_unit_of_its_group_and_a_price_list_item() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    let api = Api::sales(&sb).await;
    let group = row_id(&sb, "uomschedules", "uomscheduleid", "name", "Default unit");
    let ea = row_id(&sb, "uoms", "uomid", "name", "ea");
    let pcs = row_id(&sb, "uoms", "uomid", "name", "pcs");
    let list = row_id(&sb, "pricelevels", "pricelevelid", "name", "CRM Service USA (sample)");
    let usd = row_id(
        &sb,
        "transactioncurrencies",
        "transactioncurrencyid",
        "isocurrencycode",
        "USD",
    );
    let account = sb.sales_rows("accounts")[0]["accountid"].as_str().unwrap().to_string();

    let r = post(
        &api,
        "products",
        json!({"name": "Widget", "productnumber": "W1",
        "defaultuomscheduleid@odata.bind": format!("/uomschedules({group})"),
        "defaultuomid@odata.bind": format!("/uoms({ea})")}),
    )
    .await;
    assert_eq!(r.status(), 204);
    let product = created(&r);
    let p = sb.sales_get("products", &product).unwrap();
    assert_eq!(
        (&p["statecode"], &p["statuscode"]),
        (&json!(2), &json!(0)),
        "created in Draft"
    );
    let r = post(
        &api,
        "productpricelevels",
        json!({"amount": 10.0, "pricingmethodcode": 1,
        "pricelevelid@odata.bind": format!("/pricelevels({list})"),
        "productid@odata.bind": format!("/products({product})"), "uomid@odata.bind": format!("/uoms({ea})")}),
    )
    .await;
    assert_eq!(r.status(), 204, "a Draft product takes price list items");
    let r = post(
        &api,
        "quotes",
        json!({"name": "Q", "customerid_account@odata.bind": format!("/accounts({account})"),
        "pricelevelid@odata.bind": format!("/pricelevels({list})"),
        "transactioncurrencyid@odata.bind": format!("/transactioncurrencies({usd})")}),
    )
    .await;
    let quote = created(&r);
    let line = |uom: &str, extra: Value| {
        let mut b = json!({"quoteid@odata.bind": format!("/quotes({quote})"), "quantity": 2,
            "productid@odata.bind": format!("/products({product})"), "uomid@odata.bind": format!("/uoms({uom})")});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };

    let (status, code, msg) = dv_error(post(&api, "quotedetails", line(&ea, json!({}))).await).await;
    assert_eq!((status, code.as_str()), (400, "0x80040203"), "{msg}");
    assert!(msg.contains("W1 is in Draft state"), "{msg}");

    // Publishing is SetState: statecode 0 with statuscode 1; the other transitions give the platform's errors.
    let path = format!("products({product})");
    let r = api
        .patch(&path, &json!({"statecode": 0, "statuscode": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, code, msg) = dv_error(api.patch(&path, &json!({"statecode": 0})).send().await.unwrap()).await;
    assert_eq!(
        (status, code.as_str(), msg.as_str()),
        (400, "0x8004F982", "Product is already in Active State.")
    );
    let (status, code, msg) = dv_error(
        api.patch(&path, &json!({"statecode": 2, "statuscode": 0}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str(), msg.as_str()),
        (
            400,
            "0x8004F912",
            "You can't set a published product to the draft state."
        )
    );

    // A unit of another unit group.
    let r = post(&api, "uomschedules", json!({"name": "Weight", "baseuomname": "kg"})).await;
    let weight = created(&r);
    let r = post(
        &api,
        "uoms",
        json!({"name": "kg", "quantity": 1,
        "uomscheduleid@odata.bind": format!("/uomschedules({weight})")}),
    )
    .await;
    let kg = created(&r);
    let (status, code, msg) = dv_error(post(&api, "quotedetails", line(&kg, json!({}))).await).await;
    assert_eq!(
        (status, code.as_str(), msg.as_str()),
        (400, "0x80043b14", "The specified unit is not valid for this product.")
    );
    // A unit of the group that the price list has no item for: refused unless the price is overridden.
    let (status, code, msg) = dv_error(post(&api, "quotedetails", line(&pcs, json!({}))).await).await;
    assert_eq!((status, code.as_str()), (400, "0x80040203"), "{msg}");
    assert!(msg.contains("is not in the price list"), "{msg}");
    let r = post(
        &api,
        "quotedetails",
        line(&pcs, json!({"ispriceoverridden": true, "priceperunit": 7.5})),
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = post(&api, "quotedetails", line(&ea, json!({}))).await;
    assert_eq!(r.status(), 204);
    let l = sb.sales_get("quotedetails", &created(&r)).unwrap();
    assert_eq!(
        l["priceperunit"].as_f64(),
        Some(10.0),
        "priced from the price list item"
    );
    assert_eq!(sb.sales_rows("quotedetails").len(), 2, "refused lines were not stored");
}

#[tokio::test]
async fn products_are_created_active_when_the_organization_says_so() {
    let sb = sandbox_with(p2c_sandbox::SandboxConfig {
        create_products_in_active_state: true,
        ..Default::default()
    })
    .await;
    let api = Api::sales(&sb).await;
    let v = json(
        api.get("organizations?$select=createproductswithoutparentinactivestate")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["value"][0]["createproductswithoutparentinactivestate"], true);
    let r = post(&api, "products", json!({"name": "Widget", "productnumber": "W1"})).await;
    let p = sb.sales_get("products", &created(&r)).unwrap();
    assert_eq!((&p["statecode"], &p["statuscode"]), (&json!(0), &json!(1)));
}

#[tokio::test]
async fn choice_values_and_state_status_pairs_are_checked_on_every_table() {
    let sb = sandbox().await;
    let api = Api::sales(&sb).await;
    let (status, code, msg) = dv_error(post(&api, "accounts", json!({"name": "x", "industrycode": 999})).await).await;
    assert_eq!((status, code.as_str()), (400, "0x8004431a"));
    assert!(
        msg.starts_with(
            "A validation error occurred.  The value 999 of 'industrycode' on record of type 'account' is outside \
             the valid range. Accepted Values: 1,2,3,"
        ),
        "{msg}"
    );
    let (status, code, _) = dv_error(post(&api, "contacts", json!({"lastname": "x", "gendercode": 3})).await).await;
    assert_eq!((status, code.as_str()), (400, "0x8004431a"));
    assert!(sb.sales_rows("accounts").is_empty() && sb.sales_rows("contacts").is_empty());

    let r = post(&api, "accounts", json!({"name": "x", "industrycode": 7})).await;
    let id = created(&r);
    let path = format!("accounts({id})");
    let (status, code, msg) = dv_error(
        api.patch(&path, &json!({"statecode": 1, "statuscode": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str(), msg),
        (
            400,
            "0x80040203",
            format!("1 is not a valid status code for state code AccountState.Inactive on account with Id {id}.")
        )
    );
    let r = api
        .patch(&path, &json!({"statecode": 1, "statuscode": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(sb.sales_get("accounts", &id).unwrap()["statuscode"], 2);
}

#[tokio::test]
async fn change_tracking_off_for_a_table_refuses_its_delta_reads_and_its_definition_says_so() {
    let sb = sandbox_with(p2c_sandbox::SandboxConfig {
        change_tracking_off: vec!["accounts".into()],
        ..Default::default()
    })
    .await;
    sb.seed_demo(2);
    let api = Api::sales(&sb).await;
    let track = |path: &str| api.get(path).header("Prefer", "odata.track-changes");
    let (status, code, msg) = dv_error(track("accounts?$select=name").send().await.unwrap()).await;
    assert_eq!(
        (status, code.as_str(), msg.as_str()),
        (400, "0x80072491", "Entity account isn't enabled for change tracking.")
    );
    let (status, code, _) = dv_error(api.get("accounts/$count?$deltatoken=1!x").send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "0x80072491"));
    assert_eq!(
        api.get("accounts?$select=name").send().await.unwrap().status(),
        200,
        "plain reads work"
    );
    assert_eq!(track("contacts?$select=fullname").send().await.unwrap().status(), 200);
    let def = |logical: &str| {
        api.get(&format!(
            "EntityDefinitions(LogicalName='{logical}')?$select=LogicalName,ChangeTrackingEnabled"
        ))
    };
    let v = json(def("account").send().await.unwrap()).await;
    assert_eq!(v["ChangeTrackingEnabled"], false);
    let v = json(def("contact").send().await.unwrap()).await;
    assert_eq!(v["ChangeTrackingEnabled"], true);
}

#[tokio::test]
async fn count_with_a_delta_token_is_the_number_of_changes() {
    let sb = sandbox().await;
    sb.seed_demo(3);
    let api = Api::sales(&sb).await;
    let v = json(
        api.get("accounts?$select=name")
            .header("Prefer", "odata.track-changes")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let delta = v["@odata.deltaLink"].as_str().unwrap().to_string();
    let token = delta.split("$deltatoken=").nth(1).unwrap().to_string();
    let count = |q: String| api.get(&format!("accounts/$count?{q}"));
    let text = count(format!("$deltatoken={token}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "0");
    let ids: Vec<String> = sb
        .sales_rows("accounts")
        .iter()
        .map(|r| r["accountid"].as_str().unwrap().to_string())
        .collect();
    sb.sales_insert("accounts", json!({"name": "new"}));
    sb.sales_update("accounts", &ids[0], json!({"name": "changed"}));
    sb.sales_delete("accounts", &ids[1]);
    let r = count(format!("$deltatoken={token}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().await.unwrap(), "3", "one created, one updated, one deleted");
    let v = json(api.get(&delta).send().await.unwrap()).await;
    assert_eq!(
        v["value"].as_array().unwrap().len(),
        3,
        "the delta link returns as many"
    );
    let (status, _, msg) = dv_error(
        count(format!("$deltatoken={token}&$filter=name eq 'x'"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{msg}");
    sb.expire_delta_tokens();
    let (status, code, _) = dv_error(count(format!("$deltatoken={token}")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "0x80044352"));
}

#[tokio::test]
async fn creates_in_a_batch_answer_location_and_odata_entityid() {
    let sb = sandbox().await;
    let api = Api::sales(&sb).await;
    let body = format!(
        "--batch_1\r\nContent-Type: multipart/mixed; boundary=cs_1\r\n\r\n--cs_1\r\n{}--cs_1--\r\n--batch_1\r\n{}--batch_1--\r\n",
        part("POST", "/api/data/v9.2/accounts", Some(&json!({"name": "a"})), Some(1)),
        part("POST", "/api/data/v9.2/accounts", Some(&json!({"name": "b"})), None),
    );
    let r = api.batch("batch_1", body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for row in sb.sales_rows("accounts") {
        let url = format!(
            "{}/api/data/v9.2/accounts({})",
            sb.sales_url(),
            row["accountid"].as_str().unwrap()
        );
        assert!(text.contains(&format!("Location: {url}\r\n")), "{text}");
        assert!(text.contains(&format!("OData-EntityId: {url}\r\n")), "{text}");
    }
    // A lone create has only OData-EntityId.
    let r = post(&api, "accounts", json!({"name": "c"})).await;
    assert!(r.headers().get("location").is_none());
    assert!(r.headers().get("odata-entityid").is_some());
}
