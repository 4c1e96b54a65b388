//! Write, first batch: the parents (products, headers) of the touched units. Each is bound, compared with what
//! Sales holds now, and decided as data ([`ParentStep`]) before anything is sent: closed (left alone), an echo
//! (nothing differs), an update of the fields that differ, an Invoiced order reopened to take F&O's changes
//! ([`super::invoiced`]), or a create with a stable id. What Sales answers is recorded on the parts; a parent
//! deleted in Sales since it was read is created again. What a parent still needs once its children are in (a
//! state, the columns a create ignores, Invoiced again) is left on [`Work::after`] for the second batch
//! ([`super::children`]).

use std::collections::HashMap;

use p2c_dynamics::{BatchOp, ErrorKind, Record};
use p2c_mapping::{content_hash, split_state};
use serde_json::{Value, json};

use super::{
    invoiced, publish,
    resolve::{Resolver, read_in},
    spec::{Children, Spec},
    unit::{Outcome, Part, Work, lookup_text, own_unit_group, text},
};
use crate::{
    deps::{Deps, ScopeOnce},
    error::SyncError,
    ownership::{BusinessUnitScope, Owner},
    pipeline::sink::sales::{self, Pricing, Written, changed_fields, is_closed, split_not_valid_for_create},
};

/// Where a company's owned Sales records (orders, invoices) live: its business unit (part of their stable ids)
/// and the units whose records are the company's (read when a record is looked for by number). Their owner when
/// p2c creates them, the unit's default team, is read when a create needs it (`Deps::default_team_id`).
pub(super) struct CompanyUnit {
    pub company: String,
    pub unit: String,
    pub scope: ScopeOnce,
}

/// What the organization's settings mean for the parents a run writes.
pub(super) struct OrgSettings {
    /// How Sales prices documents (which columns a create ignores and an update sets).
    pub pricing: Pricing,
    /// New parents (products) start in Draft: each create is published after its children ([`publish`]).
    pub publish: bool,
}

// ---- Parents --------------------------------------------------------------------------------------------

/// What to do with one parent, given what Sales holds now.
enum ParentStep {
    /// Nothing: not pending (an unchanged parent read only to see whether it is closed), or it did not bind.
    Nothing,
    /// Closed in Sales (read-only): neither it nor its pending children are written.
    Closed { id: Option<String> },
    /// In Sales already: the fields that differ are written; none differ: an echo. `publish`: a product still in
    /// Draft, published after its price list item.
    Update {
        id: Option<String>,
        diff: Record,
        publish: bool,
    },
    /// An order Invoiced in Sales that F&O changed: reopened (with the changes) so that they and its lines can
    /// be written, then Invoiced again when F&O still says so (`reclose`).
    Reopen {
        id: Option<String>,
        diff: Record,
        reclose: bool,
    },
    /// Not in Sales: created from this body.
    Create(Record),
}

/// A parent write in a batch.
enum ParentOp {
    Update,
    /// A create, with what to set once it and its children are in (state, columns a create ignores).
    Create {
        after: Option<Record>,
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
    org: OrgSettings,
) -> Result<(), SyncError> {
    let OrgSettings { pricing, publish } = org;
    bind_parents(spec, works, resolver);
    let todo = parents_to_compare(spec, works);
    if todo.is_empty() {
        return Ok(());
    }
    let current = CurrentParents::read(deps, spec, company, works, &todo).await?;
    let mut batch = ParentBatch::new(deps, spec, company, resolver, pricing);
    batch.publish = publish;
    let steps: Vec<(usize, ParentStep)> = todo
        .iter()
        .map(|&i| (i, parent_step(spec, &works[i], current.of(spec, &works[i]), pricing)))
        .collect();
    if steps.iter().any(|(_, s)| matches!(s, ParentStep::Create(_))) {
        batch.read_owner().await?;
    }
    for (i, step) in steps {
        batch.plan(i, &mut works[i], step);
    }
    let team = batch.team.clone();
    let mut recreate = Vec::new();
    for (i, op, r) in batch.send().await {
        if settle_parent(spec, &mut works[i], op, r) {
            recreate.push(i);
        }
    }
    if !recreate.is_empty() {
        let mut batch = ParentBatch::new(deps, spec, company, resolver, pricing);
        batch.team = team;
        batch.publish = publish;
        batch.read_owner().await?;
        recreate_parents(spec, batch, works, recreate).await;
    }
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
fn parent_step(spec: &Spec, w: &Work, current: Option<&Record>, pricing: Pricing) -> ParentStep {
    let t = &spec.parent_table;
    if let Some(cur) = current.filter(|c| is_closed(t, c)) {
        if invoiced::reopenable(spec, cur) {
            return reopen_step(spec, w, cur, pricing);
        }
        return ParentStep::Closed { id: text(cur, &t.pk) };
    }
    let Some(body) = w.parent.body.clone().filter(|_| w.parent.pending()) else {
        return ParentStep::Nothing;
    };
    match current {
        Some(cur) => {
            let mut diff = changed_fields(t, &body, cur, pricing);
            // It was found by this key (ignoring case): never rename it.
            diff.remove(&spec.natural_key);
            ParentStep::Update {
                id: text(cur, &t.pk),
                diff,
                publish: spec.publishes && publish::is_draft(cur),
            }
        }
        None => ParentStep::Create(body),
    }
}

/// An order Invoiced in Sales (closed, read-only) and changed in F&O. Only the state differing is an echo: F&O's
/// change is in Sales already and the order stays Invoiced. Otherwise it is reopened with the template's state
/// (Active, "so later updates from F&O can still be written") and the fields that differ, its lines follow, and
/// it is set Invoiced again after them while F&O's processing status is still Invoiced.
fn reopen_step(spec: &Spec, w: &Work, cur: &Record, pricing: Pricing) -> ParentStep {
    let t = &spec.parent_table;
    let id = text(cur, &t.pk);
    let mut diff = match w.parent.body.as_ref().filter(|_| w.parent.pending()) {
        Some(body) => changed_fields(t, body, cur, pricing),
        None => Record::new(),
    };
    diff.remove(&spec.natural_key);
    let lines = matches!(spec.children, Children::Lines { .. });
    let fields = diff.keys().any(|k| k != "statecode" && k != "statuscode");
    let children = w.children.iter().any(Part::pending) || (lines && w.keyset_changed());
    if !fields && !children {
        return match w.parent.pending() {
            true => ParentStep::Update {
                id,
                diff: Record::new(),
                publish: false,
            },
            false => ParentStep::Nothing,
        };
    }
    let mapped = w.parent.mapped.as_ref();
    for (col, default) in [("statecode", 0), ("statuscode", 1)] {
        let v = mapped.and_then(|m| m.get(col)).cloned().unwrap_or(json!(default));
        diff.insert(col.into(), v);
    }
    ParentStep::Reopen {
        id,
        diff,
        reclose: invoiced::invoiced_in_fno(w),
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
    pricing: Pricing,
    /// New products start in Draft: each create is published after its children ([`publish`]).
    publish: bool,
    ops: Vec<BatchOp>,
    whose: Vec<(usize, ParentOp)>,
}

impl<'a> ParentBatch<'a> {
    fn new(
        deps: &'a Deps,
        spec: &'a Spec,
        company: Option<&'a CompanyUnit>,
        resolver: &'a Resolver,
        pricing: Pricing,
    ) -> ParentBatch<'a> {
        ParentBatch {
            deps,
            spec,
            company,
            team: None,
            resolver,
            pricing,
            publish: false,
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
            .mapped_text(invoiced::ORDER_OF_INVOICE)
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
            ParentStep::Update { id, diff, publish } => {
                w.existed = true;
                w.parent.id = id;
                if publish {
                    w.after = Some(publish::published());
                }
                if diff.is_empty() && publish {
                    w.parent.outcome = Outcome::Written { created: false };
                } else if diff.is_empty() {
                    w.parent.outcome = Outcome::Echo;
                } else if let Some(id) = &w.parent.id {
                    let t = &self.spec.parent_table;
                    self.ops.push(t.update_op(self.deps, id, diff));
                    self.whose.push((i, ParentOp::Update));
                }
            }
            ParentStep::Reopen { id, diff, reclose } => {
                w.existed = true;
                w.parent.id = id;
                if let Some(id) = &w.parent.id {
                    let t = &self.spec.parent_table;
                    self.ops.push(t.update_op(self.deps, id, diff));
                    self.whose.push((i, ParentOp::Update));
                    w.after = reclose.then(invoiced::invoiced_state);
                }
            }
            ParentStep::Create(body) => self.create(i, w, body),
        }
    }

    /// A create: with its owner where the table is owned, and its stable id.
    fn create(&mut self, i: usize, w: &Work, body: Record) {
        let (spec, t) = (self.spec, &self.spec.parent_table);
        let owner = self.owner_of(w).filter(|_| spec.owned);
        let (mut body, mut after) = create_body(body, owner.as_ref(), self.pricing);
        if self.publish {
            after.get_or_insert_with(Record::new).extend(publish::published());
        }
        if let Some(k) = w.natural_key(spec) {
            let unit = self.company.map_or("", |c| c.unit.as_str());
            body.insert(t.pk.clone(), Value::String(stable_id(&[&t.set, unit, &k])));
        }
        self.ops.push(t.create_op(self.deps, body));
        self.whose.push((i, ParentOp::Create { after }));
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

/// Records what Sales answered for a parent write; true when it was deleted in Sales since it was read and is
/// to be created again.
fn settle_parent(spec: &Spec, w: &mut Work, op: ParentOp, r: Written) -> bool {
    let noun = spec.parent.record_noun();
    match (op, r) {
        (ParentOp::Update, Written::Ok(_)) => w.parent.outcome = Outcome::Written { created: false },
        (ParentOp::Update, Written::Failed { status: Some(404), .. }) => {
            w.after = None;
            return true;
        }
        (ParentOp::Create { after }, Written::Ok(Some(id))) => {
            w.existed = false;
            w.parent.id = Some(id);
            w.parent.outcome = Outcome::Written { created: true };
            w.after = after;
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
    false
}

/// Creates again the parents deleted in Sales since they were read.
async fn recreate_parents(spec: &Spec, mut batch: ParentBatch<'_>, works: &mut [Work], recreate: Vec<usize>) {
    for i in recreate {
        if let Some(body) = works[i].parent.body.clone() {
            batch.create(i, &works[i], body);
        }
    }
    for (i, op, r) in batch.send().await {
        settle_parent(spec, &mut works[i], op, r);
    }
}

/// A create body: its owner (Dataverse puts the record in the owner's business unit; `owningbusinessunit` itself
/// is read-only unless the organization allows ownership across business units). Moved out to the update after
/// the create: a state other than the default one (Dataverse refuses `statecode` on create) and the columns a
/// create ignores.
fn create_body(mut body: Record, owner: Option<&Owner>, pricing: Pricing) -> (Record, Option<Record>) {
    if let Some(owner) = owner {
        body.insert("ownerid@odata.bind".into(), Value::String(owner.bind()));
    }
    let mut after = split_not_valid_for_create(&mut body, pricing);
    match split_state(&mut body) {
        // State 0 is what a create gets anyway; its status is valid on create.
        Some(s) if s.get("statecode").and_then(Value::as_i64) == Some(0) => {
            if let Some(st) = s.get("statuscode") {
                body.insert("statuscode".into(), st.clone());
            }
        }
        Some(s) => after.extend(s),
        None => {}
    }
    (body, (!after.is_empty()).then_some(after))
}

/// The Sales id a new record is created with: derived from what identifies it (its table, the business unit for
/// owned tables, its natural key; for a child, its parent and identity), never random. Two workers creating
/// the same record at once (an SQS message delivered twice, a replay racing the sweep) or a create retried
/// after a timeout that did reach Sales then collide on the primary key instead of making a duplicate that
/// no later lookup can tell apart: Sales has no unique key on `productnumber` or `ordernumber`.
pub(super) fn stable_id(parts: &[&str]) -> String {
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

pub(super) fn created_concurrently(noun: &str, key: &str) -> Outcome {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: Value) -> Record {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn create_bodies_carry_the_owner_and_no_default_state() {
        let team = Owner::Team("team-1".into());
        let (b, after) = create_body(
            rec(json!({"name": "x", "statecode": 0, "statuscode": 1})),
            Some(&team),
            Pricing::System,
        );
        assert_eq!(
            Value::Object(b),
            json!({"name": "x", "ownerid@odata.bind": "/teams(team-1)", "statuscode": 1})
        );
        assert!(after.is_none());
        let (b, after) = create_body(
            rec(json!({"name": "x", "statecode": 1, "statuscode": 3})),
            None,
            Pricing::System,
        );
        assert_eq!(Value::Object(b), json!({"name": "x"}));
        assert_eq!(after.map(Value::Object), Some(json!({"statecode": 1, "statuscode": 3})));
    }

    #[test]
    fn what_a_create_ignores_is_updated_after_it() {
        let body = || rec(json!({"name": "x", "ispricelocked": true, "totalamount": 12.5, "statuscode": 4}));
        let (b, after) = create_body(body(), None, Pricing::System);
        assert_eq!(Value::Object(b), json!({"name": "x", "statuscode": 4}));
        assert_eq!(
            after.map(Value::Object),
            Some(json!({"ispricelocked": true})),
            "Sales calculates the total"
        );
        let (_, after) = create_body(body(), None, Pricing::Manual);
        assert_eq!(
            after.map(Value::Object),
            Some(json!({"ispricelocked": true, "totalamount": 12.5}))
        );
    }
}
