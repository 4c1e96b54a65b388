//! One service-protection budget for the whole deployment: many concurrent workers (Lambda instances) using one
//! application user stay inside Dataverse's per-user limit together, because every request comes out of one
//! counter in DynamoDB. Without it, each worker's own limiter is polite and together they are throttled.

use std::time::Duration;

use p2c_e2e::{Env, sqs_event};
use p2c_sandbox::{SandboxConfig, ServiceLimits};
use p2c_sync::{Config, Deps, FlowName, Message, Reason, config::SecretSource, handle_sqs};

const FLOW: FlowName = FlowName::AccountsToFno;
const WORKERS: usize = 8;
const PER_WORKER: usize = 8;

const SECOND_USER: (&str, &str) = ("p2c-client-2", "second-secret");

/// Service protection of 60 requests per 3 s per user and service (Dataverse's rule, scaled down so the test is
/// short); a second application user is registered.
fn sandbox() -> SandboxConfig {
    SandboxConfig {
        more_clients: vec![(SECOND_USER.0.into(), SECOND_USER.1.into())],
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

/// p2c configured with both application users: two client ids, the secret a JSON object id → secret.
fn two_users(c: &mut Config) {
    let first = c.client_ids[0].clone();
    let secret = serde_json::json!({ first.clone(): "p2c-secret", SECOND_USER.0: SECOND_USER.1 });
    c.client_ids = vec![first, SECOND_USER.0.to_string()];
    c.client_secret = SecretSource::Value(p2c_dynamics::Secret::new(secret.to_string()));
}

/// The load of the tests above, 8 workers at once, with two application users each holding a budget of one user's
/// limit: they carry it together (each a share of every service's requests; Sales' total beyond what one user may
/// send in a window), and the sandbox, counting per user by the token's client id, throttles under 1 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_application_users_carry_a_load_beyond_one_users_budget() {
    let env = Env::start_with(sandbox(), WORKERS * PER_WORKER, |c| {
        two_users(c);
        c.budget = Some((60, Duration::from_secs(3)));
    })
    .await;
    run_workers(&env).await;
    let by = env.sb.requests_by_client();
    println!("two users: {by:?}");
    let (mut requests, mut throttled) = (0, 0);
    for service in ["sales", "fno"] {
        let count = |id: &str| by.get(&format!("{service} {id}")).copied().unwrap_or_default();
        let (a, b) = (count("p2c-client"), count(SECOND_USER.0));
        let total = a.requests + b.requests;
        for (id, c) in [("p2c-client", a), (SECOND_USER.0, b)] {
            assert!(
                c.requests * 5 >= total,
                "{service}: {id} carries a share: {c:?} of {total}"
            );
        }
        requests += total;
        throttled += a.throttled + b.throttled;
    }
    let sales = |id: &str| by.get(&format!("sales {id}")).map_or(0, |c| c.requests);
    let sales_total = sales("p2c-client") + sales(SECOND_USER.0);
    assert!(
        sales_total > 60,
        "beyond one user's 60 Sales requests per window: {sales_total}"
    );
    println!("two users: {requests} requests, {throttled} throttled (counted by the sandbox)");
    assert!(throttled * 100 < requests, "429s under 1 %: {throttled} of {requests}");
    assert_eq!(env.customers("usmf").len(), WORKERS * PER_WORKER, "every account, once");
}

/// Writes to Sales made as either user are p2c's own: the order F&O confirmed reaches Sales through a process
/// that runs as the second user only, and orders-to-fno (running as both) reads that change back and writes
/// nothing to F&O. p2c recognises its echoes by content (the mapped values equal F&O's), never by who wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_made_as_either_user_are_not_echoed_back() {
    let env = Env::start_with(sandbox(), 2, two_users).await;
    for f in [FlowName::ProductsToSales, FlowName::AccountsToFno] {
        assert_eq!(env.run(f).await.failed, 0, "{f}");
    }
    let story = env.sb.seed_story();
    let r = env.run(FlowName::OrdersToFno).await;
    assert_eq!((r.written, r.failed), (1, 0), "{r:?}");
    env.sb.fno_confirm_order("usmf", &story.order_number);

    let mut cfg = env.deps.cfg.clone();
    cfg.client_ids = vec![SECOND_USER.0.to_string()];
    let second = Deps::new(cfg, &env.aws).await.expect("deps");
    let sales_writes = |env: &Env| {
        let by = env.sb.requests_by_client();
        by.get(&format!("sales {}", SECOND_USER.0)).map_or(0, |c| c.writes)
    };
    let before = sales_writes(&env);
    let r = p2c_sync::run_flow(&second, FlowName::OrdersToSales, "usmf", &Default::default())
        .await
        .expect("orders-to-sales");
    assert_eq!(r.failed, 0, "{r:?}");
    assert!(r.written >= 1, "F&O's confirmation reaches Sales: {r:?}");
    assert!(sales_writes(&env) > before, "written as the second user");

    let fno_writes = |env: &Env| -> u64 {
        env.sb
            .requests_by_client()
            .iter()
            .filter(|(k, _)| k.starts_with("fno "))
            .map(|(_, c)| c.writes)
            .sum()
    };
    let before = fno_writes(&env);
    let r = env.run(FlowName::OrdersToFno).await;
    assert!(r.read >= 1, "the Sales write comes back through change tracking: {r:?}");
    assert_eq!((r.written, r.failed), (0, 0), "and stops there: {r:?}");
    assert_eq!(fno_writes(&env), before, "nothing was sent to F&O");
}
