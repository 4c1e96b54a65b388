//! Write: the touched units go to Sales. First the parents (products, headers) in one batch, then their
//! children (price list items, lines) in another, deleting Sales lines whose F&O line is gone; invoices then set
//! their orders Invoiced. Each record is bound, compared with what Sales holds now, and decided as data
//! ([`ParentStep`], [`ChildStep`]) before anything is sent: closed (left alone), an echo (nothing differs), an
//! update of the fields that differ, or a create with a stable id. What Sales answers is then recorded on the
//! parts, and what a parent still needs (a create again, its state) is sent after.

use std::collections::{HashMap, HashSet};

use p2c_dynamics::{BatchOp, Record};
use p2c_mapping::{LookupTarget, Template, content_hash, split_state};
use serde_json::{Value, json};

use super::{
    decide::fail_pending_children,
    resolve::{Resolver, read_in},
    spec::{Children, ParentRef, Spec},
    unit::{Outcome, Work, lookup_text, number_text, own_unit_group, product_unit_group, text},
};
use crate::{
    deps::{Deps, ScopeOnce},
    error::SyncError,
    ownership::{BusinessUnitScope, Owner},
    pipeline::sink::sales::{self, Written, bound_id, changed_fields, is_closed, same},
};

/// Where a company's owned Sales records (orders, invoices) live: its business unit (part of their stable ids)
/// and the units whose records are the company's (read when a record is looked for by number). Their owner when
/// p2c creates them, the unit's default team, is read when a create needs it (`Deps::default_team_id`).
pub(super) struct CompanyUnit {
    pub company: String,
    pub unit: String,
    pub scope: ScopeOnce,
}
use p2c_dynamics::ErrorKind;

// ---- Parents --------------------------------------------------------------------------------------------

/// What to do with one parent, given what Sales holds now.
enum ParentStep {
    /// Nothing: not pending (an unchanged parent read only to see whether it is closed), or it did not bind.
    Nothing,
    /// Closed in Sales (read-only): neither it nor its pending children are written.
    Closed { id: Option<String> },
    /// In Sales already: the fields that differ are written; none differ: an echo.
    Update { id: Option<String>, diff: Record },
    /// Not in Sales: created from this body.
    Create(Record),
}

/// A parent write in a batch.
enum ParentOp {
    Update,
    /// A create, with the state to set once it is created (Dataverse refuses a non-default state on create).
    Create {
        state: Option<Record>,
    },
}

/// What a parent still needs once Sales answered its write.
enum AfterWrite {
    Done,
    /// Deleted in Sales since it was read: create it again.
    Recreate,
    SetState {
        id: String,
        state: Record,
    },
}

/// Binds, compares and writes the parents of the touched units (the echo rule, closed records, stable ids).
/// `company` is set for owned tables (orders, invoices).
pub(super) async fn write_parents(
    deps: &Deps,
    spec: &Spec,
    company: Option<&CompanyUnit>,
    works: &mut [Work],
    resolver: &Resolver,
) -> Result<(), SyncError> {
    bind_parents(spec, works, resolver);
    let todo = parents_to_compare(spec, works);
    if todo.is_empty() {
        return Ok(());
    }
    let current = CurrentParents::read(deps, spec, company, works, &todo).await?;
    let mut batch = ParentBatch::new(deps, spec, company, resolver);
    let steps: Vec<(usize, ParentStep)> = todo
        .iter()
        .map(|&i| (i, parent_step(spec, &works[i], current.of(spec, &works[i]))))
        .collect();
    if steps.iter().any(|(_, s)| matches!(s, ParentStep::Create(_))) {
        batch.read_owner().await?;
    }
    for (i, step) in steps {
        batch.plan(i, &mut works[i], step);
    }
    let team = batch.team.clone();
    let mut states = Vec::new();
    let mut recreate = Vec::new();
    for (i, op, r) in batch.send().await {
        match settle_parent(spec, &mut works[i], op, r) {
            AfterWrite::Done => {}
            AfterWrite::Recreate => recreate.push(i),
            AfterWrite::SetState { id, state } => states.push((i, id, state)),
        }
    }
    if !recreate.is_empty() {
        let mut batch = ParentBatch::new(deps, spec, company, resolver);
        batch.team = team;
        batch.read_owner().await?;
        states.extend(recreate_parents(spec, batch, works, recreate).await);
    }
    set_states(deps, spec, works, states).await;
    Ok(())
}

/// Binds every pending parent's payload (lookups as `@odata.bind`), or fails it with the lookup that is missing.
fn bind_parents(spec: &Spec, works: &mut [Work], resolver: &Resolver) {
    for w in works.iter_mut().filter(|w| w.parent.pending()) {
        let Some(mapped) = &w.parent.mapped else { continue };
        let group = own_unit_group(resolver, &w.parent);
        match spec
            .parent
            .bind(&w.key, mapped, |target, v| resolver.lookup(target, v, group.as_deref()))
        {
            Ok(body) => w.parent.body = Some(body),
            Err(u) => w.parent.outcome = Outcome::unresolved(&u),
        }
    }
}

/// The parents to compare with Sales: pending ones that bound, and unchanged parents of changed children
/// where the table can be closed in Sales (their lines are then read-only).
fn parents_to_compare(spec: &Spec, works: &[Work]) -> Vec<usize> {
    (0..works.len())
        .filter(|&i| {
            let p = &works[i].parent;
            (p.pending() && p.body.is_some())
                || (works[i].touched && spec.parent_table.writes_state && p.outcome == Outcome::Unchanged)
        })
        .collect()
}

/// The parents Sales holds now: by linked id, then by natural key for the rest.
struct CurrentParents {
    /// Lowercase id → row.
    by_id: HashMap<String, Record>,
    /// Lowercase natural key → row.
    by_key: HashMap<String, Record>,
}

impl CurrentParents {
    async fn read(
        deps: &Deps,
        spec: &Spec,
        company: Option<&CompanyUnit>,
        works: &[Work],
        todo: &[usize],
    ) -> Result<CurrentParents, SyncError> {
        let t = &spec.parent_table;
        let ids: Vec<String> = todo
            .iter()
            .filter_map(|&i| works[i].parent.linked_id().map(str::to_string))
            .collect();
        let mut by_id: HashMap<String, Record> = HashMap::new();
        if !ids.is_empty() {
            for r in deps.sales.get_by_ids(&t.set, &t.pk, &ids, &t.select).await? {
                if let Some(id) = text(&r, &t.pk) {
                    by_id.insert(id.to_lowercase(), r);
                }
            }
        }
        let unknown: Vec<String> = todo
            .iter()
            .filter(|&&i| {
                works[i]
                    .parent
                    .linked_id()
                    .is_none_or(|id| !by_id.contains_key(&id.to_lowercase()))
            })
            .filter_map(|&i| works[i].natural_key(spec))
            .collect();
        let scope = match company {
            Some(c) if !unknown.is_empty() => Some(c.scope.get(deps).await?),
            _ => None,
        };
        let by_key = read_by_natural_key(deps, spec, scope, &unknown).await?;
        Ok(CurrentParents { by_id, by_key })
    }

    /// The Sales record of a unit's parent, if Sales has one.
    fn of(&self, spec: &Spec, w: &Work) -> Option<&Record> {
        w.parent
            .linked_id()
            .and_then(|id| self.by_id.get(&id.to_lowercase()))
            .or_else(|| w.natural_key(spec).and_then(|k| self.by_key.get(&k.to_lowercase())))
    }
}

/// Parents by natural key, among the company's records where the table is owned: those of its business unit and
/// the units below it, as Sales → F&O reads them (first one per key).
async fn read_by_natural_key(
    deps: &Deps,
    spec: &Spec,
    scope: Option<&BusinessUnitScope>,
    keys: &[String],
) -> Result<HashMap<String, Record>, SyncError> {
    let t = &spec.parent_table;
    let mut by_key: HashMap<String, Record> = HashMap::new();
    if keys.is_empty() {
        return Ok(by_key);
    }
    let mut select = t.select.clone();
    if scope.is_some() && !select.iter().any(|c| c == "_owningbusinessunit_value") {
        select.push("_owningbusinessunit_value".into());
    }
    let filter = scope.and_then(BusinessUnitScope::filter);
    for r in read_in(deps, &t.set, &spec.natural_key, keys, &select, filter.as_deref()).await? {
        if scope.is_some_and(|s| !s.owns(&r)) {
            continue;
        }
        if let Some(k) = r.get(&spec.natural_key).and_then(lookup_text) {
            by_key.entry(k.to_lowercase()).or_insert(r);
        }
    }
    Ok(by_key)
}

/// Decides what to do with a parent given its Sales record (the echo rule: only fields that differ).
fn parent_step(spec: &Spec, w: &Work, current: Option<&Record>) -> ParentStep {
    let t = &spec.parent_table;
    if let Some(cur) = current.filter(|c| is_closed(t, c)) {
        return ParentStep::Closed { id: text(cur, &t.pk) };
    }
    let Some(body) = w.parent.body.clone().filter(|_| w.parent.pending()) else {
        return ParentStep::Nothing;
    };
    match current {
        Some(cur) => {
            let mut diff = changed_fields(t, &body, cur);
            // It was found by this key (ignoring case): never rename it.
            diff.remove(&spec.natural_key);
            ParentStep::Update {
                id: text(cur, &t.pk),
                diff,
            }
        }
        None => ParentStep::Create(body),
    }
}

/// Parent writes sent as one batch, and whose each is.
struct ParentBatch<'a> {
    deps: &'a Deps,
    spec: &'a Spec,
    company: Option<&'a CompanyUnit>,
    /// The default team of the company's business unit, once a create needs it.
    team: Option<String>,
    /// What the run found in Sales: an invoice's order (and so its owner).
    resolver: &'a Resolver,
    ops: Vec<BatchOp>,
    whose: Vec<(usize, ParentOp)>,
}

impl<'a> ParentBatch<'a> {
    fn new(
        deps: &'a Deps,
        spec: &'a Spec,
        company: Option<&'a CompanyUnit>,
        resolver: &'a Resolver,
    ) -> ParentBatch<'a> {
        ParentBatch {
            deps,
            spec,
            company,
            team: None,
            resolver,
            ops: Vec::new(),
            whose: Vec::new(),
        }
    }

    /// Reads (once per process) the default team that owns what this batch creates for the company.
    async fn read_owner(&mut self) -> Result<(), SyncError> {
        if let (Some(c), None) = (self.company, &self.team) {
            self.team = Some(self.deps.default_team_id(&c.company).await?);
        }
        Ok(())
    }

    /// The owner of a new record of an owned table: the company's default team; an invoice, its order's owner
    /// (spec/templates.md 4) when its order is in Sales.
    fn owner_of(&self, w: &Work) -> Option<Owner> {
        let team = self.team.clone()?;
        let order_owner = w
            .parent
            .mapped_text(ORDER_OF_INVOICE)
            .filter(|_| self.spec.closes_order)
            .and_then(|o| self.resolver.found("salesorders", "ordernumber", &o))
            .and_then(|f| Owner::of_row(&f.row));
        Some(order_owner.unwrap_or(Owner::Team(team)))
    }

    /// Records a step on the unit (closed, echo) or adds its write to the batch.
    fn plan(&mut self, i: usize, w: &mut Work, step: ParentStep) {
        match step {
            ParentStep::Nothing => {}
            ParentStep::Closed { id } => {
                w.closed = true;
                w.existed = true;
                w.parent.id = id;
                for p in std::iter::once(&mut w.parent).chain(w.children.iter_mut()) {
                    if p.pending() {
                        p.outcome = Outcome::Closed;
                    }
                }
            }
            ParentStep::Update { id, diff } => {
                w.existed = true;
                w.parent.id = id;
                if diff.is_empty() {
                    w.parent.outcome = Outcome::Echo;
                } else if let Some(id) = &w.parent.id {
                    let t = &self.spec.parent_table;
                    self.ops.push(t.update_op(self.deps, id, diff));
                    self.whose.push((i, ParentOp::Update));
                }
            }
            ParentStep::Create(body) => self.create(i, w, body),
        }
    }

    /// A create: with its owner where the table is owned, and its stable id.
    fn create(&mut self, i: usize, w: &Work, body: Record) {
        let (spec, t) = (self.spec, &self.spec.parent_table);
        let owner = self.owner_of(w).filter(|_| spec.owned);
        let (mut body, state) = create_body(body, owner.as_ref());
        if let Some(k) = w.natural_key(spec) {
            let unit = self.company.map_or("", |c| c.unit.as_str());
            body.insert(t.pk.clone(), Value::String(stable_id(&[&t.set, unit, &k])));
        }
        self.ops.push(t.create_op(self.deps, body));
        self.whose.push((i, ParentOp::Create { state }));
    }

    async fn send(self) -> Vec<(usize, ParentOp, Written)> {
        let results = sales::send(self.deps, &self.ops).await;
        self.whose
            .into_iter()
            .zip(results)
            .map(|((i, op), r)| (i, op, r))
            .collect()
    }
}

/// Records what Sales answered for a parent write, and says what the parent still needs.
fn settle_parent(spec: &Spec, w: &mut Work, op: ParentOp, r: Written) -> AfterWrite {
    let noun = spec.parent.record_noun();
    match (op, r) {
        (ParentOp::Update, Written::Ok(_)) => w.parent.outcome = Outcome::Written { created: false },
        (ParentOp::Update, Written::Failed { status: Some(404), .. }) => return AfterWrite::Recreate,
        (ParentOp::Create { state }, Written::Ok(Some(id))) => {
            w.existed = false;
            w.parent.id = Some(id.clone());
            w.parent.outcome = Outcome::Written { created: true };
            if let Some(state) = state {
                return AfterWrite::SetState { id, state };
            }
        }
        (ParentOp::Create { .. }, Written::Ok(None)) => w.parent.outcome = no_id(spec, &w.key),
        (
            ParentOp::Create { .. },
            Written::Failed {
                kind: ErrorKind::Duplicate,
                ..
            },
        ) => {
            w.parent.outcome = created_concurrently(noun, &w.key);
        }
        (_, Written::Failed { reason, transient, .. }) => {
            w.parent.outcome = Outcome::fail(format!("{noun} {}: {reason}", w.key), transient)
        }
    }
    AfterWrite::Done
}

/// Creates again the parents deleted in Sales since they were read; returns the states still to set.
async fn recreate_parents(
    spec: &Spec,
    mut batch: ParentBatch<'_>,
    works: &mut [Work],
    recreate: Vec<usize>,
) -> Vec<(usize, String, Record)> {
    for i in recreate {
        if let Some(body) = works[i].parent.body.clone() {
            batch.create(i, &works[i], body);
        }
    }
    let mut states = Vec::new();
    for (i, op, r) in batch.send().await {
        if let AfterWrite::SetState { id, state } = settle_parent(spec, &mut works[i], op, r) {
            states.push((i, id, state));
        }
    }
    states
}

/// A state other than the default one is set right after the create (Dataverse refuses it on create).
async fn set_states(deps: &Deps, spec: &Spec, works: &mut [Work], states: Vec<(usize, String, Record)>) {
    if states.is_empty() {
        return;
    }
    let t = &spec.parent_table;
    let ops: Vec<BatchOp> = states
        .iter()
        .map(|(_, id, state)| t.update_op(deps, id, state.clone()))
        .collect();
    for ((i, _, _), r) in states.iter().zip(sales::send(deps, &ops).await) {
        if let Written::Failed { reason, transient, .. } = r {
            let why = format!(
                "{} {}: created, but its state could not be set: {reason}",
                spec.parent.record_noun(),
                works[*i].key
            );
            works[*i].parent.outcome = Outcome::fail(why, transient);
        }
    }
}

/// A create body: its owner (Dataverse puts the record in the owner's business unit; `owningbusinessunit` itself
/// is read-only unless the organization allows ownership across business units); state moved out unless it is
/// the default state.
fn create_body(mut body: Record, owner: Option<&Owner>) -> (Record, Option<Record>) {
    if let Some(owner) = owner {
        body.insert("ownerid@odata.bind".into(), Value::String(owner.bind()));
    }
    let state = split_state(&mut body);
    match state {
        // State 0 is what a create gets anyway; its status is valid on create.
        Some(s) if s.get("statecode").and_then(Value::as_i64) == Some(0) => {
            if let Some(st) = s.get("statuscode") {
                body.insert("statuscode".into(), st.clone());
            }
            (body, None)
        }
        other => (body, other),
    }
}

/// The Sales id a new record is created with: derived from what identifies it (its table, the business unit for
/// owned tables, its natural key; for a child, its parent and identity), never random. Two workers creating
/// the same record at once (an SQS message delivered twice, a replay racing the sweep) or a create retried
/// after a timeout that did reach Sales then collide on the primary key instead of making a duplicate that
/// no later lookup can tell apart: Sales has no unique key on `productnumber` or `ordernumber`.
fn stable_id(parts: &[&str]) -> String {
    let mut r = Record::new();
    let parts: Vec<String> = parts.iter().map(|p| p.trim().to_lowercase()).collect();
    r.insert("p2c-sales-id".into(), json!(parts));
    let hex = content_hash(&r);
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = hex
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string()
}

fn created_concurrently(noun: &str, key: &str) -> Outcome {
    Outcome::fail(
        format!(
            "{noun} {key}: another worker created it at the same moment (Sales already has its id); it is \
             retried from the queue, where it is found and updated"
        ),
        true,
    )
}

/// Sales answered a create without the new record's id: a transient failure, retried from the queue.
fn no_id(spec: &Spec, key: &str) -> Outcome {
    Outcome::fail(
        format!(
            "{} {key}: Sales created it but did not say its id",
            spec.parent.record_noun()
        ),
        true,
    )
}

// ---- Children -------------------------------------------------------------------------------------------

/// What to do with one bound child, given the Sales children of its parent.
enum ChildStep {
    /// Sales has it (same identity): the fields that differ are written; none differ: an echo.
    Update { id: Option<String>, diff: Record },
    /// Not in Sales: created from this body (with its stable id).
    Create(Record),
}

/// A child write in a batch: (unit, child) or, for a delete, the unit.
enum ChildOp {
    Update(usize, usize),
    Create(usize, usize),
    Delete(usize),
}

/// What writing a flow's children needs: the child template and table, and the child's lookup of its parent.
struct ChildWriter<'a> {
    deps: &'a Deps,
    spec: &'a Spec,
    template: &'a Template,
    table: &'a sales::Table,
    parent: &'a ParentRef,
    ops: Vec<BatchOp>,
    whose: Vec<ChildOp>,
}

/// Writes the children of the units whose parent is in Sales, and deletes Sales lines whose F&O line is gone.
pub(super) async fn write_children(
    deps: &Deps,
    spec: &Spec,
    works: &mut [Work],
    resolver: &mut Resolver,
) -> Result<(), SyncError> {
    let Some(mut writer) = ChildWriter::of(deps, spec) else {
        return Ok(());
    };
    let todo = children_to_write(spec, works);
    for w in works.iter_mut() {
        if let Outcome::Failed { transient, .. } = w.parent.outcome {
            fail_pending_children(spec, w, transient);
        }
    }
    if todo.is_empty() {
        return Ok(());
    }
    writer.seed_parent_ids(works, &todo, resolver);
    let current = writer.read_current(works, &todo).await?;
    for &i in &todo {
        let pid = works[i].parent.id.clone().unwrap_or_default().to_lowercase();
        let existing = current.get(&pid).map(Vec::as_slice).unwrap_or_default();
        writer.plan_children(i, &mut works[i], existing, resolver);
        writer.plan_deletes(i, &works[i], existing);
    }
    writer.send_and_settle(works).await;
    for w in works.iter_mut() {
        if w.children.iter().any(|c| c.outcome.failed()) {
            w.child_trouble = true;
        }
    }
    Ok(())
}

/// Units whose parent is in Sales (and open) and whose children need work: some pending, or (documents) a
/// line set that changed.
fn children_to_write(spec: &Spec, works: &[Work]) -> Vec<usize> {
    let lines = matches!(spec.children, Children::Lines { .. });
    (0..works.len())
        .filter(|&i| {
            let w = &works[i];
            w.parent.outcome.ok()
                && !w.closed
                && w.parent.id.is_some()
                && (w.children.iter().any(|c| c.pending()) || (lines && w.keyset_changed()))
        })
        .collect()
}

impl<'a> ChildWriter<'a> {
    fn of(deps: &'a Deps, spec: &'a Spec) -> Option<ChildWriter<'a>> {
        let (Some(template), Some(table), Some(parent)) = (&spec.child, &spec.child_table, &spec.parent_ref) else {
            return None;
        };
        Some(ChildWriter {
            deps,
            spec,
            template,
            table,
            parent,
            ops: Vec::new(),
            whose: Vec::new(),
        })
    }

    /// The parents' ids go to the resolver: the children bind to them.
    fn seed_parent_ids(&self, works: &[Work], todo: &[usize], resolver: &mut Resolver) {
        for &i in todo {
            let w = &works[i];
            if let (Some(id), Some(v)) = (w.parent.id.as_deref(), w.natural_key(self.spec)) {
                resolver.seed(&self.spec.parent_table.set, &self.parent.column, &v, id);
            }
        }
    }

    /// The children Sales holds, by lowercase parent id, for parents that were in Sales before this run.
    async fn read_current(&self, works: &[Work], todo: &[usize]) -> Result<HashMap<String, Vec<Record>>, SyncError> {
        let (table, pref) = (self.table, self.parent);
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
        for c in [&pref.value_col].into_iter().chain(self.spec.line_number_col.iter()) {
            if !select.contains(c) {
                select.push(c.clone());
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
    fn plan_children(&mut self, i: usize, w: &mut Work, existing: &[Record], resolver: &Resolver) {
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
            let bound = self
                .template
                .bind(&c.key, mapped, |target, v| resolver.lookup(target, v, group.as_deref()));
            let body = match bound {
                Ok(b) => b,
                Err(u) => {
                    c.outcome = Outcome::unresolved(&u);
                    continue;
                }
            };
            match self.child_step(&pid, &body, existing, &mut matched) {
                ChildStep::Update { id, diff } => {
                    c.id = id;
                    if diff.is_empty() {
                        c.outcome = Outcome::Echo;
                    } else if let Some(id) = &c.id {
                        self.ops.push(self.table.update_op(self.deps, id, diff));
                        self.whose.push(ChildOp::Update(i, j));
                    }
                }
                ChildStep::Create(create) => {
                    self.ops.push(self.table.create_op(self.deps, create));
                    self.whose.push(ChildOp::Create(i, j));
                }
            }
            c.body = Some(body);
        }
    }

    /// Decides a bound child's write: the first unmatched Sales child of the same identity is updated (the echo
    /// rule), or a new one is created with an id stable for its parent and identity.
    fn child_step(&self, pid: &str, body: &Record, existing: &[Record], matched: &mut HashSet<usize>) -> ChildStep {
        let table = self.table;
        let found = existing
            .iter()
            .enumerate()
            .find(|(k, cur)| !matched.contains(k) && same_identity(self.spec, table, body, cur));
        if let Some((k, cur)) = found {
            matched.insert(k);
            return ChildStep::Update {
                id: text(cur, &table.pk),
                diff: changed_fields(table, body, cur),
            };
        }
        let mut parts = vec![table.set.clone(), pid.to_string()];
        parts.extend(child_identity(self.spec, table, body));
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let mut create = body.clone();
        create.insert(table.pk.clone(), Value::String(stable_id(&parts)));
        ChildStep::Create(create)
    }

    /// Lines gone from the F&O document are deleted (Sales lines without a line number are not p2c's).
    fn plan_deletes(&mut self, i: usize, w: &Work, existing: &[Record]) {
        let lines = matches!(self.spec.children, Children::Lines { .. });
        let (true, Some(col)) = (lines, &self.spec.line_number_col) else {
            return;
        };
        for cur in existing {
            let Some(n) = number_text(cur.get(col)) else { continue };
            if w.numbers.contains(&n) {
                continue;
            }
            if let Some(id) = text(cur, &self.table.pk) {
                self.ops.push(self.table.delete_op(self.deps, &id));
                self.whose.push(ChildOp::Delete(i));
            }
        }
    }

    /// Sends the batch and records what Sales answered on the children and their units.
    async fn send_and_settle(self, works: &mut [Work]) {
        let results = sales::send(self.deps, &self.ops).await;
        for (op, r) in self.whose.into_iter().zip(results) {
            match op {
                ChildOp::Update(i, j) => settle_child(self.template, &mut works[i], j, false, r),
                ChildOp::Create(i, j) => settle_child(self.template, &mut works[i], j, true, r),
                ChildOp::Delete(i) => settle_delete(self.spec, &mut works[i], r),
            }
        }
    }
}

/// Records what Sales answered for child `j` of a unit; a failure is trouble for the unit's line set.
fn settle_child(ct: &Template, w: &mut Work, j: usize, create: bool, r: Written) {
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
            c.outcome = created_concurrently(ct.record_noun(), &c.key);
            w.child_trouble = true;
        }
        Written::Failed { reason, transient, .. } => {
            c.outcome = Outcome::fail(format!("{} {}: {reason}", ct.record_noun(), c.key), transient);
            w.child_trouble = true;
        }
    }
}

/// Records the delete of a Sales line whose F&O line is gone (already gone in Sales counts as deleted).
fn settle_delete(spec: &Spec, w: &mut Work, r: Written) {
    match r {
        Written::Ok(_) | Written::Failed { status: Some(404), .. } => w.deleted += 1,
        Written::Failed { reason, transient, .. } => {
            tracing::warn!(flow = %spec.flow, key = %w.key, transient, reason = %reason, "could not delete a Sales line whose F&O line is gone");
            w.child_trouble = true;
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

// ---- Invoices -------------------------------------------------------------------------------------------

/// The order number an invoice links to.
const ORDER_OF_INVOICE: &str = "salesorderid.ordernumber";

/// Invoices: once an invoice and its lines are in Sales, its order becomes Invoiced (if it is not already).
pub(super) async fn invoice_orders(
    deps: &Deps,
    spec: &Spec,
    works: &mut [Work],
    resolver: &mut Resolver,
) -> Result<(), SyncError> {
    let Some(targets) = p2c_mapping::lookup_targets(ORDER_OF_INVOICE).map(|(_, t)| t) else {
        return Ok(());
    };
    let needs: Vec<(Vec<LookupTarget>, String)> = works
        .iter()
        .filter_map(order_to_invoice)
        .map(|o| (targets.clone(), o))
        .collect();
    if needs.is_empty() {
        return Ok(());
    }
    resolver.prepare(deps, &needs).await?;
    let patches = OrderPatches::plan(deps, works, resolver);
    let results = sales::send(deps, &patches.ops).await;
    patches.settle(spec, works, resolver, &results);
    Ok(())
}

/// The order of an invoice that is done (written with all its lines) and touched in this run.
fn order_to_invoice(w: &Work) -> Option<String> {
    let done = w.touched && w.parent.outcome.ok() && !w.child_trouble;
    w.parent.mapped_text(ORDER_OF_INVOICE).filter(|_| done)
}

/// One PATCH per order, however many of its invoices are in the page.
struct OrderPatches {
    ops: Vec<BatchOp>,
    /// Lowercase order id → its op.
    op_of: HashMap<String, usize>,
    /// (unit, order number, lowercase order id).
    whose: Vec<(usize, String, String)>,
}

impl OrderPatches {
    fn plan(deps: &Deps, works: &[Work], resolver: &Resolver) -> OrderPatches {
        let mut p = OrderPatches {
            ops: Vec::new(),
            op_of: HashMap::new(),
            whose: Vec::new(),
        };
        for (i, w) in works.iter().enumerate() {
            let Some(order) = order_to_invoice(w) else { continue };
            let Some(found) = resolver.found("salesorders", "ordernumber", &order) else {
                continue;
            };
            if found.row.get("statecode").and_then(Value::as_i64) == Some(4) {
                continue;
            }
            let id = found.id.to_lowercase();
            if !p.op_of.contains_key(&id) {
                p.op_of.insert(id.clone(), p.ops.len());
                p.ops.push(BatchOp {
                    method: p2c_dynamics::WriteMethod::Patch,
                    url: format!("{}({})", deps.sales.set_url("salesorders"), found.id),
                    // The P2C processing status follows: an invoiced order is read-only in Sales from here on.
                    body: Some(json!({"statecode": 4, "statuscode": 100_003, "msdynce_processingstatus": 647_390_003})),
                    headers: vec![("If-Match", "*".into())],
                });
            }
            p.whose.push((i, order, id));
        }
        p
    }

    /// An order set Invoiced is remembered as such; an invoice whose order could not be set fails (and is
    /// retried) until it is: it is in Sales but not done.
    fn settle(self, spec: &Spec, works: &mut [Work], resolver: &mut Resolver, results: &[Written]) {
        for (i, order, id) in self.whose {
            match self.op_of.get(&id).and_then(|&k| results.get(k)) {
                Some(Written::Ok(_)) => {
                    if let Some(f) = resolver.found_mut("salesorders", "ordernumber", &order) {
                        f.row.insert("statecode".into(), json!(4));
                        f.row.insert("statuscode".into(), json!(100_003));
                    }
                }
                Some(Written::Failed { reason, transient, .. }) => {
                    let why = format!(
                        "{} {}: written, but its sales order {order} could not be set to Invoiced: {reason}",
                        spec.parent.record_noun(),
                        works[i].key
                    );
                    works[i].parent.outcome = Outcome::fail(why.clone(), *transient);
                    works[i].post_trouble = Some((why, *transient));
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: Value) -> Record {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn create_bodies_carry_the_owner_and_no_default_state() {
        let team = Owner::Team("team-1".into());
        let (b, state) = create_body(rec(json!({"name": "x", "statecode": 0, "statuscode": 1})), Some(&team));
        assert_eq!(
            Value::Object(b),
            json!({"name": "x", "ownerid@odata.bind": "/teams(team-1)", "statuscode": 1})
        );
        assert!(state.is_none());
        let (b, state) = create_body(rec(json!({"name": "x", "statecode": 1, "statuscode": 3})), None);
        assert_eq!(Value::Object(b), json!({"name": "x"}));
        assert_eq!(state.map(Value::Object), Some(json!({"statecode": 1, "statuscode": 3})));
    }
}
