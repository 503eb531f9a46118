//! The offline, deterministic `local` provider: small non-AI algorithms named for what they
//! are, so every workflow runs with no keys and no network.
//!
//! None of these is a language model. Each one does the simplest honest thing for its task:
//! echo the prompt, pick frequent sentences, count lexicon words, match label keywords, pull
//! values out of `key: value` lines, hash words into a vector, or fail on purpose.

mod classify;
mod echo;
mod embed;
mod extract;
mod keywords;
mod sentiment;
mod summarize;
mod text;

use async_trait::async_trait;

use self::{
    echo::echo, embed::embed, extract::extract, keywords::keywords, sentiment::sentiment, summarize::summarize,
};
use super::{Completion, ModelInfo, Provider, ProviderError, TaskRequest, estimate_tokens};
use crate::domain::{Task, TaskOutput, Usage};

/// The prefix of every model here: `local:…`.
pub const PROVIDER: &str = "local";

/// Dimensions of `local:hash-embed` vectors.
pub const EMBED_DIMS: usize = 256;

/// The deterministic offline provider. Stateless and free; `temperature` is ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalProvider;

impl LocalProvider {
    /// The provider; it holds nothing.
    pub fn new() -> Self {
        Self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    Echo,
    Extractive,
    Lexicon,
    Keywords,
    Extract,
    HashEmbed,
    Outage,
}

struct Spec {
    name: &'static str,
    model: Model,
    tasks: &'static [Task],
    description: &'static str,
}

const MODELS: [Spec; 7] = [
    Spec {
        name: "echo",
        model: Model::Echo,
        tasks: &[Task::Generate],
        description: "Not a language model: returns the prompt (then the input), cut at \
                      max_tokens × 4 characters.",
    },
    Spec {
        name: "extractive",
        model: Model::Extractive,
        tasks: &[Task::Summarize],
        description: "Extractive summary: keeps the sentences richest in frequent words \
                      (about a third, 1 to 5), in order.",
    },
    Spec {
        name: "lexicon",
        model: Model::Lexicon,
        tasks: &[Task::Classify],
        description: "Sentiment from a small English word list with simple negation; \
                      needs POSITIVE and NEGATIVE labels.",
    },
    Spec {
        name: "keywords",
        model: Model::Keywords,
        tasks: &[Task::Classify],
        description: "Counts each label's words in the text; the label with the most matches wins.",
    },
    Spec {
        name: "extract",
        model: Model::Extract,
        tasks: &[Task::Extract],
        description: "Fills a flat JSON Schema from `key: value` lines, emails, URLs, \
                      ISO dates, numbers, booleans and enum values.",
    },
    Spec {
        name: "hash-embed",
        model: Model::HashEmbed,
        tasks: &[Task::Embed],
        description: "256-dimension feature hashing of words and character trigrams: \
                      lexical overlap, no meaning.",
    },
    Spec {
        name: "outage",
        model: Model::Outage,
        tasks: &[Task::Generate, Task::Summarize, Task::Classify, Task::Extract, Task::Embed],
        description: "Always fails with a transient error, to exercise retries and fallbacks.",
    },
];

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn models(&self) -> Vec<ModelInfo> {
        MODELS.iter().map(|spec| ModelInfo::new(PROVIDER, spec.name, spec.tasks, spec.description)).collect()
    }

    /// The local models run in the worker itself.
    fn is_free(&self) -> bool {
        true
    }

    async fn call(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        self.supports(model, request.task).map_err(ProviderError::InvalidRequest)?;
        let Some(spec) = MODELS.iter().find(|spec| spec.name == model) else {
            return Err(ProviderError::InvalidRequest(format!("unknown model `{PROVIDER}:{model}`")));
        };
        let text = request.text();
        let output = match spec.model {
            Model::Echo => echo(request),
            Model::Extractive => TaskOutput::Summarize { text: summarize(text) },
            Model::Lexicon => sentiment(text, &request.labels)?,
            Model::Keywords => keywords(text, &request.labels)?,
            Model::Extract => TaskOutput::Extract { data: extract(text, request.schema.as_ref())? },
            Model::HashEmbed => TaskOutput::Embed { vector: embed(text), dims: EMBED_DIMS },
            Model::Outage => {
                return Err(ProviderError::Transient(
                    "local:outage always fails; it exists to exercise fallbacks".to_owned(),
                ));
            }
        };
        Ok(Completion { usage: usage(request, &output), output })
    }
}

/// Estimated tokens: the prompt and input in, the text (or JSON) out. Embeddings have no
/// output tokens, as with hosted embedding APIs.
fn usage(request: &TaskRequest, output: &TaskOutput) -> Usage {
    let input: Vec<&str> = [request.prompt.as_deref(), request.input.as_deref()].into_iter().flatten().collect();
    let output_tokens = match output {
        TaskOutput::Generate { text, .. } | TaskOutput::Summarize { text } => estimate_tokens(text),
        TaskOutput::Embed { .. } => 0,
        other => estimate_tokens(&other.to_json().to_string()),
    };
    Usage { input_tokens: estimate_tokens(&input.join("\n\n")), output_tokens, estimated: true }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    // Fixtures shared by the model families' tests.

    pub(super) fn request(task: Task) -> TaskRequest {
        TaskRequest {
            task,
            prompt: None,
            input: None,
            labels: Vec::new(),
            schema: None,
            max_tokens: None,
            temperature: None,
        }
    }

    pub(super) fn with_input(task: Task, input: &str) -> TaskRequest {
        TaskRequest { input: Some(input.to_owned()), ..request(task) }
    }

    pub(super) fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    pub(super) async fn call(model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        LocalProvider.call(model, request).await
    }

    pub(super) async fn classify(model: &str, text: &str, names: &[&str]) -> (String, f64, BTreeMap<String, f64>) {
        let request = TaskRequest { labels: labels(names), ..with_input(Task::Classify, text) };
        match call(model, &request).await.unwrap().output {
            TaskOutput::Classify { label, confidence, scores } => (label, confidence, scores),
            other => panic!("not a classification: {other:?}"),
        }
    }

    pub(super) fn assert_sums_to_one(scores: &BTreeMap<String, f64>) {
        let total: f64 = scores.values().sum();
        assert!((total - 1.0).abs() < 1e-9, "scores sum to {total}: {scores:?}");
    }

    // --- models and errors

    #[test]
    fn given_the_provider_when_listing_models_then_every_model_is_local_and_described() {
        let models = LocalProvider.models();
        let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "local:echo",
                "local:extractive",
                "local:lexicon",
                "local:keywords",
                "local:extract",
                "local:hash-embed",
                "local:outage"
            ]
        );
        assert!(models.iter().all(|m| m.provider == "local" && !m.description.is_empty() && !m.tasks.is_empty()));
    }

    #[tokio::test]
    async fn given_a_model_and_the_wrong_task_when_called_then_the_request_is_invalid() {
        let err = call("echo", &with_input(Task::Summarize, "text")).await.unwrap_err();
        assert!(matches!(&err, ProviderError::InvalidRequest(m) if m.contains("cannot summarize")), "{err:?}");
    }

    #[tokio::test]
    async fn given_an_unknown_model_when_called_then_the_request_is_invalid() {
        let err = call("gpt-9", &with_input(Task::Generate, "text")).await.unwrap_err();
        assert!(matches!(&err, ProviderError::InvalidRequest(m) if m.contains("unknown model")), "{err:?}");
    }

    // --- outage

    #[tokio::test]
    async fn given_the_outage_model_when_called_for_any_model_task_then_it_fails_transiently() {
        for task in [Task::Generate, Task::Summarize, Task::Classify, Task::Extract, Task::Embed] {
            let err = call("outage", &with_input(task, "x")).await.unwrap_err();
            assert!(err.is_retryable());
            assert_eq!(
                err,
                ProviderError::Transient("local:outage always fails; it exists to exercise fallbacks".into())
            );
        }
    }
}
