//! Commit and count: the end of a page. Links go in after the writes (a record is linked only once Sales has it;
//! a failed or closed record is marked so that sweeps leave it alone while its F&O content stays the same), then
//! every F&O record read is counted once (written, skipped or failed) and the failures are handed back.

use std::collections::HashMap;

use p2c_state::Link;

use super::{
    freight,
    spec::{Children, Spec},
    unit::{Outcome, Part, Work},
};
use crate::pipeline::links::Mark;
use crate::{
    deps::Deps,
    error::SyncError,
    report::{Failure, RunReport, Skip},
};

/// Links go in after the writes: a record is linked only once Sales has it, and a failed record is marked so
/// that sweeps leave it to the queue.
pub(super) async fn commit_links(deps: &Deps, spec: &Spec, company: &str, works: &[Work]) -> Result<(), SyncError> {
    let now = crate::pipeline::record::now();
    let mut out = Vec::new();
    for w in works {
        if w.key.is_empty() || matches!(w.parent.outcome, Outcome::Filtered | Outcome::FailedEarlier) || !w.touched {
            continue;
        }
        if w.closed {
            out.extend(closed_link(spec, company, w, &now));
            continue;
        }
        out.extend(parent_link(spec, company, w, &now));
        out.extend(child_links(spec, company, w, &now));
    }
    // The links as read before this run's writes: what they replace goes to the history.
    let before = |part: fn(&Work) -> Vec<&Part>| -> HashMap<String, Link> {
        works
            .iter()
            .flat_map(part)
            .filter_map(|p| p.link.clone().map(|l| (l.source_key.clone(), l)))
            .collect()
    };
    let parents = before(|w| vec![&w.parent]);
    let children = before(|w| w.children.iter().collect());
    deps.state.put_links(&out, &[&parents, &children]).await?;
    Ok(())
}

/// Closed in Sales: remember it so sweeps skip the record while F&O stays the same (unless the link says so).
fn closed_link(spec: &Spec, company: &str, w: &Work, now: &str) -> Option<Link> {
    let mut l = old_or_new(w, spec, company, now);
    l.source_version = Some(Mark::Closed.on(&w.unit_hash));
    (w.parent.link.as_ref() != Some(&l)).then_some(l)
}

/// The parent's link, when it differs from the one read: its Sales id, the hash of what Sales has (kept while a
/// write failed, dropped when the order could not be invoiced), its line set once all lines are in, and the
/// failure marker. A parent neither in Sales nor failed gets none.
fn parent_link(spec: &Spec, company: &str, w: &Work, now: &str) -> Option<Link> {
    let any_failure = w.parent.outcome.failed() || w.child_trouble || w.post_trouble.is_some();
    let old = w.parent.link.as_ref();
    let target = w
        .parent
        .id
        .clone()
        .or_else(|| old.map(|l| l.target_key.clone()))
        .unwrap_or_default();
    let target_hash = if w.parent.outcome.ok() && w.post_trouble.is_none() {
        Some(w.parent.hash.clone())
    } else if w.post_trouble.is_some() {
        None
    } else {
        old.and_then(|l| l.target_hash.clone())
    };
    let mut l = link(
        spec.parent_table.link.as_str(),
        company,
        &w.key,
        &target,
        target_hash,
        now,
    );
    l.source_hash = if w.parent.outcome.ok() && !w.child_trouble {
        w.keyset.clone()
    } else {
        old.and_then(|l| l.source_hash.clone())
    };
    l.source_version = any_failure.then(|| Mark::Failed.on(&w.unit_hash));
    let same_as_old = old.is_some_and(|o| {
        o.target_key == l.target_key
            && o.target_hash == l.target_hash
            && o.source_hash == l.source_hash
            && o.source_version == l.source_version
    });
    (!same_as_old && (!target.is_empty() || any_failure)).then_some(l)
}

/// Links of the children written (or found equal) in this run. A deleted "Freight Tax" line leaves a link to
/// nothing, so the same header tax coming back later is written again.
fn child_links(spec: &Spec, company: &str, w: &Work, now: &str) -> Vec<Link> {
    let Some(ct) = &spec.child_table else {
        return Vec::new();
    };
    let gone = w
        .freight_deleted
        .then(|| link(ct.link.as_str(), company, &freight::key(&w.key), "", None, now));
    w.children
        .iter()
        .filter_map(|c| match (&c.outcome, &c.id) {
            (Outcome::Echo | Outcome::Written { .. }, Some(id)) => {
                Some(link(ct.link.as_str(), company, &c.key, id, Some(c.hash.clone()), now))
            }
            _ => None,
        })
        .chain(gone)
        .collect()
}

/// The parent's link as it stands (or a new one to the parent's id), to put a marker on.
fn old_or_new(w: &Work, spec: &Spec, company: &str, now: &str) -> Link {
    match &w.parent.link {
        Some(l) => {
            let mut l = l.clone();
            if let Some(id) = &w.parent.id {
                l.target_key = id.clone();
            }
            l
        }
        None => link(
            spec.parent_table.link.as_str(),
            company,
            &w.key,
            w.parent.id.as_deref().unwrap_or(""),
            None,
            now,
        ),
    }
}

fn link(entity: &str, company: &str, key: &str, target: &str, hash: Option<String>, now: &str) -> Link {
    Link {
        entity: entity.into(),
        company: company.into(),
        system: "fno".into(),
        source_key: key.into(),
        target_key: target.into(),
        source_version: None,
        source_hash: None,
        target_hash: hash,
        synced_at: now.into(),
        previous: None,
    }
}

fn tally(report: &mut RunReport, failures: &mut Vec<Failure>, unit_key: &str, part_key: &str, o: &Outcome) {
    report.read += 1;
    match o {
        Outcome::Filtered => report.skip(Skip::Filtered),
        Outcome::Unchanged => report.skip(Skip::Unchanged),
        Outcome::FailedEarlier => report.skip(Skip::FailedEarlier),
        Outcome::Echo => report.skip(Skip::Echo),
        Outcome::Closed => report.skip(Skip::ClosedInSales),
        Outcome::Written { created } => report.wrote(*created),
        Outcome::Failed { reason, transient } => failures.push(Failure {
            id: unit_key.into(),
            key: part_key.into(),
            reason: reason.clone(),
            transient: *transient,
        }),
        Outcome::Pending => failures.push(Failure {
            id: unit_key.into(),
            key: part_key.into(),
            reason: "was left unprocessed (a p2c bug); it is retried".into(),
            transient: true,
        }),
    }
}

/// Counts every record read and collects the failures, permanent ones first within a unit (so the unit's one
/// queue message goes to the DLQ when retrying cannot help).
pub(super) fn count(spec: &Spec, works: Vec<Work>, report: &mut RunReport) -> Vec<Failure> {
    let mut all = Vec::new();
    for w in works {
        let mut failures = Vec::new();
        match spec.children {
            Children::Lines { .. } => {
                // A line the flow made from its header (the "Freight Tax" line) counts with the header; the
                // header's deleted freight tax line makes the header written.
                let deleted = w.freight_deleted.then_some(Outcome::Written { created: false });
                let derived = w.children.iter().filter(|c| c.derived).map(|c| c.outcome.clone());
                // The header last: on a tie it is the header's own outcome that counts.
                let header = derived
                    .chain(deleted)
                    .chain(std::iter::once(w.parent.outcome.clone()))
                    .max_by_key(Outcome::rank)
                    .unwrap_or(Outcome::Pending);
                tally(report, &mut failures, &w.key, &w.parent.key, &header);
                for c in w.children.iter().filter(|c| !c.derived) {
                    tally(report, &mut failures, &w.key, &c.key, &c.outcome);
                }
                for _ in 0..w.deleted {
                    report.read += 1;
                    report.wrote_delete();
                }
            }
            _ => {
                let worst = w
                    .children
                    .iter()
                    .map(|c| &c.outcome)
                    .chain(std::iter::once(&w.parent.outcome))
                    .max_by_key(|o| o.rank())
                    .cloned()
                    .unwrap_or(Outcome::Pending);
                tally(report, &mut failures, &w.key, &w.key, &worst);
            }
        }
        failures.sort_by_key(|f| f.transient);
        all.extend(failures);
    }
    all
}
