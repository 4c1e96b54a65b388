//! Running the `p2c` binary against a test environment (sandbox + moto), as an operator would.
#![allow(dead_code)]

use std::process::Command;

use p2c_e2e::Env;
use serde_json::Value;

pub fn p2c(env: &Env, args: &[&str]) -> (i32, Value) {
    p2c_with(env, args, &[])
}

pub fn p2c_with(env: &Env, args: &[&str], extra: &[(&str, &str)]) -> (i32, Value) {
    let out = p2c_raw(env, args, extra);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "p2c {args:?} printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

pub fn p2c_raw(env: &Env, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
    p2c_cmd(env, args, extra).output().expect("p2c runs")
}

pub fn p2c_cmd(env: &Env, args: &[&str], extra: &[(&str, &str)]) -> Command {
    let c = env.sb.config();
    let cfg = &env.deps.cfg;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2c"));
    cmd.args(args)
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
        .envs(extra.iter().copied());
    cmd
}
