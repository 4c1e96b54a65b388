//! The F&O → Sales flows: products-to-sales (5.2), orders-to-sales (5.5c/d) and invoices-to-sales (5.6).
//!
//! # One run
//!
//! F&O publishes no modified timestamps and no change tracking on these entities, so a scheduled run **sweeps**
//! the company: it reads the source entity in key order (`dataAreaId eq '<c>'`, `$orderby` the key, `$top` a
//! page, `$select` only what the templates read), maps every record, and compares the content hash of the
//! mapped record with the hash kept on its link (`LINK#<sales table>#<company>#fno#<F&O key>`, target = the
//! Sales GUID). Only records whose hash differs go on to Sales.
//!
//! **Watermark = sweep cursor.** While a sweep is under way the flow's watermark is `{"after":"<key>"}`, the
//! last key of the last page whose writes and links are committed; pages are read with `<key field> gt
//! '<after>'` (keyset paging, so records added or deleted meanwhile do not shift pages). A crashed run resumes
//! after that key. A sweep that reaches the end writes `{"after":null,"swept_at":"<time>"}` and the next run
//! starts again from the first key. `full_resync` ignores the cursor.
//!
//! **Documents.** Orders and invoices are read header page by header page; the lines of a page are one range
//! read (`<header key> ge '<first>' and le '<last>'`). A document is unchanged when its header hash, the hash of
//! each line, and the hash of its set of line numbers (kept as `source_hash` on the header's link) all match.
//! The products flow writes two Sales records from one F&O record: the product, then its price list item
//! (`productpricelevels`, the template's companion).
//!
//! **Writes.** A header (or product) batch first, then a line (or price list item) batch: a new header's id is
//! needed in its lines' `salesorderid@odata.bind`, and each operation is its own change set so one bad record
//! does not roll back its neighbours. Before creating, a record that has no link is looked up in Sales by its
//! natural key (products by `productnumber`, orders by `ordernumber`, invoices by `invoicenumber`, lines by
//! parent id + `sequencenumber`, price list items by product + price list + unit), so a crash between a create
//! and its link commit never duplicates. Lines of an F&O document that are gone are deleted in Sales.
//! Lookups are resolved by `resolve::Resolver`; a parent (customer, product, order) missing in Sales is a
//! transient failure that names it and is retried through the queue: nothing is written dangling. An order or
//! invoice goes whole: while one of its lines cannot be written (its product is not in Sales yet), neither its new
//! or changed header nor its other lines are written, so Sales never shows a document without the lines F&O has.
//!
//! **Echo rule.** The orders flows run both ways (orders-to-fno writes `CDSSalesOrderHeaders`/`Lines` from
//! Sales). Before anything is written to Sales, the bound payload is compared field by field with the Sales
//! record as it is now (numbers by value, dates by instant, lookups by id): equal means the change came from
//! Sales in the first place, or touched nothing Sales shows, and the record is skipped as `"echo"` (its link
//! takes the new hash). Otherwise only the fields that differ are written, so the reverse flow sees a change
//! only in what really changed. Columns Sales calculates itself under system pricing (`totalamount`,
//! `totaltax`, `totaldiscountamount`, `extendedamount`, ...) are written on create but never compared or
//! updated: Sales overwrites them from the lines, so comparing them would turn every echo into a write.
//!
//! **Closed records.** A Sales order or invoice that is closed (statecode ≠ 0, e.g. an order its invoice set
//! to Invoiced) is read-only in Sales, and so are its lines. p2c never reopens one: F&O changes to it are
//! skipped as `"closed in Sales"`, and its link is marked (`source_version = "closed:<hash>"`) so later sweeps
//! skip it without reading Sales until its F&O content changes again.
//!
//! **Ownership.** Orders and invoices are created in the company's business unit with
//! `owningbusinessunit@odata.bind` (settable on create where the org allows records to be owned across
//! business units; the business unit's default team then owns them, as with the Data Integrator's organization
//! mapping); their lines follow their header. Products and price list items are organization-owned tables in
//! Dataverse: they have no owner, and a product number is therefore one product for every company.
//!
//! **Price list of a product** (the P2C plug-in's rule, templates.md 4): the first valid price list, by name,
//! whose currency is the product's. A `pricelevelid.name` value map given in P2C_MAPPING wins where it has an
//! entry. A currency without a price list fails the product, permanently, saying so. The chosen list is not
//! part of the content hash, so a price list added later does not move existing products.
//!
//! **Order line discount** (templates.md 5.5, "Discount rounding"): where the F&O line has a per-unit discount
//! (`LineDiscountAmount`) or a negative charge (the rounding remainder), Sales gets
//! `quantity × per-unit discount + remainder` (3 × 3.33 + 0.01 = 10.00); otherwise the template's copy of
//! `TotalDiscountAmount` stands.
//!
//! **Invoices** link to their order (`salesorderid` by order number); once an invoice and its lines are
//! written, the order is set to Invoiced (statecode 4, statuscode 100003, a PATCH of both, which is how
//! Dataverse changes state), unless it already is.
//!
//! **Counting.** Every F&O record read is counted once and ends written, skipped (`"unchanged"`, `"filtered by
//! the template"`, `"echo"`, `"closed in Sales"`, `"failed earlier, unchanged"`; SQS also `"no longer in
//! F&O"`) or failed. Document lines are records of their own;
//! a product and its price list item are one record (written if either was). A Sales line deleted because its
//! F&O line is gone counts as one record read and written (`deleted`). A failed record's key (product, order or
//! invoice number) goes to the queue; a document with several failed lines is queued once. A record that
//! failed is marked on its link (`source_version = "failed:<hash of the F&O records>"`): later sweeps skip it
//! while its F&O content stays the same (the queue and DLQ own it); SQS messages always retry it.

mod resolve;
mod unit;

use p2c_mapping::{Role, Template, Transform};

use crate::{
    deps::Deps,
    error::SyncError,
    flow_name::FlowName,
    pipeline::{
        Flow,
        sink::sales,
        source::{Page, SourceSpec, sweep},
    },
    report::{Failure, RunReport, Skip},
};

pub(crate) use unit::Mode;
use unit::Unit;

/// Where a flow's child records come from.
#[derive(Clone, Debug)]
pub(crate) enum Children {
    /// None: a flow with a single template.
    None,
    /// The companion is made from the parent's own F&O record (a product's price list item).
    SameRecord,
    /// Lines of their own entity, keyed by the header's key field and a line number.
    Lines {
        entity: String,
        /// F&O field holding the header key, e.g. "SalesOrderNumber".
        parent_field: String,
        /// F&O line number field, e.g. "LineCreationSequenceNumber".
        line_field: String,
        select: Vec<String>,
    },
}

/// The child's lookup of its parent (`salesorderid.ordernumber`).
#[derive(Clone, Debug)]
pub(crate) struct ParentRef {
    /// The dotted target, e.g. "salesorderid.ordernumber".
    pub path: String,
    /// The child's lookup value column, e.g. "_salesorderid_value".
    pub value_col: String,
    /// The parent column matched, e.g. "ordernumber".
    pub column: String,
}

/// How the products flow picks a price list (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct PriceListRule {
    /// The templates with `pricelevelid.name` copied from the currency instead of value-mapped: what is mapped
    /// and hashed when the rule decides (the name is then filled in before binding).
    pub parent_without: Template,
    pub child_without: Option<Template>,
    /// P2C_MAPPING sets the row: its value map wins where it has an entry.
    pub explicit: bool,
}

/// Everything a run of one F&O → Sales flow needs to know, derived from its templates.
pub(crate) struct Spec {
    pub flow: FlowName,
    pub parent: Template,
    pub child: Option<Template>,
    pub parent_table: sales::Table,
    pub child_table: Option<sales::Table>,
    /// Sales column matched by the parent's key (productnumber, ordernumber, invoicenumber).
    pub natural_key: String,
    pub parent_ref: Option<ParentRef>,
    /// The child's identity under its parent besides the parent itself (target names).
    pub child_identity: Vec<String>,
    /// Lines: the Sales column holding the F&O line number (deletions match on it).
    pub line_number_col: Option<String>,
    pub children: Children,
    /// F&O columns of the parent entity.
    pub parent_select: Vec<String>,
    /// Headers are created in the company's business unit.
    pub owned: bool,
    pub price_list: Option<PriceListRule>,
    /// Invoices: set the order Invoiced once the invoice is written.
    pub closes_order: bool,
}

const PRICE_LIST: &str = "pricelevelid.name";

fn without_price_list_map(t: &Template) -> Template {
    let mut t = t.clone();
    for f in t.fields.iter_mut().filter(|f| f.target == PRICE_LIST) {
        f.transform = Transform::Copy;
    }
    t
}

impl Spec {
    pub fn new(deps: &Deps, flow: FlowName) -> Result<Spec, SyncError> {
        let ts = deps.templates(flow);
        let bad = |why: String| SyncError::Mapping(format!("flow {flow}: {why}"));
        let parent = ts
            .iter()
            .find(|t| matches!(t.role, Role::Single | Role::Header))
            .cloned()
            .ok_or_else(|| bad("no single or header template".into()))?;
        let child = ts
            .iter()
            .find(|t| matches!(t.role, Role::Line | Role::Companion))
            .cloned();
        let natural_key = parent
            .target_key
            .first()
            .filter(|k| !k.contains('.'))
            .cloned()
            .ok_or_else(|| bad(format!("{} needs a plain Sales key column", parent.name)))?;
        let parent_table = sales::Table::of(&parent);
        let mut parent_select = parent.source_select();
        let mut parent_ref = None;
        let mut child_identity = Vec::new();
        let mut line_number_col = None;
        let mut children = Children::None;
        if let Some(c) = &child {
            for k in &c.target_key {
                let points_to_parent = p2c_mapping::lookup_targets(k)
                    .and_then(|(nav, targets)| {
                        targets
                            .iter()
                            .find(|t| t.entity_set == parent.target_entity)
                            .map(|t| (nav, t.column.clone()))
                    })
                    .filter(|_| parent_ref.is_none());
                match points_to_parent {
                    Some((nav, column)) => {
                        parent_ref = Some(ParentRef {
                            path: k.clone(),
                            value_col: format!("_{nav}_value"),
                            column,
                        })
                    }
                    None => child_identity.push(k.clone()),
                }
            }
            if parent_ref.is_none() {
                return Err(bad(format!(
                    "{} has no key field that points to its {}",
                    c.name, parent.target_entity
                )));
            }
            if c.source_entity == parent.source_entity {
                for col in c.source_select() {
                    if !parent_select.contains(&col) {
                        parent_select.push(col);
                    }
                }
                children = Children::SameRecord;
            } else {
                let parent_field = c
                    .parent_key
                    .clone()
                    .ok_or_else(|| bad(format!("{} has no parent key", c.name)))?;
                line_number_col = c
                    .fields
                    .iter()
                    .find(|f| f.enabled && f.source.path() == Some(c.source_key.as_str()))
                    .map(|f| f.target.clone());
                let mut select = c.source_select();
                // The discount rule reads the per-unit discount, the quantity and the charge.
                for extra in unit::DISCOUNT_FIELDS {
                    if p2c_mapping::fno_property(&c.source_entity, extra).is_some()
                        && !select.iter().any(|s| s == extra)
                    {
                        select.push(extra.to_string());
                    }
                }
                children = Children::Lines {
                    entity: c.source_entity.clone(),
                    parent_field,
                    line_field: c.source_key.clone(),
                    select,
                };
            }
        }
        let price_list =
            (parent.role == Role::Single && parent.field(PRICE_LIST).is_some_and(|f| f.enabled)).then(|| {
                let builtin = p2c_mapping::template(flow.as_str(), &parent.name);
                let explicit = builtin.as_ref().and_then(|b| b.field(PRICE_LIST)) != parent.field(PRICE_LIST);
                PriceListRule {
                    parent_without: without_price_list_map(&parent),
                    child_without: child.as_ref().map(without_price_list_map),
                    explicit,
                }
            });
        Ok(Spec {
            flow,
            owned: matches!(parent.target_entity.as_str(), "salesorders" | "invoices" | "quotes"),
            closes_order: parent.target_entity == "invoices",
            child_table: child.as_ref().map(sales::Table::of),
            parent,
            child,
            parent_table,
            natural_key,
            parent_ref,
            child_identity,
            line_number_col,
            children,
            parent_select,
            price_list,
        })
    }

    fn key_field(&self) -> &str {
        &self.parent.source_key
    }
}

/// Groups lines under the headers they belong to (lines of headers not in `headers` are dropped: they belong
/// to another page or have no header).
fn units_of(spec: &Spec, headers: Vec<p2c_dynamics::Record>, lines: Vec<p2c_dynamics::Record>) -> Vec<Unit> {
    let mut units: Vec<Unit> = headers
        .into_iter()
        .map(|h| Unit {
            key: sweep::text_of(&h, spec.key_field()).unwrap_or_default(),
            parent: h,
            children: Vec::new(),
        })
        .collect();
    if let Children::Lines { parent_field, .. } = &spec.children {
        let index: std::collections::HashMap<String, usize> =
            units.iter().enumerate().map(|(i, u)| (u.key.clone(), i)).collect();
        for l in lines {
            if let Some(&i) = sweep::text_of(&l, parent_field).and_then(|k| index.get(&k)) {
                units[i].children.push(l);
            }
        }
    }
    units
}

async fn read_lines(
    deps: &Deps,
    spec: &Spec,
    company: &str,
    headers: &[p2c_dynamics::Record],
    keys: Option<&[String]>,
) -> Result<Vec<p2c_dynamics::Record>, SyncError> {
    let Children::Lines {
        entity,
        parent_field,
        line_field,
        select,
    } = &spec.children
    else {
        return Ok(Vec::new());
    };
    if let Some(keys) = keys {
        return Ok(deps
            .fno
            .find_by_keys(entity, company, parent_field, keys, select)
            .await?);
    }
    // The service's order, not ours, decides the range: the first and last header of the page.
    let key = |h: Option<&p2c_dynamics::Record>| h.and_then(|h| sweep::text_of(h, spec.key_field()));
    let (Some(first), Some(last)) = (key(headers.first()), key(headers.last())) else {
        return Ok(Vec::new());
    };
    Ok(sweep::read_lines_between(deps, entity, company, parent_field, line_field, select, (&first, &last)).await?)
}

/// products-to-sales, orders-to-sales or invoices-to-sales for one company.
pub struct FnoToSales {
    spec: Spec,
    company: String,
    /// The company's business unit, for the flows whose Sales records are owned (orders, invoices).
    business_unit: Option<String>,
    resolver: resolve::Resolver,
}

impl FnoToSales {
    pub async fn open(deps: &Deps, flow: FlowName, company: &str) -> Result<FnoToSales, SyncError> {
        let spec = Spec::new(deps, flow)?;
        let business_unit = if spec.owned {
            Some(deps.business_unit_id(company).await?)
        } else {
            None
        };
        Ok(FnoToSales {
            spec,
            company: company.to_string(),
            business_unit,
            resolver: resolve::Resolver::default(),
        })
    }
}

impl Flow for FnoToSales {
    fn name(&self) -> FlowName {
        self.spec.flow
    }

    fn source(&self) -> SourceSpec {
        SourceSpec::Sweep {
            entity: self.spec.parent.source_entity.clone(),
            key_field: self.spec.key_field().to_string(),
            select: self.spec.parent_select.clone(),
        }
    }

    /// A page of parents (products, headers): their lines in one range read, then the units.
    async fn sync_page(&mut self, deps: &Deps, page: Page, report: &mut RunReport) -> Result<Vec<Failure>, SyncError> {
        let (spec, company) = (&self.spec, self.company.as_str());
        let lines = read_lines(deps, spec, company, &page.rows, None).await?;
        let units = units_of(spec, page.rows, lines);
        let bu = self.business_unit.as_deref();
        unit::sync_units(deps, spec, company, bu, units, report, &mut self.resolver, Mode::Sweep).await
    }

    async fn sync_keys(
        &mut self,
        deps: &Deps,
        keys: Vec<String>,
        report: &mut RunReport,
    ) -> Result<Vec<Failure>, SyncError> {
        sync_keys(deps, self, keys, report).await
    }
}

/// Syncs the records named by F&O key (products: ProductNumber, orders: SalesOrderNumber, invoices:
/// InvoiceNumber). The current F&O records are read again, so a late or replayed message never writes stale
/// data. Returns the failures for the caller to route.
async fn sync_keys(
    deps: &Deps,
    flow: &mut FnoToSales,
    keys: Vec<String>,
    report: &mut RunReport,
) -> Result<Vec<Failure>, SyncError> {
    let (spec, company, bu) = (&flow.spec, flow.company.as_str(), flow.business_unit.clone());
    let mut keys: Vec<String> = keys.into_iter().filter(|k| !k.trim().is_empty()).collect();
    keys.sort();
    keys.dedup();
    let headers = deps
        .fno
        .find_by_keys(
            &spec.parent.source_entity,
            company,
            spec.key_field(),
            &keys,
            &spec.parent_select,
        )
        .await?;
    // F&O compares keys ignoring case.
    let found: std::collections::HashSet<String> = headers
        .iter()
        .filter_map(|h| sweep::text_of(h, spec.key_field()))
        .map(|k| k.to_lowercase())
        .collect();
    for k in &keys {
        if !found.contains(&k.to_lowercase()) {
            report.read += 1;
            report.skip(Skip::GoneFromFno);
        }
    }
    let lines = read_lines(deps, spec, company, &headers, Some(&keys)).await?;
    let units = units_of(spec, headers, lines);
    unit::sync_units(
        deps,
        spec,
        company,
        bu.as_deref(),
        units,
        report,
        &mut flow.resolver,
        Mode::Keys,
    )
    .await
}
