//! Replicate's predictions API on the mock server, under `/replicate/v1/…`: create a
//! prediction for an official model (`/models/{owner}/{name}/predictions`) or a pinned version
//! (`/predictions` with `version`), and read one back (`/predictions/{id}`).
//!
//! As on Replicate, a create with `Prefer: wait` answers with the finished prediction; without
//! it the answer is `201` with status `starting`, and the outcome comes ~100 ms later by a
//! webhook signed with Standard Webhooks headers (`state.webhook_secret`), honouring
//! `webhook_events_filter`. Predictions are kept in memory for this router's lifetime so `GET`
//! finds them. The `content-filter` fault is a prediction that *fails* on the safety checker,
//! delivered like any other, because that is how Replicate reports it.
//!
//! One leniency: `/models/{name}/predictions` with a single segment is served too, so the
//! conformance suite's bare `fault-<kind>` model names reach the fault book; Replicate itself
//! names every model `owner/name`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chorus::webhooks::{WebhookSecret, signed_headers};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{Fault, MockState, SentWebhook, answers, bearer, fault_for, faults, malformed, rate_limit_headers};

/// The provider name faults are scripted under.
const PROVIDER: &str = "replicate";

/// How long an async prediction "runs" before its webhook goes out.
const RUN_TIME: Duration = Duration::from_millis(100);

/// What Replicate's safety checker fails a prediction with (replicate/cog-stable-diffusion).
const NSFW_ERROR: &str = "NSFW content detected. Try running it again, or try a different prompt.";

/// Predictions by id, for `GET`; one store per router, so each mock server has its own.
type Store = Arc<Mutex<HashMap<String, Prediction>>>;

/// Replicate's routes, to nest under `/replicate`.
pub fn routes() -> Router<MockState> {
    Router::new()
        .route("/v1/models/{owner}/{name}/predictions", post(create_for_model))
        .route("/v1/models/{name}/predictions", post(create_for_bare_name))
        .route("/v1/predictions", post(create_for_version))
        .route("/v1/predictions/{id}", get(read_prediction))
        .layer(Extension(Store::default()))
}

/// A create request, as far as the mock reads it.
#[derive(Debug, Deserialize)]
struct CreateBody {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    input: Option<Map<String, Value>>,
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    webhook_events_filter: Option<Vec<String>>,
}

/// A prediction in Replicate's shape.
#[derive(Debug, Clone, Serialize)]
struct Prediction {
    id: String,
    model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    input: Map<String, Value>,
    logs: String,
    output: Value,
    data_removed: bool,
    error: Option<String>,
    status: &'static str,
    created_at: String,
    started_at: Option<String>,
    completed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<Metrics>,
    urls: Urls,
}

#[derive(Debug, Clone, Serialize)]
struct Metrics {
    predict_time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_token_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_token_count: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
struct Urls {
    get: String,
    cancel: String,
}

/// How a prediction that gets past faults ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Succeeds,
    FailsSafetyCheck,
}

async fn create_for_model(
    State(state): State<MockState>,
    Extension(store): Extension<Store>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(&state, &store, &headers, &body, Some(format!("{owner}/{name}"))).await
}

async fn create_for_bare_name(
    State(state): State<MockState>,
    Extension(store): Extension<Store>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(&state, &store, &headers, &body, Some(name)).await
}

async fn create_for_version(
    State(state): State<MockState>,
    Extension(store): Extension<Store>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(&state, &store, &headers, &body, None).await
}

/// Creates a prediction of `model` (from the path), or of the body's `version` when `None`.
async fn create(state: &MockState, store: &Store, headers: &HeaderMap, body: &[u8], model: Option<String>) -> Response {
    if !authorized(headers) {
        return unauthenticated();
    }
    let Ok(request) = serde_json::from_slice::<CreateBody>(body) else {
        return invalid("body", "the request body must be a JSON object");
    };
    let Some(model) = model.or_else(|| request.version.clone()) else {
        return invalid("version", "version is required");
    };
    let ending = match fault_for(state, PROVIDER, fault_model(&model)).await {
        None => Ending::Succeeds,
        Some(Fault::ContentFilter) => Ending::FailsSafetyCheck,
        Some(fault) => return fault_response(fault),
    };
    let Some(input) = request.input.clone() else {
        return invalid("input", "input is required");
    };
    if !input.get("prompt").is_some_and(Value::is_string) {
        return invalid("input.prompt", "prompt is required");
    }
    // A pinned `owner/name:version` is recorded as Replicate shows it: model and version apart.
    let version = request.version.as_deref().map(|v| v.rsplit(':').next().unwrap_or(v).to_owned());
    let started = Prediction::starting(headers, fault_model(&model).to_owned(), version, input);
    let finished = started.finish(ending);
    if wants_to_wait(headers) {
        remember(store, &finished);
        let mut response = (StatusCode::CREATED, Json(finished)).into_response();
        response.headers_mut().insert("preference-applied", HeaderValue::from_static("wait"));
        return response;
    }
    remember(store, &started);
    tokio::spawn(run(state.clone(), store.clone(), request, started.clone(), finished));
    (StatusCode::CREATED, Json(started)).into_response()
}

/// The async life of a prediction: the `start` webhook, a short run, then the outcome in the
/// store and in the `completed` webhook.
async fn run(state: MockState, store: Store, request: CreateBody, started: Prediction, finished: Prediction) {
    let wants =
        |event: &str| request.webhook_events_filter.as_ref().is_none_or(|filter| filter.iter().any(|e| e == event));
    if let Some(url) = request.webhook.as_deref().filter(|_| wants("start")) {
        deliver(&state, url, &format!("msg_{}_start", started.id), &started).await;
    }
    tokio::time::sleep(RUN_TIME).await;
    remember(&store, &finished);
    if let Some(url) = request.webhook.as_deref().filter(|_| wants("completed")) {
        deliver(&state, url, &format!("msg_{}", finished.id), &finished).await;
    }
}

/// Attempts at one webhook, as Replicate retries a delivery that got no 2xx (e.g. the step
/// had not yet recorded its job).
const DELIVERY_ATTEMPTS: u32 = 5;

/// POSTs `prediction` to `url`, signed with the mock's webhook secret, retrying on anything
/// but a 2xx; records what it sent so tests can replay it.
async fn deliver(state: &MockState, url: &str, msg_id: &str, prediction: &Prediction) {
    let secret = match WebhookSecret::parse(&state.webhook_secret) {
        Ok(secret) => secret,
        Err(err) => {
            tracing::warn!(error = %err, "replicate mock: the webhook secret is unusable; no webhook sent");
            return;
        }
    };
    let body = match serde_json::to_vec(prediction) {
        Ok(body) => body,
        Err(err) => {
            tracing::warn!(error = %err, "replicate mock: cannot serialize the prediction");
            return;
        }
    };
    let headers = signed_headers(&secret, msg_id, jiff::Timestamp::now().as_second(), &body);
    state.record_webhook(SentWebhook {
        url: url.to_owned(),
        id: msg_id.to_owned(),
        headers: headers.clone(),
        body: body.clone(),
    });
    for attempt in 1..=DELIVERY_ATTEMPTS {
        let mut request = state.http.post(url);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        match request.body(body.clone()).send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => tracing::info!(status = %response.status(), attempt, "replicate mock: webhook refused"),
            Err(err) => {
                tracing::warn!(error = %err, attempt, prediction = %prediction.id, "replicate mock: webhook failed")
            }
        }
        tokio::time::sleep(RUN_TIME * attempt).await;
    }
}

async fn read_prediction(
    State(state): State<MockState>,
    Extension(store): Extension<Store>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return unauthenticated();
    }
    let found = store.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned();
    let Some(prediction) = found else {
        return problem(StatusCode::NOT_FOUND, HeaderMap::new(), json!({"detail": "Not found.", "status": 404}));
    };
    match fault_for(&state, PROVIDER, fault_model(&prediction.model)).await {
        // A content filter already shows in the stored prediction.
        None | Some(Fault::ContentFilter) => (StatusCode::OK, Json(prediction)).into_response(),
        Some(fault) => fault_response(fault),
    }
}

impl Prediction {
    /// A prediction just created: no output yet.
    fn starting(headers: &HeaderMap, model: String, version: Option<String>, input: Map<String, Value>) -> Self {
        let id = prediction_id();
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        let get = format!("http://{host}/replicate/v1/predictions/{id}");
        Self {
            urls: Urls { cancel: format!("{get}/cancel"), get },
            id,
            model,
            version,
            input,
            logs: String::new(),
            output: Value::Null,
            data_removed: false,
            error: None,
            status: "starting",
            created_at: jiff::Timestamp::now().to_string(),
            started_at: None,
            completed_at: None,
            metrics: None,
        }
    }

    /// The same prediction once run: the deterministic answer as streamed chunks with token
    /// counts, or the safety checker's failure.
    fn finish(&self, ending: Ending) -> Self {
        let now = jiff::Timestamp::now().to_string();
        let text = |key: &str| self.input.get(key).and_then(Value::as_str);
        let (system, prompt) = (text("system_prompt"), text("prompt").unwrap_or_default());
        let mut done = Self { started_at: Some(now.clone()), completed_at: Some(now), ..self.clone() };
        match ending {
            Ending::Succeeds => {
                let answer = answers::chat(&self.model, system, prompt);
                done.status = "succeeded";
                done.metrics = Some(Metrics {
                    predict_time: RUN_TIME.as_secs_f64(),
                    input_token_count: Some(answers::tokens(&format!("{}{prompt}", system.unwrap_or_default()))),
                    output_token_count: Some(answers::tokens(&answer)),
                });
                done.output = json!(answer.split_inclusive(' ').collect::<Vec<_>>());
            }
            Ending::FailsSafetyCheck => {
                done.status = "failed";
                done.error = Some(NSFW_ERROR.to_owned());
                done.metrics = Some(Metrics {
                    predict_time: RUN_TIME.as_secs_f64(),
                    input_token_count: None,
                    output_token_count: None,
                });
            }
        }
        done
    }
}

fn remember(store: &Store, prediction: &Prediction) {
    store.lock().unwrap_or_else(PoisonError::into_inner).insert(prediction.id.clone(), prediction.clone());
}

/// A Replicate-looking prediction id: 26 characters of lowercase base32.
fn prediction_id() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0_u8; 26];
    rand::fill(&mut bytes[..]);
    bytes.iter().map(|b| char::from(ALPHABET[usize::from(b % 32)])).collect()
}

/// The model a fault is looked up by: a pinned `owner/name:version` counts as `owner/name`.
fn fault_model(model: &str) -> &str {
    model.split(':').next().unwrap_or(model)
}

/// Replicate takes `Authorization: Bearer r8_…` (and the older `Token r8_…`).
fn authorized(headers: &HeaderMap) -> bool {
    let token = || headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Token ");
    bearer(headers).is_some() || token().is_some_and(|t| !t.is_empty())
}

fn wants_to_wait(headers: &HeaderMap) -> bool {
    headers.get("prefer").and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim_start().starts_with("wait"))
}

/// Each fault in Replicate's own words and status.
fn fault_response(fault: Fault) -> Response {
    match fault {
        Fault::RateLimit => problem(
            StatusCode::TOO_MANY_REQUESTS,
            rate_limit_headers(),
            json!({"detail": format!("Request was throttled. Your rate limit resets in ~{}s.", faults::RETRY_AFTER_SECS)}),
        ),
        Fault::ServerError => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            HeaderMap::new(),
            json!({"title": "Internal Server Error", "detail": "An unexpected error occurred.", "status": 500}),
        ),
        Fault::Overloaded => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            HeaderMap::new(),
            json!({"title": "Service Unavailable", "detail": "Replicate is temporarily overloaded. Please try again shortly.", "status": 503}),
        ),
        Fault::Malformed => malformed(),
        Fault::Quota => problem(
            StatusCode::PAYMENT_REQUIRED,
            HeaderMap::new(),
            json!({
                "title": "Insufficient credit",
                "detail": "You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to purchase credit. Once you purchase credit, please wait a few minutes before trying again.",
                "status": 402
            }),
        ),
        Fault::Auth => unauthenticated(),
        Fault::BadRequest => invalid("input", "input is invalid for this model"),
        // `slow` only delays and `content-filter` fails the prediction itself; neither is an
        // HTTP error, so reaching here would be a bug in the caller: answer as Replicate would
        // to a broken request rather than panic.
        Fault::Slow | Fault::ContentFilter => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            HeaderMap::new(),
            json!({"title": "Internal Server Error", "detail": "unexpected fault", "status": 500}),
        ),
    }
}

/// Replicate's `401` (as recorded in replicate-python's cassettes).
fn unauthenticated() -> Response {
    problem(
        StatusCode::UNAUTHORIZED,
        HeaderMap::new(),
        json!({"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401}),
    )
}

/// Replicate's `422` for a request that fails validation.
fn invalid(field: &str, description: &str) -> Response {
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        HeaderMap::new(),
        json!({"title": "Input validation failed", "detail": format!("- {field}: {description}\n"), "status": 422}),
    )
}

/// An `application/problem+json` answer, as Replicate gives for every error.
fn problem(status: StatusCode, mut headers: HeaderMap, body: Value) -> Response {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    (status, headers, body.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::{DEFAULT_WEBHOOK_SECRET, app};

    /// The mock on a loopback port; returns its `/replicate/v1` base URL.
    async fn server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = app(MockState::new(DEFAULT_WEBHOOK_SECRET));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/replicate/v1")
    }

    async fn read(response: reqwest::Response) -> (StatusCode, HeaderMap, Value) {
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.bytes().await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn create(base: &str, path: &str, body: Value, wait: bool) -> (StatusCode, HeaderMap, Value) {
        let mut request = chorus::tls::http_client()
            .build()
            .unwrap()
            .post(format!("{base}/{path}"))
            .bearer_auth("r8_mock")
            .json(&body);
        if wait {
            request = request.header("prefer", "wait=60");
        }
        read(request.send().await.unwrap()).await
    }

    async fn fetch(base: &str, id: &str, authorization: &str) -> (StatusCode, HeaderMap, Value) {
        let request = chorus::tls::http_client()
            .build()
            .unwrap()
            .get(format!("{base}/predictions/{id}"))
            .header("authorization", authorization);
        read(request.send().await.unwrap()).await
    }

    fn classify_input() -> Value {
        json!({"input": {
            "prompt": "The support team was wonderful.",
            "system_prompt": "Classify the user's text with exactly one of these labels: POSITIVE, NEGATIVE. Answer with JSON"
        }})
    }

    #[tokio::test]
    async fn given_prefer_wait_when_created_then_the_finished_prediction_comes_back_in_chunks() {
        let base = server().await;
        let (status, headers, body) = create(&base, "models/meta/llama/predictions", classify_input(), true).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(headers["preference-applied"], "wait");
        assert_eq!(body["status"], "succeeded");
        let text: String = body["output"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["label"], "POSITIVE");
        assert!(body["metrics"]["input_token_count"].as_u64().unwrap() > 0);
        assert!(body["metrics"]["output_token_count"].as_u64().unwrap() > 0);

        let (status, _, stored) = fetch(&base, body["id"].as_str().unwrap(), "Bearer r8_mock").await;
        assert_eq!((status, &stored), (StatusCode::OK, &body));
    }

    #[tokio::test]
    async fn given_no_wait_when_created_then_it_is_starting_and_finishes_shortly() {
        let base = server().await;
        let (status, _, body) = create(&base, "models/meta/llama/predictions", classify_input(), false).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::CREATED, Some("starting")));
        assert_eq!(body["output"], Value::Null);
        tokio::time::sleep(RUN_TIME * 3).await;
        let (_, _, stored) = fetch(&base, body["id"].as_str().unwrap(), "Token r8_mock").await;
        assert_eq!(stored["status"], "succeeded");
    }

    #[tokio::test]
    async fn given_a_pinned_version_when_created_then_model_and_version_are_recorded() {
        let base = server().await;
        let mut body = classify_input();
        body["version"] = json!("meta/llama:5c7d5dc6dd8bf75c");
        let (status, _, prediction) = create(&base, "predictions", body, true).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(prediction["model"], "meta/llama");
        assert_eq!(prediction["version"], "5c7d5dc6dd8bf75c");
    }

    #[tokio::test]
    async fn given_bad_requests_when_created_then_replicate_problems_come_back() {
        let base = server().await;
        let anonymous = chorus::tls::http_client()
            .build()
            .unwrap()
            .post(format!("{base}/models/meta/llama/predictions"))
            .body("{}");
        let (status, headers, body) = read(anonymous.send().await.unwrap()).await;
        assert_eq!((status, body["title"].as_str()), (StatusCode::UNAUTHORIZED, Some("Unauthenticated")));
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        let (status, _, body) = create(&base, "models/meta/llama/predictions", json!({}), true).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["detail"], "- input: input is required\n");
        let (status, _, _) = create(&base, "predictions", classify_input(), true).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "no version");
        assert_eq!(fetch(&base, "nope", "Bearer r8_mock").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn given_fault_models_when_created_then_each_fault_has_replicates_status() {
        let base = server().await;
        let cases = [
            ("rate-limit", StatusCode::TOO_MANY_REQUESTS),
            ("server-error", StatusCode::INTERNAL_SERVER_ERROR),
            ("overloaded", StatusCode::SERVICE_UNAVAILABLE),
            ("quota", StatusCode::PAYMENT_REQUIRED),
            ("auth", StatusCode::UNAUTHORIZED),
            ("bad-request", StatusCode::UNPROCESSABLE_ENTITY),
            ("malformed", StatusCode::OK),
        ];
        for (fault, expected) in cases {
            let path = format!("models/meta/fault-{fault}/predictions");
            let (status, headers, _) = create(&base, &path, classify_input(), true).await;
            assert_eq!(status, expected, "{fault}");
            if fault == "rate-limit" {
                assert_eq!(headers[header::RETRY_AFTER], "1");
            }
        }
        let (status, _, body) = create(&base, "models/fault-content-filter/predictions", classify_input(), true).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::CREATED, Some("failed")));
        assert_eq!(body["error"], NSFW_ERROR);
    }
}
