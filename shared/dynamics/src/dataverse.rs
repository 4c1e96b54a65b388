//! Dataverse Web API (Dynamics 365 Sales): change tracking, reads by id, writes.

use crate::batch::WriteMethod;
use std::sync::Arc;

use reqwest::Method;
use serde_json::Value;

use crate::{
    Record,
    api::Api,
    auth::TokenCache,
    batch::{self, BatchOp, BatchResult},
    error::DynamicsError,
    odata,
};

pub const API_PATH: &str = "/api/data/v9.2";
/// The largest page Dataverse serves.
pub const MAX_PAGE: usize = 5000;
/// Ids per `In(...)` read: keeps the URL far below the 32 KB limit (a GUID costs ~40 chars encoded).
const IDS_PER_READ: usize = 200;

#[derive(Clone)]
pub struct Dataverse {
    api: Api,
    page_size: usize,
}

/// One page of change-tracking output.
#[derive(Debug, Default)]
pub struct ChangePage {
    /// New or changed rows (full selected columns).
    pub rows: Vec<Record>,
    /// Ids of deleted rows.
    pub deleted: Vec<String>,
    /// More pages of this read follow.
    pub next_link: Option<String>,
    /// Present on the last page: where the next incremental read starts.
    pub delta_link: Option<String>,
}

impl Dataverse {
    pub fn new(http: reqwest::Client, tokens: Arc<TokenCache>, base_url: &str) -> Self {
        Dataverse {
            api: Api::new("sales", http, tokens, base_url),
            page_size: MAX_PAGE,
        }
    }

    pub fn from_api(api: Api) -> Self {
        Dataverse {
            api,
            page_size: MAX_PAGE,
        }
    }

    pub fn with_page_size(mut self, n: usize) -> Self {
        self.page_size = n.clamp(1, MAX_PAGE);
        self
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    pub fn set_url(&self, entity_set: &str) -> String {
        format!("{}{API_PATH}/{entity_set}", self.api.base_url)
    }

    fn max_page(&self) -> String {
        format!("odata.maxpagesize={}", self.page_size)
    }

    /// URL of a full change-tracking read (the first run, or a resync after the delta link expired).
    pub fn initial_changes_url(&self, entity_set: &str, select: &[String]) -> String {
        format!("{}?$select={}", self.set_url(entity_set), select.join(","))
    }

    /// Reads one page of a change-tracking read. `url` is the initial URL, a next link or a delta link,
    /// followed verbatim (never edited or re-encoded).
    pub async fn change_page(&self, entity_set: &str, url: &str) -> Result<ChangePage, DynamicsError> {
        let prefer = format!("odata.track-changes,{}", self.max_page());
        let mut v = self
            .api
            .get_json(url, entity_set, &[("Prefer", prefer.as_str())])
            .await?;
        let mut page = ChangePage {
            next_link: v["@odata.nextLink"].as_str().map(str::to_string),
            delta_link: v["@odata.deltaLink"].as_str().map(str::to_string),
            ..Default::default()
        };
        for row in rows_of(&mut v, entity_set, self.api.service)? {
            let deleted = row.get("reason").and_then(Value::as_str) == Some("deleted")
                || row
                    .get("@odata.context")
                    .and_then(Value::as_str)
                    .is_some_and(|c| c.ends_with("$deletedEntity"));
            if deleted {
                if let Some(id) = row.get("id").and_then(Value::as_str) {
                    page.deleted.push(id.to_string());
                }
            } else {
                page.rows.push(row);
            }
        }
        Ok(page)
    }

    /// Reads rows by primary key, in chunks (`Microsoft.Dynamics.CRM.In`). Missing ids are simply absent.
    pub async fn get_by_ids(
        &self,
        entity_set: &str,
        id_field: &str,
        ids: &[String],
        select: &[String],
    ) -> Result<Vec<Record>, DynamicsError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_READ) {
            let values: Vec<String> = chunk.iter().map(|id| odata::json_string(id)).collect();
            let filter = format!(
                "Microsoft.Dynamics.CRM.In(PropertyName={},PropertyValues=[{}])",
                odata::string_literal(id_field),
                values.join(",")
            );
            out.extend(self.list(entity_set, select, Some(&filter)).await?);
        }
        Ok(out)
    }

    /// Reads every row matching `filter`, following next links.
    pub async fn list(
        &self,
        entity_set: &str,
        select: &[String],
        filter: Option<&str>,
    ) -> Result<Vec<Record>, DynamicsError> {
        let mut opts = vec![("$select", select.join(","))];
        if let Some(f) = filter {
            opts.push(("$filter", f.to_string()));
        }
        let mut url = format!("{}{}", self.set_url(entity_set), odata::query(&opts));
        let prefer = self.max_page();
        let mut out = Vec::new();
        loop {
            let mut v = self
                .api
                .get_json(&url, entity_set, &[("Prefer", prefer.as_str())])
                .await?;
            out.extend(rows_of(&mut v, entity_set, self.api.service)?);
            match v["@odata.nextLink"].as_str() {
                Some(next) => url = next.to_string(),
                None => return Ok(out),
            }
        }
    }

    /// Number of rows in a table (`/$count`); Dataverse caps it at 5,000, so a capped answer is `None`.
    pub async fn count(&self, entity_set: &str) -> Result<Option<u64>, DynamicsError> {
        let url = format!("{}/$count", self.set_url(entity_set));
        let resp = self
            .api
            .send(Method::GET, &url, entity_set, |r| r.header("Accept", "text/plain"))
            .await?;
        let text = resp.text().await.unwrap_or_default();
        Ok(text.trim().parse::<u64>().ok().filter(|n| *n < MAX_PAGE as u64))
    }

    /// Creates a row; returns its id (from `OData-EntityId`).
    pub async fn create(&self, entity_set: &str, body: &Value) -> Result<String, DynamicsError> {
        let url = self.set_url(entity_set);
        let resp = self.api.send(Method::POST, &url, entity_set, |r| r.json(body)).await?;
        let id = resp
            .headers()
            .get("OData-EntityId")
            .and_then(|h| h.to_str().ok())
            .and_then(id_from_entity_url)
            .ok_or_else(|| DynamicsError::Decode {
                service: "sales",
                what: format!("create {entity_set}"),
                message: "no OData-EntityId header in the answer".into(),
            })?;
        Ok(id)
    }

    /// Updates an existing row (`If-Match: *`: never creates by accident).
    pub async fn update(&self, entity_set: &str, id: &str, body: &Value) -> Result<(), DynamicsError> {
        let url = format!("{}({id})", self.set_url(entity_set));
        self.api
            .send(Method::PATCH, &url, entity_set, |r| {
                r.header("If-Match", "*").json(body)
            })
            .await?;
        Ok(())
    }

    /// Deletes a row by id.
    pub async fn delete(&self, entity_set: &str, id: &str) -> Result<(), DynamicsError> {
        let url = format!("{}({id})", self.set_url(entity_set));
        self.api.send(Method::DELETE, &url, entity_set, |r| r).await?;
        Ok(())
    }

    /// Sends operations as one `$batch`, each in its own change set, continuing past failures.
    pub async fn batch(&self, ops: &[BatchOp]) -> Result<Vec<BatchResult>, DynamicsError> {
        send_batch(&self.api, &format!("{}{API_PATH}/$batch", self.api.base_url), ops, true).await
    }
}

/// Shared by both services: POST the multipart body and split the answer per operation.
pub(crate) async fn send_batch(
    api: &Api,
    url: &str,
    ops: &[BatchOp],
    continue_on_error: bool,
) -> Result<Vec<BatchResult>, DynamicsError> {
    if ops.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(dry) = &api.dry_run {
        return Ok(ops.iter().map(|op| planned_result(api.service, dry, op)).collect());
    }
    let boundary = format!("batch_{}", uuid::Uuid::new_v4());
    let body = batch::build(&boundary, ops);
    let (resp_ct, text) = post_batch(api, url, &boundary, body, continue_on_error).await?;
    batch::parse(&resp_ct, &text, ops.len()).map_err(|message| DynamicsError::Decode {
        service: api.service,
        what: "$batch".into(),
        message,
    })
}

/// POSTs a built multipart `$batch` body; returns the answer's Content-Type and text for the caller to split.
pub(crate) async fn post_batch(
    api: &Api,
    url: &str,
    boundary: &str,
    body: String,
    continue_on_error: bool,
) -> Result<(String, String), DynamicsError> {
    let ct = format!("multipart/mixed; boundary={boundary}");
    let resp = api
        .send(Method::POST, url, "$batch", |mut r| {
            r = r.header("Content-Type", ct.as_str()).body(body.clone());
            if continue_on_error {
                r = r.header("Prefer", "odata.continue-on-error");
            }
            r
        })
        .await?;
    let resp_ct = resp
        .headers()
        .get("Content-Type")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.map_err(|e| DynamicsError::Transport {
        service: api.service,
        method: "POST".into(),
        path: "$batch".into(),
        message: crate::api::redact(&e),
    })?;
    Ok((resp_ct, text))
}

/// A batch operation recorded by a dry run, answered as a success.
fn planned_result(service: &'static str, dry: &crate::api::DryRun, op: &BatchOp) -> BatchResult {
    dry.record(crate::api::PlannedWrite {
        service,
        method: op.method.to_string(),
        url: op.url.clone(),
        body: op.body.clone(),
    });
    let create = op.method == WriteMethod::Post;
    BatchResult {
        status: if create { 201 } else { 204 },
        headers: if create {
            vec![("OData-EntityId".into(), format!("{}({})", op.url, uuid::Uuid::new_v4()))]
        } else {
            vec![]
        },
        body: if create {
            op.body.as_ref().map(|b| b.to_string()).unwrap_or_default()
        } else {
            String::new()
        },
    }
}

/// Moves the rows out of a collection answer (no copy: a page of 5,000 rows is the biggest thing a run holds).
pub(crate) fn rows_of(v: &mut Value, what: &str, service: &'static str) -> Result<Vec<Record>, DynamicsError> {
    match v.get_mut("value").map(Value::take) {
        Some(Value::Array(arr)) => Ok(arr
            .into_iter()
            .filter_map(|r| match r {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect()),
        _ => Err(DynamicsError::Decode {
            service,
            what: what.to_string(),
            message: "the answer has no \"value\" array".into(),
        }),
    }
}

/// `https://org/api/data/v9.2/accounts(00000000-...)` → the GUID.
pub fn id_from_entity_url(url: &str) -> Option<String> {
    let open = url.rfind('(')?;
    let close = url.rfind(')')?;
    let id = url.get(open + 1..close)?;
    odata::is_guid(id).then(|| id.to_string())
}
