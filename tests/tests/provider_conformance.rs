//! Every provider adapter against the mock provider server, through the one contract in
//! `chorus_tests::provider_contract`: each task, each fault mapped onto the taxonomy, the
//! retry and fallback decisions that follow, usage and cost recorded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chorus_tests::provider_contract::{MockServer, ProviderCase, check_provider, usual_faults};

#[tokio::test]
async fn replicate_in_sync_mode() {
    use chorus::domain::Task;
    use chorus::notify::WebhookSecret;
    use chorus::providers::http_call;
    use chorus::providers::replicate::ReplicateProvider;
    use chorus_cli::mock::DEFAULT_WEBHOOK_SECRET;

    let mock = MockServer::start().await;
    let provider = ReplicateProvider::new(
        http_call::client().unwrap(),
        secrecy::SecretString::from("r8_mock"),
        Some(WebhookSecret::parse(DEFAULT_WEBHOOK_SECRET).unwrap()),
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
