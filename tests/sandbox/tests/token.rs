//! Entra token endpoint and bearer checks on both APIs.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn issues_tokens_per_resource_and_rejects_bad_credentials() {
    let sb = sandbox().await;
    let secret = sb.config().client_secret.clone();

    let ok = token_response(&sb, &format!("{}/.default", sb.sales_url()), &secret).await;
    assert_eq!(ok.status(), 200);
    let v: Value = ok.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
    assert!(v["access_token"].as_str().unwrap().len() > 20);

    let bad_secret = token_response(&sb, &format!("{}/.default", sb.sales_url()), "nope").await;
    assert_eq!(bad_secret.status(), 401);
    let v: Value = bad_secret.json().await.unwrap();
    assert_eq!(v["error"], "invalid_client");
    assert_eq!(v["error_codes"][0], 7_000_215);
    assert!(v["error_description"].as_str().unwrap().starts_with("AADSTS7000215:"));

    // A scope without /.default is invalid for client credentials.
    let bad_scope = token_response(&sb, &sb.sales_url(), &secret).await;
    assert_eq!(bad_scope.status(), 400);
    assert_eq!(json(bad_scope).await["error"], "invalid_scope");

    // Two resources at once are refused too.
    let two = token_response(
        &sb,
        &format!("{0}/.default {1}/.default", sb.sales_url(), sb.fno_url()),
        &secret,
    )
    .await;
    assert_eq!(two.status(), 400);
    assert_eq!(json(two).await["error"], "invalid_scope");

    let unknown = token_response(&sb, "https://elsewhere.example.com/.default", &secret).await;
    assert_eq!(unknown.status(), 400);
    assert_eq!(json(unknown).await["error"], "invalid_resource");

    let wrong_tenant = reqwest::Client::new()
        .post(format!("{}/other-tenant/oauth2/v2.0/token", sb.authority_url()))
        .form(&[
            ("client_id", "p2c-client"),
            ("client_secret", "p2c-secret"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_tenant.status(), 400);

    let unknown_app = reqwest::Client::new()
        .post(token_url(&sb))
        .form(&[
            ("client_id", "someone-else"),
            ("client_secret", "x"),
            ("scope", &format!("{}/.default", sb.fno_url())),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_app.status(), 400);
    assert_eq!(json(unknown_app).await["error"], "unauthorized_client");

    assert_eq!(sb.requests().get("token POST"), Some(&7));
}

#[tokio::test]
async fn tokens_are_bound_to_their_audience() {
    let sb = sandbox().await;
    let sales = Api::sales(&sb).await;
    let fno = Api::fno(&sb).await;

    assert_eq!(sales.get("accounts").send().await.unwrap().status(), 200);
    assert_eq!(fno.get("CustomersV2").send().await.unwrap().status(), 200);

    // Swap the tokens: each service refuses the other's.
    let c = reqwest::Client::new();
    let r = c
        .get(format!("{}/data/CustomersV2", sb.fno_url()))
        .bearer_auth(&sales.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let r = c
        .get(format!("{}/api/data/v9.2/accounts", sb.sales_url()))
        .bearer_auth(&fno.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let www = r
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(www.contains("authorization_uri="), "{www}");
    let body = json(r).await;
    assert_eq!(body["error"]["code"], "0x80072243");

    // No token at all.
    let r = c
        .get(format!("{}/api/data/v9.2/accounts", sb.sales_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn expired_tokens_get_401_and_a_new_token_works() {
    let sb = sandbox().await;
    let sales = Api::sales(&sb).await;
    assert_eq!(sales.get("accounts").send().await.unwrap().status(), 200);
    sb.expire_all_tokens();
    let r = sales.get("accounts").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let fresh = Api::sales(&sb).await;
    assert_eq!(fresh.get("accounts").send().await.unwrap().status(), 200);
    assert_eq!(sb.requests().get("sales GET accounts"), Some(&3));
}

#[tokio::test]
async fn short_ttl_expires_on_its_own() {
    let sb = sandbox_with(p2c_sandbox::SandboxConfig {
        token_ttl: std::time::Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let fno = Api::fno(&sb).await;
    assert_eq!(fno.get("CustomersV2").send().await.unwrap().status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(fno.get("CustomersV2").send().await.unwrap().status(), 401);
}
