//! Dataverse change tracking as a source: the pages of one or more tables, read one table after another from
//! saved delta links or from a full read, with a position to resume an interrupted full read from.

use p2c_dynamics::{ChangePage, DynamicsError, ErrorKind};
use serde_json::{Value, json};

use super::{Page, Start};
use crate::{deps::Deps, error::SyncError, report::RunReport};

/// A Dataverse table a flow reads changes of.
#[derive(Clone, Debug)]
pub struct DeltaTable {
    pub set: String,
    pub select: Vec<String>,
}

/// The changes of `tables`, one after another. One table keeps its delta link as the watermark value as it is;
/// several keep a JSON object of delta links by entity set.
pub struct DeltaSource {
    tables: Vec<DeltaTable>,
    readers: Vec<DeltaReader>,
    current: usize,
}

impl DeltaSource {
    pub fn new(deps: &Deps, tables: &[DeltaTable], start: &Start) -> DeltaSource {
        let n = tables.len();
        let mut from: Vec<Option<String>> = vec![None; n];
        let mut done: Vec<Option<String>> = vec![None; n];
        let mut current = 0;
        match start {
            Start::Beginning => {}
            Start::Saved(v) if n == 1 => from[0] = Some(v.clone()),
            Start::Resume { position, .. } if n == 1 => from[0] = Some(position.clone()),
            Start::Saved(v) => from = saved_links(tables, v),
            Start::Resume { position, saved } => {
                // Tables after the interrupted one start from their saved delta links (or a full read).
                if let Some(v) = saved {
                    from = saved_links(tables, v);
                }
                let v: Value = serde_json::from_str(position).unwrap_or(Value::Null);
                current = v.get("table").and_then(Value::as_u64).unwrap_or(0).min(n as u64) as usize;
                let finished = v.get("done").and_then(Value::as_array).cloned().unwrap_or_default();
                for (i, d) in finished.iter().take(current).enumerate() {
                    done[i] = d.as_str().map(str::to_string);
                }
                if current < n {
                    from[current] = v.get("next").and_then(Value::as_str).map(str::to_string);
                }
            }
        }
        let readers = tables
            .iter()
            .zip(from)
            .zip(done)
            .map(|((t, from), done)| match done {
                Some(delta) => DeltaReader::finished_with(&t.set, delta),
                None => DeltaReader::new(deps, &t.set, &t.select, from.as_deref()),
            })
            .collect();
        DeltaSource {
            tables: tables.to_vec(),
            readers,
            current,
        }
    }

    pub async fn next(&mut self, deps: &Deps, report: &mut RunReport) -> Result<Option<Page>, SyncError> {
        while let Some(reader) = self.readers.get_mut(self.current) {
            if let Some(p) = reader.next(deps, report).await? {
                return Ok(Some(Page {
                    table: self.current,
                    rows: p.rows.into(),
                    deleted: p.deleted,
                    settled: None,
                }));
            }
            self.current += 1;
        }
        Ok(None)
    }

    /// Where an interrupted read resumes after the pages returned so far; `None` after the last page.
    pub fn position(&self) -> Option<String> {
        let n = self.readers.len();
        let (table, next) = match self.readers.get(self.current) {
            Some(r) if !r.finished() => (self.current, r.next_link().map(str::to_string)),
            _ if self.current + 1 < n => (self.current + 1, None),
            _ => return None,
        };
        if n == 1 {
            return next;
        }
        let done: Vec<Value> = self.readers[..table]
            .iter()
            .map(|r| json!(r.delta_link().unwrap_or_default()))
            .collect();
        Some(json!({ "table": table, "next": next, "done": done }).to_string())
    }

    /// The watermark after the last page: the delta link(s) of the next run.
    pub fn watermark(&self) -> String {
        if let [only] = self.readers.as_slice() {
            return only.delta_link().unwrap_or_default().to_string();
        }
        let mut value = serde_json::Map::new();
        for (t, r) in self.tables.iter().zip(&self.readers) {
            value.insert(t.set.clone(), json!(r.delta_link().unwrap_or_default()));
        }
        Value::Object(value).to_string()
    }
}

/// Re-reads Sales rows by id (SQS keys: changes, retries, replays), so a late message never writes stale data.
/// An id Sales no longer has is counted as read and skipped ("no longer in Sales").
pub async fn reread(
    deps: &Deps,
    (set, id_col): (&str, &str),
    ids: &[String],
    select: &[String],
    report: &mut RunReport,
) -> Result<Vec<p2c_dynamics::Record>, SyncError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = deps.sales.get_by_ids(set, id_col, ids, select).await?;
    let found: std::collections::HashSet<String> = rows
        .iter()
        .filter_map(|r| crate::pipeline::record::str_of(r, id_col).map(str::to_ascii_lowercase))
        .collect();
    for id in ids.iter().filter(|id| !found.contains(&id.to_ascii_lowercase())) {
        tracing::debug!(set, id = %id, "no longer in Sales");
        report.read += 1;
        report.skip(crate::report::Skip::GoneFromSales);
    }
    Ok(rows)
}

/// The delta link of each table in a saved multi-table watermark (`{"<set>": "<link>", ...}`).
fn saved_links(tables: &[DeltaTable], value: &str) -> Vec<Option<String>> {
    let v: Value = serde_json::from_str(value).unwrap_or(Value::Null);
    tables
        .iter()
        .map(|t| {
            v.get(&t.set)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .collect()
}

/// Whether Dataverse refused a saved delta link (expired, or from another table): read everything instead.
pub fn delta_link_refused(e: &DynamicsError) -> bool {
    matches!(e.status(), Some(400 | 404 | 410 | 422))
        || matches!(e, DynamicsError::Http { status: 500, .. } if !e.is_transient())
}

/// Pages of one Sales table's change tracking, from a saved delta link or from a full read. A refused or expired
/// delta link falls back to a full read once (links keep it free of duplicates).
pub struct DeltaReader {
    set: String,
    initial: String,
    url: Option<String>,
    first: bool,
    delta: Option<String>,
}

impl DeltaReader {
    /// A table already read to its end in an earlier, interrupted run.
    fn finished_with(set: &str, delta: String) -> DeltaReader {
        DeltaReader {
            set: set.to_string(),
            initial: String::new(),
            url: None,
            first: false,
            delta: Some(delta),
        }
    }

    /// `saved`: the delta link of the last run; `None` or empty starts with a full read.
    pub fn new(deps: &Deps, set: &str, select: &[String], saved: Option<&str>) -> DeltaReader {
        let initial = deps.sales.initial_changes_url(set, select);
        let url = saved
            .filter(|s| !s.is_empty())
            .map_or_else(|| initial.clone(), str::to_string);
        DeltaReader {
            set: set.to_string(),
            initial,
            url: Some(url),
            first: true,
            delta: None,
        }
    }

    /// The next page, or `None` after the last one (then [`DeltaReader::delta_link`] is set).
    pub async fn next(&mut self, deps: &Deps, report: &mut RunReport) -> Result<Option<ChangePage>, SyncError> {
        let Some(url) = self.url.clone() else {
            return Ok(None);
        };
        let page = match deps.sales.change_page(&self.set, &url).await {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::ChangeTrackingOff => return Err(self.tracking_off()),
            Err(e) if self.first && url != self.initial && delta_link_refused(&e) => {
                tracing::warn!(set = %self.set, error = %e, "delta link refused; falling back to a full read");
                report.full_resync = true;
                match deps.sales.change_page(&self.set, &self.initial).await {
                    Err(e) if e.kind() == ErrorKind::ChangeTrackingOff => return Err(self.tracking_off()),
                    r => r?,
                }
            }
            Err(e) => return Err(e.into()),
        };
        self.first = false;
        match (&page.next_link, &page.delta_link) {
            (Some(next), _) => self.url = Some(next.clone()),
            (None, Some(delta)) => {
                self.delta = Some(delta.clone());
                self.url = None;
            }
            (None, None) => {
                return Err(SyncError::Dynamics(DynamicsError::Decode {
                    service: "sales",
                    what: format!("change tracking of {}", self.set),
                    message: "the last page carries neither a next link nor a delta link".into(),
                }));
            }
        }
        Ok(Some(page))
    }

    /// The run-level error for a table whose change tracking is off: it names the table and what to do.
    fn tracking_off(&self) -> SyncError {
        tracing::error!(set = %self.set, "change tracking is off for the table");
        SyncError::ChangeTrackingOff {
            table: self.set.clone(),
        }
    }

    pub fn delta_link(&self) -> Option<&str> {
        self.delta.as_deref()
    }

    /// The next page's link while pages remain.
    pub fn next_link(&self) -> Option<&str> {
        if self.first { None } else { self.url.as_deref() }
    }

    fn finished(&self) -> bool {
        self.url.is_none()
    }
}
