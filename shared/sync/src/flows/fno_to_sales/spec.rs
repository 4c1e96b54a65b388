//! What a run of one F&O → Sales flow needs to know, derived once from its templates: the parent and child
//! templates and Sales tables, how a child points to its parent and is told apart from its siblings, where the
//! children come from (none, the parent's own record, a line entity), the price list rule (products, orders,
//! invoices) and whether the header tax becomes a "Freight Tax" line.

use p2c_mapping::{Role, Template, Transform};

use super::freight;
use crate::{deps::Deps, error::SyncError, flow_name::FlowName, pipeline::sink::sales};

/// The price list lookup of a product and its price list item.
pub(crate) const PRICE_LIST: &str = "pricelevelid.name";

/// F&O order line fields the discount rule reads (`transform::apply_line_discount`).
pub(crate) const DISCOUNT_FIELDS: &[&str] = &["LineDiscountAmount", "OrderedSalesQuantity", "TotalChargesAmount"];

/// Where a flow's child records come from.
#[derive(Clone, Debug, Default)]
pub(crate) enum Children {
    /// None: a flow with a single template.
    #[default]
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

/// How a flow picks a price list (see the module docs): products, orders and invoices.
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
    /// Documents whose header template writes the header tax (`msdynce_misctax`): it becomes a "Freight Tax" line.
    pub header_tax: bool,
    /// Products: a product Sales holds in Draft is published (see `super::publish`).
    pub publishes: bool,
}

/// How a flow's child template hangs off its parent.
#[derive(Default)]
struct ChildShape {
    parent_ref: Option<ParentRef>,
    child_identity: Vec<String>,
    line_number_col: Option<String>,
    children: Children,
}

fn without_price_list_map(t: &Template) -> Template {
    let mut t = t.clone();
    for f in t.fields.iter_mut().filter(|f| f.target == PRICE_LIST) {
        f.transform = Transform::Copy;
    }
    t
}

impl Spec {
    pub fn new(deps: &Deps, flow: FlowName) -> Result<Spec, SyncError> {
        Spec::of_templates(flow, deps.templates(flow).to_vec())
    }

    /// The spec of a flow with these templates (its own or P2C_MAPPING's).
    pub fn of_templates(flow: FlowName, ts: Vec<Template>) -> Result<Spec, SyncError> {
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
        // Links are named by the Sales table written: a table without a link entity is a mapping error.
        for t in std::iter::once(&parent).chain(child.as_ref()) {
            if crate::pipeline::links::LinkEntity::of_sales_set(&t.target_entity).is_none() {
                return Err(bad(format!(
                    "{} writes {}, a Sales table p2c keeps no links for",
                    t.name, t.target_entity
                )));
            }
        }
        let mut parent_select = parent.source_select();
        let shape = match &child {
            Some(c) => ChildShape::of(&parent, c).map_err(bad)?,
            None => ChildShape::default(),
        };
        if let (Children::SameRecord, Some(c)) = (&shape.children, &child) {
            for col in c.source_select() {
                if !parent_select.contains(&col) {
                    parent_select.push(col);
                }
            }
        }
        let header_tax = matches!(shape.children, Children::Lines { .. })
            && shape.parent_ref.is_some()
            && parent.field(freight::HEADER_TAX).is_some_and(|f| f.enabled);
        let publishes = parent.target_entity == "products";
        let mut parent_table = sales::Table::of(&parent);
        if publishes {
            // Its state tells whether a product found in Sales still has to be published.
            parent_table.select.push("statecode".into());
        }
        Ok(Spec {
            flow,
            publishes,
            owned: matches!(parent.target_entity.as_str(), "salesorders" | "invoices" | "quotes"),
            closes_order: parent.target_entity == "invoices",
            header_tax,
            child_table: child.as_ref().map(sales::Table::of),
            parent_table,
            price_list: price_list_rule(flow, &parent, child.as_ref()),
            parent,
            child,
            natural_key,
            parent_ref: shape.parent_ref,
            child_identity: shape.child_identity,
            line_number_col: shape.line_number_col,
            children: shape.children,
            parent_select,
        })
    }

    pub fn key_field(&self) -> &str {
        &self.parent.source_key
    }
}

impl ChildShape {
    /// Splits the child's key into its parent lookup and its identity under the parent, and finds where the
    /// children come from. Errors say what the child template lacks.
    fn of(parent: &Template, c: &Template) -> Result<ChildShape, String> {
        let mut shape = ChildShape::default();
        for k in &c.target_key {
            let points_to_parent = p2c_mapping::lookup_targets(k)
                .and_then(|(nav, targets)| {
                    targets
                        .iter()
                        .find(|t| t.entity_set == parent.target_entity)
                        .map(|t| (nav, t.column.clone()))
                })
                .filter(|_| shape.parent_ref.is_none());
            match points_to_parent {
                Some((nav, column)) => {
                    shape.parent_ref = Some(ParentRef {
                        path: k.clone(),
                        value_col: format!("_{nav}_value"),
                        column,
                    })
                }
                None => shape.child_identity.push(k.clone()),
            }
        }
        if shape.parent_ref.is_none() {
            return Err(format!(
                "{} has no key field that points to its {}",
                c.name, parent.target_entity
            ));
        }
        if c.source_entity == parent.source_entity {
            shape.children = Children::SameRecord;
            return Ok(shape);
        }
        let parent_field = c
            .parent_key
            .clone()
            .ok_or_else(|| format!("{} has no parent key", c.name))?;
        shape.line_number_col = c
            .fields
            .iter()
            .find(|f| f.enabled && f.source.path() == Some(c.source_key.as_str()))
            .map(|f| f.target.clone());
        let mut select = c.source_select();
        // The discount rule reads the per-unit discount, the quantity and the charge.
        for extra in DISCOUNT_FIELDS {
            if p2c_mapping::fno_property(&c.source_entity, extra).is_some() && !select.iter().any(|s| s == extra) {
                select.push(extra.to_string());
            }
        }
        shape.children = Children::Lines {
            entity: c.source_entity.clone(),
            parent_field,
            line_field: c.source_key.clone(),
            select,
        };
        Ok(shape)
    }
}

/// The price list rule, where the product (or order, or invoice) header template writes a price list.
fn price_list_rule(flow: FlowName, parent: &Template, child: Option<&Template>) -> Option<PriceListRule> {
    let writes =
        matches!(parent.role, Role::Single | Role::Header) && parent.field(PRICE_LIST).is_some_and(|f| f.enabled);
    writes.then(|| {
        let builtin = p2c_mapping::template(flow.as_str(), &parent.name);
        let explicit = builtin.as_ref().and_then(|b| b.field(PRICE_LIST)) != parent.field(PRICE_LIST);
        PriceListRule {
            parent_without: without_price_list_map(parent),
            child_without: child
                .filter(|c| c.field(PRICE_LIST).is_some_and(|f| f.enabled))
                .map(without_price_list_map),
            explicit,
        }
    })
}
