//! products-to-sales: products that left the sweep. F&O publishes no deletes on `SellableReleasedProducts` (a
//! product deleted, or no longer released or sellable, is simply not there), so p2c learns it by bookkeeping:
//! a sweep that reads the company from its first key to its last in one run snapshots the product links when it
//! starts and keeps every key it reads; at its end, a linked product it did not read is gone.
//!
//! A gone product is counted (`"no longer in F&O"`) and its link marked (`gone:deleted`), once. With
//! products-to-sales in P2C_DEACTIVATE_TARGETS its Sales product is retired instead (statecode 1 Retired,
//! statuscode 2 — Dataverse's product states: Active 0/1, Retired 1/2, Draft 2/0, Under Revision 3/3; DCE
//! `product.md`, spec/protocols.md A) and the link marked `gone:retired`. A product that comes back to the sweep
//! loses its mark; one p2c retired is made Active again. A sweep resumed from an earlier run has not read every
//! key in this process, so it decides nothing: the next whole sweep does.
//!
//! Cost: one Scan of the links (`StateStore::scan_links`) per whole sweep, one PATCH per product that left.

use std::collections::{HashMap, HashSet};

use p2c_state::Link;
use serde_json::json;

use crate::{
    deps::Deps,
    error::SyncError,
    flow_name::FlowName,
    pipeline::{
        links::{Gone, LinkEntity},
        record::now,
    },
    report::{Failure, RunReport, Skip},
};

/// Sales product states (statecode, statuscode).
const ACTIVE: (i64, i64) = (0, 1);
const RETIRED: (i64, i64) = (1, 2);

/// What a whole sweep knows: the product links when it started (by lower-cased key) and the keys it read.
#[derive(Default)]
pub(super) struct SweepBook {
    before: Option<HashMap<String, Link>>,
    seen: HashSet<String>,
}

impl SweepBook {
    /// Before the first page of a sweep that starts at the first key.
    pub(super) async fn start(&mut self, deps: &Deps, company: &str) -> Result<(), SyncError> {
        let links = deps
            .state
            .scan_links(LinkEntity::Product.as_str(), company, Some("fno"))
            .await?;
        self.before = Some(links.into_iter().map(|l| (l.source_key.to_lowercase(), l)).collect());
        Ok(())
    }

    pub(super) fn started(&self) -> bool {
        self.before.is_some()
    }

    /// F&O compares keys ignoring case.
    pub(super) fn saw(&mut self, key: &str) {
        self.seen.insert(key.to_lowercase());
    }

    /// At the end of the sweep: retires (or reports) what left, reactivates what came back.
    pub(super) async fn finish(
        self,
        deps: &Deps,
        company: &str,
        report: &mut RunReport,
    ) -> Result<Vec<Failure>, SyncError> {
        let Some(before) = self.before else {
            return Ok(Vec::new());
        };
        let marked = |l: &Link| Gone::marked(l.source_version.as_deref());
        let (left, back): (Vec<&Link>, Vec<&Link>) = before
            .iter()
            .filter(|(k, l)| self.seen.contains(*k) == marked(l))
            .map(|(_, l)| l)
            .partition(|l| !marked(l));
        let retire = deps.cfg.deactivate_targets.contains(&FlowName::ProductsToSales);
        let mut failures = Vec::new();
        let mut marks = Vec::new();
        for l in left {
            report.read += 1;
            let why = if retire { Gone::Retired } else { Gone::Deleted };
            if retire {
                if let Err(f) = set_state(deps, l, RETIRED).await {
                    failures.push(f);
                    continue;
                }
                report.wrote(false);
            } else {
                report.skip(Skip::GoneFromFno);
            }
            marks.push(with_version(l, Some(why.as_version())));
        }
        marks.extend(come_back(deps, company, &back, &mut failures).await?);
        deps.state.put_links(&marks, &[&by_key(&before)]).await?;
        Ok(failures)
    }
}

/// Products read again after they left: a retired Sales product is made Active again, and the mark is taken off
/// links that still carry it (a changed product's link was already rewritten by this sweep's commit).
async fn come_back(
    deps: &Deps,
    company: &str,
    back: &[&Link],
    failures: &mut Vec<Failure>,
) -> Result<Vec<Link>, SyncError> {
    if back.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = back.iter().map(|l| l.source_key.clone()).collect();
    let now_links = deps
        .state
        .get_links(LinkEntity::Product.as_str(), company, "fno", &keys)
        .await?;
    let mut out = Vec::new();
    for l in back {
        if l.source_version.as_deref() == Some(Gone::Retired.as_version())
            && let Err(f) = set_state(deps, l, ACTIVE).await
        {
            failures.push(f);
            continue;
        }
        if let Some(cur) = now_links
            .get(&l.source_key)
            .filter(|c| Gone::marked(c.source_version.as_deref()))
        {
            out.push(with_version(cur, None));
        }
    }
    Ok(out)
}

/// Sets the Sales product's state: a PATCH of statecode and statuscode together, as Dataverse changes state.
async fn set_state(deps: &Deps, l: &Link, (state, status): (i64, i64)) -> Result<(), Failure> {
    let body = json!({ "statecode": state, "statuscode": status });
    deps.sales.update("products", &l.target_key, &body).await.map_err(|e| {
        let what = if state == RETIRED.0 { "retiring" } else { "reactivating" };
        Failure::new(
            &l.source_key,
            &l.target_key,
            format!(
                "{what} Sales product {} (F&O product {}): {e}",
                l.target_key, l.source_key
            ),
            e.is_transient(),
        )
    })
}

fn with_version(l: &Link, version: Option<&str>) -> Link {
    Link {
        source_version: version.map(str::to_string),
        synced_at: now(),
        ..l.clone()
    }
}

/// The links by their stored key (what `put_links` compares its history against).
fn by_key(before: &HashMap<String, Link>) -> HashMap<String, Link> {
    before.values().map(|l| (l.source_key.clone(), l.clone())).collect()
}
