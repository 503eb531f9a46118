//! Honest money: parallel branches cannot overshoot a budget together (each call's estimate
//! is reserved on the run before it is made, and settled against its cost after), a model
//! without a price is refused under a budget unless the workflow allows it, and a
//! reservation left by a crashed worker never holds the budget for good.

use super::*;
use crate::domain::{Reservation, Reserved};
use crate::engine::transitions::{FOLLOW_UP_GRACE, QUEUED_GRACE};
use crate::routing::{Price, PriceTable};

/// `count:any` costs $100 per million tokens each way: a call with `max_tokens` 1000 and a
/// one-token prompt is estimated at 1001 tokens, $0.1001, and costs 5 tokens ($0.0005).
/// `count:cheap` costs a thousandth of that.
fn prices() -> PriceTable {
    PriceTable::default()
        .with("count:any", Price { input_per_million: 100.0, output_per_million: 100.0 })
        .with("count:cheap", Price { input_per_million: 0.1, output_per_million: 0.1 })
}

const ESTIMATE: f64 = 0.1001;
const COST: f64 = 0.0005;
/// Fits one `count:any` estimate, not two.
const BUDGET: f64 = 0.15;

fn priced_harness() -> Harness {
    harness_with(|router| router.with_prices(prices()), None)
}

/// A step on `count:any` estimated at [`ESTIMATE`].
fn branch(id: &str, fallbacks: &[&str]) -> Value {
    json!({"id": id, "task": "generate", "model": "count:any", "prompt": id.to_uppercase(), "max_tokens": 1000,
           "fallbacks": fallbacks})
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

async fn run_of(h: &Harness, run_id: &RunId) -> crate::domain::Run {
    h.store.get_run(run_id).await.unwrap().unwrap()
}

fn step_view<'a>(view: &'a RunView, id: &str) -> &'a StepView {
    view.steps.iter().find(|s| s.id == id).unwrap()
}

#[tokio::test]
async fn two_parallel_branches_cannot_both_spend_a_budget_that_fits_one_call() {
    for seed in 0..10 {
        let mut h = priced_harness();
        let workflow = json!({"budget_usd": BUDGET, "steps": [branch("left", &[]), branch("right", &[])]});
        let run_id = h.submit(workflow, json!({})).await;
        h.drive(seed).await;

        assert_eq!(h.provider.calls().len(), 1, "seed {seed}: one call fits, so one is made");
        let view = h.view(&run_id).await;
        let failed: Vec<&StepView> = view.steps.iter().filter(|s| s.status == StepStatus::Failed).collect();
        assert_eq!(failed.len(), 1, "seed {seed}");
        let error = failed[0].progress.error.as_ref().unwrap();
        assert_eq!(error.kind, ErrorKind::BudgetExceeded, "seed {seed}");
        assert!(error.message.contains("reserved by steps still running"), "{}", error.message);
        assert!(failed[0].progress.attempts.iter().all(|a| a.latency_ms == 0), "never sent");
        assert_eq!(view.status, RunStatus::Failed, "a required step failed");

        // The call that was made is settled: its reservation traded for its cost.
        let ledger = run_of(&h, &run_id).await.budget;
        assert!(ledger.reservations.is_empty(), "seed {seed}: {ledger:?}");
        assert!(close(ledger.committed_usd, COST), "seed {seed}: {ledger:?}");
        assert!(close(view.totals.cost_usd, COST) && view.totals.cost_known);
    }
}

#[tokio::test]
async fn a_branch_that_does_not_fit_falls_back_to_a_cheaper_model() {
    for seed in 0..10 {
        let mut h = priced_harness();
        let workflow = json!({"budget_usd": BUDGET, "steps": [branch("left", &["count:cheap"]), branch("right", &["count:cheap"])]});
        let run_id = h.submit(workflow, json!({})).await;
        h.drive(seed).await;

        let mut models = h.provider.models_called();
        models.sort();
        assert_eq!(models, ["any", "cheap"], "seed {seed}: one expensive call fits, the other branch goes cheap");
        let view = h.view(&run_id).await;
        assert_eq!(view.status, RunStatus::Succeeded, "seed {seed}");
        let cheap = view.steps.iter().find(|s| s.progress.model.as_deref() == Some("cheap")).unwrap();
        let kinds: Vec<Option<ErrorKind>> =
            cheap.progress.attempts.iter().map(|a| a.error.as_ref().map(|e| e.kind)).collect();
        assert_eq!(kinds, [Some(ErrorKind::BudgetExceeded), None], "seed {seed}");
        let ledger = run_of(&h, &run_id).await.budget;
        assert!(ledger.reservations.is_empty() && close(ledger.committed_usd, COST + COST / 1000.0), "{ledger:?}");
    }
}

#[tokio::test]
async fn a_model_without_a_price_is_refused_under_a_budget() {
    // The harness's price table is empty: `count:any` is a hosted model with no price.
    let mut h = harness();
    let run_id = h.submit(json!({"budget_usd": 1.0, "steps": [generate("a", "hi")]}), json!({})).await;
    h.drive(1).await;

    assert!(h.provider.calls().is_empty(), "an unpriced call is never sent under a budget");
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    let error = step_view(&view, "a").progress.error.clone().unwrap();
    assert_eq!(error.kind, ErrorKind::PriceUnknown);
    assert!(error.message.contains("`count:any` has no price"), "{}", error.message);
    assert!(error.message.contains("\"allow_unpriced_models\": true"), "{}", error.message);
}

#[tokio::test]
async fn with_the_opt_in_an_unpriced_model_runs_and_its_cost_shows_as_unknown() {
    let mut h = harness();
    let workflow = json!({"budget_usd": 1.0, "allow_unpriced_models": true, "steps": [generate("a", "hi")]});
    let run_id = h.submit(workflow, json!({})).await;
    h.drive(2).await;

    assert_eq!(h.provider.calls(), ["hi"]);
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    let json = serde_json::to_value(&view).unwrap();
    let step = &json["steps"][0];
    assert_eq!((&step["cost_usd"], &step["cost_known"]), (&Value::Null, &json!(false)), "{step}");
    let totals = &json["totals"];
    assert_eq!((&totals["cost_usd"], &totals["cost_known"]), (&json!(0.0), &json!(false)), "a lower bound: {totals}");
    // Nothing could be reserved for it, and an unknown cost counts as nothing.
    let ledger = run_of(&h, &run_id).await.budget;
    assert!(ledger.reservations.is_empty() && ledger.committed_usd == 0.0, "{ledger:?}");

    // Without a budget every model may be called; an unpriced one's cost is unknown all the same.
    let run_id = h.submit(json!({"steps": [generate("b", "ho")]}), json!({})).await;
    h.drive(3).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    assert!(!step_view(&view, "b").cost_known && !view.totals.cost_known);
}

/// Past every grace the reconciler gives.
const LATER: Duration = Duration::from_secs(QUEUED_GRACE.as_secs() + FOLLOW_UP_GRACE.as_secs() + 1);

/// Claims `step` as a worker that then reserves `usd` of the budget and dies; the step's
/// queued messages are dropped with it.
async fn reserved_by_a_dead_worker(h: &mut Harness, run_id: &RunId, step: &str, usd: f64) {
    super::durability::claimed_by_a_dead_worker(h, run_id, step, Duration::from_secs(60)).await;
    let step = StepId::parse(step).unwrap();
    let reservation = Reservation { budget_usd: BUDGET, replaces: None, usd };
    assert_eq!(h.store.reserve_budget(run_id, &step, reservation).await.unwrap(), Reserved::Held);
}

#[tokio::test]
async fn a_reservation_left_by_a_crashed_worker_is_replaced_when_its_step_runs_again() {
    let mut h = priced_harness();
    let run_id = h.submit(json!({"budget_usd": BUDGET, "steps": [branch("a", &[])]}), json!({})).await;
    // The dead worker's reservation leaves less than this call's estimate free.
    reserved_by_a_dead_worker(&mut h, &run_id, "a", 0.14).await;

    h.clock.advance(LATER);
    assert_eq!(h.engine.sweep().await.unwrap().resent, 1, "the lease ended: the step is sent again");
    h.drive(4).await;

    // The new claim's reservation replaced the dead one in the same write, so it fitted.
    assert_eq!(h.provider.calls().len(), 1);
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded);
    let ledger = run_of(&h, &run_id).await.budget;
    assert!(ledger.reservations.is_empty() && close(ledger.committed_usd, COST), "{ledger:?}");
}

#[tokio::test]
async fn a_step_that_ends_without_calling_releases_a_crashed_workers_reservation() {
    let mut h = priced_harness();
    let mut optional = branch("a", &[]);
    optional["optional"] = json!(true);
    let run_id = h.submit(json!({"budget_usd": BUDGET, "steps": [optional, branch("b", &[])]}), json!({})).await;
    reserved_by_a_dead_worker(&mut h, &run_id, "a", 0.14).await;
    let message = |step: &str| StepMessage { run_id: run_id.clone(), step_id: StepId::parse(step).unwrap() };

    // Its lease ended, and its message gave up: the dead letter fails the step, and its
    // follow-up settles the reservation away.
    h.clock.advance(LATER);
    h.engine.fail_undeliverable(&message("a")).await.unwrap();
    let ledger = run_of(&h, &run_id).await.budget;
    assert!(ledger.reservations.is_empty() && ledger.committed_usd == 0.0, "{ledger:?}");

    // The budget is whole again for the other branch.
    h.engine.execute_step(&message("b")).await.unwrap();
    h.drive(5).await;
    let view = h.view(&run_id).await;
    assert_eq!((status_of(&view, "a"), status_of(&view, "b")), (StepStatus::Failed, StepStatus::Succeeded));
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(h.provider.calls(), ["B"]);
}

#[tokio::test]
async fn a_settlement_cut_short_by_a_crash_is_made_by_the_re_driven_follow_up() {
    let mut h = priced_harness();
    let run_id = h.submit(json!({"budget_usd": BUDGET, "steps": [branch("a", &[])]}), json!({})).await;
    let message = h.steps.try_recv().unwrap();
    h.faults.fail_next("settle_budget");
    assert!(h.engine.execute_step(&message).await.is_err());
    assert_eq!(status_of(&h.view(&run_id).await, "a"), StepStatus::Succeeded, "the result was stored");
    let ledger = run_of(&h, &run_id).await.budget;
    assert_eq!(ledger.reservations.values().copied().collect::<Vec<_>>(), [ESTIMATE], "still held: {ledger:?}");

    h.clock.advance(LATER);
    assert!(h.engine.sweep().await.unwrap().followed_up >= 1);
    let ledger = run_of(&h, &run_id).await.budget;
    assert!(ledger.reservations.is_empty() && close(ledger.committed_usd, COST), "{ledger:?}");
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded);
    // Settled once: a redelivery changes nothing.
    h.engine.execute_step(&message).await.unwrap();
    assert!(close(run_of(&h, &run_id).await.budget.committed_usd, COST));
    assert_eq!(h.provider.calls().len(), 1);
}

#[tokio::test]
async fn a_reservation_the_store_cannot_take_hands_the_step_back_without_a_call() {
    let mut h = priced_harness();
    let run_id = h.submit(json!({"budget_usd": BUDGET, "steps": [branch("a", &[])]}), json!({})).await;
    let message = h.steps.try_recv().unwrap();
    h.faults.fail_next("reserve_budget");
    h.engine.execute_step(&message).await.unwrap();
    let view = h.view(&run_id).await;
    assert_eq!(status_of(&view, "a"), StepStatus::Queued, "handed back to try again");
    assert!(step_view(&view, "a").progress.attempts.is_empty(), "no model was skipped for it");
    assert!(h.provider.calls().is_empty());
}
