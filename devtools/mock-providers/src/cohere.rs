//! Mock Cohere v2 API under `/cohere`: `POST /v2/chat` and `POST /v2/embed`, with Bearer auth,
//! Cohere's `{"id", "message"}` error bodies and its statuses (402 for billing, 503 when busy),
//! and a toxic generation as a 200 whose `finish_reason` is `ERROR_TOXIC`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Fault, MockState, answers, bearer, error_response, fault_for, malformed, rate_limit_headers};

/// The provider name faults are scripted under.
const PROVIDER: &str = "cohere";

/// Dimensions of the mock's embeddings (embed-english-v3.0's).
const EMBED_DIMS: usize = 1024;

/// Cohere's routes, to nest under `/cohere`.
pub fn routes() -> Router<MockState> {
    Router::new().route("/v2/chat", post(chat)).route("/v2/embed", post(embed))
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    messages: Vec<ChatMessage>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    /// A string, or a list of `{"type": "text", "text": …}` blocks.
    #[serde(default)]
    content: Value,
}

#[derive(Debug, Deserialize)]
struct EmbedBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    texts: Vec<String>,
    #[serde(default)]
    input_type: Option<String>,
    #[serde(default)]
    embedding_types: Vec<String>,
}

async fn chat(State(state): State<MockState>, headers: HeaderMap, body: Bytes) -> Response {
    if bearer(&headers).is_none() {
        return cohere_error(StatusCode::UNAUTHORIZED, "no api key supplied");
    }
    let body: ChatBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => return cohere_error(StatusCode::BAD_REQUEST, &format!("invalid json syntax: {err}")),
    };
    let Some(model) = body.model.filter(|m| !m.is_empty()) else {
        return cohere_error(StatusCode::BAD_REQUEST, "a model parameter is required for this endpoint.");
    };
    if let Some(fault) = fault_for(&state, PROVIDER, &model).await {
        return fault_response(fault, &model);
    }
    let text_of = |role: &str| body.messages.iter().rev().find(|m| m.role == role).map(|m| text(&m.content));
    let Some(user) = text_of("user").filter(|u| !u.trim().is_empty()) else {
        return cohere_error(StatusCode::BAD_REQUEST, "invalid request: message must be at least 1 token long.");
    };
    let system = text_of("system");
    let answer = answers::chat(&model, system.as_deref(), &user);
    let input_tokens = answers::tokens(&user) + system.as_deref().map_or(0, answers::tokens);
    Json(chat_answer(&answer, "COMPLETE", input_tokens)).into_response()
}

/// The text of a message's `content`, either spelling.
fn text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

fn chat_answer(answer: &str, finish_reason: &str, input_tokens: u64) -> Value {
    let output_tokens = answers::tokens(answer);
    let content = if answer.is_empty() { json!([]) } else { json!([{"type": "text", "text": answer}]) };
    json!({
        "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
        "message": {"role": "assistant", "content": content},
        "finish_reason": finish_reason,
        "usage": {
            "billed_units": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            "tokens": {"input_tokens": input_tokens + 60, "output_tokens": output_tokens}
        }
    })
}

async fn embed(State(state): State<MockState>, headers: HeaderMap, body: Bytes) -> Response {
    if bearer(&headers).is_none() {
        return cohere_error(StatusCode::UNAUTHORIZED, "no api key supplied");
    }
    let body: EmbedBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => return cohere_error(StatusCode::BAD_REQUEST, &format!("invalid json syntax: {err}")),
    };
    let Some(model) = body.model.filter(|m| !m.is_empty()) else {
        return cohere_error(StatusCode::BAD_REQUEST, "a model parameter is required for this endpoint.");
    };
    if let Some(fault) = fault_for(&state, PROVIDER, &model).await {
        return fault_response(fault, &model);
    }
    if body.embedding_types.is_empty() {
        return cohere_error(StatusCode::BAD_REQUEST, "embedding_types parameter is required");
    }
    if body.input_type.is_none() {
        return cohere_error(
            StatusCode::BAD_REQUEST,
            "invalid request: valid input_type must be provided with the provided model",
        );
    }
    if body.texts.is_empty() || body.texts.iter().any(String::is_empty) {
        return cohere_error(
            StatusCode::BAD_REQUEST,
            "invalid request: inputs contains an element that is the empty string at index 0",
        );
    }
    let vectors: Vec<Vec<f32>> = body.texts.iter().map(|text| answers::embedding(text, EMBED_DIMS)).collect();
    let input_tokens: u64 = body.texts.iter().map(|text| answers::tokens(text)).sum();
    Json(json!({
        "id": "da6e531f-54c6-4a73-bf92-f60566d8d753",
        "texts": body.texts,
        "embeddings": {"float": vectors},
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": input_tokens}},
        "response_type": "embeddings_by_type"
    }))
    .into_response()
}

/// Each fault as Cohere answers it.
fn fault_response(fault: Fault, model: &str) -> Response {
    match fault {
        Fault::RateLimit => error_response(
            StatusCode::TOO_MANY_REQUESTS,
            rate_limit_headers(),
            json!({"id": "mock", "message": "You are past the per minute request limit, please wait and try again later."}),
        ),
        Fault::ServerError => cohere_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error, this has been reported to our developers",
        ),
        Fault::Overloaded => {
            cohere_error(StatusCode::SERVICE_UNAVAILABLE, "service unavailable, please try again later")
        }
        Fault::Malformed => malformed(),
        Fault::Quota => cohere_error(
            StatusCode::PAYMENT_REQUIRED,
            "Please add or update your payment method at https://dashboard.cohere.com/billing?tab=payment to continue",
        ),
        Fault::Auth => cohere_error(StatusCode::UNAUTHORIZED, "invalid api token"),
        Fault::BadRequest => {
            cohere_error(StatusCode::BAD_REQUEST, "invalid request: temperature must be between 0 and 1.0 inclusive.")
        }
        Fault::ContentFilter => Json(chat_answer("", "ERROR_TOXIC", 1)).into_response(),
        // `fault_for` never returns `slow`: it only delays.
        Fault::Slow => Json(chat_answer(&format!("[{model}]"), "COMPLETE", 1)).into_response(),
    }
}

fn cohere_error(status: StatusCode, message: &str) -> Response {
    error_response(status, HeaderMap::new(), json!({"id": "mock", "message": message}))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    async fn post_to(path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = routes().with_state(MockState::new(crate::DEFAULT_WEBHOOK_SECRET));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut request = chorus::tls::http_client().build().unwrap().post(format!("http://{addr}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    #[tokio::test]
    async fn given_no_key_when_chatting_then_cohere_answers_401_with_its_body() {
        let (status, body) = post_to("/v2/chat", None, json!({"model": "command-a-03-2025", "messages": []})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["message"], "no api key supplied");
    }

    #[tokio::test]
    async fn given_a_chat_without_model_when_posted_then_it_is_a_400() {
        let (status, body) =
            post_to("/v2/chat", Some("k"), json!({"messages": [{"role": "user", "content": "hi"}]})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["message"].as_str().unwrap().contains("model"));
    }

    #[tokio::test]
    async fn given_a_summarize_prompt_when_chatting_then_the_answer_and_billed_usage_come_back() {
        let messages = json!([
            {"role": "system", "content": "Summarize the user's text in a few sentences."},
            {"role": "user", "content": [{"type": "text", "text": "First sentence. Second one."}]}
        ]);
        let (status, body) = post_to("/v2/chat", Some("k"), json!({"model": "command-r", "messages": messages})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["message"]["content"][0]["text"], "First sentence.");
        assert_eq!(body["finish_reason"], "COMPLETE");
        assert!(body["usage"]["billed_units"]["output_tokens"].as_u64().unwrap() > 0);
    }

    #[tokio::test]
    async fn given_an_embed_without_embedding_types_when_posted_then_it_is_a_400() {
        let body = json!({"model": "embed-v4.0", "texts": ["hi"], "input_type": "search_document"});
        let (status, answer) = post_to("/v2/embed", Some("k"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["message"], "embedding_types parameter is required");
    }

    #[tokio::test]
    async fn given_a_valid_embed_when_posted_then_one_float_vector_per_text_comes_back() {
        let body = json!({"model": "embed-v4.0", "texts": ["hi there"], "input_type": "search_document", "embedding_types": ["float"]});
        let (status, answer) = post_to("/v2/embed", Some("k"), body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["embeddings"]["float"][0].as_array().unwrap().len(), EMBED_DIMS);
        assert_eq!(answer["meta"]["billed_units"]["input_tokens"], 2);
    }

    #[tokio::test]
    async fn given_a_quota_fault_model_when_chatting_then_cohere_answers_402() {
        let body = json!({"model": "fault-quota", "messages": [{"role": "user", "content": "hi"}]});
        let (status, answer) = post_to("/v2/chat", Some("k"), body).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        assert!(answer["message"].as_str().unwrap().contains("billing"));
    }
}
