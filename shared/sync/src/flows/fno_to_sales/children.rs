//! Write, second batch: the children of the units whose parent is in Sales (price list items, lines, a header's
//! "Freight Tax" line), the deletes of Sales lines whose F&O line is gone, and after each unit's children what
//! its parent still needs ([`Work::after`]: the state and the columns a create ignores, or Invoiced again). Each
//! child is bound, compared with the Sales child of the same identity and decided as data ([`ChildStep`]): an
//! echo, an update of the fields that differ, or a create with a stable id (followed, without system pricing, by
//! an update of the columns a create ignores).

use std::collections::{HashMap, HashSet};

use p2c_dynamics::{BatchOp, ErrorKind, Record};
use p2c_mapping::Template;
use serde_json::Value;

use super::{
    decide::fail_pending_children,
    freight,
    resolve::{Resolver, read_in},
    spec::{Children, ParentRef, Spec},
    unit::{Outcome, Part, Work, lookup_text, number_text, own_unit_group, product_unit_group, text},
    write::{created_concurrently, stable_id},
};
use crate::{
    deps::Deps,
    error::SyncError,
    pipeline::sink::sales::{self, Pricing, Written, bound_id, changed_fields, same, split_not_valid_for_create},
};

/// What to do with one bound child, given the Sales children of its parent.
enum ChildStep {
    /// Sales has it (same identity): the fields that differ are written; none differ: an echo.
    Update { id: Option<String>, diff: Record },
    /// Not in Sales: created from this body with this stable id; then `after` (columns a create ignores).
    Create { body: Record, id: String, after: Record },
}

/// A write in the batch: (unit, child), or the unit.
enum ChildOp {
    Update(usize, usize),
    Create(usize, usize),
    /// The update right after a child's create.
    CreatedAfter(usize, usize),
    /// A Sales line whose F&O line is gone.
    Delete(usize),
    /// The unit's "Freight Tax" line, its header tax gone.
    FreightDelete(usize),
    /// The parent's update after its children.
    After(usize),
    /// A price list item p2c made earlier under another price list (its product's currency or list changed).
    Replaced(usize),
}

/// The child template and table, and the child's lookup of its parent.
#[derive(Clone, Copy)]
struct Child<'a> {
    template: &'a Template,
    table: &'a sales::Table,
    parent: &'a ParentRef,
}

/// The second batch: children, deletes and parents' updates after their children.
struct ChildWriter<'a> {
    deps: &'a Deps,
    spec: &'a Spec,
    pricing: Pricing,
    child: Option<Child<'a>>,
    ops: Vec<BatchOp>,
    whose: Vec<ChildOp>,
}

/// Writes the children of the units whose parent is in Sales, deletes Sales lines whose F&O line is gone, and
/// sends each parent's update after its children.
pub(super) async fn write_children(
    deps: &Deps,
    spec: &Spec,
    works: &mut [Work],
    resolver: &mut Resolver,
    pricing: Pricing,
) -> Result<(), SyncError> {
    for w in works.iter_mut() {
        if let Outcome::Failed { transient, .. } = w.parent.outcome {
            fail_pending_children(spec, w, transient);
        }
    }
    let mut writer = ChildWriter::of(deps, spec, pricing);
    let todo = match writer.child {
        Some(_) => children_to_write(spec, works),
        None => Vec::new(),
    };
    let mut after_sent: HashSet<usize> = HashSet::new();
    if let (false, Some(child)) = (todo.is_empty(), writer.child) {
        seed_parent_ids(spec, child, works, &todo, resolver);
        let current = writer.read_current(child, works, &todo).await?;
        for &i in &todo {
            let pid = works[i].parent.id.clone().unwrap_or_default().to_lowercase();
            let existing = current.get(&pid).map(Vec::as_slice).unwrap_or_default();
            writer.plan_children(child, i, &mut works[i], existing, resolver);
            writer.plan_deletes(child, i, &mut works[i], existing);
            if writer.plan_after(i, &works[i]) {
                after_sent.insert(i);
            }
        }
    }
    for i in (0..works.len()).filter(|i| !after_sent.contains(i)) {
        writer.plan_after(i, &works[i]);
    }
    if !writer.ops.is_empty() {
        writer.send_and_settle(works).await;
    }
    for w in works.iter_mut() {
        if w.children.iter().any(|c| c.outcome.failed()) {
            w.child_trouble = true;
        }
    }
    Ok(())
}

/// Units whose parent is in Sales (and open) and whose children need work: some pending, or (documents) a
/// line set that changed, or an updated header whose header tax is gone (its "Freight Tax" line may be there).
fn children_to_write(spec: &Spec, works: &[Work]) -> Vec<usize> {
    let lines = matches!(spec.children, Children::Lines { .. });
    (0..works.len())
        .filter(|&i| {
            let w = &works[i];
            let freight_gone = spec.header_tax
                && !w.children.iter().any(|c| c.derived)
                && w.parent.outcome == Outcome::Written { created: false };
            w.parent.outcome.ok()
                && !w.closed
                && w.parent.id.is_some()
                && (w.children.iter().any(Part::pending) || (lines && w.keyset_changed()) || freight_gone)
        })
        .collect()
}

/// The parents' ids go to the resolver: the children bind to them.
fn seed_parent_ids(spec: &Spec, child: Child, works: &[Work], todo: &[usize], resolver: &mut Resolver) {
    for &i in todo {
        let w = &works[i];
        if let (Some(id), Some(v)) = (w.parent.id.as_deref(), w.natural_key(spec)) {
            resolver.seed(&spec.parent_table.set, &child.parent.column, &v, id);
        }
    }
}

impl<'a> ChildWriter<'a> {
    fn of(deps: &'a Deps, spec: &'a Spec, pricing: Pricing) -> ChildWriter<'a> {
        let child = match (&spec.child, &spec.child_table, &spec.parent_ref) {
            (Some(template), Some(table), Some(parent)) => Some(Child {
                template,
                table,
                parent,
            }),
            _ => None,
        };
        ChildWriter {
            deps,
            spec,
            pricing,
            child,
            ops: Vec::new(),
            whose: Vec::new(),
        }
    }

    /// The children Sales holds, by lowercase parent id, for parents that were in Sales before this run.
    async fn read_current(
        &self,
        child: Child<'_>,
        works: &[Work],
        todo: &[usize],
    ) -> Result<HashMap<String, Vec<Record>>, SyncError> {
        let (table, pref) = (child.table, child.parent);
        let parent_ids: Vec<String> = todo
            .iter()
            .filter(|&&i| works[i].existed || works[i].parent.outcome == Outcome::Unchanged)
            .filter_map(|&i| works[i].parent.id.clone())
            .collect();
        let mut current: HashMap<String, Vec<Record>> = HashMap::new();
        if parent_ids.is_empty() {
            return Ok(current);
        }
        let mut select = table.select.clone();
        let freight_cols = freight::COLUMNS
            .iter()
            .map(|c| c.to_string())
            .filter(|_| self.spec.header_tax);
        let extra = [pref.value_col.clone()]
            .into_iter()
            .chain(self.spec.line_number_col.iter().cloned())
            .chain(freight_cols);
        for c in extra {
            if !select.contains(&c) {
                select.push(c);
            }
        }
        for r in read_in(self.deps, &table.set, &pref.value_col, &parent_ids, &select, None).await? {
            if let Some(p) = text(&r, &pref.value_col) {
                current.entry(p.to_lowercase()).or_default().push(r);
            }
        }
        Ok(current)
    }

    /// Binds each pending child of unit `i` and plans its write against the Sales children of its parent (each
    /// Sales child matches one F&O child at most).
    fn plan_children(&mut self, child: Child, i: usize, w: &mut Work, existing: &[Record], resolver: &Resolver) {
        let pid = w.parent.id.clone().unwrap_or_default().to_lowercase();
        let parent_group = own_unit_group(resolver, &w.parent);
        let mut matched: HashSet<usize> = HashSet::new();
        for (j, c) in w.children.iter_mut().enumerate() {
            if !c.pending() {
                continue;
            }
            let Some(mapped) = &c.mapped else { continue };
            // A line's unit is one of its product's unit group; a price list item's, its product's.
            let group = match &self.spec.children {
                Children::SameRecord => parent_group.clone(),
                _ => product_unit_group(resolver, mapped),
            };
            let bound = child
                .template
                .bind(&c.key, mapped, |target, v| resolver.lookup(target, v, group.as_deref()));
            let body = match bound {
                Ok(b) => b,
                Err(u) => {
                    c.outcome = Outcome::unresolved(&u);
                    continue;
                }
            };
            match self.child_step(child, &pid, &body, c.derived, existing, &mut matched) {
                ChildStep::Update { id, diff } => {
                    c.id = id;
                    if diff.is_empty() {
                        c.outcome = Outcome::Echo;
                    } else if let Some(id) = &c.id {
                        self.ops.push(child.table.update_op(self.deps, id, diff));
                        self.whose.push(ChildOp::Update(i, j));
                    }
                }
                ChildStep::Create { body, id, after } => {
                    if let Some(old) = self.replaced(child, c, &id, existing) {
                        self.ops.push(child.table.delete_op(self.deps, &old));
                        self.whose.push(ChildOp::Replaced(i));
                    }
                    self.ops.push(child.table.create_op(self.deps, body));
                    self.whose.push(ChildOp::Create(i, j));
                    if !after.is_empty() {
                        self.ops.push(child.table.update_op(self.deps, &id, after));
                        self.whose.push(ChildOp::CreatedAfter(i, j));
                    }
                }
            }
            c.body = Some(body);
        }
    }

    /// The item p2c made for this product under another price list, still in Sales, when the item is created
    /// anew (a product is in the one list the rule or the mapping names, so the old item goes).
    fn replaced(&self, child: Child, c: &Part, new_id: &str, existing: &[Record]) -> Option<String> {
        let same_record = matches!(self.spec.children, Children::SameRecord);
        let old = c
            .linked_id()
            .filter(|old| same_record && !old.eq_ignore_ascii_case(new_id))?;
        existing
            .iter()
            .filter_map(|cur| text(cur, &child.table.pk))
            .find(|k| k.eq_ignore_ascii_case(old))
    }

    /// Decides a bound child's write: the first unmatched Sales child of the same identity is updated (the echo
    /// rule), or a new one is created with an id stable for its parent and identity. A "Freight Tax" line's
    /// identity is its flag; no other child ever matches a Sales freight tax line.
    fn child_step(
        &self,
        child: Child,
        pid: &str,
        body: &Record,
        derived: bool,
        existing: &[Record],
        matched: &mut HashSet<usize>,
    ) -> ChildStep {
        let table = child.table;
        let found = existing.iter().enumerate().find(|(k, cur)| {
            !matched.contains(k)
                && match derived {
                    true => freight::is_freight(cur),
                    false => !freight::is_freight(cur) && same_identity(self.spec, table, body, cur),
                }
        });
        if let Some((k, cur)) = found {
            matched.insert(k);
            return ChildStep::Update {
                id: text(cur, &table.pk),
                diff: changed_fields(table, body, cur, self.pricing),
            };
        }
        let mut parts = vec![table.set.clone(), pid.to_string()];
        match derived {
            true => parts.push(freight::KEY.to_string()),
            false => parts.extend(child_identity(self.spec, table, body)),
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let id = stable_id(&parts);
        let mut create = body.clone();
        create.insert(table.pk.clone(), Value::String(id.clone()));
        let after = split_not_valid_for_create(&mut create, self.pricing);
        ChildStep::Create {
            body: create,
            id,
            after,
        }
    }

    /// Lines gone from the F&O document are deleted (Sales lines without a line number are not p2c's), and so is
    /// a "Freight Tax" line whose header tax is gone.
    fn plan_deletes(&mut self, child: Child, i: usize, w: &mut Work, existing: &[Record]) {
        let lines = matches!(self.spec.children, Children::Lines { .. });
        let (true, Some(col)) = (lines, &self.spec.line_number_col) else {
            return;
        };
        let freight_gone = self.spec.header_tax && !w.children.iter().any(|c| c.derived);
        for cur in existing {
            let Some(id) = text(cur, &child.table.pk) else { continue };
            if freight::is_freight(cur) {
                if freight_gone {
                    self.ops.push(child.table.delete_op(self.deps, &id));
                    self.whose.push(ChildOp::FreightDelete(i));
                }
                continue;
            }
            let Some(n) = number_text(cur.get(col)) else { continue };
            if !w.numbers.contains(&n) {
                self.ops.push(child.table.delete_op(self.deps, &id));
                self.whose.push(ChildOp::Delete(i));
            }
        }
    }

    /// The parent's update after its children ([`Work::after`]), once the parent is in Sales; true when planned.
    fn plan_after(&mut self, i: usize, w: &Work) -> bool {
        let (Some(after), Some(id), true) = (&w.after, &w.parent.id, w.parent.outcome.ok()) else {
            return false;
        };
        let t = &self.spec.parent_table;
        self.ops.push(t.update_op(self.deps, id, after.clone()));
        self.whose.push(ChildOp::After(i));
        true
    }

    /// Sends the batch and records what Sales answered on the children and their units.
    async fn send_and_settle(self, works: &mut [Work]) {
        let results = sales::send(self.deps, &self.ops).await;
        let noun = self.child.map_or("record", |c| c.template.record_noun());
        for (op, r) in self.whose.into_iter().zip(results) {
            match op {
                ChildOp::Update(i, j) => settle_child(noun, &mut works[i], j, false, r),
                ChildOp::Create(i, j) => settle_child(noun, &mut works[i], j, true, r),
                ChildOp::CreatedAfter(i, j) => settle_created_after(noun, &mut works[i], j, r),
                ChildOp::Delete(i) => settle_delete(self.spec, &mut works[i], r, false),
                ChildOp::FreightDelete(i) => settle_delete(self.spec, &mut works[i], r, true),
                ChildOp::After(i) => settle_after(self.spec, &mut works[i], r),
                ChildOp::Replaced(i) => settle_replaced(self.spec, &mut works[i], r),
            }
        }
    }
}

/// Records what Sales answered for child `j` of a unit; a failure is trouble for the unit's line set.
fn settle_child(noun: &str, w: &mut Work, j: usize, create: bool, r: Written) {
    let c = &mut w.children[j];
    match r {
        Written::Ok(id) => {
            if create {
                c.id = id;
            }
            c.outcome = if c.id.is_some() {
                Outcome::Written { created: create }
            } else {
                Outcome::fail(format!("{}: Sales created it but did not say its id", c.key), true)
            };
        }
        Written::Failed { kind, .. } if create && kind == ErrorKind::Duplicate => {
            c.outcome = created_concurrently(noun, &c.key);
            w.child_trouble = true;
        }
        Written::Failed { reason, transient, .. } => {
            c.outcome = Outcome::fail(format!("{noun} {}: {reason}", c.key), transient);
            w.child_trouble = true;
        }
    }
}

/// The update right after a child's create failed: the child is in Sales without those columns.
fn settle_created_after(noun: &str, w: &mut Work, j: usize, r: Written) {
    let c = &mut w.children[j];
    if let (Written::Failed { reason, transient, .. }, Outcome::Written { .. }) = (r, &c.outcome) {
        let why = format!(
            "{noun} {}: created, but the update after its create failed: {reason}",
            c.key
        );
        c.outcome = Outcome::fail(why, transient);
        w.child_trouble = true;
    }
}

/// Records the delete of a price list item replaced by one under another list (already gone is fine too).
fn settle_replaced(spec: &Spec, w: &mut Work, r: Written) {
    if let Written::Failed {
        reason,
        transient,
        status,
        ..
    } = r
        && status != Some(404)
    {
        tracing::warn!(flow = %spec.flow, key = %w.key, transient, reason = %reason, "could not delete the price list item a product left");
        w.child_trouble = true;
    }
}

/// Records the delete of a Sales line whose F&O line (or header tax) is gone (already gone counts as deleted).
/// A line counts as a record deleted; the freight tax line goes with its header.
fn settle_delete(spec: &Spec, w: &mut Work, r: Written, freight_line: bool) {
    match r {
        Written::Ok(_) | Written::Failed { status: Some(404), .. } => match freight_line {
            true => w.freight_deleted = true,
            false => w.deleted += 1,
        },
        Written::Failed { reason, transient, .. } => {
            tracing::warn!(flow = %spec.flow, key = %w.key, transient, reason = %reason, "could not delete a Sales line whose F&O line is gone");
            w.child_trouble = true;
        }
    }
}

/// The parent's update after its children (its state, the columns its create ignored, Invoiced again): a failure
/// fails the parent, which is retried.
fn settle_after(spec: &Spec, w: &mut Work, r: Written) {
    let only_state = w
        .after
        .as_ref()
        .is_some_and(|a| a.keys().all(|k| k == "statecode" || k == "statuscode"));
    match r {
        Written::Ok(_) => w.after = None,
        // Another worker published the product first (two deliveries of one message): the state is as asked.
        Written::Failed {
            kind: ErrorKind::AlreadyInState,
            ..
        } if only_state => w.after = None,
        Written::Failed { reason, transient, .. } => {
            let cols: Vec<&str> = w.after.iter().flat_map(|a| a.keys()).map(String::as_str).collect();
            let why = format!(
                "{} {}: written, but the update after it ({}) failed: {reason}",
                spec.parent.record_noun(),
                w.key,
                cols.join(", ")
            );
            w.parent.outcome = Outcome::fail(why, transient);
        }
    }
}

/// Whether a current Sales child is the record `body` describes: the same values in every identity field.
fn same_identity(spec: &Spec, table: &sales::Table, body: &Record, current: &Record) -> bool {
    spec.child_identity
        .iter()
        .all(|k| match p2c_mapping::lookup_targets(k) {
            Some((nav, _)) => {
                let col = format!("_{nav}_value");
                let want = body
                    .iter()
                    .find(|(bk, _)| table.bind_cols.get(*bk) == Some(&col))
                    .and_then(|(_, v)| bound_id(v));
                match (want, current.get(&col).and_then(Value::as_str)) {
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    _ => false,
                }
            }
            None => body.get(k).is_some_and(|v| same(v, current.get(k))),
        })
}

/// The values `same_identity` matches a child on, as text (lookups by the bound id): part of its stable id.
fn child_identity(spec: &Spec, table: &sales::Table, body: &Record) -> Vec<String> {
    spec.child_identity
        .iter()
        .map(|k| match p2c_mapping::lookup_targets(k) {
            Some((nav, _)) => {
                let col = format!("_{nav}_value");
                body.iter()
                    .find(|(bk, _)| table.bind_cols.get(*bk) == Some(&col))
                    .and_then(|(_, v)| bound_id(v))
                    .unwrap_or_default()
                    .to_string()
            }
            None => body.get(k).and_then(lookup_text).unwrap_or_default(),
        })
        .collect()
}
