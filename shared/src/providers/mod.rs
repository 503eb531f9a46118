//! AI providers behind one trait: one file per provider's wire format, plus what they share
//! (`chat`: tasks as chat prompts; `http_call`: HTTP plumbing and status mapping). The engine
//! reaches them through [`crate::routing`] and only sees [`TaskRequest`] in and
//! [`Completion`] or [`ProviderError`] out.

pub mod anthropic;
#[cfg(feature = "aws")]
pub mod bedrock;
pub mod chat;
pub mod cohere;
pub mod credential;
pub mod gemini;
pub mod http_call;
pub mod huggingface;
pub mod local;
pub mod openai;
pub mod replicate;

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;
use utoipa::ToSchema;

use crate::domain::definition::DEFAULT_MAX_TOKENS;
use crate::domain::{ErrorKind, OutputError, StepDefinition, StepError, Task, TaskOutput, Usage};

pub use credential::{Credential, CredentialError};
pub use local::LocalProvider;

/// What a step asks of a model, already rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRequest {
    pub task: Task,
    /// Instructions (required for `generate`).
    pub prompt: Option<String>,
    /// The text to work on (required for every other task).
    pub input: Option<String>,
    /// Candidate labels for `classify`.
    pub labels: Vec<String>,
    /// JSON Schema the `extract` output must satisfy.
    pub schema: Option<Value>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

impl TaskRequest {
    /// A request for `step` with its templates already rendered.
    pub fn for_step(step: &StepDefinition, prompt: Option<String>, input: Option<String>) -> Self {
        Self {
            task: step.task,
            prompt,
            input,
            labels: step.labels.clone(),
            schema: step.schema.clone(),
            max_tokens: Some(step.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
            temperature: step.temperature,
        }
    }

    /// The text a task works on: `input`, else `prompt`.
    pub fn text(&self) -> &str {
        self.input.as_deref().or(self.prompt.as_deref()).unwrap_or_default()
    }
}

/// A successful model call in normalized form.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub output: TaskOutput,
    pub usage: Usage,
}

impl Completion {
    /// The completion, if its output is what `request` asked for (see [`TaskOutput::check`]).
    /// Measuring the output and running the step's schema over it is CPU work on up to a
    /// megabyte: it runs on the blocking pool, not on the runtime's worker threads.
    pub async fn checked(self, request: &TaskRequest) -> Result<Self, ProviderError> {
        let (task, schema) = (request.task, request.schema.clone());
        tokio::task::spawn_blocking(move || {
            self.output.check(task, schema.as_ref())?;
            Ok(self)
        })
        .await
        .unwrap_or_else(|_| Err(ProviderError::Transient("the output check was interrupted".to_owned())))
    }
}

/// The one error taxonomy every provider maps its failures onto.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ProviderError {
    #[error("rate limited by the provider")]
    RateLimited { retry_after: Option<Duration> },
    /// The provider is busy or warming up (Anthropic 529, Hugging Face 503 "loading", …).
    #[error("the provider is overloaded")]
    Overloaded { retry_after: Option<Duration> },
    #[error("the call timed out")]
    Timeout,
    #[error("transient provider failure: {0}")]
    Transient(String),
    #[error("the provider rejected the request: {0}")]
    InvalidRequest(String),
    #[error("the provider refused our credentials: {0}")]
    Auth(String),
    #[error("the provider account's quota is exhausted: {0}")]
    QuotaExhausted(String),
    #[error("the provider's content filter blocked the request: {0}")]
    ContentFiltered(String),
    #[error("the provider's response could not be understood: {0}")]
    MalformedResponse(String),
    /// The model answered, but the answer breaks the step's contract (e.g. its `schema`).
    #[error("the model's output is not valid for this step: {0}")]
    InvalidOutput(String),
    /// The model's output, normalized, is larger than a step output may be.
    #[error("{0}")]
    OutputTooLarge(String),
    /// The call's estimated cost would take the run past its `budget_usd`; never sent.
    #[error("the call would exceed the run's budget: {0}")]
    BudgetExceeded(String),
    /// The run has a budget and the model no price to hold it to; never sent.
    #[error("the model's cost cannot be held to the run's budget: {0}")]
    PriceUnknown(String),
    /// The router skipped the model: it failed repeatedly and is cooling down.
    #[error("skipped: {0}")]
    CircuitOpen(String),
}

impl ProviderError {
    /// Whether the same call may succeed if tried again on the same model.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// The delay the provider asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after } | ProviderError::Overloaded { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// The step error's `kind` for this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProviderError::RateLimited { .. } => ErrorKind::RateLimited,
            ProviderError::Overloaded { .. } => ErrorKind::Overloaded,
            ProviderError::Timeout => ErrorKind::Timeout,
            ProviderError::Transient(_) => ErrorKind::Transient,
            ProviderError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            ProviderError::Auth(_) => ErrorKind::Auth,
            ProviderError::QuotaExhausted(_) => ErrorKind::QuotaExhausted,
            ProviderError::ContentFiltered(_) => ErrorKind::ContentFiltered,
            ProviderError::MalformedResponse(_) => ErrorKind::MalformedResponse,
            ProviderError::InvalidOutput(_) => ErrorKind::InvalidOutput,
            ProviderError::OutputTooLarge(_) => ErrorKind::OutputTooLarge,
            ProviderError::BudgetExceeded(_) => ErrorKind::BudgetExceeded,
            ProviderError::PriceUnknown(_) => ErrorKind::PriceUnknown,
            ProviderError::CircuitOpen(_) => ErrorKind::CircuitOpen,
        }
    }
}

impl From<ProviderError> for StepError {
    fn from(error: ProviderError) -> Self {
        StepError::new(error.kind(), error.to_string())
    }
}

impl From<CredentialError> for ProviderError {
    /// A secret store that cannot be read now may answer later: worth retrying. A withheld
    /// credential never arrives: as if the provider refused our credentials.
    fn from(error: CredentialError) -> Self {
        match error {
            CredentialError::Unreadable { .. } => ProviderError::Transient(error.to_string()),
            CredentialError::Withheld { .. } => ProviderError::Auth(error.to_string()),
        }
    }
}

impl From<OutputError> for ProviderError {
    fn from(error: OutputError) -> Self {
        match error {
            // The step's own schema is at fault, not the model's answer.
            OutputError::BadSchema(_) => ProviderError::InvalidRequest(error.to_string()),
            OutputError::WrongTask { .. } | OutputError::SchemaMismatch(_) => {
                ProviderError::InvalidOutput(error.to_string())
            }
            OutputError::TooLarge { .. } => ProviderError::OutputTooLarge(error.to_string()),
        }
    }
}

/// A model a provider offers, as listed by `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelInfo {
    /// `provider:model`, the string a step's `model` takes.
    #[schema(example = "local:echo")]
    pub id: String,
    pub provider: String,
    pub tasks: Vec<Task>,
    pub description: String,
}

impl ModelInfo {
    /// `provider:id`, doing `tasks`.
    pub fn new(provider: &str, id: &str, tasks: &[Task], description: &str) -> Self {
        Self {
            id: format!("{provider}:{id}"),
            provider: provider.to_owned(),
            tasks: tasks.to_vec(),
            description: description.to_owned(),
        }
    }
}

/// One AI provider. Implementations hold their credentials and HTTP client; `call` must not
/// put secrets or raw provider bodies into errors.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The prefix in `provider:model`.
    fn name(&self) -> &'static str;

    /// The models this provider serves.
    fn models(&self) -> Vec<ModelInfo>;

    /// Whether `model` can run `task`; the error says why not, for validation messages.
    fn supports(&self, model: &str, task: Task) -> Result<(), String> {
        let id = format!("{}:{model}", self.name());
        let models = self.models();
        let Some(info) = models.iter().find(|m| m.id == id) else {
            let known: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
            return Err(format!("unknown model `{id}`; {} offers {}", self.name(), known.join(", ")));
        };
        if info.tasks.contains(&task) {
            Ok(())
        } else {
            let tasks: Vec<&str> = info.tasks.iter().map(|t| t.as_str()).collect();
            Err(format!("`{id}` cannot {task}; it does {}", tasks.join(", ")))
        }
    }

    async fn call(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError>;

    /// Whether its calls cost nothing: the models run in this process (`local`). Any other
    /// model costs what the price table says, and when the table has no price for it, an
    /// unknown amount (never zero).
    fn is_free(&self) -> bool {
        false
    }

    /// Providers that can also run a call as a job finishing later through a webhook
    /// (Replicate) return `Some`; the router then submits instead of calling whenever the
    /// deployment has a public callback URL.
    fn jobs(&self) -> Option<&dyn Jobs> {
        None
    }
}

/// A provider's asynchronous side: start a job, hear about it by webhook, or ask once.
#[async_trait]
pub trait Jobs: Send + Sync {
    /// Starts `request` on `model`; the provider will POST the outcome to `callback_url`.
    /// Returns the provider's job id.
    async fn submit(&self, model: &str, request: &TaskRequest, callback_url: &str) -> Result<String, ProviderError>;

    /// Asks for a job's state once: the sweep does this before giving up on a silent job.
    async fn poll(&self, job_id: &str, request: &TaskRequest) -> Result<JobReport, ProviderError>;

    /// Verifies a webhook (signature, freshness) and reads the job's state from its body.
    /// `request` is the step's request shape (task, labels, schema) used to normalize output.
    async fn receive(&self, callback: &Callback<'_>, request: &TaskRequest) -> Result<JobReport, CallbackRejection>;
}

/// A webhook as received: its headers and raw body, and when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Callback<'a> {
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
    pub received_at: jiff::Timestamp,
}

/// What a provider says about one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReport {
    pub job_id: String,
    /// The webhook's own id (Standard Webhooks `webhook-id`), stable across redeliveries.
    pub delivery_id: Option<String>,
    pub state: JobState,
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    Running,
    /// Finished: the normalized result, and the provider's raw output for archiving (the
    /// provider may delete it soon after).
    Finished {
        result: Result<Completion, ProviderError>,
        raw_output: Value,
    },
}

/// Why a webhook was not accepted. Answered with a 4xx; the details stay in our logs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallbackRejection {
    #[error("the webhook signature is missing or does not verify")]
    BadSignature,
    #[error("the webhook timestamp is outside the accepted window")]
    Stale,
    #[error("the webhook body is not a job this provider sends: {0}")]
    Malformed(String),
    /// The secret to verify it with cannot be read right now; the provider should retry.
    #[error("the webhook cannot be verified now: {0}")]
    Unavailable(String),
}

/// Why no model serves `task`: a person decides an `approval`, a child run does a `workflow`.
pub(crate) fn not_a_model_task(task: Task) -> String {
    format!("a `{task}` step calls no model")
}

/// Rough token count for providers that report none: about four characters a token.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}
