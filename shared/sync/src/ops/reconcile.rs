//! `p2c reconcile`: compare both systems for a flow and report what does not agree — counts, records missing on
//! either side, fields that differ from what the template maps, and links that point at nothing.

use std::collections::{HashMap, HashSet};

use p2c_dynamics::Record;
use p2c_mapping::Template;
use serde::Serialize;
use serde_json::Value;

use crate::pipeline::links::LinkEntity;
use crate::pipeline::sink::{fno, sales};
use crate::{
    deps::Deps,
    error::SyncError,
    flow_name::FlowName,
    message::{Message, Reason},
    pipeline::lookups::lookup_paths,
};

/// The products' price list lookup path.
const PRICE_LIST: &str = "pricelevelid.name";

#[derive(Debug, Default, Serialize)]
pub struct Mismatch {
    pub key: String,
    pub field: String,
    /// What the template makes of the source record.
    pub expected: Value,
    /// What the target holds.
    pub actual: Value,
}

#[derive(Debug, Default, Serialize)]
pub struct Reconciliation {
    pub flow: String,
    pub company: String,
    pub source_count: usize,
    pub target_count: usize,
    pub link_count: usize,
    /// Source records (by key) that should be in the target and are not.
    pub missing_in_target: Vec<String>,
    /// Target records p2c owns (externally maintained) with no source record.
    pub missing_in_source: Vec<String>,
    pub mismatches: Vec<Mismatch>,
    /// Links whose source record or target record no longer exists (by link source key).
    pub orphan_links: Vec<String>,
    /// Source records that cannot be mapped (they are failing in every run too).
    pub unmappable: Vec<String>,
    /// With `--fix`: source ids sent to the flow's queue for a resync.
    pub enqueued: usize,
}

impl Reconciliation {
    pub fn clean(&self) -> bool {
        self.missing_in_target.is_empty()
            && self.missing_in_source.is_empty()
            && self.mismatches.is_empty()
            && self.orphan_links.is_empty()
    }
}

fn s<'a>(r: &'a Record, k: &str) -> Option<&'a str> {
    r.get(k).and_then(Value::as_str).filter(|v| !v.is_empty())
}

/// How a mapped value is compared with the target's: the way the flow's own write decides "unchanged".
enum Side {
    /// F&O values; a clear (blank source) holds where F&O has its empty value or none.
    Fno,
    /// Sales values (a clear holds where Sales has none; columns Sales calculates are left out), and each lookup
    /// path by the value of the record the lookup points to.
    Sales(Lookups),
}

/// The Sales lookups of a template: dotted target path → (value column `_nav_value`, lowercase id → the related
/// record's value). Paths the flow does not map (the products' price list, picked by a rule) are absent.
#[derive(Default)]
struct Lookups(HashMap<String, (String, HashMap<String, String>)>);

impl Lookups {
    /// Reads the tables the template's lookups point to (reference data: currencies, units, unit groups, price
    /// lists), except `skip`.
    async fn read(deps: &Deps, t: &Template, skip: &[&str]) -> Result<Lookups, SyncError> {
        let mut out = HashMap::new();
        for b in t.binds().into_iter().filter(|b| !skip.contains(&b.target.as_str())) {
            let mut values = HashMap::new();
            for target in &b.targets {
                let pk = format!("{}id", target.logical_name);
                let select = [pk.clone(), target.column.clone()];
                for r in deps.sales.list(&target.entity_set, &select, None).await? {
                    if let (Some(id), Some(v)) = (s(&r, &pk), r.get(&target.column).and_then(text_of)) {
                        values.insert(id.to_ascii_lowercase(), v);
                    }
                }
            }
            out.insert(b.target.clone(), (format!("_{}_value", b.navigation), values));
        }
        Ok(Lookups(out))
    }
}

/// A lookup's value as text (numbers and booleans by their JSON text).
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Side {
    /// `Some(actual)` when the target's value of `field` differs from `expected`; `None` when it holds it or the
    /// field is not compared.
    fn differs(&self, field: &str, expected: &Value, cleared: bool, target: &Record) -> Option<Value> {
        match self {
            Side::Fno => {
                let have = target.get(field);
                (!fno::holds(have, expected, cleared)).then(|| have.cloned().unwrap_or(Value::Null))
            }
            Side::Sales(_) if sales::CALCULATED.contains(&field) => None,
            Side::Sales(lookups) if field.contains('.') => {
                let (col, values) = lookups.0.get(field)?;
                let id = s(target, col).map(str::to_ascii_lowercase);
                let actual = id.as_ref().map(|i| values.get(i).cloned().unwrap_or_else(|| i.clone()));
                let same = match (text_of(expected), &actual) {
                    (None, None) => true,
                    (Some(want), Some(have)) => want.eq_ignore_ascii_case(have),
                    _ => false,
                };
                (!same).then(|| actual.map_or(Value::Null, Value::String))
            }
            Side::Sales(_) => {
                let have = target.get(field);
                (!sales::same(expected, have)).then(|| have.cloned().unwrap_or(Value::Null))
            }
        }
    }
}

/// What to compare for one flow: source and target records as read, and how they meet.
struct Plan<'a> {
    template: &'a Template,
    link_entity: LinkEntity,
    /// The system the link's source key belongs to ("sales" or "fno").
    link_system: &'static str,
    sources: Vec<Record>,
    /// Source field whose value is the link's source key and the queue message key.
    source_id: String,
    targets: Vec<Record>,
    /// Target field holding the business key `key_of` gives.
    target_key: String,
    /// Target field holding the link's target key.
    target_id: String,
    /// Target records p2c owns (the others are none of its business).
    owned: fn(&Record) -> bool,
    side: Side,
}

/// Compares both systems for a flow, every mapped field of every record (a field the source leaves blank
/// included: the target must hold its cleared value), for the single-record flows (accounts, contacts that are
/// customers, products); the document flows are checked through `p2c links` and the flows' own echo reads.
pub async fn reconcile(deps: &Deps, flow: FlowName, company: &str, fix: bool) -> Result<Reconciliation, SyncError> {
    let company = deps.legal_entity(company)?;
    let plan = match flow {
        FlowName::AccountsToFno | FlowName::ContactsToFno => customers_plan(deps, flow, &company).await?,
        FlowName::ProductsToSales => products_plan(deps, flow, &company).await?,
        other => {
            return Err(SyncError::Unsupported(format!(
                "reconcile compares accounts-to-fno, contacts-to-fno and products-to-sales; {other} moves documents \
                 (header and lines): check them with `p2c links` and `p2c status`"
            )));
        }
    };
    let links = deps
        .state
        .scan_links(plan.link_entity.as_str(), &company, Some(plan.link_system))
        .await?;
    let (mut out, resync) = compare(&plan, &links);
    out.flow = flow.as_str().into();
    out.company = company.clone();
    if fix && !resync.is_empty() {
        // A resync through the queue: the worker re-reads each record and writes it the normal way. Forgetting
        // the link's hash makes the worker write even when it believes the target is up to date.
        let read = deps
            .state
            .get_links(plan.link_entity.as_str(), &company, plan.link_system, &resync)
            .await?;
        let stale: Vec<p2c_state::Link> = read
            .values()
            .map(|l| p2c_state::Link {
                target_hash: None,
                ..l.clone()
            })
            .collect();
        deps.state.put_links(&stale, &[&read]).await?;
        let pair = deps.queue_pair(flow).await?;
        let bodies: Vec<String> = resync
            .chunks(crate::message::MAX_KEYS)
            .map(|c| Message::new(flow.as_str(), &company, c.to_vec(), Reason::Replay).to_body())
            .collect();
        deps.queues.send(&pair.queue_url, &bodies).await?;
        out.enqueued = resync.len();
    }
    Ok(out)
}

fn company_filter(company: &str) -> String {
    format!("dataAreaId eq {}", p2c_dynamics::odata::string_literal(company))
}

/// Accounts, or contacts that are customers, against F&O's customers.
async fn customers_plan<'a>(deps: &'a Deps, flow: FlowName, company: &str) -> Result<Plan<'a>, SyncError> {
    let accounts = flow == FlowName::AccountsToFno;
    let task = if accounts {
        "Accounts - Customers"
    } else {
        "ContactToCustomer"
    };
    let t = deps
        .template(flow, task)
        .ok_or_else(|| SyncError::Mapping(format!("{flow} has no template {task}")))?;
    let scope = deps.business_unit_scope(company).await?;
    let mut select = t.source_select();
    select.push("_owningbusinessunit_value".into());
    let mut sources = deps
        .sales
        .list(&t.source_entity, &select, scope.filter().as_deref())
        .await?;
    sources.retain(|r| scope.owns(r));
    deps.lookups.enrich(&deps.sales, &lookup_paths(t), &mut sources).await?;
    let targets = deps
        .fno
        .list(&t.target_entity, &[], Some(&company_filter(company)), None)
        .await?;
    let key = t
        .target_key
        .iter()
        .find(|k| *k != "dataAreaId")
        .cloned()
        .unwrap_or_default();
    Ok(Plan {
        template: t,
        link_entity: if accounts {
            LinkEntity::Account
        } else {
            LinkEntity::Contact
        },
        link_system: "sales",
        sources,
        source_id: t.source_id.clone(),
        targets,
        target_key: key.clone(),
        target_id: key,
        // Customers from accounts and from contacts share CustomersV2: "missing in Sales" is only decidable
        // for accounts (the contacts' customers are checked through their links).
        owned: if accounts {
            |r| s(r, "IsExternallyMaintained") == Some("Yes")
        } else {
            |_| false
        },
        side: Side::Fno,
    })
}

/// F&O's products against Sales' products.
async fn products_plan<'a>(deps: &'a Deps, flow: FlowName, company: &str) -> Result<Plan<'a>, SyncError> {
    let t = deps
        .template(flow, "Products")
        .ok_or_else(|| SyncError::Mapping(format!("{flow} has no template Products")))?;
    let sources = deps
        .fno
        .list(&t.source_entity, &[], Some(&company_filter(company)), None)
        .await?;
    let table = sales::Table::of(t);
    let targets = deps.sales.list(&t.target_entity, &table.select, None).await?;
    // The built-in price list row is decided by the flow's rule (the first active price list of the currency),
    // not by the template's value: only a price list map from P2C_MAPPING is compared.
    let builtin = p2c_mapping::template(flow.as_str(), &t.name);
    let rule = builtin.as_ref().and_then(|b| b.field(PRICE_LIST)) == t.field(PRICE_LIST);
    let skip: &[&str] = if rule { &[PRICE_LIST] } else { &[] };
    Ok(Plan {
        template: t,
        link_entity: LinkEntity::Product,
        link_system: "fno",
        sources,
        source_id: t.source_key.clone(),
        targets,
        target_key: "productnumber".into(),
        target_id: table.pk.clone(),
        owned: |r| r.get("msdynce_ismaintainedexternally").and_then(Value::as_bool) == Some(true),
        side: Side::Sales(Lookups::read(deps, t, skip).await?),
    })
}

/// Field-by-field comparison; returns the report and the source keys to resync.
fn compare(plan: &Plan<'_>, links: &[p2c_state::Link]) -> (Reconciliation, Vec<String>) {
    let t = plan.template;
    let mut out = Reconciliation {
        source_count: plan.sources.len(),
        link_count: links.len(),
        ..Default::default()
    };
    let by_key: HashMap<&str, &Record> = plan
        .targets
        .iter()
        .filter_map(|r| Some((s(r, &plan.target_key)?, r)))
        .collect();
    let target_ids: HashSet<String> = plan
        .targets
        .iter()
        .filter_map(|r| s(r, &plan.target_id).map(str::to_ascii_lowercase))
        .collect();
    let owned: Vec<&Record> = plan.targets.iter().filter(|r| (plan.owned)(r)).collect();
    out.target_count = owned.len();
    let mut resync: Vec<String> = Vec::new();
    let mut source_keys: HashSet<String> = HashSet::new();
    let source_ids: HashSet<String> = plan
        .sources
        .iter()
        .filter_map(|r| s(r, &plan.source_id).map(str::to_ascii_lowercase))
        .collect();
    for row in &plan.sources {
        let id = s(row, &plan.source_id).unwrap_or_default().to_string();
        if !t.passes_filter(row) {
            continue;
        }
        let (key, mapped) = match t.key_of(row) {
            Ok(key) => match t.map_parts(row) {
                Ok(m) => (key, m),
                Err(e) => {
                    out.unmappable.push(format!("{key}: {e}"));
                    continue;
                }
            },
            Err(e) => {
                out.unmappable.push(format!("{id}: {e}"));
                continue;
            }
        };
        source_keys.insert(key.clone());
        match by_key.get(key.as_str()) {
            None => {
                out.missing_in_target.push(key);
                resync.push(id);
            }
            Some(target) => {
                let before = out.mismatches.len();
                for (field, expected) in &mapped.body {
                    let cleared = mapped.cleared.contains(field);
                    if let Some(actual) = plan.side.differs(field, expected, cleared, target) {
                        out.mismatches.push(Mismatch {
                            key: key.clone(),
                            field: field.clone(),
                            expected: expected.clone(),
                            actual,
                        });
                    }
                }
                if out.mismatches.len() > before {
                    resync.push(id);
                }
            }
        }
    }
    for r in &owned {
        if let Some(k) = s(r, &plan.target_key)
            && !source_keys.contains(k)
        {
            out.missing_in_source.push(k.to_string());
        }
    }
    // A link is an orphan when its source is gone, or its target is gone for a record not already reported
    // missing (that one gets resynced and its link rewritten).
    let missing: HashSet<&str> = out.missing_in_target.iter().map(String::as_str).collect();
    for l in links {
        let source_gone = !source_ids.contains(&l.source_key.to_ascii_lowercase());
        let target_gone = !target_ids.contains(&l.target_key.to_ascii_lowercase())
            && !missing.contains(l.target_key.as_str())
            && !missing.contains(l.source_key.as_str());
        if source_gone || target_gone {
            out.orphan_links.push(l.source_key.clone());
        }
    }
    out.missing_in_target.sort();
    out.missing_in_source.sort();
    out.orphan_links.sort();
    (out, resync)
}
