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
        panic!(
            "p2c {args:?} printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
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
    env.sb
        .sales_update("accounts", id, serde_json::json!({"name": "Replayed Co"}));
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
    let c = env
        .customers("usmf")
        .into_iter()
        .find(|c| c["CustomerAccount"] == account["accountnumber"])
        .unwrap();
    assert_eq!(c["OrganizationName"], "Replayed Co");
    let (_, v) = p2c(&env, &["status", "accounts-to-fno"]);
    assert_eq!(
        (
            v["flows"][0]["queues"]["dlq"].as_u64(),
            v["flows"][0]["queues"]["queue_visible"].as_u64()
        ),
        (Some(0), Some(0))
    );

    // A flow that does not exist is refused with a reason, not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_p2c"))
        .args(["run", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown flow"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_shows_field_changes_and_writes_nothing() {
    let env = Env::start(12).await;
    let writes = |env: &Env| env.sb.requests().iter().filter(|(k, _)| !k.contains(" GET ") && !k.starts_with("token")).map(|(_, v)| *v).sum::<u64>();

    // A first dry run plans a create per account and leaves both systems and the table untouched.
    let (code, v) = p2c(&env, &["run", "accounts-to-fno", "--dry-run"]);
    assert_eq!(code, 0, "{v}");
    let planned = v["planned"].as_array().unwrap();
    assert_eq!(planned.len(), 12);
    assert!(planned.iter().all(|p| p["action"] == "create"));
    assert_eq!(writes(&env), 0, "{:?}", env.sb.requests());
    assert!(env.customers("usmf").is_empty());
    assert!(env.deps.state.watermark("accounts-to-fno", "usmf").await.unwrap().is_none());
    assert!(env.deps.state.recent_runs("accounts-to-fno", "usmf", 5).await.unwrap().is_empty());

    // After a real run, a dry run shows exactly the changed fields of the changed accounts.
    let (_, v) = p2c(&env, &["run", "accounts-to-fno"]);
    assert_eq!(v["runs"][0]["written"], 12);
    let wm = env.deps.state.watermark("accounts-to-fno", "usmf").await.unwrap().unwrap();
    let accounts = env.sb.sales_rows("accounts");
    for a in accounts.iter().take(2) {
        env.sb.sales_update("accounts", a["accountid"].as_str().unwrap(), serde_json::json!({"address1_city": "Tromsø"}));
    }
    env.sb.reset_counters();
    let (_, v) = p2c(&env, &["run", "accounts-to-fno", "--dry-run"]);
    let planned = v["planned"].as_array().unwrap();
    assert_eq!(planned.len(), 2, "{planned:?}");
    for p in planned {
        assert_eq!(p["action"], "update");
        let changes = p["changes"].as_array().unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0]["field"], "AddressCity");
        assert_eq!(changes[0]["new"], "Tromsø");
        assert_ne!(changes[0]["old"], "Tromsø");
    }
    assert_eq!(writes(&env), 0);
    assert!(env.customers("usmf").iter().all(|c| c["AddressCity"] != "Tromsø"));
    let after = env.deps.state.watermark("accounts-to-fno", "usmf").await.unwrap().unwrap();
    assert_eq!(after.version, wm.version, "the watermark did not move");
    assert_eq!(env.deps.state.recent_runs("accounts-to-fno", "usmf", 5).await.unwrap().len(), 1);

    // The real run then writes those two.
    let (_, v) = p2c(&env, &["run", "accounts-to-fno"]);
    assert_eq!(v["runs"][0]["written"], 2);
}
