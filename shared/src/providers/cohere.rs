//! Cohere, through its v2 API: `POST /v2/chat` for every chat task and `POST /v2/embed` for
//! `embed`, with a Bearer key.
//!
//! Wire-format quirks:
//! - The system prompt is a `system` message at the head of `messages` (v1's `preamble` is gone).
//! - `classify` and `extract` send `response_format: {"type": "json_object", "json_schema": …}`,
//!   which Cohere enforces; the system prompt asks for the same JSON either way.
//! - The answer is `message.content[]`, a list of typed blocks; only `text` blocks are the
//!   answer (`thinking` blocks are the model's reasoning).
//! - Usage comes twice: `usage.billed_units` (what Cohere charges, which we price) and
//!   `usage.tokens` (everything the model saw, prompt template included); embed reports
//!   `meta.billed_units.input_tokens`. Counts are JSON numbers that may carry a fraction.
//! - `summarize` is a chat prompt: the dedicated summarize endpoint is deprecated.
//! - Errors are `{"id", "message"}` with meaningful statuses beyond the usual: 402 (billing
//!   limit), 498 (a deny-listed token in the request or answer), 499 (request cancelled). A
//!   trial key's monthly allowance runs out with a 429 that says "/ month": that is a quota, not
//!   a rate limit, and retrying within the hour cannot help.

use std::fmt;

use async_trait::async_trait;
use http::{HeaderMap, StatusCode};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chat::{self, ChatPrompt};
use super::http_call::{self, HttpReply};
use super::{Completion, Credential, ModelInfo, Provider, ProviderError, TaskRequest, estimate_tokens};
use crate::domain::{FinishReason, Task, TaskOutput, Usage};
use crate::providers::not_a_model_task;

/// The prefix in `cohere:<model>`.
pub const PROVIDER: &str = "cohere";

/// Cohere's API host; `/v2/…` paths are appended.
pub const DEFAULT_BASE_URL: &str = "https://api.cohere.com";

/// What embed asks for: vectors meant to be stored and searched.
const EMBED_INPUT_TYPE: &str = "search_document";

const CHAT_TASKS: &[Task] = &chat::TASKS;

/// Well-known current models, for `GET /v1/models`; any other model id is accepted too.
const MODELS: [(&str, &[Task], &str); 4] = [
    ("command-a-03-2025", CHAT_TASKS, "Cohere's flagship Command A: 256k context, strong at structured output."),
    ("command-r-08-2024", CHAT_TASKS, "Command R: fast, inexpensive chat and retrieval-style tasks."),
    ("command-r7b-12-2024", CHAT_TASKS, "Command R7B: the small, cheapest Command model."),
    ("embed-v4.0", &[Task::Embed], "Embed v4: multilingual text embeddings (1536 dimensions by default)."),
];

/// The Cohere adapter. Holds the shared HTTP client and the API key.
pub struct CohereProvider {
    client: reqwest::Client,
    api_key: Credential,
    base_url: String,
}

impl fmt::Debug for CohereProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out on purpose.
        f.debug_struct("CohereProvider").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl CohereProvider {
    /// An adapter calling `base_url` (default [`DEFAULT_BASE_URL`]) with `api_key`.
    pub fn new(client: reqwest::Client, api_key: impl Into<Credential>, base_url: Option<String>) -> Self {
        let api_key = api_key.into();
        let base_url = base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()).trim_end_matches('/').to_owned();
        Self { client, api_key, base_url }
    }

    async fn chat(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        let prompt = chat::prompt(request)?;
        let body = chat_request(model, &prompt, request);
        let reply = self.post("/v2/chat", &body).await?;
        let response: ChatResponse = http_call::parse(&reply.body)?;
        let finish_reason = finish_reason(&response.finish_reason)?;
        let text = response.message.text();
        let output = chat::output(request, &text, finish_reason)?;
        let usage = response.usage.and_then(ChatUsage::counted).unwrap_or_else(|| Usage {
            input_tokens: estimate_tokens(prompt.system.as_deref().unwrap_or_default()) + estimate_tokens(&prompt.user),
            output_tokens: estimate_tokens(&text),
            estimated: true,
        });
        Ok(Completion { output, usage })
    }

    async fn embed(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        let body =
            EmbedRequest { model, texts: [request.text()], input_type: EMBED_INPUT_TYPE, embedding_types: ["float"] };
        let reply = self.post("/v2/embed", &body).await?;
        let response: EmbedResponse = http_call::parse(&reply.body)?;
        let Some(vector) = response.embeddings.float.into_iter().next() else {
            return Err(ProviderError::MalformedResponse("`embeddings.float` is empty".to_owned()));
        };
        let billed = response.meta.and_then(|m| m.billed_units).and_then(|b| b.input_tokens);
        let usage = match billed {
            Some(tokens) => Usage { input_tokens: tokens as u64, output_tokens: 0, estimated: false },
            None => Usage { input_tokens: estimate_tokens(request.text()), output_tokens: 0, estimated: true },
        };
        Ok(Completion { output: TaskOutput::Embed { dims: vector.len(), vector }, usage })
    }

    /// POSTs `body` to `path`; any non-2xx answer becomes the mapped error.
    async fn post<T: Serialize>(&self, path: &str, body: &T) -> Result<HttpReply, ProviderError> {
        let request = self
            .client
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(self.api_key.get().await?.expose_secret())
            .json(body);
        let reply = http_call::send(request).await?;
        if reply.status.is_success() { Ok(reply) } else { Err(error_from(reply.status, &reply.headers, &reply.body)) }
    }
}

#[async_trait]
impl Provider for CohereProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn models(&self) -> Vec<ModelInfo> {
        MODELS.iter().map(|(id, tasks, description)| ModelInfo::new(PROVIDER, id, tasks, description)).collect()
    }

    /// Any model id, since Cohere adds models often; but Cohere splits embedding models
    /// (`embed-…`) from chat models, and each kind only does its own tasks.
    fn supports(&self, model: &str, task: Task) -> Result<(), String> {
        let embedding_model = is_embedding_model(model);
        match task {
            Task::Embed if embedding_model => Ok(()),
            Task::Embed => Err(format!(
                "`{PROVIDER}:{model}` is a chat model; Cohere embeds only with its `embed-…` models (e.g. embed-v4.0)"
            )),
            task @ (Task::Approval | Task::Workflow) => Err(not_a_model_task(task)),
            _ if embedding_model => Err(format!(
                "`{PROVIDER}:{model}` is an embedding model; it can only embed (use a `command-…` model to {task})"
            )),
            _ => Ok(()),
        }
    }

    async fn call(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        self.supports(model, request.task).map_err(ProviderError::InvalidRequest)?;
        match request.task {
            Task::Embed => self.embed(model, request).await,
            _ => self.chat(model, request).await,
        }
    }
}

fn is_embedding_model(model: &str) -> bool {
    model.contains("embed")
}

// ---- wire format ----

#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Debug, Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: &'a Value,
}

fn chat_request<'a>(model: &'a str, prompt: &'a ChatPrompt, request: &TaskRequest) -> ChatRequest<'a> {
    let system = prompt.system.as_deref().map(|content| Message { role: "system", content });
    let user = Message { role: "user", content: &prompt.user };
    ChatRequest {
        model,
        messages: system.into_iter().chain([user]).collect(),
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        response_format: prompt
            .json_schema
            .as_ref()
            .map(|json_schema| ResponseFormat { kind: "json_object", json_schema }),
    }
}

#[derive(Debug, Serialize)]
struct EmbedRequest<'a> {
    model: &'a str,
    texts: [&'a str; 1],
    input_type: &'static str,
    embedding_types: [&'static str; 1],
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    finish_reason: String,
    message: AssistantMessage,
    #[serde(default)]
    usage: Option<ChatUsage>,
}

#[derive(Debug, Deserialize)]
struct AssistantMessage {
    #[serde(default)]
    content: Vec<ContentBlock>,
}

impl AssistantMessage {
    /// The answer: every `text` block, in order.
    fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|block| match block {
                ContentBlock::Text { text } => Some(text.as_str()),
                ContentBlock::Other => None,
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    Text {
        text: String,
    },
    /// `thinking` and whatever Cohere adds next: not part of the answer.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct ChatUsage {
    #[serde(default)]
    billed_units: Option<TokenCounts>,
    #[serde(default)]
    tokens: Option<TokenCounts>,
}

impl ChatUsage {
    /// Billed units when present (what the call costs), else the raw token counts.
    fn counted(self) -> Option<Usage> {
        let counts = self.billed_units.filter(TokenCounts::any).or(self.tokens.filter(TokenCounts::any))?;
        Some(Usage {
            input_tokens: counts.input_tokens.unwrap_or_default() as u64,
            output_tokens: counts.output_tokens.unwrap_or_default() as u64,
            estimated: false,
        })
    }
}

#[derive(Debug, Deserialize)]
struct TokenCounts {
    #[serde(default)]
    input_tokens: Option<f64>,
    #[serde(default)]
    output_tokens: Option<f64>,
}

impl TokenCounts {
    fn any(&self) -> bool {
        self.input_tokens.is_some() || self.output_tokens.is_some()
    }
}

#[derive(Debug, Deserialize)]
struct EmbedResponse {
    embeddings: Embeddings,
    #[serde(default)]
    meta: Option<EmbedMeta>,
}

#[derive(Debug, Deserialize)]
struct Embeddings {
    float: Vec<Vec<f32>>,
}

#[derive(Debug, Deserialize)]
struct EmbedMeta {
    #[serde(default)]
    billed_units: Option<BilledInput>,
}

#[derive(Debug, Deserialize)]
struct BilledInput {
    #[serde(default)]
    input_tokens: Option<f64>,
}

/// Cohere's `finish_reason` in our terms; a toxic or failed generation is an error, not an
/// answer.
fn finish_reason(reason: &str) -> Result<FinishReason, ProviderError> {
    match reason {
        "COMPLETE" | "STOP_SEQUENCE" => Ok(FinishReason::Stop),
        "MAX_TOKENS" | "ERROR_LIMIT" => Ok(FinishReason::Length),
        "ERROR_TOXIC" => Err(ProviderError::ContentFiltered("Cohere judged the generation toxic".to_owned())),
        "ERROR" => Err(ProviderError::Transient("Cohere reported an error while generating".to_owned())),
        _ => Ok(FinishReason::Other),
    }
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

/// Cohere's error answer as a [`ProviderError`].
fn error_from(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let message = serde_json::from_slice::<ErrorBody>(body).unwrap_or_default().message;
    let lower = message.to_lowercase();
    match status.as_u16() {
        // Never Cohere's words: an auth message may quote the key.
        401 | 403 => ProviderError::Auth(format!("Cohere refused the API key (HTTP {status})")),
        402 => ProviderError::QuotaExhausted(http_call::short(&message)),
        // The trial key's monthly allowance: it comes back next month, not in a minute.
        429 if lower.contains("/ month") || lower.contains("per month") => {
            ProviderError::QuotaExhausted(http_call::short(&message))
        }
        429 => ProviderError::RateLimited { retry_after: http_call::retry_after(headers) },
        400 | 404 | 422 => ProviderError::InvalidRequest(http_call::short(&message)),
        498 => ProviderError::ContentFiltered(http_call::short(&message)),
        499 => ProviderError::Transient("Cohere cancelled the request".to_owned()),
        _ => http_call::error_for_status(status, headers, &message),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/src/providers/fixtures/cohere/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    fn request(task: Task) -> TaskRequest {
        TaskRequest {
            task,
            prompt: (task == Task::Generate).then(|| "Tell me about LLMs".to_owned()),
            input: (task != Task::Generate).then(|| "The support team was wonderful.".to_owned()),
            labels: vec!["POSITIVE".into(), "NEGATIVE".into()],
            schema: Some(json!({"type": "object", "properties": {"name": {"type": "string"}}})),
            max_tokens: Some(100),
            temperature: Some(0.2),
        }
    }

    fn provider() -> CohereProvider {
        CohereProvider::new(http_call::client().unwrap(), "co-secret-key", None)
    }

    #[test]
    fn given_the_documented_chat_answer_when_parsed_then_text_finish_and_billed_usage_come_out() {
        let response: ChatResponse = http_call::parse(&fixture("chat.json")).unwrap();
        let reason = finish_reason(&response.finish_reason).unwrap();
        let text = response.message.text();
        let output = chat::output(&request(Task::Generate), &text, reason).unwrap();
        let TaskOutput::Generate { text, finish_reason } = output else { panic!("not generate") };
        assert!(text.starts_with("LLMs stand for Large Language Models"), "{text}");
        assert_eq!(finish_reason, FinishReason::Stop);
        let usage = response.usage.and_then(ChatUsage::counted).unwrap();
        assert_eq!(usage, Usage { input_tokens: 5, output_tokens: 418, estimated: false });
    }

    #[test]
    fn given_usage_without_billed_units_when_counted_then_raw_tokens_are_used() {
        let usage: ChatUsage =
            serde_json::from_value(json!({"tokens": {"input_tokens": 71, "output_tokens": 9}})).unwrap();
        assert_eq!(usage.counted(), Some(Usage { input_tokens: 71, output_tokens: 9, estimated: false }));
        let empty: ChatUsage = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty.counted(), None);
    }

    #[test]
    fn given_thinking_and_text_blocks_when_read_then_only_text_is_the_answer() {
        let message: AssistantMessage = serde_json::from_value(json!({
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "{\"label\": "},
                        {"type": "text", "text": "\"NEGATIVE\"}"}]
        }))
        .unwrap();
        assert_eq!(message.text(), "{\"label\": \"NEGATIVE\"}");
    }

    #[test]
    fn given_the_documented_embed_answer_when_parsed_then_the_first_vector_and_billed_tokens_come_out() {
        let response: EmbedResponse = http_call::parse(&fixture("embed.json")).unwrap();
        assert_eq!(response.embeddings.float.len(), 2);
        assert_eq!(response.embeddings.float[0].len(), 1024);
        assert!((response.embeddings.float[0][0] - 0.016_296_387).abs() < 1e-9);
        let billed = response.meta.and_then(|m| m.billed_units).and_then(|b| b.input_tokens);
        assert_eq!(billed, Some(2.0));
    }

    #[test]
    fn given_finish_reasons_when_mapped_then_toxic_and_error_fail() {
        assert_eq!(finish_reason("MAX_TOKENS").unwrap(), FinishReason::Length);
        assert_eq!(finish_reason("TOOL_CALL").unwrap(), FinishReason::Other);
        assert_eq!(finish_reason("ERROR_TOXIC").unwrap_err().kind().as_str(), "content_filtered");
        assert_eq!(finish_reason("ERROR").unwrap_err().kind().as_str(), "transient");
    }

    #[test]
    fn given_each_documented_error_when_mapped_then_it_lands_on_its_kind() {
        let none = HeaderMap::new();
        let cases = [
            (400, "error_400.json", "invalid_request"),
            (401, "error_401.json", "auth"),
            (402, "error_402.json", "quota_exhausted"),
            (429, "error_429.json", "rate_limited"),
            (429, "error_429_trial_month.json", "quota_exhausted"),
            (499, "error_499.json", "transient"),
        ];
        for (status, name, kind) in cases {
            let err = error_from(StatusCode::from_u16(status).unwrap(), &none, &fixture(name));
            assert_eq!(err.kind().as_str(), kind, "{name}: {err}");
        }
        let blocked = error_from(StatusCode::from_u16(498).unwrap(), &none, br#"{"message": "blocked input"}"#);
        assert_eq!(blocked.kind().as_str(), "content_filtered");
        assert_eq!(error_from(StatusCode::SERVICE_UNAVAILABLE, &none, b"{}").kind().as_str(), "overloaded");
        assert_eq!(error_from(StatusCode::INTERNAL_SERVER_ERROR, &none, b"not json").kind().as_str(), "transient");
    }

    #[test]
    fn given_a_rate_limit_with_retry_after_when_mapped_then_the_delay_is_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("3"));
        let err = error_from(StatusCode::TOO_MANY_REQUESTS, &headers, &fixture("error_429.json"));
        assert_eq!(err, ProviderError::RateLimited { retry_after: Some(Duration::from_secs(3)) });
    }

    #[test]
    fn given_an_auth_error_quoting_the_key_when_mapped_then_the_message_is_not_echoed() {
        let body = br#"{"message": "invalid api token co-secret-key"}"#;
        let err = error_from(StatusCode::UNAUTHORIZED, &HeaderMap::new(), body);
        assert!(!err.to_string().contains("co-secret"), "{err}");
    }

    #[test]
    fn given_classify_when_serialized_then_it_is_a_v2_chat_body_with_a_json_schema() {
        let request = request(Task::Classify);
        let prompt = chat::prompt(&request).unwrap();
        let body = serde_json::to_value(chat_request("command-a-03-2025", &prompt, &request)).unwrap();
        assert_eq!(body["model"], "command-a-03-2025");
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][1], json!({"role": "user", "content": "The support team was wonderful."}));
        assert_eq!(body["max_tokens"], 100);
        assert_eq!(body["response_format"]["type"], "json_object");
        assert_eq!(
            body["response_format"]["json_schema"]["properties"]["label"]["enum"],
            json!(["POSITIVE", "NEGATIVE"])
        );
    }

    #[test]
    fn given_generate_when_serialized_then_there_is_no_system_message_and_no_format() {
        let request = TaskRequest { temperature: None, max_tokens: None, ..request(Task::Generate) };
        let prompt = chat::prompt(&request).unwrap();
        let body = serde_json::to_value(chat_request("command-r-08-2024", &prompt, &request)).unwrap();
        assert_eq!(
            body,
            json!({"model": "command-r-08-2024", "messages": [{"role": "user", "content": "Tell me about LLMs"}]})
        );
    }

    #[test]
    fn given_embed_when_serialized_then_it_asks_for_float_document_embeddings() {
        let body = EmbedRequest {
            model: "embed-v4.0",
            texts: ["hello"],
            input_type: EMBED_INPUT_TYPE,
            embedding_types: ["float"],
        };
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            json!({"model": "embed-v4.0", "texts": ["hello"], "input_type": "search_document", "embedding_types": ["float"]})
        );
    }

    #[test]
    fn given_model_kinds_when_checked_then_embed_and_chat_models_keep_to_their_tasks() {
        let cohere = provider();
        assert_eq!(cohere.supports("command-a-new-2030", Task::Extract), Ok(()));
        assert_eq!(cohere.supports("embed-english-v3.0", Task::Embed), Ok(()));
        assert!(cohere.supports("command-a-03-2025", Task::Embed).unwrap_err().contains("embed-"));
        assert!(cohere.supports("embed-v4.0", Task::Summarize).is_err());
        assert!(cohere.supports("command-a-03-2025", Task::Approval).is_err());
        assert!(!format!("{cohere:?}").contains("co-secret"));
    }
}
