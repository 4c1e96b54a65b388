//! Finance & Operations OData (`/data`): case-sensitive entity sets and properties, company scoping, composite
//! keys, offset paging of 10,000 rows, create/update/delete without upsert, Infolog-style write failures, `$batch`.
//!
//! Choices where the docs are silent (spec/protocols.md gaps 10-14):
//! * `Prefer: odata.maxpagesize` is not honoured (only `$top` sizes a page).
//! * Reads by key respect company scoping: a key in another company than the API user's default is 404 unless
//!   `cross-company=true` (public clients add it for exactly this reason). The same holds for PATCH and DELETE.
//!   A POST creates in the company named by `dataAreaId` (default company when absent).
//! * `If-Match` with a stale ETag is 412.
//! * Validation failures (a value not in its related table, strings longer than their EDT: see `fno_rules.rs`;
//!   missing mandatory fields, duplicates) are HTTP 500 `AxODataWriteException` with the reason in
//!   `error.innererror.message`; malformed bodies (unknown property, wrong JSON type, unknown enum member)
//!   are 400 from the OData layer.
//! * Defaulting, line amounts, the totals batch, invoicing and the fields the CDS entities derive on read live in
//!   `fno_sales.rs`; this module calls them on every OData write and read.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::batch;
use crate::fno_rules;
use crate::fno_sales;
use crate::fno_schema::{Entity, FType, label, schema};
use crate::http::{Req, Resp, decode_path, decode_query_part, encode_key_segment, parse_datetime};
use crate::odata_filter::{self as of, Dialect, PType, Schema, SortVal};
use crate::store::{FRow, FnoStore, Key, KeyPart, Row};
use crate::{State, lock};

pub(crate) const ROOT: &str = "/data";
const PAGE: usize = 10_000;
const EMPTY_DATE: &str = "1900-01-01T12:00:00Z";

fn odata_err(status: u16, message: &str) -> Resp {
    Resp::odata_json(status, &json!({"error": {"code": "", "message": message}}))
}

/// Errors from the OData layer (bad URL or body) carry the reason in `innererror` like every F&O error.
fn odata_layer_err(status: u16, message: &str) -> Resp {
    Resp::odata_json(
        status,
        &json!({"error": {"code": "", "message": message, "innererror": {
            "message": message, "type": "Microsoft.OData.ODataException", "stacktrace": ""}}}),
    )
}

fn query_err(message: &str) -> Resp {
    let m = if message.starts_with("The query specified in the URI is not valid.") {
        message.to_string()
    } else {
        format!("The query specified in the URI is not valid. {message}")
    };
    odata_layer_err(400, &m)
}

/// HTTP 500 `AxODataWriteException`: what F&O returns when X++ validation refuses a write.
fn write_err(e: &Entity, infolog: &str) -> Resp {
    Resp::odata_json(
        500,
        &json!({"error": {"code": "", "message": "An error has occurred.", "innererror": {
            "message": format!("Write failed for table row of type '{}'. Infolog: {infolog}", e.aot_name()),
            "type": "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException",
            "stacktrace": ""}}}),
    )
}

fn not_found(set: &str) -> Resp {
    odata_err(404, &format!("Resource not found for the segment '{set}'."))
}

fn no_route(state: &State, path: &str) -> Resp {
    odata_err(
        404,
        &format!(
            "No HTTP resource was found that matches the request URI '{}{path}'.",
            state.fno_url
        ),
    )
}

struct ESchema<'a>(&'a Entity);

impl Schema for ESchema<'_> {
    fn prop_type(&self, name: &str) -> Option<PType> {
        self.0.prop(name).map(|p| p.ty.ptype())
    }
    fn enum_members(&self, ty: &str) -> Option<Vec<String>> {
        schema().enums.get(ty).cloned()
    }
    fn type_name(&self) -> String {
        self.0.qualified()
    }
}

fn default_value(ty: &FType) -> Value {
    match ty {
        FType::Str => Value::String(String::new()),
        FType::Int32 | FType::Int64 | FType::Decimal => json!(0),
        FType::DateTime => Value::String(EMPTY_DATE.into()),
        FType::Enum(e) => Value::String(
            schema()
                .enums
                .get(e)
                .and_then(|m| m.first().cloned())
                .unwrap_or_else(|| "No".to_string()),
        ),
    }
}

// ------------------------------------------------------------------------------------------------
// Routing
// ------------------------------------------------------------------------------------------------

fn strip_root(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(ROOT)?;
    if rest.is_empty() || rest.starts_with('/') {
        Some(rest.trim_start_matches('/'))
    } else {
        None
    }
}

pub(crate) fn handle(state: &State, req: &Req) -> Resp {
    let path = decode_path(&req.path);
    let Some(rest) = strip_root(&path) else {
        return no_route(state, &path);
    };
    match rest {
        "" if req.method == "GET" => service_document(state),
        "$metadata" if req.method == "GET" => crate::metadata::fno(),
        "$batch" if req.method == "POST" => run_batch(state, req),
        "" | "$metadata" | "$batch" => odata_err(
            405,
            &format!("The requested resource does not support http method '{}'.", req.method),
        ),
        _ => {
            let mut store = lock(&state.fno);
            execute(state, &mut store, req)
        }
    }
}

fn service_document(state: &State) -> Resp {
    let mut sets: Vec<&String> = schema().entities.keys().collect();
    sets.sort();
    let value: Vec<Value> = sets
        .into_iter()
        .map(|s| json!({"name": s, "kind": "EntitySet", "url": s}))
        .collect();
    Resp::odata_json(
        200,
        &json!({"@odata.context": format!("{}{ROOT}/$metadata", state.fno_url), "value": value}),
    )
}

struct FnoBatch<'a> {
    state: &'a State,
    store: std::sync::MutexGuard<'a, FnoStore>,
}

impl batch::Target for FnoBatch<'_> {
    fn exec(&mut self, req: &Req) -> Resp {
        if strip_root(&decode_path(&req.path)).is_some_and(|r| r == "$batch") {
            return query_err("Batch requests cannot be nested.");
        }
        execute(self.state, &mut self.store, req)
    }
    fn begin(&mut self) {
        self.store.begin();
    }
    fn commit(&mut self) {
        self.store.commit();
    }
    fn rollback(&mut self) {
        self.store.rollback();
    }
    fn error(&self, status: u16, message: &str) -> Resp {
        odata_layer_err(status, message)
    }
}

fn run_batch(state: &State, req: &Req) -> Resp {
    let parts = match batch::parse(req.header("content-type").unwrap_or(""), &req.body) {
        Ok(p) => p,
        Err(e) => return odata_layer_err(400, &e),
    };
    let opts = batch::Options {
        dataverse: false,
        continue_on_error: req.prefers("odata.continue-on-error") && !state.cfg.fno_batch_stops_at_first_failure,
        root_path: ROOT,
    };
    let mut target = FnoBatch {
        state,
        store: lock(&state.fno),
    };
    batch::run(parts, &opts, &mut target)
}

fn cross_company(req: &Req) -> bool {
    req.query_params()
        .iter()
        .any(|(k, v)| k == "cross-company" && v.eq_ignore_ascii_case("true"))
}

pub(crate) fn execute(state: &State, store: &mut FnoStore, req: &Req) -> Resp {
    let path = decode_path(&req.path);
    let Some(rest) = strip_root(&path) else {
        return no_route(state, &path);
    };
    let target = match crate::dataverse::parse_target(rest) {
        Ok(t) => t,
        Err(e) => return query_err(&e),
    };
    let Some(e) = schema().entity(target.set) else {
        return no_route(state, &path);
    };
    let m = req.method.as_str();
    let Some(raw_key) = target.key else {
        return match (m, target.sub.as_slice()) {
            ("GET", []) => get_collection(state, store, e, req),
            ("GET", ["$count"]) => count(state, store, e, req),
            ("POST", []) => create(state, store, e, req),
            _ => odata_err(
                405,
                &format!("The requested resource does not support http method '{m}'."),
            ),
        };
    };
    if !target.sub.is_empty() {
        return no_route(state, &path);
    }
    let key = match parse_key(e, raw_key) {
        Ok(k) => k,
        Err(r) => return r,
    };
    // Company scoping applies to key access too (see module docs).
    let company = key.first().and_then(|(k, v)| (k == "dataAreaId").then(|| v.clone()));
    if let Some(Value::String(c)) = &company
        && !cross_company(req)
        && !c.eq_ignore_ascii_case(&state.cfg.default_company)
    {
        return not_found(&e.set);
    }
    match m {
        "GET" => get_single(state, store, e, req, &key),
        "PATCH" => update(state, store, e, req, &key, false),
        "PUT" => update(state, store, e, req, &key, true),
        "DELETE" => delete(store, e, req, &key),
        _ => odata_err(
            405,
            &format!("The requested resource does not support http method '{m}'."),
        ),
    }
}

// ------------------------------------------------------------------------------------------------
// Keys and rendering
// ------------------------------------------------------------------------------------------------

fn key_mismatch(e: &Entity) -> Resp {
    odata_layer_err(
        400,
        &format!(
            "The number of keys specified in the URI does not match number of key properties for the resource '{}'.",
            e.qualified()
        ),
    )
}

/// Typed key values in the entity's key order.
fn parse_key(e: &Entity, raw: &str) -> Result<Vec<(String, Value)>, Resp> {
    let mut pairs: HashMap<String, String> = HashMap::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut items = Vec::new();
    for c in raw.chars() {
        if c == '\'' {
            in_q = !in_q;
        }
        if c == ',' && !in_q {
            items.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    items.push(cur);
    for it in items {
        let Some((k, v)) = it.split_once('=') else {
            return Err(key_mismatch(e));
        };
        if pairs.insert(k.trim().to_string(), v.trim().to_string()).is_some() {
            return Err(key_mismatch(e));
        }
    }
    if pairs.len() != e.keys.len() || !e.keys.iter().all(|k| pairs.contains_key(k)) {
        return Err(key_mismatch(e));
    }
    let mut out = Vec::new();
    for k in &e.keys {
        let raw = &pairs[k];
        let ty = e.prop(k).map(|p| p.ty.clone()).unwrap_or(FType::Str);
        let bad = || {
            odata_layer_err(
                400,
                &format!(
                    "The key value '{raw}' of key property '{k}' is not a valid {}.",
                    ty.edm()
                ),
            )
        };
        let v = match ty {
            FType::Str | FType::Enum(_) => {
                let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) else {
                    return Err(bad());
                };
                Value::String(inner.replace("''", "'"))
            }
            FType::Int32 | FType::Int64 => Value::from(raw.parse::<i64>().map_err(|_| bad())?),
            FType::Decimal => json!(raw.trim_end_matches(['M', 'm']).parse::<f64>().map_err(|_| bad())?),
            FType::DateTime => {
                let t = crate::http::iso(parse_datetime(raw).ok_or_else(bad)?);
                Value::String(if fno_rules::is_date_only(k) {
                    fno_rules::noon(&t)
                } else {
                    t
                })
            }
        };
        out.push((k.clone(), v));
    }
    Ok(out)
}

fn key_part(v: &Value) -> KeyPart {
    match v {
        Value::Number(n) => KeyPart::Int(n.as_i64().unwrap_or(0)),
        Value::String(s) => KeyPart::Str(s.to_lowercase()),
        other => KeyPart::Str(other.to_string()),
    }
}

fn key_of(e: &Entity, data: &Row) -> Key {
    e.keys
        .iter()
        .map(|k| key_part(data.get(k).unwrap_or(&Value::Null)))
        .collect()
}

fn key_from_pairs(pairs: &[(String, Value)]) -> Key {
    pairs.iter().map(|(_, v)| key_part(v)).collect()
}

/// `Set(dataAreaId='usmf',CustomerAccount='US-001')`
fn key_url(state: &State, e: &Entity, data: &Row) -> String {
    let parts: Vec<String> = e
        .keys
        .iter()
        .map(|k| {
            let v = data.get(k).cloned().unwrap_or(Value::Null);
            let lit = match (&e.prop(k).map(|p| p.ty.clone()), &v) {
                (Some(FType::Str | FType::Enum(_)), Value::String(s)) => format!("'{}'", s.replace('\'', "''")),
                (_, Value::String(s)) => s.clone(),
                (_, other) => other.to_string(),
            };
            format!("{k}={}", encode_key_segment(&lit))
        })
        .collect();
    format!("{}{ROOT}/{}({})", state.fno_url, e.set, parts.join(","))
}

fn etag(r: &FRow) -> String {
    format!("W/\"{}\"", STANDARD.encode(format!("'{},{}'", r.recversion, r.recid)))
}

fn value_of(e: &Entity, data: &Row, prop: &str) -> Value {
    match data.get(prop) {
        Some(v) => v.clone(),
        None => e.prop(prop).map(|p| default_value(&p.ty)).unwrap_or(Value::Null),
    }
}

fn render(store: &FnoStore, e: &Entity, r: &FRow, select: Option<&[String]>) -> Map<String, Value> {
    let data = fno_sales::view(store, e, &r.data);
    let mut m = Map::new();
    m.insert("@odata.etag".into(), Value::String(etag(r)));
    match select {
        Some(cols) => {
            for c in cols {
                m.insert(c.clone(), value_of(e, &data, c));
            }
        }
        None => {
            for p in &e.props {
                m.insert(p.name.clone(), value_of(e, &data, &p.name));
            }
        }
    }
    m
}

fn visible(state: &State, e: &Entity, data: &Row, cross: bool) -> bool {
    cross
        || e.prop("dataAreaId").is_none()
        || data
            .get("dataAreaId")
            .and_then(Value::as_str)
            .is_some_and(|c| c.eq_ignore_ascii_case(&state.cfg.default_company))
}

// ------------------------------------------------------------------------------------------------
// Reads
// ------------------------------------------------------------------------------------------------

const OPTIONS: &[&str] = &["$filter", "$select", "$top", "$skip", "$orderby", "$count", "$expand"];

struct Query {
    filter: Option<of::Expr>,
    order: Vec<of::OrderItem>,
    select: Option<Vec<String>>,
    top: Option<usize>,
    skip: usize,
    count: bool,
}

fn parse_query(e: &Entity, req: &Req) -> Result<Query, Resp> {
    let params = req.query_params();
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    for (k, _) in &params {
        if k.starts_with('$') && !OPTIONS.contains(&k.as_str()) {
            return Err(query_err(&format!("The query parameter '{k}' is not supported.")));
        }
    }
    let sch = ESchema(e);
    let filter = match get("$filter") {
        Some(f) => Some(of::parse(&f, Dialect::Fno, &sch, &[]).map_err(|er| query_err(&er.0))?),
        None => None,
    };
    let order = match get("$orderby") {
        Some(o) => of::parse_orderby(&o, &sch).map_err(|er| query_err(&er.0))?,
        None => Vec::new(),
    };
    let select = match get("$select") {
        Some(s) if s.trim() != "*" => {
            let mut cols = Vec::new();
            for c in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                if e.prop(c).is_none() {
                    return Err(query_err(&format!(
                        "Could not find a property named '{c}' on type '{}'.",
                        e.qualified()
                    )));
                }
                if !cols.iter().any(|x| x == c) {
                    cols.push(c.to_string());
                }
            }
            Some(cols)
        }
        _ => None,
    };
    if let Some(x) = get("$expand") {
        let nav = x.split(['(', ',']).next().unwrap_or("").trim().to_string();
        return Err(query_err(&format!(
            "Could not find a property named '{nav}' on type '{}'.",
            e.qualified()
        )));
    }
    let num = |n: &str| -> Result<Option<usize>, Resp> {
        match get(n) {
            Some(v) => v
                .parse::<usize>()
                .map(Some)
                .map_err(|_| query_err(&format!("Invalid value '{v}' for {n} query option found."))),
            None => Ok(None),
        }
    };
    let top = num("$top")?;
    let skip = num("$skip")?.unwrap_or(0);
    let count = match get("$count").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => return Err(query_err(&format!("'{v}' is not a valid count option."))),
    };
    Ok(Query {
        filter,
        order,
        select,
        top,
        skip,
        count,
    })
}

/// Visible, filtered, ordered rows.
fn matching<'a>(state: &State, store: &'a FnoStore, e: &Entity, q: &Query, cross: bool) -> Vec<&'a FRow> {
    let mut needed = Vec::new();
    if let Some(f) = &q.filter {
        of::props(f, &mut needed);
    }
    for o in &q.order {
        if !needed.contains(&o.prop) {
            needed.push(o.prop.clone());
        }
    }
    let project = |r: &FRow| -> Row {
        let data = fno_sales::view(store, e, &r.data);
        needed.iter().map(|p| (p.clone(), value_of(e, &data, p))).collect()
    };
    let mut rows: Vec<(Vec<SortVal>, &FRow)> = store
        .rows(&e.storage)
        .map(|(_, r)| r)
        .filter(|r| visible(state, e, &r.data, cross) && fno_sales::visible(store, e, &r.data))
        .filter_map(|r| {
            let view = project(r);
            if q.filter.as_ref().is_some_and(|f| !of::eval(f, &view, Dialect::Fno)) {
                return None;
            }
            let k = q.order.iter().map(|o| of::sort_val(view.get(&o.prop), &o.ty)).collect();
            Some((k, r))
        })
        .collect();
    if !q.order.is_empty() {
        let dirs: Vec<bool> = q.order.iter().map(|o| o.desc).collect();
        // Stable: ties stay in key order.
        rows.sort_by(|a, b| of::cmp_keys(&a.0, &b.0, &dirs));
    }
    rows.into_iter().map(|(_, r)| r).collect()
}

fn context(state: &State, e: &Entity, select: Option<&[String]>, suffix: &str) -> String {
    let list = select.map(|s| format!("({})", s.join(","))).unwrap_or_default();
    format!("{}{ROOT}/$metadata#{}{list}{suffix}", state.fno_url, e.set)
}

fn get_collection(state: &State, store: &FnoStore, e: &Entity, req: &Req) -> Resp {
    let q = match parse_query(e, req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let rows = matching(state, store, e, &q, cross_company(req));
    let total = rows.len();
    let want = q.top.unwrap_or(usize::MAX);
    let take = want.min(PAGE);
    let start = q.skip.min(total);
    let end = start.saturating_add(take).min(total);
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(context(state, e, q.select.as_deref(), "")),
    );
    if q.count {
        body.insert("@odata.count".into(), json!(total));
    }
    let value: Vec<Value> = rows[start..end]
        .iter()
        .map(|r| Value::Object(render(store, e, r, q.select.as_deref())))
        .collect();
    body.insert("value".into(), Value::Array(value));
    // Server-driven paging: offset-based link with the rest of the client's query kept.
    if want > PAGE && end < total {
        let mut kept: Vec<String> = req
            .query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let n = decode_query_part(p.split('=').next().unwrap_or(""));
                n != "$skip" && n != "$top"
            })
            .map(str::to_string)
            .collect();
        kept.push(format!("$skip={}", end));
        if let Some(t) = q.top {
            kept.push(format!("$top={}", t - take));
        }
        body.insert(
            "@odata.nextLink".into(),
            Value::String(format!("{}{ROOT}/{}?{}", state.fno_url, e.set, kept.join("&"))),
        );
    }
    Resp::odata_json(200, &Value::Object(body))
}

fn count(state: &State, store: &FnoStore, e: &Entity, req: &Req) -> Resp {
    let q = match parse_query(e, req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let n = matching(state, store, e, &q, cross_company(req)).len();
    Resp::new(200)
        .header("Content-Type", "text/plain")
        .header("OData-Version", "4.0")
        .with_body(n.to_string().into_bytes())
}

fn get_single(state: &State, store: &FnoStore, e: &Entity, req: &Req, key: &[(String, Value)]) -> Resp {
    let q = match parse_query(e, req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let Some(r) = store
        .get(&e.storage, &key_from_pairs(key))
        .filter(|r| fno_sales::visible(store, e, &r.data))
    else {
        return not_found(&e.set);
    };
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(context(state, e, q.select.as_deref(), "/$entity")),
    );
    body.extend(render(store, e, r, q.select.as_deref()));
    Resp::odata_json(200, &Value::Object(body)).header("ETag", etag(r))
}

// ------------------------------------------------------------------------------------------------
// Writes
// ------------------------------------------------------------------------------------------------

/// OData-layer checks of a body: known properties, JSON types, enum members, nullability.
fn check_body(e: &Entity, body: &Map<String, Value>) -> Result<Row, Resp> {
    let mut out = Row::new();
    for (k, v) in body {
        if k.starts_with('@') || k.contains("@odata.") {
            continue;
        }
        let Some(p) = e.prop(k) else {
            return Err(odata_layer_err(
                400,
                &format!(
                    "The property '{k}' does not exist on type '{}'. Make sure to only use property names that are \
                     defined by the type.",
                    e.qualified()
                ),
            ));
        };
        let bad = || {
            odata_layer_err(
                400,
                &format!(
                    "Cannot convert the literal '{v}' to the expected type '{}'.",
                    p.ty.edm()
                ),
            )
        };
        let val = match (&p.ty, v) {
            (ty, Value::Null) => {
                if !p.nullable {
                    return Err(odata_layer_err(
                        400,
                        &format!(
                            "A null value was found for the property named '{k}', which has the expected type \
                             '{0}[Nullable=False]'. The expected type '{0}[Nullable=False]' does not allow null values.",
                            ty.edm()
                        ),
                    ));
                }
                // `$metadata` calls text, date and enum properties nullable, but an X++ field is never null: the
                // write of the row refuses it. Clearing one takes its empty value ("", the empty date, member 0).
                return Err(write_err(
                    e,
                    &format!(
                        "Error: The value null is not valid for field '{k}' ({}); F&O fields hold no null: send {} \
                         to clear it.",
                        ty.edm(),
                        default_value(ty)
                    ),
                ));
            }
            (FType::Str, Value::String(s)) => {
                Value::String(if k == "dataAreaId" { s.to_lowercase() } else { s.clone() })
            }
            (FType::Int32, Value::Number(n)) if n.as_i64().is_some_and(|x| i32::try_from(x).is_ok()) => v.clone(),
            (FType::Int64, Value::Number(n)) if n.is_i64() => v.clone(),
            (FType::Decimal, Value::Number(_)) => v.clone(),
            // A date-only field keeps the (UTC) date and is served at 12:00:00Z (spec/protocols.md B.3).
            (FType::DateTime, Value::String(s)) => match parse_datetime(s).map(crate::http::iso) {
                Some(t) if fno_rules::is_date_only(k) => Value::String(fno_rules::noon(&t)),
                Some(t) => Value::String(t),
                None => return Err(bad()),
            },
            (FType::Enum(en), Value::String(s)) => {
                let members = schema().enums.get(en).cloned().unwrap_or_default();
                if !members.iter().any(|m| m == s) {
                    return Err(odata_layer_err(
                        400,
                        &format!(
                            "The string '{s}' is not a valid enumeration type constant of type '{}'.",
                            p.ty.edm()
                        ),
                    ));
                }
                v.clone()
            }
            _ => return Err(bad()),
        };
        out.insert(k.clone(), val);
    }
    Ok(out)
}

fn s<'a>(data: &'a Row, k: &str) -> &'a str {
    data.get(k).and_then(Value::as_str).unwrap_or("")
}

/// X++ validation of the row about to be written (`validateField`/`validateWrite`): company, keys, the EDT
/// lengths and the table relations of `fno_rules`.
fn validate(store: &FnoStore, e: &Entity, data: &Row) -> Result<(), String> {
    let company = s(data, "dataAreaId").to_string();
    if e.prop("dataAreaId").is_some() && !store.companies.contains(&company) {
        return Err(format!("Error: Company '{company}' does not exist."));
    }
    for k in &e.keys {
        if data.get(k).is_some_and(|v| v.as_str() == Some("")) {
            return Err(format!("Warning: Field '{}' must be filled in.", label(k)));
        }
    }
    fno_rules::check_lengths(e, data)?;
    fno_rules::check_relations(store, e, data)
}

/// Number-sequence keys F&O fills when a create omits them. The sales quotation sequence is Manual (the P2C
/// setup: quotes keep their Sales number), so a quotation header without a number is refused like any missing
/// key; sales orders get the next number of the F&O sequence (orders from Sales bring theirs).
fn number_sequence(e: &Entity) -> Option<&'static str> {
    match e.storage.as_str() {
        "CDSSalesOrderHeaders" => Some("SalesOrderNumber"),
        _ => None,
    }
}

fn parse_json_body(req: &Req) -> Result<Map<String, Value>, Resp> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(odata_layer_err(400, "The request body must be a JSON object.")),
        Err(er) => Err(odata_layer_err(400, &format!("Invalid JSON. {er}"))),
    }
}

/// Create through OData: defaulting and validation included. Returns the stored row's key.
pub(crate) fn create_row(state: &State, store: &mut FnoStore, e: &Entity, vals: Row) -> Result<Key, Resp> {
    let provided: Vec<String> = vals.keys().cloned().collect();
    let mut data = Row::new();
    for p in &e.props {
        data.insert(p.name.clone(), default_value(&p.ty));
    }
    let has_company = e.prop("dataAreaId").is_some();
    if has_company {
        data.insert(
            "dataAreaId".into(),
            Value::String(state.cfg.default_company.to_lowercase()),
        );
    }
    let provided_keys: Vec<String> = e
        .keys
        .iter()
        .filter(|k| vals.get(*k).is_some_and(|v| v.as_str() != Some("")))
        .cloned()
        .collect();
    for (k, v) in vals {
        data.insert(k, v);
    }
    if let Some(ns) = number_sequence(e)
        && !provided_keys.iter().any(|k| k == ns)
    {
        let company = s(&data, "dataAreaId").to_string();
        let n = store.numseq.entry((company, e.storage.clone())).or_insert(100);
        *n += 1;
        let v = format!("{:06}", *n);
        data.insert(ns.into(), Value::String(v));
    }
    for k in &e.keys {
        if k != "dataAreaId" && number_sequence(e) != Some(k.as_str()) && !provided_keys.contains(k) {
            // Non-string keys (line numbers) default to 0, which F&O rejects the same way.
            let is_zero = data.get(k).is_some_and(|v| v == &json!(0) || v.as_str() == Some(""));
            if is_zero {
                return Err(write_err(
                    e,
                    &format!("Warning: Field '{}' must be filled in.", label(k)),
                ));
            }
        }
    }
    fno_sales::prepare(store, e, &mut data, &provided, true);
    validate(store, e, &data).map_err(|m| write_err(e, &m))?;
    let key = key_of(e, &data);
    if store.get(&e.storage, &key).is_some() {
        let shown: Vec<String> = e.keys.iter().rev().map(|k| value_text(&data, k)).collect();
        let (table, field) = (e.table_label(), label(e.keys.last().map(String::as_str).unwrap_or("")));
        // F&O words its messages in the API user's language (user options); p2c must not read the text.
        let text = if state.cfg.fno_language.starts_with("de") {
            format!(
                "Fehler: In {table} kann kein Datensatz erstellt werden. {field}: {}. Der Datensatz ist bereits vorhanden.",
                shown.join(", ")
            )
        } else {
            format!(
                "Error: Cannot create a record in {table}. {field}: {}. The record already exists.",
                shown.join(", ")
            )
        };
        return Err(write_err(e, &text));
    }
    let recid = store.alloc_recid();
    store.put(
        &e.storage,
        key.clone(),
        FRow {
            data: data.clone(),
            recid,
            recversion: 1,
        },
    );
    fno_sales::after_write(store, e, &data);
    Ok(key)
}

fn value_text(data: &Row, k: &str) -> String {
    match data.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

fn create(state: &State, store: &mut FnoStore, e: &Entity, req: &Req) -> Resp {
    let body = match parse_json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let vals = match check_body(e, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let key = match create_row(state, store, e, vals) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Some(r) = store.get(&e.storage, &key) else {
        return not_found(&e.set);
    };
    let url = key_url(state, e, &r.data);
    if req
        .prefer()
        .iter()
        .any(|(n, v)| n == "return" && v.as_deref() == Some("minimal"))
    {
        return Resp::new(204)
            .header("OData-Version", "4.0")
            .header("OData-EntityId", url.clone())
            .header("Location", url)
            .header("Preference-Applied", "return=minimal");
    }
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(context(state, e, None, "/$entity")),
    );
    body.extend(render(store, e, r, None));
    Resp::odata_json(201, &Value::Object(body))
        .header("Location", url)
        .header("ETag", etag(r))
}

fn if_match(req: &Req, r: &FRow) -> Result<(), Resp> {
    if let Some(im) = req.header("if-match") {
        let im = im.trim();
        if im != "*" && !im.split(',').any(|x| x.trim() == etag(r)) {
            return Err(odata_err(
                412,
                "The ETag value in the request header does not match with the current ETag value of the object.",
            ));
        }
    }
    Ok(())
}

fn update(state: &State, store: &mut FnoStore, e: &Entity, req: &Req, key: &[(String, Value)], replace: bool) -> Resp {
    let k = key_from_pairs(key);
    let Some(existing) = store.get(&e.storage, &k).cloned() else {
        return not_found(&e.set);
    };
    if let Err(r) = if_match(req, &existing) {
        return r;
    }
    let body = match parse_json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let vals = match check_body(e, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    for (kn, kv) in key {
        if let Some(v) = vals.get(kn)
            && key_part(v) != key_part(kv)
        {
            return odata_layer_err(400, &format!("The key property '{kn}' cannot be changed by an update."));
        }
    }
    let provided: Vec<String> = vals.keys().cloned().collect();
    let mut data = existing.data.clone();
    if replace {
        for p in &e.props {
            if !e.keys.contains(&p.name) {
                data.insert(p.name.clone(), default_value(&p.ty));
            }
        }
    }
    for (kn, v) in vals {
        if !e.keys.contains(&kn) {
            data.insert(kn, v);
        }
    }
    fno_sales::prepare(store, e, &mut data, &provided, false);
    if let Err(m) = validate(store, e, &data) {
        return write_err(e, &m);
    }
    let recversion = rand::random_range(1..i64::from(i32::MAX));
    let row = FRow {
        data: data.clone(),
        recid: existing.recid,
        recversion,
    };
    store.put(&e.storage, k.clone(), row);
    fno_sales::after_write(store, e, &data);
    if req
        .prefer()
        .iter()
        .any(|(n, v)| n == "return" && v.as_deref() == Some("representation"))
    {
        let Some(r) = store.get(&e.storage, &k) else {
            return not_found(&e.set);
        };
        let mut body = Map::new();
        body.insert(
            "@odata.context".into(),
            Value::String(context(state, e, None, "/$entity")),
        );
        body.extend(render(store, e, r, None));
        return Resp::odata_json(200, &Value::Object(body))
            .header("ETag", etag(r))
            .header("Preference-Applied", "return=representation");
    }
    Resp::new(204).header("OData-Version", "4.0")
}

fn delete(store: &mut FnoStore, e: &Entity, req: &Req, key: &[(String, Value)]) -> Resp {
    let k = key_from_pairs(key);
    let Some(existing) = store.get(&e.storage, &k) else {
        return not_found(&e.set);
    };
    if let Err(r) = if_match(req, existing) {
        return r;
    }
    if let Some(removed) = store.remove(&e.storage, &k) {
        fno_sales::after_write(store, e, &removed.data);
    }
    Resp::new(204).header("OData-Version", "4.0")
}

// ------------------------------------------------------------------------------------------------
// Direct access for the Rust API
// ------------------------------------------------------------------------------------------------

pub(crate) fn entity(set: &str) -> Result<&'static Entity, String> {
    schema()
        .entity(set)
        .ok_or_else(|| format!("p2c-sandbox: unknown F&O entity set '{set}'"))
}

pub(crate) fn direct_vals(e: &Entity, row: &Value) -> Result<Row, String> {
    let Some(m) = row.as_object() else {
        return Err("p2c-sandbox: an F&O row must be a JSON object".into());
    };
    check_body(e, m).map_err(|r| format!("p2c-sandbox: {}: {}", e.set, String::from_utf8_lossy(&r.body)))
}

/// Seed a row: defaults filled, no business validation (seeding sets up what validation later checks).
pub(crate) fn direct_insert(store: &mut FnoStore, e: &Entity, row: &Value) -> Result<(), String> {
    let vals = direct_vals(e, row)?;
    for k in &e.keys {
        if !vals.contains_key(k) {
            return Err(format!("p2c-sandbox: {} row is missing key field '{k}'", e.set));
        }
    }
    let mut data = Row::new();
    for p in &e.props {
        data.insert(p.name.clone(), default_value(&p.ty));
    }
    for (k, v) in vals {
        data.insert(k, v);
    }
    if let Some(c) = data.get("dataAreaId").and_then(Value::as_str) {
        store.companies.insert(c.to_string());
    }
    let key = key_of(e, &data);
    if store.get(&e.storage, &key).is_some() {
        return Err(format!("p2c-sandbox: {} row with this key already exists", e.set));
    }
    let recid = store.alloc_recid();
    store.put(
        &e.storage,
        key,
        FRow {
            data,
            recid,
            recversion: 1,
        },
    );
    Ok(())
}

pub(crate) fn direct_key(e: &Entity, key: &[(&str, &str)]) -> Result<Key, String> {
    let raw: Vec<String> = key
        .iter()
        .map(|(k, v)| match e.prop(k).map(|p| &p.ty) {
            Some(FType::Str | FType::Enum(_)) => format!("{k}='{}'", v.replace('\'', "''")),
            _ => format!("{k}={v}"),
        })
        .collect();
    parse_key(e, &raw.join(","))
        .map(|p| key_from_pairs(&p))
        .map_err(|r| format!("p2c-sandbox: {}: {}", e.set, String::from_utf8_lossy(&r.body)))
}

pub(crate) fn direct_update(store: &mut FnoStore, e: &Entity, key: &Key, patch: &Value) -> Result<(), String> {
    let vals = direct_vals(e, patch)?;
    let Some(existing) = store.get(&e.storage, key).cloned() else {
        return Err(format!("p2c-sandbox: {} has no row with key {key:?}", e.set));
    };
    let mut data = existing.data;
    for (k, v) in vals {
        if !e.keys.contains(&k) {
            data.insert(k, v);
        }
    }
    let recversion = rand::random_range(1..i64::from(i32::MAX));
    store.put(
        &e.storage,
        key.clone(),
        FRow {
            data,
            recid: existing.recid,
            recversion,
        },
    );
    Ok(())
}

/// Rows as the entity shows them (derived fields; the invoice entities' customer filter applies).
pub(crate) fn wire_rows(store: &FnoStore, e: &Entity) -> Vec<Value> {
    store
        .rows(&e.storage)
        .filter(|(_, r)| fno_sales::visible(store, e, &r.data))
        .map(|(_, r)| Value::Object(render(store, e, r, None)))
        .collect()
}

pub(crate) fn wire_row(store: &FnoStore, r: &FRow, e: &Entity) -> Option<Value> {
    fno_sales::visible(store, e, &r.data).then(|| Value::Object(render(store, e, r, None)))
}
