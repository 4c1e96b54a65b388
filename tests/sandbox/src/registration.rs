//! Event handler registration: webhooks (`serviceendpoints` with `contract` 8) and the SDK message processing
//! steps that send events to them, with the rules the platform applies when they are written through the Web API
//! (PAD `register-web-hook.md`, `reference/entities/serviceendpoint.md`, `sdkmessageprocessingstep.md`).
//!
//! Choices where the docs are silent (the error texts and codes are the sandbox's; the codes are the platform's
//! generic "invalid argument" 0x80040203):
//! * A webhook needs `name`, an absolute `url`, `authtype` 4 (WebhookKey), 5 (HttpHeader) or 6 (HttpQueryString)
//!   and an `authvalue`; for 5 and 6 the value is the `<settings><setting name=".." value=".."/></settings>` list
//!   the Plug-in Registration Tool writes. `authvalue` is never returned (`IsValidForRead` false); `isauthvalueset`
//!   says whether it is set.
//! * The real service delivers webhooks only to ports 80 and 443 (PAD `register-web-hook.md`); the sandbox also
//!   delivers to loopback URLs on any port, so the whole path runs on one machine.
//! * A step needs `name`, `stage` (10, 20 or 40), `mode` (0 synchronous, 1 asynchronous: post-operation only),
//!   `sdkmessageid` and `eventhandler`; its `sdkmessagefilterid` must be a filter of that message; filtering
//!   attributes are for `Update` steps and must be attributes of the filter's table.
//! * A service endpoint that steps still use cannot be deleted (FODOC `managing-business-event-endpoints.md`:
//!   "Dataverse doesn't allow them to be deleted if they are being used").

use serde_json::Value;

use crate::dataverse::err;
use crate::dv_schema::{self, Table};
use crate::http::Resp;
use crate::store::{DvStore, Row};

pub(crate) const WEBHOOK_CONTRACT: i64 = 8;

fn invalid(msg: impl Into<String>) -> Resp {
    err(400, "0x80040203", msg)
}

fn text<'a>(row: &'a Row, k: &str) -> &'a str {
    row.get(k).and_then(Value::as_str).unwrap_or("").trim()
}

fn int(row: &Row, k: &str) -> Option<i64> {
    row.get(k).and_then(Value::as_i64)
}

/// `<settings><setting name="k" value="v" />...</settings>` → pairs (attribute values XML-unescaped).
pub(crate) fn settings(xml: &str) -> Option<Vec<(String, String)>> {
    let body = xml.trim().strip_prefix("<settings>")?.strip_suffix("</settings>")?;
    let mut out = Vec::new();
    for item in body.split("<setting").skip(1) {
        let attr = |name: &str| -> Option<String> {
            let start = item.find(&format!("{name}=\""))? + name.len() + 2;
            let end = start + item[start..].find('"')?;
            Some(unescape(&item[start..end]))
        };
        out.push((attr("name")?, attr("value")?));
    }
    Some(out)
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The rules of the registration tables, on every Web API write (the merged row is what would be stored).
pub(crate) fn check_write(store: &DvStore, t: &Table, existing: Option<&Row>, vals: &Row) -> Result<(), Resp> {
    if t.system {
        return Err(invalid(format!(
            "The {} table is system metadata: it can only be read.",
            t.logical
        )));
    }
    let mut row = existing.cloned().unwrap_or_default();
    row.extend(vals.iter().map(|(k, v)| (k.clone(), v.clone())));
    match t.set {
        "serviceendpoints" => check_endpoint(&row),
        "sdkmessageprocessingsteps" => check_step(store, &row),
        _ => Ok(()),
    }
}

fn check_endpoint(row: &Row) -> Result<(), Resp> {
    if text(row, "name").is_empty() {
        return Err(invalid("A service endpoint needs a name."));
    }
    let Some(contract) = int(row, "contract") else {
        return Err(invalid("A service endpoint needs a contract (8 for a webhook)."));
    };
    if !(1..=10).contains(&contract) {
        return Err(invalid(format!("{contract} is not a valid contract.")));
    }
    if contract != WEBHOOK_CONTRACT {
        return Ok(());
    }
    let url = text(row, "url");
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10 {
        return Err(invalid("A webhook needs the absolute URL to post to."));
    }
    let value = text(row, "authvalue");
    match int(row, "authtype") {
        Some(4) if !value.is_empty() => Ok(()),
        Some(5 | 6) if settings(value).is_some_and(|s| !s.is_empty()) => Ok(()),
        Some(4..=6) => Err(invalid(
            "The webhook's authvalue is missing or not valid for its authtype (WebhookKey: the key; HttpHeader and \
             HttpQueryString: <settings><setting name=\"..\" value=\"..\" /></settings>).",
        )),
        _ => Err(invalid(
            "A webhook's authtype is 4 (WebhookKey), 5 (HttpHeader) or 6 (HttpQueryString).",
        )),
    }
}

fn check_step(store: &DvStore, row: &Row) -> Result<(), Resp> {
    if text(row, "name").is_empty() {
        return Err(invalid("A step needs a name."));
    }
    let stage = int(row, "stage").unwrap_or(0);
    if ![10, 20, 40].contains(&stage) {
        return Err(invalid(format!(
            "Stage {stage} is not valid: 10 (pre-validation), 20 (pre-operation) or 40 (post-operation)."
        )));
    }
    match int(row, "mode") {
        Some(0) => {}
        Some(1) if stage == 40 => {}
        Some(1) => return Err(invalid("Asynchronous steps run only in the post-operation stage (40).")),
        _ => return Err(invalid("A step's mode is 0 (synchronous) or 1 (asynchronous).")),
    }
    let message = text(row, "_sdkmessageid_value");
    let Some(msg) = store.get("sdkmessages", message) else {
        return Err(invalid("A step needs its SDK message (sdkmessageid)."));
    };
    let handler = text(row, "_eventhandler_value");
    let on_endpoint = store.get("serviceendpoints", handler).is_some();
    if !on_endpoint && store.get("plugintypes", handler).is_none() {
        return Err(invalid(
            "A step needs its event handler (a plug-in type or a service endpoint).",
        ));
    }
    let filter = text(row, "_sdkmessagefilterid_value");
    let table = if filter.is_empty() {
        None
    } else {
        let Some(f) = store.get("sdkmessagefilters", filter) else {
            return Err(invalid("The step's SDK message filter does not exist."));
        };
        if text(f, "_sdkmessageid_value") != message {
            return Err(invalid("The SDK message filter is not a filter of the step's message."));
        }
        Some(text(f, "primaryobjecttypecode").to_string())
    };
    check_filtering(row, text(msg, "name"), table.as_deref())
}

fn check_filtering(row: &Row, message: &str, table: Option<&str>) -> Result<(), Resp> {
    let attrs: Vec<&str> = text(row, "filteringattributes")
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    if attrs.is_empty() {
        return Ok(());
    }
    if message != "Update" {
        return Err(invalid(format!(
            "Filtering attributes apply to Update steps, not {message}."
        )));
    }
    let Some(t) = table.and_then(dv_schema::by_logical) else {
        return Err(invalid(
            "Filtering attributes need the step's table (sdkmessagefilterid).",
        ));
    };
    for a in attrs {
        let known = t.col(a).is_some() || t.lookups.iter().any(|l| l.name == a);
        if !known {
            return Err(invalid(format!("'{a}' is not an attribute of {}.", t.logical)));
        }
    }
    Ok(())
}

/// Deleting a service endpoint that steps use is refused.
pub(crate) fn check_delete(store: &DvStore, t: &Table, row: &Row) -> Result<(), Resp> {
    if t.system {
        return Err(invalid(format!(
            "The {} table is system metadata: it can only be read.",
            t.logical
        )));
    }
    if t.set != "serviceendpoints" {
        return Ok(());
    }
    let id = text(row, &t.pk);
    let used = store.table("sdkmessageprocessingsteps").map_or(0, |s| {
        s.rows()
            .values()
            .filter(|r| text(r, "_eventhandler_value") == id)
            .count()
    });
    if used > 0 {
        return Err(invalid(format!(
            "The service endpoint is used by {used} step(s); delete those steps first."
        )));
    }
    Ok(())
}

/// Columns the platform derives: `isauthvalueset`.
pub(crate) fn derive(t: &Table, row: &mut Row) {
    if t.set == "serviceendpoints" {
        let set = !text(row, "authvalue").is_empty();
        row.insert("isauthvalueset".into(), Value::Bool(set));
    }
}

/// A webhook on every Create, Update and Delete of every business table (`Sandbox::send_events_to`).
pub(crate) fn webhook_everywhere(store: &mut DvStore, url: &str, key: &str) -> Result<String, String> {
    let (Some(endpoints), Some(steps)) = (
        dv_schema::table("serviceendpoints"),
        dv_schema::table("sdkmessageprocessingsteps"),
    ) else {
        return Err("p2c-sandbox: the registration tables are missing".into());
    };
    let xml = key.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
    let mut ep = serde_json::Map::new();
    ep.insert("name".into(), Value::from("sandbox"));
    ep.insert("contract".into(), Value::from(WEBHOOK_CONTRACT));
    ep.insert("authtype".into(), Value::from(5));
    ep.insert("messageformat".into(), Value::from(2));
    ep.insert("url".into(), Value::from(url));
    ep.insert(
        "authvalue".into(),
        Value::from(format!(
            "<settings><setting name=\"x-p2c-webhook-key\" value=\"{xml}\" /></settings>"
        )),
    );
    let vals = crate::dataverse::direct_values(store, endpoints, &ep)?;
    let endpoint = crate::dataverse::direct_insert(store, endpoints, vals)?;
    let filters: Vec<(String, String, String)> = store
        .table("sdkmessagefilters")
        .map(|t| {
            t.rows()
                .iter()
                .map(|(id, r)| {
                    let msg = text(r, "_sdkmessageid_value").to_string();
                    (id.clone(), msg, text(r, "primaryobjecttypecode").to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    for (filter, message, table) in filters {
        let name = store
            .get("sdkmessages", &message)
            .map(|m| text(m, "name").to_string())
            .unwrap_or_default();
        let mut step = serde_json::Map::new();
        step.insert("name".into(), Value::from(format!("sandbox: {name} of {table}")));
        for (k, v) in [("stage", 40), ("mode", 1), ("rank", 1), ("supporteddeployment", 0)] {
            step.insert(k.into(), Value::from(v));
        }
        step.insert(
            "eventhandler_serviceendpoint@odata.bind".into(),
            Value::from(format!("/serviceendpoints({endpoint})")),
        );
        step.insert(
            "sdkmessageid@odata.bind".into(),
            Value::from(format!("/sdkmessages({message})")),
        );
        step.insert(
            "sdkmessagefilterid@odata.bind".into(),
            Value::from(format!("/sdkmessagefilters({filter})")),
        );
        let vals = crate::dataverse::direct_values(store, steps, &step)?;
        crate::dataverse::direct_insert(store, steps, vals)?;
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_like_the_registration_tool_writes_them() {
        let s = settings(r#"<settings><setting name="x-p2c-webhook-key" value="a&amp;b" /></settings>"#).unwrap();
        assert_eq!(s, vec![("x-p2c-webhook-key".to_string(), "a&b".to_string())]);
        assert_eq!(settings("<settings></settings>"), Some(vec![]));
        assert_eq!(settings("key=value"), None);
    }
}
