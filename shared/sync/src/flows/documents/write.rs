//! Writing documents to F&O: skip those whose hashes match their links, read F&O's current rows of the rest,
//! plan each document as one change set (create / PATCH the differing fields / nothing = echo), write, plan a
//! race once more from a fresh read, then commit the links. Also the DELETE of lines deleted in Sales.

use std::collections::{HashMap, HashSet};

use p2c_dynamics::{BatchOp, Record};
use p2c_mapping::fno_property;
use p2c_state::Link;

use super::{
    spec::{CHARGE_FIELD, DocFlow, PER_UNIT_DISCOUNT_FIELD, split_line_key},
    transform::Doc,
};
use crate::{
    deps::Deps,
    error::SyncError,
    faults::CrashPoint,
    pipeline::{
        links::TOMBSTONE,
        record::now,
        sink::fno::{
            Key, Plan, WriteError, delete_op, plan, plan_op, read_current, row_has_key, target_fields, write_sets,
        },
    },
    report::{Failure, RunReport, Skip},
};

/// Writes mapped documents and commits their links. Every document ends written, skipped or failed.
pub(super) async fn write_documents(
    deps: &Deps,
    spec: &DocFlow<'_>,
    company: &str,
    docs: Vec<Doc>,
    report: &mut RunReport,
) -> Result<Vec<Failure>, SyncError> {
    let known = Known::read(deps, spec, company, &docs).await?;
    let docs = known.changed(spec, company, docs, report);
    let writer = Writer {
        deps,
        spec,
        company,
        docs: &docs,
    };
    let written = writer.write(&known.linked(&docs), report).await?;
    deps.crashes.check(CrashPoint::AfterTargetWrite)?;
    deps.state
        .put_links(&written.links, &[&known.headers, &known.lines])
        .await?;
    Ok(written.failures)
}

/// The links of the documents' headers and lines, as p2c last wrote them.
struct Known {
    headers: HashMap<String, Link>,
    lines: HashMap<String, Link>,
}

impl Known {
    async fn read(deps: &Deps, spec: &DocFlow<'_>, company: &str, docs: &[Doc]) -> Result<Known, SyncError> {
        let doc_ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
        let headers = deps
            .state
            .get_links(spec.header_entity.as_str(), company, "sales", &doc_ids)
            .await?;
        let line_ids: Vec<String> = docs.iter().flat_map(|d| d.lines.iter().map(|l| l.id.clone())).collect();
        let lines = deps
            .state
            .get_links(spec.line_entity.as_str(), company, "sales", &line_ids)
            .await?;
        Ok(Known { headers, lines })
    }

    /// Drops (and counts) documents whose header and every line hash as p2c last wrote them; notes on the
    /// others the F&O lines to delete because p2c wrote them under another key.
    fn changed(&self, spec: &DocFlow<'_>, company: &str, mut docs: Vec<Doc>, report: &mut RunReport) -> Vec<Doc> {
        docs.retain_mut(|d| {
            if self.unchanged(d) {
                report.skip(Skip::Unchanged);
                return false;
            }
            d.stale = self.stale_lines(spec, company, d);
            true
        });
        docs
    }

    fn unchanged(&self, d: &Doc) -> bool {
        let same = |l: Option<&Link>, key: &str, hash: &str| {
            l.is_some_and(|l| l.target_key == key && l.target_hash.as_deref() == Some(hash))
        };
        same(self.headers.get(&d.id), &d.key_text, &d.hash)
            && d.lines
                .iter()
                .all(|l| same(self.lines.get(&l.id), &l.key_text, &l.hash))
    }

    /// A line p2c wrote under another key of this document (renumbered): its old F&O line goes.
    fn stale_lines(&self, spec: &DocFlow<'_>, company: &str, d: &Doc) -> Vec<Key> {
        let mut stale = Vec::new();
        for l in &d.lines {
            let Some(old) = self.lines.get(&l.id) else { continue };
            if old.target_key == l.key_text || old.source_hash.as_deref() == Some(TOMBSTONE) {
                continue;
            }
            if let Some((hk, n)) = split_line_key(&old.target_key)
                && hk.eq_ignore_ascii_case(&d.number)
                && let Some(k) = spec.line_key(company, hk, n)
            {
                stale.push(k);
            }
        }
        stale
    }

    /// Documents p2c wrote before (header or a line). Those it never wrote need no read of F&O first: if one is
    /// there after all (a crash before its links were committed), its create fails as "already exists" and the
    /// race re-plans it from a fresh read.
    fn linked(&self, docs: &[Doc]) -> HashSet<String> {
        docs.iter()
            .filter(|d| self.headers.contains_key(&d.id) || d.lines.iter().any(|l| self.lines.contains_key(&l.id)))
            .map(|d| d.id.clone())
            .collect()
    }
}

/// F&O's current headers and lines of some documents.
struct Current {
    headers: Vec<Record>,
    lines: Vec<Record>,
}

/// What one document needs in F&O: nothing (it already holds every value: an echo), or one change set.
enum DocPlan {
    Echo,
    Write { ops: Vec<BatchOp>, created: bool },
}

/// What the writes produced: links to commit, and the documents that failed.
#[derive(Default)]
struct Written {
    links: Vec<Link>,
    failures: Vec<Failure>,
}

/// Writes one call's documents (by index into `docs`).
struct Writer<'w> {
    deps: &'w Deps,
    spec: &'w DocFlow<'w>,
    company: &'w str,
    docs: &'w [Doc],
}

impl Writer<'_> {
    /// Compare with F&O, write each document as one change set; a race is planned again once from a fresh read.
    async fn write(&self, linked: &HashSet<String>, report: &mut RunReport) -> Result<Written, SyncError> {
        let mut out = Written::default();
        let mut todo: Vec<usize> = (0..self.docs.len()).collect();
        for attempt in 0..2 {
            if todo.is_empty() {
                break;
            }
            let retry = attempt > 0;
            let keys: Vec<String> = todo
                .iter()
                .filter(|&&i| retry || linked.contains(&self.docs[i].id))
                .map(|&i| self.docs[i].number.clone())
                .collect();
            let current = self.read_current(&keys).await?;
            todo = self.attempt(&todo, &current, !retry, report, &mut out).await;
        }
        Ok(out)
    }

    /// F&O's rows of these documents (by header key), only the fields p2c writes.
    async fn read_current(&self, keys: &[String]) -> Result<Current, SyncError> {
        let (ht, lt) = (self.spec.header, self.spec.line);
        let header_select = target_fields(ht, &[]);
        let line_select = target_fields(lt, &[PER_UNIT_DISCOUNT_FIELD, CHARGE_FIELD])
            .into_iter()
            .filter(|f| fno_property(&lt.target_entity, f).is_some())
            .collect::<Vec<_>>();
        let (deps, company) = (self.deps, self.company);
        let headers = read_current(
            deps,
            &ht.target_entity,
            company,
            &self.spec.header_key_field,
            keys,
            &header_select,
        )
        .await?;
        let lines = read_current(
            deps,
            &lt.target_entity,
            company,
            &self.spec.line_header_field,
            keys,
            &line_select,
        )
        .await?;
        Ok(Current { headers, lines })
    }

    /// Plans and writes the documents in `todo`; returns those that lost a race when `may_retry`.
    async fn attempt(
        &self,
        todo: &[usize],
        current: &Current,
        may_retry: bool,
        report: &mut RunReport,
        out: &mut Written,
    ) -> Vec<usize> {
        let mut sets: Vec<Vec<BatchOp>> = Vec::new();
        let mut planned: Vec<(usize, bool)> = Vec::new();
        for &i in todo {
            match self.plan(&self.docs[i], current) {
                DocPlan::Echo => {
                    report.skip(Skip::Echo);
                    out.links.extend(self.links_of(&self.docs[i]));
                }
                DocPlan::Write { ops, created } => {
                    sets.push(ops);
                    planned.push((i, created));
                }
            }
        }
        let results = write_sets(self.deps, &sets).await;
        let mut again = Vec::new();
        for ((i, created), result) in planned.into_iter().zip(results) {
            let d = &self.docs[i];
            match result {
                Ok(()) => {
                    report.wrote(created);
                    out.links.extend(self.links_of(d));
                }
                Err(e) if e.race && may_retry => again.push(i),
                Err(e) => out.failures.push(self.not_written(d, e)),
            }
        }
        again
    }

    /// The header and every line against F&O's rows, and the DELETE of stale lines F&O still has.
    fn plan(&self, d: &Doc, current: &Current) -> DocPlan {
        let (deps, ht, lt) = (self.deps, self.spec.header, self.spec.line);
        let cur = current.headers.iter().find(|r| row_has_key(r, &d.key));
        let header_plan = plan(&d.body, &d.cleared, &d.key, cur);
        let created = matches!(header_plan, Plan::Create(_));
        let mut ops: Vec<BatchOp> = plan_op(deps, &ht.target_entity, &d.key, &header_plan)
            .into_iter()
            .collect();
        for l in &d.lines {
            let cur = current.lines.iter().find(|r| row_has_key(r, &l.key));
            let line_plan = plan(&l.body, &l.cleared, &l.key, cur);
            ops.extend(plan_op(deps, &lt.target_entity, &l.key, &line_plan));
        }
        for k in &d.stale {
            if current.lines.iter().any(|r| row_has_key(r, k)) {
                ops.push(delete_op(deps, &lt.target_entity, k));
            }
        }
        if ops.is_empty() {
            DocPlan::Echo
        } else {
            DocPlan::Write { ops, created }
        }
    }

    fn not_written(&self, d: &Doc, e: WriteError) -> Failure {
        let reason = format!(
            "{} {} (header and {} lines, written together) was not written: {}",
            self.spec.noun,
            d.number,
            d.lines.len(),
            e.reason
        );
        Failure::new(&d.id, &d.number, reason, e.transient)
    }

    /// Links of a written (or already equal) document: the header's and every line's.
    fn links_of(&self, d: &Doc) -> Vec<Link> {
        let at = now();
        let link = |entity: &str, id: &str, key: &str, hash: &str, version: &Option<String>| Link {
            entity: entity.into(),
            company: self.company.into(),
            system: "sales".into(),
            source_key: id.into(),
            target_key: key.into(),
            source_version: version.clone(),
            source_hash: None,
            target_hash: Some(hash.into()),
            synced_at: at.clone(),
            previous: None,
        };
        let mut out = vec![link(
            self.spec.header_entity.as_str(),
            &d.id,
            &d.key_text,
            &d.hash,
            &d.version,
        )];
        out.extend(
            d.lines
                .iter()
                .map(|l| link(self.spec.line_entity.as_str(), &l.id, &l.key_text, &l.hash, &l.version)),
        );
        out
    }
}

/// What to do about one line deleted in Sales.
enum LineDelete {
    Skip(Skip),
    Fail(Failure),
    Delete { link: Link, key: Key },
}

/// Lines deleted in Sales: DELETE their F&O line (found through the line's link), then tombstone the link.
/// Lines of `deleted_docs` (header keys, lower case) stay in F&O.
pub(super) async fn delete_lines(
    deps: &Deps,
    spec: &DocFlow<'_>,
    company: &str,
    ids: &[String],
    deleted_docs: &HashSet<String>,
    report: &mut RunReport,
) -> Result<Vec<Failure>, SyncError> {
    let mut failures = Vec::new();
    if ids.is_empty() {
        return Ok(failures);
    }
    let links = deps
        .state
        .get_links(spec.line_entity.as_str(), company, "sales", ids)
        .await?;
    let mut todo: Vec<(Link, BatchOp)> = Vec::new();
    for id in ids {
        report.read += 1;
        match line_delete(spec, company, id, links.get(id), deleted_docs)? {
            LineDelete::Skip(why) => report.skip(why),
            LineDelete::Fail(f) => failures.push(f),
            LineDelete::Delete { link, key } => todo.push((link, delete_op(deps, &spec.line.target_entity, &key))),
        }
    }
    let tombstones = send_deletes(deps, todo, report, &mut failures).await;
    deps.state.put_links(&tombstones, &[&links]).await?;
    Ok(failures)
}

/// Decides about one deleted line from its link. An error when the template's line key cannot be filled.
fn line_delete(
    spec: &DocFlow<'_>,
    company: &str,
    id: &str,
    link: Option<&Link>,
    deleted_docs: &HashSet<String>,
) -> Result<LineDelete, SyncError> {
    let Some(link) = link else {
        return Ok(LineDelete::Skip(Skip::GoneFromSales));
    };
    if link.source_hash.as_deref() == Some(TOMBSTONE) {
        return Ok(LineDelete::Skip(Skip::AlreadyDeletedInFno));
    }
    let Some((header_key, number)) = split_line_key(&link.target_key) else {
        let reason = format!(
            "the link of deleted {} line {id} holds {:?}, not <{} number>/<line number>; delete the F&O line by \
             hand",
            spec.noun, link.target_key, spec.noun
        );
        return Ok(LineDelete::Fail(Failure::new(id, &link.target_key, reason, false)));
    };
    if deleted_docs.contains(&header_key.to_ascii_lowercase()) {
        return Ok(LineDelete::Skip(Skip::DeletedWithDocument));
    }
    let Some(key) = spec.line_key(company, header_key, number) else {
        return Err(SyncError::Mapping(format!(
            "{}: the F&O line key {:?} has fields p2c cannot fill",
            spec.line.name, spec.line.target_key
        )));
    };
    Ok(LineDelete::Delete {
        link: link.clone(),
        key,
    })
}

/// Sends each DELETE on its own; returns the links to tombstone, and adds the deletes that failed.
async fn send_deletes(
    deps: &Deps,
    todo: Vec<(Link, BatchOp)>,
    report: &mut RunReport,
    failures: &mut Vec<Failure>,
) -> Vec<Link> {
    let sets: Vec<Vec<BatchOp>> = todo.iter().map(|(_, op)| vec![op.clone()]).collect();
    let results = write_sets(deps, &sets).await;
    let mut tombstones = Vec::new();
    for ((link, _), r) in todo.into_iter().zip(results) {
        match r {
            // 404: F&O no longer has the line (deleted there, or by an earlier try): the goal is reached.
            Ok(()) | Err(WriteError { status: Some(404), .. }) => {
                report.wrote_delete();
                tombstones.push(Link {
                    source_hash: Some(TOMBSTONE.into()),
                    target_hash: None,
                    synced_at: now(),
                    ..link
                });
            }
            Err(e) => failures.push(Failure::new(
                &link.source_key,
                &link.target_key,
                format!("deleting F&O line {}: {}", link.target_key, e.reason),
                e.transient,
            )),
        }
    }
    tombstones
}
