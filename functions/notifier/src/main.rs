//! The `notifier` Lambda, on three triggers:
//! - the `notifications` queue: deliver a run's signed result to the client;
//! - the `steps` dead-letter queue: a step message the worker kept failing on fails its
//!   step, and so its run, which is then notified;
//! - a schedule: the sweep fails waits past their deadline.

mod handler;

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let services = chorus::startup::for_notifier().await?;
    let services = &services;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| async move {
        handler::handle(services, event.payload).await
    }))
    .await
}
