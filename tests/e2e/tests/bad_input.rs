//! Bad input gets a clear error naming the record or message, loses nothing and fails nobody else: a token
//! endpoint answering garbage, bodies that are not p2c messages, values of the wrong type, keys with quotes and
//! unicode, and a panic inside one run or one batch.

use std::time::Duration;

use p2c_e2e::{Env, sqs_event};
use p2c_sync::{FlowName, Message, Reason, RunOptions, SyncError, faults::CrashPoint, handle_sqs, run_flow};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FLOW: FlowName = FlowName::AccountsToFno;

/// A token endpoint that answers every request with `response` (raw HTTP).
async fn garbage_authority(response: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(response.as_bytes()).await;
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_answering_garbage_is_a_clear_permanent_error() {
    let env = Env::start(3).await;
    for (answer, expect) in [
        (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\nnot json!",
            "not a token response",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            "not a token response",
        ),
        (
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 13\r\n\r\n<html></html>",
            "unreadable answer",
        ),
    ] {
        let mut cfg = env.deps.cfg.clone();
        cfg.authority_url = garbage_authority(answer).await;
        let deps = p2c_sync::Deps::new(cfg, &env.aws).await.unwrap();
        let e = run_flow(&deps, FLOW, "usmf", &RunOptions::default()).await.unwrap_err();
        assert!(e.to_string().contains(expect), "{e}");
        assert!(e.to_string().contains("P2C_CLIENT_ID"), "says what to check: {e}");
        assert!(!e.is_transient(), "{e}");
    }
    assert!(env.customers("usmf").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_fail_alone_and_bad_values_are_dead_lettered_with_their_reason() {
    let env = Env::start(6).await;
    let bu = env.sb.business_unit_id("usmf").unwrap();
    // Keys with quotes, ampersands and unicode are synced as they are (no $filter injection).
    let tricky = env.sb.sales_insert(
        "accounts",
        json!({"name": "O'Brien & Søn", "accountnumber": "O'BRIEN-Ø#1", "_owningbusinessunit_value": bu}),
    );
    // Values F&O cannot take never reach it: a name longer than OrganizationName allows.
    let bad_amount = env.sb.sales_insert(
        "accounts",
        json!({"name": "N".repeat(120), "accountnumber": "BAD-AMOUNT", "_owningbusinessunit_value": bu}),
    );
    let r = run_flow(&env.deps, FLOW, "usmf", &RunOptions::default()).await.unwrap();
    assert!(r.balanced());
    assert_eq!((r.written, r.failed), (7, 1), "{:?}", r.errors);
    assert_eq!(r.errors[0].id, bad_amount);
    assert!(
        r.errors[0].reason.contains("BAD-AMOUNT") && r.errors[0].reason.contains("OrganizationName"),
        "{}",
        r.errors[0].reason
    );
    let c = env
        .customers("usmf")
        .into_iter()
        .find(|c| c["CustomerAccount"] == "O'BRIEN-Ø#1")
        .unwrap();
    assert_eq!(c["OrganizationName"], "O'Brien & Søn");

    // SQS: a lone surrogate, a key that is not an id, an unknown company, an empty body, an oversized body
    // and a good message. Only the bad messages fail; the good one is written.
    env.sb.sales_update("accounts", &tricky, json!({"telephone1": "+47 1"}));
    let good = Message::new(FLOW.as_str(), "usmf", vec![tricky.clone()], Reason::Change).to_body();
    let bodies = vec![
        r#"{"v":1,"flow":"accounts-to-fno","company":"usmf","keys":["\ud800"],"reason":"change"}"#.to_string(),
        r#"{"v":1,"flow":"accounts-to-fno","company":"zzzz","keys":["a"],"reason":"change"}"#.to_string(),
        String::new(),
        format!(
            r#"{{"v":1,"flow":"accounts-to-fno","company":"usmf","keys":["{}"],"reason":"change"}}"#,
            "x".repeat(70_000)
        ),
        good,
    ];
    let resp = handle_sqs(&env.deps, FLOW, sqs_event(&bodies)).await;
    let failed: Vec<&str> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m0", "m1", "m2", "m3"]);
    let c = env
        .customers("usmf")
        .into_iter()
        .find(|c| c["CustomerAccount"] == "O'BRIEN-Ø#1")
        .unwrap();
    assert_eq!(c["PrimaryContactPhone"], "+47 1");
    // A well-formed message whose key is not a Sales id is dead-lettered with that reason, not retried forever.
    let not_an_id = Message::new(FLOW.as_str(), "usmf", vec!["x' or 1 eq 1".into()], Reason::Replay).to_body();
    let resp = handle_sqs(&env.deps, FLOW, sqs_event(&[not_an_id])).await;
    assert!(resp.batch_item_failures.is_empty());
    let (_, dead) = env.queued(FLOW).await;
    let reasons: Vec<Value> = dead.iter().map(|d| serde_json::from_str::<Value>(d).unwrap()).collect();
    assert!(
        reasons
            .iter()
            .any(|m| m["last_error"].as_str().unwrap_or("").contains("BAD-AMOUNT"))
    );
    assert_eq!(
        reasons.len(),
        1,
        "the not-an-id key cannot be queued by id: it is reported, not re-queued: {reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_its_run_or_its_messages_and_nothing_else() {
    let env = Env::start_with(Default::default(), 20, |c| c.lease_ttl = Duration::from_secs(60)).await;
    env.deps.crashes.arm(CrashPoint::PanicAfterTargetWrite, 1);
    let e = run_flow(&env.deps, FLOW, "usmf", &RunOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(&e, SyncError::Panic(m) if m.contains("injected panic")), "{e}");
    // The lease was released and the run recorded with its error, so the next run goes at once.
    assert!(
        env.deps
            .state
            .lease_holder(FLOW.as_str(), "usmf")
            .await
            .unwrap()
            .is_none()
    );
    let runs = env.deps.state.recent_runs(FLOW.as_str(), "usmf", 5).await.unwrap();
    assert!(
        runs[0].first_errors[0].contains("injected panic"),
        "{:?}",
        runs[0].first_errors
    );
    let r = run_flow(&env.deps, FLOW, "usmf", &RunOptions::default()).await.unwrap();
    assert_eq!((r.read, r.failed), (20, 0));
    assert_eq!(env.customers("usmf").len(), 20);

    // In an SQS batch the panic fails the messages it was processing; the batch response still comes back.
    let id = env.sb.sales_rows("accounts")[0]["accountid"]
        .as_str()
        .unwrap()
        .to_string();
    env.sb.sales_update("accounts", &id, json!({"name": "After Panic"}));
    env.deps.crashes.arm(CrashPoint::PanicAfterTargetWrite, 1);
    let body = Message::new(FLOW.as_str(), "usmf", vec![id], Reason::Change).to_body();
    let resp = handle_sqs(&env.deps, FLOW, sqs_event(&[body.clone(), "garbage".into()])).await;
    let mut failed: Vec<&str> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        ["m0", "m1"],
        "the panicking message and the garbage fail; SQS redelivers them"
    );
    let resp = handle_sqs(&env.deps, FLOW, sqs_event(&[body])).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(
        env.customers("usmf")
            .iter()
            .filter(|c| c["OrganizationName"] == "After Panic")
            .count(),
        1
    );
}

/// A flow whose Sales table has change tracking off stops with an error that names the table and what to do (not
/// Dataverse's bare 400), records it on the run, needs an operator (no retry), and writes nothing to F&O.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_change_tracking_stops_its_flow_saying_what_to_turn_on() {
    let cfg = p2c_sandbox::SandboxConfig {
        change_tracking_off: vec!["accounts".into()],
        ..Default::default()
    };
    let env = Env::start_with(cfg, 5, |_| {}).await;
    let e = run_flow(&env.deps, FLOW, "usmf", &RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SyncError::ChangeTrackingOff { table } if table == "accounts"),
        "{e}"
    );
    assert!(!e.is_transient(), "retrying cannot help");
    let text = e.to_string();
    assert!(
        text.contains("Sales table accounts has change tracking off") && text.contains("\"Track changes\""),
        "{text}"
    );
    let runs = env.deps.state.recent_runs(FLOW.as_str(), "usmf", 5).await.unwrap();
    assert!(
        runs[0].first_errors[0].contains("Sales table accounts has change tracking off"),
        "{:?}",
        runs[0].first_errors
    );
    assert!(env.customers("usmf").is_empty());
    let fno_writes: u64 = env
        .sb
        .requests()
        .iter()
        .filter(|(k, _)| k.starts_with("fno ") && !k.starts_with("fno GET"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(fno_writes, 0);
}
