//! A real DynamoDB/SQS API on loopback: `moto_server` on a free port, for tests and for `p2c demo`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::StateError;

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const INSTALL_HINT: &str =
    "install it with `pip install \"moto[server]==5.2.5\"` and make sure `moto_server` is on PATH";

/// A running `moto_server`; the process is killed when this value is dropped.
#[derive(Debug)]
pub struct LocalAws {
    /// Base URL, e.g. `http://127.0.0.1:40123`; pass it to [`aws_config`].
    pub endpoint: String,
    child: Child,
    log_path: PathBuf,
}

impl LocalAws {
    /// Start `moto_server` on a free loopback port and wait (up to ~20 s) until it answers.
    pub async fn start() -> Result<LocalAws, StateError> {
        // `moto_server` first; `python3 -m moto.server` covers installs whose script dir is not on PATH.
        let candidates: [(&str, &[&str]); 2] = [("moto_server", &[]), ("python3", &["-m", "moto.server"])];
        let mut failures = Vec::new();
        for (program, pre_args) in candidates {
            // A port picked free can be taken before moto binds it; a couple of fresh ports cover that race.
            for _ in 0..3 {
                let port = free_port()?;
                let log_path = std::env::temp_dir().join(format!(
                    "p2c-moto-{}-{port}-{}.log",
                    std::process::id(),
                    unique_suffix()
                ));
                let log = std::fs::File::create(&log_path)
                    .map_err(|e| StateError::Local(format!("cannot create log file {}: {e}", log_path.display())))?;
                let log_err = log
                    .try_clone()
                    .map_err(|e| StateError::Local(format!("cannot open log file {}: {e}", log_path.display())))?;
                let spawned = Command::new(program)
                    .args(pre_args)
                    .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .stdin(Stdio::null())
                    .stdout(log)
                    .stderr(log_err)
                    .spawn();
                let child = match spawned {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = std::fs::remove_file(&log_path);
                        failures.push(format!("`{program}` could not be started: {e}"));
                        break; // try the next candidate
                    }
                };
                let mut local = LocalAws {
                    endpoint: format!("http://127.0.0.1:{port}"),
                    child,
                    log_path,
                };
                match local.wait_ready(port).await {
                    Ok(()) => {
                        tracing::debug!(endpoint = %local.endpoint, "moto_server ready");
                        return Ok(local);
                    }
                    Err(ReadyFailure::Exited(log_tail)) => {
                        let port_taken = log_tail.contains("Address already in use");
                        failures.push(format!("`{program}` exited: {}", log_tail.trim()));
                        drop(local);
                        if port_taken {
                            continue;
                        }
                        break;
                    }
                    Err(ReadyFailure::Timeout) => {
                        return Err(StateError::Timeout {
                            what: format!("moto_server on port {port} to answer GET /moto-api/"),
                            secs: READY_TIMEOUT.as_secs(),
                            action: "the machine may be overloaded; check that moto_server starts by hand",
                        });
                    }
                }
            }
        }
        Err(StateError::Local(format!(
            "could not start moto_server ({}); {INSTALL_HINT}",
            failures.join("; ")
        )))
    }

    /// The SDK configuration pointing at this emulator (see [`aws_config`]).
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config(Some(&self.endpoint)).await
    }

    /// Where moto's stdout/stderr go (deleted on drop).
    pub fn log_path(&self) -> &std::path::Path {
        &self.log_path
    }

    async fn wait_ready(&mut self, port: u16) -> Result<(), ReadyFailure> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(_status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join(" | ");
                return Err(ReadyFailure::Exited(tail));
            }
            if probe(port).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ReadyFailure::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for LocalAws {
    fn drop(&mut self) {
        // Kill and reap so tests never leave emulators behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

enum ReadyFailure {
    Exited(String),
    Timeout,
}

/// SDK configuration for p2c.
///
/// `Some(endpoint)`: a local emulator — that endpoint, static test credentials, region `us-east-1` unless
/// `AWS_REGION` is set. `None`: the SDK's default chain (which itself honours `AWS_ENDPOINT_URL`,
/// `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SQS`, `AWS_REGION`, profiles and the Lambda role).
pub async fn aws_config(endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint).test_credentials();
        // Setting a region explicitly also keeps the SDK from probing IMDS for one.
        if std::env::var("AWS_REGION").map(|r| r.trim().is_empty()).unwrap_or(true) {
            loader = loader.region(Region::new("us-east-1"));
        }
    }
    loader.load().await
}

fn free_port() -> Result<u16, StateError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| StateError::Local(format!("cannot bind a loopback port to find a free one: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| StateError::Local(format!("cannot read the bound loopback port: {e}")))?
        .port();
    Ok(port)
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// One plain HTTP/1.0 GET; avoids pulling an HTTP client into this crate just for a health check.
async fn probe(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream
            .write_all(format!("GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.ok()?;
        let head = String::from_utf8_lossy(&buf[..n]);
        Some(head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(true))
    )
}
