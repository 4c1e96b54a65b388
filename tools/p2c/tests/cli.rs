//! The `p2c` binary against the sandbox and moto: each command's JSON output and its effect.

use std::process::Command;

use p2c_e2e::Env;
use p2c_sync::{FlowName, Message, Reason};
use serde_json::Value;

fn p2c(env: &Env, args: &[&str]) -> (i32, Value) {
    let c = env.sb.config();
    let cfg = &env.deps.cfg;
    let out = Command::new(env!("CARGO_BIN_EXE_p2c"))
        .args(args)
        .arg("--json")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", &env.moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("P2C_SALES_URL", env.sb.sales_url())
        .env("P2C_FNO_URL", env.sb.fno_url())
        .env("P2C_AUTHORITY_URL", env.sb.authority_url())
        .env("P2C_TENANT_ID", &c.tenant)
        .env("P2C_CLIENT_ID", &c.client_id)
        .env("P2C_CLIENT_SECRET", &c.client_secret)
        .env("P2C_TABLE", &cfg.table)
        .env("P2C_QUEUE_PREFIX", &cfg.queue_prefix)
        .env("P2C_COMPANIES", "usmf=usmf")
        .output()
        .expect("p2c runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("p2c {args:?} printed no JSON ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().unwrap_or(-1), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_run_status_links_replay_drain() {
    let env = Env::start(30).await;

    // init is idempotent and names every flow's queues.
    for _ in 0..2 {
        let (code, v) = p2c(&env, &["init"]);
        assert_eq!(code, 0);
        assert_eq!(v["queues"].as_array().unwrap().len(), FlowName::ALL.len());
    }

    let (code, v) = p2c(&env, &["run", "accounts-to-fno", "--company", "usmf"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["runs"][0]["written"], 30);
    assert_eq!(env.customers("usmf").len(), 30);

    let (_, v) = p2c(&env, &["status", "accounts-to-fno"]);
    let row = &v["flows"][0];
    assert_eq!(row["flow"], "accounts-to-fno");
    assert!(row["watermark"]["lag_seconds"].as_i64().unwrap() < 60);
    assert_eq!(row["runs"][0]["written"], 30);
    assert_eq!(row["queues"]["dlq"], 0);

    let account = &env.sb.sales_rows("accounts")[0];
    let id = account["accountid"].as_str().unwrap();
    let (code, v) = p2c(&env, &["links", "account", id]);
    assert_eq!(code, 0);
    assert_eq!(v["link"]["target_key"], account["accountnumber"]);
    assert_eq!(v["history"].as_array().unwrap().len(), 1);

    // A dead-lettered message: dry run moves nothing, replay moves it, drain processes it.
    env.sb.sales_update("accounts", id, serde_json::json!({"name": "Replayed Co"}));
    let pair = env.deps.queue_pair(FlowName::AccountsToFno).await.unwrap();
    let body = Message::new("accounts-to-fno", "usmf", vec![id.to_string()], Reason::Retry).to_body();
    env.deps.queues.send(&pair.dlq_url, &[body]).await.unwrap();
    let (_, v) = p2c(&env, &["replay", "accounts-to-fno", "--dry-run"]);
    assert_eq!((v["moved"].as_u64(), v["dry_run"].as_bool()), (Some(1), Some(true)));
    let (_, v) = p2c(&env, &["status", "accounts-to-fno"]);
    assert_eq!(v["flows"][0]["queues"]["dlq"], 1, "a dry run leaves the DLQ as it was");
    let (_, v) = p2c(&env, &["replay", "accounts-to-fno"]);
    assert_eq!(v["moved"], 1);
    let (code, v) = p2c(&env, &["drain", "accounts-to-fno"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["runs"][0]["written"], 1);
    let c = env.customers("usmf").into_iter().find(|c| c["CustomerAccount"] == account["accountnumber"]).unwrap();
    assert_eq!(c["OrganizationName"], "Replayed Co");
    let (_, v) = p2c(&env, &["status", "accounts-to-fno"]);
    assert_eq!((v["flows"][0]["queues"]["dlq"].as_u64(), v["flows"][0]["queues"]["queue_visible"].as_u64()), (Some(0), Some(0)));

    // A flow that does not exist is refused with a reason, not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_p2c")).args(["run", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown flow"));
}
