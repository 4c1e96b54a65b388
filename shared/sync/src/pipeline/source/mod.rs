//! Sources: where a flow's pages come from. Dataverse change tracking (`delta`) or an F&O keyset sweep
//! (`sweep`); the pipeline reads both the same way and saves their positions through `checkpoint`.

pub mod delta;
pub mod sweep;

use p2c_dynamics::{RawRows, Record};

use crate::{deps::Deps, error::SyncError, report::RunReport};
use delta::{DeltaSource, DeltaTable};
use sweep::{Settled, SweepSource};

/// What a flow reads.
#[derive(Clone, Debug)]
pub enum SourceSpec {
    /// Dataverse change tracking of one or more tables, read one after another (documents: headers, then lines).
    Delta(Vec<DeltaTable>),
    /// A keyset sweep of one F&O entity (F&O has no change tracking on these entities).
    Sweep {
        entity: String,
        key_field: String,
        select: Vec<String>,
        /// What regular sweeps leave out (documents that settled); `None`: every sweep reads everything.
        settled: Option<Settled>,
        /// Records per page.
        page_size: usize,
    },
}

impl SourceSpec {
    /// A sweep's position is its watermark (a scheduled run continues an unfinished sweep); change tracking
    /// keeps a delta link there and a full read's position in a resume item of its own.
    pub fn position_is_watermark(&self) -> bool {
        matches!(self, SourceSpec::Sweep { .. })
    }
}

/// Where a read starts.
#[derive(Clone, Debug, PartialEq)]
pub enum Start {
    /// From the first record (a full read).
    Beginning,
    /// From the watermark the last finished run saved.
    Saved(String),
    /// From the position an interrupted read saved (`saved`: the watermark it started from, when incremental).
    Resume { position: String, saved: Option<String> },
}

/// One page: records of one of the source's tables, and the ids the source reports deleted.
#[derive(Debug, Default)]
pub struct Page {
    /// Index of the table in [`SourceSpec::Delta`] (0 for a sweep).
    pub table: usize,
    pub rows: Rows,
    pub deleted: Vec<String>,
    /// A sweep's page read by a regular sweep: what it left out (its lines are read with the same filter).
    pub settled: Option<Settled>,
}

/// A page's records: parsed (Dataverse change pages), or as JSON text (a sweep's pages of up to 10,000 F&O
/// records, parsed a step at a time: a parsed record takes about four times its text).
#[derive(Debug)]
pub enum Rows {
    Parsed(Vec<Record>),
    Text(RawRows),
}

impl Default for Rows {
    fn default() -> Self {
        Rows::Parsed(Vec::new())
    }
}

impl From<Vec<Record>> for Rows {
    fn from(rows: Vec<Record>) -> Self {
        Rows::Parsed(rows)
    }
}

impl Rows {
    pub fn len(&self) -> usize {
        match self {
            Rows::Parsed(r) => r.len(),
            Rows::Text(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Field `name` of row `i` as text (see [`sweep::text_of`]).
    pub fn text(&self, i: usize, name: &str) -> Option<String> {
        match self {
            Rows::Parsed(r) => r.get(i).and_then(|r| sweep::text_of(r, name)),
            Rows::Text(r) => sweep::value_text(r.field(i, name).as_ref()),
        }
    }

    /// Field `name` of every row, as text.
    pub fn texts<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Option<String>> + 'a {
        (0..self.len()).map(move |i| self.text(i, name))
    }

    /// The rows from `at` on; `self` keeps those before.
    pub fn split_off(&mut self, at: usize) -> Rows {
        match self {
            Rows::Parsed(r) => Rows::Parsed(r.split_off(at.min(r.len()))),
            Rows::Text(r) => Rows::Text(r.split_off(at)),
        }
    }

    pub fn into_records(self) -> Vec<Record> {
        match self {
            Rows::Parsed(r) => r,
            Rows::Text(r) => r.parse(),
        }
    }
}

pub enum Source {
    Delta(DeltaSource),
    Sweep(SweepSource),
}

impl Source {
    pub fn open(deps: &Deps, spec: &SourceSpec, company: &str, start: &Start, report: &mut RunReport) -> Source {
        match spec {
            SourceSpec::Delta(tables) => Source::Delta(DeltaSource::new(deps, tables, start)),
            SourceSpec::Sweep {
                entity,
                key_field,
                select,
                settled,
                page_size,
            } => {
                let from = match start {
                    Start::Beginning => None,
                    Start::Saved(v) | Start::Resume { position: v, .. } => Some(v.as_str()),
                };
                let s = SweepSource::new(
                    (entity, key_field, select),
                    company,
                    *page_size,
                    from,
                    (settled.as_ref(), deps.cfg.full_sweep_every),
                );
                if s.resumes() {
                    tracing::info!(entity = %entity, company, "resuming an unfinished sweep");
                    report.resumed = true;
                }
                Source::Sweep(s)
            }
        }
    }

    pub async fn next(&mut self, deps: &Deps, report: &mut RunReport) -> Result<Option<Page>, SyncError> {
        match self {
            Source::Delta(s) => s.next(deps, report).await,
            Source::Sweep(s) => s.next(deps).await,
        }
    }

    /// Where to resume after the pages returned so far; `None` once the last page was returned.
    pub fn position(&self) -> Option<String> {
        match self {
            Source::Delta(s) => s.position(),
            Source::Sweep(s) => s.position(),
        }
    }

    /// The watermark to save once every page is committed.
    pub fn watermark(&self) -> String {
        match self {
            Source::Delta(s) => s.watermark(),
            Source::Sweep(s) => s.watermark(),
        }
    }
}
