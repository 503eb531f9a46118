//! Adapters behind the ports: `memory` for embedded mode and unit tests; `dynamodb`,
//! `sqs` and `s3` for AWS, through the AWS SDK.

pub mod dynamodb;
pub mod memory;
pub mod s3;
pub mod sqs;

pub use dynamodb::{DynamoRateLimiter, DynamoRunStore, DynamoTenants};
pub use memory::{MemoryBlobStore, MemoryQueue, MemoryRateLimiter, MemoryRunStore, MemoryTenants};
pub use s3::S3BlobStore;
pub use sqs::SqsQueue;
