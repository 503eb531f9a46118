//! The port contracts, run against the memory adapters (`aws_conformance.rs` runs the same
//! clauses against the AWS adapters on an emulator): one test per clause and adapter, named
//! `<adapter>::<clause>`, each on an adapter of its own.

// Test support: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chorus::adapters::memory::{
    MemoryBlobStore, MemoryQueue, MemoryRateLimiter, MemoryRunStore, MemoryTenantDirectory, MemoryWorkflowRegistry,
};
use chorus::domain::TenantId;
use chorus::ports::{BlobStore, Queue, RateLimiter, RunStore, StepMessage, Tenant, WorkflowRegistry};
use chorus_tests::queue_contract::QueueUnderTest;
use chorus_tests::rate_limiter_contract::{LimiterUnderTest, ManualClock};
use chorus_tests::tenant_directory_contract::{KnownTenant, own_request_limit, rotating_secrets};
use chorus_tests::workflow_registry_contract::CONTRACT_LIMITS;
use secrecy::SecretString;
use tokio::sync::{Mutex, mpsc};

chorus_tests::run_store_contract!(memory_run_store, make_memory_run_store);
chorus_tests::blob_store_contract!(memory_blob_store, make_memory_blob_store);
chorus_tests::queue_contract!(memory_queue, make_memory_queue);
chorus_tests::tenant_directory_contract!(memory_tenant_directory, make_memory_tenant_directory);
chorus_tests::rate_limiter_contract!(memory_rate_limiter, make_memory_rate_limiter);
chorus_tests::workflow_registry_contract!(memory_workflow_registry, make_memory_workflow_registry);

async fn make_memory_run_store() -> Arc<dyn RunStore> {
    Arc::new(MemoryRunStore::new())
}

async fn make_memory_blob_store() -> Arc<dyn BlobStore> {
    Arc::new(MemoryBlobStore::new())
}

/// A memory queue and the receiving end of its channel.
struct MemoryQueueUnderTest {
    queue: MemoryQueue<StepMessage>,
    receiver: Mutex<mpsc::UnboundedReceiver<StepMessage>>,
}

async fn make_memory_queue() -> MemoryQueueUnderTest {
    let (queue, receiver) = MemoryQueue::<StepMessage>::channel();
    MemoryQueueUnderTest { queue, receiver: Mutex::new(receiver) }
}

impl QueueUnderTest for MemoryQueueUnderTest {
    fn queue(&self) -> &dyn Queue<StepMessage> {
        &self.queue
    }

    async fn receive(&self, wait: Duration) -> Vec<StepMessage> {
        let mut receiver = self.receiver.lock().await;
        let mut batch = Vec::new();
        if let Ok(Some(first)) = tokio::time::timeout(wait, receiver.recv()).await {
            batch.push(first);
            while let Ok(next) = receiver.try_recv() {
                batch.push(next);
            }
        }
        batch
    }

    async fn delete(self) {}
}

async fn make_memory_tenant_directory() -> KnownTenant {
    let tenant = Tenant { request_limit: Some(own_request_limit()), ..Tenant::new(TenantId::parse("acme").unwrap()) };
    let api_key = SecretString::from("chorus_test_key");
    let secrets = rotating_secrets();
    let directory = Arc::new(MemoryTenantDirectory::new().with_key(tenant.clone(), secrets.clone(), &api_key));
    KnownTenant { directory: directory.clone(), secrets_store: directory, tenant, secrets, api_key }
}

async fn make_memory_rate_limiter() -> LimiterUnderTest {
    let clock = ManualClock::starting_now();
    // One limiter for all: in one process, every worker task shares the same buckets.
    let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new(clock.clone()));
    LimiterUnderTest { clock, make: Box::new(move || limiter.clone()) }
}

async fn make_memory_workflow_registry() -> Arc<dyn WorkflowRegistry> {
    Arc::new(MemoryWorkflowRegistry::with_limits(CONTRACT_LIMITS))
}
