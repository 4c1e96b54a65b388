//! accounts-to-fno (spec/templates.md 5.1): Sales `account` → F&O `CustomersV2`, keyed by the account number.
//!
//! Decide: skip a record whose mapped content equals what its link says was last written (`Skip::Unchanged`).
//! Write: create what has no link and update what has one, without reading F&O first (see
//! [`upsert_all`]: F&O enforces the key, so a create that an earlier crashed run already made becomes an
//! update, and nothing is duplicated).
//! Deleted or deactivated accounts: reported and their links marked ([`Gone`]); with the flow in
//! P2C_DEACTIVATE_TARGETS their F&O customer is also put on hold (`OnHoldStatus` = All), and taken off hold
//! when the account is active again.

use std::collections::HashMap;

use p2c_dynamics::Record;
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
        links::{Gone, LinkEntity},
        lookups::lookup_paths,
        record::{now, split_guids, str_of, version_of},
        retire::{NOT_ON_HOLD, Retire, count_unlinked, retire},
        sink::fno::{Upsert, upsert_all},
        source::{
            Page, SourceSpec,
            delta::{DeltaTable, reread},
        },
    },
    report::{Failure, RunReport, Skip},
};

/// Entity name of the link items (`LINK#account#...`); quotes and orders resolve customers through them.
const LINK_ENTITY: LinkEntity = LinkEntity::Account;
const NOUN: &str = "account";

/// accounts-to-fno for one company.
pub struct Accounts<'a> {
    template: &'a Template,
    company: String,
    /// The business units whose accounts are the company's (read once per run, when there are accounts).
    scope: ScopeOnce,
    /// Put the F&O customer on hold when its account is deleted or deactivated (P2C_DEACTIVATE_TARGETS).
    hold_when_gone: bool,
}

struct Pending {
    id: String,
    key: String,
    body: Record,
    /// The fields of `body` that clear F&O's value (blank in Sales).
    cleared: Vec<String>,
    hash: String,
    version: Option<String>,
    linked_same_key: bool,
    /// Its link says the account had left Sales (deleted or inactive): write even if unchanged.
    returning: bool,
}

impl<'a> Accounts<'a> {
    pub async fn open(deps: &'a Deps, company: &str) -> Result<Accounts<'a>, SyncError> {
        let template = deps.templates(FlowName::AccountsToFno).first().ok_or_else(|| {
            SyncError::Mapping("flow accounts-to-fno has no template; the mapping crate must define it".into())
        })?;
        Ok(Accounts {
            template,
            company: company.to_string(),
            scope: {
                deps.business_unit_id(company).await?; // a wrong P2C_COMPANIES stops the run here
                ScopeOnce::new(company)
            },
            hold_when_gone: deps.cfg.deactivate_targets.contains(&FlowName::AccountsToFno),
        })
    }

    /// Columns to read: the template's, plus the owner business unit and the row version.
    fn select(&self) -> Vec<String> {
        let mut cols = self.template.source_select();
        for extra in ["_owningbusinessunit_value", "versionnumber", "statecode"] {
            if !cols.iter().any(|c| c == extra) {
                cols.push(extra.to_string());
            }
        }
        cols
    }

    /// The target key field other than `dataAreaId` (`CustomerAccount`).
    fn key_field(&self) -> &str {
        let t = self.template;
        t.target_key
            .iter()
            .find(|k| *k != "dataAreaId")
            .map_or("", String::as_str)
    }

    /// Transform: filter, map, key. Rows that cannot be mapped fail on their own; deactivated accounts go to
    /// `inactive` (their id and number).
    fn transform(
        &self,
        rows: Vec<Record>,
        scope: &BusinessUnitScope,
        report: &mut RunReport,
        failures: &mut Vec<Failure>,
        inactive: &mut Vec<(String, Gone)>,
    ) -> Vec<Pending> {
        let t = self.template;
        let mut pending = Vec::with_capacity(rows.len());
        let mut seen_keys: HashMap<String, String> = HashMap::new();
        for row in rows {
            report.read += 1;
            let Some(id) = str_of(&row, &t.source_id).map(str::to_string) else {
                let why = format!("the {NOUN} has no {}; it cannot be synced or retried", t.source_id);
                failures.push(Failure::new("", "(no id)", why, false));
                continue;
            };
            if !scope.owns(&row) {
                report.skip(Skip::OtherBusinessUnit);
                continue;
            }
            if !t.passes_filter(&row) {
                report.skip(Skip::Filtered);
                continue;
            }
            if str_of(&row, &t.source_key).is_none_or(|n| n.trim().is_empty()) {
                tracing::info!(id = %id, "account without a number: not synced");
                report.skip(Skip::NoNumber);
                continue;
            }
            if row.get("statecode").and_then(Value::as_i64) == Some(1) {
                inactive.push((id, Gone::Inactive));
                continue;
            }
            let mapped = match t.key_of(&row) {
                Ok(key) => t.map_parts(&row).map(|m| (key, m)),
                Err(e) => Err(e),
            };
            let (key, p2c_mapping::Mapped { mut body, cleared }) = match mapped {
                Ok(v) => v,
                Err(e) => {
                    let key = str_of(&row, &t.source_key).unwrap_or(&id).to_string();
                    failures.push(Failure::new(&id, &key, e.to_string(), false));
                    continue;
                }
            };
            // Two Sales records with one account number would overwrite each other's customer.
            if let Some(other) = seen_keys.get(&key) {
                let sk = &t.source_key;
                let why = format!("{NOUN} {key} has the same {sk} as {NOUN} {other}; give one of them a unique {sk}");
                failures.push(Failure::new(&id, &key, why, false));
                continue;
            }
            seen_keys.insert(key.clone(), id.clone());
            body.insert("dataAreaId".into(), Value::String(self.company.clone()));
            pending.push(Pending {
                hash: content_hash(&body),
                version: version_of(&row),
                id,
                key,
                body,
                cleared,
                linked_same_key: false,
                returning: false,
            });
        }
        pending
    }

    /// Syncs Sales rows of the company to F&O. Returns the records that failed.
    async fn sync_rows(
        &self,
        deps: &Deps,
        mut rows: Vec<Record>,
        report: &mut RunReport,
    ) -> Result<Vec<Failure>, SyncError> {
        let company = self.company.as_str();
        let mut failures = Vec::new();
        deps.lookups
            .enrich(&deps.sales, &lookup_paths(self.template), &mut rows)
            .await?;
        if rows.is_empty() {
            return Ok(failures);
        }
        let scope = self.scope.get(deps).await?;
        let mut inactive = Vec::new();
        let mut pending = self.transform(rows, scope, report, &mut failures, &mut inactive);
        failures.extend(self.retire(deps, inactive, report).await?);

        // Decide: skip what its link says was written as it is now.
        let ids: Vec<String> = pending.iter().map(|p| p.id.clone()).collect();
        let links = deps
            .state
            .get_links(LINK_ENTITY.as_str(), company, "sales", &ids)
            .await?;
        pending.retain_mut(|p| match links.get(&p.id) {
            Some(l) if deps.cfg.skip_unchanged && unchanged(l, p) => {
                report.skip(Skip::Unchanged);
                false
            }
            Some(l) => {
                p.linked_same_key = l.target_key == p.key;
                p.returning = Gone::marked(l.source_version.as_deref());
                true
            }
            None => true,
        });
        if pending.is_empty() {
            return Ok(failures);
        }

        // Write, then commit links for what was written.
        let key_field = self.key_field().to_string();
        let items: Vec<Upsert> = pending
            .iter_mut()
            .map(|p| {
                let mut body = std::mem::take(&mut p.body);
                if p.returning && self.hold_when_gone {
                    body.insert("OnHoldStatus".into(), Value::String(NOT_ON_HOLD.into()));
                }
                Upsert {
                    key: vec![
                        ("dataAreaId".into(), Value::String(company.to_string())),
                        (key_field.clone(), Value::String(p.key.clone())),
                    ],
                    body,
                    cleared: std::mem::take(&mut p.cleared),
                    create: !p.linked_same_key,
                }
            })
            .collect();
        let results = upsert_all(deps, &self.template.target_entity, items).await;
        deps.crashes.check(CrashPoint::AfterTargetWrite)?;
        let mut new_links = Vec::new();
        let synced_at = now();
        for (p, r) in pending.into_iter().zip(results) {
            match r {
                Ok(created) => {
                    report.wrote(created);
                    new_links.push(Link {
                        entity: LINK_ENTITY.as_str().into(),
                        company: company.into(),
                        system: "sales".into(),
                        source_key: p.id,
                        target_key: p.key,
                        source_version: p.version,
                        source_hash: None,
                        target_hash: Some(p.hash),
                        synced_at: synced_at.clone(),
                        previous: None,
                    });
                }
                Err(e) => failures.push(Failure::new(&p.id, &p.key, e.reason, e.transient)),
            }
        }
        deps.state.put_links(&new_links, &[&links]).await?;
        Ok(failures)
    }
}

/// Its link says it was written as it is now (and it had not left Sales since).
fn unchanged(l: &Link, p: &Pending) -> bool {
    l.target_key == p.key && l.target_hash.as_deref() == Some(&p.hash) && !Gone::marked(l.source_version.as_deref())
}

impl Accounts<'_> {
    /// Accounts that left Sales (deleted, or deactivated): see [`retire`].
    async fn retire(
        &self,
        deps: &Deps,
        gone: Vec<(String, Gone)>,
        report: &mut RunReport,
    ) -> Result<Vec<Failure>, SyncError> {
        let r = Retire {
            entity: LINK_ENTITY,
            company: &self.company,
            hold: self
                .hold_when_gone
                .then(|| (self.template.target_entity.as_str(), self.key_field())),
        };
        let (failures, unlinked) = retire(deps, &r, gone, report).await?;
        count_unlinked(unlinked, report);
        Ok(failures)
    }
}

impl Flow for Accounts<'_> {
    fn name(&self) -> FlowName {
        FlowName::AccountsToFno
    }

    fn source(&self) -> SourceSpec {
        SourceSpec::Delta(vec![DeltaTable {
            set: self.template.source_entity.clone(),
            select: self.select(),
        }])
    }

    async fn sync_page(&mut self, deps: &Deps, page: Page, report: &mut RunReport) -> Result<Vec<Failure>, SyncError> {
        report.read += page.deleted.len() as u64;
        let deleted = page.deleted.into_iter().map(|id| (id, Gone::Deleted)).collect();
        let mut failures = self.retire(deps, deleted, report).await?;
        failures.extend(self.sync_rows(deps, page.rows.into_records(), report).await?);
        Ok(failures)
    }

    /// Re-reads each record: a replay never writes stale data.
    async fn sync_keys(
        &mut self,
        deps: &Deps,
        keys: Vec<String>,
        report: &mut RunReport,
    ) -> Result<Vec<Failure>, SyncError> {
        let t = self.template;
        let (good, mut failures) = split_guids(keys, NOUN);
        let source = (t.source_entity.as_str(), t.source_id.as_str());
        let rows = reread(deps, source, &good, &self.select(), report).await?;
        failures.extend(self.sync_rows(deps, rows, report).await?);
        Ok(failures)
    }
}
