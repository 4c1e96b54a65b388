//! The real `events` binary, run the way Lambda runs it: a child process pulling Function URL requests from a
//! Lambda Runtime API served here, configured only through the environment the SAM template gives it (its key in
//! Secrets Manager, each flow's queue URL). SQS and Secrets Manager are moto.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex as StdMutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use p2c_state::{LocalAws, Queues};
use serde_json::{Value, json};
use tokio::{
    process::Child,
    sync::{Mutex, Notify, mpsc, oneshot},
};

const KEY: &str = "runtime-events-key-0123456789";

struct Api {
    rx: Mutex<mpsc::UnboundedReceiver<(String, Value)>>,
    done: StdMutex<Vec<(String, oneshot::Sender<Value>)>>,
    /// When the function first asked for work: the end of its init phase.
    first_next: StdMutex<Option<Instant>>,
    next_seen: Notify,
}

async fn next(State(api): State<Arc<Api>>) -> impl IntoResponse {
    api.first_next.lock().unwrap().get_or_insert_with(Instant::now);
    api.next_seen.notify_waiters();
    let (id, payload) = api.rx.lock().await.recv().await.expect("an invocation");
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 60_000;
    (
        [
            ("lambda-runtime-aws-request-id", id),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:p2c-events".to_string(),
            ),
        ],
        Json(payload),
    )
}

async fn finish(State(api): State<Arc<Api>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or(json!({"raw": String::from_utf8_lossy(&body)}));
    let mut done = api.done.lock().unwrap();
    if let Some(i) = done.iter().position(|(d, _)| *d == id) {
        let (_, tx) = done.remove(i);
        let _ = tx.send(v);
    }
    StatusCode::ACCEPTED
}

/// A Function URL request (payload format 2.0).
fn url_event(path: &str, query: &str, headers: Value, body: &str) -> Value {
    json!({
        "version": "2.0", "rawPath": path, "rawQueryString": query, "headers": headers,
        "requestContext": {"accountId": "123456789012", "requestId": "r", "domainName": "x.lambda-url.us-east-1.on.aws",
                           "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1"},
                           "timeEpoch": 0},
        "body": body, "isBase64Encoded": false
    })
}

/// The four Runtime API routes on a free port: its address, its state, and the sender of invocations.
async fn start_api() -> (SocketAddr, Arc<Api>, mpsc::UnboundedSender<(String, Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let api = Arc::new(Api {
        rx: Mutex::new(rx),
        done: StdMutex::default(),
        first_next: StdMutex::default(),
        next_seen: Notify::new(),
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(finish))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(finish))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, api, tx)
}

/// The binary with the environment the SAM template gives it (and nothing else).
fn spawn_events(bin: &std::path::Path, api: SocketAddr, aws: &str, secret_arn: &str, queue_url: &str) -> Child {
    tokio::process::Command::new(bin)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "p2c-events")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_ENDPOINT_URL", aws)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("P2C_COMPANIES", "usmf=usmf")
        .env("P2C_EVENTS_SECRET_ARN", secret_arn)
        .env("P2C_EVENT_QUEUES", format!("accounts-to-fno={queue_url}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the events binary starts")
}

async fn put_key(sm: &aws_sdk_secretsmanager::Client) -> String {
    sm.create_secret()
        .name("p2c/events-key")
        .secret_string(KEY)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_answers_function_url_requests_and_queues_events() {
    let moto = LocalAws::start().await.expect("moto_server starts");
    let aws = p2c_state::aws_config(Some(&moto.endpoint)).await;
    let queues = Queues::new(aws_sdk_sqs::Client::new(&aws), "rt-");
    let pair = queues.ensure("accounts-to-fno", 3, 30).await.unwrap();
    let secret_arn = put_key(&aws_sdk_secretsmanager::Client::new(&aws)).await;

    let (addr, api, tx) = start_api().await;
    let mut child = spawn_events(
        &PathBuf::from(env!("CARGO_BIN_EXE_events")),
        addr,
        &moto.endpoint,
        &secret_arn,
        &pair.queue_url,
    );

    let invoke = async |i: usize, event: Value| -> Value {
        let (done_tx, done_rx) = oneshot::channel();
        let id = format!("req-{i}");
        api.done.lock().unwrap().push((id.clone(), done_tx));
        tx.send((id, event)).unwrap();
        tokio::time::timeout(Duration::from_secs(60), done_rx)
            .await
            .expect("an answer")
            .expect("a response")
    };
    let account = "6d81597f-0f9f-e711-8122-000d3aa2331c";
    let hook = json!({"MessageName": "Update", "PrimaryEntityName": "account", "PrimaryEntityId": account}).to_string();
    let ok = invoke(
        1,
        url_event(
            "/dataverse",
            "",
            json!({"x-p2c-webhook-key": KEY, "content-type": "application/json"}),
            &hook,
        ),
    )
    .await;
    assert_eq!(ok["statusCode"], 202, "{ok}");
    let body: Value = serde_json::from_str(ok["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["status"], "accepted");
    let refused = invoke(2, url_event("/dataverse", "code=nope", json!({}), &hook)).await;
    assert_eq!(refused["statusCode"], 401);
    let got = queues.receive(&pair.queue_url, 10, 1).await.unwrap();
    assert_eq!(got.len(), 1, "only the accepted call queued");
    let m: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(
        m,
        json!({"v": 1, "flow": "accounts-to-fno", "company": "usmf", "keys": [account], "reason": "event", "attempt": 1})
    );

    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // One metric line per call: the alarm on refused calls reads `Rejected` by FunctionName.
    let emf: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert!(
        emf.iter()
            .any(|v| v["Accepted"] == 1 && v["Enqueued"] == 1 && v["FunctionName"] == "p2c-events"),
        "{stdout}"
    );
    assert!(emf.iter().any(|v| v["Rejected"] == 1), "{stdout}");
    assert!(
        !stdout.contains(KEY) && !String::from_utf8_lossy(&out.stderr).contains(KEY),
        "the key never reaches the logs"
    );
}

/// Cold-start figure: process start to the first `/next` request (Lambda's init phase: configuration, the key from
/// Secrets Manager, the SQS client). Like accounts-to-fno's, on a release build:
/// `cargo build --release -p events && BOOTSTRAP_PATH=target/release/events cargo test -p events --test runtime_api -- --ignored --nocapture`
/// (or infra/build's `target/lambda/events/bootstrap`, the default); `INIT_RUNS` (20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a test: needs a release build of the binary"]
async fn init_time_of_release_bootstrap() {
    let bin = std::env::var_os("BOOTSTRAP_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/lambda/events/bootstrap"));
    assert!(bin.exists(), "{} is missing: build it first", bin.display());
    let runs: usize = std::env::var("INIT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let moto = LocalAws::start().await.expect("moto_server starts");
    let aws = p2c_state::aws_config(Some(&moto.endpoint)).await;
    let pair = Queues::new(aws_sdk_sqs::Client::new(&aws), "init-")
        .ensure("accounts-to-fno", 3, 30)
        .await
        .unwrap();
    let secret_arn = put_key(&aws_sdk_secretsmanager::Client::new(&aws)).await;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (addr, api, _tx) = start_api().await;
        let seen = api.next_seen.notified();
        let started = Instant::now();
        let mut child = spawn_events(&bin, addr, &moto.endpoint, &secret_arn, &pair.queue_url);
        tokio::time::timeout(Duration::from_secs(30), seen)
            .await
            .expect("the first /next");
        let ready = api.first_next.lock().unwrap().expect("recorded");
        times.push(ready - started);
        child.kill().await.unwrap();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "init time of {} over {runs} runs (process start to first /next, key from Secrets Manager): \
         min {:.1} ms  median {:.1} ms  max {:.1} ms",
        bin.display(),
        ms(times[0]),
        ms(times[runs / 2]),
        ms(times[runs - 1])
    );
}
