//! Hugging Face Inference (the `hf-inference` provider behind the Inference Providers router):
//! task pipelines run on models from the Hub, `POST {base}/models/{model-id}` with a Bearer
//! `HF_TOKEN` and `{"inputs": text, "parameters": {…}}`.
//!
//! Three pipelines map onto our tasks: `text-classification` (classify), `summarization`
//! (summarize) and `feature-extraction` (embed). The pipeline is a property of the model on
//! the Hub, not of the request, and the adapter cannot tell it from the id: it accepts any
//! model for those three tasks and reads the answer in the shape the task expects.
//!
//! Wire-format quirks:
//! - Model ids contain a `/` (`facebook/bart-large-cnn`) and go into the path as they are.
//! - text-classification answers `[[{"label", "score"}, …]]` (one list per input) or, from some
//!   deployments, the flat `[{"label", "score"}, …]`; both are accepted. Labels are the model's
//!   own (`POSITIVE`, `LABEL_0`, …) and are matched case-insensitively onto the step's labels.
//! - feature-extraction answers a sentence vector `[f32]` (sentence-transformers models) or
//!   per-token vectors `[[f32]]`, sometimes wrapped once more per input `[[[f32]]]`; token
//!   vectors are mean-pooled into one.
//! - No usage is reported (HF bills compute time): tokens are estimated and marked so.
//! - Errors are `{"error": "…"}`, where `error` may also be a list of strings. A cold model
//!   answers 503 `{"error": "Model … is currently loading", "estimated_time": 20.0}`: busy, not
//!   broken, so it is `Overloaded` with the estimate as the delay to wait.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, StatusCode};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::http_call;
use super::{Completion, Credential, ModelInfo, Provider, ProviderError, TaskRequest, estimate_tokens};
use crate::domain::{Task, TaskOutput, Usage};
use crate::providers::not_a_model_task;

/// The prefix in `huggingface:<org>/<model>`.
pub const PROVIDER: &str = "huggingface";

/// The router's route to Hugging Face's own inference; `/models/{id}` is appended.
pub const DEFAULT_BASE_URL: &str = "https://router.huggingface.co/hf-inference";

/// Well-known models for each pipeline, for `GET /v1/models`; any Hub model id is accepted.
const MODELS: [(&str, Task, &str); 4] = [
    (
        "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
        Task::Classify,
        "Sentiment (SST-2): POSITIVE or NEGATIVE, English.",
    ),
    (
        "facebook/bart-large-cnn",
        Task::Summarize,
        "BART fine-tuned on CNN/Daily Mail: abstractive news-style summaries.",
    ),
    (
        "sentence-transformers/all-MiniLM-L6-v2",
        Task::Embed,
        "Small, fast sentence embeddings (384 dimensions), English.",
    ),
    ("BAAI/bge-base-en-v1.5", Task::Embed, "BGE base: strong English retrieval embeddings (768 dimensions)."),
];

/// The Hugging Face Inference adapter. Holds the shared HTTP client and the access token.
pub struct HuggingFaceProvider {
    client: reqwest::Client,
    token: Credential,
    base_url: String,
}

impl fmt::Debug for HuggingFaceProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token stays out on purpose.
        f.debug_struct("HuggingFaceProvider").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl HuggingFaceProvider {
    /// An adapter calling `base_url` (default [`DEFAULT_BASE_URL`]) with the access `token`.
    pub fn new(client: reqwest::Client, token: impl Into<Credential>, base_url: Option<String>) -> Self {
        let token = token.into();
        let base_url = base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()).trim_end_matches('/').to_owned();
        Self { client, token, base_url }
    }

    async fn classify(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        let body = InferenceRequest::<()> { inputs: request.text(), parameters: None };
        let answer: Classification = self.infer(model, &body).await?;
        let output = classification(&request.labels, answer.into_scores())?;
        let label = match &output {
            TaskOutput::Classify { label, .. } => label.as_str(),
            _ => "",
        };
        Ok(Completion { usage: estimated(request, label), output })
    }

    async fn summarize(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        let parameters = SummarizationParameters { max_length: request.max_tokens };
        let body = InferenceRequest { inputs: request.text(), parameters: Some(parameters) };
        let answer: Vec<Summary> = self.infer(model, &body).await?;
        let Some(summary) = answer.into_iter().next() else {
            return Err(ProviderError::MalformedResponse("the summarization answer is an empty list".to_owned()));
        };
        let text = summary.summary_text.trim().to_owned();
        Ok(Completion { usage: estimated(request, &text), output: TaskOutput::Summarize { text } })
    }

    async fn embed(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        let body = InferenceRequest::<()> { inputs: request.text(), parameters: None };
        let answer: Features = self.infer(model, &body).await?;
        let vector = answer.sentence_vector()?;
        let output = TaskOutput::Embed { dims: vector.len(), vector };
        Ok(Completion { usage: estimated(request, ""), output })
    }

    /// Runs `model`'s pipeline on `body` and parses the answer as `T`.
    async fn infer<T: DeserializeOwned>(&self, model: &str, body: &impl Serialize) -> Result<T, ProviderError> {
        let request = self
            .client
            .post(format!("{}/models/{}", self.base_url, model_path(model)?))
            .bearer_auth(self.token.get().await?.expose_secret())
            .json(body);
        let reply = http_call::send(request).await?;
        if !reply.status.is_success() {
            return Err(error_from(reply.status, &reply.headers, &reply.body));
        }
        http_call::parse(&reply.body)
    }
}

#[async_trait]
impl Provider for HuggingFaceProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn models(&self) -> Vec<ModelInfo> {
        MODELS.iter().map(|(id, task, description)| ModelInfo::new(PROVIDER, id, &[*task], description)).collect()
    }

    /// Any Hub model for classify, summarize and embed: whether the model runs that pipeline
    /// is only known when it answers.
    fn supports(&self, model: &str, task: Task) -> Result<(), String> {
        model_path(model).map_err(|err| err.to_string())?;
        match task {
            Task::Classify | Task::Summarize | Task::Embed => Ok(()),
            Task::Generate | Task::Extract => Err(format!(
                "`{PROVIDER}:{model}` cannot {task}: this adapter runs Hugging Face task pipelines \
                 (text-classification, summarization, feature-extraction); use a chat model to {task}"
            )),
            task @ (Task::Approval | Task::Workflow) => Err(not_a_model_task(task)),
        }
    }

    async fn call(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        self.supports(model, request.task).map_err(ProviderError::InvalidRequest)?;
        match request.task {
            Task::Classify => self.classify(model, request).await,
            Task::Summarize => self.summarize(model, request).await,
            _ => self.embed(model, request).await,
        }
    }
}

/// `model` when it is a Hub id (`org/name`, letters, digits, `-_.`), which goes into the URL
/// path unescaped; anything else could reach another path.
fn model_path(model: &str) -> Result<&str, ProviderError> {
    let valid_part = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let parts: Vec<&str> = model.split('/').collect();
    if parts.len() <= 2 && parts.iter().all(|part| valid_part(part)) {
        Ok(model)
    } else {
        Err(ProviderError::InvalidRequest(format!("`{model}` is not a Hugging Face model id (`org/name`)")))
    }
}

/// HF reports no usage: about four characters a token, for the input and `output`.
fn estimated(request: &TaskRequest, output: &str) -> Usage {
    Usage { input_tokens: estimate_tokens(request.text()), output_tokens: estimate_tokens(output), estimated: true }
}

// ---- wire format ----

#[derive(Debug, Serialize)]
struct InferenceRequest<'a, P> {
    inputs: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<P>,
}

#[derive(Debug, Serialize)]
struct SummarizationParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_length: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Classification {
    /// One list per input, as the pipeline answers for `inputs` given as a string too.
    PerInput(Vec<Vec<LabelScore>>),
    Flat(Vec<LabelScore>),
}

impl Classification {
    fn into_scores(self) -> Vec<LabelScore> {
        match self {
            Classification::PerInput(lists) => lists.into_iter().next().unwrap_or_default(),
            Classification::Flat(scores) => scores,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct LabelScore {
    label: String,
    score: f64,
}

#[derive(Debug, Deserialize)]
struct Summary {
    summary_text: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Features {
    Sentence(Vec<f32>),
    Tokens(Vec<Vec<f32>>),
    TokensPerInput(Vec<Vec<Vec<f32>>>),
}

impl Features {
    /// One vector for the text: the sentence vector, or the mean of the token vectors.
    fn sentence_vector(self) -> Result<Vec<f32>, ProviderError> {
        let vector = match self {
            Features::Sentence(vector) => vector,
            Features::Tokens(tokens) => mean_pool(&tokens)?,
            Features::TokensPerInput(inputs) => mean_pool(inputs.first().map(Vec::as_slice).unwrap_or_default())?,
        };
        if vector.is_empty() {
            return Err(ProviderError::MalformedResponse("the feature-extraction answer is empty".to_owned()));
        }
        Ok(vector)
    }
}

fn mean_pool(tokens: &[Vec<f32>]) -> Result<Vec<f32>, ProviderError> {
    let dims = tokens.first().map_or(0, Vec::len);
    if tokens.iter().any(|token| token.len() != dims) {
        return Err(ProviderError::MalformedResponse("token vectors of different lengths".to_owned()));
    }
    let mut sum = vec![0.0_f32; dims];
    for token in tokens {
        sum.iter_mut().zip(token).for_each(|(total, value)| *total += value);
    }
    let count = tokens.len().max(1) as f32;
    Ok(sum.into_iter().map(|total| total / count).collect())
}

/// The step's label the model scored highest, its score as the confidence, and a score for
/// every step label (0 for labels the model does not have).
fn classification(labels: &[String], scores: Vec<LabelScore>) -> Result<TaskOutput, ProviderError> {
    if labels.is_empty() {
        return Err(ProviderError::InvalidRequest("classify needs at least one label".to_owned()));
    }
    let score_of = |label: &String| {
        scores
            .iter()
            .filter(|s| s.label.trim().eq_ignore_ascii_case(label))
            .map(|s| s.score.clamp(0.0, 1.0))
            .reduce(f64::max)
    };
    let matched: Vec<(&String, Option<f64>)> = labels.iter().map(|label| (label, score_of(label))).collect();
    let best = matched.iter().filter_map(|(label, score)| score.map(|score| (*label, score))).fold(
        None,
        |best: Option<(&String, f64)>, (label, score)| match best {
            Some((_, top)) if top >= score => best,
            _ => Some((label, score)),
        },
    );
    let Some((label, confidence)) = best else {
        let theirs: Vec<&str> = scores.iter().map(|s| s.label.as_str()).collect();
        return Err(ProviderError::InvalidOutput(format!(
            "the model's labels ({}) match none of the step's labels",
            theirs.join(", ")
        )));
    };
    let scores = matched.iter().map(|(label, score)| ((*label).clone(), score.unwrap_or(0.0))).collect();
    Ok(TaskOutput::Classify { label: label.clone(), confidence, scores })
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<ErrorText>,
    /// Seconds until a loading model is ready.
    #[serde(default)]
    estimated_time: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ErrorText {
    One(String),
    Many(Vec<String>),
}

impl ErrorText {
    fn joined(self) -> String {
        match self {
            ErrorText::One(text) => text,
            ErrorText::Many(texts) => texts.join("; "),
        }
    }
}

/// Hugging Face's error answer as a [`ProviderError`].
fn error_from(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let body = serde_json::from_slice::<ErrorBody>(body).unwrap_or_default();
    let message = body.error.map(ErrorText::joined).unwrap_or_default();
    // Out of monthly credits: whatever the status, waiting minutes will not bring them back.
    if message.to_lowercase().contains("exceeded your monthly included credits") {
        return ProviderError::QuotaExhausted(http_call::short(&message));
    }
    match status.as_u16() {
        // Never HF's words: they may echo the token.
        401 | 403 => ProviderError::Auth(format!("Hugging Face refused the token (HTTP {status})")),
        402 => ProviderError::QuotaExhausted(http_call::short(&message)),
        429 => ProviderError::RateLimited { retry_after: http_call::retry_after(headers) },
        503 => {
            let loading = body.estimated_time.and_then(|secs| Duration::try_from_secs_f64(secs).ok());
            ProviderError::Overloaded { retry_after: http_call::retry_after(headers).or(loading) }
        }
        400 | 404 | 422 => ProviderError::InvalidRequest(http_call::short(&message)),
        _ => http_call::error_for_status(status, headers, &message),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/src/providers/fixtures/huggingface/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    fn provider() -> HuggingFaceProvider {
        HuggingFaceProvider::new(http_call::client().unwrap(), "hf_secret_token", None)
    }

    #[test]
    fn given_the_recorded_sst2_answer_when_read_then_positive_wins_with_its_score() {
        let answer: Classification = http_call::parse(&fixture("text_classification.json")).unwrap();
        let output = classification(&labels(&["positive", "negative"]), answer.into_scores()).unwrap();
        let TaskOutput::Classify { label, confidence, scores } = output else { panic!("not classify") };
        assert_eq!(label, "positive");
        assert!((confidence - 0.999_869_585).abs() < 1e-6);
        assert!(scores["negative"] < 0.001);
    }

    #[test]
    fn given_a_flat_answer_and_a_label_the_model_lacks_when_read_then_it_scores_zero() {
        let answer: Classification =
            serde_json::from_value(json!([{"label": "NEGATIVE", "score": 0.7}, {"label": "POSITIVE", "score": 0.3}]))
                .unwrap();
        let output = classification(&labels(&["POSITIVE", "NEGATIVE", "MIXED"]), answer.into_scores()).unwrap();
        let TaskOutput::Classify { label, confidence, scores } = output else { panic!("not classify") };
        assert_eq!((label.as_str(), confidence), ("NEGATIVE", 0.7));
        assert_eq!(scores["MIXED"], 0.0);
    }

    #[test]
    fn given_model_labels_outside_the_step_when_read_then_the_output_is_invalid() {
        let scores = vec![LabelScore { label: "LABEL_0".into(), score: 0.9 }];
        let err = classification(&labels(&["POSITIVE"]), scores).unwrap_err();
        assert_eq!(err.kind().as_str(), "invalid_output");
        assert!(err.to_string().contains("LABEL_0"), "{err}");
    }

    #[test]
    fn given_the_recorded_summary_when_parsed_then_its_text_is_the_summary() {
        let answer: Vec<Summary> = http_call::parse(&fixture("summarization.json")).unwrap();
        assert!(answer[0].summary_text.starts_with("The tower is 324 metres"), "{}", answer[0].summary_text);
    }

    #[test]
    fn given_the_recorded_sentence_embedding_when_read_then_it_is_used_as_is() {
        let answer: Features = http_call::parse(&fixture("feature_extraction.json")).unwrap();
        let vector = answer.sentence_vector().unwrap();
        assert_eq!(vector.len(), 384);
        assert!((vector[0] + 0.015_488_003).abs() < 1e-7);
    }

    #[test]
    fn given_token_vectors_when_read_then_they_are_mean_pooled() {
        let tokens: Features = serde_json::from_value(json!([[1.0, 2.0], [3.0, 4.0]])).unwrap();
        assert_eq!(tokens.sentence_vector().unwrap(), vec![2.0, 3.0]);
        let per_input: Features = serde_json::from_value(json!([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]])).unwrap();
        assert_eq!(per_input.sentence_vector().unwrap(), vec![1.0, 1.0]);
        let ragged: Features = serde_json::from_value(json!([[1.0], [1.0, 2.0]])).unwrap();
        assert_eq!(ragged.sentence_vector().unwrap_err().kind().as_str(), "malformed_response");
        let empty: Features = serde_json::from_value(json!([])).unwrap();
        assert_eq!(empty.sentence_vector().unwrap_err().kind().as_str(), "malformed_response");
    }

    #[test]
    fn given_each_recorded_error_when_mapped_then_it_lands_on_its_kind() {
        let none = HeaderMap::new();
        let cases = [
            (400, "error_400.json", "invalid_request"),
            (401, "error_401.json", "auth"),
            (402, "error_402.json", "quota_exhausted"),
            (422, "error_422.json", "invalid_request"),
            (429, "error_429.json", "rate_limited"),
            (503, "error_503_loading.json", "overloaded"),
        ];
        for (status, name, kind) in cases {
            let err = error_from(StatusCode::from_u16(status).unwrap(), &none, &fixture(name));
            assert_eq!(err.kind().as_str(), kind, "{name}: {err}");
        }
        let list = error_from(StatusCode::BAD_REQUEST, &none, &fixture("error_400.json"));
        assert!(list.to_string().contains("inputs.context"), "{list}");
        assert_eq!(error_from(StatusCode::INTERNAL_SERVER_ERROR, &none, b"{}").kind().as_str(), "transient");
    }

    #[test]
    fn given_a_loading_model_when_mapped_then_the_estimated_time_is_the_delay() {
        let err = error_from(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), &fixture("error_503_loading.json"));
        assert_eq!(err, ProviderError::Overloaded { retry_after: Some(Duration::from_secs(20)) });
        assert!(err.is_retryable());
    }

    #[test]
    fn given_credits_exhausted_under_another_status_when_mapped_then_it_is_still_a_quota() {
        let err = error_from(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), &fixture("error_402.json"));
        assert_eq!(err.kind().as_str(), "quota_exhausted");
    }

    #[test]
    fn given_each_task_when_serialized_then_the_body_is_inputs_and_parameters() {
        let classify = InferenceRequest::<()> { inputs: "I like you", parameters: None };
        assert_eq!(serde_json::to_value(classify).unwrap(), json!({"inputs": "I like you"}));
        let summarize = InferenceRequest {
            inputs: "Long text",
            parameters: Some(SummarizationParameters { max_length: Some(60) }),
        };
        assert_eq!(
            serde_json::to_value(summarize).unwrap(),
            json!({"inputs": "Long text", "parameters": {"max_length": 60}})
        );
    }

    #[test]
    fn given_model_ids_when_checked_then_hub_ids_pass_and_paths_do_not() {
        assert_eq!(model_path("facebook/bart-large-cnn").unwrap(), "facebook/bart-large-cnn");
        assert!(model_path("gpt2").is_ok());
        for bad in ["../admin", "a/b/c", "org/model?x=1", "", "org/"] {
            assert!(model_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn given_tasks_when_checked_then_only_the_three_pipelines_are_offered() {
        let hf = provider();
        for task in [Task::Classify, Task::Summarize, Task::Embed] {
            assert_eq!(hf.supports("someone/any-model", task), Ok(()));
        }
        assert!(hf.supports("gpt2", Task::Generate).unwrap_err().contains("pipelines"));
        assert!(hf.supports("gpt2", Task::Extract).is_err());
        assert!(!format!("{hf:?}").contains("hf_secret"));
    }
}
