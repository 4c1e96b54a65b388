//! Transform: a unit of F&O records becomes its work. The parent and every child are mapped with their templates
//! and hashed (the hash decides "unchanged" against the link), records the template filters out are marked, the
//! order line discount rule is applied, a header tax becomes the "Freight Tax" line ([`freight`]), and the unit
//! gets the hashes its link keeps: of the F&O records themselves (failure and closed markers) and of its set of
//! line numbers. Nothing is read or written here.

use std::collections::HashSet;

use p2c_dynamics::Record;
use p2c_mapping::{
    MapError, Template, content_hash,
    money::{Decimal, combine_line_discount, decimal_from_json, decimal_to_json},
};
use serde_json::{Value, json};

use super::{
    freight,
    spec::{Children, PRICE_LIST, Spec},
    unit::{Outcome, Part, Unit, Work, number_text},
};

/// Maps and hashes one unit into its work.
pub(super) fn transform(spec: &Spec, unit: Unit) -> Work {
    let Unit {
        key,
        parent: src,
        children: mut lines,
    } = unit;
    lines.sort_by_key(|r| {
        let n = line_number(spec, r);
        (n.as_deref().and_then(|s| s.parse::<i64>().ok()), n)
    });
    let unit_hash = unit_hash(&src, &lines);
    let numbers: HashSet<String> = lines.iter().filter_map(|r| line_number(spec, r)).collect();
    let keyset = matches!(spec.children, Children::Lines { .. }).then(|| keyset_hash(&numbers));
    let filtered = !spec.parent.passes_filter(&src);
    let (parent, parent_by_rule) = map_parent(spec, &key, &src, filtered);
    let (mut children, children_by_rule) = map_children(spec, &key, src, lines, filtered);
    // The header tax as the "Freight Tax" line (spec/templates.md 4).
    children.extend(parent.mapped.as_ref().and_then(|m| freight::part(spec, &key, m)));
    Work {
        key,
        parent,
        children,
        numbers,
        keyset,
        unit_hash,
        rule_price_list: parent_by_rule || children_by_rule,
        existed: false,
        child_trouble: false,
        post_trouble: None,
        after: None,
        freight_deleted: false,
        touched: false,
        closed: false,
        deleted: 0,
    }
}

/// A line's F&O line number, as text.
fn line_number(spec: &Spec, r: &Record) -> Option<String> {
    match &spec.children {
        Children::Lines { line_field, .. } => number_text(r.get(line_field)),
        _ => None,
    }
}

/// Hash of the F&O records themselves (lines in line number order).
fn unit_hash(parent: &Record, lines: &[Record]) -> String {
    content_hash(
        json!({"parent": Value::Object(parent.clone()),
               "children": lines.iter().cloned().map(Value::Object).collect::<Vec<_>>()})
        .as_object()
        .unwrap_or(&Record::new()),
    )
}

/// Hash of a document's set of line numbers (kept as `source_hash` on the header's link).
fn keyset_hash(numbers: &HashSet<String>) -> String {
    let mut n: Vec<&String> = numbers.iter().collect();
    n.sort();
    content_hash(json!({ "lines": n }).as_object().unwrap_or(&Record::new()))
}

/// The parent part (filtered, mapped, or failed for want of a key), and whether the price list rule decides.
fn map_parent(spec: &Spec, key: &str, src: &Record, filtered: bool) -> (Part, bool) {
    let (mut parent, by_rule) = if filtered {
        (Part::filtered(key.to_string()), false)
    } else {
        let without = spec.price_list.as_ref().map(|r| &r.parent_without);
        let (r, by_rule) = map_part(spec, &spec.parent, without, src);
        (Part::mapped(key.to_string(), r), by_rule)
    };
    if parent.key.is_empty() {
        parent.outcome = Outcome::fail(
            format!("the F&O record has no {}; it cannot be synced", spec.parent.source_key),
            false,
        );
    }
    (parent, by_rule)
}

/// The child parts: a product's price list item from its own record, or a document's lines (all filtered when
/// the parent is), and whether the price list rule decides for any of them.
fn map_children(spec: &Spec, unit_key: &str, src: Record, lines: Vec<Record>, filtered: bool) -> (Vec<Part>, bool) {
    let Some(ct) = &spec.child else {
        return (Vec::new(), false);
    };
    let srcs = match &spec.children {
        Children::SameRecord => vec![src],
        _ => lines,
    };
    let without = spec.price_list.as_ref().and_then(|r| r.child_without.as_ref());
    let mut by_rule = false;
    let mut children = Vec::new();
    for src in &srcs {
        let key = ct.key_of(src).unwrap_or_else(|_| {
            let n = line_number(spec, src).unwrap_or_else(|| "?".into());
            format!("{unit_key}/{n}")
        });
        if filtered || !ct.passes_filter(src) {
            children.push(Part::filtered(key));
            continue;
        }
        let (mut r, rule) = map_part(spec, ct, without, src);
        by_rule |= rule;
        if let Ok(m) = &mut r {
            apply_line_discount(ct, src, m);
        }
        children.push(Part::mapped(key, r));
    }
    (children, by_rule)
}

/// Decimal places to round a combined discount to: at least cents, more if F&O sent more.
fn decimals(values: &[Decimal]) -> u32 {
    values
        .iter()
        .map(|d| d.normalize().scale())
        .max()
        .unwrap_or(0)
        .clamp(2, 10)
}

/// spec/templates.md 5.5, "Discount rounding": Sales line discount = quantity × F&O per-unit discount + the rounding
/// remainder F&O booked as a negative charge. Lines without a per-unit discount keep the template's value.
fn apply_line_discount(t: &Template, src: &Record, mapped: &mut Record) {
    if !t.fields.iter().any(|f| f.enabled && f.target == "manualdiscountamount") {
        return;
    }
    let num = |f: &str| src.get(f).and_then(decimal_from_json);
    let (Some(per_unit), Some(qty)) = (num("LineDiscountAmount"), num("OrderedSalesQuantity")) else {
        return;
    };
    let charge = num("TotalChargesAmount").unwrap_or(Decimal::ZERO);
    let remainder = if charge < Decimal::ZERO { -charge } else { Decimal::ZERO };
    if per_unit.is_zero() && remainder.is_zero() {
        return;
    }
    let d = decimals(&[per_unit, remainder]);
    let discount = combine_line_discount(per_unit, qty, remainder, d);
    mapped.insert("manualdiscountamount".into(), decimal_to_json(discount));
}

/// Maps with the price list left out (the rule picks it before binding).
#[allow(
    clippy::result_large_err,
    reason = "MapError is p2c-mapping's error, built once per bad record"
)]
fn without_price_list(t: &Template, src: &Record) -> Result<Record, MapError> {
    t.map(src).map(|mut m| {
        m.remove(PRICE_LIST);
        m
    })
}

/// Maps a record with `t`, or, where the products price list rule applies, with the rule's variant of `t` (the
/// price list left out of what is hashed; it is chosen before binding). Returns whether the rule decides.
fn map_part(spec: &Spec, t: &Template, without: Option<&Template>, src: &Record) -> (Result<Record, MapError>, bool) {
    let Some(rule) = &spec.price_list else {
        return (t.map(src), false);
    };
    let Some(without) = without else {
        return (t.map(src), false);
    };
    if !rule.explicit {
        return (without_price_list(without, src), true);
    }
    match t.map(src) {
        Err(MapError::NoValueMapEntry { field, .. }) if field == PRICE_LIST => (without_price_list(without, src), true),
        other => (other, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: Value) -> Record {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn line_discount_is_quantity_times_per_unit_plus_the_remainder() {
        let t = p2c_mapping::order_lines_to_sales();
        let src = rec(json!({"LineDiscountAmount": 3.33, "OrderedSalesQuantity": 3.0, "TotalChargesAmount": -0.01}));
        let mut m = rec(json!({"manualdiscountamount": 9.99}));
        apply_line_discount(&t, &src, &mut m);
        assert_eq!(m["manualdiscountamount"], json!(10));
        // A real (positive) charge is not a discount; no per-unit discount keeps the template's copy.
        let src = rec(json!({"LineDiscountAmount": 2.5, "OrderedSalesQuantity": 16, "TotalChargesAmount": 15.0}));
        apply_line_discount(&t, &src, &mut m);
        assert_eq!(m["manualdiscountamount"], json!(40));
        let src = rec(json!({"LineDiscountAmount": 0, "OrderedSalesQuantity": 2, "TotalChargesAmount": 0}));
        let mut m = rec(json!({"manualdiscountamount": 12.5}));
        apply_line_discount(&t, &src, &mut m);
        assert_eq!(m["manualdiscountamount"], json!(12.5));
        // Bad data is left to the template, never a panic.
        let src = rec(json!({"LineDiscountAmount": "x", "OrderedSalesQuantity": null}));
        apply_line_discount(&t, &src, &mut m);
        assert_eq!(m["manualdiscountamount"], json!(12.5));
    }
}
