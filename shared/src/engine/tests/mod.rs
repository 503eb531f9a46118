//! Engine behaviour over the memory adapters: scheduling, skips, failures, approvals,
//! cancellation and notifications, with every step message delivered twice, concurrently
//! and in shuffled order. `durability` breaks the ports between any two writes.

mod budget;
mod children;
mod durability;
mod faults;
mod limits;
mod map;
mod rerun;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::adapters::memory::{MemoryQueue, MemoryRunStore, MemoryTenantDirectory};
use crate::domain::{
    ErrorKind, FinishReason, MapProgress, RunId, RunStatus, StepId, StepStatus, Task, TaskOutput, TenantId, Usage,
};
use crate::ports::{
    DeliveryError, NotificationMessage, OutgoingWebhook, RunStore, SigningSecrets, StepMessage, Tenant, WebhookSender,
};
use crate::providers::{Completion, ModelInfo, Provider, ProviderError, TaskRequest};
use crate::routing::{ProviderRouter, RetryPolicy};
use crate::testing::{ManualClock, TestKit};
use crate::webhooks::{WebhookHeaders, WebhookSecret, verify};
use faults::{Faults, FaultyQueue, FaultyStore};

/// A provider with two models, `count:any` and `count:cheap`, that answer every task and
/// record each call's text and model. Text containing `FAIL` is rejected as an invalid
/// request; so is text containing `BROKEN` until [`CountingProvider::fix`] is called; text
/// containing `LIMITED` is rate limited for two minutes the first time it is seen; text
/// containing `HUGE` is answered with 2 MiB, `BIG` with 900 KiB.
#[derive(Default)]
struct CountingProvider {
    calls: Mutex<Vec<String>>,
    models: Mutex<Vec<String>>,
    fixed: std::sync::atomic::AtomicBool,
}

impl CountingProvider {
    /// From now on, text containing `BROKEN` is answered like any other.
    fn fix(&self) {
        self.fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// The model of each call, in order.
    fn models_called(&self) -> Vec<String> {
        self.models.lock().unwrap().clone()
    }
}

#[async_trait]
impl Provider for CountingProvider {
    fn name(&self) -> &'static str {
        "count"
    }

    fn models(&self) -> Vec<ModelInfo> {
        let tasks: Vec<Task> = Task::ALL.into_iter().filter(|t| t.uses_model()).collect();
        ["any", "cheap"].map(|model| ModelInfo::new("count", model, &tasks, "test double")).to_vec()
    }

    async fn call(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        let text = request.text().to_owned();
        self.calls.lock().unwrap().push(text.clone());
        self.models.lock().unwrap().push(model.to_owned());
        // Yield so concurrent duplicate deliveries really interleave.
        tokio::task::yield_now().await;
        let broken = text.contains("BROKEN") && !self.fixed.load(std::sync::atomic::Ordering::SeqCst);
        if text.contains("FAIL") || broken {
            return Err(ProviderError::InvalidRequest("told to fail".into()));
        }
        let seen = self.calls.lock().unwrap().iter().filter(|t| **t == text).count();
        if text.contains("LIMITED") && seen == 1 {
            return Err(ProviderError::RateLimited { retry_after: Some(Duration::from_secs(120)) });
        }
        let output = match request.task {
            Task::Classify => TaskOutput::Classify {
                label: request.labels[0].clone(),
                confidence: 1.0,
                scores: BTreeMap::from([(request.labels[0].clone(), 1.0)]),
            },
            _ if text.contains("HUGE") => {
                TaskOutput::Generate { text: "x".repeat(2 << 20), finish_reason: FinishReason::Length }
            }
            _ if text.contains("BIG") => {
                TaskOutput::Generate { text: "x".repeat(900 << 10), finish_reason: FinishReason::Length }
            }
            _ => TaskOutput::Generate { text: format!("<{text}>"), finish_reason: FinishReason::Stop },
        };
        Ok(Completion { output, usage: Usage { input_tokens: 2, output_tokens: 3, estimated: false } })
    }
}

struct Harness {
    engine: Engine,
    store: Arc<MemoryRunStore>,
    clock: Arc<ManualClock>,
    provider: Arc<CountingProvider>,
    steps: UnboundedReceiver<StepMessage>,
    notifications: UnboundedReceiver<NotificationMessage>,
    tenant: TenantId,
    /// Breaks the store's and the queues' next calls on demand.
    faults: Arc<Faults>,
}

/// The engine over the test kit, with [`CountingProvider`] as its only provider.
fn harness() -> Harness {
    harness_with(|router| router, None)
}

/// [`harness`] with a changed router (rate limits) and an invocation budget (a Lambda's).
fn harness_with(
    configure: impl FnOnce(ProviderRouter) -> ProviderRouter,
    invocation_budget: Option<Duration>,
) -> Harness {
    build_harness(configure, invocation_budget, |_| None)
}

/// [`harness`] whose engine shares work out between tenants with the quota `quota` makes
/// (given the harness's clock).
fn harness_with_quota(quota: impl FnOnce(Arc<ManualClock>) -> TenantQuota) -> Harness {
    build_harness(|router| router, None, |clock| Some(quota(clock)))
}

fn build_harness(
    configure: impl FnOnce(ProviderRouter) -> ProviderRouter,
    invocation_budget: Option<Duration>,
    quota: impl FnOnce(Arc<ManualClock>) -> Option<TenantQuota>,
) -> Harness {
    let kit = TestKit::new();
    let provider = Arc::new(CountingProvider::default());
    let router = configure(ProviderRouter::new(
        vec![provider.clone() as Arc<dyn Provider>],
        BTreeMap::new(),
        RetryPolicy::default(),
        Default::default(),
    ));
    let faults = Arc::new(Faults::default());
    let parts = kit.engine_parts();
    let engine = Engine::new(EngineParts {
        router: Arc::new(router),
        invocation_budget,
        quota: quota(kit.clock.clone()),
        store: Arc::new(FaultyStore { inner: parts.store, faults: faults.clone() }),
        steps: Arc::new(FaultyQueue { inner: parts.steps, faults: faults.clone(), name: "send steps" }),
        notifications: Arc::new(FaultyQueue {
            inner: parts.notifications,
            faults: faults.clone(),
            name: "send notifications",
        }),
        ..parts
    });
    Harness {
        faults,
        engine,
        store: kit.backends.store,
        clock: kit.clock,
        provider,
        steps: kit.backends.step_messages,
        notifications: kit.backends.notification_messages,
        tenant: TenantId::parse("acme").unwrap(),
    }
}

impl Harness {
    async fn submit(&self, workflow: Value, input: Value) -> RunId {
        let submission = Submission { workflow, input, notify: None };
        self.engine.submit(&self.tenant, submission, None).await.unwrap().run_id
    }

    /// Delivers every queued message twice, concurrently and shuffled, until none are left.
    async fn drive(&mut self, seed: u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
        loop {
            let mut batch = Vec::new();
            while let Ok(message) = self.steps.try_recv() {
                batch.push(message.clone());
                batch.push(message);
            }
            if batch.is_empty() {
                return;
            }
            rng.shuffle(&mut batch);
            let results = futures::future::join_all(batch.iter().map(|m| self.engine.execute_step(m))).await;
            for result in results {
                result.unwrap();
            }
        }
    }

    async fn view(&self, run_id: &RunId) -> RunView {
        self.engine.run_view(&self.tenant, run_id).await.unwrap()
    }
}

fn status_of(view: &RunView, step: &str) -> StepStatus {
    view.steps.iter().find(|s| s.id == step).unwrap().status
}

fn generate(id: &str, prompt: &str) -> Value {
    json!({"id": id, "task": "generate", "model": "count:any", "prompt": prompt})
}

#[tokio::test]
async fn a_chain_runs_each_step_exactly_once_despite_duplicates_and_shuffling() {
    for seed in 0..20 {
        let mut h = harness();
        let run_id = h
            .submit(
                json!({"steps": [
                    generate("c", "{{ steps.b.text }}!"),
                    generate("a", "{{ input.topic }}"),
                    generate("b", "{{ steps.a.text }}?")
                ], "output": {"final": "{{ steps.c.text }}"}}),
                json!({"topic": "rust"}),
            )
            .await;
        h.drive(seed).await;

        let view = h.view(&run_id).await;
        assert_eq!(view.status, RunStatus::Succeeded, "seed {seed}");
        assert_eq!(h.provider.calls(), ["rust", "<rust>?", "<<rust>?>!"], "seed {seed}");
        assert_eq!(view.output, Some(json!({"final": "<<<rust>?>!>"})));
        assert!(view.steps.iter().all(|s| s.progress.attempts.len() == 1));
        assert_eq!(view.totals.usage.input_tokens, 6);
    }
}

#[tokio::test]
async fn a_diamond_fans_out_and_joins_once() {
    for seed in 0..20 {
        let mut h = harness();
        let run_id = h
            .submit(
                json!({"steps": [
                    generate("root", "{{ input.x }}"),
                    generate("left", "L{{ steps.root.text }}"),
                    generate("right", "R{{ steps.root.text }}"),
                    generate("join", "{{ steps.left.text }}+{{ steps.right.text }}")
                ]}),
                json!({"x": "1"}),
            )
            .await;
        h.drive(seed).await;
        let view = h.view(&run_id).await;
        assert_eq!(view.status, RunStatus::Succeeded);
        let calls = h.provider.calls();
        assert_eq!(calls.len(), 4, "seed {seed}: {calls:?}");
        assert_eq!(calls.last().unwrap(), "<L<1>>+<R<1>>");
    }
}

#[tokio::test]
async fn independent_steps_are_all_queued_at_submission() {
    let mut h = harness();
    h.submit(json!({"steps": [generate("a", "1"), generate("b", "2"), generate("c", "3")]}), json!({})).await;
    let mut queued = Vec::new();
    while let Ok(message) = h.steps.try_recv() {
        queued.push(message.step_id.to_string());
    }
    queued.sort();
    assert_eq!(queued, ["a", "b", "c"]);
}

#[tokio::test]
async fn a_false_condition_skips_the_step_and_everything_that_needs_it() {
    let mut h = harness();
    let run_id = h
        .submit(
            json!({"steps": [
                generate("a", "go"),
                {"id": "b", "task": "generate", "model": "count:any", "prompt": "{{ steps.a.text }}", "when": "input.enabled"},
                generate("c", "{{ steps.b.text }}"),
                generate("d", "{{ steps.a.text }} again")
            ]}),
            json!({"enabled": false}),
        )
        .await;
    h.drive(1).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(status_of(&view, "b"), StepStatus::Skipped);
    assert_eq!(status_of(&view, "c"), StepStatus::Skipped);
    assert_eq!(status_of(&view, "d"), StepStatus::Succeeded);
    assert_eq!(h.provider.calls(), ["go", "<go> again"]);
}

#[tokio::test]
async fn a_required_failure_fails_the_run_and_cancels_what_had_not_started() {
    let mut h = harness();
    let run_id = h
        .submit(json!({"steps": [generate("a", "FAIL please"), generate("b", "{{ steps.a.text }}"), generate("slow", "ok")]}), json!({}))
        .await;
    h.drive(3).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(view.error.as_ref().unwrap().kind, ErrorKind::StepFailed);
    assert_eq!(status_of(&view, "a"), StepStatus::Failed);
    assert_eq!(view.steps[0].progress.error.as_ref().unwrap().kind, ErrorKind::InvalidRequest);
    assert_eq!(status_of(&view, "b"), StepStatus::Cancelled);
}

#[tokio::test]
async fn an_optional_failure_skips_its_dependants_but_the_run_succeeds() {
    let mut h = harness();
    let run_id = h
        .submit(
            json!({"steps": [
                {"id": "a", "task": "generate", "model": "count:any", "prompt": "FAIL", "optional": true},
                generate("b", "{{ steps.a.text }}"),
                generate("c", "fine")
            ], "output": {"b": "{{ steps.b.text }}", "c": "{{ steps.c.text }}"}}),
            json!({}),
        )
        .await;
    h.drive(4).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(status_of(&view, "a"), StepStatus::Failed);
    assert_eq!(status_of(&view, "b"), StepStatus::Skipped);
    assert_eq!(view.output, Some(json!({"b": null, "c": "<fine>"})));
}

fn approval_workflow() -> Value {
    json!({"steps": [
        generate("draft", "{{ input.text }}"),
        {"id": "review", "task": "approval", "prompt": "Publish {{ steps.draft.text }}?"},
        generate("publish", "{{ steps.draft.text }} approved by {{ steps.review.by }}")
    ]})
}

#[tokio::test]
async fn approval_steps_wait_for_a_person_then_release_their_dependants() {
    let mut h = harness();
    let run_id = h.submit(approval_workflow(), json!({"text": "hi"})).await;
    h.drive(5).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Waiting);
    assert_eq!(status_of(&view, "review"), StepStatus::WaitingApproval);
    assert_eq!(view.steps[1].progress.output, Some(json!({"question": "Publish <hi>?"})));

    let review = StepId::parse("review").unwrap();
    let decision = ApprovalDecision { by: Some("alice".into()), comment: Some("ship it".into()) };
    h.engine.decide_approval(&h.tenant, &run_id, &review, true, decision.clone(), "key_test").await.unwrap();
    // A client's retry of the same decision is taken; the other decision is refused.
    h.engine.decide_approval(&h.tenant, &run_id, &review, true, decision.clone(), "key_test").await.unwrap();
    let other = h.engine.decide_approval(&h.tenant, &run_id, &review, false, decision, "key_test").await;
    assert!(matches!(other, Err(EngineError::Conflict(_))));
    h.drive(6).await;

    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(
        view.steps[1].progress.output,
        Some(json!({"approved": true, "by": "alice", "comment": "ship it", "key_id": "key_test"}))
    );
    assert_eq!(h.provider.calls().last().unwrap(), "<hi> approved by alice");
}

#[tokio::test]
async fn a_rejection_fails_the_run() {
    let mut h = harness();
    let run_id = h.submit(approval_workflow(), json!({"text": "hi"})).await;
    h.drive(7).await;
    let review = StepId::parse("review").unwrap();
    h.engine
        .decide_approval(&h.tenant, &run_id, &review, false, ApprovalDecision::default(), "key_test")
        .await
        .unwrap();
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(view.steps[1].progress.error.as_ref().unwrap().kind, ErrorKind::Rejected);
    assert_eq!(status_of(&view, "publish"), StepStatus::Cancelled);
}

#[tokio::test]
async fn the_sweep_fails_an_approval_nobody_answered_in_time() {
    let mut h = harness();
    let workflow = json!({"steps": [
        generate("draft", "{{ input.text }}"),
        {"id": "review", "task": "approval", "needs": ["draft"], "timeout_ms": 300},
        generate("publish", "{{ steps.draft.text }}")
    ]});
    let run_id = h.submit(workflow, json!({"text": "hi"})).await;
    h.drive(9).await;
    assert_eq!(h.engine.sweep().await.unwrap().failed, 0, "not yet expired");
    h.clock.advance(Duration::from_millis(350));

    assert_eq!(h.engine.sweep().await.unwrap().failed, 1);
    assert_eq!(h.engine.sweep().await.unwrap().failed, 0, "a wait is failed once");
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(view.steps[1].progress.error.as_ref().unwrap().kind, ErrorKind::DeadlineExceeded);
}

#[tokio::test(start_paused = true)]
async fn a_long_retry_after_puts_the_step_back_on_the_queue_until_the_wait_is_over() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [generate("a", "LIMITED for a while")]}), json!({})).await;
    let message = h.steps.try_recv().unwrap();
    h.engine.execute_step(&message).await.unwrap();

    let view = h.view(&run_id).await;
    let step = view.steps.iter().find(|s| s.id == "a").unwrap();
    assert_eq!(step.status, StepStatus::Queued, "handed back, not slept on");
    let kinds: Vec<ErrorKind> =
        step.progress.attempts.iter().filter_map(|a| a.error.as_ref().map(|e| e.kind)).collect();
    assert_eq!(kinds, [ErrorKind::RateLimited]);
    assert!(h.steps.try_recv().is_err(), "the message waits out the provider's Retry-After");

    tokio::time::sleep(Duration::from_secs(121)).await;
    let again = h.steps.try_recv().unwrap();
    h.engine.execute_step(&again).await.unwrap();
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(view.steps[0].progress.attempts.len(), 2, "the second delivery resumed after the recorded attempt");
    assert_eq!(h.provider.calls().len(), 2);
}

#[tokio::test]
async fn cancelling_stops_further_steps() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [generate("a", "1"), generate("b", "{{ steps.a.text }}")]}), json!({})).await;
    h.engine.cancel(&h.tenant, &run_id).await.unwrap();
    h.drive(8).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Cancelled);
    assert!(view.steps.iter().all(|s| s.status == StepStatus::Cancelled));
    assert!(h.provider.calls().is_empty());
    assert!(matches!(h.engine.cancel(&h.tenant, &run_id).await, Err(EngineError::Conflict(_))));
}

#[tokio::test]
async fn a_redelivered_message_for_a_finished_step_does_not_release_twice() {
    let mut h = harness();
    let run_id = h
        .submit(
            json!({"steps": [generate("a", "1"), generate("b", "2"), generate("join", "{{ steps.a.text }}{{ steps.b.text }}")]}),
            json!({}),
        )
        .await;
    let first = h.steps.try_recv().unwrap();
    let second = h.steps.try_recv().unwrap();
    h.engine.execute_step(&first).await.unwrap();
    // The same message again, after its step finished: `join` must still wait for the other.
    h.engine.execute_step(&first).await.unwrap();
    assert!(h.steps.try_recv().is_err(), "join was queued before both dependencies ended");
    h.engine.execute_step(&second).await.unwrap();
    h.drive(9).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded);
    assert_eq!(h.provider.calls().len(), 3);
}

#[tokio::test]
async fn another_tenant_cannot_see_or_touch_a_run() {
    let h = harness();
    let run_id = h.submit(json!({"steps": [generate("a", "1")]}), json!({})).await;
    let other = TenantId::parse("globex").unwrap();
    assert!(matches!(h.engine.run_view(&other, &run_id).await, Err(EngineError::NotFound(_))));
    assert!(matches!(h.engine.cancel(&other, &run_id).await, Err(EngineError::NotFound(_))));
    assert!(h.engine.list_runs(&other, None, 10).await.unwrap().runs.is_empty());
}

#[tokio::test]
async fn the_same_idempotency_key_finds_the_same_run_and_refuses_another_body() {
    let h = harness();
    let body = |prompt: &str| Submission {
        workflow: json!({"steps": [generate("a", prompt)]}),
        input: json!({}),
        notify: None,
    };
    let first = h.engine.submit(&h.tenant, body("1"), Some("key-1")).await.unwrap();
    let again = h.engine.submit(&h.tenant, body("1"), Some("key-1")).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.run_id, again.run_id);
    assert!(matches!(h.engine.submit(&h.tenant, body("2"), Some("key-1")).await, Err(EngineError::Conflict(_))));
}

/// Records webhooks and answers with a scripted status.
struct Receiver {
    answer: Result<u16, u16>,
    received: Mutex<Vec<OutgoingWebhook>>,
}

#[async_trait]
impl WebhookSender for Receiver {
    async fn send(&self, webhook: &OutgoingWebhook) -> Result<u16, DeliveryError> {
        self.received.lock().unwrap().push(webhook.clone());
        self.answer.map_err(DeliveryError::Status)
    }
}

/// A finished run with a notification URL, and a notifier whose retries land in the returned receiver.
async fn notified_run(
    answer: Result<u16, u16>,
) -> (Harness, Arc<Receiver>, Notifier, RunId, WebhookSecret, UnboundedReceiver<NotificationMessage>) {
    notified_run_signing_also_with(answer, None).await
}

/// [`notified_run`], the tenant rotating from `previous` (when given) to the returned secret.
async fn notified_run_signing_also_with(
    answer: Result<u16, u16>,
    previous: Option<&WebhookSecret>,
) -> (Harness, Arc<Receiver>, Notifier, RunId, WebhookSecret, UnboundedReceiver<NotificationMessage>) {
    let mut h = harness();
    let secret = WebhookSecret::generate();
    let tenants = MemoryTenantDirectory::new().with_key(
        Tenant::new(h.tenant.clone()),
        SigningSecrets::with_previous(secret.to_whsec(), previous.map(WebhookSecret::to_whsec)),
        &"key".to_owned().into(),
    );
    let receiver = Arc::new(Receiver { answer, received: Mutex::new(Vec::new()) });
    let (retry_queue, retries) = MemoryQueue::channel();
    let notifier = Notifier {
        store: h.store.clone(),
        secrets: Arc::new(tenants),
        sender: receiver.clone(),
        queue: Arc::new(retry_queue),
        clock: h.clock.clone(),
        schedule: DeliverySchedule(vec![Duration::from_secs(1)]),
    };
    let submission = Submission {
        workflow: json!({"steps": [generate("a", "1")]}),
        input: json!({}),
        notify: Some(crate::domain::NotifyTarget { url: "http://127.0.0.1:9/hook".into() }),
    };
    let run_id = h.engine.submit(&h.tenant, submission, None).await.unwrap().run_id;
    h.drive(10).await;
    (h, receiver, notifier, run_id, secret, retries)
}

#[tokio::test]
async fn a_finished_run_is_notified_once_with_a_valid_signature() {
    let (mut h, receiver, notifier, run_id, secret, _) = notified_run(Ok(204)).await;
    let message = h.notifications.try_recv().unwrap();
    assert!(h.notifications.try_recv().is_err(), "exactly one notification per run");
    notifier.deliver(&message).await.unwrap();

    let received = receiver.received.lock().unwrap().clone();
    let webhook = &received[0];
    let header = |name: &str| webhook.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
    let body: Value = serde_json::from_slice(&webhook.body).unwrap();
    assert_eq!(body["type"], "run.finished");
    assert_eq!(body["data"]["id"], run_id.to_string());
    assert_eq!(body["data"]["status"], "succeeded");
    let (id, timestamp, signature) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
    verify(
        &secret,
        &WebhookHeaders { id: &id, timestamp: &timestamp, signature: &signature },
        &webhook.body,
        jiff::Timestamp::now(),
        Duration::from_secs(300),
    )
    .unwrap();
    let events = h.store.list_events(&run_id).await.unwrap();
    assert!(format!("{events:?}").contains("NotificationDelivered"));
}

#[tokio::test]
async fn during_a_rotation_a_notification_carries_a_signature_for_each_secret() {
    let old = WebhookSecret::generate();
    let (mut h, receiver, notifier, _, new, _) = notified_run_signing_also_with(Ok(204), Some(&old)).await;
    notifier.deliver(&h.notifications.try_recv().unwrap()).await.unwrap();

    let webhook = receiver.received.lock().unwrap()[0].clone();
    let header = |name: &str| webhook.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
    let (id, timestamp, signature) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
    let signatures: Vec<&str> = signature.split(' ').collect();
    assert_eq!(signatures.len(), 2, "{signature}");
    let check = |secret: &WebhookSecret, signature: &str| {
        let headers = WebhookHeaders { id: &id, timestamp: &timestamp, signature };
        verify(secret, &headers, &webhook.body, jiff::Timestamp::now(), Duration::from_secs(300))
    };
    // Newest first; a receiver holding either secret accepts the message.
    assert!(check(&new, signatures[0]).is_ok() && check(&old, signatures[1]).is_ok());
    assert!(check(&new, &signature).is_ok() && check(&old, &signature).is_ok());
    assert!(check(&WebhookSecret::generate(), &signature).is_err());
}

#[tokio::test]
async fn failed_deliveries_retry_on_the_schedule_then_give_up() {
    let (mut h, receiver, notifier, run_id, _, mut retries) = notified_run(Err(500)).await;
    let first = h.notifications.try_recv().unwrap();
    notifier.deliver(&first).await.unwrap();
    // The schedule's one retry arrives after its delay; after it, nothing more.
    let retry = tokio::time::timeout(Duration::from_secs(5), retries.recv()).await.unwrap().unwrap();
    assert_eq!(retry.attempt, 1);
    notifier.deliver(&retry).await.unwrap();
    assert_eq!(receiver.received.lock().unwrap().len(), 2);
    assert!(tokio::time::timeout(Duration::from_millis(1500), retries.recv()).await.is_err());
    let events = format!("{:?}", h.store.list_events(&run_id).await.unwrap());
    assert!(events.contains("will_retry: true"), "{events}");
    assert!(events.contains("giving up after 2 attempts"), "{events}");
}

#[tokio::test]
async fn a_step_that_cannot_be_delivered_fails_the_run() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [generate("a", "1"), generate("b", "{{ steps.a.text }}")]}), json!({})).await;
    let message = h.steps.try_recv().unwrap();
    h.engine.fail_undeliverable(&message).await.unwrap();
    h.drive(11).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(view.steps[0].progress.error.as_ref().unwrap().kind, ErrorKind::Undeliverable);
    assert_eq!(status_of(&view, "b"), StepStatus::Cancelled);
    assert!(h.provider.calls().is_empty());
}
