//! quotes-to-fno (spec/templates.md 5.4) and orders-to-fno (5.5a/b): Sales documents → F&O. A document is a header
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
//!
//! **Files**, by phase: `spec` (the flow's templates and names), `read` (headers, lines, products and customers
//! from Sales), `transform` (mapping a document whole, and the verdict on it), `write` (compare with F&O, plan,
//! write, retry a race, commit links; deletes of lines). This file is the [`Flow`]: which page goes where.

mod read;
mod spec;
mod transform;
mod write;

use std::collections::HashSet;

use p2c_dynamics::Record;

use crate::{
    deps::{Deps, ScopeOnce},
    error::SyncError,
    flow_name::FlowName,
    pipeline::{
        Flow,
        source::{Page, SourceSpec, delta::DeltaTable},
    },
    report::{Failure, RunReport, Skip},
};
use read::ids_of;
use spec::DocFlow;

/// quotes-to-fno or orders-to-fno for one company.
pub struct Documents<'a> {
    spec: DocFlow<'a>,
    company: String,
    /// The business units whose documents are the company's (read once per run, when there are documents).
    scope: ScopeOnce,
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
            scope: {
                deps.business_unit_id(company).await?; // a wrong P2C_COMPANIES stops the run here
                ScopeOnce::new(company)
            },
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
                .get_links(spec.header_entity.as_str(), company, "sales", &page.deleted)
                .await?;
            self.deleted_docs
                .extend(links.values().map(|l| l.target_key.to_ascii_lowercase()));
            for _ in &page.deleted {
                report.read += 1;
                report.skip(Skip::DocumentDeletedInSales);
            }
        }
        let rows = page.rows.into_records();
        self.done.extend(ids_of(&rows, &spec.header.source_id));
        self.sync_documents(deps, rows, report).await
    }

    /// A page of changed lines: delete what was deleted, and sync each changed line's whole document once.
    async fn line_page(&mut self, deps: &Deps, page: Page, report: &mut RunReport) -> Result<Vec<Failure>, SyncError> {
        let (spec, company) = (&self.spec, self.company.as_str());
        let mut failures = write::delete_lines(deps, spec, company, &page.deleted, &self.deleted_docs, report).await?;
        let rows = page.rows.into_records();
        let mut ids: Vec<String> = ids_of(&rows, &spec.parent_col)
            .filter(|id| !self.done.contains(id))
            .collect();
        ids.sort();
        ids.dedup();
        self.done.extend(ids.iter().cloned());
        let rows = read::read_headers(deps, spec, &ids, &spec.header_select(), report).await?;
        failures.extend(self.sync_documents(deps, rows, report).await?);
        Ok(failures)
    }

    /// Syncs documents given by their header rows. Every header read ends written, skipped or failed.
    async fn sync_documents(
        &self,
        deps: &Deps,
        mut headers: Vec<Record>,
        report: &mut RunReport,
    ) -> Result<Vec<Failure>, SyncError> {
        let (spec, company) = (&self.spec, self.company.as_str());
        if headers.is_empty() {
            return Ok(Vec::new());
        }
        read::enrich_headers(deps, spec, &mut headers).await?;
        let scope = self.scope.get(deps).await?;
        let (docs, mut failures) = transform::check_headers(spec, scope, headers, report);
        if docs.is_empty() {
            return Ok(failures);
        }
        let parents = read::read_parents(deps, spec, company, &docs).await?;
        let (ready, unmapped) = transform::map_documents(spec, company, docs, parents, report);
        failures.extend(unmapped);
        if ready.is_empty() {
            return Ok(failures);
        }
        failures.extend(write::write_documents(deps, spec, company, ready, report).await?);
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
        let (spec, company) = (&self.spec, self.company.as_str());
        let keyed = read::read_keys(deps, spec, keys, report).await?;
        let mut failures = keyed.failures;
        let gone = &keyed.gone_lines;
        failures.extend(write::delete_lines(deps, spec, company, gone, &HashSet::new(), report).await?);
        failures.extend(self.sync_documents(deps, keyed.headers, report).await?);
        Ok(failures)
    }
}
