//! What a call says, read from its body. Only the fields p2c routes by are read; the record itself is re-read by
//! the worker, so nothing else in a payload is trusted or kept.
//!
//! Dataverse: the body is a `RemoteExecutionContext` serialized as JSON (PAD `use-webhooks.md`, "Request Body"):
//! `MessageName`, `PrimaryEntityName`, `PrimaryEntityId`; when the payload exceeds 256 KB Dataverse drops
//! `InputParameters`, `ParentContext` and the entity images but keeps those three. The owning business unit is
//! taken from the `Target` entity or an image when present (a Create carries it), to pick the company.
//!
//! F&O: a business event's JSON payload (FODOC `business-events/home-page.md`, `business-events-dev-doc.md`):
//! `BusinessEventId` (the event's class name), `BusinessEventLegalEntity` (the company it happened in), and the
//! event contract's fields (e.g. `InvoiceId`).

use serde_json::{Map, Value};

/// A Dataverse webhook call.
#[derive(Debug, PartialEq)]
pub struct DataverseEvent {
    pub message: String,
    pub entity: String,
    pub id: String,
    /// `owningbusinessunit` of the record, when the payload has it.
    pub owner_bu: Option<String>,
}

/// An F&O business event.
#[derive(Debug, PartialEq)]
pub struct BusinessEvent {
    pub id: String,
    pub legal_entity: String,
    pub fields: Map<String, Value>,
}

fn object(body: &[u8]) -> Result<Map<String, Value>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8 text".to_string())?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("the body is JSON but not an object".into()),
        Err(e) => Err(format!("the body is not JSON: {e}")),
    }
}

fn text(m: &Map<String, Value>, k: &str) -> Result<String, String> {
    match m.get(k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => Err(format!("the body has no {k}")),
    }
}

pub fn dataverse(body: &[u8]) -> Result<DataverseEvent, String> {
    let m = object(body)?;
    let message = text(&m, "MessageName")?;
    let entity = text(&m, "PrimaryEntityName")?.to_ascii_lowercase();
    let id = text(&m, "PrimaryEntityId")?.to_ascii_lowercase();
    if !p2c_dynamics::odata::is_guid(&id) {
        return Err(format!("PrimaryEntityId {id:?} is not a GUID"));
    }
    if entity.len() > 100 || !entity.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("PrimaryEntityName is not a table's logical name".into());
    }
    Ok(DataverseEvent {
        message,
        entity,
        id,
        owner_bu: owner_bu(&m),
    })
}

/// `owningbusinessunit` from the Target entity or from any entity image: an EntityReference `{"Id": ...}`.
fn owner_bu(m: &Map<String, Value>) -> Option<String> {
    let entities = ["InputParameters", "PostEntityImages", "PreEntityImages"]
        .iter()
        .filter_map(|k| m.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(|kv| kv.get("value"));
    for e in entities {
        let attrs = e.get("Attributes").and_then(Value::as_array).into_iter().flatten();
        for a in attrs {
            if a.get("key").and_then(Value::as_str) == Some("owningbusinessunit")
                && let Some(id) = a.get("value").and_then(|v| v.get("Id")).and_then(Value::as_str)
                && p2c_dynamics::odata::is_guid(id)
            {
                return Some(id.to_ascii_lowercase());
            }
        }
    }
    None
}

pub fn business_event(body: &[u8]) -> Result<BusinessEvent, String> {
    let m = object(body)?;
    Ok(BusinessEvent {
        id: text(&m, "BusinessEventId")?,
        legal_entity: text(&m, "BusinessEventLegalEntity")?,
        fields: m,
    })
}

impl BusinessEvent {
    /// A contract field as a key: text or a whole number, not blank, at most 200 characters.
    pub fn key(&self, field: &str) -> Option<String> {
        let k = match self.fields.get(field)? {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => return None,
        };
        (!k.is_empty() && k.chars().count() <= 200).then_some(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_remote_execution_context() {
        let body = json!({
            "MessageName": "Create", "PrimaryEntityName": "account",
            "PrimaryEntityId": "6D81597F-0F9F-E711-8122-000D3AA2331C",
            "InputParameters": [{"key": "Target", "value": {"Attributes": [
                {"key": "name", "value": "Contoso"},
                {"key": "owningbusinessunit", "value": {"Id": "E2B9DD85-E89E-E711-8122-000D3AA2331C", "LogicalName": "businessunit"}}
            ]}}]
        });
        let e = dataverse(body.to_string().as_bytes()).unwrap();
        assert_eq!(e.message, "Create");
        assert_eq!(e.id, "6d81597f-0f9f-e711-8122-000d3aa2331c");
        assert_eq!(e.owner_bu.as_deref(), Some("e2b9dd85-e89e-e711-8122-000d3aa2331c"));
        // Trimmed (over 256 KB): the routing fields stay.
        let small = json!({"MessageName": "Update", "PrimaryEntityName": "contact",
            "PrimaryEntityId": "6d81597f-0f9f-e711-8122-000d3aa2331c"});
        assert_eq!(dataverse(small.to_string().as_bytes()).unwrap().owner_bu, None);
    }

    #[test]
    fn refuses_what_is_not_an_event() {
        assert!(dataverse(b"{not json").is_err());
        assert!(dataverse(b"[1,2]").is_err());
        assert!(dataverse(&[0xff, 0xfe]).is_err());
        let no_id = json!({"MessageName": "Update", "PrimaryEntityName": "account"});
        assert!(dataverse(no_id.to_string().as_bytes()).is_err());
        let bad_id = json!({"MessageName": "Update", "PrimaryEntityName": "account", "PrimaryEntityId": "x' or 1"});
        assert!(dataverse(bad_id.to_string().as_bytes()).is_err());
        assert!(business_event(json!({"BusinessEventId": "X"}).to_string().as_bytes()).is_err());
    }

    #[test]
    fn reads_a_business_event() {
        let body = json!({"BusinessEventId": "SalesInvoicePostedBusinessEvent", "BusinessEventLegalEntity": "USMF",
            "ControlNumber": 5637144577i64, "InvoiceId": "CIV-000001", "InvoiceAmountInAccountingCurrency": 12.5});
        let e = business_event(body.to_string().as_bytes()).unwrap();
        assert_eq!(e.legal_entity, "USMF");
        assert_eq!(e.key("InvoiceId").as_deref(), Some("CIV-000001"));
        assert_eq!(e.key("ControlNumber").as_deref(), Some("5637144577"));
        assert_eq!(e.key("InvoiceAmountInAccountingCurrency"), None);
        assert_eq!(e.key("Missing"), None);
    }
}
