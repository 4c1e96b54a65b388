//! The fault-injection suite: for each scenario, a fresh sandbox and moto, ~1,200 records across three flows
//! (accounts-to-fno, contacts-to-fno, products-to-sales), faults injected at seeded points, then the invariants
//! checked by comparing both systems:
//!
//! - every eligible source record is in the target with the template's mapped values, or its key is in the
//!   flow's DLQ with a reason;
//! - no key appears twice in a target;
//! - after fixing the permanent causes in the source and replaying the DLQs, everything is in the target.
//!
//! Every scenario also carries ~2% records with permanent faults, so the DLQ and its replay are exercised under
//! each kind of fault: refused by F&O (a customer group F&O does not have: HTTP 500 AxODataWriteException) or by
//! Sales (a product name over 100 characters: 400), or caught by p2c before writing (an account name over F&O's
//! 100 characters, a country with no ISO code, an unmapped gender, a currency without a price list).
//!
//! One table is printed at the end (`cargo test -p p2c-e2e --test faults -- --nocapture`; it also goes to
//! stderr so CI logs show it). Everything is seeded and every loop is bounded.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use p2c_e2e::Env;
use p2c_mapping::{Template, lookup_targets};
use p2c_sandbox::{Fault, FaultKind, SandboxConfig, Service};
use p2c_state::Received;
use p2c_sync::{
    Config, Deps, FlowName, Message, Reason, RunOptions, RunReport, SyncError, faults::CrashPoint, handle_sqs, run_flow,
};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::{Map, Value, json};

const SEED: u64 = 0x0f4a_17c5;
const COMPANY: &str = "usmf";
/// Demo accounts (plus the sandbox's six demo contacts and five demo products).
const ACCOUNTS: usize = 800;
/// Contacts of accounts (→ CDSContactPersons) and active-customer contacts (→ CustomersV2).
const PERSONS: usize = 130;
const CUSTOMERS: usize = 40;
/// F&O products (→ Sales products and price list items).
const PRODUCTS: usize = 200;
/// Parents first: contacts need their accounts' links.
const FLOWS: [FlowName; 3] = [
    FlowName::AccountsToFno,
    FlowName::ProductsToSales,
    FlowName::ContactsToFno,
];

type Record = Map<String, Value>;

// ------------------------------------------------------------------------------------------------ the world

/// A change that removes a permanent cause, applied before the DLQ is replayed.
enum Fix {
    Sales {
        set: &'static str,
        id: String,
        patch: Value,
    },
    Fno {
        key: String,
        patch: Value,
    },
}

struct World {
    name: &'static str,
    env: Env,
    /// The P2C_MAPPING file (every `Deps` of the scenario reads it).
    mapping: std::path::PathBuf,
    rng: Mutex<StdRng>,
    sqs: aws_sdk_sqs::Client,
    fixes: Vec<Fix>,
    /// Records given a permanent fault.
    bad: usize,
    /// Faults the harness itself caused and counted (crashes, expiries, duplicate deliveries, refused runs).
    faults: AtomicU64,
    crashes: AtomicU64,
    /// Other instances (for the request counters).
    others: Vec<Arc<Deps>>,
    notes: Mutex<Vec<String>>,
}

impl World {
    fn note(&self, s: impl Into<String>) {
        self.notes.lock().unwrap().push(s.into());
    }

    fn count(&self, n: u64) {
        self.faults.fetch_add(n, Ordering::Relaxed);
    }

    fn rng_range(&self, r: std::ops::Range<usize>) -> usize {
        self.rng.lock().unwrap().random_range(r)
    }

    /// 429s and other retries the Dynamics clients of every instance saw.
    fn client_faults(&self) -> (u64, u64) {
        let mut s = self.env.deps.dynamics_stats();
        for o in &self.others {
            s.merge(&o.dynamics_stats());
        }
        (s.throttled, s.retried)
    }

    fn token_fetches(&self) -> u64 {
        self.env.sb.requests().get("token POST").copied().unwrap_or(0)
    }
}

/// The site's P2C_MAPPING: the customer group comes from the account's category, and category 2 names a group
/// F&O does not have (10, 20 and 30 exist), so F&O itself refuses those customers (HTTP 500,
/// AxODataWriteException) instead of p2c's own checks.
const MAPPING: &str = r#"
[[accounts-to-fno.fields]]
source = "accountcategorycode"
target = "CustomerGroupId"
transform = "value_map"
map = { "" = "10", "1" = "20", "2" = "90" }
replace = true
"#;

/// A fresh sandbox (no latency) and moto, the demo data and this suite's records, seeded per scenario.
async fn world(name: &'static str, index: u64, tweak: impl FnOnce(&mut Config)) -> World {
    let sb_cfg = SandboxConfig {
        latency: Duration::ZERO,
        ..Default::default()
    };
    let mapping = std::env::temp_dir().join(format!("p2c-faults-{}-{index}.toml", std::process::id()));
    std::fs::write(&mapping, MAPPING).expect("write the mapping file");
    let env = Env::start_with(sb_cfg, ACCOUNTS, |c| {
        // A crashed run's lease frees itself quickly; pages small enough that a run has several.
        c.lease_ttl = Duration::from_secs(1);
        c.page_size = 150;
        // Sweeps page by their own sizes: small here too, so F&O → Sales runs have several pages to race on.
        c.sweep_page_size = 150;
        c.sweep_document_page_size = 40;
        c.batch_size = 50;
        c.mapping = Some(mapping.clone());
        tweak(c)
    })
    .await;
    let sqs = aws_sdk_sqs::Client::new(&env.aws);
    let mut w = World {
        name,
        env,
        mapping,
        rng: Mutex::new(StdRng::seed_from_u64(SEED ^ (index << 32))),
        sqs,
        fixes: Vec::new(),
        bad: 0,
        faults: AtomicU64::new(0),
        crashes: AtomicU64::new(0),
        others: Vec::new(),
        notes: Mutex::new(Vec::new()),
    };
    seed(&mut w);
    w
}

fn id_of(env: &Env, set: &str, col: &str, value: &str, pk: &str) -> String {
    env.sb
        .sales_rows(set)
        .into_iter()
        .find(|r| r[col] == value)
        .and_then(|r| r[pk].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("{set} with {col} = {value}"))
}

/// Contacts and products of the suite, and ~2% records with permanent faults (with the fix for each).
fn seed(w: &mut World) {
    let sb = w.env.sb.clone();
    let mut rng = w.rng.lock().unwrap().clone();
    let bu = sb.business_unit_id(COMPANY).expect("business unit usmf");
    let usd = id_of(
        &w.env,
        "transactioncurrencies",
        "isocurrencycode",
        "USD",
        "transactioncurrencyid",
    );
    let mut accounts: Vec<(String, String)> = sb
        .sales_rows("accounts")
        .iter()
        .map(|a| {
            (
                a["accountid"].as_str().unwrap().to_string(),
                a["accountnumber"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    accounts.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(accounts.len(), ACCOUNTS);

    // Accounts, 2% in all: names longer than an F&O party name (100; Sales keeps 160), countries with no ISO
    // code, and a category whose customer group F&O does not have.
    let mut order: Vec<usize> = (0..accounts.len()).collect();
    order.shuffle(&mut rng);
    let per_kind = ACCOUNTS / 150;
    for &i in &order[..per_kind] {
        let (id, number) = &accounts[i];
        let long = format!("{number} {}", "International Holding Company ".repeat(4));
        sb.sales_update("accounts", id, json!({"name": long}));
        w.fixes.push(Fix::Sales {
            set: "accounts",
            id: id.clone(),
            patch: json!({"name": format!("{number} Holding")}),
        });
    }
    for &i in &order[per_kind..2 * per_kind] {
        let (id, _) = &accounts[i];
        sb.sales_update("accounts", id, json!({"address1_country": "Atlantis"}));
        w.fixes.push(Fix::Sales {
            set: "accounts",
            id: id.clone(),
            // Norway has no states in F&O: the demo account's US state must go with the country.
            patch: json!({"address1_country": "Norway", "address1_stateorprovince": ""}),
        });
    }
    for &i in &order[2 * per_kind..3 * per_kind] {
        let (id, _) = &accounts[i];
        sb.sales_update("accounts", id, json!({"accountcategorycode": 2}));
        w.fixes.push(Fix::Sales {
            set: "accounts",
            id: id.clone(),
            patch: json!({"accountcategorycode": 1}),
        });
    }
    w.bad += 3 * per_kind;

    // Contacts of accounts, 2% with a gender the template has no value for.
    let countries = ["Norway", "Germany", "United States", "UK", "France", "Japan"];
    let first = ["Ann", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ida", "Jo"];
    let last = ["Berg", "Dahl", "Lund", "Moe", "Holm", "Strand", "Vik", "Aas"];
    for i in 0..PERSONS {
        let (parent, _) = &accounts[rng.random_range(0..accounts.len())];
        let bad = i % 50 == 7;
        let id = sb.sales_insert(
            "contacts",
            json!({
                "firstname": first[rng.random_range(0..first.len())],
                "lastname": format!("{} {i}", last[rng.random_range(0..last.len())]),
                "msdynce_contactnumber": format!("CON-F{i:05}"),
                "msdynce_isactivecustomer": false, "msdynce_iscompanyanaccount": true,
                "_parentcustomerid_value": parent, "_owningbusinessunit_value": bu,
                "gendercode": if bad { 3 } else { rng.random_range(1..=2) },
                "familystatuscode": rng.random_range(1..=4),
                "donotemail": rng.random_bool(0.3),
                "jobtitle": "Buyer", "department": "Purchasing",
                "emailaddress1": format!("person{i}@example.com"),
                "telephone1": format!("+47 555 {i:05}"),
                "address1_city": "Oslo", "address1_country": countries[rng.random_range(0..countries.len())],
            }),
        );
        if bad {
            w.bad += 1;
            w.fixes.push(Fix::Sales {
                set: "contacts",
                id,
                patch: json!({"gendercode": 1}),
            });
        }
    }
    // Contacts that are active customers, 5% with a country that has no ISO code.
    for i in 0..CUSTOMERS {
        let bad = i % 20 == 3;
        let id = sb.sales_insert(
            "contacts",
            json!({
                "firstname": first[rng.random_range(0..first.len())],
                "lastname": format!("Customer {i}"),
                "msdynce_contactnumber": format!("CON-C{i:05}"),
                "msdynce_isactivecustomer": true, "_owningbusinessunit_value": bu,
                "_transactioncurrencyid_value": usd, "creditlimit": rng.random_range(1..100) * 1000,
                "emailaddress1": format!("customer{i}@example.com"),
                "address1_city": "Toronto", "address1_country": if bad { "Atlantis" } else { "Canada" },
            }),
        );
        if bad {
            w.bad += 1;
            w.fixes.push(Fix::Sales {
                set: "contacts",
                id,
                patch: json!({"address1_country": "Canada"}),
            });
        }
    }

    // F&O products: 1% in a currency no Sales price list has, 1% with a name longer than Sales keeps.
    for i in 0..PRODUCTS {
        let number = format!("FP{i:05}");
        let unit = if rng.random_bool(0.8) { "ea" } else { "pcs" };
        let mut name = format!("Fault product {i}");
        let mut currency = "USD";
        if i % 100 == 11 {
            currency = "CHF";
            w.fixes.push(Fix::Fno {
                key: number.clone(),
                patch: json!({"CurrencyCode": "USD"}),
            });
        } else if i % 100 == 57 {
            name = format!("{name} {}", "with a very long marketing name ".repeat(4));
            w.fixes.push(Fix::Fno {
                key: number.clone(),
                patch: json!({"ProductName": format!("Fault product {i} (short)")}),
            });
        }
        sb.fno_insert(
            "SellableReleasedProducts",
            json!({"dataAreaId": COMPANY, "ProductNumber": number, "ProductName": name,
                   "ProductDescription": format!("Product {i} of the fault suite"),
                   "ProductType": if rng.random_bool(0.9) { "Item" } else { "Service" },
                   "SalesUnitSymbol": unit, "InventoryUnitSymbol": unit,
                   "SalesPrice": rng.random_range(100..100_000) as f64 / 100.0,
                   "UnitCost": rng.random_range(100..50_000) as f64 / 100.0,
                   "CurrencyCode": currency, "IsSalesStopped": "No",
                   "IsStockedProduct": if rng.random_bool(0.7) { "Yes" } else { "No" }}),
        );
    }
    w.bad += 2 * PRODUCTS / 100;
    *w.rng.lock().unwrap() = rng;
}

/// Changes `share` of the records of every flow in their source (a later incremental run must carry them).
fn mutate(w: &World, share: f64, tag: &str) -> usize {
    let sb = &w.env.sb;
    let mut rng = w.rng.lock().unwrap();
    let mut n = 0;
    for a in sb.sales_rows("accounts") {
        if rng.random_bool(share) {
            let id = a["accountid"].as_str().unwrap();
            sb.sales_update(
                "accounts",
                id,
                json!({"telephone1": format!("+1 555 {tag}"), "address1_city": tag}),
            );
            n += 1;
        }
    }
    for c in sb.sales_rows("contacts") {
        if rng.random_bool(share) {
            let id = c["contactid"].as_str().unwrap();
            sb.sales_update("contacts", id, json!({"emailaddress1": format!("{tag}@example.com")}));
            n += 1;
        }
    }
    for p in sb.fno_rows("SellableReleasedProducts") {
        if p["dataAreaId"] == COMPANY && rng.random_bool(share) {
            let number = p["ProductNumber"].as_str().unwrap();
            let price = rng.random_range(100..100_000) as f64 / 100.0;
            sb.fno_update(
                "SellableReleasedProducts",
                &[("dataAreaId", COMPANY), ("ProductNumber", number)],
                json!({"SalesPrice": price}),
            );
            n += 1;
        }
    }
    n
}

// ------------------------------------------------------------------------------------------------ running

fn opts() -> RunOptions {
    RunOptions::default()
}

/// Runs a flow until a run completes: a crashed run is rerun once its lease has expired, a failed run is
/// rerun (it resumes from what was committed). Bounded.
async fn run_to_end(w: &World, deps: &Deps, flow: FlowName, opts: &RunOptions) -> RunReport {
    for _ in 0..80 {
        match run_flow(deps, flow, COMPANY, opts).await {
            Ok(r) if r.lease_held_by.is_some() => tokio::time::sleep(Duration::from_millis(250)).await,
            Ok(r) => {
                assert!(
                    r.balanced(),
                    "{}: {flow}: read = written + skipped + failed: {r:?}",
                    w.name
                );
                return r;
            }
            Err(SyncError::SimulatedCrash(p)) => {
                w.crashes.fetch_add(1, Ordering::Relaxed);
                w.note(format!("{flow}: crashed at {p:?}"));
            }
            Err(e) => {
                w.note(format!("{flow}: run failed and was rerun: {e}"));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    panic!("{}: {flow} did not complete a run in 80 attempts", w.name);
}

fn event_of(got: &[Received]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for m in got {
        let mut msg = SqsMessage::default();
        msg.message_id = Some(m.message_id.clone());
        msg.receipt_handle = Some(m.receipt_handle.clone());
        msg.body = Some(m.body.clone());
        msg.attributes
            .insert("ApproximateReceiveCount".into(), m.receive_count.to_string());
        event.records.push(msg);
    }
    event
}

/// Processes the flow's queue until it is empty, as the SQS trigger does (`p2c drain`): handled messages are
/// deleted, failed ones become visible again at once (the harness's stand-in for the visibility timeout).
/// `twice`: some batches are delivered a second time before they are deleted (at-least-once delivery).
async fn drain(w: &World, deps: &Deps, flow: FlowName, twice: bool) -> u64 {
    let pair = deps.queue_pair(flow).await.expect("queues");
    let mut failures = 0;
    for _ in 0..3000 {
        let got = deps.queues.receive(&pair.queue_url, 10, 0).await.expect("receive");
        if got.is_empty() {
            break;
        }
        let mut failed: HashSet<String> = HashSet::new();
        // A seeded third of the batches is delivered again before it is deleted.
        let again = twice && w.rng_range(0..3) == 0;
        for _ in 0..if again { 2 } else { 1 } {
            let resp = handle_sqs(deps, flow, event_of(&got)).await;
            failed.extend(resp.batch_item_failures.into_iter().map(|f| f.item_identifier));
        }
        if again {
            w.count(got.len() as u64);
        }
        let (bad, done): (Vec<&Received>, Vec<&Received>) = got.iter().partition(|m| failed.contains(&m.message_id));
        let handles: Vec<String> = done.iter().map(|m| m.receipt_handle.clone()).collect();
        deps.queues.delete(&pair.queue_url, &handles).await.expect("delete");
        for m in bad {
            failures += 1;
            w.sqs
                .change_message_visibility()
                .queue_url(&pair.queue_url)
                .receipt_handle(&m.receipt_handle)
                .visibility_timeout(0)
                .send()
                .await
                .expect("change visibility");
        }
    }
    if failures > 0 {
        w.note(format!(
            "{flow}: {failures} message deliveries failed and were redelivered"
        ));
    }
    failures
}

/// Scheduled runs of the three flows, parents first, each followed by a drain of its queue.
async fn sync_all(w: &World, opts: impl Fn(FlowName) -> RunOptions) -> Vec<RunReport> {
    let mut out = Vec::new();
    for flow in FLOWS {
        out.push(run_to_end(w, &w.env.deps, flow, &opts(flow)).await);
        drain(w, &w.env.deps, flow, false).await;
    }
    out
}

/// A progress callback that calls `f` with the page number (1 = the first page) after each page.
fn on_page(f: impl Fn(usize) + Send + Sync + 'static) -> RunOptions {
    let page = Arc::new(AtomicUsize::new(0));
    RunOptions {
        progress: Some(Arc::new(move |_: &RunReport| {
            f(page.fetch_add(1, Ordering::Relaxed) + 1);
            true
        })),
        ..Default::default()
    }
}

fn fault(service: Service, kind: FaultKind, times: u32, path: &str) -> Fault {
    Fault {
        service,
        kind,
        times,
        path_contains: (!path.is_empty()).then(|| path.to_string()),
    }
}

// ------------------------------------------------------------------------------------------------ checking

fn logical(set: &str) -> &str {
    match set {
        "transactioncurrencies" => "transactioncurrency",
        other => other.strip_suffix('s').unwrap_or(other),
    }
}

/// Sales tables by entity set → lower-case id → row.
struct SalesView {
    tables: HashMap<String, HashMap<String, Value>>,
}

impl SalesView {
    fn load(env: &Env) -> SalesView {
        let mut tables = HashMap::new();
        for set in [
            "accounts",
            "contacts",
            "transactioncurrencies",
            "uoms",
            "uomschedules",
            "pricelevels",
            "products",
            "productpricelevels",
        ] {
            let pk = format!("{}id", logical(set));
            let rows = env
                .sb
                .sales_rows(set)
                .into_iter()
                .filter_map(|r| Some((r[&pk].as_str()?.to_ascii_lowercase(), r)))
                .collect();
            tables.insert(set.to_string(), rows);
        }
        SalesView { tables }
    }

    fn rows(&self, set: &str) -> impl Iterator<Item = &Value> {
        self.tables[set].values()
    }

    fn get(&self, set: &str, id: &str) -> Option<&Value> {
        self.tables.get(set)?.get(&id.to_ascii_lowercase())
    }

    /// The Sales row as the pipeline sees it: each lookup path of the template resolved into the row.
    fn enriched(&self, t: &Template, row: &Value) -> Record {
        let mut r = row.as_object().cloned().unwrap_or_default();
        for l in t.lookups() {
            let Some(id) = r.get(&l.column).and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            for target in &l.targets {
                if let Some(v) = self
                    .get(&target.entity_set, &id)
                    .and_then(|rel| rel.get(&target.column))
                {
                    r.insert(l.path.clone(), v.clone());
                    break;
                }
            }
        }
        r
    }

    /// Whether a Sales row holds a mapped value: plain columns directly, lookups through the related record.
    fn holds(&self, row: &Value, field: &str, want: &Value) -> bool {
        match lookup_targets(field) {
            Some((nav, targets)) if !targets.is_empty() => {
                let Some(id) = row[format!("_{nav}_value")].as_str() else {
                    return false;
                };
                targets.iter().any(|t| {
                    self.get(&t.entity_set, id)
                        .is_some_and(|rel| same_ignoring_case(&rel[&t.column], want))
                })
            }
            _ => same(&row[field], want),
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() < 1e-6,
        _ => a == b,
    }
}

fn same_ignoring_case(a: &Value, b: &Value) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        _ => same(a, b),
    }
}

/// The first mapped field an F&O row does not hold, if any.
fn fno_mismatch(row: &Value, want: &Record) -> Option<String> {
    want.iter()
        .find(|(k, v)| !same(&row[k.as_str()], v))
        .map(|(k, v)| format!("{k} is {} instead of {v}", row[k.as_str()]))
}

fn lower(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_ascii_lowercase()
}

/// What comparing both systems found. Records are named `<flow>:<source key>`.
#[derive(Default)]
struct Check {
    eligible: BTreeSet<String>,
    in_target: BTreeSet<String>,
    /// In the DLQ with a reason.
    dead: BTreeSet<String>,
    /// Neither in the target with the mapped values nor in the DLQ with a reason.
    lost: BTreeSet<String>,
    /// Target keys held more than once.
    duplicated: BTreeSet<String>,
    /// DLQ bodies per flow (read off the DLQ; `replay` puts them back).
    dlq: BTreeMap<FlowName, Vec<String>>,
    /// Messages still waiting in a flow's main queue after draining.
    queued: usize,
    why: Vec<String>,
}

impl Check {
    fn judge(&mut self, rec: String, ok: Result<(), String>) {
        match ok {
            Ok(()) => {
                self.in_target.insert(rec.clone());
            }
            Err(why) if !self.dead.contains(&rec) => {
                if self.why.len() < 12 {
                    self.why.push(format!("{rec}: {why}"));
                }
                self.lost.insert(rec.clone());
            }
            Err(_) => {}
        }
        self.eligible.insert(rec);
    }
}

async fn check(w: &World) -> Check {
    let env = &w.env;
    let mut c = Check::default();
    // The queues: the main queue must be empty after a drain; the DLQ says why each record is there.
    let mut dlq_keys: BTreeMap<String, String> = BTreeMap::new();
    for flow in FLOWS {
        let (queued, dead) = env.queued(flow).await;
        for q in &queued {
            c.why.push(format!("{flow}: still queued: {q}"));
        }
        c.queued += queued.len();
        for body in &dead {
            let m: Message = serde_json::from_str(body).expect("a DLQ body is a p2c message");
            let reason = m.last_error.clone().unwrap_or_default();
            for k in &m.keys {
                let rec = format!("{flow}:{}", k.to_ascii_lowercase());
                if reason.trim().is_empty() {
                    c.why.push(format!("{rec}: dead-lettered without a reason"));
                    continue;
                }
                dlq_keys.insert(rec, reason.clone());
            }
        }
        c.dlq.insert(flow, dead);
    }
    c.dead = dlq_keys.keys().cloned().collect();

    let sales = SalesView::load(env);
    let bu = env.sb.business_unit_id(COMPANY).unwrap();
    let owned = |r: &Value| {
        r["_owningbusinessunit_value"]
            .as_str()
            .is_some_and(|b| b.eq_ignore_ascii_case(&bu))
    };

    // F&O targets, and their keys seen more than once.
    let customers = env.customers(COMPANY);
    let persons: Vec<Value> = env
        .sb
        .fno_rows("CDSContactPersons")
        .into_iter()
        .filter(|r| r["dataAreaId"] == COMPANY)
        .collect();
    let mut by_account: HashMap<String, Vec<&Value>> = HashMap::new();
    for r in &customers {
        by_account.entry(lower(&r["CustomerAccount"])).or_default().push(r);
    }
    let mut by_person: HashMap<String, Vec<&Value>> = HashMap::new();
    for r in &persons {
        by_person
            .entry(lower(&r["ContactPersonPartyNumber"]))
            .or_default()
            .push(r);
    }
    for (k, v) in &by_account {
        if v.len() > 1 {
            c.duplicated.insert(format!("CustomersV2:{k}"));
        }
    }
    for (k, v) in &by_person {
        if v.len() > 1 {
            c.duplicated.insert(format!("CDSContactPersons:{k}"));
        }
    }
    // Sales targets: one product per product number, one price list item per product (and per list + unit).
    let mut by_number: HashMap<String, Vec<&Value>> = HashMap::new();
    for p in sales.rows("products") {
        by_number.entry(lower(&p["productnumber"])).or_default().push(p);
    }
    let mut items: HashMap<String, Vec<&Value>> = HashMap::new();
    let mut item_keys: HashMap<(String, String, String), usize> = HashMap::new();
    for i in sales.rows("productpricelevels") {
        items.entry(lower(&i["_productid_value"])).or_default().push(i);
        *item_keys
            .entry((
                lower(&i["_productid_value"]),
                lower(&i["_pricelevelid_value"]),
                lower(&i["_uomid_value"]),
            ))
            .or_default() += 1;
    }
    for (k, v) in &by_number {
        if v.len() > 1 {
            c.duplicated.insert(format!("products:{k}"));
        }
    }
    for (k, v) in &items {
        if v.len() > 1 {
            c.duplicated.insert(format!("productpricelevels:product {k}"));
        }
    }
    for ((p, l, u), n) in &item_keys {
        if *n > 1 {
            c.duplicated.insert(format!("productpricelevels:{p}/{l}/{u}"));
        }
    }

    // accounts-to-fno: every account of the company is a customer with the mapped values.
    let t = &env.deps.templates(FlowName::AccountsToFno)[0];
    for a in sales.rows("accounts").filter(|a| owned(a)) {
        let id = lower(&a["accountid"]);
        let rec = format!("{}:{id}", FlowName::AccountsToFno);
        let ok = t
            .map(&sales.enriched(t, a))
            .map_err(|e| format!("does not map: {e}"))
            .and_then(|want| {
                let key = lower(&a["accountnumber"]);
                let got = by_account
                    .get(&key)
                    .and_then(|v| v.first())
                    .ok_or("no customer in F&O")?;
                fno_mismatch(got, &want).map_or(Ok(()), Err)
            });
        c.judge(rec, ok);
    }

    // contacts-to-fno: active customers are customers, contacts of accounts are contact persons.
    let flow = FlowName::ContactsToFno;
    let as_customer = env.deps.template(flow, "ContactToCustomer").unwrap();
    let as_person = env.deps.template(flow, "Contacts").unwrap();
    for ct in sales.rows("contacts").filter(|r| owned(r)) {
        let id = lower(&ct["contactid"]);
        let rec = format!("{flow}:{id}");
        let (t, targets) = if as_customer.passes_filter(&sales.enriched(as_customer, ct)) {
            (as_customer, &by_account)
        } else if as_person.passes_filter(&sales.enriched(as_person, ct)) {
            (as_person, &by_person)
        } else {
            continue; // neither route takes it
        };
        let ok = t
            .map(&sales.enriched(t, ct))
            .map_err(|e| format!("does not map: {e}"))
            .and_then(|want| {
                let key = lower(&ct["msdynce_contactnumber"]);
                let got = targets
                    .get(&key)
                    .and_then(|v| v.first())
                    .ok_or(format!("no {} in F&O", t.target_entity))?;
                fno_mismatch(got, &want).map_or(Ok(()), Err)
            });
        c.judge(rec, ok);
    }

    // products-to-sales: every sellable product of the company is a Sales product with its price list item.
    let flow = FlowName::ProductsToSales;
    let product_t = env.deps.template(flow, "Products").unwrap();
    let item_t = env.deps.template(flow, "ProductPriceListItem").unwrap();
    for p in env.sb.fno_rows("SellableReleasedProducts") {
        if p["dataAreaId"] != COMPANY {
            continue;
        }
        let number = lower(&p["ProductNumber"]);
        let rec = format!("{flow}:{number}");
        let src = p.as_object().cloned().unwrap_or_default();
        let ok = (|| {
            let want = product_t.map(&src).map_err(|e| format!("does not map: {e}"))?;
            let got = by_number
                .get(&number)
                .and_then(|v| v.first())
                .ok_or("no product in Sales")?;
            if let Some((k, v)) = want.iter().find(|(k, v)| !sales.holds(got, k, v)) {
                return Err(format!("product field {k} does not hold {v}"));
            }
            let want = item_t.map(&src).map_err(|e| format!("item does not map: {e}"))?;
            let item = items
                .get(&lower(&got["productid"]))
                .and_then(|v| v.first())
                .ok_or("no price list item in Sales")?;
            match want.iter().find(|(k, v)| !sales.holds(item, k, v)) {
                Some((k, v)) => Err(format!("price list item field {k} does not hold {v}")),
                None => Ok(()),
            }
        })();
        c.judge(rec, ok);
    }
    for rec in c.dead.difference(&c.eligible) {
        c.why.push(format!("{rec}: in the DLQ but not an eligible record"));
    }
    c
}

/// Removes the permanent causes, replays every DLQ and drains the queues, parents first.
async fn heal(w: &World, before: &Check, crash_while_replaying: bool) {
    for f in &w.fixes {
        match f {
            Fix::Sales { set, id, patch } => w.env.sb.sales_update(set, id, patch.clone()),
            Fix::Fno { key, patch } => w.env.sb.fno_update(
                "SellableReleasedProducts",
                &[("dataAreaId", COMPANY), ("ProductNumber", key)],
                patch.clone(),
            ),
        }
    }
    let deps = &w.env.deps;
    // `check` read the DLQs; put the messages back, then replay them as `p2c replay` does.
    for (flow, bodies) in &before.dlq {
        let pair = deps.queue_pair(*flow).await.unwrap();
        deps.queues.send(&pair.dlq_url, bodies).await.expect("back to the DLQ");
    }
    let replay = |flow: FlowName| async move {
        let pair = deps.queue_pair(flow).await.unwrap();
        deps.queues
            .move_messages(&pair.dlq_url, &pair.queue_url, None, false)
            .await
            .expect("replay")
            .len()
    };
    let (a, b, c) = tokio::join!(replay(FLOWS[0]), replay(FLOWS[1]), replay(FLOWS[2]));
    let moved: usize = [a, b, c].iter().sum();
    let held: usize = before.dlq.values().map(Vec::len).sum();
    assert_eq!(moved, held, "{}: every DLQ message is replayed", w.name);
    for flow in FLOWS {
        if crash_while_replaying {
            // The worker dies after writing the first replayed batch: SQS redelivers it.
            deps.crashes.arm(CrashPoint::AfterTargetWrite, 1);
        }
        if drain(w, deps, flow, false).await > 0 && crash_while_replaying {
            w.crashes.fetch_add(1, Ordering::Relaxed);
        }
        deps.crashes.disarm();
    }
}

// ------------------------------------------------------------------------------------------------ report

struct Row {
    scenario: &'static str,
    records: usize,
    faults: u64,
    lost: usize,
    duplicated: usize,
    dead: usize,
    healed: usize,
    secs: f64,
    detail: String,
    why: Vec<String>,
}

/// Checks, heals and checks again; the row of the table.
async fn finish(w: World, started: Instant, faults: u64, detail: String, crash_while_replaying: bool) -> Row {
    w.env.sb.clear_faults();
    let before = check(&w).await;
    heal(&w, &before, crash_while_replaying).await;
    let after = check(&w).await;
    let healed = before.dead.intersection(&after.in_target).count();
    let not_healed: Vec<&String> = before.dead.difference(&after.in_target).collect();
    let mut why = before.why.clone();
    why.extend(after.why.iter().map(|s| format!("after replay: {s}")));
    if !not_healed.is_empty() {
        why.push(format!("not healed by the replay: {not_healed:?}"));
    }
    // Lost: missing before the replay without a DLQ entry, or missing after it without having been dead-lettered.
    let mut lost: BTreeSet<&String> = before.lost.iter().collect();
    lost.extend(after.lost.iter().filter(|r| !before.dead.contains(*r)));
    lost.extend(
        after
            .eligible
            .difference(&after.in_target)
            .filter(|r| !before.dead.contains(*r)),
    );
    let duplicated: BTreeSet<&String> = before.duplicated.union(&after.duplicated).collect();
    if !duplicated.is_empty() {
        why.push(format!("duplicated: {duplicated:?}"));
    }
    if before.queued + after.queued > 0 {
        why.push(format!(
            "{} message(s) left in a main queue after draining",
            before.queued + after.queued
        ));
    }
    if !after.dead.is_empty() {
        why.push(format!("still in a DLQ after the replay: {:?}", after.dead));
    }
    why.extend(w.notes.lock().unwrap().iter().take(8).cloned());
    let _ = std::fs::remove_file(&w.mapping);
    Row {
        scenario: w.name,
        records: before.eligible.len(),
        faults: faults + w.bad as u64 + w.crashes.load(Ordering::Relaxed),
        lost: lost.len() + before.queued + after.queued,
        duplicated: duplicated.len(),
        dead: before.dead.len(),
        healed,
        secs: started.elapsed().as_secs_f64(),
        detail: format!(
            "{detail} + {} bad records; DynamoDB {} and SQS {} requests",
            w.bad,
            w.env.deps.state.request_count() + w.others.iter().map(|o| o.state.request_count()).sum::<u64>(),
            w.env.deps.queues.request_count() + w.others.iter().map(|o| o.queues.request_count()).sum::<u64>(),
        ),
        why,
    }
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let line = format!(
        "+{:-<34}+{:-<9}+{:-<17}+{:-<6}+{:-<12}+{:-<15}+{:-<18}+\n",
        "", "", "", "", "", "", ""
    );
    s.push_str(&line);
    s.push_str(&format!(
        "| {:<32} | {:>7} | {:>15} | {:>4} | {:>10} | {:>13} | {:>16} |\n",
        "scenario", "records", "faults injected", "lost", "duplicated", "dead-lettered", "healed by replay"
    ));
    s.push_str(&line);
    for r in rows {
        s.push_str(&format!(
            "| {:<32} | {:>7} | {:>15} | {:>4} | {:>10} | {:>13} | {:>16} |\n",
            r.scenario, r.records, r.faults, r.lost, r.duplicated, r.dead, r.healed
        ));
    }
    s.push_str(&line);
    for r in rows {
        s.push_str(&format!("{:<32} {:>5.1} s  faults: {}\n", r.scenario, r.secs, r.detail));
    }
    s
}

// ------------------------------------------------------------------------------------------------ scenarios

async fn storm_429() -> Row {
    let started = Instant::now();
    let w = world("429 storm (Retry-After 1 s)", 1, |_| {}).await;
    let sb = w.env.sb.clone();
    let too_many = || FaultKind::TooManyRequests { retry_after_secs: 1 };
    let plan: [(FlowName, &str, &str); 3] = [
        (FlowName::AccountsToFno, "accounts", "$batch"),
        (FlowName::ProductsToSales, "$batch", "SellableReleasedProducts"),
        (FlowName::ContactsToFno, "contacts", "CDSContactPersons"),
    ];
    for (flow, sales_path, fno_path) in plan {
        // A storm as the run starts, on both services, several in a row ...
        sb.inject(fault(Service::Sales, too_many(), 3, sales_path));
        sb.inject(fault(Service::Fno, too_many(), 3, fno_path));
        // ... and another after a seeded page of the run.
        let at = w.rng_range(1..3);
        let sb2 = sb.clone();
        let opts = on_page(move |page| {
            if page == at {
                sb2.inject(fault(
                    Service::Fno,
                    FaultKind::TooManyRequests { retry_after_secs: 1 },
                    1,
                    "",
                ));
                sb2.inject(fault(
                    Service::Sales,
                    FaultKind::TooManyRequests { retry_after_secs: 1 },
                    1,
                    "",
                ));
            }
        });
        run_to_end(&w, &w.env.deps, flow, &opts).await;
        drain(&w, &w.env.deps, flow, false).await;
    }
    let (throttled, _) = w.client_faults();
    assert!(throttled >= 12, "the storms reached the clients: {throttled}");
    let detail = format!("{throttled} × 429 seen by the clients");
    finish(w, started, throttled, detail, false).await
}

async fn burst_5xx() -> Row {
    let started = Instant::now();
    let w = world("5xx bursts", 2, |_| {}).await;
    let sb = w.env.sb.clone();
    let plan: [(FlowName, &str, &str); 3] = [
        (FlowName::AccountsToFno, "accounts", "$batch"),
        (FlowName::ProductsToSales, "$batch", "SellableReleasedProducts"),
        (FlowName::ContactsToFno, "contacts", "CustomersV2"),
    ];
    for (flow, sales_path, fno_path) in plan {
        sb.inject(fault(Service::Sales, FaultKind::ServerError, 2, sales_path));
        sb.inject(fault(Service::Fno, FaultKind::ServerError, 3, fno_path));
        // And a burst on the writes after a seeded page.
        let at = w.rng_range(1..3);
        let sb2 = sb.clone();
        let opts = on_page(move |page| {
            if page == at {
                sb2.inject(fault(Service::Any, FaultKind::ServerError, 3, "$batch"));
            }
        });
        run_to_end(&w, &w.env.deps, flow, &opts).await;
        drain(&w, &w.env.deps, flow, false).await;
    }
    let (_, retried) = w.client_faults();
    assert!(retried >= 10, "the bursts reached the clients: {retried}");
    let detail = format!("{retried} × 5xx retried by the clients");
    finish(w, started, retried, detail, false).await
}

async fn timeouts_and_drops() -> Row {
    let started = Instant::now();
    let w = world("timeouts and dropped connections", 3, |c| {
        c.http_timeout = Duration::from_millis(1000)
    })
    .await;
    let sb = w.env.sb.clone();
    let slow = || FaultKind::Delay(Duration::from_millis(1300));
    let plan: [(FlowName, &str, &str); 3] = [
        (FlowName::AccountsToFno, "accounts", "$batch"),
        (FlowName::ProductsToSales, "$batch", "SellableReleasedProducts"),
        (FlowName::ContactsToFno, "contacts", "$batch"),
    ];
    for (flow, sales_path, fno_path) in plan {
        // A read and a write that time out (the service may still apply the write after the client gave up),
        // and connections that drop without an answer.
        sb.inject(fault(Service::Sales, slow(), 1, sales_path));
        sb.inject(fault(Service::Fno, slow(), 1, fno_path));
        sb.inject(fault(Service::Sales, FaultKind::Drop, 2, ""));
        sb.inject(fault(Service::Fno, FaultKind::Drop, 2, ""));
        let at = w.rng_range(1..3);
        let sb2 = sb.clone();
        let opts = on_page(move |page| {
            if page == at {
                sb2.inject(fault(Service::Any, FaultKind::Drop, 2, "$batch"));
            }
        });
        run_to_end(&w, &w.env.deps, flow, &opts).await;
        drain(&w, &w.env.deps, flow, false).await;
    }
    let (_, retried) = w.client_faults();
    assert!(retried >= 12, "the timeouts and drops reached the clients: {retried}");
    let detail = format!("{retried} timeouts/drops retried by the clients");
    finish(w, started, retried, detail, false).await
}

async fn token_expiry() -> Row {
    let started = Instant::now();
    let w = world("token expiry mid-run", 4, |_| {}).await;
    let sb = w.env.sb.clone();
    let expiries = Arc::new(AtomicU64::new(0));
    let before = w.token_fetches();
    for flow in FLOWS {
        sb.expire_all_tokens();
        expiries.fetch_add(1, Ordering::Relaxed);
        let at = w.rng_range(1..3);
        let (sb2, n) = (sb.clone(), expiries.clone());
        let opts = on_page(move |page| {
            if page == at || page == at + 2 {
                sb2.expire_all_tokens();
                n.fetch_add(1, Ordering::Relaxed);
            }
        });
        run_to_end(&w, &w.env.deps, flow, &opts).await;
        sb.expire_all_tokens();
        expiries.fetch_add(1, Ordering::Relaxed);
        drain(&w, &w.env.deps, flow, false).await;
    }
    let n = expiries.load(Ordering::Relaxed);
    let refetched = w.token_fetches() - before;
    assert!(
        refetched >= 6,
        "the expiries made the clients fetch new tokens: {refetched}"
    );
    let detail = format!("{n} expiries of every token, {refetched} tokens fetched again");
    finish(w, started, n, detail, false).await
}

async fn validation_failures() -> Row {
    let started = Instant::now();
    let w = world("permanent validation failures", 5, |_| {}).await;
    sync_all(&w, |_| opts()).await;
    // A second pass over unchanged data must not dead-letter anything twice or write anything.
    let reports = sync_all(&w, |_| opts()).await;
    let written: u64 = reports.iter().map(|r| r.written).sum();
    assert_eq!(written, 0, "a rerun over unchanged data writes nothing: {reports:?}");
    let detail = "unknown customer group, over-long product and account names, unknown country, unmapped gender, \
                  currency without a price list"
        .to_string();
    finish(w, started, 0, detail, false).await
}

async fn duplicate_delivery() -> Row {
    let started = Instant::now();
    let mut w = world("duplicate SQS delivery", 6, |_| {}).await;
    let other = Arc::new(w.env.another_instance().await);
    w.others.push(other.clone());
    let sales = SalesView::load(&w.env);
    let deps = &w.env.deps;
    // Every record goes through SQS: each message is sent twice, two instances drain the queue at once, and
    // each batch a drainer receives is handled twice before it is deleted.
    for flow in FLOWS {
        let mut keys: Vec<String> = match flow {
            FlowName::AccountsToFno => sales.rows("accounts").map(|a| lower(&a["accountid"])).collect(),
            FlowName::ContactsToFno => sales.rows("contacts").map(|c| lower(&c["contactid"])).collect(),
            _ => w
                .env
                .sb
                .fno_rows("SellableReleasedProducts")
                .iter()
                .filter(|p| p["dataAreaId"] == COMPANY)
                .map(|p| p["ProductNumber"].as_str().unwrap().to_string())
                .collect(),
        };
        keys.sort();
        let bodies: Vec<String> = keys
            .chunks(20)
            .map(|c| Message::new(flow.as_str(), COMPANY, c.to_vec(), Reason::Change).to_body())
            .collect();
        let pair = deps.queue_pair(flow).await.unwrap();
        deps.queues.send(&pair.queue_url, &bodies).await.unwrap();
        deps.queues.send(&pair.queue_url, &bodies).await.unwrap();
        w.count(bodies.len() as u64);
        tokio::join!(drain(&w, deps, flow, true), drain(&w, &other, flow, true));
    }
    // The same batch handed to both instances at the same moment.
    mutate(&w, 0.05, "dup");
    for flow in FLOWS {
        let keys: Vec<String> = match flow {
            FlowName::AccountsToFno => sales
                .rows("accounts")
                .take(60)
                .map(|a| lower(&a["accountid"]))
                .collect(),
            FlowName::ContactsToFno => sales
                .rows("contacts")
                .take(60)
                .map(|c| lower(&c["contactid"]))
                .collect(),
            _ => (0..60).map(|i| format!("FP{:05}", i * 3)).collect(),
        };
        let bodies: Vec<String> = keys
            .chunks(10)
            .map(|c| Message::new(flow.as_str(), COMPANY, c.to_vec(), Reason::Change).to_body())
            .collect();
        let received: Vec<Received> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| Received {
                message_id: format!("dup-{i}"),
                receipt_handle: format!("r-{i}"),
                body: b.clone(),
                receive_count: 1,
            })
            .collect();
        let (a, b) = tokio::join!(
            handle_sqs(deps, flow, event_of(&received)),
            handle_sqs(&other, flow, event_of(&received))
        );
        assert!(
            a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty(),
            "concurrent duplicates are handled"
        );
        w.count(received.len() as u64);
        drain(&w, deps, flow, false).await;
    }
    // The schedule finds everything in place.
    sync_all(&w, |_| opts()).await;
    let n = w.faults.load(Ordering::Relaxed);
    let detail = format!("{n} duplicate deliveries (sequential, and concurrent across two instances)");
    finish(w, started, n, detail, false).await
}

async fn crashes() -> Row {
    let started = Instant::now();
    let w = world("crash at each commit point", 7, |_| {}).await;
    let deps = &w.env.deps;
    // The first run of each flow dies after writing a seeded page, before its links are committed.
    for flow in FLOWS {
        deps.crashes.arm(CrashPoint::AfterTargetWrite, w.rng_range(1..3) as u32);
        run_to_end(&w, deps, flow, &opts()).await;
        deps.crashes.disarm();
        drain(&w, deps, flow, false).await;
    }
    // Then changes, and each flow dies after its last links, before its watermark moves.
    mutate(&w, 0.05, "crash");
    for flow in FLOWS {
        deps.crashes.arm(CrashPoint::BeforeWatermark, 1);
        run_to_end(&w, deps, flow, &opts()).await;
        deps.crashes.disarm();
        drain(&w, deps, flow, false).await;
    }
    let n = w.crashes.load(Ordering::Relaxed);
    assert_eq!(n, 6, "every armed crash happened: {:?}", w.notes.lock().unwrap());
    // The replay is crashed too, once per flow (`finish` counts every crash).
    let detail = "crashes: AfterTargetWrite and BeforeWatermark in each flow's run, AfterTargetWrite in each \
                  flow's replay"
        .to_string();
    finish(w, started, 0, detail, true).await
}

async fn concurrent_runs() -> Row {
    let started = Instant::now();
    let mut w = world("two concurrent runs", 8, |_| {}).await;
    let other = Arc::new(w.env.another_instance().await);
    w.others.push(other.clone());
    let deps = &w.env.deps;
    let refused = |r: &Result<RunReport, SyncError>| matches!(r, Ok(r) if r.lease_held_by.is_some());
    // Both instances start the same flow at the same moment; then both drain the queue at once.
    for flow in FLOWS {
        let plain = opts();
        let (a, b) = tokio::join!(
            run_flow(deps, flow, COMPANY, &plain),
            run_flow(&other, flow, COMPANY, &plain)
        );
        let n = [&a, &b].iter().filter(|r| refused(r)).count();
        w.count(n as u64);
        for r in [a, b] {
            if let Err(e) = r {
                w.note(format!("{flow}: concurrent run failed: {e}"));
            }
        }
        run_to_end(&w, deps, flow, &opts()).await;
        tokio::join!(drain(&w, deps, flow, false), drain(&w, &other, flow, false));
    }
    // Then a full resync of each flow, with the other instance starting while the first is mid-run.
    mutate(&w, 0.05, "race");
    for flow in FLOWS {
        let started_page = Arc::new(tokio::sync::Notify::new());
        let signal = started_page.clone();
        let first = RunOptions {
            full_resync: true,
            ..on_page(move |page| {
                if page == 1 {
                    signal.notify_one();
                }
            })
        };
        let ended = started_page.clone();
        let (a, b) = tokio::join!(
            async {
                let r = run_flow(deps, flow, COMPANY, &first).await;
                // A run that ends before its first page (an error) must not leave the other waiting for ever.
                ended.notify_one();
                r
            },
            async {
                started_page.notified().await;
                run_flow(&other, flow, COMPANY, &opts()).await
            }
        );
        let n = [&a, &b].iter().filter(|r| refused(r)).count();
        w.count(n as u64);
        if !refused(&b) {
            w.note(format!("{flow}: the second run was not refused: {b:?}"));
        }
        if let Err(e) = a {
            w.note(format!("{flow}: the first run failed: {e}"));
        }
        run_to_end(&w, &other, flow, &opts()).await;
        tokio::join!(drain(&w, deps, flow, false), drain(&w, &other, flow, false));
    }
    let n = w.faults.load(Ordering::Relaxed);
    let detail = format!("{n} runs refused by the lease, concurrent drains");
    finish(w, started, n, detail, false).await
}

async fn expired_delta() -> Row {
    let started = Instant::now();
    let w = world("expired delta link", 9, |_| {}).await;
    sync_all(&w, |_| opts()).await;
    let mut expired = 0;
    // Changes, then every delta link expires: the next runs fall back to a full read.
    mutate(&w, 0.1, "delta");
    w.env.sb.expire_delta_tokens();
    expired += 1;
    let reports = sync_all(&w, |_| opts()).await;
    for r in reports.iter().filter(|r| r.flow != FlowName::ProductsToSales.as_str()) {
        assert!(r.full_resync, "{}: {} fell back to a full read", w.name, r.flow);
    }
    // Again, and the links expire a second time while the fallback read is paging.
    mutate(&w, 0.05, "again");
    w.env.sb.expire_delta_tokens();
    expired += 1;
    let sb = w.env.sb.clone();
    let at = w.rng_range(1..4);
    let during = Arc::new(AtomicU64::new(0));
    let d = during.clone();
    sync_all(&w, move |flow| {
        if flow == FlowName::ProductsToSales {
            return opts(); // a sweep has no delta link
        }
        let (sb, d) = (sb.clone(), d.clone());
        on_page(move |page| {
            if page == at {
                sb.expire_delta_tokens();
                d.fetch_add(1, Ordering::Relaxed);
            }
        })
    })
    .await;
    let n = expired + during.load(Ordering::Relaxed);
    let detail = format!("{n} expiries of every delta link (two between runs, the rest mid-run)");
    finish(w, started, n, detail, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_suite_loses_and_duplicates_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let started = Instant::now();
    // Scenarios run in lanes at once: most of a scenario's time is spent waiting (Retry-After, timeouts, lease
    // expiry), and each scenario has its own sandbox, moto, table and queues.
    let lanes = [
        tokio::spawn(async { vec![storm_429().await] }),
        tokio::spawn(async { vec![timeouts_and_drops().await, token_expiry().await] }),
        tokio::spawn(async { vec![crashes().await, validation_failures().await] }),
        tokio::spawn(async { vec![duplicate_delivery().await, concurrent_runs().await] }),
        tokio::spawn(async { vec![burst_5xx().await, expired_delta().await] }),
    ];
    let mut rows = Vec::new();
    for lane in lanes {
        rows.extend(lane.await.expect("a scenario panicked; its message is above"));
    }
    // In the order of the issue.
    let order = [
        "429",
        "5xx",
        "timeouts",
        "token",
        "validation",
        "duplicate",
        "crash",
        "concurrent",
        "expired",
    ];
    rows.sort_by_key(|r| order.iter().position(|o| r.scenario.contains(o)).unwrap_or(order.len()));
    let t = table(&rows);
    println!(
        "\nfault suite (seed {SEED:#x}), {:.1} s\n{t}",
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "\nfault suite (seed {SEED:#x}), {:.1} s\n{t}",
        started.elapsed().as_secs_f64()
    );
    // The test harness captures a passing test's output: scripts/test prints this file after the run.
    let report = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-suite.txt");
    let _ = std::fs::write(
        &report,
        format!(
            "fault suite (seed {SEED:#x}), {:.1} s\n{t}\n",
            started.elapsed().as_secs_f64()
        ),
    );
    let mut failed = Vec::new();
    for r in &rows {
        let ok = r.records >= 1000 && r.lost == 0 && r.duplicated == 0 && r.dead == r.healed && r.dead > 0;
        if !ok || !r.why.is_empty() {
            eprintln!("{}:\n  {}", r.scenario, r.why.join("\n  "));
        }
        if !ok {
            failed.push(r.scenario);
        }
    }
    assert!(failed.is_empty(), "invariants broken in: {failed:?}");
}

/// The bug the suite found: products handled by two instances at the same moment (an SQS message delivered
/// twice, a replay racing the sweep) were each created twice in Sales: both workers looked the product up by
/// number, found nothing, and created it. Now the loser's create collides on the product's id and is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_products_handled_by_two_instances_at_once_are_created_once() {
    let env = Env::start(0).await;
    let flow = FlowName::ProductsToSales;
    for i in 0..45 {
        env.sb.fno_insert(
            "SellableReleasedProducts",
            json!({"dataAreaId": COMPANY, "ProductNumber": format!("RACE{i:03}"), "ProductName": format!("Race {i}"),
                   "ProductType": "Item", "SalesUnitSymbol": "ea", "SalesPrice": 10.0 + i as f64, "UnitCost": 5.0,
                   "CurrencyCode": "USD", "IsStockedProduct": "Yes"}),
        );
    }
    let other = env.another_instance().await;
    let numbers: Vec<String> = (0..45).map(|i| format!("RACE{i:03}")).collect();
    let received: Vec<Received> = numbers
        .chunks(15)
        .enumerate()
        .map(|(i, keys)| Received {
            message_id: format!("m{i}"),
            receipt_handle: format!("r{i}"),
            body: Message::new(flow.as_str(), COMPANY, keys.to_vec(), Reason::Change).to_body(),
            receive_count: 1,
        })
        .collect();
    let (a, b) = tokio::join!(
        handle_sqs(&env.deps, flow, event_of(&received)),
        handle_sqs(&other, flow, event_of(&received))
    );
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());
    // The loser's records wait in the queue; the retry finds them in Sales.
    env.drain(flow).await;
    let (queued, dead) = env.queued(flow).await;
    assert!(queued.is_empty() && dead.is_empty(), "{queued:?} {dead:?}");
    let products = env.sb.sales_rows("products");
    let items = env.sb.sales_rows("productpricelevels");
    for n in &numbers {
        let p: Vec<&Value> = products.iter().filter(|p| p["productnumber"] == n.as_str()).collect();
        assert_eq!(p.len(), 1, "product {n} once in Sales");
        assert_eq!(
            p[0]["statecode"], 0,
            "product {n} published once, by whichever worker came first"
        );
        let i = items
            .iter()
            .filter(|i| i["_productid_value"] == p[0]["productid"])
            .count();
        assert_eq!(i, 1, "one price list item for {n}");
    }
}
