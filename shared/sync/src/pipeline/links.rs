//! Links between the two systems' records, as the flows share them: markers kept on a link, and customers
//! resolved through the links the account and contact flows commit.

use std::collections::HashMap;

use crate::{deps::Deps, error::SyncError, pipeline::record::str_of};

/// `source_hash` of a link whose target record p2c deleted (a document line removed in Sales).
pub const TOMBSTONE: &str = "deleted";

/// The F&O customer account of Sales customers (accounts, and contacts when `contacts` is set), by lower-case
/// Sales id, from the links accounts-to-fno and contacts-to-fno commit (`target_key` = the customer account).
/// A customer with no link in this company is absent: it is not in F&O yet.
pub(crate) async fn customer_accounts(
    deps: &Deps,
    company: &str,
    ids: &[String],
    contacts: bool,
) -> Result<HashMap<String, String>, SyncError> {
    let ids: Vec<String> = ids.iter().map(|i| i.to_ascii_lowercase()).collect();
    let mut out: HashMap<String, String> = deps
        .state
        .get_links("account", company, "sales", &ids)
        .await?
        .into_iter()
        .map(|(k, l)| (k.to_ascii_lowercase(), l.target_key))
        .collect();
    let rest: Vec<String> = ids.iter().filter(|i| !out.contains_key(*i)).cloned().collect();
    if contacts && !rest.is_empty() {
        out.extend(
            deps.state
                .get_links("contact", company, "sales", &rest)
                .await?
                .into_iter()
                .map(|(k, l)| (k.to_ascii_lowercase(), l.target_key)),
        );
    }
    Ok(out)
}

/// Names Sales customers for a failure reason: `account ACC-1 "Contoso"`, `contact CON-1 "Jane Doe"`, or the
/// id when Sales does not know it. Best effort: a read error leaves the id.
pub(crate) async fn describe_customers(deps: &Deps, ids: &[String]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let reads = [
        ("accounts", "accountid", "accountnumber", "name", "account"),
        ("contacts", "contactid", "msdynce_contactnumber", "fullname", "contact"),
    ];
    for (set, pk, number, name, noun) in reads {
        let select = vec![pk.to_string(), number.to_string(), name.to_string()];
        let Ok(rows) = deps.sales.get_by_ids(set, pk, ids, &select).await else {
            continue;
        };
        for r in rows {
            let Some(id) = str_of(&r, pk) else { continue };
            let what = match (str_of(&r, number), str_of(&r, name)) {
                (Some(n), Some(m)) => format!("{noun} {n} \"{m}\""),
                (Some(n), None) => format!("{noun} {n}"),
                (None, Some(m)) => format!("{noun} \"{m}\" (id {id}, no {number})"),
                (None, None) => format!("{noun} {id}"),
            };
            out.entry(id.to_ascii_lowercase()).or_insert(what);
        }
    }
    out
}
