//! The clients against the sandbox: escaping, paging, change tracking, retries, throttling, token refresh.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use p2c_dynamics::{Credentials, Dataverse, DynamicsError, Fno, RetryPolicy, Secret, TokenCache};
use p2c_sandbox::{Fault, FaultKind, Sandbox, SandboxConfig, Service};
use serde_json::{Value, json};

struct Clients {
    sb: Sandbox,
    sales: Dataverse,
    fno: Fno,
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        ..Default::default()
    }
}

async fn clients_with(cfg: SandboxConfig, timeout: Duration, secret: Option<&str>) -> Clients {
    let sb = Sandbox::start(cfg).await.unwrap();
    let c = sb.config().clone();
    let http = p2c_dynamics::http_client(timeout);
    let tokens = Arc::new(TokenCache::new(
        http.clone(),
        Credentials {
            authority_url: sb.authority_url(),
            tenant: c.tenant.clone(),
            client_id: c.client_id.clone(),
            client_secret: Secret::new(secret.unwrap_or(&c.client_secret)),
        },
    ));
    let sales = Dataverse::from_api(
        p2c_dynamics::Api::new("sales", http.clone(), tokens.clone(), &sb.sales_url()).with_retry(fast_retry()),
    );
    let fno = Fno::from_api(p2c_dynamics::Api::new("fno", http, tokens, &sb.fno_url()).with_retry(fast_retry()));
    Clients { sb, sales, fno }
}

async fn clients() -> Clients {
    clients_with(SandboxConfig::default(), Duration::from_secs(10), None).await
}

fn customer(account: &str) -> Value {
    json!({"dataAreaId": "usmf", "CustomerAccount": account, "OrganizationName": format!("Org {account}"), "CustomerGroupId": "10"})
}

#[tokio::test]
async fn natural_key_lookup_escapes_quotes_and_cannot_be_injected() {
    let c = clients().await;
    c.sb.seed_demo(0);
    let tricky = ["O'Brien-1", "A&B#2", "Ünïcødé 3", "x' or CustomerAccount ne '", "plain"];
    for k in tricky {
        c.sb.fno_insert("CustomersV2", customer(k));
    }
    c.sb.fno_insert(
        "CustomersV2",
        json!({"dataAreaId": "dat", "CustomerAccount": "O'Brien-1", "CustomerGroupId": "10"}),
    );
    let keys: Vec<String> = tricky.iter().map(|s| s.to_string()).collect();
    let got = c
        .fno
        .find_by_keys(
            "CustomersV2",
            "usmf",
            "CustomerAccount",
            &keys,
            &["CustomerAccount".into(), "dataAreaId".into()],
        )
        .await
        .unwrap();
    let mut found: Vec<&str> = got.iter().map(|r| r["CustomerAccount"].as_str().unwrap()).collect();
    found.sort();
    let mut want = tricky.to_vec();
    want.sort();
    assert_eq!(found, want, "each key exactly once, only in usmf");
    // An injection attempt matches only itself, never everything.
    let only = c
        .fno
        .find_by_keys(
            "CustomersV2",
            "usmf",
            "CustomerAccount",
            &["x' or CustomerAccount ne '".into()],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    // Key URLs: a read by full key, with the quote in the key.
    let one = c
        .fno
        .get(
            "CustomersV2",
            &[("dataAreaId", "usmf"), ("CustomerAccount", "O'Brien-1")],
        )
        .await
        .unwrap();
    assert_eq!(one.unwrap()["OrganizationName"], "Org O'Brien-1");
    assert!(
        c.fno
            .get("CustomersV2", &[("dataAreaId", "usmf"), ("CustomerAccount", "nope")])
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn change_tracking_pages_then_deltas_with_deletes() {
    let c = clients().await;
    c.sb.seed_demo(12);
    let sales = c.sales.clone().with_page_size(5);
    let select = vec!["accountid".to_string(), "name".to_string(), "accountnumber".to_string()];
    let mut url = sales.initial_changes_url("accounts", &select);
    let mut rows = Vec::new();
    let mut pages = 0;
    let delta = loop {
        let p = sales.change_page("accounts", &url).await.unwrap();
        pages += 1;
        rows.extend(p.rows);
        match (p.next_link, p.delta_link) {
            (Some(n), _) => url = n,
            (None, Some(d)) => break d,
            _ => panic!("neither link"),
        }
    };
    assert_eq!((rows.len(), pages), (12, 3));
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r["accountid"].as_str().unwrap().to_string())
        .collect();
    c.sb.sales_update("accounts", &ids[0], json!({"name": "Changed"}));
    c.sb.sales_delete("accounts", &ids[1]);
    let p = sales.change_page("accounts", &delta).await.unwrap();
    assert_eq!(p.rows.len(), 1);
    assert_eq!(p.rows[0]["name"], "Changed");
    assert_eq!(p.deleted, vec![ids[1].clone()]);
    assert!(p.delta_link.is_some());
    // Reads by id, in chunks, with the In function.
    let some = c
        .sales
        .get_by_ids("accounts", "accountid", &ids[2..7], &select)
        .await
        .unwrap();
    assert_eq!(some.len(), 5);
}

#[tokio::test]
async fn server_errors_timeouts_and_dropped_connections_are_retried() {
    let c = clients_with(SandboxConfig::default(), Duration::from_millis(800), None).await;
    c.sb.seed_demo(3);
    c.sb.inject(Fault {
        service: Service::Sales,
        kind: FaultKind::ServerError,
        times: 2,
        path_contains: None,
    });
    c.sb.inject(Fault {
        service: Service::Sales,
        kind: FaultKind::Delay(Duration::from_secs(2)),
        times: 1,
        path_contains: None,
    });
    c.sb.inject(Fault {
        service: Service::Sales,
        kind: FaultKind::Drop,
        times: 1,
        path_contains: None,
    });
    c.sb.reset_counters();
    let rows = c.sales.list("accounts", &["accountid".into()], None).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        c.sb.requests().get("sales GET accounts"),
        Some(&5),
        "{:?}",
        c.sb.requests()
    );
    let stats = c.sales.api().stats();
    assert_eq!(stats.retried, 4);
}

#[tokio::test]
async fn throttling_waits_for_retry_after() {
    let c = clients().await;
    c.sb.seed_demo(1);
    c.sb.inject(Fault {
        service: Service::Sales,
        kind: FaultKind::TooManyRequests { retry_after_secs: 1 },
        times: 2,
        path_contains: None,
    });
    let t = Instant::now();
    let rows = c.sales.list("accounts", &["accountid".into()], None).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(t.elapsed() >= Duration::from_secs(2), "waited {:?}", t.elapsed());
    assert_eq!(c.sales.api().stats().throttled, 2);
}

#[tokio::test]
async fn persistent_server_errors_give_up_as_transient() {
    let c = clients().await;
    c.sb.inject(Fault {
        service: Service::Fno,
        kind: FaultKind::ServerError,
        times: 100,
        path_contains: None,
    });
    let e = c
        .fno
        .list("CustomersV2", &[], Some("dataAreaId eq 'usmf'"), None)
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(matches!(e, DynamicsError::Exhausted { attempts: 6, .. }), "{e}");
}

#[tokio::test]
async fn expired_tokens_are_refreshed_once_and_tokens_are_per_resource() {
    let c = clients().await;
    c.sb.seed_demo(1);
    c.sales.list("accounts", &["accountid".into()], None).await.unwrap();
    c.fno
        .list("CustomersV2", &[], Some("dataAreaId eq 'usmf'"), None)
        .await
        .unwrap();
    assert_eq!(c.sb.requests().get("token POST"), Some(&2), "one token per resource");
    c.sb.expire_all_tokens();
    c.sales.list("accounts", &["accountid".into()], None).await.unwrap();
    assert_eq!(c.sb.requests().get("token POST"), Some(&3));
}

#[tokio::test]
async fn bad_credentials_are_a_permanent_error_without_the_secret() {
    let c = clients_with(
        SandboxConfig::default(),
        Duration::from_secs(5),
        Some("wrong-secret-value"),
    )
    .await;
    let e = c.sales.list("accounts", &["accountid".into()], None).await.unwrap_err();
    assert!(matches!(e, DynamicsError::Auth { .. }), "{e}");
    assert!(!e.is_transient());
    let text = format!("{e} {e:?}");
    assert!(!text.contains("wrong-secret-value"), "{text}");
    assert!(text.contains("P2C_CLIENT_ID"), "{text}");
}

#[tokio::test]
async fn batch_reports_each_operation_on_its_own() {
    let c = clients().await;
    c.sb.seed_demo(0);
    c.sb.fno_insert("CustomersV2", customer("EXISTS"));
    let ops = vec![
        c.fno.create_op("CustomersV2", customer("NEW-1")),
        c.fno.create_op("CustomersV2", customer("EXISTS")),
        c.fno.update_op(
            "CustomersV2",
            &[("dataAreaId", "usmf"), ("CustomerAccount", "MISSING")],
            json!({"OrganizationName": "x"}),
        ),
        c.fno.update_op(
            "CustomersV2",
            &[("dataAreaId", "usmf"), ("CustomerAccount", "EXISTS")],
            json!({"OrganizationName": "Updated"}),
        ),
    ];
    let r = c.fno.batch(&ops).await.unwrap();
    let statuses: Vec<u16> = r.iter().map(|p| p.status).collect();
    assert!(r[0].is_success() && r[3].is_success(), "{statuses:?}");
    // Creates ask for return=minimal: no echo of the 257-property entity.
    assert_eq!(r[0].status, 204, "{statuses:?}");
    assert!(r[0].body.is_empty(), "{}", r[0].body);
    assert_eq!(r[1].status, 500);
    let e = r[1].error("fno", &ops[1]);
    assert!(e.to_string().contains("already exists"), "{e}");
    assert!(!e.is_transient(), "a write validation failure is permanent");
    assert_eq!(r[2].status, 404);
    let rows = c.sb.fno_rows("CustomersV2");
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .any(|r| r["CustomerAccount"] == "EXISTS" && r["OrganizationName"] == "Updated")
    );
}

/// F&O may ignore `return=minimal`: a create inside a change set then answers 201 with `Location`, `ETag` and the
/// whole entity in its part, which the batch parser reads like the 204.
#[tokio::test]
async fn batch_creates_answered_201_with_location_and_body_are_parsed() {
    let c = clients().await;
    c.sb.seed_demo(0);
    let mut full = c.fno.create_op("CustomersV2", customer("LOC-1"));
    full.headers.retain(|(k, _)| *k != "Prefer");
    let sets = vec![vec![full, c.fno.create_op("CustomersV2", customer("LOC-2"))]];
    let r = c.fno.batch_sets(&sets).await.unwrap();
    let [p2c_dynamics::SetResult::Done(parts)] = r.as_slice() else {
        panic!("{r:?}");
    };
    assert_eq!((parts[0].status, parts[1].status), (201, 204));
    for (part, account) in parts.iter().zip(["LOC-1", "LOC-2"]) {
        let location = part.header("Location").unwrap();
        assert!(
            location.ends_with(&format!(
                "/data/CustomersV2(dataAreaId='usmf',CustomerAccount='{account}')"
            )),
            "{location}"
        );
    }
    let entity = parts[0].json().unwrap();
    assert_eq!(entity["CustomerAccount"], "LOC-1");
    assert_eq!(entity["CustomerGroupId"], "10");
    assert!(parts[0].header("ETag").is_some_and(|e| e.starts_with("W/")));
    assert_eq!(c.sb.fno_rows("CustomersV2").len(), 2);
}
