//! Google's Gemini API (Google AI Studio keys): `generateContent` for the chat tasks,
//! `embedContent` for `embed`.
//!
//! Wire-format quirks:
//! - The model is in the path: `POST {base}/v1beta/models/{model}:generateContent`. Steps
//!   name the bare id (`gemini-2.5-flash`); `models/` is added here. Ids are checked against
//!   a conservative alphabet so a step cannot steer the URL elsewhere.
//! - The key goes in the `x-goog-api-key` header, never `?key=`: URLs end up in logs.
//! - Body fields are camelCase; the system prompt is `systemInstruction`, separate from
//!   `contents`. `classify` and `extract` ask for `responseMimeType: application/json` with the
//!   schema in `responseJsonSchema` (plain JSON Schema), not `responseSchema` (an OpenAPI
//!   subset that rejects keywords such as `additionalProperties`).
//! - A blocked prompt is a 200 with `promptFeedback.blockReason` and no candidates; a blocked
//!   answer has `finishReason` SAFETY, RECITATION, PROHIBITED_CONTENT, BLOCKLIST, SPII or
//!   IMAGE_SAFETY. All are `ContentFiltered`.
//! - Thinking models bill their thoughts as output but report them apart, in
//!   `thoughtsTokenCount`; they are added to the output tokens so cost is right.
//! - `embedContent` reports no usage: input tokens are estimated and marked so.
//! - Errors are Google's `{"error": {"code", "message", "status", "details"}}`. A bad key is
//!   a 400 INVALID_ARGUMENT with an `ErrorInfo` reason `API_KEY_INVALID`, so `Auth`, not a bad
//!   request. RESOURCE_EXHAUSTED (429) is a rate limit, with the delay from `RetryInfo` when
//!   no header gives one; it is quota exhaustion when the quota itself is zero
//!   (`limit: 0`, a project without access or billing) or a per-day quota ran out (retrying
//!   within a step cannot help). The message "check your plan and billing details" appears
//!   on every free-tier 429, per-minute ones included, so it decides nothing.

use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue, StatusCode};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http_call::{self, short};
use super::{Completion, Credential, ModelInfo, Provider, ProviderError, TaskRequest, chat, estimate_tokens};
use crate::domain::{FinishReason, Task, TaskOutput, Usage};
use crate::providers::not_a_model_task;

/// The prefix in `"model": "gemini:<model-id>"`.
pub const PROVIDER: &str = "gemini";

/// The Gemini API; the mock provider server stands in through the base URL.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

const CHAT_TASKS: [Task; 4] = chat::TASKS;

/// The curated models listed by `GET /v1/models`; any other id is accepted too.
const MODELS: [(&str, &[Task], &str); 4] = [
    ("gemini-2.5-flash", &CHAT_TASKS, "Fast, cheap thinking model; a good default for every chat task."),
    ("gemini-2.5-pro", &CHAT_TASKS, "Google's most capable Gemini 2.5 model, for hard reasoning."),
    ("gemini-2.5-flash-lite", &CHAT_TASKS, "The cheapest Gemini 2.5 model, for high-volume simple tasks."),
    ("gemini-embedding-001", &[Task::Embed], "3072-dimension multilingual text embeddings."),
];

/// Gemini through the Google AI Studio API.
#[derive(Clone)]
pub struct GeminiProvider {
    client: reqwest::Client,
    api_key: Credential,
    base_url: String,
}

impl std::fmt::Debug for GeminiProvider {
    // By hand: the key never reaches a log line, not even redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiProvider").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl GeminiProvider {
    /// A provider calling `base_url` (default [`DEFAULT_BASE_URL`]) with `api_key`.
    pub fn new(client: reqwest::Client, api_key: impl Into<Credential>, base_url: Option<String>) -> Self {
        let api_key = api_key.into();
        let base_url = base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()).trim_end_matches('/').to_owned();
        Self { client, api_key, base_url }
    }

    /// A POST to `models/{model}:{method}`, with the key in its header.
    async fn post(&self, model: &str, method: &str) -> Result<reqwest::RequestBuilder, ProviderError> {
        let name = resource_name(model)?;
        let mut key = HeaderValue::from_str(self.api_key.get().await?.expose_secret())
            .map_err(|_| ProviderError::Auth("the configured API key cannot be sent in an HTTP header".to_owned()))?;
        key.set_sensitive(true);
        Ok(self.client.post(format!("{}/v1beta/{name}:{method}", self.base_url)).header("x-goog-api-key", key))
    }

    async fn generate(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        let prompt = chat::prompt(request)?;
        let body = generate_request(request, &prompt);
        let reply = http_call::send(self.post(model, "generateContent").await?.json(&body)).await?;
        if !reply.status.is_success() {
            return Err(error_from(reply.status, &reply.headers, &reply.body));
        }
        completion(request, &prompt, http_call::parse(&reply.body)?)
    }

    async fn embed(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        let body = EmbedRequest { content: Content { role: None, parts: [Part { text: request.text() }] } };
        let reply = http_call::send(self.post(model, "embedContent").await?.json(&body)).await?;
        if !reply.status.is_success() {
            return Err(error_from(reply.status, &reply.headers, &reply.body));
        }
        embedding(request, http_call::parse(&reply.body)?)
    }
}

/// `models/<id>` for a bare id; `models/…` and `tunedModels/…` names are kept.
fn resource_name(model: &str) -> Result<String, ProviderError> {
    let (collection, id) = match model.split_once('/') {
        Some((collection @ ("models" | "tunedModels"), id)) => (collection, id),
        _ => ("models", model),
    };
    let valid = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if valid && !id.starts_with('.') {
        Ok(format!("{collection}/{id}"))
    } else {
        Err(ProviderError::InvalidRequest(format!("`{PROVIDER}:{model}` is not a Gemini model id")))
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest<'a> {
    contents: [Content<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Content<'a>>,
    generation_config: GenerationConfig<'a>,
}

#[derive(Debug, Serialize)]
struct Content<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    parts: [Part<'a>; 1],
}

#[derive(Debug, Serialize)]
struct Part<'a> {
    text: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<&'a Value>,
}

#[derive(Debug, Serialize)]
struct EmbedRequest<'a> {
    content: Content<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<CandidateContent>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CandidateContent {
    #[serde(default)]
    parts: Vec<ResponsePart>,
}

#[derive(Debug, Deserialize)]
struct ResponsePart {
    text: Option<String>,
    /// Thought summaries (when asked for) are not the answer.
    #[serde(default)]
    thought: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
}

#[derive(Debug, Deserialize)]
struct EmbedResponse {
    embedding: ContentEmbedding,
}

#[derive(Debug, Deserialize)]
struct ContentEmbedding {
    values: Vec<f32>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<ErrorDetailEntry>,
}

/// One `google.rpc` detail; only the fields of `ErrorInfo`, `RetryInfo` and `QuotaFailure`
/// that change the mapping.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorDetailEntry {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    retry_delay: Option<String>,
    #[serde(default)]
    violations: Vec<QuotaViolation>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuotaViolation {
    #[serde(default)]
    quota_id: String,
}

fn generate_request<'a>(request: &TaskRequest, prompt: &'a chat::ChatPrompt) -> GenerateRequest<'a> {
    let system_instruction = prompt.system.as_deref().map(|text| Content { role: None, parts: [Part { text }] });
    let schema = prompt.json_schema.as_ref();
    GenerateRequest {
        contents: [Content { role: Some("user"), parts: [Part { text: &prompt.user }] }],
        system_instruction,
        generation_config: GenerationConfig {
            max_output_tokens: request.max_tokens,
            temperature: request.temperature,
            response_mime_type: schema.map(|_| "application/json"),
            response_json_schema: schema,
        },
    }
}

/// The normalized completion for a `generateContent` answer.
fn completion(
    request: &TaskRequest,
    prompt: &chat::ChatPrompt,
    response: GenerateResponse,
) -> Result<Completion, ProviderError> {
    if let Some(reason) = response.prompt_feedback.and_then(|feedback| feedback.block_reason) {
        return Err(ProviderError::ContentFiltered(format!("Gemini blocked the prompt ({reason})")));
    }
    let Some(candidate) = response.candidates.into_iter().next() else {
        return Err(ProviderError::MalformedResponse("the answer has no candidates".to_owned()));
    };
    let finish_reason = match candidate.finish_reason.as_deref() {
        Some("STOP") => FinishReason::Stop,
        Some("MAX_TOKENS") => FinishReason::Length,
        Some(reason @ ("SAFETY" | "RECITATION" | "PROHIBITED_CONTENT" | "BLOCKLIST" | "SPII" | "IMAGE_SAFETY")) => {
            return Err(ProviderError::ContentFiltered(format!("Gemini blocked the answer ({reason})")));
        }
        _ => FinishReason::Other,
    };
    let parts = candidate.content.map(|content| content.parts).unwrap_or_default();
    let text: String = parts.into_iter().filter(|part| !part.thought).filter_map(|part| part.text).collect();
    let usage = match response.usage_metadata {
        Some(usage) => Usage {
            input_tokens: usage.prompt_token_count,
            output_tokens: usage.candidates_token_count + usage.thoughts_token_count,
            estimated: false,
        },
        None => {
            let sent = [prompt.system.as_deref().unwrap_or_default(), &prompt.user].concat();
            Usage { input_tokens: estimate_tokens(&sent), output_tokens: estimate_tokens(&text), estimated: true }
        }
    };
    Ok(Completion { output: chat::output(request, &text, finish_reason)?, usage })
}

/// The normalized completion for an `embedContent` answer, which reports no usage.
fn embedding(request: &TaskRequest, response: EmbedResponse) -> Result<Completion, ProviderError> {
    let vector = response.embedding.values;
    if vector.is_empty() {
        return Err(ProviderError::MalformedResponse("the embedding has no values".to_owned()));
    }
    let usage = Usage { input_tokens: estimate_tokens(request.text()), output_tokens: 0, estimated: true };
    Ok(Completion { output: TaskOutput::Embed { dims: vector.len(), vector }, usage })
}

/// Maps an error answer onto the taxonomy; see the module doc for the quirks.
fn error_from(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let detail = serde_json::from_slice::<ErrorBody>(body).map(|b| b.error).unwrap_or_default();
    if let Some(reason) = detail.details.iter().filter_map(|d| d.reason.as_deref()).find(|r| r.starts_with("API_KEY_"))
    {
        return refused(reason);
    }
    match detail.status.as_str() {
        "RESOURCE_EXHAUSTED" if is_quota_gone(&detail) => ProviderError::QuotaExhausted(short(&detail.message)),
        "RESOURCE_EXHAUSTED" => {
            ProviderError::RateLimited { retry_after: http_call::retry_after(headers).or_else(|| retry_delay(&detail)) }
        }
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "NOT_FOUND" | "OUT_OF_RANGE" => {
            ProviderError::InvalidRequest(short(&detail.message))
        }
        status @ ("PERMISSION_DENIED" | "UNAUTHENTICATED") => refused(status),
        "INTERNAL" | "UNKNOWN" => ProviderError::Transient(short(&detail.message)),
        "UNAVAILABLE" => ProviderError::Overloaded { retry_after: http_call::retry_after(headers) },
        "DEADLINE_EXCEEDED" => ProviderError::Timeout,
        _ => http_call::error_for_status(status, headers, &detail.message),
    }
}

/// An `Auth` error naming Google's reason code only: the message may quote the key.
fn refused(reason: &str) -> ProviderError {
    ProviderError::Auth(format!("Gemini refused the API key ({reason})"))
}

/// Whether a RESOURCE_EXHAUSTED means no quota is left to wait for: a zero limit, or a
/// per-day quota spent.
fn is_quota_gone(detail: &ErrorDetail) -> bool {
    let per_day = detail.details.iter().flat_map(|d| &d.violations).any(|v| v.quota_id.contains("PerDay"));
    per_day || detail.message.contains("limit: 0")
}

/// `RetryInfo.retryDelay`, a protobuf duration such as `"26s"` or `"7.96s"`.
fn retry_delay(detail: &ErrorDetail) -> Option<Duration> {
    let delay = detail.details.iter().find_map(|d| d.retry_delay.as_deref())?;
    let seconds = delay.strip_suffix('s')?.parse::<f64>().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// Whether `model` is an embedding model, going by Google's ids (`gemini-embedding-001`,
/// `text-embedding-004`).
fn is_embedding_model(model: &str) -> bool {
    model.contains("embedding")
}

#[async_trait]
impl Provider for GeminiProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn models(&self) -> Vec<ModelInfo> {
        MODELS.iter().map(|(id, tasks, description)| ModelInfo::new(PROVIDER, id, tasks, description)).collect()
    }

    /// Any model id (Google adds previews and versions often); only the task is checked:
    /// embedding models embed, the others chat.
    fn supports(&self, model: &str, task: Task) -> Result<(), String> {
        match (task, is_embedding_model(model)) {
            (task @ (Task::Approval | Task::Workflow), _) => Err(not_a_model_task(task)),
            (Task::Embed, false) => Err(format!(
                "`{PROVIDER}:{model}` is not an embedding model; embed needs one such as \
                 `{PROVIDER}:gemini-embedding-001`"
            )),
            (Task::Embed, true) | (_, false) => Ok(()),
            (_, true) => Err(format!("`{PROVIDER}:{model}` is an embedding model; it cannot {task}")),
        }
    }

    async fn call(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        self.supports(model, request.task).map_err(ProviderError::InvalidRequest)?;
        if request.task == Task::Embed { self.embed(model, request).await } else { self.generate(model, request).await }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/src/providers/fixtures/gemini/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    fn request(task: Task) -> TaskRequest {
        TaskRequest {
            task,
            prompt: (task == Task::Generate).then(|| "Tell me a joke.".to_owned()),
            input: (task != Task::Generate).then(|| "The support team was wonderful.".to_owned()),
            labels: vec!["POSITIVE".into(), "NEGATIVE".into()],
            schema: Some(json!({"type": "object", "properties": {"name": {"type": "string"}}})),
            max_tokens: Some(256),
            temperature: Some(0.0),
        }
    }

    fn answer(request: &TaskRequest, fixture_name: &str) -> Result<Completion, ProviderError> {
        let prompt = chat::prompt(request).unwrap();
        completion(request, &prompt, http_call::parse(&fixture(fixture_name)).unwrap())
    }

    fn body(request: &TaskRequest) -> Value {
        let prompt = chat::prompt(request).unwrap();
        serde_json::to_value(generate_request(request, &prompt)).unwrap()
    }

    fn error(status: u16, fixture_name: &str) -> ProviderError {
        error_from(StatusCode::from_u16(status).unwrap(), &HeaderMap::new(), &fixture(fixture_name))
    }

    #[test]
    fn given_the_reference_answer_when_read_then_text_finish_and_usage_normalize() {
        let done = answer(&request(Task::Generate), "generate_content.json").unwrap();
        assert_eq!(
            done.output,
            TaskOutput::Generate {
                text: "Why did the chicken cross the road? To get to the other side!".into(),
                finish_reason: FinishReason::Stop
            }
        );
        assert_eq!(done.usage, Usage { input_tokens: 4, output_tokens: 12, estimated: false });
    }

    #[test]
    fn given_a_thinking_model_answer_when_read_then_thoughts_count_as_output() {
        let done = answer(&request(Task::Classify), "generate_content_thinking.json").unwrap();
        assert!(matches!(done.output, TaskOutput::Classify { ref label, .. } if label == "POSITIVE"));
        assert_eq!(done.usage, Usage { input_tokens: 42, output_tokens: 314, estimated: false });
    }

    #[test]
    fn given_a_blocked_prompt_or_answer_when_read_then_it_is_content_filtered() {
        let prompt = answer(&request(Task::Summarize), "generate_content_prompt_blocked.json").unwrap_err();
        assert!(matches!(&prompt, ProviderError::ContentFiltered(m) if m.contains("SAFETY")), "{prompt:?}");
        let answer = answer(&request(Task::Summarize), "generate_content_safety_finish.json").unwrap_err();
        assert_eq!(answer.kind().as_str(), "content_filtered");
    }

    #[test]
    fn given_the_embedding_answer_when_read_then_the_vector_is_kept_and_usage_estimated() {
        let request = request(Task::Embed);
        let done = embedding(&request, http_call::parse(&fixture("embed_content.json")).unwrap()).unwrap();
        assert!(matches!(&done.output, TaskOutput::Embed { dims: 4, vector } if vector.len() == 4));
        assert_eq!(
            done.usage,
            Usage { input_tokens: estimate_tokens(request.text()), output_tokens: 0, estimated: true }
        );
    }

    #[test]
    fn given_a_generate_request_when_serialized_then_it_has_gemini_shape() {
        assert_eq!(
            body(&request(Task::Generate)),
            json!({
                "contents": [{"role": "user", "parts": [{"text": "Tell me a joke."}]}],
                "generationConfig": {"maxOutputTokens": 256, "temperature": 0.0}
            })
        );
    }

    #[test]
    fn given_classify_and_extract_when_serialized_then_json_mode_and_schema_are_set() {
        for task in [Task::Classify, Task::Extract] {
            let body = body(&request(task));
            assert!(body["systemInstruction"]["parts"][0]["text"].as_str().unwrap().len() > 20, "{task}");
            assert!(body["systemInstruction"].get("role").is_none());
            assert_eq!(body["contents"][0]["parts"][0]["text"], "The support team was wonderful.");
            assert_eq!(body["generationConfig"]["responseMimeType"], "application/json");
            assert_eq!(body["generationConfig"]["responseJsonSchema"]["type"], "object");
            assert!(body["generationConfig"].get("responseSchema").is_none());
        }
        let summarize = body(&request(Task::Summarize));
        assert!(summarize["generationConfig"].get("responseMimeType").is_none());
    }

    #[test]
    fn given_an_embed_request_when_serialized_then_it_has_one_content() {
        let body = EmbedRequest { content: Content { role: None, parts: [Part { text: "hi" }] } };
        assert_eq!(serde_json::to_value(body).unwrap(), json!({"content": {"parts": [{"text": "hi"}]}}));
    }

    #[test]
    fn given_model_ids_when_named_then_models_prefix_is_added_and_odd_ids_refused() {
        assert_eq!(resource_name("gemini-2.0-flash").unwrap(), "models/gemini-2.0-flash");
        assert_eq!(resource_name("models/gemini-2.5-pro").unwrap(), "models/gemini-2.5-pro");
        assert_eq!(resource_name("tunedModels/my-model_1").unwrap(), "tunedModels/my-model_1");
        for bad in ["../../v1/files", "gemini?key=x", "", "models/", "a/b", ".."] {
            assert_eq!(resource_name(bad).unwrap_err().kind().as_str(), "invalid_request", "{bad}");
        }
    }

    #[test]
    fn given_each_error_fixture_when_mapped_then_it_lands_on_its_kind() {
        let rate = error(429, "error_rate_limit.json");
        assert_eq!(rate, ProviderError::RateLimited { retry_after: Some(Duration::from_secs(26)) });
        assert_eq!(error(429, "error_quota_limit_zero.json").kind().as_str(), "quota_exhausted");
        assert_eq!(error(503, "error_overloaded.json").kind().as_str(), "overloaded");
        assert_eq!(error(500, "error_internal.json").kind().as_str(), "transient");
        assert_eq!(error(400, "error_invalid_argument.json").kind().as_str(), "invalid_request");
        let auth = error(400, "error_api_key_invalid.json");
        assert_eq!(auth.kind().as_str(), "auth");
        assert_eq!(auth, ProviderError::Auth("Gemini refused the API key (API_KEY_INVALID)".into()));
    }

    #[test]
    fn given_google_statuses_without_details_when_mapped_then_they_follow_the_taxonomy() {
        let kind = |code: u16, status: &str| {
            let body = json!({"error": {"code": code, "message": "m", "status": status}}).to_string();
            error_from(StatusCode::from_u16(code).unwrap(), &HeaderMap::new(), body.as_bytes()).kind().as_str()
        };
        assert_eq!(kind(403, "PERMISSION_DENIED"), "auth");
        assert_eq!(kind(400, "FAILED_PRECONDITION"), "invalid_request");
        assert_eq!(kind(504, "DEADLINE_EXCEEDED"), "timeout");
        assert_eq!(kind(404, "NOT_FOUND"), "invalid_request");
        let per_day = json!({"error": {"code": 429, "message": "m", "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}});
        let err = error_from(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), per_day.to_string().as_bytes());
        assert_eq!(err.kind().as_str(), "quota_exhausted");
    }

    #[test]
    fn given_models_and_tasks_when_checked_then_any_id_works_for_its_family() {
        let provider = GeminiProvider::new(http_call::client().unwrap(), "AIza-test", None);
        assert_eq!(provider.supports("gemini-3-pro-preview", Task::Extract), Ok(()));
        assert_eq!(provider.supports("text-embedding-004", Task::Embed), Ok(()));
        assert!(provider.supports("gemini-2.5-flash", Task::Embed).unwrap_err().contains("embedding model"));
        assert!(provider.supports("gemini-embedding-001", Task::Summarize).is_err());
        assert!(!format!("{provider:?}").contains("AIza"));
    }
}
