//! Mock Amazon Bedrock runtime under `/bedrock`: `POST /model/{modelId}/converse` in the
//! Converse REST JSON the AWS SDK sends when its endpoint URL points here. Requests must be
//! signed (an `authorization` header), but the SigV4 signature is not checked. Errors carry
//! the exception's name in `x-amzn-errortype` and `{"message": …}`, with the statuses the
//! service uses; a filtered answer is a 200 whose `stopReason` is `content_filtered`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Fault, MockState, answers, error_response, fault_for, malformed, rate_limit_headers};

/// The provider name faults are scripted under.
const PROVIDER: &str = "bedrock";

/// Bedrock's routes, to nest under `/bedrock`.
pub fn routes() -> Router<MockState> {
    Router::new().route("/model/{model_id}/converse", post(converse))
}

#[derive(Debug, Deserialize)]
struct ConverseBody {
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    system: Vec<TextBlock>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Vec<TextBlock>,
}

/// A content block; only `text` ones matter to the mock.
#[derive(Debug, Deserialize)]
struct TextBlock {
    #[serde(default)]
    text: Option<String>,
}

fn joined(blocks: &[TextBlock]) -> String {
    blocks.iter().filter_map(|block| block.text.as_deref()).collect::<Vec<_>>().join("\n")
}

async fn converse(
    State(state): State<MockState>,
    Path(model_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !headers.contains_key(header::AUTHORIZATION) {
        return exception(StatusCode::FORBIDDEN, "MissingAuthenticationTokenException", "Missing Authentication Token");
    }
    if let Some(fault) = fault_for(&state, PROVIDER, &model_id).await {
        return fault_response(fault);
    }
    let body: ConverseBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(_) => {
            return exception(StatusCode::BAD_REQUEST, "SerializationException", "Unable to parse the request body.");
        }
    };
    let Some(user) = body.messages.iter().rev().find(|m| m.role == "user").map(|m| joined(&m.content)) else {
        return exception(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
        );
    };
    let system = (!body.system.is_empty()).then(|| joined(&body.system));
    let answer = answers::chat(&model_id, system.as_deref(), &user);
    let input_tokens = answers::tokens(&user) + system.as_deref().map_or(0, answers::tokens);
    Json(converse_answer(&answer, "end_turn", input_tokens)).into_response()
}

fn converse_answer(answer: &str, stop_reason: &str, input_tokens: u64) -> Value {
    let output_tokens = answers::tokens(answer);
    json!({
        "output": {"message": {"role": "assistant", "content": [{"text": answer}]}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens},
        "metrics": {"latencyMs": 1}
    })
}

/// Each fault as Bedrock answers it.
fn fault_response(fault: Fault) -> Response {
    match fault {
        Fault::RateLimit => {
            let mut headers = rate_limit_headers();
            headers.insert("x-amzn-errortype", HeaderValue::from_static("ThrottlingException"));
            error_response(
                StatusCode::TOO_MANY_REQUESTS,
                headers,
                json!({"message": "Too many requests, please wait before trying again."}),
            )
        }
        Fault::ServerError => exception(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            "The system encountered an unexpected error during processing. Try your request again.",
        ),
        Fault::Overloaded => exception(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
        ),
        Fault::Malformed => malformed(),
        Fault::Quota => exception(
            StatusCode::BAD_REQUEST,
            "ServiceQuotaExceededException",
            "Your account has exceeded the service quota for this model.",
        ),
        Fault::Auth => exception(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        Fault::BadRequest => {
            exception(StatusCode::BAD_REQUEST, "ValidationException", "The provided model identifier is invalid.")
        }
        Fault::ContentFilter => {
            Json(converse_answer("Sorry, I can't help with that.", "content_filtered", 1)).into_response()
        }
        // `fault_for` never returns `slow`: it only delays.
        Fault::Slow => exception(
            StatusCode::REQUEST_TIMEOUT,
            "ModelTimeoutException",
            "Model has timed out in processing the request. Try your request again.",
        ),
    }
}

/// An AWS error answer: the type in `x-amzn-errortype`, the message in the body.
fn exception(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("x-amzn-errortype", HeaderValue::from_static(error_type));
    error_response(status, headers, json!({"message": message}))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    async fn post_to(path: &str, signed: bool, body: Value) -> (StatusCode, HeaderMap, Value) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = routes().with_state(MockState::new(crate::DEFAULT_WEBHOOK_SECRET));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut request = chorus::tls::http_client().build().unwrap().post(format!("http://{addr}{path}")).json(&body);
        if signed {
            request = request
                .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/bedrock/aws4_request");
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.json().await.unwrap())
    }

    #[tokio::test]
    async fn given_an_unsigned_request_when_posted_then_bedrock_answers_403_with_its_error_type() {
        let (status, headers, body) = post_to("/model/amazon.nova-lite-v1%3A0/converse", false, json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(headers["x-amzn-errortype"], "MissingAuthenticationTokenException");
        assert_eq!(body["message"], "Missing Authentication Token");
    }

    #[tokio::test]
    async fn given_no_messages_when_posted_then_it_is_a_validation_exception() {
        let (status, headers, _) =
            post_to("/model/amazon.nova-lite-v1%3A0/converse", true, json!({"messages": []})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers["x-amzn-errortype"], "ValidationException");
    }

    #[tokio::test]
    async fn given_a_converse_request_when_posted_then_the_answer_has_the_converse_shape() {
        let body = json!({
            "system": [{"text": "Summarize the user's text in a few sentences."}],
            "messages": [{"role": "user", "content": [{"text": "First. Second."}]}],
            "inferenceConfig": {"maxTokens": 100}
        });
        let (status, _, answer) = post_to("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", true, body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["output"]["message"]["content"][0]["text"], "First.");
        assert_eq!(answer["stopReason"], "end_turn");
        assert!(answer["usage"]["outputTokens"].as_u64().unwrap() > 0);
    }

    #[tokio::test]
    async fn given_a_quota_fault_when_posted_then_it_is_a_service_quota_exception() {
        let body = json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]});
        let (status, headers, _) = post_to("/model/fault-quota/converse", true, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers["x-amzn-errortype"], "ServiceQuotaExceededException");
    }
}
