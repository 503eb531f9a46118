//! Tells the notifier's three kinds of events apart and handles each.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chorus::engine::{EngineError, SweepReport};
use chorus::error::error_chain;
use chorus::lambda::{RecordError, parse_body, process_batch};
use chorus::ports::{NotificationMessage, StepMessage};
use chorus::startup::NotifierServices;
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::Value;

/// What the function returns: partial batch failures for SQS, what the sweep did.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Batch(SqsBatchResponse),
    Swept(SweepReport),
}

/// Why an invocation failed as a whole (per-record failures are reported in the batch).
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("the event is neither an SQS batch nor a scheduled event")]
    UnknownEvent,
    #[error("the SQS event is malformed: {0}")]
    MalformedBatch(serde_json::Error),
    #[error("the sweep failed")]
    Sweep(#[source] EngineError),
}

impl From<NotifierError> for Diagnostic {
    fn from(err: NotifierError) -> Self {
        let error_type = match err {
            NotifierError::UnknownEvent => "Chorus.UnknownEvent",
            NotifierError::MalformedBatch(_) => "Chorus.MalformedEvent",
            NotifierError::Sweep(_) => "Chorus.SweepFailed",
        };
        Diagnostic { error_type: error_type.to_owned(), error_message: error_chain(&err) }
    }
}

pub async fn handle(services: &NotifierServices, event: Value) -> Result<Outcome, NotifierError> {
    if event.get("Records").is_some() {
        let batch: SqsEvent = serde_json::from_value(event).map_err(NotifierError::MalformedBatch)?;
        return Ok(Outcome::Batch(handle_batch(services, batch).await));
    }
    if event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        let report = services.engine.sweep().await.map_err(NotifierError::Sweep)?;
        if report != SweepReport::default() {
            tracing::info!(?report, "the reconciler acted");
        }
        return Ok(Outcome::Swept(report));
    }
    Err(NotifierError::UnknownEvent)
}

/// One event source mapping per queue, so a batch comes from one queue; still, each
/// record is routed by its own source.
async fn handle_batch(services: &NotifierServices, batch: SqsEvent) -> SqsBatchResponse {
    let dead_letters = services.steps_dlq_arn.as_str();
    process_batch(batch, |record| async move {
        if record.event_source_arn.as_deref() == Some(dead_letters) {
            // The dead-letter queue has no queue behind it: a body that can never be read
            // is logged whole and dropped rather than failed every visibility timeout.
            let message: StepMessage = match parse_body(&record, "step") {
                Ok(message) => message,
                Err(err) => {
                    tracing::error!(body = record.body.as_deref().unwrap_or_default(), error = %err, "dropping an unreadable dead letter");
                    return Ok(());
                }
            };
            tracing::warn!(run_id = %message.run_id, step_id = %message.step_id, "a step message reached the dead-letter queue; failing the step");
            services.engine.fail_undeliverable(&message).await.map_err(RecordError::from)
        } else {
            let message: NotificationMessage = parse_body(&record, "notification")?;
            services.notifier.deliver(&message).await.map_err(RecordError::from)
        }
    })
    .await
}
