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
