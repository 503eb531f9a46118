//! The port contracts, run against the memory adapters (`aws_conformance.rs` runs the same
//! suites against the AWS adapters on an emulator).

// Test support: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chorus::adapters::memory::{MemoryBlobStore, MemoryQueue, MemoryRunStore, MemoryTenantDirectory};
use chorus::domain::TenantId;
use chorus::ports::{StepMessage, Tenant};
use chorus_tests::blob_store_contract::check_blob_store;
use chorus_tests::queue_contract::check_queue;
use chorus_tests::run_store_contract::check_run_store;
use chorus_tests::tenant_directory_contract::check_tenant_directory;
use secrecy::SecretString;
use tokio::sync::Mutex;

#[tokio::test]
async fn memory_run_store_honours_the_run_store_contract() {
    check_run_store(|| Arc::new(MemoryRunStore::new())).await;
}

#[tokio::test]
async fn memory_blob_store_honours_the_blob_store_contract() {
    check_blob_store(&MemoryBlobStore::new()).await;
}

#[tokio::test]
async fn memory_queue_honours_the_queue_contract() {
    let (queue, receiver) = MemoryQueue::<StepMessage>::channel();
    let receiver = Arc::new(Mutex::new(receiver));
    check_queue(&queue, |wait| {
        let receiver = receiver.clone();
        async move {
            let mut receiver = receiver.lock().await;
            let mut batch = Vec::new();
            if let Ok(Some(first)) = tokio::time::timeout(wait, receiver.recv()).await {
                batch.push(first);
                while let Ok(next) = receiver.try_recv() {
                    batch.push(next);
                }
            }
            batch
        }
    })
    .await;
}

#[tokio::test]
async fn memory_tenants_honour_the_tenant_directory_contract() {
    let tenant = Tenant { id: TenantId::parse("acme").unwrap(), webhook_secret: SecretString::from("whsec_c2VjcmV0") };
    let key = SecretString::from("chorus_test_key");
    let directory = MemoryTenantDirectory::new().with_key(tenant.clone(), &key);
    check_tenant_directory(&directory, &tenant, &key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_rate_limiter_honours_the_rate_limiter_contract() {
    let clock = chorus_tests::rate_limiter_contract::ManualClock::starting_now();
    // One limiter for all: in one process, every worker task shares the same buckets.
    let limiter: Arc<dyn chorus::ports::RateLimiter> =
        Arc::new(chorus::adapters::memory::MemoryRateLimiter::new(clock.clone()));
    chorus_tests::rate_limiter_contract::check_rate_limiter(&clock, || limiter.clone()).await;
}
