//! The API through its router, as a client sees it: no socket, `oneshot` per request, the
//! engine over memory adapters and the `local` provider, steps driven by draining the queue.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tower::ServiceExt;

use super::*;
use crate::adapters::memory::MemoryTenantDirectory;
use crate::domain::TenantId;
use crate::engine::EngineParts;
use crate::ports::{NotificationMessage, SigningSecrets, StepMessage, Tenant};
use crate::providers::{LocalProvider, Provider};
use crate::routing::{PriceTable, ProviderRouter, RetryPolicy, Route};
use crate::testing::TestKit;

mod document;
mod properties;
mod rerun;
mod workflows;

const KEY_A: &str = "sk_test_tenant_a";
const KEY_B: &str = "sk_test_tenant_b";

struct Api {
    app: Router,
    engine: Arc<Engine>,
    steps: UnboundedReceiver<StepMessage>,
    // Held so the engine's notification sends do not fail on a closed channel.
    _notifications: UnboundedReceiver<NotificationMessage>,
}

/// What came back: status, headers and the body parsed as JSON (`Null` when empty).
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with this status and returns it.
    fn problem(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"));
        assert_eq!(self.body["status"], status.as_u16());
        let kind = self.body["type"].as_str().unwrap_or_default();
        assert!(kind.starts_with("https://chorus.dev/problems/"), "type: {kind}");
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
        &self.body
    }

    /// The `errors[].pointer` values, sorted.
    fn pointers(&self) -> Vec<&str> {
        let errors = self.body["errors"].as_array().unwrap();
        let mut pointers: Vec<&str> = errors.iter().map(|e| e["pointer"].as_str().unwrap()).collect();
        pointers.sort_unstable();
        pointers
    }
}

/// A tenant's signing secret: registered, and never to appear in any response.
const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn tenant(name: &str) -> Tenant {
    Tenant::new(TenantId::parse(name).unwrap())
}

fn secrets() -> SigningSecrets {
    SigningSecrets::new(SecretString::from(SIGNING_SECRET))
}

fn api() -> Api {
    api_with(|_| None)
}

/// [`api`] whose engine enforces the quota `quota` makes (given the kit's clock).
fn api_with(quota: impl FnOnce(Arc<crate::testing::ManualClock>) -> Option<crate::engine::TenantQuota>) -> Api {
    api_from(|parts, clock| EngineParts { quota: quota(clock), ..parts })
}

/// [`api`] whose engine is built from the parts `configure` returns (given the kit's parts
/// and clock).
fn api_from(configure: impl FnOnce(EngineParts, Arc<crate::testing::ManualClock>) -> EngineParts) -> Api {
    let kit = TestKit::new();
    let routes = BTreeMap::from([("fast".to_owned(), Route::fallback(&["local:echo"]))]);
    let router = ProviderRouter::new(
        vec![Arc::new(LocalProvider::new()) as Arc<dyn Provider>],
        routes,
        RetryPolicy::default(),
        PriceTable::default(),
    );
    let parts = EngineParts { router: Arc::new(router), ..kit.engine_parts() };
    let engine = Arc::new(Engine::new(configure(parts, kit.clock.clone())));
    let tenants = MemoryTenantDirectory::new()
        .with_key(tenant("acme"), secrets(), &SecretString::from(KEY_A))
        .with_key(tenant("globex"), secrets(), &SecretString::from(KEY_B));
    let app = app(AppState { engine: engine.clone(), tenants: Arc::new(tenants) });
    Api { app, engine, steps: kit.backends.step_messages, _notifications: kit.backends.notification_messages }
}

fn request(method: Method, uri: &str, key: Option<&str>) -> axum::http::request::Builder {
    let builder = Request::builder().method(method).uri(uri);
    match key {
        Some(key) => builder.header("x-api-key", key),
        None => builder,
    }
}

fn json_request(method: Method, uri: &str, key: &str, body: &Value) -> Request<Body> {
    request(method, uri, Some(key))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

impl Api {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Reply { status, headers, body }
    }

    async fn get(&self, uri: &str, key: &str) -> Reply {
        self.send(request(Method::GET, uri, Some(key)).body(Body::empty()).unwrap()).await
    }

    async fn post_empty(&self, uri: &str, key: &str) -> Reply {
        self.send(request(Method::POST, uri, Some(key)).body(Body::empty()).unwrap()).await
    }

    async fn submit(&self, key: &str, submission: &Value) -> Reply {
        self.send(json_request(Method::POST, "/v1/runs", key, submission)).await
    }

    /// Submits and returns the new run's id.
    async fn start(&self, key: &str, submission: &Value) -> String {
        let reply = self.submit(key, submission).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    /// Runs queued steps, as workers would, until the queue is empty.
    async fn drive(&mut self) {
        while let Ok(message) = self.steps.try_recv() {
            self.engine.execute_step(&message).await.unwrap();
        }
    }
}

fn echo_workflow() -> Value {
    json!({
        "workflow": {
            "name": "draft-and-summarize",
            "input_schema": {"type": "object", "required": ["prompt"]},
            "steps": [
                {"id": "draft", "task": "generate", "model": "local:echo", "prompt": "{{ input.prompt }}"},
                {"id": "summary", "task": "summarize", "model": "local:extractive", "input": "{{ steps.draft.text }}"}
            ],
            "output": {"draft": "{{ steps.draft.text }}", "summary": "{{ steps.summary.text }}"}
        },
        "input": {"prompt": "Chorus runs workflows. Workflows have steps."}
    })
}

fn approval_workflow() -> Value {
    json!({
        "workflow": {
            "steps": [
                {"id": "draft", "task": "generate", "model": "local:echo", "prompt": "{{ input.prompt }}"},
                {"id": "review", "task": "approval", "prompt": "Publish this draft?", "needs": ["draft"]},
                {"id": "publish", "task": "generate", "model": "local:echo", "prompt": "{{ steps.draft.text }}",
                 "needs": ["review"]}
            ],
            "output": {"published": "{{ steps.publish.text }}"}
        },
        "input": {"prompt": "hello"}
    })
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()
}

#[tokio::test]
async fn healthz_and_openapi_need_no_key() {
    let api = api();
    let health = api.send(request(Method::GET, "/healthz", None).body(Body::empty()).unwrap()).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, json!({"status": "ok"}));
    let doc = api.send(request(Method::GET, "/openapi.json", None).body(Body::empty()).unwrap()).await;
    assert_eq!(doc.status, StatusCode::OK);
}

#[tokio::test]
async fn requests_without_a_known_key_are_401_with_a_bearer_challenge() {
    let api = api();
    let missing = api.send(request(Method::GET, "/v1/runs", None).body(Body::empty()).unwrap()).await;
    missing.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));

    let unknown = api.get("/v1/runs", "sk_test_nobody").await;
    unknown.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.header("www-authenticate"), Some("Bearer"));

    let basic = request(Method::GET, "/v1/runs", None).header("authorization", "Basic YTpi").body(Body::empty());
    api.send(basic.unwrap()).await.problem(StatusCode::UNAUTHORIZED);

    // Authentication comes before the body: an unauthenticated client learns nothing else.
    let no_key_bad_body = request(Method::POST, "/v1/runs", None).body(Body::from("{not json"));
    api.send(no_key_bad_body.unwrap()).await.problem(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn both_header_styles_authenticate() {
    let api = api();
    assert_eq!(api.get("/v1/runs", KEY_A).await.status, StatusCode::OK);
    let bearer = request(Method::GET, "/v1/runs", None).header("authorization", format!("Bearer {KEY_A}"));
    assert_eq!(api.send(bearer.body(Body::empty()).unwrap()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn two_headers_authenticate_only_when_they_carry_the_same_key() {
    let api = api();
    let both = |bearer: &str| {
        request(Method::GET, "/v1/runs", Some(KEY_A)).header("authorization", bearer).body(Body::empty()).unwrap()
    };
    assert_eq!(api.send(both(&format!("Bearer {KEY_A}"))).await.status, StatusCode::OK);

    // Another tenant's valid key, junk, or another scheme next to a valid key: refused alike.
    for bearer in [format!("Bearer {KEY_B}"), "Bearer junk".to_owned(), "Basic YTpi".to_owned()] {
        let reply = api.send(both(&bearer)).await;
        let detail = reply.problem(StatusCode::UNAUTHORIZED)["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains("disagree"), "{detail}");
        assert!(!detail.contains(KEY_A) && !detail.contains(KEY_B) && !detail.contains("junk"), "{detail}");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    }
}

#[tokio::test]
async fn a_submitted_run_is_accepted_then_runs_to_success() {
    let mut api = api();
    let reply = api.submit(KEY_A, &echo_workflow()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("run_"));
    assert_eq!(reply.header("location"), Some(format!("/v1/runs/{id}").as_str()));
    assert_eq!(reply.header("idempotent-replayed"), None);
    assert_eq!(
        reply.body,
        json!({"id": id, "status": "queued",
               "links": {"self": format!("/v1/runs/{id}"), "events": format!("/v1/runs/{id}/events")}})
    );

    let queued = api.get(&format!("/v1/runs/{id}"), KEY_A).await;
    assert_eq!(queued.status, StatusCode::OK);
    assert_eq!(queued.body["status"], "queued");

    api.drive().await;
    let run = api.get(&format!("/v1/runs/{id}"), KEY_A).await;
    assert_eq!(run.status, StatusCode::OK);
    assert_eq!(run.body["status"], "succeeded", "{}", run.body);
    assert_eq!(run.body["name"], "draft-and-summarize");
    assert_eq!(run.body["output"]["draft"], "Chorus runs workflows. Workflows have steps.");
    assert!(run.body["output"]["summary"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(step(&run.body, "draft")["status"], "succeeded");
    assert_eq!(step(&run.body, "draft")["provider"], "local");

    let events = api.get(&format!("/v1/runs/{id}/events"), KEY_A).await;
    assert_eq!(events.status, StatusCode::OK);
    let kinds: Vec<&str> =
        events.body["events"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"run_submitted"));
    assert_eq!(kinds.last(), Some(&"run_finished"));
    assert!(kinds.contains(&"provider_called"));
}

/// No read API returns a tenant's signing secret: not a run, a list, the history, the
/// models, the OpenAPI document nor a refusal. (The API never holds one: a [`Tenant`] has
/// none, and the secrets' store is the notifier's.)
#[tokio::test]
async fn no_response_carries_the_tenants_signing_secret() {
    let mut api = api();
    let id = api.start(KEY_A, &echo_workflow()).await;
    api.drive().await;
    let unsigned = SIGNING_SECRET.trim_start_matches("whsec_");
    let mut replies = Vec::new();
    for uri in
        [format!("/v1/runs/{id}"), format!("/v1/runs/{id}/events"), "/v1/runs".to_owned(), "/v1/models".to_owned()]
    {
        replies.push(api.get(&uri, KEY_A).await);
    }
    replies.push(api.send(request(Method::GET, "/openapi.json", None).body(Body::empty()).unwrap()).await);
    replies.push(api.get(&format!("/v1/runs/{id}"), "not-a-key").await);
    for reply in replies {
        let headers: Vec<String> = reply.headers.values().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
        let text = format!("{} {}", reply.body, headers.join(" "));
        assert!(!text.contains(unsigned), "a response carries the signing secret: {text}");
    }
}

#[tokio::test]
async fn another_tenants_run_does_not_exist() {
    let api = api();
    let id = api.start(KEY_A, &echo_workflow()).await;

    for uri in [format!("/v1/runs/{id}"), format!("/v1/runs/{id}/events")] {
        api.get(&uri, KEY_B).await.problem(StatusCode::NOT_FOUND);
    }
    api.post_empty(&format!("/v1/runs/{id}/cancel"), KEY_B).await.problem(StatusCode::NOT_FOUND);
    api.post_empty(&format!("/v1/runs/{id}/steps/draft/approve"), KEY_B).await.problem(StatusCode::NOT_FOUND);

    let listed_for_b = api.get("/v1/runs", KEY_B).await;
    assert_eq!(listed_for_b.body, json!({"runs": [], "next_cursor": null}));
    let listed_for_a = api.get("/v1/runs", KEY_A).await;
    assert_eq!(listed_for_a.body["runs"][0]["id"], id.as_str());
    // A's run is untouched by B's attempts.
    assert_eq!(api.get(&format!("/v1/runs/{id}"), KEY_A).await.body["status"], "queued");
}

#[tokio::test]
async fn malformed_ids_in_the_path_are_404() {
    let api = api();
    api.get("/v1/runs/not-a-run", KEY_A).await.problem(StatusCode::NOT_FOUND);
    api.get("/v1/runs/run_01jd7v1b0m4xk3r0c9z9qz5y7w", KEY_A).await.problem(StatusCode::NOT_FOUND);
    let id = api.start(KEY_A, &approval_workflow()).await;
    api.post_empty(&format!("/v1/runs/{id}/steps/Not-A-Step/approve"), KEY_A).await.problem(StatusCode::NOT_FOUND);
    api.post_empty(&format!("/v1/runs/{id}/steps/nosuch/approve"), KEY_A).await.problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_same_run() {
    let api = api();
    let submission = echo_workflow();
    let with_key = |key: &str, body: &Value| {
        let mut request = json_request(Method::POST, "/v1/runs", KEY_A, body);
        request.headers_mut().insert("idempotency-key", key.parse().unwrap());
        request
    };

    let first = api.send(with_key("order-42", &submission)).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = api.send(with_key("order-42", &submission)).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.header("location"), first.header("location"));

    let mut changed = submission.clone();
    changed["input"]["prompt"] = json!("something else");
    let conflict = api.send(with_key("order-42", &changed)).await;
    conflict.problem(StatusCode::CONFLICT);

    // Keys are per tenant: B's identical key is a new run.
    let mut for_b = with_key("order-42", &submission);
    for_b.headers_mut().insert("x-api-key", KEY_B.parse().unwrap());
    let other_tenant = api.send(for_b).await;
    assert_eq!(other_tenant.status, StatusCode::ACCEPTED);
    assert_ne!(other_tenant.body["id"], first.body["id"]);

    for bad in ["x".repeat(256), "tab\there".to_owned(), "ünïcode".to_owned(), String::new()] {
        let mut request = json_request(Method::POST, "/v1/runs", KEY_A, &submission);
        request.headers_mut().insert("idempotency-key", axum::http::HeaderValue::from_bytes(bad.as_bytes()).unwrap());
        api.send(request).await.problem(StatusCode::BAD_REQUEST);
    }
    let longest = api.send(with_key(&"k".repeat(255), &submission)).await;
    assert_eq!(longest.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_invalid_workflow_lists_every_problem() {
    let api = api();
    let submission = json!({
        "workflow": {
            "steps": [
                {"id": "draft", "task": "generate", "model": "nope:model", "prompt": "{{ input.prompt }}"},
                {"id": "sum", "task": "summarize", "model": "local:extractive", "input": "{{ steps.missing.text }}"},
                {"id": "label", "task": "classify", "model": "local:echo", "input": "{{ steps.draft.text }}"}
            ]
        },
        "input": {"prompt": "hi"},
        "notify": {"url": "ftp://example.com/hook"}
    });
    let reply = api.submit(KEY_A, &submission).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["type"], "https://chorus.dev/problems/validation");
    let pointers = reply.pointers();
    for expected in ["/workflow/steps/0/model", "/workflow/steps/2/model", "/workflow/steps/2/labels", "/notify/url"] {
        assert!(pointers.contains(&expected), "{expected} missing from {pointers:?}");
    }
    assert!(pointers.iter().any(|p| p.starts_with("/workflow/steps/1")), "{pointers:?}");
    let details = reply.body["errors"].as_array().unwrap().iter().filter_map(|e| e["detail"].as_str());
    assert!(details.clone().all(|d| !d.is_empty()));
    // Nothing was stored.
    assert_eq!(api.get("/v1/runs", KEY_A).await.body["runs"], json!([]));
}

#[tokio::test]
async fn a_step_of_the_wrong_shape_hides_no_problem_in_the_others() {
    let api = api();
    let step =
        |id: &str, model: &str, prompt: &str| json!({"id": id, "task": "generate", "model": model, "prompt": prompt});
    let mut unknown_task = step("intro", "local:echo", "{{ input.prompt }}");
    unknown_task["task"] = json!("dance");
    let submission = json!({
        "workflow": {"steps": [
            unknown_task,
            step("b", "local:echo", "{{ steps.c.text }}"),
            step("c", "local:echo", "{{ steps.b.text }}"),
            step("d", "local:echo", "{{ steps.nope.text }}"),
            step("e", "nope:model", "x")
        ]},
        "input": {"prompt": "hi"}
    });
    let reply = api.submit(KEY_A, &submission).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        reply.pointers(),
        ["/workflow/steps", "/workflow/steps/0/task", "/workflow/steps/3/prompt", "/workflow/steps/4/model"]
    );
    let details: Vec<&str> =
        reply.body["errors"].as_array().unwrap().iter().filter_map(|e| e["detail"].as_str()).collect();
    assert!(details[0].contains("cycle: b → c → b"), "{details:?}");
    assert!(details[1].contains("dance"), "{details:?}");
    assert!(details[2].contains("unknown step `nope`"), "{details:?}");
    assert_eq!(api.get("/v1/runs", KEY_A).await.body["runs"], json!([]));
}

#[tokio::test]
async fn malformed_json_is_400_and_says_where() {
    let api = api();
    let request = request(Method::POST, "/v1/runs", Some(KEY_A))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"workflow\": {\n  \"steps\": [,]\n}}"))
        .unwrap();
    let reply = api.send(request).await;
    let problem = reply.problem(StatusCode::BAD_REQUEST);
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("line 2 column"), "{detail}");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let api = api();
    let text = request(Method::POST, "/v1/runs", Some(KEY_A))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(echo_workflow().to_string()))
        .unwrap();
    api.send(text).await.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let untyped = request(Method::POST, "/v1/runs", Some(KEY_A)).body(Body::from(echo_workflow().to_string()));
    api.send(untyped.unwrap()).await.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let charset = request(Method::POST, "/v1/runs", Some(KEY_A))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(echo_workflow().to_string()))
        .unwrap();
    assert_eq!(api.send(charset).await.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_tenant_over_its_request_rate_gets_429_with_retry_after_and_ratelimit_headers_alone() {
    let api = api_with(|clock| {
        Some(crate::engine::TenantQuota {
            requests: crate::domain::RateLimit { per_minute: 60, burst: 2 },
            ..crate::engine::TenantQuota::new(Arc::new(crate::adapters::MemoryRateLimiter::new(clock)))
        })
    });
    let list = || request(Method::GET, "/v1/runs", Some(KEY_A)).body(Body::empty()).unwrap();
    assert_eq!(api.send(list()).await.status, StatusCode::OK);
    assert_eq!(api.send(list()).await.status, StatusCode::OK);
    let reply = api.send(list()).await;
    let problem = reply.problem(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(problem["type"], "https://chorus.dev/problems/rate-limited");
    assert!(problem["detail"].as_str().unwrap().contains("60 requests a minute after a burst of 2"), "{problem}");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.header("ratelimit-policy"), Some("\"tenant\";q=60;w=60"));
    assert_eq!(reply.header("ratelimit"), Some("\"tenant\";r=0;t=1"));
    let other = request(Method::GET, "/v1/runs", Some(KEY_B)).body(Body::empty()).unwrap();
    assert_eq!(api.send(other).await.status, StatusCode::OK, "another tenant is not slowed");
}

#[tokio::test]
async fn a_template_that_would_repeat_a_literal_into_gigabytes_is_422_and_nothing_is_built() {
    let api = api();
    // The submission from the tenant-isolation issue: 12 × 50 MB if it were ever rendered.
    let hostile = json!({"workflow": {"steps": [{"id": "a", "task": "generate", "model": "local:echo",
        "prompt": "{% for i in [1,2,3,4,5,6,7,8,9,10,11,12] %}{{ \"x\" * 50000000 }}{% endfor %}"}]}});
    let reply = api.submit(KEY_A, &hostile).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.pointers(), ["/workflow/steps/0/prompt"]);
    let detail = reply.body["errors"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("`*` may only stand between names and numbers"), "{detail}");
}

#[tokio::test]
async fn unknown_members_and_wrong_types_are_422_with_a_pointer() {
    let api = api();
    let mut unknown = echo_workflow();
    unknown["inputs"] = json!({});
    let reply = api.submit(KEY_A, &unknown).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.pointers(), ["/inputs"]);

    let mut wrong_type = echo_workflow();
    wrong_type["notify"] = json!({"url": 42});
    let reply = api.submit(KEY_A, &wrong_type).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.pointers(), ["/notify/url"]);

    let reply = api.submit(KEY_A, &json!({"input": {}})).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.pointers(), ["/workflow"]);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let api = api();
    let padding = "x".repeat(MAX_BODY_BYTES);
    let body = format!("{{\"workflow\": {{}}, \"input\": {{\"pad\": \"{padding}\"}}}}");
    let request = request(Method::POST, "/v1/runs", Some(KEY_A))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    api.send(request).await.problem(StatusCode::PAYLOAD_TOO_LARGE);

    // Streamed without a length, the limit still holds.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        (0..7).map(|_| Ok(bytes::Bytes::from(vec![b' '; 1024 * 1024]))).collect();
    let streamed =
        request_builder_json(Method::POST, "/v1/runs").body(Body::from_stream(futures::stream::iter(chunks))).unwrap();
    api.send(streamed).await.problem(StatusCode::PAYLOAD_TOO_LARGE);
}

fn request_builder_json(method: Method, uri: &str) -> axum::http::request::Builder {
    request(method, uri, Some(KEY_A)).header(header::CONTENT_TYPE, "application/json")
}

#[tokio::test]
async fn runs_are_listed_in_pages_with_an_opaque_cursor() {
    let api = api();
    let mut submitted = Vec::new();
    for _ in 0..3 {
        submitted.push(api.start(KEY_A, &echo_workflow()).await);
    }

    let first = api.get("/v1/runs?limit=2", KEY_A).await;
    assert_eq!(first.status, StatusCode::OK);
    let page = first.body["runs"].as_array().unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["status"], "queued");
    assert_eq!(page[0]["name"], "draft-and-summarize");
    assert!(page[0]["created_at"].is_string());
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    assert!(!cursor.starts_with("run_"), "the cursor should be opaque: {cursor}");

    let second = api.get(&format!("/v1/runs?limit=2&cursor={cursor}"), KEY_A).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body["runs"].as_array().unwrap().len(), 1);
    assert_eq!(second.body["next_cursor"], Value::Null);

    let mut listed: Vec<String> = page
        .iter()
        .chain(second.body["runs"].as_array().unwrap())
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let in_listed_order = listed.clone();
    listed.sort();
    submitted.sort();
    assert_eq!(listed, submitted);
    // The store's order (descending id, i.e. newest first to the millisecond) is kept.
    assert!(in_listed_order.windows(2).all(|w| w[0] > w[1]), "{in_listed_order:?}");

    let everything = api.get("/v1/runs", KEY_A).await;
    assert_eq!(everything.body["runs"].as_array().unwrap().len(), 3);

    for bad in ["limit=0", "limit=101", "limit=ten", "cursor=%%%", "cursor=run_x", "cursor="] {
        api.get(&format!("/v1/runs?{bad}"), KEY_A).await.problem(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn approval_steps_are_approved_or_rejected_through_the_api() {
    let mut api = api();
    let id = api.start(KEY_A, &approval_workflow()).await;
    api.drive().await;
    let waiting = api.get(&format!("/v1/runs/{id}"), KEY_A).await;
    assert_eq!(waiting.body["status"], "waiting", "{}", waiting.body);
    assert_eq!(step(&waiting.body, "review")["status"], "waiting_approval");

    // Only a step that waits can be decided.
    api.post_empty(&format!("/v1/runs/{id}/steps/draft/approve"), KEY_A).await.problem(StatusCode::CONFLICT);
    api.post_empty(&format!("/v1/runs/{id}/steps/publish/approve"), KEY_A).await.problem(StatusCode::CONFLICT);
    // A body, when sent, must be a decision.
    let stray = json_request(Method::POST, &format!("/v1/runs/{id}/steps/review/approve"), KEY_A, &json!({"ok": 1}));
    assert_eq!(api.send(stray).await.problem(StatusCode::UNPROCESSABLE_ENTITY)["errors"][0]["pointer"], "/ok");

    // An empty body approves as the tenant.
    let approved = api.post_empty(&format!("/v1/runs/{id}/steps/review/approve"), KEY_A).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    let review = step(&approved.body, "review");
    assert_eq!(review["status"], "succeeded");
    assert_eq!(review["output"]["approved"], true);
    assert_eq!(review["output"]["by"], "acme");
    // Whatever `by` says, the key that decided is on record: its id, never the key.
    let key_id = review["output"]["key_id"].as_str().unwrap();
    assert_eq!(key_id, crate::ports::api_key_id(&SecretString::from(KEY_A)));
    assert!(key_id.starts_with("key_") && !key_id.contains(KEY_A), "{key_id}");
    // The same decision again (a client's retry) is taken; the other one is refused.
    let again = api.post_empty(&format!("/v1/runs/{id}/steps/review/approve"), KEY_A).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    api.post_empty(&format!("/v1/runs/{id}/steps/review/reject"), KEY_A).await.problem(StatusCode::CONFLICT);

    api.drive().await;
    let done = api.get(&format!("/v1/runs/{id}"), KEY_A).await;
    assert_eq!(done.body["status"], "succeeded", "{}", done.body);
    assert_eq!(done.body["output"]["published"], "hello");

    // A rejection with a reason fails the step and the run.
    let other = api.start(KEY_A, &approval_workflow()).await;
    api.drive().await;
    let decision = json!({"by": "maria", "comment": "off-brand"});
    let rejected =
        api.send(json_request(Method::POST, &format!("/v1/runs/{other}/steps/review/reject"), KEY_A, &decision)).await;
    assert_eq!(rejected.status, StatusCode::OK, "{}", rejected.body);
    assert_eq!(rejected.body["status"], "failed");
    let review = step(&rejected.body, "review");
    assert_eq!(review["status"], "failed");
    assert_eq!(review["output"]["by"], "maria");
    assert_eq!(review["output"]["comment"], "off-brand");
    assert_eq!(step(&rejected.body, "publish")["status"], "cancelled");

    let history = api.get(&format!("/v1/runs/{other}/events"), KEY_A).await;
    let decided = history.body["events"].as_array().unwrap().iter().find(|e| e["type"] == "approval_decided");
    assert_eq!(decided.map(|e| e["approved"].clone()), Some(json!(false)));
    assert_eq!(decided.map(|e| e["key_id"].clone()), Some(json!(crate::ports::api_key_id(&SecretString::from(KEY_A)))));
}

#[tokio::test]
async fn approvals_have_bounded_words_and_an_ended_run_takes_no_decisions() {
    let mut api = api();
    let id = api.start(KEY_A, &approval_workflow()).await;
    api.drive().await;
    let approve = format!("/v1/runs/{id}/steps/review/approve");
    let long = json!({"by": "b".repeat(257), "comment": "c".repeat(4097)});
    let reply = api.send(json_request(Method::POST, &approve, KEY_A, &long)).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.pointers(), ["/by", "/comment"]);

    api.post_empty(&format!("/v1/runs/{id}/cancel"), KEY_A).await;
    let reply = api.post_empty(&approve, KEY_A).await;
    assert!(
        reply.problem(StatusCode::CONFLICT)["detail"].as_str().unwrap().contains("already ended"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn a_null_decision_is_no_decision() {
    let mut api = api();
    let id = api.start(KEY_A, &approval_workflow()).await;
    api.drive().await;
    let approve = request(Method::POST, &format!("/v1/runs/{id}/steps/review/approve"), Some(KEY_A))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(" null\n"))
        .unwrap();
    let approved = api.send(approve).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(step(&approved.body, "review")["output"]["by"], "acme");
}

#[tokio::test]
async fn cancel_is_accepted_once_then_conflicts() {
    let mut api = api();
    let id = api.start(KEY_A, &approval_workflow()).await;
    api.drive().await;

    let cancelled = api.post_empty(&format!("/v1/runs/{id}/cancel"), KEY_A).await;
    assert_eq!(cancelled.status, StatusCode::ACCEPTED, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(step(&cancelled.body, "review")["status"], "cancelled");

    api.post_empty(&format!("/v1/runs/{id}/cancel"), KEY_A).await.problem(StatusCode::CONFLICT);
    api.post_empty(&format!("/v1/runs/{id}/steps/review/approve"), KEY_A).await.problem(StatusCode::CONFLICT);

    // A finished run cannot be cancelled either.
    let finished = api.start(KEY_A, &echo_workflow()).await;
    api.drive().await;
    api.post_empty(&format!("/v1/runs/{finished}/cancel"), KEY_A).await.problem(StatusCode::CONFLICT);
}

#[tokio::test]
async fn models_lists_local_models_and_routes() {
    let api = api();
    let reply = api.get("/v1/models", KEY_A).await;
    assert_eq!(reply.status, StatusCode::OK);
    let echo = reply.body["models"].as_array().unwrap().iter().find(|m| m["id"] == "local:echo").cloned();
    let echo = echo.unwrap();
    assert_eq!(echo["provider"], "local");
    assert_eq!(echo["tasks"], json!(["generate"]));
    assert_eq!(reply.body["routes"], json!({"fast": {"strategy": "fallback", "models": ["local:echo"]}}));
    api.send(request(Method::GET, "/v1/models", None).body(Body::empty()).unwrap())
        .await
        .problem(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let api = api();
    let doc = api.send(request(Method::GET, "/openapi.json", None).body(Body::empty()).unwrap()).await.body;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/v1/runs", &["post", "get"][..]),
        ("/v1/runs/{id}", &["get"][..]),
        ("/v1/runs/{id}/cancel", &["post"][..]),
        ("/v1/runs/{id}/retry", &["post"][..]),
        ("/v1/runs/{id}/fork", &["post"][..]),
        ("/v1/runs/{id}/steps/{step}/approve", &["post"][..]),
        ("/v1/runs/{id}/steps/{step}/reject", &["post"][..]),
        ("/v1/runs/{id}/events", &["get"][..]),
        ("/v1/workflows", &["get"][..]),
        ("/v1/workflows/{name}", &["put", "get"][..]),
        ("/v1/workflows/{name}/versions/{version}", &["get"][..]),
        ("/v1/models", &["get"][..]),
        ("/openapi.json", &["get"][..]),
        ("/healthz", &["get"][..]),
    ];
    for (path, methods) in expected {
        for method in methods {
            assert!(paths.get(path).and_then(|p| p.get(*method)).is_some(), "{method} {path} is missing");
        }
    }
    assert_eq!(paths.len(), expected.len());

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes[openapi::BEARER_SCHEME]["scheme"], "bearer");
    assert_eq!(schemes[openapi::API_KEY_SCHEME]["name"], "x-api-key");
    assert_eq!(doc["security"], json!([{"bearer": []}, {"api_key": []}]));
    assert_eq!(paths["/healthz"]["get"]["security"], json!([{}]));

    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "ProblemDetails",
        "Problem",
        "Submission",
        "RunAccepted",
        "RunList",
        "RunView",
        "RunEvent",
        "ModelList",
        "WorkflowRegistration",
        "VersionRegistered",
        "WorkflowList",
        "WorkflowView",
        "WorkflowVersionView",
        "ForkRequest",
    ] {
        assert!(schemas.contains_key(name), "schema {name} is missing");
    }
    let problem_401 = &paths["/v1/runs"]["post"]["responses"]["401"]["content"];
    assert!(problem_401.get("application/problem+json").is_some(), "{problem_401}");
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_as_problems() {
    let api = api();
    api.get("/v2/nothing", KEY_A).await.problem(StatusCode::NOT_FOUND);
    let wrong = api.send(request(Method::DELETE, "/v1/runs", Some(KEY_A)).body(Body::empty()).unwrap()).await;
    wrong.problem(StatusCode::METHOD_NOT_ALLOWED);
    let allow = wrong.header("allow").unwrap_or_default();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    api.get("/v1/runs/run_01jd7v1b0m4xk3r0c9z9qz5y7w/cancel", KEY_A).await.problem(StatusCode::METHOD_NOT_ALLOWED);
}
