//! Links between the two systems' records, as the flows share them: markers kept on a link, and customers
//! resolved through the links the account and contact flows commit.

use std::collections::HashMap;

use crate::{deps::Deps, error::SyncError, pipeline::record::str_of};

/// `source_hash` of a link whose target record p2c deleted (a document line removed in Sales).
pub const TOMBSTONE: &str = "deleted";

/// The entity of link items (`LINK#<entity>#<company>#<system>#<source key>`): the Sales logical name of the
/// record's table. One flow writes a link and others read it (quotes resolve customers through accounts' links,
/// documents check products through products-to-sales' links), so the names are one type, not strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkEntity {
    Account,
    Contact,
    ContactPerson,
    Quote,
    QuoteLine,
    SalesOrder,
    SalesOrderLine,
    Product,
    PriceListItem,
    Invoice,
    InvoiceLine,
}

impl LinkEntity {
    pub const ALL: [LinkEntity; 11] = [
        LinkEntity::Account,
        LinkEntity::Contact,
        LinkEntity::ContactPerson,
        LinkEntity::Quote,
        LinkEntity::QuoteLine,
        LinkEntity::SalesOrder,
        LinkEntity::SalesOrderLine,
        LinkEntity::Product,
        LinkEntity::PriceListItem,
        LinkEntity::Invoice,
        LinkEntity::InvoiceLine,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkEntity::Account => "account",
            LinkEntity::Contact => "contact",
            LinkEntity::ContactPerson => "contactperson",
            LinkEntity::Quote => "quote",
            LinkEntity::QuoteLine => "quotedetail",
            LinkEntity::SalesOrder => "salesorder",
            LinkEntity::SalesOrderLine => "salesorderdetail",
            LinkEntity::Product => "product",
            LinkEntity::PriceListItem => "productpricelevel",
            LinkEntity::Invoice => "invoice",
            LinkEntity::InvoiceLine => "invoicedetail",
        }
    }

    /// The link entity of records written to this Sales entity set (`products` → `Product`).
    pub fn of_sales_set(set: &str) -> Option<LinkEntity> {
        LinkEntity::ALL
            .into_iter()
            .find(|e| set.strip_suffix('s') == Some(e.as_str()))
    }
}

impl std::fmt::Display for LinkEntity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A source record that left: deleted, or deactivated (statecode Inactive). Kept in its link's `source_version`
/// so the next run knows the target was retired (and, with P2C_DEACTIVATE_TARGETS, put on hold).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    Deleted,
    Inactive,
    /// Deleted at the source and its target retired (products-to-sales: the Sales product set Retired), so a
    /// source record that comes back has its target made active again.
    Retired,
}

impl Gone {
    pub fn as_version(self) -> &'static str {
        match self {
            Gone::Deleted => "gone:deleted",
            Gone::Inactive => "gone:inactive",
            Gone::Retired => "gone:retired",
        }
    }

    /// Whether a link says its source left.
    pub fn marked(source_version: Option<&str>) -> bool {
        source_version.is_some_and(|v| v.starts_with("gone:"))
    }
}

/// A mark kept in a link's `source_version` by the F&O → Sales flows: the F&O content (by hash) that failed, or
/// that found its Sales record closed. Later sweeps skip it while that content stays the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Failed,
    Closed,
}

impl Mark {
    /// The `source_version` value of this mark for content `hash`.
    pub fn on(self, hash: &str) -> String {
        match self {
            Mark::Failed => format!("failed:{hash}"),
            Mark::Closed => format!("closed:{hash}"),
        }
    }

    /// The mark a `source_version` holds for content `hash` (none when the content changed since).
    pub fn of(source_version: Option<&str>, hash: &str) -> Option<Mark> {
        [Mark::Failed, Mark::Closed]
            .into_iter()
            .find(|m| source_version == Some(m.on(hash).as_str()))
    }
}

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
        .get_links(LinkEntity::Account.as_str(), company, "sales", &ids)
        .await?
        .into_iter()
        .map(|(k, l)| (k.to_ascii_lowercase(), l.target_key))
        .collect();
    let rest: Vec<String> = ids.iter().filter(|i| !out.contains_key(*i)).cloned().collect();
    if contacts && !rest.is_empty() {
        out.extend(
            deps.state
                .get_links(LinkEntity::Contact.as_str(), company, "sales", &rest)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_entities_of_the_sales_sets_flows_write() {
        assert_eq!(LinkEntity::of_sales_set("products"), Some(LinkEntity::Product));
        assert_eq!(
            LinkEntity::of_sales_set("productpricelevels"),
            Some(LinkEntity::PriceListItem)
        );
        assert_eq!(
            LinkEntity::of_sales_set("invoicedetails"),
            Some(LinkEntity::InvoiceLine)
        );
        assert_eq!(LinkEntity::of_sales_set("salesorders"), Some(LinkEntity::SalesOrder));
        assert_eq!(LinkEntity::of_sales_set("widgets"), None);
    }

    #[test]
    fn marks_hold_only_for_the_same_content() {
        let v = Mark::Failed.on("h1");
        assert_eq!(Mark::of(Some(&v), "h1"), Some(Mark::Failed));
        assert_eq!(Mark::of(Some(&v), "h2"), None);
        assert_eq!(Mark::of(Some(&Mark::Closed.on("h1")), "h1"), Some(Mark::Closed));
        assert_eq!(Mark::of(None, "h1"), None);
    }
}
