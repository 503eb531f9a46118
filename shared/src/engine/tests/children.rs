//! Sub-workflows (`task: workflow`) under duplicated, shuffled deliveries: the parent step
//! waits for its one child and completes with its output, a child's failure fails it, a
//! cancellation goes down to the children, and nesting is bounded.

use super::*;
use crate::domain::{MAX_RUN_DEPTH, WorkflowName};

async fn register(h: &Harness, name: &str, workflow: Value) {
    let name = WorkflowName::parse(name).unwrap();
    h.engine.register_workflow(&h.tenant, &name, &workflow).await.unwrap();
}

fn child_step(id: &str, workflow: &str, input: &str) -> Value {
    json!({"id": id, "task": "workflow", "workflow": workflow, "input": input})
}

async fn summarizer(h: &Harness) {
    register(
        h,
        "summarizer",
        json!({"steps": [generate("s", "{{ input.text }}")], "output": {"summary": "{{ steps.s.text }}"}}),
    )
    .await;
}

#[tokio::test]
async fn a_parent_step_waits_for_its_one_child_and_completes_with_its_output() {
    for seed in 0..10 {
        let mut h = harness();
        summarizer(&h).await;
        let run_id = h
            .submit(
                json!({"steps": [
                    child_step("sub", "summarizer", "{{ input }}"),
                    generate("after", "{{ steps.sub.summary }}!")
                ], "output": "{{ steps.after.text }}"}),
                json!({"text": "hello"}),
            )
            .await;
        h.drive(seed).await;
        let view = h.view(&run_id).await;
        assert_eq!(view.status, RunStatus::Succeeded, "seed {seed}: {:?}", view.steps);
        assert_eq!(h.provider.calls(), ["hello", "<hello>!"], "seed {seed}: the child ran once");
        assert_eq!(view.output, Some(json!("<<hello>!>")));
        assert_eq!(view.children.len(), 1, "one child, whatever the deliveries");
        let sub = view.steps.iter().find(|s| s.id == "sub").unwrap();
        assert_eq!(sub.progress.output, Some(json!({"summary": "<hello>"})));
        assert_eq!(sub.progress.usage.map(|u| u.input_tokens), Some(2), "the child's usage");
        assert_eq!(view.totals.usage.input_tokens, 4, "the child's calls count in the parent's totals");

        let child = h.view(&view.children[0]).await;
        assert_eq!(child.status, RunStatus::Succeeded);
        assert_eq!(child.parent.as_ref().map(|p| (&p.run_id, p.step_id.as_str())), Some((&run_id, "sub")));
        let pinned = child.workflow.unwrap();
        assert_eq!((pinned.name.as_str(), pinned.version), ("summarizer", 1));
        let run = h.store.get_run(&run_id).await.unwrap().unwrap();
        assert_eq!(run.definition.steps[0].workflow.as_deref(), Some("summarizer@1"), "pinned at submission");
    }
}

#[tokio::test]
async fn a_failed_child_fails_its_step_and_an_optional_one_does_not_fail_the_run() {
    let mut h = harness();
    register(&h, "broken", json!({"steps": [generate("s", "FAIL {{ input.text }}")]})).await;
    let run_id = h.submit(json!({"steps": [child_step("sub", "broken", "{{ input }}")]}), json!({"text": "x"})).await;
    h.drive(1).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    let error = view.steps[0].progress.error.clone().unwrap();
    assert_eq!(error.kind, ErrorKind::ChildFailed);
    assert!(error.message.contains("failed"), "{}", error.message);

    let optional = json!({"steps": [
        {"id": "sub", "task": "workflow", "workflow": "broken", "input": "{{ input }}", "optional": true},
        generate("other", "fine")
    ]});
    let run_id = h.submit(optional, json!({"text": "x"})).await;
    h.drive(2).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(status_of(&view, "sub"), StepStatus::Failed);
}

#[tokio::test]
async fn cancelling_a_parent_cancels_its_running_children() {
    let mut h = harness();
    register(&h, "review", json!({"steps": [{"id": "gate", "task": "approval", "prompt": "ok?"}]})).await;
    let run_id = h.submit(json!({"steps": [child_step("sub", "review", "{{ input }}")]}), json!({})).await;
    h.drive(1).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Waiting, "only the child's approval is left");
    let child = view.children[0].clone();
    assert_eq!(h.view(&child).await.status, RunStatus::Waiting);

    h.engine.cancel(&h.tenant, &run_id).await.unwrap();
    h.drive(2).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Cancelled);
    let child = h.view(&child).await;
    assert_eq!(child.status, RunStatus::Cancelled, "the cancellation went down");
    assert_eq!(child.steps[0].status, StepStatus::Cancelled);
}

#[tokio::test]
async fn a_workflow_that_calls_itself_stops_at_the_depth_limit_and_every_run_ends() {
    let mut h = harness();
    register(&h, "forever", json!({"steps": [child_step("again", "forever", "{{ input }}")]})).await;
    let run_id = h.submit(json!({"steps": [child_step("start", "forever", "{{ input }}")]}), json!({})).await;
    h.drive(3).await;
    let mut run = h.view(&run_id).await;
    assert_eq!(run.status, RunStatus::Failed);
    let mut depth = 0;
    while let Some(child) = run.children.first().cloned() {
        run = h.view(&child).await;
        depth += 1;
        assert_eq!(run.status, RunStatus::Failed, "depth {depth}");
    }
    assert_eq!(depth, MAX_RUN_DEPTH, "runs nest {MAX_RUN_DEPTH} deep, no deeper");
    assert_eq!(run.steps[0].progress.error.as_ref().unwrap().kind, ErrorKind::LimitExceeded);
}

#[tokio::test]
async fn a_workflow_step_must_name_a_registered_workflow() {
    let h = harness();
    summarizer(&h).await;
    let submission = Submission {
        workflow: json!({"steps": [
            child_step("a", "nope", "{{ input }}"),
            child_step("b", "summarizer@7", "{{ input }}"),
            {"id": "c", "task": "workflow", "model": "count:any"},
            {"id": "d", "task": "generate", "model": "count:any", "prompt": "x", "workflow": "summarizer"}
        ]}),
        input: json!({}),
        notify: None,
    };
    let Err(EngineError::Invalid(problems)) = h.engine.submit(&h.tenant, submission, None).await else {
        panic!("accepted")
    };
    let pointers: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
    assert_eq!(
        pointers,
        ["/workflow/steps/2/model", "/workflow/steps/2/workflow", "/workflow/steps/3/workflow"],
        "{problems:?}"
    );

    let submission = Submission {
        workflow: json!({"steps": [child_step("a", "nope", "{{ input }}"), child_step("b", "summarizer@7", "{{ input }}")]}),
        input: json!({}),
        notify: None,
    };
    let Err(EngineError::Invalid(problems)) = h.engine.submit(&h.tenant, submission, None).await else {
        panic!("accepted")
    };
    let details: Vec<(&str, &str)> = problems.iter().map(|p| (p.pointer.as_str(), p.detail.as_str())).collect();
    assert_eq!(details[0].0, "/workflow/steps/0/workflow");
    assert!(details[0].1.contains("no workflow named `nope`"), "{details:?}");
    assert!(details[1].1.contains("latest is version 1"), "{details:?}");
}

#[tokio::test]
async fn registration_refuses_a_sub_workflow_that_is_not_registered_but_not_itself() {
    let h = harness();
    let name = WorkflowName::parse("caller").unwrap();
    let calls_nothing = json!({"steps": [child_step("sub", "missing", "{{ input }}")]});
    let Err(EngineError::Invalid(problems)) = h.engine.register_workflow(&h.tenant, &name, &calls_nothing).await else {
        panic!("registered a call to a workflow that does not exist")
    };
    assert_eq!(problems[0].pointer, "/workflow/steps/0/workflow");
    assert!(problems[0].detail.contains("no workflow named `missing`"), "{problems:?}");
    let calls_itself = json!({"steps": [child_step("again", "caller", "{{ input }}")]});
    h.engine.register_workflow(&h.tenant, &name, &calls_itself).await.unwrap();
}
