//! Every provider adapter against the mock provider server, through the one contract in
//! `chorus_tests::provider_contract`: each task, each fault mapped onto the taxonomy, the
//! retry and fallback decisions that follow, usage and cost recorded. Each factory below
//! points one adapter at a mock server of its own; `provider_contract!` makes one test per
//! clause of it (`openai::retries_a_rate_limit`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chorus_tests::provider_contract::{MockServer, ProviderCase, usual_faults};

chorus_tests::provider_contract!(cohere, make_cohere);
chorus_tests::provider_contract!(huggingface, make_huggingface);
chorus_tests::provider_contract!(bedrock, make_bedrock);
chorus_tests::provider_contract!(replicate_in_sync_mode, make_replicate_in_sync_mode);
chorus_tests::provider_contract!(openai, make_openai);
chorus_tests::provider_contract!(anthropic, make_anthropic);
chorus_tests::provider_contract!(gemini_chat, make_gemini_chat);
// The fault models are chat models, which cannot embed: `gemini_chat` maps Gemini's faults and the
// embedding case has none, so the clauses about faults do not apply to it.
chorus_tests::provider_contract!(gemini_embed, make_gemini_embed, only [
    does_each_task_with_usage_and_a_price,
    retries_a_server_error_on_the_same_model,
    never_retries_quota_exhaustion,
]);

async fn make_cohere() -> (MockServer, ProviderCase) {
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
    (mock, case)
}

async fn make_huggingface() -> (MockServer, ProviderCase) {
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
    (mock, case)
}

async fn make_bedrock() -> (MockServer, ProviderCase) {
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
    (mock, case)
}

async fn make_replicate_in_sync_mode() -> (MockServer, ProviderCase) {
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
    (mock, case)
}

async fn make_openai() -> (MockServer, ProviderCase) {
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
    (mock, case)
}

async fn make_anthropic() -> (MockServer, ProviderCase) {
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
    (mock, case)
}

/// Gemini's `embedContent` reports no usage while `generateContent` does, so the chat models
/// and the embedding model are two cases.
fn gemini(mock: &MockServer) -> std::sync::Arc<chorus::providers::gemini::GeminiProvider> {
    use chorus::providers::{gemini::GeminiProvider, http_call};

    let key = secrecy::SecretString::from(mock.url_for("GEMINI_API_KEY"));
    let provider = GeminiProvider::new(http_call::client().unwrap(), key, Some(mock.url_for("GEMINI_BASE_URL")));
    std::sync::Arc::new(provider)
}

async fn make_gemini_chat() -> (MockServer, ProviderCase) {
    use chorus::domain::Task;

    let mock = MockServer::start().await;
    let case = ProviderCase {
        provider: gemini(&mock),
        models: vec![
            (Task::Generate, "gemini-2.5-flash"),
            (Task::Summarize, "gemini-2.5-flash-lite"),
            (Task::Classify, "gemini-2.5-flash"),
            (Task::Extract, "gemini-2.5-pro"),
        ],
        reports_usage: true,
        faults: usual_faults(),
    };
    (mock, case)
}

async fn make_gemini_embed() -> (MockServer, ProviderCase) {
    use chorus::domain::Task;

    let mock = MockServer::start().await;
    let case = ProviderCase {
        provider: gemini(&mock),
        models: vec![(Task::Embed, "gemini-embedding-001")],
        reports_usage: false,
        faults: Vec::new(),
    };
    (mock, case)
}
