//! A scheduled run that cannot finish before its Lambda deadline stops cleanly after a committed page: its
//! position is saved, its lease released, its run recorded as interrupted (not an error), and the next
//! invocation finishes the work — nothing lost, nothing written twice — for a full read and an incremental one.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use p2c_e2e::Env;
use p2c_sandbox::SandboxConfig;
use p2c_sync::{FlowName, Invocation, handle_invocation};
use serde_json::{Value, json};

const FLOW: FlowName = FlowName::AccountsToFno;

/// One scheduled invocation whose deadline has already come: it does one page, then stops.
async fn invoke_past_deadline(env: &Env) -> Value {
    let inv = Invocation {
        request_id: Some("req-deadline".into()),
        deadline: Some(Instant::now()),
    };
    let event = json!({"flow": FLOW.as_str(), "company": "usmf"});
    let out = handle_invocation(&env.deps, FLOW, event, &inv)
        .await
        .expect("not an error");
    out["runs"][0].clone()
}

fn distinct_customers(env: &Env) -> usize {
    let rows = env.customers("usmf");
    let keys: HashSet<String> = rows.iter().map(|c| c["CustomerAccount"].to_string()).collect();
    assert_eq!(keys.len(), rows.len(), "a customer is there twice");
    rows.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_deadline_stops_cleanly_and_the_next_one_finishes_full_and_incremental() {
    let env = Env::start_with(SandboxConfig::default(), 300, |c| {
        c.page_size = 50;
        c.deadline_margin = Duration::ZERO;
    })
    .await;

    // Full read: one page of 50, then a clean stop.
    let r = invoke_past_deadline(&env).await;
    assert_eq!(
        (r["interrupted"].as_bool(), r["read"].as_u64()),
        (Some(true), Some(50)),
        "{r}"
    );
    assert_eq!(distinct_customers(&env), 50);
    let runs = env.deps.state.recent_runs(FLOW.as_str(), "usmf", 1).await.unwrap();
    assert!(runs[0].interrupted && runs[0].first_errors.is_empty(), "{:?}", runs[0]);
    assert_eq!(runs[0].request_id.as_deref(), Some("req-deadline"));
    // The lease is free: the next run goes at once and continues after the committed page.
    let r = env.run(FLOW).await;
    assert!(r.resumed && !r.interrupted, "{r:?}");
    assert_eq!((r.read, r.written), (250, 250));
    assert_eq!(distinct_customers(&env), 300);

    // Incremental read: 120 accounts renamed; a run past its deadline takes one page of the changes.
    let accounts = env.sb.sales_rows("accounts");
    for a in accounts.iter().take(120) {
        let name = format!("{} (renamed)", a["name"].as_str().unwrap());
        env.sb
            .sales_update("accounts", a["accountid"].as_str().unwrap(), json!({"name": name}));
    }
    let r = invoke_past_deadline(&env).await;
    assert_eq!(
        (r["interrupted"].as_bool(), r["written"].as_u64()),
        (Some(true), Some(50)),
        "{r}"
    );
    let next = env.deps.state.watermark("accounts-to-fno.next", "usmf").await.unwrap();
    assert!(next.is_some(), "the incremental read's position is saved");
    let r = env.run(FLOW).await;
    assert!(r.resumed, "{r:?}");
    assert_eq!(r.written, 70, "the rest of the changes, none twice: {r:?}");
    let renamed = env
        .customers("usmf")
        .iter()
        .filter(|c| c["OrganizationName"].as_str().is_some_and(|n| n.ends_with("(renamed)")))
        .count();
    assert_eq!((renamed, distinct_customers(&env)), (120, 300));
    assert!(
        env.deps
            .state
            .watermark("accounts-to-fno.next", "usmf")
            .await
            .unwrap()
            .is_none()
    );
    // And the run after that has nothing to do.
    let r = env.run(FLOW).await;
    assert_eq!((r.read, r.written, r.resumed), (0, 0, false), "{r:?}");
}
