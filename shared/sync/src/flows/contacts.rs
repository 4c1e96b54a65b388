//! contacts-to-fno (spec/templates.md 5.3): Sales contacts → F&O, routed by the two templates' filters.
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
use p2c_state::Link;
use serde_json::Value;

use crate::{
    deps::{Deps, ScopeOnce},
    error::SyncError,
    faults::CrashPoint,
    flow_name::FlowName,
    ownership::BusinessUnitScope,
    pipeline::{
        Flow,
        links::{Gone, LinkEntity, customer_accounts, describe_customers},
        lookups::lookup_paths,
        record::{now, split_guids, str_of, version_of},
        retire::{Retire, count_unlinked, retire},
        sink::fno::{
            Key, Plan, key_text, plan, plan_op, read_current, row_has_key, target_fields, target_key, text_of,
            write_sets,
        },
        source::{
            Page, SourceSpec,
            delta::{DeltaTable, reread},
        },
    },
    report::{Failure, RunReport, Skip},
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
    fn of(deps: &'a Deps) -> Result<Routes<'a>, SyncError> {
        let flow = FlowName::ContactsToFno;
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

fn link_entity(r: Route) -> LinkEntity {
    match r {
        Route::Customer => LinkEntity::Contact,
        Route::Person => LinkEntity::ContactPerson,
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
    key: Key,
    key_text: String,
    body: Record,
    /// The fields of `body` that clear F&O's value (blank in Sales).
    cleared: Vec<String>,
    hash: String,
    version: Option<String>,
}

/// contacts-to-fno for one company.
pub struct Contacts<'a> {
    routes: Routes<'a>,
    company: String,
    /// The business units whose contacts are the company's (read once per run, when there are contacts).
    scope: ScopeOnce,
    /// Put a deleted customer contact's F&O customer on hold (P2C_DEACTIVATE_TARGETS).
    hold_when_gone: bool,
}

impl<'a> Contacts<'a> {
    pub async fn open(deps: &'a Deps, company: &str) -> Result<Contacts<'a>, SyncError> {
        Ok(Contacts {
            routes: Routes::of(deps)?,
            company: company.to_string(),
            scope: {
                deps.business_unit_id(company).await?; // a wrong P2C_COMPANIES stops the run here
                ScopeOnce::new(company)
            },
            hold_when_gone: deps.cfg.deactivate_targets.contains(&FlowName::ContactsToFno),
        })
    }
}

impl Contacts<'_> {
    /// Contacts deleted in Sales: their links marked, and with P2C_DEACTIVATE_TARGETS the F&O customer of a
    /// customer contact put on hold (a contact person is only reported).
    async fn retire_deleted(
        &self,
        deps: &Deps,
        ids: Vec<String>,
        report: &mut RunReport,
    ) -> Result<Vec<Failure>, SyncError> {
        let gone: Vec<(String, Gone)> = ids
            .into_iter()
            .map(|id| (id.to_ascii_lowercase(), Gone::Deleted))
            .collect();
        let customer = self.routes.customer;
        let hold = self
            .hold_when_gone
            .then(|| (customer.target_entity.as_str(), read_field(customer)));
        let as_customer = Retire {
            entity: LinkEntity::Contact,
            company: &self.company,
            hold,
        };
        let (mut failures, rest) = retire(deps, &as_customer, gone, report).await?;
        let as_person = Retire {
            entity: LinkEntity::ContactPerson,
            company: &self.company,
            hold: None,
        };
        let (more, rest) = retire(deps, &as_person, rest, report).await?;
        failures.extend(more);
        count_unlinked(rest, report);
        Ok(failures)
    }
}

impl Flow for Contacts<'_> {
    fn name(&self) -> FlowName {
        FlowName::ContactsToFno
    }

    fn source(&self) -> SourceSpec {
        SourceSpec::Delta(vec![DeltaTable {
            set: SOURCE_SET.into(),
            select: self.routes.select(),
        }])
    }

    async fn sync_page(&mut self, deps: &Deps, page: Page, report: &mut RunReport) -> Result<Vec<Failure>, SyncError> {
        report.read += page.deleted.len() as u64;
        let mut failures = self.retire_deleted(deps, page.deleted, report).await?;
        failures.extend(sync_contacts(deps, self, page.rows.into_records(), report).await?);
        Ok(failures)
    }

    /// Contacts named by id, re-read from Sales so a replay never writes stale data.
    async fn sync_keys(
        &mut self,
        deps: &Deps,
        keys: Vec<String>,
        report: &mut RunReport,
    ) -> Result<Vec<Failure>, SyncError> {
        let (good, mut failures) = split_guids(keys, "contact");
        let rows = reread(deps, (SOURCE_SET, SOURCE_ID), &good, &self.routes.select(), report).await?;
        failures.extend(sync_contacts(deps, self, rows, report).await?);
        Ok(failures)
    }
}

fn fail(id: &str, key: &str, reason: String, transient: bool) -> Failure {
    Failure::new(id, key, reason, transient)
}

/// Map, skip unchanged, write (compare with F&O first), commit links.
async fn sync_contacts(
    deps: &Deps,
    flow: &Contacts<'_>,
    mut rows: Vec<Record>,
    report: &mut RunReport,
) -> Result<Vec<Failure>, SyncError> {
    let mut failures = Vec::new();
    deps.lookups
        .enrich(&deps.sales, &lookup_paths(flow.routes.customer), &mut rows)
        .await?;
    if rows.is_empty() {
        return Ok(failures);
    }
    let scope = flow.scope.get(deps).await?;
    let routed = route_rows(flow, scope, rows, report, &mut failures);
    let parents = PersonParents::resolve(deps, flow, &routed).await?;
    let pending = transform(flow, routed, &parents, &mut failures);
    let (pending, before) = skip_unchanged(deps, &flow.company, pending, report).await?;
    let new_links = write(deps, flow, &pending, report, &mut failures).await?;
    deps.crashes.check(CrashPoint::AfterTargetWrite)?;
    deps.state
        .put_links(&new_links, &before.iter().collect::<Vec<_>>())
        .await?;
    Ok(failures)
}

/// Routes each contact by the templates' filters.
fn route_rows(
    flow: &Contacts<'_>,
    scope: &BusinessUnitScope,
    rows: Vec<Record>,
    report: &mut RunReport,
    failures: &mut Vec<Failure>,
) -> Vec<(Route, String, Record)> {
    let mut routed = Vec::new();
    for row in rows {
        report.read += 1;
        let Some(id) = str_of(&row, SOURCE_ID).map(str::to_ascii_lowercase) else {
            let why = "the contact has no contactid; it cannot be synced".to_string();
            failures.push(fail("", "(no id)", why, false));
            continue;
        };
        if !scope.owns(&row) {
            report.skip(Skip::OtherBusinessUnit);
            continue;
        }
        let route = if flow.routes.customer.passes_filter(&row) {
            Route::Customer
        } else if flow.routes.person.passes_filter(&row) {
            Route::Person
        } else {
            report.skip(Skip::NotCustomerNorPerson);
            continue;
        };
        if str_of(&row, &flow.routes.template(route).source_key).is_none_or(|n| n.trim().is_empty()) {
            tracing::info!(id = %id, "contact without a number: not synced");
            report.skip(Skip::NoNumber);
            continue;
        }
        routed.push((route, id, row));
    }
    routed
}

/// Contact persons need their account's F&O party: the account number from the accounts-to-fno link.
struct PersonParents {
    /// The person template's parent lookup: (column of the account id, path the account number goes to).
    lookup: Option<(String, String)>,
    accounts: HashMap<String, String>,
    /// Names of the accounts not in F&O yet, for the failure reason.
    names: HashMap<String, String>,
}

impl PersonParents {
    async fn resolve(
        deps: &Deps,
        flow: &Contacts<'_>,
        routed: &[(Route, String, Record)],
    ) -> Result<PersonParents, SyncError> {
        let lookup = flow
            .routes
            .person
            .lookups()
            .into_iter()
            .find(|l| l.navigation == "parentcustomerid")
            .map(|l| (l.column, l.path));
        let parents: Vec<String> = routed
            .iter()
            .filter(|(r, _, _)| *r == Route::Person)
            .filter_map(|(_, _, row)| lookup.as_ref().and_then(|(col, _)| str_of(row, col)))
            .map(str::to_ascii_lowercase)
            .collect();
        let accounts = if parents.is_empty() {
            HashMap::new()
        } else {
            customer_accounts(deps, &flow.company, &parents, false).await?
        };
        let missing: Vec<String> = parents.iter().filter(|p| !accounts.contains_key(*p)).cloned().collect();
        let names = if missing.is_empty() {
            HashMap::new()
        } else {
            describe_customers(deps, &missing).await
        };
        Ok(PersonParents {
            lookup,
            accounts,
            names,
        })
    }

    /// Puts the account number into a person's row; a failure when the account has none or is not in F&O.
    fn fill(&self, company: &str, id: &str, number: &str, row: &mut Record) -> Result<(), Failure> {
        let Some((col, path)) = &self.lookup else {
            return Ok(());
        };
        let Some(parent) = str_of(row, col).map(str::to_ascii_lowercase) else {
            let why = format!(
                "contact {number} is marked as a contact of an account but has no company \
                 (parentcustomerid); set its company in Sales, or clear \"company is an account\""
            );
            return Err(fail(id, number, why, false));
        };
        let Some(account) = self.accounts.get(&parent) else {
            let who = self
                .names
                .get(&parent)
                .cloned()
                .unwrap_or_else(|| format!("account {parent}"));
            let why = format!(
                "contact {number} waits for its company, {who}, which is not in F&O company {company} yet \
                 (no accounts-to-fno link); it is retried from the queue after accounts-to-fno has synced \
                 the account"
            );
            return Err(fail(id, number, why, true));
        };
        row.insert(path.clone(), Value::String(account.clone()));
        Ok(())
    }
}

/// Maps and keys each routed contact.
fn transform(
    flow: &Contacts<'_>,
    routed: Vec<(Route, String, Record)>,
    parents: &PersonParents,
    failures: &mut Vec<Failure>,
) -> Vec<Pending> {
    let company = flow.company.as_str();
    let mut pending: Vec<Pending> = Vec::new();
    let mut seen: HashMap<(Route, String), String> = HashMap::new();
    for (route, id, mut row) in routed {
        let t = flow.routes.template(route);
        let number = str_of(&row, &t.source_key).unwrap_or(&id).to_string();
        if route == Route::Person
            && let Err(f) = parents.fill(company, &id, &number, &mut row)
        {
            failures.push(f);
            continue;
        }
        let p2c_mapping::Mapped { mut body, cleared } = match t.map_parts(&row) {
            Ok(m) => m,
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
        let key_text = key_text(&key);
        // Two contacts with one contact number would overwrite each other in F&O.
        if let Some(other) = seen.get(&(route, key_text.clone())) {
            let why = format!(
                "contact {id} has the same F&O key {key_text} as contact {other}; give one of them a unique \
                 contact number"
            );
            failures.push(fail(&id, &number, why, false));
            continue;
        }
        seen.insert((route, key_text.clone()), id.clone());
        pending.push(Pending {
            hash: content_hash(&body),
            version: version_of(&row),
            id,
            route,
            key,
            key_text,
            body,
            cleared,
        });
    }
    pending
}

/// Skips what p2c last wrote as it is now. Returns the rest and the links read (the states a commit replaces).
async fn skip_unchanged(
    deps: &Deps,
    company: &str,
    pending: Vec<Pending>,
    report: &mut RunReport,
) -> Result<(Vec<Pending>, Vec<HashMap<String, Link>>), SyncError> {
    let mut unchanged: HashSet<usize> = HashSet::new();
    let mut before = Vec::new();
    for route in [Route::Customer, Route::Person] {
        let idx: Vec<usize> = (0..pending.len()).filter(|&i| pending[i].route == route).collect();
        if idx.is_empty() {
            continue;
        }
        let ids: Vec<String> = idx.iter().map(|&i| pending[i].id.clone()).collect();
        let links = deps
            .state
            .get_links(link_entity(route).as_str(), company, "sales", &ids)
            .await?;
        for i in idx {
            let p = &pending[i];
            if links
                .get(&p.id)
                .is_some_and(|l| l.target_key == p.key_text && l.target_hash.as_deref() == Some(p.hash.as_str()))
            {
                report.skip(Skip::Unchanged);
                unchanged.insert(i);
            }
        }
        before.push(links);
    }
    let rest = pending
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !unchanged.contains(i))
        .map(|(_, p)| p)
        .collect();
    Ok((rest, before))
}

/// F&O's current rows of the contacts in `todo`, by route.
async fn read_rows(
    deps: &Deps,
    flow: &Contacts<'_>,
    pending: &[Pending],
    todo: &[usize],
) -> Result<Vec<(Route, Record)>, SyncError> {
    let mut current: Vec<(Route, Record)> = Vec::new();
    for route in [Route::Customer, Route::Person] {
        let t = flow.routes.template(route);
        let field = read_field(t);
        let values: Vec<String> = todo
            .iter()
            .map(|&i| &pending[i])
            .filter(|p| p.route == route)
            .filter_map(|p| p.body.get(field).map(text_of))
            .collect();
        let rows = read_current(
            deps,
            &t.target_entity,
            &flow.company,
            field,
            &values,
            &target_fields(t, &[]),
        )
        .await?;
        current.extend(rows.into_iter().map(|r| (route, r)));
    }
    Ok(current)
}

/// Compares with F&O's rows, then creates, PATCHes the differing fields, or writes nothing. A create or update
/// that races another writer is planned again from a fresh read, once. Returns the links to commit.
async fn write(
    deps: &Deps,
    flow: &Contacts<'_>,
    pending: &[Pending],
    report: &mut RunReport,
    failures: &mut Vec<Failure>,
) -> Result<Vec<Link>, SyncError> {
    let company = flow.company.as_str();
    let mut new_links = Vec::new();
    let mut todo: Vec<usize> = (0..pending.len()).collect();
    for attempt in 0..2 {
        if todo.is_empty() {
            break;
        }
        let current = read_rows(deps, flow, pending, &todo).await?;
        let mut sets: Vec<Vec<BatchOp>> = Vec::new();
        let mut planned: Vec<(usize, bool)> = Vec::new();
        for &i in &todo {
            let p = &pending[i];
            let t = flow.routes.template(p.route);
            let cur = current
                .iter()
                .find(|(r, row)| *r == p.route && row_has_key(row, &p.key))
                .map(|(_, row)| row);
            let pl = plan(&p.body, &p.cleared, &p.key, cur);
            match plan_op(deps, &t.target_entity, &p.key, &pl) {
                Some(op) => {
                    sets.push(vec![op]);
                    planned.push((i, matches!(pl, Plan::Create(_))));
                }
                None => {
                    report.skip(Skip::Echo);
                    new_links.push(link_of(p, company));
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
    Ok(new_links)
}

fn link_of(p: &Pending, company: &str) -> Link {
    Link {
        entity: link_entity(p.route).as_str().into(),
        company: company.into(),
        system: "sales".into(),
        source_key: p.id.clone(),
        target_key: p.key_text.clone(),
        source_version: p.version.clone(),
        source_hash: None,
        target_hash: Some(p.hash.clone()),
        synced_at: now(),
        previous: None,
    }
}
