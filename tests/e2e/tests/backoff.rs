//! Retries back off: a record that failed transiently comes back after a delay that doubles per attempt (with
//! jitter), so its attempts span P2C_RETRY_WINDOW_SECONDS; a retry due later than SQS's 900 s delay is delayed
//! again without spending an attempt. Delays are SQS's own (moto), read back from the queue.

use std::time::{Duration, Instant};

use p2c_e2e::{Env, sqs_event};
use p2c_sandbox::SandboxConfig;
use p2c_sync::{FlowName, Message, Reason, handle_sqs};
use serde_json::Value;

const CONTACTS: FlowName = FlowName::ContactsToFno;

/// Waits for the flow's queue to show a message; returns it and how long it took to become visible.
async fn first_visible(env: &Env, flow: FlowName, limit: Duration) -> Option<(Message, Duration)> {
    let pair = env.deps.queue_pair(flow).await.unwrap();
    let started = Instant::now();
    while started.elapsed() < limit {
        let got = env.deps.queues.receive(&pair.queue_url, 10, 1).await.unwrap();
        if let Some(m) = got.first() {
            let handles: Vec<String> = got.iter().map(|m| m.receipt_handle.clone()).collect();
            env.deps.queues.delete(&pair.queue_url, &handles).await.unwrap();
            return Some((Message::parse(Some(&m.body)).unwrap(), started.elapsed()));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_comes_back_after_its_backoff_not_at_once() {
    // 5 attempts over 30 s: retries after 2, 4, 8 and 16 s (± 20 %).
    let env = Env::start_with(SandboxConfig::default(), 2, |c| {
        c.retry_window = Duration::from_secs(30);
        c.max_attempts = 5;
    })
    .await;
    // A contact person whose account is not in F&O yet: transient, it waits for accounts-to-fno.
    let persons: Vec<String> = env
        .sb
        .sales_rows("contacts")
        .iter()
        .filter(|c| c["msdynce_iscompanyanaccount"] == true && c["msdynce_isactivecustomer"] != true)
        .map(|c: &Value| c["contactid"].as_str().unwrap().to_ascii_lowercase())
        .collect();
    let r = env.run(CONTACTS).await;
    assert!(
        persons
            .iter()
            .all(|id| r.errors.iter().any(|e| &e.id == id && e.transient)),
        "{r:?}"
    );
    assert!(r.retry_queued >= 1, "{r:?}");

    let pair = env.deps.queue_pair(CONTACTS).await.unwrap();
    let now = env.deps.queues.receive(&pair.queue_url, 10, 0).await.unwrap();
    assert!(now.is_empty(), "not visible at once: {now:?}");
    let (m, after) = first_visible(&env, CONTACTS, Duration::from_secs(10))
        .await
        .expect("it comes back");
    assert_eq!(m.attempt, 2);
    assert!(
        after >= Duration::from_millis(1000),
        "first retry after about 2 s: {after:?}"
    );
    assert!(persons.contains(&m.keys[0]), "{m:?}");

    // Its second failure waits about twice as long (4 s ± 20 %).
    let resp = handle_sqs(&env.deps, CONTACTS, sqs_event(&[m.to_body()])).await;
    assert!(resp.batch_item_failures.is_empty());
    let (m, after) = first_visible(&env, CONTACTS, Duration::from_secs(12))
        .await
        .expect("it comes back");
    assert_eq!(m.attempt, 3);
    assert!(
        after >= Duration::from_millis(2500),
        "second retry after about 4 s: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_not_due_yet_is_delayed_again_without_spending_an_attempt() {
    let env = Env::start(2).await;
    let account = &env.sb.sales_rows("accounts")[0];
    let mut m = Message::new(
        FlowName::AccountsToFno.as_str(),
        "usmf",
        vec![account["accountid"].as_str().unwrap().to_string()],
        Reason::Retry,
    );
    m.attempt = 3;
    let due = p2c_sync::pipeline::failures::unix_now() + 2_000;
    m.not_before = Some(due);
    let resp = handle_sqs(&env.deps, FlowName::AccountsToFno, sqs_event(&[m.to_body()])).await;
    assert!(resp.batch_item_failures.is_empty(), "the message is not a failure");
    assert!(env.customers("usmf").is_empty(), "nothing was synced before its time");
    // Back in the queue, delayed (SQS's longest delay, 900 s), not visible and not dead-lettered.
    let (queued, dead) = env.queued(FlowName::AccountsToFno).await;
    assert!(
        queued.is_empty() && dead.is_empty(),
        "delayed, so not visible: {queued:?} {dead:?}"
    );
    let pair = env.deps.queue_pair(FlowName::AccountsToFno).await.unwrap();
    let attrs = aws_sdk_sqs::Client::new(&env.aws)
        .get_queue_attributes()
        .queue_url(&pair.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    let delayed = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed))
        .cloned();
    assert_eq!(delayed.as_deref(), Some("1"), "the message waits in the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_batch_is_a_run_in_the_history() {
    let env = Env::start(3).await;
    let ids: Vec<String> = env
        .sb
        .sales_rows("accounts")
        .iter()
        .map(|a| a["accountid"].as_str().unwrap().to_string())
        .collect();
    let body = Message::new(FlowName::AccountsToFno.as_str(), "usmf", ids, Reason::Change).to_body();
    let resp = handle_sqs(&env.deps, FlowName::AccountsToFno, sqs_event(&[body])).await;
    assert!(resp.batch_item_failures.is_empty());
    let runs = env.deps.state.recent_runs("accounts-to-fno", "usmf", 5).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!((runs[0].trigger.as_str(), runs[0].read, runs[0].written), ("sqs", 3, 3));
    assert_eq!(env.customers("usmf").len(), 3);
}
