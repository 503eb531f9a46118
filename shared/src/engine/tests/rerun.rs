//! Running a run again. A retry re-runs in place only what failed or was cancelled and what
//! was skipped because of it, keeps and does not pay again for what succeeded, notifies the
//! new end under a new id, and finishes when interrupted between any two writes (by the
//! reconciler or by the client's replay) without resetting a step twice. A fork creates a
//! new run that reuses the source's outputs upstream of what it changes.

use super::*;
use crate::domain::{EventKind, ForkedFrom, RunEvent};
use crate::engine::transitions::{FOLLOW_UP_GRACE, QUEUED_GRACE};
use crate::routing::{Price, PriceTable};

/// Past every grace the reconciler gives (a reset's included).
const LATER: Duration = Duration::from_secs(QUEUED_GRACE.as_secs() + FOLLOW_UP_GRACE.as_secs() + 1);

fn id(step: &str) -> StepId {
    StepId::parse(step).unwrap()
}

/// `a → broken → after`, `delta` alone, and `never` (skipped by its own `when`) with
/// `needs_never` behind it: `broken` fails until the provider is fixed.
fn failing_workflow() -> Value {
    json!({"steps": [
        generate("a", "alpha"),
        generate("broken", "BROKEN {{ steps.a.text }}"),
        generate("after", "{{ steps.broken.text }}!"),
        generate("delta", "delta"),
        {"id": "never", "task": "generate", "model": "count:any", "prompt": "{{ steps.a.text }}", "when": "input.never"},
        generate("needs_never", "{{ steps.never.text }}?")
    ], "output": {"after": "{{ steps.after.text }}"}})
}

/// The steps each reset, from the history: a step reset twice would show twice.
async fn resets(h: &Harness, run_id: &RunId) -> Vec<String> {
    let mut reset: Vec<String> = h
        .store
        .list_events(run_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|event| {
            matches!(&event.kind, EventKind::StepStatusChanged { reason: Some(reason), .. } if reason.starts_with("run again by retry"))
        })
        .filter_map(|event| event.step_id.map(|step| step.to_string()))
        .collect();
    reset.sort();
    reset
}

async fn failed_run(h: &mut Harness, seed: u64) -> RunId {
    let run_id = h.submit(failing_workflow(), json!({"never": false})).await;
    h.drive(seed).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed, "seed {seed}");
    assert_eq!(status_of(&view, "after"), StepStatus::Cancelled);
    run_id
}

#[tokio::test]
async fn a_retry_reruns_only_what_failed_and_what_it_stopped_and_keeps_what_succeeded() {
    for seed in 0..10 {
        let mut h = harness();
        let run_id = failed_run(&mut h, seed).await;
        let before = h.provider.calls().len();
        assert_eq!(status_of(&h.view(&run_id).await, "delta"), StepStatus::Succeeded);

        h.provider.fix();
        let retried = h.engine.retry(&h.tenant, &run_id, None).await.unwrap();
        assert!(!retried.replayed);
        let view = h.view(&run_id).await;
        assert_eq!((view.status, view.generation, &view.error), (RunStatus::Running, 1, &None));
        assert_eq!(status_of(&view, "broken"), StepStatus::Queued);
        assert_eq!(status_of(&view, "after"), StepStatus::Pending);
        h.drive(seed).await;

        let view = h.view(&run_id).await;
        assert_eq!(view.status, RunStatus::Succeeded, "seed {seed}: {:?}", view.error);
        assert_eq!(view.output, Some(json!({"after": "<<BROKEN <alpha>>!>"})));
        let again = &h.provider.calls()[before..];
        assert_eq!(again, ["BROKEN <alpha>", "<BROKEN <alpha>>!"], "seed {seed}: succeeded steps are not called again");
        assert_eq!(status_of(&view, "never"), StepStatus::Skipped, "its own `when` was false");
        assert_eq!(status_of(&view, "needs_never"), StepStatus::Skipped, "kept: nothing it needs re-ran");
        let broken = view.steps.iter().find(|s| s.id == "broken").unwrap();
        assert_eq!(broken.progress.attempts.len(), 1, "the re-run's attempts, not the first run's");
        assert_eq!(view.totals.model_calls, 4, "a, delta, and the re-run broken and after");
        assert_eq!(resets(&h, &run_id).await, ["after", "broken"], "seed {seed}");

        let events = h.store.list_events(&run_id).await.unwrap();
        let retried: Vec<&RunEvent> =
            events.iter().filter(|e| matches!(e.kind, EventKind::RunRetried { .. })).collect();
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].kind, EventKind::RunRetried { generation: 1, steps: vec![id("after"), id("broken")] });
        let ends = events.iter().filter(|e| matches!(e.kind, EventKind::RunFinished { .. })).count();
        assert_eq!(ends, 2, "the failure, then the success");
        assert_eq!(h.engine.sweep().await.unwrap().due, 0, "nothing is left due");
    }
}

#[tokio::test]
async fn a_cancelled_run_is_retried_from_the_steps_that_had_not_run() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [generate("a", "1"), generate("b", "{{ steps.a.text }}")]}), json!({})).await;
    let first = h.steps.try_recv().unwrap();
    h.engine.execute_step(&first).await.unwrap();
    h.engine.cancel(&h.tenant, &run_id).await.unwrap();
    h.drive(1).await;
    assert_eq!(status_of(&h.view(&run_id).await, "b"), StepStatus::Cancelled);

    h.engine.retry(&h.tenant, &run_id, None).await.unwrap();
    h.drive(2).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(h.provider.calls(), ["1", "<1>"]);
}

#[tokio::test]
async fn only_a_failed_or_cancelled_run_that_has_stopped_can_be_retried() {
    let mut h = harness();
    let running = h.submit(json!({"steps": [generate("a", "1")]}), json!({})).await;
    let conflict = h.engine.retry(&h.tenant, &running, None).await;
    assert!(matches!(&conflict, Err(EngineError::Conflict(detail)) if detail.contains("is queued")), "{conflict:?}");
    h.drive(1).await;
    let succeeded = h.engine.retry(&h.tenant, &running, None).await;
    assert!(matches!(&succeeded, Err(EngineError::Conflict(detail)) if detail.contains("fork")), "{succeeded:?}");

    let failed = failed_run(&mut h, 2).await;
    h.engine.retry(&h.tenant, &failed, None).await.unwrap();
    let twice = h.engine.retry(&h.tenant, &failed, None).await;
    assert!(matches!(&twice, Err(EngineError::Conflict(detail)) if detail.contains("is running")), "{twice:?}");
    let other = TenantId::parse("globex").unwrap();
    assert!(matches!(h.engine.retry(&other, &failed, None).await, Err(EngineError::NotFound(_))));
}

#[tokio::test]
async fn a_step_still_running_under_a_live_lease_makes_a_retry_wait() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [generate("a", "BROKEN"), generate("slow", "slow")]}), json!({})).await;
    let messages: Vec<StepMessage> = std::iter::from_fn(|| h.steps.try_recv().ok()).collect();
    let slow = messages.iter().find(|m| m.step_id == id("slow")).unwrap().clone();
    super::durability::claimed_by_a_dead_worker(&mut h, &run_id, "slow", Duration::from_secs(120)).await;
    for message in messages.iter().filter(|m| m.step_id == id("a")) {
        h.engine.execute_step(message).await.unwrap();
    }
    assert_eq!(h.view(&run_id).await.status, RunStatus::Failed);
    let busy = h.engine.retry(&h.tenant, &run_id, None).await;
    assert!(matches!(&busy, Err(EngineError::Conflict(detail)) if detail.contains("`slow`")), "{busy:?}");

    // Once its lease is over, nobody runs it: the retry cancels it and runs it again.
    h.clock.advance(Duration::from_secs(121));
    h.provider.fix();
    h.engine.retry(&h.tenant, &run_id, None).await.unwrap();
    h.drive(3).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded);
    h.engine.execute_step(&slow).await.unwrap();
    assert_eq!(h.provider.calls().iter().filter(|c| *c == "slow").count(), 1);
}

#[tokio::test]
async fn a_retry_with_nothing_to_rerun_is_a_conflict() {
    let mut h = harness();
    let run_id =
        h.submit(json!({"steps": [generate("a", "1")], "output": "{{ steps.a.text | nope }}"}), json!({})).await;
    h.drive(1).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Failed, "the output could not be rendered");
    let nothing = h.engine.retry(&h.tenant, &run_id, None).await;
    assert!(matches!(&nothing, Err(EngineError::Conflict(detail)) if detail.contains("no step to run again")));
}

#[tokio::test]
async fn a_retry_interrupted_before_any_reset_is_finished_by_the_reconciler() {
    let mut h = harness();
    let run_id = failed_run(&mut h, 1).await;
    h.provider.fix();
    h.faults.fail_next("reset_step");
    assert!(h.engine.retry(&h.tenant, &run_id, None).await.is_err());
    let view = h.view(&run_id).await;
    assert_eq!((view.status, status_of(&view, "broken")), (RunStatus::Running, StepStatus::Failed));
    assert_eq!(h.engine.sweep().await.unwrap().followed_up, 0, "not before its grace");

    h.clock.advance(LATER);
    assert_eq!(h.engine.sweep().await.unwrap().followed_up, 1);
    h.drive(2).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded);
    assert_eq!(resets(&h, &run_id).await, ["after", "broken"]);
    assert_eq!(h.engine.sweep().await.unwrap(), SweepReport::default(), "nothing is left due");
}

#[tokio::test]
async fn a_retry_interrupted_between_resets_is_finished_by_the_keys_replay_without_resetting_twice() {
    for (operation, calls) in [("reset_step", 1), ("get_steps", 2), ("send steps", 0), ("finish_retry", 0)] {
        let mut h = harness();
        let run_id = failed_run(&mut h, 1).await;
        h.provider.fix();
        h.faults.fail_after(operation, calls);
        assert!(h.engine.retry(&h.tenant, &run_id, Some("retry-1")).await.is_err(), "{operation}");

        let replay = h.engine.retry(&h.tenant, &run_id, Some("retry-1")).await.unwrap();
        assert!(replay.replayed, "{operation}");
        h.drive(2).await;
        let view = h.view(&run_id).await;
        assert_eq!((view.status, view.generation), (RunStatus::Succeeded, 1), "{operation}");
        assert_eq!(resets(&h, &run_id).await, ["after", "broken"], "{operation}: each step reset once");
        assert_eq!(h.provider.calls().iter().filter(|c| c.starts_with("BROKEN")).count(), 2, "{operation}");
        h.clock.advance(LATER);
        h.engine.sweep().await.unwrap();
        assert!(h.steps.try_recv().is_err(), "{operation}: the replay finished the reset");
    }
}

#[tokio::test]
async fn a_retry_key_claimed_by_a_request_that_died_before_reopening_the_run_is_honoured_once() {
    let mut h = harness();
    let run_id = failed_run(&mut h, 1).await;
    h.provider.fix();
    h.faults.fail_next("retry_run");
    assert!(h.engine.retry(&h.tenant, &run_id, Some("k")).await.is_err());
    assert_eq!(h.view(&run_id).await.status, RunStatus::Failed, "claimed, not reopened");

    assert!(h.engine.retry(&h.tenant, &run_id, Some("k")).await.unwrap().replayed);
    h.drive(2).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded);
    // The same key again answers the same, and does not retry a second time.
    assert!(h.engine.retry(&h.tenant, &run_id, Some("k")).await.unwrap().replayed);
    assert_eq!(h.view(&run_id).await.generation, 1);
    // The key belongs to that request: another run, or a submission, is refused with it.
    let other = h.submit(json!({"steps": [generate("x", "FAIL")]}), json!({})).await;
    h.drive(3).await;
    assert!(matches!(h.engine.retry(&h.tenant, &other, Some("k")).await, Err(EngineError::Conflict(_))));
    let submission = Submission { workflow: json!({"steps": [generate("a", "1")]}), input: json!({}), notify: None };
    assert!(matches!(h.engine.submit(&h.tenant, submission, Some("k")).await, Err(EngineError::Conflict(_))));
}

#[tokio::test]
async fn a_run_failed_again_in_the_middle_of_its_reset_is_left_consistent_for_the_next_retry() {
    let mut h = harness();
    let run_id = failed_run(&mut h, 1).await;
    // `after` is reset, then the reset stops; `broken` still has its failure.
    h.faults.fail_after("reset_step", 1);
    assert!(h.engine.retry(&h.tenant, &run_id, None).await.is_err());
    // The run fails again before anyone finishes the reset (a client cancels it).
    h.engine.cancel(&h.tenant, &run_id).await.unwrap();
    h.clock.advance(LATER);
    h.engine.sweep().await.unwrap();
    h.drive(2).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Cancelled);

    h.provider.fix();
    h.engine.retry(&h.tenant, &run_id, None).await.unwrap();
    h.drive(3).await;
    let view = h.view(&run_id).await;
    assert_eq!((view.status, view.generation), (RunStatus::Succeeded, 2));
}

#[tokio::test]
async fn a_failed_map_step_runs_again_as_a_whole() {
    for seed in 0..5 {
        let mut h = harness();
        let map = json!({"id": "each", "task": "generate", "model": "count:any", "for_each": "input.docs",
                         "prompt": "{{ item }}", "max_concurrency": 2});
        let run_id = h
            .submit(
                json!({"steps": [map, generate("join", "{{ steps.each.items | length }}")]}),
                json!({"docs": ["d0", "BROKEN", "d2", "d3"]}),
            )
            .await;
        h.drive(seed).await;
        assert_eq!(h.view(&run_id).await.status, RunStatus::Failed, "seed {seed}");

        h.provider.fix();
        h.engine.retry(&h.tenant, &run_id, None).await.unwrap();
        h.drive(seed).await;
        let view = h.view(&run_id).await;
        assert_eq!(view.status, RunStatus::Succeeded, "seed {seed}: {:?}", view.error);
        let each = view.steps.iter().find(|s| s.id == "each").unwrap();
        assert_eq!(each.progress.map, Some(MapProgress { items: 4, pending: 0, failed: 0 }), "seed {seed}");
        let items = each.progress.output.as_ref().unwrap()["items"].as_array().unwrap().clone();
        assert!(items.iter().all(|item| item["status"] == "succeeded"), "seed {seed}: {items:?}");
        assert_eq!(h.provider.calls().last().unwrap(), "4", "seed {seed}");
        assert_eq!(h.provider.calls().iter().filter(|c| *c == "BROKEN").count(), 2, "seed {seed}");
    }
}

/// `count:any` at $100 per million tokens each way.
fn priced() -> Harness {
    let prices = PriceTable::default().with("count:any", Price { input_per_million: 100.0, output_per_million: 100.0 });
    harness_with(|router| router.with_prices(prices), None)
}

#[tokio::test]
async fn a_rerun_step_reserves_and_settles_again_and_what_was_spent_stays_committed() {
    let mut h = priced();
    let workflow = json!({"budget_usd": 1.0, "steps": [
        {"id": "a", "task": "generate", "model": "count:any", "prompt": "A", "max_tokens": 100},
        {"id": "b", "task": "generate", "model": "count:any", "prompt": "BROKEN {{ steps.a.text }}", "max_tokens": 100}
    ]});
    let run_id = h.submit(workflow, json!({})).await;
    h.drive(1).await;
    let spent = h.store.get_run(&run_id).await.unwrap().unwrap().budget;
    assert_eq!(spent.settled, [id("a"), id("b")]);
    assert!(spent.reservations.is_empty() && spent.committed_usd > 0.0);

    h.provider.fix();
    h.engine.retry(&h.tenant, &run_id, None).await.unwrap();
    let reopened = h.store.get_run(&run_id).await.unwrap().unwrap().budget;
    assert_eq!(reopened.settled, [id("a")], "b may reserve and settle again");
    assert_eq!(reopened.committed_usd, spent.committed_usd, "what was spent stays committed");
    h.drive(2).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    let after = h.store.get_run(&run_id).await.unwrap().unwrap().budget;
    assert_eq!(after.settled, [id("a"), id("b")]);
    let b_cost = view.steps.iter().find(|s| s.id == "b").unwrap().progress.cost_usd.usd().unwrap();
    assert!((after.committed_usd - spent.committed_usd - b_cost).abs() < 1e-12, "{after:?}");
}

#[tokio::test]
async fn a_retried_run_that_ends_again_is_notified_again_under_another_webhook_id() {
    let (mut h, receiver, notifier, run_id) = notified_failing_run().await;
    let first = h.notifications.try_recv().unwrap();
    notifier.deliver(&first).await.unwrap();

    h.provider.fix();
    h.engine.retry(&h.tenant, &run_id, None).await.unwrap();
    h.drive(2).await;
    let second = h.notifications.try_recv().unwrap();
    assert_eq!(second.generation, 1);
    notifier.deliver(&second).await.unwrap();
    notifier.deliver(&second).await.unwrap();
    // A late retry of the first end's delivery is superseded: the run ended again since.
    notifier.deliver(&NotificationMessage { attempt: 1, ..first }).await.unwrap();

    let received = receiver.received.lock().unwrap().clone();
    let ids: Vec<String> = received
        .iter()
        .map(|webhook| webhook.headers.iter().find(|(k, _)| k == "webhook-id").unwrap().1.clone())
        .collect();
    assert_eq!(ids, [format!("msg_{run_id}"), format!("msg_{run_id}_1"), format!("msg_{run_id}_1")]);
    let last: Value = serde_json::from_slice(&received[2].body).unwrap();
    assert_eq!((&last["data"]["status"], &last["data"]["generation"]), (&json!("succeeded"), &json!(1)));
    let events = format!("{:?}", h.store.list_events(&run_id).await.unwrap());
    assert!(events.contains("the run was retried after the end it reported"), "{events}");
}

/// A run with a notification URL whose step fails until the provider is fixed, and a
/// notifier that records what it sends.
async fn notified_failing_run() -> (Harness, Arc<Receiver>, Notifier, RunId) {
    let mut h = harness();
    let tenants = MemoryTenantDirectory::new().with_key(
        Tenant::new(h.tenant.clone()),
        SigningSecrets::new(WebhookSecret::generate().to_whsec()),
        &"key".to_owned().into(),
    );
    let receiver = Arc::new(Receiver { answer: Ok(204), received: Mutex::new(Vec::new()) });
    let (retry_queue, _) = MemoryQueue::channel();
    let notifier = Notifier {
        store: h.store.clone(),
        secrets: Arc::new(tenants),
        sender: receiver.clone(),
        queue: Arc::new(retry_queue),
        clock: h.clock.clone(),
        schedule: DeliverySchedule(vec![Duration::from_secs(1)]),
    };
    let submission = Submission {
        workflow: json!({"steps": [generate("a", "BROKEN")]}),
        input: json!({}),
        notify: Some(crate::domain::NotifyTarget { url: "http://127.0.0.1:9/hook".into() }),
    };
    let run_id = h.engine.submit(&h.tenant, submission, None).await.unwrap().run_id;
    h.drive(1).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Failed);
    (h, receiver, notifier, run_id)
}

/// `a → b → c`, `d` alone: a run that succeeded.
async fn succeeded_run(h: &mut Harness) -> RunId {
    let run_id = h
        .submit(
            json!({"steps": [
                generate("a", "{{ input.topic }}"),
                generate("b", "B {{ steps.a.text }}"),
                generate("c", "C {{ steps.b.text }}"),
                generate("d", "D")
            ], "output": {"c": "{{ steps.c.text }}", "d": "{{ steps.d.text }}"}}),
            json!({"topic": "rust"}),
        )
        .await;
    h.drive(1).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded);
    run_id
}

fn fork_request(value: Value) -> ForkRequest {
    serde_json::from_value(value).unwrap()
}

async fn fork(h: &Harness, source: &RunId, request: Value) -> Result<crate::engine::Submitted, EngineError> {
    h.engine.fork(&h.tenant, source, fork_request(request), None).await
}

#[tokio::test]
async fn a_fork_reuses_what_is_upstream_and_reruns_from_a_step_and_everything_downstream() {
    for seed in 0..5 {
        let mut h = harness();
        let source = succeeded_run(&mut h).await;
        let before = h.provider.calls().len();
        let forked = fork(&h, &source, json!({"from": ["b"]})).await.unwrap();
        assert!(forked.created);
        h.drive(seed).await;

        let view = h.view(&forked.run_id).await;
        assert_eq!(view.status, RunStatus::Succeeded, "seed {seed}");
        assert_eq!(&h.provider.calls()[before..], ["B <rust>", "C <B <rust>>"], "seed {seed}: a and d not again");
        assert_eq!(view.output, Some(json!({"c": "<C <B <rust>>>", "d": "<D>"})));
        assert_eq!(view.forked_from, Some(ForkedFrom { run_id: source.clone(), reused: vec![id("a"), id("d")] }));
        let a = view.steps.iter().find(|s| s.id == "a").unwrap();
        assert_eq!((a.status, a.progress.reused_from.as_ref()), (StepStatus::Succeeded, Some(&source)));
        assert_eq!(a.progress.output, Some(json!({"text": "<rust>", "finish_reason": "stop"})));
        assert_eq!(a.progress.usage.map(|u| u.input_tokens), Some(2), "shown");
        assert_eq!(view.totals.usage.input_tokens, 4, "seed {seed}: only b and c count");
        assert_eq!(view.totals.model_calls, 2);
        let events = h.store.list_events(&forked.run_id).await.unwrap();
        let forked_event = EventKind::RunForked { from: source.clone(), reused: vec![id("a"), id("d")] };
        assert_eq!(events[0].kind, forked_event);
        assert_eq!(h.view(&source).await.forked_from, None, "the source is untouched");
    }
}

#[tokio::test]
async fn a_fork_applies_overrides_and_the_provider_sees_them() {
    let mut h = harness();
    let source = succeeded_run(&mut h).await;
    let before = h.provider.calls().len();
    let forked =
        fork(&h, &source, json!({"overrides": {"b": {"prompt": "NEW {{ steps.a.text }}", "model": "count:cheap"}}}))
            .await
            .unwrap();
    h.drive(2).await;
    assert_eq!(h.view(&forked.run_id).await.status, RunStatus::Succeeded);
    assert_eq!(&h.provider.calls()[before..], ["NEW <rust>", "C <NEW <rust>>"]);
    assert_eq!(&h.provider.models_called()[before..], ["cheap", "any"]);
}

#[tokio::test]
async fn a_fork_with_another_input_reruns_the_steps_that_read_it() {
    let mut h = harness();
    let source = succeeded_run(&mut h).await;
    let before = h.provider.calls().len();
    let forked = fork(&h, &source, json!({"input": {"topic": "go"}})).await.unwrap();
    h.drive(3).await;
    let view = h.view(&forked.run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(&h.provider.calls()[before..], ["go", "B <go>", "C <B <go>>"], "d reads no input: reused");
    assert_eq!(view.input, json!({"topic": "go"}));
    // The same input as the source's changes nothing: every step would be reused.
    let same = fork(&h, &source, json!({"input": {"topic": "rust"}})).await;
    assert!(matches!(&same, Err(EngineError::Invalid(problems)) if problems[0].detail.contains("reused")), "{same:?}");
}

#[tokio::test]
async fn a_fork_of_a_failed_run_reruns_what_did_not_succeed() {
    let mut h = harness();
    let source = failed_run(&mut h, 1).await;
    h.provider.fix();
    let before = h.provider.calls().len();
    let forked = fork(&h, &source, json!({})).await.unwrap();
    h.drive(2).await;
    let view = h.view(&forked.run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.error);
    // `never` did not succeed in the source, so it runs again (and is skipped again).
    assert_eq!(&h.provider.calls()[before..], ["BROKEN <alpha>", "<BROKEN <alpha>>!"]);
    assert_eq!(view.forked_from.unwrap().reused, [id("a"), id("delta")]);
    assert_eq!(h.view(&source).await.status, RunStatus::Failed, "the source stays as it was");
}

#[tokio::test]
async fn a_fork_is_refused_with_pointers_into_the_request() {
    let mut h = harness();
    let source = succeeded_run(&mut h).await;
    let problems = |result: Result<crate::engine::Submitted, EngineError>| match result {
        Err(EngineError::Invalid(problems)) => problems.into_iter().map(|p| p.pointer).collect::<Vec<_>>(),
        other => panic!("expected problems, got {other:?}"),
    };
    assert_eq!(problems(fork(&h, &source, json!({})).await), [""], "every step would be reused");
    let unknown = fork(&h, &source, json!({"from": ["a", "zz"], "overrides": {"nope": {"prompt": "x"}}})).await;
    assert_eq!(problems(unknown), ["/from/1", "/overrides/nope"]);
    assert_eq!(problems(fork(&h, &source, json!({"overrides": {"b": {"id": "bb"}}})).await), ["/overrides/b/id"]);
    let invalid = fork(&h, &source, json!({"overrides": {"b": {"model": "nope:model", "prompt": null}}})).await;
    let mut pointers = problems(invalid);
    pointers.sort();
    assert_eq!(pointers, ["/overrides/b/model", "/overrides/b/prompt"]);
    let cycle = fork(&h, &source, json!({"overrides": {"a": {"prompt": "{{ steps.c.text }}"}}})).await;
    assert_eq!(problems(cycle), ["/overrides"], "a cycle the override made");

    let running = h.submit(json!({"steps": [generate("x", "1")]}), json!({})).await;
    assert!(matches!(fork(&h, &running, json!({"from": ["x"]})).await, Err(EngineError::Conflict(_))));
}

#[tokio::test]
async fn a_fork_with_an_idempotency_key_creates_one_run() {
    let mut h = harness();
    let source = succeeded_run(&mut h).await;
    let request = || fork_request(json!({"from": ["c"]}));
    let first = h.engine.fork(&h.tenant, &source, request(), Some("fork-1")).await.unwrap();
    let again = h.engine.fork(&h.tenant, &source, request(), Some("fork-1")).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.run_id, again.run_id);
    let other = h.engine.fork(&h.tenant, &source, fork_request(json!({"from": ["b"]})), Some("fork-1")).await;
    assert!(matches!(other, Err(EngineError::Conflict(_))));
    h.drive(4).await;
    assert_eq!(h.view(&first.run_id).await.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn a_forked_run_can_be_retried_and_keeps_its_reused_steps() {
    let mut h = harness();
    let source = succeeded_run(&mut h).await;
    let forked = fork(&h, &source, json!({"overrides": {"c": {"prompt": "BROKEN {{ steps.b.text }}"}}})).await.unwrap();
    h.drive(5).await;
    assert_eq!(h.view(&forked.run_id).await.status, RunStatus::Failed);
    h.provider.fix();
    let before = h.provider.calls().len();
    h.engine.retry(&h.tenant, &forked.run_id, None).await.unwrap();
    h.drive(6).await;
    let view = h.view(&forked.run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(&h.provider.calls()[before..], ["BROKEN <B <rust>>"]);
    let b = view.steps.iter().find(|s| s.id == "b").unwrap();
    assert_eq!(b.progress.reused_from.as_ref(), Some(&source));
}
