//! Reading from Sales (and the links store) what a document needs: headers by id (also when an SQS key names a
//! line), the lines of a set of documents, their products and the products' links, and the customers' F&O
//! accounts. Nothing is decided here; a header Sales no longer has is only counted.

use std::collections::{HashMap, HashSet};

use p2c_dynamics::Record;
use p2c_state::Link;
use serde_json::Value;

use super::{spec::DocFlow, transform::Header};
use crate::pipeline::{links::LinkEntity, source::delta::reread};
use crate::{
    deps::Deps,
    error::SyncError,
    pipeline::{
        links::{customer_accounts, describe_customers},
        lookups::lookup_paths,
        record::{split_guids, str_of},
    },
    report::{Failure, RunReport},
};

/// Header ids per `or` filter when reading the lines of documents (a GUID costs ~60 URL characters).
const HEADERS_PER_LINE_READ: usize = 200;

/// The lower-case values of a column, for the rows that have it.
pub(super) fn ids_of<'r>(rows: &'r [Record], column: &'r str) -> impl Iterator<Item = String> + 'r {
    rows.iter()
        .filter_map(move |r| str_of(r, column).map(str::to_ascii_lowercase))
}

/// Headers by id; an id Sales no longer has is counted and skipped.
pub(super) async fn read_headers(
    deps: &Deps,
    spec: &DocFlow<'_>,
    ids: &[String],
    select: &[String],
    report: &mut RunReport,
) -> Result<Vec<Record>, SyncError> {
    reread(deps, (spec.header_set(), &spec.header.source_id), ids, select, report).await
}

/// What SQS keys name: the headers of the documents to sync, and the ids Sales has neither as a header nor as a
/// line (deleted lines, whose F&O line may still need deleting).
pub(super) struct Keyed {
    pub(super) headers: Vec<Record>,
    pub(super) gone_lines: Vec<String>,
    /// Keys that are not ids at all.
    pub(super) failures: Vec<Failure>,
}

/// Keys are header ids, or line ids standing for their document.
pub(super) async fn read_keys(
    deps: &Deps,
    spec: &DocFlow<'_>,
    keys: Vec<String>,
    report: &mut RunReport,
) -> Result<Keyed, SyncError> {
    let (good, failures) = split_guids(keys, spec.noun);
    let mut ids: Vec<String> = good.into_iter().map(|k| k.to_ascii_lowercase()).collect();
    ids.sort();
    ids.dedup();
    let select = spec.header_select();
    let mut headers = if ids.is_empty() {
        Vec::new()
    } else {
        deps.sales
            .get_by_ids(spec.header_set(), &spec.header.source_id, &ids, &select)
            .await?
    };
    let found: HashSet<String> = ids_of(&headers, &spec.header.source_id).collect();
    let rest: Vec<String> = ids.into_iter().filter(|k| !found.contains(k)).collect();
    let mut gone_lines = Vec::new();
    if !rest.is_empty() {
        let (more, gone) = read_line_keys(deps, spec, rest, &found, &select, report).await?;
        headers.extend(more);
        gone_lines = gone;
    }
    Ok(Keyed {
        headers,
        gone_lines,
        failures,
    })
}

/// Keys that are not headers, read as lines: the headers of their documents (those not in `found`), and the
/// keys that are not lines either.
async fn read_line_keys(
    deps: &Deps,
    spec: &DocFlow<'_>,
    keys: Vec<String>,
    found: &HashSet<String>,
    select: &[String],
    report: &mut RunReport,
) -> Result<(Vec<Record>, Vec<String>), SyncError> {
    let lines = deps
        .sales
        .get_by_ids(spec.line_set(), &spec.line.source_id, &keys, &spec.line_delta_select())
        .await?;
    let line_ids: HashSet<String> = ids_of(&lines, &spec.line.source_id).collect();
    let mut parents: Vec<String> = ids_of(&lines, &spec.parent_col)
        .filter(|p| !found.contains(p))
        .collect();
    parents.sort();
    parents.dedup();
    let headers = read_headers(deps, spec, &parents, select, report).await?;
    let gone = keys.into_iter().filter(|k| !line_ids.contains(k)).collect();
    Ok((headers, gone))
}

/// Adds the lookup values the header template reads, and the currency's decimals (for the discount split).
pub(super) async fn enrich_headers(deps: &Deps, spec: &DocFlow<'_>, headers: &mut [Record]) -> Result<(), SyncError> {
    let mut paths = lookup_paths(spec.header);
    paths.push(("transactioncurrencyid".into(), "currencyprecision".into()));
    deps.lookups.enrich(&deps.sales, &paths, headers).await?;
    Ok(())
}

/// A Sales product as a document line needs it.
pub(super) struct Product {
    pub(super) number: Option<String>,
    pub(super) name: String,
    /// Sales marks it as maintained in F&O.
    pub(super) external: bool,
}

/// Everything the documents of one call need beyond their headers.
pub(super) struct Parents {
    /// Lines by lower-case header id, with their lookup values.
    pub(super) lines: HashMap<String, Vec<Record>>,
    /// By lower-case Sales product id.
    pub(super) products: HashMap<String, Product>,
    /// products-to-sales links by F&O product number (target = Sales product id).
    pub(super) product_links: HashMap<String, Link>,
    /// F&O customer account by lower-case Sales customer id.
    pub(super) customers: HashMap<String, String>,
    /// How to name a customer that has no account yet, by lower-case Sales id.
    pub(super) customer_names: HashMap<String, String>,
}

/// Lines, products and their links, customers and their links, for these documents.
pub(super) async fn read_parents(
    deps: &Deps,
    spec: &DocFlow<'_>,
    company: &str,
    docs: &[Header],
) -> Result<Parents, SyncError> {
    let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
    let lines = read_lines(deps, spec, &ids).await?;
    let products = read_products(deps, &lines).await?;
    let product_links = read_product_links(deps, company, &products).await?;
    let (customers, customer_names) = read_customers(deps, spec, company, docs).await?;
    Ok(Parents {
        lines,
        products,
        product_links,
        customers,
        customer_names,
    })
}

/// The lines of these documents with their lookup values, grouped by lower-case header id.
async fn read_lines(
    deps: &Deps,
    spec: &DocFlow<'_>,
    header_ids: &[String],
) -> Result<HashMap<String, Vec<Record>>, SyncError> {
    let ids: Vec<&String> = header_ids.iter().filter(|i| p2c_dynamics::odata::is_guid(i)).collect();
    let select = spec.line_select();
    let mut all: Vec<Record> = Vec::new();
    for chunk in ids.chunks(HEADERS_PER_LINE_READ) {
        let filter = chunk
            .iter()
            .map(|id| format!("{} eq {id}", spec.parent_col))
            .collect::<Vec<_>>()
            .join(" or ");
        let rows = deps.sales.list(spec.line_set(), &select, Some(&filter)).await?;
        all.extend(rows.into_iter().filter(|r| str_of(r, &spec.parent_col).is_some()));
    }
    deps.lookups
        .enrich(&deps.sales, &lookup_paths(spec.line), &mut all)
        .await?;
    let mut out: HashMap<String, Vec<Record>> = HashMap::new();
    for l in all {
        if let Some(h) = str_of(&l, &spec.parent_col).map(str::to_ascii_lowercase) {
            out.entry(h).or_default().push(l);
        }
    }
    Ok(out)
}

/// The products of these lines, by lower-case Sales product id.
async fn read_products(
    deps: &Deps,
    lines: &HashMap<String, Vec<Record>>,
) -> Result<HashMap<String, Product>, SyncError> {
    let mut ids: Vec<String> = lines
        .values()
        .flatten()
        .filter_map(|l| str_of(l, "_productid_value").map(str::to_ascii_lowercase))
        .collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let select: Vec<String> = ["productid", "productnumber", "name", "msdynce_ismaintainedexternally"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let rows = deps.sales.get_by_ids("products", "productid", &ids, &select).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let id = str_of(&r, "productid")?.to_ascii_lowercase();
            let product = Product {
                number: str_of(&r, "productnumber").map(str::to_string),
                name: str_of(&r, "name").unwrap_or_default().to_string(),
                external: r.get("msdynce_ismaintainedexternally") == Some(&Value::Bool(true)),
            };
            Some((id, product))
        })
        .collect())
}

/// The products-to-sales links of these products, by F&O product number.
async fn read_product_links(
    deps: &Deps,
    company: &str,
    products: &HashMap<String, Product>,
) -> Result<HashMap<String, Link>, SyncError> {
    let numbers: Vec<String> = products.values().filter_map(|p| p.number.clone()).collect();
    if numbers.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(deps
        .state
        .get_links(LinkEntity::Product.as_str(), company, "fno", &numbers)
        .await?)
}

/// The documents' customers: F&O accounts of those with a link, and names of those without (for the failure).
async fn read_customers(
    deps: &Deps,
    spec: &DocFlow<'_>,
    company: &str,
    docs: &[Header],
) -> Result<(HashMap<String, String>, HashMap<String, String>), SyncError> {
    let ids: Vec<String> = spec
        .customer
        .as_ref()
        .map(|c| {
            docs.iter()
                .filter_map(|d| str_of(&d.row, &c.column).map(str::to_ascii_lowercase))
                .collect()
        })
        .unwrap_or_default();
    let accounts = if ids.is_empty() {
        HashMap::new()
    } else {
        customer_accounts(deps, company, &ids, true).await?
    };
    let missing: Vec<String> = ids.iter().filter(|c| !accounts.contains_key(*c)).cloned().collect();
    let names = if missing.is_empty() {
        HashMap::new()
    } else {
        describe_customers(deps, &missing).await
    };
    Ok((accounts, names))
}
