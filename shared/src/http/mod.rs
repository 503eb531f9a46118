//! The HTTP API: one axum [`Router`] over the engine, with API-key auth,
//! problem+json errors and an OpenAPI document. It opens no socket: the intake Lambda and
//! `chorus dev` serve it, tests call it with `tower::ServiceExt::oneshot`.

pub mod auth;
pub mod body;
pub mod callbacks;
pub mod openapi;
pub mod problem;
pub mod runs;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::engine::Engine;
use crate::ports::TenantDirectory;

pub use auth::AuthedTenant;
pub use callbacks::{callbacks_app, callbacks_routes};
pub use openapi::ApiDoc;
pub use problem::{ApiError, ProblemDetails};

/// The largest request body accepted: a 6 MiB input plus room for the workflow
/// definition and JSON framing.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024 + 256 * 1024;

/// What every handler needs; cheap to clone (two `Arc`s).
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub tenants: Arc<dyn TenantDirectory>,
}

/// The whole API as a router with its state applied.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/runs", post(runs::create_run).get(runs::list_runs))
        .route("/v1/runs/{id}", get(runs::get_run))
        .route("/v1/runs/{id}/cancel", post(runs::cancel_run))
        .route("/v1/runs/{id}/steps/{step}/approve", post(runs::approve_step))
        .route("/v1/runs/{id}/steps/{step}/reject", post(runs::reject_step))
        .route("/v1/runs/{id}/events", get(runs::run_events))
        .route("/v1/models", get(runs::list_models))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Enforced by the body extractors, which turn an overflow into a 413 problem.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Liveness: answers without touching any backend or requiring a key.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The API is up", body = Health))
)]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// The body of `GET /healthz`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no resource at this path".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
