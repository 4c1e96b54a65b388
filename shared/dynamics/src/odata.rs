//! OData literals and URLs. Every value that goes into a `$filter` or a key URL passes through here, so a quote
//! in an account number can neither break a query nor inject into it.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// Characters that must be escaped inside a query value (Dataverse's list plus what URLs require).
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'?')
    .add(b'@')
    .add(b'$')
    .add(b'<')
    .add(b'>')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'\'');

/// Characters escaped inside a path segment such as a key predicate.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// An OData string literal: single-quoted, quotes doubled (`O'Brien` → `'O''Brien'`).
pub fn string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A JSON string, as Dataverse's `Microsoft.Dynamics.CRM.In` wants inside `PropertyValues=[...]`.
pub fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Percent-encodes a query option value (the whole `$filter` expression, for instance).
pub fn encode_query_value(v: &str) -> String {
    utf8_percent_encode(v, QUERY_VALUE).to_string()
}

/// `Entity(k1='v1',k2='v2')`, every key part named, values escaped and percent-encoded for the path.
pub fn key_predicate(entity_set: &str, key: &[(&str, &str)]) -> String {
    let parts: Vec<String> = key
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(&string_literal(v), PATH_SEGMENT)))
        .collect();
    format!("{entity_set}({})", parts.join(","))
}

/// Like [`key_predicate`] for typed key values: text single-quoted (escaped), numbers bare
/// (`LineCreationSequenceNumber=3`, an `Edm.Int32` key that F&O refuses as `'3'`). Anything else is written as text.
pub fn key_predicate_json(entity_set: &str, key: &[(&str, &serde_json::Value)]) -> String {
    let parts: Vec<String> = key
        .iter()
        .map(|(k, v)| {
            let lit = match v {
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::String(s) => string_literal(s),
                other => string_literal(&other.to_string()),
            };
            format!("{k}={}", utf8_percent_encode(&lit, PATH_SEGMENT))
        })
        .collect();
    format!("{entity_set}({})", parts.join(","))
}

/// Builds `?a=b&c=d` with the option names left as `$name` and values encoded.
pub fn query(options: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in options.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&encode_query_value(v));
    }
    out
}

/// True when `s` looks like a GUID (Dataverse ids go unquoted in URLs and filters).
pub fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled_and_encoded() {
        assert_eq!(string_literal("O'Brien"), "'O''Brien'");
        let f = format!("CustomerAccount eq {}", string_literal("A' or 1 eq 1 or 'x"));
        let enc = encode_query_value(&f);
        assert!(!enc.contains('\''), "{enc}");
        assert!(!enc.contains(' '));
        assert_eq!(
            percent_encoding::percent_decode_str(&enc).decode_utf8().unwrap(),
            "CustomerAccount eq 'A'' or 1 eq 1 or ''x'"
        );
    }

    #[test]
    fn key_predicate_escapes() {
        assert_eq!(
            key_predicate("CustomersV2", &[("dataAreaId", "usmf"), ("CustomerAccount", "A'B/C é")]),
            "CustomersV2(dataAreaId='usmf',CustomerAccount='A''B%2FC%20%C3%A9')"
        );
    }

    #[test]
    fn typed_key_predicate() {
        let (c, n, q) = (
            serde_json::json!("usmf"),
            serde_json::json!(3),
            serde_json::json!("QUO'1"),
        );
        assert_eq!(
            key_predicate_json(
                "CDSSalesQuotationLines",
                &[
                    ("dataAreaId", &c),
                    ("LineCreationSequenceNumber", &n),
                    ("SalesQuotationNumber", &q)
                ]
            ),
            "CDSSalesQuotationLines(dataAreaId='usmf',LineCreationSequenceNumber=3,SalesQuotationNumber='QUO''1')"
        );
    }

    #[test]
    fn guid_check() {
        assert!(is_guid("4b757ff7-9c85-ee11-8179-000d3a9933c9"));
        assert!(!is_guid("4b757ff7-9c85-ee11-8179-000d3a9933c9) or (1 eq 1"));
        assert!(!is_guid("ACC-1"));
    }
}
