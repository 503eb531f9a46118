//! In-process adapters: the embedded `chorus dev` backend and the test double of every port.
//! They honour the same contracts as the AWS adapters (one conformance suite per port runs
//! against both).

mod blob_store;
mod queue;
mod rate_limiter;
mod run_store;
mod tenant_directory;
mod workflow_registry;

pub use blob_store::MemoryBlobStore;
pub use queue::MemoryQueue;
pub use rate_limiter::MemoryRateLimiter;
pub use run_store::MemoryRunStore;
pub use tenant_directory::MemoryTenantDirectory;
pub use workflow_registry::MemoryWorkflowRegistry;

use crate::ports::PortError;

fn poisoned(what: &'static str) -> PortError {
    PortError::Corrupt { what, detail: "a writer panicked while holding the lock".to_owned() }
}
