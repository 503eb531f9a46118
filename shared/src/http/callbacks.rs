//! The webhook function's API: `POST /v1/callbacks/{provider}/{token}`, where providers
//! that run jobs asynchronously report results. No provider of this build runs async jobs,
//! so every callback is answered 404 (as an unknown token would be) and nothing changes.

use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};

use super::{ApiError, healthz, method_not_allowed, not_found};

/// The callbacks API as a router.
pub fn callbacks_app() -> Router {
    Router::new()
        .route("/v1/callbacks/{provider}/{token}", post(provider_callback))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn provider_callback(Path((provider, _token)): Path<(String, String)>) -> ApiError {
    tracing::warn!(%provider, "callback for a provider without async jobs");
    ApiError::NotFound(format!("no pending job of provider `{provider}` has this callback token"))
}
