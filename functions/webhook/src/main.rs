//! The `webhook` Lambda: receives provider callbacks (`POST /v1/callbacks/{provider}/{token}`)
//! behind API Gateway. Providers with async jobs (issue 4) complete their steps here.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    lambda_http::run(chorus::http::callbacks_app()).await
}
