//! The `worker` Lambda: for each `{run_id, step_id}` message of the `steps` queue, claims
//! the step, calls its model and releases what depends on it (DESIGN §4). A record that
//! fails is reported back alone (partial batch failure) and redelivered by SQS.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chorus::config::Services;
use chorus::engine::Engine;
use chorus::lambda::{RecordError, parse_body, process_batch};
use chorus::ports::StepMessage;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let services = Services::from_env().await?;
    let engine = services.engine.as_ref();
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, std::convert::Infallible>(handle(engine, event.payload).await)
    }))
    .await
}

/// Runs the batch's steps concurrently and lists the records to redeliver.
async fn handle(engine: &Engine, event: SqsEvent) -> SqsBatchResponse {
    process_batch(event, |record| async move {
        let message: StepMessage = parse_body(&record, "step")?;
        engine.execute_step(&message).await.map_err(RecordError::from)
    })
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use chorus::adapters::{MemoryQueue, MemoryRunStore};
    use chorus::domain::{Limits, StepStatus, TenantId};
    use chorus::engine::{EngineParts, Submission};
    use chorus::notify::CallbackPolicy;
    use chorus::ports::{RunStore, SystemClock};

    use super::*;

    #[tokio::test]
    async fn a_batch_runs_its_steps_and_reports_only_malformed_records() {
        let store = Arc::new(MemoryRunStore::new());
        let (steps, mut queued) = MemoryQueue::channel();
        let (notifications, _) = MemoryQueue::channel();
        let engine = Engine::new(EngineParts {
            store: store.clone(),
            steps: Arc::new(steps),
            notifications: Arc::new(notifications),
            router: Arc::new(chorus::providers::default_router()),
            clock: Arc::new(SystemClock),
            callbacks: CallbackPolicy::production(),
            limits: Limits::default(),
            blobs: Arc::new(chorus::adapters::memory::MemoryBlobStore::new()),
            public_url: None,
            invocation_budget: None,
        });
        let workflow =
            serde_json::json!({"steps": [{"id": "a", "task": "generate", "model": "local:echo", "prompt": "hi"}]});
        let submission = Submission { workflow, input: serde_json::json!({}), notify: None };
        let run_id = engine.submit(&TenantId::parse("acme").unwrap(), submission, None).await.unwrap().run_id;
        let message = serde_json::to_string(&queued.try_recv().unwrap()).unwrap();

        let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [
            {"messageId": "good", "body": message, "attributes": {}},
            {"messageId": "bad", "body": "{\"run\": 1}", "attributes": {}}
        ]}))
        .unwrap();
        let response = handle(&engine, event).await;

        let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, ["bad"]);
        let steps = store.get_steps(&run_id).await.unwrap();
        assert_eq!(steps[0].status, StepStatus::Succeeded);
    }
}
