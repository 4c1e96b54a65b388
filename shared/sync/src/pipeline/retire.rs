//! Source records that left (deleted, or deactivated): counted with their reason, their links marked once
//! ([`Gone`]), and — where the flow is in P2C_DEACTIVATE_TARGETS — their F&O target put on hold. p2c never
//! deletes an F&O customer because its Sales record went.

use p2c_dynamics::BatchOp;
use p2c_state::Link;
use serde_json::{Value, json};

use crate::{
    deps::Deps,
    error::SyncError,
    pipeline::{
        links::{Gone, LinkEntity},
        record::now,
        sink::fno::write_sets,
    },
    report::{Failure, RunReport, Skip},
};

/// `OnHoldStatus` (CustVendorBlocked) of a customer whose Sales record left, and of one back again.
pub const ON_HOLD: &str = "All";
pub const NOT_ON_HOLD: &str = "No";

/// Where a flow's retired records are: their links, and the F&O customers to put on hold (`None`: report only).
pub struct Retire<'a> {
    pub entity: LinkEntity,
    pub company: &'a str,
    /// (customer entity set, customer key field) when the flow puts customers on hold.
    pub hold: Option<(&'a str, &'a str)>,
}

fn skip_of(why: Gone) -> Skip {
    match why {
        Gone::Deleted | Gone::Retired => Skip::DeletedInSales,
        Gone::Inactive => Skip::Inactive,
    }
}

fn marked(l: &Link, why: Gone) -> Link {
    Link {
        source_version: Some(why.as_version().into()),
        synced_at: now(),
        ..l.clone()
    }
}

/// Retires the records of `gone` linked under `r.entity`. Returns the failures (a hold F&O refused) and the
/// records without such a link (for the caller: another link entity, or nothing to retire).
pub async fn retire(
    deps: &Deps,
    r: &Retire<'_>,
    gone: Vec<(String, Gone)>,
    report: &mut RunReport,
) -> Result<(Vec<Failure>, Vec<(String, Gone)>), SyncError> {
    if gone.is_empty() {
        return Ok((Vec::new(), gone));
    }
    let ids: Vec<String> = gone.iter().map(|(id, _)| id.clone()).collect();
    let links = deps
        .state
        .get_links(r.entity.as_str(), r.company, "sales", &ids)
        .await?;
    let (mut hold, mut marks, mut unlinked) = (Vec::new(), Vec::new(), Vec::new());
    for (id, why) in gone {
        match links.get(&id) {
            // Retired before: counted, nothing more.
            Some(l) if l.source_version.as_deref() == Some(why.as_version()) => report.skip(skip_of(why)),
            Some(l) if r.hold.is_some() => hold.push((l.clone(), why)),
            Some(l) => {
                report.skip(skip_of(why));
                marks.push(marked(l, why));
            }
            None => unlinked.push((id, why)),
        }
    }
    let mut failures = Vec::new();
    if let Some((set, key_field)) = r.hold {
        let sets: Vec<Vec<BatchOp>> = hold
            .iter()
            .map(|(l, _)| vec![hold_op(deps, set, r.company, key_field, &l.target_key, ON_HOLD)])
            .collect();
        for ((l, why), w) in hold.into_iter().zip(write_sets(deps, &sets).await) {
            match w {
                Ok(()) => {
                    report.wrote(false);
                    marks.push(marked(&l, why));
                }
                Err(e) => {
                    let why = format!("putting customer {} on hold: {}", l.target_key, e.reason);
                    failures.push(Failure::new(&l.source_key, &l.target_key, why, e.transient));
                }
            }
        }
    }
    deps.state.put_links(&marks, &[&links]).await?;
    Ok((failures, unlinked))
}

/// The PATCH that sets a customer's `OnHoldStatus`.
pub fn hold_op(deps: &Deps, set: &str, company: &str, key_field: &str, key: &str, status: &str) -> BatchOp {
    let body: Value = json!({ "OnHoldStatus": status });
    deps.fno
        .update_op(set, &[("dataAreaId", company), (key_field, key)], body)
}

/// Counts the records no link entity knew: they never reached the target, so there is nothing to retire.
pub fn count_unlinked(rest: Vec<(String, Gone)>, report: &mut RunReport) {
    for (_, why) in rest {
        report.skip(skip_of(why));
    }
}
