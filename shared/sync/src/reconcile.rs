//! `p2c reconcile`: compare both systems for a flow and report what does not agree — counts, records missing on
//! either side, fields that differ from what the template maps, and links that point at nothing.

use std::collections::{HashMap, HashSet};

use p2c_dynamics::Record;
use serde::Serialize;
use serde_json::Value;

use crate::{
    deps::Deps,
    error::SyncError,
    flows::FlowName,
    lookups::lookup_paths,
    message::{Message, Reason},
};

#[derive(Debug, Default, Serialize)]
pub struct Mismatch {
    pub key: String,
    pub field: String,
    /// What the template makes of the source record.
    pub expected: Value,
    /// What the target holds.
    pub actual: Value,
}

#[derive(Debug, Default, Serialize)]
pub struct Reconciliation {
    pub flow: String,
    pub company: String,
    pub source_count: usize,
    pub target_count: usize,
    pub link_count: usize,
    /// Source records (by key) that should be in the target and are not.
    pub missing_in_target: Vec<String>,
    /// Target records p2c owns (externally maintained) with no source record.
    pub missing_in_source: Vec<String>,
    pub mismatches: Vec<Mismatch>,
    /// Links whose source record or target record no longer exists (by link source key).
    pub orphan_links: Vec<String>,
    /// Source records that cannot be mapped (they are failing in every run too).
    pub unmappable: Vec<String>,
    /// With `--fix`: source ids sent to the flow's queue for a resync.
    pub enqueued: usize,
}

impl Reconciliation {
    pub fn clean(&self) -> bool {
        self.missing_in_target.is_empty()
            && self.missing_in_source.is_empty()
            && self.mismatches.is_empty()
            && self.orphan_links.is_empty()
    }
}

fn s<'a>(r: &'a Record, k: &str) -> Option<&'a str> {
    r.get(k).and_then(Value::as_str).filter(|v| !v.is_empty())
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Compares Sales and F&O for a Sales → F&O flow with one template (accounts).
pub async fn reconcile(deps: &Deps, flow: FlowName, company: &str, fix: bool) -> Result<Reconciliation, SyncError> {
    let company = deps
        .cfg
        .company(company)
        .ok_or_else(|| SyncError::UnknownCompany(company.into(), deps.companies_list()))?
        .legal_entity
        .clone();
    if flow != FlowName::AccountsToFno {
        return Err(SyncError::NotBuilt(flow));
    }
    let spec = deps.sales_to_fno(flow);
    let t = &spec.template;
    let key_field = spec.target_key_field().to_string();
    let bu = deps.business_unit_id(&company).await?;
    let filter = format!("_owningbusinessunit_value eq {bu}");
    let mut sources = deps
        .sales
        .list(spec.source_set(), &spec.select(), Some(&filter))
        .await?;
    deps.lookups.enrich(&deps.sales, &lookup_paths(t), &mut sources).await?;
    let targets = deps
        .fno
        .list(
            spec.target_set(),
            &[],
            Some(&format!(
                "dataAreaId eq {}",
                p2c_dynamics::odata::string_literal(&company)
            )),
            None,
        )
        .await?;
    let links = deps.state.scan_links(spec.link_entity, &company, Some("sales")).await?;

    let mut out = Reconciliation {
        flow: flow.as_str().into(),
        company: company.clone(),
        source_count: sources.len(),
        link_count: links.len(),
        ..Default::default()
    };
    let by_key: HashMap<&str, &Record> = targets.iter().filter_map(|r| Some((s(r, &key_field)?, r))).collect();
    // Only customers p2c owns can be "missing in Sales": F&O's own customers are none of its business.
    let owned: Vec<&Record> = targets
        .iter()
        .filter(|r| s(r, "IsExternallyMaintained") == Some("Yes"))
        .collect();
    out.target_count = owned.len();
    let mut resync: Vec<String> = Vec::new();
    let mut source_keys: HashSet<String> = HashSet::new();
    let source_ids: HashSet<String> = sources
        .iter()
        .filter_map(|r| s(r, spec.source_id()).map(str::to_ascii_lowercase))
        .collect();
    for row in &sources {
        let id = s(row, spec.source_id()).unwrap_or_default().to_string();
        if !t.passes_filter(row) {
            continue;
        }
        let (key, mapped) = match t.key_of(row) {
            Ok(key) => match t.map(row) {
                Ok(m) => (key, m),
                Err(e) => {
                    out.unmappable.push(format!("{key}: {e}"));
                    continue;
                }
            },
            Err(e) => {
                out.unmappable.push(format!("{id}: {e}"));
                continue;
            }
        };
        source_keys.insert(key.clone());
        match by_key.get(key.as_str()) {
            None => {
                out.missing_in_target.push(key);
                resync.push(id);
            }
            Some(target) => {
                let before = out.mismatches.len();
                for (field, expected) in &mapped {
                    let actual = target.get(field).cloned().unwrap_or(Value::Null);
                    if !equal(expected, &actual) {
                        out.mismatches.push(Mismatch {
                            key: key.clone(),
                            field: field.clone(),
                            expected: expected.clone(),
                            actual,
                        });
                    }
                }
                if out.mismatches.len() > before {
                    resync.push(id);
                }
            }
        }
    }
    for r in &owned {
        if let Some(k) = s(r, &key_field)
            && !source_keys.contains(k)
        {
            out.missing_in_source.push(k.to_string());
        }
    }
    // A link is an orphan when its source is gone, or its target is gone for a record not already reported
    // missing (that one gets resynced and its link rewritten).
    let missing: HashSet<&str> = out.missing_in_target.iter().map(String::as_str).collect();
    for l in &links {
        let source_gone = !source_ids.contains(&l.source_key.to_ascii_lowercase());
        let target_gone = !by_key.contains_key(l.target_key.as_str()) && !missing.contains(l.target_key.as_str());
        if source_gone || target_gone {
            out.orphan_links.push(l.source_key.clone());
        }
    }
    out.missing_in_target.sort();
    out.missing_in_source.sort();
    out.orphan_links.sort();
    if fix && !resync.is_empty() {
        // A resync through the queue: the worker re-reads each record and writes it the normal way. Forgetting
        // the link's hash makes the worker write even when it believes the target is up to date.
        let stale: Vec<p2c_state::Link> = deps
            .state
            .get_links(spec.link_entity, &company, "sales", &resync)
            .await?
            .into_values()
            .map(|mut l| {
                l.target_hash = None;
                l
            })
            .collect();
        deps.state.put_links(&stale).await?;
        let pair = deps.queue_pair(flow).await?;
        let bodies: Vec<String> = resync
            .chunks(crate::message::MAX_KEYS)
            .map(|c| Message::new(flow.as_str(), &company, c.to_vec(), Reason::Replay).to_body())
            .collect();
        deps.queues.send(&pair.queue_url, &bodies).await?;
        out.enqueued = resync.len();
    }
    Ok(out)
}
