//! Adapters behind the ports: `memory` for embedded mode and tests; the AWS adapters
//! (DynamoDB, SQS, S3) sit beside it.

pub mod memory;

pub use memory::{MemoryBlobStore, MemoryQueue, MemoryRunStore, MemoryTenants};
