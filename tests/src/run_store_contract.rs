//! The `RunStore` contract: one suite of checks that every adapter (memory, DynamoDB) must
//! pass, so the engine can rely on the same conditional semantics everywhere.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chorus::domain::{
    Attempt, ErrorKind, EventKind, ForkedFrom, Lease, MapProgress, Reservation, Reserved, Run, RunEvent, RunId,
    RunRetry, RunStatus, Settled, Settlement, Start, StepError, StepId, StepReset, StepState, StepStatus,
    StepTransition, StepUpdate, TenantId, WorkflowDefinition, WorkflowName, WorkflowRef,
};
use chorus::ports::{
    CreateOutcome, DueRef, IdempotencyClaim, ItemOutputs, NewRun, RetryKeyClaim, RunStore, RunTransition,
};
use serde_json::json;

/// One test per clause against the stores `$make` returns (an `async fn() -> Arc<dyn
/// RunStore>`, called once per test), in `mod $adapter`; attributes after the factory go on
/// every test: `run_store_contract!(dynamo_run_store, make_dynamo_run_store, #[ignore = "..."]);`
#[macro_export]
macro_rules! run_store_contract {
    ($adapter:ident, $make:path $(, #[$attr:meta])* $(,)?) => {
        $crate::contract_tests!(run_store_contract, [tokio::test], $adapter, $make, [$(#[$attr])*], [
            creates_and_reads_back,
            idempotency_keys_are_per_tenant_and_first_wins,
            transitions_apply_only_from_the_expected_status,
            concurrent_claims_have_one_winner,
            expired_leases_can_be_reclaimed_and_only_the_owner_completes,
            releases_count_each_upstream_once,
            run_transitions_are_conditional,
            runs_are_listed_newest_first_per_tenant_with_paging,
            a_release_to_zero_queues_the_step,
            due_steps_and_runs_are_found_until_they_move_on,
            large_payloads_read_back_whole,
            reservations_fit_the_budget_and_replace_what_the_step_held,
            a_settlement_trades_the_reservation_for_the_cost_once,
            concurrent_reservations_take_exactly_what_fits,
            a_crashed_workers_reservation_is_replaced_by_the_next_claim_or_settled_away,
            map_items_are_kept_apart_from_the_steps_and_listed_in_order,
            map_items_take_transitions_releases_and_due_times_like_steps,
            each_map_item_is_counted_once_on_its_map_step,
            a_retry_reopens_an_ended_run_once_and_forgets_its_rerun_steps_as_counted,
            a_step_is_reset_once_and_only_while_its_run_runs_in_that_generation,
            retry_keys_are_claimed_once_and_shared_with_submissions,
            a_forked_runs_reused_steps_are_created_with_their_outputs,
            an_item_of_a_map_step_a_retry_reset_counts_for_nothing,
        ]);
    };
}

/// A tenant of its own for each check, so stores that share a table do not see each
/// other's runs.
fn fresh_tenant() -> String {
    format!("t{:016x}", fastrand::u64(..))
}

fn id(s: &str) -> StepId {
    StepId::parse(s).unwrap()
}

fn new_run(tenant: &str, at_ms: i64, key: Option<&str>) -> NewRun {
    let now = jiff::Timestamp::from_millisecond(at_ms).unwrap();
    let definition: WorkflowDefinition = serde_json::from_value(json!({"name": "t", "steps": [
        {"id": "a", "task": "generate", "model": "local:echo", "prompt": "x"},
        {"id": "b", "task": "generate", "model": "local:echo", "prompt": "{{ steps.a.text }}"},
        {"id": "c", "task": "generate", "model": "local:echo", "prompt": "{{ steps.a.text }}"}
    ]}))
    .unwrap();
    let run = Run {
        id: RunId::generate(now),
        tenant: TenantId::parse(tenant).unwrap(),
        status: RunStatus::Queued,
        definition,
        input: json!({"topic": "ports"}),
        notify: None,
        output: None,
        error: None,
        pending_sinks: 2,
        created_at: now,
        updated_at: now,
        finished_at: None,
        due: None,
        budget: Default::default(),
        // Started from a registered workflow: the reference reads back with the run.
        workflow: Some(WorkflowRef { name: WorkflowName::parse("ports").unwrap(), version: 3, hash: "ab".repeat(32) }),
        generation: 0,
        forked_from: None,
        parent: None,
        depth: 0,
    };
    NewRun {
        run,
        steps: vec![
            StepState::new(id("a"), 0, vec![id("b"), id("c")]),
            StepState::new(id("b"), 1, Vec::new()),
            StepState::new(id("c"), 1, Vec::new()),
        ],
        idempotency: key.map(|k| IdempotencyClaim { key: k.to_owned(), request_hash: format!("hash-{at_ms}") }),
        events: vec![RunEvent::run(now, EventKind::RunSubmitted)],
    }
}

async fn create(store: &dyn RunStore, new: NewRun) -> RunId {
    let run_id = new.run.id.clone();
    assert_eq!(store.create_run(new).await.ok(), Some(CreateOutcome::Created));
    run_id
}

async fn step(store: &dyn RunStore, run_id: &RunId, step: &str) -> StepState {
    let steps = store.get_steps(run_id).await.unwrap();
    steps.into_iter().find(|s| s.step_id.as_str() == step).unwrap_or_else(|| panic!("no step {step}"))
}

fn move_to(from: StepStatus, to: StepStatus) -> StepTransition {
    StepTransition {
        from: vec![from],
        update: StepUpdate { status: Some(to), ..StepUpdate::default() },
        ..StepTransition::default()
    }
}

pub async fn creates_and_reads_back(store: Arc<dyn RunStore>) {
    let new = new_run("acme", 1_000, None);
    let expected = new.run.clone();
    let run_id = create(store.as_ref(), new).await;
    assert_eq!(store.get_run(&run_id).await.ok().flatten(), Some(expected));
    let steps = store.get_steps(&run_id).await.unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(step(store.as_ref(), &run_id, "a").await.status, StepStatus::Queued);
    assert_eq!(step(store.as_ref(), &run_id, "b").await.control.pending_deps, 1);
    let unknown = RunId::generate(jiff::Timestamp::now());
    assert_eq!(store.get_run(&unknown).await.ok(), Some(None));
    let events = store.list_events(&run_id).await.unwrap();
    assert!(matches!(events.as_slice(), [RunEvent { kind: EventKind::RunSubmitted, .. }]));
}

pub async fn idempotency_keys_are_per_tenant_and_first_wins(store: Arc<dyn RunStore>) {
    let (acme, globex) = (fresh_tenant(), fresh_tenant());
    let first = create(store.as_ref(), new_run(&acme, 1_000, Some("k1"))).await;
    let replay = store.create_run(new_run(&acme, 2_000, Some("k1"))).await.ok();
    assert_eq!(replay, Some(CreateOutcome::KeyTaken { run_id: first.clone(), request_hash: "hash-1000".into() }));
    assert!(store.get_run(&first).await.unwrap().is_some(), "the first run stays");
    create(store.as_ref(), new_run(&globex, 3_000, Some("k1"))).await;
}

pub async fn transitions_apply_only_from_the_expected_status(store: Arc<dyn RunStore>) {
    let run_id = create(store.as_ref(), new_run("acme", 1_000, None)).await;
    let wrong = store.transition_step(&run_id, &id("a"), move_to(StepStatus::Pending, StepStatus::Queued)).await;
    let wrong = wrong.map_err(|e| format!("{e:?}"));
    assert_eq!(wrong, Ok(None));

    let now = jiff::Timestamp::now();
    let mut to_done = move_to(StepStatus::Queued, StepStatus::Succeeded);
    to_done.update.output = Some(json!({"text": "hi"}));
    to_done.update.finished_at = Some(now);
    to_done.events = vec![RunEvent::step_status(now, &id("a"), StepStatus::Succeeded, None)];
    let after = store.transition_step(&run_id, &id("a"), to_done).await.ok().flatten();
    let after = after.expect("transition from queued should apply");
    assert_eq!(after.status, StepStatus::Succeeded);
    assert_eq!(after.progress.output, Some(json!({"text": "hi"})));
    assert_eq!(step(store.as_ref(), &run_id, "a").await, after);
    assert_eq!(store.list_events(&run_id).await.unwrap().len(), 2);
}

fn claim(owner: &str, now: jiff::Timestamp, lease_for: Duration) -> StepTransition {
    StepTransition {
        from: vec![StepStatus::Queued],
        or_lease_expired_before: Some(now),
        update: StepUpdate {
            status: Some(StepStatus::Running),
            lease: Some(Lease { owner: owner.to_owned(), until: now + lease_for }),
            bump_attempt: true,
            ..StepUpdate::default()
        },
        ..StepTransition::default()
    }
}

pub async fn concurrent_claims_have_one_winner(store: Arc<dyn RunStore>) {
    let run_id = create(store.as_ref(), new_run("acme", 1_000, None)).await;
    let now = jiff::Timestamp::now();
    let claims = (0..8).map(|i| {
        let store = store.clone();
        let run_id = run_id.clone();
        tokio::spawn(async move {
            store.transition_step(&run_id, &id("a"), claim(&format!("w{i}"), now, Duration::from_secs(60))).await
        })
    });
    let mut winners = 0;
    for handle in claims {
        if let Ok(Ok(Some(_))) = handle.await {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(step(store.as_ref(), &run_id, "a").await.control.attempt, 1);
}

pub async fn expired_leases_can_be_reclaimed_and_only_the_owner_completes(store: Arc<dyn RunStore>) {
    let run_id = create(store.as_ref(), new_run("acme", 1_000, None)).await;
    let start = jiff::Timestamp::now();
    let first = store.transition_step(&run_id, &id("a"), claim("w1", start, Duration::from_secs(60))).await;
    assert!(matches!(first, Ok(Some(_))));
    let early = store.transition_step(&run_id, &id("a"), claim("w2", start, Duration::from_secs(60))).await;
    assert_eq!(early.ok(), Some(None), "a live lease must not be taken over");
    let later = start + Duration::from_secs(61);
    let taken = store.transition_step(&run_id, &id("a"), claim("w2", later, Duration::from_secs(60))).await;
    assert_eq!(taken.ok().flatten().map(|s| s.control.attempt), Some(2));

    let complete = |owner: &str| StepTransition {
        from: vec![StepStatus::Running],
        lease_owner: Some(owner.to_owned()),
        update: StepUpdate { status: Some(StepStatus::Succeeded), ..StepUpdate::default() },
        ..StepTransition::default()
    };
    assert_eq!(store.transition_step(&run_id, &id("a"), complete("w1")).await.map_err(|e| format!("{e:?}")), Ok(None));
    let done = store.transition_step(&run_id, &id("a"), complete("w2")).await.ok().flatten();
    let done = done.expect("the owner completes");
    assert_eq!((done.status, done.control.lease), (StepStatus::Succeeded, None));
}

pub async fn releases_count_each_upstream_once(store: Arc<dyn RunStore>) {
    let mut new = new_run("acme", 1_000, None);
    new.steps[1].control.pending_deps = 2;
    let run_id = create(store.as_ref(), new).await;
    let b = id("b");
    let once = store.release_step(&run_id, &b, &id("a"), true).await.ok();
    assert_eq!(once.map(|s| (s.control.pending_deps, s.control.blocked)), Some((1, false)));
    let twice = store.release_step(&run_id, &b, &id("a"), true).await.ok();
    assert_eq!(twice.map(|s| s.control.pending_deps), Some(1), "the same upstream counts once");
    let blocked = store.release_step(&run_id, &b, &id("c"), false).await.ok();
    assert_eq!(blocked.map(|s| (s.control.pending_deps, s.control.blocked)), Some((0, true)));

    let after_b = store.release_run(&run_id, &b).await.ok().map(|r| r.pending_sinks);
    let again = store.release_run(&run_id, &b).await.ok().map(|r| r.pending_sinks);
    let after_c = store.release_run(&run_id, &id("c")).await.ok().map(|r| r.pending_sinks);
    assert_eq!((after_b, again, after_c), (Some(1), Some(1), Some(0)));
}

pub async fn run_transitions_are_conditional(store: Arc<dyn RunStore>) {
    let run_id = create(store.as_ref(), new_run("acme", 1_000, None)).await;
    let now = jiff::Timestamp::now();
    let finish = |from: Vec<RunStatus>| RunTransition {
        from,
        to: RunStatus::Succeeded,
        output: Some(json!({"done": true})),
        error: None,
        finished_at: Some(now),
        due: Some(now),
        events: vec![RunEvent::run(now, EventKind::RunFinished { status: RunStatus::Succeeded })],
    };
    assert_eq!(store.transition_run(&run_id, finish(vec![RunStatus::Running])).await.ok(), Some(None));
    let done = store.transition_run(&run_id, finish(RunStatus::UNFINISHED.to_vec())).await.ok().flatten();
    let done = done.expect("queued → succeeded applies");
    assert_eq!(
        (done.status, done.output, done.finished_at, done.due),
        (RunStatus::Succeeded, Some(json!({"done": true})), Some(now), Some(now))
    );
    assert_eq!(store.transition_run(&run_id, finish(RunStatus::UNFINISHED.to_vec())).await.ok(), Some(None));
}

pub async fn runs_are_listed_newest_first_per_tenant_with_paging(store: Arc<dyn RunStore>) {
    let name = fresh_tenant();
    let tenant = TenantId::parse(&name).unwrap();
    let mut ids = Vec::new();
    for at in 1..=5 {
        ids.push(create(store.as_ref(), new_run(&name, at * 1_000, None)).await);
    }
    create(store.as_ref(), new_run(&fresh_tenant(), 9_000, None)).await;
    ids.reverse();

    let first = store.list_runs(&tenant, None, 2).await.unwrap();
    let after = first.next_after.clone().expect("more pages");
    let second = store.list_runs(&tenant, Some(&after), 2).await.unwrap();
    let after = second.next_after.clone().expect("more pages");
    let last = store.list_runs(&tenant, Some(&after), 2).await.unwrap();
    assert_eq!(last.next_after, None);
    let listed: Vec<RunId> = [first, second, last].into_iter().flat_map(|p| p.runs).map(|r| r.id).collect();
    assert_eq!(listed, ids);
}

pub async fn a_release_to_zero_queues_the_step(store: Arc<dyn RunStore>) {
    let run_id = create(store.as_ref(), new_run("acme", 1_000, None)).await;
    let released = store.release_step(&run_id, &id("b"), &id("a"), true).await.unwrap();
    assert_eq!((released.status, released.control.pending_deps), (StepStatus::Queued, 0));
    assert_eq!(step(store.as_ref(), &run_id, "b").await.status, StepStatus::Queued);
    let claim = claim("w1", jiff::Timestamp::now(), Duration::from_secs(60));
    let claimed = store.transition_step(&run_id, &id("b"), claim).await.unwrap();
    assert!(claimed.is_some(), "a released step can be claimed");

    let blocked = store.release_step(&run_id, &id("c"), &id("a"), false).await.unwrap();
    assert_eq!((blocked.status, blocked.control.blocked), (StepStatus::Pending, true));
    let skip = store.transition_step(&run_id, &id("c"), move_to(StepStatus::Pending, StepStatus::Skipped)).await;
    assert_eq!(skip.unwrap().map(|s| s.status), Some(StepStatus::Skipped), "a blocked step is still pending");
}

pub async fn due_steps_and_runs_are_found_until_they_move_on(store: Arc<dyn RunStore>) {
    let run_id = create(store.as_ref(), new_run("acme", 1_000, None)).await;
    // Far in the future, so entries left by other checks on a shared table are due first.
    let due = jiff::Timestamp::now() + Duration::from_secs(400 * 24 * 3600);
    let mut wait = move_to(StepStatus::Queued, StepStatus::WaitingApproval);
    wait.update.due = Some(due);
    let waiting = store.transition_step(&run_id, &id("a"), wait).await.unwrap().expect("queued → waiting");
    assert_eq!(waiting.control.due, Some(due));
    let mut end = RunTransition::status(RunStatus::UNFINISHED.to_vec(), RunStatus::Failed);
    end.due = Some(due);
    assert_eq!(store.transition_run(&run_id, end).await.unwrap().map(|run| run.due), Some(Some(due)));

    let step = DueRef { run_id: run_id.clone(), step_id: Some(id("a")) };
    let run = DueRef { run_id: run_id.clone(), step_id: None };
    let found = |entries: Vec<DueRef>| (entries.contains(&step), entries.contains(&run));
    let before = store.due(due - Duration::from_secs(1), 10_000).await.unwrap();
    assert_eq!(found(before), (false, false), "not due before their time");
    let after = store.due(due + Duration::from_secs(1), 10_000).await.unwrap();
    assert_eq!(found(after), (true, true), "due after it");

    let decide = move_to(StepStatus::WaitingApproval, StepStatus::Succeeded);
    let decided = store.transition_step(&run_id, &id("a"), decide).await.unwrap();
    assert_eq!(decided.map(|s| s.control.due), Some(None), "a transition without a due time clears it");
    let done = RunTransition::status(vec![RunStatus::Failed], RunStatus::Failed);
    assert_eq!(store.transition_run(&run_id, done).await.unwrap().map(|run| run.due), Some(None));
    let after = store.due(due + Duration::from_secs(1), 10_000).await.unwrap();
    assert_eq!(found(after), (false, false), "nothing is due once both moved on");
}

pub async fn large_payloads_read_back_whole(store: Arc<dyn RunStore>) {
    // Far above what one DynamoDB item may hold inline.
    let big = "chorus ".repeat(80 * 1024);
    let mut new = new_run("acme", 1_000, None);
    new.run.input = json!({"text": big});
    let expected = new.run.clone();
    let run_id = create(store.as_ref(), new).await;
    assert_eq!(store.get_run(&run_id).await.unwrap(), Some(expected));

    let mut done = move_to(StepStatus::Queued, StepStatus::Succeeded);
    done.update.output = Some(json!({"text": big}));
    let after = store.transition_step(&run_id, &id("a"), done).await.unwrap().expect("queued → succeeded");
    assert_eq!(after.progress.output, Some(json!({"text": big})));
    assert_eq!(step(store.as_ref(), &run_id, "a").await.progress.output, Some(json!({"text": big})));

    let finish = RunTransition {
        from: RunStatus::UNFINISHED.to_vec(),
        to: RunStatus::Succeeded,
        output: Some(json!({"all": big})),
        error: None,
        finished_at: None,
        due: None,
        events: Vec::new(),
    };
    let ended = store.transition_run(&run_id, finish).await.unwrap().expect("the run ends");
    assert_eq!(ended.output, Some(json!({"all": big})));
    let read = store.get_run(&run_id).await.unwrap().expect("the run exists");
    assert_eq!(read.output, Some(json!({"all": big})));
}

/// A reservation against a budget of $1. The amounts in these checks are binary fractions,
/// so float and decimal arithmetic agree exactly.
fn reserve(usd: f64, replaces: Option<f64>) -> Reservation {
    Reservation { budget_usd: 1.0, replaces, usd }
}

async fn reserved(store: &dyn RunStore, run_id: &RunId, step: &str, reservation: Reservation) -> Reserved {
    store.reserve_budget(run_id, &id(step), reservation).await.unwrap()
}

async fn settled(store: &dyn RunStore, run_id: &RunId, step: &str, held: Option<f64>, cost_usd: f64) -> Settled {
    store.settle_budget(run_id, &id(step), Settlement { held, cost_usd }).await.unwrap()
}

async fn ledger(store: &dyn RunStore, run_id: &RunId) -> chorus::domain::BudgetLedger {
    store.get_run(run_id).await.unwrap().expect("the run exists").budget
}

pub async fn reservations_fit_the_budget_and_replace_what_the_step_held(store: Arc<dyn RunStore>) {
    let run_id = create(store.as_ref(), new_run("acme", 1_000, None)).await;
    let store = store.as_ref();
    assert_eq!(ledger(store, &run_id).await, Default::default(), "a new run has spent and reserved nothing");
    assert_eq!(reserved(store, &run_id, "a", reserve(0.5, None)).await, Reserved::Held);
    assert_eq!(reserved(store, &run_id, "b", reserve(0.375, None)).await, Reserved::Held);
    let over = reserved(store, &run_id, "c", reserve(0.25, None)).await;
    assert_eq!(over, Reserved::OverBudget { committed_usd: 0.875 });
    // A reservation that names what the step no longer holds changes nothing.
    let stale = reserved(store, &run_id, "a", reserve(0.25, None)).await;
    assert_eq!(stale, Reserved::Changed { current: Some(0.5) });
    // Lowering a step's reservation gives budget back; then exactly the budget fits.
    assert_eq!(reserved(store, &run_id, "a", reserve(0.125, Some(0.5))).await, Reserved::Held);
    assert_eq!(reserved(store, &run_id, "c", reserve(0.5, None)).await, Reserved::Held);
    let after = ledger(store, &run_id).await;
    assert_eq!(after.committed_usd, 1.0);
    assert_eq!(after.reservations, BTreeMap::from([(id("a"), 0.125), (id("b"), 0.375), (id("c"), 0.5)]));
}

pub async fn a_settlement_trades_the_reservation_for_the_cost_once(store: Arc<dyn RunStore>) {
    let run_id = create(store.as_ref(), new_run("acme", 1_000, None)).await;
    let store = store.as_ref();
    assert_eq!(reserved(store, &run_id, "a", reserve(0.5, None)).await, Reserved::Held);
    let stale = settled(store, &run_id, "a", None, 0.125).await;
    assert_eq!(stale, Settled::Changed { current: Some(0.5) }, "a settlement names what the step holds");
    assert_eq!(settled(store, &run_id, "a", Some(0.5), 0.125).await, Settled::Done);
    assert_eq!(settled(store, &run_id, "a", Some(0.5), 0.125).await, Settled::Already, "once per step");
    assert_eq!(reserved(store, &run_id, "a", reserve(0.25, None)).await, Reserved::Settled, "an ended step");
    // A step that spent without holding anything counts its cost all the same.
    assert_eq!(settled(store, &run_id, "b", None, 0.25).await, Settled::Done);
    let after = ledger(store, &run_id).await;
    assert_eq!((after.committed_usd, after.reservations.len()), (0.375, 0));
    assert_eq!(after.settled, [id("a"), id("b")]);
}

pub async fn concurrent_reservations_take_exactly_what_fits(store: Arc<dyn RunStore>) {
    let run_id = create(store.as_ref(), new_run("acme", 1_000, None)).await;
    // Eight steps reserve a quarter each against a budget that fits three of them.
    let tries = (0..8).map(|i| {
        let (store, run_id) = (store.clone(), run_id.clone());
        let reservation = Reservation { budget_usd: 0.875, replaces: None, usd: 0.25 };
        tokio::spawn(async move { store.reserve_budget(&run_id, &id(&format!("p{i}")), reservation).await })
    });
    let mut outcomes = Vec::new();
    for handle in tries {
        outcomes.push(handle.await.unwrap().unwrap());
    }
    let held = outcomes.iter().filter(|outcome| **outcome == Reserved::Held).count();
    let over = outcomes.iter().filter(|outcome| matches!(outcome, Reserved::OverBudget { .. })).count();
    assert_eq!((held, over), (3, 5), "{outcomes:?}");
    let after = ledger(store.as_ref(), &run_id).await;
    assert_eq!((after.committed_usd, after.reservations.len()), (0.75, 3));
}

pub async fn a_crashed_workers_reservation_is_replaced_by_the_next_claim_or_settled_away(store: Arc<dyn RunStore>) {
    let run_id = create(store.as_ref(), new_run("acme", 1_000, None)).await;
    let store = store.as_ref();
    // A worker reserves for `a` and dies: only a quarter is left for the others.
    assert_eq!(reserved(store, &run_id, "a", reserve(0.75, None)).await, Reserved::Held);
    assert!(matches!(reserved(store, &run_id, "b", reserve(0.5, None)).await, Reserved::OverBudget { .. }));
    // The step's next claim reads the reservation with the run and replaces it in one write.
    let left = ledger(store, &run_id).await.reservations.get(&id("a")).copied();
    assert_eq!(left, Some(0.75));
    assert_eq!(reserved(store, &run_id, "a", reserve(0.25, left)).await, Reserved::Held);
    assert_eq!(reserved(store, &run_id, "b", reserve(0.5, None)).await, Reserved::Held);
    // A step that ends without another call has its reservation settled away.
    assert_eq!(settled(store, &run_id, "a", Some(0.25), 0.0).await, Settled::Done);
    let after = ledger(store, &run_id).await;
    assert_eq!((after.committed_usd, after.reservations), (0.5, BTreeMap::from([(id("b"), 0.5)])));
}

/// Step `a` of a fresh run started as a map of `count` items (the first `slots` queued,
/// each later one waiting on the one `slots` before it), created in shuffled order.
async fn started_map(store: &dyn RunStore, count: u32, slots: u32) -> RunId {
    let new = new_run("acme", 1_000, None);
    let run = new.run.clone();
    let run_id = create(store, new).await;
    let mut items: Vec<StepState> = (0..count)
        .map(|i| {
            let next = (i + slots < count).then(|| id("a").item(i + slots));
            StepState::new(id("a").item(i), u32::from(i >= slots), next.into_iter().collect())
        })
        .collect();
    fastrand::shuffle(&mut items);
    store.create_items(&run, items).await.unwrap();
    let start = StepTransition {
        from: vec![StepStatus::Queued],
        update: StepUpdate {
            status: Some(StepStatus::Running),
            map: Some(MapProgress { items: count, pending: count, failed: 0 }),
            ..StepUpdate::default()
        },
        ..StepTransition::default()
    };
    store.transition_step(&run_id, &id("a"), start).await.unwrap().expect("queued → running map");
    run_id
}

pub async fn map_items_are_kept_apart_from_the_steps_and_listed_in_order(store: Arc<dyn RunStore>) {
    let run_id = started_map(store.as_ref(), 12, 3).await;
    let steps = store.get_steps(&run_id).await.unwrap();
    assert_eq!(steps.len(), 3, "a run's steps do not include its map items");
    let listed = store.list_items(&run_id, &id("a"), ItemOutputs::Within(usize::MAX)).await.unwrap().unwrap();
    let order: Vec<String> = listed.iter().map(|item| item.step_id.to_string()).collect();
    let expected: Vec<String> = (0..12).map(|i| format!("a[{i}]")).collect();
    assert_eq!(order, expected, "items in index order (10 after 9)");
    assert_eq!(listed[2].status, StepStatus::Queued);
    assert_eq!((listed[3].status, listed[3].control.pending_deps), (StepStatus::Pending, 1));
    assert_eq!(listed[0].control.dependants, [id("a").item(3)]);
    let one = store.get_step(&run_id, &id("a").item(7)).await.unwrap().expect("an item reads on its own");
    assert_eq!(one.step_id, id("a").item(7));
    let none = store.list_items(&run_id, &id("b"), ItemOutputs::Skip).await.unwrap();
    assert_eq!(none, Some(Vec::new()), "b is no map");
    assert_eq!(store.get_step(&run_id, &id("a").item(12)).await.unwrap(), None);
    let map = store.get_step(&run_id, &id("a")).await.unwrap().expect("a step reads on its own too");
    assert_eq!(map.progress.map, Some(MapProgress { items: 12, pending: 12, failed: 0 }));
}

pub async fn map_items_take_transitions_releases_and_due_times_like_steps(store: Arc<dyn RunStore>) {
    let run_id = started_map(store.as_ref(), 4, 2).await;
    let (first, waiting) = (id("a").item(0), id("a").item(2));
    let claimed = store.transition_step(&run_id, &first, claim("w1", jiff::Timestamp::now(), Duration::from_secs(60)));
    assert!(claimed.await.unwrap().is_some(), "a queued item is claimed like a step");
    let mut done = move_to(StepStatus::Running, StepStatus::Succeeded);
    done.update.output = Some(json!({"text": "x".repeat(70 * 1024)}));
    // Far in the future, so entries left by other checks on a shared table are due first.
    let due = jiff::Timestamp::now() + Duration::from_secs(401 * 24 * 3600);
    done.update.due = Some(due);
    let finished = store.transition_step(&run_id, &first, done).await.unwrap().expect("running → succeeded");
    assert_eq!(finished.progress.output.unwrap()["text"].as_str().map(str::len), Some(70 * 1024));
    let found = store.due(due + Duration::from_secs(1), 10_000).await.unwrap();
    assert!(found.contains(&DueRef { run_id: run_id.clone(), step_id: Some(first.clone()) }), "an item can be due");

    let released = store.release_step(&run_id, &waiting, &first, true).await.unwrap();
    assert_eq!(released.status, StepStatus::Queued, "the item waiting on the first one's slot is free");
    let again = store.release_step(&run_id, &waiting, &first, true).await.unwrap();
    assert_eq!(again.status, StepStatus::Queued, "released once");
    let listed = store.list_items(&run_id, &id("a"), ItemOutputs::Within(100 * 1024)).await.unwrap().unwrap();
    assert_eq!(listed[0].progress.output.as_ref().map(|o| o["text"].as_str().map(str::len)), Some(Some(70 * 1024)));
    let states = store.list_items(&run_id, &id("a"), ItemOutputs::Skip).await.unwrap().unwrap();
    assert!(states.iter().all(|item| item.progress.output.is_none()), "states only");
    let over = store.list_items(&run_id, &id("a"), ItemOutputs::Within(64 * 1024)).await.unwrap();
    assert_eq!(over, None, "outputs over the bound are not loaded");
}

pub async fn each_map_item_is_counted_once_on_its_map_step(store: Arc<dyn RunStore>) {
    let run_id = started_map(store.as_ref(), 3, 3).await;
    let counts: Vec<_> = (0..8)
        .map(|_| {
            let (store, run_id) = (store.clone(), run_id.clone());
            tokio::spawn(async move { store.count_item(&run_id, &id("a").item(0), true).await })
        })
        .collect();
    for count in counts {
        assert_eq!(count.await.unwrap().unwrap().step_id, id("a"), "concurrent counts of one item");
    }
    let map = store.count_item(&run_id, &id("a").item(1), false).await.unwrap();
    assert_eq!(map.progress.map, Some(MapProgress { items: 3, pending: 1, failed: 1 }), "item 0 counted once");

    let again = store.count_item(&run_id, &id("a").item(1), false).await.unwrap();
    assert_eq!(again.progress.map, Some(MapProgress { items: 3, pending: 1, failed: 1 }));
    let last = store.count_item(&run_id, &id("a").item(2), true).await.unwrap();
    assert_eq!(last.progress.map, Some(MapProgress { items: 3, pending: 0, failed: 1 }));
    assert!(store.get_step(&run_id, &id("a").item(1)).await.unwrap().unwrap().control.counted);
    // Items of one map ending together all count.
    let run_id = started_map(store.as_ref(), 16, 16).await;
    let counts: Vec<_> = (0..16)
        .map(|i| {
            let (store, run_id) = (store.clone(), run_id.clone());
            tokio::spawn(async move { store.count_item(&run_id, &id("a").item(i), i % 4 != 0).await })
        })
        .collect();
    for count in counts {
        count.await.unwrap().unwrap();
    }
    let map = store.get_step(&run_id, &id("a")).await.unwrap().unwrap();
    assert_eq!(map.progress.map, Some(MapProgress { items: 16, pending: 0, failed: 4 }), "concurrent items all count");
}

/// Ends the run `failed`, its follow-up done.
async fn fail(store: &dyn RunStore, run_id: &RunId) {
    let failed = RunTransition::status(RunStatus::UNFINISHED.to_vec(), RunStatus::Failed);
    assert!(store.transition_run(run_id, failed).await.unwrap().is_some(), "the run fails");
}

fn retry(generation: u32, rerun: &[&str], pending_sinks: u32) -> RunRetry {
    let now = jiff::Timestamp::now();
    RunRetry {
        generation,
        rerun: rerun.iter().map(|step| id(step)).collect(),
        pending_sinks,
        due: now + Duration::from_secs(60),
        events: vec![RunEvent::run(now, EventKind::RunRetried { generation, steps: Vec::new() })],
    }
}

pub async fn a_retry_reopens_an_ended_run_once_and_forgets_its_rerun_steps_as_counted(store: Arc<dyn RunStore>) {
    let run_id = create(store.as_ref(), new_run("acme", 1_000, None)).await;
    let store = store.as_ref();
    assert_eq!(store.retry_run(&run_id, retry(1, &["b"], 1)).await.unwrap(), None, "not ended");
    // `b` and `c` were counted as finished sinks and settled; `a` settled.
    assert_eq!(store.release_run(&run_id, &id("b")).await.unwrap().pending_sinks, 1);
    assert_eq!(store.release_run(&run_id, &id("c")).await.unwrap().pending_sinks, 0);
    for step in ["a", "b", "c"] {
        assert_eq!(settled(store, &run_id, step, None, 0.125).await, Settled::Done);
    }
    let mut end = RunTransition::status(RunStatus::UNFINISHED.to_vec(), RunStatus::Failed);
    end.due = Some(jiff::Timestamp::now());
    end.error = Some(StepError::new(ErrorKind::StepFailed, "b failed"));
    end.finished_at = Some(jiff::Timestamp::now());
    store.transition_run(&run_id, end).await.unwrap().expect("the run fails");
    assert_eq!(store.retry_run(&run_id, retry(1, &["b"], 1)).await.unwrap(), None, "its follow-up is not done");
    store.transition_run(&run_id, RunTransition::status(vec![RunStatus::Failed], RunStatus::Failed)).await.unwrap();
    assert_eq!(store.retry_run(&run_id, retry(2, &["b"], 1)).await.unwrap(), None, "not the next generation");

    let reopened = store.retry_run(&run_id, retry(1, &["b"], 1)).await.unwrap().expect("failed → running");
    assert_eq!((reopened.status, reopened.generation, reopened.pending_sinks), (RunStatus::Running, 1, 1));
    assert_eq!((&reopened.error, reopened.finished_at, &reopened.output), (&None, None, &None));
    assert!(reopened.due.is_some(), "due until the resets are done");
    assert_eq!(reopened.budget.settled, [id("a"), id("c")], "b may settle again");
    assert_eq!(reopened.budget.committed_usd, 0.375, "what was spent stays committed");
    assert_eq!(store.get_run(&run_id).await.unwrap(), Some(reopened));
    assert_eq!(store.retry_run(&run_id, retry(1, &["b"], 1)).await.unwrap(), None, "once");
    let events = store.list_events(&run_id).await.unwrap();
    assert!(events.iter().any(|e| matches!(e.kind, EventKind::RunRetried { generation: 1, .. })));

    // `b` counts again as a finished sink; `c` was not forgotten.
    assert_eq!(store.release_run(&run_id, &id("c")).await.unwrap().pending_sinks, 1);
    assert_eq!(store.release_run(&run_id, &id("b")).await.unwrap().pending_sinks, 0);
    assert_eq!(settled(store, &run_id, "b", None, 0.125).await, Settled::Done);

    assert!(!store.finish_retry(&run_id, 2).await.unwrap(), "another generation's reset");
    assert!(store.finish_retry(&run_id, 1).await.unwrap());
    assert_eq!(store.get_run(&run_id).await.unwrap().map(|run| run.due), Some(None));
}

fn reset(generation: u32, pending_deps: u32, released_by: &[&str]) -> StepReset {
    let now = jiff::Timestamp::now();
    StepReset {
        generation,
        start: Start { pending_deps, blocked: false, released_by: released_by.iter().map(|s| id(s)).collect() },
        due: (pending_deps == 0).then(|| now + Duration::from_secs(90)),
        events: vec![RunEvent::step_status(now, &id("a"), StepStatus::Queued, Some("run again".into()))],
    }
}

pub async fn a_step_is_reset_once_and_only_while_its_run_runs_in_that_generation(store: Arc<dyn RunStore>) {
    let run_id = create(store.as_ref(), new_run("acme", 1_000, None)).await;
    let store = store.as_ref();
    let now = jiff::Timestamp::now();
    let mut failed = move_to(StepStatus::Queued, StepStatus::Failed);
    failed.update.error = Some(StepError::new(ErrorKind::InvalidRequest, "no"));
    failed.update.output = Some(json!({"text": "partial"}));
    failed.update.attempts = vec![Attempt { provider: "p".into(), model: "m".into(), latency_ms: 5, error: None }];
    failed.update.bump_attempt = true;
    failed.events = vec![RunEvent::step_status(now, &id("a"), StepStatus::Failed, None)];
    store.transition_step(&run_id, &id("a"), failed).await.unwrap().expect("queued → failed");
    assert_eq!(store.reset_step(&run_id, &id("a"), reset(1, 0, &[])).await.unwrap(), None, "the run is not reopened");
    fail(store, &run_id).await;
    store.retry_run(&run_id, retry(1, &["a", "b", "c"], 2)).await.unwrap().expect("reopened");
    assert_eq!(store.reset_step(&run_id, &id("a"), reset(2, 0, &[])).await.unwrap(), None, "another generation");
    assert_eq!(store.reset_step(&run_id, &id("b"), reset(1, 1, &[])).await.unwrap(), None, "b has not ended");

    let again = store.reset_step(&run_id, &id("a"), reset(1, 0, &[])).await.unwrap().expect("reset");
    assert_eq!((again.status, again.control.generation, again.control.attempt), (StepStatus::Queued, 1, 0));
    assert_eq!((&again.progress.error, &again.progress.output), (&None, &None));
    assert!(again.progress.attempts.is_empty() && again.control.due.is_some());
    assert_eq!(again.control.dependants, [id("b"), id("c")], "its place in the graph is kept");
    assert_eq!(step(store, &run_id, "a").await, again);
    assert_eq!(store.reset_step(&run_id, &id("a"), reset(1, 0, &[])).await.unwrap(), None, "once");
    // Its history is kept: the failure, then the reset.
    let events = store.list_events(&run_id).await.unwrap();
    let of_a: Vec<&EventKind> = events.iter().filter(|e| e.step_id == Some(id("a"))).map(|e| &e.kind).collect();
    assert!(
        matches!(
            of_a.as_slice(),
            [
                EventKind::StepStatusChanged { status: StepStatus::Failed, .. },
                EventKind::StepStatusChanged { status: StepStatus::Queued, .. }
            ]
        ),
        "{of_a:?}"
    );
    // The reset step runs like any other.
    let claim = claim("w1", jiff::Timestamp::now(), Duration::from_secs(60));
    assert!(store.transition_step(&run_id, &id("a"), claim).await.unwrap().is_some(), "a reset step can be claimed");

    // A step waiting on a re-run dependency is pending, and is released by it as usual.
    store.transition_step(&run_id, &id("c"), move_to(StepStatus::Pending, StepStatus::Cancelled)).await.unwrap();
    let c = store.reset_step(&run_id, &id("c"), reset(1, 1, &[])).await.unwrap().expect("reset");
    assert_eq!((c.status, c.control.pending_deps, c.control.released_by.len()), (StepStatus::Pending, 1, 0));
    let released = store.release_step(&run_id, &id("c"), &id("a"), true).await.unwrap();
    assert_eq!((released.status, released.control.pending_deps), (StepStatus::Queued, 0));

    // Once the run has ended again, nothing more is reset in that generation.
    fail(store, &run_id).await;
    store.transition_step(&run_id, &id("b"), move_to(StepStatus::Pending, StepStatus::Cancelled)).await.unwrap();
    assert_eq!(store.reset_step(&run_id, &id("b"), reset(1, 0, &["a"])).await.unwrap(), None, "the run ended");
}

pub async fn retry_keys_are_claimed_once_and_shared_with_submissions(store: Arc<dyn RunStore>) {
    let tenant_name = fresh_tenant();
    let tenant = TenantId::parse(&tenant_name).unwrap();
    // Created now: a key older than a day is free again where keys expire (DynamoDB).
    let created_ms = jiff::Timestamp::now().as_millisecond();
    let run_id = create(store.as_ref(), new_run(&tenant_name, created_ms, Some("submitted"))).await;
    let now = jiff::Timestamp::now();
    let claim = |key: &str| IdempotencyClaim { key: key.to_owned(), request_hash: "retry-hash".to_owned() };
    let first = store.claim_retry_key(&tenant, &claim("r1"), &run_id, 1, now).await.unwrap();
    assert_eq!(first, RetryKeyClaim::Claimed);
    let again = store.claim_retry_key(&tenant, &claim("r1"), &run_id, 2, now).await.unwrap();
    let taken = RetryKeyClaim::Taken { run_id: run_id.clone(), request_hash: "retry-hash".into(), generation: Some(1) };
    assert_eq!(again, taken, "the first claim stays");
    // One key space: a submission finds a retry's key taken, and a retry a submission's.
    let submission = store.create_run(new_run(&tenant_name, created_ms + 1, Some("r1"))).await.unwrap();
    assert_eq!(submission, CreateOutcome::KeyTaken { run_id: run_id.clone(), request_hash: "retry-hash".into() });
    let on_submitted = store.claim_retry_key(&tenant, &claim("submitted"), &run_id, 1, now).await.unwrap();
    let submitted =
        RetryKeyClaim::Taken { run_id: run_id.clone(), request_hash: format!("hash-{created_ms}"), generation: None };
    assert_eq!(on_submitted, submitted);
    let other_tenant = TenantId::parse(&fresh_tenant()).unwrap();
    assert_eq!(
        store.claim_retry_key(&other_tenant, &claim("r1"), &run_id, 1, now).await.unwrap(),
        RetryKeyClaim::Claimed
    );
}

pub async fn a_forked_runs_reused_steps_are_created_with_their_outputs(store: Arc<dyn RunStore>) {
    let source = RunId::generate(jiff::Timestamp::now());
    // Far above what one DynamoDB item may hold inline.
    let big = json!({"text": "chorus ".repeat(80 * 1024)});
    let mut new = new_run("acme", 1_000, None);
    new.run.forked_from = Some(ForkedFrom { run_id: source.clone(), reused: vec![id("a")] });
    new.run.pending_sinks = 2;
    let reused = &mut new.steps[0];
    reused.status = StepStatus::Succeeded;
    reused.progress.output = Some(big.clone());
    reused.progress.reused_from = Some(source.clone());
    reused.progress.model = Some("echo".into());
    new.steps[1] = Start { pending_deps: 0, blocked: false, released_by: vec![id("a")] }.state(id("b"), Vec::new());
    let expected = new.clone();
    let run_id = create(store.as_ref(), new).await;
    assert_eq!(store.get_run(&run_id).await.unwrap(), Some(expected.run));
    let a = step(store.as_ref(), &run_id, "a").await;
    assert_eq!(a, expected.steps[0]);
    assert_eq!(store.get_step(&run_id, &id("a")).await.unwrap(), Some(expected.steps[0].clone()));
    assert_eq!(step(store.as_ref(), &run_id, "b").await, expected.steps[1], "released by the reused step");
}

pub async fn an_item_of_a_map_step_a_retry_reset_counts_for_nothing(store: Arc<dyn RunStore>) {
    let new = new_run("acme", 1_000, None);
    let run = new.run.clone();
    let run_id = create(store.as_ref(), new).await;
    let item = id("a").item(0);
    store.create_items(&run, vec![StepState::new(item.clone(), 0, Vec::new())]).await.unwrap();
    // `a` is not started (no `map`): the item is left over from before a retry.
    let map = store.count_item(&run_id, &item, true).await.unwrap();
    assert_eq!((map.step_id, map.progress.map), (id("a"), None));
    // Once `a` starts its items, they count.
    let mut start = move_to(StepStatus::Queued, StepStatus::Running);
    start.update.map = Some(MapProgress { items: 1, pending: 1, failed: 0 });
    store.transition_step(&run_id, &id("a"), start).await.unwrap().expect("queued → running");
    let counted = store.count_item(&run_id, &item, true).await.unwrap();
    assert_eq!(counted.progress.map, Some(MapProgress { items: 1, pending: 0, failed: 0 }));
}
