//! [`BlobStore`] on S3: one object per payload, server-side encrypted by the bucket's
//! default encryption.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::ports::{BlobStore, PortError};

/// Payloads in one S3 bucket.
pub struct S3BlobStore {
    client: Client,
    bucket: String,
}

impl S3BlobStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), PortError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, PortError> {
        let object = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(object) => object,
            Err(SdkError::ServiceError(failure)) if matches!(failure.err(), GetObjectError::NoSuchKey(_)) => {
                return Ok(None);
            }
            Err(err) => return Err(unavailable(err)),
        };
        let body = object.body.collect().await.map_err(unavailable)?;
        Ok(Some(body.into_bytes()))
    }
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> PortError {
    PortError::Unavailable { what: "S3", source: Box::new(err) }
}
