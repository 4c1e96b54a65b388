//! Reading F&O for the sweep: key-ordered pages of one company (keyset paging, so a crashed run resumes after
//! the last key it finished), the lines of a page's headers, and records named by key (SQS).

use p2c_dynamics::{DynamicsError, Record, odata};
use serde_json::{Value, json};

use super::Page;
use crate::{deps::Deps, error::SyncError, pipeline::record::now};

/// A keyset sweep of one F&O entity for one company, page by page from a cursor.
pub struct SweepSource {
    entity: String,
    key_field: String,
    select: Vec<String>,
    company: String,
    page_size: usize,
    after: Option<String>,
    done: bool,
}

impl SweepSource {
    /// `from`: a cursor value (`{"after":"<key>"}`) or anything else to start from the first key.
    pub fn new(spec: (&str, &str, &[String]), company: &str, page_size: usize, from: Option<&str>) -> SweepSource {
        let (entity, key_field, select) = spec;
        SweepSource {
            entity: entity.into(),
            key_field: key_field.into(),
            select: select.to_vec(),
            company: company.into(),
            page_size: page_size.clamp(1, 10_000),
            after: from.and_then(cursor_of),
            done: false,
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
            &self.entity,
            &self.company,
            &self.key_field,
            &self.select,
            self.after.as_deref(),
            self.page_size,
        )
        .await?;
        // A short page ends the sweep; a full one moves the cursor to its last key.
        match rows.last().and_then(|r| text_of(r, &self.key_field)) {
            Some(last) if rows.len() >= self.page_size => self.after = Some(last),
            _ => self.done = true,
        }
        Ok(Some(Page {
            table: 0,
            rows,
            deleted: Vec::new(),
        }))
    }

    /// Where to resume after the pages returned so far; `None` once the last page was returned.
    pub fn position(&self) -> Option<String> {
        (!self.done).then(|| cursor_value(self.after.as_deref().unwrap_or_default()))
    }

    pub fn watermark(&self) -> String {
        finished_value(&now())
    }
}

/// The sweep position kept as the flow's watermark value.
///
/// - `{"after":"<key>"}` while a sweep is under way: every record up to and including `<key>` (in the
///   service's key order) has been processed and its links committed. The next run resumes after it.
/// - `{"after":null,"swept_at":"<RFC 3339>"}` once a sweep has reached the end: the next run starts a new sweep
///   from the first key.
pub(crate) fn cursor_of(watermark: &str) -> Option<String> {
    serde_json::from_str::<Value>(watermark)
        .ok()?
        .get("after")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub(crate) fn cursor_value(after: &str) -> String {
    json!({ "after": after }).to_string()
}

pub(crate) fn finished_value(now: &str) -> String {
    json!({ "after": null, "swept_at": now }).to_string()
}

/// A record field as text: strings as they are, numbers (line numbers) by their JSON text.
pub(crate) fn text_of(r: &Record, field: &str) -> Option<String> {
    match r.get(field) {
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
    entity_set: &str,
    company: &str,
    key_field: &str,
    select: &[String],
    after: Option<&str>,
    top: usize,
) -> Result<Vec<Record>, DynamicsError> {
    let mut filter = format!("dataAreaId eq {}", odata::string_literal(company));
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
    let mut out = Vec::new();
    loop {
        let v = deps.fno.api().get_json(&url, entity_set, &[]).await?;
        let rows = v["value"].as_array().ok_or_else(|| DynamicsError::Decode {
            service: "fno",
            what: entity_set.to_string(),
            message: "the answer has no \"value\" array".into(),
        })?;
        out.extend(rows.iter().filter_map(|r| r.as_object().cloned()));
        // A service that pages below $top still hands out a next link; follow it to the end of this page.
        match v["@odata.nextLink"].as_str() {
            Some(next) if out.len() < top => url = next.to_string(),
            _ => return Ok(out),
        }
    }
}

/// The lines whose header key lies between `first` and `last` (the header keys of one page), in header and
/// line order: one range read per page instead of one read per header.
pub(crate) async fn read_lines_between(
    deps: &Deps,
    entity_set: &str,
    company: &str,
    parent_field: &str,
    line_field: &str,
    select: &[String],
    (first, last): (&str, &str),
) -> Result<Vec<Record>, DynamicsError> {
    let filter = format!(
        "dataAreaId eq {} and {parent_field} ge {} and {parent_field} le {}",
        odata::string_literal(company),
        odata::string_literal(first),
        odata::string_literal(last)
    );
    deps.fno
        .list(
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
        assert_eq!(cursor_of(&cursor_value("SO-0'7")), Some("SO-0'7".into()));
        assert_eq!(cursor_of(&finished_value("2026-01-01T00:00:00Z")), None);
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
