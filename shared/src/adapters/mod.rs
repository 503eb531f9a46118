//! Adapters behind the ports: `memory` for embedded mode and tests; `dynamodb`, `sqs`, `s3`
//! and `ssm` for AWS, through the AWS SDK (the `aws` feature). Each is named `<Tech><Port>`.
//! `sealing` is the envelope encryption (KMS) that tenants' secrets are stored under.
//! `chaos` fails AWS requests on purpose, for the soak test only.

#[cfg(feature = "aws")]
pub mod chaos;
#[cfg(feature = "aws")]
pub mod dynamodb;
pub mod memory;
#[cfg(feature = "aws")]
pub mod s3;
#[cfg(feature = "aws")]
pub mod sealing;
#[cfg(feature = "aws")]
pub mod sqs;
#[cfg(feature = "aws")]
pub mod ssm;

#[cfg(feature = "aws")]
pub use dynamodb::{
    DynamoRateLimiter, DynamoRunStore, DynamoSigningSecrets, DynamoTenantDirectory, DynamoWorkflowRegistry,
};
pub use memory::{
    MemoryBlobStore, MemoryQueue, MemoryRateLimiter, MemoryRunStore, MemoryTenantDirectory, MemoryWorkflowRegistry,
};
#[cfg(feature = "aws")]
pub use s3::S3BlobStore;
#[cfg(feature = "aws")]
pub use sqs::SqsQueue;
#[cfg(feature = "aws")]
pub use ssm::SsmSecretStore;
