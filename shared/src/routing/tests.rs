//! The router's retry, fallback, route, budget, breaker, time-limit and rate-limit decisions,
//! over scripted providers and paused time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::domain::{Cost, ErrorKind, FinishReason, TaskOutput, Usage};
use crate::providers::local::LocalProvider;
use crate::routing::Price;

// --- next_move

fn policy() -> RetryPolicy {
    RetryPolicy { base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1), ..RetryPolicy::default() }
}

#[test]
fn given_a_retryable_error_with_retries_left_when_deciding_then_backoff_doubles_within_the_cap() {
    let err = ProviderError::Overloaded { retry_after: None };
    assert_eq!(next_move(&err, 0, 5, &policy(), 1.0), Move::RetryAfter(Duration::from_millis(100)));
    assert_eq!(next_move(&err, 2, 5, &policy(), 1.0), Move::RetryAfter(Duration::from_millis(400)));
    assert_eq!(next_move(&err, 4, 5, &policy(), 1.0), Move::RetryAfter(Duration::from_secs(1)));
    assert_eq!(next_move(&err, 2, 5, &policy(), 0.5), Move::RetryAfter(Duration::from_millis(200)));
    assert_eq!(next_move(&err, 2, 5, &policy(), 0.0), Move::RetryAfter(Duration::ZERO));
    assert_eq!(next_move(&err, 4, 99, &policy(), 1.0), Move::RetryAfter(Duration::from_secs(1)));
    assert_eq!(next_move(&err, 60, 99, &policy(), 1.0), Move::RetryAfter(Duration::from_secs(1)));
}

#[test]
fn given_retries_used_up_when_deciding_then_move_to_the_next_candidate() {
    assert_eq!(next_move(&ProviderError::Timeout, 2, 2, &policy(), 0.5), Move::NextCandidate);
    assert_eq!(next_move(&ProviderError::Timeout, 0, 0, &policy(), 0.5), Move::NextCandidate);
}

#[test]
fn given_a_non_retryable_error_when_deciding_then_move_on_at_once() {
    for err in [
        ProviderError::InvalidRequest("bad".into()),
        ProviderError::Auth("no".into()),
        ProviderError::QuotaExhausted("empty".into()),
        ProviderError::ContentFiltered("blocked".into()),
        ProviderError::MalformedResponse("junk".into()),
        ProviderError::InvalidOutput("schema".into()),
    ] {
        assert_eq!(next_move(&err, 0, 5, &policy(), 0.5), Move::NextCandidate, "{err:?}");
    }
}

#[test]
fn given_retry_after_when_deciding_then_it_replaces_backoff() {
    let err = |secs| ProviderError::RateLimited { retry_after: Some(Duration::from_secs(secs)) };
    assert_eq!(next_move(&err(3), 0, 2, &policy(), 0.0), Move::RetryAfter(Duration::from_secs(3)));
    assert_eq!(next_move(&err(300), 0, 2, &policy(), 0.0), Move::RetryAfter(Duration::from_secs(300)));
}

// --- fakes

/// What a scripted call does.
#[derive(Clone)]
enum Act {
    Succeed(TaskOutput),
    Fail(ProviderError),
    /// Sleeps, then succeeds: slow enough to hit a timeout.
    Hang(Duration),
}

/// A provider named `name` offering `name:m` for generate and extract. It plays `script`
/// in order, then `then` forever, counting calls.
struct Scripted {
    name: &'static str,
    script: Mutex<VecDeque<Act>>,
    then: Act,
    calls: AtomicU32,
}

impl Scripted {
    fn new(name: &'static str, script: Vec<Act>, then: Act) -> Arc<Self> {
        Arc::new(Self { name, script: Mutex::new(script.into()), then, calls: AtomicU32::new(0) })
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Provider for Scripted {
    fn name(&self) -> &'static str {
        self.name
    }

    fn models(&self) -> Vec<ModelInfo> {
        vec![ModelInfo {
            id: format!("{}:m", self.name),
            provider: self.name.to_owned(),
            tasks: vec![Task::Generate, Task::Extract],
            description: "scripted".into(),
        }]
    }

    async fn call(&self, _model: &str, _request: &TaskRequest) -> Result<Completion, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let act = self.script.lock().unwrap().pop_front().unwrap_or_else(|| self.then.clone());
        let output = match act {
            Act::Succeed(output) => output,
            Act::Fail(error) => return Err(error),
            Act::Hang(wait) => {
                tokio::time::sleep(wait).await;
                text("late")
            }
        };
        Ok(Completion { output, usage: Usage { input_tokens: 1_000, output_tokens: 500, estimated: false } })
    }
}

fn text(s: &str) -> TaskOutput {
    TaskOutput::Generate { text: s.into(), finish_reason: FinishReason::Stop }
}

fn ok(s: &str) -> Act {
    Act::Succeed(text(s))
}

fn transient() -> Act {
    Act::Fail(ProviderError::Transient("blip".into()))
}

fn step(task: Task, model: &str, fallbacks: &[&str]) -> StepDefinition {
    serde_json::from_value(json!({
        "id": "s",
        "task": task,
        "model": model,
        "fallbacks": fallbacks,
    }))
    .unwrap()
}

fn generate_request() -> TaskRequest {
    TaskRequest {
        task: Task::Generate,
        prompt: Some("hi".into()),
        input: None,
        labels: Vec::new(),
        schema: None,
        max_tokens: None,
        temperature: None,
    }
}

fn router(providers: Vec<Arc<dyn Provider>>, routes: &[(&str, &[&str])]) -> ProviderRouter {
    let routes = routes.iter().map(|(name, models)| (name.to_string(), Route::fallback(models))).collect();
    ProviderRouter::new(providers, routes, RetryPolicy::default(), PriceTable::default())
}

/// `(provider:model, error kind)` per attempt, `-` for success.
fn trail(routed: &Routed) -> Vec<String> {
    routed
        .attempts
        .iter()
        .map(|a| format!("{}:{} {}", a.provider, a.model, a.error.as_ref().map_or("-", |e| e.kind.as_str())))
        .collect()
}

fn winner(routed: &Routed) -> &RoutedCompletion {
    match &routed.outcome {
        RouteOutcome::Completed(done) => done,
        other => panic!("not completed: {other:?}"),
    }
}

// --- run

#[tokio::test(start_paused = true)]
async fn given_transient_failures_when_run_then_it_retries_and_records_every_attempt() {
    let alpha = Scripted::new("alpha", vec![transient(), transient()], ok("done"));
    let router = router(vec![alpha.clone()], &[]);
    let routed = router.run(&step(Task::Generate, "alpha:m", &[]), &generate_request(), &RouteContext::default()).await;
    assert_eq!(trail(&routed), ["alpha:m transient", "alpha:m transient", "alpha:m -"]);
    let won = winner(&routed);
    assert_eq!((won.provider.as_str(), won.model.as_str()), ("alpha", "m"));
    assert_eq!(won.completion.output, text("done"));
    assert_eq!(alpha.calls(), 3);
    assert_eq!(routed.attempts[0].error.as_ref().unwrap().message, "transient provider failure: blip");
}

#[tokio::test(start_paused = true)]
async fn given_a_non_retryable_error_when_run_then_it_goes_straight_to_the_fallback() {
    let alpha = Scripted::new("alpha", vec![], Act::Fail(ProviderError::Auth("key revoked".into())));
    let beta = Scripted::new("beta", vec![], ok("from beta"));
    let router = router(vec![alpha.clone(), beta.clone()], &[]);
    let routed =
        router.run(&step(Task::Generate, "alpha:m", &["beta:m"]), &generate_request(), &RouteContext::default()).await;
    assert_eq!(trail(&routed), ["alpha:m auth", "beta:m -"]);
    assert_eq!(alpha.calls(), 1);
    assert_eq!(winner(&routed).provider, "beta");
}

#[tokio::test(start_paused = true)]
async fn given_retries_exhausted_when_run_then_the_fallback_is_tried() {
    let alpha = Scripted::new("alpha", vec![], Act::Fail(ProviderError::Overloaded { retry_after: None }));
    let beta = Scripted::new("beta", vec![], ok("from beta"));
    let router = router(vec![alpha.clone(), beta.clone()], &[]);
    let mut step = step(Task::Generate, "alpha:m", &["beta:m"]);
    step.retries = Some(1);
    let routed = router.run(&step, &generate_request(), &RouteContext::default()).await;
    assert_eq!(trail(&routed), ["alpha:m overloaded", "alpha:m overloaded", "beta:m -"]);
    assert_eq!(alpha.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn given_every_candidate_failing_when_run_then_the_last_error_is_returned() {
    let alpha = Scripted::new("alpha", vec![], transient());
    let beta = Scripted::new("beta", vec![], Act::Fail(ProviderError::QuotaExhausted("monthly cap".into())));
    let router = router(vec![alpha.clone(), beta.clone()], &[]);
    let mut step = step(Task::Generate, "alpha:m", &["beta:m"]);
    step.retries = Some(0);
    let routed = router.run(&step, &generate_request(), &RouteContext::default()).await;
    assert_eq!(trail(&routed), ["alpha:m transient", "beta:m quota_exhausted"]);
    assert_eq!(routed.outcome, RouteOutcome::Failed(ProviderError::QuotaExhausted("monthly cap".into())));
}

#[tokio::test(start_paused = true)]
async fn given_a_hanging_model_when_run_then_the_attempt_times_out_and_the_fallback_answers() {
    let alpha = Scripted::new("alpha", vec![], Act::Hang(Duration::from_secs(60)));
    let beta = Scripted::new("beta", vec![], ok("from beta"));
    let router = router(vec![alpha.clone(), beta.clone()], &[]);
    let mut step = step(Task::Generate, "alpha:m", &["beta:m"]);
    step.timeout_ms = Some(500);
    step.retries = Some(1);
    let routed = router.run(&step, &generate_request(), &RouteContext::default()).await;
    assert_eq!(trail(&routed), ["alpha:m timeout", "alpha:m timeout", "beta:m -"]);
    assert_eq!(routed.attempts[0].latency_ms, 500);
}

#[tokio::test(start_paused = true)]
async fn given_retry_after_when_run_then_the_router_waits_that_long_before_retrying() {
    let limited = Act::Fail(ProviderError::RateLimited { retry_after: Some(Duration::from_secs(3)) });
    let alpha = Scripted::new("alpha", vec![limited], ok("done"));
    let router = router(vec![alpha.clone()], &[]);
    let started = Instant::now();
    let routed = router.run(&step(Task::Generate, "alpha:m", &[]), &generate_request(), &RouteContext::default()).await;
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(trail(&routed), ["alpha:m rate_limited", "alpha:m -"]);
}

#[tokio::test(start_paused = true)]
async fn given_backoff_when_run_then_waits_stay_within_the_full_jitter_window() {
    let alpha = Scripted::new("alpha", vec![transient(), transient()], ok("done"));
    let policy = RetryPolicy {
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(10),
        ..RetryPolicy::default()
    };
    let router = ProviderRouter::new(vec![alpha], BTreeMap::new(), policy, PriceTable::default());
    let started = Instant::now();
    router.run(&step(Task::Generate, "alpha:m", &[]), &generate_request(), &RouteContext::default()).await;
    // At most 1 s then 2 s.
    assert!(started.elapsed() <= Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test(start_paused = true)]
async fn given_a_route_when_run_then_it_expands_in_order_before_the_fallbacks() {
    let alpha = Scripted::new("alpha", vec![], Act::Fail(ProviderError::InvalidRequest("too long".into())));
    let beta = Scripted::new("beta", vec![], Act::Fail(ProviderError::Auth("no".into())));
    let gamma = Scripted::new("gamma", vec![], ok("from gamma"));
    let router = router(vec![alpha.clone(), beta.clone(), gamma.clone()], &[("fast", &["alpha:m", "beta:m"])]);
    let routed = router
        .run(&step(Task::Generate, "fast", &["alpha:m", "gamma:m"]), &generate_request(), &RouteContext::default())
        .await;
    // `alpha:m` appears twice but is tried once.
    assert_eq!(trail(&routed), ["alpha:m invalid_request", "beta:m auth", "gamma:m -"]);
    assert_eq!(alpha.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn given_unknown_providers_and_routes_when_run_then_they_are_recorded_and_skipped() {
    let beta = Scripted::new("beta", vec![], ok("from beta"));
    let router = router(vec![beta.clone()], &[]);
    let routed = router
        .run(&step(Task::Generate, "nope:m", &["slow", "beta:m"]), &generate_request(), &RouteContext::default())
        .await;
    assert_eq!(trail(&routed), ["nope:m invalid_request", ":slow invalid_request", "beta:m -"]);
    assert!(routed.attempts[0].error.as_ref().unwrap().message.contains("unknown provider `nope`"));
    assert!(routed.attempts[1].error.as_ref().unwrap().message.contains("providers: beta; routes: none"));
}

#[tokio::test(start_paused = true)]
async fn given_extract_output_breaking_the_schema_when_run_then_it_is_invalid_then_falls_back() {
    let bad = TaskOutput::Extract { data: json!({"age": "old"}) };
    let good = TaskOutput::Extract { data: json!({"age": 37, "name": "Ada"}) };
    let alpha = Scripted::new("alpha", vec![], Act::Succeed(bad));
    let beta = Scripted::new("beta", vec![], Act::Succeed(good.clone()));
    let router = router(vec![alpha.clone(), beta.clone()], &[]);
    let request = TaskRequest {
        task: Task::Extract,
        input: Some("Ada, 37".into()),
        schema: Some(json!({
            "type": "object",
            "required": ["age", "name"],
            "properties": {"age": {"type": "integer"}, "name": {"type": "string"}}
        })),
        ..generate_request()
    };
    let routed = router.run(&step(Task::Extract, "alpha:m", &["beta:m"]), &request, &RouteContext::default()).await;
    assert_eq!(trail(&routed), ["alpha:m invalid_output", "beta:m -"]);
    let message = &routed.attempts[0].error.as_ref().unwrap().message;
    assert!(message.contains("/age:") && message.contains("\"name\""), "{message}");
    assert_eq!(alpha.calls(), 1);
    assert_eq!(winner(&routed).completion.output, good);
}

#[tokio::test(start_paused = true)]
async fn given_a_priced_model_when_it_answers_then_cost_follows_its_usage() {
    let alpha = Scripted::new("alpha", vec![], ok("done"));
    let prices = PriceTable::default().with("alpha:m", Price { input_per_million: 2.0, output_per_million: 8.0 });
    let router = ProviderRouter::new(vec![alpha], BTreeMap::new(), RetryPolicy::default(), prices);
    let routed = router.run(&step(Task::Generate, "alpha:m", &[]), &generate_request(), &RouteContext::default()).await;
    // 1,000 × $2/M + 500 × $8/M.
    assert!((winner(&routed).cost_usd.usd().unwrap() - 0.006).abs() < 1e-12);
}

#[tokio::test(start_paused = true)]
async fn given_local_outage_with_an_extractive_fallback_when_run_then_the_fallback_summarizes() {
    let router = router(vec![Arc::new(LocalProvider)], &[]);
    let mut step = step(Task::Summarize, "local:outage", &["local:extractive"]);
    step.retries = Some(1);
    let request = TaskRequest {
        task: Task::Summarize,
        prompt: None,
        input: Some("Chorus runs workflows. Workflows have steps.".into()),
        ..generate_request()
    };
    let routed = router.run(&step, &request, &RouteContext::default()).await;
    assert_eq!(trail(&routed), ["local:outage transient", "local:outage transient", "local:extractive -"]);
    let won = winner(&routed);
    assert!(matches!(&won.completion.output, TaskOutput::Summarize { text } if !text.is_empty()));
    assert_eq!(won.cost_usd, Cost::ZERO, "local models are free");
}

#[tokio::test(start_paused = true)]
async fn given_a_long_retry_after_when_run_then_the_step_is_handed_back_instead_of_sleeping() {
    let limited = Act::Fail(ProviderError::RateLimited { retry_after: Some(Duration::from_secs(120)) });
    let alpha = Scripted::new("alpha", vec![limited], ok("done"));
    let router = router(vec![alpha.clone()], &[]);
    let started = Instant::now();
    let routed = router.run(&step(Task::Generate, "alpha:m", &[]), &generate_request(), &RouteContext::default()).await;
    assert_eq!(routed.outcome, RouteOutcome::RetryLater(Duration::from_secs(120)));
    assert_eq!(started.elapsed(), Duration::ZERO, "no sleeping in the worker");
    assert_eq!(trail(&routed), ["alpha:m rate_limited"]);

    // The next invocation resumes from the recorded attempt: retry 1 of 2, then done.
    let context = RouteContext { prior: &routed.attempts, ..RouteContext::default() };
    let again = router.run(&step(Task::Generate, "alpha:m", &[]), &generate_request(), &context).await;
    assert_eq!(trail(&again), ["alpha:m -"]);
    assert_eq!(alpha.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn given_prior_attempts_when_resumed_then_finished_models_are_skipped_and_retries_counted() {
    let alpha = Scripted::new("alpha", vec![], transient());
    let beta = Scripted::new("beta", vec![], ok("from beta"));
    let router = router(vec![alpha.clone(), beta.clone()], &[]);
    let mut step = step(Task::Generate, "alpha:m", &["beta:m"]);
    step.retries = Some(2);
    let failed = |kind: ErrorKind| Attempt {
        provider: "alpha".into(),
        model: "m".into(),
        latency_ms: 1,
        error: Some(StepError::new(kind, "x")),
    };
    // Two transient failures already: one retry left on alpha.
    let prior = [failed(ErrorKind::Transient), failed(ErrorKind::Transient)];
    let routed =
        router.run(&step, &generate_request(), &RouteContext { prior: &prior, ..RouteContext::default() }).await;
    assert_eq!(trail(&routed), ["alpha:m transient", "beta:m -"]);
    // A non-retryable failure earlier: alpha is not tried again.
    let prior = [failed(ErrorKind::Auth)];
    let routed =
        router.run(&step, &generate_request(), &RouteContext { prior: &prior, ..RouteContext::default() }).await;
    assert_eq!(trail(&routed), ["beta:m -"]);
}

#[tokio::test(start_paused = true)]
async fn given_repeated_failures_when_the_circuit_opens_then_the_provider_is_skipped_until_the_cool_down() {
    let alpha = Scripted::new("alpha", vec![], transient());
    let beta = Scripted::new("beta", vec![], ok("from beta"));
    let breaker = CircuitBreaker::new(2, Duration::from_secs(30));
    let router = router(vec![alpha.clone(), beta.clone()], &[]).with_breaker(breaker);
    let mut step = step(Task::Generate, "alpha:m", &["beta:m"]);
    step.retries = Some(1);
    let first = router.run(&step, &generate_request(), &RouteContext::default()).await;
    assert_eq!(trail(&first), ["alpha:m transient", "alpha:m transient", "beta:m -"]);
    let second = router.run(&step, &generate_request(), &RouteContext::default()).await;
    assert_eq!(trail(&second), ["alpha:m circuit_open", "beta:m -"]);
    assert_eq!(alpha.calls(), 2);
    tokio::time::advance(Duration::from_secs(30)).await;
    router.run(&step, &generate_request(), &RouteContext::default()).await;
    assert_eq!(alpha.calls(), 3, "one trial call after the cool-down");
}

/// A run's budget in this process: what the run store's ledger does, for one step.
struct Ledger {
    budget_usd: f64,
    /// What other steps spent or hold.
    others_usd: f64,
    held: Mutex<Vec<(String, f64)>>,
}

impl Ledger {
    fn new(budget_usd: f64, others_usd: f64) -> Self {
        Self { budget_usd, others_usd, held: Mutex::new(Vec::new()) }
    }

    fn context(&self, allow_unpriced: bool) -> RouteContext<'_> {
        RouteContext { budget: Some(RunBudget { holder: self, allow_unpriced }), ..RouteContext::default() }
    }
}

#[async_trait]
impl BudgetHolder for Ledger {
    async fn reserve(&self, model: &str, estimate_usd: f64) -> Result<(), Refusal> {
        if self.others_usd + estimate_usd > self.budget_usd {
            return Err(Refusal::Refused(ProviderError::BudgetExceeded(format!(
                "`{model}` may cost up to ${estimate_usd:.6} but the budget is ${:.6}",
                self.budget_usd
            ))));
        }
        self.held.lock().unwrap().push((model.to_owned(), estimate_usd));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn given_a_budget_when_a_model_would_exceed_it_then_a_cheaper_fallback_runs() {
    let alpha = Scripted::new("alpha", vec![], ok("pricey"));
    let beta = Scripted::new("beta", vec![], ok("cheap"));
    let prices = PriceTable::default()
        .with("alpha:m", Price { input_per_million: 10.0, output_per_million: 30.0 })
        .with("beta:m", Price { input_per_million: 0.1, output_per_million: 0.1 });
    let router = ProviderRouter::new(vec![alpha.clone(), beta], BTreeMap::new(), RetryPolicy::default(), prices);
    let mut step = step(Task::Generate, "alpha:m", &["beta:m"]);
    step.max_tokens = Some(1_000);
    let request = TaskRequest { max_tokens: Some(1_000), ..generate_request() };
    // alpha may cost 1,000 × $30/M = $0.03; $0.03 of the $0.05 budget is spent.
    let ledger = Ledger::new(0.05, 0.03);
    let routed = router.run(&step, &request, &ledger.context(false)).await;
    assert_eq!(trail(&routed), ["alpha:m budget_exceeded", "beta:m -"]);
    assert_eq!(alpha.calls(), 0, "a refused call is never sent");
    let message = &routed.attempts[0].error.as_ref().unwrap().message;
    assert!(message.contains("$0.030") && message.contains("budget"), "{message}");
    let held = ledger.held.lock().unwrap().clone();
    assert_eq!(held.len(), 1, "only the call made was reserved: {held:?}");
    assert_eq!(held[0].0, "beta:m");
}

#[tokio::test(start_paused = true)]
async fn given_a_budget_when_a_model_has_no_price_then_it_is_refused_unless_the_workflow_allows_it() {
    let alpha = Scripted::new("alpha", vec![], ok("unpriced"));
    let router = router(vec![alpha.clone(), Arc::new(LocalProvider)], &[]);
    let ledger = Ledger::new(1.0, 0.0);
    let routed = router.run(&step(Task::Generate, "alpha:m", &[]), &generate_request(), &ledger.context(false)).await;
    assert_eq!(trail(&routed), ["alpha:m price_unknown"]);
    assert_eq!(alpha.calls(), 0, "an unpriced call is never sent under a budget");
    let message = &routed.attempts[0].error.as_ref().unwrap().message;
    assert!(message.contains("no price") && message.contains("allow_unpriced_models"), "{message}");
    assert!(matches!(routed.outcome, RouteOutcome::Failed(ProviderError::PriceUnknown(_))));

    // A free local fallback is called without reserving anything.
    let step_with_local = step(Task::Generate, "alpha:m", &["local:echo"]);
    let routed = router.run(&step_with_local, &generate_request(), &ledger.context(false)).await;
    assert_eq!(trail(&routed), ["alpha:m price_unknown", "local:echo -"]);
    assert_eq!(winner(&routed).cost_usd, Cost::ZERO);

    // Allowed: it is called, nothing is reserved, and its cost is unknown, not zero.
    let routed = router.run(&step(Task::Generate, "alpha:m", &[]), &generate_request(), &ledger.context(true)).await;
    assert_eq!(trail(&routed), ["alpha:m -"]);
    assert_eq!(winner(&routed).cost_usd, Cost::Unknown);
    assert!(ledger.held.lock().unwrap().is_empty());
    // Without a budget it is called too, its cost as unknown.
    let routed = router.run(&step(Task::Generate, "alpha:m", &[]), &generate_request(), &RouteContext::default()).await;
    assert_eq!(winner(&routed).cost_usd, Cost::Unknown);
}

#[tokio::test(start_paused = true)]
async fn given_a_cheapest_route_when_ordered_then_unpriced_models_come_after_priced_ones() {
    let alpha = Scripted::new("alpha", vec![], ok("unpriced"));
    let beta = Scripted::new("beta", vec![], ok("priced"));
    let prices = PriceTable::default().with("beta:m", Price { input_per_million: 50.0, output_per_million: 50.0 });
    let routes = BTreeMap::from([(
        "cheap".to_owned(),
        Route::Cheapest { models: vec!["alpha:m".into(), "beta:m".into(), "local:echo".into()] },
    )]);
    let providers: Vec<Arc<dyn Provider>> = vec![alpha, beta, Arc::new(LocalProvider)];
    let router = ProviderRouter::new(providers, routes, RetryPolicy::default(), prices);
    let step = step(Task::Generate, "cheap", &[]);
    let order: Vec<(&str, &str)> = router.targets(&step, Task::Generate).iter().map(Target::names).collect();
    assert_eq!(order, [("local", "echo"), ("beta", "m"), ("alpha", "m")], "free, then priced, then unknown");
}

#[tokio::test(start_paused = true)]
async fn given_the_step_time_used_up_when_run_then_it_times_out_and_a_spent_invocation_hands_back() {
    let alpha = Scripted::new("alpha", vec![], Act::Hang(Duration::from_secs(60)));
    let router = router(vec![alpha.clone()], &[]);
    let mut step = step(Task::Generate, "alpha:m", &[]);
    step.timeout_ms = Some(10_000);
    let context = RouteContext { step_time_left: Some(Duration::from_secs(3)), ..RouteContext::default() };
    let routed = router.run(&step, &generate_request(), &context).await;
    assert_eq!(trail(&routed), ["alpha:m timeout"], "the attempt is cut to the step's time left");
    assert_eq!(routed.attempts[0].latency_ms, 3_000);
    assert_eq!(routed.outcome, RouteOutcome::Failed(ProviderError::Timeout));

    // A `timeout_ms` longer than the invocation may run is cut to it, not skipped for ever;
    // with the invocation spent, the step is handed back for the retry.
    let context = RouteContext { invocation_budget: Some(Duration::from_secs(5)), ..RouteContext::default() };
    let routed = router.run(&step, &generate_request(), &context).await;
    assert_eq!(trail(&routed), ["alpha:m timeout"], "the attempt is cut to the invocation's time");
    assert_eq!(routed.attempts[0].latency_ms, 5_000);
    assert!(matches!(routed.outcome, RouteOutcome::RetryLater(_)), "{:?}", routed.outcome);
    assert_eq!(alpha.calls(), 2);

    let context = RouteContext { invocation_budget: Some(Duration::from_secs(1)), ..RouteContext::default() };
    let routed = router.run(&step, &generate_request(), &context).await;
    assert_eq!(
        routed.outcome,
        RouteOutcome::RetryLater(Duration::ZERO),
        "an invocation with less than a useful attempt left hands the step back at once"
    );
    assert_eq!(alpha.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn given_a_route_with_unusable_entries_when_run_then_they_are_left_out() {
    let router =
        router(vec![Arc::new(LocalProvider)], &[("fast", &["openai:gpt-4o-mini", "local:echo", "local:extractive"])]);
    let routed = router
        .run(
            &step(Task::Summarize, "fast", &[]),
            &TaskRequest { task: Task::Summarize, input: Some("One. Two.".into()), ..generate_request() },
            &RouteContext::default(),
        )
        .await;
    assert_eq!(trail(&routed), ["local:extractive -"]);
}

#[tokio::test(start_paused = true)]
async fn given_a_rate_limit_when_the_bucket_runs_dry_then_short_waits_sleep_and_long_ones_hand_back() {
    use crate::adapters::MemoryRateLimiter;
    use crate::ports::SystemClock;
    let alpha = Scripted::new("alpha", vec![], ok("done"));
    let limit = RateLimit { per_minute: 60, burst: 1 };
    let limits = |per_minute| RateLimits {
        limiter: Arc::new(MemoryRateLimiter::new(Arc::new(SystemClock))),
        limits: BTreeMap::from([("alpha".to_owned(), RateLimit { per_minute, ..limit })]),
    };
    // One a second: the second call waits about a second in process.
    let per_second = router(vec![alpha.clone()], &[]).with_rate_limits(limits(60));
    let step = step(Task::Generate, "alpha:m", &[]);
    per_second.run(&step, &generate_request(), &RouteContext::default()).await;
    let started = Instant::now();
    let routed = per_second.run(&step, &generate_request(), &RouteContext::default()).await;
    assert_eq!(trail(&routed), ["alpha:m -"]);
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
    // One a minute: the second call is handed back with the wait, not slept through.
    let per_minute = router(vec![alpha.clone()], &[]).with_rate_limits(limits(1));
    per_minute.run(&step, &generate_request(), &RouteContext::default()).await;
    let routed = per_minute.run(&step, &generate_request(), &RouteContext::default()).await;
    assert!(matches!(routed.outcome, RouteOutcome::RetryLater(wait) if wait > Duration::from_secs(50)), "{routed:?}");
    assert!(routed.attempts.is_empty(), "no call was made");
}

// --- catalog

#[test]
fn given_models_and_routes_when_checked_then_the_catalog_explains_what_is_wrong() {
    let router = router(
        vec![Arc::new(LocalProvider), Scripted::new("alpha", vec![], ok("x"))],
        &[("fast", &["alpha:m", "local:echo"]), ("mixed", &["local:echo", "local:lexicon"]), ("empty", &[])],
    );
    assert_eq!(router.check_model("local:echo", Task::Generate), Ok(()));
    assert_eq!(router.check_model("fast", Task::Generate), Ok(()));

    let err = router.check_model("local:echo", Task::Classify).unwrap_err();
    assert!(err.contains("cannot classify"), "{err}");
    let err = router.check_model("nope:m", Task::Generate).unwrap_err();
    assert_eq!(err, "unknown provider `nope` in `nope:m`; providers: alpha, local; routes: empty, fast, mixed");
    let err = router.check_model("smart", Task::Generate).unwrap_err();
    assert!(err.starts_with("`smart` is neither `provider:model` nor a route; providers: alpha"), "{err}");
    // A route needs one entry that can do the task; the others are skipped when it runs.
    assert_eq!(router.check_model("mixed", Task::Classify), Ok(()));
    let err = router.check_model("mixed", Task::Embed).unwrap_err();
    assert!(err.starts_with("route `mixed` has no model that can embed") && err.contains("local:lexicon"), "{err}");
    let err = router.check_model("empty", Task::Generate).unwrap_err();
    assert!(err.contains("no models"), "{err}");
}

#[test]
fn given_several_providers_when_listing_then_models_are_sorted_and_routes_returned() {
    let router =
        router(vec![Arc::new(LocalProvider), Scripted::new("alpha", vec![], ok("x"))], &[("fast", &["local:echo"])]);
    let ids: Vec<String> = router.models().into_iter().map(|m| m.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(ids.first().map(String::as_str), Some("alpha:m"));
    assert_eq!(router.routes()["fast"], Route::fallback(&["local:echo"]));
}
