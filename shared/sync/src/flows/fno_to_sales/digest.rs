//! Digests of a sweep's key ranges: an unchanged page is compared without one DynamoDB read per record.
//!
//! The units of a page are cut into ranges by their keys (a range ends after a key whose hash is 0 mod
//! [`SPAN`], or at the page's end), so a record added or removed changes one range, not those after it. A range's
//! digest is the hash of its (key, mapped hashes, line set) list. The digests of the sweep (full and regular
//! sweeps apart, their ranges differ) are read in one query on the first page; a range whose digest matches is
//! unchanged as a whole and its links are not read. A range is given a digest only once every unit of it is in
//! Sales as mapped now (written, unchanged, echo or filtered: no failure, nothing closed, nothing pending), and
//! only after the page's links are committed, so a digest never vouches for content Sales has not got.

use std::collections::HashMap;

use p2c_mapping::content_hash;
use p2c_state::Digest;
use serde_json::Value;

use super::unit::{Outcome, Part, Work};
use crate::{deps::Deps, error::SyncError, flow_name::FlowName};

/// Average units per range: a changed record costs the link reads of about this many units.
const SPAN: u64 = 16;

/// One range of a page: its digest as computed now, and whether the stored one matched.
pub(super) struct Range {
    digest: Digest,
    keys: Vec<String>,
    matched: bool,
}

pub(super) struct Digests {
    flow: FlowName,
    company: String,
    enabled: bool,
    known: HashMap<&'static str, HashMap<String, Digest>>,
}

impl Digests {
    pub fn new(flow: FlowName, company: &str, enabled: bool) -> Digests {
        Digests {
            flow,
            company: company.to_string(),
            enabled,
            known: HashMap::new(),
        }
    }

    fn item_flow(&self, scope: &str) -> String {
        item_flow(self.flow, scope)
    }

    async fn known(&mut self, deps: &Deps, scope: &'static str) -> Result<&mut HashMap<String, Digest>, SyncError> {
        if !self.known.contains_key(scope) {
            let stored = deps.state.digests(&self.item_flow(scope), &self.company).await?;
            self.known.insert(scope, stored);
        }
        Ok(self.known.entry(scope).or_default())
    }

    /// Takes the units of ranges whose digest matches out of `works`, as unchanged; returns them and the
    /// page's ranges.
    pub async fn split_unchanged(
        &mut self,
        deps: &Deps,
        scope: &'static str,
        works: &mut Vec<Work>,
    ) -> Result<(Vec<Work>, Vec<Range>), SyncError> {
        if !self.enabled || works.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let known = self.known(deps, scope).await?;
        let mut ranges = ranges_of(works);
        for r in &mut ranges {
            r.matched = known.get(&r.digest.first) == Some(&r.digest);
        }
        let same_keys: std::collections::HashSet<&str> = ranges
            .iter()
            .filter(|r| r.matched)
            .flat_map(|r| r.keys.iter().map(String::as_str))
            .collect();
        let (mut same, rest): (Vec<Work>, Vec<Work>) = std::mem::take(works)
            .into_iter()
            .partition(|w| same_keys.contains(w.key.as_str()));
        *works = rest;
        for w in &mut same {
            for p in std::iter::once(&mut w.parent).chain(w.children.iter_mut()) {
                if p.pending() {
                    p.outcome = Outcome::Unchanged;
                }
            }
        }
        Ok((same, ranges))
    }

    /// Stores the digests of the ranges that did not match and are now wholly in Sales.
    pub async fn commit(
        &mut self,
        deps: &Deps,
        scope: &'static str,
        ranges: &[Range],
        works: &[Work],
    ) -> Result<(), SyncError> {
        if !self.enabled || ranges.is_empty() {
            return Ok(());
        }
        let by_key: HashMap<&str, &Work> = works.iter().map(|w| (w.key.as_str(), w)).collect();
        let fresh: Vec<Digest> = ranges
            .iter()
            .filter(|r| !r.matched)
            .filter(|r| {
                r.keys
                    .iter()
                    .all(|k| by_key.get(k.as_str()).is_some_and(|w| in_sales(w)))
            })
            .map(|r| r.digest.clone())
            .collect();
        deps.state
            .put_digests(&self.item_flow(scope), &self.company, &fresh)
            .await?;
        let known = self.known(deps, scope).await?;
        for d in fresh {
            known.insert(d.first.clone(), d);
        }
        Ok(())
    }
}

/// The digest items' flow name: one set per sweep scope ("full", "regular").
fn item_flow(flow: FlowName, scope: &str) -> String {
    format!("{}.{scope}", flow.as_str())
}

/// Drops every digest of the flow and company, in both scopes: the next sweep reads every range's links.
pub(super) async fn clear(deps: &Deps, flow: FlowName, company: &str) -> Result<(), SyncError> {
    for scope in ["full", "regular"] {
        deps.state.clear_digests(&item_flow(flow, scope), company).await?;
    }
    Ok(())
}

/// Every part is in Sales as mapped now, or filtered out, and the next sweep would find it unchanged.
fn in_sales(w: &Work) -> bool {
    let part_ok = |p: &Part| match &p.outcome {
        Outcome::Filtered | Outcome::Unchanged => true,
        Outcome::Written { .. } | Outcome::Echo => p.id.is_some() || p.derived,
        _ => false,
    };
    !w.key.is_empty()
        && !w.closed
        && !w.child_trouble
        && w.post_trouble.is_none()
        && part_ok(&w.parent)
        && w.children.iter().all(part_ok)
}

/// What the comparison of a unit depends on: its key, each part's key, hash and whether it is filtered, and
/// its set of line numbers.
fn fingerprint(w: &Work) -> String {
    let mut s = String::new();
    for p in std::iter::once(&w.parent).chain(w.children.iter()) {
        let tag = match p.outcome {
            Outcome::Filtered => "f",
            Outcome::Pending => "p",
            _ => "x",
        };
        s.push_str(&format!("{}\u{1f}{}\u{1f}{tag}\u{1e}", p.key, p.hash));
    }
    s.push_str(w.keyset.as_deref().unwrap_or(""));
    s
}

/// FNV-1a: a cheap, stable hash of a key, to cut ranges where the keys say.
fn key_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The page's ranges, in order. Units without a key end a range and belong to none.
fn ranges_of(works: &[Work]) -> Vec<Range> {
    let mut out = Vec::new();
    let mut cur: Vec<&Work> = Vec::new();
    let close = |cur: &mut Vec<&Work>, out: &mut Vec<Range>| {
        if let (Some(first), Some(last)) = (cur.first(), cur.last()) {
            let list: Vec<Value> = cur
                .iter()
                .map(|w| Value::String(format!("{}\u{1d}{}", w.key, fingerprint(w))))
                .collect();
            let mut rec = serde_json::Map::new();
            rec.insert("units".into(), Value::Array(list));
            out.push(Range {
                digest: Digest {
                    first: first.key.clone(),
                    last: last.key.clone(),
                    hash: content_hash(&rec),
                    count: cur.len() as u64,
                },
                keys: cur.iter().map(|w| w.key.clone()).collect(),
                matched: false,
            });
        }
        cur.clear();
    };
    for w in works {
        if w.key.is_empty() {
            close(&mut cur, &mut out);
            continue;
        }
        cur.push(w);
        if key_hash(&w.key).is_multiple_of(SPAN) {
            close(&mut cur, &mut out);
        }
    }
    close(&mut cur, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_cut_by_keys_so_an_insert_moves_one_range() {
        let keys: Vec<String> = (0..400).map(|i| format!("SO-{i:05}")).collect();
        let cuts = |ks: &[String]| -> Vec<String> {
            ks.iter()
                .filter(|k| key_hash(k).is_multiple_of(SPAN))
                .cloned()
                .collect()
        };
        let before = cuts(&keys);
        let mut with = keys.clone();
        with.insert(200, "SO-00199A".into());
        let after = cuts(&with);
        assert!(before.len() > 10 && before.len() < 50, "{} ranges", before.len());
        let same = before.iter().filter(|c| after.contains(c)).count();
        assert!(same + 1 >= before.len(), "an insert moves at most one cut");
    }
}
