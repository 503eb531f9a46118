//! Map steps (`for_each`) under duplicated, shuffled deliveries: every item runs once, the
//! output keeps the list's order, at most `max_concurrency` items run at once, failures
//! count against `tolerate_failures`, and a crash in an item's follow-up is re-driven.

use super::*;
use crate::engine::transitions::{FOLLOW_UP_GRACE, QUEUED_GRACE};
use crate::ports::ItemOutputs;

fn map_step(tolerate: Value, concurrency: u32) -> Value {
    json!({
        "id": "each", "task": "generate", "model": "count:any",
        "for_each": "input.docs", "prompt": "{{ index }}:{{ item }}",
        "max_concurrency": concurrency, "tolerate_failures": tolerate
    })
}

fn docs(count: usize, failing: &[usize]) -> Value {
    let docs: Vec<String> =
        (0..count).map(|i| if failing.contains(&i) { format!("FAIL {i}") } else { format!("doc{i}") }).collect();
    json!({ "docs": docs })
}

/// Runs messages like [`Harness::drive`], and records how many items were ever running at once.
async fn drive_counting_running(h: &mut Harness, run_id: &RunId, seed: u64) -> usize {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut most = 0;
    loop {
        let mut batch = Vec::new();
        while let Ok(message) = h.steps.try_recv() {
            batch.push(message.clone());
            batch.push(message);
        }
        if batch.is_empty() {
            return most;
        }
        rng.shuffle(&mut batch);
        let each = StepId::parse("each").unwrap();
        let items = h.store.list_items(run_id, &each, ItemOutputs::Skip).await.unwrap().unwrap();
        let live = items.iter().filter(|i| matches!(i.status, StepStatus::Queued | StepStatus::Running)).count();
        most = most.max(live);
        for result in futures::future::join_all(batch.iter().map(|m| h.engine.execute_step(m))).await {
            result.unwrap();
        }
    }
}

#[tokio::test]
async fn a_map_runs_every_item_once_in_order_within_its_concurrency() {
    for seed in 0..10 {
        let mut h = harness();
        let run_id = h
            .submit(
                json!({"steps": [
                    map_step(json!(0), 3),
                    generate("join", "{% for i in steps.each.items %}{{ i.output.text }} {% endfor %}")
                ], "output": "{{ steps.each }}"}),
                docs(12, &[]),
            )
            .await;
        let most = drive_counting_running(&mut h, &run_id, seed).await;
        let view = h.view(&run_id).await;
        assert_eq!(view.status, RunStatus::Succeeded, "seed {seed}: {:?} {:?}", view.error, view.steps);
        assert!(most <= 3, "seed {seed}: {most} items were queued or running at once");
        let mut calls = h.provider.calls();
        let join = calls.pop().unwrap();
        calls.sort();
        let mut expected: Vec<String> = (0..12).map(|i| format!("{i}:doc{i}")).collect();
        expected.sort();
        assert_eq!(calls, expected, "seed {seed}: every item exactly once");
        let wanted: String = (0..12).map(|i| format!("<{i}:doc{i}> ")).collect();
        assert_eq!(join, wanted, "seed {seed}: outputs in list order");

        let output = view.output.unwrap();
        let items = output["items"].as_array().unwrap();
        assert_eq!(items.len(), 12);
        for (i, item) in items.iter().enumerate() {
            assert_eq!(item["index"], i);
            assert_eq!(item["status"], "succeeded");
            assert_eq!(item["output"]["text"], format!("<{i}:doc{i}>"));
            assert_eq!(item["usage"]["input_tokens"], 2);
        }
        let each = view.steps.iter().find(|s| s.id == "each").unwrap();
        assert_eq!(each.progress.usage.unwrap().input_tokens, 24, "the step's usage sums its items'");
        assert_eq!(each.progress.map, Some(MapProgress { items: 12, pending: 0, failed: 0 }));
        assert_eq!(view.totals.usage.input_tokens, 26, "twelve items and the join");
    }
}

#[tokio::test]
async fn tolerate_failures_decides_at_its_boundary() {
    // 2 of 10 fail: a count of 2 or a share of 20% tolerates them; 1 or 10% does not.
    for (tolerate, succeeds) in [(json!(2), true), (json!("20%"), true), (json!(1), false), (json!("10%"), false)] {
        let mut h = harness();
        let run_id = h.submit(json!({"steps": [map_step(tolerate.clone(), 4)]}), docs(10, &[3, 7])).await;
        h.drive(5).await;
        let view = h.view(&run_id).await;
        let each = view.steps.iter().find(|s| s.id == "each").unwrap();
        if succeeds {
            assert_eq!(view.status, RunStatus::Succeeded, "{tolerate}");
            let items = each.progress.output.as_ref().unwrap()["items"].as_array().unwrap().clone();
            assert_eq!(items[3]["status"], "failed");
            assert_eq!(items[3]["output"], Value::Null);
            assert_eq!(items[3]["error"]["kind"], "invalid_request");
            assert_eq!(items[4]["status"], "succeeded");
        } else {
            assert_eq!(view.status, RunStatus::Failed, "{tolerate}");
            let error = each.progress.error.as_ref().unwrap();
            assert_eq!(error.kind, ErrorKind::StepFailed);
            assert!(error.message.contains("items failed"), "{}", error.message);
        }
    }
}

#[tokio::test]
async fn a_map_that_fails_early_runs_no_more_items() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [map_step(json!(0), 1)]}), docs(5, &[0])).await;
    h.drive(2).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(h.provider.calls(), ["0:FAIL 0"], "one at a time, and the first failure ends the map");
}

#[tokio::test]
async fn an_empty_list_succeeds_at_once_and_a_non_list_fails_the_step() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [map_step(json!(0), 2)]}), json!({"docs": []})).await;
    h.drive(1).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(view.steps[0].progress.output, Some(json!({"items": []})));

    let run_id = h.submit(json!({"steps": [map_step(json!(0), 2)]}), json!({"docs": "not a list"})).await;
    h.drive(1).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    let error = view.steps[0].progress.error.clone().unwrap();
    assert_eq!(error.kind, ErrorKind::Template);
    assert!(error.message.contains("must yield a list"), "{}", error.message);

    let too_many: Vec<u32> = (0..=crate::domain::definition::MAX_MAP_ITEMS).collect();
    let run_id = h.submit(json!({"steps": [map_step(json!(0), 2)]}), json!({ "docs": too_many })).await;
    h.drive(1).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.steps[0].progress.error.clone().unwrap().kind, ErrorKind::TemplateTooLarge);
}

#[tokio::test]
async fn a_crash_between_counting_an_item_and_starting_the_next_is_re_driven() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [map_step(json!(0), 1)]}), docs(3, &[])).await;
    h.faults.fail_next("release_step"); // item 0 is counted, item 1 is not released
    let mut failures = 0;
    while let Ok(message) = h.steps.try_recv() {
        failures += usize::from(h.engine.execute_step(&message).await.is_err());
    }
    assert_eq!(failures, 1);
    assert_eq!(h.view(&run_id).await.status, RunStatus::Running, "stuck until someone re-drives");
    h.clock.advance(FOLLOW_UP_GRACE + QUEUED_GRACE);
    assert!(h.engine.sweep().await.unwrap().followed_up >= 1);
    h.drive(3).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(h.provider.calls().len(), 3, "each item once");
}

#[tokio::test]
async fn cancelling_a_run_stops_its_map() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [map_step(json!(0), 2)]}), docs(6, &[])).await;
    // The map starts and queues its first two items; nothing more runs.
    let first = h.steps.try_recv().unwrap();
    h.engine.execute_step(&first).await.unwrap();
    h.engine.cancel(&h.tenant, &run_id).await.unwrap();
    h.drive(1).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Cancelled);
    assert_eq!(view.steps[0].status, StepStatus::Cancelled);
    assert!(h.provider.calls().is_empty(), "no item ran after the cancel: {:?}", h.provider.calls());
}

#[tokio::test]
async fn item_and_index_are_only_known_inside_a_map_step() {
    let h = harness();
    let submit = |workflow: Value| {
        let submission = Submission { workflow, input: json!({"docs": []}), notify: None };
        h.engine.submit(&h.tenant, submission, None)
    };
    let Err(EngineError::Invalid(problems)) = submit(json!({"steps": [
        generate("a", "{{ item }}"),
        {"id": "b", "task": "generate", "model": "count:any", "prompt": "x", "for_each": "input.docs", "when": "item"},
        {"id": "c", "task": "generate", "model": "count:any", "prompt": "x", "max_concurrency": 2},
        {"id": "d", "task": "generate", "model": "count:any", "prompt": "x", "for_each": "input.docs", "tolerate_failures": "lots"},
        {"id": "e", "task": "approval", "prompt": "ok?", "for_each": "input.docs"}
    ]}))
    .await
    else {
        panic!("accepted")
    };
    let pointers: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
    for expected in [
        "/workflow/steps/0/prompt",
        "/workflow/steps/1/when",
        "/workflow/steps/2/max_concurrency",
        "/workflow/steps/3/tolerate_failures",
        "/workflow/steps/4/for_each",
    ] {
        assert!(pointers.contains(&expected), "{expected} missing from {problems:?}");
    }
}

#[tokio::test]
async fn items_stored_by_a_map_start_that_died_do_not_run_until_the_map_starts_again() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [map_step(json!(0), 2)]}), docs(4, &[])).await;
    // A worker claims the map step, stores its items (as `start_map` does) and dies before
    // recording the start or sending anything.
    super::durability::claimed_by_a_dead_worker(&mut h, &run_id, "each", Duration::from_secs(150)).await;
    let run = h.store.get_run(&run_id).await.unwrap().unwrap();
    let each = StepId::parse("each").unwrap();
    let items = (0..4u32)
        .map(|i| {
            let mut item = crate::domain::StepState::new(each.item(i), u32::from(i >= 2), Vec::new());
            item.control.due = (i < 2).then(|| h.clock.now() + QUEUED_GRACE);
            item
        })
        .collect();
    h.store.create_items(&run, items).await.unwrap();

    // The reconciler finds the first items overdue and sends them: they must not run yet.
    h.clock.advance(QUEUED_GRACE + Duration::from_secs(1));
    assert_eq!(h.engine.sweep().await.unwrap().resent, 2);
    h.drive(1).await;
    assert!(h.provider.calls().is_empty(), "no item of an unstarted map ran: {:?}", h.provider.calls());

    // The dead worker's lease ends: the map step starts again and runs every item once.
    h.clock.advance(Duration::from_secs(150));
    h.engine.sweep().await.unwrap();
    h.drive(2).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.steps);
    assert_eq!(h.provider.calls().len(), 4);
}

#[tokio::test]
async fn a_map_whose_outputs_together_are_too_large_fails_without_loading_them_all() {
    let mut h = harness();
    // Ten items of 900 KiB each: each fits a step's 1 MiB, together they pass the map's 8 MiB.
    let docs: Vec<String> = (0..10).map(|i| format!("BIG {i}")).collect();
    let run_id = h.submit(json!({"steps": [map_step(json!(0), 5)]}), json!({ "docs": docs })).await;
    h.drive(1).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    let each = &view.steps[0];
    assert_eq!(each.progress.error.as_ref().map(|e| e.kind), Some(ErrorKind::OutputTooLarge));
    assert_eq!(each.progress.output, None);
    assert_eq!(each.progress.map, Some(MapProgress { items: 10, pending: 0, failed: 0 }), "every item succeeded");
}
