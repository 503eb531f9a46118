//! Replicate's asynchronous side against the mock provider server: a prediction submitted with
//! a webhook, the signed webhook arriving at a loopback receiver standing in for our callback
//! endpoint, and `receive` verifying and normalizing it; forgeries and replays refused;
//! `poll`, sync mode and the content filter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::http::HeaderName;

use chorus::domain::{Task, TaskOutput};
use chorus::providers::replicate::ReplicateProvider;
use chorus::providers::{
    Callback, CallbackRejection, Credential, JobReport, JobState, Provider, ProviderError, http_call,
};
use chorus::webhooks::signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use chorus::webhooks::{WebhookSecret, signed_headers};
use chorus_mock_providers::DEFAULT_WEBHOOK_SECRET;
use chorus_tests::provider_contract::{MockServer, request};
use chorus_tests::webhook_receiver::{Delivery, start_receiver};
use tokio::sync::mpsc::UnboundedReceiver;

const MODEL: &str = "meta/meta-llama-3-8b-instruct";

fn secret() -> WebhookSecret {
    WebhookSecret::parse(DEFAULT_WEBHOOK_SECRET).unwrap()
}

fn replicate(mock: &MockServer) -> ReplicateProvider {
    ReplicateProvider::new(
        http_call::client().unwrap(),
        "r8_mock",
        Some(Credential::value(secret().to_whsec())),
        Some(mock.url_for("REPLICATE_BASE_URL")),
    )
}

async fn next_delivery(deliveries: &mut UnboundedReceiver<Delivery>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), deliveries.recv())
        .await
        .expect("the webhook arrives within 5 s")
        .expect("the receiver is running")
}

async fn receive(
    provider: &ReplicateProvider,
    delivery: &Delivery,
    task: Task,
    at: jiff::Timestamp,
) -> Result<JobReport, CallbackRejection> {
    let callback = Callback { headers: &delivery.headers, body: &delivery.body, received_at: at };
    provider.jobs().unwrap().receive(&callback, &request(task)).await
}

/// Submits `task` on `model` and waits for its webhook.
async fn submit_and_wait(provider: &ReplicateProvider, model: &str, task: Task) -> (String, Delivery) {
    let (hook, mut deliveries) = start_receiver().await;
    let job_id = provider.jobs().unwrap().submit(model, &request(task), &hook).await.unwrap();
    let delivery = next_delivery(&mut deliveries).await;
    (job_id, delivery)
}

#[tokio::test]
async fn given_a_submitted_prediction_when_its_signed_webhook_arrives_then_receive_yields_the_normalized_result() {
    let mock = MockServer::start().await;
    let provider = replicate(&mock);
    let (job_id, delivery) = submit_and_wait(&provider, MODEL, Task::Classify).await;

    assert_eq!(delivery.webhook_id(), format!("msg_{job_id}"), "only the `completed` event was asked for");
    let report = receive(&provider, &delivery, Task::Classify, jiff::Timestamp::now()).await.unwrap();
    assert_eq!(report.job_id, job_id);
    assert_eq!(report.delivery_id.as_deref(), Some(delivery.webhook_id()));
    let JobState::Finished { result, raw_output } = report.state else { panic!("the job is still running") };
    let completion = result.unwrap();
    let TaskOutput::Classify { label, .. } = &completion.output else { panic!("{:?}", completion.output) };
    assert_eq!(label, "POSITIVE");
    assert!(!completion.usage.estimated && completion.usage.input_tokens > 0 && completion.usage.output_tokens > 0);
    assert!(raw_output.is_array(), "the raw chunks are kept for archiving: {raw_output}");
}

#[tokio::test]
async fn given_a_webhook_signed_with_another_secret_when_received_then_it_is_a_bad_signature() {
    let mock = MockServer::start().await;
    let provider = replicate(&mock);
    let (_, mut delivery) = submit_and_wait(&provider, MODEL, Task::Generate).await;

    let forger = WebhookSecret::generate();
    let now = jiff::Timestamp::now();
    for (name, value) in signed_headers(&forger, delivery.webhook_id(), now.as_second(), &delivery.body.clone()) {
        delivery.headers.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    assert_eq!(receive(&provider, &delivery, Task::Generate, now).await, Err(CallbackRejection::BadSignature));

    delivery.headers.remove(HEADER_SIGNATURE);
    assert_eq!(receive(&provider, &delivery, Task::Generate, now).await, Err(CallbackRejection::BadSignature));
}

#[tokio::test]
async fn given_a_replayed_webhook_when_received_ten_minutes_later_then_it_is_stale() {
    let mock = MockServer::start().await;
    let provider = replicate(&mock);
    let (_, delivery) = submit_and_wait(&provider, MODEL, Task::Summarize).await;

    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(10);
    assert_eq!(receive(&provider, &delivery, Task::Summarize, later).await, Err(CallbackRejection::Stale));
    assert!(delivery.headers.contains_key(HEADER_ID) && delivery.headers.contains_key(HEADER_TIMESTAMP));
    assert!(
        receive(&provider, &delivery, Task::Summarize, jiff::Timestamp::now()).await.is_ok(),
        "on time it is accepted"
    );
}

#[tokio::test]
async fn given_a_finished_prediction_when_polled_then_the_report_is_finished() {
    let mock = MockServer::start().await;
    let provider = replicate(&mock);
    let (job_id, _) = submit_and_wait(&provider, MODEL, Task::Extract).await;

    let report = provider.jobs().unwrap().poll(&job_id, &request(Task::Extract)).await.unwrap();
    assert_eq!((report.job_id.as_str(), report.delivery_id), (job_id.as_str(), None));
    let JobState::Finished { result: Ok(completion), .. } = report.state else { panic!("{:?}", report.state) };
    let TaskOutput::Extract { data } = completion.output else { panic!("{:?}", completion.output) };
    assert_eq!((data["name"].as_str(), data["age"].as_i64()), (Some("Ada Lovelace"), Some(36)));

    let unknown = provider.jobs().unwrap().poll("doesnotexist", &request(Task::Extract)).await.unwrap_err();
    assert_eq!(unknown.kind().as_str(), "invalid_request", "{unknown}");
}

#[tokio::test]
async fn given_prefer_wait_when_called_then_the_prediction_answers_in_one_request() {
    let mock = MockServer::start().await;
    let provider = replicate(&mock);
    let done = provider.call(MODEL, &request(Task::Generate)).await.unwrap();
    let TaskOutput::Generate { text, .. } = &done.output else { panic!("{:?}", done.output) };
    assert!(text.contains("Write one sentence about Chorus."), "{text}");
    assert!(!done.usage.estimated);
    assert_eq!(mock.requests("replicate"), 1, "no polling in sync mode");
}

#[tokio::test]
async fn given_the_content_filter_fault_when_the_job_finishes_then_it_is_content_filtered() {
    let mock = MockServer::start().await;
    let provider = replicate(&mock);
    let (_, delivery) = submit_and_wait(&provider, "meta/fault-content-filter", Task::Generate).await;

    let report = receive(&provider, &delivery, Task::Generate, jiff::Timestamp::now()).await.unwrap();
    let JobState::Finished { result, raw_output } = report.state else { panic!("still running") };
    let error = result.unwrap_err();
    assert!(matches!(&error, ProviderError::ContentFiltered(m) if m.contains("NSFW")), "{error}");
    assert!(raw_output.is_null());
}

#[tokio::test]
async fn given_no_webhook_secret_when_asked_for_jobs_then_the_provider_offers_sync_mode_only() {
    let mock = MockServer::start().await;
    let provider = ReplicateProvider::new(
        http_call::client().unwrap(),
        secrecy::SecretString::from("r8_mock"),
        None,
        Some(mock.url_for("REPLICATE_BASE_URL")),
    );
    assert!(provider.jobs().is_none());
    assert!(provider.call(MODEL, &request(Task::Summarize)).await.is_ok());
}
