//! The seven flows. Each module is a [`Flow`]: its source, and what it does with a page (map, decide, write,
//! commit links). A flow module never imports another; the loop, checkpoints, routing, sources and sinks are
//! the pipeline's. This module only says which flow runs which name.

pub mod accounts;
pub mod contacts;
pub mod documents;
pub mod fno_to_sales;

use p2c_state::Lease;

use crate::{
    deps::Deps,
    error::SyncError,
    flow_name::FlowName,
    pipeline::{Flow, RunOptions, run_changes},
    report::{Failure, RunReport},
};

/// Opens `flow` for `company` and hands it to `$body` (flows are distinct types, so each arm is its own call).
macro_rules! with_flow {
    ($deps:expr, $flow:expr, $company:expr, |$f:ident| $body:expr) => {
        match $flow {
            FlowName::AccountsToFno => {
                let mut $f = accounts::Accounts::open($deps, $company).await?;
                $body
            }
            FlowName::ContactsToFno => {
                let mut $f = contacts::Contacts::open($deps, $company).await?;
                $body
            }
            FlowName::QuotesToFno | FlowName::OrdersToFno => {
                let mut $f = documents::Documents::open($deps, $flow, $company).await?;
                $body
            }
            FlowName::ProductsToSales | FlowName::OrdersToSales | FlowName::InvoicesToSales => {
                let mut $f = fno_to_sales::FnoToSales::open($deps, $flow, $company).await?;
                $body
            }
        }
    };
}

/// A scheduled run of `flow` for one company (the caller holds the lease).
pub async fn run(
    deps: &Deps,
    flow: FlowName,
    company: &str,
    opts: &RunOptions,
    report: &mut RunReport,
    lease: &Lease,
) -> Result<(), SyncError> {
    with_flow!(deps, flow, company, |f| run_changes(
        deps, &mut f, company, opts, report, lease
    )
    .await)
}

/// The records named by key (SQS). Returns the failures for the caller to route.
pub async fn sync_keys(
    deps: &Deps,
    flow: FlowName,
    company: &str,
    keys: Vec<String>,
    report: &mut RunReport,
) -> Result<Vec<Failure>, SyncError> {
    with_flow!(deps, flow, company, |f| f.sync_keys(deps, keys, report).await)
}

/// A Sales table whose row changes a Sales → F&O flow syncs: what Dataverse webhooks are registered for and what
/// the events function routes by. `columns` are the attributes the flow reads (lookups by attribute name, e.g.
/// `parentcustomerid` for `_parentcustomerid_value`): an update touching none of them cannot change the target.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WatchedTable {
    pub flow: FlowName,
    /// Logical name, as webhooks name it (`PrimaryEntityName`), e.g. `quotedetail`.
    pub logical: String,
    /// Web API entity set, e.g. `quotedetails`.
    pub entity_set: String,
    pub columns: Vec<String>,
    /// A deleted row is worth an event: the flow acts on the id of a row that is gone (a deleted document line
    /// is deleted in F&O). Deletions of the other tables reach the flow through change tracking on its schedule.
    pub deletes: bool,
}

/// The Sales tables `flow` reads, from its templates (empty for the F&O → Sales flows, whose source is F&O).
pub fn watched_tables(flow: FlowName, templates: &[p2c_mapping::Template]) -> Vec<WatchedTable> {
    if matches!(
        flow,
        FlowName::ProductsToSales | FlowName::OrdersToSales | FlowName::InvoicesToSales
    ) {
        return Vec::new();
    }
    let mut out: Vec<WatchedTable> = Vec::new();
    for t in templates {
        let mut cols: Vec<String> = t
            .source_select()
            .into_iter()
            .filter(|c| *c != t.source_id && c != "versionnumber")
            .map(|c| attribute_of(&c))
            .collect();
        // What the flows read beside the template: the owner (company routing) and, for accounts, the state.
        cols.push("owningbusinessunit".into());
        if flow == FlowName::AccountsToFno {
            cols.push("statecode".into());
        }
        let deletes = t.role == p2c_mapping::Role::Line;
        match out.iter_mut().find(|w| w.entity_set == t.source_entity) {
            Some(w) => {
                w.columns.extend(cols);
                w.deletes |= deletes;
            }
            None => out.push(WatchedTable {
                flow,
                logical: logical_name(&t.source_entity),
                entity_set: t.source_entity.clone(),
                columns: cols,
                deletes,
            }),
        }
    }
    for w in &mut out {
        w.columns.sort();
        w.columns.dedup();
    }
    out
}

/// `_parentcustomerid_value` → `parentcustomerid`; other columns are attribute names already.
fn attribute_of(select_column: &str) -> String {
    select_column
        .strip_prefix('_')
        .and_then(|c| c.strip_suffix("_value"))
        .unwrap_or(select_column)
        .to_string()
}

/// A Sales entity set's logical name: the sets the flows read are the logical name plus `s`.
pub fn logical_name(entity_set: &str) -> String {
    match entity_set.strip_suffix("ies") {
        Some(stem) => format!("{stem}y"),
        None => entity_set.strip_suffix('s').unwrap_or(entity_set).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(f: FlowName) -> Vec<WatchedTable> {
        watched_tables(f, &p2c_mapping::templates_for(f.as_str()))
    }

    #[test]
    fn sales_to_fno_flows_watch_their_tables_and_columns() {
        let a = watched(FlowName::AccountsToFno);
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].logical.as_str(), a[0].entity_set.as_str()),
            ("account", "accounts")
        );
        assert!(
            a[0].columns.contains(&"accountnumber".to_string()),
            "{:?}",
            a[0].columns
        );
        assert!(a[0].columns.contains(&"owningbusinessunit".to_string()));
        assert!(
            !a[0]
                .columns
                .iter()
                .any(|c| c.starts_with('_') || c == "accountid" || c == "versionnumber")
        );
        assert!(!a[0].deletes);
        let q = watched(FlowName::QuotesToFno);
        let names: Vec<_> = q.iter().map(|w| (w.logical.as_str(), w.deletes)).collect();
        assert_eq!(names, [("quote", false), ("quotedetail", true)]);
        assert!(q[1].columns.contains(&"quoteid".to_string()), "{:?}", q[1].columns);
        let o = watched(FlowName::OrdersToFno);
        assert_eq!(o[0].logical, "salesorder");
        assert_eq!(o[1].logical, "salesorderdetail");
        assert_eq!(watched(FlowName::ContactsToFno)[0].logical, "contact");
        for f in [
            FlowName::ProductsToSales,
            FlowName::OrdersToSales,
            FlowName::InvoicesToSales,
        ] {
            assert!(watched(f).is_empty(), "{f}");
        }
    }
}
