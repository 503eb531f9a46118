//! [`BlobStore`] on S3: one object per payload, server-side encrypted by the bucket's
//! default encryption.
//!
//! The functions may not list the bucket (no `s3:ListBucket`: listing would show every
//! tenant's keys), and without that permission S3 answers a GET of a missing key with
//! 403 `AccessDenied` rather than 404 `NoSuchKey`, so as not to reveal whether the key exists.
//! Both therefore mean "no blob" here (see [`is_missing`]).

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::ports::{BlobStore, PortError};

/// The error code S3 gives a GET it refuses, including one of a missing key by a principal
/// without `s3:ListBucket`.
const ACCESS_DENIED: &str = "AccessDenied";

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
            Err(SdkError::ServiceError(failure)) if is_missing(failure.err()) => {
                if failure.err().code() == Some(ACCESS_DENIED) {
                    // Also what a role without s3:GetObject would get: say so, once per miss,
                    // so that a broken policy is not mistaken for expired payloads for long.
                    tracing::warn!(
                        bucket = %self.bucket,
                        key,
                        "S3 denied reading a payload: taken as missing (without s3:ListBucket, S3 answers \
                         a missing key so); if payloads that exist read as missing, check the role's s3:GetObject"
                    );
                }
                return Ok(None);
            }
            Err(err) => return Err(unavailable(err)),
        };
        let body = object.body.collect().await.map_err(unavailable)?;
        Ok(Some(body.into_bytes()))
    }
}

/// Whether a GET failed because there is no object under the key: `NoSuchKey`, or
/// `AccessDenied`, which is how S3 answers a missing key to a principal that may not list
/// the bucket. Payload keys are only ever written by the functions, which may read what
/// they write, so a denied read of one is a missing object (expired by the bucket's
/// lifecycle rule, or deleted), not a payload kept from us.
fn is_missing(err: &GetObjectError) -> bool {
    err.is_no_such_key() || err.code() == Some(ACCESS_DENIED)
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> PortError {
    PortError::Unavailable { what: "S3", source: Box::new(err) }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::types::error::NoSuchKey;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    fn with_code(code: &str) -> GetObjectError {
        GetObjectError::generic(ErrorMetadata::builder().code(code).message("refused").build())
    }

    #[test]
    fn a_missing_key_is_no_blob_whether_s3_says_no_such_key_or_access_denied() {
        assert!(is_missing(&GetObjectError::NoSuchKey(NoSuchKey::builder().build())));
        assert!(is_missing(&with_code("AccessDenied")), "a 403 for a missing key without s3:ListBucket");
    }

    #[test]
    fn other_refusals_and_failures_stay_errors() {
        for code in ["SignatureDoesNotMatch", "InvalidAccessKeyId", "InternalError", "SlowDown", "InvalidObjectState"] {
            assert!(!is_missing(&with_code(code)), "{code}");
        }
    }
}
