//! `chorus dev` as a child process for end-to-end tests, and an API client that drives runs
//! over HTTP. The binary is this package's own: Cargo builds it before these tests and names
//! it in `CARGO_BIN_EXE_chorus`.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::StatusCode;
use chorus_tests::poll;
use serde_json::{Value, json};

pub const TENANT_KEY: &str = "t1:secret-key";
pub const API_KEY: &str = "secret-key";
/// The Standard Webhooks reference secret: any valid `whsec_` works, a known one keeps the
/// tests self-explanatory.
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);
pub const POLL_EVERY: Duration = Duration::from_millis(50);
pub const APPROVER: &str = "e2e-test";

/// The `chorus dev` child process, killed when dropped so a failing test leaves nothing
/// behind. Its log goes to a file that is printed if the test fails.
pub struct DevServer {
    pub child: Child,
    base: String,
    log: PathBuf,
}

impl DevServer {
    /// Starts `chorus dev` with `env` added to this process's environment.
    pub fn start(env: &[(&str, String)]) -> Self {
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_chorus"));
        let addr = free_port();
        let log = std::env::temp_dir().join(format!("chorus-dev-{}.log", addr.port()));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(&binary)
            .args(["dev", "--addr", &addr.to_string(), "--api-key", TENANT_KEY, "--webhook-secret", WEBHOOK_SECRET])
            .env("CHORUS_LOG", "info")
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        Self { child, base: format!("http://{addr}"), log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits for `/healthz`, failing early if the process died.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
        poll::until("chorus dev answers /healthz", STARTUP_TIMEOUT, POLL_EVERY, || {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("chorus dev exited during start-up with {status}");
            }
            let health = http.get(self.url("/healthz")).send();
            async move {
                match health.await {
                    Ok(response) if response.status() == StatusCode::OK => Ok(()),
                    Ok(response) => Err(format!("/healthz answered {}", response.status())),
                    Err(err) => Err(err.to_string()),
                }
            }
        })
        .await;
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        // Already exited after a graceful stop: both calls are harmless then.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("----- chorus dev log ({}) -----\n{log}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A port nothing listens on right now; the OS hands out a fresh one each time, so the
/// window before the server binds it is harmless in practice.
fn free_port() -> SocketAddr {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Calls the API of a [`DevServer`] with the test tenant's key.
pub struct Api {
    pub http: reqwest::Client,
    pub server: DevServer,
}

impl Api {
    /// Starts `chorus dev` with `env` and waits until it answers.
    pub async fn start(env: &[(&str, String)]) -> Self {
        let http = chorus::tls::http_client().timeout(Duration::from_secs(10)).build().unwrap();
        let mut server = DevServer::start(env);
        server.wait_ready(&http).await;
        Self { http, server }
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http.post(self.server.url(path)).bearer_auth(API_KEY).json(body).send().await.unwrap()
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http.put(self.server.url(path)).bearer_auth(API_KEY).json(body).send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self.http.get(self.server.url(path)).bearer_auth(API_KEY).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }

    /// Submits an example with its notification sent to `hook`; returns the run id.
    pub async fn submit(&self, name: &str, mut body: Value, hook: &str) -> String {
        body["notify"] = json!({ "url": hook });
        let response = self.post("/v1/runs", &body).await;
        let status = response.status();
        let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        let accepted: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {accepted:#}");
        let id = accepted["id"].as_str().unwrap().to_owned();
        assert_eq!(location.as_deref(), Some(format!("/v1/runs/{id}").as_str()), "{name}: Location");
        id
    }

    /// Polls the run until it ends, approving every step that waits for approval.
    pub async fn run_to_end(&self, name: &str, id: &str) -> Value {
        poll::until(&format!("{name}: run {id} ends"), RUN_TIMEOUT, POLL_EVERY, || async move {
            let run = self.get(&format!("/v1/runs/{id}")).await;
            if let "succeeded" | "failed" | "cancelled" = run["status"].as_str().unwrap() {
                return Ok(run);
            }
            for step in run["steps"].as_array().unwrap() {
                if step["status"] == "waiting_approval" {
                    let step_id = step["id"].as_str().unwrap();
                    let decision = json!({ "by": APPROVER, "comment": "ship it" });
                    let response = self.post(&format!("/v1/runs/{id}/steps/{step_id}/approve"), &decision).await;
                    assert_eq!(response.status(), StatusCode::OK, "{name}: approving {step_id}");
                }
            }
            Err(format!("{run:#}"))
        })
        .await
    }
}
