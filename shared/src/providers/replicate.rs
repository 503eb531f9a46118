//! Replicate (<https://replicate.com/docs/reference/http>): language models hosted as Cog
//! containers, run as *predictions*.
//!
//! Wire-format quirks this adapter deals with:
//! - A prediction is asynchronous: `POST` answers `201` with status `starting` and the outcome
//!   arrives later, by webhook (signed with Standard Webhooks headers and the account's `whsec_`
//!   secret) or by `GET /v1/predictions/{id}`. The [`Jobs`] side uses that. `Provider::call`
//!   uses sync mode instead (`Prefer: wait=60`), for deployments with no public callback URL:
//!   Replicate holds the request until the prediction finishes or the wait runs out, and a
//!   prediction still `starting`/`processing` after that is a timeout to us.
//! - Official models are created at `/v1/models/{owner}/{name}/predictions`; a pinned version
//!   (`owner/name:version`) at `/v1/predictions` with `version` in the body.
//! - Inputs are each model's own: the language models take `prompt` and `system_prompt`, and
//!   name the length limit `max_tokens` (official Llama 3) or `max_new_tokens` (older
//!   cog-llama-template builds). We send both; Cog ignores inputs a model does not declare.
//! - `output` of a language model is a list of streamed text chunks to concatenate (some models
//!   return one string). Token counts are in `metrics` on official models only; there is no
//!   stop reason.
//! - A prediction that fails still answers `200`/`201`: status `failed` and an `error` string
//!   (the safety checker's "NSFW content detected", "CUDA out of memory", …).
//! - HTTP errors are `application/problem+json`: `{"title", "detail", "status"}`; `402` means no
//!   credit or no billing, `422` an invalid input or version, `429` says when the limit resets.
//! - Outputs are deleted after an hour, so a finished job hands its raw `output` over for
//!   archiving.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, StatusCode};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chat::{self, ChatPrompt};
use super::http_call::{self, HttpReply};
use super::{
    Callback, CallbackRejection, Completion, Credential, JobReport, JobState, Jobs, ModelInfo, Provider, ProviderError,
    TaskRequest, estimate_tokens,
};
use crate::domain::{FinishReason, Task, Usage};
use crate::providers::not_a_model_task;
use crate::webhooks::signing::{DEFAULT_TOLERANCE, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::webhooks::{VerifyError, WebhookHeaders, WebhookSecret, verify};

/// The prefix in `"model": "replicate:owner/name"`.
pub const PROVIDER: &str = "replicate";

/// Replicate's API; paths below add `/v1/…`.
pub const DEFAULT_BASE_URL: &str = "https://api.replicate.com";

/// Sync mode: Replicate holds the request open up to 60 seconds (its maximum) for the outcome.
const SYNC_WAIT: &str = "wait=60";

/// Only the outcome interests us: one webhook per prediction instead of one per output chunk.
const WEBHOOK_EVENTS: &[&str] = &["completed"];

/// The tasks a language model does through `chat`.
const TASKS: [Task; 4] = chat::TASKS;

/// Well-known official language models, for `GET /v1/models`; any other id is accepted too.
const MODELS: [(&str, &str); 3] = [
    ("meta/meta-llama-3-8b-instruct", "Meta Llama 3 8B Instruct: small and fast, priced per token."),
    ("meta/meta-llama-3-70b-instruct", "Meta Llama 3 70B Instruct: stronger reasoning, priced per token."),
    ("meta/meta-llama-3.1-405b-instruct", "Meta Llama 3.1 405B Instruct: Meta's flagship chat model."),
];

/// Replicate's predictions API. Credentials are never printed: `Debug` shows only the base
/// URL and whether a webhook secret is set.
pub struct ReplicateProvider {
    client: reqwest::Client,
    api_token: Credential,
    /// The `whsec_…` webhooks are signed with; read (and parsed) when a webhook arrives.
    webhook_secret: Option<Credential>,
    base_url: String,
}

impl ReplicateProvider {
    /// The provider with `api_token` (`REPLICATE_API_TOKEN`) and, for async jobs, the account's
    /// webhook signing secret (`REPLICATE_WEBHOOK_SECRET`); `base_url` defaults to
    /// [`DEFAULT_BASE_URL`].
    pub fn new(
        client: reqwest::Client,
        api_token: impl Into<Credential>,
        webhook_secret: Option<Credential>,
        base_url: Option<String>,
    ) -> Self {
        let api_token = api_token.into();
        let base_url = base_url.as_deref().unwrap_or(DEFAULT_BASE_URL).trim_end_matches('/').to_owned();
        Self { client, api_token, webhook_secret, base_url }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/{path}", self.base_url)
    }

    /// Creates a prediction of `request` on `model`; with `wait`, in sync mode.
    async fn create(
        &self,
        model: &str,
        request: &TaskRequest,
        webhook: Option<&str>,
        wait: bool,
    ) -> Result<Prediction, ProviderError> {
        self.supports(model, request.task).map_err(ProviderError::InvalidRequest)?;
        let prompt = chat::prompt(request)?;
        let target = Target::of(model);
        let body = create_body(target, request, &prompt, webhook);
        let mut builder =
            self.client.post(self.url(&target.path())).bearer_auth(self.api_token.get().await?.expose_secret());
        if wait {
            builder = builder.header("Prefer", SYNC_WAIT);
        }
        read(http_call::send(builder.json(&body)).await?)
    }

    /// Reads a prediction once.
    async fn get(&self, id: &str) -> Result<Prediction, ProviderError> {
        // The id goes into the path: refuse anything that could change it.
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ProviderError::InvalidRequest(format!(
                "`{}` is not a Replicate prediction id",
                http_call::short(id)
            )));
        }
        let builder = self
            .client
            .get(self.url(&format!("predictions/{id}")))
            .bearer_auth(self.api_token.get().await?.expose_secret());
        read(http_call::send(builder).await?)
    }
}

impl fmt::Debug for ReplicateProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicateProvider")
            .field("base_url", &self.base_url)
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

/// Where a model id sends the prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target<'a> {
    /// `owner/name`: the model's current version (official models).
    Model(&'a str),
    /// `owner/name:version`: that exact version.
    Version(&'a str),
}

impl<'a> Target<'a> {
    fn of(model: &'a str) -> Self {
        match model.split_once(':') {
            Some((_, version)) => Target::Version(version),
            None => Target::Model(model),
        }
    }

    fn path(self) -> String {
        match self {
            Target::Model(model) => format!("models/{model}/predictions"),
            Target::Version(_) => "predictions".to_owned(),
        }
    }
}

/// Why a model id cannot be sent, if it cannot. Replicate adds models all the time, so any
/// well-formed id is accepted; the id goes into the URL path, so only its own characters may.
fn check_model_id(model: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_./:".contains(c);
    let well_formed = !model.is_empty()
        && model.chars().all(allowed)
        && model.matches(':').count() <= 1
        && !model.starts_with('/')
        && !model.split(['/', ':']).any(|part| part.is_empty() || part == "..");
    if well_formed {
        Ok(())
    } else {
        Err(format!("`{PROVIDER}:{model}` is not a Replicate model id; write `owner/name` or `owner/name:version`"))
    }
}

// --- Wire format: requests (borrowed) ---

/// `POST /v1/models/{owner}/{name}/predictions` or `POST /v1/predictions`.
#[derive(Debug, Serialize)]
struct CreatePrediction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    input: LanguageInput<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_events_filter: Option<&'a [&'a str]>,
}

/// The inputs Replicate's language models share.
#[derive(Debug, Serialize)]
struct LanguageInput<'a> {
    prompt: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_new_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
}

fn create_body<'a>(
    target: Target<'a>,
    request: &TaskRequest,
    prompt: &'a ChatPrompt,
    webhook: Option<&'a str>,
) -> CreatePrediction<'a> {
    CreatePrediction {
        version: match target {
            Target::Version(version) => Some(version),
            Target::Model(_) => None,
        },
        input: LanguageInput {
            prompt: &prompt.user,
            system_prompt: prompt.system.as_deref(),
            max_tokens: request.max_tokens,
            max_new_tokens: request.max_tokens,
            temperature: request.temperature,
        },
        webhook,
        webhook_events_filter: webhook.map(|_| WEBHOOK_EVENTS),
    }
}

// --- Wire format: responses (owned) ---

/// A prediction, as create, get and webhooks all return it.
#[derive(Debug, Deserialize)]
struct Prediction {
    id: String,
    status: Status,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    error: Value,
    #[serde(default)]
    metrics: Option<Metrics>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Starting,
    Processing,
    Succeeded,
    Failed,
    Canceled,
    /// Ended before it ran (e.g. a deadline passed while queued).
    Aborted,
}

#[derive(Debug, Default, Deserialize)]
struct Metrics {
    input_token_count: Option<u64>,
    output_token_count: Option<u64>,
}

/// An HTTP error body (`application/problem+json`).
#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

fn read(reply: HttpReply) -> Result<Prediction, ProviderError> {
    if !reply.status.is_success() {
        return Err(error_from(reply.status, &reply.headers, &reply.body));
    }
    http_call::parse(&reply.body)
}

// --- Normalizing ---

/// A sync-mode answer: finished, or a timeout when the wait ran out first.
fn sync_outcome(prediction: &Prediction, request: &TaskRequest) -> Result<Completion, ProviderError> {
    match prediction.status {
        // Replicate stopped waiting; the prediction runs on, but nobody will read it.
        Status::Starting | Status::Processing => Err(ProviderError::Timeout),
        _ => outcome(prediction, request),
    }
}

/// What a prediction says about a job, whichever way it arrived.
fn report(prediction: Prediction, request: &TaskRequest, delivery_id: Option<String>) -> JobReport {
    let state = match prediction.status {
        Status::Starting | Status::Processing => JobState::Running,
        _ => JobState::Finished { result: outcome(&prediction, request), raw_output: prediction.output },
    };
    JobReport { job_id: prediction.id, delivery_id, state }
}

/// The result of a finished prediction.
fn outcome(prediction: &Prediction, request: &TaskRequest) -> Result<Completion, ProviderError> {
    match prediction.status {
        Status::Succeeded => completion(prediction, request),
        Status::Failed => Err(failure(&prediction.error)),
        Status::Canceled => Err(ProviderError::Transient("the prediction was canceled".to_owned())),
        Status::Aborted => Err(ProviderError::Transient("the prediction was aborted before it ran".to_owned())),
        Status::Starting | Status::Processing => Err(ProviderError::Timeout),
    }
}

fn completion(prediction: &Prediction, request: &TaskRequest) -> Result<Completion, ProviderError> {
    let text = output_text(&prediction.output)?;
    let metrics = prediction.metrics.as_ref();
    let output_tokens = metrics.and_then(|m| m.output_token_count);
    let output = chat::output(request, &text, finish_reason(request, output_tokens))?;
    Ok(Completion { output, usage: usage(request, metrics, &text) })
}

/// A language model's answer: its chunks joined, or its one string.
fn output_text(output: &Value) -> Result<String, ProviderError> {
    let not_text = || {
        ProviderError::MalformedResponse(
            "`output` is neither text nor a list of text chunks; is this a language model?".to_owned(),
        )
    };
    match output {
        Value::String(text) => Ok(text.clone()),
        Value::Array(chunks) => chunks.iter().map(|chunk| chunk.as_str().ok_or_else(not_text)).collect(),
        Value::Null => Err(ProviderError::MalformedResponse("the prediction succeeded without `output`".to_owned())),
        _ => Err(not_text()),
    }
}

/// Replicate reports no stop reason; reaching the token limit is the one we can tell.
fn finish_reason(request: &TaskRequest, output_tokens: Option<u64>) -> FinishReason {
    match (request.max_tokens, output_tokens) {
        (Some(limit), Some(used)) if used >= u64::from(limit) => FinishReason::Length,
        _ => FinishReason::Stop,
    }
}

/// Token counts from `metrics` (official models), else estimated from the texts.
fn usage(request: &TaskRequest, metrics: Option<&Metrics>, text: &str) -> Usage {
    if let Some(Metrics { input_token_count: Some(input), output_token_count: Some(output) }) = metrics {
        return Usage { input_tokens: *input, output_tokens: *output, estimated: false };
    }
    let sent = match chat::prompt(request) {
        Ok(prompt) => format!("{}{}", prompt.system.unwrap_or_default(), prompt.user),
        Err(_) => request.text().to_owned(),
    };
    Usage { input_tokens: estimate_tokens(&sent), output_tokens: estimate_tokens(text), estimated: true }
}

/// A failed prediction's `error` on the taxonomy. The text is the model's own exception, so
/// only a few well-known kinds can be told apart; anything else may pass on another try.
fn failure(error: &Value) -> ProviderError {
    let message = match error {
        Value::String(text) => text.clone(),
        Value::Null => "the prediction failed without saying why".to_owned(),
        other => other.to_string(),
    };
    let lower = message.to_lowercase();
    let mentions = |words: &[&str]| words.iter().any(|word| lower.contains(word));
    if mentions(&["nsfw", "safety", "content policy", "flagged", "sensitive content"]) {
        ProviderError::ContentFiltered(http_call::short(&message))
    } else if mentions(&["maximum context length", "context window", "prompt is too long"]) {
        ProviderError::InvalidRequest(http_call::short(&message))
    } else {
        ProviderError::Transient(http_call::short(&message))
    }
}

/// Replicate's HTTP errors on the taxonomy.
fn error_from(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let problem: Problem = serde_json::from_slice(body).unwrap_or_default();
    let detail = problem.detail.as_deref().unwrap_or_default().trim();
    let message = match problem.title.as_deref() {
        Some(title) if detail.is_empty() => title.to_owned(),
        Some(title) => format!("{title}: {detail}"),
        None => detail.to_owned(),
    };
    let about_credit = {
        let lower = message.to_lowercase();
        lower.contains("insufficient credit") || lower.contains("billing") || lower.contains("spend limit")
    };
    match status.as_u16() {
        // Never Replicate's words for credentials.
        401 | 403 => http_call::error_for_status(status, headers, ""),
        // Throttling tightens as credit runs low, but it is still a wait, not an empty account.
        429 => {
            ProviderError::RateLimited { retry_after: http_call::retry_after(headers).or_else(|| reset_hint(detail)) }
        }
        402 => ProviderError::QuotaExhausted(http_call::short(&message)),
        _ if about_credit => ProviderError::QuotaExhausted(http_call::short(&message)),
        _ => http_call::error_for_status(status, headers, &message),
    }
}

/// The wait in a throttled answer's "Your rate limit resets in ~30s.", for when no
/// `Retry-After` header came with it.
fn reset_hint(detail: &str) -> Option<Duration> {
    let rest = detail.split("resets in ~").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let seconds: u64 = digits.parse().ok()?;
    rest[digits.len()..].starts_with('s').then(|| Duration::from_secs(seconds))
}

// --- Webhooks ---

/// The Standard Webhooks headers of a delivery, if all three are there.
fn webhook_headers(headers: &HeaderMap) -> Option<WebhookHeaders<'_>> {
    let text = |name: &str| headers.get(name)?.to_str().ok();
    Some(WebhookHeaders {
        id: text(HEADER_ID)?,
        timestamp: text(HEADER_TIMESTAMP)?,
        signature: text(HEADER_SIGNATURE)?,
    })
}

fn rejection(error: VerifyError) -> CallbackRejection {
    match error {
        VerifyError::TooOld | VerifyError::TooNew => CallbackRejection::Stale,
        VerifyError::InvalidTimestamp | VerifyError::NoMatchingSignature => CallbackRejection::BadSignature,
    }
}

#[async_trait]
impl Provider for ReplicateProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn models(&self) -> Vec<ModelInfo> {
        MODELS.iter().map(|(name, description)| ModelInfo::new(PROVIDER, name, &TASKS, description)).collect()
    }

    fn supports(&self, model: &str, task: Task) -> Result<(), String> {
        check_model_id(model)?;
        match task {
            Task::Generate | Task::Summarize | Task::Classify | Task::Extract => Ok(()),
            Task::Embed => Err(format!(
                "`{PROVIDER}:{model}` cannot embed: each Replicate embedding model has inputs and outputs of its \
                 own, so this adapter runs language models only"
            )),
            task @ (Task::Approval | Task::Workflow) => Err(not_a_model_task(task)),
        }
    }

    async fn call(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        let prediction = self.create(model, request, None, true).await?;
        sync_outcome(&prediction, request)
    }

    /// Async jobs need the webhook secret: an unverifiable webhook could not be trusted.
    fn jobs(&self) -> Option<&dyn Jobs> {
        self.webhook_secret.as_ref().map(|_| self as &dyn Jobs)
    }
}

#[async_trait]
impl Jobs for ReplicateProvider {
    async fn submit(&self, model: &str, request: &TaskRequest, callback_url: &str) -> Result<String, ProviderError> {
        Ok(self.create(model, request, Some(callback_url), false).await?.id)
    }

    async fn poll(&self, job_id: &str, request: &TaskRequest) -> Result<JobReport, ProviderError> {
        Ok(report(self.get(job_id).await?, request, None))
    }

    async fn receive(&self, callback: &Callback<'_>, request: &TaskRequest) -> Result<JobReport, CallbackRejection> {
        let credential = self.webhook_secret.as_ref().ok_or(CallbackRejection::BadSignature)?;
        let raw = credential.get().await.map_err(|err| CallbackRejection::Unavailable(err.to_string()))?;
        // Checked at start-up wherever webhooks are received; unreadable here, it verifies nothing.
        let secret = WebhookSecret::parse(raw.expose_secret()).map_err(|_| CallbackRejection::BadSignature)?;
        let secret = &secret;
        let signed = webhook_headers(callback.headers).ok_or(CallbackRejection::BadSignature)?;
        verify(secret, &signed, callback.body, callback.received_at, DEFAULT_TOLERANCE).map_err(rejection)?;
        let prediction: Prediction = http_call::parse(callback.body).map_err(|err| {
            CallbackRejection::Malformed(match err {
                ProviderError::MalformedResponse(message) => message,
                other => other.to_string(),
            })
        })?;
        Ok(report(prediction, request, Some(signed.id.to_owned())))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::*;
    use crate::domain::TaskOutput;
    use crate::webhooks::signed_headers;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/src/providers/fixtures/replicate/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    fn prediction(name: &str) -> Prediction {
        http_call::parse(&fixture(name)).unwrap()
    }

    fn request(task: Task) -> TaskRequest {
        TaskRequest {
            task,
            prompt: (task == Task::Generate).then(|| "Write a haiku about llamas".to_owned()),
            input: (task != Task::Generate).then(|| "The support team was wonderful.".to_owned()),
            labels: vec!["POSITIVE".into(), "NEGATIVE".into()],
            schema: None,
            max_tokens: Some(200),
            temperature: Some(0.5),
        }
    }

    fn secret() -> WebhookSecret {
        WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
    }

    fn provider(secret: Option<WebhookSecret>) -> ReplicateProvider {
        let secret = secret.map(|secret| Credential::value(secret.to_whsec()));
        ReplicateProvider::new(http_call::client().unwrap(), "r8_secret_token", secret, None)
    }

    fn signed(secret: &WebhookSecret, at: jiff::Timestamp, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in signed_headers(secret, "msg_zjq6szssxdrm20cgw0fsntgvbg", at.as_second(), body) {
            headers
                .insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(&value).unwrap());
        }
        headers
    }

    fn error_kind(status: u16, headers: &HeaderMap, name: &str) -> ProviderError {
        error_from(StatusCode::from_u16(status).unwrap(), headers, &fixture(name))
    }

    #[test]
    fn given_a_finished_language_model_prediction_when_normalized_then_chunks_join_and_metrics_give_usage() {
        let done = outcome(&prediction("prediction_succeeded_language_model.json"), &request(Task::Generate)).unwrap();
        let TaskOutput::Generate { text, finish_reason } = &done.output else { panic!("{:?}", done.output) };
        assert!(text.starts_with("Tina has one brother and one sister. From the brother's perspective"), "{text}");
        assert!(text.ends_with("(from the sister's perspective)."), "{text}");
        assert_eq!(*finish_reason, FinishReason::Stop);
        assert_eq!(done.usage, Usage { input_tokens: 26, output_tokens: 84, estimated: false });
    }

    #[test]
    fn given_the_token_limit_reached_when_normalized_then_the_finish_reason_is_length() {
        let short = TaskRequest { max_tokens: Some(84), ..request(Task::Generate) };
        let done = outcome(&prediction("prediction_succeeded_language_model.json"), &short).unwrap();
        assert!(matches!(done.output, TaskOutput::Generate { finish_reason: FinishReason::Length, .. }));
    }

    #[test]
    fn given_a_string_output_without_token_metrics_when_normalized_then_usage_is_estimated() {
        let summarize = request(Task::Summarize);
        let done = outcome(&prediction("prediction_succeeded_string_output.json"), &summarize).unwrap();
        assert_eq!(done.output, TaskOutput::Summarize { text: "hello Alice".into() });
        assert!(done.usage.estimated);
        assert_eq!(done.usage.output_tokens, estimate_tokens("hello Alice"));
        assert!(
            done.usage.input_tokens > estimate_tokens("The support team was wonderful."),
            "the system prompt counts"
        );
    }

    #[test]
    fn given_a_sync_answer_still_processing_when_read_then_it_is_a_timeout_and_a_running_job() {
        let generate = request(Task::Generate);
        let processing = prediction("prediction_processing_after_wait.json");
        assert_eq!(sync_outcome(&processing, &generate), Err(ProviderError::Timeout));
        let report = report(processing, &generate, None);
        assert_eq!((report.job_id.as_str(), report.state), ("jp9nrd1g2hrj20cjb2vrb55mkr", JobState::Running));
        let starting = super::report(prediction("prediction_starting.json"), &generate, None);
        assert_eq!(starting.state, JobState::Running);
    }

    #[test]
    fn given_failed_and_canceled_predictions_when_normalized_then_each_lands_on_its_kind() {
        let generate = request(Task::Generate);
        let kind = |name: &str| outcome(&prediction(name), &generate).unwrap_err();
        let nsfw = kind("prediction_failed_nsfw.json");
        assert_eq!(nsfw.kind().as_str(), "content_filtered");
        assert!(nsfw.to_string().contains("NSFW content detected"), "{nsfw}");
        assert_eq!(kind("prediction_failed_cuda_oom.json").kind().as_str(), "transient");
        assert_eq!(kind("prediction_canceled.json"), ProviderError::Transient("the prediction was canceled".into()));
    }

    #[test]
    fn given_a_finished_job_when_reported_then_the_raw_output_is_kept_for_archiving() {
        let report = report(prediction("prediction_succeeded_language_model.json"), &request(Task::Generate), None);
        let JobState::Finished { result, raw_output } = report.state else { panic!("still running") };
        assert!(result.is_ok());
        assert_eq!(raw_output[0], "Tina");
        assert_eq!(raw_output.as_array().unwrap().len(), 57);
    }

    #[test]
    fn given_each_error_fixture_when_mapped_then_it_follows_the_taxonomy() {
        let none = HeaderMap::new();
        let auth = error_kind(401, &none, "error_401_unauthenticated.json");
        assert_eq!(auth.kind().as_str(), "auth");
        assert!(!auth.to_string().contains("token"), "no provider words for credentials: {auth}");
        let billing = error_kind(402, &none, "error_402_billing_required.json");
        assert!(matches!(&billing, ProviderError::QuotaExhausted(m) if m.starts_with("Billing required")), "{billing}");
        assert_eq!(error_kind(402, &none, "error_402_insufficient_credit.json").kind().as_str(), "quota_exhausted");
        let invalid = error_kind(422, &none, "error_422_invalid_version.json");
        assert!(matches!(&invalid, ProviderError::InvalidRequest(m) if m.contains("Invalid version")), "{invalid}");
        let throttled = error_kind(429, &none, "error_429_throttled.json");
        assert_eq!(throttled, ProviderError::RateLimited { retry_after: Some(Duration::from_secs(30)) });
    }

    #[test]
    fn given_a_retry_after_header_when_throttled_then_the_header_wins_over_the_text() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("2"));
        let throttled = error_kind(429, &headers, "error_429_throttled.json");
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn given_bare_server_errors_when_mapped_then_they_are_retryable() {
        let none = HeaderMap::new();
        let status = |code: u16| StatusCode::from_u16(code).unwrap();
        assert_eq!(error_from(status(500), &none, b"<html>oops</html>").kind().as_str(), "transient");
        assert_eq!(error_from(status(503), &none, br#"{"detail": "busy"}"#).kind().as_str(), "overloaded");
        let credit = error_from(status(403), &none, br#"{"detail": "Monthly spend limit reached"}"#);
        assert_eq!(credit.kind().as_str(), "auth", "403 stays an auth problem whatever the text");
    }

    #[test]
    fn given_a_generate_request_when_serialized_then_it_is_an_official_model_prediction() {
        let generate = request(Task::Generate);
        let prompt = chat::prompt(&generate).unwrap();
        let target = Target::of("meta/meta-llama-3-8b-instruct");
        assert_eq!(target.path(), "models/meta/meta-llama-3-8b-instruct/predictions");
        let body = serde_json::to_value(create_body(target, &generate, &prompt, None)).unwrap();
        assert_eq!(
            body,
            json!({"input": {
                "prompt": "Write a haiku about llamas",
                "max_tokens": 200,
                "max_new_tokens": 200,
                "temperature": 0.5
            }})
        );
    }

    #[test]
    fn given_a_classify_job_on_a_pinned_version_when_serialized_then_it_names_the_version_and_webhook() {
        let classify = request(Task::Classify);
        let prompt = chat::prompt(&classify).unwrap();
        let target = Target::of("replicate/llama-7b:ac808388e2e9d8ed35a5bf2eaa7d83f0ad53f9e3df31a42e4eb0a0c3249b3165");
        assert_eq!(target.path(), "predictions");
        let hook = "https://chorus.example/v1/callbacks/replicate";
        let body = serde_json::to_value(create_body(target, &classify, &prompt, Some(hook))).unwrap();
        assert_eq!(body["version"], "ac808388e2e9d8ed35a5bf2eaa7d83f0ad53f9e3df31a42e4eb0a0c3249b3165");
        assert_eq!(body["webhook"], hook);
        assert_eq!(body["webhook_events_filter"], json!(["completed"]));
        assert_eq!(body["input"]["prompt"], "The support team was wonderful.");
        let system = body["input"]["system_prompt"].as_str().unwrap();
        assert!(system.starts_with("Classify the user's text with exactly one of these labels: POSITIVE, NEGATIVE."));
    }

    #[test]
    fn given_any_model_id_when_checked_then_only_language_tasks_and_well_formed_ids_pass() {
        let replicate = provider(None);
        assert_eq!(replicate.supports("someone/brand-new-model", Task::Extract), Ok(()));
        assert_eq!(replicate.supports("owner/name:5c7d5dc6dd8bf75c", Task::Summarize), Ok(()));
        assert!(replicate.supports("owner/name", Task::Embed).unwrap_err().contains("language models only"));
        for bad in ["", "owner/../admin", "owner/name?x=1", "/owner", "owner//name", "a:b:c", "owner/name:"] {
            assert!(replicate.supports(bad, Task::Generate).is_err(), "{bad:?}");
        }
        assert!(replicate.models().iter().all(|m| m.id.starts_with("replicate:meta/") && m.tasks == TASKS));
    }

    #[test]
    fn given_no_webhook_secret_when_asked_for_jobs_then_there_are_none() {
        assert!(provider(None).jobs().is_none());
        assert!(provider(Some(secret())).jobs().is_some());
    }

    #[test]
    fn given_the_provider_when_debug_printed_then_no_credential_shows() {
        let printed = format!("{:?}", provider(Some(secret())));
        assert!(!printed.contains("r8_secret_token") && !printed.contains("MfKQ9r8"), "{printed}");
        assert!(printed.contains(DEFAULT_BASE_URL));
    }

    #[tokio::test]
    async fn given_a_signed_webhook_when_received_then_the_report_is_finished_with_its_delivery_id() {
        let body = fixture("prediction_succeeded_language_model.json");
        let now = jiff::Timestamp::now();
        let headers = signed(&secret(), now, &body);
        let callback = Callback { headers: &headers, body: &body, received_at: now };
        let report = provider(Some(secret())).receive(&callback, &request(Task::Generate)).await.unwrap();
        assert_eq!(report.job_id, "zjq6szssxdrm20cgw0fsntgvbg");
        assert_eq!(report.delivery_id.as_deref(), Some("msg_zjq6szssxdrm20cgw0fsntgvbg"));
        assert!(matches!(report.state, JobState::Finished { result: Ok(_), .. }));
    }

    #[tokio::test]
    async fn given_forged_stale_or_unsigned_webhooks_when_received_then_each_is_rejected() {
        let body = fixture("prediction_succeeded_language_model.json");
        let now = jiff::Timestamp::now();
        let replicate = provider(Some(secret()));
        let generate = request(Task::Generate);
        let receive = async |headers: &HeaderMap, body: &[u8], at| {
            replicate.receive(&Callback { headers, body, received_at: at }, &generate).await.unwrap_err()
        };
        let forged = signed(&WebhookSecret::generate(), now, &body);
        assert_eq!(receive(&forged, &body, now).await, CallbackRejection::BadSignature);
        let later = now + jiff::SignedDuration::from_mins(10);
        assert_eq!(receive(&signed(&secret(), now, &body), &body, later).await, CallbackRejection::Stale);
        assert_eq!(receive(&HeaderMap::new(), &body, now).await, CallbackRejection::BadSignature);
        let not_a_prediction = br#"{"hello": "world"}"#;
        let rejected = receive(&signed(&secret(), now, not_a_prediction), not_a_prediction, now).await;
        assert!(matches!(rejected, CallbackRejection::Malformed(_)), "{rejected:?}");
        let without_secret = provider(None);
        let headers = signed(&secret(), now, &body);
        let callback = Callback { headers: &headers, body: &body, received_at: now };
        assert_eq!(without_secret.receive(&callback, &generate).await.unwrap_err(), CallbackRejection::BadSignature);
    }
}
