//! Near real time, end to end: a Sales change fires the webhook registered in the sandbox's Dataverse, the events
//! ingress (on a local port, as behind the Function URL) queues a flow message, the worker (the SQS handler)
//! re-reads the record and writes F&O; an F&O confirmation or invoice sends a business event the same way to
//! Sales. Both systems' values are asserted. Refused calls enqueue nothing; a duplicated event writes once; a
//! storm of changes to one record collapses to a few writes.

use std::{sync::Arc, time::Duration};

use p2c_dynamics::Secret;
use p2c_e2e::{
    Env,
    expect::{assert_account, assert_document_to_fno, assert_document_to_sales, fno_find, num},
};
use p2c_sandbox::{EventKind, Service};
use p2c_sync::{EventsConfig, FlowName, Ingress, Message, Reason, Skip, entry::events::register as reg};
use serde_json::{Value, json};

const KEY: &str = "e2e-events-key-0123456789";

/// The ingress on a local port, sending to this test's queues; webhooks registered for `flows`; business events
/// activated. Returns the ingress and its URL.
async fn events(env: &Env, flows: &[FlowName]) -> (Arc<Ingress>, String) {
    let prefix = env.deps.cfg.queue_prefix.clone();
    let cfg = EventsConfig::from_lookup(|k| match k {
        "P2C_EVENTS_SECRET" => Some(KEY.into()),
        "P2C_COMPANIES" => Some("usmf=usmf".into()),
        "P2C_QUEUE_PREFIX" => Some(prefix.clone()),
        _ => None,
    })
    .unwrap();
    let ingress = Arc::new(Ingress::new(cfg, &env.aws).await.unwrap());
    let url = p2c_sync::entry::events::local::start(ingress.clone()).await.unwrap();
    let r = reg::register(&env.deps, &url, &Secret::new(KEY), flows).await.unwrap();
    assert!(r.steps.iter().all(|s| s.state == "created"), "{r:?}");
    env.sb.fno_activate_business_events(
        &format!("{url}/fno?code={KEY}"),
        &["SalesOrderConfirmedBusinessEvent", "SalesInvoicePostedBusinessEvent"],
        Some("usmf"),
    );
    (ingress, url)
}

async fn settle(env: &Env) {
    assert!(env.sb.settle_events(Duration::from_secs(30)).await, "events delivered");
}

/// Messages on a flow's queue (read and deleted).
async fn take(env: &Env, flow: FlowName) -> Vec<Message> {
    let (q, _) = env.queued(flow).await;
    q.iter().map(|b| Message::parse(Some(b)).unwrap()).collect()
}

fn account(env: &Env, i: usize) -> Value {
    env.sb.sales_rows("accounts")[i].clone()
}

/// F&O writes of one customer in the write journal.
fn customer_writes(env: &Env, number: &str) -> usize {
    let key = format!("usmf|{}", number.to_ascii_lowercase());
    env.sb
        .writes()
        .iter()
        .filter(|w| w.service == Service::Fno && w.entity == "CustomersV2" && w.key == key)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sales_change_reaches_fno_through_webhook_ingress_queue_and_worker() {
    let env = Env::start(3).await;
    env.run(FlowName::AccountsToFno).await;
    let (ingress, _) = events(&env, &[FlowName::AccountsToFno, FlowName::ContactsToFno]).await;
    let a = account(&env, 0);
    let id = a["accountid"].as_str().unwrap().to_string();
    // A column no flow reads fires nothing (filtering attributes).
    env.sb.sales_update("accounts", &id, json!({"tickersymbol": "CTSO"}));
    settle(&env).await;
    assert!(env.sb.event_deliveries().is_empty());

    env.sb.sales_update(
        "accounts",
        &id,
        json!({"telephone1": "+1 555 0177", "name": "Contoso Events"}),
    );
    settle(&env).await;
    let d = env.sb.event_deliveries();
    assert_eq!((d.len(), d[0].kind, d[0].status), (1, EventKind::Webhook, Some(202)));
    let queued = take(&env, FlowName::AccountsToFno).await;
    assert_eq!(
        queued,
        vec![Message::new("accounts-to-fno", "usmf", vec![id.clone()], Reason::Event)]
    );
    // The worker: the message, as the SQS trigger hands it over.
    for m in &queued {
        env.deps
            .queues
            .send(
                &env.deps.queue_pair(FlowName::AccountsToFno).await.unwrap().queue_url,
                &[m.to_body()],
            )
            .await
            .unwrap();
    }
    let runs = env.drain(FlowName::AccountsToFno).await;
    assert_eq!(runs.iter().map(|r| r.written).sum::<u64>(), 1, "{runs:?}");
    let now = env.sb.sales_get("accounts", &id).unwrap();
    assert_eq!(now["telephone1"], "+1 555 0177");
    let number = now["accountnumber"].as_str().unwrap();
    let customer = fno_find(&env.sb, "CustomersV2", &[("CustomerAccount", json!(number))]).unwrap();
    assert_eq!(customer["PrimaryContactPhone"], "+1 555 0177");
    assert_eq!(customer["OrganizationName"], "Contoso Events");
    // Every mapped field agrees on both sides.
    assert_account(&env, &now).await;
    // A new contact (Create) goes to its flow's queue too.
    env.sb.sales_insert(
        "contacts",
        json!({"firstname": "Ada", "lastname": "Events", "msdynce_contactnumber": "CON-EV-1", "msdynce_isactivecustomer": true}),
    );
    settle(&env).await;
    assert_eq!(take(&env, FlowName::ContactsToFno).await.len(), 1);
    assert_eq!(ingress.counts().accepted, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fno_confirmation_and_invoice_reach_sales_through_business_events() {
    let env = Env::start(3).await;
    for f in [
        FlowName::ProductsToSales,
        FlowName::AccountsToFno,
        FlowName::ContactsToFno,
    ] {
        env.run(f).await;
    }
    let story = env.sb.seed_story();
    env.run(FlowName::OrdersToFno).await;
    assert_document_to_fno(&env, FlowName::OrdersToFno, &story.order_id).await;
    let (ingress, _) = events(&env, &FlowName::ALL).await;

    env.sb.fno_confirm_order("usmf", &story.order_number);
    settle(&env).await;
    let before = vec![env.sb.sales_get("salesorders", &story.order_id).unwrap()];
    let runs = env.drain(FlowName::OrdersToSales).await;
    assert_eq!(
        runs.iter().map(|r| r.written).sum::<u64>(),
        3,
        "the order and its two lines: {runs:?}"
    );
    let (_, order) = assert_document_to_sales(&env, FlowName::OrdersToSales, &story.order_number, &before).await;
    assert_eq!(order["msdynce_processingstatus"], 647_390_001, "Confirmed");
    let fno_order = fno_find(
        &env.sb,
        "CDSSalesOrderHeaders",
        &[("SalesOrderNumber", json!(story.order_number))],
    )
    .unwrap();
    assert_eq!(fno_order["SalesOrderProcessingStatus"], "Confirmed");
    assert_eq!(num(&order["totalamount"]), num(&fno_order["OrderTotalAmount"]));
    // orders-to-sales' writes to the Sales order fire its webhook: the echo is read and not written back.
    let echo = env.drain(FlowName::OrdersToFno).await;
    assert!(!echo.is_empty(), "the Sales order's update came back as an event");
    assert_eq!(echo.iter().map(|r| r.written).sum::<u64>(), 0, "{echo:?}");

    let invoice = env.sb.fno_invoice_order("usmf", &story.order_number);
    settle(&env).await;
    let runs = env.drain(FlowName::InvoicesToSales).await;
    assert_eq!(runs.iter().map(|r| r.written).sum::<u64>(), 3, "{runs:?}");
    let (_, inv) = assert_document_to_sales(&env, FlowName::InvoicesToSales, &invoice, &[]).await;
    let fno_invoice = fno_find(
        &env.sb,
        "ExternallyMaintainedCustomerSalesInvoiceHeaders",
        &[("InvoiceNumber", json!(invoice))],
    )
    .unwrap();
    assert_eq!(num(&inv["totalamount"]), num(&fno_invoice["TotalInvoiceAmount"]));
    let order = env.sb.sales_get("salesorders", &story.order_id).unwrap();
    assert_eq!(
        (order["statecode"].as_i64(), order["statuscode"].as_i64()),
        (Some(4), Some(100_003))
    );
    let business: Vec<_> = env
        .sb
        .event_deliveries()
        .into_iter()
        .filter(|d| d.kind == EventKind::BusinessEvent)
        .collect();
    assert_eq!(business.len(), 2);
    assert!(business.iter().all(|d| d.status == Some(202)));
    assert_eq!(ingress.counts().rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_ignored_calls_enqueue_nothing() {
    let env = Env::start(1).await;
    let (ingress, url) = events(&env, &FlowName::ALL).await;
    let id = account(&env, 0)["accountid"].as_str().unwrap().to_string();
    let hook =
        |entity: &str| json!({"MessageName": "Update", "PrimaryEntityName": entity, "PrimaryEntityId": id}).to_string();
    let http = reqwest::Client::new();
    let post = |path: &str, key: Option<&str>, body: String| {
        let mut r = http
            .post(format!("{url}{path}"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            r = r.header("x-p2c-webhook-key", k);
        }
        r
    };
    let cases = [
        (post("/dataverse", None, hook("account")), 401, "unauthenticated"),
        (post("/dataverse", Some("wrong-key-0123456789xyz"), hook("account")), 401, "wrong key"),
        (post("/fno", None, json!({"BusinessEventId": "SalesInvoicePostedBusinessEvent", "BusinessEventLegalEntity": "usmf", "InvoiceId": "CIV-1"}).to_string()), 401, "business event without its key"),
        (post("/dataverse", Some(KEY), "x".repeat(600 * 1024)), 413, "oversized"),
        (post("/dataverse", Some(KEY), "{\"MessageName\": ".into()), 400, "malformed"),
        (post("/dataverse", Some(KEY), json!({"MessageName": "Update"}).to_string()), 400, "not an execution context"),
        (post("/dataverse", Some(KEY), hook("lead")), 202, "a table p2c does not sync"),
        (post("/fno?code=e2e-events-key-0123456789", None, json!({"BusinessEventId": "SalesInvoicePostedBusinessEvent", "BusinessEventLegalEntity": "demf", "InvoiceId": "CIV-1"}).to_string()), 202, "a company p2c does not sync"),
        (post("/somewhere", Some(KEY), hook("account")), 404, "unknown path"),
    ];
    for (req, status, what) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
    }
    for f in FlowName::ALL {
        let (q, dlq) = env.queued(f).await;
        assert!(q.is_empty() && dlq.is_empty(), "{f}: nothing queued");
    }
    let c = ingress.counts();
    assert_eq!((c.rejected, c.ignored, c.accepted, c.messages), (7, 2, 0, 0), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_event_writes_once() {
    let env = Env::start(2).await;
    env.run(FlowName::AccountsToFno).await;
    let (_, url) = events(&env, &[FlowName::OrdersToSales]).await; // no webhook for accounts: the test sends it
    let a = account(&env, 1);
    let id = a["accountid"].as_str().unwrap().to_string();
    env.sb
        .sales_update("accounts", &id, json!({"telephone1": "+1 555 0300"}));
    env.sb.record_writes(true);
    let body = json!({"MessageName": "Update", "PrimaryEntityName": "account", "PrimaryEntityId": id,
                      "InputParameters": [], "Stage": 40, "Mode": 1})
    .to_string();
    let http = reqwest::Client::new();
    let mut reports = Vec::new();
    // Dataverse sends the same event again (a retry): once before and once after the worker ran.
    for _ in 0..2 {
        let r = http
            .post(format!("{url}/dataverse?code={KEY}"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        reports.extend(env.drain(FlowName::AccountsToFno).await);
    }
    assert_eq!(reports.iter().map(|r| r.written).sum::<u64>(), 1, "{reports:?}");
    assert_eq!(
        reports[1].skipped_by_reason.get(&Skip::Unchanged),
        Some(&1),
        "{reports:?}"
    );
    assert_eq!(customer_writes(&env, a["accountnumber"].as_str().unwrap()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_storm_on_one_record_collapses_to_few_writes() {
    let env = Env::start(1).await;
    env.run(FlowName::AccountsToFno).await;
    let (ingress, _) = events(&env, &[FlowName::AccountsToFno]).await;
    let a = account(&env, 0);
    let id = a["accountid"].as_str().unwrap().to_string();
    let number = a["accountnumber"].as_str().unwrap().to_string();
    env.sb.record_writes(true);
    let mut runs = Vec::new();
    // 1,000 changes of one account in 10 bursts; the worker drains the queue after each burst.
    for burst in 0..10 {
        for i in 0..100 {
            let n = burst * 100 + i;
            env.sb
                .sales_update("accounts", &id, json!({"telephone1": format!("+1 555 {n:04}")}));
        }
        settle(&env).await;
        runs.extend(env.drain(FlowName::AccountsToFno).await);
    }
    assert_eq!(ingress.counts().messages, 1000);
    let written: u64 = runs.iter().map(|r| r.written).sum();
    let writes = customer_writes(&env, &number);
    println!(
        "1,000 changes: {} worker runs, {written} records written, {writes} F&O writes",
        runs.len()
    );
    assert!(writes <= 10, "{writes} writes for 1,000 changes");
    assert_eq!(written as usize, writes);
    let customer = fno_find(&env.sb, "CustomersV2", &[("CustomerAccount", json!(number))]).unwrap();
    assert_eq!(
        customer["PrimaryContactPhone"], "+1 555 0999",
        "F&O ends with the last change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_idempotent_and_status_tells_what_differs() {
    let env = Env::start(1).await;
    let (_, url) = events(&env, &FlowName::ALL).await;
    let key = Secret::new(KEY);
    let st = reg::status(&env.deps, Some(&url), &FlowName::ALL).await.unwrap();
    assert!(st.complete, "{st:?}");
    // 2 steps each for accounts, contacts, quotes and orders; 3 for each line table (Delete too).
    assert_eq!(st.steps.len(), 14);
    let again = reg::register(&env.deps, &url, &key, &FlowName::ALL).await.unwrap();
    assert_eq!(again.endpoint_state, "updated");
    assert!(again.steps.iter().all(|s| s.state == "unchanged"), "{again:?}");
    // Someone narrows a step by hand: status says so, register puts it back.
    let steps = env
        .deps
        .sales
        .list(
            "sdkmessageprocessingsteps",
            &["sdkmessageprocessingstepid".into(), "name".into()],
            Some("name eq 'p2c: accounts-to-fno Update of account'"),
        )
        .await
        .unwrap();
    let id = steps[0]["sdkmessageprocessingstepid"].as_str().unwrap().to_string();
    env.deps
        .sales
        .update(
            "sdkmessageprocessingsteps",
            &id,
            &json!({"filteringattributes": "name"}),
        )
        .await
        .unwrap();
    let st = reg::status(&env.deps, Some(&url), &FlowName::ALL).await.unwrap();
    assert!(!st.complete);
    let diff: Vec<_> = st.steps.iter().filter(|s| s.state != "registered").collect();
    assert_eq!((diff.len(), diff[0].state.as_str()), (1, "different"), "{diff:?}");
    // Fewer flows: the other flows' steps are removed.
    let fewer = reg::register(&env.deps, &url, &key, &[FlowName::AccountsToFno])
        .await
        .unwrap();
    let count = |state: &str| fewer.steps.iter().filter(|s| s.state == state).count();
    assert_eq!(
        (count("updated"), count("unchanged"), count("removed")),
        (1, 1, 12),
        "{fewer:?}"
    );
    let st = reg::status(&env.deps, Some("https://elsewhere.example"), &[FlowName::AccountsToFno])
        .await
        .unwrap();
    assert_eq!(st.endpoint_state, "different url");
}
