//! Pieces shared by the Sales → F&O flows that write records F&O may already hold (contacts, quotes, orders):
//! reading a Sales table's changes page by page, resolving customers through the links of the flows that synced
//! them, and writing by comparing with F&O's current rows.
//!
//! The write rule: read the target rows first (batched, by natural key), then create what F&O lacks, PATCH only
//! the fields whose values differ, and write nothing when F&O already holds every mapped value. So a redo after a
//! crash never duplicates, and a value that came from F&O in the first place (the other direction's write,
//! echoed back by Sales change tracking) is recognised and not written back.

use std::collections::HashMap;

use futures::StreamExt;
use p2c_dynamics::{BatchOp, ChangePage, DynamicsError, Record, SetResult};
use p2c_mapping::Template;
use p2c_mapping::money::decimal_from_json;
use p2c_state::Lease;
use serde_json::Value;

use crate::{
    deps::Deps,
    error::SyncError,
    flows::FlowName,
    report::RunReport,
    sales_to_fno::{delta_link_refused, is_already_exists, str_of},
};

/// `source_hash` of a link whose target record p2c deleted (a document line removed in Sales).
pub(crate) const TOMBSTONE: &str = "deleted";

// ------------------------------------------------------------------------------------------ change tracking

/// Pages of one Sales table's change tracking, from a saved delta link or from a full read. A refused or expired
/// delta link falls back to a full read once (links keep it free of duplicates).
pub(crate) struct DeltaReader {
    set: String,
    initial: String,
    url: Option<String>,
    first: bool,
    delta: Option<String>,
}

impl DeltaReader {
    /// `saved`: the delta link of the last run; `None` or empty starts with a full read.
    pub fn new(deps: &Deps, set: &str, select: &[String], saved: Option<&str>) -> DeltaReader {
        let initial = deps.sales.initial_changes_url(set, select);
        let url = saved
            .filter(|s| !s.is_empty())
            .map_or_else(|| initial.clone(), str::to_string);
        DeltaReader {
            set: set.to_string(),
            initial,
            url: Some(url),
            first: true,
            delta: None,
        }
    }

    /// The next page, or `None` after the last one (then [`DeltaReader::delta_link`] is set).
    pub async fn next(&mut self, deps: &Deps, report: &mut RunReport) -> Result<Option<ChangePage>, SyncError> {
        let Some(url) = self.url.clone() else {
            return Ok(None);
        };
        let page = match deps.sales.change_page(&self.set, &url).await {
            Ok(p) => p,
            Err(e) if self.first && url != self.initial && delta_link_refused(&e) => {
                tracing::warn!(set = %self.set, error = %e, "delta link refused; falling back to a full read");
                report.full_resync = true;
                deps.sales.change_page(&self.set, &self.initial).await?
            }
            Err(e) => return Err(e.into()),
        };
        self.first = false;
        match (&page.next_link, &page.delta_link) {
            (Some(next), _) => self.url = Some(next.clone()),
            (None, Some(delta)) => {
                self.delta = Some(delta.clone());
                self.url = None;
            }
            (None, None) => {
                return Err(SyncError::Dynamics(DynamicsError::Decode {
                    service: "sales",
                    what: format!("change tracking of {}", self.set),
                    message: "the last page carries neither a next link nor a delta link".into(),
                }));
            }
        }
        Ok(Some(page))
    }

    pub fn delta_link(&self) -> Option<&str> {
        self.delta.as_deref()
    }
}

/// Keeps the run's lease between pages; a lost lease stops the run before the watermark moves.
pub(crate) async fn renew(deps: &Deps, lease: &Lease, flow: FlowName, company: &str) -> Result<(), SyncError> {
    if deps.state.renew_lease(lease, deps.cfg.lease_ttl).await? {
        Ok(())
    } else {
        Err(SyncError::LeaseLost {
            flow: flow.as_str().into(),
            company: company.into(),
        })
    }
}

// ------------------------------------------------------------------------------------------ customers

/// The F&O customer account of Sales customers (accounts, and contacts when `contacts` is set), by lower-case
/// Sales id, from the links accounts-to-fno and contacts-to-fno commit (`target_key` = the customer account).
/// A customer with no link in this company is absent: it is not in F&O yet.
pub(crate) async fn customer_accounts(
    deps: &Deps,
    company: &str,
    ids: &[String],
    contacts: bool,
) -> Result<HashMap<String, String>, SyncError> {
    let ids: Vec<String> = ids.iter().map(|i| i.to_ascii_lowercase()).collect();
    let mut out: HashMap<String, String> = deps
        .state
        .get_links("account", company, "sales", &ids)
        .await?
        .into_iter()
        .map(|(k, l)| (k.to_ascii_lowercase(), l.target_key))
        .collect();
    let rest: Vec<String> = ids.iter().filter(|i| !out.contains_key(*i)).cloned().collect();
    if contacts && !rest.is_empty() {
        out.extend(
            deps.state
                .get_links("contact", company, "sales", &rest)
                .await?
                .into_iter()
                .map(|(k, l)| (k.to_ascii_lowercase(), l.target_key)),
        );
    }
    Ok(out)
}

/// Names Sales customers for a failure reason: `account ACC-1 "Contoso"`, `contact CON-1 "Jane Doe"`, or the
/// id when Sales does not know it. Best effort: a read error leaves the id.
pub(crate) async fn describe_customers(deps: &Deps, ids: &[String]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let reads = [
        ("accounts", "accountid", "accountnumber", "name", "account"),
        ("contacts", "contactid", "msdynce_contactnumber", "fullname", "contact"),
    ];
    for (set, pk, number, name, noun) in reads {
        let select = vec![pk.to_string(), number.to_string(), name.to_string()];
        let Ok(rows) = deps.sales.get_by_ids(set, pk, ids, &select).await else {
            continue;
        };
        for r in rows {
            let Some(id) = str_of(&r, pk) else { continue };
            let what = match (str_of(&r, number), str_of(&r, name)) {
                (Some(n), Some(m)) => format!("{noun} {n} \"{m}\""),
                (Some(n), None) => format!("{noun} {n}"),
                (None, Some(m)) => format!("{noun} \"{m}\" (id {id}, no {number})"),
                (None, None) => format!("{noun} {id}"),
            };
            out.entry(id.to_ascii_lowercase()).or_insert(what);
        }
    }
    out
}

// ------------------------------------------------------------------------------------------ F&O keys and plans

/// An F&O key: every key field with its typed value, `dataAreaId` first.
pub(crate) type Key = Vec<(String, Value)>;

/// The record's F&O key: `dataAreaId` = the company, every other key field of the template from the mapped body.
pub(crate) fn target_key(t: &Template, company: &str, body: &Record) -> Result<Key, String> {
    let mut key = vec![("dataAreaId".to_string(), Value::String(company.to_string()))];
    for k in t.target_key.iter().filter(|k| *k != "dataAreaId") {
        match body.get(k) {
            Some(v) if !v.is_null() => key.push((k.clone(), v.clone())),
            _ => return Err(format!("the mapped {} has no key field {k}", t.target_entity)),
        }
    }
    Ok(key)
}

/// The key without the company, as links keep it: `QUO-1/2` for (QUO-1, 2).
pub(crate) fn key_text(key: &Key) -> String {
    key.iter()
        .filter(|(k, _)| k != "dataAreaId")
        .map(|(_, v)| text_of(v))
        .collect::<Vec<_>>()
        .join("/")
}

pub(crate) fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn key_refs(key: &Key) -> Vec<(&str, &Value)> {
    key.iter().map(|(k, v)| (k.as_str(), v)).collect()
}

/// Whether an F&O row has this key (F&O compares keys without regard to case).
pub(crate) fn row_has_key(row: &Record, key: &Key) -> bool {
    key.iter().all(|(k, v)| match (row.get(k), v) {
        (Some(Value::String(a)), Value::String(b)) => a.eq_ignore_ascii_case(b),
        (Some(a), b) => same_value(a, b),
        (None, _) => false,
    })
}

/// Equal as F&O values: numbers by exact decimal value (`250` = `250.0`), everything else as JSON.
pub(crate) fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => match (decimal_from_json(a), decimal_from_json(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
        _ => a == b,
    }
}

/// What to send for one record.
#[derive(Clone, Debug)]
pub(crate) enum Plan {
    /// F&O lacks the record: POST the whole body.
    Create(Record),
    /// F&O holds it with other values: PATCH only these fields.
    Update(Record),
    /// F&O already holds every mapped value (nothing changed, or the change came from F&O: an echo).
    Unchanged,
}

/// Compares the mapped body with F&O's current row (`None`: no such row).
pub(crate) fn plan(body: &Record, key: &Key, current: Option<&Record>) -> Plan {
    let Some(cur) = current else {
        return Plan::Create(body.clone());
    };
    let diff: Record = body
        .iter()
        .filter(|(f, _)| !key.iter().any(|(k, _)| k == *f))
        .filter(|(f, v)| !cur.get(f.as_str()).is_some_and(|c| same_value(c, v)))
        .map(|(f, v)| (f.clone(), v.clone()))
        .collect();
    if diff.is_empty() {
        Plan::Unchanged
    } else {
        Plan::Update(diff)
    }
}

/// The `$batch` operation of a plan (`None` for [`Plan::Unchanged`]).
pub(crate) fn plan_op(deps: &Deps, entity_set: &str, key: &Key, plan: &Plan) -> Option<BatchOp> {
    match plan {
        Plan::Create(body) => Some(deps.fno.create_op(entity_set, Value::Object(body.clone()))),
        Plan::Update(diff) => Some(
            deps.fno
                .update_op_json(entity_set, &key_refs(key), Value::Object(diff.clone())),
        ),
        Plan::Unchanged => None,
    }
}

pub(crate) fn delete_op(deps: &Deps, entity_set: &str, key: &Key) -> BatchOp {
    deps.fno.delete_op_json(entity_set, &key_refs(key))
}

/// The F&O fields a template writes, plus `extra`: what to `$select` when reading the current rows.
pub(crate) fn target_fields(t: &Template, extra: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = t.target_key.clone();
    let written = t.fields.iter().filter(|f| f.enabled).map(|f| f.target.as_str());
    for f in written.chain(extra.iter().copied()) {
        if !out.iter().any(|o| o == f) {
            out.push(f.to_string());
        }
    }
    out
}

/// Current F&O rows of `company` whose `field` is one of `values` (de-duplicated, batched `or` filters).
pub(crate) async fn read_current(
    deps: &Deps,
    entity_set: &str,
    company: &str,
    field: &str,
    values: &[String],
    select: &[String],
) -> Result<Vec<Record>, SyncError> {
    let mut values: Vec<String> = values.to_vec();
    values.sort();
    values.dedup();
    if values.is_empty() {
        return Ok(Vec::new());
    }
    Ok(deps
        .fno
        .find_by_keys(entity_set, company, field, &values, select)
        .await?)
}

// ------------------------------------------------------------------------------------------ writes

/// Why a change set was not written.
#[derive(Clone, Debug)]
pub(crate) struct WriteError {
    pub reason: String,
    pub transient: bool,
    /// Another writer got there between our read and our write ("already exists" on a create, 404 on an
    /// update): planning again from a fresh read will do.
    pub race: bool,
    pub status: Option<u16>,
}

/// Sends change sets in `$batch` requests of at most `batch_size` operations (a set is never split). One result
/// per set, in order; an empty set is a success.
pub(crate) async fn write_sets(deps: &Deps, sets: &[Vec<BatchOp>]) -> Vec<Result<(), WriteError>> {
    let mut results: Vec<Result<(), WriteError>> = vec![Ok(()); sets.len()];
    let max = deps.cfg.batch_size.max(1);
    let mut chunk: Vec<usize> = Vec::new();
    let mut ops = 0usize;
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    for (i, s) in sets.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
        if !chunk.is_empty() && ops + s.len() > max {
            chunks.push(std::mem::take(&mut chunk));
            ops = 0;
        }
        chunk.push(i);
        ops += s.len();
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    // Several batches in flight at once (change sets are independent); the client keeps the service's limits.
    let mut done = futures::stream::iter(chunks)
        .map(|idx| async move {
            let batch: Vec<Vec<BatchOp>> = idx.iter().map(|&i| sets[i].clone()).collect();
            let answer = deps.fno.batch_sets(&batch).await;
            (idx, answer)
        })
        .buffer_unordered(deps.cfg.write_concurrency.max(1));
    while let Some((idx, answer)) = done.next().await {
        match answer {
            Ok(answers) => {
                for (n, &i) in idx.iter().enumerate() {
                    results[i] = match answers.get(n) {
                        Some(SetResult::Done(_)) => Ok(()),
                        Some(SetResult::Failed { op, result }) => {
                            let op = &sets[i][op.unwrap_or(0).min(sets[i].len() - 1)];
                            let err = result.error("fno", op);
                            let race = (op.method == "POST" && is_already_exists(&err))
                                || (op.method == "PATCH" && err.status() == Some(404));
                            Err(WriteError {
                                reason: err.to_string(),
                                transient: err.is_transient() || race,
                                race,
                                status: err.status(),
                            })
                        }
                        Some(SetResult::NotRun) | None => Err(WriteError {
                            reason: "F&O answered nothing for this change set, so nothing of it was written".into(),
                            transient: true,
                            race: false,
                            status: None,
                        }),
                    };
                }
            }
            Err(e) => {
                for &i in &idx {
                    results[i] = Err(WriteError {
                        reason: format!("the $batch request failed: {e}"),
                        transient: e.is_transient(),
                        race: false,
                        status: None,
                    });
                }
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn plans_compare_with_what_fno_holds() {
        let key: Key = vec![("dataAreaId".into(), json!("usmf")), ("N".into(), json!("Q1"))];
        let body = rec(json!({"dataAreaId": "usmf", "N": "Q1", "Qty": 3, "Name": "x"}));
        assert!(matches!(plan(&body, &key, None), Plan::Create(b) if b == body));
        let same = rec(json!({"dataAreaId": "USMF", "N": "q1", "Qty": 3.0, "Name": "x", "Other": 1}));
        assert!(matches!(plan(&body, &key, Some(&same)), Plan::Unchanged));
        assert!(row_has_key(&same, &key));
        let other = rec(json!({"dataAreaId": "usmf", "N": "Q1", "Qty": 2, "Name": "x"}));
        match plan(&body, &key, Some(&other)) {
            Plan::Update(d) => assert_eq!(Value::Object(d), json!({"Qty": 3})),
            p => panic!("{p:?}"),
        }
        assert_eq!(
            key_text(&vec![
                ("dataAreaId".into(), json!("usmf")),
                ("A".into(), json!("Q")),
                ("B".into(), json!(2))
            ]),
            "Q/2"
        );
    }
}
