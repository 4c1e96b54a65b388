//! The real `accounts-to-fno` binary, run the way Lambda runs it: a child process that pulls events from a Lambda
//! Runtime API (served here) and is configured only through the environment the SAM template gives it, with the
//! Entra client secret in Secrets Manager. Dynamics is the sandbox; DynamoDB, SQS and Secrets Manager are moto.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path as UrlPath, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use p2c_e2e::Env;
use p2c_sync::{FlowName, Message, Reason};
use serde_json::{Value, json};
use tokio::{
    process::{Child, Command},
    sync::{Mutex, Notify, mpsc, oneshot},
};

const FLOW: FlowName = FlowName::AccountsToFno;
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:accounts-to-fno";
/// Generous: a debug build on a busy 2-core machine, plus the sandbox and moto.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);

// ------------------------------------------------------------------------------------------ Runtime API

/// What the function posted back for one invocation.
#[derive(Debug)]
enum Outcome {
    Response(Value),
    Error(Value),
}

struct Invocation {
    id: String,
    payload: Value,
}

struct Shared {
    tx: mpsc::UnboundedSender<Invocation>,
    rx: Mutex<mpsc::UnboundedReceiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    /// When the function first asked for work: the end of its init phase.
    first_next: std::sync::Mutex<Option<Instant>>,
    next_seen: Notify,
    init_error: std::sync::Mutex<Option<String>>,
    ids: AtomicU64,
}

/// The four Runtime API routes a runtime uses (`/2018-06-01/runtime/...`), on 127.0.0.1 and a free port.
struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    async fn start() -> RuntimeApi {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            tx,
            rx: Mutex::new(rx),
            waiting: Mutex::default(),
            first_next: std::sync::Mutex::default(),
            next_seen: Notify::new(),
            init_error: std::sync::Mutex::default(),
            ids: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Runtime API");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("Runtime API serves");
        });
        RuntimeApi { addr, shared, server }
    }

    /// Hands `payload` to the function and waits for its response or error, failing fast if the process dies.
    async fn invoke(&self, f: &mut Function, payload: Value) -> Outcome {
        let id = format!("req-{}", self.shared.ids.fetch_add(1, Ordering::Relaxed) + 1);
        let (done_tx, done_rx) = oneshot::channel();
        self.shared.waiting.lock().await.insert(id.clone(), done_tx);
        self.shared
            .tx
            .send(Invocation {
                id: id.clone(),
                payload,
            })
            .expect("queue the invocation");
        tokio::select! {
            out = done_rx => out.expect("the Runtime API keeps the sender"),
            status = f.child.wait() => panic!("the function exited ({status:?}) during {id}\n{}", f.logs()),
            _ = tokio::time::sleep(INVOKE_TIMEOUT) => panic!("no answer to {id} within {INVOKE_TIMEOUT:?}\n{}", f.logs()),
        }
    }

    /// Waits until the function first asks for an event (its init is over) and returns when that was.
    async fn first_next(&self, f: &mut Function) -> Instant {
        loop {
            let seen = self.shared.next_seen.notified();
            if let Some(t) = *self.shared.first_next.lock().unwrap() {
                return t;
            }
            if let Some(e) = self.shared.init_error.lock().unwrap().clone() {
                panic!("init failed: {e}\n{}", f.logs());
            }
            tokio::select! {
                _ = seen => {}
                status = f.child.wait() => panic!("the function exited ({status:?}) during init\n{}", f.logs()),
                _ = tokio::time::sleep(INVOKE_TIMEOUT) => panic!("no /next within {INVOKE_TIMEOUT:?}\n{}", f.logs()),
            }
        }
    }

    fn init_error(&self) -> Option<String> {
        self.shared.init_error.lock().unwrap().clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    s.first_next.lock().unwrap().get_or_insert_with(Instant::now);
    s.next_seen.notify_one();
    // Long poll, as Lambda does: the request stays open until there is an event.
    let inv = s.rx.lock().await.recv().await.expect("the sender lives in Shared");
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 300_000;
    (
        [
            ("lambda-runtime-aws-request-id", inv.id),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            ("lambda-runtime-invoked-function-arn", FUNCTION_ARN.to_string()),
        ],
        Json(inv.payload),
    )
}

async fn response(State(s): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    finish(&s, &id, Outcome::Response(parse(&body))).await
}

async fn error(State(s): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    finish(&s, &id, Outcome::Error(parse(&body))).await
}

async fn init_error(State(s): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *s.init_error.lock().unwrap() = Some(String::from_utf8_lossy(&body).into_owned());
    s.next_seen.notify_one();
    StatusCode::ACCEPTED
}

async fn finish(s: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    match s.waiting.lock().await.remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        // Lambda answers a second response, or one for an unknown id, with an error.
        None => StatusCode::BAD_REQUEST,
    }
}

fn parse(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

// ------------------------------------------------------------------------------------------ the function

/// The binary as a child process; its stdout/stderr (JSON logs) go to a file shown when a test fails.
struct Function {
    child: Child,
    log: PathBuf,
}

impl Function {
    fn spawn(bin: &Path, api: &RuntimeApi, vars: &[(String, String)]) -> Function {
        let log = std::env::temp_dir().join(format!("p2c-{}-{}-{}.log", FLOW, std::process::id(), api.addr.port()));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            // Only what Lambda would set: nothing leaks in from the developer's shell.
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Function { child, log }
    }

    fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("--- function output ({}) ---\n{text}", self.log.display())
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The environment Lambda and the SAM template give the function (see infra/template.yaml).
async fn lambda_env(env: &Env, secret: Secret<'_>) -> Vec<(String, String)> {
    let c = env.sb.config();
    let pair = env.deps.queue_pair(FLOW).await.expect("queues");
    let mut vars: Vec<(&str, String)> = vec![
        ("AWS_LAMBDA_FUNCTION_NAME", FLOW.as_str().into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_ENDPOINT_URL", env.moto.endpoint.clone()),
        ("P2C_SALES_URL", env.sb.sales_url()),
        ("P2C_FNO_URL", env.sb.fno_url()),
        ("P2C_AUTHORITY_URL", env.sb.authority_url()),
        ("P2C_TENANT_ID", c.tenant.clone()),
        ("P2C_CLIENT_ID", c.client_id.clone()),
        ("P2C_TABLE", env.deps.cfg.table.clone()),
        ("P2C_QUEUE_URL", pair.queue_url),
        ("P2C_DLQ_URL", pair.dlq_url),
        // By business unit name, as an operator would configure it: the function looks the GUID up.
        ("P2C_COMPANIES", "usmf=usmf".into()),
    ];
    match secret {
        Secret::Arn(arn) => vars.push(("P2C_CLIENT_SECRET_ARN", arn.into())),
        Secret::Env => vars.push(("P2C_CLIENT_SECRET", c.client_secret.clone())),
    }
    vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

enum Secret<'a> {
    /// From Secrets Manager, as deployed.
    Arn(&'a str),
    /// From the environment, as in local runs.
    Env,
}

/// Stores the sandbox's client secret in moto's Secrets Manager in the JSON form the README documents.
async fn put_secret(env: &Env) -> String {
    let sm = aws_sdk_secretsmanager::Client::new(&env.aws);
    let value = json!({ "client_secret": env.sb.config().client_secret }).to_string();
    let out = sm
        .create_secret()
        .name(format!("{}/entra-client-secret", env.deps.cfg.table))
        .secret_string(value)
        .send()
        .await
        .expect("create the secret in moto");
    out.arn().expect("secret ARN").to_string()
}

/// An SQS event as Lambda's event source mapping delivers it.
fn sqs_event(queue_url: &str, messages: &[(&str, &str)]) -> Value {
    let queue = queue_url.rsplit('/').next().unwrap();
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id,
                "receiptHandle": format!("rh-{id}"),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1764100000000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1764100000001"
                },
                "messageAttributes": {},
                "md5OfBody": "00000000000000000000000000000000",
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{queue}"),
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

fn response_of(out: Outcome, f: &Function) -> Value {
    match out {
        Outcome::Response(v) => v,
        Outcome::Error(e) => panic!("the invocation failed: {e}\n{}", f.logs()),
    }
}

// ------------------------------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_run_then_sqs_batch_through_the_runtime_api() {
    let env = Env::start(5).await;
    let secret_arn = put_secret(&env).await;
    let vars = lambda_env(&env, Secret::Arn(&secret_arn)).await;
    let api = RuntimeApi::start().await;
    let mut f = Function::spawn(Path::new(env!("CARGO_BIN_EXE_accounts-to-fno")), &api, &vars);

    // 1. The schedule's Input, delivered as-is (EventBridge Scheduler does not wrap it).
    let out = api
        .invoke(&mut f, json!({"flow": "accounts-to-fno", "company": "usmf"}))
        .await;
    let out = response_of(out, &f);
    let runs = out["runs"].as_array().unwrap_or_else(|| panic!("no runs in {out}"));
    assert_eq!(runs.len(), 1, "{out}");
    let run = &runs[0];
    assert_eq!(
        (run["flow"].as_str(), run["company"].as_str()),
        (Some("accounts-to-fno"), Some("usmf")),
        "{run}"
    );
    assert_eq!(
        (run["read"].as_u64(), run["written"].as_u64(), run["failed"].as_u64()),
        (Some(5), Some(5), Some(0)),
        "{run}"
    );

    // ... and what it did: five customers in F&O, their links, the watermark and the run record in DynamoDB.
    let accounts = env.sb.sales_rows("accounts");
    let customers = env.customers("usmf");
    assert_eq!(customers.len(), 5);
    for a in &accounts {
        assert!(
            customers.iter().any(|c| c["CustomerAccount"] == a["accountnumber"]),
            "no customer for account {}",
            a["accountnumber"]
        );
    }
    let state = &env.deps.state;
    let links = state.scan_links("account", "usmf", None).await.expect("links");
    assert_eq!(links.len(), 5, "{links:?}");
    assert!(
        state
            .watermark(FLOW.as_str(), "usmf")
            .await
            .expect("watermark")
            .is_some()
    );
    let recorded = state.recent_runs(FLOW.as_str(), "usmf", 10).await.expect("runs");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!((recorded[0].written, recorded[0].failed), (5, 0));

    // 2. An SQS batch: a body that is not JSON, and a change to one account. Only the bad message fails.
    let account = &accounts[0];
    let id = account["accountid"].as_str().unwrap();
    env.sb
        .sales_update("accounts", id, json!({"name": "Renamed Through SQS"}));
    let hash_before = links
        .iter()
        .find(|l| l.source_key == id)
        .and_then(|l| l.target_hash.clone());
    let good = Message::new(FLOW.as_str(), "usmf", vec![id.to_string()], Reason::Change).to_body();
    let queue_url = env.deps.queue_pair(FLOW).await.expect("queues").queue_url;
    let event = sqs_event(&queue_url, &[("bad-1", "{not json"), ("good-1", &good)]);
    let out = response_of(api.invoke(&mut f, event).await, &f);
    assert_eq!(out, json!({"batchItemFailures": [{"itemIdentifier": "bad-1"}]}));

    let c = env
        .customers("usmf")
        .into_iter()
        .find(|c| c["CustomerAccount"] == account["accountnumber"])
        .expect("the customer");
    assert_eq!(c["OrganizationName"], "Renamed Through SQS");
    let links = state.scan_links("account", "usmf", None).await.expect("links");
    let hash_after = links
        .iter()
        .find(|l| l.source_key == id)
        .and_then(|l| l.target_hash.clone());
    assert!(
        hash_after.is_some() && hash_after != hash_before,
        "the link records the new content"
    );
    // The good record was written, not re-queued; the bad message is SQS's to redeliver, not ours to copy.
    let (queued, dead) = env.queued(FLOW).await;
    assert!(queued.is_empty() && dead.is_empty(), "queued {queued:?}, dead {dead:?}");

    // 3. An event for another flow: the runtime reports an invocation error and keeps serving.
    match api
        .invoke(&mut f, json!({"flow": "contacts-to-fno", "company": "usmf"}))
        .await
    {
        Outcome::Error(e) => {
            let msg = e["errorMessage"].as_str().unwrap_or_default();
            assert!(msg.contains("contacts-to-fno"), "{e}");
        }
        Outcome::Response(v) => panic!("expected an error, got {v}"),
    }
    assert!(
        f.child.try_wait().expect("wait").is_none(),
        "still running\n{}",
        f.logs()
    );
    assert_eq!(api.init_error(), None);
    f.stop().await;
}

/// Cold-start figure: process start to the first `/next` request, i.e. Lambda's init phase (config, the secret
/// from Secrets Manager, AWS and HTTP clients). Uses the release bootstrap that `infra/build` makes.
/// `cargo test -p accounts-to-fno --test runtime_api -- --ignored --nocapture`; `BOOTSTRAP_PATH`, `INIT_RUNS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a test: needs infra/build's release bootstrap"]
async fn init_time_of_release_bootstrap() {
    let bin = std::env::var_os("BOOTSTRAP_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/lambda/accounts-to-fno/bootstrap"));
    assert!(bin.exists(), "{} is missing: run infra/build first", bin.display());
    let runs: usize = std::env::var("INIT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let env = Env::start(0).await;
    let secret_arn = put_secret(&env).await;
    println!(
        "init time of {} over {runs} runs (process start to first /next):",
        bin.display()
    );
    for (label, secret) in [
        ("secret from Secrets Manager", Secret::Arn(&secret_arn)),
        ("secret in env", Secret::Env),
    ] {
        let vars = lambda_env(&env, secret).await;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let api = RuntimeApi::start().await;
            let started = Instant::now();
            let mut f = Function::spawn(&bin, &api, &vars);
            let ready = api.first_next(&mut f).await;
            times.push(ready - started);
            f.stop().await;
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {label:<28} min {:6.1} ms  median {:6.1} ms  max {:6.1} ms",
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
}
