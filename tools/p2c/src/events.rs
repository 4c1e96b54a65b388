//! `p2c events register|status|serve`, and the local events path the demo and the bench use: the ingress on a
//! local port, webhooks registered in the sandbox, F&O business events activated, triggers polling the queues.

use std::sync::Arc;

use anyhow::{Context, Result};
use p2c_dynamics::Secret;
use p2c_sandbox::Sandbox;
use p2c_sync::{
    Config, Deps, EventsConfig, FlowName, Ingress,
    entry::events::register as reg,
    entry::events::{EventKeys, KeySource, load_keys},
};
use serde_json::json;

/// The events function's key (the webhook key): from P2C_EVENTS_SECRET or P2C_EVENTS_SECRET_ARN.
async fn keys(cfg: &EventsConfig) -> Result<EventKeys> {
    let aws = p2c_state::aws_config(None).await;
    Ok(load_keys(&cfg.keys, &aws).await?)
}

async fn deps() -> Result<Deps> {
    let cfg = Config::from_env()?;
    let aws = p2c_state::aws_config(None).await;
    Ok(Deps::new(cfg, &aws).await?)
}

fn print_registration(r: &reg::Registration) {
    println!(
        "webhook endpoint {:?} ({}): {}",
        reg::ENDPOINT_NAME,
        r.endpoint_url.as_deref().unwrap_or("-"),
        r.endpoint_state
    );
    println!("{:<10} {:<44} filtering attributes", "state", "step");
    for s in &r.steps {
        println!("{:<10} {:<44} {}", s.state, s.name, s.filtering_attributes.join(","));
    }
}

fn print_fno(f: &reg::FnoSetup) {
    println!();
    println!("F&O (System administration > Set up > Business events):");
    println!("  1. Endpoints: New, type HTTPS. Its Key Vault secret holds the URL");
    println!("       {}<business events key>", f.endpoint_url);
    println!("     (the key: P2C_EVENTS_SECRET's business_events_key, or the whole secret when it is one value).");
    println!(
        "  2. Business event catalog: activate, for legal entities {}, with that endpoint:",
        f.legal_entities.join(", ")
    );
    for r in &f.business_events {
        println!("       {:<36} key field {:<14} -> {}", r.event_id, r.field, r.flow);
    }
}

pub async fn register(url: &str, as_json: bool) -> Result<bool> {
    let ecfg = EventsConfig::from_env()?;
    let keys = keys(&ecfg).await?;
    let deps = deps().await?;
    let r = reg::register(&deps, url, &keys.webhook, &ecfg.flows).await?;
    let companies: Vec<String> = ecfg.companies.iter().map(|c| c.legal_entity.clone()).collect();
    let fno = reg::fno_setup(url, &ecfg.business_events, &ecfg.flows, &companies)?;
    if as_json {
        println!("{}", json!({"dataverse": r, "fno": fno}));
    } else {
        print_registration(&r);
        print_fno(&fno);
    }
    Ok(true)
}

pub async fn status(url: Option<&str>, as_json: bool) -> Result<bool> {
    let ecfg = EventsConfig::from_env()?;
    let deps = deps().await?;
    let r = reg::status(&deps, url, &ecfg.flows).await?;
    let companies: Vec<String> = ecfg.companies.iter().map(|c| c.legal_entity.clone()).collect();
    let fno = match url {
        Some(u) => Some(reg::fno_setup(u, &ecfg.business_events, &ecfg.flows, &companies)?),
        None => None,
    };
    if as_json {
        println!("{}", json!({"dataverse": r, "fno": fno}));
    } else {
        print_registration(&r);
        if !r.complete {
            println!("not complete: run `p2c events register --url <events function URL>`");
        }
        if let Some(f) = &fno {
            print_fno(f);
        }
    }
    Ok(r.complete)
}

/// Serves the ingress on a local port until interrupted (with the CLI's configuration: queues by name).
pub async fn serve(port: u16) -> Result<bool> {
    let ecfg = EventsConfig::from_env()?;
    let aws = p2c_state::aws_config(None).await;
    let ingress = Arc::new(Ingress::new(ecfg, &aws).await?);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    println!(
        "events ingress on http://{}: POST /dataverse (webhooks), POST /fno (business events)",
        listener.local_addr()?
    );
    tokio::select! {
        r = p2c_sync::entry::events::local::serve(ingress, listener) => r?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(true)
}

/// The events path wired to a sandbox: the ingress on a local port sending to the flows' queues (found by the
/// deps' queue prefix), the webhooks registered in the sandbox's Dataverse, the business events activated.
pub struct LocalEvents {
    pub ingress: Arc<Ingress>,
    pub url: String,
    pub registration: reg::Registration,
}

pub async fn local(sb: &Sandbox, deps: &Deps, aws: &aws_config::SdkConfig, flows: &[FlowName]) -> Result<LocalEvents> {
    let key = format!("k{}", uuid::Uuid::new_v4().simple());
    let keys = EventKeys::parse("P2C_EVENTS_SECRET", &key)?;
    let companies: Vec<String> = deps
        .cfg
        .companies
        .iter()
        .map(|c| format!("{}={}", c.legal_entity, c.business_unit))
        .collect();
    let flow_list: Vec<&str> = flows.iter().map(|f| f.as_str()).collect();
    let mut ecfg = EventsConfig::from_lookup(|k| match k {
        "P2C_EVENTS_SECRET" => Some(key.clone()),
        "P2C_COMPANIES" => Some(companies.join(",")),
        "P2C_EVENT_FLOWS" => Some(flow_list.join(",")),
        "P2C_QUEUE_PREFIX" => Some(deps.cfg.queue_prefix.clone()),
        _ => None,
    })?;
    ecfg.keys = KeySource::Value(keys.clone());
    let ingress = Arc::new(Ingress::new(ecfg.clone(), aws).await?);
    let url = p2c_sync::entry::events::local::start(ingress.clone()).await?;
    let registration = reg::register(deps, &url, &Secret::new(key.clone()), flows).await?;
    let events: Vec<&str> = ecfg
        .business_events
        .iter()
        .filter(|r| flows.contains(&r.flow))
        .map(|r| r.event_id.as_str())
        .collect();
    sb.fno_activate_business_events(&format!("{url}/fno?code={key}"), &events, None);
    Ok(LocalEvents {
        ingress,
        url,
        registration,
    })
}
