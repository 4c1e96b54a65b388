//! The ingress against a queue in memory: every refusal enqueues nothing; accepted events become one message per
//! flow and company.

use std::sync::atomic::Ordering;

use serde_json::json;

use super::*;

const KEY: &str = "webhook-key-0123456789";
const ACCOUNT: &str = "6d81597f-0f9f-e711-8122-000d3aa2331c";

fn ingress(extra: &[(&str, &str)]) -> Ingress {
    let mut pairs = vec![("P2C_EVENTS_SECRET", KEY), ("P2C_COMPANIES", "usmf=usmf")];
    pairs.extend_from_slice(extra);
    // Later pairs override earlier ones.
    let cfg =
        EventsConfig::from_lookup(|k| pairs.iter().rev().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap();
    let KeySource::Value(keys) = cfg.keys.clone() else {
        panic!()
    };
    Ingress::with_sink(cfg, keys, Sink::Memory(MemorySink::default()))
}

fn sent(i: &Ingress) -> Vec<(FlowName, Message)> {
    let Sink::Memory(m) = i.sink() else { panic!() };
    m.sent
        .lock()
        .unwrap()
        .iter()
        .map(|(f, b)| (*f, Message::parse(Some(b)).unwrap()))
        .collect()
}

fn webhook(message: &str, entity: &str, id: &str) -> Vec<u8> {
    json!({"MessageName": message, "PrimaryEntityName": entity, "PrimaryEntityId": id, "Stage": 40,
        "InputParameters": [], "PostEntityImages": [], "PreEntityImages": []})
    .to_string()
    .into_bytes()
}

fn post(path: &str, headers: &[(&str, &str)], query: &str, body: Vec<u8>) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path: path.into(),
        query: query.into(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body,
    }
}

fn dv(body: Vec<u8>) -> HttpRequest {
    post("/dataverse", &[("x-p2c-webhook-key", KEY)], "", body)
}

#[tokio::test]
async fn a_webhook_becomes_one_event_message_for_its_flow() {
    let i = ingress(&[]);
    let r = i.handle(&dv(webhook("Update", "account", ACCOUNT))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["status"], "accepted");
    let s = sent(&i);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, FlowName::AccountsToFno);
    assert_eq!(
        s[0].1,
        Message::new("accounts-to-fno", "usmf", vec![ACCOUNT.into()], Reason::Event)
    );
    // WebhookKey authentication (?code=) is accepted too.
    let r = i
        .handle(&post(
            "/dataverse",
            &[],
            &format!("code={KEY}"),
            webhook("Create", "contact", ACCOUNT),
        ))
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(sent(&i)[1].0, FlowName::ContactsToFno);
    assert_eq!(i.counts().accepted, 2);
}

#[tokio::test]
async fn refused_calls_enqueue_nothing() {
    let i = ingress(&[("P2C_EVENTS_MAX_BYTES", "2048")]);
    let body = || webhook("Update", "account", ACCOUNT);
    let cases: Vec<(HttpRequest, u16)> = vec![
        (post("/dataverse", &[], "", body()), 401),
        (
            post(
                "/dataverse",
                &[("x-p2c-webhook-key", "wrong-key-0123456789")],
                "",
                body(),
            ),
            401,
        ),
        (post("/dataverse", &[], "code=webhook-key-012345678", body()), 401),
        (post("/fno", &[("x-p2c-webhook-key", "nope")], "", body()), 401),
        (dv(vec![b' '; 4096]), 413),
        (dv(br#"{"MessageName": }"#.to_vec()), 400),
        (dv(b"[]".to_vec()), 400),
        (
            dv(json!({"MessageName": "Update", "PrimaryEntityName": "account"})
                .to_string()
                .into_bytes()),
            400,
        ),
        (dv(webhook("Update", "account", "not-a-guid")), 400),
        (post("/elsewhere", &[("x-p2c-webhook-key", KEY)], "", body()), 404),
        (
            HttpRequest {
                method: "GET".into(),
                ..dv(body())
            },
            405,
        ),
    ];
    for (req, status) in cases {
        let r = i.handle(&req).await;
        assert_eq!(r.status, status, "{req:?}: {}", r.body);
        assert!(!r.body.to_string().contains(KEY), "a response never echoes the key");
    }
    assert!(sent(&i).is_empty());
    assert_eq!(i.counts().rejected, 11);
    assert_eq!(i.counts().messages, 0);
}

#[tokio::test]
async fn what_p2c_does_not_sync_is_acknowledged_not_queued() {
    let i = ingress(&[("P2C_EVENT_FLOWS", "accounts-to-fno,quotes-to-fno,invoices-to-sales")]);
    for (msg, entity) in [
        ("Update", "lead"),
        ("Update", "contact"), // contacts-to-fno is not enabled
        ("Delete", "account"), // deletions of accounts come through change tracking
        ("Assign", "account"),
        ("Update", "salesorderdetail"),
    ] {
        let r = i.handle(&dv(webhook(msg, entity, ACCOUNT))).await;
        assert_eq!(
            (r.status, r.body["status"].as_str()),
            (202, Some("ignored")),
            "{msg} {entity}: {}",
            r.body
        );
    }
    // A deleted quote line is an event: the worker deletes the line in F&O.
    let r = i.handle(&dv(webhook("Delete", "quotedetail", ACCOUNT))).await;
    assert_eq!(r.body["status"], "accepted");
    let fno = |body: serde_json::Value| post("/fno", &[], &format!("code={KEY}"), body.to_string().into_bytes());
    let r = i
        .handle(&fno(
            json!({"BusinessEventId": "VendorInvoicePostedBusinessEvent", "BusinessEventLegalEntity": "usmf"}),
        ))
        .await;
    assert_eq!(r.body["status"], "ignored");
    let r = i
        .handle(&fno(json!({"BusinessEventId": "SalesInvoicePostedBusinessEvent", "BusinessEventLegalEntity": "DEMF", "InvoiceId": "X"})))
        .await;
    assert_eq!(r.body["status"], "ignored", "a company p2c does not sync");
    // orders-to-sales is not enabled here.
    let r = i
        .handle(&fno(json!({"BusinessEventId": "SalesOrderConfirmedBusinessEvent", "BusinessEventLegalEntity": "usmf", "SalesOrderId": "SO-1"})))
        .await;
    assert_eq!(r.body["status"], "ignored");
    assert_eq!(i.counts().ignored, 8);
    assert_eq!(sent(&i).len(), 1);
}

#[tokio::test]
async fn business_events_route_by_their_key_field_and_legal_entity() {
    let i = ingress(&[]);
    let event = json!({"BusinessEventId": "SalesInvoicePostedBusinessEvent", "BusinessEventLegalEntity": "USMF",
        "ControlNumber": 5637144577i64, "EventId": "3C47A4CD-6EDC-4319-B893-3F862EED65FD",
        "InvoiceId": "CIV-000001", "SalesOrderId": "SO-000042", "InvoiceAccount": "US-001"});
    let req = post("/fno", &[], &format!("code={KEY}"), event.to_string().into_bytes());
    let r = i.handle(&req).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let s = sent(&i);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, FlowName::InvoicesToSales);
    assert_eq!(s[0].1.company, "usmf");
    assert_eq!(s[0].1.keys, vec!["CIV-000001".to_string()]);
    assert_eq!(s[0].1.reason, Reason::Event);
    // A mapped event without its key field is malformed.
    let bad = json!({"BusinessEventId": "SalesInvoicePostedBusinessEvent", "BusinessEventLegalEntity": "usmf"});
    let r = i
        .handle(&post("/fno", &[], &format!("code={KEY}"), bad.to_string().into_bytes()))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(sent(&i).len(), 1);
}

#[tokio::test]
async fn separate_keys_do_not_open_each_others_path() {
    let two = r#"{"webhook_key":"dataverse-key-0123456789","business_events_key":"fno-key-0123456789abc"}"#;
    let i = ingress(&[("P2C_EVENTS_SECRET", two)]);
    let event = json!({"BusinessEventId": "SalesOrderConfirmedBusinessEvent", "BusinessEventLegalEntity": "usmf", "SalesOrderId": "SO-1"});
    let with = |code: &str| post("/fno", &[], &format!("code={code}"), event.to_string().into_bytes());
    assert_eq!(i.handle(&with("dataverse-key-0123456789")).await.status, 401);
    assert_eq!(i.handle(&with("fno-key-0123456789abc")).await.status, 202);
    let hook = post(
        "/dataverse",
        &[("x-p2c-webhook-key", "fno-key-0123456789abc")],
        "",
        webhook("Update", "account", ACCOUNT),
    );
    assert_eq!(i.handle(&hook).await.status, 401);
}

#[tokio::test]
async fn a_queue_outage_is_503_so_the_sender_retries() {
    let i = ingress(&[]);
    let Sink::Memory(m) = i.sink() else { panic!() };
    m.fail.store(true, Ordering::Relaxed);
    let r = i.handle(&dv(webhook("Update", "account", ACCOUNT))).await;
    assert_eq!(r.status, 503);
    assert_eq!(i.counts().unavailable, 1);
}

#[tokio::test]
async fn with_several_companies_the_owner_picks_the_company_else_all_get_it() {
    let bu = "0b9cf0a4-63e2-4dd7-9a54-6a7c1c0e3f8d";
    let companies = format!("usmf=US Sales,usrt={bu}");
    let i = ingress(&[("P2C_COMPANIES", companies.as_str())]);
    let owned = json!({"MessageName": "Create", "PrimaryEntityName": "account", "PrimaryEntityId": ACCOUNT,
        "InputParameters": [{"key": "Target", "value": {"Attributes": [
            {"key": "owningbusinessunit", "value": {"Id": bu.to_uppercase(), "LogicalName": "businessunit"}}]}}]});
    i.handle(&dv(owned.to_string().into_bytes())).await;
    let s = sent(&i);
    assert_eq!(s.iter().map(|(_, m)| m.company.as_str()).collect::<Vec<_>>(), ["usrt"]);
    i.handle(&dv(webhook("Update", "account", ACCOUNT))).await;
    let s = sent(&i);
    let mut companies: Vec<&str> = s[1..].iter().map(|(_, m)| m.company.as_str()).collect();
    companies.sort();
    assert_eq!(companies, ["usmf", "usrt"]);
}

#[test]
fn function_url_events_round_trip() {
    let ev = json!({
        "version": "2.0", "rawPath": "/dataverse", "rawQueryString": "code=abc",
        "headers": {"Content-Type": "application/json", "x-ms-dynamics-request-name": "Update"},
        "requestContext": {"http": {"method": "POST", "path": "/dataverse"}, "timeEpoch": 0},
        "body": "eyJhIjoxfQ==", "isBase64Encoded": true
    });
    let req = lambda::request_of(ev).unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.body, br#"{"a":1}"#.to_vec());
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.query_param("code").as_deref(), Some("abc"));
    let out = lambda::response_of(&HttpResponse {
        status: 202,
        body: json!({"status": "accepted"}),
    });
    assert_eq!(out["statusCode"], 202);
    assert_eq!(out["body"], r#"{"status":"accepted"}"#);
    assert!(lambda::request_of(json!({"Records": []})).is_none());
}

#[test]
fn emf_declares_the_outcome() {
    let v: serde_json::Value = serde_json::from_str(&emf_line("dataverse", "Rejected", 0)).unwrap();
    let decl = &v["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(decl["Dimensions"], json!([["FunctionName"]]));
    assert_eq!(v["Rejected"], 1);
    for m in decl["Metrics"].as_array().unwrap() {
        assert!(v[m["Name"].as_str().unwrap()].is_number());
    }
}
