//! Shared test suites: port contracts that every adapter must pass. The test binaries in
//! `tests/tests/` run them against each adapter.

// Test support: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod aws;
pub mod blob_store_contract;
pub mod dev_server;
pub mod provider_contract;
pub mod queue_contract;
pub mod rate_limiter_contract;
pub mod run_store_contract;
pub mod tenant_directory_contract;
pub mod webhook_receiver;
