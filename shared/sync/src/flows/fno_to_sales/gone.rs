//! products-to-sales: products that left the sweep. F&O publishes no deletes on `SellableReleasedProducts` (a
//! product deleted, or no longer released or sellable, is simply not there), so p2c learns it by bookkeeping: a
//! sweep that reads the company from its first key to its last in one run keeps every key it reads; at its end
//! the Sales products (one paged read of their numbers) whose number it did not read are looked up in the
//! company's product links, and a linked one is gone.
//!
//! A gone product is counted (`"no longer in F&O"`) and its link marked (`gone:deleted`), once. With
//! products-to-sales in P2C_DEACTIVATE_TARGETS its Sales product is retired instead (statecode 1 Retired,
//! statuscode 2 — Dataverse's product states: Active 0/1, Retired 1/2, Draft 2/0, Under Revision 3/3; DCE
//! `product.md`, spec/protocols.md A) and the link marked `gone:retired`, unless another configured company
//! still sells it (a Sales product is one for every company): then only this company's link is marked. A product
//! that comes back to the sweep loses its mark (the sweep's own link read shows it); one p2c retired is made
//! Active again. A sweep resumed from an earlier run has not read every key in this process, so it decides
//! nothing: the next whole sweep does.
//!
//! Cost per whole sweep: one DynamoDB read of the digest of the last whole sweep's key set; only when the key set
//! differs, one paged read of the Sales product numbers and one link read per 100 products not in this company's
//! sweep; one PATCH per product that left or came back. No table Scan.

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

/// What a whole sweep knows: the keys it read, as 128-bit hashes of the lower-cased key (F&O compares keys
/// ignoring case; 16 bytes a key keep 100,000 products' set small), and the links of products it read that
/// carried a gone mark.
#[derive(Default)]
pub(super) struct SweepBook {
    seen: HashSet<u128>,
    back: Vec<Link>,
}

/// A key's identity in the book.
fn key_id(key: &str) -> u128 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(key.to_lowercase().as_bytes());
    u128::from_be_bytes(h[..16].try_into().expect("a SHA-256 has 32 bytes"))
}

impl SweepBook {
    pub(super) fn saw(&mut self, key: &str) {
        self.seen.insert(key_id(key));
    }

    /// A product of this sweep whose link says it had left.
    pub(super) fn came_back(&mut self, link: &Link) {
        if Gone::marked(link.source_version.as_deref()) {
            self.back.push(link.clone());
        }
    }

    /// At the end of the sweep: retires (or reports) what left, reactivates what came back.
    pub(super) async fn finish(
        self,
        deps: &Deps,
        company: &str,
        report: &mut RunReport,
    ) -> Result<Vec<Failure>, SyncError> {
        // The same key set as the last whole sweep: nothing left (and what came back is in `back`).
        let keyset = KeySet::read(deps, company).await?;
        let digest = self.digest();
        let unchanged = keyset.as_ref().is_some_and(|w| w.value == digest);
        let links = if unchanged {
            HashMap::new()
        } else {
            self.left_links(deps, company).await?
        };
        let left: Vec<&Link> = links
            .values()
            .filter(|l| !Gone::marked(l.source_version.as_deref()))
            .collect();
        let retire = deps.cfg.deactivate_targets.contains(&FlowName::ProductsToSales);
        let elsewhere = if retire {
            sold_elsewhere(deps, company, &left).await?
        } else {
            HashSet::new()
        };
        let mut failures = Vec::new();
        let mut marks = Vec::new();
        for l in left {
            report.read += 1;
            if !retire || elsewhere.contains(&l.source_key) {
                report.skip(Skip::GoneFromFno);
                marks.push(with_version(l, Some(Gone::Deleted.as_version())));
                continue;
            }
            match set_state(deps, l, RETIRED).await {
                Ok(()) => {
                    report.wrote(false);
                    marks.push(with_version(l, Some(Gone::Retired.as_version())));
                }
                Err(f) => failures.push(f),
            }
        }
        if !marks.is_empty() {
            // A range digest may still vouch for a product that left (its range began with it): were the
            // product to come back unchanged, the digest would match and its link (the gone mark) go unread.
            super::digest::clear(deps, FlowName::ProductsToSales, company).await?;
        }
        let back: Vec<&Link> = self.back.iter().collect();
        marks.extend(come_back(deps, company, &back, &mut failures).await?);
        deps.state.put_links(&marks, &[&links]).await?;
        if failures.is_empty() && !unchanged {
            KeySet::save(deps, company, &digest, keyset.map(|w| w.version)).await?;
        }
        Ok(failures)
    }

    /// A digest of the keys read (sorted, so the sweep's page order does not matter).
    fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut keys: Vec<u128> = self.seen.iter().copied().collect();
        keys.sort_unstable();
        let mut h = Sha256::new();
        for k in keys {
            h.update(k.to_be_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The company's product links of the Sales products this sweep did not read.
    async fn left_links(&self, deps: &Deps, company: &str) -> Result<HashMap<String, Link>, SyncError> {
        let cols = ["productnumber".to_string()];
        let products = deps.sales.list("products", &cols, None).await?;
        let unseen: Vec<String> = products
            .iter()
            .filter_map(|p| p.get("productnumber").and_then(|v| v.as_str()))
            .filter(|n| !self.seen.contains(&key_id(n)))
            .map(str::to_string)
            .collect();
        Ok(deps
            .state
            .get_links(LinkEntity::Product.as_str(), company, "fno", &unseen)
            .await?)
    }
}

/// The digest of the key set of the company's last whole sweep whose gone products were all settled, kept as a
/// watermark item of its own (`WM#products-to-sales.keyset#<company>`): an idle sweep compares it and reads
/// nothing from Sales.
struct KeySet;

impl KeySet {
    const FLOW: &'static str = "products-to-sales.keyset";

    async fn read(deps: &Deps, company: &str) -> Result<Option<p2c_state::Watermark>, SyncError> {
        Ok(deps.state.watermark(Self::FLOW, company).await?)
    }

    async fn save(deps: &Deps, company: &str, digest: &str, version: Option<u64>) -> Result<(), SyncError> {
        deps.state.put_watermark(Self::FLOW, company, digest, version).await?;
        Ok(())
    }
}

/// The keys of `left` another configured company still has a live link for.
async fn sold_elsewhere(deps: &Deps, company: &str, left: &[&Link]) -> Result<HashSet<String>, SyncError> {
    let keys: Vec<String> = left.iter().map(|l| l.source_key.clone()).collect();
    let mut out = HashSet::new();
    if keys.is_empty() {
        return Ok(out);
    }
    for other in deps
        .cfg
        .companies
        .iter()
        .filter(|c| !c.legal_entity.eq_ignore_ascii_case(company))
    {
        let links = deps
            .state
            .get_links(LinkEntity::Product.as_str(), &other.legal_entity, "fno", &keys)
            .await?;
        out.extend(
            links
                .into_values()
                .filter(|l| !Gone::marked(l.source_version.as_deref()))
                .map(|l| l.source_key),
        );
    }
    Ok(out)
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

/// Sets the Sales product's state: a PATCH of statecode and statuscode together, the Update that replaced the
/// SetState message (https://learn.microsoft.com/power-apps/developer/data-platform/special-update-operation-behavior).
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
