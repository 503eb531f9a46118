//! Mock Hugging Face Inference under `/huggingface`: `POST /models/{org}/{model}` with Bearer
//! auth and `{"inputs": …}`. The answer's shape follows the model id, as the real pipeline
//! follows the model: ids with `bart` or `summar` summarize, ids with `embed`, `MiniLM`, `bge`
//! or `e5` extract features, anything else classifies sentiment (SST-2 labels). Errors are
//! `{"error": …}`; a busy model is 503 "currently loading" with `estimated_time`.
//!
//! Hugging Face's task pipelines have no content filter, so a `content-filter` fault answers
//! like a bad request.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Fault, MockState, answers, bearer, error_response, fault_for, malformed, rate_limit_headers};

/// The provider name faults are scripted under.
const PROVIDER: &str = "huggingface";

/// Dimensions of the mock's sentence embeddings (all-MiniLM-L6-v2's).
const EMBED_DIMS: usize = 384;

/// Hugging Face's routes, to nest under `/huggingface`.
pub fn routes() -> Router<MockState> {
    Router::new().route("/models/{*model}", post(infer))
}

#[derive(Debug, Deserialize)]
struct InferenceBody {
    #[serde(default)]
    inputs: Option<String>,
}

/// What a model id says its pipeline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pipeline {
    Summarization,
    FeatureExtraction,
    TextClassification,
}

fn pipeline(model: &str) -> Pipeline {
    let id = model.to_lowercase();
    if id.contains("bart") || id.contains("summar") {
        Pipeline::Summarization
    } else if ["embed", "minilm", "bge", "e5"].iter().any(|hint| id.contains(hint)) {
        Pipeline::FeatureExtraction
    } else {
        Pipeline::TextClassification
    }
}

async fn infer(State(state): State<MockState>, Path(model): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if bearer(&headers).is_none() {
        return hf_error(StatusCode::UNAUTHORIZED, json!("Invalid username or password."));
    }
    if let Some(fault) = fault_for(&state, PROVIDER, &model).await {
        return fault_response(fault, &model);
    }
    let inputs = match serde_json::from_slice::<InferenceBody>(&body) {
        Ok(InferenceBody { inputs: Some(inputs) }) if !inputs.is_empty() => inputs,
        Ok(_) => return hf_error(StatusCode::BAD_REQUEST, json!(["Error in `inputs`: field required"])),
        Err(err) => return hf_error(StatusCode::BAD_REQUEST, json!(format!("Invalid JSON: {err}"))),
    };
    let answer = match pipeline(&model) {
        Pipeline::Summarization => json!([{"summary_text": answers::summary(&inputs)}]),
        Pipeline::FeatureExtraction => json!(answers::embedding(&inputs, EMBED_DIMS)),
        Pipeline::TextClassification => {
            let (label, score) = answers::sentiment(&inputs);
            let other = if label == "POSITIVE" { "NEGATIVE" } else { "POSITIVE" };
            json!([[{"label": label, "score": score}, {"label": other, "score": 1.0 - score}]])
        }
    };
    Json(answer).into_response()
}

/// Each fault as Hugging Face answers it.
fn fault_response(fault: Fault, model: &str) -> Response {
    match fault {
        Fault::RateLimit => error_response(
            StatusCode::TOO_MANY_REQUESTS,
            rate_limit_headers(),
            json!({"error": "Rate limit reached. You reached free usage limit (reset hourly). Please subscribe to a plan at https://huggingface.co/pricing to use the API at this rate"}),
        ),
        Fault::ServerError => hf_error(StatusCode::INTERNAL_SERVER_ERROR, json!("Internal Server Error")),
        Fault::Overloaded => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            HeaderMap::new(),
            json!({"error": format!("Model {model} is currently loading"), "estimated_time": 1.0}),
        ),
        Fault::Malformed => malformed(),
        Fault::Quota => hf_error(
            StatusCode::PAYMENT_REQUIRED,
            json!(
                "You have exceeded your monthly included credits for Inference Providers. Subscribe to PRO to get 20x more monthly included credits."
            ),
        ),
        Fault::Auth => hf_error(StatusCode::UNAUTHORIZED, json!("Invalid username or password.")),
        Fault::BadRequest | Fault::ContentFilter => hf_error(
            StatusCode::BAD_REQUEST,
            json!(["Error in `parameters.top_k`: ensure this value is greater than 0"]),
        ),
        // `fault_for` never returns `slow`: it only delays.
        Fault::Slow => hf_error(
            StatusCode::GATEWAY_TIMEOUT,
            json!("Model too busy, unable to get response in less than 60 second(s)"),
        ),
    }
}

/// `{"error": …}`, where `error` is a string or a list of strings.
fn hf_error(status: StatusCode, error: Value) -> Response {
    error_response(status, HeaderMap::new(), json!({"error": error}))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    async fn post_to(model: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = routes().with_state(MockState::new(crate::DEFAULT_WEBHOOK_SECRET));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut request =
            chorus::tls::http_client().build().unwrap().post(format!("http://{addr}/models/{model}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    #[test]
    fn given_model_ids_when_read_then_each_names_its_pipeline() {
        assert_eq!(pipeline("facebook/bart-large-cnn"), Pipeline::Summarization);
        assert_eq!(pipeline("sentence-transformers/all-MiniLM-L6-v2"), Pipeline::FeatureExtraction);
        assert_eq!(pipeline("BAAI/bge-base-en-v1.5"), Pipeline::FeatureExtraction);
        assert_eq!(
            pipeline("distilbert/distilbert-base-uncased-finetuned-sst-2-english"),
            Pipeline::TextClassification
        );
    }

    #[tokio::test]
    async fn given_no_token_when_posted_then_hf_answers_401() {
        let (status, body) = post_to("facebook/bart-large-cnn", None, json!({"inputs": "x"})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "Invalid username or password.");
    }

    #[tokio::test]
    async fn given_no_inputs_when_posted_then_the_error_is_a_list() {
        let (status, body) = post_to("gpt2", Some("hf_x"), json!({"parameters": {}})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"][0].as_str().unwrap().contains("inputs"));
    }

    #[tokio::test]
    async fn given_each_pipeline_when_posted_then_the_answer_has_its_shape() {
        let (_, summary) = post_to("facebook/bart-large-cnn", Some("hf_x"), json!({"inputs": "One. Two."})).await;
        assert_eq!(summary, json!([{"summary_text": "One."}]));
        let (_, vector) =
            post_to("sentence-transformers/all-MiniLM-L6-v2", Some("hf_x"), json!({"inputs": "hi"})).await;
        assert_eq!(vector.as_array().unwrap().len(), EMBED_DIMS);
        let (_, labels) = post_to("distilbert/sst2", Some("hf_x"), json!({"inputs": "This is terrible"})).await;
        assert_eq!(labels[0][0]["label"], "NEGATIVE");
    }

    #[tokio::test]
    async fn given_an_overloaded_fault_when_posted_then_the_model_is_loading() {
        let (status, body) = post_to("org/fault-overloaded", Some("hf_x"), json!({"inputs": "hi"})).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "Model org/fault-overloaded is currently loading");
        assert_eq!(body["estimated_time"], 1.0);
    }
}
