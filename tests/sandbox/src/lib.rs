//! p2c-sandbox: wire-faithful emulators of Dynamics 365 Sales (Dataverse Web API), Finance & Operations
//! (OData `/data`) and the Entra ID token endpoint, served on loopback.
//!
//! The rule is fidelity over convenience: the sandbox is as strict as the real services (no `$skip` on
//! Dataverse, case-sensitive F&O names, company scoping, no F&O upsert, audience-bound tokens, 429s with
//! `Retry-After`), so a client that passes here passes against the real endpoints. Behaviour the public docs do not
//! pin down is chosen as the most plausible real behaviour and documented where it is implemented.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sb = p2c_sandbox::Sandbox::start(p2c_sandbox::SandboxConfig::default()).await?;
//! sb.seed_demo(10);
//! println!("sales {} fno {} token {}", sb.sales_url(), sb.fno_url(), sb.authority_url());
//! # Ok(()) }
//! ```

mod batch;
mod catalog;
mod dataverse;
mod dv_metadata;
mod dv_multiple;
mod dv_options;
mod dv_schema;
mod events;
mod faults;
mod fno;
mod fno_rules;
mod fno_sales;
mod fno_schema;
mod http;
mod metadata;
mod odata_filter;
mod oidc;
mod owner;
mod registration;
mod sales;
mod seed;
mod server;
mod store;
mod tls;
mod token;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use events::{EventDelivery, EventKind, WriteRecord};

/// The flat sales-tax rate the F&O emulation charges on every order and quotation line (10 % of the line amount;
/// header-level tax is 0). Tests can compute expected totals with it.
pub const FNO_SALES_TAX_RATE: f64 = 0.10;

/// What [`Sandbox::seed_story`] created in Sales.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Story {
    /// The first demo account (lowest `ACC-` account number): the customer of both documents.
    pub account_id: String,
    pub account_number: String,
    /// An Active quote (statecode 1) with three lines of externally maintained products.
    pub quote_id: String,
    pub quote_number: String,
    /// An Active order (statecode 0, P2C processing status Active) with two lines.
    pub order_id: String,
    pub order_number: String,
}

/// How the sandbox behaves; `Default` gives the values documented on each field.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Entra tenant in the token URL. Default `contoso-tenant`.
    pub tenant: String,
    /// The registered app. Default `p2c-client`.
    pub client_id: String,
    /// Its secret. Default `p2c-secret`.
    pub client_secret: String,
    /// Further registered apps (client id, secret), each an application user of its own in Sales with its own
    /// service-protection limits (the limits count per user: per the token's client id). Default none.
    pub more_clients: Vec<(String, String)>,
    /// The F&O API user's default company: reads without `cross-company=true` see only this one.
    /// Default `dat` (deliberately not `usmf`).
    pub default_company: String,
    /// Access-token lifetime. Default 3599 s.
    pub token_ttl: Duration,
    /// Added to every response (the network). Default 0.
    pub latency: Duration,
    /// Server execution time of one operation: a request, or each operation inside a `$batch` (the services run
    /// them one after another). The response waits for it and it counts toward the execution-time limit.
    /// Default 0.
    pub op_time: Duration,
    /// Service protection limits: on by default, at Dataverse's documented values; `None` turns them off.
    pub limits: Option<ServiceLimits>,
    /// (sales, fno, token) ports on 127.0.0.1; `None` = ephemeral ports.
    pub ports: Option<(u16, u16, u16)>,
    /// Language of the F&O API user (F&O words validation messages in it): `en-us` (default) or `de`.
    pub fno_language: String,
    /// F&O stops a `$batch` at the first failed change set even when `Prefer: odata.continue-on-error` asks it
    /// not to (whether it honours the preference is undocumented: spec B.4, gap 11). Default false.
    pub fno_batch_stops_at_first_failure: bool,
    /// Serve HTTPS (URLs become `https://127.0.0.1:<port>`) with a certificate signed by a CA made at start,
    /// whose PEM [`Sandbox::tls_ca_pem`] returns. For clients that refuse plain HTTP, as the real services are
    /// HTTPS only. Default false.
    pub tls: bool,
    /// The Sales organization has "Record ownership across business units" on: `owningbusinessunit` may then be
    /// set apart from the owner's business unit. Default `false`, as in a new organization: the column is
    /// read-only and a body that binds it is refused (see `owner.rs`).
    pub record_ownership_across_business_units: bool,
    /// The organization's "Create products without parent in active state" (`organizations.
    /// createproductswithoutparentinactivestate`): products created through the Web API start Active instead of
    /// Draft. Default `false`, as in a fresh installation of Dynamics 365 Sales (see `catalog.rs`).
    pub create_products_in_active_state: bool,
    /// Entity sets whose table has change tracking off (`ChangeTrackingEnabled` false in `EntityDefinitions`): a
    /// read with `Prefer: odata.track-changes` or a `$deltatoken` is refused. Default: none (on for every table).
    pub change_tracking_off: Vec<String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            tenant: "contoso-tenant".into(),
            client_id: "p2c-client".into(),
            client_secret: "p2c-secret".into(),
            more_clients: Vec::new(),
            default_company: "dat".into(),
            token_ttl: Duration::from_secs(3599),
            latency: Duration::ZERO,
            op_time: Duration::ZERO,
            limits: Some(ServiceLimits::default()),
            ports: None,
            fno_language: "en-us".into(),
            fno_batch_stops_at_first_failure: false,
            tls: false,
            record_ownership_across_business_units: false,
            create_products_in_active_state: false,
            change_tracking_off: Vec::new(),
        }
    }
}

/// Per service and per client: at most `requests_per_window` requests and `execution_per_window` of server
/// execution time (see [`SandboxConfig::op_time`]) in a sliding `window`, and at most `max_concurrent` in flight.
/// Exceeding any returns 429 with `Retry-After`: the seconds until the window admits the request again (the
/// oldest counted request or execution leaving it), at least `retry_after_secs`.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    pub requests_per_window: u32,
    pub execution_per_window: Duration,
    pub window: Duration,
    pub max_concurrent: u32,
    pub retry_after_secs: u64,
}

impl Default for ServiceLimits {
    /// Dataverse's documented defaults (6,000 requests and 1,200 s of execution per 300 s, 52 concurrent).
    fn default() -> Self {
        ServiceLimits {
            requests_per_window: 6000,
            execution_per_window: Duration::from_secs(1200),
            window: Duration::from_secs(300),
            max_concurrent: 52,
            retry_after_secs: 1,
        }
    }
}

/// What one client (application user) asked of one service: requests that carried its valid token, those of
/// them that could change something (not GET), and how many service protection refused with 429.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCount {
    pub requests: u64,
    pub writes: u64,
    pub throttled: u64,
}

/// Which endpoint a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Sales,
    Fno,
    Token,
    Any,
}

/// A queued fault: applies to the next `times` requests of `service` whose path and query contain
/// `path_contains` (raw or percent-decoded), before any normal handling (even before the token check).
#[derive(Debug, Clone)]
pub struct Fault {
    pub service: Service,
    pub kind: FaultKind,
    pub times: u32,
    pub path_contains: Option<String>,
}

impl Fault {
    /// A fault for the next matching request only.
    pub fn once(service: Service, kind: FaultKind) -> Fault {
        Fault {
            service,
            kind,
            times: 1,
            path_contains: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// 429 with `Retry-After` and the service's throttling error body.
    TooManyRequests { retry_after_secs: u64 },
    /// 500 with the service's generic error body.
    ServerError,
    /// Wait, then handle the request normally.
    Delay(Duration),
    /// Close the connection without a response.
    Drop,
}

/// Whether change tracking is on for a Dataverse table (entity set), per [`SandboxConfig::change_tracking_off`].
pub(crate) fn tracks_changes(state: &State, set: &str) -> bool {
    !state.cfg.change_tracking_off.iter().any(|s| s == set)
}

pub(crate) struct State {
    pub cfg: SandboxConfig,
    pub sales_url: String,
    pub fno_url: String,
    pub authority_url: String,
    pub tokens: Mutex<token::TokenStore>,
    pub dv: Mutex<store::DvStore>,
    pub fno: Mutex<store::FnoStore>,
    pub counters: Mutex<BTreeMap<String, u64>>,
    /// Authenticated requests and service-protection 429s, by `"<service> <client id>"`.
    pub by_client: Mutex<BTreeMap<String, ClientCount>>,
    pub faults: Mutex<faults::FaultQueue>,
    pub limiter: Mutex<faults::Limiter>,
    pub tls: Option<tls::Tls>,
    /// Webhooks and business events being sent, and the write journal.
    pub events: events::Hub,
}

/// Mutex access that survives a poisoned lock (a panicking test must not wedge the other servers).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Inner {
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Handle to running emulators. Cheap to clone; the servers stop when the last handle is dropped or on
/// [`Sandbox::shutdown`].
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("sales_url", &self.inner.state.sales_url)
            .field("fno_url", &self.inner.state.fno_url)
            .field("authority_url", &self.inner.state.authority_url)
            .finish()
    }
}

fn panic_on<T>(r: Result<T, String>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

impl Sandbox {
    /// Bind the three listeners on 127.0.0.1 and start serving (needs a running tokio runtime).
    pub async fn start(cfg: SandboxConfig) -> std::io::Result<Sandbox> {
        let (ps, pf, pt) = cfg.ports.unwrap_or((0, 0, 0));
        let ls = TcpListener::bind(("127.0.0.1", ps)).await?;
        let lf = TcpListener::bind(("127.0.0.1", pf)).await?;
        let lt = TcpListener::bind(("127.0.0.1", pt)).await?;
        let tls = if cfg.tls { Some(tls::generate()?) } else { None };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = |l: &TcpListener| l.local_addr().map(|a| format!("{scheme}://127.0.0.1:{}", a.port()));
        let state = Arc::new(State {
            sales_url: url(&ls)?,
            fno_url: url(&lf)?,
            authority_url: url(&lt)?,
            cfg,
            tokens: Mutex::new(token::TokenStore::default()),
            dv: Mutex::new(store::DvStore::new()),
            fno: Mutex::new(store::FnoStore::new()),
            counters: Mutex::new(BTreeMap::new()),
            by_client: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(faults::FaultQueue::default()),
            limiter: Mutex::new(faults::Limiter::default()),
            tls,
            events: events::Hub::start(),
        });
        seed::base(&state);
        let (tx, rx) = watch::channel(false);
        tokio::spawn(server::serve(ls, state.clone(), Service::Sales, rx.clone()));
        tokio::spawn(server::serve(lf, state.clone(), Service::Fno, rx.clone()));
        tokio::spawn(server::serve(lt, state.clone(), Service::Token, rx));
        tracing::debug!(sales = %state.sales_url, fno = %state.fno_url, token = %state.authority_url, "sandbox started");
        Ok(Sandbox {
            inner: Arc::new(Inner { state, shutdown: tx }),
        })
    }

    fn st(&self) -> &State {
        &self.inner.state
    }

    /// Stop the listeners and close open connections (idempotent).
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }

    /// `http://127.0.0.1:<port>`; the Web API is under `/api/data/v9.2`.
    pub fn sales_url(&self) -> String {
        self.st().sales_url.clone()
    }

    /// `http://127.0.0.1:<port>`; OData is under `/data`.
    pub fn fno_url(&self) -> String {
        self.st().fno_url.clone()
    }

    /// `http://127.0.0.1:<port>`; tokens at `/{tenant}/oauth2/v2.0/token`.
    pub fn authority_url(&self) -> String {
        self.st().authority_url.clone()
    }

    /// PEM of the CA that signed the HTTPS certificate (`None` unless [`SandboxConfig::tls`]).
    pub fn tls_ca_pem(&self) -> Option<String> {
        self.st().tls.as_ref().map(|t| t.ca_pem.clone())
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.st().cfg
    }

    // -------------------------------------------------------------------------------------------- Sales data

    fn dv_table(entity_set: &str) -> &'static dv_schema::Table {
        match dv_schema::table(entity_set) {
            Some(t) => t,
            None => panic!("p2c-sandbox: unknown Dataverse entity set '{entity_set}'"),
        }
    }

    fn object(row: &Value) -> serde_json::Map<String, Value> {
        match row.as_object() {
            Some(m) => m.clone(),
            None => panic!("p2c-sandbox: a row must be a JSON object, got {row}"),
        }
    }

    /// Insert a Sales row (columns by logical name; lookups as `_x_value` or `x@odata.bind`; `statecode` allowed).
    /// Sets the primary key (unless given), `versionnumber`, `createdon`/`modifiedon`, `statecode` 0 and the
    /// default `statuscode`, and an owner: `_ownerid_value` (a user or team) if given, else the default team of
    /// `_owningbusinessunit_value` if that is given, else the caller (in the root business unit); the business
    /// unit follows the owner (a quote/order/invoice line takes its header's owner, currency and next
    /// `sequencenumber`). System pricing runs as for the Web API (see the
    /// README): computed amounts given here are recalculated; the editing rules of non-draft documents do not
    /// apply to this trusted set-up API. Returns the id.
    /// Panics on an unknown entity set or column (test set-up errors).
    pub fn sales_insert(&self, entity_set: &str, row: Value) -> String {
        let t = Self::dv_table(entity_set);
        let mut dv = lock(&self.st().dv);
        let vals = panic_on(dataverse::direct_values(&dv, t, &Self::object(&row)));
        let id = panic_on(dataverse::direct_insert(&mut dv, t, vals));
        drop(dv);
        events::flush_dataverse(self.st());
        id
    }

    /// Merge columns into a row and bump its version (change tracking reports it); system pricing recalculates
    /// the row (and a line's header), editing rules do not apply. Panics when the row is missing.
    pub fn sales_update(&self, entity_set: &str, id: &str, patch: Value) {
        let t = Self::dv_table(entity_set);
        let mut dv = lock(&self.st().dv);
        let vals = panic_on(dataverse::direct_values(&dv, t, &Self::object(&patch)));
        panic_on(dataverse::direct_update(&mut dv, t, &id.to_ascii_lowercase(), vals));
        drop(dv);
        events::flush_dataverse(self.st());
    }

    /// Delete a row (change tracking reports it as deleted; a line's header is recalculated). Missing rows are
    /// ignored.
    pub fn sales_delete(&self, entity_set: &str, id: &str) {
        let t = Self::dv_table(entity_set);
        dataverse::direct_delete(&mut lock(&self.st().dv), t, id);
        events::flush_dataverse(self.st());
    }

    /// The row as a GET without `$select` returns it (every column, `@odata.etag`).
    pub fn sales_get(&self, entity_set: &str, id: &str) -> Option<Value> {
        let t = Self::dv_table(entity_set);
        let dv = lock(&self.st().dv);
        dv.get(t.set, id).map(|r| dataverse::wire_row(&dv, t, r))
    }

    /// Every row of the set, oldest change first.
    pub fn sales_rows(&self, entity_set: &str) -> Vec<Value> {
        let t = Self::dv_table(entity_set);
        let dv = lock(&self.st().dv);
        let mut rows: Vec<&store::Row> = dv
            .table(t.set)
            .map(|tb| tb.rows().values().collect())
            .unwrap_or_default();
        rows.sort_by_key(|r| r.get("versionnumber").and_then(Value::as_u64).unwrap_or(0));
        rows.into_iter().map(|r| dataverse::wire_row(&dv, t, r)).collect()
    }

    // -------------------------------------------------------------------------------------------- F&O data

    fn fno_entity(entity_set: &str) -> &'static fno_schema::Entity {
        panic_on(fno::entity(entity_set))
    }

    /// Insert an F&O row (must carry `dataAreaId` and every key field; other properties default). No business
    /// validation: seed customer groups, customers, products... as needed. Panics on unknown names or a duplicate.
    pub fn fno_insert(&self, entity_set: &str, row: Value) {
        let e = Self::fno_entity(entity_set);
        panic_on(fno::direct_insert(&mut lock(&self.st().fno), e, &row));
    }

    /// Merge properties into the row with this key (`[("dataAreaId","usmf"),("CustomerAccount","US-001")]`), as
    /// stored: no validation, defaulting or line-amount recalculation (OData writes and the `fno_*_order` events
    /// do those).
    pub fn fno_update(&self, entity_set: &str, key: &[(&str, &str)], patch: Value) {
        let e = Self::fno_entity(entity_set);
        let k = panic_on(fno::direct_key(e, key));
        panic_on(fno::direct_update(&mut lock(&self.st().fno), e, &k, &patch));
    }

    /// Bulk seeding for benchmarks: `count` copies of the stored F&O row with this key, each edited by
    /// `edit(i, row)` (which must give it a new key), written straight into the store: no OData, no validation,
    /// no defaulting. Panics when the row is missing or a copy's key exists.
    pub fn fno_copies(
        &self,
        entity_set: &str,
        key: &[(&str, &str)],
        count: usize,
        edit: impl Fn(usize, &mut serde_json::Map<String, Value>),
    ) {
        let e = Self::fno_entity(entity_set);
        let k = panic_on(fno::direct_key(e, key));
        let mut f = lock(&self.st().fno);
        let Some(row) = f.get(&e.storage, &k).map(|r| r.data.clone()) else {
            panic!("p2c-sandbox: no {entity_set} row with key {key:?} to copy");
        };
        for i in 0..count {
            let mut copy = row.clone();
            edit(i, &mut copy);
            panic_on(fno::direct_insert(&mut f, e, &Value::Object(copy)));
        }
    }

    /// Delete the row with this key (missing rows are ignored).
    pub fn fno_delete(&self, entity_set: &str, key: &[(&str, &str)]) {
        let e = Self::fno_entity(entity_set);
        let k = panic_on(fno::direct_key(e, key));
        lock(&self.st().fno).remove(&e.storage, &k);
    }

    /// One row by key, in wire shape, as the entity shows it (`None` when missing or filtered out by the entity,
    /// like an invoice of a customer that is not externally maintained).
    pub fn fno_get(&self, entity_set: &str, key: &[(&str, &str)]) -> Option<Value> {
        let e = Self::fno_entity(entity_set);
        let k = panic_on(fno::direct_key(e, key));
        let f = lock(&self.st().fno);
        f.get(&e.storage, &k).and_then(|r| fno::wire_row(&f, r, e))
    }

    /// All rows of all companies the entity shows, in key order, in wire shape.
    pub fn fno_rows(&self, entity_set: &str) -> Vec<Value> {
        let e = Self::fno_entity(entity_set);
        fno::wire_rows(&lock(&self.st().fno), e)
    }

    /// Add a value to one of F&O's reference tables, named by its AOT table: `UnitOfMeasure`, `Currency`,
    /// `LanguageTable`, `LogisticsAddressCountryRegion` (ISO code), `LogisticsAddressState` (`"US-WA"`: ISO
    /// country, dash, state), `InventSite`, `InventLocation`, `CustomerGroups`, `PaymTerm`, `DlvTerm`, `DlvMode`.
    /// `company` matters for the per-company tables only; a value the table holds already is left as it is.
    /// Panics on an unknown table.
    pub fn fno_add_reference(&self, table: &str, company: &str, value: &str) {
        let t = panic_on(
            fno_rules::reference_table(table)
                .ok_or_else(|| format!("p2c-sandbox: unknown F&O reference table '{table}'")),
        );
        let mut f = lock(&self.st().fno);
        let known = f.get(t.storage, &fno_rules::ref_key(t, company, None, value)).is_some();
        // Customer groups are an OData entity: a full row of it.
        if t.storage == fno_rules::CUSTOMER_GROUPS.storage {
            if !known {
                let e = Self::fno_entity("CustomerGroups");
                let row = serde_json::json!({"dataAreaId": company, "CustomerGroupId": value});
                panic_on(fno::direct_insert(&mut f, e, &row));
            }
            return;
        }
        let (country, value) = match value.split_once('-') {
            Some((c, v)) if t.storage == fno_rules::STATES.storage => (Some(c), v),
            _ => (None, value),
        };
        fno_rules::add_reference(&mut f, t, company, country, value);
    }

    /// Demo data for company `usmf` (idempotent reference data; each call adds `accounts` more accounts):
    /// Sales currencies USD/EUR/GBP, business unit `usmf`, unit group "Default unit" with units "Primary Unit",
    /// "ea", "pcs", "hr", "Each"; price lists "CRM Service USA (sample)" (USD, the first USD list by name),
    /// "Europe Sales (EUR)", "UK Sales (GBP)" and "Wholesale USA" (USD); F&O sellable products D0001..D0005
    /// for usmf (USD, unit `ea`; customer groups 10/20/30 and the rest of F&O's reference data exist in every
    /// company from the start, see `fno_add_reference`); realistic Sales
    /// accounts owned by BU `usmf` with account numbers like `ACC-01000-BVRCPS`; and six contacts owned by `usmf`
    /// (`CON-01000-BVRCPS`...): two active customers (`msdynce_isactivecustomer`, the second also with a parent
    /// account), three contacts of the first demo accounts (`parentcustomerid` an account,
    /// `msdynce_iscompanyanaccount`), and one contact that neither contact flow picks up. Contacts get their
    /// parent accounts once the accounts exist (a later call fills them in).
    pub fn seed_demo(&self, accounts: usize) {
        seed::demo(self.st(), accounts);
        events::flush_dataverse(self.st());
    }

    /// The prospect-to-cash documents of the demo, for the first demo account (needs `seed_demo(n)` with n >= 1):
    /// a quote with lines D0001 ×2, D0002 ×1, D0003 ×3 (manual discount 10.00, which does not divide by 3),
    /// activated (statecode 1, statuscode 2); and an order with lines D0004 ×2, D0005 ×1, Active with P2C
    /// processing status Active (647390000), as activated in Sales. Both are owned by the account's business unit,
    /// use the price list "CRM Service USA (sample)" and carry the P2C flags the P2C plug-in would set
    /// (`msdynce_hasexternallymaintainedproductsonly` and the lines' copies). Prices come from the price list
    /// items (system pricing), or the product's list price when it has none.
    ///
    /// The products must already be in Sales, as the products-to-sales flow puts them there: run that flow
    /// first. Panics, naming what is missing, when there is no demo account, no Sales product with one of
    /// those product numbers, or a product without a default unit. Each call adds a new quote and order.
    pub fn seed_story(&self) -> Story {
        let story = seed::story(self.st());
        events::flush_dataverse(self.st());
        panic_on(story)
    }

    /// `count` active quotes of `lines` lines each (products D0001–D0005, which must be in Sales), for the demo
    /// accounts in turn; returns the number of lines. For benchmarks of the quotes flow.
    pub fn seed_quotes(&self, count: usize, lines: usize) -> usize {
        let n = seed::quotes(self.st(), count, lines);
        events::flush_dataverse(self.st());
        panic_on(n)
    }

    /// Turns the organization's "Record ownership across business units" on or off (see
    /// [`SandboxConfig::record_ownership_across_business_units`]); rows already stored keep their owners.
    pub fn set_record_ownership_across_business_units(&self, on: bool) {
        lock(&self.st().dv).ownership_across_business_units = on;
    }

    /// Id of the default team of a business unit (given by id): the team Dataverse creates with every unit.
    pub fn default_team_id(&self, business_unit_id: &str) -> Option<String> {
        owner::default_team(&lock(&self.st().dv), business_unit_id)
    }

    /// Authenticated requests and their service-protection 429s per service and client id, keyed
    /// `"sales <client id>"` / `"fno <client id>"`.
    pub fn requests_by_client(&self) -> BTreeMap<String, ClientCount> {
        lock(&self.st().by_client).clone()
    }

    /// Id of the application user the API calls run as: the owner of rows created without an owner.
    pub fn caller_user_id(&self) -> String {
        lock(&self.st().dv).caller.clone()
    }

    /// Id of the Sales business unit with this name (`"usmf"` after `seed_demo`; the root BU is `"contoso"`).
    pub fn business_unit_id(&self, name: &str) -> Option<String> {
        let dv = lock(&self.st().dv);
        dv.table("businessunits")?.rows().iter().find_map(|(id, r)| {
            r.get("name")
                .and_then(Value::as_str)
                .filter(|n| n.eq_ignore_ascii_case(name))
                .map(|_| id.clone())
        })
    }

    // -------------------------------------------------------------------------------------------- F&O events

    /// F&O confirms the sales order and the "Calculate sales totals" batch runs for it: processing status
    /// Confirmed (unless already further along), order status Open order; each line's `LineAmount` = (price -
    /// per-unit discount) × quantity × (1 - discount %), `TotalTaxAmount` = [`FNO_SALES_TAX_RATE`] × line amount;
    /// header `OrderTotalAmount`, `OrderTotalTaxAmount`, `OrderTotalChargesAmount`, `OrderTotalDiscountAmount`
    /// from the lines; `AreTotalsUpdated` (header), `AreTotalsCalculated` and `AreSalesOrderTotalsUpdated`
    /// (lines) = Yes. Every row gets a new version (ETag). Panics when the order does not exist.
    ///
    /// Sends the business event `SalesOrderConfirmedBusinessEvent` (`SalesOrderId`) when it is activated (see
    /// [`Sandbox::fno_activate_business_events`]).
    pub fn fno_confirm_order(&self, company: &str, order_number: &str) {
        panic_on(fno_sales::confirm_order(
            &mut lock(&self.st().fno),
            company,
            order_number,
        ));
        let mut fields = serde_json::Map::new();
        fields.insert("SalesOrderId".into(), Value::from(order_number));
        fields.insert("LegalEntity".into(), Value::from(company));
        events::business_event(
            self.st(),
            "SalesOrderConfirmedBusinessEvent",
            company,
            order_number,
            fields,
        );
    }

    /// F&O posts the invoice of the whole order (of what earlier invoices left of it): an
    /// `ExternallyMaintainedCustomerSalesInvoiceHeaders` row (number `CIV-000001`... per company, voucher
    /// `ARIN-000001`..., date today at 12:00:00Z, the order's invoice customer, address, currency and totals, its
    /// header tax as `InvoiceHeaderTaxAmount`) and one `...Lines` row per order line (its
    /// `LineCreationSequenceNumber`, quantity, price, amounts), after the totals are calculated; the order and its
    /// lines become Invoiced. The invoice entities show it only while the invoice customer's
    /// `IsExternallyMaintained` is Yes. Returns the invoice number. Panics when the order does not exist or is
    /// already invoiced.
    ///
    /// Sends the business event `SalesInvoicePostedBusinessEvent` ("Sales order invoice posted") with its
    /// contract's fields when it is activated (see [`Sandbox::fno_activate_business_events`]).
    pub fn fno_invoice_order(&self, company: &str, order_number: &str) -> String {
        let invoice = panic_on(fno_sales::invoice_order(
            &mut lock(&self.st().fno),
            company,
            order_number,
            None,
        ));
        self.invoice_posted(company, order_number, &invoice);
        invoice
    }

    /// F&O posts an invoice of part of the order: `quantities` = (line number, quantity to invoice); lines not
    /// named are not invoiced now. The invoice is built like [`Sandbox::fno_invoice_order`]'s, with each line's
    /// share: quantity × (price - per-unit discount) and its tax; the invoice that completes a line takes what is
    /// left of the line's amounts and its charges, so an order's invoices add up to the order. The order's end
    /// discount and header tax (`OrderHeaderTaxAmount`, as `InvoiceHeaderTaxAmount`) go with its first invoice.
    /// The order becomes PartiallyInvoiced (its completed lines Invoiced), or Invoiced when nothing is left;
    /// [`Sandbox::fno_invoice_order`] invoices whatever is left. Panics when a quantity is more than the line has
    /// left, a line does not exist, or nothing would be invoiced. Sends `SalesInvoicePostedBusinessEvent` too.
    pub fn fno_invoice_order_lines(&self, company: &str, order_number: &str, quantities: &[(i64, f64)]) -> String {
        let invoice = panic_on(fno_sales::invoice_order(
            &mut lock(&self.st().fno),
            company,
            order_number,
            Some(quantities),
        ));
        self.invoice_posted(company, order_number, &invoice);
        invoice
    }

    /// The "Sales order invoice posted" business event of an invoice just posted, when it is activated.
    fn invoice_posted(&self, company: &str, order_number: &str, invoice: &str) {
        let header = self.fno_invoice_raw(company, invoice).unwrap_or_default();
        let text = |k: &str| header[k].as_str().unwrap_or("").to_string();
        let mut fields = serde_json::Map::new();
        fields.insert(
            "InvoiceAccount".into(),
            Value::from(text("InvoiceCustomerAccountNumber")),
        );
        fields.insert("InvoiceId".into(), Value::from(invoice));
        fields.insert("SalesOrderId".into(), Value::from(order_number));
        fields.insert("InvoiceDate".into(), events::xpp_date(&text("InvoiceDate")));
        fields.insert("InvoiceDueDate".into(), events::xpp_date(&text("InvoiceDate")));
        fields.insert(
            "InvoiceAmountInAccountingCurrency".into(),
            header["TotalInvoiceAmount"].clone(),
        );
        fields.insert("InvoiceTaxAmount".into(), header["TotalTaxAmount"].clone());
        fields.insert("LegalEntity".into(), Value::from(company));
        events::business_event(self.st(), "SalesInvoicePostedBusinessEvent", company, invoice, fields);
    }

    /// An invoice header as stored (the invoice entities hide invoices of customers that are not externally
    /// maintained; a business event is sent for every posted invoice).
    fn fno_invoice_raw(&self, company: &str, invoice: &str) -> Option<Value> {
        let f = lock(&self.st().fno);
        f.rows("ExternallyMaintainedCustomerSalesInvoiceHeaders")
            .map(|(_, r)| &r.data)
            .find(|d| {
                d.get("InvoiceNumber").and_then(Value::as_str) == Some(invoice)
                    && d.get("dataAreaId")
                        .and_then(Value::as_str)
                        .is_some_and(|c| c.eq_ignore_ascii_case(company))
            })
            .map(|d| Value::Object(d.clone()))
    }

    /// An order entered in F&O ("orders can also start in F&O"): a `CDSSalesOrderHeaders` row for the customer
    /// with the next number of F&O's sales order sequence, and one line per (product number, quantity) with
    /// `LineCreationSequenceNumber` 1, 2, ... and the product's price and unit. The same defaulting and
    /// validation as an OData create apply (the customer and products must exist in the company). The order is
    /// Active: confirm it with [`Sandbox::fno_confirm_order`] to make it eligible for Sales. Returns the order
    /// number. Panics (nothing created) when F&O refuses it.
    pub fn fno_create_order(&self, company: &str, customer_account: &str, lines: &[(&str, f64)]) -> String {
        let st = self.st();
        panic_on(fno_sales::create_order(
            st,
            &mut lock(&st.fno),
            company,
            customer_account,
            lines,
        ))
    }

    // -------------------------------------------------------------------------------------------- Events

    /// Activates F&O business events (FODOC `business-events/home-page.md`, "Activating business events") and
    /// points them at an HTTPS endpoint: `url` is what the endpoint's Key Vault secret would hold, with any key in
    /// its query string. `legal_entity` `None` activates them in every legal entity. Replaces earlier activations.
    /// Dataverse webhooks need no option: register them in the org (`serviceendpoints`,
    /// `sdkmessageprocessingsteps`) as on a real one, and the sandbox sends them.
    pub fn fno_activate_business_events(&self, url: &str, events: &[&str], legal_entity: Option<&str>) {
        let mut f = lock(&self.st().events.fno);
        f.url = Some(url.to_string());
        f.active = events
            .iter()
            .map(|e| (e.to_string(), legal_entity.map(str::to_string)))
            .collect();
    }

    /// The sandbox's events option: sends every change to `base_url`. Registers (as the Plug-in Registration Tool
    /// would) a webhook `sandbox` posting to `<base_url>/dataverse` with the HttpHeader
    /// `x-p2c-webhook-key: <webhook_key>` and asynchronous steps for Create, Update and Delete of every business
    /// table, and activates the F&O business events for `<base_url>/fno?code=<business_events_key>` in every legal
    /// entity. Returns the endpoint's id.
    pub fn send_events_to(&self, base_url: &str, webhook_key: &str, business_events_key: &str) -> String {
        let base = base_url.trim_end_matches('/');
        let id = panic_on(registration::webhook_everywhere(
            &mut lock(&self.st().dv),
            &format!("{base}/dataverse"),
            webhook_key,
        ));
        events::flush_dataverse(self.st());
        self.fno_activate_business_events(
            &format!("{base}/fno?code={}", http::encode_query_value(business_events_key)),
            &["SalesOrderConfirmedBusinessEvent", "SalesInvoicePostedBusinessEvent"],
            None,
        );
        id
    }

    /// Every webhook and business event sent so far, in the order their deliveries ended.
    pub fn event_deliveries(&self) -> Vec<EventDelivery> {
        self.st().events.deliveries()
    }

    /// Waits until every event sent so far has been delivered (or given up on); false on timeout.
    pub async fn settle_events(&self, timeout: std::time::Duration) -> bool {
        events::flush_dataverse(self.st());
        let until = std::time::Instant::now() + timeout;
        while self.st().events.pending() > 0 {
            if std::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        true
    }

    /// Starts (or stops and clears) the write journal: every row written in either service, with the time.
    pub fn record_writes(&self, on: bool) {
        let st = self.st();
        *lock(&st.events.journal) = on.then(Vec::new);
        lock(&st.fno).writes = on.then(Vec::new);
        lock(&st.dv).capture = true;
        events::flush_dataverse(st);
    }

    /// The rows written since [`Sandbox::record_writes`] turned the journal on, both services, oldest first.
    pub fn writes(&self) -> Vec<WriteRecord> {
        let st = self.st();
        events::flush_dataverse(st);
        let mut all = lock(&st.events.journal).clone().unwrap_or_default();
        all.extend(events::fno_writes(st));
        all.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        all
    }

    // -------------------------------------------------------------------------------------------- Counters

    /// Requests per endpoint: `"token POST"`, `"sales GET accounts"`, `"sales POST $batch"`,
    /// `"fno PATCH CustomersV2"`, `"sales GET $metadata"`, `"sales GET /"` (service document). Every request that
    /// reached a server counts, including rejected and faulted ones; `$batch` counts once.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        lock(&self.st().counters).clone()
    }

    /// Sum of the counters of one service: `"sales"`, `"fno"` or `"token"`.
    pub fn total_requests(&self, service_prefix: &str) -> u64 {
        let prefix = format!("{service_prefix} ");
        lock(&self.st().counters)
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn reset_counters(&self) {
        lock(&self.st().counters).clear();
    }

    // -------------------------------------------------------------------------------------------- Faults

    /// Queue a fault (faults apply in queue order to matching requests).
    pub fn inject(&self, fault: Fault) {
        lock(&self.st().faults).push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.st().faults).clear();
    }

    /// Every token issued so far becomes expired: the next API call with it gets 401.
    pub fn expire_all_tokens(&self) {
        lock(&self.st().tokens).expire_all();
    }

    /// Every access token issued so far (for tests that check tokens never reach logs).
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.st().tokens).tokens.keys().cloned().collect()
    }

    /// Every Dataverse delta token issued so far becomes invalid: following such a deltaLink returns
    /// 400 `0x80044352` "Version stamp associated with the client has expired. Please perform a full sync."
    pub fn expire_delta_tokens(&self) {
        let mut dv = lock(&self.st().dv);
        let v = dv.next_version();
        dv.delta_floor = v;
    }
}
