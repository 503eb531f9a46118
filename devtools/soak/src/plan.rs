//! What the soak submits, decided up front from one seed: for each run its diamond workflow
//! (`a → b, c → d`, each step on a mock provider with retries and a fallback on the next one),
//! its Idempotency-Key, whether it is submitted twice, and whether (and when) one of its step
//! messages is duplicated. The same seed gives the same plan.

use std::time::Duration;

use serde_json::{Value, json};

/// The providers the steps rotate through (the mock answers each), with one model each.
pub const PROVIDERS: [(&str, &str); 4] = [
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-haiku-latest"),
    ("gemini", "gemini-2.0-flash"),
    ("cohere", "command-r"),
];
/// Each attempt's timeout: below the mock's slow fault (5 s), so a slow answer times out.
pub const ATTEMPT_TIMEOUT_MS: u64 = 2_000;
/// Retries per model before the fallback.
pub const RETRIES: u32 = 2;
/// The latest a planned duplicate step message is sent after its run's submission.
const DUPLICATE_WITHIN: Duration = Duration::from_secs(20);

/// How a run is submitted a second time with the same Idempotency-Key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resubmit {
    /// After the first submission answered: a client retrying after a lost response.
    After,
    /// At the same time as the first: a client retrying before the first answered.
    Racing,
}

/// One run of the soak.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub index: usize,
    pub idempotency_key: String,
    /// The `POST /v1/runs` body.
    pub body: Value,
    pub resubmit: Option<Resubmit>,
    /// When to send a duplicate of one of its step messages, after its submission.
    pub duplicate_after: Option<Duration>,
}

/// The whole soak's runs.
pub fn plan(runs: usize, resubmit_share: f64, duplicate_share: f64, seed: u64, notify_url: &str) -> Vec<RunPlan> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..runs)
        .map(|index| {
            let resubmit =
                (rng.f64() < resubmit_share).then(|| if rng.bool() { Resubmit::After } else { Resubmit::Racing });
            let duplicate_after = (rng.f64() < duplicate_share).then(|| DUPLICATE_WITHIN.mul_f64(rng.f64()));
            let body = json!({
                "workflow": diamond(index),
                "input": {"topic": format!("soak run {index}: queues, retries and a worker that keeps dying")},
                "notify": {"url": notify_url},
            });
            RunPlan { index, idempotency_key: format!("soak-{seed:016x}-{index}"), body, resubmit, duplicate_after }
        })
        .collect()
}

/// The diamond (and a map beside it) for run `index`: step `k` uses provider `index + k` (mod 4), its fallback the
/// next one, so every provider carries every step and the load spreads evenly.
pub fn diamond(index: usize) -> Value {
    let model = |offset: usize| {
        let (provider, model) = PROVIDERS[(index + offset) % PROVIDERS.len()];
        format!("{provider}:{model}")
    };
    let step = |offset: usize, fields: Value| {
        let mut step = json!({
            "model": model(offset),
            "fallbacks": [model(offset + 1)],
            "retries": RETRIES,
            "timeout_ms": ATTEMPT_TIMEOUT_MS,
        });
        if let (Some(step), Value::Object(fields)) = (step.as_object_mut(), fields) {
            step.extend(fields);
        }
        step
    };
    json!({
        "name": "soak-diamond",
        "steps": [
            step(0, json!({"id": "a", "task": "generate", "prompt": "Write about {{ input.topic }}", "max_tokens": 64})),
            step(1, json!({"id": "b", "task": "summarize", "input": "{{ steps.a.text }}"})),
            step(2, json!({"id": "c", "task": "classify", "input": "{{ steps.a.text }}", "labels": ["POSITIVE", "NEGATIVE"]})),
            step(3, json!({"id": "d", "task": "generate", "prompt": "{{ steps.b.text }} ({{ steps.c.label }})", "max_tokens": 64})),
            // A map: three items, two at a time, each a step of its own under the same faults.
            step(4, json!({"id": "e", "task": "summarize", "for_each": "[steps.a.text, 'the second part', 'the third part']",
                           "input": "{{ index }}: {{ item }}", "max_concurrency": 2})),
        ],
        "output": {"summary": "{{ steps.b.text }}", "mood": "{{ steps.c.label }}", "final": "{{ steps.d.text }}"},
    })
}

/// The diamond's step ids, in order (`e`, beside it, maps over three items).
pub const STEP_IDS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// The items of map step `e`: each ends at most once (a map that fails early leaves the
/// items it had not started unrun).
pub const MAP_ITEMS: [&str; 3] = ["e[0]", "e[1]", "e[2]"];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_diamond_is_a_valid_workflow_with_every_step_on_another_provider() {
        let workflow = diamond(1);
        let steps = workflow["steps"].as_array().unwrap();
        let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
        assert_eq!(ids, STEP_IDS);
        let models: Vec<&str> = steps.iter().map(|s| s["model"].as_str().unwrap()).collect();
        assert_eq!(
            models,
            [
                "anthropic:claude-3-5-haiku-latest",
                "gemini:gemini-2.0-flash",
                "cohere:command-r",
                "openai:gpt-4o-mini",
                "anthropic:claude-3-5-haiku-latest"
            ]
        );
        assert_eq!(steps[3]["fallbacks"], json!(["anthropic:claude-3-5-haiku-latest"]));
        assert_eq!(steps[1]["timeout_ms"], ATTEMPT_TIMEOUT_MS);
        // The workflow parses as Chorus reads it: the plan's own check on the shape.
        let parsed: Result<chorus::domain::WorkflowDefinition, _> = serde_json::from_value(workflow);
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn a_seed_gives_the_same_plan_and_the_shares_are_about_right() {
        let first = plan(1000, 0.1, 0.2, 7, "http://127.0.0.1:1/hook");
        let again = plan(1000, 0.1, 0.2, 7, "http://127.0.0.1:1/hook");
        let shape = |plans: &[RunPlan]| plans.iter().map(|p| (p.resubmit, p.duplicate_after)).collect::<Vec<_>>();
        assert_eq!(shape(&first), shape(&again));
        let resubmitted = first.iter().filter(|p| p.resubmit.is_some()).count();
        let duplicated = first.iter().filter(|p| p.duplicate_after.is_some()).count();
        assert!((60..140).contains(&resubmitted), "{resubmitted}");
        assert!((150..250).contains(&duplicated), "{duplicated}");
        assert!(first.iter().any(|p| p.resubmit == Some(Resubmit::Racing)));
        assert_ne!(first[0].idempotency_key, first[1].idempotency_key);
        assert_eq!(first[3].body["notify"]["url"], "http://127.0.0.1:1/hook");
    }
}
