//! The F&O sink: keys, plans and `$batch` writes for every Sales → F&O flow.
//!
//! The write rule: read the target rows first (batched, by natural key), then create what F&O lacks, PATCH only
//! the fields whose values differ, and write nothing when F&O already holds every mapped value. So a redo after a
//! crash never duplicates, and a value that came from F&O in the first place (the other direction's write,
//! echoed back by Sales change tracking) is recognised and not written back.
//!
//! Clears (a blank source, mapped to F&O's empty value: `""`, `0`, ...) are compared and PATCHed like any value,
//! and left out of a create: a new F&O row holds its own defaults there.

use futures::StreamExt;
use p2c_dynamics::{BatchOp, DynamicsError, ErrorKind, Record, SetResult, WriteMethod};
use p2c_mapping::money::decimal_from_json;
use p2c_mapping::{Template, without_clears};
use serde_json::Value;

use crate::{deps::Deps, error::SyncError};

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

/// Whether F&O's current value `cur` of a field holds `want`: equal as F&O values, or, for a cleared field, no
/// value at all (null or not returned; F&O shows its empty value there anyway).
pub(crate) fn holds(cur: Option<&Value>, want: &Value, cleared: bool) -> bool {
    match cur {
        Some(c) if !c.is_null() => same_value(c, want),
        _ => cleared,
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

/// Compares the mapped body (clears included; `cleared` names them) with F&O's current row (`None`: no such row).
pub(crate) fn plan(body: &Record, cleared: &[String], key: &Key, current: Option<&Record>) -> Plan {
    let Some(cur) = current else {
        return Plan::Create(without_clears(body, cleared));
    };
    let diff: Record = body
        .iter()
        .filter(|(f, _)| !key.iter().any(|(k, _)| k == *f))
        .filter(|(f, v)| !holds(cur.get(f.as_str()), v, cleared.contains(f)))
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

/// Whether a refused write may have met another writer: a create F&O refused as a duplicate or as invalid
/// (F&O words "already exists" in the user's language, as a 500 like any validation failure), or an update
/// whose key is gone. Callers confirm with a read by key before acting on it, so a validation error is never
/// taken for "exists".
fn maybe_race(method: WriteMethod, e: &DynamicsError) -> bool {
    match method {
        WriteMethod::Post => matches!(e.kind(), ErrorKind::Duplicate | ErrorKind::Invalid),
        WriteMethod::Patch => e.kind() == ErrorKind::NotFound,
        WriteMethod::Delete => false,
    }
}

/// One record to write without reading F&O first: created when `create`, else updated by its key.
pub(crate) struct Upsert {
    pub key: Key,
    /// The mapped body, clears included.
    pub body: Record,
    /// The fields of `body` that are clears: an update writes them, a create leaves them out.
    pub cleared: Vec<String>,
    pub create: bool,
}

/// The operation for `body`: a create without the clears, or an update with them (`clears` holds their values,
/// so a create that flips to an update gets them back).
fn upsert_op(deps: &Deps, entity_set: &str, key: &Key, mut body: Record, clears: &Record, create: bool) -> BatchOp {
    if create {
        body.retain(|k, _| !clears.contains_key(k));
        for (k, v) in key {
            body.entry(k.clone()).or_insert_with(|| v.clone());
        }
        deps.fno.create_op(entity_set, Value::Object(body))
    } else {
        body.extend(clears.iter().map(|(k, v)| (k.clone(), v.clone())));
        // Key fields stay out of an update body: they are in the URL.
        for (k, _) in key {
            body.remove(k);
        }
        deps.fno.update_op_json(entity_set, &key_refs(key), Value::Object(body))
    }
}

/// Writes every record in `$batch` requests; `Ok(created)` per record, in order. A create that finds the key
/// taken becomes an update and an update whose key vanished becomes a create (twice at most), so a redo after a
/// crash or a concurrent run is harmless without reading F&O first. The bodies move into the operations: one
/// copy of a page's payload in memory, not two.
pub(crate) async fn upsert_all(deps: &Deps, entity_set: &str, items: Vec<Upsert>) -> Vec<Result<bool, WriteError>> {
    let mut results: Vec<Option<Result<bool, WriteError>>> = (0..items.len()).map(|_| None).collect();
    let mut todo: Vec<(usize, Key, bool)> = Vec::with_capacity(items.len());
    let mut sets: Vec<Vec<BatchOp>> = Vec::with_capacity(items.len());
    let mut clears: Vec<Record> = Vec::with_capacity(items.len());
    for (i, u) in items.into_iter().enumerate() {
        let c: Record = u
            .cleared
            .iter()
            .filter_map(|f| u.body.get(f).map(|v| (f.clone(), v.clone())))
            .collect();
        sets.push(vec![upsert_op(deps, entity_set, &u.key, u.body, &c, u.create)]);
        todo.push((i, u.key, u.create));
        clears.push(c);
    }
    for pass in 0..3 {
        let answers = write_sets(deps, &sets).await;
        let exists = confirm_creates(deps, entity_set, &todo, &answers).await;
        let mut again = Vec::new();
        let mut again_sets = Vec::new();
        for (((i, key, create), (set, r)), taken) in todo.into_iter().zip(sets.into_iter().zip(answers)).zip(exists) {
            match r {
                Ok(()) => results[i] = Some(Ok(create)),
                Err(e) if e.race && (!create || taken) && pass < 2 => {
                    let body = set.into_iter().next().and_then(|op| op.body);
                    let body = body.and_then(|b| b.as_object().cloned()).unwrap_or_default();
                    let flipped = upsert_op(deps, entity_set, &key, body, &clears[i], !create);
                    again_sets.push(vec![flipped]);
                    again.push((i, key, !create));
                }
                // A refused create whose key F&O does not hold: the refusal stands (a validation error).
                Err(e) => results[i] = Some(Err(WriteError { race: false, ..e })),
            }
        }
        if again.is_empty() {
            break;
        }
        (todo, sets) = (again, again_sets);
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(WriteError::transient("no result for this record"))))
        .collect()
}

/// Per record: whether a create F&O refused found its key taken, confirmed by reading the keys back (one read
/// for all of them). A read that fails confirms nothing: the refusal then stands as it is.
async fn confirm_creates(
    deps: &Deps,
    entity_set: &str,
    todo: &[(usize, Key, bool)],
    answers: &[Result<(), WriteError>],
) -> Vec<bool> {
    let refused: Vec<&Key> = todo
        .iter()
        .zip(answers)
        .filter(|((_, _, create), r)| *create && r.as_ref().is_err_and(|e| e.race))
        .map(|((_, key, _), _)| key)
        .collect();
    let rows = match refused.first().map(|k| k.as_slice()) {
        Some([(_, company), .., (field, _)]) => {
            let values: Vec<String> = refused
                .iter()
                .filter_map(|k| k.last())
                .map(|(_, v)| text_of(v))
                .collect();
            let select: Vec<String> = refused[0].iter().map(|(k, _)| k.clone()).collect();
            read_current(deps, entity_set, &text_of(company), field, &values, &select)
                .await
                .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    todo.iter()
        .map(|(_, key, create)| *create && rows.iter().any(|r| row_has_key(r, key)))
        .collect()
}

/// Why a change set was not written.
#[derive(Clone, Debug)]
pub(crate) struct WriteError {
    pub reason: String,
    pub transient: bool,
    /// Another writer may have got there between our read and our write (a refused create, 404 on an update):
    /// planning again from a fresh read tells, and will do.
    pub race: bool,
    pub status: Option<u16>,
}

impl WriteError {
    fn transient(reason: &str) -> WriteError {
        WriteError {
            reason: reason.into(),
            transient: true,
            race: false,
            status: None,
        }
    }
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
                            let race = maybe_race(op.method, &err);
                            let duplicate = err.kind() == ErrorKind::Duplicate;
                            Err(WriteError {
                                reason: err.to_string(),
                                // A concurrent writer is gone by the next try; a refusal of the data is not.
                                transient: err.is_transient()
                                    || (race && (duplicate || op.method != WriteMethod::Post)),
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
        assert!(matches!(plan(&body, &[], &key, None), Plan::Create(b) if b == body));
        let same = rec(json!({"dataAreaId": "USMF", "N": "q1", "Qty": 3.0, "Name": "x", "Other": 1}));
        assert!(matches!(plan(&body, &[], &key, Some(&same)), Plan::Unchanged));
        assert!(row_has_key(&same, &key));
        let other = rec(json!({"dataAreaId": "usmf", "N": "Q1", "Qty": 2, "Name": "x"}));
        match plan(&body, &[], &key, Some(&other)) {
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

    #[test]
    fn clears_are_patched_once_and_left_out_of_creates() {
        let key: Key = vec![("dataAreaId".into(), json!("usmf")), ("N".into(), json!("C1"))];
        let body = rec(json!({"dataAreaId": "usmf", "N": "C1", "Fax": "", "Staff": 0, "Name": "x"}));
        let cleared = vec!["Fax".to_string(), "Staff".to_string()];
        match plan(&body, &cleared, &key, None) {
            Plan::Create(b) => assert_eq!(Value::Object(b), json!({"dataAreaId": "usmf", "N": "C1", "Name": "x"})),
            p => panic!("{p:?}"),
        }
        // F&O still holds the old values: both are cleared.
        let old = rec(json!({"dataAreaId": "usmf", "N": "C1", "Fax": "+1 555", "Staff": 40, "Name": "x"}));
        match plan(&body, &cleared, &key, Some(&old)) {
            Plan::Update(d) => assert_eq!(Value::Object(d), json!({"Fax": "", "Staff": 0})),
            p => panic!("{p:?}"),
        }
        // F&O's "" and 0, or no value at all, hold a clear: nothing to write.
        let empty = rec(json!({"dataAreaId": "usmf", "N": "C1", "Fax": "", "Staff": 0, "Name": "x"}));
        assert!(matches!(plan(&body, &cleared, &key, Some(&empty)), Plan::Unchanged));
        let absent = rec(json!({"dataAreaId": "usmf", "N": "C1", "Fax": null, "Name": "x"}));
        assert!(matches!(plan(&body, &cleared, &key, Some(&absent)), Plan::Unchanged));
        // A real "" or 0 that is no clear must be there.
        assert!(matches!(plan(&body, &[], &key, Some(&absent)), Plan::Update(_)));
    }
}
