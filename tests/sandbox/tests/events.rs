//! Event handler registration through the Web API, and the webhooks and business events the sandbox sends:
//! payload shapes, authentication, filtering attributes, rollbacks, retries, and the write journal.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
};
use common::{Api, json, sandbox};
use p2c_sandbox::{EventKind, Sandbox, Service};
use serde_json::{Value, json};

/// What an endpoint received: (path and query, headers, body).
type Got = Arc<Mutex<Vec<(String, HeaderMap, Value)>>>;

/// A receiver on a free port answering `status` (a queue of statuses, then 202).
async fn receiver(statuses: Vec<u16>) -> (String, Got) {
    let got: Got = Arc::default();
    let statuses = Arc::new(Mutex::new(statuses));
    let state = (got.clone(), statuses);
    let app =
        Router::new()
            .fallback(
                |State((got, statuses)): State<(Got, Arc<Mutex<Vec<u16>>>)>,
                 uri: Uri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    got.lock().unwrap().push((uri.to_string(), headers, v));
                    let mut s = statuses.lock().unwrap();
                    let code = if s.is_empty() { 202 } else { s.remove(0) };
                    StatusCode::from_u16(code).unwrap()
                },
            )
            .with_state(state);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got)
}

async fn one(api: &Api, path: &str) -> Value {
    let v = json(api.get(path).send().await.unwrap()).await;
    assert_eq!(v["value"].as_array().map(Vec::len), Some(1), "{path}: {v}");
    v["value"][0].clone()
}

async fn id_of(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let h = r.headers()["OData-EntityId"].to_str().unwrap().to_string();
    h.rsplit('(').next().unwrap().trim_end_matches(')').to_string()
}

/// Registers a webhook for `message` on `table` (HttpHeader auth) and returns (endpoint id, step id).
async fn register(api: &Api, url: &str, message: &str, table: &str, filtering: Option<&str>) -> (String, String) {
    let ep = id_of(
        api.post(
            "serviceendpoints",
            &json!({
                "name": "p2c", "contract": 8, "authtype": 5, "messageformat": 2, "url": url,
                "authvalue": "<settings><setting name=\"x-p2c-webhook-key\" value=\"k&amp;1\" /></settings>"
            }),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    let step = add_step(api, &ep, message, table, filtering).await;
    (ep, step)
}

async fn add_step(api: &Api, ep: &str, message: &str, table: &str, filtering: Option<&str>) -> String {
    let msg = one(
        api,
        &format!("sdkmessages?$select=sdkmessageid&$filter=name eq '{message}'"),
    )
    .await;
    let msg = msg["sdkmessageid"].as_str().unwrap().to_string();
    let f = one(
        api,
        &format!("sdkmessagefilters?$select=sdkmessagefilterid&$filter=primaryobjecttypecode eq '{table}' and _sdkmessageid_value eq {msg}"),
    )
    .await;
    let mut body = json!({
        "name": format!("p2c: {message} of {table}"), "stage": 40, "mode": 1, "rank": 1, "supporteddeployment": 0,
        "asyncautodelete": true,
        "eventhandler_serviceendpoint@odata.bind": format!("/serviceendpoints({ep})"),
        "sdkmessageid@odata.bind": format!("/sdkmessages({msg})"),
        "sdkmessagefilterid@odata.bind": format!("/sdkmessagefilters({})", f["sdkmessagefilterid"].as_str().unwrap()),
    });
    if let Some(a) = filtering {
        body["filteringattributes"] = json!(a);
    }
    id_of(api.post("sdkmessageprocessingsteps", &body).send().await.unwrap()).await
}

async fn settle(sb: &Sandbox) {
    assert!(sb.settle_events(Duration::from_secs(10)).await, "events delivered");
}

#[tokio::test]
async fn registration_follows_the_platform_rules() {
    let sb = sandbox().await;
    let api = Api::sales(&sb).await;
    let (url, _) = receiver(vec![]).await;
    let (ep, step) = register(
        &api,
        &url,
        "Update",
        "account",
        Some("telephone1,name,primarycontactid"),
    )
    .await;
    // authvalue is write-only; isauthvalueset tells it is there.
    let e = json(api.get(&format!("serviceendpoints({ep})")).send().await.unwrap()).await;
    assert!(e.get("authvalue").is_none(), "{e}");
    assert_eq!(e["isauthvalueset"], true);
    assert_eq!(
        api.get("serviceendpoints?$select=authvalue")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let listed = json(
        api.get(&format!(
            "sdkmessageprocessingsteps?$select=name,filteringattributes,stage,mode&$filter=_eventhandler_value eq {ep}"
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(listed["value"][0]["sdkmessageprocessingstepid"], step.as_str());
    assert_eq!(listed["value"][0]["mode"], 1);

    let msg = one(&api, "sdkmessages?$filter=name eq 'Create'").await["sdkmessageid"]
        .as_str()
        .unwrap()
        .to_string();
    let upd = one(&api, "sdkmessages?$filter=name eq 'Update'").await["sdkmessageid"]
        .as_str()
        .unwrap()
        .to_string();
    let filter = one(
        &api,
        &format!("sdkmessagefilters?$filter=primaryobjecttypecode eq 'account' and _sdkmessageid_value eq {upd}"),
    )
    .await;
    let filter = filter["sdkmessagefilterid"].as_str().unwrap().to_string();
    let step = |extra: Value| {
        let mut b = json!({"name": "x", "stage": 40, "mode": 1, "rank": 1,
            "eventhandler_serviceendpoint@odata.bind": format!("/serviceendpoints({ep})"),
            "sdkmessageid@odata.bind": format!("/sdkmessages({upd})"),
            "sdkmessagefilterid@odata.bind": format!("/sdkmessagefilters({filter})")});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    for (bad, why) in [
        (step(json!({"stage": 20})), "asynchronous only post-operation"),
        (
            step(json!({"filteringattributes": "nosuchcolumn"})),
            "unknown attribute",
        ),
        (
            step(json!({"sdkmessageid@odata.bind": format!("/sdkmessages({msg})")})),
            "filter of another message",
        ),
        (step(json!({"name": ""})), "no name"),
    ] {
        let r = api.post("sdkmessageprocessingsteps", &bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{why}");
    }
    for (bad, why) in [
        (
            json!({"name": "w", "contract": 8, "authtype": 5, "url": "https://x.example", "authvalue": "not settings"}),
            "settings",
        ),
        (
            json!({"name": "w", "contract": 8, "authtype": 1, "url": "https://x.example", "authvalue": "k"}),
            "authtype",
        ),
        (
            json!({"name": "w", "contract": 8, "authtype": 4, "authvalue": "k"}),
            "url",
        ),
    ] {
        let r = api.post("serviceendpoints", &bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{why}");
    }
    // System metadata is read-only; an endpoint in use cannot be deleted.
    assert_eq!(
        api.post("sdkmessages", &json!({"name": "Mine"}))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        api.delete(&format!("serviceendpoints({ep})"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
}

#[tokio::test]
async fn a_registered_step_sends_the_remote_execution_context() {
    let sb = sandbox().await;
    sb.seed_demo(2);
    let api = Api::sales(&sb).await;
    let (url, got) = receiver(vec![]).await;
    let (ep, _) = register(
        &api,
        &format!("{url}/dataverse"),
        "Update",
        "account",
        Some("telephone1"),
    )
    .await;
    add_step(&api, &ep, "Create", "account", None).await;
    let account = sb.sales_rows("accounts")[0]["accountid"].as_str().unwrap().to_string();

    sb.sales_update(
        "accounts",
        &account,
        json!({"description": "not a filtering attribute"}),
    );
    settle(&sb).await;
    assert!(
        got.lock().unwrap().is_empty(),
        "an update of other columns fires nothing"
    );

    let r = api
        .patch(&format!("accounts({account})"), &json!({"telephone1": "+1 555 0142"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    settle(&sb).await;
    let calls = got.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let (path, headers, body) = &calls[0];
    assert_eq!(path, "/dataverse");
    assert_eq!(headers["x-p2c-webhook-key"], "k&1");
    assert_eq!(headers["x-ms-dynamics-entity-name"], "account");
    assert_eq!(headers["x-ms-dynamics-request-name"], "Update");
    assert!(headers.contains_key("x-ms-correlation-request-id") && headers.contains_key("x-request-id"));
    assert_eq!(body["MessageName"], "Update");
    assert_eq!(body["PrimaryEntityName"], "account");
    assert_eq!(body["PrimaryEntityId"], account.as_str());
    assert_eq!((body["Stage"].as_i64(), body["Mode"].as_i64()), (Some(40), Some(1)));
    let target = &body["InputParameters"][0]["value"];
    assert_eq!(body["InputParameters"][0]["key"], "Target");
    assert_eq!(target["LogicalName"], "account");
    let attrs = target["Attributes"].as_array().unwrap();
    let attr = |k: &str| attrs.iter().find(|a| a["key"] == k).map(|a| a["value"].clone());
    assert_eq!(attr("telephone1"), Some(json!("+1 555 0142")));
    assert!(attr("modifiedon").unwrap().as_str().unwrap().starts_with("/Date("));

    let id = sb.sales_insert(
        "accounts",
        json!({"name": "Webhook Ltd", "accountnumber": "ACC-WH-1", "creditlimit": 100}),
    );
    settle(&sb).await;
    let calls = got.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    let created = &calls[1].2;
    assert_eq!(created["MessageName"], "Create");
    assert_eq!(created["OutputParameters"][0]["value"], id.as_str());
    let attrs = created["InputParameters"][0]["value"]["Attributes"].as_array().unwrap();
    let attr = |k: &str| {
        attrs
            .iter()
            .find(|a| a["key"] == k)
            .map(|a| a["value"].clone())
            .unwrap()
    };
    assert_eq!(attr("owningbusinessunit")["LogicalName"], "businessunit");
    assert_eq!(attr("creditlimit")["Value"], 100.0);
    assert!(attr("creditlimit")["__type"].as_str().unwrap().starts_with("Money:"));
    assert!(
        attr("statecode")["__type"]
            .as_str()
            .unwrap()
            .starts_with("OptionSetValue:")
    );
    let d = sb.event_deliveries();
    assert!(
        d.iter()
            .all(|d| d.kind == EventKind::Webhook && d.status == Some(202) && d.attempts == 1)
    );
}

#[tokio::test]
async fn a_rolled_back_change_set_fires_nothing_and_gateway_errors_are_retried_once() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    let api = Api::sales(&sb).await;
    let (url, got) = receiver(vec![503, 500]).await;
    register(&api, &url, "Update", "account", None).await;
    let account = sb.sales_rows("accounts")[0]["accountid"].as_str().unwrap().to_string();
    // A change set whose second request fails: the first is rolled back with it.
    let body = format!(
        "--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n--cs\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nPATCH {base}/accounts({account}) HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{{\"telephone1\":\"rolled back\"}}\r\n--cs\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\nPATCH {base}/accounts(00000000-0000-0000-0000-000000000001) HTTP/1.1\r\nContent-Type: application/json\r\nIf-Match: *\r\n\r\n{{\"telephone1\":\"x\"}}\r\n--cs--\r\n--b--\r\n",
        base = api.base
    );
    api.batch("b", body).send().await.unwrap();
    settle(&sb).await;
    assert!(got.lock().unwrap().is_empty(), "nothing was committed");
    // 503: tried again (500 the second time: not again).
    sb.sales_update("accounts", &account, json!({"telephone1": "+1 555 0100"}));
    settle(&sb).await;
    let d = sb.event_deliveries();
    assert_eq!((d.len(), d[0].attempts, d[0].status), (1, 2, Some(500)));
    assert_eq!(got.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn webhook_key_authentication_and_disabled_steps() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    let api = Api::sales(&sb).await;
    let (url, got) = receiver(vec![]).await;
    let ep = id_of(api.post("serviceendpoints", &json!({"name": "k", "contract": 8, "authtype": 4, "url": format!("{url}/dataverse"), "authvalue": "abc+def"})).send().await.unwrap()).await;
    let step = add_step(&api, &ep, "Delete", "account", None).await;
    let account = sb.sales_rows("accounts")[0]["accountid"].as_str().unwrap().to_string();
    sb.sales_delete("accounts", &account);
    settle(&sb).await;
    let calls = got.lock().unwrap().clone();
    assert_eq!(calls[0].0, "/dataverse?code=abc%2Bdef");
    assert_eq!(calls[0].2["MessageName"], "Delete");
    assert_eq!(calls[0].2["InputParameters"][0]["value"]["Id"], account.as_str());
    // A disabled step sends nothing.
    let r = api
        .patch(
            &format!("sdkmessageprocessingsteps({step})"),
            &json!({"statecode": 1, "statuscode": 2}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let other = sb.sales_insert("accounts", json!({"name": "Gone soon"}));
    sb.sales_delete("accounts", &other);
    settle(&sb).await;
    assert_eq!(got.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn business_events_carry_the_contract_and_are_retried() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    let (url, got) = receiver(vec![500]).await;
    sb.fno_insert(
        "CustomersV2",
        json!({"dataAreaId": "usmf", "CustomerAccount": "US-901", "CustomerGroupId": "10",
        "OrganizationName": "Events Inc", "SalesCurrencyCode": "USD", "IsExternallyMaintained": "Yes"}),
    );
    let order = sb.fno_create_order("usmf", "US-901", &[("D0001", 2.0)]);
    sb.fno_confirm_order("usmf", &order);
    settle(&sb).await;
    assert!(got.lock().unwrap().is_empty(), "not activated: nothing sent");
    sb.fno_activate_business_events(
        &format!("{url}/fno?code=be-key"),
        &["SalesOrderConfirmedBusinessEvent", "SalesInvoicePostedBusinessEvent"],
        Some("usmf"),
    );
    sb.fno_confirm_order("usmf", &order);
    let invoice = sb.fno_invoice_order("usmf", &order);
    assert!(sb.settle_events(Duration::from_secs(15)).await);
    let calls = got.lock().unwrap().clone();
    // The first send got 500 and was sent again a second later.
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls.iter().all(|c| c.0 == "/fno?code=be-key"));
    let confirmed = calls
        .iter()
        .find(|c| c.2["BusinessEventId"] == "SalesOrderConfirmedBusinessEvent")
        .unwrap();
    assert_eq!(confirmed.2["SalesOrderId"], order.as_str());
    let posted = &calls
        .iter()
        .find(|c| c.2["BusinessEventId"] == "SalesInvoicePostedBusinessEvent")
        .unwrap()
        .2;
    for k in [
        "BusinessEventLegalEntity",
        "ControlNumber",
        "EventId",
        "EventTime",
        "EventTimeIso8601",
        "MajorVersion",
        "MinorVersion",
        "InvoiceAccount",
        "InvoiceId",
        "SalesOrderId",
        "InvoiceDate",
        "InvoiceDueDate",
        "InvoiceAmountInAccountingCurrency",
        "InvoiceTaxAmount",
        "LegalEntity",
    ] {
        assert!(posted.get(k).is_some(), "{k} in {posted}");
    }
    assert_eq!(posted["InvoiceId"], invoice.as_str());
    assert_eq!(posted["InvoiceAccount"], "US-901");
    assert!(posted["InvoiceDate"].as_str().unwrap().starts_with("/Date("));
    assert!(posted["ControlNumber"].as_u64() > confirmed.2["ControlNumber"].as_u64());
    let d = sb.event_deliveries();
    assert!(
        d.iter()
            .any(|d| d.kind == EventKind::BusinessEvent && d.attempts == 2 && d.status == Some(202))
    );
}

#[tokio::test]
async fn the_write_journal_times_every_write() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    sb.record_writes(true);
    let account = sb.sales_rows("accounts")[0]["accountid"].as_str().unwrap().to_string();
    sb.sales_update("accounts", &account, json!({"telephone1": "+1 555 0199"}));
    let api = Api::fno(&sb).await;
    let r = api
        .post(
            "CustomersV2",
            &json!({"dataAreaId": "usmf", "CustomerAccount": "US-777", "CustomerGroupId": "10",
            "OrganizationName": "Journal Ltd", "SalesCurrencyCode": "USD"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let w = sb.writes();
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(
        (w[0].service, w[0].entity.as_str(), w[0].key.as_str()),
        (Service::Sales, "accounts", account.as_str())
    );
    assert_eq!(w[0].row.as_ref().unwrap()["telephone1"], "+1 555 0199");
    assert_eq!(
        (w[1].service, w[1].entity.as_str(), w[1].key.as_str()),
        (Service::Fno, "CustomersV2", "usmf|us-777")
    );
    assert!(w[1].at_ms >= w[0].at_ms);
}

#[tokio::test]
async fn the_events_option_sends_every_change() {
    let sb = sandbox().await;
    sb.seed_demo(1);
    let (url, got) = receiver(vec![]).await;
    sb.send_events_to(&url, "webhook-key", "be key");
    let id = sb.sales_insert("contacts", json!({"firstname": "Eve", "lastname": "Events"}));
    sb.sales_update("contacts", &id, json!({"jobtitle": "Tester"}));
    sb.sales_delete("contacts", &id);
    sb.fno_insert(
        "CustomersV2",
        json!({"dataAreaId": "usmf", "CustomerAccount": "US-902", "CustomerGroupId": "10",
        "OrganizationName": "Option Inc", "SalesCurrencyCode": "USD"}),
    );
    let order = sb.fno_create_order("usmf", "US-902", &[("D0001", 1.0)]);
    sb.fno_confirm_order("usmf", &order);
    settle(&sb).await;
    let calls = got.lock().unwrap().clone();
    let hooks: Vec<&str> = calls
        .iter()
        .filter(|c| c.0 == "/dataverse")
        .map(|c| c.2["MessageName"].as_str().unwrap())
        .collect();
    assert_eq!(hooks, ["Create", "Update", "Delete"]);
    assert!(
        calls
            .iter()
            .filter(|c| c.0 == "/dataverse")
            .all(|c| c.1["x-p2c-webhook-key"] == "webhook-key")
    );
    let be: Vec<_> = calls.iter().filter(|c| c.0.starts_with("/fno")).collect();
    assert_eq!(be.len(), 1);
    assert_eq!(be[0].0, "/fno?code=be%20key");
    assert_eq!(be[0].2["SalesOrderId"], order.as_str());
}
