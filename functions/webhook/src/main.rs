//! The `webhook` Lambda: receives provider callbacks (`POST /v1/callbacks/{provider}/{token}`)
//! behind API Gateway, verifies them and completes the steps waiting on those jobs.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    // Clients, providers and secrets: once per cold start.
    let engine = chorus::startup::for_webhook().await?;
    lambda_http::run(chorus::http::callbacks_app(engine)).await
}
