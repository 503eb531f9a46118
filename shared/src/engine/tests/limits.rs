//! One request's step cannot take more than its share: templates that would render or
//! build too much fail their step with `template_too_large`, outputs over the step output
//! limit fail with `output_too_large`, and each ends its run cleanly instead of taking the
//! process down; a tenant flooding the queue runs at its own pace while another's run
//! finishes at once.

use serde_json::json;

use super::*;
use crate::adapters::MemoryRateLimiter;
use crate::domain::RateLimit;

#[tokio::test(start_paused = true)]
async fn a_flooding_tenant_waits_its_turn_while_another_tenants_run_finishes_at_once() {
    let mut h = harness_with_quota(|clock| TenantQuota {
        steps: RateLimit { per_minute: 60, burst: 5 },
        ..TenantQuota::new(Arc::new(MemoryRateLimiter::new(clock)))
    });
    let flood = TenantId::parse("flood").unwrap();
    let mut flooded = Vec::new();
    for n in 0..30 {
        let submission = Submission {
            workflow: json!({"steps": [generate("a", &format!("flood {n}"))]}),
            input: json!({}),
            notify: None,
        };
        flooded.push(h.engine.submit(&flood, submission, None).await.unwrap().run_id);
    }
    // Queued behind all thirty of the flood's steps.
    let calm = h.submit(json!({"steps": [generate("a", "calm")]}), json!({})).await;

    h.drive(1).await;
    assert_eq!(h.view(&calm).await.status, RunStatus::Succeeded, "the calm tenant's run is not held up");
    let mut finished = 0;
    for run_id in &flooded {
        let view = h.engine.run_view(&flood, run_id).await.unwrap();
        finished += usize::from(view.status == RunStatus::Succeeded);
    }
    assert_eq!(finished, 5, "the flood ran its burst; the rest wait for tokens");

    // Each minute gives the flood its burst again; the rest come back from the queue.
    for _ in 0..6 {
        h.clock.advance(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_secs(120)).await;
        h.drive(2).await;
    }
    for run_id in &flooded {
        assert_eq!(h.engine.run_view(&flood, run_id).await.unwrap().status, RunStatus::Succeeded);
    }
}

#[tokio::test]
async fn a_template_that_would_build_too_much_fails_its_step_with_template_too_large() {
    let mut h = harness();
    // 100 bytes × 100,000 is 10 MB: refused as it is built, not after.
    let run_id = h
        .submit(
            json!({"steps": [generate("big", "{{ input.s * input.n }}"), generate("after", "{{ steps.big.text }}")]}),
            json!({"s": "x".repeat(100), "n": 100_000}),
        )
        .await;
    h.drive(1).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    let error = view.steps.iter().find(|s| s.id == "big").unwrap().progress.error.clone().unwrap();
    assert_eq!(error.kind, ErrorKind::TemplateTooLarge);
    assert!(error.message.contains("over the limit of 1048576 bytes"), "{}", error.message);
    assert_eq!(status_of(&view, "after"), StepStatus::Cancelled);
    assert!(h.provider.calls().is_empty(), "nothing was sent to a model");
}

#[tokio::test]
async fn a_loop_that_would_write_too_much_fails_its_step_and_the_next_run_still_works() {
    let mut h = harness();
    let run_id = h
        .submit(
            json!({"steps": [generate("loop", "{% for i in range(100000) %}{{ input.s }}{% endfor %}")]}),
            json!({"s": "y".repeat(64)}),
        )
        .await;
    h.drive(1).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.steps[0].progress.error.as_ref().unwrap().kind, ErrorKind::TemplateTooLarge);

    let fine = h.submit(json!({"steps": [generate("ok", "hello {{ input.s }}")]}), json!({"s": "you"})).await;
    h.drive(2).await;
    assert_eq!(h.view(&fine).await.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn an_output_over_the_limit_fails_its_step_with_output_too_large() {
    let mut h = harness();
    let run_id = h.submit(json!({"steps": [generate("a", "HUGE answer please")]}), json!({})).await;
    h.drive(1).await;
    let view = h.view(&run_id).await;
    assert_eq!(view.status, RunStatus::Failed);
    let error = view.steps[0].progress.error.clone().unwrap();
    assert_eq!(error.kind, ErrorKind::OutputTooLarge);
    assert!(error.message.contains("at most 1048576"), "{}", error.message);
    assert!(view.steps[0].progress.output.is_none(), "the oversized output is not stored");
}

#[tokio::test]
async fn a_step_reads_only_the_outputs_its_templates_name() {
    let mut h = harness();
    let run_id = h
        .submit(
            json!({"steps": [
                generate("a", "first"),
                generate("b", "second"),
                {"id": "c", "task": "generate", "model": "count:any", "needs": ["a", "b"], "prompt": "{{ steps.b.text }}!"}
            ]}),
            json!({}),
        )
        .await;
    h.drive(1).await;
    assert_eq!(h.view(&run_id).await.status, RunStatus::Succeeded);
    assert!(h.provider.calls().contains(&"<second>!".to_owned()), "{:?}", h.provider.calls());
}
