//! Reading F&O for the sweep: key-ordered pages of one company (keyset paging, so a crashed run resumes after
//! the last key it finished), the lines of a page's headers, and records named by key (SQS).

use p2c_dynamics::{DynamicsError, RawRows, Record, odata};
use serde_json::{Value, json};

use super::{Page, Rows};
use crate::{deps::Deps, error::SyncError, pipeline::record::now};

/// What a regular sweep leaves out: documents that can no longer change in a way the flow syncs (settled), as
/// `$filter` conditions for the headers and for their lines. A full sweep, every `P2C_FULL_SWEEP_HOURS`,
/// reads them too and catches stragglers.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    /// Headers a regular sweep reads (the unsettled ones).
    pub headers: String,
    /// Lines a regular sweep reads by range. A header read whose lines that filter leaves out (a document that
    /// settled between the two reads, or that is read within its grace) has its lines read by key.
    pub lines: String,
}

/// A keyset sweep of one F&O entity for one company, page by page from a cursor.
pub struct SweepSource {
    entity: String,
    key_field: String,
    select: Vec<String>,
    company: String,
    page_size: usize,
    after: Option<String>,
    done: bool,
    /// Set on a regular sweep: what it leaves out.
    settled: Option<Settled>,
    /// When the last full sweep began (this one, when it is full).
    full_at: Option<String>,
}

impl SweepSource {
    /// `from`: a cursor value (`{"after":"<key>"}`) or anything else to start from the first key. A new sweep is
    /// full when the flow has nothing settled, when no full sweep is known, or the last began `full_every` ago.
    pub fn new(
        spec: (&str, &str, &[String]),
        company: &str,
        page_size: usize,
        from: Option<&str>,
        settled: (Option<&Settled>, std::time::Duration),
    ) -> SweepSource {
        let (entity, key_field, select) = spec;
        let cursor = from.map(Cursor::of).unwrap_or_default();
        let (settled, full_every) = settled;
        let full = match (&cursor.after, &cursor.full_at) {
            (Some(_), _) => cursor.full,
            (None, Some(at)) => older_than(at, full_every),
            (None, None) => true,
        };
        let full_at = match (&cursor.after, full) {
            (None, true) => Some(now()),
            _ => cursor.full_at,
        };
        SweepSource {
            entity: entity.into(),
            key_field: key_field.into(),
            select: select.to_vec(),
            company: company.into(),
            page_size: page_size.clamp(1, 10_000),
            after: cursor.after,
            done: false,
            settled: settled.filter(|_| !full).cloned(),
            full_at,
        }
    }

    /// Whether this sweep continues an unfinished one.
    pub fn resumes(&self) -> bool {
        self.after.is_some()
    }

    pub async fn next(&mut self, deps: &Deps) -> Result<Option<Page>, SyncError> {
        if self.done {
            return Ok(None);
        }
        let rows = read_page(
            deps,
            (&self.entity, &self.company, &self.key_field),
            &self.select,
            self.settled.as_ref().map(|s| s.headers.as_str()),
            self.after.as_deref(),
            self.page_size,
        )
        .await?;
        let rows = Rows::Text(rows);
        // A short page ends the sweep; a full one moves the cursor to its last key.
        match rows.len().checked_sub(1).and_then(|i| rows.text(i, &self.key_field)) {
            Some(last) if rows.len() >= self.page_size => self.after = Some(last),
            _ => self.done = true,
        }
        Ok(Some(Page {
            table: 0,
            rows,
            deleted: Vec::new(),
            settled: self.settled.clone(),
        }))
    }

    /// Where to resume after the pages returned so far; `None` once the last page was returned.
    pub fn position(&self) -> Option<String> {
        (!self.done).then(|| {
            Cursor {
                after: self.after.clone(),
                full: self.settled.is_none(),
                full_at: self.full_at.clone(),
            }
            .value()
        })
    }

    pub fn watermark(&self) -> String {
        finished_value(&now(), self.full_at.as_deref())
    }
}

/// Whether an RFC 3339 time lies `age` or more in the past (an unreadable one does).
fn older_than(at: &str, age: std::time::Duration) -> bool {
    let Ok(t) = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339) else {
        return true;
    };
    time::OffsetDateTime::now_utc() - t >= age
}

/// The sweep position kept as the flow's watermark value.
///
/// - `{"after":"<key>","full":<bool>,"full_at":"<RFC 3339>"}` while a sweep is under way: every record up to
///   and including `<key>` (in the service's key order) has been processed and its links committed. The next
///   run resumes after it, as full or regular as the sweep began.
/// - `{"after":null,"swept_at":"<RFC 3339>","full_at":"<RFC 3339>"}` once a sweep has reached the end: the
///   next run starts a new sweep from the first key; `full_at` is when the last full sweep began.
#[derive(Debug, Default, PartialEq)]
struct Cursor {
    after: Option<String>,
    full: bool,
    full_at: Option<String>,
}

impl Cursor {
    fn of(watermark: &str) -> Cursor {
        let v: Value = serde_json::from_str(watermark).unwrap_or_default();
        let text = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Cursor {
            after: text("after"),
            // A cursor from before regular sweeps existed belongs to a full sweep.
            full: v.get("full").and_then(Value::as_bool).unwrap_or(true),
            full_at: text("full_at"),
        }
    }

    fn value(&self) -> String {
        json!({ "after": self.after, "full": self.full, "full_at": self.full_at }).to_string()
    }
}

#[cfg(test)]
fn cursor_of(watermark: &str) -> Option<String> {
    Cursor::of(watermark).after
}

pub(crate) fn finished_value(now: &str, full_at: Option<&str>) -> String {
    json!({ "after": null, "swept_at": now, "full_at": full_at }).to_string()
}

/// A record field as text: strings as they are, numbers (line numbers) by their JSON text.
pub(crate) fn text_of(r: &Record, field: &str) -> Option<String> {
    value_text(r.get(field))
}

/// A value as [`text_of`] reads it.
pub(crate) fn value_text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// One page of `entity_set` for `company`: at most `top` records whose `key_field` sorts after `after`, in key
/// order. Keyset paging (`gt` on the key) instead of `$skip`: records created or deleted during a sweep do not
/// shift the pages, and the position survives a crash.
pub(crate) async fn read_page(
    deps: &Deps,
    (entity_set, company, key_field): (&str, &str, &str),
    select: &[String],
    unsettled: Option<&str>,
    after: Option<&str>,
    top: usize,
) -> Result<RawRows, DynamicsError> {
    let mut filter = format!("dataAreaId eq {}", odata::string_literal(company));
    if let Some(u) = unsettled {
        filter.push_str(&format!(" and ({u})"));
    }
    if let Some(a) = after {
        filter.push_str(&format!(" and {key_field} gt {}", odata::string_literal(a)));
    }
    let opts = vec![
        ("cross-company", "true".to_string()),
        ("$select", select.join(",")),
        ("$filter", filter),
        ("$orderby", key_field.to_string()),
        ("$top", top.to_string()),
    ];
    let mut url = format!("{}{}", deps.fno.set_url(entity_set), odata::query(&opts));
    let mut out = RawRows::default();
    loop {
        // Kept as text: a page is the biggest thing a sweep holds.
        let (rows, next) = deps.fno.api().get_rows(&url, entity_set).await?;
        out.extend(rows);
        // A service that pages below $top still hands out a next link; follow it to the end of this page.
        match next {
            Some(next) if out.len() < top => url = next,
            _ => return Ok(out),
        }
    }
}

/// The lines whose header key lies between `first` and `last` (the header keys of one page), in header and
/// line order: one range read per page instead of one read per header.
pub(crate) async fn read_lines_between(
    deps: &Deps,
    (entity_set, company): (&str, &str),
    (parent_field, line_field): (&str, &str),
    select: &[String],
    (first, last): (&str, &str),
    unsettled: Option<&str>,
) -> Result<RawRows, DynamicsError> {
    let mut filter = format!(
        "dataAreaId eq {} and {parent_field} ge {} and {parent_field} le {}",
        odata::string_literal(company),
        odata::string_literal(first),
        odata::string_literal(last)
    );
    if let Some(u) = unsettled {
        filter.push_str(&format!(" and ({u})"));
    }
    deps.fno
        .list_rows(
            entity_set,
            select,
            Some(&filter),
            Some(&format!("{parent_field},{line_field}")),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_tolerates_garbage() {
        let c = Cursor {
            after: Some("SO-0'7".into()),
            full: false,
            full_at: Some("2026-01-01T00:00:00Z".into()),
        };
        assert_eq!(Cursor::of(&c.value()), c);
        assert_eq!(cursor_of(r#"{"after":"SO-1"}"#), Some("SO-1".into()));
        assert!(
            Cursor::of(r#"{"after":"SO-1"}"#).full,
            "an old cursor is a full sweep's"
        );
        assert_eq!(cursor_of(&finished_value("2026-01-01T00:00:00Z", None)), None);
        for bad in [
            "",
            "not json",
            "{}",
            r#"{"after":5}"#,
            r#"{"after":""}"#,
            "https://org/api/data/v9.2/x",
        ] {
            assert_eq!(cursor_of(bad), None, "{bad}");
        }
    }
}
