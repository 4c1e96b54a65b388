//! Local stand-ins for a demo: the sandbox for Dynamics, and moto_server for AWS unless one is configured.

use anyhow::{Context, Result};
use p2c_sandbox::{Sandbox, SandboxConfig};
use p2c_state::LocalAws;
use p2c_sync::Config;

/// The AWS side: `AWS_ENDPOINT_URL` when set, else a moto_server started here (kept alive by the handle).
pub async fn aws() -> Result<(aws_config::SdkConfig, Option<LocalAws>)> {
    if std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()) {
        return Ok((p2c_state::aws_config(None).await, None));
    }
    let moto = LocalAws::start()
        .await
        .context("starting moto_server for the local DynamoDB and SQS")?;
    let cfg = p2c_state::aws_config(Some(&moto.endpoint)).await;
    Ok((cfg, Some(moto)))
}

/// A configuration pointing every client at a running sandbox.
pub fn sandbox_config(sb: &Sandbox, table: &str, queue_prefix: &str) -> Result<Config> {
    let c = sb.config();
    Ok(Config::from_lookup(|k| match k {
        "P2C_SALES_URL" => Some(sb.sales_url()),
        "P2C_FNO_URL" => Some(sb.fno_url()),
        "P2C_AUTHORITY_URL" => Some(sb.authority_url()),
        "P2C_TENANT_ID" => Some(c.tenant.clone()),
        "P2C_CLIENT_ID" => Some(c.client_id.clone()),
        "P2C_CLIENT_SECRET" => Some(c.client_secret.clone()),
        "P2C_TABLE" => Some(table.to_string()),
        "P2C_QUEUE_PREFIX" => Some(queue_prefix.to_string()),
        "P2C_COMPANIES" => Some("usmf=usmf".into()),
        _ => None,
    })?)
}

pub async fn start_sandbox(ports: Option<(u16, u16, u16)>, accounts: usize) -> Result<Sandbox> {
    start_sandbox_with(ports, accounts, false).await
}

/// `tls`: serve HTTPS (see [`SandboxConfig::tls`]).
pub async fn start_sandbox_with(ports: Option<(u16, u16, u16)>, accounts: usize, tls: bool) -> Result<Sandbox> {
    let sb = Sandbox::start(SandboxConfig {
        ports,
        tls,
        ..Default::default()
    })
    .await
    .context("starting the sandbox")?;
    sb.seed_demo(accounts);
    Ok(sb)
}
