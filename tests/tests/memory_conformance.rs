//! The port contracts, run against the memory adapters.

use std::sync::Arc;

use chorus::adapters::memory::MemoryRunStore;
use chorus_tests::run_store_contract::check_run_store;

#[tokio::test]
async fn memory_run_store_honours_the_run_store_contract() {
    check_run_store(|| Arc::new(MemoryRunStore::new())).await;
}
