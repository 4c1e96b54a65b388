//! Which module runs which flow. A flow module offers two entry points: a scheduled run over its changes, and
//! the sync of records named by key (SQS). Leases, run records and failure routing stay in `run`/`handler`.

use p2c_state::Lease;

use crate::{
    deps::Deps, error::SyncError, flows::FlowName, fno_to_sales, report::RunReport, run::RunOptions, sales_to_fno,
    sales_to_fno::Failure,
};

pub(crate) async fn run_changes(
    deps: &Deps,
    flow: FlowName,
    company: &str,
    opts: &RunOptions,
    report: &mut RunReport,
    lease: &Lease,
) -> Result<(), SyncError> {
    match flow {
        FlowName::AccountsToFno => sales_to_fno::run_changes(deps, flow, company, opts, report, lease).await,
        FlowName::ContactsToFno => crate::contacts::run_changes(deps, flow, company, opts, report, lease).await,
        FlowName::QuotesToFno | FlowName::OrdersToFno => {
            crate::documents::run_changes(deps, flow, company, opts, report, lease).await
        }
        FlowName::ProductsToSales | FlowName::OrdersToSales | FlowName::InvoicesToSales => {
            fno_to_sales::run_changes(deps, flow, company, opts, report, lease).await
        }
    }
}

pub(crate) async fn process_keys(
    deps: &Deps,
    flow: FlowName,
    company: &str,
    keys: Vec<String>,
    report: &mut RunReport,
) -> Result<Vec<Failure>, SyncError> {
    match flow {
        FlowName::AccountsToFno => sales_to_fno::process_keys(deps, flow, company, keys, report).await,
        FlowName::ContactsToFno => crate::contacts::process_keys(deps, flow, company, keys, report).await,
        FlowName::QuotesToFno | FlowName::OrdersToFno => {
            crate::documents::process_keys(deps, flow, company, keys, report).await
        }
        FlowName::ProductsToSales | FlowName::OrdersToSales | FlowName::InvoicesToSales => {
            fno_to_sales::process_keys(deps, flow, company, keys, report).await
        }
    }
}
