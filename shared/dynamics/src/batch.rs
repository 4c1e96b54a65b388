//! OData `$batch` (multipart/mixed) for both services. [`build`] puts each operation in its own change set:
//! atomic per record, and one bad record cannot roll back its neighbours. [`build_sets`] puts several operations
//! in one change set (a document header and its lines): all of them are written, or none.

use crate::{api::error_text, error::DynamicsError};

/// The write methods a `$batch` operation can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMethod {
    Post,
    Patch,
    Delete,
}

impl WriteMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMethod::Post => "POST",
            WriteMethod::Patch => "PATCH",
            WriteMethod::Delete => "DELETE",
        }
    }
}

impl std::fmt::Display for WriteMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug)]
pub struct BatchOp {
    pub method: WriteMethod,
    /// Absolute URL of the operation.
    pub url: String,
    pub body: Option<serde_json::Value>,
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Clone, Debug, Default)]
pub struct BatchResult {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl BatchResult {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The part's failure as the same error a direct request would have produced.
    pub fn error(&self, service: &'static str, op: &BatchOp) -> DynamicsError {
        let (code, message) = error_text(&self.body);
        DynamicsError::Http {
            service,
            method: op.method.to_string(),
            path: op.url.clone(),
            status: self.status,
            code,
            message,
        }
    }
}

/// Serialises the operations, one change set each (Content-ID = position + 1).
pub fn build(batch_boundary: &str, ops: &[BatchOp]) -> String {
    let sets: Vec<&[BatchOp]> = ops.chunks(1).collect();
    build_sets(batch_boundary, &sets)
}

/// Serialises change sets: the operations of one set are atomic (the service rolls all of them back when one
/// fails) and run in order, so a header created first is there for its lines. Content-IDs number the operations
/// across the whole batch (1, 2, ...), in order.
pub fn build_sets<S: AsRef<[BatchOp]>>(batch_boundary: &str, sets: &[S]) -> String {
    let mut out = String::new();
    let mut content_id = 0usize;
    for (i, set) in sets.iter().enumerate() {
        let cs = format!("changeset_{batch_boundary}_{i}");
        out.push_str(&format!(
            "--{batch_boundary}\r\nContent-Type: multipart/mixed; boundary={cs}\r\n\r\n"
        ));
        for op in set.as_ref() {
            content_id += 1;
            out.push_str(&format!(
                "--{cs}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {content_id}\r\n\r\n"
            ));
            out.push_str(&format!("{} {} HTTP/1.1\r\n", op.method, op.url));
            out.push_str("OData-Version: 4.0\r\nOData-MaxVersion: 4.0\r\nAccept: application/json\r\n");
            for (k, v) in &op.headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            match &op.body {
                Some(body) => {
                    out.push_str("Content-Type: application/json; type=entry\r\n\r\n");
                    out.push_str(&body.to_string());
                    out.push_str("\r\n");
                }
                None => out.push_str("\r\n"),
            }
        }
        out.push_str(&format!("--{cs}--\r\n"));
    }
    out.push_str(&format!("--{batch_boundary}--\r\n"));
    out
}

/// What became of one change set of [`build_sets`].
#[derive(Clone, Debug)]
pub enum SetResult {
    /// Every operation succeeded: one result per operation, in order.
    Done(Vec<BatchResult>),
    /// The set was rolled back. `op` is the position (in the set) of the operation that failed, when the
    /// service said which (by Content-ID); `result` is its answer.
    Failed { op: Option<usize>, result: BatchResult },
    /// The service answered nothing for this set (it stopped processing the batch earlier): nothing was written.
    NotRun,
}

/// Parses the answer to [`build_sets`]: one [`SetResult`] per change set, in request order. Each top-level part
/// of the answer belongs to one change set; a failed set collapses to a single error response (F&O, and
/// Dataverse without continue-on-error), so a set is done only when every operation has a success.
pub fn parse_sets(content_type: &str, body: &str, sizes: &[usize]) -> Result<Vec<SetResult>, String> {
    let boundary = boundary_of(content_type).ok_or_else(|| format!("no boundary in content type {content_type:?}"))?;
    let mut top: Vec<Vec<(Option<usize>, BatchResult)>> = Vec::new();
    let delim = format!("--{boundary}");
    for raw in body.split(&delim).skip(1) {
        if raw.starts_with("--") {
            break;
        }
        let mut part = Vec::new();
        collect(&boundary, &format!("{delim}{raw}{delim}--"), &mut part, 0)?;
        top.push(part);
    }
    if top.len() > sizes.len() {
        return Err(format!(
            "batch response holds {} parts for {} change sets",
            top.len(),
            sizes.len()
        ));
    }
    let mut first_id = 1usize;
    let mut out = Vec::with_capacity(sizes.len());
    for (i, &n) in sizes.iter().enumerate() {
        let ids = first_id..first_id + n;
        first_id += n;
        let Some(part) = top.get(i) else {
            out.push(SetResult::NotRun);
            continue;
        };
        if let Some((cid, r)) = part.iter().find(|(_, r)| !r.is_success()) {
            let op = cid.filter(|c| ids.contains(c)).map(|c| c - ids.start);
            out.push(SetResult::Failed { op, result: r.clone() });
            continue;
        }
        if part.len() != n {
            return Err(format!(
                "change set {} of the batch has {} results for {n} operations",
                i + 1,
                part.len()
            ));
        }
        // Content-IDs, when echoed, put the results in operation order.
        let mut results: Vec<(usize, BatchResult)> = part
            .iter()
            .enumerate()
            .map(|(pos, (cid, r))| {
                (
                    cid.filter(|c| ids.contains(c)).map_or(pos, |c| c - ids.start),
                    r.clone(),
                )
            })
            .collect();
        results.sort_by_key(|(pos, _)| *pos);
        out.push(SetResult::Done(results.into_iter().map(|(_, r)| r).collect()));
    }
    Ok(out)
}

/// Parses a batch response into one result per operation, in request order.
pub fn parse(content_type: &str, body: &str, expected: usize) -> Result<Vec<BatchResult>, String> {
    let boundary = boundary_of(content_type).ok_or_else(|| format!("no boundary in content type {content_type:?}"))?;
    let mut flat: Vec<(Option<usize>, BatchResult)> = Vec::new();
    collect(&boundary, body, &mut flat, 0)?;
    // Responses come back in request order; Content-ID, when echoed, pins a result to its operation.
    let mut out: Vec<Option<BatchResult>> = vec![None; expected];
    let mut next = 0usize;
    for (cid, r) in flat {
        let idx = match cid {
            Some(c) if c >= 1 && c <= expected && out[c - 1].is_none() => c - 1,
            _ => {
                while next < expected && out[next].is_some() {
                    next += 1;
                }
                next
            }
        };
        if idx < expected {
            out[idx] = Some(r);
        }
    }
    let missing = out.iter().filter(|r| r.is_none()).count();
    if missing > 0 {
        return Err(format!(
            "batch response holds {} results for {expected} operations",
            expected - missing
        ));
    }
    Ok(out.into_iter().map(|r| r.unwrap_or_default()).collect())
}

fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').map(str::trim).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Splits `text` into header block and body at the first blank line (CRLF or LF).
fn split_head(text: &str) -> (&str, &str) {
    for sep in ["\r\n\r\n", "\n\n"] {
        if let Some(i) = text.find(sep) {
            return (&text[..i], &text[i + sep.len()..]);
        }
    }
    (text, "")
}

fn headers(block: &str) -> Vec<(String, String)> {
    block
        .lines()
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn collect(boundary: &str, body: &str, out: &mut Vec<(Option<usize>, BatchResult)>, depth: u8) -> Result<(), String> {
    if depth > 2 {
        return Err("batch response nested too deeply".into());
    }
    let delim = format!("--{boundary}");
    for raw in body.split(&delim).skip(1) {
        if raw.starts_with("--") {
            break;
        }
        let part = raw.trim_start_matches(['\r', '\n']);
        let (head, content) = split_head(part);
        let hs = headers(head);
        let ct = hs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str());
        let cid = hs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-id"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok());
        match ct {
            Some(ct) if ct.to_ascii_lowercase().starts_with("multipart/mixed") => {
                let inner = boundary_of(ct).ok_or("change set without boundary")?;
                collect(&inner, content, out, depth + 1)?;
            }
            _ => out.push((cid, parse_http_response(content)?)),
        }
    }
    Ok(())
}

fn parse_http_response(text: &str) -> Result<BatchResult, String> {
    let text = text.trim_start_matches(['\r', '\n']);
    let (head, body) = split_head(text);
    let mut lines = head.lines();
    let status_line = lines.next().ok_or("empty response part")?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let hs = headers(&lines.collect::<Vec<_>>().join("\n"));
    let body = body.trim_end_matches(['\r', '\n']).to_string();
    Ok(BatchResult {
        status,
        headers: hs,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_changeset_responses_by_content_id() {
        let body = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_a\r\n\r\n\
--changesetresponse_a\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\n\
HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\r\n{\"error\":{\"code\":\"\",\"message\":\"An error has occurred.\",\"innererror\":{\"message\":\"Write failed\"}}}\r\n\
--changesetresponse_a--\r\n\
--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_b\r\n\r\n\
--changesetresponse_b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n\
HTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\n\r\n\r\n--changesetresponse_b--\r\n--batchresponse_1--\r\n";
        let r = parse("multipart/mixed; boundary=batchresponse_1", body, 2).unwrap();
        assert_eq!(r[0].status, 204);
        assert_eq!(r[1].status, 500);
        assert!(r[1].body.contains("Write failed"));
    }

    #[test]
    fn change_sets_number_operations_across_the_batch() {
        let op = |m: WriteMethod| BatchOp {
            method: m,
            url: "https://x/data/E".into(),
            body: None,
            headers: vec![],
        };
        let text = build_sets(
            "b",
            &[
                vec![op(WriteMethod::Post), op(WriteMethod::Post)],
                vec![op(WriteMethod::Delete)],
            ],
        );
        assert_eq!(
            text.matches("Content-Type: multipart/mixed; boundary=changeset_b_")
                .count(),
            2
        );
        assert!(text.contains("Content-ID: 1\r\n") && text.contains("Content-ID: 3\r\n"));
        assert_eq!(
            build("b", &[op(WriteMethod::Post)]),
            build_sets("b", &[vec![op(WriteMethod::Post)]])
        );
    }

    #[test]
    fn parses_change_set_results() {
        // Set 1 (ops 1-2) succeeded, set 2 (ops 3-4) failed at op 4, set 3 never ran.
        let body = "--r\r\nContent-Type: multipart/mixed; boundary=c1\r\n\r\n\
--c1\r\nContent-Type: application/http\r\nContent-ID: 2\r\n\r\nHTTP/1.1 201 Created\r\n\r\n{\"n\":2}\r\n\
--c1\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\nHTTP/1.1 201 Created\r\n\r\n{\"n\":1}\r\n--c1--\r\n\
--r\r\nContent-Type: multipart/mixed; boundary=c2\r\n\r\n\
--c2\r\nContent-Type: application/http\r\nContent-ID: 4\r\n\r\nHTTP/1.1 500 Internal Server Error\r\n\r\n{\"error\":{}}\r\n--c2--\r\n\
--r--\r\n";
        let r = parse_sets("multipart/mixed; boundary=r", body, &[2, 2, 1]).unwrap();
        match &r[0] {
            SetResult::Done(v) => assert_eq!((v[0].body.as_str(), v[1].body.as_str()), ("{\"n\":1}", "{\"n\":2}")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(&r[1], SetResult::Failed { op: Some(1), result } if result.status == 500));
        assert!(matches!(r[2], SetResult::NotRun));
    }

    #[test]
    fn missing_results_are_an_error() {
        let body = "--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n--b--\r\n";
        assert!(parse("multipart/mixed; boundary=b", body, 2).is_err());
        assert_eq!(parse("multipart/mixed; boundary=b", body, 1).unwrap()[0].status, 204);
    }
}
