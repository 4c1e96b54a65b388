//! Third-party Dataverse clients, unmodified, against the sandbox: Microsoft's Python `PowerPlatform-Dataverse-Client`
//! and the `dynamics-web-api` npm package (pinned and installed by `scripts/ensure-compat` under
//! `${P2C_COMPAT_DIR:-target/compat}`). Each client runs its script in `tests/sandbox/compat/` against its own
//! sandbox over HTTPS (the Python client refuses plain HTTP, as do azure-identity and MSAL) and reports one line per
//! operation; the test prints the table and requires every operation to pass. A client that is not installed is
//! skipped with a message saying so (no registry access); nothing else skips.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use p2c_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

const PYTHON_OPS: &[&str] = &[
    "create",
    "retrieve",
    "update",
    "list with paging",
    "filter with apostrophe",
    "upsert (alternate key)",
    "CreateMultiple",
    "UpdateMultiple",
    "UpsertMultiple",
    "batch change set",
    "metadata (EntityDefinitions)",
    "delete",
];

const NODE_OPS: &[&str] = &[
    "create",
    "retrieve",
    "update",
    "list with paging",
    "filter with apostrophe",
    "upsert (alternate key)",
    "CreateMultiple",
    "UpdateMultiple",
    "UpsertMultiple",
    "batch change set",
    "$batch rollback",
    "metadata (EntityDefinitions)",
    "delete",
];

fn compat_dir() -> PathBuf {
    match std::env::var_os("P2C_COMPAT_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/compat"),
    }
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("compat")
}

struct Run {
    client: &'static str,
    /// op -> (ok, detail)
    ops: BTreeMap<String, (bool, String)>,
    status: Option<i32>,
    stderr: String,
    secs: f64,
}

async fn run_client(client: &'static str, mut cmd: tokio::process::Command, ca: &Path, sb: &Sandbox) -> Run {
    let c = sb.config();
    let authority = sb.authority_url();
    cmd.env("SALES_URL", sb.sales_url())
        .env("AUTHORITY_HOST", authority.trim_start_matches("https://"))
        .env("TOKEN_URL", format!("{authority}/{}/oauth2/v2.0/token", c.tenant))
        .env("TENANT_ID", &c.tenant)
        .env("CLIENT_ID", &c.client_id)
        .env("CLIENT_SECRET", &c.client_secret)
        .env("REQUESTS_CA_BUNDLE", ca)
        .env("SSL_CERT_FILE", ca)
        .env("NODE_EXTRA_CA_CERTS", ca)
        // Nothing from the developer's environment may redirect the clients elsewhere.
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("AZURE_AUTHORITY_HOST")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let out = match cmd.spawn() {
        Ok(child) => tokio::time::timeout(Duration::from_secs(90), child.wait_with_output()).await,
        Err(e) => panic!("{client}: cannot start its script: {e}"),
    };
    let secs = started.elapsed().as_secs_f64();
    let Ok(Ok(out)) = out else {
        panic!("{client}: the script did not finish within 90 s");
    };
    let mut ops = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(j) = line.strip_prefix("COMPAT ") else {
            continue;
        };
        let v: Value = serde_json::from_str(j).unwrap_or_else(|e| panic!("{client}: bad report line {line}: {e}"));
        ops.insert(
            v["op"].as_str().unwrap_or("?").to_string(),
            (
                v["ok"].as_bool().unwrap_or(false),
                v["detail"].as_str().unwrap_or("").to_string(),
            ),
        );
    }
    Run {
        client,
        ops,
        status: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        secs,
    }
}

async fn tls_sandbox() -> Sandbox {
    let sb = Sandbox::start(SandboxConfig {
        tls: true,
        ..Default::default()
    })
    .await
    .expect("sandbox starts");
    // The demo data `p2c sandbox` serves.
    sb.seed_demo(10);
    sb
}

fn write_ca(sb: &Sandbox, name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, sb.tls_ca_pem().expect("a TLS sandbox has a CA")).expect("write the CA file");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_clients_work_unmodified() {
    let dir = compat_dir();
    let python = dir.join("venv/bin/python");
    let node_modules = dir.join("node/node_modules");
    let have_python = python.exists();
    let have_node = node_modules.join("dynamics-web-api/package.json").exists()
        && std::process::Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let mut skipped = Vec::new();
    if !have_python {
        skipped.push(format!(
            "python powerplatform-dataverse-client: not installed in {} (run scripts/ensure-compat; it needs PyPI)",
            python.display()
        ));
    }
    if !have_node {
        skipped.push(format!(
            "node dynamics-web-api: not installed in {} or no node (run scripts/ensure-compat; it needs npm)",
            node_modules.display()
        ));
    }
    for s in &skipped {
        println!("SKIPPED {s}");
        eprintln!("SKIPPED {s}");
    }

    // One sandbox per client: they run side by side without seeing each other's rows.
    let mut runs = Vec::new();
    let py = async {
        if !have_python {
            return None;
        }
        let sb = tls_sandbox().await;
        let ca = write_ca(&sb, "compat-ca-python.pem");
        let mut cmd = tokio::process::Command::new(&python);
        cmd.arg("-W")
            .arg("ignore::DeprecationWarning")
            .arg(scripts().join("dataverse_client.py"));
        Some(run_client("python powerplatform-dataverse-client", cmd, &ca, &sb).await)
    };
    let js = async {
        if !have_node {
            return None;
        }
        let sb = tls_sandbox().await;
        let ca = write_ca(&sb, "compat-ca-node.pem");
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(scripts().join("dynamics_web_api.js"))
            .env("NODE_PATH", &node_modules);
        Some(run_client("node dynamics-web-api", cmd, &ca, &sb).await)
    };
    let (a, b) = tokio::join!(py, js);
    runs.extend(a);
    runs.extend(b);

    // The per-operation table (also left in the target's tmp dir for scripts/test to print).
    let mut table = String::from("| client | operation | result | detail |\n|---|---|---|---|\n");
    let mut failures = Vec::new();
    for r in &runs {
        let expected = if r.client.starts_with("python") {
            PYTHON_OPS
        } else {
            NODE_OPS
        };
        for op in expected {
            let (res, detail) = match r.ops.get(*op) {
                Some((true, d)) => ("pass", d.clone()),
                Some((false, d)) => {
                    failures.push(format!("{}: {op}: {d}", r.client));
                    ("FAIL", d.clone())
                }
                None => {
                    failures.push(format!("{}: {op}: not reported", r.client));
                    ("FAIL", "not reported".to_string())
                }
            };
            table.push_str(&format!(
                "| {} | {op} | {res} | {} |\n",
                r.client,
                detail.replace('|', "/")
            ));
        }
        for op in r.ops.keys().filter(|o| !expected.contains(&o.as_str())) {
            failures.push(format!("{}: unexpected operation {op}", r.client));
        }
        if r.status != Some(0) {
            failures.push(format!("{}: script exited with {:?}", r.client, r.status));
        }
        table.push_str(&format!("| {} | (script) | {:.1} s | |\n", r.client, r.secs));
    }
    for s in &skipped {
        table.push_str(&format!("| {s} | | skipped | |\n"));
    }
    println!("{table}");
    let _ = std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("compat-table.txt"), &table);
    if !failures.is_empty() {
        for r in &runs {
            eprintln!("--- {} stderr ---\n{}", r.client, r.stderr);
        }
        panic!("compat failures:\n{}", failures.join("\n"));
    }
}
