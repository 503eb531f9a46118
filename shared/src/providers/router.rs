//! Picks models for a step, retries and falls back between them (DESIGN §4 "Failures").
//!
//! A step names a model (`provider:model` or a route name) and fallbacks. The router expands
//! routes, tries each candidate up to `1 + retries` times with a per-attempt timeout, backs
//! off with full jitter between retryable failures (or waits the provider's `Retry-After`),
//! moves on at once after a non-retryable one, and records every attempt.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Completion, ModelInfo, Provider, ProviderError, TaskRequest};
use crate::domain::{Attempt, ModelCatalog, StepDefinition, StepError, Task, TaskOutput, Usage};

/// At most this many schema violations are listed in an `InvalidOutput` message.
const MAX_VIOLATIONS_SHOWN: usize = 10;

/// How long to wait between retries of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The cap of the first backoff; it doubles with each retry.
    pub base_delay: Duration,
    /// No wait is longer, whether backoff or a provider's `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(10) }
    }
}

/// What one model charges, in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

/// Prices by `provider:model`. Models not listed (the `local` ones, for a start) cost nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    prices: BTreeMap<String, Price>,
}

impl PriceTable {
    /// The table with `model` (`provider:model`) priced at `price`.
    pub fn with(mut self, model: impl Into<String>, price: Price) -> Self {
        self.prices.insert(model.into(), price);
        self
    }

    /// The cost in USD of `usage` on `model`; zero for unknown models.
    pub fn cost(&self, model: &str, usage: &Usage) -> f64 {
        self.prices.get(model).map_or(0.0, |price| {
            (usage.input_tokens as f64 * price.input_per_million
                + usage.output_tokens as f64 * price.output_per_million)
                / 1_000_000.0
        })
    }
}

/// Every attempt the router made for a step, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    /// In the order they were made; the last one succeeded when the outcome is `Completed`.
    pub attempts: Vec<Attempt>,
    pub outcome: RouteOutcome,
}

/// How routing a step ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteOutcome {
    Completed(RoutedCompletion),
    /// Every candidate failed; the last error.
    Failed(ProviderError),
}

/// The call that succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedCompletion {
    pub provider: String,
    /// The model id without the provider prefix.
    pub model: String,
    pub completion: Completion,
    pub cost_usd: f64,
    /// Of the successful call alone; retries and backoff are in `attempts` and the step's times.
    pub latency_ms: u64,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    /// Try the same model again after this long.
    RetryAfter(Duration),
    /// Give up on this model.
    NextCandidate,
}

/// The retry decision after attempt `attempt` (0-based) of a model allowed `retries` retries
/// failed with `error`. `jitter` in `[0, 1]` picks the backoff within its window (full jitter:
/// anywhere from zero to `min(max_delay, base_delay × 2^attempt)`); a provider's
/// `retry_after` replaces the backoff, capped at `max_delay`.
fn next_move(error: &ProviderError, attempt: u32, retries: u32, policy: &RetryPolicy, jitter: f64) -> Move {
    if !error.is_retryable() || attempt >= retries {
        return Move::NextCandidate;
    }
    if let Some(wait) = error.retry_after() {
        return Move::RetryAfter(wait.min(policy.max_delay));
    }
    let factor = 2_u32.checked_pow(attempt).unwrap_or(u32::MAX);
    let window = policy.base_delay.saturating_mul(factor).min(policy.max_delay);
    Move::RetryAfter(window.mul_f64(jitter.clamp(0.0, 1.0)))
}

/// A candidate after route expansion.
enum Target<'a> {
    Model {
        provider: &'a str,
        model: &'a str,
    },
    /// Neither `provider:model` nor a route; validation should have stopped it.
    Unknown(&'a str),
}

impl<'a> Target<'a> {
    /// `(provider, model)` as recorded in an attempt; the provider is empty when unknown.
    fn names(&self) -> (&'a str, &'a str) {
        match *self {
            Target::Model { provider, model } => (provider, model),
            Target::Unknown(name) => ("", name),
        }
    }
}

/// Routes calls to providers by `provider:model` and named routes.
pub struct ProviderRouter {
    providers: BTreeMap<&'static str, Arc<dyn Provider>>,
    routes: BTreeMap<String, Vec<String>>,
    policy: RetryPolicy,
    prices: PriceTable,
}

impl fmt::Debug for ProviderRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderRouter")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("routes", &self.routes)
            .field("policy", &self.policy)
            .field("prices", &self.prices)
            .finish()
    }
}

impl ProviderRouter {
    /// A router over `providers` (a later provider with the same name replaces an earlier one)
    /// and `routes`: route name → ordered `provider:model` list.
    pub fn new(
        providers: Vec<Arc<dyn Provider>>,
        routes: BTreeMap<String, Vec<String>>,
        policy: RetryPolicy,
        prices: PriceTable,
    ) -> Self {
        let providers = providers.into_iter().map(|provider| (provider.name(), provider)).collect();
        Self { providers, routes, policy, prices }
    }

    /// Every provider's models, sorted by id.
    pub fn models(&self) -> Vec<ModelInfo> {
        let mut models: Vec<ModelInfo> = self.providers.values().flat_map(|p| p.models()).collect();
        models.sort_by(|a, b| a.id.cmp(&b.id));
        models
    }

    /// The configured routes.
    pub fn routes(&self) -> &BTreeMap<String, Vec<String>> {
        &self.routes
    }

    /// Runs `request` for `step`: each candidate in turn (routes expanded, duplicates tried
    /// once), each up to `1 + retries` times within `step.timeout()` per attempt. `extract`
    /// output is checked against the request's schema. Never fails outright: the error is in
    /// [`Routed::result`], with every attempt alongside.
    pub async fn run(&self, step: &StepDefinition, request: &TaskRequest) -> Routed {
        let mut attempts = Vec::new();
        let mut last_error = None;
        for target in self.targets(step) {
            let (provider, model) = match self.resolve(&target, request.task) {
                Ok(found) => found,
                Err(error) => {
                    let (provider_name, model) = target.names();
                    attempts.push(failed_attempt(provider_name, model, 0, &error));
                    last_error = Some(error);
                    continue;
                }
            };
            for attempt in 0..=step.retries() {
                let started = Instant::now();
                let outcome = call_once(provider, model, step, request).await;
                let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                let error = match outcome {
                    Ok(completion) => {
                        attempts.push(Attempt {
                            provider: provider.name().to_owned(),
                            model: model.to_owned(),
                            latency_ms,
                            error: None,
                        });
                        let id = format!("{}:{model}", provider.name());
                        let routed = RoutedCompletion {
                            provider: provider.name().to_owned(),
                            model: model.to_owned(),
                            cost_usd: self.prices.cost(&id, &completion.usage),
                            completion,
                            latency_ms,
                        };
                        return Routed { attempts, outcome: RouteOutcome::Completed(routed) };
                    }
                    Err(error) => error,
                };
                attempts.push(failed_attempt(provider.name(), model, latency_ms, &error));
                let next = next_move(&error, attempt, step.retries(), &self.policy, fastrand::f64());
                tracing::info!(
                    step = %step.id,
                    provider = provider.name(),
                    model,
                    attempt,
                    kind = error.kind(),
                    next = ?next,
                    "provider attempt failed"
                );
                last_error = Some(error);
                match next {
                    Move::RetryAfter(wait) => tokio::time::sleep(wait).await,
                    Move::NextCandidate => break,
                }
            }
        }
        let error = last_error
            .unwrap_or_else(|| ProviderError::InvalidRequest(format!("step `{}` names no model to call", step.id)));
        Routed { attempts, outcome: RouteOutcome::Failed(error) }
    }

    /// The provider and model id of `target`, or why it cannot be called: it names no
    /// provider, or a model that cannot do `task`. Checked here as well as at validation
    /// because routes and providers can change in between, and a call bound to be rejected is
    /// better not made.
    fn resolve<'a>(&'a self, target: &Target<'a>, task: Task) -> Result<(&'a dyn Provider, &'a str), ProviderError> {
        let &Target::Model { provider, model } = target else {
            let (_, name) = target.names();
            return Err(ProviderError::InvalidRequest(self.unknown_message(name)));
        };
        let Some(found) = self.providers.get(provider) else {
            let id = format!("{provider}:{model}");
            return Err(ProviderError::InvalidRequest(self.unknown_message(&id)));
        };
        found.supports(model, task).map_err(ProviderError::InvalidRequest)?;
        Ok((found.as_ref(), model))
    }

    /// The step's candidates with routes expanded, each model once, in order.
    fn targets<'a>(&'a self, step: &'a StepDefinition) -> Vec<Target<'a>> {
        let mut seen: Vec<&str> = Vec::new();
        let mut targets = Vec::new();
        for candidate in step.candidates() {
            let entries: Vec<&str> = match self.routes.get(candidate) {
                Some(route) if !candidate.contains(':') => route.iter().map(String::as_str).collect(),
                _ => vec![candidate],
            };
            for entry in entries {
                if seen.contains(&entry) {
                    continue;
                }
                seen.push(entry);
                targets.push(match entry.split_once(':') {
                    Some((provider, model)) => Target::Model { provider, model },
                    None => Target::Unknown(entry),
                });
            }
        }
        targets
    }

    /// Why `name` (a candidate or route entry) names nothing, listing what exists.
    fn unknown_message(&self, name: &str) -> String {
        let what = match name.split_once(':') {
            Some((provider, _)) => format!("unknown provider `{provider}` in `{name}`"),
            None => format!("`{name}` is neither `provider:model` nor a route"),
        };
        let providers: Vec<&str> = self.providers.keys().copied().collect();
        let routes: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        let list = |names: Vec<&str>| {
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        };
        format!("{what}; providers: {}; routes: {}", list(providers), list(routes))
    }

    fn check_entry(&self, model: &str, task: Task) -> Result<(), String> {
        let Some((provider, id)) = model.split_once(':') else {
            return Err(self.unknown_message(model));
        };
        match self.providers.get(provider) {
            Some(p) => p.supports(id, task),
            None => Err(self.unknown_message(model)),
        }
    }
}

impl ModelCatalog for ProviderRouter {
    /// `provider:model` must be offered by its provider for `task`; a route name must expand
    /// only to such models.
    fn check_model(&self, model: &str, task: Task) -> Result<(), String> {
        if model.contains(':') {
            return self.check_entry(model, task);
        }
        let Some(route) = self.routes.get(model) else {
            return Err(self.unknown_message(model));
        };
        if route.is_empty() {
            return Err(format!("route `{model}` lists no models"));
        }
        let problems: Vec<String> = route.iter().filter_map(|entry| self.check_entry(entry, task).err()).collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("route `{model}` cannot {task}: {}", problems.join("; ")))
        }
    }
}

/// One call within the step's timeout, its output checked against the step's contract.
async fn call_once(
    provider: &dyn Provider,
    model: &str,
    step: &StepDefinition,
    request: &TaskRequest,
) -> Result<Completion, ProviderError> {
    match tokio::time::timeout(step.timeout(), provider.call(model, request)).await {
        Ok(outcome) => outcome.and_then(|completion| check_output(request, completion)),
        Err(_elapsed) => Err(ProviderError::Timeout),
    }
}

fn failed_attempt(provider: &str, model: &str, latency_ms: u64, error: &ProviderError) -> Attempt {
    Attempt {
        provider: provider.to_owned(),
        model: model.to_owned(),
        latency_ms,
        error: Some(StepError::new(error.kind(), error.to_string())),
    }
}

/// The output must be of the request's task, and `extract` data must satisfy the schema.
fn check_output(request: &TaskRequest, completion: Completion) -> Result<Completion, ProviderError> {
    let matches_task = matches!(
        (&completion.output, request.task),
        (TaskOutput::Generate { .. }, Task::Generate)
            | (TaskOutput::Summarize { .. }, Task::Summarize)
            | (TaskOutput::Classify { .. }, Task::Classify)
            | (TaskOutput::Extract { .. }, Task::Extract)
            | (TaskOutput::Embed { .. }, Task::Embed)
    );
    if !matches_task {
        return Err(ProviderError::InvalidOutput(format!("expected a {} output", request.task)));
    }
    if let (TaskOutput::Extract { data }, Some(schema)) = (&completion.output, &request.schema) {
        let validator = jsonschema::validator_for(schema)
            .map_err(|err| ProviderError::InvalidRequest(format!("the step's schema is not valid: {err}")))?;
        let violations: Vec<String> = validator
            .iter_errors(data)
            .map(|err| {
                let path = err.instance_path().to_string();
                format!("{}: {err}", if path.is_empty() { "/" } else { &path })
            })
            .collect();
        if !violations.is_empty() {
            let shown = violations.len().min(MAX_VIOLATIONS_SHOWN);
            let more = violations.len() - shown;
            let mut message = format!("the data does not match the schema: {}", violations[..shown].join("; "));
            if more > 0 {
                message.push_str(&format!(" (and {more} more)"));
            }
            return Err(ProviderError::InvalidOutput(message));
        }
    }
    Ok(completion)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::domain::FinishReason;
    use crate::providers::local::LocalProvider;

    // --- next_move

    fn policy() -> RetryPolicy {
        RetryPolicy { base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) }
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
    fn given_retry_after_when_deciding_then_it_replaces_backoff_capped_at_max_delay() {
        let err = |secs| ProviderError::RateLimited { retry_after: Some(Duration::from_secs(secs)) };
        let policy = RetryPolicy { base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(5) };
        assert_eq!(next_move(&err(3), 0, 2, &policy, 0.0), Move::RetryAfter(Duration::from_secs(3)));
        assert_eq!(next_move(&err(30), 0, 2, &policy, 0.0), Move::RetryAfter(Duration::from_secs(5)));
    }

    // --- prices

    #[test]
    fn given_prices_when_costing_then_known_models_cost_per_million_and_unknown_ones_nothing() {
        let prices = PriceTable::default()
            .with("openai:gpt-4o-mini", Price { input_per_million: 0.15, output_per_million: 0.60 });
        let usage = Usage { input_tokens: 2_000_000, output_tokens: 500_000, estimated: false };
        assert!((prices.cost("openai:gpt-4o-mini", &usage) - 0.60).abs() < 1e-12);
        assert_eq!(prices.cost("local:echo", &usage), 0.0);
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
        let routes = routes
            .iter()
            .map(|(name, models)| (name.to_string(), models.iter().map(|m| m.to_string()).collect()))
            .collect();
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
        let routed = router.run(&step(Task::Generate, "alpha:m", &[]), &generate_request()).await;
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
        let routed = router.run(&step(Task::Generate, "alpha:m", &["beta:m"]), &generate_request()).await;
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
        let routed = router.run(&step, &generate_request()).await;
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
        let routed = router.run(&step, &generate_request()).await;
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
        let routed = router.run(&step, &generate_request()).await;
        assert_eq!(trail(&routed), ["alpha:m timeout", "alpha:m timeout", "beta:m -"]);
        assert_eq!(routed.attempts[0].latency_ms, 500);
    }

    #[tokio::test(start_paused = true)]
    async fn given_retry_after_when_run_then_the_router_waits_that_long_before_retrying() {
        let limited = Act::Fail(ProviderError::RateLimited { retry_after: Some(Duration::from_secs(3)) });
        let alpha = Scripted::new("alpha", vec![limited], ok("done"));
        let router = router(vec![alpha.clone()], &[]);
        let started = Instant::now();
        let routed = router.run(&step(Task::Generate, "alpha:m", &[]), &generate_request()).await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!(trail(&routed), ["alpha:m rate_limited", "alpha:m -"]);
    }

    #[tokio::test(start_paused = true)]
    async fn given_backoff_when_run_then_waits_stay_within_the_full_jitter_window() {
        let alpha = Scripted::new("alpha", vec![transient(), transient()], ok("done"));
        let policy = RetryPolicy { base_delay: Duration::from_secs(1), max_delay: Duration::from_secs(10) };
        let router = ProviderRouter::new(vec![alpha], BTreeMap::new(), policy, PriceTable::default());
        let started = Instant::now();
        router.run(&step(Task::Generate, "alpha:m", &[]), &generate_request()).await;
        // At most 1 s then 2 s.
        assert!(started.elapsed() <= Duration::from_secs(3), "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn given_a_route_when_run_then_it_expands_in_order_before_the_fallbacks() {
        let alpha = Scripted::new("alpha", vec![], Act::Fail(ProviderError::InvalidRequest("too long".into())));
        let beta = Scripted::new("beta", vec![], Act::Fail(ProviderError::Auth("no".into())));
        let gamma = Scripted::new("gamma", vec![], ok("from gamma"));
        let router = router(vec![alpha.clone(), beta.clone(), gamma.clone()], &[("fast", &["alpha:m", "beta:m"])]);
        let routed = router.run(&step(Task::Generate, "fast", &["alpha:m", "gamma:m"]), &generate_request()).await;
        // `alpha:m` appears twice but is tried once.
        assert_eq!(trail(&routed), ["alpha:m invalid_request", "beta:m auth", "gamma:m -"]);
        assert_eq!(alpha.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn given_unknown_providers_and_routes_when_run_then_they_are_recorded_and_skipped() {
        let beta = Scripted::new("beta", vec![], ok("from beta"));
        let router = router(vec![beta.clone()], &[]);
        let routed = router.run(&step(Task::Generate, "nope:m", &["slow", "beta:m"]), &generate_request()).await;
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
        let routed = router.run(&step(Task::Extract, "alpha:m", &["beta:m"]), &request).await;
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
        let routed = router.run(&step(Task::Generate, "alpha:m", &[]), &generate_request()).await;
        // 1,000 × $2/M + 500 × $8/M.
        assert!((winner(&routed).cost_usd - 0.006).abs() < 1e-12);
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
        let routed = router.run(&step, &request).await;
        assert_eq!(trail(&routed), ["local:outage transient", "local:outage transient", "local:extractive -"]);
        let won = winner(&routed);
        assert!(matches!(&won.completion.output, TaskOutput::Summarize { text } if !text.is_empty()));
        assert_eq!(won.cost_usd, 0.0);
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
        let err = router.check_model("mixed", Task::Generate).unwrap_err();
        assert!(err.starts_with("route `mixed` cannot generate") && err.contains("local:lexicon"), "{err}");
        let err = router.check_model("empty", Task::Generate).unwrap_err();
        assert!(err.contains("no models"), "{err}");
    }

    #[test]
    fn given_several_providers_when_listing_then_models_are_sorted_and_routes_returned() {
        let router = router(
            vec![Arc::new(LocalProvider), Scripted::new("alpha", vec![], ok("x"))],
            &[("fast", &["local:echo"])],
        );
        let ids: Vec<String> = router.models().into_iter().map(|m| m.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert_eq!(ids.first().map(String::as_str), Some("alpha:m"));
        assert_eq!(router.routes()["fast"], ["local:echo"]);
    }
}
