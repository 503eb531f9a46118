//! The mock Anthropic Messages API under `/anthropic`: `POST /v1/messages`, requiring a key and
//! `anthropic-version` like the real one — the key as `x-api-key` (what Chorus's adapter sends)
//! or as `Authorization: Bearer` (what the official SDKs send) — with Anthropic's error bodies
//! (`{"type": "error", "error": {"type", "message"}, "request_id"}`). Faults: 429
//! `rate_limit_error`, 500 `api_error`, 529 `overloaded_error`, the 400 "credit balance is too
//! low", 401 `authentication_error`, 400 `invalid_request_error`, and a 200 whose
//! `stop_reason` is `refusal` (how Claude's safety classifiers answer).

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
const PROVIDER: &str = "anthropic";

/// Anthropic's routes, to nest under `/anthropic`.
pub fn routes() -> Router<MockState> {
    Router::new().route("/v1/messages", post(messages))
}

#[derive(Debug, Deserialize)]
struct MessagesBody {
    model: Option<String>,
    max_tokens: Option<u32>,
    messages: Option<Vec<Message>>,
    system: Option<Content>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Content,
}

/// A string, or a list of content blocks of which the text ones count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Debug, Deserialize)]
struct Block {
    text: Option<String>,
}

impl Content {
    fn text(&self) -> String {
        match self {
            Content::Text(text) => text.clone(),
            Content::Blocks(blocks) => blocks.iter().filter_map(|b| b.text.as_deref()).collect(),
        }
    }
}

async fn messages(State(state): State<MockState>, headers: HeaderMap, body: Bytes) -> Response {
    let api_key = headers.get("x-api-key").is_some_and(|key| !key.is_empty());
    if !api_key && bearer(&headers).is_none() {
        return error(
            StatusCode::UNAUTHORIZED,
            HeaderMap::new(),
            "authentication_error",
            "x-api-key header is required",
        );
    }
    if headers.get("anthropic-version").is_none() {
        return invalid_request("anthropic-version: header is required");
    }
    let Ok(body) = serde_json::from_slice::<MessagesBody>(&body) else {
        return invalid_request("There was an issue with your request body: it is not valid JSON");
    };
    let model = body.model.unwrap_or_default();
    if let Some(fault) = fault_for(&state, PROVIDER, &model).await {
        return render(fault, &model);
    }
    let messages = body.messages.unwrap_or_default();
    let missing =
        [("model", model.is_empty()), ("max_tokens", body.max_tokens.is_none()), ("messages", messages.is_empty())];
    if let Some((field, _)) = missing.into_iter().find(|(_, missing)| *missing) {
        return invalid_request(&format!("{field}: Field required"));
    }
    let user = messages.iter().rev().find(|m| m.role == "user").map(|m| m.content.text()).unwrap_or_default();
    let system = body.system.map(|s| s.text());
    let answer = answers::chat(&model, system.as_deref(), &user);
    let input_tokens = answers::tokens(&format!("{}{user}", system.unwrap_or_default()));
    reply(&model, json!([{"type": "text", "text": answer}]), "end_turn", input_tokens, answers::tokens(&answer))
}

/// A 200 message.
fn reply(model: &str, content: Value, stop_reason: &str, input_tokens: u64, output_tokens: u64) -> Response {
    Json(json!({
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}
    }))
    .into_response()
}

/// A fault in Anthropic's own words and statuses.
fn render(fault: Fault, model: &str) -> Response {
    match fault {
        Fault::RateLimit => error(
            StatusCode::TOO_MANY_REQUESTS,
            rate_limit_headers(),
            "rate_limit_error",
            "This request would exceed your account's rate limit. Please try again later.",
        ),
        Fault::ServerError => {
            error(StatusCode::INTERNAL_SERVER_ERROR, HeaderMap::new(), "api_error", "Internal server error")
        }
        Fault::Overloaded => error(overloaded_status(), HeaderMap::new(), "overloaded_error", "Overloaded"),
        Fault::Quota => invalid_request(
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to \
             upgrade or purchase credits.",
        ),
        Fault::Auth => error(StatusCode::UNAUTHORIZED, HeaderMap::new(), "authentication_error", "invalid x-api-key"),
        Fault::BadRequest => invalid_request("max_tokens: Input should be greater than or equal to 1"),
        // Claude 4's safety classifiers answer with a 200 and stop_reason "refusal".
        Fault::ContentFilter => reply(model, json!([]), "refusal", 12, 0),
        Fault::Malformed => malformed(),
        // `fault_for` has already waited out a slow fault and answers normally after it.
        Fault::Slow => StatusCode::OK.into_response(),
    }
}

/// Anthropic's own "overloaded" status, which `StatusCode` has no name for.
fn overloaded_status() -> StatusCode {
    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

fn invalid_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, HeaderMap::new(), "invalid_request_error", message)
}

fn error(status: StatusCode, headers: HeaderMap, kind: &str, message: &str) -> Response {
    error_response(
        status,
        headers,
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"}),
    )
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    async fn post(headers: &[(&'static str, &str)], body: Value) -> (StatusCode, Value) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        let state = MockState::new(crate::DEFAULT_WEBHOOK_SECRET);
        let response = messages(State(state), map, Bytes::from(body.to_string())).await;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    const AUTH: [(&str, &str); 2] = [("x-api-key", "sk-ant-mock"), ("anthropic-version", "2023-06-01")];

    fn body(model: &str) -> Value {
        json!({"model": model, "max_tokens": 100, "system": "Summarize the user's text in a few sentences.",
               "messages": [{"role": "user", "content": "First. Second."}]})
    }

    #[tokio::test]
    async fn given_a_message_request_when_answered_then_it_has_anthropic_shape_and_usage() {
        let (status, reply) = post(&AUTH, body("claude-haiku-4-5")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(reply["content"], json!([{"type": "text", "text": "First."}]));
        assert_eq!(reply["stop_reason"], "end_turn");
        assert!(reply["usage"]["input_tokens"].as_u64().unwrap() > 0);
    }

    #[tokio::test]
    async fn given_a_bearer_key_instead_of_x_api_key_when_posted_then_it_is_accepted() {
        let headers = [("authorization", "Bearer sk-ant-mock"), ("anthropic-version", "2023-06-01")];
        let (status, reply) = post(&headers, body("claude-haiku-4-5")).await;
        assert_eq!((status, &reply["stop_reason"]), (StatusCode::OK, &json!("end_turn")));
        let empty = [("authorization", "Bearer "), ("anthropic-version", "2023-06-01")];
        let (status, _) = post(&empty, body("claude-haiku-4-5")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn given_missing_headers_or_fields_when_posted_then_anthropic_errors_come_back() {
        let (status, reply) = post(&AUTH[1..], body("claude-haiku-4-5")).await;
        assert_eq!((status, &reply["error"]["type"]), (StatusCode::UNAUTHORIZED, &json!("authentication_error")));
        let (status, reply) = post(&AUTH[..1], body("claude-haiku-4-5")).await;
        assert_eq!((status, &reply["error"]["type"]), (StatusCode::BAD_REQUEST, &json!("invalid_request_error")));
        let no_max = json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]});
        let (status, reply) = post(&AUTH, no_max).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(reply["error"]["message"], "max_tokens: Field required");
    }

    #[tokio::test]
    async fn given_fault_models_when_posted_then_each_has_its_anthropic_answer() {
        let (status, reply) = post(&AUTH, body("fault-overloaded")).await;
        assert_eq!((status.as_u16(), &reply["error"]["type"]), (529, &json!("overloaded_error")));
        let (status, reply) = post(&AUTH, body("fault-quota")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(reply["error"]["message"].as_str().unwrap().contains("credit balance is too low"));
        let (status, reply) = post(&AUTH, body("fault-content-filter")).await;
        assert_eq!((status, &reply["stop_reason"]), (StatusCode::OK, &json!("refusal")));
    }
}
