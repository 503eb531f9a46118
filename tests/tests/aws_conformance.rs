//! The port contracts against the AWS adapters on the emulator: the same suites
//! `memory_conformance.rs` runs against the memory adapters.

// Test support: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chorus::adapters::{DynamoRunStore, DynamoTenantDirectory, S3BlobStore, SqsQueue};
use chorus::domain::TenantId;
use chorus::ports::{StepMessage, Tenant};
use chorus::startup::s3_client;
use chorus_tests::aws::emulator;
use chorus_tests::blob_store_contract::check_blob_store;
use chorus_tests::queue_contract::check_queue;
use chorus_tests::run_store_contract::check_run_store;
use chorus_tests::tenant_directory_contract::check_tenant_directory;
use secrecy::SecretString;

#[tokio::test]
async fn dynamodb_run_store_honours_the_run_store_contract() {
    let Some(emulator) = emulator().await else { return };
    let dynamodb = aws_sdk_dynamodb::Client::new(&emulator.config);
    let blobs = Arc::new(S3BlobStore::new(s3_client(&emulator.config), &emulator.bucket));
    let retention = Duration::from_secs(3600);
    check_run_store(|| Arc::new(DynamoRunStore::new(dynamodb.clone(), &emulator.table, blobs.clone(), retention)))
        .await;
}

#[tokio::test]
async fn s3_blob_store_honours_the_blob_store_contract() {
    let Some(emulator) = emulator().await else { return };
    check_blob_store(&S3BlobStore::new(s3_client(&emulator.config), &emulator.bucket)).await;
}

#[tokio::test]
async fn sqs_queue_honours_the_queue_contract() {
    let Some(emulator) = emulator().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&emulator.config);
    // A queue of its own: the template's queues are consumed by the local loop's bridge.
    let name = format!("chorus-contract-{:016x}", fastrand::u64(..));
    let url = sqs.create_queue().queue_name(&name).send().await.unwrap().queue_url.unwrap();
    let queue = SqsQueue::<StepMessage>::new(sqs.clone(), &url);
    check_queue(&queue, |wait| {
        let (sqs, url) = (sqs.clone(), url.clone());
        async move {
            let wait = i32::try_from(wait.as_secs().max(1)).unwrap();
            let received =
                sqs.receive_message().queue_url(&url).max_number_of_messages(10).wait_time_seconds(wait).send().await;
            let mut batch = Vec::new();
            for message in received.unwrap().messages.unwrap_or_default() {
                batch.push(serde_json::from_str(message.body().unwrap()).unwrap());
                sqs.delete_message()
                    .queue_url(&url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            batch
        }
    })
    .await;
    sqs.delete_queue().queue_url(&url).send().await.unwrap();
}

#[tokio::test]
async fn dynamodb_tenants_honour_the_tenant_directory_contract() {
    let Some(emulator) = emulator().await else { return };
    let directory = DynamoTenantDirectory::new(aws_sdk_dynamodb::Client::new(&emulator.config), &emulator.table);
    let tenant = Tenant {
        id: TenantId::parse(&format!("t{:016x}", fastrand::u64(..))).unwrap(),
        webhook_secret: SecretString::from("whsec_c2VjcmV0"),
    };
    let key = SecretString::from(format!("chorus_{:032x}", fastrand::u128(..)));
    directory.register(&tenant, &key).await.unwrap();
    check_tenant_directory(&directory, &tenant, &key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_rate_limiter_honours_the_rate_limiter_contract() {
    let Some(emulator) = emulator().await else { return };
    let dynamodb = aws_sdk_dynamodb::Client::new(&emulator.config);
    let clock = chorus_tests::rate_limiter_contract::ManualClock::starting_now();
    // A new limiter per call: each is a worker of its own, sharing only the table.
    chorus_tests::rate_limiter_contract::check_rate_limiter(&clock, || {
        Arc::new(chorus::adapters::dynamodb::DynamoRateLimiter::new(dynamodb.clone(), &emulator.table, clock.clone()))
    })
    .await;
}
