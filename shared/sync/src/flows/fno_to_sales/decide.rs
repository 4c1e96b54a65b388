//! Decide: what of a page needs writing, before anything is written. The links say what is unchanged, and which
//! units a sweep leaves alone (failed earlier, closed in Sales); the rest is touched. For those: the lookups they
//! will bind (read in one go by the resolver), the products' price lists, and documents held back whole while
//! one of their lines cannot be written.

use std::collections::HashMap;

use p2c_mapping::LookupTarget;
use serde_json::Value;

use super::{
    resolve::Resolver,
    spec::{Children, PRICE_LIST, Spec},
    unit::{Mode, Outcome, Part, Work, product_unit_group, unresolved_reason},
};
use crate::pipeline::links::Mark;
use crate::{deps::Deps, error::SyncError};

/// Loads the links of every part and decides what is unchanged.
pub(super) async fn decide(
    deps: &Deps,
    spec: &Spec,
    company: &str,
    works: &mut [Work],
    mode: Mode,
) -> Result<(), SyncError> {
    load_links(deps, spec, company, works).await?;
    for w in works.iter_mut().filter(|w| w.parent.outcome != Outcome::Filtered) {
        decide_unit(spec, w, mode);
    }
    Ok(())
}

/// Puts on every part its link (children: the pending ones'), as read in one go per table.
async fn load_links(deps: &Deps, spec: &Spec, company: &str, works: &mut [Work]) -> Result<(), SyncError> {
    let parent_keys: Vec<String> = works.iter().map(|w| w.key.clone()).filter(|k| !k.is_empty()).collect();
    let mut plinks = deps
        .state
        .get_links(spec.parent_table.link.as_str(), company, "fno", &parent_keys)
        .await?;
    let mut clinks = match &spec.child_table {
        Some(ct) => {
            let keys: Vec<String> = works
                .iter()
                .flat_map(|w| w.children.iter().filter(|c| c.pending()))
                .map(|c| c.key.clone())
                .collect();
            deps.state.get_links(ct.link.as_str(), company, "fno", &keys).await?
        }
        None => HashMap::new(),
    };
    for w in works.iter_mut() {
        w.parent.link = plinks.remove(&w.key);
        for c in &mut w.children {
            c.link = clinks.remove(&c.key);
        }
    }
    Ok(())
}

/// One unit (not filtered) with its links: left alone by a sweep, failed with its parent, or unchanged part by part.
fn decide_unit(spec: &Spec, w: &mut Work, mode: Mode) {
    if let Some(o) = earlier_marker(w, mode) {
        w.closed = o == Outcome::Closed;
        w.parent.outcome = o.clone();
        for c in w.pending_children() {
            c.outcome = if c.unchanged() { Outcome::Unchanged } else { o.clone() };
        }
        return;
    }
    if let Outcome::Failed { transient, .. } = w.parent.outcome {
        fail_pending_children(spec, w, transient);
        return;
    }
    // A product that changed has its price list item looked at again: its currency may have moved it to
    // another price list (the rule's choice is not in the hashes).
    let recheck_companion =
        matches!(spec.children, Children::SameRecord) && w.parent.pending() && !w.parent.unchanged();
    if w.parent.pending() {
        keep_if_unchanged(&mut w.parent);
    }
    for c in w.pending_children() {
        if !recheck_companion {
            keep_if_unchanged(c);
        }
    }
}

/// A sweep leaves a record that failed, or that is closed in Sales, alone while its F&O content is the same.
fn earlier_marker(w: &Work, mode: Mode) -> Option<Outcome> {
    let marker = w.parent.link.as_ref().and_then(|l| l.source_version.as_deref())?;
    if !matches!(mode, Mode::Sweep { .. }) {
        return None;
    }
    match Mark::of(Some(marker), &w.unit_hash)? {
        Mark::Failed => Some(Outcome::FailedEarlier),
        Mark::Closed => Some(Outcome::Closed),
    }
}

/// A part whose link has the hash of what is mapped now is unchanged, with the linked id.
fn keep_if_unchanged(p: &mut Part) {
    if p.unchanged() {
        p.outcome = Outcome::Unchanged;
        p.id = p.linked_id().map(str::to_string);
    }
}

/// Children of a parent that failed cannot be written.
pub(super) fn fail_pending_children(spec: &Spec, w: &mut Work, transient: bool) {
    let why = format!("not synced: its {} {} failed", spec.parent.record_noun(), w.key);
    for c in w.pending_children() {
        c.outcome = Outcome::fail(why.clone(), transient);
    }
}

/// Marks the units that go through resolution and writes: something pending or failed, or (documents) a line
/// set that differs from the one on the link.
pub(super) fn touch(spec: &Spec, works: &mut [Work]) {
    let lines = matches!(spec.children, Children::Lines { .. });
    for w in works {
        let failed = w.parent.outcome.failed() || w.children.iter().any(|c| c.outcome.failed());
        w.touched = w.pending() || failed || (lines && w.parent.outcome.ok() && w.keyset_changed());
    }
}

/// Lookups the pending parts will bind, as (alternatives, value).
pub(super) fn needs(spec: &Spec, works: &[Work]) -> Vec<(Vec<LookupTarget>, String)> {
    let mut out = Vec::new();
    let parent_binds = spec.parent.binds();
    let child_binds = spec.child.as_ref().map(|c| c.binds()).unwrap_or_default();
    let parent_path = spec.parent_ref.as_ref().map(|p| p.path.as_str());
    for w in works.iter().filter(|w| w.pending()) {
        let child_pending = w.children.iter().any(Part::pending);
        for b in &parent_binds {
            // A child needs its parent's unit group even when the parent itself is unchanged.
            let wanted = w.parent.pending() || (child_pending && b.target == "defaultuomscheduleid.name");
            if let (true, Some(v)) = (wanted, w.parent.mapped_text(&b.target)) {
                out.push((b.targets.clone(), v));
            }
        }
        for c in w.children.iter().filter(|c| c.pending()) {
            for b in child_binds.iter().filter(|b| Some(b.target.as_str()) != parent_path) {
                if let Some(v) = c.mapped_text(&b.target) {
                    out.push((b.targets.clone(), v));
                }
            }
        }
    }
    out
}

/// The P2C price list rule: fill in the price list of every pending product (and item), order or invoice, or
/// fail it (with its lines).
pub(super) async fn choose_price_lists(
    deps: &Deps,
    spec: &Spec,
    works: &mut [Work],
    resolver: &mut Resolver,
) -> Result<(), SyncError> {
    let parent_has = spec.parent.field(PRICE_LIST).is_some_and(|f| f.enabled);
    let child_has = spec
        .child
        .as_ref()
        .and_then(|c| c.field(PRICE_LIST))
        .is_some_and(|f| f.enabled);
    for w in works.iter_mut().filter(|w| w.rule_price_list && w.pending()) {
        let currency = w
            .parent
            .mapped_text("transactioncurrencyid.isocurrencycode")
            .unwrap_or_default();
        match resolver.first_price_list(deps, &currency).await? {
            Some(name) => {
                let parts =
                    std::iter::once((&mut w.parent, parent_has)).chain(w.children.iter_mut().map(|c| (c, child_has)));
                for (p, has) in parts {
                    if let (true, Some(m)) = (has, p.mapped.as_mut()) {
                        m.insert(PRICE_LIST.into(), Value::String(name.clone()));
                    }
                }
            }
            None => {
                let reason = no_price_list(spec, &w.key, &currency);
                for p in std::iter::once(&mut w.parent).chain(w.children.iter_mut()) {
                    if !matches!(p.outcome, Outcome::Filtered | Outcome::Failed { .. }) {
                        p.outcome = Outcome::fail(reason.clone(), false);
                    }
                }
            }
        }
    }
    Ok(())
}

/// A record whose currency has no price list: what to do about it.
fn no_price_list(spec: &Spec, key: &str, currency: &str) -> String {
    format!(
        "{} {}: no valid price list in Sales has currency {:?} (p2c takes the first active price list of the \
         record's currency, by name, as the P2C solution does for products); create one, or name one for {:?} \
         in P2C_MAPPING ([{}.{}] {PRICE_LIST}), then replay the dead-letter queue",
        spec.parent.record_noun(),
        key,
        currency,
        currency,
        spec.flow,
        spec.parent.name
    )
}

/// A document goes whole, as it does to F&O: while one of its lines cannot be written (its product is not in
/// Sales yet, or the line does not map), its new or changed header is not written either, nor any other line. The
/// document fails with the line's reason (transient when the line waits for a parent) and is retried whole, so
/// Sales never shows an order or invoice without the lines F&O has. A header already in Sales and unchanged is
/// left alone; only its lines wait.
pub(super) fn hold_incomplete_documents(spec: &Spec, works: &mut [Work], resolver: &Resolver) {
    if !matches!(spec.children, Children::Lines { .. }) || spec.child.is_none() || spec.parent_ref.is_none() {
        return;
    }
    for w in works.iter_mut().filter(|w| w.parent.pending()) {
        // A header that cannot be bound fails on its own reason when it is written (its lines with it).
        let header_binds = w
            .parent
            .mapped
            .as_ref()
            .is_some_and(|m| spec.parent.bind(&w.key, m, |t, v| resolver.lookup(t, v, None)).is_ok());
        if !header_binds {
            continue;
        }
        let Some((reason, transient)) = first_blocked_line(spec, w, resolver) else {
            continue;
        };
        let why = format!(
            "{} {}: not written until every line can be: {reason}",
            spec.parent.record_noun(),
            w.key
        );
        w.parent.outcome = Outcome::fail(why.clone(), transient);
        for c in w.pending_children() {
            c.outcome = Outcome::fail(why.clone(), transient);
        }
    }
}

/// The first line of a document that failed or cannot be bound, as (reason, transient).
fn first_blocked_line(spec: &Spec, w: &Work, resolver: &Resolver) -> Option<(String, bool)> {
    let (Some(ct), Some(pref)) = (&spec.child, &spec.parent_ref) else {
        return None;
    };
    w.children.iter().find_map(|c| match &c.outcome {
        Outcome::Failed { reason, transient } => Some((reason.clone(), *transient)),
        Outcome::Pending => {
            let mapped = c.mapped.as_ref()?;
            let group = product_unit_group(resolver, mapped);
            // The header is not in Sales yet: its own lookup binds once it is written.
            let bound = ct.bind(&c.key, mapped, |target, v| {
                if target.entity_set == spec.parent_table.set && target.column == pref.column {
                    return Some(String::new());
                }
                resolver.lookup(target, v, group.as_deref())
            });
            bound.err().map(|u| (unresolved_reason(&u), u.is_transient()))
        }
        _ => None,
    })
}
