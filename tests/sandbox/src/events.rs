//! Events the sandbox sends, with the real payload shapes, so the whole near-real-time path runs locally.
//!
//! **Dataverse webhooks** follow the registrations in the org itself: a change of a row fires every enabled step
//! (`sdkmessageprocessingsteps`) registered on its message (Create, Update, Delete) and table whose event handler
//! is a webhook (`serviceendpoints`, `contract` 8), and, for Update, whose filtering attributes include a changed
//! column. The POST carries the `RemoteExecutionContext` JSON (PAD `use-webhooks.md`: `MessageName`,
//! `PrimaryEntityName`, `PrimaryEntityId`, `InputParameters` with the `Target` entity, `Stage`, `Mode`...), the
//! `x-ms-dynamics-*` headers, and the registered authentication (HttpHeader pairs, WebhookKey `?code=`,
//! HttpQueryString pairs). Over 256 KB, `ParentContext`, `InputParameters` and the images are dropped and
//! `x-ms-dynamics-msg-size-exceeded` is sent. A failed delivery is tried once more only on 502/503/504
//! (PAD `use-webhooks.md`, "Troubleshoot WebHook registrations").
//!
//! Choices: steps run asynchronously after the change is committed (a rolled-back change set fires nothing),
//! with no queueing delay of the async service; the Target of an Update lists the columns whose value changed
//! (the platform lists the columns the request sent); several writes of one row inside one request are one event.
//!
//! **F&O business events** are sent for the business processes the sandbox runs (`fno_confirm_order`,
//! `fno_invoice_order`) once activated with [`crate::Sandbox::fno_activate_business_events`]: the
//! `BusinessEventsContract` envelope (`BusinessEventId`, `BusinessEventLegalEntity`, `ControlNumber`, `EventId`,
//! `EventTime`, `EventTimeIso8601`, `MajorVersion`, `MinorVersion`...) plus the contract's fields, POSTed as JSON
//! to the HTTPS endpoint URL. A failed send is retried three times one second apart (FODOC
//! `business-events/home-page.md`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, mpsc};

use crate::dv_schema::{self, ColType, Table};
use crate::store::{DvChange, DvStore, HIDDEN, Row};
use crate::{Service, State, lock};

/// Dataverse trims a webhook payload above this (PAD `use-webhooks.md`).
const MAX_PAYLOAD: usize = 256 * 1024;
/// Deliveries in flight at once (the async service works in parallel).
const CONCURRENCY: usize = 16;
const XRM: &str = "http://schemas.microsoft.com/xrm/2011/Contracts";

/// Which kind of event a delivery was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A Dataverse webhook (a registered step).
    Webhook,
    /// An F&O business event.
    BusinessEvent,
}

/// One event sent (or given up on).
#[derive(Debug, Clone)]
pub struct EventDelivery {
    pub kind: EventKind,
    /// The message (`Update`) or the business event id.
    pub name: String,
    /// Logical name of the table, or the F&O legal entity.
    pub entity: String,
    /// Row id, or the business event's main key (order or invoice number).
    pub key: String,
    /// Where it went, without the query string (which may carry a key).
    pub url: String,
    /// The last answer's status; `None` when no answer came.
    pub status: Option<u16>,
    pub attempts: u32,
    /// Unix time in milliseconds of the change and of the end of the delivery.
    pub changed_ms: f64,
    pub done_ms: f64,
}

/// One row written, while the write journal is on (`Sandbox::record_writes`).
#[derive(Debug, Clone)]
pub struct WriteRecord {
    /// Unix time in milliseconds.
    pub at_ms: f64,
    pub service: Service,
    /// Dataverse entity set, or F&O storage table (entity sets over one table share it: `CustomersV2`).
    pub entity: String,
    /// Row id, or the F&O key parts joined by `|` (`usmf|us-001`, lower case).
    pub key: String,
    /// The row after the write; `None` for a delete.
    pub row: Option<Value>,
}

/// How a failed delivery is retried.
#[derive(Clone, Copy)]
enum Retry {
    /// Once more on 502/503/504 (Dataverse).
    Gateway,
    /// Three more times, one second apart, on any failure (F&O).
    ThreeTimes,
}

struct Delivery {
    record: EventDelivery,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    retry: Retry,
}

/// Activated business events and their endpoint.
#[derive(Default)]
pub(crate) struct FnoEvents {
    pub url: Option<String>,
    /// (business event id, legal entity or all).
    pub active: Vec<(String, Option<String>)>,
}

pub(crate) struct Hub {
    tx: mpsc::UnboundedSender<Delivery>,
    pending: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<EventDelivery>>>,
    pub organization_id: String,
    pub user_id: String,
    pub fno: Mutex<FnoEvents>,
    control: AtomicU64,
    /// Dataverse writes while the journal is on (F&O ones are kept by the F&O store).
    pub journal: Mutex<Option<Vec<WriteRecord>>>,
}

impl Hub {
    /// Starts the delivery task (needs a tokio runtime).
    pub fn start() -> Hub {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(deliver_all(rx, pending.clone(), log.clone()));
        Hub {
            tx,
            pending,
            log,
            organization_id: uuid::Uuid::new_v4().to_string(),
            user_id: uuid::Uuid::new_v4().to_string(),
            fno: Mutex::new(FnoEvents::default()),
            // Control numbers increase and have gaps (FODOC home-page.md, "Idempotency").
            control: AtomicU64::new(5_637_144_576),
            journal: Mutex::new(None),
        }
    }

    fn send(&self, d: Delivery) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(d).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    pub fn deliveries(&self) -> Vec<EventDelivery> {
        lock(&self.log).clone()
    }
}

fn ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn deliver_all(
    mut rx: mpsc::UnboundedReceiver<Delivery>,
    pending: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<EventDelivery>>>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default();
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    while let Some(d) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (http, pending, log) = (http.clone(), pending.clone(), log.clone());
        tokio::spawn(async move {
            let record = deliver(&http, d).await;
            lock(&log).push(record);
            pending.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        });
    }
}

async fn deliver(http: &reqwest::Client, d: Delivery) -> EventDelivery {
    let mut record = d.record;
    let tries = match d.retry {
        Retry::Gateway => 2,
        Retry::ThreeTimes => 4,
    };
    for attempt in 1..=tries {
        if attempt > 1 && matches!(d.retry, Retry::ThreeTimes) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut req = http.post(&d.url).body(d.body.clone());
        for (k, v) in &d.headers {
            req = req.header(k, v);
        }
        let status = req.send().await.ok().map(|r| r.status().as_u16());
        record.status = status;
        record.attempts = attempt;
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        let again = match d.retry {
            Retry::Gateway => matches!(status, Some(502..=504)),
            Retry::ThreeTimes => !ok,
        };
        if ok || !again {
            break;
        }
    }
    record.done_ms = ms(SystemTime::now());
    record
}

// ------------------------------------------------------------------------------------------------ Dataverse

struct Endpoint {
    url: String,
    authtype: i64,
    authvalue: String,
}

struct Step {
    id: String,
    name: String,
    message: String,
    entity: String,
    filtering: Option<BTreeSet<String>>,
    stage: i64,
    mode: i64,
    endpoint: Arc<Endpoint>,
}

fn text<'a>(r: &'a Row, k: &str) -> &'a str {
    r.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The enabled steps whose handler is a webhook.
fn registered_steps(dv: &DvStore) -> Vec<Step> {
    let Some(steps) = dv.table("sdkmessageprocessingsteps") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in steps.rows().values() {
        if s.get("statecode").and_then(Value::as_i64) != Some(0) {
            continue;
        }
        let Some(ep) = dv.get("serviceendpoints", text(s, "_eventhandler_value")) else {
            continue;
        };
        if ep.get("contract").and_then(Value::as_i64) != Some(crate::registration::WEBHOOK_CONTRACT) {
            continue;
        }
        let Some(msg) = dv.get("sdkmessages", text(s, "_sdkmessageid_value")) else {
            continue;
        };
        let entity = dv
            .get("sdkmessagefilters", text(s, "_sdkmessagefilterid_value"))
            .map(|f| text(f, "primaryobjecttypecode").to_string())
            .unwrap_or_default();
        let filtering: BTreeSet<String> = text(s, "filteringattributes")
            .split(',')
            .map(|a| a.trim().to_ascii_lowercase())
            .filter(|a| !a.is_empty())
            .collect();
        out.push(Step {
            id: text(s, "sdkmessageprocessingstepid").to_string(),
            name: text(s, "name").to_string(),
            message: text(msg, "name").to_string(),
            entity,
            filtering: (!filtering.is_empty()).then_some(filtering),
            stage: s.get("stage").and_then(Value::as_i64).unwrap_or(40),
            mode: s.get("mode").and_then(Value::as_i64).unwrap_or(1),
            endpoint: Arc::new(Endpoint {
                url: text(ep, "url").to_string(),
                authtype: ep.get("authtype").and_then(Value::as_i64).unwrap_or(0),
                authvalue: text(ep, "authvalue").to_string(),
            }),
        });
    }
    out
}

/// Sends the events of the Dataverse changes made since the last call (and records them in the write journal).
/// Called after every Web API request and every change through the Rust API.
pub(crate) fn flush_dataverse(state: &State) {
    let (changes, steps, root_bu, caller) = {
        let mut dv = lock(&state.dv);
        let journal = lock(&state.events.journal).is_some();
        let steps = registered_steps(&dv);
        dv.capture = journal || !steps.is_empty();
        (
            std::mem::take(&mut dv.outbox),
            steps,
            dv.root_bu.clone(),
            dv.caller.clone(),
        )
    };
    if changes.is_empty() {
        return;
    }
    if let Some(j) = lock(&state.events.journal).as_mut() {
        j.extend(changes.iter().map(|c| WriteRecord {
            at_ms: ms(c.at),
            service: Service::Sales,
            entity: c.set.clone(),
            key: c.id.clone(),
            row: c.after.clone().map(Value::Object),
        }));
    }
    if steps.is_empty() {
        return;
    }
    for c in coalesce(changes) {
        let Some(t) = dv_schema::table(&c.set) else { continue };
        let message = match (&c.before, &c.after) {
            (None, Some(_)) => "Create",
            (Some(_), Some(_)) => "Update",
            (Some(_), None) => "Delete",
            (None, None) => continue,
        };
        let changed = changed_columns(&c);
        for s in steps.iter().filter(|s| s.message == message && s.entity == t.logical) {
            if message == "Update" && !fires(s, t, &changed) {
                continue;
            }
            let ctx = Ctx {
                state,
                root_bu: &root_bu,
                user: &caller,
            };
            state.events.send(webhook(&ctx, s, t, message, &c, &changed));
        }
    }
}

/// One change per row and request: the first `before`, the last `after`.
fn coalesce(changes: Vec<DvChange>) -> Vec<DvChange> {
    let mut out: Vec<DvChange> = Vec::new();
    for c in changes {
        match out.iter_mut().find(|o| o.set == c.set && o.id == c.id) {
            Some(o) => {
                o.after = c.after;
            }
            None => out.push(c),
        }
    }
    out
}

/// Columns whose value differs between before and after (bookkeeping columns aside).
fn changed_columns(c: &DvChange) -> Vec<String> {
    let empty = Row::new();
    let (b, a) = (c.before.as_ref().unwrap_or(&empty), c.after.as_ref().unwrap_or(&empty));
    let mut cols: BTreeSet<&String> = b.keys().collect();
    cols.extend(a.keys());
    cols.into_iter()
        .filter(|k| !k.starts_with(HIDDEN) && !["modifiedon", "createdon", "versionnumber"].contains(&k.as_str()))
        .filter(|k| b.get(*k).unwrap_or(&Value::Null) != a.get(*k).unwrap_or(&Value::Null))
        .cloned()
        .collect()
}

/// `_parentcustomerid_value` → `parentcustomerid`.
fn attribute(col: &str) -> &str {
    col.strip_prefix('_')
        .and_then(|c| c.strip_suffix("_value"))
        .unwrap_or(col)
}

fn fires(s: &Step, _t: &Table, changed: &[String]) -> bool {
    match &s.filtering {
        None => true,
        Some(f) => changed.iter().any(|c| f.contains(attribute(c))),
    }
}

struct Ctx<'a> {
    state: &'a State,
    root_bu: &'a str,
    /// The application user the API calls run as: the user of every event.
    user: &'a str,
}

fn date(ms: f64) -> String {
    format!("/Date({})/", ms as i64)
}

fn entity_reference(id: &str, logical: &str) -> Value {
    json!({"__type": format!("EntityReference:{XRM}"), "Id": id, "KeyAttributes": [], "LogicalName": logical,
           "Name": null, "RowVersion": null})
}

/// A column value as the SDK serializes it in an execution context.
fn sdk_value(t: &Table, row: &Row, col: &str) -> Value {
    let v = row.get(col).cloned().unwrap_or(Value::Null);
    if v.is_null() {
        return v;
    }
    if let Some(l) = t.lookup_by_value_col(col) {
        let target = row
            .get(&format!("{HIDDEN}{}", l.name))
            .and_then(Value::as_str)
            .or_else(|| l.targets.first().copied())
            .and_then(dv_schema::table)
            .map_or("", |tt| tt.logical);
        return entity_reference(v.as_str().unwrap_or(""), target);
    }
    match t.col(col) {
        Some(ColType::Money) => json!({"__type": format!("Money:{XRM}"), "Value": v}),
        Some(ColType::Choice) => json!({"__type": format!("OptionSetValue:{XRM}"), "Value": v}),
        Some(ColType::DateTime | ColType::DateOnly) => {
            v.as_str().and_then(crate::http::parse_datetime).map_or(v.clone(), |d| {
                Value::String(date((d.unix_timestamp_nanos() / 1_000_000) as f64))
            })
        }
        _ => v,
    }
}

fn target_entity(t: &Table, id: &str, row: &Row, cols: &[String]) -> Value {
    let attrs: Vec<Value> = cols
        .iter()
        .filter(|c| !t.write_only.contains(&c.as_str()))
        .map(|c| json!({"key": attribute(c), "value": sdk_value(t, row, c)}))
        .collect();
    json!({"__type": format!("Entity:{XRM}"), "Attributes": attrs, "EntityState": null, "FormattedValues": [],
           "Id": id, "KeyAttributes": [], "LogicalName": t.logical, "RelatedEntities": [],
           "RowVersion": row.get("versionnumber").map(|v| v.to_string())})
}

fn webhook(ctx: &Ctx, s: &Step, t: &Table, message: &str, c: &DvChange, changed: &[String]) -> Delivery {
    let hub = &ctx.state.events;
    let changed_ms = ms(c.at);
    let target = match (message, c.after.as_ref()) {
        ("Delete", _) | (_, None) => entity_reference(&c.id, t.logical),
        ("Create", Some(row)) => {
            let cols: Vec<String> = row
                .keys()
                .filter(|k| !k.starts_with(HIDDEN) && !row[*k].is_null())
                .cloned()
                .collect();
            target_entity(t, &c.id, row, &cols)
        }
        (_, Some(row)) => {
            let mut cols = changed.to_vec();
            cols.extend(["modifiedon".to_string(), t.pk.clone()]);
            target_entity(t, &c.id, row, &cols)
        }
    };
    let outputs = if message == "Create" {
        json!([{"key": "id", "value": c.id}])
    } else {
        json!([])
    };
    let mut body = json!({
        "BusinessUnitId": ctx.root_bu, "CorrelationId": uuid::Uuid::new_v4().to_string(), "Depth": 1,
        "InitiatingUserId": ctx.user,
        "InputParameters": [{"key": "Target", "value": target}],
        "IsExecutingOffline": false, "IsInTransaction": false, "IsOfflinePlayback": false, "IsolationMode": 1,
        "MessageName": message, "Mode": s.mode, "OperationCreatedOn": date(changed_ms),
        "OperationId": uuid::Uuid::new_v4().to_string(), "OrganizationId": hub.organization_id,
        "OrganizationName": "contoso", "OutputParameters": outputs,
        "OwningExtension": {"Id": s.id, "KeyAttributes": [], "LogicalName": "sdkmessageprocessingstep",
                            "Name": s.name, "RowVersion": null},
        "ParentContext": null, "PostEntityImages": [], "PreEntityImages": [],
        "PrimaryEntityId": c.id, "PrimaryEntityName": t.logical, "RequestId": uuid::Uuid::new_v4().to_string(),
        "SecondaryEntityName": "none", "SharedVariables": [], "Stage": s.stage, "UserId": ctx.user,
    });
    let host = ctx
        .state
        .sales_url
        .split("://")
        .nth(1)
        .unwrap_or(&ctx.state.sales_url)
        .to_string();
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("x-request-id".into(), uuid::Uuid::new_v4().to_string()),
        ("x-ms-dynamics-organization".into(), host),
        ("x-ms-dynamics-entity-name".into(), t.logical.to_string()),
        ("x-ms-dynamics-request-name".into(), message.to_string()),
        ("x-ms-correlation-request-id".into(), uuid::Uuid::new_v4().to_string()),
    ];
    let mut bytes = body.to_string().into_bytes();
    if bytes.len() > MAX_PAYLOAD {
        for k in [
            "ParentContext",
            "InputParameters",
            "PreEntityImages",
            "PostEntityImages",
        ] {
            if let Some(m) = body.as_object_mut() {
                m.remove(k);
            }
        }
        bytes = body.to_string().into_bytes();
        headers.push(("x-ms-dynamics-msg-size-exceeded".into(), "true".into()));
    }
    let (url, auth_headers) = authenticate(&s.endpoint);
    headers.extend(auth_headers);
    Delivery {
        record: EventDelivery {
            kind: EventKind::Webhook,
            name: message.to_string(),
            entity: t.logical.to_string(),
            key: c.id.clone(),
            url: s.endpoint.url.split('?').next().unwrap_or("").to_string(),
            status: None,
            attempts: 0,
            changed_ms,
            done_ms: 0.0,
        },
        url,
        headers,
        body: bytes,
        retry: Retry::Gateway,
    }
}

/// The URL and headers a webhook's registered authentication adds.
fn authenticate(ep: &Endpoint) -> (String, Vec<(String, String)>) {
    let enc = |s: &str| crate::http::encode_query_value(s);
    let join = |url: &str, q: &str| {
        if url.contains('?') {
            format!("{url}&{q}")
        } else {
            format!("{url}?{q}")
        }
    };
    let pairs = crate::registration::settings(&ep.authvalue).unwrap_or_default();
    match ep.authtype {
        4 => (join(&ep.url, &format!("code={}", enc(&ep.authvalue))), Vec::new()),
        5 => (ep.url.clone(), pairs),
        6 => {
            let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
            (join(&ep.url, &q.join("&")), Vec::new())
        }
        _ => (ep.url.clone(), Vec::new()),
    }
}

// ------------------------------------------------------------------------------------------------ F&O

/// Sends business event `id` for `company` with the contract's `fields`, if it is activated there.
pub(crate) fn business_event(state: &State, id: &str, company: &str, key: &str, fields: Map<String, Value>) {
    let url = {
        let f = lock(&state.events.fno);
        let active = f
            .active
            .iter()
            .any(|(e, le)| e == id && le.as_deref().is_none_or(|le| le.eq_ignore_ascii_case(company)));
        match (&f.url, active) {
            (Some(u), true) => u.clone(),
            _ => return,
        }
    };
    let hub = &state.events;
    let now = SystemTime::now();
    let at = ms(now);
    let control = hub.control.fetch_add(1 + (at as u64 % 3), Ordering::SeqCst);
    let mut body = json!({
        "BusinessEventId": id,
        "BusinessEventLegalEntity": company,
        "ContextRecordSubject": "",
        "ControlNumber": control,
        "EventId": uuid::Uuid::new_v4().to_string().to_uppercase(),
        "EventTime": date(at),
        "EventTimeIso8601": time::OffsetDateTime::from(now)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "InitiatingUserAADObjectId": format!("{{{}}}", hub.user_id.to_uppercase()),
        "MajorVersion": 0,
        "MinorVersion": 0,
        "ParentContextRecordSubjects": [],
    });
    if let Some(m) = body.as_object_mut() {
        m.extend(fields);
    }
    hub.send(Delivery {
        record: EventDelivery {
            kind: EventKind::BusinessEvent,
            name: id.to_string(),
            entity: company.to_string(),
            key: key.to_string(),
            url: url.split('?').next().unwrap_or("").to_string(),
            status: None,
            attempts: 0,
            changed_ms: at,
            done_ms: 0.0,
        },
        url,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
        retry: Retry::ThreeTimes,
    });
}

/// An X++ date (`/Date(ms)/`, what business event payloads carry) from an OData date-time.
pub(crate) fn xpp_date(iso: &str) -> Value {
    crate::http::parse_datetime(iso).map_or(Value::Null, |d| {
        Value::String(date((d.unix_timestamp_nanos() / 1_000_000) as f64))
    })
}

/// F&O writes from the store's journal, as write records.
pub(crate) fn fno_writes(state: &State) -> Vec<WriteRecord> {
    let f = lock(&state.fno);
    f.writes
        .iter()
        .flatten()
        .map(|w| WriteRecord {
            at_ms: ms(w.at),
            service: Service::Fno,
            entity: w.storage.clone(),
            key: w
                .key
                .iter()
                .map(|k| match k {
                    crate::store::KeyPart::Int(i) => i.to_string(),
                    crate::store::KeyPart::Str(s) => s.clone(),
                })
                .collect::<Vec<_>>()
                .join("|"),
            row: w.row.clone().map(Value::Object),
        })
        .collect()
}
