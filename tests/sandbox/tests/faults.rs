//! Injected faults, service protection limits and request counters.

mod common;

use std::time::{Duration, Instant};

use common::*;
use p2c_sandbox::{Fault, FaultKind, SandboxConfig, Service, ServiceLimits};

#[tokio::test]
async fn too_many_requests_fault_carries_retry_after() {
    let sb = sandbox().await;
    let sales = Api::sales(&sb).await;
    let fno = Api::fno(&sb).await;
    sb.inject(Fault {
        service: Service::Sales,
        kind: FaultKind::TooManyRequests { retry_after_secs: 7 },
        times: 2,
        path_contains: Some("accounts".into()),
    });
    sb.inject(Fault::once(
        Service::Fno,
        FaultKind::TooManyRequests { retry_after_secs: 3 },
    ));

    // Other paths are not affected.
    assert_eq!(sales.get("contacts").send().await.unwrap().status(), 200);
    for _ in 0..2 {
        let r = sales.get("accounts").send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        assert_eq!(json(r).await["error"]["code"], "0x80072322");
    }
    assert_eq!(
        sales.get("accounts").send().await.unwrap().status(),
        200,
        "fault used up"
    );

    let r = fno.get("CustomersV2").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    let msg = json(r).await["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("high resource utilization"), "{msg}");

    // Counters include faulted requests.
    assert_eq!(sb.requests().get("sales GET accounts"), Some(&3));
    assert_eq!(sb.total_requests("sales"), 4);
    assert_eq!(sb.total_requests("fno"), 1);
    assert_eq!(sb.total_requests("token"), 2);
    sb.reset_counters();
    assert_eq!(sb.total_requests("sales"), 0);
}

#[tokio::test]
async fn server_error_delay_and_drop() {
    let sb = sandbox().await;
    let sales = Api::sales(&sb).await;

    sb.inject(Fault::once(Service::Sales, FaultKind::ServerError));
    let r = sales.get("accounts").send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(json(r).await["error"]["message"].is_string());

    sb.inject(Fault::once(
        Service::Sales,
        FaultKind::Delay(Duration::from_millis(150)),
    ));
    let t = Instant::now();
    assert_eq!(sales.get("accounts").send().await.unwrap().status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(150));

    sb.inject(Fault::once(Service::Any, FaultKind::Drop));
    let e = sales
        .get("accounts")
        .send()
        .await
        .expect_err("connection closed without a response");
    assert!(!e.is_status());
    assert_eq!(
        sales.get("accounts").send().await.unwrap().status(),
        200,
        "next request is served"
    );

    // Token endpoint faults.
    sb.inject(Fault::once(Service::Token, FaultKind::ServerError));
    let r = token_response(&sb, &format!("{}/.default", sb.sales_url()), "p2c-secret").await;
    assert_eq!(r.status(), 500);
    sb.inject(Fault::once(Service::Token, FaultKind::Drop));
    sb.clear_faults();
    assert_eq!(
        token_response(&sb, &format!("{}/.default", sb.sales_url()), "p2c-secret")
            .await
            .status(),
        200
    );

    assert_eq!(
        sb.requests().get("sales GET accounts"),
        Some(&4),
        "faulted and dropped requests count too"
    );
}

#[tokio::test]
async fn service_protection_limits_per_window_and_concurrency() {
    let sb = sandbox_with(SandboxConfig {
        limits: Some(ServiceLimits {
            requests_per_window: 3,
            execution_per_window: Duration::from_secs(3600),
            window: Duration::from_millis(400),
            max_concurrent: 2,
            retry_after_secs: 1,
        }),
        latency: Duration::from_millis(60),
        ..Default::default()
    })
    .await;
    let sales = Api::sales(&sb).await;
    for _ in 0..3 {
        assert_eq!(sales.get("accounts").send().await.unwrap().status(), 200);
    }
    let r = sales.get("accounts").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let v = json(r).await;
    assert_eq!(v["error"]["code"], "0x80072322");
    assert_eq!(
        v["error"]["message"],
        "Number of requests exceeded the limit of 3 over time window of 0 seconds."
    );

    // F&O has its own budget.
    let fno = Api::fno(&sb).await;
    assert_eq!(fno.get("CustomersV2").send().await.unwrap().status(), 200);

    // After the window the budget is back; three parallel requests trip the concurrency limit of 2.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let (a, b, c) = tokio::join!(
        sales.get("accounts").send(),
        sales.get("accounts").send(),
        sales.get("accounts").send()
    );
    let mut statuses: Vec<u16> = [a, b, c].into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 200, 429]);
}

/// Dataverse's service protection counts per user (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits):
/// an application user whose window is spent is refused while another registered app, with a token of its own,
/// is served; a secret of one app does not open another, and the counts say which user asked.
#[tokio::test]
async fn service_protection_counts_per_application_user() {
    let sb = sandbox_with(SandboxConfig {
        limits: Some(ServiceLimits {
            requests_per_window: 3,
            execution_per_window: Duration::from_secs(3600),
            window: Duration::from_secs(60),
            max_concurrent: 52,
            retry_after_secs: 1,
        }),
        more_clients: vec![("p2c-client-2".into(), "second-secret".into())],
        ..Default::default()
    })
    .await;
    let first = Api::sales(&sb).await;
    let scope = format!("{}/.default", sb.sales_url());
    let ask = |secret: &'static str| {
        let form = [
            ("client_id", "p2c-client-2"),
            ("client_secret", secret),
            ("scope", scope.as_str()),
            ("grant_type", "client_credentials"),
        ];
        reqwest::Client::new().post(token_url(&sb)).form(&form).send()
    };
    let wrong = ask("p2c-secret").await.unwrap();
    assert_eq!(wrong.status(), 401, "the first app's secret does not open the second");
    let v = json(ask("second-secret").await.unwrap()).await;
    let second = Api {
        client: reqwest::Client::new(),
        base: format!("{}/api/data/v9.2", sb.sales_url()),
        token: v["access_token"].as_str().unwrap().to_string(),
    };
    for _ in 0..3 {
        assert_eq!(first.get("accounts").send().await.unwrap().status(), 200);
    }
    assert_eq!(
        first.get("accounts").send().await.unwrap().status(),
        429,
        "the first user is spent"
    );
    for _ in 0..3 {
        assert_eq!(
            second.get("accounts").send().await.unwrap().status(),
            200,
            "the second has its own window"
        );
    }
    assert_eq!(second.get("accounts").send().await.unwrap().status(), 429);
    let by = sb.requests_by_client();
    let count = |k: &str| by.get(k).map(|c| (c.requests, c.throttled));
    assert_eq!(count("sales p2c-client"), Some((4, 1)), "{by:?}");
    assert_eq!(count("sales p2c-client-2"), Some((4, 1)), "{by:?}");
    // Each app is an application user of its own in Sales.
    let users: Vec<String> = sb
        .sales_rows("systemusers")
        .iter()
        .filter_map(|u| u["domainname"].as_str().map(str::to_string))
        .collect();
    assert!(users.contains(&"p2c-client-2@contoso.example".to_string()), "{users:?}");
}

#[tokio::test]
async fn each_operation_of_a_batch_takes_execution_time_and_the_budget_runs_out() {
    let sb = sandbox_with(SandboxConfig {
        op_time: Duration::from_millis(40),
        limits: Some(ServiceLimits {
            requests_per_window: 1000,
            execution_per_window: Duration::from_millis(100),
            window: Duration::from_millis(800),
            max_concurrent: 52,
            retry_after_secs: 1,
        }),
        ..Default::default()
    })
    .await;
    let sales = Api::sales(&sb).await;
    let get = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\
               GET /api/data/v9.2/accounts?$select=name HTTP/1.1\r\n\r\n";
    let body = format!("--b\r\n{get}--b\r\n{get}--b\r\n{get}--b--\r\n");
    let started = Instant::now();
    let r = sales.batch("b", body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(120),
        "three operations of 40 ms run one after another: {:?}",
        started.elapsed()
    );

    // 120 ms used of a 100 ms budget: the next request is refused with the execution-time error.
    let r = sales.get("accounts").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let v = json(r).await;
    assert_eq!(v["error"]["code"], "0x80072321");
    assert_eq!(
        v["error"]["message"],
        "Combined execution time of incoming requests exceeded limit of 100 milliseconds over time window of 0 \
         seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later."
    );
    // F&O has its own budget; after the window Sales has its budget back.
    assert_eq!(
        Api::fno(&sb).await.get("CustomersV2").send().await.unwrap().status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(850)).await;
    assert_eq!(sales.get("accounts").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn retry_after_is_the_time_until_the_window_admits_again() {
    let sb = sandbox_with(SandboxConfig {
        limits: Some(ServiceLimits {
            requests_per_window: 2,
            window: Duration::from_secs(3),
            ..ServiceLimits::default()
        }),
        ..Default::default()
    })
    .await;
    let sales = Api::sales(&sb).await;
    for _ in 0..2 {
        assert_eq!(sales.get("accounts").send().await.unwrap().status(), 200);
    }
    let r = sales.get("accounts").send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), &r.headers()["retry-after"]),
        (429, &"3".parse().unwrap())
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let r = sales.get("accounts").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2", "it shrinks as the window moves on");
}
