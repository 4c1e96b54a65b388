//! What a flow's templates make of a source record, and assertions that the target record holds it, row by row.
//!
//! Each `assert_*` function computes the expected target the way the flow does (the template from
//! `Deps::templates`, lookups resolved as the flow resolves them: Sales reference data by id, customers through
//! the accounts-to-fno / contacts-to-fno links, product numbers from the Sales product, a line's header fields
//! from its header; on the Sales side dotted targets bound to the record they name), then walks **every enabled
//! row of the template** and asserts the target holds the mapped value. A row whose source is blank clears the
//! target (F&O: its type's "no value", which the mapped value is; Sales: null, so the target must be blank); a row
//! that keeps the target's value (`keep_when_blank`) maps nothing: a created target is blank there, an updated one
//! keeps what it had.
//! Columns the target computes itself (Sales system pricing:
//! `extendedamount`, `totalamount`, ...; F&O `LineAmount`) are asserted against the sandbox's documented
//! formulas instead. The links in DynamoDB are checked too: target key and the hash of the mapped content.

use p2c_mapping::money::{Decimal, combine_line_discount, decimal_from_json, decimal_to_json, split_line_discount};
use p2c_mapping::{FnoType, Record, Role, Template, content_hash, lookup_targets};
use p2c_sandbox::{FNO_SALES_TAX_RATE, Sandbox};
use p2c_sync::FlowName;
use serde_json::{Value, json};

use crate::Env;

/// The company of every test.
pub const COMPANY: &str = "usmf";

/// Columns Sales calculates itself under system pricing (the flows write them on create and never compare them).
pub const SALES_CALCULATED: &[&str] = &[
    "totalamount",
    "totalamountlessfreight",
    "totallineitemamount",
    "totallineitemdiscountamount",
    "totaltax",
    "totaldiscountamount",
    "baseamount",
    "extendedamount",
];

// ------------------------------------------------------------------------------------------------ values

/// Equal as the flows compare values: numbers by value, date-times by instant, GUIDs ignoring case; absent is
/// null.
pub fn same(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Number(_), Value::Number(_)) => match (decimal_from_json(want), decimal_from_json(have)) {
            (Some(a), Some(b)) => a == b,
            _ => (want.as_f64().unwrap_or(f64::NAN) - have.as_f64().unwrap_or(f64::NAN)).abs() < 1e-9,
        },
        (Value::String(a), Value::String(b)) => {
            if a == b {
                return true;
            }
            let rfc = &time::format_description::well_known::Rfc3339;
            match (time::OffsetDateTime::parse(a, rfc), time::OffsetDateTime::parse(b, rfc)) {
                (Ok(x), Ok(y)) => x == y,
                _ => is_guid(a) && a.eq_ignore_ascii_case(b),
            }
        }
        _ => want == have,
    }
}

fn is_guid(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Nothing written: absent, null or empty text.
pub fn blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// An F&O property nobody wrote: F&O's "no value" of its type (0, the empty date, the enum's first member).
fn fno_no_value(entity: &str, field: &str, v: &Value) -> bool {
    let Some(p) = p2c_mapping::fno_property(entity, field) else {
        return false;
    };
    match &p.ty {
        FnoType::Enum(e) => p2c_mapping::fno_enum_members(e)
            .and_then(|m| m.first())
            .is_some_and(|m| v == m),
        FnoType::Decimal | FnoType::Int32 | FnoType::Int64 => v.as_f64() == Some(0.0),
        FnoType::DateTimeOffset => v.as_str().is_some_and(|d| d.starts_with("1900-01-01")),
        _ => false,
    }
}

pub fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn dec(v: &Value) -> Decimal {
    decimal_from_json(v).unwrap_or(Decimal::ZERO)
}

/// Cents, half away from zero (both services' rounding).
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn assert_num(have: &Value, want: f64, what: &str) {
    assert!(
        (num(have) - want).abs() < 0.005,
        "{what}: {have}, expected {want} (the target computes it)"
    );
}

pub fn object(v: &Value) -> Record {
    v.as_object().cloned().unwrap_or_else(|| panic!("not an object: {v}"))
}

// ------------------------------------------------------------------------------------------------ rows

fn sales_pk(entity_set: &str) -> String {
    match entity_set {
        "transactioncurrencies" => "transactioncurrencyid".into(),
        s => format!("{}id", s.strip_suffix('s').unwrap_or(s)),
    }
}

/// The Sales row of `set` whose `col` equals `value` (text ignoring case, like a lookup).
pub fn sales_find(sb: &Sandbox, set: &str, col: &str, value: &Value) -> Option<Value> {
    sb.sales_rows(set).into_iter().find(|r| match (&r[col], value) {
        (Value::String(a), Value::String(b)) => a.trim().eq_ignore_ascii_case(b.trim()),
        (a, b) => same(b, a),
    })
}

/// The F&O row of `set` in the company with every `(field, value)`.
pub fn fno_find(sb: &Sandbox, set: &str, key: &[(&str, Value)]) -> Option<Value> {
    sb.fno_rows(set).into_iter().find(|r| {
        r["dataAreaId"] == COMPANY
            && key.iter().all(|(k, v)| match (&r[*k], v) {
                (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
                (a, b) => same(b, a),
            })
    })
}

/// `nav.column` of a Sales row read through the single table the lookup points to (`transactioncurrencyid.
/// isocurrencycode`, `uomid.name`, `productid.productnumber`, `quoteid.statecode`).
fn sales_lookup(sb: &Sandbox, row: &Value, path: &str) -> Option<Value> {
    let (nav, targets) = lookup_targets(path)?;
    let [target] = targets.as_slice() else { return None };
    let id = row[format!("_{nav}_value")].as_str()?;
    let related = sb.sales_get(&target.entity_set, id)?;
    Some(related[&target.column].clone()).filter(|v| !v.is_null())
}

/// The source record a Sales → F&O template maps: the Sales row with its single-table lookup paths resolved.
/// Customer lookups are left to [`customer_via_links`].
pub fn sales_source(sb: &Sandbox, t: &Template, row: &Value) -> Record {
    let mut src = object(row);
    for l in t.lookups() {
        if let Some(v) = sales_lookup(sb, row, &l.path) {
            src.insert(l.path.clone(), v);
        }
    }
    src
}

/// The F&O customer account of a Sales customer lookup, as the documents and contact persons resolve it: the
/// target key of the customer's accounts-to-fno link, or (`contacts`) of its contacts-to-fno link.
pub async fn customer_via_links(env: &Env, customer_id: &str, contacts: bool) -> Option<String> {
    let ids = vec![customer_id.to_ascii_lowercase()];
    let state = &env.deps.state;
    if let Some(l) = state
        .get_links("account", COMPANY, "sales", &ids)
        .await
        .unwrap()
        .remove(&ids[0])
    {
        return Some(l.target_key);
    }
    if contacts {
        return state
            .get_links("contact", COMPANY, "sales", &ids)
            .await
            .unwrap()
            .remove(&ids[0])
            .map(|l| l.target_key);
    }
    None
}

/// The id of the Sales record a dotted target (`defaultuomid.name` = "ea") binds to, and the lookup's value column.
fn bound(sb: &Sandbox, path: &str, value: &Value) -> (String, String) {
    let (nav, targets) = lookup_targets(path).unwrap_or_else(|| panic!("{path} is not a lookup path"));
    for t in &targets {
        if let Some(r) = sales_find(sb, &t.entity_set, &t.column, value) {
            let pk = sales_pk(&t.entity_set);
            return (format!("_{nav}_value"), r[&pk].as_str().unwrap().to_string());
        }
    }
    panic!("{path} = {value}: no Sales record to bind to (looked in {targets:?})")
}

/// Asserts every enabled row of `t`: the target holds the mapped value; a Sales clear (null) leaves it blank. Where
/// nothing was mapped (a blank source on a row kept when blank) nothing is written: a created target is blank
/// there (F&O: its type's "no value"), an updated one still holds what it held `before`. Targets in `computed` are left to the caller (the target system calculates them).
/// Returns how many rows were asserted.
pub fn assert_rows(
    sb: &Sandbox,
    t: &Template,
    mapped: &Record,
    target: &Value,
    before: Option<&Value>,
    computed: &[&str],
    what: &str,
) -> usize {
    let kept = |col: &str, have: &Value| match before {
        Some(b) => same(&b[col], have),
        None => blank(have) || (t.writes_fno() && fno_no_value(&t.target_entity, col, have)),
    };
    let mut n = 0;
    for f in t.fields.iter().filter(|f| f.enabled) {
        let col = f.target.as_str();
        if computed.contains(&col) {
            continue;
        }
        n += 1;
        let cleared = mapped.get(col).is_some_and(Value::is_null);
        let want = mapped.get(col).filter(|v| !v.is_null());
        if !t.writes_fno()
            && let Some((nav, _)) = lookup_targets(col)
        {
            let have = &target[format!("_{nav}_value")];
            match want {
                Some(v) => {
                    let (column, id) = bound(sb, col, v);
                    assert!(
                        same(&json!(id), &target[&column]),
                        "{what}: row {col} = {v} should bind {column} to {id}, found {have}"
                    );
                }
                None if cleared => assert!(have.is_null(), "{what}: row {col} cleared, but {nav} is {have}"),
                None => assert!(
                    kept(&format!("_{nav}_value"), have),
                    "{what}: row {col} mapped nothing, but {nav} is {have}"
                ),
            }
            continue;
        }
        let have = &target[col];
        match want {
            Some(v) => assert!(same(v, have), "{what}: row {col} = {have}, the template maps {v}"),
            None if cleared => assert!(
                blank(have),
                "{what}: row {col} cleared (blank source), but holds {have}"
            ),
            None => assert!(
                kept(col, have),
                "{what}: row {col} mapped nothing (blank source), so the target keeps {}, but holds {have}",
                before.map_or(Value::Null, |b| b[col].clone())
            ),
        }
    }
    n
}

async fn link(env: &Env, entity: &str, system: &str, key: &str) -> p2c_state::Link {
    let keys = vec![key.to_string()];
    env.deps
        .state
        .get_links(entity, COMPANY, system, &keys)
        .await
        .unwrap()
        .remove(key)
        .unwrap_or_else(|| panic!("no link {entity}#{COMPANY}#{system}#{key}"))
}

/// Asserts the link `LINK#<entity>#usmf#<system>#<key>`: its target key, and the hash of the mapped content.
pub async fn assert_link(env: &Env, entity: &str, system: &str, key: &str, target: &str, mapped: Option<&Record>) {
    let l = link(env, entity, system, key).await;
    assert!(
        l.target_key.eq_ignore_ascii_case(target),
        "link {entity}/{system}/{key}: target {}, expected {target}",
        l.target_key
    );
    if let Some(m) = mapped {
        assert_eq!(
            l.target_hash.as_deref(),
            Some(content_hash(m).as_str()),
            "link {entity}/{system}/{key}: the hash of what was written"
        );
    }
}

/// Counts of what an assertion covered, for the test's printout.
#[derive(Debug, Default, Clone, Copy)]
pub struct Covered {
    pub records: usize,
    pub rows: usize,
    pub links: usize,
}

impl std::ops::AddAssign for Covered {
    fn add_assign(&mut self, o: Covered) {
        self.records += o.records;
        self.rows += o.rows;
        self.links += o.links;
    }
}

fn with_company(mut body: Record) -> Record {
    body.insert("dataAreaId".into(), json!(COMPANY));
    body
}

// ------------------------------------------------------------------------------------------------ Sales → F&O

/// accounts-to-fno: the F&O customer of a Sales account holds every mapped field; the link holds its number.
pub async fn assert_account(env: &Env, account: &Value) -> Covered {
    let sb = &env.sb;
    let t = &env.deps.templates(FlowName::AccountsToFno)[0];
    let body = with_company(t.map(&sales_source(sb, t, account)).expect("the account maps"));
    let number = body["CustomerAccount"].clone();
    let customer = fno_find(sb, "CustomersV2", &[("CustomerAccount", number.clone())])
        .unwrap_or_else(|| panic!("F&O customer {number}"));
    let rows = assert_rows(sb, t, &body, &customer, None, &[], &format!("customer {number}"));
    let id = account["accountid"].as_str().unwrap();
    assert_link(env, "account", "sales", id, number.as_str().unwrap(), Some(&body)).await;
    Covered {
        records: 1,
        rows,
        links: 1,
    }
}

/// contacts-to-fno: an active-customer contact is an F&O customer, a contact of an account a contact person under
/// the account's party (its number from the account's link); other contacts are nowhere in F&O.
pub async fn assert_contact(env: &Env, contact: &Value) -> Covered {
    let sb = &env.sb;
    let flow = FlowName::ContactsToFno;
    let customer_t = env.deps.template(flow, "ContactToCustomer").unwrap();
    let person_t = env.deps.template(flow, "Contacts").unwrap();
    let id = contact["contactid"].as_str().unwrap();
    let number = contact["msdynce_contactnumber"].as_str().unwrap();
    let mut src = sales_source(sb, customer_t, contact);
    if customer_t.passes_filter(&src) {
        let body = with_company(customer_t.map(&src).expect("the contact maps"));
        let c = fno_find(sb, "CustomersV2", &[("CustomerAccount", json!(number))])
            .unwrap_or_else(|| panic!("F&O customer of contact {number}"));
        let rows = assert_rows(
            sb,
            customer_t,
            &body,
            &c,
            None,
            &[],
            &format!("customer of contact {number}"),
        );
        assert_link(env, "contact", "sales", id, number, Some(&body)).await;
        return Covered {
            records: 1,
            rows,
            links: 1,
        };
    }
    if person_t.passes_filter(&src) {
        let parent = contact["_parentcustomerid_value"]
            .as_str()
            .expect("a contact of an account");
        let account = customer_via_links(env, parent, false)
            .await
            .expect("the parent account is synced");
        let path = person_t
            .lookups()
            .into_iter()
            .find(|l| l.navigation == "parentcustomerid")
            .unwrap()
            .path;
        src.insert(path, json!(account));
        let body = with_company(person_t.map(&src).expect("the contact maps"));
        let p = fno_find(
            sb,
            "CDSContactPersons",
            &[
                ("ContactPersonPartyNumber", json!(number)),
                ("AssociatedPartyNumber", json!(account)),
            ],
        )
        .unwrap_or_else(|| panic!("F&O contact person {number}"));
        let rows = assert_rows(sb, person_t, &body, &p, None, &[], &format!("contact person {number}"));
        assert_link(
            env,
            "contactperson",
            "sales",
            id,
            &format!("{number}/{account}"),
            Some(&body),
        )
        .await;
        return Covered {
            records: 1,
            rows,
            links: 1,
        };
    }
    assert!(
        fno_find(sb, "CustomersV2", &[("CustomerAccount", json!(number))]).is_none()
            && fno_find(sb, "CDSContactPersons", &[("ContactPersonPartyNumber", json!(number))]).is_none(),
        "contact {number} passes neither filter and must not be in F&O"
    );
    Covered::default()
}

/// quotes-to-fno / orders-to-fno: the F&O header and every line hold what the templates make of the Sales
/// document (customer through its link, product numbers, units, the header's number on the lines, the line
/// discount split the F&O way); F&O's own line amounts follow its formula; links hold keys and hashes.
pub async fn assert_document_to_fno(env: &Env, flow: FlowName, header_id: &str) -> Covered {
    let sb = &env.sb;
    let ts = env.deps.templates(flow);
    let ht = ts.iter().find(|t| t.role == Role::Header).unwrap();
    let lt = ts.iter().find(|t| t.role == Role::Line).unwrap();
    let (header_entity, line_entity) = match flow {
        FlowName::QuotesToFno => ("quote", "quotedetail"),
        _ => ("salesorder", "salesorderdetail"),
    };
    let header = sb
        .sales_get(&ht.source_entity, header_id)
        .unwrap_or_else(|| panic!("Sales {header_entity} {header_id}"));
    let mut src = sales_source(sb, ht, &header);
    assert!(
        ht.passes_filter(&src),
        "{header_entity} {header_id} passes the header filter"
    );
    for l in ht.lookups().into_iter().filter(|l| l.targets.len() > 1) {
        let customer = header[&l.column].as_str().expect("a customer");
        let account = customer_via_links(env, customer, true)
            .await
            .expect("the customer is synced");
        src.insert(l.path, json!(account));
    }
    let body = with_company(ht.map(&src).expect("the header maps"));
    let key_field = ht.target_key.iter().find(|k| *k != "dataAreaId").unwrap().as_str();
    let number = body[key_field].as_str().unwrap().to_string();
    let fno_header = fno_find(sb, &ht.target_entity, &[(key_field, json!(number))])
        .unwrap_or_else(|| panic!("F&O {} {number}", ht.target_entity));
    let mut c = Covered {
        records: 1,
        rows: assert_rows(
            sb,
            ht,
            &body,
            &fno_header,
            None,
            &[],
            &format!("F&O {header_entity} {number}"),
        ),
        links: 1,
    };
    assert_link(env, header_entity, "sales", header_id, &number, Some(&body)).await;

    let parent_nav = lt.parent_key.as_deref().unwrap().split('.').next().unwrap();
    let lines: Vec<Value> = sb
        .sales_rows(&lt.source_entity)
        .into_iter()
        .filter(|l| l[format!("_{parent_nav}_value")] == header_id)
        .collect();
    assert!(!lines.is_empty(), "{header_entity} {number} has lines");
    let qty_field = if flow == FlowName::QuotesToFno {
        "RequestedSalesQuantity"
    } else {
        "OrderedSalesQuantity"
    };
    let fno_lines: Vec<Value> = sb
        .fno_rows(&lt.target_entity)
        .into_iter()
        .filter(|l| l["dataAreaId"] == COMPANY && l[key_field].as_str() == Some(number.as_str()))
        .collect();
    assert_eq!(fno_lines.len(), lines.len(), "F&O {number} has one line per Sales line");
    for line in &lines {
        let src = sales_source(sb, lt, line);
        assert!(
            lt.passes_filter(&src),
            "line {} passes the line filter",
            line[&lt.source_id]
        );
        let mut body = with_company(lt.map(&src).expect("the line maps"));
        // The flow sends the Sales discount split the F&O way (per unit in cents + a charge for the remainder).
        let split = split_line_discount(dec(&line["manualdiscountamount"]), dec(&line["quantity"]), 2);
        body.insert("LineDiscountAmount".into(), decimal_to_json(split.per_unit_discount));
        body.insert("TotalChargesAmount".into(), decimal_to_json(split.charge()));
        let seq = body["LineCreationSequenceNumber"].clone();
        let what = format!("F&O {line_entity} {number}/{seq}");
        let fno_line = fno_lines
            .iter()
            .find(|l| same(&seq, &l["LineCreationSequenceNumber"]))
            .unwrap_or_else(|| panic!("{what}"));
        c.rows += assert_rows(sb, lt, &body, fno_line, None, &[], &what);
        for f in ["LineDiscountAmount", "TotalChargesAmount"] {
            assert!(
                same(&body[f], &fno_line[f]),
                "{what}: {f} = {}, sent {}",
                fno_line[f],
                body[f]
            );
            c.rows += 1;
        }
        // F&O computes the line amount and its tax.
        let amount = round2(
            (num(&fno_line["SalesPrice"]) / num(&fno_line["SalesPriceQuantity"]).max(1.0)
                - num(&fno_line["LineDiscountAmount"]))
                * num(&fno_line[qty_field])
                * (1.0 - fno_line["LineDiscountPercentage"].as_f64().unwrap_or(0.0) / 100.0),
        );
        assert_num(&fno_line["LineAmount"], amount, &format!("{what} LineAmount"));
        if fno_line.get("TotalTaxAmount").is_some() {
            assert_num(
                &fno_line["TotalTaxAmount"],
                round2(amount * FNO_SALES_TAX_RATE),
                &format!("{what} TotalTaxAmount"),
            );
        }
        c.records += 1;
        c.links += 1;
        let key = format!("{number}/{}", seq.as_i64().unwrap());
        assert_link(
            env,
            line_entity,
            "sales",
            line[&lt.source_id].as_str().unwrap(),
            &key,
            Some(&body),
        )
        .await;
    }
    c
}

// ------------------------------------------------------------------------------------------------ F&O → Sales

/// products-to-sales: the Sales product and its price list item hold what the templates make of the F&O product
/// (currency, unit, unit group and price list bound by name); the links point at both.
pub async fn assert_product(env: &Env, product_number: &str) -> Covered {
    let sb = &env.sb;
    let ts = env.deps.templates(FlowName::ProductsToSales);
    let pt = ts.iter().find(|t| t.role == Role::Single).unwrap();
    let it = ts.iter().find(|t| t.role == Role::Companion).unwrap();
    let f = fno_find(sb, &pt.source_entity, &[("ProductNumber", json!(product_number))])
        .unwrap_or_else(|| panic!("F&O product {product_number}"));
    let mapped = pt.map(&object(&f)).expect("the product maps");
    let p = sales_find(sb, "products", "productnumber", &json!(product_number))
        .unwrap_or_else(|| panic!("Sales product {product_number}"));
    let what = format!("Sales product {product_number}");
    let mut c = Covered {
        records: 2,
        rows: assert_rows(sb, pt, &mapped, &p, None, &[], &what),
        links: 2,
    };
    let pid = p["productid"].as_str().unwrap();
    let item_mapped = it.map(&object(&f)).expect("the price list item maps");
    let items: Vec<Value> = sb
        .sales_rows("productpricelevels")
        .into_iter()
        .filter(|i| i["_productid_value"] == pid)
        .collect();
    assert_eq!(items.len(), 1, "{what}: one price list item");
    c.rows += assert_rows(
        sb,
        it,
        &item_mapped,
        &items[0],
        None,
        &[],
        &format!("{what} price list item"),
    );
    // The P2C rule picks the price list; it is left out of the hash, so a new list does not move products.
    let unhashed = |m: &Record| {
        let mut m = m.clone();
        m.remove("pricelevelid.name");
        m
    };
    assert_link(env, "product", "fno", product_number, pid, Some(&unhashed(&mapped))).await;
    let item_id = items[0]["productpricelevelid"].as_str().unwrap();
    assert_link(
        env,
        "productpricelevel",
        "fno",
        product_number,
        item_id,
        Some(&unhashed(&item_mapped)),
    )
    .await;
    c
}

/// The P2C price list rule: the first valid (active, begun, not ended) price list of the currency, by name.
pub fn first_price_list(sb: &Sandbox, iso: &str) -> Option<String> {
    let currency = sales_find(sb, "transactioncurrencies", "isocurrencycode", &json!(iso))?;
    let id = currency["transactioncurrencyid"].as_str()?.to_string();
    let now = time::OffsetDateTime::now_utc();
    let date = |v: &Value| {
        v.as_str()
            .and_then(|s| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
    };
    let mut names: Vec<String> = sb
        .sales_rows("pricelevels")
        .into_iter()
        .filter(|p| {
            p["_transactioncurrencyid_value"]
                .as_str()
                .is_some_and(|c| c.eq_ignore_ascii_case(&id))
                && p["statecode"].as_i64().unwrap_or(0) == 0
                && date(&p["begindate"]).is_none_or(|d| d <= now)
                && date(&p["enddate"]).is_none_or(|d| d >= now)
        })
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    names.sort_by(|a, b| a.to_lowercase().cmp(&b.to_lowercase()).then_with(|| a.cmp(b)));
    names.into_iter().next()
}

/// A Sales document line made from its header's tax (the P2C "Freight Tax" write-in line).
pub fn is_freight_tax_line(line: &Value) -> bool {
    line["msdynce_ismisctax"] == true
}

/// orders-to-sales / invoices-to-sales: the Sales header and every line hold what the templates make of the F&O
/// document (customer, product, unit, currency and order bound by number; the price list of the P2C rule, the first
/// valid one of the document's currency by name; the order line discount combined from F&O's per-unit discount and
/// charge; the header tax as one "Freight Tax" line); computed columns follow Sales system pricing; links hold the
/// Sales ids and the hashes. `before`: Sales rows (header, lines) as they were before the flow updated them, for a
/// document that was already in Sales (an order that came from Sales). Returns the Sales header.
pub async fn assert_document_to_sales(env: &Env, flow: FlowName, key: &str, before: &[Value]) -> (Covered, Value) {
    let sb = &env.sb;
    let ts = env.deps.templates(flow);
    let ht = ts.iter().find(|t| t.role == Role::Header).unwrap();
    let lt = ts.iter().find(|t| t.role == Role::Line).unwrap();
    let fno_header = fno_find(sb, &ht.source_entity, &[(ht.source_key.as_str(), json!(key))])
        .unwrap_or_else(|| panic!("F&O {} {key}", ht.source_entity));
    assert!(
        ht.passes_filter(&object(&fno_header)),
        "F&O {key} passes the header filter"
    );
    // The P2C rule picks the price list (the template's own value map or default aside); it is left out of the
    // hash, so a new list does not move documents.
    let mut without_list = ht.clone();
    without_list.fields.retain(|f| f.target != "pricelevelid.name");
    let mut mapped = without_list.map(&object(&fno_header)).expect("the header maps");
    let unhashed = mapped.clone();
    if ht.field("pricelevelid.name").is_some_and(|f| f.enabled) {
        let iso = mapped["transactioncurrencyid.isocurrencycode"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let list = first_price_list(sb, &iso).unwrap_or_else(|| panic!("a price list for {iso}"));
        mapped.insert("pricelevelid.name".into(), json!(list));
    }
    let natural = &ht.target_key[0];
    let header = sales_find(sb, &ht.target_entity, natural, &json!(key))
        .unwrap_or_else(|| panic!("Sales {} {key}", ht.target_entity));
    let pk = sales_pk(&ht.target_entity);
    let header_id = header[&pk].as_str().unwrap().to_string();
    let line_pk = sales_pk(&lt.target_entity);
    let earlier = |row: &Value| {
        before.iter().find(|b| {
            [&pk, &line_pk]
                .iter()
                .any(|k| !row[k.as_str()].is_null() && b[k.as_str()] == row[k.as_str()])
        })
    };
    let what = format!("Sales {} {key}", ht.target_entity);
    let mut c = Covered {
        records: 1,
        rows: assert_rows(sb, ht, &mapped, &header, earlier(&header), SALES_CALCULATED, &what),
        links: 1,
    };
    let logical = |set: &str| set.strip_suffix('s').unwrap_or(set).to_string();
    assert_link(
        env,
        &logical(&ht.target_entity),
        "fno",
        key,
        &header_id,
        Some(&unhashed),
    )
    .await;

    let parent_field = lt.parent_key.as_deref().unwrap();
    let fno_lines: Vec<Value> = sb
        .fno_rows(&lt.source_entity)
        .into_iter()
        .filter(|l| l["dataAreaId"] == COMPANY && l[parent_field].as_str() == Some(key))
        .collect();
    let parent_col = format!("_{}id_value", logical(&ht.target_entity));
    let (freight, lines): (Vec<Value>, Vec<Value>) = sb
        .sales_rows(&lt.target_entity)
        .into_iter()
        .filter(|l| l[&parent_col] == header_id.as_str())
        .partition(is_freight_tax_line);
    assert_eq!(lines.len(), fno_lines.len(), "{what}: one Sales line per F&O line");
    c += assert_freight_tax_line(env, &lt.target_entity, key, &mapped, &freight, &what).await;
    for fl in &fno_lines {
        let mut m = lt.map(&object(fl)).expect("the line maps");
        // The order line discount: quantity × F&O's per-unit discount + the remainder F&O booked as a charge.
        if lt.fields.iter().any(|f| f.target == "manualdiscountamount")
            && let (Some(per_unit), Some(qty)) = (
                fl.get("LineDiscountAmount").and_then(decimal_from_json),
                fl.get("OrderedSalesQuantity").and_then(decimal_from_json),
            )
        {
            let charge = fl
                .get("TotalChargesAmount")
                .and_then(decimal_from_json)
                .unwrap_or_default();
            let remainder = if charge < Decimal::ZERO { -charge } else { Decimal::ZERO };
            if !(per_unit.is_zero() && remainder.is_zero()) {
                let d = combine_line_discount(per_unit, qty, remainder, 2);
                m.insert("manualdiscountamount".into(), decimal_to_json(d));
            }
        }
        let seq = fl[&lt.source_key].clone();
        let lwhat = format!("{what} line {seq}");
        let line = lines
            .iter()
            .find(|l| same(&seq, &l["sequencenumber"]))
            .unwrap_or_else(|| panic!("{lwhat}"));
        c.rows += assert_rows(sb, lt, &m, line, earlier(line), SALES_CALCULATED, &lwhat);
        c.records += 1;
        c.links += 1;
        let lpk = &line_pk;
        let lkey = format!("{key}/{}", seq.as_i64().unwrap());
        assert_link(
            env,
            &logical(&lt.target_entity),
            "fno",
            &lkey,
            line[lpk].as_str().unwrap(),
            Some(&m),
        )
        .await;
    }
    c.rows += assert_sales_pricing(sb, &ht.target_entity, &header_id);
    (c, sales_find(sb, &ht.target_entity, &pk, &json!(header_id)).unwrap())
}

/// The header tax (`msdynce_misctax`) as the document's one "Freight Tax" line: a write-in product with the tax
/// as its tax, and its link; no such line without a header tax.
async fn assert_freight_tax_line(
    env: &Env,
    line_set: &str,
    key: &str,
    header: &Record,
    freight: &[Value],
    what: &str,
) -> Covered {
    let tax = header.get("msdynce_misctax").map(dec).unwrap_or(Decimal::ZERO);
    if tax.is_zero() {
        assert!(
            freight.is_empty(),
            "{what}: no header tax, no Freight Tax line: {freight:?}"
        );
        return Covered::default();
    }
    assert_eq!(freight.len(), 1, "{what}: one Freight Tax line for the header tax");
    let l = &freight[0];
    assert_eq!(l["productdescription"], "Freight Tax", "{what}");
    assert_eq!(l["isproductoverridden"], true, "{what}: a write-in product");
    assert_eq!(dec(&l["tax"]), tax, "{what}: the header tax is the line's tax");
    assert_eq!((num(&l["quantity"]), num(&l["priceperunit"])), (1.0, 0.0), "{what}");
    let pk = sales_pk(line_set);
    let logical = line_set.strip_suffix('s').unwrap_or(line_set);
    assert_link(
        env,
        logical,
        "fno",
        &format!("{key}/freight-tax"),
        l[&pk].as_str().unwrap(),
        None,
    )
    .await;
    Covered {
        records: 1,
        rows: 5,
        links: 1,
    }
}

/// The sandbox's Sales system pricing on a document: each line's `baseamount` and `extendedamount`, the header's
/// totals (README "Sales business rules"). Returns how many computed columns were asserted.
pub fn assert_sales_pricing(sb: &Sandbox, header_set: &str, header_id: &str) -> usize {
    let (line_set, parent_col) = match header_set {
        "quotes" => ("quotedetails", "_quoteid_value"),
        "salesorders" => ("salesorderdetails", "_salesorderid_value"),
        "invoices" => ("invoicedetails", "_invoiceid_value"),
        s => panic!("no pricing for {s}"),
    };
    let h = sb.sales_get(header_set, header_id).unwrap();
    let lines: Vec<Value> = sb
        .sales_rows(line_set)
        .into_iter()
        .filter(|l| l[parent_col] == header_id)
        .collect();
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let mut n = 0;
    let (mut items, mut line_discounts, mut tax) = (0.0, 0.0, 0.0);
    for l in &lines {
        let what = format!("{line_set} {}", l["sequencenumber"]);
        let base = round2(f(l, "quantity") * (f(l, "priceperunit") - f(l, "volumediscountamount")));
        assert_num(&l["baseamount"], base, &format!("{what} baseamount"));
        let extended = round2(base - f(l, "manualdiscountamount") + f(l, "tax"));
        assert_num(&l["extendedamount"], extended, &format!("{what} extendedamount"));
        n += 2;
        items += extended - f(l, "tax");
        line_discounts += f(l, "manualdiscountamount");
        tax += f(l, "tax");
    }
    let what = format!("{header_set} {header_id}");
    let items = round2(items);
    let total_discount = round2(line_discounts + f(&h, "discountamount") + f(&h, "discountpercentage") / 100.0 * items);
    let less_freight = round2(items - (total_discount - line_discounts));
    assert_num(&h["totallineitemamount"], items, &format!("{what} totallineitemamount"));
    assert_num(&h["totaltax"], round2(tax), &format!("{what} totaltax"));
    assert_num(
        &h["totaldiscountamount"],
        total_discount,
        &format!("{what} totaldiscountamount"),
    );
    assert_num(
        &h["totalamountlessfreight"],
        less_freight,
        &format!("{what} totalamountlessfreight"),
    );
    assert_num(
        &h["totalamount"],
        round2(less_freight + f(&h, "freightamount") + round2(tax)),
        &format!("{what} totalamount"),
    );
    n + 5
}

// ------------------------------------------------------------------------------------------------ whole state

/// The Sales tables the flows read or write, with the column that names a row to a person (its natural key).
const SALES_TABLES: &[(&str, &str)] = &[
    ("businessunits", "name"),
    // Owners of records: the default team of each business unit, and the application user p2c runs as.
    ("teams", "name"),
    ("systemusers", "fullname"),
    ("transactioncurrencies", "isocurrencycode"),
    ("uomschedules", "name"),
    ("uoms", "name"),
    ("pricelevels", "name"),
    ("accounts", "accountnumber"),
    ("contacts", "msdynce_contactnumber"),
    ("products", "productnumber"),
    ("productpricelevels", ""),
    ("quotes", "quotenumber"),
    ("quotedetails", ""),
    ("salesorders", "ordernumber"),
    ("salesorderdetails", ""),
    ("invoices", "invoicenumber"),
    ("invoicedetails", ""),
];

/// The F&O entities the flows read or write, with the header a line belongs to (entity, key field).
const FNO_TABLES: &[(&str, Option<(&str, &str)>)] = &[
    ("CustomersV2", None),
    ("CDSContactPersons", None),
    ("SellableReleasedProducts", None),
    ("CDSSalesQuotationHeaders", None),
    (
        "CDSSalesQuotationLines",
        Some(("CDSSalesQuotationHeaders", "SalesQuotationNumber")),
    ),
    ("CDSSalesOrderHeaders", None),
    ("CDSSalesOrderLines", Some(("CDSSalesOrderHeaders", "SalesOrderNumber"))),
    ("ExternallyMaintainedCustomerSalesInvoiceHeaders", None),
    (
        "ExternallyMaintainedCustomerSalesInvoiceLines",
        Some(("ExternallyMaintainedCustomerSalesInvoiceHeaders", "InvoiceNumber")),
    ),
];

/// Every Sales record id → a name that is the same in every environment: `products:D0001`,
/// `salesorderdetails:salesorders:ORD-1/2` (a line by its header and sequence number).
fn sales_labels(sb: &Sandbox) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    for (set, col) in SALES_TABLES.iter().filter(|(_, c)| !c.is_empty()) {
        for r in sb.sales_rows(set) {
            out.insert(
                r[sales_pk(set)].as_str().unwrap().to_string(),
                format!("{set}:{}", r[*col]),
            );
        }
    }
    for (set, parent) in [
        ("quotedetails", "_quoteid_value"),
        ("salesorderdetails", "_salesorderid_value"),
        ("invoicedetails", "_invoiceid_value"),
        ("productpricelevels", "_productid_value"),
    ] {
        for r in sb.sales_rows(set) {
            let p = r[parent].as_str().and_then(|p| out.get(p)).cloned().unwrap_or_default();
            out.insert(
                r[sales_pk(set)].as_str().unwrap().to_string(),
                format!("{set}:{p}/{}", r["sequencenumber"]),
            );
        }
    }
    out
}

/// No dangling reference anywhere: every Sales lookup points to a record that exists, every F&O line has its
/// header, every F&O document its customer and products, every F&O contact person its party.
pub fn assert_no_dangling(sb: &Sandbox) {
    let labels = sales_labels(sb);
    for (set, _) in SALES_TABLES {
        for r in sb.sales_rows(set) {
            for (k, v) in object(&r) {
                let (Some(_), Some(id)) = (k.strip_prefix('_').and_then(|k| k.strip_suffix("_value")), v.as_str())
                else {
                    continue;
                };
                assert!(
                    labels.contains_key(id),
                    "Sales {set} {}: {k} = {id} points to no record",
                    r[sales_pk(set)]
                );
            }
        }
    }
    for r in sb.sales_rows("invoices") {
        assert!(
            !blank(&r["_salesorderid_value"]),
            "Sales invoice {} has no order",
            r["invoicenumber"]
        );
    }
    let fno = |set: &str| -> Vec<Value> {
        sb.fno_rows(set)
            .into_iter()
            .filter(|r| r["dataAreaId"] == COMPANY)
            .collect()
    };
    let has = |set: &str, field: &str, v: &Value| fno(set).iter().any(|r| same(v, &r[field]));
    for (set, header) in FNO_TABLES {
        let Some((hset, key)) = header else { continue };
        for l in fno(set) {
            assert!(has(hset, key, &l[*key]), "F&O {set} line of {} has no header", l[*key]);
        }
    }
    for (set, customer) in [
        ("CDSSalesQuotationHeaders", "RequestingCustomerAccountNumber"),
        ("CDSSalesOrderHeaders", "OrderingCustomerAccountNumber"),
    ] {
        for h in fno(set) {
            assert!(
                has("CustomersV2", "CustomerAccount", &h[customer]),
                "F&O {set} {h}: customer {} does not exist",
                h[customer]
            );
        }
    }
    for set in ["CDSSalesQuotationLines", "CDSSalesOrderLines"] {
        for l in fno(set) {
            assert!(
                has("SellableReleasedProducts", "ProductNumber", &l["ProductNumber"]),
                "F&O {set}: product {} does not exist",
                l["ProductNumber"]
            );
        }
    }
    for p in fno("CDSContactPersons") {
        assert!(
            has("CustomersV2", "PartyNumber", &p["AssociatedPartyNumber"]),
            "F&O contact person {}: party {} does not exist",
            p["ContactPersonPartyNumber"],
            p["AssociatedPartyNumber"]
        );
    }
}

/// Every record of every table the flows touch, with what differs between two environments taken out: record
/// ids (a lookup becomes the name of the record it points to), versions, etags, and date-times.
pub fn snapshot(sb: &Sandbox) -> std::collections::BTreeMap<String, Vec<String>> {
    let labels = sales_labels(sb);
    let rfc = &time::format_description::well_known::Rfc3339;
    let normal = |set: &str, r: Value, pk: Option<String>| -> String {
        let mut out = serde_json::Map::new();
        for (k, v) in object(&r) {
            if k.contains('@') || Some(&k) == pk.as_ref() || k == "versionnumber" {
                continue;
            }
            let v = match &v {
                Value::String(s) if is_guid(s) => match labels.get(s) {
                    Some(l) => json!(l),
                    None => panic!("{set}: {k} = {s} names no record"),
                },
                Value::String(s) if time::OffsetDateTime::parse(s, rfc).is_ok() => json!("<date-time>"),
                _ => v,
            };
            out.insert(k, v);
        }
        Value::Object(out).to_string()
    };
    let mut snap = std::collections::BTreeMap::new();
    for (set, _) in SALES_TABLES {
        let mut rows: Vec<String> = sb
            .sales_rows(set)
            .into_iter()
            .map(|r| normal(set, r, Some(sales_pk(set))))
            .collect();
        rows.sort();
        snap.insert(format!("sales {set}"), rows);
    }
    for (set, _) in FNO_TABLES {
        let mut rows: Vec<String> = sb.fno_rows(set).into_iter().map(|r| normal(set, r, None)).collect();
        rows.sort();
        snap.insert(format!("fno {set}"), rows);
    }
    snap
}

/// Asserts two snapshots are equal, table by table, naming the first field that differs.
pub fn assert_same_state(
    want: &std::collections::BTreeMap<String, Vec<String>>,
    got: &std::collections::BTreeMap<String, Vec<String>>,
) -> usize {
    let mut fields = 0;
    for (table, rows) in want {
        let other = &got[table];
        assert_eq!(
            rows.len(),
            other.len(),
            "{table}: {} records, expected {}",
            other.len(),
            rows.len()
        );
        for (a, b) in rows.iter().zip(other) {
            let (a, b): (Value, Value) = (serde_json::from_str(a).unwrap(), serde_json::from_str(b).unwrap());
            let (a, b) = (object(&a), object(&b));
            for k in a.keys().chain(b.keys()) {
                let (x, y) = (a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null));
                assert!(
                    same(x, y),
                    "{table}: field {k} is {y}, in order {x}\nin order: {a:?}\nout of order: {b:?}"
                );
            }
            fields += a.len();
        }
    }
    fields
}
