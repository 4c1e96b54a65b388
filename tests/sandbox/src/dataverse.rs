//! Dataverse Web API (`/api/data/v9.2`): queries with server paging, change tracking, writes with upsert and
//! `@odata.bind`, single-property and `$ref` operations, `$batch`.
//!
//! Choices where the docs are silent (spec/protocols.md "Gaps"), each the most plausible real behaviour:
//! * `$skip`, `$search`, `$format`, unknown `$` options: 400, code `0x80060888`.
//! * Unknown entity set: 404 `0x8006088a` `"Resource not found for the segment '<x>'."` (the OData router's text).
//! * Unknown column in `$select`/`$filter`/`$orderby`: 400 `0x80060888` "Could not find a property named ...".
//! * Unknown column in a body: 400 `0x80048d19` (payload error) naming the property.
//! * An invalidated or expired `$deltatoken`: 400 `0x80044352` ExpiredVersionStamp, "Version stamp associated with
//!   the client has expired. Please perform a full sync." (the SDK's error for the same condition).
//! * Change tracking is enabled on every table the sandbox serves.
//! * The paging cookie is keyset-based like the real one (it carries the last row's sort values), so writes
//!   during paging never shift pages or repeat rows; with track-changes it also pins the snapshot version, so
//!   anything written meanwhile shows up in the next delta.
//! * Delta paging: changed rows (by version) then deletions, at most maxpagesize per page; the deltaLink comes on
//!   the last page only.

use std::cmp::Ordering;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::batch;
use crate::dv_schema::{self, ColType, Table};
use crate::http::{
    Req, Resp, decode_path, decode_query_part, encode_query_value, is_guid, now_iso, parse_date, parse_datetime,
};
use crate::odata_filter::{self as of, Dialect, PType, Schema, SortVal};
use crate::store::{DvStore, HIDDEN, Row};
use crate::{State, lock};
use crate::{owner, sales};

pub(crate) const ROOT: &str = "/api/data/v9.2";
const MAX_PAGE: usize = 5000;

pub(crate) fn err(status: u16, code: &str, msg: impl Into<String>) -> Resp {
    Resp::odata_json(status, &json!({"error": {"code": code, "message": msg.into()}}))
}

fn query_err(msg: impl Into<String>) -> Resp {
    err(400, "0x80060888", msg)
}

pub(crate) fn payload_err(set: &str, detail: &str) -> Resp {
    err(
        400,
        "0x80048d19",
        format!(
            "Error identified in Payload provided by the user for Entity :'{set}', For more information on this error \
             please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> InnerException : \
             Microsoft.OData.ODataException: {detail}"
        ),
    )
}

fn not_found_segment(seg: &str) -> Resp {
    err(
        404,
        "0x8006088a",
        format!("Resource not found for the segment '{seg}'."),
    )
}

pub(crate) fn not_found_id(t: &Table, id: &str) -> Resp {
    err(
        404,
        "0x80040217",
        format!("{} With Id = {} Does Not Exist", t.logical, id),
    )
}

struct TableSchema(&'static Table);

pub(crate) fn ptype(c: ColType) -> PType {
    match c {
        ColType::Str(_) => PType::Str,
        ColType::Int | ColType::Choice | ColType::BigInt => PType::Int,
        ColType::Money | ColType::Decimal => PType::Dec,
        ColType::Float => PType::Float,
        ColType::Bool => PType::Bool,
        ColType::DateTime => PType::DateTime,
        ColType::DateOnly => PType::Date,
        ColType::Guid => PType::Guid,
    }
}

impl Schema for TableSchema {
    fn prop_type(&self, name: &str) -> Option<PType> {
        if self.0.write_only.contains(&name) {
            return None;
        }
        self.0.col(name).map(ptype)
    }
    fn type_name(&self) -> String {
        self.0.type_name()
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

pub(crate) struct Target<'a> {
    pub set: &'a str,
    pub key: Option<&'a str>,
    pub sub: Vec<&'a str>,
}

/// `set`, `set(key)`, `set(key)/a/b`: the key may contain quoted `/` and `)`.
pub(crate) fn parse_target(rest: &str) -> Result<Target<'_>, String> {
    let name_end = rest.find(['(', '/']).unwrap_or(rest.len());
    let set = &rest[..name_end];
    let mut after = &rest[name_end..];
    let mut key = None;
    if after.starts_with('(') {
        let mut in_q = false;
        let mut close = None;
        for (i, c) in after.char_indices().skip(1) {
            match c {
                '\'' => in_q = !in_q,
                ')' if !in_q => {
                    close = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(close) = close else {
            return Err(format!("Bad Request - Error in query syntax: '{rest}'."));
        };
        key = Some(&after[1..close]);
        after = &after[close + 1..];
    }
    let sub = after.split('/').filter(|s| !s.is_empty()).collect();
    Ok(Target { set, key, sub })
}

/// Longest GET URL Dataverse accepts (spec/protocols.md: 32 KB; 64 KB inside a `$batch` body).
pub(crate) const MAX_GET_URL: usize = 32_768;

/// Refusals before routing: a GET URL over the limit (414), a JSON write with another content type (415).
/// Microsoft documents the limit and the media type, not these error bodies: the statuses are HTTP's (RFC 9110
/// 15.5.15 and 15.5.16) and the error codes are left empty rather than guessed.
fn refuse_early(req: &Req) -> Option<Resp> {
    let url_len = req.path.len() + 1 + req.query.len();
    if req.method == "GET" && url_len > MAX_GET_URL {
        let msg = format!("The request URL is {url_len} characters long; the limit is {MAX_GET_URL}.");
        return Some(err(414, "", msg));
    }
    let writes_json = matches!(req.method.as_str(), "POST" | "PATCH" | "PUT") && !req.body.is_empty();
    let ct = req.header("content-type").unwrap_or("").to_ascii_lowercase();
    if writes_json && !req.path.ends_with("$batch") && !ct.starts_with("application/json") {
        let msg = format!("The content type '{ct}' is not supported; send application/json.");
        return Some(err(415, "", msg));
    }
    None
}

pub(crate) fn handle(state: &State, req: &Req) -> Resp {
    if let Some(refused) = refuse_early(req) {
        return refused;
    }
    let path = decode_path(&req.path);
    let Some(rest) = strip_root(&path) else {
        return not_found_segment(path.trim_start_matches('/').split('/').next().unwrap_or(""));
    };
    match rest {
        "" if req.method == "GET" => service_document(state),
        "$metadata" if req.method == "GET" => crate::metadata::dataverse(),
        "$batch" if req.method == "POST" => run_batch(state, req),
        "" | "$metadata" | "$batch" => method_not_allowed(&req.method),
        _ => {
            let mut store = lock(&state.dv);
            execute(state, &mut store, req)
        }
    }
}

fn method_not_allowed(m: &str) -> Resp {
    err(
        405,
        "0x80060888",
        format!("The requested resource does not support http method '{m}'."),
    )
}

fn service_document(state: &State) -> Resp {
    let value: Vec<Value> = dv_schema::all_sets()
        .into_iter()
        .map(|s| json!({"name": s, "kind": "EntitySet", "url": s}))
        .collect();
    Resp::odata_json(
        200,
        &json!({"@odata.context": format!("{}{ROOT}/$metadata", state.sales_url), "value": value}),
    )
}

struct DvBatch<'a> {
    state: &'a State,
    store: std::sync::MutexGuard<'a, DvStore>,
}

impl batch::Target for DvBatch<'_> {
    fn exec(&mut self, req: &Req) -> Resp {
        if strip_root(&decode_path(&req.path)).is_some_and(|r| r == "$batch") {
            return query_err("Batch requests cannot be nested.");
        }
        let mut resp = execute(self.state, &mut self.store, req);
        // Inside `$batch` a create's 204 also carries `Location` = the new entity's URL (PAD
        // `webapi/execute-batch-operations-using-web-api.md`, spec/protocols.md A.6); a lone POST has only
        // `OData-EntityId`.
        if req.method == "POST"
            && resp.get_header("Location").is_none()
            && let Some(url) = resp.get_header("OData-EntityId").map(str::to_string)
        {
            resp.set_header("Location", url);
        }
        resp
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
        err(status, "0x80060888", message)
    }
}

fn run_batch(state: &State, req: &Req) -> Resp {
    let ct = req.header("content-type").unwrap_or("");
    let parts = match batch::parse(ct, &req.body) {
        Ok(p) => p,
        Err(e) => return query_err(e),
    };
    if batch::count_requests(&parts) > 1000 {
        return query_err("The number of requests in the batch exceeds the limit of 1000.");
    }
    let opts = batch::Options {
        dataverse: true,
        continue_on_error: req.prefers("odata.continue-on-error"),
        root_path: ROOT,
    };
    let mut target = DvBatch {
        state,
        store: lock(&state.dv),
    };
    batch::run(parts, &opts, &mut target)
}

/// One request against the (locked) store: used directly and by `$batch`.
pub(crate) fn execute(state: &State, store: &mut DvStore, req: &Req) -> Resp {
    let path = decode_path(&req.path);
    let Some(rest) = strip_root(&path) else {
        return not_found_segment(path.trim_start_matches('/').split('/').next().unwrap_or(""));
    };
    let target = match parse_target(rest) {
        Ok(t) => t,
        Err(e) => return query_err(e),
    };
    if target.set == "EntityDefinitions" {
        return crate::dv_metadata::handle(state, req, rest);
    }
    let Some(t) = dv_schema::table(target.set) else {
        return not_found_segment(target.set);
    };
    let m = req.method.as_str();
    let Some(key) = target.key else {
        return match (m, target.sub.as_slice()) {
            ("GET", []) => get_collection(state, store, t, req),
            ("GET", ["$count"]) => count(state, store, t, req),
            ("POST", []) => create(state, store, t, req),
            ("POST", [action]) if crate::dv_multiple::ACTIONS.contains(action) => {
                crate::dv_multiple::handle(state, store, t, req, action)
            }
            _ => method_not_allowed(m),
        };
    };
    let spec = match parse_key(t, key) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let id = find_by_key(store, t, &spec);
    match (m, target.sub.as_slice()) {
        ("GET", []) => get_single(state, store, t, req, &spec, id),
        ("PATCH", []) => upsert(state, store, t, req, &spec, id),
        ("DELETE", []) => delete(store, t, req, &spec, id),
        ("GET", [prop]) => get_property(state, store, t, &spec, id, prop),
        ("PUT", [prop]) => put_property(store, t, req, &spec, id, prop),
        ("DELETE", [prop]) => delete_property(store, t, &spec, id, prop),
        ("PUT" | "POST", [nav, "$ref"]) => set_ref(store, t, req, &spec, id, nav),
        ("DELETE", [nav, "$ref"]) => clear_ref(store, t, &spec, id, nav),
        _ => method_not_allowed(m),
    }
}

// ------------------------------------------------------------------------------------------------
// Keys
// ------------------------------------------------------------------------------------------------

pub(crate) enum KeySpec {
    Id(String),
    Alt(Vec<(String, String)>),
}

fn key_value(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return Some(inner.replace("''", "'"));
    }
    if is_guid(raw) || raw.parse::<f64>().is_ok() {
        return Some(raw.to_ascii_lowercase());
    }
    None
}

fn invalid_key(t: &Table) -> Resp {
    query_err(format!(
        "The key in the request URI is not valid for resource '{0}'. Ensure that the names and number of key \
         properties match the declared or alternate key properties for the resource '{0}'.",
        t.type_name()
    ))
}

pub(crate) fn parse_key(t: &Table, raw: &str) -> Result<KeySpec, Resp> {
    let raw = raw.trim();
    if is_guid(raw) {
        return Ok(KeySpec::Id(raw.to_ascii_lowercase()));
    }
    if !raw.contains('=') {
        return Err(query_err(format!(
            "Bad Request - Error in query syntax. The key '{raw}' is not a GUID."
        )));
    }
    let mut pairs = Vec::new();
    for p in split_outside_single_quotes(raw) {
        let Some((k, v)) = p.split_once('=') else {
            return Err(invalid_key(t));
        };
        let Some(v) = key_value(v) else {
            return Err(invalid_key(t));
        };
        pairs.push((k.trim().to_string(), v));
    }
    if let [(k, v)] = pairs.as_slice()
        && *k == t.pk
    {
        return if is_guid(v) {
            Ok(KeySpec::Id(v.clone()))
        } else {
            Err(invalid_key(t))
        };
    }
    let mut names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    let known = t.alt_keys.iter().any(|ak| {
        let mut a = ak.clone();
        a.sort_unstable();
        a == names
    });
    if known {
        Ok(KeySpec::Alt(pairs))
    } else {
        Err(invalid_key(t))
    }
}

fn split_outside_single_quotes(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    for c in s.chars() {
        if c == '\'' {
            in_q = !in_q;
        }
        if c == ',' && !in_q {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

pub(crate) fn find_by_key(store: &DvStore, t: &Table, spec: &KeySpec) -> Option<String> {
    match spec {
        KeySpec::Id(id) => store.get(t.set, id).map(|_| id.clone()),
        KeySpec::Alt(pairs) => store.table(t.set).and_then(|tb| {
            tb.rows()
                .iter()
                .find(|(_, r)| {
                    pairs.iter().all(|(k, v)| match r.get(k) {
                        Some(Value::String(s)) => s.to_lowercase() == v.to_lowercase(),
                        Some(Value::Number(n)) => n.to_string() == *v,
                        _ => false,
                    })
                })
                .map(|(id, _)| id.clone())
        }),
    }
}

fn key_missing(t: &Table, spec: &KeySpec) -> Resp {
    match spec {
        KeySpec::Id(id) => not_found_id(t, id),
        KeySpec::Alt(_) => err(
            404,
            "0x80060891",
            format!(
                "A record with the specified key values does not exist in {} entity",
                t.logical
            ),
        ),
    }
}

fn entity_url(state: &State, t: &Table, id: &str) -> String {
    format!("{}{ROOT}/{}({id})", state.sales_url, t.set)
}

// ------------------------------------------------------------------------------------------------
// Rendering
// ------------------------------------------------------------------------------------------------

pub(crate) fn etag(row: &Row) -> String {
    format!(
        "W/\"{}\"",
        row.get("versionnumber").and_then(Value::as_u64).unwrap_or(0)
    )
}

struct Expand {
    nav: String,
    select: Option<Vec<String>>,
}

struct Shape {
    select: Option<Vec<String>>,
    expand: Vec<Expand>,
    annotations: bool,
}

fn wants_annotations(req: &Req) -> bool {
    req.prefer_value("odata.include-annotations").is_some_and(|v| {
        v == "*"
            || v.contains("OData.Community.Display.V1.FormattedValue")
            || v.contains("Microsoft.Dynamics.CRM.lookuplogicalname")
            || v.contains("Microsoft.Dynamics.CRM.associatednavigationproperty")
    })
}

fn parse_select(t: &Table, raw: &str) -> Result<Vec<String>, Resp> {
    let mut out = Vec::new();
    for c in raw.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        if t.write_only.contains(&c) {
            return Err(query_err(format!(
                "The property '{c}' of type '{}' cannot be read (IsValidForRead is false).",
                t.type_name()
            )));
        }
        if t.col(c).is_none() {
            return Err(query_err(format!(
                "Could not find a property named '{c}' on type '{}'.",
                t.type_name()
            )));
        }
        if !out.iter().any(|x| x == c) {
            out.push(c.to_string());
        }
    }
    Ok(out)
}

fn parse_expand(t: &Table, raw: &str) -> Result<Vec<Expand>, Resp> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    let mut items = Vec::new();
    for c in raw.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    for it in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (nav, opts) = match it.find('(') {
            Some(i) => (&it[..i], Some(it[i + 1..].trim_end_matches(')'))),
            None => (it, None),
        };
        let Some((_, target)) = t.nav(nav) else {
            return Err(query_err(format!(
                "Could not find a property named '{nav}' on type '{}'.",
                t.type_name()
            )));
        };
        let mut select = None;
        if let Some(opts) = opts {
            for o in opts.split(';').filter(|o| !o.trim().is_empty()) {
                let (k, v) = o.split_once('=').unwrap_or((o, ""));
                if k.trim() != "$select" {
                    return Err(query_err(format!(
                        "The query option '{}' inside $expand is not supported by this service emulator.",
                        k.trim()
                    )));
                }
                let tt = dv_schema::table(target).ok_or_else(|| not_found_segment(target))?;
                select = Some(parse_select(tt, v)?);
            }
        }
        out.push(Expand {
            nav: nav.to_string(),
            select,
        });
    }
    Ok(out)
}

fn render(store: &DvStore, t: &Table, row: &Row, shape: &Shape) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("@odata.etag".into(), Value::String(etag(row)));
    let push = |m: &mut Map<String, Value>, c: &str| {
        let v = row.get(c).cloned().unwrap_or(Value::Null);
        if shape.annotations
            && let Some(l) = t.lookup_by_value_col(c)
            && let Some(id) = v.as_str()
        {
            let target = row
                .get(&format!("{HIDDEN}{}", l.name))
                .and_then(Value::as_str)
                .or_else(|| l.targets.first().copied())
                .unwrap_or("");
            if let Some(tt) = dv_schema::table(target) {
                let name = store
                    .get(tt.set, id)
                    .and_then(|r| r.get(tt.primary_name))
                    .cloned()
                    .unwrap_or(Value::Null);
                let nav = l.nav_name(tt.logical);
                m.insert(format!("{c}@OData.Community.Display.V1.FormattedValue"), name);
                m.insert(
                    format!("{c}@Microsoft.Dynamics.CRM.associatednavigationproperty"),
                    Value::String(nav),
                );
                m.insert(
                    format!("{c}@Microsoft.Dynamics.CRM.lookuplogicalname"),
                    Value::String(tt.logical.into()),
                );
            }
        }
        m.insert(c.to_string(), v);
    };
    match &shape.select {
        Some(cols) => {
            for c in cols {
                push(&mut m, c);
            }
            if !cols.contains(&t.pk) {
                push(&mut m, &t.pk);
            }
        }
        None => {
            for (c, _) in t.columns.iter().filter(|(c, _)| !t.write_only.contains(&c.as_str())) {
                push(&mut m, c);
            }
        }
    }
    for e in &shape.expand {
        let Some((l, mut target)) = t.nav(&e.nav) else { continue };
        let kind = row.get(&format!("{HIDDEN}{}", l.name)).and_then(Value::as_str);
        if l.principal {
            // The owner expands as whichever principal it is.
            target = l.targets.iter().copied().find(|s| Some(*s) == kind).unwrap_or(target);
        }
        let linked = row
            .get(&l.value_col())
            .and_then(Value::as_str)
            .filter(|_| l.targets.len() == 1 || kind == Some(target))
            .and_then(|id| store.get(target, id));
        let v = match (linked, dv_schema::table(target)) {
            (Some(r), Some(tt)) => {
                let inner = Shape {
                    select: e.select.clone(),
                    expand: Vec::new(),
                    annotations: shape.annotations,
                };
                Value::Object(render(store, tt, r, &inner))
            }
            _ => Value::Null,
        };
        m.insert(e.nav.clone(), v);
    }
    m
}

fn context(state: &State, t: &Table, shape: &Shape, suffix: &str) -> String {
    let mut cols: Vec<String> = shape.select.clone().unwrap_or_default();
    for e in &shape.expand {
        match &e.select {
            Some(s) => cols.push(format!("{}({})", e.nav, s.join(","))),
            None => cols.push(format!("{}()", e.nav)),
        }
    }
    let list = if cols.is_empty() {
        String::new()
    } else {
        format!("({})", cols.join(","))
    };
    format!("{}{ROOT}/$metadata#{}{list}{suffix}", state.sales_url, t.set)
}

// ------------------------------------------------------------------------------------------------
// Queries
// ------------------------------------------------------------------------------------------------

const OPTIONS: &[&str] = &[
    "$select",
    "$filter",
    "$orderby",
    "$top",
    "$count",
    "$expand",
    "$skiptoken",
    "$deltatoken",
];

/// Paging state carried (base64 JSON) inside a cookie shaped like the real one.
#[derive(Default)]
struct Cookie {
    page: u64,
    last: Vec<Value>,
    /// Snapshot version pinned by the first page of a change-tracking read.
    version: Option<u64>,
}

fn encode_cookie(t: &Table, c: &Cookie, tracking: bool, first_id: &str, last_id: &str) -> String {
    let state = json!({"p": c.page, "k": c.last, "v": c.version});
    let sb = URL_SAFE_NO_PAD.encode(state.to_string());
    let inner = format!(
        "<cookie page=\"{}\" sb=\"{sb}\"><{} last=\"{{{}}}\" first=\"{{{}}}\" /></cookie>",
        c.page,
        t.pk,
        last_id.to_ascii_uppercase(),
        first_id.to_ascii_uppercase()
    );
    format!(
        "<cookie pagenumber=\"{}\" pagingcookie=\"{}\" istracking=\"{}\" />",
        c.page + 1,
        // Encoded once inside the cookie; the link encodes the whole cookie again (as the real nextLink does).
        encode_query_value(&inner),
        if tracking { "True" } else { "False" }
    )
}

fn decode_cookie(raw: &str) -> Option<Cookie> {
    let pc = raw.split("pagingcookie=\"").nth(1)?.split('"').next()?;
    let inner = decode_query_part(pc);
    let sb = inner.split("sb=\"").nth(1)?.split('"').next()?;
    let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(sb).ok()?).ok()?;
    Some(Cookie {
        page: v.get("p")?.as_u64()?,
        last: v.get("k")?.as_array()?.clone(),
        version: v.get("v").and_then(Value::as_u64),
    })
}

/// A link to the same query with `$skiptoken` / `$deltatoken` replaced, keeping the client's other parameters
/// byte for byte.
fn link(state: &State, t: &Table, raw_query: &str, drop: &[&str], add: (&str, &str)) -> String {
    let mut kept: Vec<String> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = decode_query_part(p.split('=').next().unwrap_or(""));
            !drop.contains(&name.as_str())
        })
        .map(str::to_string)
        .collect();
    kept.push(format!("{}={}", add.0, encode_query_value(add.1)));
    format!("{}{ROOT}/{}?{}", state.sales_url, t.set, kept.join("&"))
}

fn page_size(req: &Req) -> Option<usize> {
    req.prefer_value("odata.maxpagesize")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .map(|n| n.min(MAX_PAGE))
}

fn delta_token(version: u64) -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{version}!{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
        u8::from(now.month()),
        now.day(),
        now.year(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

fn expired_token() -> Resp {
    err(
        400,
        "0x80044352",
        "Version stamp associated with the client has expired. Please perform a full sync.",
    )
}

/// A change-tracking read of a table whose change tracking is off: ChangeTrackingNotEnabledForEntity `0x80072491`,
/// "Entity {0} isn't enabled for change tracking." (PAD `reference/web-service-error-codes`). Which HTTP status the
/// Web API gives it is not documented: 400, like the platform's other refusals of a request.
fn change_tracking_off(t: &Table) -> Resp {
    err(
        400,
        "0x80072491",
        format!("Entity {} isn't enabled for change tracking.", t.logical),
    )
}

fn get_collection(state: &State, store: &DvStore, t: &'static Table, req: &Req) -> Resp {
    let params = req.query_params();
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    for (k, _) in &params {
        if k.starts_with('$') && !OPTIONS.contains(&k.as_str()) {
            return query_err(format!("The query parameter {k} is not supported"));
        }
    }
    let delta = get("$deltatoken");
    let tracking = req.prefers("odata.track-changes") || delta.is_some();
    if tracking && !crate::tracks_changes(state, t.set) {
        return change_tracking_off(t);
    }
    if tracking {
        for o in ["$filter", "$orderby", "$expand", "$top"] {
            if get(o).is_some() {
                return query_err(format!(
                    "The \"{o}\" query parameter isn't supported when Change Tracking is enabled."
                ));
            }
        }
    }
    let shape = Shape {
        select: match get("$select") {
            Some(s) => match parse_select(t, &s) {
                Ok(v) => Some(v),
                Err(r) => return r,
            },
            None => None,
        },
        expand: match get("$expand") {
            Some(s) => match parse_expand(t, &s) {
                Ok(v) => v,
                Err(r) => return r,
            },
            None => Vec::new(),
        },
        annotations: wants_annotations(req),
    };
    let cookie = match get("$skiptoken") {
        Some(s) => match decode_cookie(&s) {
            Some(c) => Some(c),
            None => return query_err("The $skiptoken value is not a valid paging cookie."),
        },
        None => None,
    };
    let maxpage = page_size(req);
    let mut applied = Vec::new();
    if let Some(n) = maxpage {
        applied.push(format!("odata.maxpagesize={n}"));
    }
    if tracking {
        applied.push("odata.track-changes".to_string());
    }
    if let Some(a) = req.prefer_value("odata.include-annotations") {
        applied.push(format!("odata.include-annotations=\"{a}\""));
    }
    let page = maxpage.unwrap_or(MAX_PAGE);

    if let Some(tok) = delta {
        return delta_page(state, store, t, req, &shape, &tok, cookie, page, applied);
    }

    let schema = TableSchema(t);
    let aliases: Vec<(String, String)> = params.iter().filter(|(k, _)| k.starts_with('@')).cloned().collect();
    let filter = match get("$filter") {
        Some(f) => match of::parse(&f, Dialect::Dataverse, &schema, &aliases) {
            Ok(e) => Some(e),
            Err(e) => return query_err(e.0),
        },
        None => None,
    };
    let order = match get("$orderby") {
        Some(o) => match of::parse_orderby(&o, &schema) {
            Ok(v) => v,
            Err(e) => return query_err(e.0),
        },
        None => Vec::new(),
    };
    let top = match get("$top") {
        Some(v) => match v.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => return query_err(format!("Invalid value '{v}' for $top query option found.")),
        },
        None => None,
    };
    let want_count = match get("$count").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => return query_err(format!("'{v}' is not a valid count option.")),
    };

    let mut dirs: Vec<bool> = order.iter().map(|o| o.desc).collect();
    dirs.push(false);
    let key_of = |r: &Row| -> Vec<SortVal> {
        let mut k: Vec<SortVal> = order.iter().map(|o| of::sort_val(r.get(&o.prop), &o.ty)).collect();
        k.push(of::sort_val(r.get(&t.pk), &PType::Guid));
        k
    };
    let keep = |r: &&Row| filter.as_ref().is_none_or(|f| of::eval(f, r, Dialect::Dataverse));
    let candidates: Vec<&Row> = match (
        store.table(t.set),
        filter.as_ref().and_then(|f| of::key_candidates(f, &t.pk)),
    ) {
        (None, _) => Vec::new(),
        // A filter on the primary key is an index lookup in the real service, not a table scan.
        (Some(tb), Some(mut ids)) => {
            ids.sort();
            ids.dedup();
            ids.iter().filter_map(|id| tb.rows().get(id)).filter(keep).collect()
        }
        (Some(tb), None) => match filter.as_ref().and_then(|f| tb.index_candidates(f)) {
            // So is one on an indexed column (a header's lines, orders by name).
            Some((col, mut ids)) => {
                ids.sort();
                ids.dedup();
                ids.iter().flat_map(|id| tb.referencing(col, id)).filter(keep).collect()
            }
            None => tb.rows().values().filter(keep).collect(),
        },
    };
    let mut rows: Vec<(Vec<SortVal>, &Row)> = candidates.into_iter().map(|r| (key_of(r), r)).collect();
    rows.sort_by(|a, b| of::cmp_keys(&a.0, &b.0, &dirs));
    let total = rows.len();

    // $top without maxpagesize is a plain limit (no paging); with maxpagesize it is ignored (spec A.3).
    let (limit, paged) = match (top, maxpage) {
        (Some(n), None) => (n.min(MAX_PAGE), false),
        _ => (page, true),
    };
    let start = match &cookie {
        Some(c) => {
            let last: Vec<SortVal> = c.last.iter().map(SortVal::from_json).collect();
            rows.partition_point(|(k, _)| of::cmp_keys(k, &last, &dirs) != Ordering::Greater)
        }
        None => 0,
    };
    let snapshot = cookie.as_ref().and_then(|c| c.version).unwrap_or(store.version);
    let end = (start + limit).min(rows.len());
    let slice = &rows[start.min(end)..end];
    let more = paged && end < rows.len();

    let mut body = Map::new();
    body.insert("@odata.context".into(), Value::String(context(state, t, &shape, "")));
    if want_count {
        body.insert("@odata.count".into(), json!(total.min(MAX_PAGE)));
        if req
            .prefer_value("odata.include-annotations")
            .is_some_and(|v| v == "*" || v.contains("totalrecordcount"))
        {
            body.insert(
                "@Microsoft.Dynamics.CRM.totalrecordcount".into(),
                json!(total.min(MAX_PAGE)),
            );
            body.insert(
                "@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded".into(),
                json!(total > MAX_PAGE),
            );
        }
    }
    let value: Vec<Value> = slice
        .iter()
        .map(|(_, r)| Value::Object(render(store, t, r, &shape)))
        .collect();
    body.insert("value".into(), Value::Array(value));
    if more && let (Some(first), Some(last)) = (slice.first(), slice.last()) {
        let c = Cookie {
            page: cookie.as_ref().map_or(1, |c| c.page + 1),
            last: last.0.iter().map(SortVal::to_json).collect(),
            version: tracking.then_some(snapshot),
        };
        let id = |r: &Row| r.get(&t.pk).and_then(Value::as_str).unwrap_or("").to_string();
        let tok = encode_cookie(t, &c, tracking, &id(first.1), &id(last.1));
        body.insert(
            "@odata.nextLink".into(),
            Value::String(link(state, t, &req.query, &["$skiptoken"], ("$skiptoken", &tok))),
        );
    } else if tracking {
        let tok = delta_token(snapshot);
        body.insert(
            "@odata.deltaLink".into(),
            Value::String(link(
                state,
                t,
                &req.query,
                &["$skiptoken", "$deltatoken"],
                ("$deltatoken", &tok),
            )),
        );
    }
    let mut resp = Resp::odata_json(200, &Value::Object(body));
    for a in applied {
        resp.set_header("Preference-Applied", a);
    }
    resp
}

#[allow(clippy::too_many_arguments)]
fn delta_page(
    state: &State,
    store: &DvStore,
    t: &'static Table,
    req: &Req,
    shape: &Shape,
    tok: &str,
    cookie: Option<Cookie>,
    page: usize,
    applied: Vec<String>,
) -> Resp {
    let since = match delta_since(store, tok) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let snapshot = cookie.as_ref().and_then(|c| c.version).unwrap_or(store.version);
    // (kind, version, id): changed rows first by version, then deletions.
    let mut items: Vec<([SortVal; 3], Option<&Row>)> = Vec::new();
    if let Some(tb) = store.table(t.set) {
        for (id, r) in tb.rows() {
            let v = r.get("versionnumber").and_then(Value::as_u64).unwrap_or(0);
            if v > since {
                items.push((
                    [SortVal::Num(0.0), SortVal::Num(v as f64), SortVal::Str(id.clone())],
                    Some(r),
                ));
            }
        }
        for (id, v) in &tb.tombstones {
            if *v > since && !tb.rows().contains_key(id) {
                items.push((
                    [SortVal::Num(1.0), SortVal::Num(*v as f64), SortVal::Str(id.clone())],
                    None,
                ));
            }
        }
    }
    let dirs = [false, false, false];
    items.sort_by(|a, b| of::cmp_keys(&a.0, &b.0, &dirs));
    let start = match &cookie {
        Some(c) => {
            let last: Vec<SortVal> = c.last.iter().map(SortVal::from_json).collect();
            items.partition_point(|(k, _)| of::cmp_keys(k, &last, &dirs) != Ordering::Greater)
        }
        None => 0,
    };
    let end = (start + page).min(items.len());
    let slice = &items[start.min(end)..end];
    let deleted_ctx = format!("{}{ROOT}/$metadata#{}/$deletedEntity", state.sales_url, t.set);
    let value: Vec<Value> = slice
        .iter()
        .map(|(k, r)| match r {
            Some(r) => Value::Object(render(store, t, r, shape)),
            None => {
                let SortVal::Str(id) = &k[2] else { return Value::Null };
                json!({"@odata.context": deleted_ctx, "id": id, "reason": "deleted"})
            }
        })
        .collect();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(context(state, t, shape, "/$delta")),
    );
    body.insert("value".into(), Value::Array(value));
    if end < items.len()
        && let Some(last) = slice.last()
    {
        let c = Cookie {
            page: cookie.as_ref().map_or(1, |c| c.page + 1),
            last: last.0.iter().map(SortVal::to_json).collect(),
            version: Some(snapshot),
        };
        let sid = |x: &[SortVal; 3]| {
            if let SortVal::Str(s) = &x[2] {
                s.clone()
            } else {
                String::new()
            }
        };
        let tokc = encode_cookie(t, &c, true, &sid(&slice[0].0), &sid(&last.0));
        body.insert(
            "@odata.nextLink".into(),
            Value::String(link(state, t, &req.query, &["$skiptoken"], ("$skiptoken", &tokc))),
        );
    } else {
        let ntok = delta_token(snapshot);
        body.insert(
            "@odata.deltaLink".into(),
            Value::String(link(
                state,
                t,
                &req.query,
                &["$skiptoken", "$deltatoken"],
                ("$deltatoken", &ntok),
            )),
        );
    }
    let mut resp = Resp::odata_json(200, &Value::Object(body));
    for a in applied {
        resp.set_header("Preference-Applied", a);
    }
    resp
}

/// The version a delta token stands for, or the expired-token error (invalidated, or from the future).
fn delta_since(store: &DvStore, tok: &str) -> Result<u64, Resp> {
    match tok.split('!').next().and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(since) if since >= store.delta_floor && since <= store.version => Ok(since),
        _ => Err(expired_token()),
    }
}

/// How many changes a delta link would return: rows changed since `since` and rows deleted since then.
fn changes_since(store: &DvStore, t: &Table, since: u64) -> usize {
    let Some(tb) = store.table(t.set) else { return 0 };
    let changed = tb
        .rows()
        .values()
        .filter(|r| r.get("versionnumber").and_then(Value::as_u64).unwrap_or(0) > since)
        .count();
    let deleted = tb
        .tombstones
        .iter()
        .filter(|(id, v)| **v > since && !tb.rows().contains_key(*id))
        .count();
    changed + deleted
}

fn text_count(n: usize) -> Resp {
    Resp::new(200)
        .header("Content-Type", "text/plain")
        .header("OData-Version", "4.0")
        .with_body(n.min(MAX_PAGE).to_string().into_bytes())
}

/// `/$count`: the rows (with `$filter`), or with a `$deltatoken` the number of changes since it ("GET
/// accounts/$count?$deltatoken=..." returns the count of changes: PAD
/// `use-change-tracking-synchronize-data-external-systems.md`, spec/protocols.md A.5). A delta count takes no
/// `$filter`, like every change-tracking read, and needs change tracking on the table.
fn count(state: &State, store: &DvStore, t: &'static Table, req: &Req) -> Resp {
    let params = req.query_params();
    if let Some((_, tok)) = params.iter().find(|(k, _)| k == "$deltatoken") {
        if !crate::tracks_changes(state, t.set) {
            return change_tracking_off(t);
        }
        if params.iter().any(|(k, _)| k == "$filter") {
            return query_err("The \"$filter\" query parameter isn't supported when Change Tracking is enabled.");
        }
        return match delta_since(store, tok) {
            Ok(since) => text_count(changes_since(store, t, since)),
            Err(r) => r,
        };
    }
    let schema = TableSchema(t);
    let aliases: Vec<(String, String)> = params.iter().filter(|(k, _)| k.starts_with('@')).cloned().collect();
    let filter = match params.iter().find(|(k, _)| k == "$filter") {
        Some((_, f)) => match of::parse(f, Dialect::Dataverse, &schema, &aliases) {
            Ok(e) => Some(e),
            Err(e) => return query_err(e.0),
        },
        None => None,
    };
    let n = store
        .table(t.set)
        .map(|tb| {
            tb.rows()
                .values()
                .filter(|r| filter.as_ref().is_none_or(|f| of::eval(f, r, Dialect::Dataverse)))
                .count()
        })
        .unwrap_or(0);
    text_count(n)
}

fn get_single(
    state: &State,
    store: &DvStore,
    t: &'static Table,
    req: &Req,
    spec: &KeySpec,
    id: Option<String>,
) -> Resp {
    let params = req.query_params();
    for (k, _) in &params {
        if k.starts_with('$') && !["$select", "$expand"].contains(&k.as_str()) {
            return query_err(format!("The query parameter {k} is not supported"));
        }
    }
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let shape = Shape {
        select: match get("$select").map(|s| parse_select(t, &s)) {
            Some(Ok(v)) => Some(v),
            Some(Err(r)) => return r,
            None => None,
        },
        expand: match get("$expand").map(|s| parse_expand(t, &s)) {
            Some(Ok(v)) => v,
            Some(Err(r)) => return r,
            None => Vec::new(),
        },
        annotations: wants_annotations(req),
    };
    let Some(row) = id.and_then(|id| store.get(t.set, &id)) else {
        return key_missing(t, spec);
    };
    let tag = etag(row);
    if shape.expand.is_empty() && req.header("if-none-match").is_some_and(|v| v.trim() == tag) {
        return Resp::new(304).header("ETag", tag).header("OData-Version", "4.0");
    }
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(context(state, t, &shape, "/$entity")),
    );
    body.extend(render(store, t, row, &shape));
    Resp::odata_json(200, &Value::Object(body)).header("ETag", tag)
}

fn get_property(state: &State, store: &DvStore, t: &Table, spec: &KeySpec, id: Option<String>, prop: &str) -> Resp {
    if t.col(prop).is_none() {
        return not_found_segment(prop);
    }
    let Some((id, row)) = id.and_then(|id| store.get(t.set, &id).map(|r| (id, r))) else {
        return key_missing(t, spec);
    };
    let v = row.get(prop).cloned().unwrap_or(Value::Null);
    if v.is_null() {
        return Resp::new(204).header("OData-Version", "4.0");
    }
    Resp::odata_json(
        200,
        &json!({"@odata.context": format!("{}{ROOT}/$metadata#{}({id})/{prop}", state.sales_url, t.set), "value": v}),
    )
}

// ------------------------------------------------------------------------------------------------
// Writes
// ------------------------------------------------------------------------------------------------

/// Resolve an `@odata.bind` / `@odata.id` reference to (entity set, id).
fn resolve_ref(store: &DvStore, raw: &str) -> Result<(&'static Table, String), Resp> {
    let mut s = raw.trim();
    let abs = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://"));
    if let Some(p) = abs {
        s = p.find('/').map_or("", |i| &p[i..]);
    }
    let s = s.strip_prefix(ROOT).unwrap_or(s).trim_start_matches('/');
    let tgt = parse_target(s).map_err(query_err)?;
    let (Some(key), true) = (tgt.key, tgt.sub.is_empty()) else {
        return Err(query_err(format!("The URI '{raw}' is not a valid entity reference.")));
    };
    let t = dv_schema::table(tgt.set).ok_or_else(|| not_found_segment(tgt.set))?;
    let spec = parse_key(t, key)?;
    match find_by_key(store, t, &spec) {
        Some(id) => Ok((t, id)),
        None => Err(key_missing(t, &spec)),
    }
}

fn check_value(t: &Table, col: &str, ty: ColType, v: &Value) -> Result<Value, Resp> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let bad = |edm: &str| {
        payload_err(
            t.set,
            &format!("Cannot convert the literal '{v}' to the expected type '{edm}' (property '{col}')."),
        )
    };
    match ty {
        ColType::Str(max) => {
            let Some(s) = v.as_str() else {
                return Err(bad("Edm.String"));
            };
            if s.chars().count() > max {
                return Err(err(
                    400,
                    "0x80044331",
                    format!(
                        "A validation error occurred.  The length of the '{col}' attribute of the '{}' entity exceeded \
                         the maximum allowed length of '{max}'.",
                        t.logical
                    ),
                ));
            }
            Ok(v.clone())
        }
        ColType::Int | ColType::Choice => match v.as_i64() {
            Some(n) if i32::try_from(n).is_ok() => Ok(v.clone()),
            _ => Err(bad("Edm.Int32")),
        },
        ColType::BigInt => v.as_i64().map(|_| v.clone()).ok_or_else(|| bad("Edm.Int64")),
        ColType::Money | ColType::Decimal | ColType::Float => {
            if v.is_number() {
                Ok(v.clone())
            } else {
                Err(bad(ty.edm()))
            }
        }
        ColType::Bool => v.as_bool().map(|_| v.clone()).ok_or_else(|| bad("Edm.Boolean")),
        ColType::DateTime => match v.as_str().and_then(parse_datetime) {
            Some(d) => Ok(Value::String(crate::http::iso(d))),
            None => Err(bad("Edm.DateTimeOffset")),
        },
        ColType::DateOnly => match v.as_str().and_then(parse_date) {
            Some(_) => Ok(v.clone()),
            None => Err(bad("Edm.Date")),
        },
        ColType::Guid => match v.as_str() {
            Some(s) if is_guid(s) => Ok(Value::String(s.to_ascii_lowercase())),
            _ => Err(bad("Edm.Guid")),
        },
    }
}

/// Validate a request body into column values (lookups resolved). Hidden keys carry polymorphic targets.
pub(crate) fn apply_body(store: &DvStore, t: &Table, body: &Map<String, Value>, create: bool) -> Result<Row, Resp> {
    let mut out = Row::new();
    for (k, v) in body {
        if let Some(nav) = k.strip_suffix("@odata.bind") {
            let Some((l, expected)) = t.nav(nav) else {
                return Err(payload_err(
                    t.set,
                    &format!(
                        "An undeclared property '{nav}' which only has property annotations in the payload but no \
                         property value was found in the payload. In OData, only declared navigation properties and \
                         declared named streams can be represented as properties without values."
                    ),
                ));
            };
            match v {
                Value::Null => {
                    out.insert(l.value_col(), Value::Null);
                }
                Value::String(s) => {
                    let (tt, id) = resolve_ref(store, s)?;
                    let fits = tt.set == expected || (l.principal && l.targets.contains(&tt.set));
                    if !fits {
                        return Err(payload_err(
                            t.set,
                            &format!(
                                "The entity set '{}' is not valid for the navigation property '{nav}'.",
                                tt.set
                            ),
                        ));
                    }
                    out.insert(l.value_col(), Value::String(id));
                    out.insert(format!("{HIDDEN}{}", l.name), Value::String(tt.set.to_string()));
                }
                _ => {
                    return Err(payload_err(
                        t.set,
                        &format!(
                            "A collection of entity references was found for the single-valued navigation property '{nav}'."
                        ),
                    ));
                }
            }
            continue;
        }
        if k == "@odata.type" {
            let ok = v.as_str().is_some_and(|s| s.trim_start_matches('#') == t.type_name());
            if !ok {
                return Err(payload_err(
                    t.set,
                    &format!("The type {v} is not compatible with '{}'.", t.type_name()),
                ));
            }
            continue;
        }
        if k.contains('@') {
            continue; // instance annotations are ignored
        }
        let Some(ty) = t.col(k) else {
            if t.nav(k).is_some() {
                return Err(payload_err(
                    t.set,
                    &format!(
                        "Deep insert through '{k}' is not supported by this service emulator; use '{k}@odata.bind'."
                    ),
                ));
            }
            return Err(payload_err(
                t.set,
                &format!(
                    "The property '{k}' does not exist on type '{}'. Make sure to only use property names that are \
                     defined by the type or mark the type as open type.",
                    t.type_name()
                ),
            ));
        };
        if t.lookup_by_value_col(k).is_some() {
            return Err(err(
                400,
                "0x80048d19",
                "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead.",
            ));
        }
        if k == "statecode" && create {
            return Err(err(
                400,
                "0x80040203",
                format!(
                    "statecode is not valid for create on {}: create the record, then update statecode and statuscode.",
                    t.logical
                ),
            ));
        }
        if t.read_only.iter().any(|c| c == k) {
            continue; // system columns: silently ignored like the platform does
        }
        if create && sales::ignored_on_create(t, k) {
            continue; // IsValidForCreate = false: the platform drops it (system pricing fills the amounts)
        }
        if *k == t.pk && !create {
            continue; // key data in the URL wins on update
        }
        let value = check_value(t, k, ty, v)?;
        // Choice values are checked on the Web API only: the Rust API seeds what an organization may hold,
        // options it added to a choice included.
        if let (ColType::Choice, Some(n)) = (ty, value.as_i64()) {
            crate::dv_options::check_choice(t, k, n)?;
        }
        out.insert(k.clone(), value);
    }
    if create {
        crate::catalog::create_defaults(store, t, &mut out);
    }
    Ok(out)
}

fn parse_body(t: &Table, req: &Req) -> Result<Map<String, Value>, Resp> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(payload_err(t.set, "The request body must be a JSON object.")),
        Err(e) => Err(payload_err(t.set, &format!("Invalid JSON. {e}"))),
    }
}

fn autonumber(store: &mut DvStore, prefix: &str) -> String {
    use rand::Rng;
    store.autonumber += 1;
    let mut r = rand::rng();
    let suffix: String = (0..6)
        .map(|_| char::from(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789"[r.random_range(0..32)]))
        .collect();
    format!("{prefix}-{:05}-{suffix}", store.autonumber)
}

fn computed(t: &Table, row: &mut Row) {
    crate::registration::derive(t, row);
    if t.set == "contacts" {
        let part = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or("").trim().to_string();
        let full = [part("firstname"), part("lastname")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        row.insert(
            "fullname".into(),
            if full.is_empty() {
                Value::Null
            } else {
                Value::String(full)
            },
        );
    }
}

/// Validate a state change in a patch (SetState through PATCH).
fn check_state(t: &Table, existing: Option<&Row>, patch: &mut Row) -> Result<(), Resp> {
    if !t.has_state {
        return Ok(());
    }
    let state = patch.get("statecode").and_then(Value::as_i64);
    let status = patch.get("statuscode").and_then(Value::as_i64);
    if state.is_none() && status.is_none() {
        return Ok(());
    }
    let st = state
        .or_else(|| existing.and_then(|r| r.get("statecode")).and_then(Value::as_i64))
        .unwrap_or(0);
    let sc = match status {
        Some(-1) | None => dv_schema::default_status_for_state(t, st),
        Some(s) => s,
    };
    if !dv_schema::status_allowed(t, st, sc) {
        let id = existing.and_then(|r| r.get(&t.pk)).and_then(Value::as_str);
        return Err(sales::invalid_status(t, st, sc, id));
    }
    patch.insert("statuscode".into(), json!(sc));
    Ok(())
}

/// Create a row from validated values. `id` from the URL (upsert) or body.
pub(crate) fn insert_row(store: &mut DvStore, t: &Table, id: Option<String>, mut vals: Row) -> Result<String, Resp> {
    let id = match (id, vals.get(&t.pk).and_then(Value::as_str)) {
        (Some(id), _) => id,
        (None, Some(b)) => b.to_ascii_lowercase(),
        (None, None) => uuid::Uuid::new_v4().to_string(),
    };
    if store.get(t.set, &id).is_some() {
        return Err(err(
            412,
            "0x80040237",
            "A record with matching key values already exists.",
        ));
    }
    check_state(t, None, &mut vals)?;
    let now = now_iso();
    let mut row = Row::new();
    row.insert(t.pk.clone(), Value::String(id.clone()));
    for (k, v) in vals {
        row.insert(k, v);
    }
    if t.has_state {
        row.entry("statecode").or_insert(json!(0));
        let st = dv_schema::default_status(t);
        row.entry("statuscode").or_insert(json!(st));
    }
    // Lines take their header's currency (and prices), and its owner.
    sales::prepare(store, t, &mut row, true);
    owner::on_create(store, t, &mut row);
    if let Some((col, prefix)) = t.autonumber
        && row.get(col).is_none_or(Value::is_null)
    {
        let n = autonumber(store, prefix);
        row.insert(col.into(), Value::String(n));
    }
    computed(t, &mut row);
    row.insert("createdon".into(), Value::String(now.clone()));
    row.insert("modifiedon".into(), Value::String(now));
    let v = store.next_version();
    row.insert("versionnumber".into(), json!(v));
    store.put(t.set, &id, row.clone());
    owner::after_insert(store, t, &row);
    sales::after_change(store, t, &row);
    Ok(id)
}

pub(crate) fn update_row(store: &mut DvStore, t: &Table, id: &str, mut vals: Row) -> Result<(), Resp> {
    let Some(existing) = store.get(t.set, id).cloned() else {
        return Err(not_found_id(t, id));
    };
    check_state(t, Some(&existing), &mut vals)?;
    check_write(store, t, Some(&existing), &vals)?;
    let mut row = existing.clone();
    for (k, v) in &vals {
        row.insert(k.clone(), v.clone());
    }
    owner::on_update(store, t, &mut row, &vals);
    computed(t, &mut row);
    sales::prepare(store, t, &mut row, false);
    row.insert("modifiedon".into(), Value::String(now_iso()));
    let v = store.next_version();
    row.insert("versionnumber".into(), json!(v));
    store.put(t.set, id, row.clone());
    after_update(store, t, &existing, &row);
    Ok(())
}

/// The Web API's rules for a write: the editing rules of documents, then ownership.
fn check_write(store: &DvStore, t: &Table, existing: Option<&Row>, vals: &Row) -> Result<(), Resp> {
    sales::check_write(store, t, existing, vals)?;
    owner::check_write(store, t, existing, vals)
}

/// After an update: ownership follows (lines of an assigned header, a renamed unit's default team), then system
/// pricing of the line's header (and its previous header, when the line moved).
fn after_update(store: &mut DvStore, t: &Table, before: &Row, after: &Row) {
    owner::after_update(store, t, before, after);
    sales::after_change(store, t, after);
    if let Some(old) = sales::previous_header(t, before, after) {
        sales::recalc_header_of_line_table(store, t, &old);
    }
}

fn representation(state: &State, store: &DvStore, t: &Table, req: &Req, id: &str, status: u16) -> Resp {
    let params = req.query_params();
    let select = match params
        .iter()
        .find(|(k, _)| k == "$select")
        .map(|(_, v)| parse_select(t, v))
    {
        Some(Ok(v)) => Some(v),
        Some(Err(r)) => return r,
        None => None,
    };
    let shape = Shape {
        select,
        expand: Vec::new(),
        annotations: wants_annotations(req),
    };
    let Some(row) = store.get(t.set, id) else {
        return not_found_id(t, id);
    };
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(context(state, t, &shape, "/$entity")),
    );
    body.extend(render(store, t, row, &shape));
    Resp::odata_json(status, &Value::Object(body))
        .header("ETag", etag(row))
        .header("Preference-Applied", "return=representation")
        .header("Location", entity_url(state, t, id))
}

fn no_content(state: &State, t: &Table, id: &str) -> Resp {
    Resp::new(204)
        .header("OData-Version", "4.0")
        .header("OData-EntityId", entity_url(state, t, id))
}

fn create(state: &State, store: &mut DvStore, t: &'static Table, req: &Req) -> Resp {
    let body = match parse_body(t, req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let vals = match apply_body(store, t, &body, true) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = check_write(store, t, None, &vals) {
        return r;
    }
    let id = match insert_row(store, t, None, vals) {
        Ok(id) => id,
        Err(r) => return r,
    };
    if req
        .prefer()
        .iter()
        .any(|(n, v)| n == "return" && v.as_deref() == Some("representation"))
    {
        return representation(state, store, t, req, &id, 201);
    }
    no_content(state, t, &id)
}

fn if_match_ok(req: &Req, row: Option<&Row>) -> Result<(), Resp> {
    if let Some(im) = req.header("if-match") {
        let im = im.trim();
        let Some(row) = row else { return Err(Resp::new(0)) }; // caller maps to 404
        if im != "*" && !im.split(',').any(|e| e.trim() == etag(row)) {
            return Err(err(
                412,
                "0x80060882",
                "The version of the existing record doesn't match the RowVersion property provided.",
            ));
        }
    }
    Ok(())
}

fn upsert(
    state: &State,
    store: &mut DvStore,
    t: &'static Table,
    req: &Req,
    spec: &KeySpec,
    id: Option<String>,
) -> Resp {
    let body = match parse_body(t, req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let existing = id.as_ref().and_then(|i| store.get(t.set, i));
    match if_match_ok(req, existing) {
        Ok(()) => {}
        Err(r) if r.status == 0 => return key_missing(t, spec),
        Err(r) => return r,
    }
    let rep = req
        .prefer()
        .iter()
        .any(|(n, v)| n == "return" && v.as_deref() == Some("representation"));
    match id {
        Some(id) => {
            if req.header("if-none-match").is_some_and(|v| v.trim() == "*") {
                return err(412, "0x80040237", "A record with matching key values already exists.");
            }
            let vals = match apply_body(store, t, &body, false) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if let Err(r) = update_row(store, t, &id, vals) {
                return r;
            }
            if rep {
                representation(state, store, t, req, &id, 200)
            } else {
                no_content(state, t, &id)
            }
        }
        None => {
            let mut vals = match apply_body(store, t, &body, true) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if let Err(r) = check_write(store, t, None, &vals) {
                return r;
            }
            // Key data from the URL fills the key columns when the body lacks them.
            let new_id = match spec {
                KeySpec::Id(i) => Some(i.clone()),
                KeySpec::Alt(pairs) => {
                    for (k, v) in pairs {
                        if !vals.contains_key(k) {
                            let val = match t.col(k) {
                                Some(ColType::Int | ColType::BigInt | ColType::Choice) => {
                                    v.parse::<i64>().map(Value::from).unwrap_or(Value::String(v.clone()))
                                }
                                _ => Value::String(v.clone()),
                            };
                            vals.insert(k.clone(), val);
                        }
                    }
                    None
                }
            };
            let id = match insert_row(store, t, new_id, vals) {
                Ok(i) => i,
                Err(r) => return r,
            };
            if rep {
                representation(state, store, t, req, &id, 201)
            } else {
                no_content(state, t, &id)
            }
        }
    }
}

fn delete(store: &mut DvStore, t: &Table, req: &Req, spec: &KeySpec, id: Option<String>) -> Resp {
    let Some(id) = id else { return key_missing(t, spec) };
    match if_match_ok(req, store.get(t.set, &id)) {
        Ok(()) => {}
        Err(r) if r.status == 0 => return key_missing(t, spec),
        Err(r) => return r,
    }
    if let Some(row) = store.get(t.set, &id).cloned() {
        if let Err(r) = sales::check_delete(store, t, &row) {
            return r;
        }
        store.remove(t.set, &id);
        sales::after_change(store, t, &row);
    }
    Resp::new(204).header("OData-Version", "4.0")
}

fn put_property(store: &mut DvStore, t: &Table, req: &Req, spec: &KeySpec, id: Option<String>, prop: &str) -> Resp {
    let Some(id) = id else { return key_missing(t, spec) };
    let body = match parse_body(t, req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(v) = body.get("value") else {
        return payload_err(t.set, "A single-property PUT needs a body {\"value\": ...}.");
    };
    let mut one = Map::new();
    one.insert(prop.to_string(), v.clone());
    let vals = match apply_body(store, t, &one, false) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match update_row(store, t, &id, vals) {
        Ok(()) => Resp::new(204).header("OData-Version", "4.0"),
        Err(r) => r,
    }
}

fn delete_property(store: &mut DvStore, t: &Table, spec: &KeySpec, id: Option<String>, prop: &str) -> Resp {
    let Some(id) = id else { return key_missing(t, spec) };
    if t.col(prop).is_none() || t.read_only.iter().any(|c| c == prop) || *prop == t.pk {
        return query_err(format!("The property '{prop}' cannot be cleared."));
    }
    let mut vals = Row::new();
    vals.insert(prop.to_string(), Value::Null);
    match update_row(store, t, &id, vals) {
        Ok(()) => Resp::new(204).header("OData-Version", "4.0"),
        Err(r) => r,
    }
}

fn set_ref(store: &mut DvStore, t: &Table, req: &Req, spec: &KeySpec, id: Option<String>, nav: &str) -> Resp {
    let Some(id) = id else { return key_missing(t, spec) };
    let body = match parse_body(t, req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(Value::String(r)) = body.get("@odata.id") else {
        return payload_err(t.set, "A $ref request needs a body {\"@odata.id\": \"<entity URL>\"}.");
    };
    let mut one = Map::new();
    one.insert(format!("{nav}@odata.bind"), Value::String(r.clone()));
    let vals = match apply_body(store, t, &one, false) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match update_row(store, t, &id, vals) {
        Ok(()) => Resp::new(204).header("OData-Version", "4.0"),
        Err(r) => r,
    }
}

fn clear_ref(store: &mut DvStore, t: &Table, spec: &KeySpec, id: Option<String>, nav: &str) -> Resp {
    let Some(id) = id else { return key_missing(t, spec) };
    let Some((l, _)) = t.nav(nav) else {
        return not_found_segment(nav);
    };
    let mut vals = Row::new();
    vals.insert(l.value_col(), Value::Null);
    match update_row(store, t, &id, vals) {
        Ok(()) => Resp::new(204).header("OData-Version", "4.0"),
        Err(r) => r,
    }
}

// ------------------------------------------------------------------------------------------------
// Direct access for the Rust API (tests, seeding)
// ------------------------------------------------------------------------------------------------

/// Wire shape of a stored row (all columns, `@odata.etag`), as a GET without `$select` returns it.
pub(crate) fn wire_row(store: &DvStore, t: &Table, row: &Row) -> Value {
    let shape = Shape {
        select: None,
        expand: Vec::new(),
        annotations: false,
    };
    Value::Object(render(store, t, row, &shape))
}

/// Normalise values written through the Rust API: `_x_value`, `statecode` and `@odata.bind` are all allowed.
pub(crate) fn direct_values(store: &DvStore, t: &Table, row: &Map<String, Value>) -> Result<Row, String> {
    let text = |r: Resp| format!("p2c-sandbox: {}: {}", t.set, String::from_utf8_lossy(&r.body));
    let mut out = Row::new();
    let mut binds = Map::new();
    for (k, v) in row {
        if k.ends_with("@odata.bind") {
            binds.insert(k.clone(), v.clone());
            continue;
        }
        if k.contains('@') {
            continue;
        }
        let Some(ty) = t.col(k) else {
            return Err(format!("p2c-sandbox: entity set '{}' has no column '{k}'", t.set));
        };
        out.insert(k.clone(), check_value(t, k, ty, v).map_err(text)?);
    }
    out.extend(apply_body(store, t, &binds, false).map_err(text)?);
    // A polymorphic lookup given as `_x_value` points at whichever target table holds the id.
    for l in t.lookups.iter().filter(|l| l.targets.len() > 1) {
        let hidden = format!("{HIDDEN}{}", l.name);
        if let Some(id) = out.get(&l.value_col()).and_then(Value::as_str)
            && !out.contains_key(&hidden)
            && let Some(target) = l.targets.iter().find(|s| store.get(s, id).is_some())
        {
            out.insert(hidden, Value::String((*target).to_string()));
        }
    }
    Ok(out)
}

/// Insert through the Rust API: same defaults as a POST, but trusted input: `statecode`/`statuscode` and
/// explicit `createdon`/`modifiedon` (for watermark tests) are kept. One insert is one version.
pub(crate) fn direct_insert(store: &mut DvStore, t: &Table, mut vals: Row) -> Result<String, String> {
    let mut after = Row::new();
    for k in ["statecode", "statuscode", "createdon", "modifiedon"] {
        if let Some(v) = vals.remove(k).filter(|v| !v.is_null()) {
            after.insert(k.to_string(), v);
        }
    }
    vals.remove("versionnumber");
    if let Some(st) = after.get("statecode").and_then(Value::as_i64)
        && !after.contains_key("statuscode")
    {
        after.insert("statuscode".into(), json!(dv_schema::default_status_for_state(t, st)));
    }
    owner::trusted_owner(store, t, &mut vals);
    let id = vals.get(&t.pk).and_then(Value::as_str).map(str::to_ascii_lowercase);
    let id = insert_row(store, t, id, vals).map_err(|r| String::from_utf8_lossy(&r.body).into_owned())?;
    if !after.is_empty()
        && let Some(mut row) = store.get(t.set, &id).cloned()
    {
        row.extend(after);
        store.put(t.set, &id, row);
    }
    Ok(id)
}

/// Update through the Rust API: merges, bumps the version; `modifiedon` is now unless the patch sets it.
pub(crate) fn direct_update(store: &mut DvStore, t: &Table, id: &str, mut vals: Row) -> Result<(), String> {
    let Some(existing) = store.get(t.set, id).cloned() else {
        return Err(format!("p2c-sandbox: {} has no row {id}", t.set));
    };
    vals.remove("versionnumber");
    let modified = vals
        .remove("modifiedon")
        .filter(|v| !v.is_null())
        .unwrap_or_else(|| Value::String(now_iso()));
    owner::trusted_owner(store, t, &mut vals);
    let mut row = existing.clone();
    row.extend(vals.clone());
    owner::on_update(store, t, &mut row, &vals);
    computed(t, &mut row);
    sales::prepare(store, t, &mut row, false);
    row.insert("modifiedon".into(), modified);
    let v = store.next_version();
    row.insert("versionnumber".into(), json!(v));
    store.put(t.set, id, row.clone());
    after_update(store, t, &existing, &row);
    Ok(())
}

/// Delete through the Rust API (no editing rules); system pricing recalculates the line's header.
pub(crate) fn direct_delete(store: &mut DvStore, t: &Table, id: &str) {
    if let Some(row) = store.remove(t.set, id) {
        sales::after_change(store, t, &row);
    }
}
