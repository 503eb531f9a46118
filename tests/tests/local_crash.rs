//! A crashed function on the local AWS loop (`chorus local up`): the worker's runtime process is
//! SIGKILLed while it holds a step's message, and the stack recovers as AWS would — the runtime
//! is replaced, the message comes back after the visibility timeout and its run finishes, and a
//! run submitted after the crash finishes too. Before the supervisor existed, `cargo lambda
//! watch` left the function dead and every later run `queued` for good.
//!
//! It disturbs the worker every other stack test uses, so `infra/local/test.sh` runs it on its
//! own, after them. It needs the running stack, so a plain `cargo test` ignores it; run without
//! the stack, it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use chorus::ports::{SigningSecrets, Tenant};
use chorus::webhooks::WebhookSecret;
use chorus_local_aws::runtimes::function_pids;
use chorus_tests::aws::emulator;
use chorus_tests::poll;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const DEFAULT_URL: &str = "http://127.0.0.1:9000/lambda-url/intake";
/// The steps queue as `chorus local up` names it.
const STEPS_QUEUE: &str = "chorus-steps-queue";
/// Well under the worker's 120 s Timeout, the invocation deadline: recovery must not wait for it.
const RECOVERY: Duration = Duration::from_secs(60);

/// The checkout whose stack `chorus local up` started (`make test` runs it from here).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The intake API with a tenant of this test's own.
struct Api {
    url: String,
    http: reqwest::Client,
    key: SecretString,
}

impl Api {
    async fn new() -> Self {
        let emulator = emulator().await;
        let url = std::env::var("CHORUS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let http = chorus::tls::http_client().timeout(Duration::from_secs(30)).build().unwrap();
        let health = http.get(format!("{url}/healthz")).send().await;
        assert!(
            health.is_ok_and(|response| response.status().is_success()),
            "the local loop does not answer at {url}: start it with `chorus local up` (make test does)"
        );
        let tenant = chorus::domain::TenantId::parse(&format!("crash{:016x}", fastrand::u64(..))).unwrap();
        let key = SecretString::from(format!("ck_{:032x}", fastrand::u128(..)));
        let secret = WebhookSecret::generate();
        emulator
            .signing_secrets()
            .register(&Tenant::new(tenant), &SigningSecrets::new(secret.to_whsec()), &key)
            .await
            .unwrap();
        Self { url, http, key }
    }

    /// Submits a one-step run and returns its id.
    async fn submit(&self, word: &str) -> String {
        let workflow = json!({"steps": [
            {"id": "echo", "task": "generate", "model": "local:echo", "prompt": "{{ input.word }}"}
        ]});
        let response = self
            .http
            .post(format!("{}/v1/runs", self.url))
            .header("x-api-key", self.key.expose_secret())
            .json(&json!({"workflow": workflow, "input": {"word": word}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let accepted: Value = response.json().await.unwrap();
        accepted["id"].as_str().unwrap().to_owned()
    }

    async fn status(&self, run: &str) -> String {
        let response = self
            .http
            .get(format!("{}/v1/runs/{run}", self.url))
            .header("x-api-key", self.key.expose_secret())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET run {run}");
        let view: Value = response.json().await.unwrap();
        view["status"].as_str().unwrap().to_owned()
    }

    async fn wait_until_succeeded(&self, run: &str, within: Duration) {
        poll::until(&format!("run {run} succeeds"), within, Duration::from_millis(250), || async move {
            match self.status(run).await.as_str() {
                "succeeded" => Ok(()),
                other @ ("failed" | "cancelled") => panic!("run {run} ended {other}"),
                other => Err(format!("still {other}")),
            }
        })
        .await;
    }
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// SIGKILLs the process when dropped, so a failing test never leaves the worker stopped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
    }
}

/// Messages of the steps queue received and not yet deleted or back.
async fn steps_in_flight(sqs: &aws_sdk_sqs::Client) -> usize {
    let url = sqs.get_queue_url().queue_name(STEPS_QUEUE).send().await.unwrap().queue_url.unwrap();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    attributes
        .get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn a_killed_worker_is_replaced_and_its_message_and_new_runs_still_finish() {
    let api = Api::new().await;
    let sqs = aws_sdk_sqs::Client::new(&emulator().await.config);
    // `up` starts the worker; a run makes sure it runs (and that the stack works before the crash).
    let warm = api.submit("before").await;
    api.wait_until_succeeded(&warm, RECOVERY).await;
    let pids = function_pids(&repo(), "worker");
    let [pid] = pids[..] else { panic!("one worker runtime should run, found {pids:?}") };

    // Stopped first, so the next step message is certainly held by this runtime when it dies:
    // the bridge invokes the worker, `cargo lambda watch` hands the event to the stopped process.
    signal(pid, "STOP");
    let guard = KillOnDrop(pid);
    let in_flight = api.submit("in flight").await;
    poll::until("the bridge takes the step message", RECOVERY, Duration::from_millis(100), || async {
        let count = steps_in_flight(&sqs).await;
        if count > 0 { Ok(()) } else { Err(format!("{count} in flight")) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(pid, "KILL");
    drop(guard);

    let replaced = poll::until("a new worker runtime runs", RECOVERY, Duration::from_millis(200), || async {
        let now = function_pids(&repo(), "worker");
        if now.is_empty() || now.contains(&pid) { Err(format!("{now:?}")) } else { Ok(now) }
    })
    .await;
    assert!(!replaced.contains(&pid));

    let after = api.submit("after").await;
    api.wait_until_succeeded(&after, RECOVERY).await;
    // Its message came back after the visibility timeout and the new runtime ran it.
    api.wait_until_succeeded(&in_flight, RECOVERY).await;
}
