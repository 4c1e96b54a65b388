//! Helpers shared by the wire tests: a sandbox, tokens, and a thin authenticated client.
#![allow(dead_code)]

use p2c_sandbox::{Sandbox, SandboxConfig};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::Value;

pub async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default()).await.expect("sandbox starts")
}

pub async fn sandbox_with(cfg: SandboxConfig) -> Sandbox {
    Sandbox::start(cfg).await.expect("sandbox starts")
}

pub fn token_url(sb: &Sandbox) -> String {
    format!("{}/{}/oauth2/v2.0/token", sb.authority_url(), sb.config().tenant)
}

pub async fn token_response(sb: &Sandbox, scope: &str, secret: &str) -> Response {
    Client::new()
        .post(token_url(sb))
        .form(&[
            ("client_id", sb.config().client_id.as_str()),
            ("client_secret", secret),
            ("scope", scope),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .expect("token request")
}

pub async fn token(sb: &Sandbox, resource: &str) -> String {
    let secret = sb.config().client_secret.clone();
    let r = token_response(sb, &format!("{resource}/.default"), &secret).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("token json");
    v["access_token"].as_str().expect("access_token").to_string()
}

/// An authenticated client for one service.
pub struct Api {
    pub client: Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub async fn sales(sb: &Sandbox) -> Api {
        let token = token(sb, &sb.sales_url()).await;
        Api {
            client: Client::new(),
            base: format!("{}/api/data/v9.2", sb.sales_url()),
            token,
        }
    }

    pub async fn fno(sb: &Sandbox) -> Api {
        let token = token(sb, &sb.fno_url()).await;
        Api {
            client: Client::new(),
            base: format!("{}/data", sb.fno_url()),
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}/{}", self.base, path)
        }
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
    }

    pub fn post(&self, path: &str, body: &Value) -> RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(&self.token).json(body)
    }

    pub fn patch(&self, path: &str, body: &Value) -> RequestBuilder {
        self.client.patch(self.url(path)).bearer_auth(&self.token).json(body)
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.client.delete(self.url(path)).bearer_auth(&self.token)
    }

    pub fn batch(&self, boundary: &str, body: String) -> RequestBuilder {
        self.client
            .post(self.url("$batch"))
            .bearer_auth(&self.token)
            .header("Content-Type", format!("multipart/mixed; boundary={boundary}"))
            .body(body)
    }
}

pub async fn json(r: Response) -> Value {
    r.json().await.expect("json body")
}
