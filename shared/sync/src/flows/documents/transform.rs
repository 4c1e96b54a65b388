//! Mapping a document, whole: header checks (id, business unit, filter), the customer's F&O account, each line's
//! product, filter, mapping and discount split, then the header. The result is a [`Verdict`] per document: ready
//! for F&O, skipped with a [`Skip`] reason, or failed. No request is made here.

use std::collections::HashSet;

use p2c_dynamics::Record;
use p2c_mapping::content_hash;
use p2c_mapping::fno_property;
use p2c_mapping::money::{decimal_from_json, decimal_to_json, split_line_discount};
use serde_json::{Value, json};

use super::{
    read::Parents,
    spec::{CHARGE_FIELD, DocFlow, PER_UNIT_DISCOUNT_FIELD},
};
use crate::{
    ownership::BusinessUnitScope,
    pipeline::{
        record::{str_of, version_of},
        sink::fno::{Key, key_text, target_key, text_of},
    },
    report::{Failure, RunReport, Skip},
};

/// Currency decimals when Sales does not say.
const DEFAULT_DECIMALS: u32 = 2;

/// A header that passed the header checks.
pub(super) struct Header {
    /// Lower-case Sales id.
    pub(super) id: String,
    /// The document number (the id when it has none), for messages and the F&O read.
    pub(super) number: String,
    pub(super) row: Record,
}

/// One line of a document, mapped.
pub(super) struct LineOut {
    pub(super) id: String,
    pub(super) key: Key,
    pub(super) key_text: String,
    pub(super) body: Record,
    /// The fields of `body` that clear F&O's value (blank in Sales).
    pub(super) cleared: Vec<String>,
    pub(super) hash: String,
    pub(super) version: Option<String>,
}

/// One document, mapped and ready to compare with F&O.
pub(super) struct Doc {
    pub(super) id: String,
    pub(super) number: String,
    pub(super) key: Key,
    pub(super) key_text: String,
    pub(super) body: Record,
    /// The fields of `body` that clear F&O's value (blank in Sales).
    pub(super) cleared: Vec<String>,
    pub(super) hash: String,
    pub(super) version: Option<String>,
    pub(super) lines: Vec<LineOut>,
    /// F&O keys of lines p2c wrote under another key (a line renumbered in Sales): deleted with the document.
    pub(super) stale: Vec<Key>,
}

/// What becomes of one document.
enum Verdict {
    /// Boxed: a document is much larger than a skip or a failure.
    Ready(Box<Doc>),
    Skipped(Skip),
    Failed(Failure),
}

/// Why a document does not go: filtered out (counted as skipped), or a failure (its reason, and whether a later
/// try can help).
enum Stop {
    Filtered(Skip),
    Fail { reason: String, transient: bool },
}

impl Stop {
    fn fail(reason: String) -> Stop {
        Stop::Fail {
            reason,
            transient: false,
        }
    }

    fn verdict(self, id: &str, number: &str) -> Verdict {
        match self {
            Stop::Filtered(why) => Verdict::Skipped(why),
            Stop::Fail { reason, transient } => Verdict::Failed(Failure::new(id, number, reason, transient)),
        }
    }
}

/// What the mapping of one document reads: the flow, the company and what was read for all documents.
struct Scope<'s> {
    spec: &'s DocFlow<'s>,
    company: &'s str,
    parents: &'s Parents,
}

/// Header checks: id, business unit, template filter. Each header is counted as read once (a document given
/// twice goes once).
pub(super) fn check_headers(
    spec: &DocFlow<'_>,
    scope: &BusinessUnitScope,
    headers: Vec<Record>,
    report: &mut RunReport,
) -> (Vec<Header>, Vec<Failure>) {
    let ht = spec.header;
    let mut docs = Vec::new();
    let mut failures = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for h in headers {
        let Some(id) = str_of(&h, &ht.source_id).map(str::to_ascii_lowercase) else {
            report.read += 1;
            let reason = format!("the {} has no {}", spec.noun, ht.source_id);
            failures.push(Failure::new("", "(no id)", reason, false));
            continue;
        };
        if !seen.insert(id.clone()) {
            continue; // the same document twice in one call: once is enough
        }
        report.read += 1;
        if !scope.owns(&h) {
            report.skip(Skip::OtherBusinessUnit);
            continue;
        }
        if !ht.passes_filter(&h) {
            report.skip(Skip::Filtered);
            continue;
        }
        let number = str_of(&h, &ht.source_key).unwrap_or(&id).to_string();
        docs.push(Header { id, number, row: h });
    }
    (docs, failures)
}

/// Maps every document whole (a document with one bad line does not go); counts the skipped ones.
pub(super) fn map_documents(
    spec: &DocFlow<'_>,
    company: &str,
    headers: Vec<Header>,
    mut parents: Parents,
    report: &mut RunReport,
) -> (Vec<Doc>, Vec<Failure>) {
    let mut ready = Vec::new();
    let mut failures = Vec::new();
    for header in headers {
        let lines = parents.lines.remove(&header.id).unwrap_or_default();
        let scope = Scope {
            spec,
            company,
            parents: &parents,
        };
        match scope.map_document(header, lines) {
            Verdict::Ready(doc) => ready.push(*doc),
            Verdict::Skipped(why) => report.skip(why),
            Verdict::Failed(f) => failures.push(f),
        }
    }
    (ready, failures)
}

impl Scope<'_> {
    /// Customer, then lines, then the header.
    fn map_document(&self, header: Header, lines: Vec<Record>) -> Verdict {
        let Header { id, number, mut row } = header;
        let lines = self
            .set_customer(&number, &mut row)
            .and_then(|()| self.map_lines(&number, &row, lines));
        match lines {
            Ok(lines) => self.map_header(id, number, row, lines),
            Err(stop) => stop.verdict(&id, &number),
        }
    }

    /// Puts the customer's F&O account into the header; a failure when there is none.
    fn set_customer(&self, number: &str, h: &mut Record) -> Result<(), Stop> {
        let Some(c) = &self.spec.customer else {
            return Ok(());
        };
        let (noun, company) = (self.spec.noun, self.company);
        let Some(cid) = str_of(h, &c.column).map(str::to_ascii_lowercase) else {
            return Err(Stop::fail(format!(
                "{noun} {number} has no customer; set its customer in Sales"
            )));
        };
        let Some(account) = self.parents.customers.get(&cid) else {
            let who = self
                .parents
                .customer_names
                .get(&cid)
                .cloned()
                .unwrap_or_else(|| format!("customer {cid}"));
            return Err(Stop::Fail {
                reason: format!(
                    "{noun} {number} waits for its customer, {who}, which is not in F&O company {company} yet \
                     (no accounts-to-fno or contacts-to-fno link); it is retried from the queue after that \
                     flow has synced the customer"
                ),
                transient: true,
            });
        };
        h.insert(c.path.clone(), Value::String(account.clone()));
        Ok(())
    }

    /// All lines of a document, or the first line's reason not to send it.
    fn map_lines(&self, number: &str, header: &Record, lines: Vec<Record>) -> Result<Vec<LineOut>, Stop> {
        let mut out: Vec<LineOut> = Vec::new();
        for l in lines {
            let line = self.map_line(number, header, l, &out)?;
            out.push(line);
        }
        Ok(out)
    }

    /// One line: header values, product, filter, mapping, discount split, key (unique in the document).
    fn map_line(&self, number: &str, header: &Record, mut l: Record, done: &[LineOut]) -> Result<LineOut, Stop> {
        let (spec, company, noun) = (self.spec, self.company, self.spec.noun);
        let lt = spec.line;
        let lid = str_of(&l, &lt.source_id).unwrap_or_default().to_ascii_lowercase();
        let ln = l.get(&lt.source_key).map(text_of).unwrap_or_else(|| lid.clone());
        for (path, field) in &spec.parent_lookups {
            if let Some(v) = header.get(field) {
                l.insert(path.clone(), v.clone());
            }
        }
        let pnum = self.product_number(number, &ln, &l)?;
        if let Some(p) = &spec.product_path {
            l.insert(p.clone(), Value::String(pnum));
        }
        if !lt.passes_filter(&l) {
            tracing::debug!(line = %ln, "filtered by the line template");
            return Err(Stop::Filtered(Skip::LineFiltered));
        }
        let p2c_mapping::Mapped { mut body, cleared } = lt.map_parts(&l).map_err(|e| Stop::fail(e.to_string()))?;
        body.insert("dataAreaId".into(), json!(company));
        if spec.splits_discount() {
            split_discount(&l, header, &lt.target_entity, &mut body);
        }
        let key = target_key(lt, company, &body).map_err(|e| Stop::fail(format!("{noun} {number} line {ln}: {e}")))?;
        let key_text = spec.line_key_text(&key);
        if let Some(other) = done.iter().find(|o| o.key_text == key_text) {
            return Err(Stop::fail(format!(
                "{noun} {number}: lines {} and {lid} have the same sequence number {ln}; renumber one of them in \
                 Sales",
                other.id
            )));
        }
        Ok(LineOut {
            hash: content_hash(&body),
            version: version_of(&l),
            id: lid,
            key,
            key_text,
            body,
            cleared,
        })
    }

    /// The F&O product number of a line's product: a catalogue product Sales marks as maintained in F&O, synced
    /// by products-to-sales as this very Sales product.
    fn product_number(&self, number: &str, ln: &str, l: &Record) -> Result<String, Stop> {
        let (noun, company) = (self.spec.noun, self.company);
        let Some(pid) = str_of(l, "_productid_value").map(str::to_ascii_lowercase) else {
            return Err(Stop::Filtered(Skip::WriteInProduct));
        };
        let Some(product) = self.parents.products.get(&pid) else {
            return Err(Stop::fail(format!(
                "{noun} {number} line {ln}: its product {pid} is not in Sales; fix the line's product"
            )));
        };
        if !product.external {
            return Err(Stop::Filtered(Skip::ProductNotInFno));
        }
        let pname = &product.name;
        let Some(pnum) = &product.number else {
            return Err(Stop::fail(format!(
                "{noun} {number} line {ln}: its product \"{pname}\" ({pid}) has no product number; fix the product \
                 in Sales"
            )));
        };
        // A link without a target: products-to-sales saw the product but could not write it to Sales yet.
        match self
            .parents
            .product_links
            .get(pnum)
            .filter(|l| !l.target_key.is_empty())
        {
            None => Err(Stop::Fail {
                reason: format!(
                    "{noun} {number} waits for product {pnum} \"{pname}\" (line {ln}), which is not synced from F&O \
                     company {company} yet (no products-to-sales link); it is retried from the queue after \
                     products-to-sales has synced the product"
                ),
                transient: true,
            }),
            Some(link) if !link.target_key.eq_ignore_ascii_case(&pid) => Err(Stop::fail(format!(
                "{noun} {number} line {ln}: product {pnum} is Sales product {pid}, but products-to-sales synced \
                 {pnum} as Sales product {}; use that product on the line",
                link.target_key
            ))),
            Some(_) => Ok(pnum.clone()),
        }
    }

    /// The header, mapped; with its lines, the document ready for F&O.
    fn map_header(&self, id: String, number: String, h: Record, lines: Vec<LineOut>) -> Verdict {
        let (ht, company) = (self.spec.header, self.company);
        let p2c_mapping::Mapped { mut body, cleared } = match ht.map_parts(&h) {
            Ok(m) => m,
            Err(e) => return Verdict::Failed(Failure::new(&id, &number, e.to_string(), false)),
        };
        body.insert("dataAreaId".into(), json!(company));
        let key = match target_key(ht, company, &body) {
            Ok(k) => k,
            Err(e) => {
                let reason = format!("{} {number}: {e}", self.spec.noun);
                return Verdict::Failed(Failure::new(&id, &number, reason, false));
            }
        };
        Verdict::Ready(Box::new(Doc {
            id,
            number,
            key_text: key_text(&key),
            key,
            hash: content_hash(&body),
            version: version_of(&h),
            body,
            cleared,
            lines,
            stale: Vec::new(),
        }))
    }
}

/// Sales keeps one discount amount per line; F&O a discount per unit in the currency's decimals plus a sales
/// charge for what does not divide (spec/templates.md 5.5, "Discount rounding"): qty 3, discount 10.00 → 3.33 per
/// unit and a charge of −0.01.
fn split_discount(line: &Record, header: &Record, entity: &str, body: &mut Record) {
    let (Some(discount), Some(quantity)) = (
        line.get("manualdiscountamount").and_then(decimal_from_json),
        line.get("quantity").and_then(decimal_from_json),
    ) else {
        return;
    };
    let decimals = header
        .get("transactioncurrencyid.currencyprecision")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_DECIMALS, |d| d.min(10) as u32);
    let split = split_line_discount(discount, quantity, decimals);
    if fno_property(entity, PER_UNIT_DISCOUNT_FIELD).is_some() {
        body.insert(PER_UNIT_DISCOUNT_FIELD.into(), decimal_to_json(split.per_unit_discount));
    }
    if fno_property(entity, CHARGE_FIELD).is_some() {
        body.insert(CHARGE_FIELD.into(), decimal_to_json(split.charge()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discount_split_of_the_docs_example() {
        let line = json!({"manualdiscountamount": 10.0, "quantity": 3});
        let header = json!({"transactioncurrencyid.currencyprecision": 2});
        let mut body = Record::new();
        split_discount(
            line.as_object().unwrap(),
            header.as_object().unwrap(),
            "CDSSalesOrderLines",
            &mut body,
        );
        assert_eq!(
            Value::Object(body),
            json!({"LineDiscountAmount": 3.33, "TotalChargesAmount": -0.01})
        );
    }
}
