//! The provider contract: every adapter, pointed at the mock provider server, must do each
//! task it offers, report usage the router can price, and map each injected fault onto the
//! shared error taxonomy so that retries and fallbacks behave the same whichever provider
//! fails. `tests/tests/provider_conformance.rs` runs each clause against each adapter, each
//! test with a mock server of its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use chorus::domain::{StepDefinition, Task, TaskOutput};
use chorus::providers::{LocalProvider, Provider, TaskRequest};
use chorus::routing::breaker::CircuitBreaker;
use chorus::routing::{Price, PriceTable, ProviderRouter, RetryPolicy, RouteContext, RouteOutcome, Routed};
use chorus_mock_providers::{self as mock, Fault, MockState, Script};
use serde_json::json;

/// A mock provider server on a free local port, for one test.
pub struct MockServer {
    pub state: MockState,
    pub addr: SocketAddr,
}

impl MockServer {
    pub async fn start() -> Self {
        let state = MockState::new(mock::DEFAULT_WEBHOOK_SECRET);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = mock::app(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { state, addr }
    }

    /// `http://127.0.0.1:<port>`; each provider lives under its own prefix.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL for one provider, as in `chorus_mock_providers::base_urls`.
    pub fn url_for(&self, variable: &str) -> String {
        mock::base_urls(&self.base()).into_iter().find(|(name, _)| *name == variable).map(|(_, url)| url).unwrap()
    }

    /// Scripts the next `times` requests to `provider` to fail with `fault`.
    pub fn script(&self, provider: &str, fault: Fault, times: u32) {
        self.state.faults.push(provider, Script { fault, times });
    }

    pub fn requests(&self, provider: &str) -> u64 {
        self.state.faults.requests().get(provider).copied().unwrap_or_default()
    }
}

/// One adapter under test.
pub struct ProviderCase {
    pub provider: Arc<dyn Provider>,
    /// A model for each task the adapter offers.
    pub models: Vec<(Task, &'static str)>,
    /// Whether the provider reports token usage (else the adapter must estimate and say so).
    pub reports_usage: bool,
    /// The taxonomy kind each fault must map to (a provider may lack some faults' answers).
    pub faults: Vec<(Fault, &'static str)>,
}

/// The kinds most providers map the mock's faults to.
pub fn usual_faults() -> Vec<(Fault, &'static str)> {
    vec![
        (Fault::RateLimit, "rate_limited"),
        (Fault::ServerError, "transient"),
        (Fault::Overloaded, "overloaded"),
        (Fault::Slow, "timeout"),
        (Fault::Malformed, "malformed_response"),
        (Fault::Quota, "quota_exhausted"),
        (Fault::Auth, "auth"),
        (Fault::BadRequest, "invalid_request"),
        (Fault::ContentFilter, "content_filtered"),
    ]
}

/// A request for `task` over a short English review.
pub fn request(task: Task) -> TaskRequest {
    let input = "name: Ada Lovelace\nage: 36\nThe support team was wonderful and fixed everything quickly.";
    TaskRequest {
        task,
        prompt: (task == Task::Generate).then(|| "Write one sentence about Chorus.".to_owned()),
        input: (task != Task::Generate).then(|| input.to_owned()),
        labels: if task == Task::Classify { vec!["POSITIVE".into(), "NEGATIVE".into()] } else { Vec::new() },
        schema: (task == Task::Extract).then(|| {
            json!({
                "type": "object",
                "required": ["name", "age"],
                "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}
            })
        }),
        max_tokens: Some(200),
        temperature: Some(0.0),
    }
}

fn step(task: Task, model: &str, fallbacks: &[&str], retries: u32) -> StepDefinition {
    serde_json::from_value(json!({
        "id": "s", "task": task, "model": model, "fallbacks": fallbacks,
        "retries": retries, "timeout_ms": 1500
    }))
    .unwrap()
}

fn router(case: &ProviderCase) -> ProviderRouter {
    let mut prices = PriceTable::default();
    for (_, model) in &case.models {
        let id = format!("{}:{model}", case.provider.name());
        prices = prices.with(id, Price { input_per_million: 1.0, output_per_million: 2.0 });
    }
    let policy = RetryPolicy { base_delay: std::time::Duration::from_millis(10), ..RetryPolicy::default() };
    let providers: Vec<Arc<dyn Provider>> = vec![case.provider.clone(), Arc::new(LocalProvider::new())];
    // Faults are injected one after another: the breaker must not step in.
    let breaker = CircuitBreaker::new(u32::MAX, std::time::Duration::ZERO);
    ProviderRouter::new(providers, BTreeMap::new(), policy, prices).with_breaker(breaker)
}

fn kinds(routed: &Routed) -> Vec<String> {
    routed.attempts.iter().map(|a| a.error.as_ref().map_or("ok".to_owned(), |e| e.kind.to_string())).collect()
}

/// One test per clause against the adapter `$make` returns (an `async fn() -> (MockServer,
/// ProviderCase)`, called once per test, so each test has a mock of its own), in
/// `mod $adapter`. `only [...]` lists the clauses that apply when not all do (a case with no
/// faults to map).
#[macro_export]
macro_rules! provider_contract {
    ($adapter:ident, $make:path $(,)?) => {
        $crate::provider_contract!($adapter, $make, only [
            does_each_task_with_usage_and_a_price,
            maps_each_fault_onto_its_kind_then_falls_back,
            retries_a_rate_limit,
            retries_a_server_error_on_the_same_model,
            never_retries_quota_exhaustion,
        ]);
    };
    ($adapter:ident, $make:path, only [$($clause:ident),+ $(,)?] $(,)?) => {
        $crate::contract_tests!(provider_contract, [tokio::test], $adapter, $make, [], [$($clause),+]);
    };
}

/// The local model that stands in as the fallback for `task`.
fn fallback(task: Task) -> &'static str {
    match task {
        Task::Generate => "local:echo",
        Task::Summarize => "local:extractive",
        Task::Classify => "local:lexicon",
        Task::Extract => "local:extract",
        _ => "local:hash-embed",
    }
}

/// Each task answers with its normalized shape, usage and a price.
pub async fn does_each_task_with_usage_and_a_price((_mock, case): (MockServer, ProviderCase)) {
    let name = case.provider.name();
    let router = router(&case);
    for (task, model) in &case.models {
        let id = format!("{name}:{model}");
        assert_eq!(case.provider.supports(model, *task), Ok(()), "{id} offers {task}");
        let routed = router.run(&step(*task, &id, &[], 0), &request(*task), &RouteContext::default()).await;
        let RouteOutcome::Completed(done) = &routed.outcome else {
            panic!("{id} failed to {task}: {:?}", routed.outcome)
        };
        let output = &done.completion.output;
        match (task, output) {
            (Task::Generate, TaskOutput::Generate { text, .. }) | (Task::Summarize, TaskOutput::Summarize { text }) => {
                assert!(!text.is_empty(), "{id}: empty {task}")
            }
            (Task::Classify, TaskOutput::Classify { label, confidence, scores }) => {
                assert_eq!(label, "POSITIVE", "{id}: a glowing review");
                assert!((0.0..=1.0).contains(confidence) && scores.contains_key("NEGATIVE"), "{id}: {output:?}");
            }
            (Task::Extract, TaskOutput::Extract { data }) => {
                assert_eq!(data["name"], "Ada Lovelace", "{id}: {data}");
                assert_eq!(data["age"], 36, "{id}: {data}");
            }
            (Task::Embed, TaskOutput::Embed { vector, dims }) => {
                assert!(*dims > 0 && vector.len() == *dims, "{id}: {dims} dims, {} values", vector.len())
            }
            _ => panic!("{id}: {task} answered {output:?}"),
        }
        let usage = done.completion.usage;
        assert!(usage.input_tokens > 0, "{id}: input tokens recorded");
        assert_eq!(usage.estimated, !case.reports_usage, "{id}: usage is estimated only when the provider has none");
        if *task != Task::Embed {
            assert!(usage.output_tokens > 0, "{id}: output tokens recorded");
        }
        assert!(done.cost_usd.usd().is_some_and(|usd| usd > 0.0), "{id}: the call is priced");
    }
}

/// Each fault lands on its taxonomy kind, with no retry (retries: 0) but the fallback.
pub async fn maps_each_fault_onto_its_kind_then_falls_back((_mock, case): (MockServer, ProviderCase)) {
    let name = case.provider.name();
    assert!(!case.faults.is_empty(), "{name}: no faults to map; leave this clause out (`only [...]`)");
    let router = router(&case);
    let (task, _) = case.models[0];
    for (fault, kind) in &case.faults {
        let faulty = format!("{name}:fault-{}", fault.name());
        let routed =
            router.run(&step(task, &faulty, &[fallback(task)], 0), &request(task), &RouteContext::default()).await;
        assert_eq!(kinds(&routed), [*kind, "ok"], "{faulty} → {kind}, then the fallback answers");
        let message = &routed.attempts[0].error.as_ref().unwrap().message;
        assert!(!message.contains("mock") || *kind != "auth", "{faulty}: no credentials in {message}");
    }
}

/// A rate limit is retryable: retried on the same model.
pub async fn retries_a_rate_limit((_mock, case): (MockServer, ProviderCase)) {
    let name = case.provider.name();
    let listed = case.faults.iter().any(|(fault, _)| *fault == Fault::RateLimit);
    assert!(listed, "{name}: no rate-limit fault; leave this clause out (`only [...]`)");
    let router = router(&case);
    let (task, _) = case.models[0];
    let faulty = format!("{name}:fault-{}", Fault::RateLimit.name());
    let retry = router.run(&step(task, &faulty, &[], 1), &request(task), &RouteContext::default()).await;
    assert_eq!(kinds(&retry), ["rate_limited", "rate_limited"], "{faulty}: a retryable error is retried");
}

/// A 500 is retried on the same model, which then answers.
pub async fn retries_a_server_error_on_the_same_model((mock, case): (MockServer, ProviderCase)) {
    let name = case.provider.name();
    let router = router(&case);
    let (task, model) = case.models[0];
    mock.script(name, Fault::ServerError, 1);
    let id = format!("{name}:{model}");
    let routed = router.run(&step(task, &id, &[fallback(task)], 2), &request(task), &RouteContext::default()).await;
    assert_eq!(kinds(&routed), ["transient", "ok"], "{id}: a 500 is retried");
}

/// Quota exhaustion is never retried: the fallback answers at once.
pub async fn never_retries_quota_exhaustion((mock, case): (MockServer, ProviderCase)) {
    let name = case.provider.name();
    let router = router(&case);
    let (task, model) = case.models[0];
    mock.script(name, Fault::Quota, 1);
    let id = format!("{name}:{model}");
    let routed = router.run(&step(task, &id, &[fallback(task)], 2), &request(task), &RouteContext::default()).await;
    assert_eq!(kinds(&routed), ["quota_exhausted", "ok"], "{id}: quota exhaustion is never retried");
    let RouteOutcome::Completed(done) = &routed.outcome else { panic!("{id}: {:?}", routed.outcome) };
    assert_eq!(done.provider, "local");
}
