//! OData `$batch` (multipart/mixed): parsing, change-set atomicity, Content-ID references and the response
//! body. Both services run it; they differ in how failures surface:
//! * Dataverse (spec A.8): without `Prefer: odata.continue-on-error` processing stops at the first failure and
//!   the batch itself takes that failure's status; the body holds the responses so far and the failure. A failed
//!   change set is rolled back and reported as one error part.
//! * F&O (spec B.4): the batch is `200` even when parts failed; a failed change set rolls back and collapses to
//!   one error response inside its `changesetresponse`. Whether F&O continues after a failed part is undocumented
//!   (gap 11); the sandbox follows ASP.NET OData's batch handler, which stops unless
//!   `Prefer: odata.continue-on-error` is sent. A client must therefore treat a missing response as "not run".

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::Value;

use crate::http::{Req, Resp, reason};

#[derive(Debug, Clone)]
pub(crate) struct InnerReq {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub content_id: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Part {
    Single(InnerReq),
    ChangeSet(Vec<InnerReq>),
}

fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Split a multipart body into its parts' raw text (line ends normalised to `\n`).
fn split_multipart(text: &str, boundary: &str) -> Result<Vec<String>, String> {
    let delim = format!("--{boundary}");
    let close = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut cur: Option<Vec<&str>> = None;
    let mut closed = false;
    for line in text.split('\n') {
        let l = line.strip_suffix('\r').unwrap_or(line);
        let t = l.trim_end();
        if t == close {
            if let Some(c) = cur.take() {
                parts.push(c.join("\n"));
            }
            closed = true;
            break;
        }
        if t == delim {
            if let Some(c) = cur.take() {
                parts.push(c.join("\n"));
            }
            cur = Some(Vec::new());
            continue;
        }
        if let Some(c) = cur.as_mut() {
            c.push(l);
        }
    }
    if !closed {
        return Err(format!(
            "The multipart body is missing its closing boundary '--{boundary}--'."
        ));
    }
    Ok(parts)
}

/// Headers until the first blank line, then the rest.
fn split_headers(text: &str) -> (Vec<(String, String)>, String) {
    let mut headers = Vec::new();
    let mut lines = text.split('\n');
    let mut rest = Vec::new();
    let mut in_headers = true;
    // Leading blank lines before the headers are tolerated.
    let mut seen_header = false;
    for l in lines.by_ref() {
        if !in_headers {
            rest.push(l);
            continue;
        }
        if l.trim().is_empty() {
            if seen_header {
                in_headers = false;
            }
            continue;
        }
        seen_header = true;
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (headers, rest.join("\n"))
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn parse_http_part(part_headers: &[(String, String)], text: &str) -> Result<InnerReq, String> {
    let ct = header(part_headers, "content-type").unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/http") {
        return Err(format!(
            "A batch part must have Content-Type application/http, found '{ct}'."
        ));
    }
    let text = text.trim_start_matches(['\n', '\r', ' ']);
    let (request_line, rest) = text.split_once('\n').unwrap_or((text, ""));
    let mut it = request_line.split_whitespace();
    let (Some(method), Some(url)) = (it.next(), it.next()) else {
        return Err(format!("Invalid request line '{request_line}' in a batch part."));
    };
    let (headers, body) = split_headers_after_request_line(rest);
    let content_id = header(part_headers, "content-id")
        .or_else(|| header(&headers, "content-id"))
        .map(str::to_string);
    Ok(InnerReq {
        method: method.to_ascii_uppercase(),
        url: url.to_string(),
        headers,
        body: body.trim_end().to_string(),
        content_id,
    })
}

/// Inner request headers end at the first blank line (which may come right away when there are none).
fn split_headers_after_request_line(text: &str) -> (Vec<(String, String)>, String) {
    let mut headers = Vec::new();
    let mut lines = text.split('\n');
    for l in lines.by_ref() {
        if l.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (headers, lines.collect::<Vec<_>>().join("\n"))
}

pub(crate) fn parse(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    if !content_type.to_ascii_lowercase().starts_with("multipart/mixed") {
        return Err(format!(
            "The batch request must have Content-Type multipart/mixed, found '{content_type}'."
        ));
    }
    let boundary = boundary_of(content_type).ok_or("The multipart/mixed Content-Type has no boundary.")?;
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    for raw in split_multipart(&text, &boundary)? {
        let (ph, content) = split_headers(&raw);
        let ct = header(&ph, "content-type").unwrap_or("");
        if ct.to_ascii_lowercase().starts_with("multipart/mixed") {
            let cb = boundary_of(ct).ok_or("A change set has no boundary.")?;
            let mut ops = Vec::new();
            for sub in split_multipart(&content, &cb)? {
                let (sh, sc) = split_headers(&sub);
                if header(&sh, "content-type").is_some_and(|c| c.to_ascii_lowercase().starts_with("multipart/")) {
                    return Err("Change sets cannot be nested.".into());
                }
                ops.push(parse_http_part(&sh, &sc)?);
            }
            out.push(Part::ChangeSet(ops));
        } else {
            out.push(Part::Single(parse_http_part(&ph, &content)?));
        }
    }
    Ok(out)
}

pub(crate) fn count_requests(parts: &[Part]) -> usize {
    parts
        .iter()
        .map(|p| if let Part::ChangeSet(o) = p { o.len() } else { 1 })
        .sum()
}

/// What the batch runs against: the service's handler over a store that is already locked.
pub(crate) trait Target {
    fn exec(&mut self, req: &Req) -> Resp;
    fn begin(&mut self);
    fn commit(&mut self);
    fn rollback(&mut self);
    /// An error response in the service's format.
    fn error(&self, status: u16, message: &str) -> Resp;
}

pub(crate) struct Options<'a> {
    pub dataverse: bool,
    pub continue_on_error: bool,
    /// Path of the service root, e.g. `/api/data/v9.2`.
    pub root_path: &'a str,
}

/// Turn an inner request URL (absolute, path, relative or `$n`-prefixed) into a Req.
fn to_req(r: &InnerReq, opts: &Options, refs: &HashMap<String, String>) -> Result<Req, String> {
    let mut url = r.url.clone();
    if let Some(rest) = url.strip_prefix('$') {
        let (id, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        match refs.get(id) {
            Some(u) => url = format!("{u}{tail}"),
            None => {
                return Err(format!(
                    "Content-ID Reference: '${id}' does not exist in the batch context."
                ));
            }
        }
    }
    let path_q = if let Some(p) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) {
        match p.find('/') {
            Some(i) => p[i..].to_string(),
            None => "/".to_string(),
        }
    } else if url.starts_with('/') {
        url.clone()
    } else {
        format!("{}/{}", opts.root_path, url)
    };
    let (path, query) = path_q
        .split_once('?')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap_or((path_q, String::new()));
    let mut body = r.body.clone();
    if !body.trim().is_empty()
        && let Ok(mut v) = serde_json::from_str::<Value>(&body)
    {
        let mut missing = None;
        replace_refs(&mut v, refs, &mut missing, false);
        if let Some(m) = missing {
            return Err(format!(
                "Content-ID Reference: '{m}' does not exist in the batch context."
            ));
        }
        body = v.to_string();
    }
    Ok(Req {
        method: r.method.clone(),
        path,
        query,
        headers: r.headers.clone(),
        body: Bytes::from(body),
    })
}

/// Replace `"$n"` in `@odata.bind` / `@odata.id` values with the URL of the entity part n created.
fn replace_refs(v: &mut Value, refs: &HashMap<String, String>, missing: &mut Option<String>, is_ref: bool) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let r = k.ends_with("@odata.bind") || k == "@odata.id";
                replace_refs(x, refs, missing, r);
            }
        }
        Value::Array(a) => {
            for x in a {
                replace_refs(x, refs, missing, is_ref);
            }
        }
        Value::String(s) if is_ref => {
            if let Some(id) = s.strip_prefix('$')
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                match refs.get(id) {
                    Some(u) => *s = u.clone(),
                    None => *missing = Some(s.clone()),
                }
            }
        }
        _ => {}
    }
}

fn format_http(resp: &Resp, content_id: Option<&str>) -> String {
    let mut s = String::from("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
    if let Some(id) = content_id {
        s.push_str(&format!("Content-ID: {id}\r\n"));
    }
    s.push_str(&format!("\r\nHTTP/1.1 {} {}\r\n", resp.status, reason(resp.status)));
    for (k, v) in &resp.headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    if !resp.body.is_empty() {
        s.push_str(&String::from_utf8_lossy(&resp.body));
        s.push_str("\r\n");
    }
    s
}

enum Out {
    Http(Resp, Option<String>),
    ChangeSet(Vec<(Resp, Option<String>)>),
}

pub(crate) fn run(parts: Vec<Part>, opts: &Options, target: &mut dyn Target) -> Resp {
    let mut outs: Vec<Out> = Vec::new();
    let mut failure: Option<u16> = None;
    for part in parts {
        match part {
            Part::Single(r) => {
                let resp = match to_req(&r, opts, &HashMap::new()) {
                    Ok(req) => target.exec(&req),
                    Err(e) => target.error(400, &e),
                };
                let failed = !resp.is_success();
                let status = resp.status;
                outs.push(Out::Http(resp, r.content_id.clone()));
                if failed && !opts.continue_on_error {
                    failure = Some(status);
                    break;
                }
            }
            Part::ChangeSet(ops) => {
                target.begin();
                let mut refs: HashMap<String, String> = HashMap::new();
                let mut done: Vec<(Resp, Option<String>)> = Vec::new();
                let mut failed: Option<(Resp, Option<String>)> = None;
                for op in &ops {
                    let resp = if op.method == "GET" {
                        target.error(400, "GET requests are not allowed inside a change set.")
                    } else {
                        match to_req(op, opts, &refs) {
                            Ok(req) => target.exec(&req),
                            Err(e) => target.error(400, &e),
                        }
                    };
                    if !resp.is_success() {
                        failed = Some((resp, op.content_id.clone()));
                        break;
                    }
                    if let Some(id) = &op.content_id
                        && let Some(loc) = resp
                            .get_header("OData-EntityId")
                            .or_else(|| resp.get_header("Location"))
                    {
                        refs.insert(id.clone(), loc.to_string());
                    }
                    done.push((resp, op.content_id.clone()));
                }
                match failed {
                    None => {
                        target.commit();
                        outs.push(Out::ChangeSet(done));
                    }
                    Some((resp, cid)) => {
                        target.rollback();
                        let status = resp.status;
                        if opts.dataverse {
                            outs.push(Out::Http(resp, cid));
                        } else {
                            outs.push(Out::ChangeSet(vec![(resp, cid)]));
                        }
                        if !opts.continue_on_error {
                            failure = Some(status);
                            break;
                        }
                    }
                }
            }
        }
    }
    let b = format!("batchresponse_{}", uuid::Uuid::new_v4());
    let mut body = String::new();
    for o in &outs {
        body.push_str(&format!("--{b}\r\n"));
        match o {
            Out::Http(resp, cid) => body.push_str(&format_http(resp, cid.as_deref())),
            Out::ChangeSet(items) => {
                let c = format!("changesetresponse_{}", uuid::Uuid::new_v4());
                body.push_str(&format!("Content-Type: multipart/mixed; boundary={c}\r\n\r\n"));
                for (resp, cid) in items {
                    body.push_str(&format!("--{c}\r\n"));
                    body.push_str(&format_http(resp, cid.as_deref()));
                }
                body.push_str(&format!("--{c}--\r\n"));
            }
        }
    }
    body.push_str(&format!("--{b}--\r\n"));
    let status = match failure {
        Some(s) if opts.dataverse => s,
        _ => 200,
    };
    let mut resp = Resp::new(status)
        .header("Content-Type", format!("multipart/mixed; boundary={b}"))
        .header("OData-Version", "4.0")
        .with_body(body.into_bytes());
    if opts.continue_on_error {
        resp.set_header("Preference-Applied", "odata.continue-on-error");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_crlf_and_lf_with_changesets() {
        let body = "--batch_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\
                    GET /api/data/v9.2/accounts?$top=1 HTTP/1.1\r\nAccept: application/json\r\n\r\n\
                    --batch_1\r\nContent-Type: multipart/mixed; boundary=\"cs_2\"\r\n\r\n\
                    --cs_2\nContent-Type: application/http\nContent-Transfer-Encoding: binary\nContent-ID: 1\n\n\
                    POST accounts HTTP/1.1\nContent-Type: application/json\n\n{\"name\":\"a\"}\n\
                    --cs_2--\r\n--batch_1--\r\n";
        let parts = parse("multipart/mixed; boundary=batch_1", body.as_bytes()).unwrap();
        assert_eq!(parts.len(), 2);
        let Part::Single(g) = &parts[0] else { panic!() };
        assert_eq!(g.url, "/api/data/v9.2/accounts?$top=1");
        let Part::ChangeSet(ops) = &parts[1] else { panic!() };
        assert_eq!(ops[0].content_id.as_deref(), Some("1"));
        assert_eq!(ops[0].body, "{\"name\":\"a\"}");
    }
}
