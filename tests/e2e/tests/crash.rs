//! Crash safety of a scheduled run: killed after the target write, or after the links, or with an expired delta
//! link, the next run loses nothing and duplicates nothing.

use std::time::Duration;

use p2c_e2e::Env;
use p2c_sandbox::SandboxConfig;
use p2c_sync::{FlowName, RunOptions, SyncError, faults::CrashPoint, run_flow};
use serde_json::json;

const FLOW: FlowName = FlowName::AccountsToFno;

async fn env(n: usize) -> Env {
    Env::start_with(SandboxConfig::default(), n, |c| c.lease_ttl = Duration::from_secs(1)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_target_write_then_rerun_duplicates_nothing() {
    let env = env(120).await;
    env.deps.crashes.arm(CrashPoint::AfterTargetWrite, 1);
    let err = run_flow(&env.deps, FLOW, "usmf", &RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, SyncError::SimulatedCrash(CrashPoint::AfterTargetWrite)),
        "{err}"
    );
    // The writes happened, the links did not: the worst place to die.
    assert_eq!(env.customers("usmf").len(), 120);
    let ids: Vec<String> = env
        .sb
        .sales_rows("accounts")
        .iter()
        .map(|a| a["accountid"].as_str().unwrap().to_string())
        .collect();
    assert!(
        env.deps
            .state
            .get_links("account", "usmf", "sales", &ids)
            .await
            .unwrap()
            .is_empty()
    );

    // The dead run's lease expires; the next run finds every customer by its key and creates none.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = run_flow(&env.deps, FLOW, "usmf", &RunOptions::default()).await.unwrap();
    assert_eq!(
        (r.read, r.created, r.updated, r.failed),
        (120, 0, 120, 0),
        "{:?}",
        r.errors
    );
    assert_eq!(env.customers("usmf").len(), 120);
    assert_eq!(
        env.deps
            .state
            .get_links("account", "usmf", "sales", &ids)
            .await
            .unwrap()
            .len(),
        120
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_watermark_then_rerun_rewrites_nothing() {
    let env = env(60).await;
    run_flow(&env.deps, FLOW, "usmf", &RunOptions::default()).await.unwrap();
    let wm = env.deps.state.watermark(FLOW.as_str(), "usmf").await.unwrap().unwrap();
    for a in env.sb.sales_rows("accounts").iter().take(5) {
        env.sb.sales_update(
            "accounts",
            a["accountid"].as_str().unwrap(),
            json!({"address1_line1": "1 Crash Street"}),
        );
    }
    env.deps.crashes.arm(CrashPoint::BeforeWatermark, 1);
    assert!(run_flow(&env.deps, FLOW, "usmf", &RunOptions::default()).await.is_err());
    assert_eq!(
        env.deps
            .state
            .watermark(FLOW.as_str(), "usmf")
            .await
            .unwrap()
            .unwrap()
            .version,
        wm.version
    );
    assert_eq!(
        env.customers("usmf")
            .iter()
            .filter(|c| c["AddressStreet"] == "1 Crash Street")
            .count(),
        5
    );

    // The next run re-reads the same five changes; their links already say they were written.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    env.sb.reset_counters();
    let r = run_flow(&env.deps, FLOW, "usmf", &RunOptions::default()).await.unwrap();
    assert_eq!((r.read, r.written, r.skipped), (5, 0, 5));
    assert_eq!(env.sb.requests().get("fno POST $batch"), None);
    assert_eq!(env.customers("usmf").len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_delta_link_falls_back_to_a_full_read_without_duplicates() {
    let env = env(80).await;
    run_flow(&env.deps, FLOW, "usmf", &RunOptions::default()).await.unwrap();
    let changed = env.sb.sales_rows("accounts")[7]["accountid"]
        .as_str()
        .unwrap()
        .to_string();
    env.sb
        .sales_update("accounts", &changed, json!({"name": "After Expiry AS"}));
    env.sb.expire_delta_tokens();
    let r = run_flow(&env.deps, FLOW, "usmf", &RunOptions::default()).await.unwrap();
    assert!(r.full_resync);
    assert_eq!((r.read, r.written, r.skipped, r.failed), (80, 1, 79, 0));
    assert_eq!(env.customers("usmf").len(), 80);
    assert_eq!(
        env.customers("usmf")
            .iter()
            .filter(|c| c["OrganizationName"] == "After Expiry AS")
            .count(),
        1
    );
    // And the fresh delta link works again.
    let r = run_flow(&env.deps, FLOW, "usmf", &RunOptions::default()).await.unwrap();
    assert_eq!((r.read, r.full_resync), (0, false));
}
