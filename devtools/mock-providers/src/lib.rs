//! The mock provider server: one HTTP server speaking every provider's wire format (paths,
//! auth headers, request validation, response and error bodies, rate-limit headers), with
//! deterministic answers and faults on demand. The conformance and end-to-end suites run
//! the real adapters against it, `check_sdks.py` the providers' official SDKs; `chorus
//! mock-providers` serves it, and `chorus dev` and `chorus local up` use it when a provider's
//! base URL points here.
//!
//! Each provider lives under its own path prefix, so one server stands in for all of them:
//! point `OPENAI_BASE_URL` at `http://<addr>/openai/v1`, and so on (see [`base_urls`]).
//! Control endpoints: `POST /_mock/faults/{provider}` with `{"fault": "rate-limit", "times": 2}`
//! scripts faults; with `{"rate": 0.2, "kinds": ["server-error", "slow"]}` fails that share of
//! the provider's requests at random from then on (`kinds` defaults to server-error,
//! rate-limit, overloaded, slow and malformed; provider `*` means every provider without a
//! setting of its own; `rate` 0 turns it off). `DELETE /_mock/faults` clears scripts, rates and
//! counts; `GET /_mock/requests` counts requests per provider; `GET /_mock/stats` adds the
//! faults handed out per provider and kind.

pub mod answers;
pub mod anthropic;
pub mod bedrock;
pub mod cohere;
pub mod faults;
pub mod gemini;
pub mod huggingface;
pub mod openai;
pub mod replicate;
mod state;

use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub use faults::{ANY_PROVIDER, Fault, FaultBook, RandomFaults, Script, Stats};
pub use state::{MockState, SentWebhook};

/// The secret the mock signs webhooks with unless told otherwise; `whsec_` + base64.
pub const DEFAULT_WEBHOOK_SECRET: &str = "whsec_Y2hvcnVzLW1vY2stcHJvdmlkZXJzLXdlYmhvb2stc2VjcmV0";

/// Every provider's API as one router.
pub fn app(state: MockState) -> Router {
    Router::new()
        .route("/_mock/faults/{provider}", post(script_fault))
        .route("/_mock/faults", axum::routing::delete(clear_faults))
        .route("/_mock/requests", get(requests))
        .route("/_mock/stats", get(stats))
        .nest("/openai", openai::routes())
        .nest("/anthropic", anthropic::routes())
        .nest("/gemini", gemini::routes())
        .nest("/cohere", cohere::routes())
        .nest("/huggingface", huggingface::routes())
        .nest("/bedrock", bedrock::routes())
        .nest("/replicate", replicate::routes())
        .with_state(state)
}

/// The environment that points every adapter at a mock server on `base`
/// (e.g. `http://127.0.0.1:8090`), with placeholder keys the mock accepts.
pub fn base_urls(base: &str) -> Vec<(&'static str, String)> {
    let base = base.trim_end_matches('/');
    vec![
        ("OPENAI_BASE_URL", format!("{base}/openai/v1")),
        ("OPENAI_API_KEY", "sk-mock".to_owned()),
        ("ANTHROPIC_BASE_URL", format!("{base}/anthropic")),
        ("ANTHROPIC_API_KEY", "sk-ant-mock".to_owned()),
        ("GEMINI_BASE_URL", format!("{base}/gemini")),
        ("GEMINI_API_KEY", "gemini-mock".to_owned()),
        ("COHERE_BASE_URL", format!("{base}/cohere")),
        ("COHERE_API_KEY", "cohere-mock".to_owned()),
        ("HF_BASE_URL", format!("{base}/huggingface")),
        ("HF_TOKEN", "hf_mock".to_owned()),
        ("REPLICATE_BASE_URL", format!("{base}/replicate")),
        ("REPLICATE_API_TOKEN", "r8_mock".to_owned()),
        ("REPLICATE_WEBHOOK_SECRET", DEFAULT_WEBHOOK_SECRET.to_owned()),
        ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", format!("{base}/bedrock")),
        ("BEDROCK_ENABLED", "true".to_owned()),
    ]
}

/// Serves the mock on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    state: MockState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}

/// Applies the fault `provider` owes this request, if any. `slow` only delays: the request
/// is then answered normally (the client should have timed out by then), so it returns
/// `None`. Every other fault is returned for the provider to render in its own format.
pub async fn fault_for(state: &MockState, provider: &str, model: &str) -> Option<Fault> {
    match state.faults.take(provider, model)? {
        Fault::Slow => {
            tokio::time::sleep(faults::SLOW_DELAY).await;
            None
        }
        fault => Some(fault),
    }
}

/// A 200 whose body is cut off mid-JSON.
pub fn malformed() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"id": "mock", "choices": [{"mess"#)
        .into_response()
}

/// A JSON error body with `status` and, for rate limits, `Retry-After`.
pub fn error_response(status: StatusCode, headers: HeaderMap, body: serde_json::Value) -> Response {
    (status, headers, Json(body)).into_response()
}

/// `Retry-After` (and the common `x-ratelimit-*` headers) for a 429.
pub fn rate_limit_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::RETRY_AFTER, faults::RETRY_AFTER_SECS.into());
    headers.insert("x-ratelimit-limit-requests", 60.into());
    headers.insert("x-ratelimit-remaining-requests", 0.into());
    headers
}

/// The bearer token or header key a request carried, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").filter(|t| !t.is_empty())
}

/// The body of `POST /_mock/faults/{provider}`: a script, or a random rate.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum FaultRequest {
    Script(Script),
    Random(RandomFaults),
}

async fn script_fault(
    State(state): State<MockState>,
    Path(provider): Path<String>,
    Json(request): Json<FaultRequest>,
) -> Response {
    match request {
        FaultRequest::Script(script) => state.faults.push(&provider, script),
        FaultRequest::Random(random) => {
            if let Some(problem) = random.problem() {
                return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": problem}))).into_response();
            }
            state.faults.set_random(&provider, random);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn clear_faults(State(state): State<MockState>) -> StatusCode {
    state.faults.clear();
    StatusCode::NO_CONTENT
}

async fn requests(State(state): State<MockState>) -> Json<serde_json::Value> {
    Json(json!(state.faults.requests()))
}

async fn stats(State(state): State<MockState>) -> Json<Stats> {
    Json(state.faults.stats())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    async fn start() -> (String, MockState) {
        let state = MockState::new(DEFAULT_WEBHOOK_SECRET);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = app(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (base, state)
    }

    #[tokio::test]
    async fn given_a_random_rate_posted_for_every_provider_when_requests_come_then_stats_count_them_and_faults() {
        let (base, _state) = start().await;
        let http = chorus::tls::http_client().build().unwrap();
        let post = |body: serde_json::Value| http.post(format!("{base}/_mock/faults/*")).json(&body).send();
        assert_eq!(post(json!({"rate": 1.0, "kinds": ["server-error"]})).await.unwrap().status(), 204);
        assert_eq!(post(json!({"rate": 2.0})).await.unwrap().status(), 422);
        assert_eq!(
            post(json!({"rate": 0.5, "fault": "slow"})).await.unwrap().status(),
            422,
            "neither a script nor a rate"
        );

        let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
        let call = || http.post(format!("{base}/openai/v1/chat/completions")).bearer_auth("sk-mock").json(&chat).send();
        assert_eq!(call().await.unwrap().status(), 500);
        assert_eq!(post(json!({"rate": 0})).await.unwrap().status(), 204);
        assert_eq!(call().await.unwrap().status(), 200);

        let stats: Stats = http.get(format!("{base}/_mock/stats")).send().await.unwrap().json().await.unwrap();
        assert_eq!(stats.requests["openai"], 2);
        assert_eq!(stats.faults["openai"]["server-error"], 1);
    }
}
