//! Routing a step to models: picks candidates (routes expanded), retries and falls back
//! between them, with a circuit breaker (`breaker`), prices (`pricing`), budgets (`budget`),
//! named routes (`routes`) and shared rate limits.
//!
//! A step names a model (`provider:model` or a route name) and fallbacks. The router expands
//! routes, skips models whose circuit is open, whose estimated cost does not fit the run's
//! budget (reserved before the call, so parallel steps cannot overshoot it together) or whose
//! cost cannot be estimated under a budget, and tries each candidate up to `1 + retries`
//! times with a per-attempt timeout. Between retryable failures it backs off with full
//! jitter (or waits the provider's `Retry-After`): short waits in process, long ones handed
//! back to the engine as [`RouteOutcome::RetryLater`] so the step is re-enqueued with a delay
//! instead of a Lambda being billed for sleeping. A later invocation resumes where this one stopped, from the
//! step's recorded attempts. Non-retryable failures move on to the next candidate at once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub mod breaker;
pub mod budget;
pub mod pricing;
mod retry;
pub mod routes;

use self::breaker::CircuitBreaker;
pub use self::budget::{BudgetHolder, Refusal, RunBudget};
pub use self::pricing::{Price, PriceTable};
pub use self::retry::RetryPolicy;
use self::retry::{Move, next_move};
pub use self::routes::Route;
use crate::domain::{Attempt, Cost, ModelCatalog, RateLimit, StepDefinition, StepError, Task, Usage};
use crate::ports::{Acquired, RateLimiter};
use crate::providers::{Completion, ModelInfo, Provider, ProviderError, TaskRequest};

/// What the engine knows about the step beyond its definition.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteContext<'a> {
    /// Attempts earlier invocations made; they count against each model's retries.
    pub prior: &'a [Attempt],
    /// The run's budget, when it has one.
    pub budget: Option<RunBudget<'a>>,
    /// Where an async provider should report a job; without it, async providers are
    /// called synchronously.
    pub job_callback: Option<JobCallback<'a>>,
    /// Time left of the step's `step_timeout_ms`; `None` for no limit.
    pub step_time_left: Option<Duration>,
    /// Time this invocation may spend before handing the step back to the queue.
    pub invocation_budget: Option<Duration>,
}

/// The parts of a job's callback URL: `{base}/{provider}/{token}`.
#[derive(Debug, Clone, Copy)]
pub struct JobCallback<'a> {
    /// e.g. `https://api.example.com/v1/callbacks`.
    pub base: &'a str,
    /// Names the run and step and proves the caller got the URL from us.
    pub token: &'a str,
}

impl JobCallback<'_> {
    pub fn url(&self, provider: &str) -> String {
        format!("{}/{provider}/{}", self.base, self.token)
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
    /// An async provider accepted the job; its webhook (or the sweep's poll) completes it.
    Submitted(SubmittedJob),
    /// Not done: run the step again after this delay (a long `Retry-After` or backoff, or
    /// the invocation's time is up).
    RetryLater(Duration),
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
    pub cost_usd: Cost,
    /// Of the successful call alone; retries and backoff are in `attempts` and the step's times.
    pub latency_ms: u64,
}

/// A job an async provider accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedJob {
    pub provider: String,
    pub model: String,
    pub job_id: String,
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

/// Why the attempts on one candidate stopped.
enum Stop {
    /// Move on to the next candidate.
    Next,
    /// The step is done routing, one way or another.
    Done(RouteOutcome),
}

/// Routes calls to providers by `provider:model` and named routes.
pub struct ProviderRouter {
    providers: BTreeMap<&'static str, Arc<dyn Provider>>,
    routes: BTreeMap<String, Route>,
    policy: RetryPolicy,
    prices: PriceTable,
    breaker: CircuitBreaker,
    limits: Option<RateLimits>,
}

/// Per-provider request rates, shared by every process through the limiter's backend.
#[derive(Clone)]
pub struct RateLimits {
    pub limiter: Arc<dyn RateLimiter>,
    /// By provider name; providers not listed are not limited.
    pub limits: BTreeMap<String, RateLimit>,
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
    /// and named `routes`.
    pub fn new(
        providers: Vec<Arc<dyn Provider>>,
        routes: BTreeMap<String, Route>,
        policy: RetryPolicy,
        prices: PriceTable,
    ) -> Self {
        let providers = providers.into_iter().map(|provider| (provider.name(), provider)).collect();
        Self { providers, routes, policy, prices, breaker: CircuitBreaker::default(), limits: None }
    }

    /// The same router, taking a token from each provider's bucket before every call.
    pub fn with_rate_limits(mut self, limits: RateLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// The same router with another price table.
    pub fn with_prices(mut self, prices: PriceTable) -> Self {
        self.prices = prices;
        self
    }

    /// The same router with another circuit breaker.
    pub fn with_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = breaker;
        self
    }

    /// Every provider's models, sorted by id.
    pub fn models(&self) -> Vec<ModelInfo> {
        let mut models: Vec<ModelInfo> = self.providers.values().flat_map(|p| p.models()).collect();
        models.sort_by(|a, b| a.id.cmp(&b.id));
        models
    }

    /// The configured routes.
    pub fn routes(&self) -> &BTreeMap<String, Route> {
        &self.routes
    }

    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// What `usage` on `provider:model` cost: nothing on a free provider (`local`), the price
    /// table's price otherwise, unknown when the table has none.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Cost {
        if self.is_free(provider) {
            return Cost::ZERO;
        }
        self.prices.cost(&format!("{provider}:{model}"), usage).into()
    }

    fn is_free(&self, provider: &str) -> bool {
        self.providers.get(provider).is_some_and(|p| p.is_free())
    }

    /// A route entry's price for `cheapest`: free models first, then by price, then the ones
    /// without a price (unknown is not free).
    fn rank(&self, entry: &str) -> f64 {
        match entry.split_once(':') {
            Some((provider, _)) if self.is_free(provider) => 0.0,
            _ => self.prices.rank(entry).unwrap_or(f64::INFINITY),
        }
    }

    /// The provider named `name`, if configured.
    pub fn provider(&self, name: &str) -> Option<&dyn Provider> {
        self.providers.get(name).map(|p| p.as_ref())
    }

    /// Runs `request` for `step`: each candidate in turn (routes expanded, duplicates tried
    /// once), each up to `1 + retries` times within `step.timeout()` per attempt. `extract`
    /// output is checked against the request's schema. Never fails outright: the outcome
    /// says how it ended, with every attempt alongside.
    pub async fn run(&self, step: &StepDefinition, request: &TaskRequest, context: &RouteContext<'_>) -> Routed {
        let started = Instant::now();
        let step_until = context.step_time_left.map(|left| started + left);
        let yield_at = context.invocation_budget.map(|budget| started + budget);
        let mut attempts = Vec::new();
        let mut last_error = None;
        for target in self.targets(step, request.task) {
            let (provider, model) = match self.resolve(&target, request.task) {
                Ok(found) => found,
                Err(error) => {
                    let (provider_name, model) = target.names();
                    attempts.push(failed_attempt(provider_name, model, 0, &error));
                    last_error = Some(error);
                    continue;
                }
            };
            let Some(first) = resume_at(context.prior, provider.name(), model, step.retries()) else { continue };
            if let Err(error) = self.admit(provider.name()) {
                attempts.push(failed_attempt(provider.name(), model, 0, &error));
                last_error = Some(error);
                continue;
            }
            match self.reserve(provider.name(), model, request, context).await {
                Ok(()) => {}
                Err(Refusal::Refused(error)) => {
                    attempts.push(failed_attempt(provider.name(), model, 0, &error));
                    last_error = Some(error);
                    continue;
                }
                Err(Refusal::Unavailable(reason)) => {
                    tracing::warn!(step = %step.id, reason, "could not reserve the run's budget; trying the step later");
                    return Routed { attempts, outcome: RouteOutcome::RetryLater(BUDGET_UNAVAILABLE_WAIT) };
                }
            }
            let candidate = Candidate { provider, model, step, request, context, step_until, yield_at };
            match self.attempt_candidate(&candidate, first, &mut attempts, &mut last_error).await {
                Stop::Next => continue,
                Stop::Done(outcome) => return Routed { attempts, outcome },
            }
        }
        let error = last_error
            .unwrap_or_else(|| ProviderError::InvalidRequest(format!("step `{}` has no model left to try", step.id)));
        Routed { attempts, outcome: RouteOutcome::Failed(error) }
    }

    /// Attempts on one model from attempt number `first`, until it answers, runs out of
    /// retries, or the step must wait.
    async fn attempt_candidate(
        &self,
        candidate: &Candidate<'_>,
        first: u32,
        attempts: &mut Vec<Attempt>,
        last_error: &mut Option<ProviderError>,
    ) -> Stop {
        let Candidate { provider, model, step, request, context, .. } = *candidate;
        for attempt in first..=step.retries() {
            let timeout = match candidate.attempt_timeout() {
                Ok(timeout) => timeout,
                Err(OutOfTime::Step) => return Stop::Done(RouteOutcome::Failed(ProviderError::Timeout)),
                Err(OutOfTime::Invocation) => return Stop::Done(RouteOutcome::RetryLater(Duration::ZERO)),
            };
            if let Some(wait) = self.wait_for_token(provider.name(), candidate).await {
                return Stop::Done(RouteOutcome::RetryLater(wait));
            }
            let started = Instant::now();
            let callback_url = context.job_callback.map(|callback| callback.url(provider.name()));
            let outcome = call_once(provider, model, request, callback_url.as_deref(), timeout).await;
            let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let error = match outcome {
                Ok(reply) => {
                    self.breaker.record(provider.name(), true);
                    let (provider, model) = (provider.name().to_owned(), model.to_owned());
                    attempts.push(Attempt {
                        provider: provider.clone(),
                        model: model.clone(),
                        latency_ms,
                        error: None,
                    });
                    return Stop::Done(self.answered(provider, model, reply, latency_ms));
                }
                Err(error) => error,
            };
            // Only failures that say the provider is unwell count towards its circuit.
            self.breaker.record(provider.name(), !error.is_retryable());
            attempts.push(failed_attempt(provider.name(), model, latency_ms, &error));
            let next = next_move(&error, attempt, step.retries(), &self.policy, fastrand::f64());
            tracing::info!(
                step = %step.id,
                provider = provider.name(),
                model,
                attempt,
                kind = %error.kind(),
                next = ?next,
                "provider attempt failed"
            );
            *last_error = Some(error);
            if self.breaker.check(provider.name()).is_err() {
                return Stop::Next; // that failure opened the circuit: no more retries here
            }
            match next {
                Move::RetryAfter(wait)
                    if wait <= self.policy.max_inline_wait && !candidate.outlasts_invocation(wait) =>
                {
                    tokio::time::sleep(wait).await
                }
                Move::RetryAfter(wait) => return Stop::Done(RouteOutcome::RetryLater(wait)),
                Move::NextCandidate => return Stop::Next,
            }
        }
        Stop::Next
    }

    /// How routing ends when `provider:model` answered.
    fn answered(&self, provider: String, model: String, reply: Reply, latency_ms: u64) -> RouteOutcome {
        match reply {
            Reply::Completed(completion) => {
                let cost_usd = self.cost(&provider, &model, &completion.usage);
                RouteOutcome::Completed(RoutedCompletion { provider, model, completion, cost_usd, latency_ms })
            }
            Reply::Submitted(job_id) => RouteOutcome::Submitted(SubmittedJob { provider, model, job_id }),
        }
    }

    /// Takes a token for `provider`, sleeping for short waits. `Some(wait)` when the wait is
    /// too long to sleep through, or would outlast this invocation: the step should come
    /// back later. A limiter that cannot be reached lets the call through: rate limits
    /// protect the provider's quota, and a provider's own 429 is handled anyway.
    async fn wait_for_token(&self, provider: &str, candidate: &Candidate<'_>) -> Option<Duration> {
        let limits = self.limits.as_ref()?;
        let limit = *limits.limits.get(provider)?;
        loop {
            match limits.limiter.acquire(provider, limit).await {
                Ok(Acquired::Granted) => return None,
                Ok(Acquired::Wait(wait))
                    if wait <= self.policy.max_inline_wait && !candidate.outlasts_invocation(wait) =>
                {
                    tokio::time::sleep(wait).await
                }
                Ok(Acquired::Wait(wait)) => return Some(wait),
                Err(error) => {
                    tracing::warn!(provider, error = %error, "rate limiter unavailable; calling without a token");
                    return None;
                }
            }
        }
    }

    /// Whether `provider` may be called now: its circuit is closed.
    fn admit(&self, provider: &str) -> Result<(), ProviderError> {
        self.breaker.check(provider).map_err(|remaining| {
            ProviderError::CircuitOpen(format!(
                "`{provider}` failed repeatedly and is skipped for another {} s",
                remaining.as_secs().max(1)
            ))
        })
    }

    /// Under a budget, reserves the call's estimated cost before it is made: a free model
    /// needs nothing, a priced one its estimate (which must fit beside what the run has spent
    /// and reserved), and one without a price is refused unless the workflow allows it (its
    /// cost then counts as nothing). The reservation stands for every attempt on this model.
    async fn reserve(
        &self,
        provider: &str,
        model: &str,
        request: &TaskRequest,
        context: &RouteContext<'_>,
    ) -> Result<(), Refusal> {
        let Some(budget) = context.budget else { return Ok(()) };
        if self.is_free(provider) {
            return Ok(());
        }
        let id = format!("{provider}:{model}");
        match self.prices.estimate(&id, request) {
            Some(estimate) if estimate > 0.0 => budget.holder.reserve(&id, estimate).await,
            Some(_) => Ok(()),
            None if budget.allow_unpriced => Ok(()),
            None => {
                let version = &self.prices.version;
                let table =
                    if version.is_empty() { "the price table".to_owned() } else { format!("price table {version}") };
                Err(Refusal::Refused(ProviderError::PriceUnknown(format!(
                    "`{id}` has no price in {table}, so what it costs is unknown and cannot be held to the run's \
                     `budget_usd`; set `\"allow_unpriced_models\": true` on the workflow to call it anyway"
                ))))
            }
        }
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

    /// The step's candidates with routes expanded, each model once, in order. A route's
    /// entries whose provider is not configured here, or which cannot do `task`, are left
    /// out: routes are shared configuration, and `fast` should work in `chorus dev` with only
    /// the local models as well as in production.
    fn targets<'a>(&'a self, step: &'a StepDefinition, task: Task) -> Vec<Target<'a>> {
        let mut seen: Vec<&str> = Vec::new();
        let mut targets = Vec::new();
        for candidate in step.candidates() {
            let entries: Vec<&str> = match self.routes.get(candidate) {
                Some(route) if !candidate.contains(':') => {
                    let order = route.order(|entry| self.rank(entry), fastrand::f64());
                    order.into_iter().filter(|e| self.usable(e, task)).collect()
                }
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

    /// Whether a route entry names a configured provider that can do `task`.
    fn usable(&self, entry: &str, task: Task) -> bool {
        self.check_entry(entry, task).is_ok()
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
    /// `provider:model` must be offered by its provider for `task`; a route name must have
    /// at least one entry that can (the others are skipped when it runs).
    fn check_model(&self, model: &str, task: Task) -> Result<(), String> {
        if model.contains(':') {
            return self.check_entry(model, task);
        }
        let Some(route) = self.routes.get(model) else {
            return Err(self.unknown_message(model));
        };
        let entries = route.models();
        if entries.is_empty() {
            return Err(format!("route `{model}` lists no models"));
        }
        let problems: Vec<String> = entries.iter().filter_map(|entry| self.check_entry(entry, task).err()).collect();
        if problems.len() < entries.len() {
            Ok(())
        } else {
            Err(format!("route `{model}` has no model that can {task} here: {}", problems.join("; ")))
        }
    }
}

/// One model being tried for a step.
struct Candidate<'a> {
    provider: &'a dyn Provider,
    model: &'a str,
    step: &'a StepDefinition,
    request: &'a TaskRequest,
    context: &'a RouteContext<'a>,
    step_until: Option<Instant>,
    yield_at: Option<Instant>,
}

impl Candidate<'_> {
    /// The next attempt's timeout: the step's per-attempt timeout, cut to what is left of
    /// the step and of this invocation. When the step's time is up it fails; when this
    /// invocation has less than [`MIN_ATTEMPT`] left, the step goes back to the queue to run
    /// again at once. A `timeout_ms` longer than the invocation budget is cut to it rather
    /// than never starting: an attempt can never take longer than a worker may run.
    fn attempt_timeout(&self) -> Result<Duration, OutOfTime> {
        let now = Instant::now();
        let mut timeout = self.step.timeout();
        if let Some(until) = self.step_until {
            let left = until.saturating_duration_since(now);
            if left.is_zero() {
                return Err(OutOfTime::Step);
            }
            timeout = timeout.min(left);
        }
        if let Some(at) = self.yield_at {
            let left = at.saturating_duration_since(now);
            if left < MIN_ATTEMPT.min(timeout) {
                return Err(OutOfTime::Invocation);
            }
            timeout = timeout.min(left);
        }
        Ok(timeout)
    }

    /// Whether sleeping `wait` here would run past this invocation's time.
    fn outlasts_invocation(&self, wait: Duration) -> bool {
        self.yield_at.is_some_and(|at| Instant::now() + wait >= at)
    }
}

/// How long a step waits before trying again when its budget could not be reserved (the
/// run store did not answer).
const BUDGET_UNAVAILABLE_WAIT: Duration = Duration::from_secs(5);

/// The least time worth starting an attempt with when an invocation is nearly over (unless
/// the step's own timeout is shorter): less, and the step is handed back instead.
const MIN_ATTEMPT: Duration = Duration::from_secs(2);

/// Whose time ran out before an attempt could start.
enum OutOfTime {
    /// The step's `step_timeout_ms`: it fails.
    Step,
    /// This invocation's: the step runs again in the next one.
    Invocation,
}

/// Where to pick up `provider:model` given the attempts earlier invocations made: the next
/// attempt number, or `None` when the model is done with (it answered, failed for good, or
/// used its retries).
fn resume_at(prior: &[Attempt], provider: &str, model: &str, retries: u32) -> Option<u32> {
    let earlier: Vec<&Attempt> = prior.iter().filter(|a| a.provider == provider && a.model == model).collect();
    let finished = earlier.iter().any(|a| a.error.as_ref().is_none_or(|e| !e.kind.is_retryable()));
    let made = u32::try_from(earlier.len()).unwrap_or(u32::MAX);
    (!finished && made <= retries).then_some(made)
}

/// What one attempt produced.
enum Reply {
    Completed(Completion),
    /// An async provider's job id.
    Submitted(String),
}

/// One call within `timeout`, its output checked against the step's contract. Providers
/// with jobs submit instead when there is a callback URL to report to.
async fn call_once(
    provider: &dyn Provider,
    model: &str,
    request: &TaskRequest,
    callback_url: Option<&str>,
    timeout: Duration,
) -> Result<Reply, ProviderError> {
    let call = async {
        match (provider.jobs(), callback_url) {
            (Some(jobs), Some(url)) => jobs.submit(model, request, url).await.map(Reply::Submitted),
            _ => provider.call(model, request).await?.checked(request).await.map(Reply::Completed),
        }
    };
    tokio::time::timeout(timeout, call).await.unwrap_or(Err(ProviderError::Timeout))
}

fn failed_attempt(provider: &str, model: &str, latency_ms: u64, error: &ProviderError) -> Attempt {
    Attempt {
        provider: provider.to_owned(),
        model: model.to_owned(),
        latency_ms,
        error: Some(StepError::from(error.clone())),
    }
}

#[cfg(test)]
mod tests;
