//! The template's timeouts agree with the engine's time limits, so no limit can cut another
//! short: a worker's lease outlives the worker function, the worker hands a step back before
//! its function times out, a queue never redelivers a message its function still holds, and
//! the reconciler finishes within the notifier's timeout and runs more often than the grace
//! it gives a follow-up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use chorus::engine::{LEASE_MARGIN, SWEEP_TIME};
use chorus::startup::DEFAULT_INVOCATION_BUDGET;
use chorus_local_aws::template::{FunctionSpec, Template};

fn template() -> Template {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
    Template::load(&path).expect("infra/template.yaml is readable")
}

fn function<'a>(template: &'a Template, binary: &str) -> &'a FunctionSpec {
    template.functions.iter().find(|f| f.binary == binary).unwrap_or_else(|| panic!("no {binary} function"))
}

fn visibility(template: &Template, queue: &str) -> Duration {
    let spec = template.queue(queue).unwrap_or_else(|| panic!("no {queue}"));
    // SQS's default when the template says nothing.
    Duration::from_secs(spec.visibility_timeout.unwrap_or(30).into())
}

#[test]
fn the_workers_budget_and_lease_bracket_its_function_timeout() {
    let template = template();
    let worker = function(&template, "worker");
    assert!(
        DEFAULT_INVOCATION_BUDGET + Duration::from_secs(10) <= worker.timeout,
        "the worker must hand a step back ({DEFAULT_INVOCATION_BUDGET:?}) with time to store it before its {:?} timeout",
        worker.timeout
    );
    assert!(
        DEFAULT_INVOCATION_BUDGET + LEASE_MARGIN > worker.timeout,
        "a step's lease must outlive the worker that holds it ({:?})",
        worker.timeout
    );
}

#[test]
fn every_queue_hides_a_message_longer_than_its_function_may_hold_it() {
    let template = template();
    for function in &template.functions {
        for event in &function.sqs_events {
            let hidden = visibility(&template, &event.queue);
            assert!(
                hidden >= function.timeout,
                "{} hides messages for {hidden:?}, less than {}'s {:?} timeout",
                event.queue,
                function.logical_id,
                function.timeout
            );
        }
    }
}

#[test]
fn the_reconciler_fits_its_function_and_runs_every_minute() {
    let template = template();
    let sweeper = template.functions.iter().find(|f| !f.schedules.is_empty()).expect("a scheduled function");
    assert!(SWEEP_TIME + Duration::from_secs(10) <= sweeper.timeout, "{:?}", sweeper.timeout);
    let every = sweeper.schedules[0].every.expect("a rate() schedule");
    assert!(every <= Duration::from_secs(60), "the sweep runs every {every:?}");
}
