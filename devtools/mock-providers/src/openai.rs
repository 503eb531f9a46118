//! The mock OpenAI API under `/openai`: `POST /v1/chat/completions` and `POST /v1/embeddings`
//! with bearer auth, OpenAI's error bodies (`{"error": {"message", "type", "param", "code"}}`)
//! and its usage fields. Embeddings come as float lists, or base64 (little-endian `f32`s) when
//! asked with `encoding_format: "base64"`, which the official SDKs ask for by default. Faults: a 429 `rate_limit_exceeded`, a 500, a 503 "overloaded", a
//! 429 `insufficient_quota`, a 401 `invalid_api_key`, a 400, and a 400
//! `content_policy_violation`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Fault, MockState, answers, bearer, error_response, fault_for, malformed, rate_limit_headers};

/// The provider name faults are scripted under.
const PROVIDER: &str = "openai";

/// OpenAI's routes, to nest under `/openai`.
pub fn routes() -> Router<MockState> {
    Router::new().route("/v1/chat/completions", post(chat_completions)).route("/v1/embeddings", post(embeddings))
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    model: Option<String>,
    messages: Option<Vec<ChatMessage>>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    content: MessageContent,
}

/// A message's content: a string, or a list of parts of which the text ones count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    text: Option<String>,
}

impl MessageContent {
    fn text(&self) -> String {
        match self {
            MessageContent::Text(text) => text.clone(),
            MessageContent::Parts(parts) => parts.iter().filter_map(|p| p.text.as_deref()).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct EmbeddingBody {
    model: Option<String>,
    input: Option<Value>,
    dimensions: Option<usize>,
    encoding_format: Option<String>,
}

async fn chat_completions(State(state): State<MockState>, headers: HeaderMap, body: Bytes) -> Response {
    if bearer(&headers).is_none() {
        return missing_key();
    }
    let Ok(body) = serde_json::from_slice::<ChatBody>(&body) else {
        return invalid_body();
    };
    let model = body.model.unwrap_or_default();
    if let Some(fault) = fault_for(&state, PROVIDER, &model).await {
        return render(fault, &model);
    }
    if model.is_empty() {
        return bad_request("you must provide a model parameter", None, None);
    }
    let messages = match body.messages {
        Some(messages) if !messages.is_empty() => messages,
        _ => {
            return bad_request(
                "Missing required parameter: 'messages'.",
                Some("messages"),
                Some("missing_required_parameter"),
            );
        }
    };
    let text_of = |role: &str| messages.iter().rev().find(|m| m.role == role).map(|m| m.content.text());
    let system = text_of("system").or_else(|| text_of("developer"));
    let user = text_of("user").unwrap_or_default();
    let answer = answers::chat(&model, system.as_deref(), &user);
    let prompt_tokens = answers::tokens(&format!("{}{user}", system.unwrap_or_default()));
    let completion_tokens = answers::tokens(&answer);
    Json(json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1_741_569_952,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        }
    }))
    .into_response()
}

async fn embeddings(State(state): State<MockState>, headers: HeaderMap, body: Bytes) -> Response {
    if bearer(&headers).is_none() {
        return missing_key();
    }
    let Ok(body) = serde_json::from_slice::<EmbeddingBody>(&body) else {
        return invalid_body();
    };
    let model = body.model.unwrap_or_default();
    if let Some(fault) = fault_for(&state, PROVIDER, &model).await {
        return render(fault, &model);
    }
    if model.is_empty() {
        return bad_request("you must provide a model parameter", None, None);
    }
    let inputs: Vec<String> = match body.input {
        Some(Value::String(text)) => vec![text],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => return bad_request("'input' is a required property", Some("input"), None),
    };
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return bad_request(
                "Invalid value for 'encoding_format': expected 'float' or 'base64'.",
                Some("encoding_format"),
                Some("invalid_value"),
            );
        }
    };
    let dims = body.dimensions.unwrap_or(if model.contains("large") { 3072 } else { 1536 });
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = answers::embedding(text, dims);
            let embedding = if base64 { json!(encode_base64(&vector)) } else { json!(vector) };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let prompt_tokens: u64 = inputs.iter().map(|text| answers::tokens(text)).sum();
    Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    }))
    .into_response()
}

/// A vector as OpenAI's base64 encoding spells it: the little-endian bytes of each `f32`.
fn encode_base64(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|value| value.to_le_bytes()).collect();
    BASE64_STANDARD.encode(bytes)
}

/// A fault in OpenAI's own words and statuses.
fn render(fault: Fault, model: &str) -> Response {
    let (status, headers, message, kind, code) = match fault {
        Fault::RateLimit => (
            StatusCode::TOO_MANY_REQUESTS,
            rate_limit_headers(),
            format!(
                "Rate limit reached for {model} in organization org-mock on requests per min (RPM): \
                 Limit 60, Used 60, Requested 1. Please try again in 1s."
            ),
            "requests",
            Some("rate_limit_exceeded"),
        ),
        Fault::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            HeaderMap::new(),
            "The server had an error while processing your request. Sorry about that!".to_owned(),
            "server_error",
            None,
        ),
        Fault::Overloaded => (
            StatusCode::SERVICE_UNAVAILABLE,
            HeaderMap::new(),
            "The engine is currently overloaded, please try again later".to_owned(),
            "server_error",
            None,
        ),
        Fault::Quota => (
            StatusCode::TOO_MANY_REQUESTS,
            HeaderMap::new(),
            "You exceeded your current quota, please check your plan and billing details.".to_owned(),
            "insufficient_quota",
            Some("insufficient_quota"),
        ),
        Fault::Auth => (
            StatusCode::UNAUTHORIZED,
            HeaderMap::new(),
            // Like the real API, the answer quotes part of the key: adapters must not repeat it.
            "Incorrect API key provided: sk-mock***. You can find your API key at \
             https://platform.openai.com/account/api-keys."
                .to_owned(),
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        Fault::BadRequest => (
            StatusCode::BAD_REQUEST,
            HeaderMap::new(),
            "Invalid value for 'temperature': expected a number between 0 and 2.".to_owned(),
            "invalid_request_error",
            Some("invalid_value"),
        ),
        Fault::ContentFilter => (
            StatusCode::BAD_REQUEST,
            HeaderMap::new(),
            "Your request was rejected as a result of our safety system.".to_owned(),
            "invalid_request_error",
            Some("content_policy_violation"),
        ),
        Fault::Malformed => return malformed(),
        // `fault_for` has already waited out a slow fault and answers normally after it.
        Fault::Slow => return StatusCode::OK.into_response(),
    };
    error_response(status, headers, json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
}

fn missing_key() -> Response {
    error_response(
        StatusCode::UNAUTHORIZED,
        HeaderMap::new(),
        json!({"error": {
            "message": "You didn't provide an API key. You need to provide your API key in an Authorization \
                        header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "type": "invalid_request_error",
            "param": null,
            "code": null
        }}),
    )
}

fn invalid_body() -> Response {
    bad_request(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your \
         HTTP library correctly.)",
        None,
        None,
    )
}

fn bad_request(message: &str, param: Option<&str>, code: Option<&str>) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        HeaderMap::new(),
        json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}),
    )
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    async fn read(response: Response) -> (StatusCode, Value) {
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn with_key(name: &'static str, value: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn state() -> MockState {
        MockState::new(crate::DEFAULT_WEBHOOK_SECRET)
    }

    fn bearer_key(key: Option<&str>) -> HeaderMap {
        with_key("authorization", key.map(|k| format!("Bearer {k}")).as_deref())
    }

    async fn chat(key: Option<&str>, body: Value) -> (StatusCode, Value) {
        read(chat_completions(State(state()), bearer_key(key), Bytes::from(body.to_string())).await).await
    }

    #[tokio::test]
    async fn given_a_chat_request_when_answered_then_it_has_openai_shape_and_usage() {
        let body = json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "Summarize the user's text in a few sentences."},
            {"role": "user", "content": "One. Two."}
        ]});
        let (status, reply) = chat(Some("sk-mock"), body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(reply["choices"][0]["message"]["content"], "One.");
        assert_eq!(reply["choices"][0]["finish_reason"], "stop");
        assert!(reply["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    }

    #[tokio::test]
    async fn given_no_key_or_no_messages_when_posted_then_openai_errors_come_back() {
        let (status, reply) = chat(None, json!({"model": "gpt-4o-mini"})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply["error"]["type"], "invalid_request_error");
        let (status, reply) = chat(Some("sk-mock"), json!({"model": "gpt-4o-mini"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(reply["error"]["code"], "missing_required_parameter");
    }

    #[tokio::test]
    async fn given_fault_models_when_posted_then_each_has_its_status_and_code() {
        for (model, status, code) in [
            ("fault-quota", StatusCode::TOO_MANY_REQUESTS, json!("insufficient_quota")),
            ("fault-rate-limit", StatusCode::TOO_MANY_REQUESTS, json!("rate_limit_exceeded")),
            ("fault-overloaded", StatusCode::SERVICE_UNAVAILABLE, Value::Null),
            ("fault-content-filter", StatusCode::BAD_REQUEST, json!("content_policy_violation")),
        ] {
            let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
            let (got, reply) = chat(Some("sk-mock"), body).await;
            assert_eq!((got, &reply["error"]["code"]), (status, &code), "{model}");
        }
    }

    #[tokio::test]
    async fn given_an_embeddings_request_when_answered_then_vector_and_usage_come_back() {
        let body = json!({"model": "text-embedding-3-small", "input": "some words"});
        let response = embeddings(State(state()), bearer_key(Some("sk-mock")), Bytes::from(body.to_string())).await;
        let (status, reply) = read(response).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(reply["data"][0]["embedding"].as_array().unwrap().len(), 1536);
        assert_eq!(reply["usage"]["prompt_tokens"], 3);
    }

    #[tokio::test]
    async fn given_base64_encoding_when_embedding_then_the_same_vector_comes_as_little_endian_floats() {
        let post = |format: &str| {
            let body = json!({"model": "text-embedding-3-small", "input": "some words", "encoding_format": format});
            embeddings(State(state()), bearer_key(Some("sk-mock")), Bytes::from(body.to_string()))
        };
        let (status, floats) = read(post("float").await).await;
        assert_eq!(status, StatusCode::OK);
        let (status, encoded) = read(post("base64").await).await;
        assert_eq!(status, StatusCode::OK);
        let bytes = BASE64_STANDARD.decode(encoded["data"][0]["embedding"].as_str().unwrap()).unwrap();
        let decoded: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        // JSON carries each f32's shortest spelling, which reads back as exactly that f32.
        let expected: Vec<f32> =
            floats["data"][0]["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(decoded, expected);
        let (status, reply) = read(post("int8").await).await;
        assert_eq!((status, &reply["error"]["param"]), (StatusCode::BAD_REQUEST, &json!("encoding_format")));
    }
}
