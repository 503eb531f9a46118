//! Amazon Bedrock through the Converse API (`POST /model/{modelId}/converse`), called with the
//! AWS SDK so requests are SigV4-signed with the Lambda role's credentials: there is no key.
//!
//! One request shape serves every chat model Bedrock hosts (Anthropic, Amazon Nova, Meta,
//! Mistral, …): `system` blocks, one `user` message, `inferenceConfig` (`maxTokens`,
//! `temperature`). `embed` is not offered: Converse does not embed.
//!
//! Quirks:
//! - The SDK is the wire format here: errors arrive as `SdkError`, and what the HTTP status
//!   and body say elsewhere is the exception's type (`ThrottlingException`, …) here. One
//!   function, [`error_from`], maps them, by the code the service sent, so exceptions the
//!   Converse model does not declare (`ServiceQuotaExceededException`, the signature errors)
//!   map too.
//! - The SDK's own retries are switched off on the client this adapter is given: the router
//!   retries and falls back, and two layers of retries would multiply attempts and hide the
//!   throttling the router needs to see.
//! - A 200 whose body the SDK cannot read surfaces as an unhandled *service* error; it is a
//!   malformed response, not a failure of the service.
//! - A filtered answer is a 200 whose `stopReason` is `content_filtered` or
//!   `guardrail_intervened`.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_bedrockruntime::config::http::HttpResponse;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput as Output, InferenceConfiguration, Message, StopReason,
    SystemContentBlock, TokenUsage,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::chat::{self, ChatPrompt};
use super::http_call;
use super::{Completion, ModelInfo, Provider, ProviderError, TaskRequest, estimate_tokens};
use crate::domain::{FinishReason, Task, Usage};
use crate::providers::not_a_model_task;

/// The prefix in `bedrock:<model-id>`.
pub const PROVIDER: &str = "bedrock";

const CHAT_TASKS: &[Task] = &chat::TASKS;

/// Well-known models, for `GET /v1/models`; any model id, inference profile or ARN is accepted.
const MODELS: [(&str, &str); 4] = [
    ("anthropic.claude-3-haiku-20240307-v1:0", "Claude 3 Haiku: fast and inexpensive, on demand in most regions."),
    ("us.anthropic.claude-sonnet-4-20250514-v1:0", "Claude Sonnet 4 through the US cross-region inference profile."),
    ("amazon.nova-lite-v1:0", "Amazon Nova Lite: low-cost multimodal model, 300k context."),
    ("amazon.nova-pro-v1:0", "Amazon Nova Pro: Amazon's most capable Nova understanding model."),
];

/// The Bedrock adapter. Holds the SDK client, whose credentials come from the environment
/// (the Lambda role) through the SDK config.
#[derive(Clone)]
pub struct BedrockProvider {
    client: aws_sdk_bedrockruntime::Client,
}

impl fmt::Debug for BedrockProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BedrockProvider").finish_non_exhaustive()
    }
}

impl BedrockProvider {
    /// An adapter over `client`, with the SDK's retries turned off (the router retries).
    pub fn new(client: aws_sdk_bedrockruntime::Client) -> Self {
        let config = client.config().to_builder().retry_config(RetryConfig::disabled()).build();
        Self { client: aws_sdk_bedrockruntime::Client::from_conf(config) }
    }

    async fn converse(
        &self,
        model: &str,
        prompt: &ChatPrompt,
        request: &TaskRequest,
    ) -> Result<ConverseOutput, ProviderError> {
        let user = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text(prompt.user.clone()))
            .build()
            .map_err(|err| ProviderError::InvalidRequest(format!("could not build the message: {err}")))?;
        self.client
            .converse()
            .model_id(model)
            .set_system(prompt.system.clone().map(|system| vec![SystemContentBlock::Text(system)]))
            .messages(user)
            .inference_config(inference_config(request))
            .send()
            .await
            .map_err(|err| error_from(&err))
    }
}

#[async_trait]
impl Provider for BedrockProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn models(&self) -> Vec<ModelInfo> {
        MODELS.iter().map(|(id, description)| ModelInfo::new(PROVIDER, id, CHAT_TASKS, description)).collect()
    }

    /// Any model id: Bedrock adds models and inference profiles per region and account.
    fn supports(&self, model: &str, task: Task) -> Result<(), String> {
        match task {
            Task::Generate | Task::Summarize | Task::Classify | Task::Extract => Ok(()),
            Task::Embed => Err(format!(
                "`{PROVIDER}:{model}` cannot embed: Bedrock's Converse API only chats; use an embedding \
                 model from another provider (e.g. cohere:embed-v4.0)"
            )),
            task @ (Task::Approval | Task::Workflow) => Err(not_a_model_task(task)),
        }
    }

    async fn call(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        self.supports(model, request.task).map_err(ProviderError::InvalidRequest)?;
        let prompt = chat::prompt(request)?;
        let output = self.converse(model, &prompt, request).await?;
        completion(request, &prompt, output)
    }
}

fn inference_config(request: &TaskRequest) -> InferenceConfiguration {
    InferenceConfiguration::builder()
        .set_max_tokens(request.max_tokens.map(|max| i32::try_from(max).unwrap_or(i32::MAX)))
        .set_temperature(request.temperature)
        .build()
}

/// The normalized completion for a Converse answer.
fn completion(request: &TaskRequest, prompt: &ChatPrompt, output: ConverseOutput) -> Result<Completion, ProviderError> {
    let finish_reason = finish_reason(&output.stop_reason)?;
    let text = answer_text(output.output.as_ref());
    let usage = match output.usage.as_ref() {
        Some(usage) => reported(usage),
        None => Usage {
            input_tokens: estimate_tokens(prompt.system.as_deref().unwrap_or_default()) + estimate_tokens(&prompt.user),
            output_tokens: estimate_tokens(&text),
            estimated: true,
        },
    };
    Ok(Completion { output: chat::output(request, &text, finish_reason)?, usage })
}

/// The text blocks of the assistant's message, in order.
fn answer_text(output: Option<&Output>) -> String {
    let Some(Output::Message(message)) = output else {
        return String::new();
    };
    message.content.iter().filter_map(|block| block.as_text().ok().map(String::as_str)).collect()
}

fn reported(usage: &TokenUsage) -> Usage {
    let count = |tokens: i32| u64::try_from(tokens).unwrap_or_default();
    Usage { input_tokens: count(usage.input_tokens), output_tokens: count(usage.output_tokens), estimated: false }
}

/// Bedrock's `stopReason` in our terms; a filtered answer is an error.
fn finish_reason(reason: &StopReason) -> Result<FinishReason, ProviderError> {
    match reason {
        StopReason::EndTurn | StopReason::StopSequence => Ok(FinishReason::Stop),
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => Ok(FinishReason::Length),
        StopReason::ContentFiltered => {
            Err(ProviderError::ContentFiltered("Bedrock filtered the model's answer".to_owned()))
        }
        StopReason::GuardrailIntervened => {
            Err(ProviderError::ContentFiltered("a Bedrock guardrail intervened".to_owned()))
        }
        StopReason::MalformedModelOutput => {
            Err(ProviderError::MalformedResponse("Bedrock reports the model's output as malformed".to_owned()))
        }
        _ => Ok(FinishReason::Other),
    }
}

/// The SDK's error as a [`ProviderError`]: the one mapping for this provider.
fn error_from(error: &SdkError<ConverseError, HttpResponse>) -> ProviderError {
    match error {
        SdkError::TimeoutError(_) => ProviderError::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => ProviderError::Timeout,
        SdkError::DispatchFailure(_) => ProviderError::Transient("could not reach Bedrock".to_owned()),
        SdkError::ResponseError(_) => ProviderError::MalformedResponse("Bedrock's answer could not be read".to_owned()),
        SdkError::ConstructionFailure(_) => {
            ProviderError::InvalidRequest("the Bedrock request could not be built".to_owned())
        }
        SdkError::ServiceError(service) => {
            let raw = service.raw();
            let status = StatusCode::from_u16(raw.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let headers = header_map(raw);
            let err = service.err();
            if status.is_success() {
                // The SDK reports a 200 it could not deserialize as an unhandled service error.
                return ProviderError::MalformedResponse(
                    "Bedrock's answer does not match the Converse shape".to_owned(),
                );
            }
            exception(err.code(), err.message().unwrap_or_default(), status, &headers)
        }
        _ => ProviderError::Transient("the Bedrock call failed".to_owned()),
    }
}

/// What one of Bedrock's exceptions means; unknown ones fall back to their HTTP status.
fn exception(code: Option<&str>, message: &str, status: StatusCode, headers: &HeaderMap) -> ProviderError {
    let message = http_call::short(message);
    match code.unwrap_or_default() {
        // On-demand daily token quotas are throttling too, but come back tomorrow, not soon.
        "ThrottlingException" if message.to_lowercase().contains("per day") => ProviderError::QuotaExhausted(message),
        "ThrottlingException" => ProviderError::RateLimited { retry_after: http_call::retry_after(headers) },
        "ServiceUnavailableException" | "ModelNotReadyException" => {
            ProviderError::Overloaded { retry_after: http_call::retry_after(headers) }
        }
        "ModelTimeoutException" => ProviderError::Timeout,
        "ValidationException" | "ResourceNotFoundException" => ProviderError::InvalidRequest(message),
        // Never the service's words for credential problems.
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "MissingAuthenticationTokenException" => {
            ProviderError::Auth(format!("Bedrock refused the credentials (HTTP {status})"))
        }
        "ServiceQuotaExceededException" => ProviderError::QuotaExhausted(message),
        "InternalServerException" | "ModelErrorException" => ProviderError::Transient(message),
        _ => http_call::error_for_status(status, headers, &message),
    }
}

/// The answer's headers as an [`http::HeaderMap`], for the shared `Retry-After` reading.
fn header_map(raw: &HttpResponse) -> HeaderMap {
    raw.headers()
        .iter()
        .filter_map(|(name, value)| {
            Some((HeaderName::from_bytes(name.as_bytes()).ok()?, HeaderValue::from_str(value).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
    use axum::body::Bytes;
    use axum::http::Uri;
    use axum::response::IntoResponse;
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::TaskOutput;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/src/providers/fixtures/bedrock/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    fn request(task: Task) -> TaskRequest {
        TaskRequest {
            task,
            prompt: (task == Task::Generate).then(|| "hello how are you".to_owned()),
            input: (task != Task::Generate).then(|| "The support team was wonderful.".to_owned()),
            labels: vec!["POSITIVE".into(), "NEGATIVE".into()],
            schema: None,
            max_tokens: Some(512),
            temperature: Some(0.7),
        }
    }

    /// What the fake Bedrock saw: the path and JSON body of the last request.
    type Seen = Arc<Mutex<Option<(String, Value)>>>;

    /// A one-answer Bedrock on a local port: every request gets `status`, `headers`, `body`.
    async fn fake_bedrock(
        status: u16,
        headers: &[(&'static str, &'static str)],
        body: Vec<u8>,
    ) -> (BedrockProvider, Seen) {
        let seen: Seen = Arc::default();
        let answer_headers: Vec<(&'static str, &'static str)> = headers.to_vec();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, request_body: Bytes| {
            let record = record.clone();
            let answer_headers = answer_headers.clone();
            let body = body.clone();
            async move {
                let json = serde_json::from_slice(&request_body).unwrap_or(Value::Null);
                *record.lock().unwrap() = Some((uri.path().to_owned(), json));
                let mut response = (axum::http::StatusCode::from_u16(status).unwrap(), body).into_response();
                response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
                for (name, value) in answer_headers {
                    response.headers_mut().insert(name, HeaderValue::from_static(value));
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDEXAMPLE", "not-a-real-secret", None, None, "test"))
            .endpoint_url(format!("http://{addr}/bedrock"))
            .build();
        (BedrockProvider::new(aws_sdk_bedrockruntime::Client::from_conf(config)), seen)
    }

    #[tokio::test]
    async fn given_the_recorded_converse_answer_when_called_then_text_and_usage_come_out() {
        let (bedrock, _) = fake_bedrock(200, &[], fixture("converse.json")).await;
        let done = bedrock.call("amazon.nova-lite-v1:0", &request(Task::Generate)).await.unwrap();
        let TaskOutput::Generate { text, finish_reason } = done.output else { panic!("not generate") };
        assert!(text.starts_with("Hello! I'm doing well"), "{text}");
        assert_eq!(finish_reason, FinishReason::Stop);
        assert_eq!(done.usage, Usage { input_tokens: 4, output_tokens: 38, estimated: false });
    }

    #[tokio::test]
    async fn given_classify_when_called_then_the_sdk_sends_the_converse_shape() {
        let answer = json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "{\"label\": \"POSITIVE\", \"confidence\": 0.9}"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 80, "outputTokens": 12, "totalTokens": 92},
            "metrics": {"latencyMs": 210}
        });
        let (bedrock, seen) = fake_bedrock(200, &[], answer.to_string().into_bytes()).await;
        let done = bedrock.call("anthropic.claude-3-haiku-20240307-v1:0", &request(Task::Classify)).await.unwrap();
        assert!(
            matches!(done.output, TaskOutput::Classify { ref label, .. } if label == "POSITIVE"),
            "{:?}",
            done.output
        );
        let (path, body) = seen.lock().unwrap().clone().unwrap();
        assert_eq!(path, "/bedrock/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse");
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": [{"text": "The support team was wonderful."}]}])
        );
        assert!(body["system"][0]["text"].as_str().unwrap().starts_with("Classify the user's text"));
        assert_eq!(body["inferenceConfig"]["maxTokens"], 512);
        assert!((body["inferenceConfig"]["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
    }

    #[tokio::test]
    async fn given_each_recorded_error_when_called_then_it_lands_on_its_kind() {
        let cases = [
            (429, "ThrottlingException", "error_throttling.json", "rate_limited"),
            (429, "ThrottlingException", "error_throttling_daily.json", "quota_exhausted"),
            (400, "ValidationException", "error_validation.json", "invalid_request"),
            (403, "AccessDeniedException", "error_access_denied.json", "auth"),
            (403, "UnrecognizedClientException", "error_unrecognized_client.json", "auth"),
            (404, "ResourceNotFoundException", "error_resource_not_found.json", "invalid_request"),
            (400, "ServiceQuotaExceededException", "error_service_quota.json", "quota_exhausted"),
            (503, "ServiceUnavailableException", "error_service_unavailable.json", "overloaded"),
            (500, "InternalServerException", "error_internal.json", "transient"),
            (424, "ModelErrorException", "error_model_error.json", "transient"),
            (408, "ModelTimeoutException", "error_model_timeout.json", "timeout"),
        ];
        for (status, code, name, kind) in cases {
            let (bedrock, _) = fake_bedrock(status, &[("x-amzn-errortype", code)], fixture(name)).await;
            let err = bedrock.call("amazon.nova-lite-v1:0", &request(Task::Summarize)).await.unwrap_err();
            assert_eq!(err.kind().as_str(), kind, "{name}: {err}");
            assert!(!err.to_string().contains("AKIDEXAMPLE") && !err.to_string().contains("not-a-real"), "{err}");
        }
    }

    #[tokio::test]
    async fn given_throttling_with_retry_after_when_called_then_the_delay_is_kept() {
        let headers = [
            ("x-amzn-errortype", "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            ("retry-after", "2"),
        ];
        let (bedrock, _) = fake_bedrock(429, &headers, fixture("error_throttling.json")).await;
        let err = bedrock.call("amazon.nova-lite-v1:0", &request(Task::Generate)).await.unwrap_err();
        assert_eq!(err, ProviderError::RateLimited { retry_after: Some(Duration::from_secs(2)) });
    }

    #[tokio::test]
    async fn given_a_cut_off_body_when_called_then_the_response_is_malformed() {
        let (bedrock, _) = fake_bedrock(200, &[], br#"{"output": {"message": {"ro"#.to_vec()).await;
        let err = bedrock.call("amazon.nova-lite-v1:0", &request(Task::Generate)).await.unwrap_err();
        assert_eq!(err.kind().as_str(), "malformed_response", "{err}");
    }

    #[tokio::test]
    async fn given_a_filtered_answer_when_called_then_it_is_content_filtered() {
        for reason in ["content_filtered", "guardrail_intervened"] {
            let answer = json!({
                "output": {"message": {"role": "assistant", "content": [{"text": "Sorry, I can't help with that."}]}},
                "stopReason": reason,
                "usage": {"inputTokens": 10, "outputTokens": 7, "totalTokens": 17}
            });
            let (bedrock, _) = fake_bedrock(200, &[], answer.to_string().into_bytes()).await;
            let err = bedrock.call("amazon.nova-lite-v1:0", &request(Task::Generate)).await.unwrap_err();
            assert_eq!(err.kind().as_str(), "content_filtered", "{reason}");
        }
    }

    #[tokio::test]
    async fn given_nobody_listening_when_called_then_the_failure_is_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let config = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDEXAMPLE", "not-a-real-secret", None, None, "test"))
            .endpoint_url(format!("http://{addr}"))
            .build();
        let bedrock = BedrockProvider::new(aws_sdk_bedrockruntime::Client::from_conf(config));
        let err = bedrock.call("amazon.nova-lite-v1:0", &request(Task::Generate)).await.unwrap_err();
        assert_eq!(err.kind().as_str(), "transient", "{err}");
    }

    #[test]
    fn given_stop_reasons_when_mapped_then_length_and_filters_are_told_apart() {
        assert_eq!(finish_reason(&StopReason::MaxTokens).unwrap(), FinishReason::Length);
        assert_eq!(finish_reason(&StopReason::ToolUse).unwrap(), FinishReason::Other);
        assert_eq!(finish_reason(&StopReason::from("something_new")).unwrap(), FinishReason::Other);
        assert_eq!(finish_reason(&StopReason::MalformedModelOutput).unwrap_err().kind().as_str(), "malformed_response");
    }

    #[test]
    fn given_tasks_when_checked_then_every_chat_task_but_not_embed_is_offered() {
        let config = aws_sdk_bedrockruntime::Config::builder().behavior_version(BehaviorVersion::latest()).build();
        let bedrock = BedrockProvider::new(aws_sdk_bedrockruntime::Client::from_conf(config));
        for task in CHAT_TASKS {
            assert_eq!(bedrock.supports("us.meta.llama3-3-70b-instruct-v1:0", *task), Ok(()));
        }
        assert!(bedrock.supports("amazon.titan-embed-text-v2:0", Task::Embed).unwrap_err().contains("Converse"));
        assert_eq!(bedrock.client.config().retry_config().map(RetryConfig::max_attempts), Some(1));
    }
}
