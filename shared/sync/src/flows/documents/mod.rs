//! quotes-to-fno (templates.md 5.4) and orders-to-fno (5.5a/b): Sales documents → F&O. A document is a header
//! (`quote` / `salesorder`) and its lines (`quotedetail` / `salesorderdetail`), and it always goes through whole.
//!
//! **Changes.** Change tracking runs on both the header table and the line table; the watermark holds both delta
//! links as one JSON value, `{"quotes": "<delta link>", "quotedetails": "<delta link>"}` (orders: `salesorders`,
//! `salesorderdetails`). Headers are read first, then lines; a changed line brings its whole document, read
//! again from Sales. Links are committed page by page and the watermark moves last, so a crash redoes at most
//! the uncommitted tail. A refused or expired delta link falls back to a full read of that table.
//!
//! **Filters and parents.** A document goes only when its header passes the template filter (active, only
//! externally maintained products), every line passes the line filter, and no line has a write-in product or a
//! product Sales does not mark as maintained in F&O; otherwise it is skipped as filtered. The customer comes from
//! the accounts-to-fno / contacts-to-fno links (F&O customer account), each product's number from the Sales
//! product and its products-to-sales link (`LINK#product#<company>#fno#<ProductNumber>` → Sales product id), the
//! unit by name. A document whose customer or product has no link yet is a transient failure naming it: it waits
//! in the queue and is never written without its parents.
//!
//! **Writes.** The header and its lines go in ONE change set per document (atomic in F&O: a line is never
//! written without its header, and a half-written document is rolled back). Lines are keyed by
//! `LineCreationSequenceNumber` ↔ `sequencenumber` under the header's key. A line deleted in Sales is deleted in
//! F&O (DELETE on its key, found through the line's link, which then becomes a tombstone); lines of a document
//! deleted in Sales are kept, as are the F&O records of deleted headers. The Sales line discount is split the
//! F&O way ([`p2c_mapping::money`]): `LineDiscountAmount` = discount / quantity cut to the currency's decimals,
//! and the rounding remainder goes to the line's sales charges (`TotalChargesAmount` = −remainder), next to the
//! template's `TotalDiscountAmount`. These are the values F&O's CDS line entities derive from
//! `TotalDiscountAmount` themselves, so sending them changes nothing there; they make the split explicit, and
//! part of the comparison with F&O's rows.
//!
//! **Echo / loop rule.** orders-to-sales writes Sales orders from F&O, and Sales change tracking reports those
//! writes back to this flow. An update is written to F&O only when F&O does not already hold it:
//! 1. the mapped document is hashed; equal to the hash on the links (what p2c last wrote) → skipped "unchanged",
//!    without a request to F&O;
//! 2. otherwise the document's current F&O header and lines are read (batched by header key) and compared field by
//!    field with the mapped values; equal → skipped "unchanged in F&O (echo)" and the links take the new hash;
//! 3. otherwise only the differing fields are PATCHed (missing records are created).
//!
//! So a value that came from F&O is never written back to it, and the two directions cannot ping-pong. The order
//! header filter adds a second guard: once F&O reports an order Confirmed or later, Sales no longer sends it.

use std::collections::{HashMap, HashSet};

use p2c_dynamics::{BatchOp, Record};
use p2c_mapping::money::{decimal_from_json, decimal_to_json, split_line_discount};
use p2c_mapping::{Role, Template, content_hash, fno_property};
use p2c_state::Link;
use serde_json::{Value, json};

use crate::{
    deps::Deps,
    error::SyncError,
    faults::CrashPoint,
    flow_name::FlowName,
    pipeline::{
        Flow,
        links::{TOMBSTONE, customer_accounts, describe_customers},
        lookups::lookup_paths,
        record::{now, split_guids, str_of, version_of},
        sink::fno::{
            Key, Plan, WriteError, delete_op, key_text, plan, plan_op, read_current, row_has_key, target_fields,
            target_key, text_of, write_sets,
        },
        source::{Page, SourceSpec, delta::DeltaTable},
    },
    report::{Failure, RunReport, Skip},
};

/// Where the rounding remainder of a line discount goes (F&O "sales charges" on the line).
const CHARGE_FIELD: &str = "TotalChargesAmount";
/// F&O's per-unit line discount.
const PER_UNIT_DISCOUNT_FIELD: &str = "LineDiscountAmount";
/// Header ids per `or` filter when reading the lines of documents (a GUID costs ~60 URL characters).
const HEADERS_PER_LINE_READ: usize = 200;
/// Currency decimals when Sales does not say.
const DEFAULT_DECIMALS: u32 = 2;

/// One document flow: its two templates and names.
struct DocFlow<'a> {
    flow: FlowName,
    header: &'a Template,
    line: &'a Template,
    /// Link entities (`LINK#<entity>#...`): Sales logical names.
    header_entity: &'static str,
    line_entity: &'static str,
    /// "quote" / "order", for messages.
    noun: &'static str,
    /// The line's lookup to its header ("quoteid") and its `$select` column ("_quoteid_value").
    parent_nav: String,
    parent_col: String,
    /// F&O: the header's key field, and on lines the header key field and the line number field.
    header_key_field: String,
    line_header_field: String,
    line_number_field: String,
}

impl<'a> DocFlow<'a> {
    fn of(deps: &'a Deps, flow: FlowName) -> Result<DocFlow<'a>, SyncError> {
        let bad = |what: &str| SyncError::Mapping(format!("flow {flow}: {what}; the mapping crate must define it"));
        let ts = deps.templates(flow);
        let header = ts
            .iter()
            .find(|t| t.role == Role::Header)
            .ok_or_else(|| bad("no header template"))?;
        let line = ts
            .iter()
            .find(|t| t.role == Role::Line)
            .ok_or_else(|| bad("no line template"))?;
        let parent_key = line
            .parent_key
            .clone()
            .ok_or_else(|| bad("the line template has no parent_key"))?;
        let parent_nav = parent_key
            .split_once('.')
            .map_or(parent_key.clone(), |(n, _)| n.to_string());
        let target_of = |source: &str| {
            line.fields
                .iter()
                .find(|f| f.enabled && f.source.path() == Some(source))
                .map(|f| f.target.clone())
        };
        let (header_entity, line_entity, noun) = match flow {
            FlowName::QuotesToFno => ("quote", "quotedetail", "quote"),
            _ => ("salesorder", "salesorderdetail", "order"),
        };
        Ok(DocFlow {
            flow,
            header,
            line,
            header_entity,
            line_entity,
            noun,
            parent_col: format!("_{parent_nav}_value"),
            parent_nav,
            header_key_field: header
                .target_key
                .iter()
                .find(|k| *k != "dataAreaId")
                .cloned()
                .ok_or_else(|| bad("the header template has no key field"))?,
            line_header_field: target_of(&parent_key).ok_or_else(|| bad("no line row writes the header key"))?,
            line_number_field: target_of(&line.source_key).ok_or_else(|| bad("no line row writes the line number"))?,
        })
    }

    fn header_set(&self) -> &str {
        &self.header.source_entity
    }
    fn line_set(&self) -> &str {
        &self.line.source_entity
    }

    /// Header columns: the template's, what the lines read from their header, and the pipeline's bookkeeping.
    fn header_select(&self) -> Vec<String> {
        let mut cols = self.header.source_select();
        let from_header = self
            .line
            .lookups()
            .into_iter()
            .filter(|l| l.navigation == self.parent_nav)
            .map(|l| l.field);
        let extra = [
            "_owningbusinessunit_value",
            "versionnumber",
            "_transactioncurrencyid_value",
        ];
        for c in from_header.chain(extra.iter().map(|s| s.to_string())) {
            if !cols.contains(&c) {
                cols.push(c);
            }
        }
        cols
    }

    fn line_select(&self) -> Vec<String> {
        let mut cols = self.line.source_select();
        for c in ["_productid_value", "versionnumber"] {
            if !cols.iter().any(|x| x == c) {
                cols.push(c.to_string());
            }
        }
        cols
    }

    /// What change tracking of the line table needs: which document changed.
    fn line_delta_select(&self) -> Vec<String> {
        vec![
            self.line.source_id.clone(),
            self.parent_col.clone(),
            "versionnumber".into(),
        ]
    }

    /// The F&O key of a line from its header key and line number (e.g. from a link's target key `QUO-1/2`).
    fn line_key(&self, company: &str, header_key: &str, number: i64) -> Option<Key> {
        self.line
            .target_key
            .iter()
            .map(|k| {
                let v = if k == "dataAreaId" {
                    json!(company)
                } else if *k == self.line_header_field {
                    json!(header_key)
                } else if *k == self.line_number_field {
                    json!(number)
                } else {
                    return None;
                };
                Some((k.clone(), v))
            })
            .collect()
    }

    /// A line's key as its link keeps it: `<header key>/<line number>` (what [`Template::key_of`] gives too).
    fn line_key_text(&self, key: &Key) -> String {
        let get = |f: &str| {
            key.iter()
                .find(|(k, _)| k == f)
                .map(|(_, v)| text_of(v))
                .unwrap_or_default()
        };
        format!("{}/{}", get(&self.line_header_field), get(&self.line_number_field))
    }

    fn splits_discount(&self) -> bool {
        self.line
            .fields
            .iter()
            .any(|f| f.enabled && f.source.path() == Some("manualdiscountamount"))
    }
}

/// quotes-to-fno or orders-to-fno for one company.
pub struct Documents<'a> {
    spec: DocFlow<'a>,
    company: String,
    business_unit: String,
    /// Documents synced in this run (by header id): a later line change of the same document is already in.
    done: HashSet<String>,
    /// Header keys of documents deleted in Sales: their lines' deletions are not sent to F&O.
    deleted_docs: HashSet<String>,
}

impl<'a> Documents<'a> {
    pub async fn open(deps: &'a Deps, flow: FlowName, company: &str) -> Result<Documents<'a>, SyncError> {
        Ok(Documents {
            spec: DocFlow::of(deps, flow)?,
            company: company.to_string(),
            business_unit: deps.business_unit_id(company).await?,
            done: HashSet::new(),
            deleted_docs: HashSet::new(),
        })
    }

    /// A page of changed headers: sync them; deleted headers are counted and their keys remembered.
    async fn header_page(
        &mut self,
        deps: &Deps,
        page: Page,
        report: &mut RunReport,
    ) -> Result<Vec<Failure>, SyncError> {
        let (spec, company) = (&self.spec, self.company.as_str());
        if !page.deleted.is_empty() {
            let links = deps
                .state
                .get_links(spec.header_entity, company, "sales", &page.deleted)
                .await?;
            self.deleted_docs
                .extend(links.values().map(|l| l.target_key.to_ascii_lowercase()));
            for _ in &page.deleted {
                report.read += 1;
                report.skip(Skip::DocumentDeletedInSales);
            }
        }
        self.done.extend(
            page.rows
                .iter()
                .filter_map(|r| str_of(r, &spec.header.source_id).map(str::to_ascii_lowercase)),
        );
        sync_documents(deps, spec, company, &self.business_unit, page.rows, report).await
    }

    /// A page of changed lines: delete what was deleted, and sync each changed line's whole document once.
    async fn line_page(&mut self, deps: &Deps, page: Page, report: &mut RunReport) -> Result<Vec<Failure>, SyncError> {
        let (spec, company) = (&self.spec, self.company.as_str());
        let mut failures = delete_lines(deps, spec, company, &page.deleted, &self.deleted_docs, report).await?;
        let mut ids: Vec<String> = page
            .rows
            .iter()
            .filter_map(|r| str_of(r, &spec.parent_col).map(str::to_ascii_lowercase))
            .filter(|id| !self.done.contains(id))
            .collect();
        ids.sort();
        ids.dedup();
        self.done.extend(ids.iter().cloned());
        let rows = read_headers(deps, spec, &ids, &spec.header_select(), report).await?;
        failures.extend(sync_documents(deps, spec, company, &self.business_unit, rows, report).await?);
        Ok(failures)
    }
}

impl Flow for Documents<'_> {
    fn name(&self) -> FlowName {
        self.spec.flow
    }

    /// Headers first, then lines; the watermark holds both delta links as one JSON value by entity set.
    fn source(&self) -> SourceSpec {
        SourceSpec::Delta(vec![
            DeltaTable {
                set: self.spec.header_set().into(),
                select: self.spec.header_select(),
            },
            DeltaTable {
                set: self.spec.line_set().into(),
                select: self.spec.line_delta_select(),
            },
        ])
    }

    async fn sync_page(&mut self, deps: &Deps, page: Page, report: &mut RunReport) -> Result<Vec<Failure>, SyncError> {
        if page.table == 0 {
            self.header_page(deps, page, report).await
        } else {
            self.line_page(deps, page, report).await
        }
    }

    /// Keys are header ids (quoteid / salesorderid); a line id is accepted too (its document is synced, or the
    /// line is deleted in F&O when Sales no longer has it: that is how a failed line delete is retried).
    async fn sync_keys(
        &mut self,
        deps: &Deps,
        keys: Vec<String>,
        report: &mut RunReport,
    ) -> Result<Vec<Failure>, SyncError> {
        sync_keys(deps, &self.spec, &self.company, &self.business_unit, keys, report).await
    }
}

/// Headers by id; an id Sales no longer has is counted and skipped.
async fn read_headers(
    deps: &Deps,
    spec: &DocFlow<'_>,
    ids: &[String],
    select: &[String],
    report: &mut RunReport,
) -> Result<Vec<Record>, SyncError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = deps
        .sales
        .get_by_ids(spec.header_set(), &spec.header.source_id, ids, select)
        .await?;
    let found: HashSet<String> = rows
        .iter()
        .filter_map(|r| str_of(r, &spec.header.source_id).map(str::to_ascii_lowercase))
        .collect();
    for id in ids {
        if !found.contains(&id.to_ascii_lowercase()) {
            report.read += 1;
            report.skip(Skip::GoneFromSales);
        }
    }
    Ok(rows)
}

async fn sync_keys(
    deps: &Deps,
    spec: &DocFlow<'_>,
    company: &str,
    bu: &str,
    keys: Vec<String>,
    report: &mut RunReport,
) -> Result<Vec<Failure>, SyncError> {
    let (good, mut failures) = split_guids(keys, spec.noun);
    let mut good: Vec<String> = good.into_iter().map(|k| k.to_ascii_lowercase()).collect();
    good.sort();
    good.dedup();
    let select = spec.header_select();
    let mut headers = if good.is_empty() {
        Vec::new()
    } else {
        deps.sales
            .get_by_ids(spec.header_set(), &spec.header.source_id, &good, &select)
            .await?
    };
    let mut found: HashSet<String> = headers
        .iter()
        .filter_map(|r| str_of(r, &spec.header.source_id).map(str::to_ascii_lowercase))
        .collect();
    let rest: Vec<String> = good.iter().filter(|k| !found.contains(*k)).cloned().collect();
    if !rest.is_empty() {
        let lines = deps
            .sales
            .get_by_ids(spec.line_set(), &spec.line.source_id, &rest, &spec.line_delta_select())
            .await?;
        let line_ids: HashSet<String> = lines
            .iter()
            .filter_map(|r| str_of(r, &spec.line.source_id).map(str::to_ascii_lowercase))
            .collect();
        let mut parents: Vec<String> = lines
            .iter()
            .filter_map(|r| str_of(r, &spec.parent_col).map(str::to_ascii_lowercase))
            .filter(|p| !found.contains(p))
            .collect();
        parents.sort();
        parents.dedup();
        let more = read_headers(deps, spec, &parents, &select, report).await?;
        found.extend(
            more.iter()
                .filter_map(|r| str_of(r, &spec.header.source_id).map(str::to_ascii_lowercase)),
        );
        headers.extend(more);
        // Neither a header nor a line in Sales: a deleted line whose F&O line may still need deleting.
        let gone: Vec<String> = rest.into_iter().filter(|k| !line_ids.contains(k)).collect();
        failures.extend(delete_lines(deps, spec, company, &gone, &HashSet::new(), report).await?);
    }
    failures.extend(sync_documents(deps, spec, company, bu, headers, report).await?);
    Ok(failures)
}

/// Lines deleted in Sales: DELETE their F&O line (found through the line's link), then tombstone the link.
async fn delete_lines(
    deps: &Deps,
    spec: &DocFlow<'_>,
    company: &str,
    ids: &[String],
    deleted_docs: &HashSet<String>,
    report: &mut RunReport,
) -> Result<Vec<Failure>, SyncError> {
    let mut failures = Vec::new();
    if ids.is_empty() {
        return Ok(failures);
    }
    let links = deps.state.get_links(spec.line_entity, company, "sales", ids).await?;
    let mut todo: Vec<(Link, BatchOp)> = Vec::new();
    for id in ids {
        report.read += 1;
        let Some(link) = links.get(id) else {
            report.skip(Skip::GoneFromSales);
            continue;
        };
        if link.source_hash.as_deref() == Some(TOMBSTONE) {
            report.skip(Skip::AlreadyDeletedInFno);
            continue;
        }
        let parsed = link
            .target_key
            .rsplit_once('/')
            .and_then(|(h, n)| Some((h, n.parse::<i64>().ok()?)));
        let Some((header_key, number)) = parsed else {
            failures.push(Failure {
                id: id.clone(),
                key: link.target_key.clone(),
                reason: format!(
                    "the link of deleted {} line {id} holds {:?}, not <{} number>/<line number>; delete the F&O \
                     line by hand",
                    spec.noun, link.target_key, spec.noun
                ),
                transient: false,
            });
            continue;
        };
        if deleted_docs.contains(&header_key.to_ascii_lowercase()) {
            report.skip(Skip::DeletedWithDocument);
            continue;
        }
        let Some(key) = spec.line_key(company, header_key, number) else {
            return Err(SyncError::Mapping(format!(
                "{}: the F&O line key {:?} has fields p2c cannot fill",
                spec.line.name, spec.line.target_key
            )));
        };
        todo.push((link.clone(), delete_op(deps, &spec.line.target_entity, &key)));
    }
    let sets: Vec<Vec<BatchOp>> = todo.iter().map(|(_, op)| vec![op.clone()]).collect();
    let results = write_sets(deps, &sets).await;
    let mut tombstones = Vec::new();
    for ((link, _), r) in todo.into_iter().zip(results) {
        match r {
            // 404: F&O no longer has the line (deleted there, or by an earlier try): the goal is reached.
            Ok(()) | Err(WriteError { status: Some(404), .. }) => {
                report.wrote_delete();
                tombstones.push(Link {
                    source_hash: Some(TOMBSTONE.into()),
                    target_hash: None,
                    synced_at: now(),
                    ..link
                });
            }
            Err(e) => failures.push(Failure {
                id: link.source_key.clone(),
                key: link.target_key.clone(),
                reason: format!("deleting F&O line {}: {}", link.target_key, e.reason),
                transient: e.transient,
            }),
        }
    }
    deps.state.put_links(&tombstones, &[&links]).await?;
    Ok(failures)
}

/// One line of a document, mapped.
struct LineOut {
    id: String,
    key: Key,
    key_text: String,
    body: Record,
    hash: String,
    version: Option<String>,
}

/// One document, mapped and ready to compare with F&O.
struct Doc {
    id: String,
    number: String,
    key: Key,
    key_text: String,
    body: Record,
    hash: String,
    version: Option<String>,
    lines: Vec<LineOut>,
    /// F&O keys of lines p2c wrote under another key (a line renumbered in Sales): deleted with the document.
    stale: Vec<Key>,
}

fn failure(id: &str, key: &str, reason: String, transient: bool) -> Failure {
    Failure {
        id: id.to_string(),
        key: key.to_string(),
        reason,
        transient,
    }
}

/// The lines of these documents, grouped by lower-case header id.
async fn read_lines(
    deps: &Deps,
    spec: &DocFlow<'_>,
    header_ids: &[String],
) -> Result<HashMap<String, Vec<Record>>, SyncError> {
    let ids: Vec<&String> = header_ids.iter().filter(|i| p2c_dynamics::odata::is_guid(i)).collect();
    let select = spec.line_select();
    let mut out: HashMap<String, Vec<Record>> = HashMap::new();
    for chunk in ids.chunks(HEADERS_PER_LINE_READ) {
        let filter = chunk
            .iter()
            .map(|id| format!("{} eq {id}", spec.parent_col))
            .collect::<Vec<_>>()
            .join(" or ");
        for row in deps.sales.list(spec.line_set(), &select, Some(&filter)).await? {
            if let Some(h) = str_of(&row, &spec.parent_col).map(str::to_ascii_lowercase) {
                out.entry(h).or_default().push(row);
            }
        }
    }
    Ok(out)
}

/// Sales product id → (product number, name, maintained in F&O), for the products of these lines.
async fn read_products(
    deps: &Deps,
    lines: &HashMap<String, Vec<Record>>,
) -> Result<HashMap<String, (Option<String>, String, bool)>, SyncError> {
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
            let number = str_of(&r, "productnumber").map(str::to_string);
            let name = str_of(&r, "name").unwrap_or_default().to_string();
            let external = r.get("msdynce_ismaintainedexternally") == Some(&Value::Bool(true));
            Some((id, (number, name, external)))
        })
        .collect())
}

/// Why a document cannot go yet, or at all; `None`: every line is fine.
enum LineVerdict {
    Filtered(Skip),
    Fail(String, bool),
}

/// Syncs documents given by their header rows. Every header read ends written, skipped or failed.
async fn sync_documents(
    deps: &Deps,
    spec: &DocFlow<'_>,
    company: &str,
    business_unit: &str,
    mut headers: Vec<Record>,
    report: &mut RunReport,
) -> Result<Vec<Failure>, SyncError> {
    let mut failures = Vec::new();
    let (ht, lt) = (spec.header, spec.line);
    let mut paths = lookup_paths(ht);
    paths.push(("transactioncurrencyid".into(), "currencyprecision".into()));
    deps.lookups.enrich(&deps.sales, &paths, &mut headers).await?;

    // Header checks: id, company, template filter.
    let mut docs: Vec<(String, String, Record)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for h in headers {
        let Some(id) = str_of(&h, &ht.source_id).map(str::to_ascii_lowercase) else {
            report.read += 1;
            failures.push(failure(
                "",
                "(no id)",
                format!("the {} has no {}", spec.noun, ht.source_id),
                false,
            ));
            continue;
        };
        if !seen.insert(id.clone()) {
            continue; // the same document twice in one call: once is enough
        }
        report.read += 1;
        if str_of(&h, "_owningbusinessunit_value").is_some_and(|bu| !bu.eq_ignore_ascii_case(business_unit)) {
            report.skip(Skip::OtherBusinessUnit);
            continue;
        }
        if !ht.passes_filter(&h) {
            report.skip(Skip::Filtered);
            continue;
        }
        let number = str_of(&h, &ht.source_key).unwrap_or(&id).to_string();
        docs.push((id, number, h));
    }
    if docs.is_empty() {
        return Ok(failures);
    }

    // Parents: lines, products and their links, customers and their links.
    let doc_ids: Vec<String> = docs.iter().map(|(id, _, _)| id.clone()).collect();
    let mut lines = read_lines(deps, spec, &doc_ids).await?;
    {
        let mut all: Vec<Record> = lines.values_mut().flat_map(std::mem::take).collect();
        deps.lookups.enrich(&deps.sales, &lookup_paths(lt), &mut all).await?;
        for l in all {
            if let Some(h) = str_of(&l, &spec.parent_col).map(str::to_ascii_lowercase) {
                lines.entry(h).or_default().push(l);
            }
        }
    }
    let products = read_products(deps, &lines).await?;
    let numbers: Vec<String> = products.values().filter_map(|(n, _, _)| n.clone()).collect();
    let product_links = if numbers.is_empty() {
        HashMap::new()
    } else {
        deps.state.get_links("product", company, "fno", &numbers).await?
    };
    let customer = ht.lookups().into_iter().find(|l| {
        l.targets
            .iter()
            .any(|t| t.entity_set == "accounts" || t.entity_set == "contacts")
    });
    let customer_ids: Vec<String> = customer
        .as_ref()
        .map(|c| {
            docs.iter()
                .filter_map(|(_, _, h)| str_of(h, &c.column).map(str::to_ascii_lowercase))
                .collect()
        })
        .unwrap_or_default();
    let customers = if customer_ids.is_empty() {
        HashMap::new()
    } else {
        customer_accounts(deps, company, &customer_ids, true).await?
    };
    let missing: Vec<String> = customer_ids
        .iter()
        .filter(|c| !customers.contains_key(*c))
        .cloned()
        .collect();
    let names = if missing.is_empty() {
        HashMap::new()
    } else {
        describe_customers(deps, &missing).await
    };
    let parent_lookups: Vec<(String, String)> = lt
        .lookups()
        .into_iter()
        .filter(|l| l.navigation == spec.parent_nav)
        .map(|l| (l.path, l.field))
        .collect();
    let product_path = lt
        .lookups()
        .into_iter()
        .find(|l| l.navigation == "productid")
        .map(|l| l.path);

    // Map every document whole: a document with one bad line does not go.
    let mut ready: Vec<Doc> = Vec::new();
    'docs: for (id, number, mut h) in docs {
        let doc_lines = lines.remove(&id).unwrap_or_default();
        let noun = spec.noun;
        // Customer.
        if let Some(c) = &customer {
            let Some(cid) = str_of(&h, &c.column).map(str::to_ascii_lowercase) else {
                failures.push(failure(
                    &id,
                    &number,
                    format!("{noun} {number} has no customer; set its customer in Sales"),
                    false,
                ));
                continue;
            };
            let Some(account) = customers.get(&cid) else {
                let who = names.get(&cid).cloned().unwrap_or_else(|| format!("customer {cid}"));
                failures.push(failure(
                    &id,
                    &number,
                    format!(
                        "{noun} {number} waits for its customer, {who}, which is not in F&O company {company} yet \
                         (no accounts-to-fno or contacts-to-fno link); it is retried from the queue after that \
                         flow has synced the customer"
                    ),
                    true,
                ));
                continue;
            };
            h.insert(c.path.clone(), Value::String(account.clone()));
        }
        // Lines: products, filters, mapping.
        let mut out_lines: Vec<LineOut> = Vec::new();
        let mut verdict: Option<LineVerdict> = None;
        for mut l in doc_lines {
            let lid = str_of(&l, &lt.source_id).unwrap_or_default().to_ascii_lowercase();
            let ln = l.get(&lt.source_key).map(text_of).unwrap_or_else(|| lid.clone());
            for (path, field) in &parent_lookups {
                if let Some(v) = h.get(field) {
                    l.insert(path.clone(), v.clone());
                }
            }
            let Some(pid) = str_of(&l, "_productid_value").map(str::to_ascii_lowercase) else {
                verdict = Some(LineVerdict::Filtered(Skip::WriteInProduct));
                break;
            };
            let Some((pnum, pname, external)) = products.get(&pid) else {
                verdict = Some(LineVerdict::Fail(
                    format!("{noun} {number} line {ln}: its product {pid} is not in Sales; fix the line's product"),
                    false,
                ));
                break;
            };
            if !external {
                verdict = Some(LineVerdict::Filtered(Skip::ProductNotInFno));
                break;
            }
            let Some(pnum) = pnum else {
                verdict = Some(LineVerdict::Fail(
                    format!(
                        "{noun} {number} line {ln}: its product \"{pname}\" ({pid}) has no product number; \
                         fix the product in Sales"
                    ),
                    false,
                ));
                break;
            };
            // A link without a target: products-to-sales saw the product but could not write it to Sales yet.
            match product_links.get(pnum).filter(|l| !l.target_key.is_empty()) {
                None => {
                    verdict = Some(LineVerdict::Fail(
                        format!(
                            "{noun} {number} waits for product {pnum} \"{pname}\" (line {ln}), which is not synced \
                             from F&O company {company} yet (no products-to-sales link); it is retried from the \
                             queue after products-to-sales has synced the product"
                        ),
                        true,
                    ));
                    break;
                }
                Some(link) if !link.target_key.eq_ignore_ascii_case(&pid) => {
                    verdict = Some(LineVerdict::Fail(
                        format!(
                            "{noun} {number} line {ln}: product {pnum} is Sales product {pid}, but products-to-sales \
                             synced {pnum} as Sales product {}; use that product on the line",
                            link.target_key
                        ),
                        false,
                    ));
                    break;
                }
                Some(_) => {}
            }
            if let Some(p) = &product_path {
                l.insert(p.clone(), Value::String(pnum.clone()));
            }
            if !lt.passes_filter(&l) {
                tracing::debug!(line = %ln, "filtered by the line template");
                verdict = Some(LineVerdict::Filtered(Skip::LineFiltered));
                break;
            }
            let mut body = match lt.map(&l) {
                Ok(b) => b,
                Err(e) => {
                    verdict = Some(LineVerdict::Fail(e.to_string(), false));
                    break;
                }
            };
            body.insert("dataAreaId".into(), json!(company));
            if spec.splits_discount() {
                split_discount(&l, &h, &lt.target_entity, &mut body);
            }
            let key = match target_key(lt, company, &body) {
                Ok(k) => k,
                Err(e) => {
                    verdict = Some(LineVerdict::Fail(format!("{noun} {number} line {ln}: {e}"), false));
                    break;
                }
            };
            let kt = spec.line_key_text(&key);
            if let Some(other) = out_lines.iter().find(|o| o.key_text == kt) {
                verdict = Some(LineVerdict::Fail(
                    format!(
                        "{noun} {number}: lines {} and {lid} have the same sequence number {ln}; renumber one of \
                         them in Sales",
                        other.id
                    ),
                    false,
                ));
                break;
            }
            out_lines.push(LineOut {
                hash: content_hash(&body),
                version: version_of(&l),
                id: lid,
                key,
                key_text: kt,
                body,
            });
        }
        match verdict {
            Some(LineVerdict::Filtered(why)) => {
                report.skip(why);
                continue 'docs;
            }
            Some(LineVerdict::Fail(reason, transient)) => {
                failures.push(failure(&id, &number, reason, transient));
                continue 'docs;
            }
            None => {}
        }
        let mut body = match ht.map(&h) {
            Ok(b) => b,
            Err(e) => {
                failures.push(failure(&id, &number, e.to_string(), false));
                continue;
            }
        };
        body.insert("dataAreaId".into(), json!(company));
        let key = match target_key(ht, company, &body) {
            Ok(k) => k,
            Err(e) => {
                failures.push(failure(&id, &number, format!("{noun} {number}: {e}"), false));
                continue;
            }
        };
        ready.push(Doc {
            id,
            number,
            key_text: key_text(&key),
            key,
            hash: content_hash(&body),
            version: version_of(&h),
            body,
            lines: out_lines,
            stale: Vec::new(),
        });
    }
    if ready.is_empty() {
        return Ok(failures);
    }

    // Skip unchanged documents: header and every line hash as p2c last wrote them.
    let header_links = deps
        .state
        .get_links(spec.header_entity, company, "sales", &doc_ids_of(&ready))
        .await?;
    let line_ids: Vec<String> = ready
        .iter()
        .flat_map(|d| d.lines.iter().map(|l| l.id.clone()))
        .collect();
    let line_links = deps
        .state
        .get_links(spec.line_entity, company, "sales", &line_ids)
        .await?;
    let same = |l: Option<&Link>, key: &str, hash: &str| {
        l.is_some_and(|l| l.target_key == key && l.target_hash.as_deref() == Some(hash))
    };
    ready.retain_mut(|d| {
        let unchanged = same(header_links.get(&d.id), &d.key_text, &d.hash)
            && d.lines
                .iter()
                .all(|l| same(line_links.get(&l.id), &l.key_text, &l.hash));
        if unchanged {
            report.skip(Skip::Unchanged);
            return false;
        }
        // A line p2c wrote under another key of this document (renumbered): its old F&O line goes.
        for l in &d.lines {
            let Some(old) = line_links.get(&l.id) else { continue };
            if old.target_key == l.key_text || old.source_hash.as_deref() == Some(TOMBSTONE) {
                continue;
            }
            let parsed = old
                .target_key
                .rsplit_once('/')
                .and_then(|(h, n)| Some((h, n.parse::<i64>().ok()?)));
            if let Some((hk, n)) = parsed
                && hk.eq_ignore_ascii_case(&d.number)
                && let Some(k) = spec.line_key(company, hk, n)
            {
                d.stale.push(k);
            }
        }
        true
    });

    // Documents p2c never wrote need no read of F&O first: if one is there after all (a crash before its links
    // were committed), its create fails as "already exists" and the race re-plans it from a fresh read.
    let linked: HashSet<String> = ready
        .iter()
        .filter(|d| header_links.contains_key(&d.id) || d.lines.iter().any(|l| line_links.contains_key(&l.id)))
        .map(|d| d.id.clone())
        .collect();

    // Compare with F&O, write each document as one change set; a race is planned again once from a fresh read.
    let header_select = target_fields(ht, &[]);
    let line_select = target_fields(lt, &[PER_UNIT_DISCOUNT_FIELD, CHARGE_FIELD])
        .into_iter()
        .filter(|f| fno_property(&lt.target_entity, f).is_some())
        .collect::<Vec<_>>();
    let mut new_links: Vec<Link> = Vec::new();
    let mut todo: Vec<usize> = (0..ready.len()).collect();
    for attempt in 0..2 {
        if todo.is_empty() {
            break;
        }
        let keys: Vec<String> = todo
            .iter()
            .filter(|&&i| attempt > 0 || linked.contains(&ready[i].id))
            .map(|&i| ready[i].number.clone())
            .collect();
        let cur_headers = read_current(
            deps,
            &ht.target_entity,
            company,
            &spec.header_key_field,
            &keys,
            &header_select,
        )
        .await?;
        let cur_lines = read_current(
            deps,
            &lt.target_entity,
            company,
            &spec.line_header_field,
            &keys,
            &line_select,
        )
        .await?;
        let mut sets: Vec<Vec<BatchOp>> = Vec::new();
        let mut planned: Vec<(usize, bool)> = Vec::new();
        for &i in &todo {
            let d = &ready[i];
            let cur = cur_headers.iter().find(|r| row_has_key(r, &d.key));
            let header_plan = plan(&d.body, &d.key, cur);
            let created = matches!(header_plan, Plan::Create(_));
            let mut ops: Vec<BatchOp> = plan_op(deps, &ht.target_entity, &d.key, &header_plan)
                .into_iter()
                .collect();
            for l in &d.lines {
                let cur = cur_lines.iter().find(|r| row_has_key(r, &l.key));
                ops.extend(plan_op(deps, &lt.target_entity, &l.key, &plan(&l.body, &l.key, cur)));
            }
            for k in &d.stale {
                if cur_lines.iter().any(|r| row_has_key(r, k)) {
                    ops.push(delete_op(deps, &lt.target_entity, k));
                }
            }
            if ops.is_empty() {
                report.skip(Skip::Echo);
                new_links.extend(links_of(spec, company, d));
            } else {
                sets.push(ops);
                planned.push((i, created));
            }
        }
        let results = write_sets(deps, &sets).await;
        let mut again = Vec::new();
        for ((i, created), r) in planned.into_iter().zip(results) {
            let d = &ready[i];
            match r {
                Ok(()) => {
                    report.wrote(created);
                    new_links.extend(links_of(spec, company, d));
                }
                Err(e) if e.race && attempt == 0 => again.push(i),
                Err(e) => failures.push(failure(
                    &d.id,
                    &d.number,
                    format!(
                        "{} {} (header and {} lines, written together) was not written: {}",
                        spec.noun,
                        d.number,
                        d.lines.len(),
                        e.reason
                    ),
                    e.transient,
                )),
            }
        }
        todo = again;
    }
    deps.crashes.check(CrashPoint::AfterTargetWrite)?;
    deps.state.put_links(&new_links, &[&header_links, &line_links]).await?;
    Ok(failures)
}

fn doc_ids_of(docs: &[Doc]) -> Vec<String> {
    docs.iter().map(|d| d.id.clone()).collect()
}

/// Links of a written (or already equal) document: the header's and every line's.
fn links_of(spec: &DocFlow<'_>, company: &str, d: &Doc) -> Vec<Link> {
    let at = now();
    let link = |entity: &str, id: &str, key: &str, hash: &str, version: &Option<String>| Link {
        entity: entity.into(),
        company: company.into(),
        system: "sales".into(),
        source_key: id.into(),
        target_key: key.into(),
        source_version: version.clone(),
        source_hash: None,
        target_hash: Some(hash.into()),
        synced_at: at.clone(),
    };
    let mut out = vec![link(spec.header_entity, &d.id, &d.key_text, &d.hash, &d.version)];
    out.extend(
        d.lines
            .iter()
            .map(|l| link(spec.line_entity, &l.id, &l.key_text, &l.hash, &l.version)),
    );
    out
}

/// Sales keeps one discount amount per line; F&O a discount per unit in the currency's decimals plus a sales
/// charge for what does not divide (templates.md 5.5, "Discount rounding"): qty 3, discount 10.00 → 3.33 per
/// unit and a charge of −0.01.
fn split_discount(line: &Record, header: &Record, entity: &str, body: &mut Record) {
    let (Some(discount), Some(quantity)) = (
        line.get("manualdiscountamount").and_then(decimal_from_json),
        line.get("quantity").and_then(decimal_from_json),
    ) else {
        return;
    };
    let decimals = header
        .get("transactioncurrencyid.currencyprecision")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_DECIMALS, |d| d.min(10) as u32);
    let split = split_line_discount(discount, quantity, decimals);
    if fno_property(entity, PER_UNIT_DISCOUNT_FIELD).is_some() {
        body.insert(PER_UNIT_DISCOUNT_FIELD.into(), decimal_to_json(split.per_unit_discount));
    }
    if fno_property(entity, CHARGE_FIELD).is_some() {
        body.insert(CHARGE_FIELD.into(), decimal_to_json(split.charge()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discount_split_of_the_docs_example() {
        let line = json!({"manualdiscountamount": 10.0, "quantity": 3});
        let header = json!({"transactioncurrencyid.currencyprecision": 2});
        let mut body = Record::new();
        split_discount(
            line.as_object().unwrap(),
            header.as_object().unwrap(),
            "CDSSalesOrderLines",
            &mut body,
        );
        assert_eq!(
            Value::Object(body),
            json!({"LineDiscountAmount": 3.33, "TotalChargesAmount": -0.01})
        );
    }
}
