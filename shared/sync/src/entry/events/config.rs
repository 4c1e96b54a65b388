//! Configuration of the events function (one set of names with the rest of p2c; see the README): which
//! companies and flows take events, how F&O business events map to flows, the limits, the queues and the keys.

use p2c_dynamics::Secret;

use crate::{
    config::{Company, ConfigError, parse_companies},
    flow_name::FlowName,
};

/// Business events p2c maps by default: `<BusinessEventId>:<payload field>=<flow>`.
///
/// `SalesInvoicePostedBusinessEvent` and its `InvoiceId` field are Microsoft's ("Sales order invoice posted",
/// FODOC `business-events/business-events-dev-doc.md`). The business events documentation does not list a
/// sales-order-confirmed event; `SalesOrderConfirmedBusinessEvent` with `SalesOrderId` (the invoice contract's
/// field name for the order) is what p2c expects from one, and what the sandbox sends. Map the event your
/// catalog has with `P2C_BUSINESS_EVENTS`.
pub const DEFAULT_BUSINESS_EVENTS: &str = "SalesOrderConfirmedBusinessEvent:SalesOrderId=orders-to-sales,\
                                           SalesInvoicePostedBusinessEvent:InvoiceId=invoices-to-sales";

/// Bodies above this are refused with 413. Dataverse trims its payload to stay under 256 KB
/// (`x-ms-dynamics-msg-size-exceeded`); F&O business events are small by design.
pub const DEFAULT_MAX_BYTES: usize = 512 * 1024;

/// A key shorter than this is refused at start: it would be guessable.
pub const MIN_KEY_CHARS: usize = 16;

/// One business event → flow route: the event's id, the payload field holding the record's F&O key, the flow.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BusinessEventRoute {
    pub event_id: String,
    pub field: String,
    pub flow: FlowName,
}

/// The keys callers present: Dataverse's webhook key (HttpHeader `x-p2c-webhook-key`, or WebhookKey `?code=`) and
/// the business events key (in the URL F&O posts to, `?code=`).
#[derive(Clone, Debug)]
pub struct EventKeys {
    pub webhook: Secret,
    pub business_events: Secret,
}

impl EventKeys {
    /// A bare value (one key for both) or `{"webhook_key": "...", "business_events_key": "..."}`.
    pub fn parse(name: &'static str, s: &str) -> Result<EventKeys, ConfigError> {
        let invalid = |why: String| ConfigError::Invalid {
            name,
            value: "(secret, not shown)".into(),
            why,
        };
        let (webhook, business_events) = match serde_json::from_str::<serde_json::Value>(s) {
            Ok(v) if v.is_object() => {
                let get = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
                match (get("webhook_key"), get("business_events_key")) {
                    (Some(w), Some(b)) => (w, b),
                    _ => {
                        return Err(invalid(
                            "a JSON secret needs both \"webhook_key\" and \"business_events_key\"".into(),
                        ));
                    }
                }
            }
            _ => (s.trim().to_string(), s.trim().to_string()),
        };
        for k in [&webhook, &business_events] {
            if k.chars().count() < MIN_KEY_CHARS {
                return Err(invalid(format!("a key must be at least {MIN_KEY_CHARS} characters")));
            }
        }
        Ok(EventKeys {
            webhook: Secret::new(webhook),
            business_events: Secret::new(business_events),
        })
    }
}

/// Where the keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    Value(EventKeys),
    SecretsManager(String),
}

#[derive(Clone, Debug)]
pub struct EventsConfig {
    pub companies: Vec<Company>,
    pub keys: KeySource,
    pub max_bytes: usize,
    /// Flows that take events; an event for any other is acknowledged and counted as ignored.
    pub flows: Vec<FlowName>,
    pub business_events: Vec<BusinessEventRoute>,
    /// Each flow's queue URL (the Lambda is given them); flows not listed are found by name (the CLI).
    pub queue_urls: Vec<(FlowName, String)>,
    pub queue_prefix: String,
}

impl EventsConfig {
    pub fn from_env() -> Result<EventsConfig, ConfigError> {
        EventsConfig::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<EventsConfig, ConfigError> {
        let keys = match (get("P2C_EVENTS_SECRET"), get("P2C_EVENTS_SECRET_ARN")) {
            (Some(s), _) => KeySource::Value(EventKeys::parse("P2C_EVENTS_SECRET", &s)?),
            (None, Some(arn)) => KeySource::SecretsManager(arn),
            (None, None) => return Err(ConfigError::Missing("P2C_EVENTS_SECRET or P2C_EVENTS_SECRET_ARN")),
        };
        let max_bytes = match get("P2C_EVENTS_MAX_BYTES") {
            None => DEFAULT_MAX_BYTES,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1024)
                .ok_or(ConfigError::Invalid {
                    name: "P2C_EVENTS_MAX_BYTES",
                    value: v,
                    why: "expected a number of bytes, at least 1024".into(),
                })?,
        };
        Ok(EventsConfig {
            companies: parse_companies(&get("P2C_COMPANIES").unwrap_or_else(|| "usmf=usmf".into()))?,
            keys,
            max_bytes,
            flows: match get("P2C_EVENT_FLOWS") {
                None => FlowName::ALL.to_vec(),
                Some(v) => flows(&v)?,
            },
            business_events: parse_business_events(
                &get("P2C_BUSINESS_EVENTS").unwrap_or_else(|| DEFAULT_BUSINESS_EVENTS.into()),
            )?,
            queue_urls: match get("P2C_EVENT_QUEUES") {
                None => Vec::new(),
                Some(v) => parse_queue_urls(&v)?,
            },
            queue_prefix: get("P2C_QUEUE_PREFIX").unwrap_or_else(|| "p2c-".into()),
        })
    }

    pub fn company(&self, legal_entity: &str) -> Option<&Company> {
        self.companies
            .iter()
            .find(|c| c.legal_entity.eq_ignore_ascii_case(legal_entity.trim()))
    }
}

fn flows(v: &str) -> Result<Vec<FlowName>, ConfigError> {
    v.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| {
            FlowName::parse(f).ok_or_else(|| ConfigError::Invalid {
                name: "P2C_EVENT_FLOWS",
                value: v.into(),
                why: format!("{f:?} is not a flow; the flows are {}", FlowName::known()),
            })
        })
        .collect()
}

/// `EventId:Field=flow,...`.
pub fn parse_business_events(v: &str) -> Result<Vec<BusinessEventRoute>, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid {
        name: "P2C_BUSINESS_EVENTS",
        value: v.into(),
        why,
    };
    let mut out = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry.split_once('=').and_then(|(lhs, flow)| {
            lhs.split_once(':')
                .map(|(id, field)| (id.trim(), field.trim(), flow.trim()))
        });
        let Some((id, field, flow)) = parsed.filter(|(id, field, _)| !id.is_empty() && !field.is_empty()) else {
            return Err(invalid(format!(
                "{entry:?} is not <BusinessEventId>:<payload field>=<flow>"
            )));
        };
        let flow = FlowName::parse(flow)
            .ok_or_else(|| invalid(format!("{flow:?} is not a flow; the flows are {}", FlowName::known())))?;
        out.push(BusinessEventRoute {
            event_id: id.into(),
            field: field.into(),
            flow,
        });
    }
    Ok(out)
}

/// `accounts-to-fno=https://sqs...,orders-to-sales=https://sqs...`.
fn parse_queue_urls(v: &str) -> Result<Vec<(FlowName, String)>, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid {
        name: "P2C_EVENT_QUEUES",
        value: v.into(),
        why,
    };
    v.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (flow, url) = e
                .split_once('=')
                .ok_or_else(|| invalid(format!("{e:?} is not <flow>=<queue URL>")))?;
            let flow = FlowName::parse(flow.trim()).ok_or_else(|| invalid(format!("{flow:?} is not a flow")))?;
            Ok((flow, url.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn defaults_and_keys() {
        let c = EventsConfig::from_lookup(env(&[("P2C_EVENTS_SECRET", "0123456789abcdef0123")])).unwrap();
        assert_eq!(c.flows, FlowName::ALL.to_vec());
        assert_eq!(c.max_bytes, DEFAULT_MAX_BYTES);
        assert_eq!(c.business_events.len(), 2);
        assert_eq!(c.business_events[1].event_id, "SalesInvoicePostedBusinessEvent");
        assert_eq!(c.business_events[1].field, "InvoiceId");
        assert_eq!(c.business_events[1].flow, FlowName::InvoicesToSales);
        let KeySource::Value(k) = &c.keys else { panic!() };
        assert_eq!(k.webhook.expose(), k.business_events.expose());
        assert!(!format!("{c:?}").contains("0123456789abcdef"), "keys never print");
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(EventsConfig::from_lookup(env(&[])).is_err());
        assert!(EventsConfig::from_lookup(env(&[("P2C_EVENTS_SECRET", "short")])).is_err());
        let two = r#"{"webhook_key":"aaaaaaaaaaaaaaaaaaaa","business_events_key":"bbbbbbbbbbbbbbbbbbbb"}"#;
        let c = EventsConfig::from_lookup(env(&[("P2C_EVENTS_SECRET", two)])).unwrap();
        let KeySource::Value(k) = &c.keys else { panic!() };
        assert_ne!(k.webhook.expose(), k.business_events.expose());
        assert!(EventKeys::parse("x", r#"{"webhook_key":"aaaaaaaaaaaaaaaaaaaa"}"#).is_err());
        assert!(parse_business_events("NoField=orders-to-sales").is_err());
        assert!(parse_business_events("E:F=no-such-flow").is_err());
        let bad_flows = [("P2C_EVENTS_SECRET", "0123456789abcdef0123"), ("P2C_EVENT_FLOWS", "x")];
        assert!(EventsConfig::from_lookup(env(&bad_flows)).is_err());
        let q = [
            ("P2C_EVENTS_SECRET", "0123456789abcdef0123"),
            (
                "P2C_EVENT_QUEUES",
                "orders-to-sales=https://sqs.us-east-1.amazonaws.com/1/p-orders-to-sales",
            ),
        ];
        let c = EventsConfig::from_lookup(env(&q)).unwrap();
        assert_eq!(c.queue_urls[0].0, FlowName::OrdersToSales);
    }
}
