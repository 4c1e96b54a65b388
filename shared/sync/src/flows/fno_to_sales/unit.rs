//! The data one page of F&O records goes through: a [`Unit`] (one parent F&O record and its children) becomes a
//! [`Work`] whose [`Part`]s (the parent, each child) each carry an [`Outcome`]; every phase (transform, decide,
//! write, commit) moves outcomes on from `Pending`. Also the small text helpers the phases share.

use std::collections::HashSet;

use p2c_dynamics::Record;
use p2c_mapping::{MapError, Unresolved, content_hash, money::decimal_from_json};
use p2c_state::Link;
use serde_json::Value;

use super::{resolve::Resolver, spec::Spec};

/// A scheduled sweep skips records whose failure is already queued; an SQS message always retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A scheduled sweep; `scope` names its digests ("full" or "regular": their ranges differ).
    Sweep {
        scope: &'static str,
    },
    Keys,
}

/// One parent F&O record and its children (for a product: none; its companion is made from the same record).
pub(crate) struct Unit {
    pub key: String,
    pub parent: Record,
    pub children: Vec<Record>,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Outcome {
    Pending,
    Filtered,
    Unchanged,
    FailedEarlier,
    Echo,
    /// The Sales record is closed (read-only): nothing is written to it or its lines.
    Closed,
    Written {
        created: bool,
    },
    Failed {
        reason: String,
        transient: bool,
    },
}

impl Outcome {
    pub fn fail(reason: impl Into<String>, transient: bool) -> Outcome {
        Outcome::Failed {
            reason: reason.into(),
            transient,
        }
    }
    /// A lookup found nothing: transient when it waits for synced data.
    pub fn unresolved(u: &Unresolved) -> Outcome {
        Outcome::fail(unresolved_reason(u), u.is_transient())
    }
    /// The record is in Sales as the template wants it.
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Unchanged | Outcome::Echo | Outcome::Written { .. })
    }
    pub fn failed(&self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }
    /// Which outcome a product and its price list item report together (the worse, then the busier one).
    pub fn rank(&self) -> u8 {
        match self {
            Outcome::Failed { .. } | Outcome::Pending => 6,
            Outcome::FailedEarlier => 5,
            Outcome::Written { .. } => 4,
            Outcome::Echo | Outcome::Closed => 3,
            Outcome::Unchanged => 2,
            Outcome::Filtered => 1,
        }
    }
}

/// One Sales record to be: a parent or a child of a unit.
pub(super) struct Part {
    /// The link key: the F&O business key, for a line "<header key>/<line number>".
    pub key: String,
    pub mapped: Option<Record>,
    pub hash: String,
    pub link: Option<Link>,
    pub outcome: Outcome,
    /// Sales record id.
    pub id: Option<String>,
    /// The bound payload (lookups as `@odata.bind`).
    pub body: Option<Record>,
    /// Made by the flow from its parent, not from an F&O record (a header's "Freight Tax" line): counted with
    /// the parent.
    pub derived: bool,
}

impl Part {
    pub fn new(key: String) -> Part {
        Part {
            key,
            mapped: None,
            hash: String::new(),
            link: None,
            outcome: Outcome::Pending,
            id: None,
            body: None,
            derived: false,
        }
    }

    pub fn filtered(key: String) -> Part {
        let mut p = Part::new(key);
        p.outcome = Outcome::Filtered;
        p
    }

    pub fn mapped(key: String, r: Result<Record, MapError>) -> Part {
        let mut p = Part::new(key);
        match r {
            Ok(m) => {
                p.hash = content_hash(&m);
                p.mapped = Some(m);
            }
            Err(e) => p.outcome = Outcome::fail(e.to_string(), false),
        }
        p
    }

    pub fn pending(&self) -> bool {
        self.outcome == Outcome::Pending
    }

    /// Linked, with the hash of what is mapped now: Sales has it already.
    pub fn unchanged(&self) -> bool {
        self.linked_id().is_some() && self.link.as_ref().and_then(|l| l.target_hash.as_deref()) == Some(&self.hash)
    }

    pub fn linked_id(&self) -> Option<&str> {
        self.link
            .as_ref()
            .map(|l| l.target_key.as_str())
            .filter(|k| !k.is_empty())
    }

    /// A mapped value as a lookup matches it.
    pub fn mapped_text(&self, target: &str) -> Option<String> {
        self.mapped.as_ref().and_then(|m| m.get(target)).and_then(lookup_text)
    }
}

/// A unit on its way through the phases.
pub(super) struct Work {
    pub key: String,
    pub parent: Part,
    pub children: Vec<Part>,
    /// Every F&O line number of the document (filtered lines too): Sales lines not among them are deleted.
    pub numbers: HashSet<String>,
    pub keyset: Option<String>,
    /// Hash of the F&O records themselves: the failure marker on the link.
    pub unit_hash: String,
    /// The price list is the P2C rule's to choose (products).
    pub rule_price_list: bool,
    /// The parent was in Sales before this run (its children may exist).
    pub existed: bool,
    /// A child write or delete failed: the line set is not known to be in Sales.
    pub child_trouble: bool,
    /// Setting the order Invoiced failed.
    pub post_trouble: Option<(String, bool)>,
    /// What the parent still needs once its children are written, as one update: the state and the columns a
    /// create ignores (a new record), or Invoiced again (an order reopened to write F&O's changes).
    pub after: Option<Record>,
    /// The parent's "Freight Tax" line was deleted (its header tax is gone).
    pub freight_deleted: bool,
    /// Something of the unit changed: it goes through resolution and writes.
    pub touched: bool,
    /// The parent is closed in Sales.
    pub closed: bool,
    pub deleted: u64,
}

impl Work {
    pub fn pending(&self) -> bool {
        self.parent.pending() || self.children.iter().any(Part::pending)
    }
    pub fn keyset_changed(&self) -> bool {
        self.keyset.is_some()
            && self.parent.link.as_ref().and_then(|l| l.source_hash.as_deref()) != self.keyset.as_deref()
    }
    /// The parent's natural key as mapped (product, order or invoice number).
    pub fn natural_key(&self, spec: &Spec) -> Option<String> {
        self.parent.mapped_text(&spec.natural_key)
    }
    /// The children still pending.
    pub fn pending_children(&mut self) -> impl Iterator<Item = &mut Part> {
        self.children.iter_mut().filter(|c| c.pending())
    }
}

/// Text of a value as a lookup matches it.
pub(super) fn lookup_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A line number as comparable text (2, 2.0 and "2" agree).
pub(super) fn number_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(_) => decimal_from_json(v?).map(|d| d.normalize().to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// A string column of a Sales row.
pub(super) fn text(r: &Record, col: &str) -> Option<String> {
    r.get(col).and_then(Value::as_str).map(str::to_string)
}

/// The unit group a product names (`defaultuomscheduleid.name`): its units and its price list item's are of it.
pub(super) fn own_unit_group(resolver: &Resolver, product: &Part) -> Option<String> {
    product
        .mapped_text("defaultuomscheduleid.name")
        .and_then(|n| resolver.unit_group(&n))
}

/// The unit group of the product a line names: a line's unit is one of its product's.
pub(super) fn product_unit_group(resolver: &Resolver, line: &Record) -> Option<String> {
    line.get("productid.productnumber")
        .and_then(lookup_text)
        .and_then(|p| resolver.found("products", "productnumber", &p))
        .and_then(|f| text(&f.row, "_defaultuomscheduleid_value"))
}

fn parent_noun(field: &str) -> &'static str {
    match field.split('.').next().unwrap_or("") {
        "customerid" => "customer",
        "productid" => "product",
        "salesorderid" => "sales order",
        "invoiceid" => "invoice",
        "quoteid" => "quote",
        _ => "related record",
    }
}

/// A lookup that found nothing. For synced data the message names the missing parent.
pub(super) fn unresolved_reason(u: &Unresolved) -> String {
    if u.synced_data {
        format!(
            "{} {}: its {} {} is not in Sales yet ({} looked up in {}); nothing was written, and the record is \
             retried until it is there",
            u.entity,
            u.key,
            parent_noun(&u.field),
            u.value,
            u.field,
            u.looked_in.join(", ")
        )
    } else {
        u.to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn line_numbers_compare_by_value() {
        assert_eq!(number_text(Some(&json!(2))), Some("2".into()));
        assert_eq!(number_text(Some(&json!(2.0))), Some("2".into()));
        assert_eq!(number_text(Some(&json!(" 2 "))), Some("2".into()));
        assert_eq!(number_text(Some(&json!(null))), None);
    }
}
