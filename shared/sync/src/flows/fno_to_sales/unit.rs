//! The pipeline for one page of F&O records: map and hash, skip what is unchanged, resolve lookups, write the
//! parents (products, headers), then their children (price list items, lines), then commit links and count.
//! A "unit" is one parent F&O record with its children.

use std::collections::{HashMap, HashSet};

use p2c_dynamics::{BatchOp, Record};
use p2c_mapping::{
    LookupTarget, MapError, Template, Unresolved, content_hash,
    money::{Decimal, combine_line_discount, decimal_from_json, decimal_to_json},
    split_state,
};
use p2c_state::Link;
use serde_json::{Value, json};

use super::{
    Children, PRICE_LIST, Spec,
    resolve::{Resolver, read_in},
};
use crate::{
    deps::Deps,
    error::SyncError,
    pipeline::sink::sales::{self, Written, bound_id, changed_fields, is_closed, same},
    report::{Failure, RunReport, Skip},
};

/// F&O order line fields the discount rule reads.
pub(crate) const DISCOUNT_FIELDS: &[&str] = &["LineDiscountAmount", "OrderedSalesQuantity", "TotalChargesAmount"];

/// A scheduled sweep skips records whose failure is already queued; an SQS message always retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Sweep,
    Keys,
}

/// One parent F&O record and its children (for a product: none; its companion is made from the same record).
pub(crate) struct Unit {
    pub key: String,
    pub parent: Record,
    pub children: Vec<Record>,
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Pending,
    Filtered,
    Unchanged,
    FailedEarlier,
    Echo,
    /// The Sales record is closed (read-only): nothing is written to it or its lines.
    Closed,
    Written {
        created: bool,
    },
    Failed {
        reason: String,
        transient: bool,
    },
}

impl Outcome {
    fn fail(reason: impl Into<String>, transient: bool) -> Outcome {
        Outcome::Failed {
            reason: reason.into(),
            transient,
        }
    }
    /// The record is in Sales as the template wants it.
    fn ok(&self) -> bool {
        matches!(self, Outcome::Unchanged | Outcome::Echo | Outcome::Written { .. })
    }
    fn failed(&self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }
    /// Which outcome a product and its price list item report together (the worse, then the busier one).
    fn rank(&self) -> u8 {
        match self {
            Outcome::Failed { .. } | Outcome::Pending => 6,
            Outcome::FailedEarlier => 5,
            Outcome::Written { .. } => 4,
            Outcome::Echo | Outcome::Closed => 3,
            Outcome::Unchanged => 2,
            Outcome::Filtered => 1,
        }
    }
}

struct Part {
    /// The link key: the F&O business key, for a line "<header key>/<line number>".
    key: String,
    mapped: Option<Record>,
    hash: String,
    link: Option<Link>,
    outcome: Outcome,
    /// Sales record id.
    id: Option<String>,
    /// The bound payload (lookups as `@odata.bind`).
    body: Option<Record>,
}

impl Part {
    fn new(key: String) -> Part {
        Part {
            key,
            mapped: None,
            hash: String::new(),
            link: None,
            outcome: Outcome::Pending,
            id: None,
            body: None,
        }
    }

    fn mapped(key: String, r: Result<Record, MapError>) -> Part {
        let mut p = Part::new(key);
        match r {
            Ok(m) => {
                p.hash = content_hash(&m);
                p.mapped = Some(m);
            }
            Err(e) => p.outcome = Outcome::fail(e.to_string(), false),
        }
        p
    }

    /// Linked, with the hash of what is mapped now: Sales has it already.
    fn unchanged(&self) -> bool {
        self.linked_id().is_some() && self.link.as_ref().and_then(|l| l.target_hash.as_deref()) == Some(&self.hash)
    }

    fn linked_id(&self) -> Option<&str> {
        self.link
            .as_ref()
            .map(|l| l.target_key.as_str())
            .filter(|k| !k.is_empty())
    }
}

struct Work {
    key: String,
    parent: Part,
    children: Vec<Part>,
    /// Every F&O line number of the document (filtered lines too): Sales lines not among them are deleted.
    numbers: HashSet<String>,
    keyset: Option<String>,
    /// Hash of the F&O records themselves: the failure marker on the link.
    unit_hash: String,
    /// The price list is the P2C rule's to choose (products).
    rule_price_list: bool,
    /// The parent was in Sales before this run (its children may exist).
    existed: bool,
    /// A child write or delete failed: the line set is not known to be in Sales.
    child_trouble: bool,
    /// Setting the order Invoiced failed.
    post_trouble: Option<(String, bool)>,
    /// Something of the unit changed: it goes through resolution and writes.
    touched: bool,
    /// The parent is closed in Sales.
    closed: bool,
    deleted: u64,
}

impl Work {
    fn pending(&self) -> bool {
        self.parent.outcome == Outcome::Pending || self.children.iter().any(|c| c.outcome == Outcome::Pending)
    }
    fn keyset_changed(&self) -> bool {
        self.keyset.is_some()
            && self.parent.link.as_ref().and_then(|l| l.source_hash.as_deref()) != self.keyset.as_deref()
    }
}

/// Text of a value as a lookup matches it.
fn lookup_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A line number as comparable text (2, 2.0 and "2" agree).
fn number_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(_) => decimal_from_json(v?).map(|d| d.normalize().to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

fn parent_noun(field: &str) -> &'static str {
    match field.split('.').next().unwrap_or("") {
        "customerid" => "customer",
        "productid" => "product",
        "salesorderid" => "sales order",
        "invoiceid" => "invoice",
        "quoteid" => "quote",
        _ => "related record",
    }
}

/// A lookup that found nothing. For synced data the message names the missing parent.
fn unresolved_reason(u: &Unresolved) -> String {
    if u.synced_data {
        format!(
            "{} {}: its {} {} is not in Sales yet ({} looked up in {}); nothing was written, and the record is \
             retried until it is there",
            u.entity,
            u.key,
            parent_noun(&u.field),
            u.value,
            u.field,
            u.looked_in.join(", ")
        )
    } else {
        u.to_string()
    }
}

/// Decimal places to round a combined discount to: at least cents, more if F&O sent more.
fn decimals(values: &[Decimal]) -> u32 {
    values
        .iter()
        .map(|d| d.normalize().scale())
        .max()
        .unwrap_or(0)
        .clamp(2, 10)
}

/// templates.md 5.5, "Discount rounding": Sales line discount = quantity × F&O per-unit discount + the rounding
/// remainder F&O booked as a negative charge. Lines without a per-unit discount keep the template's value.
fn apply_line_discount(t: &Template, src: &Record, mapped: &mut Record) {
    if !t.fields.iter().any(|f| f.enabled && f.target == "manualdiscountamount") {
        return;
    }
    let num = |f: &str| src.get(f).and_then(decimal_from_json);
    let (Some(per_unit), Some(qty)) = (num("LineDiscountAmount"), num("OrderedSalesQuantity")) else {
        return;
    };
    let charge = num("TotalChargesAmount").unwrap_or(Decimal::ZERO);
    let remainder = if charge < Decimal::ZERO { -charge } else { Decimal::ZERO };
    if per_unit.is_zero() && remainder.is_zero() {
        return;
    }
    let d = decimals(&[per_unit, remainder]);
    let discount = combine_line_discount(per_unit, qty, remainder, d);
    mapped.insert("manualdiscountamount".into(), decimal_to_json(discount));
}

/// Maps with the price list left out (the rule picks it before binding).
#[allow(
    clippy::result_large_err,
    reason = "MapError is p2c-mapping's error, built once per bad record"
)]
fn without_price_list(t: &Template, src: &Record) -> Result<Record, MapError> {
    t.map(src).map(|mut m| {
        m.remove(PRICE_LIST);
        m
    })
}

/// Maps a record with `t`, or, where the products price list rule applies, with the rule's variant of `t` (the
/// price list left out of what is hashed; it is chosen before binding). Returns whether the rule decides.
fn map_part(spec: &Spec, t: &Template, without: Option<&Template>, src: &Record) -> (Result<Record, MapError>, bool) {
    let Some(rule) = &spec.price_list else {
        return (t.map(src), false);
    };
    let Some(without) = without else {
        return (t.map(src), false);
    };
    if !rule.explicit {
        return (without_price_list(without, src), true);
    }
    match t.map(src) {
        Err(MapError::NoValueMapEntry { field, .. }) if field == PRICE_LIST => (without_price_list(without, src), true),
        other => (other, false),
    }
}

fn transform(spec: &Spec, unit: Unit) -> Work {
    let mut children_src = unit.children;
    let line_no = |r: &Record| match &spec.children {
        Children::Lines { line_field, .. } => number_text(r.get(line_field)),
        _ => None,
    };
    children_src.sort_by_key(|r| {
        let n = line_no(r);
        (n.as_deref().and_then(|s| s.parse::<i64>().ok()), n)
    });
    let unit_hash = content_hash(
        json!({"parent": Value::Object(unit.parent.clone()),
               "children": children_src.iter().cloned().map(Value::Object).collect::<Vec<_>>()})
        .as_object()
        .unwrap_or(&Record::new()),
    );
    let numbers: HashSet<String> = children_src.iter().filter_map(line_no).collect();
    let keyset = matches!(spec.children, Children::Lines { .. }).then(|| {
        let mut n: Vec<&String> = numbers.iter().collect();
        n.sort();
        content_hash(json!({ "lines": n }).as_object().unwrap_or(&Record::new()))
    });
    let rule = spec.price_list.as_ref();
    let filtered = !spec.parent.passes_filter(&unit.parent);
    let (mut parent, mut rule_price_list) = if filtered {
        let mut p = Part::new(unit.key.clone());
        p.outcome = Outcome::Filtered;
        (p, false)
    } else {
        let (r, by_rule) = map_part(spec, &spec.parent, rule.map(|r| &r.parent_without), &unit.parent);
        (Part::mapped(unit.key.clone(), r), by_rule)
    };
    if parent.key.is_empty() {
        parent.outcome = Outcome::fail(
            format!("the F&O record has no {}; it cannot be synced", spec.parent.source_key),
            false,
        );
    }
    let mut children = Vec::new();
    if let Some(ct) = &spec.child {
        let srcs: Vec<Record> = match &spec.children {
            Children::SameRecord => vec![unit.parent.clone()],
            _ => children_src,
        };
        for src in &srcs {
            let key = ct
                .key_of(src)
                .unwrap_or_else(|_| format!("{}/{}", unit.key, line_no(src).unwrap_or_else(|| "?".into())));
            if filtered || !ct.passes_filter(src) {
                let mut p = Part::new(key);
                p.outcome = Outcome::Filtered;
                children.push(p);
                continue;
            }
            let (mut r, by_rule) = map_part(spec, ct, rule.and_then(|r| r.child_without.as_ref()), src);
            rule_price_list |= by_rule;
            if let Ok(m) = &mut r {
                apply_line_discount(ct, src, m);
            }
            children.push(Part::mapped(key, r));
        }
    }
    Work {
        key: unit.key,
        parent,
        children,
        numbers,
        keyset,
        unit_hash,
        rule_price_list,
        existed: false,
        child_trouble: false,
        post_trouble: None,
        touched: false,
        closed: false,
        deleted: 0,
    }
}

/// Loads the links of every part and decides what is unchanged.
async fn decide(deps: &Deps, spec: &Spec, company: &str, works: &mut [Work], mode: Mode) -> Result<(), SyncError> {
    let parent_keys: Vec<String> = works.iter().map(|w| w.key.clone()).filter(|k| !k.is_empty()).collect();
    let mut plinks = deps
        .state
        .get_links(&spec.parent_table.logical, company, "fno", &parent_keys)
        .await?;
    let mut clinks = match &spec.child_table {
        Some(ct) => {
            let keys: Vec<String> = works
                .iter()
                .flat_map(|w| w.children.iter().filter(|c| c.outcome == Outcome::Pending))
                .map(|c| c.key.clone())
                .collect();
            deps.state.get_links(&ct.logical, company, "fno", &keys).await?
        }
        None => HashMap::new(),
    };
    for w in works.iter_mut() {
        w.parent.link = plinks.remove(&w.key);
        for c in &mut w.children {
            c.link = clinks.remove(&c.key);
        }
        if w.parent.outcome == Outcome::Filtered {
            continue;
        }
        // A sweep leaves a record that failed, or that is closed in Sales, alone while its F&O content is the same.
        let marker = w.parent.link.as_ref().and_then(|l| l.source_version.as_deref());
        let earlier = match marker {
            Some(m) if mode == Mode::Sweep && m == format!("failed:{}", w.unit_hash) => Some(Outcome::FailedEarlier),
            Some(m) if mode == Mode::Sweep && m == format!("closed:{}", w.unit_hash) => Some(Outcome::Closed),
            _ => None,
        };
        if let Some(o) = earlier {
            w.closed = o == Outcome::Closed;
            w.parent.outcome = o.clone();
            for c in w.children.iter_mut().filter(|c| c.outcome == Outcome::Pending) {
                c.outcome = if c.unchanged() { Outcome::Unchanged } else { o.clone() };
            }
            continue;
        }
        if let Outcome::Failed { transient, .. } = w.parent.outcome {
            let why = format!("not synced: its {} {} failed", spec.parent.record_noun(), w.key);
            for c in w.children.iter_mut().filter(|c| c.outcome == Outcome::Pending) {
                c.outcome = Outcome::fail(why.clone(), transient);
            }
            continue;
        }
        if w.parent.outcome == Outcome::Pending && w.parent.unchanged() {
            w.parent.outcome = Outcome::Unchanged;
            w.parent.id = w.parent.linked_id().map(str::to_string);
        }
        for c in w.children.iter_mut().filter(|c| c.outcome == Outcome::Pending) {
            if c.unchanged() {
                c.outcome = Outcome::Unchanged;
                c.id = c.linked_id().map(str::to_string);
            }
        }
    }
    Ok(())
}

/// Lookups the pending parts will bind, as (alternatives, value).
fn needs(spec: &Spec, works: &[Work]) -> Vec<(Vec<LookupTarget>, String)> {
    let mut out = Vec::new();
    let parent_binds = spec.parent.binds();
    let child_binds = spec.child.as_ref().map(|c| c.binds()).unwrap_or_default();
    let parent_path = spec.parent_ref.as_ref().map(|p| p.path.as_str());
    for w in works.iter().filter(|w| w.pending()) {
        let parent_mapped = w.parent.mapped.as_ref();
        let child_pending = w.children.iter().any(|c| c.outcome == Outcome::Pending);
        for b in &parent_binds {
            // A child needs its parent's unit group even when the parent itself is unchanged.
            let wanted =
                w.parent.outcome == Outcome::Pending || (child_pending && b.target == "defaultuomscheduleid.name");
            if let (true, Some(v)) = (
                wanted,
                parent_mapped.and_then(|m| m.get(&b.target)).and_then(lookup_text),
            ) {
                out.push((b.targets.clone(), v));
            }
        }
        for c in w.children.iter().filter(|c| c.outcome == Outcome::Pending) {
            for b in child_binds.iter().filter(|b| Some(b.target.as_str()) != parent_path) {
                if let Some(v) = c.mapped.as_ref().and_then(|m| m.get(&b.target)).and_then(lookup_text) {
                    out.push((b.targets.clone(), v));
                }
            }
        }
    }
    out
}

/// The products rule: fill in the price list of every pending product (and item), or fail the product.
async fn choose_price_lists(
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
            .mapped
            .as_ref()
            .and_then(|m| m.get("transactioncurrencyid.isocurrencycode"))
            .and_then(lookup_text)
            .unwrap_or_default();
        match resolver.first_price_list(deps, &currency).await? {
            Some(name) => {
                if let (true, Some(m)) = (parent_has, w.parent.mapped.as_mut()) {
                    m.insert(PRICE_LIST.into(), Value::String(name.clone()));
                }
                for c in w.children.iter_mut() {
                    if let (true, Some(m)) = (child_has, c.mapped.as_mut()) {
                        m.insert(PRICE_LIST.into(), Value::String(name.clone()));
                    }
                }
            }
            None => {
                let reason = format!(
                    "{} {}: no valid price list in Sales has currency {:?} (a product goes to the first active price \
                     list of its currency, by name); create one, or name one for {:?} in P2C_MAPPING \
                     ([{}.{}] {PRICE_LIST}), then replay the dead-letter queue",
                    spec.parent.record_noun(),
                    w.key,
                    currency,
                    currency,
                    spec.flow,
                    spec.parent.name
                );
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

fn text(r: &Record, col: &str) -> Option<String> {
    r.get(col).and_then(Value::as_str).map(str::to_string)
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

/// A create or update waiting to be sent, and whose result it is.
enum Target {
    Child(usize, usize),
    Delete(usize),
}

/// Syncs one page of units; returns the failures for the caller to route.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn sync_units(
    deps: &Deps,
    spec: &Spec,
    company: &str,
    bu: Option<&str>,
    units: Vec<Unit>,
    report: &mut RunReport,
    resolver: &mut Resolver,
    mode: Mode,
) -> Result<Vec<Failure>, SyncError> {
    let mut works: Vec<Work> = units.into_iter().map(|u| transform(spec, u)).collect();
    decide(deps, spec, company, &mut works, mode).await?;
    let lines = matches!(spec.children, Children::Lines { .. });
    for w in &mut works {
        let failed = w.parent.outcome.failed() || w.children.iter().any(|c| c.outcome.failed());
        w.touched = w.pending() || failed || (lines && w.parent.outcome.ok() && w.keyset_changed());
    }
    if works.iter().any(|w| w.touched) {
        resolver.prepare(deps, &needs(spec, &works)).await?;
        if spec.price_list.is_some() {
            choose_price_lists(deps, spec, &mut works, resolver).await?;
        }
        hold_incomplete_documents(spec, &mut works, resolver);
        write_parents(deps, spec, bu, &mut works, resolver).await?;
        write_children(deps, spec, &mut works, resolver).await?;
        if spec.closes_order {
            invoice_orders(deps, spec, &mut works, resolver).await?;
        }
        deps.crashes.check(crate::faults::CrashPoint::AfterTargetWrite)?;
    }
    commit_links(deps, spec, company, &works).await?;
    Ok(count(spec, works, report))
}

/// A document goes whole, as it does to F&O: while one of its lines cannot be written (its product is not in
/// Sales yet, or the line does not map), its new or changed header is not written either, nor any other line. The
/// document fails with the line's reason (transient when the line waits for a parent) and is retried whole, so
/// Sales never shows an order or invoice without the lines F&O has. A header already in Sales and unchanged is
/// left alone; only its lines wait.
fn hold_incomplete_documents(spec: &Spec, works: &mut [Work], resolver: &Resolver) {
    let (Children::Lines { .. }, Some(ct), Some(pref)) = (&spec.children, &spec.child, &spec.parent_ref) else {
        return;
    };
    for w in works.iter_mut().filter(|w| w.parent.outcome == Outcome::Pending) {
        // A header that cannot be bound fails on its own reason when it is written (its lines with it).
        let header_binds = w
            .parent
            .mapped
            .as_ref()
            .is_some_and(|m| spec.parent.bind(&w.key, m, |t, v| resolver.lookup(t, v, None)).is_ok());
        if !header_binds {
            continue;
        }
        let mut blocked: Option<(String, bool)> = None;
        for c in &w.children {
            match &c.outcome {
                Outcome::Failed { reason, transient } => blocked = Some((reason.clone(), *transient)),
                Outcome::Pending => {
                    let Some(mapped) = &c.mapped else { continue };
                    let group = mapped
                        .get("productid.productnumber")
                        .and_then(lookup_text)
                        .and_then(|p| resolver.found("products", "productnumber", &p))
                        .and_then(|f| text(&f.row, "_defaultuomscheduleid_value"));
                    // The header is not in Sales yet: its own lookup binds once it is written.
                    let bound = ct.bind(&c.key, mapped, |target, v| {
                        if target.entity_set == spec.parent_table.set && target.column == pref.column {
                            return Some(String::new());
                        }
                        resolver.lookup(target, v, group.as_deref())
                    });
                    if let Err(u) = bound {
                        blocked = Some((unresolved_reason(&u), u.is_transient()));
                    }
                }
                _ => {}
            }
            if blocked.is_some() {
                break;
            }
        }
        let Some((reason, transient)) = blocked else { continue };
        let why = format!(
            "{} {}: not written until every line can be: {reason}",
            spec.parent.record_noun(),
            w.key
        );
        w.parent.outcome = Outcome::fail(why.clone(), transient);
        for c in w.children.iter_mut().filter(|c| c.outcome == Outcome::Pending) {
            c.outcome = Outcome::fail(why.clone(), transient);
        }
    }
}

async fn write_parents(
    deps: &Deps,
    spec: &Spec,
    bu: Option<&str>,
    works: &mut [Work],
    resolver: &Resolver,
) -> Result<(), SyncError> {
    let t = &spec.parent_table;
    // Bind.
    for w in works.iter_mut().filter(|w| w.parent.outcome == Outcome::Pending) {
        let Some(mapped) = &w.parent.mapped else { continue };
        let group = mapped
            .get("defaultuomscheduleid.name")
            .and_then(lookup_text)
            .and_then(|n| resolver.unit_group(&n));
        match spec
            .parent
            .bind(&w.key, mapped, |target, v| resolver.lookup(target, v, group.as_deref()))
        {
            Ok(body) => w.parent.body = Some(body),
            Err(u) => w.parent.outcome = Outcome::fail(unresolved_reason(&u), u.is_transient()),
        }
    }
    // What Sales holds now: by linked id, then by natural key for the rest. Unchanged parents of changed
    // children are read too when they can be closed in Sales (their lines are then read-only).
    let todo: Vec<usize> = (0..works.len())
        .filter(|&i| {
            let p = &works[i].parent;
            (p.outcome == Outcome::Pending && p.body.is_some())
                || (works[i].touched && t.writes_state && p.outcome == Outcome::Unchanged)
        })
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
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
    let natural = |w: &Work| {
        w.parent
            .mapped
            .as_ref()
            .and_then(|m| m.get(&spec.natural_key))
            .and_then(lookup_text)
    };
    let unknown: Vec<String> = todo
        .iter()
        .filter(|&&i| {
            works[i]
                .parent
                .linked_id()
                .is_none_or(|id| !by_id.contains_key(&id.to_lowercase()))
        })
        .filter_map(|&i| natural(&works[i]))
        .collect();
    let mut by_key: HashMap<String, Record> = HashMap::new();
    if !unknown.is_empty() {
        let owner = bu.map(|b| format!("_owningbusinessunit_value eq {b}"));
        for r in read_in(deps, &t.set, &spec.natural_key, &unknown, &t.select, owner.as_deref()).await? {
            if let Some(k) = r.get(&spec.natural_key).and_then(lookup_text) {
                by_key.entry(k.to_lowercase()).or_insert(r);
            }
        }
    }
    // Diff (the echo rule) or create.
    let mut ops: Vec<BatchOp> = Vec::new();
    let mut whose: Vec<(usize, bool)> = Vec::new();
    let mut creates: HashMap<usize, (Record, Option<Record>)> = HashMap::new();
    for &i in &todo {
        let w = &mut works[i];
        let current = w
            .parent
            .linked_id()
            .and_then(|id| by_id.get(&id.to_lowercase()))
            .or_else(|| natural(w).and_then(|k| by_key.get(&k.to_lowercase())));
        if let Some(cur) = current.filter(|c| is_closed(t, c)) {
            w.closed = true;
            w.existed = true;
            w.parent.id = text(cur, &t.pk);
            for p in std::iter::once(&mut w.parent).chain(w.children.iter_mut()) {
                if p.outcome == Outcome::Pending {
                    p.outcome = Outcome::Closed;
                }
            }
            continue;
        }
        let Some(body) = w.parent.body.clone().filter(|_| w.parent.outcome == Outcome::Pending) else {
            continue;
        };
        match current {
            Some(cur) => {
                w.existed = true;
                w.parent.id = text(cur, &t.pk);
                let mut diff = changed_fields(t, &body, cur);
                // It was found by this key (ignoring case): never rename it.
                diff.remove(&spec.natural_key);
                if diff.is_empty() {
                    w.parent.outcome = Outcome::Echo;
                } else if let Some(id) = &w.parent.id {
                    ops.push(t.update_op(deps, id, diff));
                    whose.push((i, false));
                }
            }
            None => {
                let (mut body, state) = create_body(body, spec.owned.then_some(bu).flatten());
                if let Some(k) = natural(w) {
                    body.insert(t.pk.clone(), Value::String(stable_id(&[&t.set, bu.unwrap_or(""), &k])));
                }
                ops.push(t.create_op(deps, body.clone()));
                whose.push((i, true));
                creates.insert(i, (body, state));
            }
        }
    }
    let results = sales::send(deps, &ops).await;
    let mut again: Vec<(usize, Record)> = Vec::new();
    let mut state_ops: Vec<(usize, BatchOp)> = Vec::new();
    for ((i, create), r) in whose.into_iter().zip(results) {
        let w = &mut works[i];
        match r {
            Written::Ok(id) => {
                if create {
                    w.parent.id = id;
                    w.existed = false;
                }
                if w.parent.id.is_none() {
                    w.parent.outcome = no_id(spec, &w.key);
                    continue;
                }
                w.parent.outcome = Outcome::Written { created: create };
                if let (true, Some((_, Some(state))), Some(id)) = (create, creates.get(&i), &w.parent.id) {
                    state_ops.push((i, t.update_op(deps, id, state.clone())));
                }
            }
            // Deleted in Sales since it was read: create it again.
            Written::Failed { status: Some(404), .. } if !create => {
                if let Some(body) = w.parent.body.clone() {
                    again.push((i, body));
                }
            }
            Written::Failed { status, reason, .. } if create && duplicate_key(status, &reason) => {
                w.parent.outcome = created_concurrently(spec.parent.record_noun(), &w.key);
            }
            Written::Failed { reason, transient, .. } => {
                w.parent.outcome =
                    Outcome::fail(format!("{} {}: {reason}", spec.parent.record_noun(), w.key), transient)
            }
        }
    }
    if !again.is_empty() {
        let mut ops = Vec::new();
        let mut states = Vec::new();
        for (i, body) in &again {
            let (mut body, state) = create_body(body.clone(), spec.owned.then_some(bu).flatten());
            if let Some(k) = natural(&works[*i]) {
                body.insert(t.pk.clone(), Value::String(stable_id(&[&t.set, bu.unwrap_or(""), &k])));
            }
            ops.push(t.create_op(deps, body));
            states.push(state);
        }
        for (((i, _), r), state) in again.into_iter().zip(sales::send(deps, &ops).await).zip(states) {
            let w = &mut works[i];
            match r {
                Written::Ok(Some(id)) => {
                    w.existed = false;
                    w.parent.id = Some(id.clone());
                    w.parent.outcome = Outcome::Written { created: true };
                    if let Some(s) = state {
                        state_ops.push((i, t.update_op(deps, &id, s)));
                    }
                }
                Written::Ok(None) => w.parent.outcome = no_id(spec, &w.key),
                Written::Failed { status, reason, .. } if duplicate_key(status, &reason) => {
                    w.parent.outcome = created_concurrently(spec.parent.record_noun(), &w.key);
                }
                Written::Failed { reason, transient, .. } => {
                    w.parent.outcome =
                        Outcome::fail(format!("{} {}: {reason}", spec.parent.record_noun(), w.key), transient)
                }
            }
        }
    }
    // A state other than the default one is set right after the create (Dataverse refuses it on create).
    if !state_ops.is_empty() {
        let ops: Vec<BatchOp> = state_ops.iter().map(|(_, op)| op.clone()).collect();
        for ((i, _), r) in state_ops.iter().zip(sales::send(deps, &ops).await) {
            if let Written::Failed { reason, transient, .. } = r {
                works[*i].parent.outcome = Outcome::fail(
                    format!(
                        "{} {}: created, but its state could not be set: {reason}",
                        spec.parent.record_noun(),
                        works[*i].key
                    ),
                    transient,
                );
            }
        }
    }
    Ok(())
}

/// A create body: the company's business unit as owner; state moved out unless it is the default state.
fn create_body(mut body: Record, bu: Option<&str>) -> (Record, Option<Record>) {
    if let Some(bu) = bu {
        body.insert(
            "owningbusinessunit@odata.bind".into(),
            Value::String(format!("/businessunits({bu})")),
        );
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

/// A create refused because a record with its id exists (412 `0x80040237`): another worker created it first.
fn duplicate_key(status: Option<u16>, reason: &str) -> bool {
    status == Some(412) || reason.contains("0x80040237")
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

async fn write_children(
    deps: &Deps,
    spec: &Spec,
    works: &mut [Work],
    resolver: &mut Resolver,
) -> Result<(), SyncError> {
    let (Some(ct), Some(table), Some(pref)) = (&spec.child, &spec.child_table, &spec.parent_ref) else {
        return Ok(());
    };
    let lines = matches!(spec.children, Children::Lines { .. });
    // Units whose parent is in Sales and whose children need work.
    let todo: Vec<usize> = (0..works.len())
        .filter(|&i| {
            let w = &works[i];
            w.parent.outcome.ok()
                && !w.closed
                && w.parent.id.is_some()
                && (w.children.iter().any(|c| c.outcome == Outcome::Pending) || (lines && w.keyset_changed()))
        })
        .collect();
    // Children of a parent that failed cannot be written.
    for w in works.iter_mut() {
        if let Outcome::Failed { transient, .. } = w.parent.outcome {
            let why = format!("not synced: its {} {} failed", spec.parent.record_noun(), w.key);
            for c in w.children.iter_mut().filter(|c| c.outcome == Outcome::Pending) {
                c.outcome = Outcome::fail(why.clone(), transient);
            }
        }
    }
    if todo.is_empty() {
        return Ok(());
    }
    // Seed the parents' ids: the children bind to them.
    for &i in &todo {
        let w = &works[i];
        let (Some(id), Some(v)) = (
            w.parent.id.as_deref(),
            w.parent
                .mapped
                .as_ref()
                .and_then(|m| m.get(&spec.natural_key))
                .and_then(lookup_text),
        ) else {
            continue;
        };
        resolver.seed(&spec.parent_table.set, &pref.column, &v, id);
    }
    // The children Sales holds, for parents that existed before this run.
    let parent_ids: Vec<String> = todo
        .iter()
        .filter(|&&i| works[i].existed || works[i].parent.outcome == Outcome::Unchanged)
        .filter_map(|&i| works[i].parent.id.clone())
        .collect();
    let mut current: HashMap<String, Vec<Record>> = HashMap::new();
    if !parent_ids.is_empty() {
        let mut select = table.select.clone();
        for c in [&pref.value_col].into_iter().chain(spec.line_number_col.iter()) {
            if !select.contains(c) {
                select.push(c.clone());
            }
        }
        for r in read_in(deps, &table.set, &pref.value_col, &parent_ids, &select, None).await? {
            if let Some(p) = text(&r, &pref.value_col) {
                current.entry(p.to_lowercase()).or_default().push(r);
            }
        }
    }
    let mut ops: Vec<BatchOp> = Vec::new();
    let mut whose: Vec<(Target, bool)> = Vec::new();
    for &i in &todo {
        let w = &mut works[i];
        let pid = w.parent.id.clone().unwrap_or_default().to_lowercase();
        let existing = current.get(&pid).cloned().unwrap_or_default();
        let mut matched: HashSet<usize> = HashSet::new();
        let parent_group = w
            .parent
            .mapped
            .as_ref()
            .and_then(|m| m.get("defaultuomscheduleid.name"))
            .and_then(lookup_text)
            .and_then(|n| resolver.unit_group(&n));
        for (j, c) in w.children.iter_mut().enumerate() {
            if c.outcome != Outcome::Pending {
                continue;
            }
            let Some(mapped) = &c.mapped else { continue };
            // A line's unit is one of its product's unit group; a price list item's, its product's.
            let group = match &spec.children {
                Children::SameRecord => parent_group.clone(),
                _ => mapped
                    .get("productid.productnumber")
                    .and_then(lookup_text)
                    .and_then(|p| resolver.found("products", "productnumber", &p))
                    .and_then(|f| text(&f.row, "_defaultuomscheduleid_value")),
            };
            let body = match ct.bind(&c.key, mapped, |target, v| resolver.lookup(target, v, group.as_deref())) {
                Ok(b) => b,
                Err(u) => {
                    c.outcome = Outcome::fail(unresolved_reason(&u), u.is_transient());
                    continue;
                }
            };
            let found = existing
                .iter()
                .enumerate()
                .find(|(k, cur)| !matched.contains(k) && same_identity(spec, table, &body, cur));
            match found {
                Some((k, cur)) => {
                    matched.insert(k);
                    c.id = text(cur, &table.pk);
                    let diff = changed_fields(table, &body, cur);
                    if diff.is_empty() {
                        c.outcome = Outcome::Echo;
                    } else if let Some(id) = &c.id {
                        ops.push(table.update_op(deps, id, diff));
                        whose.push((Target::Child(i, j), false));
                    }
                }
                None => {
                    let mut parts = vec![table.set.clone(), pid.clone()];
                    parts.extend(child_identity(spec, table, &body));
                    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                    let mut create = body.clone();
                    create.insert(table.pk.clone(), Value::String(stable_id(&parts)));
                    ops.push(table.create_op(deps, create));
                    whose.push((Target::Child(i, j), true));
                }
            }
            c.body = Some(body);
        }
        // Lines gone from the F&O document are deleted (Sales lines without a line number are not p2c's).
        if let (true, Some(col)) = (lines, &spec.line_number_col) {
            for cur in &existing {
                let Some(n) = number_text(cur.get(col)) else { continue };
                if w.numbers.contains(&n) {
                    continue;
                }
                if let Some(id) = text(cur, &table.pk) {
                    ops.push(table.delete_op(deps, &id));
                    whose.push((Target::Delete(i), false));
                }
            }
        }
    }
    let results = sales::send(deps, &ops).await;
    for ((target, create), r) in whose.into_iter().zip(results) {
        match target {
            Target::Child(i, j) => {
                let w = &mut works[i];
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
                    Written::Failed { status, reason, .. } if create && duplicate_key(status, &reason) => {
                        c.outcome = created_concurrently(ct.record_noun(), &c.key);
                        w.child_trouble = true;
                    }
                    Written::Failed { reason, transient, .. } => {
                        c.outcome = Outcome::fail(format!("{} {}: {reason}", ct.record_noun(), c.key), transient);
                        w.child_trouble = true;
                    }
                }
            }
            Target::Delete(i) => match r {
                Written::Ok(_) | Written::Failed { status: Some(404), .. } => works[i].deleted += 1,
                Written::Failed { reason, transient, .. } => {
                    tracing::warn!(flow = %spec.flow, key = %works[i].key, transient, reason = %reason, "could not delete a Sales line whose F&O line is gone");
                    works[i].child_trouble = true;
                }
            },
        }
    }
    for w in works.iter_mut() {
        if w.children.iter().any(|c| c.outcome.failed()) {
            w.child_trouble = true;
        }
    }
    Ok(())
}

/// Invoices: once an invoice and its lines are in Sales, its order becomes Invoiced (if it is not already).
async fn invoice_orders(
    deps: &Deps,
    spec: &Spec,
    works: &mut [Work],
    resolver: &mut Resolver,
) -> Result<(), SyncError> {
    const PATH: &str = "salesorderid.ordernumber";
    let Some(targets) = p2c_mapping::lookup_targets(PATH).map(|(_, t)| t) else {
        return Ok(());
    };
    let eligible = |w: &Work| w.touched && w.parent.outcome.ok() && !w.child_trouble;
    let order_of = |w: &Work| w.parent.mapped.as_ref().and_then(|m| m.get(PATH)).and_then(lookup_text);
    let needs: Vec<(Vec<LookupTarget>, String)> = works
        .iter()
        .filter(|w| eligible(w))
        .filter_map(order_of)
        .map(|o| (targets.clone(), o))
        .collect();
    if needs.is_empty() {
        return Ok(());
    }
    resolver.prepare(deps, &needs).await?;
    // One PATCH per order, however many of its invoices are in the page.
    let mut ops = Vec::new();
    let mut op_of: HashMap<String, usize> = HashMap::new();
    let mut whose: Vec<(usize, String, String)> = Vec::new();
    for (i, w) in works.iter().enumerate() {
        let Some(order) = order_of(w).filter(|_| eligible(w)) else {
            continue;
        };
        let Some(found) = resolver.found("salesorders", "ordernumber", &order) else {
            continue;
        };
        if found.row.get("statecode").and_then(Value::as_i64) == Some(4) {
            continue;
        }
        let id = found.id.to_lowercase();
        if !op_of.contains_key(&id) {
            op_of.insert(id.clone(), ops.len());
            ops.push(BatchOp {
                method: p2c_dynamics::WriteMethod::Patch,
                url: format!("{}({})", deps.sales.set_url("salesorders"), found.id),
                // The P2C processing status follows: an invoiced order is read-only in Sales from here on.
                body: Some(json!({"statecode": 4, "statuscode": 100_003, "msdynce_processingstatus": 647_390_003})),
                headers: vec![("If-Match", "*".into())],
            });
        }
        whose.push((i, order, id));
    }
    let results = sales::send(deps, &ops).await;
    for (i, order, id) in whose {
        match op_of.get(&id).and_then(|&k| results.get(k)) {
            Some(Written::Ok(_)) => {
                if let Some(f) = resolver.found_mut("salesorders", "ordernumber", &order) {
                    f.row.insert("statecode".into(), json!(4));
                    f.row.insert("statuscode".into(), json!(100_003));
                }
            }
            Some(Written::Failed { reason, transient, .. }) => {
                // The invoice is in Sales but not done: it fails (and is retried) until its order is Invoiced.
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
    Ok(())
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
            &spec.parent_table.logical,
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
    }
}

/// Links go in after the writes: a record is linked only once Sales has it, and a failed record is marked so
/// that sweeps leave it to the queue.
async fn commit_links(deps: &Deps, spec: &Spec, company: &str, works: &[Work]) -> Result<(), SyncError> {
    let now = crate::pipeline::record::now();
    let mut out = Vec::new();
    for w in works {
        if w.key.is_empty() || matches!(w.parent.outcome, Outcome::Filtered | Outcome::FailedEarlier) || !w.touched {
            continue;
        }
        let any_failure = w.parent.outcome.failed() || w.child_trouble || w.post_trouble.is_some();
        if w.closed {
            // Closed in Sales: remember it so sweeps skip the record while F&O stays the same.
            let mut l = old_or_new(w, spec, company, &now);
            l.source_version = Some(format!("closed:{}", w.unit_hash));
            if w.parent.link.as_ref() != Some(&l) {
                out.push(l);
            }
            continue;
        }
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
        let mut l = link(&spec.parent_table.logical, company, &w.key, &target, target_hash, &now);
        l.source_hash = if w.parent.outcome.ok() && !w.child_trouble {
            w.keyset.clone()
        } else {
            old.and_then(|l| l.source_hash.clone())
        };
        l.source_version = any_failure.then(|| format!("failed:{}", w.unit_hash));
        let same_as_old = old.is_some_and(|o| {
            o.target_key == l.target_key
                && o.target_hash == l.target_hash
                && o.source_hash == l.source_hash
                && o.source_version == l.source_version
        });
        if !same_as_old && (!target.is_empty() || any_failure) {
            out.push(l);
        }
        if let Some(ct) = &spec.child_table {
            for c in &w.children {
                if let (Outcome::Echo | Outcome::Written { .. }, Some(id)) = (&c.outcome, &c.id) {
                    out.push(link(&ct.logical, company, &c.key, id, Some(c.hash.clone()), &now));
                }
            }
        }
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
fn count(spec: &Spec, works: Vec<Work>, report: &mut RunReport) -> Vec<Failure> {
    let mut all = Vec::new();
    for w in works {
        let mut failures = Vec::new();
        match spec.children {
            Children::Lines { .. } => {
                tally(report, &mut failures, &w.key, &w.parent.key, &w.parent.outcome);
                for c in &w.children {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: Value) -> Record {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn line_discount_is_quantity_times_per_unit_plus_the_remainder() {
        let t = p2c_mapping::order_lines_to_sales();
        let src = rec(json!({"LineDiscountAmount": 3.33, "OrderedSalesQuantity": 3.0, "TotalChargesAmount": -0.01}));
        let mut m = rec(json!({"manualdiscountamount": 9.99}));
        apply_line_discount(&t, &src, &mut m);
        assert_eq!(m["manualdiscountamount"], json!(10));
        // A real (positive) charge is not a discount; no per-unit discount keeps the template's copy.
        let src = rec(json!({"LineDiscountAmount": 2.5, "OrderedSalesQuantity": 16, "TotalChargesAmount": 15.0}));
        apply_line_discount(&t, &src, &mut m);
        assert_eq!(m["manualdiscountamount"], json!(40));
        let src = rec(json!({"LineDiscountAmount": 0, "OrderedSalesQuantity": 2, "TotalChargesAmount": 0}));
        let mut m = rec(json!({"manualdiscountamount": 12.5}));
        apply_line_discount(&t, &src, &mut m);
        assert_eq!(m["manualdiscountamount"], json!(12.5));
        // Bad data is left to the template, never a panic.
        let src = rec(json!({"LineDiscountAmount": "x", "OrderedSalesQuantity": null}));
        apply_line_discount(&t, &src, &mut m);
        assert_eq!(m["manualdiscountamount"], json!(12.5));
    }

    #[test]
    fn create_bodies_carry_the_owner_and_no_default_state() {
        let (b, state) = create_body(rec(json!({"name": "x", "statecode": 0, "statuscode": 1})), Some("bu-1"));
        assert_eq!(
            Value::Object(b),
            json!({"name": "x", "owningbusinessunit@odata.bind": "/businessunits(bu-1)", "statuscode": 1})
        );
        assert!(state.is_none());
        let (b, state) = create_body(rec(json!({"name": "x", "statecode": 1, "statuscode": 3})), None);
        assert_eq!(Value::Object(b), json!({"name": "x"}));
        assert_eq!(state.map(Value::Object), Some(json!({"statecode": 1, "statuscode": 3})));
    }

    #[test]
    fn line_numbers_compare_by_value() {
        assert_eq!(number_text(Some(&json!(2))), Some("2".into()));
        assert_eq!(number_text(Some(&json!(2.0))), Some("2".into()));
        assert_eq!(number_text(Some(&json!(" 2 "))), Some("2".into()));
        assert_eq!(number_text(Some(&json!(null))), None);
    }
}
