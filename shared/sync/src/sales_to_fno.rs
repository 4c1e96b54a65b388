//! The Sales → F&O pipeline: filter and map (transform), skip what is unchanged, then write to F&O in
//! `$batch` requests and commit links (sink). Used by scheduled runs and by SQS messages alike.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use p2c_dynamics::{BatchOp, DynamicsError, Record};
use p2c_mapping::content_hash;
use p2c_state::Lease;
use p2c_state::Link;
use serde_json::Value;

use crate::{
    deps::Deps,
    error::SyncError,
    flows::{FlowName, SalesToFno},
    lookups::lookup_paths,
    report::RunReport,
    route::route_failures,
    run::RunOptions,
    to_fno::{DeltaReader, renew},
};

/// A record that did not make it, and whether trying again later can help.
#[derive(Clone, Debug)]
pub struct Failure {
    pub id: String,
    pub key: String,
    pub reason: String,
    pub transient: bool,
}

struct Pending {
    id: String,
    key: String,
    body: Record,
    hash: String,
    version: Option<String>,
    linked_same_key: bool,
}

pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) fn str_of<'a>(r: &'a Record, k: &str) -> Option<&'a str> {
    r.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Syncs Sales rows of one company to F&O. Returns the records that failed; the caller routes them.
/// A `SyncError` means the run itself could not go on (links or writes unreachable after retries).
pub async fn sync_rows(
    deps: &Deps,
    spec: &SalesToFno,
    company: &str,
    business_unit: &str,
    mut rows: Vec<Record>,
    report: &mut RunReport,
) -> Result<Vec<Failure>, SyncError> {
    let t = &spec.template;
    let mut failures = Vec::new();
    deps.lookups.enrich(&deps.sales, &lookup_paths(t), &mut rows).await?;

    // Transform: filter, map, key.
    let mut pending: Vec<Pending> = Vec::with_capacity(rows.len());
    let mut seen_keys: HashMap<String, String> = HashMap::new();
    for row in rows {
        report.read += 1;
        let Some(id) = str_of(&row, spec.source_id()).map(str::to_string) else {
            failures.push(Failure {
                id: String::new(),
                key: "(no id)".into(),
                reason: format!(
                    "the {} has no {}; it cannot be synced or retried",
                    spec.noun,
                    spec.source_id()
                ),
                transient: false,
            });
            continue;
        };
        if str_of(&row, "_owningbusinessunit_value").is_some_and(|bu| !bu.eq_ignore_ascii_case(business_unit)) {
            report.skip("owned by another business unit");
            continue;
        }
        if !t.passes_filter(&row) {
            report.skip("filtered by the template");
            continue;
        }
        let mapped = match t.key_of(&row) {
            Ok(key) => t.map(&row).map(|body| (key, body)),
            Err(e) => Err(e),
        };
        let (key, mut body) = match mapped {
            Ok(v) => v,
            Err(e) => {
                let key = str_of(&row, &t.source_key).unwrap_or(&id).to_string();
                failures.push(Failure {
                    id,
                    key,
                    reason: e.to_string(),
                    transient: false,
                });
                continue;
            }
        };
        // Two Sales records with one account number would overwrite each other's customer.
        if let Some(other) = seen_keys.get(&key) {
            failures.push(Failure {
                reason: format!(
                    "{} {key} has the same {} as {} {other}; give one of them a unique {}",
                    spec.noun, t.source_key, spec.noun, t.source_key
                ),
                id,
                key,
                transient: false,
            });
            continue;
        }
        seen_keys.insert(key.clone(), id.clone());
        body.insert("dataAreaId".into(), Value::String(company.to_string()));
        let hash = content_hash(&body);
        let version = row
            .get("versionnumber")
            .map(|v| v.to_string().trim_matches('"').to_string());
        pending.push(Pending {
            id,
            key,
            body,
            hash,
            version,
            linked_same_key: false,
        });
    }

    // Skip unchanged: the mapped content equals what was last written.
    let ids: Vec<String> = pending.iter().map(|p| p.id.clone()).collect();
    let links = deps.state.get_links(spec.link_entity, company, "sales", &ids).await?;
    pending.retain_mut(|p| match links.get(&p.id) {
        Some(l)
            if deps.cfg.skip_unchanged
                && l.target_key == p.key
                && l.target_hash.as_deref() == Some(p.hash.as_str()) =>
        {
            report.skip("unchanged");
            false
        }
        Some(l) => {
            p.linked_same_key = l.target_key == p.key;
            true
        }
        None => true,
    });
    if pending.is_empty() {
        return Ok(failures);
    }

    // Not linked yet: create. F&O enforces the key, so a record an earlier (crashed) run already created
    // answers "already exists" and `write_all` updates it instead: no duplicate, and no lookup request first.
    let key_field = spec.target_key_field().to_string();

    // Sink: write, then commit links for what was written.
    // The bodies move into the write items: one copy of a page's payload in memory, not two.
    let items: Vec<WriteItem> = pending
        .iter_mut()
        .map(|p| WriteItem {
            key: vec![
                ("dataAreaId".into(), company.to_string()),
                (key_field.clone(), p.key.clone()),
            ],
            body: std::mem::take(&mut p.body),
            create: !p.linked_same_key,
        })
        .collect();
    let results = write_all(deps, spec.target_set(), items).await;
    deps.crashes.check(crate::faults::CrashPoint::AfterTargetWrite)?;
    let mut new_links = Vec::new();
    let synced_at = now();
    for (p, r) in pending.into_iter().zip(results) {
        match r {
            Ok(created) => {
                report.wrote(created);
                new_links.push(Link {
                    entity: spec.link_entity.into(),
                    company: company.into(),
                    system: "sales".into(),
                    source_key: p.id,
                    target_key: p.key,
                    source_version: p.version,
                    source_hash: None,
                    target_hash: Some(p.hash),
                    synced_at: synced_at.clone(),
                });
            }
            Err((reason, transient)) => failures.push(Failure {
                id: p.id,
                key: p.key,
                reason,
                transient,
            }),
        }
    }
    deps.state.put_links(&new_links, &[&links]).await?;
    Ok(failures)
}

struct WriteItem {
    key: Vec<(String, String)>,
    body: Record,
    create: bool,
}

type WriteResult = Result<bool, (String, bool)>;

/// Writes every item in `$batch` requests. A create that finds the key taken becomes an update and an update
/// whose key vanished becomes a create, so a redo after a crash or a concurrent run is harmless.
async fn write_all(deps: &Deps, entity_set: &str, items: Vec<WriteItem>) -> Vec<WriteResult> {
    let mut results: Vec<Option<WriteResult>> = vec![None; items.len()];
    let mut todo: Vec<(usize, bool)> = items.iter().enumerate().map(|(i, it)| (i, it.create)).collect();
    for pass in 0..3 {
        let mut again = Vec::new();
        // Several batches in flight at once; the client's limiter keeps the service's concurrency budget.
        // Operations are built when their batch is sent, so only the batches in flight hold a copy of the bodies.
        let items = &items;
        let chunks: Vec<Vec<(usize, bool)>> = todo.chunks(deps.cfg.batch_size.max(1)).map(<[_]>::to_vec).collect();
        let mut done = futures::stream::iter(chunks)
            .map(|chunk| async move {
                let ops: Vec<BatchOp> = chunk
                    .iter()
                    .map(|&(i, create)| op_for(deps, entity_set, &items[i], create))
                    .collect();
                let r = deps.fno.batch(&ops).await;
                (chunk, ops, r)
            })
            .buffer_unordered(deps.cfg.write_concurrency.max(1));
        while let Some((chunk, ops, outcome)) = done.next().await {
            match outcome {
                Ok(parts) => {
                    for ((&(i, create), part), op) in chunk.iter().zip(parts).zip(&ops) {
                        if part.is_success() {
                            results[i] = Some(Ok(create));
                            continue;
                        }
                        let err = part.error("fno", op);
                        let flip = (create && is_already_exists(&err)) || (!create && err.status() == Some(404));
                        if flip && pass < 2 {
                            again.push((i, !create));
                        } else {
                            results[i] = Some(Err((err.to_string(), err.is_transient())));
                        }
                    }
                }
                Err(e) => {
                    let transient = e.is_transient();
                    for &(i, _) in &chunk {
                        results[i] = Some(Err((format!("the $batch request failed: {e}"), transient)));
                    }
                }
            }
        }
        if again.is_empty() {
            break;
        }
        todo = again;
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(("no result for this record".into(), true))))
        .collect()
}

fn op_for(deps: &Deps, entity_set: &str, item: &WriteItem, create: bool) -> BatchOp {
    if create {
        deps.fno.create_op(entity_set, Value::Object(item.body.clone()))
    } else {
        // Key fields stay out of an update body: they are in the URL.
        let mut body = item.body.clone();
        for (k, _) in &item.key {
            body.remove(k);
        }
        let key: Vec<(&str, &str)> = item.key.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        deps.fno.update_op(entity_set, &key, Value::Object(body))
    }
}

pub(crate) fn is_already_exists(e: &DynamicsError) -> bool {
    matches!(e, DynamicsError::Http { message, .. } if message.contains("already exists"))
}

/// A scheduled run's work: read changes since the watermark page by page, sync, then advance the watermark.
pub async fn run_changes(
    deps: &Deps,
    flow: FlowName,
    company: &str,
    opts: &RunOptions,
    report: &mut RunReport,
    lease: &Lease,
) -> Result<(), SyncError> {
    let spec = deps.sales_to_fno(flow);
    let bu = deps.business_unit_id(company).await?;
    let watermark = deps.state.watermark(flow.as_str(), company).await?;
    let saved = watermark
        .as_ref()
        .filter(|_| !opts.full_resync)
        .map(|w| w.value.as_str())
        .filter(|v| !v.is_empty());
    report.full_resync = saved.is_none() && watermark.is_some();
    // A full read that was interrupted resumes from the page after the last one committed.
    let resume_key = crate::run::resume_key(flow);
    let mut resume = match saved {
        None => deps.state.watermark(&resume_key, company).await?,
        Some(_) => None,
    };
    if resume.is_some() {
        tracing::info!(flow = %flow, company, "resuming an interrupted full read");
        report.resumed = true;
    }
    let start = resume.as_ref().map(|r| r.value.as_str()).or(saved);
    let mut reader = DeltaReader::new(deps, spec.source_set(), &spec.select(), start);
    while let Some(page) = reader.next(deps, report).await? {
        for _ in &page.deleted {
            report.read += 1;
            report.skip("deleted in Sales (F&O records are never deleted by p2c)");
        }
        let next = page.next_link.clone();
        let failures = sync_rows(deps, spec, company, &bu, page.rows, report).await?;
        route_failures(deps, flow, company, failures, 1, report).await?;
        renew(deps, lease, flow, company).await?;
        if let Some(next) = next {
            if saved.is_none() || report.full_resync {
                let expected = resume.as_ref().map(|w| w.version);
                resume = Some(deps.state.put_watermark(&resume_key, company, &next, expected).await?);
            }
            // Only after the resume point moved past this page may the caller stop the run.
            opts.tick(report)?;
        }
    }
    let delta = reader.delta_link().unwrap_or_default().to_string();
    // Links are committed page by page above; only now may the watermark move.
    deps.crashes.check(crate::faults::CrashPoint::BeforeWatermark)?;
    deps.state
        .put_watermark(flow.as_str(), company, &delta, watermark.map(|w| w.version))
        .await?;
    if resume.is_some() {
        deps.state.delete_watermark(&resume_key, company).await?;
    }
    Ok(())
}

pub(crate) fn delta_link_refused(e: &DynamicsError) -> bool {
    matches!(e.status(), Some(400 | 404 | 410 | 422))
        || matches!(e, DynamicsError::Http { status: 500, .. } if !e.is_transient())
}

/// Syncs records named by id (SQS: changes, retries, replays). Re-reads each record: a replay never writes
/// stale data. Returns the failures for the caller to route.
pub async fn process_keys(
    deps: &Deps,
    flow: FlowName,
    company: &str,
    keys: Vec<String>,
    report: &mut RunReport,
) -> Result<Vec<Failure>, SyncError> {
    let spec = deps.sales_to_fno(flow);
    let bu = deps.business_unit_id(company).await?;
    // Non-GUID keys would never match a Dataverse id; they fail as bad records, not as a bad batch.
    let (good, bad): (Vec<String>, Vec<String>) = keys.into_iter().partition(|k| p2c_dynamics::odata::is_guid(k));
    let mut failures: Vec<Failure> = bad
        .into_iter()
        .map(|k| Failure {
            id: String::new(),
            reason: format!(
                "{k:?} is not a {} id (a GUID); the message cannot be processed",
                spec.noun
            ),
            key: k,
            transient: false,
        })
        .collect();
    let rows = deps
        .sales
        .get_by_ids(spec.source_set(), spec.source_id(), &good, &spec.select())
        .await?;
    let found: HashSet<String> = rows
        .iter()
        .filter_map(|r| str_of(r, spec.source_id()).map(str::to_ascii_lowercase))
        .collect();
    for k in &good {
        if !found.contains(&k.to_ascii_lowercase()) {
            report.read += 1;
            report.skip("no longer in Sales");
        }
    }
    failures.extend(sync_rows(deps, spec, company, &bu, rows, report).await?);
    Ok(failures)
}
