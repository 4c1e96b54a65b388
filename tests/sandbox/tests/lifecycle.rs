//! Start, fixed ports, shutdown, and the older v1 token form.

mod common;

use std::time::Duration;

use common::*;
use p2c_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

async fn refused(url: &str) -> bool {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    c.get(url).send().await.is_err()
}

#[tokio::test]
async fn servers_stop_on_shutdown_and_when_the_last_handle_drops() {
    let sb = sandbox().await;
    let clone = sb.clone();
    let url = format!("{}/api/data/v9.2/", sb.sales_url());
    assert!(!refused(&url).await);
    drop(sb);
    assert!(!refused(&url).await, "a clone keeps the servers up");
    drop(clone);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(refused(&url).await);

    let sb = sandbox().await;
    let url = format!("{}/data/", sb.fno_url());
    sb.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(refused(&url).await);
}

#[tokio::test]
async fn fixed_ports_and_v1_tokens() {
    // Find three free ports, then ask for exactly those. Another process may take one in between (tests run in
    // parallel), so a taken port means: pick again.
    let (sb, ports) = 'start: {
        for _ in 0..5 {
            let held: Vec<_> = (0..3)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
                .collect();
            let ports: Vec<u16> = held.iter().map(|l| l.local_addr().unwrap().port()).collect();
            drop(held);
            match Sandbox::start(SandboxConfig {
                ports: Some((ports[0], ports[1], ports[2])),
                ..Default::default()
            })
            .await
            {
                Ok(sb) => break 'start (sb, ports),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no three free ports in five tries");
    };
    assert_eq!(sb.sales_url(), format!("http://127.0.0.1:{}", ports[0]));
    assert_eq!(sb.fno_url(), format!("http://127.0.0.1:{}", ports[1]));
    assert_eq!(sb.authority_url(), format!("http://127.0.0.1:{}", ports[2]));

    // v1 endpoint with `resource=` (F&O tooling still uses it): numbers come back as strings.
    let r = reqwest::Client::new()
        .post(format!("{}/{}/oauth2/token", sb.authority_url(), sb.config().tenant))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "p2c-client"),
            ("client_secret", "p2c-secret"),
            ("resource", sb.fno_url().as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["expires_in"], "3599");
    let token = v["access_token"].as_str().unwrap();
    let r = reqwest::Client::new()
        .get(format!("{}/data/CustomersV2", sb.fno_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn seed_demo_builds_the_reference_data() {
    let sb = sandbox().await;
    sb.seed_demo(25);
    sb.seed_demo(5);
    let bu = sb.business_unit_id("usmf").expect("usmf BU");
    let accounts = sb.sales_rows("accounts");
    assert_eq!(accounts.len(), 30);
    let mut numbers: Vec<&str> = accounts.iter().map(|a| a["accountnumber"].as_str().unwrap()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 30, "account numbers are unique");
    assert!(
        numbers
            .iter()
            .all(|n| n.starts_with("ACC-") && n.len() == "ACC-01000-BVRCPS".len())
    );
    assert!(accounts.iter().all(|a| a["_owningbusinessunit_value"] == bu.as_str()));
    assert!(accounts.iter().all(|a| a["_transactioncurrencyid_value"].is_string()));
    assert_eq!(
        sb.sales_rows("transactioncurrencies").len(),
        3,
        "reference data is idempotent"
    );
    assert!(
        sb.sales_rows("pricelevels")
            .iter()
            .any(|p| p["name"] == "CRM Service USA (sample)")
    );
    assert!(sb.sales_rows("uoms").len() >= 2);
    assert_eq!(sb.fno_rows("SellableReleasedProducts").len(), 5);
    let groups: Vec<Value> = sb.fno_rows("CustomerGroups");
    assert!(
        groups
            .iter()
            .any(|g| g["dataAreaId"] == "usmf" && g["CustomerGroupId"] == "10")
    );
    assert!(
        groups
            .iter()
            .any(|g| g["dataAreaId"] == "dat" && g["CustomerGroupId"] == "30")
    );
}
