//! One service-protection budget for the whole deployment: many concurrent workers (Lambda instances) using one
//! application user stay inside Dataverse's per-user limit together, because every request comes out of one
//! counter in DynamoDB. Without it, each worker's own limiter is polite and together they are throttled.

use std::time::Duration;

use p2c_e2e::{Env, sqs_event};
use p2c_sandbox::{SandboxConfig, ServiceLimits};
use p2c_sync::{Deps, FlowName, Message, Reason, handle_sqs};

const FLOW: FlowName = FlowName::AccountsToFno;
const WORKERS: usize = 8;
const PER_WORKER: usize = 8;

/// Service protection of 60 requests per 3 s per user and service (Dataverse's rule, scaled down so the test is
/// short).
fn sandbox() -> SandboxConfig {
    SandboxConfig {
        limits: Some(ServiceLimits {
            requests_per_window: 60,
            window: Duration::from_secs(3),
            execution_per_window: Duration::from_secs(1000),
            max_concurrent: 52,
            retry_after_secs: 1,
        }),
        ..Default::default()
    }
}

/// Every worker syncs its accounts one SQS message at a time, all workers at once. Returns (requests, 429s).
async fn run_workers(env: &Env) -> (u64, u64) {
    let mut workers: Vec<Deps> = Vec::new();
    for _ in 0..WORKERS {
        workers.push(env.another_instance().await);
    }
    let ids: Vec<String> = env
        .sb
        .sales_rows("accounts")
        .iter()
        .map(|a| a["accountid"].as_str().unwrap().to_string())
        .collect();
    let jobs = workers
        .iter()
        .zip(ids.chunks(PER_WORKER))
        .map(|(deps, mine)| async move {
            for id in mine {
                let body = Message::new(FLOW.as_str(), "usmf", vec![id.clone()], Reason::Change).to_body();
                let resp = handle_sqs(deps, FLOW, sqs_event(&[body])).await;
                assert!(resp.batch_item_failures.is_empty());
            }
        });
    futures::future::join_all(jobs).await;
    let stats: Vec<_> = workers.iter().map(Deps::dynamics_stats).collect();
    let requests = stats.iter().map(|s| s.total()).sum();
    let throttled = stats.iter().map(|s| s.throttled).sum();
    (requests, throttled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_share_one_budget_and_are_not_throttled() {
    let env = Env::start_with(sandbox(), WORKERS * PER_WORKER, |c| {
        c.budget = Some((60, Duration::from_secs(3)));
    })
    .await;
    let (requests, throttled) = run_workers(&env).await;
    println!("shared budget: {requests} requests, {throttled} throttled");
    assert!(throttled * 100 < requests, "429s under 1 %: {throttled} of {requests}");
    assert_eq!(env.customers("usmf").len(), WORKERS * PER_WORKER, "every account, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_shared_budget_the_same_workers_are_throttled() {
    let env = Env::start_with(sandbox(), WORKERS * PER_WORKER, |c| c.budget = None).await;
    let (requests, throttled) = run_workers(&env).await;
    println!("per-process limits only: {requests} requests, {throttled} throttled");
    assert!(
        throttled * 100 >= requests,
        "the test can tell: {throttled} of {requests}"
    );
    assert_eq!(
        env.customers("usmf").len(),
        WORKERS * PER_WORKER,
        "retries still deliver every account"
    );
}
