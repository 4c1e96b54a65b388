//! F&O OData: reads by natural key and key-ordered sweeps (always company-explicit), creates, updates, `$batch`.

use crate::batch::WriteMethod;
use std::sync::Arc;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, value::RawValue};

use crate::{
    Record,
    api::Api,
    auth::TokenCache,
    batch::{self, BatchOp, BatchResult, SetResult},
    dataverse::send_batch,
    error::DynamicsError,
    odata,
    raw::RawRows,
};

/// Keys per `or` filter: F&O has no `in`, so each key costs ~40 characters of URL.
const KEYS_PER_READ: usize = 100;

#[derive(Clone)]
pub struct Fno {
    api: Api,
}

impl Fno {
    pub fn new(http: reqwest::Client, tokens: Arc<TokenCache>, base_url: &str) -> Self {
        Fno {
            api: Api::new("fno", http, tokens, base_url),
        }
    }

    pub fn from_api(api: Api) -> Self {
        Fno { api }
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    pub fn set_url(&self, entity_set: &str) -> String {
        format!("{}/data/{entity_set}", self.api.base_url)
    }

    /// Key URL with every key part; `cross-company=true` because the key's company is rarely the API user's default.
    pub fn key_url(&self, entity_set: &str, key: &[(&str, &str)]) -> String {
        format!(
            "{}/data/{}?cross-company=true",
            self.api.base_url,
            odata::key_predicate(entity_set, key)
        )
    }

    /// Rows of `company` whose `key_field` is one of `keys`.
    pub async fn find_by_keys(
        &self,
        entity_set: &str,
        company: &str,
        key_field: &str,
        keys: &[String],
        select: &[String],
    ) -> Result<Vec<Record>, DynamicsError> {
        let rows = self
            .find_by_keys_as(entity_set, company, (key_field, keys), select)
            .await?;
        Ok(objects(rows))
    }

    /// [`Fno::find_by_keys`] with the rows kept as JSON text.
    pub async fn find_rows_by_keys(
        &self,
        entity_set: &str,
        company: &str,
        key_field: &str,
        keys: &[String],
        select: &[String],
    ) -> Result<RawRows, DynamicsError> {
        let rows: Vec<Box<RawValue>> = self
            .find_by_keys_as(entity_set, company, (key_field, keys), select)
            .await?;
        Ok(RawRows::from(rows))
    }

    async fn find_by_keys_as<T: DeserializeOwned>(
        &self,
        entity_set: &str,
        company: &str,
        (key_field, keys): (&str, &[String]),
        select: &[String],
    ) -> Result<Vec<T>, DynamicsError> {
        let mut out = Vec::new();
        for chunk in keys.chunks(KEYS_PER_READ) {
            let ors: Vec<String> = chunk
                .iter()
                .map(|k| format!("{key_field} eq {}", odata::string_literal(k)))
                .collect();
            let filter = format!(
                "dataAreaId eq {} and ({})",
                odata::string_literal(company),
                ors.join(" or ")
            );
            out.extend(self.list_as(entity_set, select, Some(&filter), None).await?);
        }
        Ok(out)
    }

    /// All rows matching `filter` across companies (the filter should name `dataAreaId`), following next links.
    pub async fn list(
        &self,
        entity_set: &str,
        select: &[String],
        filter: Option<&str>,
        order_by: Option<&str>,
    ) -> Result<Vec<Record>, DynamicsError> {
        Ok(objects(self.list_as(entity_set, select, filter, order_by).await?))
    }

    /// [`Fno::list`] with the rows kept as JSON text, for reads too large to hold parsed.
    pub async fn list_rows(
        &self,
        entity_set: &str,
        select: &[String],
        filter: Option<&str>,
        order_by: Option<&str>,
    ) -> Result<RawRows, DynamicsError> {
        let rows: Vec<Box<RawValue>> = self.list_as(entity_set, select, filter, order_by).await?;
        Ok(RawRows::from(rows))
    }

    /// The rows as `T` (a parsed value, or the JSON text), following next links.
    async fn list_as<T: DeserializeOwned>(
        &self,
        entity_set: &str,
        select: &[String],
        filter: Option<&str>,
        order_by: Option<&str>,
    ) -> Result<Vec<T>, DynamicsError> {
        let mut opts = vec![("cross-company", "true".to_string())];
        if !select.is_empty() {
            opts.push(("$select", select.join(",")));
        }
        if let Some(f) = filter {
            opts.push(("$filter", f.to_string()));
        }
        if let Some(o) = order_by {
            opts.push(("$orderby", o.to_string()));
        }
        let mut url = format!("{}{}", self.set_url(entity_set), odata::query(&opts));
        let mut out = Vec::new();
        loop {
            let (rows, next) = self.api.get_page(&url, entity_set).await?;
            out.extend(rows);
            match next {
                Some(next) => url = next,
                None => return Ok(out),
            }
        }
    }

    /// One row by its full key, or None.
    pub async fn get(&self, entity_set: &str, key: &[(&str, &str)]) -> Result<Option<Record>, DynamicsError> {
        match self.api.get_json(&self.key_url(entity_set, key), entity_set, &[]).await {
            Ok(v) => Ok(v.as_object().cloned()),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The create operation for a `$batch` (or a direct POST).
    /// The create operation. p2c reads only its status, so it asks for `return=minimal` (OData v4): the answer
    /// need not echo the whole entity (a CustomersV2 row has 257 properties, a `$batch` 500 of them). A service
    /// that ignores the preference answers 201 with the body, which is read the same way.
    pub fn create_op(&self, entity_set: &str, body: Value) -> BatchOp {
        BatchOp {
            method: WriteMethod::Post,
            url: self.set_url(entity_set),
            body: Some(body),
            headers: vec![("Prefer", "return=minimal".into())],
        }
    }

    /// The update operation: F&O has no upsert, PATCH on a missing key is a 404.
    pub fn update_op(&self, entity_set: &str, key: &[(&str, &str)], body: Value) -> BatchOp {
        BatchOp {
            method: WriteMethod::Patch,
            url: self.key_url(entity_set, key),
            body: Some(body),
            headers: vec![],
        }
    }

    /// Key URL for typed key values (see [`odata::key_predicate_json`]): needed where a key part is a number.
    pub fn key_url_json(&self, entity_set: &str, key: &[(&str, &Value)]) -> String {
        format!(
            "{}/data/{}?cross-company=true",
            self.api.base_url,
            odata::key_predicate_json(entity_set, key)
        )
    }

    /// The update operation on a key with typed values.
    pub fn update_op_json(&self, entity_set: &str, key: &[(&str, &Value)], body: Value) -> BatchOp {
        BatchOp {
            method: WriteMethod::Patch,
            url: self.key_url_json(entity_set, key),
            body: Some(body),
            headers: vec![],
        }
    }

    /// The delete operation on a key with typed values (404 when the row is already gone).
    pub fn delete_op_json(&self, entity_set: &str, key: &[(&str, &Value)]) -> BatchOp {
        BatchOp {
            method: WriteMethod::Delete,
            url: self.key_url_json(entity_set, key),
            body: None,
            headers: vec![],
        }
    }

    pub async fn create(&self, entity_set: &str, body: &Value) -> Result<Record, DynamicsError> {
        let url = self.set_url(entity_set);
        let resp = self.api.send(Method::POST, &url, entity_set, |r| r.json(body)).await?;
        let v: Value = self.api.read_json(resp, entity_set).await?;
        Ok(v.as_object().cloned().unwrap_or_default())
    }

    pub async fn update(&self, entity_set: &str, key: &[(&str, &str)], body: &Value) -> Result<(), DynamicsError> {
        let url = self.key_url(entity_set, key);
        self.api.send(Method::PATCH, &url, entity_set, |r| r.json(body)).await?;
        Ok(())
    }

    /// One `$batch` with each operation in its own change set; F&O answers 200 with a result per part.
    pub async fn batch(&self, ops: &[BatchOp]) -> Result<Vec<BatchResult>, DynamicsError> {
        send_batch(&self.api, &format!("{}/data/$batch", self.api.base_url), ops, true).await
    }

    /// One `$batch` of change sets: the operations of a set are written all or none (a document header with its
    /// lines), in order. Sent with `Prefer: odata.continue-on-error` so one failed set does not stop the rest.
    pub async fn batch_sets(&self, sets: &[Vec<BatchOp>]) -> Result<Vec<SetResult>, DynamicsError> {
        let sets: Vec<&Vec<BatchOp>> = sets.iter().filter(|s| !s.is_empty()).collect();
        if sets.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(dry) = &self.api.dry_run {
            // A dry run records the writes and answers them as done.
            let mut out = Vec::new();
            for set in &sets {
                for op in set.iter() {
                    dry.record(crate::api::PlannedWrite {
                        service: self.api.service,
                        method: op.method.to_string(),
                        url: op.url.clone(),
                        body: op.body.clone(),
                    });
                }
                let done = set
                    .iter()
                    .map(|op| BatchResult {
                        status: if op.method == WriteMethod::Post { 201 } else { 204 },
                        ..Default::default()
                    })
                    .collect();
                out.push(SetResult::Done(done));
            }
            return Ok(out);
        }
        let boundary = format!("batch_{}", uuid::Uuid::new_v4());
        let body = batch::build_sets(&boundary, &sets);
        let url = format!("{}/data/$batch", self.api.base_url);
        let (resp_ct, text) = crate::dataverse::post_batch(&self.api, &url, &boundary, body, true).await?;
        let sizes: Vec<usize> = sets.iter().map(|s| s.len()).collect();
        batch::parse_sets(&resp_ct, &text, &sizes).map_err(|message| DynamicsError::Decode {
            service: self.api.service,
            what: "$batch".into(),
            message,
        })
    }
}

/// The rows of an answer that are JSON objects (anything else in `value` is not a record).
fn objects(rows: Vec<Value>) -> Vec<Record> {
    rows.into_iter()
        .filter_map(|r| match r {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .collect()
}
