//! End to end on the local AWS loop that `make test` starts with `chorus local up`: the four
//! functions under `cargo lambda watch`, SQS → Lambda through the bridge, DynamoDB, SQS and
//! S3 on the emulator. Workflows go in over HTTP to the intake function; final state is read
//! back through DynamoDB; notifications arrive signed at a receiver in the test.
//!
//! `CHORUS_URL` names the intake function's base URL (default: `chorus local up`'s). The tests
//! need the running stack, so they are ignored by a plain `cargo test`; `make test` runs them
//! on each emulator. Run without it, they fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chorus::adapters::{DynamoRunStore, S3BlobStore};
use chorus::domain::{ErrorKind, EventKind, Run, RunId, RunStatus, StepState, StepStatus, TenantId};
use chorus::ports::{ItemOutputs, RunStore, SigningSecrets, StepMessage, Tenant};
use chorus::startup::s3_client;
use chorus::webhooks::WebhookSecret;
use chorus_tests::aws::{Emulator, emulator};
use chorus_tests::poll;
use chorus_tests::webhook_receiver::{Delivery, start_receiver};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

const DEFAULT_URL: &str = "http://127.0.0.1:9000/lambda-url/intake";
/// The steps queue as `chorus local up` names it.
const STEPS_QUEUE: &str = "chorus-steps-queue";
/// Long enough for a message to fail `maxReceiveCount` (5) times with `up`'s short
/// visibility timeout and reach the notifier through the dead-letter queue.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The running stack, seen by one test with a tenant of its own.
struct Stack {
    api: String,
    http: reqwest::Client,
    key: SecretString,
    secret: WebhookSecret,
    /// The secret the tenant is rotating away from: notifications are signed with both.
    previous: WebhookSecret,
    emulator: Emulator,
    store: DynamoRunStore,
    hook: String,
    deliveries: UnboundedReceiver<Delivery>,
}

/// The stack; fails the test when it is not running.
async fn stack() -> Stack {
    let emulator = emulator().await;
    let api = std::env::var("CHORUS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let http = chorus::tls::http_client().timeout(Duration::from_secs(60)).build().unwrap();
    let health = http.get(format!("{api}/healthz")).send().await;
    assert!(
        health.is_ok_and(|response| response.status().is_success()),
        "the local loop does not answer at {api}: start it with `chorus local up` (make test does)"
    );

    let dynamodb = aws_sdk_dynamodb::Client::new(&emulator.config);
    let tenant = TenantId::parse(&format!("e2e{:016x}", fastrand::u64(..))).unwrap();
    let key = SecretString::from(format!("ck_{:032x}", fastrand::u128(..)));
    let (secret, previous) = (WebhookSecret::generate(), WebhookSecret::generate());
    // Registered mid-rotation, through the sealed store the notifier opens.
    let secrets = SigningSecrets::new(previous.to_whsec()).rotate(secret.to_whsec());
    emulator.signing_secrets().register(&Tenant::new(tenant), &secrets, &key).await.unwrap();
    let blobs = Arc::new(S3BlobStore::new(s3_client(&emulator.config), &emulator.bucket));
    let store = DynamoRunStore::new(dynamodb, &emulator.table, blobs, Duration::from_secs(3600));
    let (hook, deliveries) = start_receiver().await;
    Stack { api, http, key, secret, previous, emulator, store, hook, deliveries }
}

impl Stack {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.api))
            .header("x-api-key", self.key.expose_secret())
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Registers `workflow` under `name` through the API; returns its version.
    async fn register(&self, name: &str, workflow: &Value) -> u64 {
        let response = self
            .http
            .put(format!("{}/v1/workflows/{name}", self.api))
            .header("x-api-key", self.key.expose_secret())
            .json(&json!({ "workflow": workflow }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "PUT /v1/workflows/{name}: {}", response.status());
        response.json::<Value>().await.unwrap()["version"].as_u64().unwrap()
    }

    /// Submits `workflow` with `input`, to be notified at this test's receiver.
    async fn submit(&self, workflow: Value, input: Value) -> RunId {
        let body = json!({"workflow": workflow, "input": input, "notify": {"url": self.hook}});
        let (status, accepted) = self.post("/v1/runs", &body).await;
        assert_eq!(status, 202, "{accepted:#}");
        RunId::parse(accepted["id"].as_str().unwrap()).unwrap()
    }

    /// Polls the API until the run reaches `status` (or ends otherwise), then returns it as
    /// stored in DynamoDB, with its steps.
    async fn wait_for(&self, run_id: &RunId, status: &str) -> (Run, Vec<StepState>) {
        self.wait_within(run_id, status, RUN_TIMEOUT).await
    }

    /// [`Self::wait_for`] with a time limit of its own.
    async fn wait_within(&self, run_id: &RunId, status: &str, limit: Duration) -> (Run, Vec<StepState>) {
        let what = format!("run {run_id} reaches {status}");
        poll::until(&what, limit, Duration::from_millis(250), || async move {
            let response = self.http.get(format!("{}/v1/runs/{run_id}", self.api));
            let response = response.header("x-api-key", self.key.expose_secret()).send().await.unwrap();
            // 503 while a step's item cannot be read (the poison test spoils one on purpose).
            if response.status() == 503 {
                return Err("503: a step's item cannot be read".to_owned());
            }
            // The API never answers 500 (every error is a problem with its own status); under
            // the load of the whole suite, `cargo lambda watch`'s function URL does, when it
            // fails to hand an invocation to a runtime. The final state is read from DynamoDB.
            if response.status() == 500 {
                return Err("500 from the local function URL".to_owned());
            }
            assert_eq!(response.status(), 200, "GET run {run_id}");
            let view: Value = response.json().await.unwrap();
            let now = view["status"].as_str().unwrap().to_owned();
            let ended = ["succeeded", "failed", "cancelled"].contains(&now.as_str());
            if now == status || ended {
                assert_eq!(now, status, "run {run_id} ended otherwise: {view:#}");
                return Ok(());
            }
            Err(format!("still {now}: {view:#}"))
        })
        .await;
        let run = self.store.get_run(run_id).await.unwrap().expect("the run is in DynamoDB");
        (run, self.store.get_steps(run_id).await.unwrap())
    }

    /// The run's signed notification, checked: one signature per secret of the rotation,
    /// each verifiable on its own.
    async fn notification(&mut self, run_id: &RunId) -> Value {
        let delivery = tokio::time::timeout(RUN_TIMEOUT, self.deliveries.recv()).await;
        let delivery = delivery.expect("a notification arrives").expect("the receiver runs");
        let signatures = delivery.headers.get("webhook-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_eq!(signatures.split(' ').count(), 2, "one signature per active secret: {signatures}");
        delivery.verified(&self.previous);
        let body = delivery.verified(&self.secret);
        assert_eq!(body["data"]["id"], run_id.as_str());
        body
    }

    async fn send_step_message(&self, message: &StepMessage) {
        let sqs = aws_sdk_sqs::Client::new(&self.emulator.config);
        let url = sqs.get_queue_url().queue_name(STEPS_QUEUE).send().await.unwrap().queue_url.unwrap();
        let body = serde_json::to_string(message).unwrap();
        sqs.send_message().queue_url(url).message_body(body).send().await.unwrap();
    }
}

fn step<'a>(steps: &'a [StepState], id: &str) -> &'a StepState {
    steps.iter().find(|s| s.step_id.as_str() == id).unwrap_or_else(|| panic!("no step {id}"))
}

fn generate(id: &str, prompt: &str) -> Value {
    json!({"id": id, "task": "generate", "model": "local:echo", "prompt": prompt})
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn a_three_step_chain_runs_to_the_end_and_is_notified() {
    let mut stack = stack().await;
    let workflow = json!({"steps": [
        generate("draft", "{{ input.prompt }}"),
        {"id": "summary", "task": "summarize", "model": "local:extractive", "input": "{{ steps.draft.text }}"},
        {"id": "mood", "task": "classify", "model": "local:lexicon", "input": "{{ steps.summary.text }}",
         "labels": ["POSITIVE", "NEGATIVE"]}
    ], "output": {"mood": "{{ steps.mood.label }}"}});
    let prompt = "Chorus is a great way to run workflows. Users love how fast and simple it is.";
    let run_id = stack.submit(workflow, json!({"prompt": prompt})).await;

    let (run, steps) = stack.wait_for(&run_id, "succeeded").await;
    assert_eq!(run.output, Some(json!({"mood": "POSITIVE"})));
    for id in ["draft", "summary", "mood"] {
        let state = step(&steps, id);
        assert_eq!(
            (state.status, state.control.attempt, state.progress.attempts.len()),
            (StepStatus::Succeeded, 1, 1),
            "{id}"
        );
    }
    assert_eq!(step(&steps, "draft").progress.output.as_ref().unwrap()["text"], prompt);
    let notified = stack.notification(&run_id).await;
    assert_eq!(notified["data"]["status"], "succeeded");
    assert_eq!(notified["data"]["output"], json!({"mood": "POSITIVE"}));
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn a_two_hundred_item_map_runs_each_item_once_and_feeds_the_next_step_in_order() {
    let mut stack = stack().await;
    let workflow = json!({"steps": [
        {"id": "summaries", "task": "summarize", "model": "local:extractive", "for_each": "input.documents",
         "input": "{{ item.text }}", "max_concurrency": 20},
        {"id": "moods", "task": "classify", "model": "local:lexicon", "labels": ["POSITIVE", "NEGATIVE"],
         "input": "{% for s in steps.summaries['items'] %}{{ s.output.text }} {% endfor %}"}
    ], "output": {"count": "{{ steps.summaries['items'] | length }}", "last": "{{ steps.summaries['items'][-1].output.text }}",
                  "mood": "{{ steps.moods.label }}"}});
    let documents: Vec<Value> =
        (0..200).map(|i| json!({"text": format!("Document {i} is great. Everyone loves document {i}.")})).collect();
    let run_id = stack.submit(workflow, json!({ "documents": documents })).await;

    let (run, steps) = stack.wait_within(&run_id, "succeeded", Duration::from_secs(600)).await;
    let output = run.output.unwrap();
    assert_eq!(output["count"], 200);
    assert!(output["last"].as_str().unwrap().contains("document 199"), "the last in list order: {output}");
    assert_eq!(output["mood"], "POSITIVE");
    let map = step(&steps, "summaries");
    assert_eq!(map.progress.map.map(|m| (m.items, m.pending, m.failed)), Some((200, 0, 0)));
    let items = stack.store.list_items(&run_id, &map.step_id, ItemOutputs::Within(usize::MAX)).await.unwrap().unwrap();
    assert_eq!(items.len(), 200);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item.step_id, map.step_id.item(u32::try_from(i).unwrap()));
        assert_eq!((item.status, item.control.attempt, item.control.counted), (StepStatus::Succeeded, 1, true), "{i}");
    }
    let listed = map.progress.output.as_ref().unwrap()["items"].as_array().unwrap();
    assert!(listed.iter().enumerate().all(|(i, item)| item["index"] == i && item["status"] == "succeeded"));
    assert_eq!(stack.notification(&run_id).await["data"]["status"], "succeeded");
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn a_registered_sub_workflow_runs_as_a_child_and_its_output_feeds_the_parent() {
    let mut stack = stack().await;
    let child = json!({"steps": [
        {"id": "gist", "task": "summarize", "model": "local:extractive", "input": "{{ input.text }}"}
    ], "output": {"gist": "{{ steps.gist.text }}"}});
    let version = stack.register("gist", &child).await;
    let workflow = json!({"steps": [
        {"id": "sub", "task": "workflow", "workflow": "gist", "input": "{{ input }}"},
        generate("after", "gist: {{ steps.sub.gist }}")
    ], "output": {"after": "{{ steps.after.text }}"}});
    let text = "Chorus runs workflows. Child runs report back to their parents.";
    let run_id = stack.submit(workflow, json!({ "text": text })).await;

    let (run, steps) = stack.wait_for(&run_id, "succeeded").await;
    assert!(run.output.unwrap()["after"].as_str().unwrap().starts_with("gist: "), "the child's output fed `after`");
    assert_eq!(run.definition.steps[0].workflow.as_deref(), Some(format!("gist@{version}").as_str()));
    let child_id = step(&steps, "sub").progress.child_run.clone().expect("the step names its child");
    let child = stack.store.get_run(&child_id).await.unwrap().unwrap();
    assert_eq!(child.status, RunStatus::Succeeded);
    assert_eq!(child.parent.as_ref().map(|parent| &parent.run_id), Some(&run_id));
    assert_eq!(child.workflow.map(|w| w.version), Some(u32::try_from(version).unwrap()));
    assert_eq!(step(&steps, "sub").progress.output.as_ref().unwrap()["gist"], child.output.unwrap()["gist"]);
    assert_eq!(stack.notification(&run_id).await["data"]["status"], "succeeded", "only the parent is notified");
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn a_fan_out_joins_once_both_branches_are_done() {
    let mut stack = stack().await;
    let workflow = json!({"steps": [
        generate("topic", "{{ input.topic }}"),
        generate("pros", "pros of {{ steps.topic.text }}"),
        generate("cons", "cons of {{ steps.topic.text }}"),
        generate("verdict", "{{ steps.pros.text }} / {{ steps.cons.text }}")
    ], "output": {"verdict": "{{ steps.verdict.text }}"}});
    let run_id = stack.submit(workflow, json!({"topic": "queues"})).await;

    let (run, steps) = stack.wait_for(&run_id, "succeeded").await;
    assert_eq!(run.output, Some(json!({"verdict": "pros of queues / cons of queues"})));
    assert!(steps.iter().all(|s| s.status == StepStatus::Succeeded && s.control.attempt == 1));
    let (pros, cons, verdict) = (step(&steps, "pros"), step(&steps, "cons"), step(&steps, "verdict"));
    assert!(
        verdict.progress.started_at >= pros.progress.finished_at
            && verdict.progress.started_at >= cons.progress.finished_at,
        "the join waits"
    );
    assert_eq!(stack.notification(&run_id).await["data"]["status"], "succeeded");
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn an_output_too_big_for_dynamodb_goes_to_s3_and_feeds_the_next_step() {
    let mut stack = stack().await;
    let text = "Chorus keeps large payloads in S3. ".repeat(3_000); // ~100 KiB
    // Enough `max_tokens` for local:echo to answer all of it (1,024 when unset).
    let mut big = generate("big", "{{ input.text }}");
    big["max_tokens"] = json!(100_000);
    let workflow = json!({"steps": [
        big,
        generate("length", "{{ steps.big.text | length }}")
    ], "output": {"length": "{{ steps.length.text }}"}});
    let run_id = stack.submit(workflow, json!({"text": text})).await;

    let (run, steps) = stack.wait_for(&run_id, "succeeded").await;
    assert_eq!(step(&steps, "big").progress.output.as_ref().unwrap()["text"], text.as_str());
    assert_eq!(run.output, Some(json!({"length": text.len().to_string()})));

    // The item holds only the S3 key; the object holds the output.
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.emulator.config);
    let item = dynamodb
        .get_item()
        .table_name(&stack.emulator.table)
        .key("pk", AttributeValue::S(format!("RUN#{run_id}")))
        .key("sk", AttributeValue::S("STEP#big".to_owned()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let output = item["output"].as_m().unwrap();
    let key = output.get("blob").expect("the output was offloaded").as_s().unwrap();
    assert!(key.starts_with("tenants/e2e") && key.contains(run_id.as_str()), "{key}");
    let object = s3_client(&stack.emulator.config).get_object().bucket(&stack.emulator.bucket).key(key).send().await;
    let stored: Value = serde_json::from_slice(&object.unwrap().body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(stored["text"], text.as_str());
    stack.notification(&run_id).await;
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn a_poison_step_message_ends_in_the_dead_letter_queue_and_fails_its_run() {
    let mut stack = stack().await;
    // The gate holds the run so the test can spoil `work` before any worker sees it.
    let workflow = json!({"steps": [
        {"id": "gate", "task": "approval"},
        {"id": "work", "task": "generate", "model": "local:echo", "prompt": "never runs", "needs": ["gate"]}
    ]});
    let run_id = stack.submit(workflow, json!({})).await;
    stack.wait_for(&run_id, "waiting").await;

    // `work`'s item becomes unreadable (a string where a number belongs), so every worker
    // delivery fails until SQS moves the message to the dead-letter queue.
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.emulator.config);
    dynamodb
        .update_item()
        .table_name(&stack.emulator.table)
        .key("pk", AttributeValue::S(format!("RUN#{run_id}")))
        .key("sk", AttributeValue::S("STEP#work".to_owned()))
        .update_expression("SET #error = :junk")
        .expression_attribute_names("#error", "error")
        .expression_attribute_values(":junk", AttributeValue::N("7".to_owned()))
        .send()
        .await
        .unwrap();
    let work = chorus::domain::StepId::parse("work").unwrap();
    stack.send_step_message(&StepMessage { run_id: run_id.clone(), step_id: work }).await;

    let (run, steps) = stack.wait_for(&run_id, "failed").await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(step(&steps, "work").progress.error.as_ref().unwrap().kind, ErrorKind::Undeliverable);
    assert_eq!(step(&steps, "gate").status, StepStatus::Cancelled);
    assert_eq!(stack.notification(&run_id).await["data"]["status"], "failed");
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn a_duplicate_delivery_does_not_run_a_step_twice() {
    let stack = stack().await;
    let run_id = stack.submit(json!({"steps": [generate("once", "{{ input.word }}")]}), json!({"word": "hi"})).await;
    // Intake queued the step; a second copy of its message races the first.
    let once = chorus::domain::StepId::parse("once").unwrap();
    stack.send_step_message(&StepMessage { run_id: run_id.clone(), step_id: once }).await;

    stack.wait_for(&run_id, "succeeded").await;
    // Give the copy time to be delivered after the first completed the step.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let steps = stack.store.get_steps(&run_id).await.unwrap();
    assert_eq!((step(&steps, "once").control.attempt, step(&steps, "once").progress.attempts.len()), (1, 1));
    let events = stack.store.list_events(&run_id).await.unwrap();
    let calls = events.iter().filter(|e| matches!(e.kind, EventKind::ProviderCalled { .. })).count();
    assert_eq!(calls, 1, "one provider call: {events:#?}");
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn a_failed_run_is_retried_in_place_and_forked_with_a_working_model() {
    let mut stack = stack().await;
    let workflow = json!({"steps": [
        generate("draft", "{{ input.text }}"),
        {"id": "summary", "task": "summarize", "model": "local:outage", "retries": 0, "input": "{{ steps.draft.text }}"}
    ], "output": {"summary": "{{ steps.summary.text }}"}});
    let run_id = stack.submit(workflow, json!({"text": "Retries keep what succeeded. Forks reuse it too."})).await;
    stack.wait_for(&run_id, "failed").await;
    assert_eq!(stack.notification(&run_id).await["data"]["status"], "failed");

    // Retry in place: only `summary` runs again (and fails again: its model is down).
    let (status, accepted) = stack.post(&format!("/v1/runs/{run_id}/retry"), &json!({})).await;
    assert_eq!(status, 202, "{accepted:#}");
    let (run, steps) = stack.wait_for(&run_id, "failed").await;
    assert_eq!(run.generation, 1);
    assert_eq!(step(&steps, "draft").control.attempt, 1, "the succeeded draft was kept, not run again");
    assert_eq!(step(&steps, "summary").control.generation, 1, "summary ran again");
    assert_eq!(stack.notification(&run_id).await["data"]["status"], "failed", "its second end is notified too");

    // Fork with a model that works: `draft` is reused, `summary` runs.
    let fork = json!({"overrides": {"summary": {"model": "local:extractive"}}});
    let (status, accepted) = stack.post(&format!("/v1/runs/{run_id}/fork"), &fork).await;
    assert_eq!(status, 202, "{accepted:#}");
    let forked = RunId::parse(accepted["id"].as_str().unwrap()).unwrap();
    let (run, steps) = stack.wait_for(&forked, "succeeded").await;
    assert_eq!(
        run.forked_from.map(|from| (from.run_id, from.reused)),
        Some((run_id.clone(), vec![step(&steps, "draft").step_id.clone()]))
    );
    assert_eq!(step(&steps, "draft").progress.reused_from.as_ref(), Some(&run_id));
    assert!(!run.output.unwrap()["summary"].as_str().unwrap().is_empty());
}
