//! What the Lambda functions share: handling an SQS batch with bounded concurrency and
//! partial batch failures (`ReportBatchItemFailures`), so one bad record never makes SQS
//! redeliver the records that succeeded.

use std::future::Future;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::error_chain;

/// Records handled at once: the event source mapping's batch size, so a batch is one round.
pub const BATCH_CONCURRENCY: usize = 10;

/// Why one record was not handled; it is reported as a batch item failure and comes back
/// after the visibility timeout (and goes to the dead-letter queue after `maxReceiveCount`).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the body is not a {expected} message: {reason}")]
    Malformed { expected: &'static str, reason: String },
    #[error(transparent)]
    Failed(#[from] crate::engine::EngineError),
}

/// Handles every record with `handle`, at most [`BATCH_CONCURRENCY`] at a time, and lists
/// the ones that failed.
pub async fn process_batch<F, Fut>(event: SqsEvent, handle: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), RecordError>>,
{
    let handle = &handle;
    let failures: Vec<BatchItemFailure> = futures::stream::iter(event.records)
        .map(|record| async move {
            let id = record.message_id.clone().unwrap_or_default();
            let receives = record.attributes.get("ApproximateReceiveCount").cloned().unwrap_or_default();
            match handle(record).await {
                Ok(()) => None,
                Err(err) => {
                    tracing::warn!(message_id = %id, receives, error = %error_chain(&err), "record failed; SQS will redeliver it");
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    Some(failure)
                }
            }
        })
        .buffer_unordered(BATCH_CONCURRENCY)
        .filter_map(std::future::ready)
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

/// The record's JSON body as `T`.
pub fn parse_body<T: DeserializeOwned>(record: &SqsMessage, expected: &'static str) -> Result<T, RecordError> {
    let body = record.body.as_deref().unwrap_or_default();
    serde_json::from_str(body).map_err(|err| RecordError::Malformed { expected, reason: err.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(bodies: &[(&str, &str)]) -> SqsEvent {
        let records: Vec<_> = bodies
            .iter()
            .map(|(id, body)| serde_json::json!({"messageId": id, "body": body, "attributes": {}}))
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    #[tokio::test]
    async fn only_failed_records_are_reported() {
        let event = event(&[("m1", "ok"), ("m2", "fail"), ("m3", "ok")]);
        let response = process_batch(event, |record| async move {
            match record.body.as_deref() {
                Some("ok") => Ok(()),
                _ => Err(RecordError::Malformed { expected: "test", reason: "says fail".to_owned() }),
            }
        })
        .await;
        let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, ["m2"]);
    }
}
