//! Anthropic's Messages API (Claude): `generate`, `summarize`, `classify` and `extract`
//!. Anthropic has no embeddings API, so `embed` is refused at validation.
//!
//! Wire-format quirks:
//! - `POST {base}/v1/messages` with `x-api-key` (not a bearer token) and a required
//!   `anthropic-version` header.
//! - `max_tokens` is required: steps that set none get [`DEFAULT_MAX_TOKENS`].
//! - The system prompt is a top-level `system` field; there is no system role in `messages`.
//! - The answer is a list of content blocks; only `text` blocks are read (joined in order).
//! - `stop_reason` is `end_turn`, `max_tokens`, `stop_sequence`, or `refusal` on a 200 when
//!   Claude's safety classifiers step in: the latter is `ContentFiltered`.
//! - Errors are `{"type": "error", "error": {"type", "message"}}`. Overload is its own
//!   status, 529 `overloaded_error`. Running out of prepaid credit is *not* a 402 but a 400
//!   `invalid_request_error` whose message says the credit balance is too low (or a usage
//!   limit was reached): that is quota exhaustion, never retried.

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue, StatusCode};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::http_call::{self, short};
use super::{Completion, Credential, ModelInfo, Provider, ProviderError, TaskRequest, chat, estimate_tokens};
use crate::domain::{FinishReason, Task, Usage};
use crate::providers::not_a_model_task;

/// The prefix in `"model": "anthropic:<model-id>"`.
pub const PROVIDER: &str = "anthropic";

/// Anthropic's API; the mock provider server stands in through the base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The API version every request pins (the one Anthropic's documentation uses).
pub const API_VERSION: &str = "2023-06-01";

/// The output cap sent when a request has no `max_tokens` (the API requires one; requests
/// made for a step always carry the step's or the default).
pub use crate::domain::definition::DEFAULT_MAX_TOKENS;

const TASKS: [Task; 4] = chat::TASKS;

/// The curated models listed by `GET /v1/models`; any other id is accepted too.
const MODELS: [(&str, &str); 3] = [
    ("claude-opus-4-5", "Anthropic's most capable Claude model, for hard reasoning and writing."),
    ("claude-sonnet-4-5", "Balanced Claude model: strong at writing, extraction and code."),
    ("claude-haiku-4-5", "Fastest, cheapest Claude model; good for classification and summaries."),
];

/// Claude through the Messages API.
#[derive(Clone)]
pub struct AnthropicProvider {
    client: reqwest::Client,
    api_key: Credential,
    base_url: String,
}

impl std::fmt::Debug for AnthropicProvider {
    // By hand: the key never reaches a log line, not even redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    /// A provider calling `base_url` (default [`DEFAULT_BASE_URL`]) with `api_key`.
    pub fn new(client: reqwest::Client, api_key: impl Into<Credential>, base_url: Option<String>) -> Self {
        let api_key = api_key.into();
        let base_url = base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()).trim_end_matches('/').to_owned();
        Self { client, api_key, base_url }
    }

    async fn post_messages(&self) -> Result<reqwest::RequestBuilder, ProviderError> {
        let mut key = HeaderValue::from_str(self.api_key.get().await?.expose_secret())
            .map_err(|_| ProviderError::Auth("the configured API key cannot be sent in an HTTP header".to_owned()))?;
        key.set_sensitive(true);
        Ok(self
            .client
            .post(format!("{}/v1/messages", self.base_url))
            .header("x-api-key", key)
            .header("anthropic-version", API_VERSION))
    }
}

#[derive(Debug, Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    messages: [Message<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Debug, Deserialize)]
struct MessagesResponse {
    content: Vec<ContentBlock>,
    stop_reason: Option<String>,
    usage: Option<MessagesUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    Text {
        text: String,
    },
    /// Thinking, tool use and whatever else the API adds: not part of the answer text.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct MessagesUsage {
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorDetail {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}

fn messages_request<'a>(model: &'a str, request: &TaskRequest, prompt: &'a chat::ChatPrompt) -> MessagesRequest<'a> {
    MessagesRequest {
        model,
        max_tokens: request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        system: prompt.system.as_deref(),
        messages: [Message { role: "user", content: &prompt.user }],
        temperature: request.temperature,
    }
}

/// The normalized completion for a Messages answer.
fn completion(
    request: &TaskRequest,
    prompt: &chat::ChatPrompt,
    response: MessagesResponse,
) -> Result<Completion, ProviderError> {
    let finish_reason = match response.stop_reason.as_deref() {
        Some("end_turn" | "stop_sequence") => FinishReason::Stop,
        Some("max_tokens") => FinishReason::Length,
        Some("refusal") => {
            return Err(ProviderError::ContentFiltered("Claude's safety classifiers stopped the answer".to_owned()));
        }
        _ => FinishReason::Other,
    };
    let text: String = response
        .content
        .into_iter()
        .filter_map(|block| match block {
            ContentBlock::Text { text } => Some(text),
            ContentBlock::Other => None,
        })
        .collect();
    let usage = match response.usage {
        Some(usage) => Usage { input_tokens: usage.input_tokens, output_tokens: usage.output_tokens, estimated: false },
        None => {
            let sent = [prompt.system.as_deref().unwrap_or_default(), &prompt.user].concat();
            Usage { input_tokens: estimate_tokens(&sent), output_tokens: estimate_tokens(&text), estimated: true }
        }
    };
    Ok(Completion { output: chat::output(request, &text, finish_reason)?, usage })
}

/// Maps an error answer onto the taxonomy; see the module doc for the quirks.
fn error_from(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let detail = serde_json::from_slice::<ErrorBody>(body).map(|b| b.error).unwrap_or_default();
    match detail.kind.as_str() {
        "rate_limit_error" => ProviderError::RateLimited { retry_after: http_call::retry_after(headers) },
        "overloaded_error" => ProviderError::Overloaded { retry_after: http_call::retry_after(headers) },
        "invalid_request_error" if is_out_of_credit(&detail.message) => {
            ProviderError::QuotaExhausted(short(&detail.message))
        }
        "invalid_request_error" | "not_found_error" | "request_too_large" => {
            ProviderError::InvalidRequest(short(&detail.message))
        }
        "api_error" => ProviderError::Transient(short(&detail.message)),
        "timeout_error" => ProviderError::Timeout,
        // authentication_error, permission_error, billing_error and anything new: the status
        // decides, and an auth failure never repeats the provider's words.
        _ => http_call::error_for_status(status, headers, &detail.message),
    }
}

/// Whether an `invalid_request_error` is really the account running dry.
fn is_out_of_credit(message: &str) -> bool {
    let message = message.to_lowercase();
    ["credit balance", "spend limit", "usage limit"].iter().any(|needle| message.contains(needle))
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn models(&self) -> Vec<ModelInfo> {
        MODELS.iter().map(|(id, description)| ModelInfo::new(PROVIDER, id, &TASKS, description)).collect()
    }

    /// Any Claude model id (new ones and dated snapshots appear often); only the task is
    /// checked.
    fn supports(&self, _model: &str, task: Task) -> Result<(), String> {
        match task {
            Task::Embed => Err("Anthropic has no embeddings API; use an embedding model such as \
                 `openai:text-embedding-3-small` or `gemini:gemini-embedding-001`"
                .to_owned()),
            task @ (Task::Approval | Task::Workflow) => Err(not_a_model_task(task)),
            _ => Ok(()),
        }
    }

    async fn call(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        self.supports(model, request.task).map_err(ProviderError::InvalidRequest)?;
        let prompt = chat::prompt(request)?;
        let body = messages_request(model, request, &prompt);
        let reply = http_call::send(self.post_messages().await?.json(&body)).await?;
        if !reply.status.is_success() {
            return Err(error_from(reply.status, &reply.headers, &reply.body));
        }
        completion(request, &prompt, http_call::parse(&reply.body)?)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::TaskOutput;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/src/providers/fixtures/anthropic/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    fn request(task: Task) -> TaskRequest {
        TaskRequest {
            task,
            prompt: (task == Task::Generate).then(|| "Say hello".to_owned()),
            input: (task != Task::Generate).then(|| "The support team was wonderful.".to_owned()),
            labels: vec!["POSITIVE".into(), "NEGATIVE".into()],
            schema: None,
            max_tokens: None,
            temperature: None,
        }
    }

    fn answer(request: &TaskRequest, fixture_name: &str) -> Result<Completion, ProviderError> {
        let prompt = chat::prompt(request).unwrap();
        completion(request, &prompt, http_call::parse(&fixture(fixture_name)).unwrap())
    }

    fn body(request: &TaskRequest) -> Value {
        let prompt = chat::prompt(request).unwrap();
        serde_json::to_value(messages_request("claude-haiku-4-5", request, &prompt)).unwrap()
    }

    fn error(status: u16, fixture_name: &str) -> ProviderError {
        error_from(StatusCode::from_u16(status).unwrap(), &HeaderMap::new(), &fixture(fixture_name))
    }

    #[test]
    fn given_the_reference_message_when_read_then_text_finish_and_usage_normalize() {
        let done = answer(&request(Task::Generate), "message.json").unwrap();
        assert_eq!(
            done.output,
            TaskOutput::Generate { text: "Hi! My name is Claude.".into(), finish_reason: FinishReason::Stop }
        );
        assert_eq!(done.usage, Usage { input_tokens: 2095, output_tokens: 503, estimated: false });
    }

    #[test]
    fn given_several_text_blocks_cut_at_max_tokens_when_read_then_they_join_and_finish_is_length() {
        let done = answer(&request(Task::Generate), "message_max_tokens.json").unwrap();
        assert_eq!(
            done.output,
            TaskOutput::Generate {
                text: "According to the text, the grass is green".into(),
                finish_reason: FinishReason::Length
            }
        );
    }

    #[test]
    fn given_a_refusal_stop_reason_when_read_then_it_is_content_filtered() {
        assert_eq!(
            answer(&request(Task::Summarize), "message_refusal.json").unwrap_err().kind().as_str(),
            "content_filtered"
        );
    }

    #[test]
    fn given_thinking_and_text_blocks_when_read_then_only_text_counts() {
        let request = request(Task::Classify);
        let prompt = chat::prompt(&request).unwrap();
        let reply = json!({
            "content": [
                {"type": "thinking", "thinking": "The review is glowing.", "signature": "x"},
                {"type": "text", "text": "{\"label\": \"POSITIVE\", \"confidence\": 0.9}"}
            ],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 30, "output_tokens": 12}
        });
        let done = completion(&request, &prompt, serde_json::from_value(reply).unwrap()).unwrap();
        assert!(matches!(done.output, TaskOutput::Classify { ref label, .. } if label == "POSITIVE"));
    }

    #[test]
    fn given_a_request_without_max_tokens_when_serialized_then_the_default_is_sent() {
        let generate = body(&request(Task::Generate));
        assert_eq!(
            generate,
            json!({
                "model": "claude-haiku-4-5",
                "max_tokens": 1024,
                "messages": [{"role": "user", "content": "Say hello"}]
            })
        );
        let classify = body(&TaskRequest { max_tokens: Some(50), temperature: Some(0.0), ..request(Task::Classify) });
        assert_eq!(classify["max_tokens"], 50);
        assert_eq!(classify["temperature"], 0.0);
        assert!(classify["system"].as_str().unwrap().starts_with("Classify the user's text"));
        assert_eq!(classify["messages"], json!([{"role": "user", "content": "The support team was wonderful."}]));
    }

    #[test]
    fn given_each_error_fixture_when_mapped_then_it_lands_on_its_kind() {
        assert_eq!(error(429, "error_rate_limit.json").kind().as_str(), "rate_limited");
        assert_eq!(error(529, "error_overloaded.json").kind().as_str(), "overloaded");
        assert_eq!(error(400, "error_credit_balance.json").kind().as_str(), "quota_exhausted");
        assert_eq!(error(400, "error_invalid_request.json").kind().as_str(), "invalid_request");
        assert_eq!(error(500, "error_api.json").kind().as_str(), "transient");
        let auth = error(401, "error_authentication.json");
        assert_eq!(auth.kind().as_str(), "auth");
        assert!(!auth.to_string().contains("x-api-key"), "the provider's words stay out: {auth}");
    }

    #[test]
    fn given_a_rate_limit_with_retry_after_when_mapped_then_the_delay_is_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("12"));
        let err = error_from(StatusCode::TOO_MANY_REQUESTS, &headers, &fixture("error_rate_limit.json"));
        assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(12)));
    }

    #[test]
    fn given_any_model_when_checked_then_every_chat_task_but_embed_is_supported() {
        let provider = AnthropicProvider::new(http_call::client().unwrap(), "sk-ant-test", None);
        assert_eq!(provider.supports("claude-3-7-sonnet-20250219", Task::Extract), Ok(()));
        assert!(provider.supports("claude-haiku-4-5", Task::Embed).unwrap_err().contains("no embeddings"));
        assert!(!format!("{provider:?}").contains("sk-ant"));
    }
}
