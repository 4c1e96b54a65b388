//! What a document flow is made of: its header and line templates, the Sales names of both tables, and the
//! F&O key fields that tie a line to its header. Built once per run from the flow's templates; every other
//! phase reads it and none changes it.

use p2c_mapping::{Lookup, Role, Template};
use serde_json::json;

use crate::pipeline::links::LinkEntity;
use crate::{
    deps::Deps,
    error::SyncError,
    flow_name::FlowName,
    pipeline::sink::fno::{Key, text_of},
};

/// Where the rounding remainder of a line discount goes (F&O "sales charges" on the line).
pub(super) const CHARGE_FIELD: &str = "TotalChargesAmount";
/// F&O's per-unit line discount.
pub(super) const PER_UNIT_DISCOUNT_FIELD: &str = "LineDiscountAmount";

/// One document flow: its two templates and names.
pub(super) struct DocFlow<'a> {
    pub(super) flow: FlowName,
    pub(super) header: &'a Template,
    pub(super) line: &'a Template,
    /// Link entities (`LINK#<entity>#...`): Sales logical names.
    pub(super) header_entity: LinkEntity,
    pub(super) line_entity: LinkEntity,
    /// "quote" / "order", for messages.
    pub(super) noun: &'static str,
    /// The line's lookup to its header ("quoteid") and its `$select` column ("_quoteid_value").
    pub(super) parent_nav: String,
    pub(super) parent_col: String,
    /// F&O: the header's key field, and on lines the header key field and the line number field.
    pub(super) header_key_field: String,
    pub(super) line_header_field: String,
    pub(super) line_number_field: String,
    /// The header's customer lookup (to an account or a contact), when the template has one.
    pub(super) customer: Option<Lookup>,
    /// Header values a line reads through its parent lookup: (path on the line, field on the header).
    pub(super) parent_lookups: Vec<(String, String)>,
    /// Where a line's F&O product number goes (the path of its `productid` lookup), when the template reads one.
    pub(super) product_path: Option<String>,
}

impl<'a> DocFlow<'a> {
    pub(super) fn of(deps: &'a Deps, flow: FlowName) -> Result<DocFlow<'a>, SyncError> {
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
            FlowName::QuotesToFno => (LinkEntity::Quote, LinkEntity::QuoteLine, "quote"),
            _ => (LinkEntity::SalesOrder, LinkEntity::SalesOrderLine, "order"),
        };
        Ok(DocFlow {
            flow,
            header,
            line,
            header_entity,
            line_entity,
            noun,
            parent_col: format!("_{parent_nav}_value"),
            customer: customer_lookup(header),
            parent_lookups: parent_lookups(line, &parent_nav),
            product_path: product_path(line),
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

    pub(super) fn header_set(&self) -> &str {
        &self.header.source_entity
    }
    pub(super) fn line_set(&self) -> &str {
        &self.line.source_entity
    }

    /// Header columns: the template's, what the lines read from their header, and the pipeline's bookkeeping.
    pub(super) fn header_select(&self) -> Vec<String> {
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

    pub(super) fn line_select(&self) -> Vec<String> {
        let mut cols = self.line.source_select();
        for c in ["_productid_value", "versionnumber"] {
            if !cols.iter().any(|x| x == c) {
                cols.push(c.to_string());
            }
        }
        cols
    }

    /// What change tracking of the line table needs: which document changed.
    pub(super) fn line_delta_select(&self) -> Vec<String> {
        vec![
            self.line.source_id.clone(),
            self.parent_col.clone(),
            "versionnumber".into(),
        ]
    }

    /// The F&O key of a line from its header key and line number (e.g. from a link's target key `QUO-1/2`).
    pub(super) fn line_key(&self, company: &str, header_key: &str, number: i64) -> Option<Key> {
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
    pub(super) fn line_key_text(&self, key: &Key) -> String {
        let get = |f: &str| {
            key.iter()
                .find(|(k, _)| k == f)
                .map(|(_, v)| text_of(v))
                .unwrap_or_default()
        };
        format!("{}/{}", get(&self.line_header_field), get(&self.line_number_field))
    }

    pub(super) fn splits_discount(&self) -> bool {
        self.line
            .fields
            .iter()
            .any(|f| f.enabled && f.source.path() == Some("manualdiscountamount"))
    }
}

/// A line link's target key `<header key>/<line number>` split in two; `None` when it is not of that shape.
pub(super) fn split_line_key(text: &str) -> Option<(&str, i64)> {
    text.rsplit_once('/')
        .and_then(|(h, n)| Some((h, n.parse::<i64>().ok()?)))
}

/// The header lookup that names the customer (an account or a contact).
fn customer_lookup(header: &Template) -> Option<Lookup> {
    header.lookups().into_iter().find(|l| {
        l.targets
            .iter()
            .any(|t| t.entity_set == "accounts" || t.entity_set == "contacts")
    })
}

fn parent_lookups(line: &Template, parent_nav: &str) -> Vec<(String, String)> {
    line.lookups()
        .into_iter()
        .filter(|l| l.navigation == parent_nav)
        .map(|l| (l.path, l.field))
        .collect()
}

fn product_path(line: &Template) -> Option<String> {
    line.lookups()
        .into_iter()
        .find(|l| l.navigation == "productid")
        .map(|l| l.path)
}
