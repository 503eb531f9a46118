//! OpenAI's Chat Completions and Embeddings APIs, and every server that speaks them: Azure
//! OpenAI, Ollama, vLLM, Groq, Together, OpenRouter, AI/ML API.
//!
//! Wire-format quirks:
//! - One request shape for four tasks: `POST {base}/chat/completions` with a system and a user
//!   message from [`chat::prompt`]. `classify` and `extract` also send
//!   `response_format: {"type": "json_schema", …, "strict": false}` (not strict: strict mode
//!   rejects schemas without `additionalProperties: false` everywhere, which step schemas
//!   rarely have). Some compatible servers reject `json_schema`; for them
//!   [`OpenAiProvider::with_structured_output`]`(false)` leaves it out and the system prompt
//!   alone asks for JSON.
//! - The length cap goes out as `max_tokens`, which every compatible server knows, not the
//!   newer `max_completion_tokens`. OpenAI's reasoning models (o-series, gpt-5) accept only
//!   the newer field, so they are not listed in [`models`](OpenAiProvider::models).
//! - A model may decline on a 200: `message.refusal` is set (structured outputs) or
//!   `finish_reason` is `content_filter` (Azure). Both are `ContentFiltered`.
//! - `embed` is `POST {base}/embeddings`; its usage has `prompt_tokens` only.
//! - Errors are `{"error": {"message", "type", "param", "code"}}`. A 429 is a rate limit
//!   *unless* its code is `insufficient_quota`: the account is out of credit, and retrying
//!   only burns attempts. Azure's content filter is a 400 with code `content_filter`; OpenAI's
//!   is `content_policy_violation`. Azure sends `"type": null`; some servers (older vLLM) send
//!   the error object unwrapped.
//! - Auth is `Authorization: Bearer <key>`, or `api-key: <key>` on Azure
//!   ([`AuthHeader::Header`]).

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http_call::{self, short};
use super::{Completion, Credential, ModelInfo, Provider, ProviderError, TaskRequest, chat, estimate_tokens};
use crate::domain::{FinishReason, Task, TaskOutput, Usage};
use crate::providers::not_a_model_task;

/// The prefix in `"model": "openai:<model-id>"`.
pub const PROVIDER: &str = "openai";

/// OpenAI's own API; compatible servers are reached by passing their base URL instead.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The tasks a chat model does through this adapter.
const CHAT_TASKS: [Task; 4] = chat::TASKS;

/// The curated models listed by `GET /v1/models`; any other id is accepted too.
const MODELS: [(&str, &[Task], &str); 6] = [
    ("gpt-4o-mini", &CHAT_TASKS, "Small, fast and cheap GPT-4o; a good default for every chat task."),
    ("gpt-4o", &CHAT_TASKS, "OpenAI's multimodal flagship of the GPT-4o generation."),
    ("gpt-4.1-mini", &CHAT_TASKS, "GPT-4.1 small: long context, strong instruction following."),
    ("gpt-4.1", &CHAT_TASKS, "GPT-4.1: long context, strong at following formats and schemas."),
    ("text-embedding-3-small", &[Task::Embed], "1536-dimension embeddings, cheap and fast."),
    ("text-embedding-3-large", &[Task::Embed], "3072-dimension embeddings, OpenAI's most accurate."),
];

/// How the API key travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthHeader {
    /// `Authorization: Bearer <key>`: OpenAI and most compatible servers.
    Bearer,
    /// The key as the whole value of one header, e.g. `api-key` on Azure OpenAI.
    Header(HeaderName),
}

/// An OpenAI-compatible API at one base URL.
#[derive(Clone)]
pub struct OpenAiProvider {
    client: reqwest::Client,
    api_key: Credential,
    base_url: String,
    auth: AuthHeader,
    structured_output: bool,
}

impl std::fmt::Debug for OpenAiProvider {
    // By hand: the key never reaches a log line, not even redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("base_url", &self.base_url)
            .field("auth", &self.auth)
            .field("structured_output", &self.structured_output)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// A provider calling `base_url` (default [`DEFAULT_BASE_URL`]) with `api_key` as a bearer
    /// token and structured output on.
    pub fn new(client: reqwest::Client, api_key: impl Into<Credential>, base_url: Option<String>) -> Self {
        let api_key = api_key.into();
        let base_url = base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()).trim_end_matches('/').to_owned();
        Self { client, api_key, base_url, auth: AuthHeader::Bearer, structured_output: true }
    }

    /// Sends the key in `auth` instead of as a bearer token (Azure OpenAI: `api-key`).
    pub fn with_auth_header(mut self, auth: AuthHeader) -> Self {
        self.auth = auth;
        self
    }

    /// Whether `classify` and `extract` send their JSON Schema as `response_format`. Off for
    /// servers that reject `json_schema`; the system prompt still asks for the JSON.
    pub fn with_structured_output(mut self, enabled: bool) -> Self {
        self.structured_output = enabled;
        self
    }

    /// A POST to `path` under the base URL, with the key in its header.
    async fn post(&self, path: &str) -> Result<reqwest::RequestBuilder, ProviderError> {
        let request = self.client.post(format!("{}{path}", self.base_url));
        let key = self.api_key.get().await?.expose_secret();
        match &self.auth {
            AuthHeader::Bearer => Ok(request.bearer_auth(key)),
            AuthHeader::Header(name) => {
                let mut value = HeaderValue::from_str(key).map_err(|_| {
                    ProviderError::Auth("the configured API key cannot be sent in an HTTP header".to_owned())
                })?;
                value.set_sensitive(true);
                Ok(request.header(name, value))
            }
        }
    }

    async fn chat(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        let prompt = chat::prompt(request)?;
        let body = chat_request(model, request, &prompt, self.structured_output);
        let reply = http_call::send(self.post("/chat/completions").await?.json(&body)).await?;
        if !reply.status.is_success() {
            return Err(error_from(reply.status, &reply.headers, &reply.body));
        }
        chat_completion(request, &prompt, http_call::parse(&reply.body)?)
    }

    async fn embed(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        let body = EmbeddingRequest { model, input: request.text() };
        let reply = http_call::send(self.post("/embeddings").await?.json(&body)).await?;
        if !reply.status.is_success() {
            return Err(error_from(reply.status, &reply.headers, &reply.body));
        }
        embedding(request, http_call::parse(&reply.body)?)
    }
}

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
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseFormat<'a> {
    JsonSchema { json_schema: JsonSchema<'a> },
}

#[derive(Debug, Serialize)]
struct JsonSchema<'a> {
    name: &'static str,
    schema: &'a Value,
    strict: bool,
}

#[derive(Debug, Serialize)]
struct EmbeddingRequest<'a> {
    model: &'a str,
    input: &'a str,
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    usage: Option<ChatUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: ChoiceMessage,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatUsage {
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingData>,
    usage: Option<ChatUsage>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingData {
    embedding: Vec<f32>,
}

/// `{"error": {…}}`, or the bare object some compatible servers send.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ErrorBody {
    Wrapped {
        error: ErrorDetail,
    },
    /// `{"error": "model not found"}`, as some local servers answer.
    Text {
        error: String,
    },
    Bare(ErrorDetail),
}

#[derive(Debug, Default, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    /// A string on OpenAI, sometimes a number on compatible servers.
    #[serde(default)]
    code: Option<Value>,
}

fn chat_request<'a>(
    model: &'a str,
    request: &TaskRequest,
    prompt: &'a chat::ChatPrompt,
    structured_output: bool,
) -> ChatRequest<'a> {
    let system = prompt.system.as_deref().map(|content| Message { role: "system", content });
    let user = Message { role: "user", content: &prompt.user };
    let response_format =
        prompt.json_schema.as_ref().filter(|_| structured_output).map(|schema| ResponseFormat::JsonSchema {
            json_schema: JsonSchema { name: "answer", schema, strict: false },
        });
    ChatRequest {
        model,
        messages: system.into_iter().chain([user]).collect(),
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        response_format,
    }
}

/// The normalized completion for a chat answer.
fn chat_completion(
    request: &TaskRequest,
    prompt: &chat::ChatPrompt,
    response: ChatResponse,
) -> Result<Completion, ProviderError> {
    let Some(choice) = response.choices.into_iter().next() else {
        return Err(ProviderError::MalformedResponse("the answer has no choices".to_owned()));
    };
    if let Some(refusal) = choice.message.refusal.filter(|r| !r.is_empty()) {
        return Err(ProviderError::ContentFiltered(format!("the model refused: {}", short(&refusal))));
    }
    let finish_reason = match choice.finish_reason.as_deref() {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("content_filter") => {
            return Err(ProviderError::ContentFiltered("the provider's content filter stopped the answer".to_owned()));
        }
        _ => FinishReason::Other,
    };
    let text = choice.message.content.unwrap_or_default();
    let usage = match response.usage {
        Some(usage) => {
            Usage { input_tokens: usage.prompt_tokens, output_tokens: usage.completion_tokens, estimated: false }
        }
        None => {
            let sent = [prompt.system.as_deref().unwrap_or_default(), &prompt.user].concat();
            Usage { input_tokens: estimate_tokens(&sent), output_tokens: estimate_tokens(&text), estimated: true }
        }
    };
    Ok(Completion { output: chat::output(request, &text, finish_reason)?, usage })
}

/// The normalized completion for an embeddings answer: one input, one vector.
fn embedding(request: &TaskRequest, response: EmbeddingResponse) -> Result<Completion, ProviderError> {
    let Some(data) = response.data.into_iter().next() else {
        return Err(ProviderError::MalformedResponse("the answer has no embedding".to_owned()));
    };
    let usage = match response.usage {
        Some(usage) => Usage { input_tokens: usage.prompt_tokens, output_tokens: 0, estimated: false },
        None => Usage { input_tokens: estimate_tokens(request.text()), output_tokens: 0, estimated: true },
    };
    let dims = data.embedding.len();
    Ok(Completion { output: TaskOutput::Embed { vector: data.embedding, dims }, usage })
}

/// Maps an error answer onto the taxonomy; see the module doc for the quirks.
fn error_from(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let detail = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody::Wrapped { error } | ErrorBody::Bare(error)) => error,
        Ok(ErrorBody::Text { error }) => ErrorDetail { message: error, ..ErrorDetail::default() },
        Err(_) => ErrorDetail::default(),
    };
    let code = detail.code.as_ref().and_then(Value::as_str);
    if code == Some("insufficient_quota") || detail.kind.as_deref() == Some("insufficient_quota") {
        return ProviderError::QuotaExhausted(short(&detail.message));
    }
    if matches!(code, Some("content_policy_violation" | "content_filter")) {
        return ProviderError::ContentFiltered(short(&detail.message));
    }
    http_call::error_for_status(status, headers, &detail.message)
}

/// Whether `model` is an embedding model, going by the id every compatible server uses.
fn is_embedding_model(model: &str) -> bool {
    model.contains("embed")
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn models(&self) -> Vec<ModelInfo> {
        MODELS.iter().map(|(id, tasks, description)| ModelInfo::new(PROVIDER, id, tasks, description)).collect()
    }

    /// Any model id: OpenAI and compatible servers add models faster than we can list them.
    /// Only the task is checked: embeddings and chat are separate model families.
    fn supports(&self, model: &str, task: Task) -> Result<(), String> {
        match (task, is_embedding_model(model)) {
            (task @ (Task::Approval | Task::Workflow), _) => Err(not_a_model_task(task)),
            (Task::Embed, false) => Err(format!(
                "`{PROVIDER}:{model}` is a chat model; embed needs an embedding model such as \
                 `{PROVIDER}:text-embedding-3-small`"
            )),
            (Task::Embed, true) | (_, false) => Ok(()),
            (_, true) => Err(format!("`{PROVIDER}:{model}` is an embedding model; it cannot {task}")),
        }
    }

    async fn call(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        self.supports(model, request.task).map_err(ProviderError::InvalidRequest)?;
        if request.task == Task::Embed { self.embed(model, request).await } else { self.chat(model, request).await }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/src/providers/fixtures/openai/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    fn request(task: Task) -> TaskRequest {
        TaskRequest {
            task,
            prompt: (task == Task::Generate).then(|| "Say hello".to_owned()),
            input: (task != Task::Generate).then(|| "The support team was wonderful.".to_owned()),
            labels: vec!["POSITIVE".into(), "NEGATIVE".into()],
            schema: Some(json!({"type": "object", "properties": {"name": {"type": "string"}}})),
            max_tokens: Some(100),
            temperature: Some(0.5),
        }
    }

    fn answer(request: &TaskRequest, fixture_name: &str) -> Result<Completion, ProviderError> {
        let prompt = chat::prompt(request).unwrap();
        chat_completion(request, &prompt, http_call::parse(&fixture(fixture_name)).unwrap())
    }

    fn chat_json(task: Task, structured_output: bool) -> Value {
        let request = request(task);
        let prompt = chat::prompt(&request).unwrap();
        serde_json::to_value(chat_request("gpt-4o-mini", &request, &prompt, structured_output)).unwrap()
    }

    fn error(status: u16, fixture_name: &str) -> ProviderError {
        error_from(StatusCode::from_u16(status).unwrap(), &HeaderMap::new(), &fixture(fixture_name))
    }

    #[test]
    fn given_the_reference_chat_completion_when_read_then_text_finish_and_usage_normalize() {
        let done = answer(&request(Task::Generate), "chat_completion.json").unwrap();
        assert_eq!(
            done.output,
            TaskOutput::Generate {
                text: "Hello! How can I assist you today?".into(),
                finish_reason: FinishReason::Stop
            }
        );
        assert_eq!(done.usage, Usage { input_tokens: 19, output_tokens: 10, estimated: false });
    }

    #[test]
    fn given_a_refusal_on_a_200_when_read_then_it_is_content_filtered() {
        let err = answer(&request(Task::Extract), "chat_completion_refusal.json").unwrap_err();
        assert!(matches!(&err, ProviderError::ContentFiltered(m) if m.contains("cannot assist")), "{err:?}");
    }

    #[test]
    fn given_a_content_filter_finish_or_no_usage_when_read_then_each_is_handled() {
        let request = request(Task::Summarize);
        let prompt = chat::prompt(&request).unwrap();
        let filtered = json!({"choices": [{"message": {"content": ""}, "finish_reason": "content_filter"}]});
        let err = chat_completion(&request, &prompt, serde_json::from_value(filtered).unwrap()).unwrap_err();
        assert_eq!(err.kind().as_str(), "content_filtered");
        // Some compatible servers report no usage: estimated, and said so.
        let bare = json!({"choices": [{"message": {"content": "Short."}, "finish_reason": "stop"}]});
        let done = chat_completion(&request, &prompt, serde_json::from_value(bare).unwrap()).unwrap();
        assert_eq!(done.output, TaskOutput::Summarize { text: "Short.".into() });
        assert!(done.usage.estimated && done.usage.input_tokens > 0 && done.usage.output_tokens == 2);
    }

    #[test]
    fn given_the_reference_embedding_when_read_then_the_vector_and_prompt_tokens_normalize() {
        let done = embedding(&request(Task::Embed), http_call::parse(&fixture("embedding.json")).unwrap()).unwrap();
        assert_eq!(
            done.output,
            TaskOutput::Embed { vector: vec![0.002_306_425_5, -0.009_327_292, -0.002_884_222_2], dims: 3 }
        );
        assert_eq!(done.usage, Usage { input_tokens: 8, output_tokens: 0, estimated: false });
    }

    #[test]
    fn given_a_generate_request_when_serialized_then_it_is_one_user_message_with_limits() {
        assert_eq!(
            chat_json(Task::Generate, true),
            json!({
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "Say hello"}],
                "max_tokens": 100,
                "temperature": 0.5
            })
        );
    }

    #[test]
    fn given_classify_and_extract_when_serialized_then_the_schema_goes_as_response_format() {
        for task in [Task::Classify, Task::Extract] {
            let body = chat_json(task, true);
            assert_eq!(body["messages"][0]["role"], "system", "{task}");
            assert_eq!(body["messages"][1], json!({"role": "user", "content": "The support team was wonderful."}));
            let format = &body["response_format"];
            assert_eq!(format["type"], "json_schema", "{task}");
            assert_eq!(format["json_schema"]["name"], "answer");
            assert_eq!(format["json_schema"]["strict"], false);
            assert_eq!(format["json_schema"]["schema"]["type"], "object");
        }
        assert_eq!(
            chat_json(Task::Classify, true)["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"],
            json!(["POSITIVE", "NEGATIVE"])
        );
        // Servers that reject json_schema get the prompt only.
        assert!(chat_json(Task::Extract, false).get("response_format").is_none());
        assert!(chat_json(Task::Summarize, true).get("response_format").is_none());
    }

    #[test]
    fn given_an_embed_request_when_serialized_then_it_has_model_and_input() {
        let body = serde_json::to_value(EmbeddingRequest { model: "text-embedding-3-small", input: "hi" }).unwrap();
        assert_eq!(body, json!({"model": "text-embedding-3-small", "input": "hi"}));
    }

    #[test]
    fn given_each_error_fixture_when_mapped_then_it_lands_on_its_kind() {
        assert_eq!(error(429, "error_insufficient_quota.json").kind().as_str(), "quota_exhausted");
        assert_eq!(error(429, "error_rate_limit.json").kind().as_str(), "rate_limited");
        assert_eq!(error(400, "error_content_filter_azure.json").kind().as_str(), "content_filtered");
        assert_eq!(error(500, "error_server.json").kind().as_str(), "transient");
        assert_eq!(error(502, "error_server.json").kind().as_str(), "transient");
        assert_eq!(error(503, "error_server.json").kind().as_str(), "overloaded");
        let auth = error(401, "error_invalid_api_key.json");
        assert_eq!(auth.kind().as_str(), "auth");
        assert!(!auth.to_string().contains("sk-"), "the key's echo stays out: {auth}");
        let bad = error_from(StatusCode::BAD_REQUEST, &HeaderMap::new(), b"not json");
        assert_eq!(bad.kind().as_str(), "invalid_request");
    }

    #[test]
    fn given_a_429_with_retry_after_ms_when_mapped_then_the_delay_is_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        let err = error_from(StatusCode::TOO_MANY_REQUESTS, &headers, &fixture("error_rate_limit.json"));
        assert_eq!(err.retry_after(), Some(std::time::Duration::from_millis(1500)));
    }

    #[test]
    fn given_a_bare_error_object_when_mapped_then_its_code_is_still_read() {
        let body = br#"{"object": "error", "message": "quota", "type": "insufficient_quota", "code": 429}"#;
        assert_eq!(
            error_from(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), body).kind().as_str(),
            "quota_exhausted"
        );
    }

    #[test]
    fn given_models_and_tasks_when_checked_then_any_id_works_for_its_family() {
        let provider = OpenAiProvider::new(http_call::client().unwrap(), "sk-test", None);
        assert_eq!(provider.supports("some-new-model", Task::Classify), Ok(()));
        assert_eq!(provider.supports("text-embedding-3-large", Task::Embed), Ok(()));
        assert!(provider.supports("gpt-4o-mini", Task::Embed).unwrap_err().contains("embedding model"));
        assert!(provider.supports("text-embedding-3-small", Task::Generate).is_err());
        assert!(provider.supports("gpt-4o", Task::Approval).is_err());
        assert!(provider.models().iter().all(|m| m.id.starts_with("openai:")));
    }

    #[test]
    fn given_a_provider_when_debug_printed_then_the_key_is_absent() {
        let provider = OpenAiProvider::new(http_call::client().unwrap(), "sk-secret-123", None)
            .with_auth_header(AuthHeader::Header(HeaderName::from_static("api-key")));
        let printed = format!("{provider:?}");
        assert!(!printed.contains("sk-secret"), "{printed}");
        assert!(printed.contains("api.openai.com"));
    }
}
