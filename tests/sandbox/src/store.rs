//! In-memory data of both services. Each store keeps an undo journal while a `$batch` change set runs, so a
//! failing change set rolls back exactly its own writes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

pub(crate) type Row = Map<String, Value>;

/// Hidden per-row bookkeeping keys start with this prefix and are never serialized.
pub(crate) const HIDDEN: &str = "@sb.";

// ------------------------------------------------------------------------------------------------
// Dataverse
// ------------------------------------------------------------------------------------------------

#[derive(Default)]
pub(crate) struct DvTable {
    /// Rows by lower-case GUID. Private: changed only through [`DvTable::insert`] and [`DvTable::remove`],
    /// which keep `index` in step.
    rows: HashMap<String, Row>,
    /// Deleted ids with the version of their deletion (change tracking reports them as `$deletedEntity`).
    pub tombstones: HashMap<String, u64>,
    /// Columns indexed besides the lookups (`_x_value`): the primary name, the autonumber (`ordernumber`) and
    /// the alternate key columns.
    indexed: Vec<String>,
    /// Row ids by indexed column and lower-case value: the service's indexes, so a header's lines or a page of
    /// orders by name are found without a scan (a 300,000-line table stays fast).
    index: HashMap<String, HashMap<String, HashSet<String>>>,
}

impl DvTable {
    /// Rows by lower-case GUID.
    pub fn rows(&self) -> &HashMap<String, Row> {
        &self.rows
    }

    /// The table of entity set `set`, indexed as its schema says.
    pub fn of(set: &str) -> DvTable {
        let indexed = crate::dv_schema::table(set).map_or_else(Vec::new, |t| {
            let keys = t.alt_keys.iter().flatten().copied();
            let number = t.autonumber.map(|(col, _)| col);
            std::iter::once(t.primary_name)
                .chain(number)
                .chain(keys)
                .map(str::to_string)
                .collect()
        });
        DvTable {
            indexed,
            ..DvTable::default()
        }
    }

    pub fn insert(&mut self, id: String, row: Row) -> Option<Row> {
        self.reindex(&id, &row, true);
        let before = self.rows.insert(id.clone(), row);
        if let Some(b) = &before {
            self.reindex(&id, b, false);
        }
        before
    }

    pub fn remove(&mut self, id: &str) -> Option<Row> {
        let before = self.rows.remove(id);
        if let Some(b) = &before {
            self.reindex(id, b, false);
        }
        before
    }

    /// The rows whose lookup `col` references `target`.
    pub fn referencing<'a>(&'a self, col: &str, target: &str) -> impl Iterator<Item = &'a Row> + 'a {
        let ids = self.index.get(col).and_then(|m| m.get(&target.to_lowercase()));
        ids.into_iter().flatten().filter_map(|id| self.rows.get(id))
    }

    /// When filter `f` restricts indexed columns to given values: the column of those that selects the fewest
    /// rows, and its values (lower case).
    pub fn index_candidates(&self, f: &crate::odata_filter::Expr) -> Option<(&str, Vec<String>)> {
        let rows = |col: &str, values: &[String]| -> usize {
            let ids = self.index.get(col);
            values.iter().filter_map(|v| ids?.get(v)).map(HashSet::len).sum()
        };
        self.index
            .keys()
            .filter_map(|col| crate::odata_filter::key_candidates(f, col).map(|ids| (col.as_str(), ids)))
            .min_by_key(|(col, ids)| rows(col, ids))
    }

    fn is_indexed(&self, col: &str) -> bool {
        (col.starts_with('_') && col.ends_with("_value")) || self.indexed.iter().any(|c| c == col)
    }

    /// Adds (or, `add` false, removes) `row`'s indexed values; a removal keeps what the stored row still has.
    fn reindex(&mut self, id: &str, row: &Row, add: bool) {
        let cols: Vec<&String> = row.keys().filter(|c| self.is_indexed(c)).collect();
        for col in cols {
            let v = &row[col.as_str()];
            let Some(value) = v.as_str().map(str::to_lowercase) else {
                continue;
            };
            let still = |r: &Row| {
                r.get(col)
                    .and_then(Value::as_str)
                    .is_some_and(|now| now.to_lowercase() == value)
            };
            if !add && self.rows.get(id).is_some_and(still) {
                continue;
            }
            let ids = self.index.entry(col.clone()).or_default().entry(value).or_default();
            if add {
                ids.insert(id.to_string());
            } else {
                ids.remove(id);
            }
        }
    }
}

enum DvUndo {
    Row {
        set: String,
        id: String,
        prev: Option<Row>,
        prev_tomb: Option<u64>,
    },
}

/// One change of a Dataverse row, kept while events or the write journal need it (see `events.rs`).
#[derive(Clone, Debug)]
pub(crate) struct DvChange {
    pub set: String,
    pub id: String,
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub at: std::time::SystemTime,
}

pub(crate) struct DvStore {
    /// Global row version (SQL rowversion): every write takes the next value; ETags and delta tokens use it.
    pub version: u64,
    /// Delta tokens below this version were invalidated by `expire_delta_tokens`.
    pub delta_floor: u64,
    pub tables: HashMap<String, DvTable>,
    journal: Option<Vec<DvUndo>>,
    pub autonumber: u64,
    /// The organization's root business unit.
    pub root_bu: String,
    /// The application user the API calls run as (`systemusers`): owner of rows created without one.
    pub caller: String,
    /// The organization allows "Record ownership across business units" (see `owner.rs`).
    pub ownership_across_business_units: bool,
    /// Record row changes in `outbox` (on while webhook steps are registered or the write journal is on).
    pub capture: bool,
    /// Changes since the last `events::flush_dataverse`, in order; a rolled-back change set drops its own.
    pub outbox: Vec<DvChange>,
    outbox_mark: usize,
}

impl DvStore {
    pub fn new() -> DvStore {
        DvStore {
            // Real version numbers are large; starting high keeps clients from assuming small values.
            version: 1_000_000,
            delta_floor: 0,
            tables: HashMap::new(),
            journal: None,
            autonumber: 1000,
            root_bu: String::new(),
            caller: String::new(),
            ownership_across_business_units: false,
            capture: false,
            outbox: Vec::new(),
            outbox_mark: 0,
        }
    }

    pub fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    pub fn get(&self, set: &str, id: &str) -> Option<&Row> {
        self.tables.get(set).and_then(|t| t.rows.get(&id.to_ascii_lowercase()))
    }

    pub fn table(&self, set: &str) -> Option<&DvTable> {
        self.tables.get(set)
    }

    fn record(&mut self, set: &str, id: &str) {
        if self.journal.is_some() {
            let t = self.tables.entry(set.to_string()).or_insert_with(|| DvTable::of(set));
            let prev = t.rows.get(id).cloned();
            let prev_tomb = t.tombstones.get(id).copied();
            if let Some(j) = self.journal.as_mut() {
                j.push(DvUndo::Row {
                    set: set.to_string(),
                    id: id.to_string(),
                    prev,
                    prev_tomb,
                });
            }
        }
    }

    pub fn put(&mut self, set: &str, id: &str, row: Row) {
        let id = id.to_ascii_lowercase();
        self.record(set, &id);
        let capture = self.capture;
        let t = self.tables.entry(set.to_string()).or_insert_with(|| DvTable::of(set));
        t.tombstones.remove(&id);
        let after = capture.then(|| row.clone());
        let before = t.insert(id.clone(), row);
        if let Some(after) = after {
            self.outbox.push(DvChange {
                set: set.to_string(),
                id,
                before,
                after: Some(after),
                at: std::time::SystemTime::now(),
            });
        }
    }

    pub fn remove(&mut self, set: &str, id: &str) -> Option<Row> {
        let id = id.to_ascii_lowercase();
        self.get(set, &id)?;
        self.record(set, &id);
        let v = self.next_version();
        let t = self.tables.entry(set.to_string()).or_insert_with(|| DvTable::of(set));
        t.tombstones.insert(id.clone(), v);
        let before = t.remove(&id);
        if self.capture {
            self.outbox.push(DvChange {
                set: set.to_string(),
                id,
                before: before.clone(),
                after: None,
                at: std::time::SystemTime::now(),
            });
        }
        before
    }

    /// A `$batch` change set (or a bulk action) is collecting undo records.
    pub fn in_transaction(&self) -> bool {
        self.journal.is_some()
    }

    pub fn begin(&mut self) {
        self.journal = Some(Vec::new());
        self.outbox_mark = self.outbox.len();
    }

    pub fn commit(&mut self) {
        self.journal = None;
    }

    pub fn rollback(&mut self) {
        self.outbox.truncate(self.outbox_mark);
        if let Some(j) = self.journal.take() {
            for u in j.into_iter().rev() {
                let DvUndo::Row {
                    set,
                    id,
                    prev,
                    prev_tomb,
                } = u;
                let t = self.tables.entry(set.clone()).or_insert_with(|| DvTable::of(&set));
                match prev {
                    Some(r) => {
                        t.insert(id.clone(), r);
                    }
                    None => {
                        t.remove(&id);
                    }
                }
                match prev_tomb {
                    Some(v) => {
                        t.tombstones.insert(id, v);
                    }
                    None => {
                        t.tombstones.remove(&id);
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Finance & Operations
// ------------------------------------------------------------------------------------------------

/// One component of an F&O primary key, normalised the way SQL Server compares it (strings case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum KeyPart {
    Int(i64),
    Str(String),
}

pub(crate) type Key = Vec<KeyPart>;

#[derive(Debug, Clone)]
pub(crate) struct FRow {
    /// Properties as stored (wire shape; defaults filled at create under the creating entity's schema).
    pub data: Row,
    pub recid: i64,
    pub recversion: i64,
}

enum FnoUndo {
    Row {
        storage: String,
        key: Key,
        prev: Option<FRow>,
    },
}

/// One F&O row write, kept while the write journal is on (`Sandbox::record_writes`).
#[derive(Clone, Debug)]
pub(crate) struct FnoWrite {
    pub storage: String,
    pub key: Key,
    pub row: Option<Row>,
    pub at: std::time::SystemTime,
}

pub(crate) struct FnoStore {
    /// Rows per storage table (entity sets over one table, like CustomersV2/V3, share one).
    pub tables: HashMap<String, BTreeMap<Key, FRow>>,
    journal: Option<Vec<FnoUndo>>,
    /// Writes, while the write journal is on; a rolled-back change set drops its own.
    pub writes: Option<Vec<FnoWrite>>,
    writes_mark: usize,
    pub next_recid: i64,
    /// Number sequences per (company, entity set).
    pub numseq: HashMap<(String, String), u64>,
    /// Legal entities that exist.
    pub companies: BTreeSet<String>,
}

impl FnoStore {
    pub fn new() -> FnoStore {
        FnoStore {
            tables: HashMap::new(),
            journal: None,
            // RecIds of a real database are in this range; clients must treat them as opaque anyway.
            next_recid: 5_637_144_576,
            numseq: HashMap::new(),
            companies: BTreeSet::new(),
            writes: None,
            writes_mark: 0,
        }
    }

    pub fn get(&self, storage: &str, key: &Key) -> Option<&FRow> {
        self.tables.get(storage).and_then(|t| t.get(key))
    }

    pub fn rows(&self, storage: &str) -> impl Iterator<Item = (&Key, &FRow)> {
        self.tables.get(storage).into_iter().flat_map(|t| t.iter())
    }

    fn record(&mut self, storage: &str, key: &Key) {
        if self.journal.is_some() {
            let prev = self.get(storage, key).cloned();
            if let Some(j) = self.journal.as_mut() {
                j.push(FnoUndo::Row {
                    storage: storage.to_string(),
                    key: key.clone(),
                    prev,
                });
            }
        }
    }

    pub fn put(&mut self, storage: &str, key: Key, row: FRow) {
        self.record(storage, &key);
        if let Some(w) = self.writes.as_mut() {
            w.push(FnoWrite {
                storage: storage.to_string(),
                key: key.clone(),
                row: Some(row.data.clone()),
                at: std::time::SystemTime::now(),
            });
        }
        self.tables.entry(storage.to_string()).or_default().insert(key, row);
    }

    pub fn remove(&mut self, storage: &str, key: &Key) -> Option<FRow> {
        self.get(storage, key)?;
        self.record(storage, key);
        if let Some(w) = self.writes.as_mut() {
            w.push(FnoWrite {
                storage: storage.to_string(),
                key: key.clone(),
                row: None,
                at: std::time::SystemTime::now(),
            });
        }
        self.tables.get_mut(storage).and_then(|t| t.remove(key))
    }

    pub fn alloc_recid(&mut self) -> i64 {
        self.next_recid += 1;
        self.next_recid
    }

    pub fn begin(&mut self) {
        self.journal = Some(Vec::new());
        self.writes_mark = self.writes.as_ref().map_or(0, Vec::len);
    }

    pub fn commit(&mut self) {
        self.journal = None;
    }

    pub fn rollback(&mut self) {
        let mark = self.writes_mark;
        if let Some(w) = self.writes.as_mut() {
            w.truncate(mark);
        }
        if let Some(j) = self.journal.take() {
            for u in j.into_iter().rev() {
                let FnoUndo::Row { storage, key, prev } = u;
                let t = self.tables.entry(storage).or_default();
                match prev {
                    Some(r) => {
                        t.insert(key, r);
                    }
                    None => {
                        t.remove(&key);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::odata_filter::{Expr, Lit, PType};
    use serde_json::json;

    fn row(order: &str, unit: &str) -> Row {
        let v = json!({"_salesorderid_value": order, "_owningbusinessunit_value": unit});
        v.as_object().cloned().unwrap()
    }

    fn ids<'a>(rows: impl Iterator<Item = &'a Row>) -> Vec<String> {
        let mut v: Vec<String> = rows
            .map(|r| r["_salesorderid_value"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    }

    fn is(prop: &str, values: &[&str]) -> Expr {
        Expr::In {
            prop: prop.into(),
            ty: PType::Guid,
            values: values.iter().map(|v| Lit::Guid(v.to_string())).collect(),
            negate: false,
        }
    }

    #[test]
    fn the_index_follows_updates_removals_and_case() {
        let mut t = DvTable::of("salesorderdetails");
        t.insert("l1".into(), row("A", "bu"));
        t.insert("l2".into(), row("a", "bu"));
        t.insert("l3".into(), row("B", "bu"));
        assert_eq!(ids(t.referencing("_salesorderid_value", "A")), ["A", "a"]);
        // A line moved to another header leaves the old one's index.
        t.insert("l1".into(), row("B", "bu"));
        assert_eq!(ids(t.referencing("_salesorderid_value", "a")), ["a"]);
        assert_eq!(ids(t.referencing("_salesorderid_value", "b")), ["B", "B"]);
        t.remove("l3");
        assert_eq!(ids(t.referencing("_salesorderid_value", "B")), ["B"]);
        assert_eq!(ids(t.referencing("_owningbusinessunit_value", "BU")), ["B", "a"]);
    }

    #[test]
    fn a_filter_is_served_by_its_most_selective_indexed_column() {
        let mut t = DvTable::of("salesorderdetails");
        for i in 0..10 {
            t.insert(format!("l{i}"), row(&format!("h{i}"), "bu"));
        }
        let f = Expr::And(
            Box::new(is("_owningbusinessunit_value", &["bu"])),
            Box::new(is("_salesorderid_value", &["h3", "h4"])),
        );
        let (col, values) = t.index_candidates(&f).expect("indexed");
        assert_eq!(
            (col, values),
            ("_salesorderid_value", vec!["h3".to_string(), "h4".to_string()])
        );
        // A column nobody indexes leaves the filter to a scan.
        assert!(t.index_candidates(&is("description", &["x"])).is_none());
    }
}
