//! Every provider adapter against the mock provider server, through the one contract in
//! `chorus_tests::provider_contract`: each task, each fault mapped onto the taxonomy, the
//! retry and fallback decisions that follow, usage and cost recorded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chorus_tests::provider_contract::{MockServer, ProviderCase, check_provider, usual_faults};

#[tokio::test]
async fn cohere() {
    use chorus::domain::Task;
    use chorus::providers::{cohere::CohereProvider, http_call};

    let mock = MockServer::start().await;
    let key = secrecy::SecretString::from("cohere-mock");
    let provider = CohereProvider::new(http_call::client().unwrap(), key, Some(mock.url_for("COHERE_BASE_URL")));
    let case = ProviderCase {
        provider: std::sync::Arc::new(provider),
        models: vec![
            (Task::Generate, "command-a-03-2025"),
            (Task::Summarize, "command-r-08-2024"),
            (Task::Classify, "command-a-03-2025"),
            (Task::Extract, "command-a-03-2025"),
            (Task::Embed, "embed-v4.0"),
        ],
        reports_usage: true,
        faults: usual_faults(),
    };
    check_provider(&mock, case).await;
}

#[tokio::test]
async fn huggingface() {
    use chorus::domain::Task;
    use chorus::providers::{http_call, huggingface::HuggingFaceProvider};
    use chorus_mock_providers::Fault;

    let mock = MockServer::start().await;
    let token = secrecy::SecretString::from("hf_mock");
    let provider = HuggingFaceProvider::new(http_call::client().unwrap(), token, Some(mock.url_for("HF_BASE_URL")));
    let case = ProviderCase {
        provider: std::sync::Arc::new(provider),
        models: vec![
            (Task::Classify, "distilbert/distilbert-base-uncased-finetuned-sst-2-english"),
            (Task::Summarize, "facebook/bart-large-cnn"),
            (Task::Embed, "sentence-transformers/all-MiniLM-L6-v2"),
        ],
        reports_usage: false,
        // Hugging Face's pipelines have no content filter to trip.
        faults: usual_faults().into_iter().filter(|(fault, _)| *fault != Fault::ContentFilter).collect(),
    };
    check_provider(&mock, case).await;
}

#[tokio::test]
async fn bedrock() {
    use aws_config::BehaviorVersion;
    use aws_config::retry::RetryConfig;
    use aws_sdk_bedrockruntime::config::Credentials;
    use chorus::domain::Task;
    use chorus::providers::bedrock::BedrockProvider;

    let mock = MockServer::start().await;
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDMOCK", "mock-secret", None, None, "conformance"))
        .endpoint_url(mock.url_for("AWS_ENDPOINT_URL_BEDROCK_RUNTIME"))
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    let provider = BedrockProvider::new(aws_sdk_bedrockruntime::Client::new(&config));
    let case = ProviderCase {
        provider: std::sync::Arc::new(provider),
        models: vec![
            (Task::Generate, "amazon.nova-lite-v1:0"),
            (Task::Summarize, "anthropic.claude-3-haiku-20240307-v1:0"),
            (Task::Classify, "us.anthropic.claude-sonnet-4-20250514-v1:0"),
            (Task::Extract, "amazon.nova-pro-v1:0"),
        ],
        reports_usage: true,
        faults: usual_faults(),
    };
    check_provider(&mock, case).await;
}

#[tokio::test]
async fn replicate_in_sync_mode() {
    use chorus::domain::Task;
    use chorus::providers::http_call;
    use chorus::providers::replicate::ReplicateProvider;
    use chorus_mock_providers::DEFAULT_WEBHOOK_SECRET;

    let mock = MockServer::start().await;
    let provider = ReplicateProvider::new(
        http_call::client().unwrap(),
        "r8_mock",
        Some(chorus::providers::Credential::from(DEFAULT_WEBHOOK_SECRET)),
        Some(mock.url_for("REPLICATE_BASE_URL")),
    );
    let case = ProviderCase {
        provider: std::sync::Arc::new(provider),
        models: vec![
            (Task::Generate, "meta/meta-llama-3-8b-instruct"),
            (Task::Summarize, "meta/meta-llama-3-8b-instruct"),
            (Task::Classify, "meta/meta-llama-3-70b-instruct"),
            (Task::Extract, "meta/meta-llama-3.1-405b-instruct"),
        ],
        reports_usage: true,
        faults: usual_faults(),
    };
    check_provider(&mock, case).await;
}

#[tokio::test]
async fn openai() {
    use chorus::domain::Task;
    use chorus::providers::{http_call, openai::OpenAiProvider};

    let mock = MockServer::start().await;
    let key = secrecy::SecretString::from(mock.url_for("OPENAI_API_KEY"));
    let provider = OpenAiProvider::new(http_call::client().unwrap(), key, Some(mock.url_for("OPENAI_BASE_URL")));
    let case = ProviderCase {
        provider: std::sync::Arc::new(provider),
        models: vec![
            (Task::Generate, "gpt-4o-mini"),
            (Task::Summarize, "gpt-4o-mini"),
            (Task::Classify, "gpt-4o-mini"),
            (Task::Extract, "gpt-4o-mini"),
            (Task::Embed, "text-embedding-3-small"),
        ],
        reports_usage: true,
        faults: usual_faults(),
    };
    check_provider(&mock, case).await;
}

#[tokio::test]
async fn anthropic() {
    use chorus::domain::Task;
    use chorus::providers::{anthropic::AnthropicProvider, http_call};

    let mock = MockServer::start().await;
    let key = secrecy::SecretString::from(mock.url_for("ANTHROPIC_API_KEY"));
    let provider = AnthropicProvider::new(http_call::client().unwrap(), key, Some(mock.url_for("ANTHROPIC_BASE_URL")));
    let case = ProviderCase {
        provider: std::sync::Arc::new(provider),
        models: vec![
            (Task::Generate, "claude-haiku-4-5"),
            (Task::Summarize, "claude-haiku-4-5"),
            (Task::Classify, "claude-haiku-4-5"),
            (Task::Extract, "claude-sonnet-4-5"),
        ],
        reports_usage: true,
        faults: usual_faults(),
    };
    check_provider(&mock, case).await;
}

/// Gemini's `embedContent` reports no usage while `generateContent` does, so the chat models
/// and the embedding model are two cases against the same mock.
#[tokio::test]
async fn gemini() {
    use chorus::domain::Task;
    use chorus::providers::{gemini::GeminiProvider, http_call};

    let mock = MockServer::start().await;
    let key = secrecy::SecretString::from(mock.url_for("GEMINI_API_KEY"));
    let provider = GeminiProvider::new(http_call::client().unwrap(), key, Some(mock.url_for("GEMINI_BASE_URL")));
    let provider = std::sync::Arc::new(provider);
    let chat = ProviderCase {
        provider: provider.clone(),
        models: vec![
            (Task::Generate, "gemini-2.5-flash"),
            (Task::Summarize, "gemini-2.5-flash-lite"),
            (Task::Classify, "gemini-2.5-flash"),
            (Task::Extract, "gemini-2.5-pro"),
        ],
        reports_usage: true,
        faults: usual_faults(),
    };
    check_provider(&mock, chat).await;
    let embed = ProviderCase {
        provider,
        models: vec![(Task::Embed, "gemini-embedding-001")],
        reports_usage: false,
        // The faults were mapped above; fault models are chat models, which cannot embed.
        faults: Vec::new(),
    };
    check_provider(&mock, embed).await;
}
