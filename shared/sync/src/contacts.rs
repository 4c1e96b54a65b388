//! contacts-to-fno (templates.md 5.3): Sales contacts → F&O, routed by the two templates' filters.
//!
//! - A contact flagged as an active customer (`ContactToCustomer`) becomes an F&O customer (`CustomersV2`), keyed
//!   by its contact number. Its link, `LINK#contact#<company>#sales#<contactid>`, is what quotes and orders of
//!   that contact resolve their customer through.
//! - A contact of an account (`Contacts`) becomes a contact person (`CDSContactPersons`) under the account's
//!   party: `AssociatedPartyNumber` is the account number that accounts-to-fno wrote, read from the account's
//!   link (`LINK#account#<company>#sales#<accountid>` → target key). Accounts come first: while the account has
//!   no link the contact is a transient failure naming the account, retried from the queue, and never written
//!   without its party. Its link is `LINK#contactperson#...`, target key `<contact number>/<account number>`.
//!
//! Writes compare with F&O first (see `to_fno`): create what is missing, PATCH the fields that differ, skip what
//! F&O already holds. Deleted contacts are counted and skipped: p2c never deletes F&O parties.

use std::collections::{HashMap, HashSet};

use p2c_dynamics::{BatchOp, Record};
use p2c_mapping::{Template, content_hash};
use p2c_state::{Lease, Link};
use serde_json::Value;

use crate::{
    deps::Deps,
    error::SyncError,
    faults::CrashPoint,
    flows::FlowName,
    lookups::lookup_paths,
    report::RunReport,
    route::route_failures,
    run::RunOptions,
    sales_to_fno::{Failure, now, str_of},
    to_fno::{
        DeltaReader, Plan, customer_accounts, describe_customers, plan, plan_op, read_current, renew, row_has_key,
        target_fields, target_key, write_sets,
    },
};

const SOURCE_SET: &str = "contacts";
const SOURCE_ID: &str = "contactid";

/// The two templates of the flow, and the link entity each writes.
struct Routes<'a> {
    customer: &'a Template,
    person: &'a Template,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Route {
    Customer,
    Person,
}

impl<'a> Routes<'a> {
    fn of(deps: &'a Deps, flow: FlowName) -> Result<Routes<'a>, SyncError> {
        let find = |name: &str| {
            deps.template(flow, name).ok_or_else(|| {
                SyncError::Mapping(format!(
                    "flow {flow} has no template {name:?}; the mapping crate must define it"
                ))
            })
        };
        Ok(Routes {
            customer: find("ContactToCustomer")?,
            person: find("Contacts")?,
        })
    }

    fn template(&self, r: Route) -> &'a Template {
        match r {
            Route::Customer => self.customer,
            Route::Person => self.person,
        }
    }

    fn select(&self) -> Vec<String> {
        let mut cols = self.customer.source_select();
        let more = self.person.source_select().into_iter();
        for c in more.chain(["_owningbusinessunit_value".into(), "versionnumber".into()]) {
            if !cols.contains(&c) {
                cols.push(c);
            }
        }
        cols
    }
}

fn link_entity(r: Route) -> &'static str {
    match r {
        Route::Customer => "contact",
        Route::Person => "contactperson",
    }
}

/// The F&O key field a template's existing rows are read by (the first key field after the company).
fn read_field(t: &Template) -> &str {
    t.target_key
        .iter()
        .find(|k| *k != "dataAreaId")
        .map(String::as_str)
        .unwrap_or("")
}

struct Pending {
    id: String,
    route: Route,
    key: crate::to_fno::Key,
    key_text: String,
    body: Record,
    hash: String,
    version: Option<String>,
}

/// A scheduled run: the contacts changed since the watermark (a plain delta link), page by page.
pub async fn run_changes(
    deps: &Deps,
    flow: FlowName,
    company: &str,
    opts: &RunOptions,
    report: &mut RunReport,
    lease: &Lease,
) -> Result<(), SyncError> {
    let routes = Routes::of(deps, flow)?;
    let bu = deps.business_unit_id(company).await?;
    let watermark = deps.state.watermark(flow.as_str(), company).await?;
    let saved = watermark
        .as_ref()
        .filter(|_| !opts.full_resync)
        .map(|w| w.value.as_str())
        .filter(|v| !v.is_empty());
    if saved.is_none() && watermark.is_some() {
        report.full_resync = true;
    }
    let mut reader = DeltaReader::new(deps, SOURCE_SET, &routes.select(), saved);
    while let Some(page) = reader.next(deps, report).await? {
        for _ in &page.deleted {
            report.read += 1;
            report.skip("deleted in Sales (F&O records are never deleted by p2c)");
        }
        let failures = sync_contacts(deps, &routes, company, &bu, page.rows, report).await?;
        route_failures(deps, flow, company, failures, 1, report).await?;
        renew(deps, lease, flow, company).await?;
        opts.tick(report)?;
    }
    // Links were committed page by page; only now may the watermark move.
    let delta = reader.delta_link().unwrap_or_default().to_string();
    deps.crashes.check(CrashPoint::BeforeWatermark)?;
    deps.state
        .put_watermark(flow.as_str(), company, &delta, watermark.map(|w| w.version))
        .await?;
    Ok(())
}

/// SQS: contacts named by id, re-read from Sales so a replay never writes stale data.
pub async fn process_keys(
    deps: &Deps,
    flow: FlowName,
    company: &str,
    keys: Vec<String>,
    report: &mut RunReport,
) -> Result<Vec<Failure>, SyncError> {
    let routes = Routes::of(deps, flow)?;
    let bu = deps.business_unit_id(company).await?;
    let (good, mut failures) = split_guids(keys, "contact");
    let rows = deps
        .sales
        .get_by_ids(SOURCE_SET, SOURCE_ID, &good, &routes.select())
        .await?;
    let found: HashSet<String> = rows
        .iter()
        .filter_map(|r| str_of(r, SOURCE_ID).map(str::to_ascii_lowercase))
        .collect();
    for k in &good {
        if !found.contains(&k.to_ascii_lowercase()) {
            report.read += 1;
            report.skip("no longer in Sales");
        }
    }
    failures.extend(sync_contacts(deps, &routes, company, &bu, rows, report).await?);
    Ok(failures)
}

/// Non-GUID keys would never match a Dataverse id: they fail on their own, not the whole message batch.
pub(crate) fn split_guids(keys: Vec<String>, noun: &str) -> (Vec<String>, Vec<Failure>) {
    let (good, bad): (Vec<String>, Vec<String>) = keys.into_iter().partition(|k| p2c_dynamics::odata::is_guid(k));
    let failures = bad
        .into_iter()
        .map(|k| Failure {
            id: String::new(),
            reason: format!("{k:?} is not a {noun} id (a GUID); the message cannot be processed"),
            key: k,
            transient: false,
        })
        .collect();
    (good, failures)
}

fn fail(id: &str, key: &str, reason: String, transient: bool) -> Failure {
    Failure {
        id: id.to_string(),
        key: key.to_string(),
        reason,
        transient,
    }
}

async fn sync_contacts(
    deps: &Deps,
    routes: &Routes<'_>,
    company: &str,
    business_unit: &str,
    mut rows: Vec<Record>,
    report: &mut RunReport,
) -> Result<Vec<Failure>, SyncError> {
    let mut failures = Vec::new();
    deps.lookups
        .enrich(&deps.sales, &lookup_paths(routes.customer), &mut rows)
        .await?;

    // Route each contact by the templates' filters.
    let mut routed: Vec<(Route, String, Record)> = Vec::new();
    for row in rows {
        report.read += 1;
        let Some(id) = str_of(&row, SOURCE_ID).map(str::to_ascii_lowercase) else {
            failures.push(fail(
                "",
                "(no id)",
                "the contact has no contactid; it cannot be synced".into(),
                false,
            ));
            continue;
        };
        if str_of(&row, "_owningbusinessunit_value").is_some_and(|bu| !bu.eq_ignore_ascii_case(business_unit)) {
            report.skip("owned by another business unit");
            continue;
        }
        let route = if routes.customer.passes_filter(&row) {
            Route::Customer
        } else if routes.person.passes_filter(&row) {
            Route::Person
        } else {
            report.skip("filtered by the template (neither an active customer nor a contact of an account)");
            continue;
        };
        routed.push((route, id, row));
    }

    // Contact persons need their account's F&O party: the account number from the accounts-to-fno link.
    let person_parent = routes
        .person
        .lookups()
        .into_iter()
        .find(|l| l.navigation == "parentcustomerid")
        .map(|l| (l.column, l.path));
    let parents: Vec<String> = routed
        .iter()
        .filter(|(r, _, _)| *r == Route::Person)
        .filter_map(|(_, _, row)| person_parent.as_ref().and_then(|(col, _)| str_of(row, col)))
        .map(str::to_ascii_lowercase)
        .collect();
    let accounts = if parents.is_empty() {
        HashMap::new()
    } else {
        customer_accounts(deps, company, &parents, false).await?
    };
    let missing: Vec<String> = parents.iter().filter(|p| !accounts.contains_key(*p)).cloned().collect();
    let names = if missing.is_empty() {
        HashMap::new()
    } else {
        describe_customers(deps, &missing).await
    };

    // Transform: map and key.
    let mut pending: Vec<Pending> = Vec::new();
    let mut seen: HashMap<(Route, String), String> = HashMap::new();
    for (route, id, mut row) in routed {
        let t = routes.template(route);
        let number = str_of(&row, &t.source_key).unwrap_or(&id).to_string();
        if route == Route::Person
            && let Some((col, path)) = &person_parent
        {
            let Some(parent) = str_of(&row, col).map(str::to_ascii_lowercase) else {
                failures.push(fail(
                    &id,
                    &number,
                    format!(
                        "contact {number} is marked as a contact of an account but has no company \
                         (parentcustomerid); set its company in Sales, or clear \"company is an account\""
                    ),
                    false,
                ));
                continue;
            };
            let Some(account) = accounts.get(&parent) else {
                let who = names
                    .get(&parent)
                    .cloned()
                    .unwrap_or_else(|| format!("account {parent}"));
                failures.push(fail(
                    &id,
                    &number,
                    format!(
                        "contact {number} waits for its company, {who}, which is not in F&O company {company} yet \
                         (no accounts-to-fno link); it is retried from the queue after accounts-to-fno has synced \
                         the account"
                    ),
                    true,
                ));
                continue;
            };
            row.insert(path.clone(), Value::String(account.clone()));
        }
        let mut body = match t.map(&row) {
            Ok(b) => b,
            Err(e) => {
                failures.push(fail(&id, &number, e.to_string(), false));
                continue;
            }
        };
        body.insert("dataAreaId".into(), Value::String(company.to_string()));
        let key = match target_key(t, company, &body) {
            Ok(k) => k,
            Err(e) => {
                failures.push(fail(&id, &number, format!("contact {number}: {e}"), false));
                continue;
            }
        };
        let key_text = crate::to_fno::key_text(&key);
        // Two contacts with one contact number would overwrite each other in F&O.
        if let Some(other) = seen.get(&(route, key_text.clone())) {
            failures.push(fail(
                &id,
                &number,
                format!(
                    "contact {id} has the same F&O key {key_text} as contact {other}; give one of them a unique \
                     contact number"
                ),
                false,
            ));
            continue;
        }
        seen.insert((route, key_text.clone()), id.clone());
        let hash = content_hash(&body);
        let version = row
            .get("versionnumber")
            .map(|v| v.to_string().trim_matches('"').to_string());
        pending.push(Pending {
            id,
            route,
            key,
            key_text,
            body,
            hash,
            version,
        });
    }

    // Skip unchanged: the mapped content equals what p2c last wrote.
    let mut unchanged: HashSet<usize> = HashSet::new();
    let mut before = Vec::new();
    for route in [Route::Customer, Route::Person] {
        let idx: Vec<usize> = (0..pending.len()).filter(|&i| pending[i].route == route).collect();
        if idx.is_empty() {
            continue;
        }
        let ids: Vec<String> = idx.iter().map(|&i| pending[i].id.clone()).collect();
        let links = deps.state.get_links(link_entity(route), company, "sales", &ids).await?;
        for i in idx {
            let p = &pending[i];
            if links
                .get(&p.id)
                .is_some_and(|l| l.target_key == p.key_text && l.target_hash.as_deref() == Some(p.hash.as_str()))
            {
                report.skip("unchanged");
                unchanged.insert(i);
            }
        }
        before.push(links);
    }
    let pending: Vec<Pending> = pending
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !unchanged.contains(i))
        .map(|(_, p)| p)
        .collect();

    // Write: compare with F&O's rows, then create, PATCH the differing fields, or nothing. A create or update
    // that races another writer is planned again from a fresh read, once.
    let mut new_links = Vec::new();
    let mut todo: Vec<usize> = (0..pending.len()).collect();
    for attempt in 0..2 {
        if todo.is_empty() {
            break;
        }
        let mut current: Vec<(Route, Record)> = Vec::new();
        for route in [Route::Customer, Route::Person] {
            let t = routes.template(route);
            let field = read_field(t);
            let values: Vec<String> = todo
                .iter()
                .map(|&i| &pending[i])
                .filter(|p| p.route == route)
                .filter_map(|p| p.body.get(field).map(crate::to_fno::text_of))
                .collect();
            current.extend(
                read_current(deps, &t.target_entity, company, field, &values, &target_fields(t, &[]))
                    .await?
                    .into_iter()
                    .map(|r| (route, r)),
            );
        }
        let mut sets: Vec<Vec<BatchOp>> = Vec::new();
        let mut planned: Vec<(usize, bool)> = Vec::new();
        for &i in &todo {
            let p = &pending[i];
            let t = routes.template(p.route);
            let cur = current
                .iter()
                .find(|(r, row)| *r == p.route && row_has_key(row, &p.key))
                .map(|(_, row)| row);
            let pl = plan(&p.body, &p.key, cur);
            match plan_op(deps, &t.target_entity, &p.key, &pl) {
                Some(op) => {
                    sets.push(vec![op]);
                    planned.push((i, matches!(pl, Plan::Create(_))));
                }
                None => {
                    report.skip("unchanged in F&O (echo)");
                    new_links.push(link_of(&pending[i], company));
                }
            }
        }
        let results = write_sets(deps, &sets).await;
        let mut again = Vec::new();
        for ((i, created), r) in planned.into_iter().zip(results) {
            let p = &pending[i];
            match r {
                Ok(()) => {
                    report.wrote(created);
                    new_links.push(link_of(p, company));
                }
                Err(e) if e.race && attempt == 0 => again.push(i),
                Err(e) => failures.push(fail(&p.id, &p.key_text, e.reason, e.transient)),
            }
        }
        todo = again;
    }
    deps.crashes.check(CrashPoint::AfterTargetWrite)?;
    deps.state
        .put_links(&new_links, &before.iter().collect::<Vec<_>>())
        .await?;
    Ok(failures)
}

fn link_of(p: &Pending, company: &str) -> Link {
    Link {
        entity: link_entity(p.route).into(),
        company: company.into(),
        system: "sales".into(),
        source_key: p.id.clone(),
        target_key: p.key_text.clone(),
        source_version: p.version.clone(),
        source_hash: None,
        target_hash: Some(p.hash.clone()),
        synced_at: now(),
    }
}
