//! Configuration: one set of names for the Lambdas and the CLI (see the README for every variable).

use std::{path::PathBuf, time::Duration};

use p2c_dynamics::Secret;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{0} is not set; see the README, section Configuration")]
    Missing(&'static str),
    #[error("{name} = {value:?} is not valid: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: String,
    },
    #[error("could not read the client secret from Secrets Manager ({arn}): {why}")]
    Secret { arn: String, why: String },
    #[error(
        "{source_name} holds no secret for the client id(s) {missing}: with several ids in P2C_CLIENT_ID it must be \
         a JSON object {{\"<client id>\": \"<secret>\", ...}} with one entry per id (see the README, section \
         Configuration)"
    )]
    SecretsPerUser { source_name: String, missing: String },
}

/// A legal entity (F&O `dataAreaId`) and the Sales business unit that owns its records.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Company {
    pub legal_entity: String,
    /// Business unit name or GUID, as configured.
    pub business_unit: String,
    /// Sales → F&O reads also take the records of the business units below it (the default); `false` with the
    /// `exact` option: only the records the unit itself owns.
    pub include_child_units: bool,
}

/// The option after a business unit in P2C_COMPANIES (`usmf=US Sales;exact`) that leaves its child units out.
pub const EXACT_UNIT_OPTION: &str = "exact";

/// Where the client secret comes from: never from a file, never logged.
#[derive(Clone, Debug)]
pub enum SecretSource {
    Value(Secret),
    SecretsManager(String),
}

#[derive(Clone, Debug)]
pub struct Config {
    pub sales_url: String,
    pub fno_url: String,
    pub authority_url: String,
    pub tenant_id: String,
    /// The application users p2c calls both services as (P2C_CLIENT_ID: one id, or several comma separated to
    /// shard the load over their service-protection limits). At least one.
    pub client_ids: Vec<String>,
    /// The secret of the only user, or a JSON object client id → secret for several ([`secrets_for`]).
    pub client_secret: SecretSource,
    /// The deployment (CloudFormation stack) this runs in: the Stack dimension of the metrics, so two stacks in
    /// one account do not feed each other's alarms.
    pub stack: String,
    pub table: String,
    /// This function's queue (Lambda); the CLI finds queues by name instead.
    pub queue_url: Option<String>,
    pub dlq_url: Option<String>,
    /// Queue names are `<prefix><flow>` and `<prefix><flow>-dlq`.
    pub queue_prefix: String,
    pub companies: Vec<Company>,
    pub mapping: Option<PathBuf>,
    /// Operations per `$batch` request.
    pub batch_size: usize,
    /// Client-side limits per service: requests in flight and requests per second (0 = unlimited).
    pub max_concurrent_requests: usize,
    pub max_requests_per_second: f64,
    /// `$batch` requests in flight at once per run.
    pub write_concurrency: usize,
    /// Rows per page read (Dataverse caps at 5,000). The default, 1,000, keeps a run of any size under 64 MB
    /// (a 128 MB Lambda); 5,000 saves read requests where memory allows.
    pub page_size: usize,
    /// Rows per page of an F&O sweep (F&O pages at 10,000, the default): fewer requests per sweep. Defaults
    /// to `P2C_PAGE_SIZE` when only that is set.
    pub sweep_page_size: usize,
    /// Headers per page of a document sweep (orders, invoices): 1,500 by default; with about three lines each a
    /// page of 6,000 records, which keeps an unchanged sweep of 100,000 orders under 64 MB in 14 F&O requests.
    /// Defaults to `P2C_PAGE_SIZE` when only that is set.
    pub sweep_document_page_size: usize,
    /// A sweep that reads every record, settled ones too, runs when the last began this long ago (0: every
    /// sweep is full); the sweeps between leave settled documents out of the F&O query.
    pub full_sweep_every: Duration,
    /// Documents settle this long after their date: orders Invoiced or Canceled and created before, invoices
    /// dated before. Regular sweeps leave them out.
    pub settled_after: Duration,
    /// Sweeps compare a digest per key range before reading per-record links (`P2C_SWEEP_DIGESTS=false`: not).
    pub sweep_digests: bool,
    /// A record that failed transiently this many times goes to the DLQ.
    pub max_attempts: u32,
    /// How long the retries of a record span before it is dead-lettered (exponential backoff with jitter).
    pub retry_window: Duration,
    /// A scheduled run stops this long before its Lambda deadline (committing what is done).
    pub deadline_margin: Duration,
    /// Service protection shared by every invocation (requests per window per application user and service);
    /// `None`: each process limits only itself.
    pub budget: Option<(u32, Duration)>,
    pub lease_ttl: Duration,
    pub http_timeout: Duration,
    /// Skip records whose mapped content equals what was last written (off only to measure the naive way).
    pub skip_unchanged: bool,
    /// Read and map as a real run would, write nothing anywhere (set by `p2c run --dry-run`, not by env).
    pub dry_run: bool,
    /// Flows that retire the target when its source is deleted or deactivated (P2C_DEACTIVATE_TARGETS); the
    /// others only report it, as the Data Integrator did.
    pub deactivate_targets: Vec<crate::flow_name::FlowName>,
}

pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads the configuration through `get` (testable without touching the environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let req = |k: &'static str| get(k).ok_or(ConfigError::Missing(k));
        let url = |k: &'static str, v: String| -> Result<String, ConfigError> {
            p2c_dynamics::check_endpoint(k, &v).map_err(|e| ConfigError::Invalid {
                name: k,
                value: v.clone(),
                why: e.to_string(),
            })?;
            Ok(v.trim_end_matches('/').to_string())
        };
        let client_secret = match (get("P2C_CLIENT_SECRET"), get("P2C_CLIENT_SECRET_ARN")) {
            (Some(s), _) => SecretSource::Value(Secret::new(s)),
            (None, Some(arn)) => SecretSource::SecretsManager(arn),
            (None, None) => return Err(ConfigError::Missing("P2C_CLIENT_SECRET or P2C_CLIENT_SECRET_ARN")),
        };
        let num = |k: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(k) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(ConfigError::Invalid {
                        name: k,
                        value: v,
                        why: "expected a positive whole number".into(),
                    }),
            }
        };
        // A sweep page: its own variable, else P2C_PAGE_SIZE when only that is set, else `default`; F&O pages
        // at 10,000.
        let sweep_page = |k: &'static str, default: u64| -> Result<usize, ConfigError> {
            let fallback = match get("P2C_PAGE_SIZE") {
                Some(_) => num("P2C_PAGE_SIZE", 1000)?.min(5000),
                None => default,
            };
            Ok(num(k, fallback)?.clamp(1, 10_000) as usize)
        };
        Ok(Config {
            sales_url: url("P2C_SALES_URL", req("P2C_SALES_URL")?)?,
            fno_url: url("P2C_FNO_URL", req("P2C_FNO_URL")?)?,
            authority_url: url(
                "P2C_AUTHORITY_URL",
                get("P2C_AUTHORITY_URL").unwrap_or_else(|| DEFAULT_AUTHORITY.into()),
            )?,
            tenant_id: req("P2C_TENANT_ID")?,
            client_ids: parse_client_ids(&req("P2C_CLIENT_ID")?)?,
            client_secret,
            stack: get("P2C_STACK").unwrap_or_else(|| "p2c".into()),
            table: get("P2C_TABLE").unwrap_or_else(|| "p2c".into()),
            queue_url: get("P2C_QUEUE_URL"),
            dlq_url: get("P2C_DLQ_URL"),
            queue_prefix: get("P2C_QUEUE_PREFIX").unwrap_or_else(|| "p2c-".into()),
            companies: parse_companies(&get("P2C_COMPANIES").unwrap_or_else(|| "usmf=usmf".into()))?,
            mapping: get("P2C_MAPPING").map(PathBuf::from),
            batch_size: num("P2C_BATCH_SIZE", 500)?.min(1000) as usize,
            write_concurrency: num("P2C_WRITE_CONCURRENCY", 4)?.min(32) as usize,
            max_concurrent_requests: num("P2C_MAX_CONCURRENT_REQUESTS", 16)?.min(52) as usize,
            max_requests_per_second: match get("P2C_MAX_REQUESTS_PER_SECOND") {
                None => 20.0,
                Some(v) => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|n| *n >= 0.0)
                    .ok_or(ConfigError::Invalid {
                        name: "P2C_MAX_REQUESTS_PER_SECOND",
                        value: v,
                        why: "expected a number of requests per second (0 = no limit)".into(),
                    })?,
            },
            page_size: num("P2C_PAGE_SIZE", 1000)?.min(5000) as usize,
            sweep_page_size: sweep_page("P2C_SWEEP_PAGE_SIZE", 10_000)?,
            sweep_document_page_size: sweep_page("P2C_SWEEP_DOCUMENT_PAGE_SIZE", 1_500)?,
            full_sweep_every: Duration::from_secs(match get("P2C_FULL_SWEEP_HOURS") {
                Some(v) if v.trim() == "0" => 0,
                _ => num("P2C_FULL_SWEEP_HOURS", 24)? * 3600,
            }),
            settled_after: Duration::from_secs(num("P2C_SETTLED_AFTER_DAYS", 30)? * 86_400),
            sweep_digests: get("P2C_SWEEP_DIGESTS").is_none_or(|v| v != "false" && v != "0"),
            max_attempts: num("P2C_MAX_ATTEMPTS", 5)? as u32,
            deadline_margin: Duration::from_secs(num("P2C_DEADLINE_MARGIN_SECONDS", 60)?),
            budget: match get("P2C_BUDGET_REQUESTS") {
                Some(v) if v.trim() == "0" => None,
                _ => Some((
                    num("P2C_BUDGET_REQUESTS", 6000)?.min(u64::from(u32::MAX)) as u32,
                    Duration::from_secs(num("P2C_BUDGET_WINDOW_SECONDS", 300)?),
                )),
            },
            retry_window: Duration::from_secs(match get("P2C_RETRY_WINDOW_SECONDS") {
                Some(v) if v.trim() == "0" => 0,
                _ => num("P2C_RETRY_WINDOW_SECONDS", 3600)?,
            }),
            lease_ttl: Duration::from_secs(num("P2C_LEASE_SECONDS", 900)?),
            http_timeout: Duration::from_secs(num("P2C_HTTP_TIMEOUT_SECONDS", 60)?),
            skip_unchanged: get("P2C_SKIP_UNCHANGED").is_none_or(|v| v != "false" && v != "0"),
            dry_run: false,
            deactivate_targets: deactivate_targets(get("P2C_DEACTIVATE_TARGETS"))?,
        })
    }

    pub fn company(&self, legal_entity: &str) -> Option<&Company> {
        self.companies
            .iter()
            .find(|c| c.legal_entity.eq_ignore_ascii_case(legal_entity))
    }
}

/// `id` or `id1,id2,...`: the application users, each once.
fn parse_client_ids(s: &str) -> Result<Vec<String>, ConfigError> {
    let invalid = |why: &str| ConfigError::Invalid {
        name: "P2C_CLIENT_ID",
        value: s.to_string(),
        why: why.into(),
    };
    let ids: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Err(invalid("no client id listed"));
    }
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].iter().any(|o| o.eq_ignore_ascii_case(id)) {
            return Err(invalid(
                "a client id is listed twice (each application user counts once)",
            ));
        }
    }
    Ok(ids)
}

/// Each client id's secret, in the order of `ids`, from the configured value (`source_name` names where it came
/// from, for errors): a JSON object `{"<client id>": "<secret>", ...}`; with one id also the bare secret or
/// `{"client_secret": "..."}`, as before several users were possible. Never prints a secret.
pub fn secrets_for(ids: &[String], raw: &Secret, source_name: &str) -> Result<Vec<Secret>, ConfigError> {
    let parsed = serde_json::from_str::<serde_json::Value>(raw.expose()).ok();
    let object = parsed.as_ref().and_then(|v| v.as_object());
    let per_id = |id: &String| object?.get(id)?.as_str().map(Secret::new);
    let found: Vec<Option<Secret>> = ids.iter().map(per_id).collect();
    if found.iter().all(Option::is_some) {
        return Ok(found.into_iter().flatten().collect());
    }
    if let [_] = ids {
        let single = match object {
            Some(o) => o.get("client_secret").and_then(|v| v.as_str()).map(Secret::new),
            None => Some(raw.clone()),
        };
        if let Some(s) = single {
            return Ok(vec![s]);
        }
    }
    let missing: Vec<&str> = ids
        .iter()
        .zip(&found)
        .filter(|(_, s)| s.is_none())
        .map(|(id, _)| id.as_str())
        .collect();
    Err(ConfigError::SecretsPerUser {
        source_name: source_name.to_string(),
        missing: missing.join(", "),
    })
}

/// P2C_DEACTIVATE_TARGETS: the flows that can retire their target. A flow without a way to do it is refused with
/// the reason, never accepted and ignored.
fn deactivate_targets(v: Option<String>) -> Result<Vec<crate::flow_name::FlowName>, ConfigError> {
    use crate::flow_name::FlowName::*;
    let flows = parse_flows("P2C_DEACTIVATE_TARGETS", v.clone())?;
    for f in &flows {
        let why = match f {
            AccountsToFno | ContactsToFno | ProductsToSales => continue,
            // fno_schema.json publishes SalesQuotationStatus/SalesOrderStatus on the CDS headers, but F&O sets
            // them in its own processes (a quotation's Cancel, an order's "deliver remainder" cancel); no
            // documented OData write cancels a document, and p2c does not fake one.
            QuotesToFno | OrdersToFno => {
                "F&O offers no documented way to cancel a sales quotation or order through OData: a document \
                 deleted in Sales is reported and its F&O document kept (README, Deletes and deactivations)"
            }
            _ => "F&O publishes no deletes of orders or invoices, so there is nothing to retire in Sales",
        };
        return Err(ConfigError::Invalid {
            name: "P2C_DEACTIVATE_TARGETS",
            value: v.unwrap_or_default(),
            why: format!("{f}: {why}; the flows that can are accounts-to-fno, contacts-to-fno, products-to-sales"),
        });
    }
    Ok(flows)
}

/// A comma-separated list of flow names.
fn parse_flows(name: &'static str, v: Option<String>) -> Result<Vec<crate::flow_name::FlowName>, ConfigError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    v.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| {
            crate::flow_name::FlowName::parse(f).ok_or_else(|| ConfigError::Invalid {
                name,
                value: v.clone(),
                why: format!(
                    "{f:?} is not a flow; the flows are {}",
                    crate::flow_name::FlowName::known()
                ),
            })
        })
        .collect()
}

/// `usmf=US Sales,usrt=<guid>;exact`: legal entity = business unit (name or GUID), comma separated; `;exact`
/// after a business unit restricts Sales → F&O reads to records that unit owns itself.
pub fn parse_companies(s: &str) -> Result<Vec<Company>, ConfigError> {
    let invalid = |why: &str| ConfigError::Invalid {
        name: "P2C_COMPANIES",
        value: s.to_string(),
        why: why.into(),
    };
    let mut out: Vec<Company> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (le, bu) = part
            .split_once('=')
            .ok_or_else(|| invalid("each entry is <legal entity>=<business unit>"))?;
        let le = le.trim().to_ascii_lowercase();
        if le.is_empty() || le.len() > 4 || !le.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid("a legal entity id is 1 to 4 letters or digits, like usmf"));
        }
        let mut parts = bu.split(';');
        let bu = parts.next().unwrap_or_default();
        if bu.trim().is_empty() {
            return Err(invalid("the business unit after '=' is empty"));
        }
        let mut include_child_units = true;
        for opt in parts.map(str::trim) {
            if opt.eq_ignore_ascii_case(EXACT_UNIT_OPTION) {
                include_child_units = false;
            } else {
                return Err(invalid(&format!(
                    "unknown option {opt:?} after the business unit; the only option is ';{EXACT_UNIT_OPTION}'"
                )));
            }
        }
        if out.iter().any(|c| c.legal_entity == le) {
            return Err(invalid("a legal entity is listed twice"));
        }
        out.push(Company {
            legal_entity: le,
            business_unit: bu.trim().to_string(),
            include_child_units,
        });
    }
    if out.is_empty() {
        return Err(invalid("no companies listed"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    const BASE: &[(&str, &str)] = &[
        ("P2C_SALES_URL", "https://org.crm.dynamics.com/"),
        ("P2C_FNO_URL", "https://env.operations.dynamics.com"),
        ("P2C_TENANT_ID", "t"),
        ("P2C_CLIENT_ID", "c"),
        ("P2C_CLIENT_SECRET", "s3cr3t"),
    ];

    #[test]
    fn reads_defaults_and_trims_urls() {
        let c = Config::from_lookup(env(BASE)).unwrap();
        assert_eq!(c.sales_url, "https://org.crm.dynamics.com");
        assert_eq!(
            c.companies,
            vec![Company {
                legal_entity: "usmf".into(),
                business_unit: "usmf".into(),
                include_child_units: true,
            }]
        );
        assert_eq!(c.authority_url, DEFAULT_AUTHORITY);
        assert_eq!(c.stack, "p2c");
        assert!(!format!("{c:?}").contains("s3cr3t"), "the secret must never print");
    }

    #[test]
    fn sweep_pages_default_follow_the_page_size_and_stop_at_ten_thousand() {
        let pages = |extra: &[(&'static str, &'static str)]| {
            let pairs = [BASE, extra].concat();
            let c = Config::from_lookup(env(&pairs)).unwrap();
            (c.sweep_page_size, c.sweep_document_page_size)
        };
        assert_eq!(pages(&[]), (10_000, 1_500));
        assert_eq!(pages(&[("P2C_PAGE_SIZE", "200")]), (200, 200));
        assert_eq!(
            pages(&[("P2C_PAGE_SIZE", "200"), ("P2C_SWEEP_PAGE_SIZE", "50000")]),
            (10_000, 200)
        );
        let bad = [BASE, &[("P2C_SWEEP_DOCUMENT_PAGE_SIZE", "0")]].concat();
        assert!(Config::from_lookup(env(&bad)).is_err());
    }

    #[test]
    fn several_client_ids_each_with_its_secret() {
        let mut pairs = BASE.to_vec();
        pairs[3] = ("P2C_CLIENT_ID", " app-a , app-b ");
        let c = Config::from_lookup(env(&pairs)).unwrap();
        assert_eq!(c.client_ids, vec!["app-a".to_string(), "app-b".to_string()]);
        let ids = c.client_ids;
        let raw = Secret::new(r#"{"app-b": "sb", "app-a": "sa", "other": "x"}"#);
        let got = secrets_for(&ids, &raw, "P2C_CLIENT_SECRET").unwrap();
        assert_eq!(got.iter().map(Secret::expose).collect::<Vec<_>>(), ["sa", "sb"]);
        // A missing id is named, the secrets are not printed.
        let e = secrets_for(&ids, &Secret::new(r#"{"app-a": "sa"}"#), "arn:x").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("app-b") && text.contains("arn:x") && !text.contains("sa\""),
            "{text}"
        );
        assert!(secrets_for(&ids, &Secret::new("bare"), "P2C_CLIENT_SECRET").is_err());
        pairs[3] = ("P2C_CLIENT_ID", "app-a,APP-A");
        assert!(Config::from_lookup(env(&pairs)).is_err(), "an id listed twice");
    }

    #[test]
    fn one_client_id_takes_the_bare_secret_or_either_object() {
        let one = vec!["c".to_string()];
        for raw in ["s3", r#"{"client_secret": "s3"}"#, r#"{"c": "s3"}"#] {
            let got = secrets_for(&one, &Secret::new(raw), "P2C_CLIENT_SECRET").unwrap();
            assert_eq!(got[0].expose(), "s3", "{raw}");
        }
        assert!(secrets_for(&one, &Secret::new(r#"{"d": "s3"}"#), "P2C_CLIENT_SECRET").is_err());
    }

    #[test]
    fn deactivate_targets_take_only_the_flows_that_can() {
        let mut pairs = BASE.to_vec();
        pairs.push(("P2C_DEACTIVATE_TARGETS", "accounts-to-fno, products-to-sales"));
        let c = Config::from_lookup(env(&pairs)).unwrap();
        assert_eq!(c.deactivate_targets.len(), 2);
        for (flow, says) in [
            ("orders-to-fno", "cancel"),
            ("quotes-to-fno", "cancel"),
            ("invoices-to-sales", "no deletes"),
        ] {
            *pairs.last_mut().unwrap() = ("P2C_DEACTIVATE_TARGETS", flow);
            let e = Config::from_lookup(env(&pairs)).unwrap_err().to_string();
            assert!(e.contains(flow) && e.contains(says), "{e}");
        }
    }

    #[test]
    fn refuses_plain_http_off_loopback() {
        let mut pairs = BASE.to_vec();
        pairs[0] = ("P2C_SALES_URL", "http://org.crm.dynamics.com");
        let e = Config::from_lookup(env(&pairs)).unwrap_err();
        assert!(e.to_string().contains("P2C_SALES_URL"), "{e}");
        pairs[0] = ("P2C_SALES_URL", "http://127.0.0.1:8080");
        assert!(Config::from_lookup(env(&pairs)).is_ok());
    }

    #[test]
    fn companies_parse_and_reject() {
        let c = parse_companies("USMF=US Sales, usrt=9b1f0000-0000-0000-0000-000000000001").unwrap();
        assert_eq!(c[0].legal_entity, "usmf");
        assert_eq!(c[1].business_unit, "9b1f0000-0000-0000-0000-000000000001");
        assert!(c.iter().all(|c| c.include_child_units), "child units count by default");
        let c = parse_companies("usmf=US Sales; Exact ,usrt=Retail").unwrap();
        assert_eq!(
            (c[0].business_unit.as_str(), c[0].include_child_units),
            ("US Sales", false)
        );
        assert!(c[1].include_child_units);
        let e = parse_companies("usmf=US Sales;children").unwrap_err();
        assert!(e.to_string().contains("the only option is ';exact'"), "{e}");
        assert!(parse_companies("usmf=;exact").is_err());
        assert!(parse_companies("usmf").is_err());
        assert!(parse_companies("usmf=a,usmf=b").is_err());
        assert!(parse_companies("toolongname=a").is_err());
    }
}
