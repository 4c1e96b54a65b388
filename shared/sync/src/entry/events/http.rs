//! The HTTP request and response the ingress sees, whatever carried them (a Lambda Function URL event, or the
//! local server of the CLI and the tests).

use percent_encoding::percent_decode_str;
use serde_json::Value;

#[derive(Clone, Debug, Default)]
pub struct HttpRequest {
    pub method: String,
    /// Path without the query, e.g. `/dataverse`.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a query parameter, percent-decoded (`+` is a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k) == name).then(|| dec(v))
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_decode() {
        let r = HttpRequest {
            query: "a=1&code=ab%2Bc%3D&x".into(),
            ..Default::default()
        };
        assert_eq!(r.query_param("code").as_deref(), Some("ab+c="));
        assert_eq!(r.query_param("x").as_deref(), Some(""));
        assert_eq!(r.query_param("missing"), None);
    }
}
