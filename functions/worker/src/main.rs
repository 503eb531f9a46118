//! The `worker` Lambda: for each `{run_id, step_id}` message of the `steps` queue, claims
//! the step, calls its model and releases what depends on it. A record that
//! fails is reported back alone (partial batch failure) and redelivered by SQS.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chorus::engine::Engine;
use chorus::lambda::{RecordError, parse_body, process_batch};
use chorus::ports::StepMessage;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let engine = chorus::startup::for_worker().await?;
    let engine = engine.as_ref();
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

    use chorus::domain::{StepStatus, TenantId};
    use chorus::engine::Submission;
    use chorus::ports::RunStore;
    use chorus::testing::TestKit;

    use super::*;

    #[tokio::test]
    async fn a_batch_runs_its_steps_and_reports_only_malformed_records() {
        let mut kit = TestKit::new();
        let engine = kit.engine();
        let workflow =
            serde_json::json!({"steps": [{"id": "a", "task": "generate", "model": "local:echo", "prompt": "hi"}]});
        let submission = Submission { workflow, input: serde_json::json!({}), notify: None };
        let run_id = engine.submit(&TenantId::parse("acme").unwrap(), submission, None).await.unwrap().run_id;
        let message = serde_json::to_string(&kit.backends.step_messages.try_recv().unwrap()).unwrap();

        let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [
            {"messageId": "good", "body": message, "attributes": {}},
            {"messageId": "bad", "body": "{\"run\": 1}", "attributes": {}}
        ]}))
        .unwrap();
        let response = handle(&engine, event).await;

        let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, ["bad"]);
        let steps = kit.backends.store.get_steps(&run_id).await.unwrap();
        assert_eq!(steps[0].status, StepStatus::Succeeded);
    }
}
