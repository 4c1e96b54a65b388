//! Everything a run needs, built once per process (Lambda init, or CLI start) and shared by every invocation.

use std::{collections::HashMap, sync::Arc};

use p2c_dynamics::{
    Api, AppUser, Credentials, Dataverse, DryRun, Fno, Limiter, RequestStats, Secret, TokenCache, Users,
};
use p2c_mapping::MappingOverrides;
use p2c_state::{QueuePair, Queues, StateStore};
use tokio::sync::Mutex;

use crate::{
    budget::SharedBudget,
    config::{Config, ConfigError, SecretSource},
    error::SyncError,
    flow_name::FlowName,
    ownership::BusinessUnitScope,
};
// The lookup cache is state of the process, not of the pipeline: only that leaf module is used here.
use crate::pipeline::lookups::Lookups;

pub struct Deps {
    pub cfg: Config,
    /// One token cache per application user (P2C_CLIENT_ID), in configuration order.
    pub tokens: Vec<Arc<TokenCache>>,
    pub sales: Dataverse,
    pub fno: Fno,
    pub state: StateStore,
    pub queues: Queues,
    pub lookups: Lookups,
    /// Crash points armed by the fault suite (never by configuration).
    pub crashes: crate::faults::Crashes,
    /// Set in a dry run: the writes that would have been made.
    pub dry_run: Option<Arc<DryRun>>,
    /// Every flow's templates in run order, with the P2C_MAPPING overrides applied.
    templates: HashMap<FlowName, Vec<p2c_mapping::Template>>,
    business_units: Mutex<HashMap<String, String>>,
    /// Legal entity → the default team of its business unit.
    default_teams: Mutex<HashMap<String, String>>,
    queue_urls: Mutex<HashMap<FlowName, QueuePair>>,
}

impl Deps {
    /// Builds clients from an AWS config (the default chain in Lambda, moto locally).
    pub async fn new(cfg: Config, aws: &aws_config::SdkConfig) -> Result<Deps, SyncError> {
        let (raw, source_name) = match &cfg.client_secret {
            SecretSource::Value(s) => (s.clone(), "P2C_CLIENT_SECRET".to_string()),
            SecretSource::SecretsManager(arn) => (fetch_secret(aws, arn).await?, arn.clone()),
        };
        let secrets = crate::config::secrets_for(&cfg.client_ids, &raw, &source_name)?;
        let http = p2c_dynamics::http_client(cfg.http_timeout);
        // One token cache per application user, shared by both services (tokens are cached per scope).
        let tokens: Vec<Arc<TokenCache>> = cfg
            .client_ids
            .iter()
            .zip(secrets)
            .map(|(id, secret)| {
                Arc::new(TokenCache::new(
                    http.clone(),
                    Credentials {
                        authority_url: cfg.authority_url.clone(),
                        tenant: cfg.tenant_id.clone(),
                        client_id: id.clone(),
                        client_secret: secret,
                    },
                ))
            })
            .collect();
        let mut state = StateStore::new(aws_sdk_dynamodb::Client::new(aws), cfg.table.clone());
        let users = |service: &str| Arc::new(app_users(&tokens, &cfg, &state, service));
        let limiter = || Arc::new(Limiter::new(cfg.max_concurrent_requests, cfg.max_requests_per_second));
        let mut sales_api = Api::new("sales", http.clone(), tokens[0].clone(), &cfg.sales_url)
            .with_users(users("sales"))
            .with_limiter(limiter());
        let mut fno_api = Api::new("fno", http, tokens[0].clone(), &cfg.fno_url)
            .with_users(users("fno"))
            .with_limiter(limiter());
        let mut queues = Queues::new(aws_sdk_sqs::Client::new(aws), cfg.queue_prefix.clone());
        let dry_run = cfg.dry_run.then(|| Arc::new(DryRun::default()));
        if let Some(d) = &dry_run {
            // Reads go out as usual; every write to Dynamics, DynamoDB and SQS is recorded or skipped.
            sales_api = sales_api.with_dry_run(d.clone());
            fno_api = fno_api.with_dry_run(d.clone());
            state = state.dry_run();
            queues = queues.dry_run();
        }
        let sales = Dataverse::from_api(sales_api).with_page_size(cfg.page_size);
        let fno = Fno::from_api(fno_api);
        let overrides = match &cfg.mapping {
            Some(path) => Some(MappingOverrides::load(path).map_err(|e| SyncError::Mapping(e.to_string()))?),
            None => None,
        };
        let mut templates = HashMap::new();
        for f in FlowName::ALL {
            let mut ts = p2c_mapping::templates_for(f.as_str());
            if let Some(o) = &overrides {
                for t in &mut ts {
                    o.apply(t).map_err(|e| SyncError::Mapping(e.to_string()))?;
                }
            }
            templates.insert(f, ts);
        }
        Ok(Deps {
            cfg,
            tokens,
            sales,
            fno,
            state,
            queues,
            lookups: Lookups::default(),
            dry_run,
            crashes: Default::default(),
            templates,
            business_units: Default::default(),
            default_teams: Default::default(),
            queue_urls: Default::default(),
        })
    }

    /// Reads the configuration and AWS settings from the environment (what a Lambda's `main` calls).
    pub async fn from_env() -> Result<Deps, SyncError> {
        let cfg = Config::from_env()?;
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Deps::new(cfg, &aws).await
    }

    /// The flow's templates in run order (headers before lines), overrides applied.
    pub fn templates(&self, flow: FlowName) -> &[p2c_mapping::Template] {
        self.templates.get(&flow).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The flow's template with this task name (e.g. "QuoteLine").
    pub fn template(&self, flow: FlowName, task: &str) -> Option<&p2c_mapping::Template> {
        self.templates(flow).iter().find(|t| t.name == task)
    }

    /// Requests made to both Dynamics services since the last reset.
    pub fn dynamics_stats(&self) -> RequestStats {
        let mut s = self.sales.api().stats();
        s.merge(&self.fno.api().stats());
        *s.by_endpoint.entry("token POST".into()).or_default() += self.tokens.iter().map(|t| t.fetched()).sum::<u64>();
        s
    }

    /// The business unit GUID that owns a company's Sales records (configured as a GUID or a name).
    pub async fn business_unit_id(&self, company: &str) -> Result<String, SyncError> {
        let c = self
            .cfg
            .company(company)
            .ok_or_else(|| SyncError::UnknownCompany(company.into(), self.companies_list()))?;
        if p2c_dynamics::odata::is_guid(&c.business_unit) {
            return Ok(c.business_unit.to_ascii_lowercase());
        }
        if let Some(id) = self.business_units.lock().await.get(&c.legal_entity) {
            return Ok(id.clone());
        }
        let filter = format!("name eq {}", p2c_dynamics::odata::string_literal(&c.business_unit));
        let rows = self
            .sales
            .list(
                "businessunits",
                &["businessunitid".into(), "name".into()],
                Some(&filter),
            )
            .await?;
        let id = rows
            .first()
            .and_then(|r| r.get("businessunitid"))
            .and_then(|v| v.as_str())
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| SyncError::BusinessUnit {
                company: company.into(),
                bu: c.business_unit.clone(),
            })?;
        self.business_units
            .lock()
            .await
            .insert(c.legal_entity.clone(), id.clone());
        Ok(id)
    }

    /// The default team of the company's business unit: the owner of the records p2c creates in Sales (cached
    /// like the business unit; Dataverse keeps one default team per unit for the unit's life).
    pub async fn default_team_id(&self, company: &str) -> Result<String, SyncError> {
        let le = self.legal_entity(company)?;
        if let Some(id) = self.default_teams.lock().await.get(&le) {
            return Ok(id.clone());
        }
        let bu = self.business_unit_id(company).await?;
        let filter = format!("_businessunitid_value eq {bu} and isdefault eq true");
        let rows = self.sales.list("teams", &["teamid".into()], Some(&filter)).await?;
        let id = rows
            .first()
            .and_then(|r| r.get("teamid"))
            .and_then(|v| v.as_str())
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| SyncError::DefaultTeam {
                company: le.clone(),
                bu: bu.clone(),
            })?;
        self.default_teams.lock().await.insert(le, id.clone());
        Ok(id)
    }

    /// The business units whose Sales records belong to the company: its unit and every unit below it, unless
    /// P2C_COMPANIES restricts the company to its unit (`;exact`). Read anew on each call (once per run), so a
    /// unit added to the hierarchy counts from the next run on.
    pub async fn business_unit_scope(&self, company: &str) -> Result<BusinessUnitScope, SyncError> {
        let bu = self.business_unit_id(company).await?;
        let children = self.cfg.company(company).is_some_and(|c| c.include_child_units);
        if !children {
            return Ok(BusinessUnitScope::exact(&bu));
        }
        let cols = ["businessunitid".to_string(), "_parentbusinessunitid_value".to_string()];
        let rows = self.sales.list("businessunits", &cols, None).await?;
        let text = |r: &p2c_dynamics::Record, c: &str| r.get(c).and_then(|v| v.as_str()).map(str::to_string);
        let hierarchy: Vec<(String, Option<String>)> = rows
            .iter()
            .filter_map(|r| Some((text(r, "businessunitid")?, text(r, "_parentbusinessunitid_value"))))
            .collect();
        Ok(BusinessUnitScope::with_descendants(&bu, &hierarchy))
    }

    /// The legal entity a configured company name stands for; an unknown one is an error naming the configured.
    pub fn legal_entity(&self, company: &str) -> Result<String, SyncError> {
        self.cfg
            .company(company)
            .map(|c| c.legal_entity.clone())
            .ok_or_else(|| SyncError::UnknownCompany(company.into(), self.companies_list()))
    }

    /// The companies a command means: the one named, or every configured one.
    pub fn companies_or_all(&self, company: Option<&str>) -> Vec<String> {
        match company {
            Some(c) => vec![c.to_string()],
            None => self.cfg.companies.iter().map(|c| c.legal_entity.clone()).collect(),
        }
    }

    pub fn companies_list(&self) -> String {
        self.cfg
            .companies
            .iter()
            .map(|c| c.legal_entity.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The flow's queue and DLQ: from P2C_QUEUE_URL/P2C_DLQ_URL in Lambda, else found by name.
    pub async fn queue_pair(&self, flow: FlowName) -> Result<QueuePair, SyncError> {
        if let Some(p) = self.queue_urls.lock().await.get(&flow) {
            return Ok(p.clone());
        }
        let pair = match (&self.cfg.queue_url, &self.cfg.dlq_url) {
            (Some(q), Some(d)) => QueuePair {
                queue_url: q.clone(),
                dlq_url: d.clone(),
                dlq_arn: String::new(),
            },
            _ => self.queues.urls(flow.as_str()).await?,
        };
        self.queue_urls.lock().await.insert(flow, pair.clone());
        Ok(pair)
    }
}

/// A company's [`BusinessUnitScope`], read from Sales the first time a run needs it: once per run, and not at
/// all in a run that has nothing to check (an idle run reads nothing more than it did).
pub struct ScopeOnce {
    company: String,
    cell: tokio::sync::OnceCell<BusinessUnitScope>,
}

impl ScopeOnce {
    pub fn new(company: &str) -> ScopeOnce {
        ScopeOnce {
            company: company.to_string(),
            cell: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn get(&self, deps: &Deps) -> Result<&BusinessUnitScope, SyncError> {
        self.cell
            .get_or_try_init(|| deps.business_unit_scope(&self.company))
            .await
    }
}

/// A service's application users, each taking its requests from its own shared budget (keyed by service and
/// client id: service protection counts per user) when the deployment shares one.
fn app_users(tokens: &[Arc<TokenCache>], cfg: &Config, state: &StateStore, service: &str) -> Users {
    let users = tokens.iter().map(|t| {
        let user = AppUser::new(t.clone());
        match cfg.budget {
            Some((requests, window)) => user.with_budget(Arc::new(SharedBudget::new(
                state.clone(),
                service,
                t.client_id(),
                requests,
                window,
            ))),
            None => user,
        }
    });
    Users::new(users.collect())
}

async fn fetch_secret(aws: &aws_config::SdkConfig, arn: &str) -> Result<Secret, SyncError> {
    let client = aws_sdk_secretsmanager::Client::new(aws);
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| ConfigError::Secret {
            arn: arn.into(),
            why: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        })?;
    let s = out.secret_string().ok_or_else(|| ConfigError::Secret {
        arn: arn.into(),
        why: "the secret has no string value".into(),
    })?;
    // The bare secret, {"client_secret": "..."} or one entry per client id: `config::secrets_for` reads it.
    Ok(Secret::new(s))
}
