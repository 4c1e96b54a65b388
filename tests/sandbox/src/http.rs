//! Transport-neutral request/response types shared by the live servers and by `$batch`, which replays inner
//! requests through the same handlers.

use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One HTTP request, as the handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub method: String,
    /// Raw path, still percent-encoded (OData keys can contain encoded quotes, slashes...).
    pub path: String,
    /// Raw query string without the `?`.
    pub query: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All `Prefer` preferences of the request (several headers and comma lists both allowed).
    pub fn prefer(&self) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("prefer") {
                for item in split_outside_quotes(v, ',') {
                    let item = item.trim();
                    if item.is_empty() {
                        continue;
                    }
                    match item.split_once('=') {
                        Some((n, val)) => out.push((
                            n.trim().to_ascii_lowercase(),
                            Some(val.trim().trim_matches('"').to_string()),
                        )),
                        None => out.push((item.to_ascii_lowercase(), None)),
                    }
                }
            }
        }
        out
    }

    pub fn prefers(&self, name: &str) -> bool {
        self.prefer().iter().any(|(n, _)| n == name)
    }

    pub fn prefer_value(&self, name: &str) -> Option<String> {
        self.prefer().into_iter().find(|(n, _)| n == name).and_then(|(_, v)| v)
    }

    /// Decoded query parameters in order.
    pub fn query_params(&self) -> Vec<(String, String)> {
        parse_query(&self.query)
    }
}

/// Split on `sep` except inside double quotes.
pub(crate) fn split_outside_quotes(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    for c in s.chars() {
        if c == '"' {
            in_q = !in_q;
        }
        if c == sep && !in_q {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Query decoding as ASP.NET does it: `+` means a space (which is why the docs insist on `%2B`).
pub(crate) fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode_query_part(k), decode_query_part(v)),
            None => (decode_query_part(p), String::new()),
        })
        .collect()
}

pub(crate) fn decode_query_part(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_decode_str(&s).decode_utf8_lossy().into_owned()
}

pub(crate) fn decode_path(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Characters escaped when the sandbox writes a query value into a link it hands out.
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'>')
    .add(b'=')
    .add(b'\'')
    .add(b'!')
    .add(b'/')
    .add(b':')
    .add(b'{')
    .add(b'}')
    .add(b'[')
    .add(b']')
    .add(b',')
    .add(b'?')
    .add(b'@')
    .add(b';');

pub(crate) fn encode_query_value(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Characters escaped inside a key segment of a URL the sandbox builds (`Set(k='a b')`).
const KEY_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'?')
    .add(b'/')
    .add(b'<')
    .add(b'>');

pub(crate) fn encode_key_segment(s: &str) -> String {
    utf8_percent_encode(s, KEY_SEGMENT).to_string()
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub(crate) const JSON_CT: &str = "application/json; odata.metadata=minimal";

impl Resp {
    pub fn new(status: u16) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, k: &str, v: impl Into<String>) -> Resp {
        self.headers.push((k.to_string(), v.into()));
        self
    }

    pub fn set_header(&mut self, k: &str, v: impl Into<String>) {
        self.headers.push((k.to_string(), v.into()));
    }

    pub fn get_header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }

    /// An OData JSON response (both services use the same content type and version header).
    pub fn odata_json(status: u16, body: &Value) -> Resp {
        Resp::new(status)
            .header("Content-Type", JSON_CT)
            .header("OData-Version", "4.0")
            .with_body(serde_json::to_vec(body).unwrap_or_default())
    }

    /// Plain JSON (Entra token endpoint).
    pub fn plain_json(status: u16, body: &Value) -> Resp {
        Resp::new(status)
            .header("Content-Type", "application/json; charset=utf-8")
            .with_body(serde_json::to_vec(body).unwrap_or_default())
    }

    pub fn with_body(mut self, body: Vec<u8>) -> Resp {
        self.body = body;
        self
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// `2016-09-28T22:57:53Z`: the shape both services use for date-times.
pub(crate) fn iso(t: OffsetDateTime) -> String {
    // checked: an extreme offset near year 9999 must not panic.
    let t = t.checked_to_offset(time::UtcOffset::UTC).unwrap_or(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

pub(crate) fn now_iso() -> String {
    iso(OffsetDateTime::now_utc())
}

/// ISO-8601 date-time with zone (`Z` or offset), optionally fractional seconds; also accepts a bare
/// `YYYY-MM-DDTHH:MM` with zone, which OData's ABNF allows.
pub(crate) fn parse_datetime(s: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    // `2024-05-01T00:00Z` (no seconds)
    if s.len() >= 17
        && s.as_bytes()
            .get(16)
            .is_some_and(|c| *c == b'Z' || *c == b'+' || *c == b'-')
    {
        let fixed = format!("{}:00{}", &s[..16], &s[16..]);
        if let Ok(t) = OffsetDateTime::parse(&fixed, &Rfc3339) {
            return Some(t);
        }
    }
    None
}

/// `YYYY-MM-DD`
pub(crate) fn parse_date(s: &str) -> Option<time::Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i32 = s[0..4].parse().ok()?;
    let m: u8 = s[5..7].parse().ok()?;
    let d: u8 = s[8..10].parse().ok()?;
    time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()
}

pub(crate) fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}
