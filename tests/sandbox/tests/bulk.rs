//! Bulk operation messages (CreateMultiple, UpdateMultiple, UpsertMultiple), the token authority's OpenID
//! discovery document, and HTTPS: what unmodified third-party clients need beyond the basic Web API.

mod common;

use common::*;
use p2c_sandbox::SandboxConfig;
use serde_json::{Value, json};

#[tokio::test]
async fn create_and_update_multiple() {
    let sb = sandbox().await;
    let api = Api::sales(&sb).await;

    let targets: Vec<Value> = (0..3)
        .map(|i| json!({"@odata.type": "Microsoft.Dynamics.CRM.account", "name": format!("Bulk {i}")}))
        .collect();
    let r = api
        .post(
            "accounts/Microsoft.Dynamics.CRM.CreateMultiple",
            &json!({"Targets": targets}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = json(r).await;
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse")
    );
    let ids: Vec<String> = v["Ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    for (i, id) in ids.iter().enumerate() {
        let row = sb.sales_get("accounts", id).expect("created");
        assert_eq!(row["name"], format!("Bulk {i}"));
        assert_eq!(row["statecode"], 0, "the same defaults as a single create");
    }

    let updates: Vec<Value> = ids
        .iter()
        .map(|id| json!({"@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": id, "telephone1": "555-0199"}))
        .collect();
    let r = api
        .post(
            "accounts/Microsoft.Dynamics.CRM.UpdateMultiple",
            &json!({"Targets": updates}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for id in &ids {
        assert_eq!(sb.sales_get("accounts", id).unwrap()["telephone1"], "555-0199");
    }
}

#[tokio::test]
async fn a_failing_item_rolls_the_whole_request_back() {
    let sb = sandbox().await;
    let api = Api::sales(&sb).await;
    let before = sb.sales_rows("accounts").len();

    // The second item breaks the column's maximum length: nothing is created.
    let targets = json!([
        {"@odata.type": "Microsoft.Dynamics.CRM.account", "name": "Fine"},
        {"@odata.type": "Microsoft.Dynamics.CRM.account", "name": "Too long", "accountnumber": "X".repeat(40)},
    ]);
    let r = api
        .post(
            "accounts/Microsoft.Dynamics.CRM.CreateMultiple",
            &json!({"Targets": targets}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["error"]["code"], "0x80044331");
    assert_eq!(sb.sales_rows("accounts").len(), before);

    // Every item must say its type.
    let r = api
        .post(
            "accounts/Microsoft.Dynamics.CRM.CreateMultiple",
            &json!({"Targets": [{"name": "No type"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = api
        .post(
            "accounts/Microsoft.Dynamics.CRM.CreateMultiple",
            &json!({"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "Wrong"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // An update of a missing row fails the request, and the other updates with it.
    let id = sb.sales_insert("accounts", json!({"name": "Keep"}));
    let targets = json!([
        {"@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": id, "name": "Changed"},
        {"@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": "00000000-0000-0000-0000-000000000001", "name": "x"},
    ]);
    let r = api
        .post(
            "accounts/Microsoft.Dynamics.CRM.UpdateMultiple",
            &json!({"Targets": targets}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(sb.sales_get("accounts", &id).unwrap()["name"], "Keep");
}

#[tokio::test]
async fn upsert_multiple_by_alternate_key() {
    let sb = sandbox().await;
    let api = Api::sales(&sb).await;
    // The reference page's shape: the record named by an alternate key in `@odata.id`.
    let body = |last: &str| {
        json!({"Targets": [
            {"@odata.type": "Microsoft.Dynamics.CRM.contact", "@odata.id": "contacts(msdynce_contactnumber='CON-B1')", "lastname": last},
            {"@odata.type": "Microsoft.Dynamics.CRM.contact", "@odata.id": "contacts(msdynce_contactnumber='CON-B2')", "lastname": last},
        ]})
    };
    let r = api
        .post("contacts/Microsoft.Dynamics.CRM.UpsertMultiple", &body("First"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "UpsertMultiple answers 204 No Content");
    let r = api
        .post("contacts/Microsoft.Dynamics.CRM.UpsertMultiple", &body("Second"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let rows: Vec<Value> = sb
        .sales_rows("contacts")
        .into_iter()
        .filter(|c| {
            c["msdynce_contactnumber"]
                .as_str()
                .is_some_and(|n| n.starts_with("CON-B"))
        })
        .collect();
    assert_eq!(rows.len(), 2, "created once, then updated");
    assert!(rows.iter().all(|c| c["lastname"] == "Second"));
}

#[tokio::test]
async fn bulk_actions_inside_a_change_set() {
    let sb = sandbox().await;
    let api = Api::sales(&sb).await;
    let root = "/api/data/v9.2";
    let body = format!(
        "--batch_1\r\nContent-Type: multipart/mixed; boundary=changeset_1\r\n\r\n\
         --changeset_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n\
         POST {root}/accounts/Microsoft.Dynamics.CRM.CreateMultiple HTTP/1.1\r\nContent-Type: application/json\r\n\r\n\
         {{\"Targets\":[{{\"@odata.type\":\"Microsoft.Dynamics.CRM.account\",\"name\":\"In change set\"}}]}}\r\n\
         --changeset_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\n\
         POST {root}/accounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n\
         {{\"name\":\"Breaks\",\"accountnumber\":\"{}\"}}\r\n\
         --changeset_1--\r\n--batch_1--\r\n",
        "X".repeat(40)
    );
    let r = api.batch("batch_1", body).send().await.unwrap();
    assert_eq!(r.status(), 400, "the whole batch takes the failing part's status");
    assert!(
        sb.sales_rows("accounts").iter().all(|a| a["name"] != "In change set"),
        "the change set rolled the bulk create back too"
    );
}

#[tokio::test]
async fn openid_configuration_of_the_authority() {
    let sb = sandbox().await;
    let c = sb.config();
    let url = format!(
        "{}/{}/v2.0/.well-known/openid-configuration",
        sb.authority_url(),
        c.tenant
    );
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200);
    let v = json(r).await;
    assert_eq!(
        v["token_endpoint"],
        format!("{}/{}/oauth2/v2.0/token", sb.authority_url(), c.tenant)
    );
    assert_eq!(
        v["authorization_endpoint"],
        format!("{}/{}/oauth2/v2.0/authorize", sb.authority_url(), c.tenant)
    );
    assert_eq!(v["issuer"], format!("{}/{}/v2.0", sb.authority_url(), c.tenant));
    let r = reqwest::get(format!(
        "{}/other-tenant/v2.0/.well-known/openid-configuration",
        sb.authority_url()
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn https_with_the_sandbox_ca() {
    let sb = sandbox_with(SandboxConfig {
        tls: true,
        ..Default::default()
    })
    .await;
    assert!(sb.sales_url().starts_with("https://127.0.0.1:"));
    let ca = reqwest::Certificate::from_pem(sb.tls_ca_pem().unwrap().as_bytes()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let c = sb.config();
    let r = client
        .post(token_url(&sb))
        .form(&[
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
            ("scope", &format!("{}/.default", sb.sales_url())),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = json(r).await["access_token"].as_str().unwrap().to_string();
    let r = client
        .get(format!("{}/api/data/v9.2/accounts?$select=name", sb.sales_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = json(r).await;
    assert!(v["@odata.context"].as_str().unwrap().starts_with("https://"));
    // Without the CA the certificate is not trusted.
    assert!(reqwest::get(sb.sales_url()).await.is_err());
}
