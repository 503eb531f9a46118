//! Every provider adapter against the mock provider server, through the one contract in
//! `chorus_tests::provider_contract`: each task, each fault mapped onto the taxonomy, the
//! retry and fallback decisions that follow, usage and cost recorded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chorus_tests::provider_contract::{MockServer, ProviderCase, check_provider, usual_faults};

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
