//! `p2c events register` / `p2c events status`: the Dataverse side of near real time, through the Web API.
//!
//! One webhook service endpoint named `p2c` (`serviceendpoints`, `contract` 8, HttpHeader authentication with the
//! `x-p2c-webhook-key` header, JSON) points at the events function's `/dataverse`; for every Sales table an
//! enabled flow reads, asynchronous post-operation steps (`sdkmessageprocessingsteps`, stage 40, mode 1) send
//! Create and Update (filtering attributes: the columns the flow reads) and, for document lines, Delete. Steps are
//! found by name, so registering again changes only what differs and removes steps no enabled flow wants.
//! Sources: PAD `register-web-hook.md` (webhooks are service endpoints with contract 8; steps query), PAD
//! `reference/entities/serviceendpoint.md` (authtype 5 = HttpHeader, messageformat 2 = Json),
//! `reference/entities/sdkmessageprocessingstep.md` (stage, mode, filteringattributes, eventhandler),
//! `best-practices/business-logic/include-filtering-attributes-plugin-registration.md`.
//!
//! F&O business events have no public API to activate them: `status` prints what to activate and the HTTPS
//! endpoint to create (FODOC `business-events/home-page.md`, `managing-business-event-endpoints.md`).

use std::collections::{BTreeMap, BTreeSet};

use p2c_dynamics::{Record, Secret, odata};
use serde_json::{Value, json};

use super::{BusinessEventRoute, keys::WEBHOOK_HEADER};
use crate::{
    deps::Deps,
    error::SyncError,
    flow_name::FlowName,
    flows::{WatchedTable, watched_tables},
};

/// The name of p2c's webhook service endpoint.
pub const ENDPOINT_NAME: &str = "p2c";
const ENDPOINTS: &str = "serviceendpoints";
const STEPS: &str = "sdkmessageprocessingsteps";

/// One step p2c wants (or has).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StepState {
    pub name: String,
    pub flow: Option<FlowName>,
    pub message: String,
    pub table: String,
    pub filtering_attributes: Vec<String>,
    /// `created`, `updated`, `unchanged`, `removed` (register); `registered`, `missing`, `different`, `stale`
    /// (status).
    pub state: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Registration {
    pub endpoint_id: Option<String>,
    pub endpoint_url: Option<String>,
    /// `created`, `updated` (register); `registered`, `missing`, `different url` (status).
    pub endpoint_state: String,
    pub steps: Vec<StepState>,
    /// Every wanted step is registered as wanted and nothing stale is left.
    pub complete: bool,
}

/// What F&O needs, for `p2c events status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FnoSetup {
    pub business_events: Vec<BusinessEventRoute>,
    /// The endpoint URL without its key: `<base>/fno?code=` followed by the business events key.
    pub endpoint_url: String,
    pub legal_entities: Vec<String>,
}

struct Wanted {
    table: WatchedTable,
    message: &'static str,
    name: String,
    attributes: Vec<String>,
}

fn wanted(deps: &Deps, flows: &[FlowName]) -> Vec<Wanted> {
    let mut out = Vec::new();
    for &f in flows {
        for t in watched_tables(f, deps.templates(f)) {
            let mut messages = vec!["Create", "Update"];
            if t.deletes {
                messages.push("Delete");
            }
            for m in messages {
                out.push(Wanted {
                    name: format!("p2c: {f} {m} of {}", t.logical),
                    message: m,
                    attributes: if m == "Update" { t.columns.clone() } else { Vec::new() },
                    table: t.clone(),
                });
            }
        }
    }
    out
}

/// `<base>/dataverse`, `<base>/fno`: the events function's paths.
pub fn ingress_url(base: &str, path: &str) -> Result<String, SyncError> {
    let base = base.trim().trim_end_matches('/');
    p2c_dynamics::check_endpoint("the events URL", base)?;
    Ok(format!("{base}/{path}"))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

fn text(r: &Record, k: &str) -> String {
    r.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

fn attributes(s: &str) -> BTreeSet<String> {
    s.split(',')
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .collect()
}

async fn find_endpoint(deps: &Deps) -> Result<Option<Record>, SyncError> {
    let filter = format!("name eq {} and contract eq 8", odata::string_literal(ENDPOINT_NAME));
    let select = ["serviceendpointid", "name", "url", "authtype"].map(String::from);
    Ok(deps
        .sales
        .list(ENDPOINTS, &select, Some(&filter))
        .await?
        .into_iter()
        .next())
}

async fn existing_steps(deps: &Deps, endpoint: &str) -> Result<Vec<Record>, SyncError> {
    let select = [
        "sdkmessageprocessingstepid",
        "name",
        "filteringattributes",
        "stage",
        "mode",
        "statecode",
        "_sdkmessageid_value",
        "_sdkmessagefilterid_value",
    ]
    .map(String::from);
    let filter = format!("_eventhandler_value eq {endpoint}");
    Ok(deps.sales.list(STEPS, &select, Some(&filter)).await?)
}

/// Message ids by name.
async fn messages(deps: &Deps) -> Result<BTreeMap<String, String>, SyncError> {
    let filter = "name eq 'Create' or name eq 'Update' or name eq 'Delete'";
    let rows = deps
        .sales
        .list("sdkmessages", &["sdkmessageid".into(), "name".into()], Some(filter))
        .await?;
    Ok(rows
        .iter()
        .map(|r| (text(r, "name"), text(r, "sdkmessageid")))
        .collect())
}

async fn filter_id(deps: &Deps, logical: &str, message_id: &str) -> Result<String, SyncError> {
    let filter = format!(
        "primaryobjecttypecode eq {} and _sdkmessageid_value eq {message_id}",
        odata::string_literal(logical)
    );
    let rows = deps
        .sales
        .list("sdkmessagefilters", &["sdkmessagefilterid".into()], Some(&filter))
        .await?;
    rows.first().map(|r| text(r, "sdkmessagefilterid")).ok_or_else(|| {
        SyncError::Unsupported(format!(
            "Dataverse has no message filter for {logical}: webhooks cannot be registered on that table"
        ))
    })
}

/// Creates or updates the endpoint; returns its id and what was done.
async fn ensure_endpoint(deps: &Deps, url: &str, key: &Secret) -> Result<(String, &'static str), SyncError> {
    let body = json!({
        "name": ENDPOINT_NAME,
        "description": "p2c events function: Sales changes start a sync within seconds",
        "contract": 8,
        "authtype": 5,
        "messageformat": 2,
        "url": url,
        "authvalue": format!(
            "<settings><setting name=\"{WEBHOOK_HEADER}\" value=\"{}\" /></settings>",
            xml_escape(key.expose())
        ),
    });
    match find_endpoint(deps).await? {
        Some(ep) => {
            let id = text(&ep, "serviceendpointid");
            // The key cannot be read back (authvalue is write-only), so it is always written again.
            deps.sales.update(ENDPOINTS, &id, &body).await?;
            Ok((id, "updated"))
        }
        None => Ok((deps.sales.create(ENDPOINTS, &body).await?, "created")),
    }
}

/// Registers the webhook and its steps for `flows` (idempotent).
pub async fn register(
    deps: &Deps,
    base_url: &str,
    key: &Secret,
    flows: &[FlowName],
) -> Result<Registration, SyncError> {
    let url = ingress_url(base_url, "dataverse")?;
    let (endpoint, endpoint_state) = ensure_endpoint(deps, &url, key).await?;
    let msgs = messages(deps).await?;
    let mut existing: BTreeMap<String, Record> = existing_steps(deps, &endpoint)
        .await?
        .into_iter()
        .map(|s| (text(&s, "name"), s))
        .collect();
    let mut steps = Vec::new();
    for w in wanted(deps, flows) {
        let msg = msgs
            .get(w.message)
            .ok_or_else(|| SyncError::Unsupported(format!("Dataverse has no {} message", w.message)))?;
        let state = match existing.remove(&w.name) {
            None => {
                let filter = filter_id(deps, &w.table.logical, msg).await?;
                let mut body = json!({
                    "name": w.name,
                    "description": format!("p2c events: {} of {} for {}", w.message, w.table.logical, w.table.flow),
                    "stage": 40, "mode": 1, "rank": 1, "supporteddeployment": 0, "asyncautodelete": true,
                    "eventhandler_serviceendpoint@odata.bind": format!("/serviceendpoints({endpoint})"),
                    "sdkmessageid@odata.bind": format!("/sdkmessages({msg})"),
                    "sdkmessagefilterid@odata.bind": format!("/sdkmessagefilters({filter})"),
                });
                if !w.attributes.is_empty() {
                    body["filteringattributes"] = json!(w.attributes.join(","));
                }
                deps.sales.create(STEPS, &body).await?;
                "created"
            }
            Some(s) if step_matches(&s, &w) => "unchanged",
            Some(s) => {
                let mut body = json!({"stage": 40, "mode": 1, "statecode": 0, "statuscode": 1});
                if w.message == "Update" {
                    body["filteringattributes"] = json!(w.attributes.join(","));
                }
                deps.sales
                    .update(STEPS, &text(&s, "sdkmessageprocessingstepid"), &body)
                    .await?;
                "updated"
            }
        };
        steps.push(step_state(&w, state));
    }
    for (name, s) in existing {
        deps.sales
            .delete(STEPS, &text(&s, "sdkmessageprocessingstepid"))
            .await?;
        steps.push(stale(name, "removed"));
    }
    Ok(Registration {
        endpoint_id: Some(endpoint),
        endpoint_url: Some(url),
        endpoint_state: endpoint_state.into(),
        steps,
        complete: true,
    })
}

fn step_matches(s: &Record, w: &Wanted) -> bool {
    let num = |k: &str| s.get(k).and_then(Value::as_i64);
    num("stage") == Some(40)
        && num("mode") == Some(1)
        && num("statecode") == Some(0)
        && attributes(&text(s, "filteringattributes")) == w.attributes.iter().cloned().collect()
}

fn step_state(w: &Wanted, state: &str) -> StepState {
    StepState {
        name: w.name.clone(),
        flow: Some(w.table.flow),
        message: w.message.into(),
        table: w.table.logical.clone(),
        filtering_attributes: w.attributes.clone(),
        state: state.into(),
    }
}

fn stale(name: String, state: &str) -> StepState {
    StepState {
        name,
        flow: None,
        message: String::new(),
        table: String::new(),
        filtering_attributes: Vec::new(),
        state: state.into(),
    }
}

/// What is registered, compared with what `flows` want. `base_url`, when given, is checked against the endpoint.
pub async fn status(deps: &Deps, base_url: Option<&str>, flows: &[FlowName]) -> Result<Registration, SyncError> {
    let want = wanted(deps, flows);
    let Some(ep) = find_endpoint(deps).await? else {
        return Ok(Registration {
            endpoint_id: None,
            endpoint_url: None,
            endpoint_state: "missing".into(),
            steps: want.iter().map(|w| step_state(w, "missing")).collect(),
            complete: false,
        });
    };
    let id = text(&ep, "serviceendpointid");
    let url = text(&ep, "url");
    let expected = base_url.map(|b| ingress_url(b, "dataverse")).transpose()?;
    let endpoint_state = match expected {
        Some(e) if e != url => "different url",
        _ => "registered",
    };
    let mut existing: BTreeMap<String, Record> = existing_steps(deps, &id)
        .await?
        .into_iter()
        .map(|s| (text(&s, "name"), s))
        .collect();
    let mut steps = Vec::new();
    for w in &want {
        let state = match existing.remove(&w.name) {
            None => "missing",
            Some(s) if step_matches(&s, w) => "registered",
            Some(_) => "different",
        };
        steps.push(step_state(w, state));
    }
    steps.extend(existing.into_keys().map(|n| stale(n, "stale")));
    let complete = endpoint_state == "registered" && steps.iter().all(|s| s.state == "registered");
    Ok(Registration {
        endpoint_id: Some(id),
        endpoint_url: Some(url),
        endpoint_state: endpoint_state.into(),
        steps,
        complete,
    })
}

/// The business events to activate in F&O and the endpoint to create for them.
pub fn fno_setup(
    base_url: &str,
    routes: &[BusinessEventRoute],
    flows: &[FlowName],
    legal_entities: &[String],
) -> Result<FnoSetup, SyncError> {
    Ok(FnoSetup {
        business_events: routes.iter().filter(|r| flows.contains(&r.flow)).cloned().collect(),
        endpoint_url: format!("{}?code=", ingress_url(base_url, "fno")?),
        legal_entities: legal_entities.to_vec(),
    })
}
