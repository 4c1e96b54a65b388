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
//! only in what really changed.
//!
//! **Totals** (spec/templates.md 6: F&O owns prices, discounts, charges and tax). Which way F&O's totals reach
//! Sales depends on the organization's "Use system pricing calculation" (`organization.oobpricecalculationenabled`,
//! read once per run that writes a document; Microsoft, "Use custom pricing for products"):
//! - Yes, as P2C requires: Sales calculates `totalamount`, `totaltax`, `totaldiscountamount`, the line
//!   `extendedamount`, ... from the lines on every write, whatever is written there (the columns are
//!   `IsValidForCreate = false` and an update is recalculated). F&O's totals therefore arrive, on create and on
//!   every update, through what Sales calculates them from: each line's price (kept by `ispriceoverridden`),
//!   quantity, discount and tax, the header's discount and freight, and the header tax as the "Freight Tax" line
//!   ([`freight`]). The calculated columns are not compared (comparing Sales' own figure would turn every echo
//!   into a write); a repriced or re-taxed F&O order changes its lines' or header's inputs, which are.
//! - No (custom pricing): nothing in Sales calculates them, so p2c writes them as the templates say: in an
//!   update right after a create (a create ignores them) and, like any column, whenever they differ.
//!
//! Columns a create ignores (those totals, and the price lock `ispricelocked` of the invoice template) are set
//! by an update after the create, sent with the record's lines ([`children`]).
//!
//! **Closed records.** A Sales order or invoice that is closed (statecode ≠ 0) is read-only in Sales, and so
//! are its lines. An order that p2c's invoices set to Invoiced is reopened for F&O's later changes and set
//! Invoiced again after them ([`invoiced`]). Any other closed record (an order a user fulfilled or cancelled, a
//! paid invoice) is never reopened: F&O changes to it are skipped as `"closed in Sales"`, and its link is marked
//! (`source_version = "closed:<hash>"`) so later sweeps skip it without reading Sales until its F&O content
//! changes again.
//!
//! **Ownership** (spec/templates.md 3 and 4). Orders are created owned by the default team of the company's business
//! unit (`ownerid@odata.bind` to `/teams(<id>)`, as the Data Integrator's organization mapping did), and Dataverse
//! puts them in that unit; `owningbusinessunit` is never bound (it is read-only unless the organization allows
//! ownership across business units). An invoice is owned by its order's owner (the default team when its order
//! is not in Sales). Lines follow their header. Before creating, an order or invoice is looked for by number among
//! the company's records: its business unit's and those of the units below it (see `crate::ownership`).
//! Products and price list items are organization-owned tables in Dataverse: they have no owner, and a product
//! number is therefore one product for every company.
//!
//! **Price list** of a product, order or invoice (the P2C plug-in's rule for products, spec/templates.md 4; the
//! orders and invoices templates ask for "a value map per currency if several currencies"): the first valid
//! price list, by name, whose currency is the record's, so documents in every currency with a price list reach
//! Sales (Sales refuses a price list of another currency). A `pricelevelid.name` row given in P2C_MAPPING wins
//! (a value map where it has an entry). A currency without a price list fails the record (an order or invoice
//! with its lines), permanently, saying so. The chosen list is not part of the content hash, so a price list
//! added later does not move existing records.
//!
//! **Order line discount** (spec/templates.md 5.5, "Discount rounding"): where the F&O line has a per-unit discount
//! (`LineDiscountAmount`) or a negative charge (the rounding remainder), Sales gets
//! `quantity × per-unit discount + remainder` (3 × 3.33 + 0.01 = 10.00); otherwise the template's copy of
//! `TotalDiscountAmount` stands.
//!
//! **Invoices** link to their order (`salesorderid` by order number), every invoice of an order (partial ones
//! too); once an invoice and its lines are written and F&O has invoiced the order in full, the order is set to
//! Invoiced (statecode 4, statuscode 100003, a PATCH of both, which is how Dataverse changes state), unless it
//! already is ([`invoiced`]).
//!
//! **Counting.** Every F&O record read is counted once and ends written, skipped (`"unchanged"`, `"filtered by
//! the template"`, `"echo"`, `"closed in Sales"`, `"failed earlier, unchanged"`; SQS also `"no longer in
//! F&O"`) or failed. Document lines are records of their own (a header's "Freight Tax" line counts with its
//! header);
//! a product and its price list item are one record (written if either was). A Sales line deleted because its
//! F&O line is gone counts as one record read and written (`deleted`). A failed record's key (product, order or
//! invoice number) goes to the queue; a document with several failed lines is queued once. A record that
//! failed is marked on its link (`source_version = "failed:<hash of the F&O records>"`): later sweeps skip it
//! while its F&O content stays the same (the queue and DLQ own it); SQS messages always retry it.
//!
//! # Code
//!
//! A page goes through `sync_units`, phase by phase, each a module: `transform` (map and hash), `decide`
//! (links, what is unchanged or left alone, lookups, price lists, documents held whole), `write` (parents),
//! `children` (children, deletes, parents' updates after them), `invoiced` (orders Invoiced), `commit` (links,
//! then counting). `unit` holds the data they pass on, `spec` what the templates say, `resolve` the lookups,
//! `freight` the "Freight Tax" line.

mod children;
mod commit;
mod decide;
mod digest;
mod freight;
mod gone;
mod invoiced;
mod publish;
mod resolve;
mod settled;
mod spec;
mod transform;
mod unit;
mod write;

use std::collections::HashMap;

use p2c_dynamics::{RawRows, Record};

use crate::{
    deps::{Deps, ScopeOnce},
    error::SyncError,
    flow_name::FlowName,
    pipeline::{
        Flow,
        sink::sales::{CALCULATED, Pricing},
        source::{Page, SourceSpec, sweep},
    },
    report::{Failure, RunReport, Skip},
};

use spec::{Children, Spec};
use unit::{Mode, Unit, Work};
use write::CompanyUnit;

/// The units of `headers`, each with its lines taken out of `lines` (by header key).
fn units_of(spec: &Spec, headers: Vec<Record>, lines: &mut HashMap<String, RawRows>) -> Vec<Unit> {
    headers
        .into_iter()
        .map(|h| {
            let key = sweep::text_of(&h, spec.key_field()).unwrap_or_default();
            Unit {
                children: lines.remove(&key).map(RawRows::parse).unwrap_or_default(),
                key,
                parent: h,
            }
        })
        .collect()
}

/// Lines by the key of their header, as read (a page's lines stay text until their headers' step); lines
/// without one belong to no unit and are dropped.
fn lines_by_header(spec: &Spec, lines: RawRows) -> HashMap<String, RawRows> {
    match &spec.children {
        Children::Lines { parent_field, .. } => lines.group_by(parent_field, sweep::value_text),
        _ => HashMap::new(),
    }
}

async fn read_lines(
    deps: &Deps,
    spec: &Spec,
    company: &str,
    header_keys: &[String],
    keys: Option<&[String]>,
    settled: Option<&sweep::Settled>,
) -> Result<RawRows, SyncError> {
    let Children::Lines {
        entity,
        parent_field,
        line_field,
        select,
    } = &spec.children
    else {
        return Ok(RawRows::default());
    };
    if let Some(keys) = keys {
        let lines = deps
            .fno
            .find_rows_by_keys(entity, company, parent_field, keys, select)
            .await?;
        return Ok(lines);
    }
    // The service's order, not ours, decides the range: the first and last header of the page.
    let (Some(first), Some(last)) = (header_keys.first(), header_keys.last()) else {
        return Ok(RawRows::default());
    };
    let unsettled = settled.map(|s| s.lines.as_str());
    let mut lines = sweep::read_lines_between(
        deps,
        (entity, company),
        (parent_field, line_field),
        select,
        (first, last),
        unsettled,
    )
    .await?;
    if unsettled.is_some() {
        // Headers whose lines the filter left out (settled since the header read, or final within their grace):
        // their lines by key, so a document is never seen without its lines.
        let with: std::collections::HashSet<String> = (0..lines.len())
            .filter_map(|i| sweep::value_text(lines.field(i, parent_field).as_ref()))
            .collect();
        let without: Vec<String> = header_keys.iter().filter(|k| !with.contains(*k)).cloned().collect();
        if !without.is_empty() {
            let found = deps
                .fno
                .find_rows_by_keys(entity, company, parent_field, &without, select)
                .await?;
            lines.extend(found);
        }
    }
    Ok(lines)
}

/// products-to-sales, orders-to-sales or invoices-to-sales for one company.
pub struct FnoToSales {
    spec: Spec,
    company: String,
    /// The company's business unit (and the units below it), for the flows whose Sales records are owned
    /// (orders, invoices).
    owner: Option<CompanyUnit>,
    resolver: resolve::Resolver,
    /// The organization's pricing setting, read once a run writes a document (orders, invoices).
    pricing: Option<Pricing>,
    /// Products: whether a new product starts in Draft (read once a run writes products; see [`publish`]).
    created_in_draft: Option<bool>,
    /// products-to-sales: the bookkeeping of a whole sweep, to find the products that left ([`gone`]).
    book: Option<gone::SweepBook>,
    /// What regular sweeps leave out ([`settled`]).
    settled: Option<sweep::Settled>,
    /// The sweep's digests per key range ([`digest`]), read on the first page.
    digests: digest::Digests,
    /// Parents per sweep page: `P2C_SWEEP_PAGE_SIZE`, or `P2C_SWEEP_DOCUMENT_PAGE_SIZE` headers for documents.
    sweep_page: usize,
}

impl FnoToSales {
    pub async fn open(deps: &Deps, flow: FlowName, company: &str) -> Result<FnoToSales, SyncError> {
        let spec = Spec::new(deps, flow)?;
        let owner = if spec.owned {
            Some(CompanyUnit {
                company: company.to_string(),
                unit: deps.business_unit_id(company).await?,
                scope: ScopeOnce::new(company),
            })
        } else {
            None
        };
        let sweep_page = match spec.children {
            Children::Lines { .. } => deps.cfg.sweep_document_page_size,
            _ => deps.cfg.sweep_page_size,
        };
        Ok(FnoToSales {
            spec,
            company: company.to_string(),
            owner,
            resolver: resolve::Resolver::default(),
            pricing: None,
            created_in_draft: None,
            book: (flow == FlowName::ProductsToSales).then(gone::SweepBook::default),
            settled: settled::settled(flow, deps.cfg.settled_after),
            digests: digest::Digests::new(flow, company, deps.cfg.sweep_digests && deps.cfg.skip_unchanged),
            sweep_page,
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
            settled: self.settled.clone(),
            page_size: self.sweep_page,
        }
    }

    /// A page of parents (products, headers): their lines in one range read, then the units.
    async fn sync_page(&mut self, deps: &Deps, page: Page, report: &mut RunReport) -> Result<Vec<Failure>, SyncError> {
        let keys: Vec<String> = page.rows.texts(self.spec.key_field()).flatten().collect();
        self.book_page(&keys, report);
        let settled = page.settled.as_ref();
        let lines = read_lines(deps, &self.spec, &self.company, &keys, None, settled).await?;
        let mut lines = lines_by_header(&self.spec, lines);
        let mode = Mode::Sweep {
            scope: if settled.is_some() { "regular" } else { "full" },
        };
        // A sweep page is large (few F&O requests) and held as text; it is parsed, mapped, compared and written
        // P2C_PAGE_SIZE records at a time, so what a run holds besides the page's text stays small.
        let step = deps.cfg.page_size.max(1);
        let mut rows = page.rows;
        let mut failures = Vec::new();
        while !rows.is_empty() {
            let rest = rows.split_off(step);
            let units = units_of(&self.spec, rows.into_records(), &mut lines);
            failures.extend(sync_units(deps, self, units, report, mode).await?);
            rows = rest;
        }
        Ok(failures)
    }

    async fn sync_keys(
        &mut self,
        deps: &Deps,
        keys: Vec<String>,
        report: &mut RunReport,
    ) -> Result<Vec<Failure>, SyncError> {
        sync_keys(deps, self, keys, report).await
    }

    async fn after_last_page(&mut self, deps: &Deps, report: &mut RunReport) -> Result<Vec<Failure>, SyncError> {
        match self.book.take() {
            Some(book) => book.finish(deps, &self.company, report).await,
            None => Ok(Vec::new()),
        }
    }
}

impl FnoToSales {
    /// Keeps the keys of a sweep's page for [`gone`]; a sweep resumed from an earlier run keeps nothing.
    fn book_page(&mut self, keys: &[String], report: &RunReport) {
        if report.resumed {
            self.book = None;
        }
        let Some(book) = &mut self.book else { return };
        keys.iter().for_each(|k| book.saw(k));
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
    let (spec, company) = (&flow.spec, flow.company.as_str());
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
    let lines = read_lines(deps, spec, company, &[], Some(&keys), None).await?;
    let units = units_of(spec, headers, &mut lines_by_header(spec, lines));
    sync_units(deps, flow, units, report, Mode::Keys).await
}

/// The organization's pricing setting, read once per run and only by flows whose templates write columns
/// Sales calculates (orders, invoices); products are priced by their price list item, not calculated.
async fn pricing_of(deps: &Deps, spec: &Spec, cached: &mut Option<Pricing>) -> Result<Pricing, SyncError> {
    let calculates = std::iter::once(&spec.parent).chain(spec.child.as_ref()).any(|t| {
        t.fields
            .iter()
            .any(|f| f.enabled && CALCULATED.contains(&f.target.as_str()))
    });
    if !calculates {
        return Ok(Pricing::System);
    }
    if let Some(p) = cached {
        return Ok(*p);
    }
    let p = Pricing::of_org(deps).await?;
    *cached = Some(p);
    Ok(p)
}

/// Whether the products this run creates are to be published (they start in Draft); false for other flows.
async fn publish_created(deps: &Deps, spec: &Spec, cached: &mut Option<bool>) -> Result<bool, SyncError> {
    if !spec.publishes {
        return Ok(false);
    }
    if let Some(d) = cached {
        return Ok(*d);
    }
    let d = publish::created_in_draft(deps).await?;
    *cached = Some(d);
    Ok(d)
}

/// Syncs one page of units, phase by phase; returns the failures for the caller to route.
async fn sync_units(
    deps: &Deps,
    flow: &mut FnoToSales,
    units: Vec<Unit>,
    report: &mut RunReport,
    mode: Mode,
) -> Result<Vec<Failure>, SyncError> {
    let FnoToSales {
        spec,
        company,
        owner,
        resolver,
        pricing,
        created_in_draft,
        book,
        digests,
        ..
    } = flow;
    let mut works: Vec<Work> = units.into_iter().map(|u| transform::transform(spec, u)).collect();
    // Ranges whose digest matches are unchanged as a whole: no link is read for them.
    let (same, prints) = match mode {
        Mode::Sweep { scope } => digests.split_unchanged(deps, scope, &mut works).await?,
        Mode::Keys => (Vec::new(), Vec::new()),
    };
    decide::decide(deps, spec, company, &mut works, mode).await?;
    if let (Some(book), Mode::Sweep { .. }) = (book.as_mut(), mode) {
        works
            .iter()
            .filter_map(|w| w.parent.link.as_ref())
            .for_each(|l| book.came_back(l));
    }
    decide::touch(spec, &mut works);
    if works.iter().any(|w| w.touched) {
        let pricing = pricing_of(deps, spec, pricing).await?;
        let publish = publish_created(deps, spec, created_in_draft).await?;
        resolver.prepare(deps, &decide::needs(spec, &works)).await?;
        if spec.price_list.is_some() {
            decide::choose_price_lists(deps, spec, &mut works, resolver).await?;
        }
        decide::hold_incomplete_documents(spec, &mut works, resolver);
        let org = write::OrgSettings { pricing, publish };
        write::write_parents(deps, spec, owner.as_ref(), &mut works, resolver, org).await?;
        children::write_children(deps, spec, &mut works, resolver, pricing).await?;
        if spec.closes_order {
            invoiced::invoice_orders(deps, spec, company, &mut works, resolver).await?;
        }
        deps.crashes.check(crate::faults::CrashPoint::AfterTargetWrite)?;
    }
    commit::commit_links(deps, spec, company, &works).await?;
    if let Mode::Sweep { scope } = mode {
        // Only now, with the page's links committed, may a range's digest say it is in Sales.
        digests.commit(deps, scope, &prints, &works).await?;
    }
    works.extend(same);
    Ok(commit::count(spec, works, report))
}
