//! [`Queue`] on SQS: messages are JSON bodies, sent with `SendMessageBatch` ten at a time;
//! a delay becomes `DelaySeconds` (SQS allows up to 15 minutes).

use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::Serialize;

use crate::ports::{PortError, Queue};

/// SendMessageBatch's limit.
const BATCH_MAX: usize = 10;
/// SQS's longest `DelaySeconds`.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// One SQS queue carrying messages of type `M`.
pub struct SqsQueue<M> {
    client: Client,
    url: String,
    message: PhantomData<fn(M)>,
}

impl<M> SqsQueue<M> {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into(), message: PhantomData }
    }
}

#[async_trait]
impl<M: Serialize + Send + Sync + 'static> Queue<M> for SqsQueue<M> {
    async fn send(&self, messages: Vec<M>, delay: Duration) -> Result<(), PortError> {
        let delay_seconds = i32::try_from(delay.min(MAX_DELAY).as_secs()).unwrap_or(0);
        for chunk in messages.chunks(BATCH_MAX) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, message)| {
                    let body = serde_json::to_string(message)
                        .map_err(|err| PortError::Corrupt { what: "queue message", detail: err.to_string() })?;
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(body)
                        .delay_seconds(delay_seconds)
                        .build()
                        .map_err(unavailable)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let sent = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(unavailable)?;
            // A partial failure fails the call: the caller's retry re-sends everything,
            // and consumers tolerate the duplicates.
            if let Some(failed) = sent.failed.first() {
                return Err(PortError::Unavailable {
                    what: "SQS",
                    source: format!("{} of {} messages were not sent: {}", sent.failed.len(), chunk.len(), failed.code)
                        .into(),
                });
            }
        }
        Ok(())
    }
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> PortError {
    PortError::Unavailable { what: "SQS", source: Box::new(err) }
}
