//! Every run ends and every client hears: a follow-up broken between any two writes is
//! finished by whoever comes next (a redelivery, a client's retry, the reconciler), a
//! message is never dropped while a step may still need it, the dead-letter handler only
//! fails steps nobody runs, and time limits cannot spin.

use super::*;
use crate::domain::{Lease, MAX_IDLE_REQUEUES, MAX_STEP_CLAIMS, RateLimit, StepState, StepTransition, StepUpdate};
use crate::engine::transitions::{FOLLOW_UP_GRACE, QUEUED_GRACE};
use crate::ports::{Acquired, PortError, RateLimiter};
use crate::routing::RateLimits;

/// Past every grace the reconciler gives.
const LATER: Duration = Duration::from_secs(QUEUED_GRACE.as_secs() + FOLLOW_UP_GRACE.as_secs() + 1);

fn decision() -> ApprovalDecision {
    ApprovalDecision { by: Some("alice".into()), comment: None }
}

fn id(step: &str) -> StepId {
    StepId::parse(step).unwrap()
}

/// Claims `step` as another worker would, with a lease that ends after `lease`, and drops
/// its message: the worker then dies holding it.
pub(super) async fn claimed_by_a_dead_worker(h: &mut Harness, run_id: &RunId, step: &str, lease: Duration) {
    while h.steps.try_recv().is_ok() {}
    let until = h.clock.now() + lease;
    let claim = StepTransition {
        from: vec![StepStatus::Queued],
        update: StepUpdate {
            status: Some(StepStatus::Running),
            lease: Some(Lease { owner: "worker-that-died".into(), until }),
            due: Some(until),
            bump_attempt: true,
            ..StepUpdate::default()
        },
        ..StepTransition::default()
    };
    h.store.transition_step(run_id, &id(step), claim).await.unwrap().unwrap();
}

async fn step_state(h: &Harness, run_id: &RunId, step: &str) -> StepState {
    h.store.get_steps(run_id).await.unwrap().into_iter().find(|s| s.step_id == id(step)).unwrap()
}

#[tokio::test]
async fn an_approval_whose_follow_up_failed_is_finished_by_the_clients_retry() {
    let mut h = harness();
    let run_id = h.submit(approval_workflow(), json!({"text": "hi"})).await;
    h.drive(1).await;
    h.faults.fail_next("release_step");
    assert!(h.engine.decide_approval(&h.tenant, &run_id, &id("review"), true, decision(), "key_test").await.is_err());

    // The same decision again is taken (not "not waiting for approval"), and finishes the job.
    h.engine.decide_approval(&h.tenant, &run_id, &id("review"), true, decision(), "key_test").await.unwrap();
    h.drive(2).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded);
    let opposite = h.engine.decide_approval(&h.tenant, &run_id, &id("review"), false, decision(), "key_test").await;
    assert!(matches!(opposite, Err(EngineError::Conflict(_))), "{opposite:?}");
}

#[tokio::test]
async fn an_approval_whose_follow_up_failed_is_finished_by_the_reconciler() {
    let mut h = harness();
    let run_id = h.submit(approval_workflow(), json!({"text": "hi"})).await;
    h.drive(3).await;
    h.faults.fail_next("send steps");
    assert!(h.engine.decide_approval(&h.tenant, &run_id, &id("review"), true, decision(), "key_test").await.is_err());
    assert!(h.steps.try_recv().is_err(), "the release was counted but its message never sent");

    assert_eq!(h.engine.sweep().await.unwrap().followed_up, 0, "not before the grace");
    h.clock.advance(LATER);
    assert_eq!(h.engine.sweep().await.unwrap().followed_up, 1);
    h.drive(4).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded);
    assert_eq!(h.engine.sweep().await.unwrap(), SweepReport::default(), "nothing is left due");
}

/// A one-step run with a notification URL.
async fn notified(h: &Harness) -> RunId {
    let submission = Submission {
        workflow: json!({"steps": [generate("a", "1")]}),
        input: json!({}),
        notify: Some(crate::domain::NotifyTarget { url: "http://127.0.0.1:9/hook".into() }),
    };
    h.engine.submit(&h.tenant, submission, None).await.unwrap().run_id
}

#[tokio::test]
async fn a_run_whose_notification_was_not_queued_is_notified_by_the_redelivery() {
    let mut h = harness();
    let run_id = notified(&h).await;
    let message = h.steps.try_recv().unwrap();
    h.faults.fail_next("send notifications");
    assert!(h.engine.execute_step(&message).await.is_err());
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded, "the run ended");
    assert!(h.notifications.try_recv().is_err());

    h.engine.execute_step(&message).await.unwrap();
    assert_eq!(h.notifications.try_recv().unwrap().run_id, run_id);
    assert!(h.notifications.try_recv().is_err(), "once");
    h.engine.execute_step(&message).await.unwrap();
    assert!(h.notifications.try_recv().is_err(), "a follow-up done is not done again");
    assert_eq!(h.provider.calls().len(), 1);
}

#[tokio::test]
async fn a_run_whose_notification_was_not_queued_is_notified_by_the_reconciler() {
    let mut h = harness();
    let run_id = notified(&h).await;
    let message = h.steps.try_recv().unwrap();
    h.faults.fail_next("send notifications");
    assert!(h.engine.execute_step(&message).await.is_err());

    h.clock.advance(LATER);
    let report = h.engine.sweep().await.unwrap();
    assert!(report.followed_up >= 1, "{report:?}");
    assert_eq!(h.notifications.try_recv().unwrap().run_id, run_id);
    assert_eq!(h.engine.sweep().await.unwrap(), SweepReport::default());
    assert!(h.notifications.try_recv().is_err(), "once");
}

#[tokio::test]
async fn a_cancellation_that_stopped_half_way_is_finished_by_its_retry() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [generate("a", "1"), generate("b", "{{ steps.a.text }}")]}), json!({})).await;
    h.faults.fail_next("transition_step"); // cancelling the first unstarted step
    assert!(h.engine.cancel(&h.tenant, &run_id).await.is_err());
    h.engine.cancel(&h.tenant, &run_id).await.unwrap();
    h.drive(5).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Cancelled);
    assert!(view.steps.iter().all(|s| s.status == StepStatus::Cancelled), "{:?}", view.steps);
    assert!(h.provider.calls().is_empty());
}

#[tokio::test]
async fn a_dead_letter_whose_follow_up_failed_is_finished_when_it_comes_back() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [generate("a", "1"), generate("b", "{{ steps.a.text }}")]}), json!({})).await;
    let message = h.steps.try_recv().unwrap();
    h.faults.fail_next("transition_run"); // failing the run
    assert!(h.engine.fail_undeliverable(&message).await.is_err());
    assert_eq!(h.view(&run_id).await.status, RunStatus::Queued);

    h.engine.fail_undeliverable(&message).await.unwrap();
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(status_of(&view, "b"), StepStatus::Cancelled);
}

#[tokio::test]
async fn an_expired_wait_whose_follow_up_failed_is_finished_by_the_next_sweep() {
    let mut h = harness();
    let workflow = json!({"steps": [{"id": "review", "task": "approval", "timeout_ms": 300}, generate("b", "x")]});
    let run_id = h.submit(workflow, json!({})).await;
    h.drive(6).await;
    h.clock.advance(Duration::from_millis(350));
    h.faults.fail_next("transition_run");
    let first = h.engine.sweep().await.unwrap();
    assert_eq!(first.errors, 1, "{first:?}");

    h.clock.advance(LATER);
    h.engine.sweep().await.unwrap();
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(view.steps[0].progress.error.as_ref().unwrap().kind, ErrorKind::DeadlineExceeded);
}

#[tokio::test(start_paused = true)]
async fn a_message_for_a_step_under_a_live_lease_comes_back_when_the_lease_ends() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [generate("a", "1")]}), json!({})).await;
    let message = h.steps.try_recv().unwrap();
    claimed_by_a_dead_worker(&mut h, &run_id, "a", Duration::from_secs(60)).await;

    h.engine.execute_step(&message).await.unwrap();
    assert!(h.steps.try_recv().is_err(), "not before the lease ends");
    tokio::time::sleep(Duration::from_secs(62)).await;
    let again = h.steps.try_recv().expect("the message came back");
    h.clock.advance(Duration::from_secs(62));
    h.engine.execute_step(&again).await.unwrap();
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn the_reconciler_sends_again_a_step_whose_worker_died() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [generate("a", "1")]}), json!({})).await;
    claimed_by_a_dead_worker(&mut h, &run_id, "a", Duration::from_secs(60)).await;
    assert_eq!(h.engine.sweep().await.unwrap().resent, 0, "the lease is live");

    h.clock.advance(Duration::from_secs(61));
    assert_eq!(h.engine.sweep().await.unwrap().resent, 1);
    assert_eq!(h.engine.sweep().await.unwrap().resent, 0, "once per grace");
    h.drive(7).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded);
    assert_eq!(h.provider.calls().len(), 1);
}

#[tokio::test]
async fn a_run_whose_first_message_was_lost_is_accepted_and_started_by_the_reconciler() {
    let mut h = harness();
    h.faults.fail_next("send steps");
    let run_id = h.submit(json!({"steps": [generate("a", "1")]}), json!({})).await;
    assert!(h.steps.try_recv().is_err());

    h.clock.advance(LATER);
    assert_eq!(h.engine.sweep().await.unwrap().resent, 1);
    h.drive(8).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn the_dead_letter_handler_fails_only_steps_nobody_runs() {
    let mut h = harness();
    let run_id = h.submit(approval_workflow(), json!({"text": "hi"})).await;
    h.drive(9).await;
    let waiting = StepMessage { run_id: run_id.clone(), step_id: id("review") };
    h.engine.fail_undeliverable(&waiting).await.unwrap();
    assert_eq!(step_state(&h, &run_id, "review").await.status, StepStatus::WaitingApproval);
    let finished = StepMessage { run_id: run_id.clone(), step_id: id("draft") };
    h.engine.fail_undeliverable(&finished).await.unwrap();
    assert_eq!(step_state(&h, &run_id, "draft").await.status, StepStatus::Succeeded);

    let run_id = h.submit(json!({"steps": [generate("a", "1")]}), json!({})).await;
    claimed_by_a_dead_worker(&mut h, &run_id, "a", Duration::from_secs(60)).await;
    let leased = StepMessage { run_id: run_id.clone(), step_id: id("a") };
    h.engine.fail_undeliverable(&leased).await.unwrap();
    assert_eq!(step_state(&h, &run_id, "a").await.status, StepStatus::Running, "under a live lease");
    h.clock.advance(Duration::from_secs(61));
    h.engine.fail_undeliverable(&leased).await.unwrap();
    assert_eq!(h.view(&run_id).await.status, RunStatus::Failed, "the lease ended: nobody runs it");
}

#[tokio::test]
async fn a_message_for_an_ended_run_leaves_a_step_under_a_live_lease_to_its_worker() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [generate("a", "FAIL"), generate("b", "2")]}), json!({})).await;
    let messages: Vec<StepMessage> = std::iter::from_fn(|| h.steps.try_recv().ok()).collect();
    let b = messages.iter().find(|m| m.step_id == id("b")).unwrap().clone();
    let a = messages.iter().find(|m| m.step_id == id("a")).unwrap().clone();
    claimed_by_a_dead_worker(&mut h, &run_id, "b", Duration::from_secs(60)).await;
    h.engine.execute_step(&a).await.unwrap();
    assert_eq!(h.view(&run_id).await.status, RunStatus::Failed);

    h.engine.execute_step(&b).await.unwrap();
    assert_eq!(step_state(&h, &run_id, "b").await.status, StepStatus::Running, "its worker may still finish");
    h.clock.advance(Duration::from_secs(61));
    h.engine.sweep().await.unwrap();
    h.drive(10).await;
    assert_eq!(step_state(&h, &run_id, "b").await.status, StepStatus::Cancelled, "once its lease ended");
}

#[tokio::test(start_paused = true)]
async fn a_timeout_longer_than_the_invocation_budget_still_calls_the_model() {
    let mut h = harness_with(|router| router, Some(Duration::from_secs(90)));
    let step = json!({"id": "a", "task": "generate", "model": "count:any", "prompt": "1", "timeout_ms": 900_000});
    let run_id = h.submit(json!({"steps": [step]}), json!({})).await;
    h.drive(11).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded);
    assert_eq!(h.provider.calls().len(), 1);
}

/// A rate limiter that always asks to wait `wait`.
struct AlwaysWait(Duration);

#[async_trait]
impl RateLimiter for AlwaysWait {
    async fn acquire(&self, _scope: &str, _limit: RateLimit) -> Result<Acquired, PortError> {
        Ok(Acquired::Wait(self.0))
    }
}

fn waiting_for_tokens(wait: Duration) -> impl FnOnce(ProviderRouter) -> ProviderRouter {
    move |router| {
        router.with_rate_limits(RateLimits {
            limiter: Arc::new(AlwaysWait(wait)),
            limits: BTreeMap::from([("count".to_owned(), RateLimit { per_minute: 1, burst: 1 })]),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_step_handed_back_again_and_again_without_a_call_fails_instead_of_spinning() {
    let mut h = harness_with(waiting_for_tokens(Duration::from_secs(600)), Some(Duration::from_secs(90)));
    let run_id = h.submit(json!({"steps": [generate("a", "1")]}), json!({})).await;
    for _ in 0..=MAX_IDLE_REQUEUES {
        let message = tokio::time::timeout(Duration::from_secs(3600), h.steps.recv()).await.unwrap().unwrap();
        h.engine.execute_step(&message).await.unwrap();
    }
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(view.steps[0].progress.error.as_ref().unwrap().kind, ErrorKind::DeadlineExceeded);
    assert!(h.provider.calls().is_empty());
    let queued =
        h.store.list_events(&run_id).await.unwrap().iter().filter(|e| format!("{e:?}").contains("Queued")).count();
    assert!(queued <= 1, "hand-backs without a call write no history ({queued} queued events)");
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_wait_longer_than_the_invocation_has_left_hands_the_step_back() {
    let mut h = harness_with(waiting_for_tokens(Duration::from_secs(3)), Some(Duration::from_millis(2500)));
    let run_id = h.submit(json!({"steps": [generate("a", "1")]}), json!({})).await;
    let message = h.steps.try_recv().unwrap();
    let started = tokio::time::Instant::now();
    h.engine.execute_step(&message).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "slept {:?} past the budget", started.elapsed());
    assert_eq!(step_state(&h, &run_id, "a").await.status, StepStatus::Queued);
}

#[tokio::test]
async fn a_step_every_worker_died_on_fails_as_undeliverable() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [generate("a", "1")]}), json!({})).await;
    let message = h.steps.try_recv().unwrap();
    for _ in 0..MAX_STEP_CLAIMS {
        claimed_by_a_dead_worker(&mut h, &run_id, "a", Duration::ZERO).await;
        let back = StepTransition {
            or_lease_expired_before: Some(h.clock.now() + Duration::from_secs(1)),
            update: StepUpdate { status: Some(StepStatus::Queued), ..StepUpdate::default() },
            ..StepTransition::default()
        };
        h.store.transition_step(&run_id, &id("a"), back).await.unwrap().unwrap();
    }
    h.engine.execute_step(&message).await.unwrap();
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(view.steps[0].progress.error.as_ref().unwrap().kind, ErrorKind::Undeliverable);
    assert!(h.provider.calls().is_empty());
}

#[tokio::test]
async fn a_run_whose_stored_state_is_gone_fails_with_a_clear_error_and_its_client_hears() {
    let mut h = harness();
    let run_id = notified(&h).await;
    while h.steps.try_recv().is_ok() {} // the worker never got it
    h.clock.advance(LATER);
    h.faults.corrupt_next("get_run");
    let report = h.engine.sweep().await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    let error = view.error.unwrap();
    assert_eq!(error.kind, ErrorKind::PayloadMissing);
    assert!(error.message.contains("is missing"), "{}", error.message);
    assert_eq!(h.notifications.try_recv().unwrap().run_id, run_id);
    assert!(h.provider.calls().is_empty());
}
