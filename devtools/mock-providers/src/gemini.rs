//! The mock Gemini API under `/gemini`: `POST /{v1beta,v1}/models/{model}:generateContent`,
//! `:embedContent` and `:batchEmbedContents` (what the official `google-genai` SDK calls, on
//! `v1` by default), requiring `x-goog-api-key`, with Google's error bodies
//! (`{"error": {"code", "message", "status", "details"}}`). Like the real API, the embedding
//! methods report no usage. Faults: 429 RESOURCE_EXHAUSTED (per-minute, with `RetryInfo`), 500
//! INTERNAL, 503 UNAVAILABLE, 429 RESOURCE_EXHAUSTED with `limit: 0` (no quota at all), 400
//! INVALID_ARGUMENT with `API_KEY_INVALID` (Google's answer to a bad key), 400
//! INVALID_ARGUMENT, and a 200 whose prompt was blocked (`promptFeedback.blockReason`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Fault, MockState, answers, error_response, fault_for, malformed, rate_limit_headers};

/// The provider name faults are scripted under.
const PROVIDER: &str = "gemini";

/// Dimensions of `gemini-embedding-001` vectors unless `outputDimensionality` says otherwise.
const EMBED_DIMS: usize = 3072;

/// The API versions served, both with the same methods: Chorus's adapter calls `v1beta`,
/// the official SDKs `v1`.
const API_VERSIONS: [&str; 2] = ["v1beta", "v1"];

/// Gemini's routes, to nest under `/gemini`. The method follows the model after a colon in
/// one path segment (`gemini-2.5-flash:generateContent`).
pub fn routes() -> Router<MockState> {
    Router::new().route("/{version}/models/{model_and_method}", post(model_method))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateBody {
    #[serde(default)]
    contents: Vec<Content>,
    system_instruction: Option<Content>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmbedBody {
    content: Option<Content>,
    output_dimensionality: Option<usize>,
}

/// `batchEmbedContents`: one `embedContent` request per text.
#[derive(Debug, Default, Deserialize)]
struct BatchEmbedBody {
    #[serde(default)]
    requests: Vec<EmbedBody>,
}

#[derive(Debug, Deserialize)]
struct Content {
    role: Option<String>,
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Debug, Deserialize)]
struct Part {
    text: Option<String>,
}

impl Content {
    fn text(&self) -> String {
        self.parts.iter().filter_map(|p| p.text.as_deref()).collect()
    }
}

async fn model_method(
    State(state): State<MockState>,
    Path((version, model_and_method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !API_VERSIONS.contains(&version.as_str()) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("API version {version} is not served (try v1 or v1beta)"),
            json!([]),
            HeaderMap::new(),
        );
    }
    if headers.get("x-goog-api-key").is_none_or(|key| key.is_empty()) {
        return error(
            StatusCode::FORBIDDEN,
            "Method doesn't allow unregistered callers (callers without established identity). Please use \
             API Key or other form of API consumer identity to call this API.",
            json!([]),
            HeaderMap::new(),
        );
    }
    let (model, method) = model_and_method.rsplit_once(':').unwrap_or((&model_and_method, ""));
    match method {
        "generateContent" => generate_content(&state, model, &body).await,
        "embedContent" => embed_content(&state, model, &body).await,
        "batchEmbedContents" => batch_embed_contents(&state, model, &body).await,
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("models/{model_and_method} is not found for API version {version}"),
            json!([]),
            HeaderMap::new(),
        ),
    }
}

async fn generate_content(state: &MockState, model: &str, body: &[u8]) -> Response {
    let Ok(body) = serde_json::from_slice::<GenerateBody>(body) else {
        return invalid_argument("Invalid JSON payload received.");
    };
    if let Some(fault) = fault_for(state, PROVIDER, model).await {
        return render(fault, model);
    }
    let Some(user) = body.contents.iter().rev().find(|c| c.role.as_deref().is_none_or(|r| r == "user")) else {
        return invalid_argument("* GenerateContentRequest.contents: contents is not specified\n");
    };
    let user = user.text();
    let system = body.system_instruction.map(|s| s.text());
    let answer = answers::chat(model, system.as_deref(), &user);
    let prompt_tokens = answers::tokens(&format!("{}{user}", system.unwrap_or_default()));
    let candidates_tokens = answers::tokens(&answer);
    Json(json!({
        "candidates": [{
            "content": {"parts": [{"text": answer}], "role": "model"},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": candidates_tokens,
            "totalTokenCount": prompt_tokens + candidates_tokens
        },
        "modelVersion": model,
        "responseId": "mock"
    }))
    .into_response()
}

async fn embed_content(state: &MockState, model: &str, body: &[u8]) -> Response {
    let Ok(body) = serde_json::from_slice::<EmbedBody>(body) else {
        return invalid_argument("Invalid JSON payload received.");
    };
    if let Some(fault) = fault_for(state, PROVIDER, model).await {
        return render(fault, model);
    }
    let Some(content) = body.content else {
        return invalid_argument("* EmbedContentRequest.content: content is not specified\n");
    };
    let values = answers::embedding(&content.text(), body.output_dimensionality.unwrap_or(EMBED_DIMS));
    Json(json!({"embedding": {"values": values}})).into_response()
}

async fn batch_embed_contents(state: &MockState, model: &str, body: &[u8]) -> Response {
    let Ok(body) = serde_json::from_slice::<BatchEmbedBody>(body) else {
        return invalid_argument("Invalid JSON payload received.");
    };
    if let Some(fault) = fault_for(state, PROVIDER, model).await {
        return render(fault, model);
    }
    if body.requests.is_empty() {
        return invalid_argument("* BatchEmbedContentsRequest.requests: requests is not specified\n");
    }
    let mut embeddings = Vec::with_capacity(body.requests.len());
    for (index, request) in body.requests.into_iter().enumerate() {
        let Some(content) = request.content else {
            return invalid_argument(&format!(
                "* BatchEmbedContentsRequest.requests[{index}].content: content is not specified\n"
            ));
        };
        let values = answers::embedding(&content.text(), request.output_dimensionality.unwrap_or(EMBED_DIMS));
        embeddings.push(json!({"values": values}));
    }
    Json(json!({"embeddings": embeddings})).into_response()
}

/// A fault in Google's own words, statuses and details.
fn render(fault: Fault, model: &str) -> Response {
    match fault {
        Fault::RateLimit => error(
            StatusCode::TOO_MANY_REQUESTS,
            "You exceeded your current quota, please check your plan and billing details. For more information \
             on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
            json!([
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    "quotaDimensions": {"location": "global", "model": model},
                    "quotaValue": "10"
                }]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                 "retryDelay": format!("{}s", crate::faults::RETRY_AFTER_SECS)}
            ]),
            rate_limit_headers(),
        ),
        Fault::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "An internal error has occurred. Please retry or report in \
             https://developers.generativeai.google/guide/troubleshooting",
            json!([]),
            HeaderMap::new(),
        ),
        Fault::Overloaded => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The model is overloaded. Please try again later.",
            json!([]),
            HeaderMap::new(),
        ),
        Fault::Quota => error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "You exceeded your current quota, please check your plan and billing details.\n* Quota exceeded \
                 for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, \
                 model: {model}"
            ),
            json!([]),
            HeaderMap::new(),
        ),
        // Google answers a bad key with a 400, not a 401; only the ErrorInfo reason tells.
        Fault::Auth => error(
            StatusCode::BAD_REQUEST,
            "API key not valid. Please pass a valid API key.",
            json!([{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"}
            }]),
            HeaderMap::new(),
        ),
        Fault::BadRequest => invalid_argument("Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\""),
        Fault::ContentFilter => Json(json!({
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
            ]},
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
            "modelVersion": model
        }))
        .into_response(),
        Fault::Malformed => malformed(),
        // `fault_for` has already waited out a slow fault and answers normally after it.
        Fault::Slow => StatusCode::OK.into_response(),
    }
}

fn invalid_argument(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, message, json!([]), HeaderMap::new())
}

/// Google's error body; `status` is the canonical name of the HTTP status.
fn error(status: StatusCode, message: &str, details: Value, headers: HeaderMap) -> Response {
    let name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    let mut error = json!({"code": status.as_u16(), "message": message, "status": name});
    if details.as_array().is_some_and(|d| !d.is_empty()) {
        error["details"] = details;
    }
    error_response(status, headers, json!({"error": error}))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    async fn post(key: Option<&str>, path: &str, body: Value) -> (StatusCode, Value) {
        let mut headers = HeaderMap::new();
        if let Some(key) = key {
            headers.insert("x-goog-api-key", HeaderValue::from_str(key).unwrap());
        }
        let state = MockState::new(crate::DEFAULT_WEBHOOK_SECRET);
        let (version, path) = path.split_once('/').unwrap_or(("v1beta", path));
        let path = Path((version.to_owned(), path.to_owned()));
        let response = model_method(State(state), path, headers, Bytes::from(body.to_string())).await;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn generate(user: &str) -> Value {
        json!({
            "contents": [{"role": "user", "parts": [{"text": user}]}],
            "systemInstruction": {"parts": [{"text": "Summarize the user's text in a few sentences."}]}
        })
    }

    #[tokio::test]
    async fn given_a_generate_request_when_answered_then_it_has_gemini_shape_and_usage() {
        let (status, reply) = post(Some("gemini-mock"), "gemini-2.5-flash:generateContent", generate("A. B.")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(reply["candidates"][0]["content"]["parts"][0]["text"], "A.");
        assert_eq!(reply["candidates"][0]["finishReason"], "STOP");
        assert!(reply["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0);
    }

    #[tokio::test]
    async fn given_the_v1_api_when_posted_then_it_answers_like_v1beta() {
        let (status, reply) = post(Some("k"), "v1/gemini-2.5-flash:generateContent", generate("A. B.")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(reply["candidates"][0]["content"]["parts"][0]["text"], "A.");
        let (status, reply) = post(Some("k"), "v2/gemini-2.5-flash:generateContent", generate("A. B.")).await;
        assert_eq!((status, &reply["error"]["status"]), (StatusCode::NOT_FOUND, &json!("NOT_FOUND")));
    }

    #[tokio::test]
    async fn given_a_batch_embed_request_when_answered_then_one_vector_per_request_comes_back() {
        let request =
            |text: &str| json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": text}]}});
        let body = json!({"requests": [request("some words"), request("other words")]});
        let (status, reply) = post(Some("k"), "v1/gemini-embedding-001:batchEmbedContents", body).await;
        assert_eq!(status, StatusCode::OK);
        let embeddings = reply["embeddings"].as_array().unwrap();
        assert_eq!(embeddings.len(), 2);
        assert_eq!(embeddings[0]["values"].as_array().unwrap().len(), EMBED_DIMS);
        assert_ne!(embeddings[0], embeddings[1]);
        let single = json!({"content": {"parts": [{"text": "some words"}]}});
        let (_, one) = post(Some("k"), "gemini-embedding-001:embedContent", single).await;
        assert_eq!(one["embedding"], embeddings[0], "the same text embeds the same either way");
        let (status, _) = post(Some("k"), "gemini-embedding-001:batchEmbedContents", json!({"requests": []})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn given_an_embed_request_when_answered_then_values_come_back_without_usage() {
        let body = json!({"content": {"parts": [{"text": "some words"}]}, "outputDimensionality": 8});
        let (status, reply) = post(Some("gemini-mock"), "gemini-embedding-001:embedContent", body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(reply["embedding"]["values"].as_array().unwrap().len(), 8);
        assert!(reply.get("usageMetadata").is_none());
    }

    #[tokio::test]
    async fn given_no_key_an_unknown_method_or_no_contents_when_posted_then_google_errors_come_back() {
        let (status, reply) = post(None, "gemini-2.5-flash:generateContent", generate("hi")).await;
        assert_eq!((status, &reply["error"]["status"]), (StatusCode::FORBIDDEN, &json!("PERMISSION_DENIED")));
        let (status, _) = post(Some("k"), "gemini-2.5-flash:streamSomething", generate("hi")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, reply) = post(Some("k"), "gemini-2.5-flash:generateContent", json!({})).await;
        assert_eq!((status, &reply["error"]["status"]), (StatusCode::BAD_REQUEST, &json!("INVALID_ARGUMENT")));
    }

    #[tokio::test]
    async fn given_fault_models_when_posted_then_each_has_its_google_answer() {
        let (status, reply) = post(Some("k"), "fault-auth:generateContent", generate("hi")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(reply["error"]["details"][0]["reason"], "API_KEY_INVALID");
        let (status, reply) = post(Some("k"), "fault-quota:generateContent", generate("hi")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(reply["error"]["message"].as_str().unwrap().contains("limit: 0"));
        let (status, reply) = post(Some("k"), "fault-content-filter:generateContent", generate("hi")).await;
        assert_eq!((status, &reply["promptFeedback"]["blockReason"]), (StatusCode::OK, &json!("SAFETY")));
    }
}
