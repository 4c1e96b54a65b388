//! Secrets and tokens never reach the logs: a full run, including a refused token, an auth failure and
//! per-record errors, logged at TRACE level, is searched for the client secret and every issued token.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use p2c_e2e::Env;
use p2c_sync::{FlowName, RunOptions, run_flow};
use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_logs_neither_the_secret_nor_a_token() {
    let logs = Capture::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let env = Env::start(40).await;
    let bu = env.sb.business_unit_id("usmf").unwrap();
    // A per-record error: a country the country table does not know.
    env.sb.sales_insert(
        "accounts",
        json!({"name": "Nowhere Ltd", "accountnumber": "ACC-NOWHERE", "address1_country": "Atlantis", "_owningbusinessunit_value": bu}),
    );
    let r = run_flow(&env.deps, FlowName::AccountsToFno, "usmf", &RunOptions::default())
        .await
        .unwrap();
    assert_eq!((r.written, r.failed), (40, 1));
    env.sb.expire_all_tokens();
    for a in env.sb.sales_rows("accounts").iter().take(3) {
        env.sb
            .sales_update("accounts", a["accountid"].as_str().unwrap(), json!({"fax": "1"}));
    }
    let r = run_flow(&env.deps, FlowName::AccountsToFno, "usmf", &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(r.written, 3);
    // A client with a wrong secret: the error and its logs must not echo it either.
    let mut bad = env.deps.cfg.clone();
    bad.client_secret = p2c_sync::config::SecretSource::Value(p2c_dynamics::Secret::new("wrong-secret-5f1e"));
    let bad_deps = p2c_sync::Deps::new(bad, &env.aws).await.unwrap();
    let e = run_flow(&bad_deps, FlowName::AccountsToFno, "usmf", &RunOptions::default())
        .await
        .unwrap_err();
    assert!(!e.to_string().contains("wrong-secret-5f1e"));

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.len() > 1000, "TRACE logs were captured ({} bytes)", text.len());
    let secret = &env.sb.config().client_secret;
    assert!(!text.contains(secret.as_str()), "the client secret is in the logs");
    assert!(!text.contains("wrong-secret-5f1e"));
    let tokens = env.sb.issued_tokens();
    assert!(tokens.len() >= 4, "tokens were issued and refreshed: {}", tokens.len());
    for t in tokens {
        assert!(!text.contains(&t), "a token is in the logs");
        assert!(!text.contains(&t[..t.len().min(40)]), "a token prefix is in the logs");
    }
}
